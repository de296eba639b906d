//! Block1 reassembly (RFC 7959 §2.5): a body sent in blocks, kept per peer
//! and path until its last block or its timeout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, ResponseType};

use super::super::message;
use super::answer::Answer;
use super::{Handler, Outcome};

/// Concurrent Block1 transfers, and how long an idle one is kept.
pub(super) const MAX_TRANSFERS: usize = 64;
/// Transfers one host may hold at once: a device uploads one body at a
/// time; 64 first blocks from one socket held every device's uploads off
/// for a minute.
pub(super) const MAX_TRANSFERS_PER_HOST: usize = 4;
pub(super) const TRANSFER_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a completed transfer's last block is recognised when sent
/// again: a client whose answer to it was lost retransmits it for
/// MAX_TRANSMIT_WAIT (93 s) and may then retry it under a new Message ID,
/// which the duplicate cache does not know; EXCHANGE_LIFETIME covers both.
pub(super) const FINISHED_KEPT: Duration = super::super::dedup::EXCHANGE_LIFETIME;

/// A completed transfer: its last block (Block1 value and payload) and the
/// answer it got, to give again without reading the body twice.
pub(super) struct Finished {
    value: Vec<u8>,
    last: Vec<u8>,
    answer: Answer,
    at: Instant,
}

pub(super) struct Transfer {
    pub(super) next: u32,
    pub(super) szx: u8,
    pub(super) body: Vec<u8>,
    pub(super) touched: Instant,
}

impl Handler {
    /// One Block1 block (RFC 7959 §2.5). `Ok` with the whole body and the
    /// Block1 value to echo once the last block is in; `Err` with the answer
    /// to send otherwise (2.31 Continue, or an error).
    pub(super) fn block1(
        &mut self,
        key: (SocketAddr, String),
        value: &[u8],
        payload: &[u8],
        now: Instant,
        out: &mut Outcome,
    ) -> Result<(Vec<u8>, Vec<u8>), Answer> {
        let Some(v) = message::read_uint(value).filter(|v| v & 0x7 != 7) else {
            out.error("invalid_block1", "Block1 value");
            return Err(Answer::error(ResponseType::BadRequest, "invalid Block1"));
        };
        let (num, more, szx) = (v >> 4, v & 0x8 != 0, (v & 0x7) as u8);
        let size = 16usize << szx;
        if more && payload.len() != size {
            out.error("invalid_block1", "block shorter than its size");
            return Err(Answer::error(
                ResponseType::BadRequest,
                "block size mismatch",
            ));
        }
        self.transfers
            .retain(|_, t| now.saturating_duration_since(t.touched) < TRANSFER_TIMEOUT);
        self.finished
            .retain(|_, f| now.saturating_duration_since(f.at) < FINISHED_KEPT);
        if !self.transfers.contains_key(&key) {
            // The last block of a transfer completed, sent again (its answer
            // lost, retried under a new Message ID): the same answer, the
            // body not read again. A block 0 starts a new transfer.
            match self.finished.get(&key) {
                Some(f) if num > 0 && f.value == value && f.last == payload => {
                    out.duplicate = true;
                    return Err(f.answer.clone());
                }
                _ if num == 0 => {
                    self.finished.remove(&key);
                }
                _ => {}
            }
        }
        if num == 0 && !self.transfers.contains_key(&key) {
            // A host over its share gives up its own oldest transfer; a
            // full table, the one idle longest: a transfer in progress
            // (touched every round trip) outlives first blocks sent and
            // left. Both counted.
            let host = key.0.ip();
            let mine = self.transfers.keys().filter(|k| k.0.ip() == host).count();
            let evict = if mine >= MAX_TRANSFERS_PER_HOST {
                self.oldest_transfer(|k| k.0.ip() == host)
            } else if self.transfers.len() >= MAX_TRANSFERS {
                self.oldest_transfer(|_| true)
            } else {
                None
            };
            if let Some(old) = evict {
                self.transfers.remove(&old);
                out.error("too_many_transfers", "Block1 transfer table full: the oldest idle transfer dropped");
            }
            self.transfers.insert(
                key.clone(),
                Transfer {
                    next: 0,
                    szx,
                    body: Vec::new(),
                    touched: now,
                },
            );
        }
        let incomplete =
            || Answer::error(ResponseType::RequestEntityIncomplete, "block out of order");
        let Some(t) = self.transfers.get_mut(&key) else {
            out.error("block1_incomplete", format!("block {num} without block 0"));
            return Err(incomplete());
        };
        // The block just taken, again (its 2.31 was lost and the client
        // resent it, under a new Message ID or after the duplicate cache
        // forgot the old one): answered alike, the body unchanged.
        if more && num + 1 == t.next && szx == t.szx {
            let at = (num as usize).saturating_mul(size);
            if t.body.get(at..) == Some(payload) {
                t.touched = now;
                return Err(Answer::new(ResponseType::Continue)
                    .with(CoapOption::Block1, message::uint(v)));
            }
        }
        // The client may lower the block size mid-transfer (§2.5); the
        // position in bytes must still match.
        if t.body.len() != (num as usize).saturating_mul(size) || szx > t.szx {
            out.error("block1_incomplete", format!("block {num} out of order"));
            self.transfers.remove(&key);
            return Err(incomplete());
        }
        if t.body.len() + payload.len() > self.limits.max_body_bytes {
            out.error(
                "body_too_large",
                format!("over {} bytes", self.limits.max_body_bytes),
            );
            self.transfers.remove(&key);
            let max = u32::try_from(self.limits.max_body_bytes).unwrap_or(u32::MAX);
            return Err(Answer::new(ResponseType::RequestEntityTooLarge)
                .with(CoapOption::Size1, message::uint(max)));
        }
        t.body.extend_from_slice(payload);
        t.next = num + 1;
        t.szx = szx;
        t.touched = now;
        if more {
            return Err(
                Answer::new(ResponseType::Continue).with(CoapOption::Block1, message::uint(v))
            );
        }
        let body = self
            .transfers
            .remove(&key)
            .map(|t| t.body)
            .unwrap_or_default();
        Ok((body, message::uint(v)))
    }
}

