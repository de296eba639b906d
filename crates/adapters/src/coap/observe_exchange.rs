//! The Observe client's side of CoAP's message exchanges (RFC 7252 §4):
//!
//! - [`Retransmit`]: its own CON (the registration, a block's GET) sent
//!   again until answered;
//! - [`Answered`]: a device's CON it already acknowledged. A device whose
//!   ACK was lost sends its notification again with the same Message ID
//!   (§4.2); that must be acknowledged again and not taken in again: with
//!   an Observe option it looked stale (counted an error), without one it
//!   was ingested twice. Kept EXCHANGE_LIFETIME (a NON, NON_LIFETIME), as
//!   the server's `dedup` keeps a request.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use coap_lite::{MessageType, Packet};
use gateway_core::telemetry::Counter;
use tokio::time::Instant;

use super::dedup::{EXCHANGE_LIFETIME, NON_LIFETIME};
use super::server::random_u16;

/// RFC 7252 §4.8 transmission parameters of a CON the client sends.
pub(super) const ACK_TIMEOUT: Duration = Duration::from_secs(2);
pub(super) const MAX_RETRANSMIT: u32 = 4;

/// RFC 7252 §4.2's retransmission of a CON: ACK_TIMEOUT times a random
/// factor up to ACK_RANDOM_FACTOR, doubled each time, MAX_RETRANSMIT times.
pub(super) struct Retransmit {
    pub(super) next: Instant,
    timeout: Duration,
    sent: u32,
}

impl Retransmit {
    pub(super) fn new(now: Instant) -> Self {
        // ACK_RANDOM_FACTOR 1.5: somewhere in [ACK_TIMEOUT, 1.5 ACK_TIMEOUT],
        // so devices restarted together are not all asked at once.
        let spread = ACK_TIMEOUT.mul_f64(0.5 * f64::from(random_u16()) / f64::from(u16::MAX));
        let timeout = ACK_TIMEOUT + spread;
        Self {
            next: now + timeout,
            timeout,
            sent: 0,
        }
    }

    /// Whether to send again now; false once MAX_RETRANSMIT retransmissions
    /// went unanswered for their full timeout.
    pub(super) fn again(&mut self, now: Instant) -> bool {
        if self.sent >= MAX_RETRANSMIT {
            return false;
        }
        self.sent += 1;
        self.timeout *= 2;
        self.next = now + self.timeout;
        true
    }
}

/// Answers remembered at most: a device notifying four times a second
/// for a whole EXCHANGE_LIFETIME. Past it the oldest go first; a
/// retransmission comes within MAX_TRANSMIT_WAIT (93 s) of its first
/// transmission.
const KEPT: usize = 1024;

/// The CONs of one resource's device answered lately, and its NONs read
/// lately (RFC 7252 §4.5: a network may deliver a NON twice, and one
/// without an Observe option has no sequence number to tell). Its socket
/// is connected, so the peer is the device and the Message ID the key. A
/// retransmission is the same datagram: a message that reuses a Message
/// ID with other bytes (a device restarted within the lifetime, counting
/// from where it counted before) is a new one.
pub(super) struct Answered {
    /// By Message ID: the datagram's hash, the answer, and when it is no
    /// longer a retransmission (a NON's Message ID may be reused sooner
    /// than a CON's, so this is not the order's).
    replies: HashMap<u16, Reply>,
    /// Message IDs in the order answered, with when each entry is dropped:
    /// the longest lifetime, so the front always expires first.
    order: VecDeque<(u16, Instant)>,
    duplicates: Counter,
}

impl Answered {
    /// `duplicates`: where the retransmissions recognised are counted.
    pub(super) fn new(duplicates: Counter) -> Self {
        Self {
            replies: HashMap::new(),
            order: VecDeque::new(),
            duplicates,
        }
    }

    /// The answer to send again when `datagram` (parsed as `p`) is a CON
    /// answered, or a NON read, within its lifetime (a NON's answer is
    /// empty: nothing is sent); counted a duplicate.
    pub(super) fn again(&mut self, p: &Packet, datagram: &[u8], now: Instant) -> Option<Vec<u8>> {
        if !remembered(p) {
            return None;
        }
        self.expire(now);
        let kept = self.replies.get(&p.header.message_id)?;
        if kept.hash != digest(datagram) || kept.until <= now {
            return None;
        }
        self.duplicates.inc();
        Some(kept.reply.clone())
    }

