//! The BACnet/IP client: one UDP socket, confirmed requests matched to
//! their answers by peer and invoke id, retried on timeout, segmented
//! answers reassembled ([`segment`](super::segment)) with their
//! SegmentACKs sent; I-Am and COV notifications handed to whoever
//! listens ([`Event`]). A COV notification is judged here against the
//! subscriptions ([`CovRegistry`]) and a confirmed one answered at once,
//! so a slow consumer never makes the device resend it: acknowledged when
//! it is ours (or a lapsed subscription's), refused when it is foreign.
//!
//! No request is segmented by the gateway: batching (see `reader`) keeps
//! each within the device's max APDU.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::apdu::{self, confirmed, unconfirmed, Apdu};
use super::cov::{CovRegistry, Foreign, Verdict};
use super::frame::{self, Frame};
use super::segment::{Reassembly, SegmentError};
use super::services::{self, CovNotification, ErrorCode, IAm};
use super::tags::ObjectId;
use super::CodecError;

/// Why a request got no usable answer. [`ClientError::label`] is the
/// `error_type` it is counted under.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("no answer")]
    Timeout,
    #[error("rejected (reason {0})")]
    Reject(u8),
    #[error("aborted (reason {0})")]
    Abort(u8),
    #[error("error {}", .0.describe())]
    Error(ErrorCode),
    #[error("segmented answer: {0}")]
    Segmentation(SegmentError),
    #[error("malformed answer: {0}")]
    Malformed(CodecError),
    #[error("{0}")]
    Io(String),
    #[error("all 256 invoke ids are in use for this device")]
    Busy,
    /// A ReadProperty answer for another object or property than asked.
    #[error("answered for {0}, which was not asked")]
    Mismatch(ObjectId),
    /// The request's deadline came before it could be sent: nothing went
    /// out.
    #[error("its deadline passed before it was sent")]
    Expired,
    /// An object list longer than any device's: a corrupt or hostile
    /// count, never allocated for nor read.
    #[error("its object list claims {0} objects, more than the {max} the gateway reads", max = super::reader::MAX_OBJECTS)]
    TooManyObjects(u64),
}

impl ClientError {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Reject(_) => "reject",
            Self::Abort(_) => "abort",
            Self::Error(_) => "error",
            Self::Segmentation(_) => "segmentation",
            Self::Malformed(_) => "malformed",
            Self::Io(_) | Self::Busy => "io",
            Self::Mismatch(_) => "answer_unasked",
            Self::Expired => "expired",
            Self::TooManyObjects(_) => "too_many_objects",
        }
    }
}

/// Something a device sent unasked.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    IAm(SocketAddr, IAm),
    /// A notification for one of our subscriptions, from its device (the
    /// instance) at its address.
    Cov(u32, CovNotification),
    /// A notification under a process id no subscription of ours holds.
    CovUnknown(SocketAddr),
    /// A notification under one of our process ids that is not the
    /// subscription's: dropped, and counted by why.
    CovForeign(SocketAddr, Foreign, CovNotification),
    /// A BBMD's answer to a foreign-device registration (0: accepted).
    Registration(SocketAddr, u16),
    /// A datagram that was not BACnet the gateway reads.
    Malformed(CodecError),
    /// An answer for no request waiting (late, after its timeout).
    Stray,
}

/// The answer to a confirmed request.
type Answer = Result<Option<Vec<u8>>, ClientError>;

struct Pending {
    /// The request's service choice, which its acknowledgement or Error
    /// repeats.
    service: u8,
    tx: Option<oneshot::Sender<Answer>>,
    reassembly: Option<Reassembly>,
}

#[derive(Default)]
struct Table {
    next: HashMap<SocketAddr, u8>,
    pending: HashMap<(SocketAddr, u8), Pending>,
}

/// A BACnet/IP client on one socket. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    socket: Arc<UdpSocket>,
    table: Arc<Mutex<Table>>,
    timeout: Duration,
    retries: u32,
    /// Unasked messages dropped on a full `events` queue, not yet told.
    dropped: Arc<AtomicU64>,
    cov: Arc<CovRegistry>,
}

/// Datagrams up to this are read; BACnet/IP's largest is 1497.
const RECV_BUFFER: usize = 2048;