impl Handler {
    /// Remembers the answer to a transfer's last block (Block1 `value`,
    /// `last` its payload) for [`FINISHED_KEPT`]: as many as transfers are
    /// held, a host holding its share or a full table giving up the oldest.
    pub(super) fn block1_done(
        &mut self,
        key: (SocketAddr, String),
        value: &[u8],
        last: &[u8],
        answer: &Answer,
        now: Instant,
    ) {
        let host = key.0.ip();
        if !self.finished.contains_key(&key) {
            let mine = self.finished.keys().filter(|k| k.0.ip() == host).count();
            let evict = if mine >= MAX_TRANSFERS_PER_HOST {
                self.oldest_finished(|k| k.0.ip() == host)
            } else if self.finished.len() >= MAX_TRANSFERS {
                self.oldest_finished(|_| true)
            } else {
                None
            };
            if let Some(old) = evict {
                self.finished.remove(&old);
            }
        }
        self.finished.insert(
            key,
            Finished {
                value: value.to_vec(),
                last: last.to_vec(),
                answer: answer.clone(),
                at: now,
            },
        );
    }

    fn oldest_finished(
        &self,
        which: impl Fn(&(SocketAddr, String)) -> bool,
    ) -> Option<(SocketAddr, String)> {
        self.finished
            .iter()
            .filter(|(k, _)| which(k))
            .min_by_key(|(_, f)| f.at)
            .map(|(k, _)| k.clone())
    }

    /// The transfer idle longest among those `which` selects.
    fn oldest_transfer(&self, which: impl Fn(&(SocketAddr, String)) -> bool) -> Option<(SocketAddr, String)> {
        self.transfers
            .iter()
            .filter(|(k, _)| which(k))
            .min_by_key(|(_, t)| t.touched)
            .map(|(k, _)| k.clone())
    }
}