    /// `reply` was sent to `datagram` (parsed as `p`); empty for a NON.
    pub(super) fn answered(&mut self, p: &Packet, datagram: &[u8], reply: &[u8], now: Instant) {
        if !remembered(p) {
            return;
        }
        self.expire(now);
        let mid = p.header.message_id;
        let lifetime = if p.header.get_type() == MessageType::NonConfirmable {
            NON_LIFETIME
        } else {
            EXCHANGE_LIFETIME
        };
        let entry = Reply {
            hash: digest(datagram),
            reply: reply.to_vec(),
            until: now + lifetime,
        };
        if self.replies.insert(mid, entry).is_some() {
            // A new message under a Message ID still kept: it keeps its place.
            return;
        }
        if self.order.len() >= KEPT {
            if let Some((oldest, _)) = self.order.pop_front() {
                self.replies.remove(&oldest);
            }
        }
        self.order.push_back((mid, now + EXCHANGE_LIFETIME));
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(mid, expires)) = self.order.front() {
            if expires > now {
                break;
            }
            self.order.pop_front();
            self.replies.remove(&mid);
        }
    }
}

struct Reply {
    hash: u64,
    reply: Vec<u8>,
    until: Instant,
}

/// CONs and NONs: an ACK or a Reset answers our own message, whose
/// Message ID is ours and may be met again legitimately.
fn remembered(p: &Packet) -> bool {
    matches!(
        p.header.get_type(),
        MessageType::Confirmable | MessageType::NonConfirmable
    )
}

fn digest(datagram: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    datagram.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use coap_lite::{MessageClass, ResponseType};
    use gateway_core::Telemetry;

    fn con(mid: u16, payload: &[u8]) -> (Packet, Vec<u8>) {
        let mut p = Packet::new();
        p.header.set_type(MessageType::Confirmable);
        p.header.code = MessageClass::Response(ResponseType::Content);
        p.header.message_id = mid;
        p.payload = payload.to_vec();
        let bytes = p.to_bytes().unwrap_or_default();
        (p, bytes)
    }

    #[tokio::test(start_paused = true)]
    async fn a_retransmission_is_known_for_the_exchange_lifetime_and_a_reused_id_is_not() {
        let telemetry = Telemetry::default();
        let mut a = Answered::new(telemetry.counter("duplicates", &[]));
        let t0 = Instant::now();
        let (p, bytes) = con(7, b"21");
        assert_eq!(a.again(&p, &bytes, t0), None);
        a.answered(&p, &bytes, &[0x60, 0, 0, 7], t0);
        let later = t0 + EXCHANGE_LIFETIME - Duration::from_secs(1);
        assert_eq!(a.again(&p, &bytes, later), Some(vec![0x60, 0, 0, 7]));
        // The same Message ID with other bytes: a new message.
        let (other, other_bytes) = con(7, b"22");
        assert_eq!(a.again(&other, &other_bytes, later), None);
        assert_eq!(a.again(&p, &bytes, t0 + EXCHANGE_LIFETIME), None);
        assert_eq!(telemetry.counter_value("duplicates", &[]), Some(1));
    }

    /// RFC 7252 §4.8.2: a NON's Message ID may be reused after
    /// NON_LIFETIME (145 s), sooner than a CON's 247 s; a NON read again
    /// after that is a new message, even behind a CON still kept.
    #[tokio::test(start_paused = true)]
    async fn a_non_is_a_duplicate_for_the_non_lifetime_only() {
        let telemetry = Telemetry::default();
        let mut a = Answered::new(telemetry.counter("duplicates", &[]));
        let t0 = Instant::now();
        let (c, c_bytes) = con(1, b"20");
        a.answered(&c, &c_bytes, &[0x60, 0, 0, 1], t0);
        let (mut n, _) = con(2, b"21");
        n.header.set_type(MessageType::NonConfirmable);
        let n_bytes = n.to_bytes().unwrap_or_default();
        a.answered(&n, &n_bytes, &[], t0);
        let within = t0 + NON_LIFETIME - Duration::from_secs(1);
        assert_eq!(a.again(&n, &n_bytes, within), Some(Vec::new()));
        let past = t0 + NON_LIFETIME;
        assert_eq!(a.again(&n, &n_bytes, past), None, "reused after 145 s");
        assert_eq!(a.again(&c, &c_bytes, past), Some(vec![0x60, 0, 0, 1]));
        assert_eq!(telemetry.counter_value("duplicates", &[]), Some(2));
    }
}