impl Client {
    /// Binds `bind` and starts the receive task, which runs until `stop`;
    /// unasked messages go to `events` (dropped, not waited for, when it
    /// is full: a flood of I-Am must not stall the answers).
    pub async fn start(
        bind: SocketAddr,
        timeout: Duration,
        retries: u32,
        events: mpsc::Sender<Event>,
        stop: CancellationToken,
    ) -> std::io::Result<Self> {
        let socket = UdpSocket::bind(bind).await?;
        socket.set_broadcast(true)?;
        let client = Self {
            socket: Arc::new(socket),
            table: Arc::default(),
            timeout,
            retries,
            dropped: Arc::default(),
            cov: Arc::default(),
        };
        let rx = client.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; RECV_BUFFER];
            loop {
                let got = tokio::select! {
                    _ = stop.cancelled() => break,
                    got = rx.socket.recv_from(&mut buf) => got,
                };
                // ICMP port unreachable and the like surface here on
                // Linux; the request that caused it times out instead.
                let Ok((n, from)) = got else { continue };
                rx.dispatch(&buf[..n], from, &events).await;
            }
        });
        Ok(client)
    }

    /// Unasked messages dropped since the last call because `events` was
    /// full (a flood of I-Am or notifications), for the caller to count.
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The subscriptions notifications are judged against.
    pub fn cov(&self) -> &CovRegistry {
        &self.cov
    }

    async fn dispatch(&self, d: &[u8], from: SocketAddr, events: &mpsc::Sender<Event>) {
        let event = match frame::decode(d) {
            Err(e) => Some(Event::Malformed(e)),
            Ok(Frame::Network) => None,
            // Only the configured BBMD answers the registration: anyone
            // else's "accepted" (or NAK) would stand for its answer in
            // `edge_gateway_bacnet_fdr_registered`.
            Ok(Frame::BvlcResult(code)) if self.cov.is_forwarder(from) => {
                Some(Event::Registration(from, code))
            }
            Ok(Frame::BvlcResult(_)) => Some(Event::Malformed(CodecError::Unexpected(
                "a BVLC-Result from the BBMD",
            ))),
            Ok(Frame::Apdu { origin, apdu, .. }) => {
                let origin = origin.map(SocketAddr::V4);
                let sender = self.cov.sender(from, origin);
                self.on_apdu(apdu, origin.unwrap_or(from), sender).await
            }
        };
        if let Some(e) = event {
            if events.try_send(e).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// `from`: where the datagram says it comes from (a forwarded one's
    /// origin), which I-Ams use; `sender`: who sent it as far as the
    /// gateway can tell, which a notification and an answer to the
    /// gateway's own request are judged by and the gateway's answer to a
    /// request goes to.
    async fn on_apdu(&self, apdu: Apdu<'_>, from: SocketAddr, sender: SocketAddr) -> Option<Event> {
        match apdu {
            Apdu::Unconfirmed { service, body } => match service {
                unconfirmed::I_AM => Some(match services::decode_i_am(body) {
                    Ok(i) => Event::IAm(from, i),
                    Err(e) => Event::Malformed(e),
                }),
                unconfirmed::UNCONFIRMED_COV_NOTIFICATION => {
                    Some(match services::decode_cov_notification(body) {
                        Ok(n) => self.judge(sender, n).1,
                        Err(e) => Event::Malformed(e),
                    })
                }
                _ => None,
            },
            Apdu::ConfirmedRequest {
                invoke_id,
                segmented,
                service,
                body,
            } => {
                if segmented {
                    // The gateway takes no segmented request (its
                    // notifications fit one APDU): §5.4.5.2 answers one
                    // with an Abort, segmentation-not-supported, which a
                    // device reads as "send it unsegmented or not at
                    // all" where a Reject would say the service is wrong.
                    let abort = apdu::server_abort(invoke_id, apdu::abort::SEGMENTATION_NOT_SUPPORTED);
                    self.send_to(&frame::unicast(&abort, false, None), sender)
                        .await;
                    return None;
                }
                if service != confirmed::CONFIRMED_COV_NOTIFICATION {
                    // The gateway serves nothing else: reject as the
                    // standard asks rather than let the device time out
                    // (reason 9: unrecognized-service).
                    self.send_to(
                        &frame::unicast(&[0x60, invoke_id, 9], false, None),
                        sender,
                    )
                    .await;
                    return None;
                }
                let (answer, event) = match services::decode_cov_notification(body) {
                    Ok(n) => {
                        let (taken, event) = self.judge(sender, n);
                        let answer = if taken {
                            // Also for an unknown subscription, which
                            // then lapses at the device (FAULTS.md: ACK,
                            // then ignore).
                            apdu::simple_ack(invoke_id, service)
                        } else {
                            // Services / unknown-subscription: the sender
                            // learns the gateway holds no such subscription
                            // with it, never that its values were taken.
                            apdu::error(invoke_id, service, 5, 79)
                        };
                        (answer, event)
                    }
                    // Reject reason 4, invalid-tag: what the standard
                    // answers a request it cannot parse.
                    Err(e) => (vec![0x60, invoke_id, 4], Event::Malformed(e)),
                };
                // To who sent it: an origin only a stranger vouches for
                // would aim the gateway's answer at a third party.
                self.send_to(&frame::unicast(&answer, false, None), sender)
                    .await;
                Some(event)
            }
            // An answer is to a request the gateway sent to the device's
            // own address, and comes back from there: a BBMD forwards
            // broadcasts, not answers, so an origin address claimed by
            // anyone else would let a stranger answer for the device.
            other => {
                let invoke_id = other.invoke_id()?;
                self.on_answer(other, invoke_id, sender).await
            }
        }
    }

    /// A notification's event, and whether a confirmed one is
    /// acknowledged (a foreign one is refused).
    fn judge(&self, sender: SocketAddr, n: CovNotification) -> (bool, Event) {
        match self.cov.check(sender, &n) {
            Verdict::Ours(instance) => (true, Event::Cov(instance, n)),
            Verdict::Unknown => (true, Event::CovUnknown(sender)),
            Verdict::Foreign(why) => (false, Event::CovForeign(sender, why, n)),
        }
    }

    async fn on_answer(&self, apdu: Apdu<'_>, invoke_id: u8, from: SocketAddr) -> Option<Event> {
        let key = (from, invoke_id);
        let mut reply = None;
        let result: Option<Answer> = {
            let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
            let Some(pending) = table.pending.get_mut(&key) else {
                return Some(Event::Stray);
            };
            // An acknowledgement or Error of another service under this
            // invoke id is a late answer to an earlier request that had
            // it (ids are reused), not this request's: a SubscribeCOV's
            // SimpleACK would report a refused write done.
            let answers = match apdu {
                Apdu::SimpleAck { service, .. }
                | Apdu::ComplexAck { service, .. }
                | Apdu::Error { service, .. } => service == pending.service,
                _ => true,
            };
            if !answers {
                return Some(Event::Stray);
            }
            match apdu {
                Apdu::SimpleAck { .. } => Some(Ok(None)),
                Apdu::ComplexAck {
                    segment: None,
                    body,
                    ..
                } => Some(Ok(Some(body.to_vec()))),
                Apdu::ComplexAck {
                    segment: Some((seq, window, more)),
                    service,
                    body,
                    ..
                } => {
                    let r = pending
                        .reassembly
                        .get_or_insert_with(|| Reassembly::new(service));
                    match r.push(seq, window, more, service, body) {
                        Ok(p) => {
                            if let Some((nak, s, w)) = p.ack {
                                reply = Some(apdu::segment_ack(invoke_id, nak, s, w));
                            }
                            p.done.map(|d| Ok(Some(d)))
                        }
                        Err(e) => {
                            // abort reason 7: segmentation... (buffer
                            // overflow for an answer too large to take).
                            reply =
                                Some(apdu::client_abort(invoke_id, apdu::abort::BUFFER_OVERFLOW));
                            Some(Err(ClientError::Segmentation(e)))
                        }
                    }
                }
                Apdu::Error { body, .. } => Some(Err(match services::decode_error(body) {
                    Ok(code) => ClientError::Error(code),
                    Err(e) => ClientError::Malformed(e),
                })),
                Apdu::Reject { reason, .. } => Some(Err(ClientError::Reject(reason))),
                Apdu::Abort { reason, .. } => Some(Err(ClientError::Abort(reason))),
                _ => None,
            }
        };
        if let Some(r) = reply {
            self.send_to(&frame::unicast(&r, false, None), from).await;
        }
        if let Some(answer) = result {
            let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(tx) = table.pending.get_mut(&key).and_then(|p| p.tx.take()) {
                let _ = tx.send(answer);
            }
        }
        None
    }

    async fn send_to(&self, d: &[u8], to: SocketAddr) {
        // A send error is a missing route or a full buffer: the request
        // then times out and is counted there.
        let _ = self.socket.send_to(d, to).await;
    }

    /// Sends an unconfirmed request (Who-Is) to `to`, unicast or the
    /// subnet's broadcast address, or as Distribute-Broadcast to a BBMD.
    pub async fn unconfirmed(
        &self,
        to: SocketAddr,
        service: u8,
        body: &[u8],
        broadcast: bool,
        through_bbmd: bool,
    ) {
        let apdu = apdu::unconfirmed_request(service, body);
        let d = if broadcast || through_bbmd {
            frame::broadcast(&apdu, through_bbmd)
        } else {
            frame::unicast(&apdu, false, None)
        };
        self.send_to(&d, to).await;
    }

    pub async fn who_is(
        &self,
        to: SocketAddr,
        range: Option<(u32, u32)>,
        broadcast: bool,
        through_bbmd: bool,
    ) {
        self.unconfirmed(
            to,
            unconfirmed::WHO_IS,
            &services::who_is(range),
            broadcast,
            through_bbmd,
        )
        .await;
    }

    /// Register-Foreign-Device with the BBMD at `bbmd`; its answer comes
    /// as [`Event::Registration`].
    pub async fn register_foreign_device(&self, bbmd: SocketAddr, ttl: Duration) {
        let ttl = u16::try_from(ttl.as_secs()).unwrap_or(u16::MAX);
        self.send_to(&super::bvlc::register_foreign_device(ttl), bbmd)
            .await;
    }

    fn reserve(
        &self,
        peer: SocketAddr,
        service: u8,
    ) -> Result<(u8, oneshot::Receiver<Answer>), ClientError> {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let start = *table.next.get(&peer).unwrap_or(&0);
        let id = (0..=255u8)
            .map(|k| start.wrapping_add(k))
            .find(|id| !table.pending.contains_key(&(peer, *id)))
            .ok_or(ClientError::Busy)?;
        table.next.insert(peer, id.wrapping_add(1));
        let (tx, rx) = oneshot::channel();
        table.pending.insert(
            (peer, id),
            Pending {
                service,
                tx: Some(tx),
                reassembly: None,
            },
        );
        Ok((id, rx))
    }

    fn release(&self, peer: SocketAddr, id: u8) {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table.pending.remove(&(peer, id));
        if table.next.len() > 10_000 && !table.pending.keys().any(|(p, _)| *p == peer) {
            table.next.remove(&peer);
        }
    }

    /// A confirmed request: its ComplexACK's service data (`None` for a
    /// SimpleACK). Retried with the same invoke id on timeout, as §5.4.4
    /// does.
    pub async fn request(&self, peer: SocketAddr, service: u8, body: &[u8]) -> Answer {
        self.request_until(peer, service, body, None).await
    }

    /// [`Client::request`], sent (first or again) only before `deadline`
    /// and answered by then: a command's write must never reach the
    /// device after its `max_age`, which a retry after a lost datagram
    /// otherwise did. [`ClientError::Expired`] when nothing was sent; a
    /// request sent and unanswered by `deadline` is a
    /// [`ClientError::Timeout`], as the device may have taken it.
    pub async fn request_until(
        &self,
        peer: SocketAddr,
        service: u8,
        body: &[u8],
        deadline: Option<Instant>,
    ) -> Answer {
        let late = || deadline.is_some_and(|d| Instant::now() >= d);
        if late() {
            return Err(ClientError::Expired);
        }
        let (id, mut rx) = self.reserve(peer, service)?;
        let d = frame::unicast(&apdu::confirmed_request(id, service, body), true, None);
        let mut result = Err(ClientError::Timeout);
        for _ in 0..=self.retries {
            if late() {
                break;
            }
            if let Err(e) = self.socket.send_to(&d, peer).await {
                result = Err(ClientError::Io(e.to_string()));
                break;
            }
            let give_up = Instant::now() + self.timeout;
            let until = deadline.map_or(give_up, |d| d.min(give_up));
            match tokio::time::timeout_at(until, &mut rx).await {
                Ok(Ok(answer)) => {
                    result = answer;
                    break;
                }
                Ok(Err(_)) => break,
                Err(_) => {
                    // A reassembly under way restarts with the resend.
                    let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(p) = table.pending.get_mut(&(peer, id)) {
                        p.reassembly = None;
                    }
                }
            }
        }
        self.release(peer, id);
        result
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
