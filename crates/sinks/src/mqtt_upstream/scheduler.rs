//! Which outbox message goes to the broker next, and which packet id
//! acknowledges which message: the upstream's decisions without its I/O.
//!
//! - On each connection the retained `online` status goes first, then
//!   everything again from the oldest unacknowledged message: what was
//!   there before the connection (the backlog) at the drain rate, what
//!   arrives after at once, so a long outage does not delay new data.
//! - Urgent messages (alerts) overtake both; one sent ahead of the
//!   in-order cursor is remembered so the cursor skips it.
//! - Command results have a lane of their own: after new data, before the
//!   backlog, and never more than half the in-flight window, so a flood of
//!   commands (each with its result) never holds up a window, and the
//!   results still leave as fast as the broker takes them. The in-order
//!   cursors skip them as they skip alerts sent ahead.
//! - Packet ids are paired with messages by the order of the client's
//!   `Outgoing::Publish` events, which follow submission order.
//! - A lost connection forgets every pairing (the client's queues are
//!   emptied by the poller); alerts sent ahead but unacknowledged go first
//!   again on the next connection, the rest come back with the backlog.
//!
//! Time comes in as an argument, so the drain rate is tested with tokio's
//! paused clock.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

/// Sequence numbers in the store, in order: all the scheduler needs to
/// know of it.
pub trait Sequence {
    /// The first stored sequence number above `seq`.
    fn first_after(&self, seq: u64) -> Option<u64>;
    /// The highest sequence number ever stored (0 when none).
    fn last(&self) -> u64;
}

/// What to submit next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// The retained `online` status of this connection.
    Status,
    /// An outbox message; `urgent` when it overtook the cursor.
    Message { seq: u64, urgent: bool },
    /// A command result, from its own lane.
    Result { seq: u64 },
}

/// What a `Sent` or `Acked` event completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completed {
    Status,
    Message(u64),
}

#[derive(Debug)]
pub struct Scheduler {
    cap: usize,
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
    connected: bool,
    status_pending: bool,
    /// Submitted, waiting for their `Outgoing::Publish` (packet id).
    submitted: VecDeque<Pick>,
    /// Packet id → what it carries, until acknowledged.
    inflight: HashMap<u16, Pick>,
    /// Urgent messages stored and not yet submitted.
    urgent: VecDeque<u64>,
    /// Urgent messages submitted ahead of the cursor, not yet acknowledged.
    ahead: HashSet<u64>,
    /// Command results stored and not yet submitted, oldest first.
    results: VecDeque<u64>,
    /// Results waiting or submitted and not yet acknowledged: the
    /// in-order cursors leave them to their lane.
    in_lane: HashSet<u64>,
    /// Results submitted and not yet acknowledged.
    results_out: HashSet<u64>,
    backlog_end: u64,
    backlog_cursor: u64,
    live_cursor: u64,
}

impl Scheduler {
    /// `cap` messages in flight at most; the backlog at `drain_rate` per
    /// second, in bursts of a tenth of a second.
    pub fn new(cap: u16, drain_rate: u32, now: Instant) -> Self {
        let rate = f64::from(drain_rate.max(1));
        let burst = (rate / 10.0).max(1.0);
        Self {
            cap: usize::from(cap.max(1)),
            rate,
            burst,
            tokens: burst,
            refilled: now,
            connected: false,
            status_pending: false,
            submitted: VecDeque::new(),
            inflight: HashMap::new(),
            urgent: VecDeque::new(),
            ahead: HashSet::new(),
            results: VecDeque::new(),
            in_lane: HashSet::new(),
            results_out: HashSet::new(),
            backlog_end: 0,
            backlog_cursor: 0,
            live_cursor: 0,
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Submitted and not yet acknowledged.
    pub fn unacknowledged(&self) -> usize {
        self.submitted.len() + self.inflight.len()
    }

    /// Submitted and not yet written by the client (no packet id yet).
    pub fn unwritten(&self) -> usize {
        self.submitted.len()
    }

    /// A new connection: status first, then the store from its start.
    pub fn connected(&mut self, store: &impl Sequence) {
        self.connected = true;
        self.status_pending = true;
        self.backlog_end = store.last();
        self.backlog_cursor = 0;
        self.live_cursor = self.backlog_end;
    }

    /// The connection is gone; returns how many submissions it took
    /// unacknowledged.
    pub fn lost(&mut self) -> usize {
        let lost = self.unacknowledged();
        self.connected = false;
        self.status_pending = false;
        self.submitted.clear();
        self.inflight.clear();
        let mut again: Vec<u64> = self.ahead.drain().collect();
        again.sort_unstable();
        for seq in again.into_iter().rev() {
            self.urgent.push_front(seq);
        }
        let mut again: Vec<u64> = self.results_out.drain().collect();
        again.sort_unstable();
        for seq in again.into_iter().rev() {
            self.results.push_front(seq);
        }
        lost
    }

    /// Urgent messages just stored, to overtake the rest.
    pub fn push_urgent(&mut self, seqs: impl IntoIterator<Item = u64>) {
        self.urgent.extend(seqs);
    }

    /// Command results just stored, for their lane.
    pub fn push_results(&mut self, seqs: impl IntoIterator<Item = u64>) {
        for seq in seqs {
            self.in_lane.insert(seq);
            self.results.push_back(seq);
        }
    }

    /// Results that may be in flight at once: half the window, so new
    /// data always finds room.
    fn results_cap(&self) -> usize {
        (self.cap / 2).max(1)
    }

    /// Sent by another lane than the in-order cursors'.
    fn elsewhere(&self, seq: u64) -> bool {
        self.ahead.contains(&seq) || self.in_lane.contains(&seq)
    }

    fn next_result(&mut self) -> Option<Pick> {
        if self.results_out.len() >= self.results_cap() {
            return None;
        }
        let seq = self.results.pop_front()?;
        self.results_out.insert(seq);
        Some(Pick::Result { seq })
    }

    /// The next message to submit, if the window and the drain rate allow
    /// one. The caller reads it, then calls [`Self::submitted`] or, when it
    /// could not be submitted, [`Self::unpick`]; a message that cannot be
    /// read is simply dropped from this connection's plan.
    pub fn next(&mut self, store: &impl Sequence, now: Instant) -> Option<Pick> {
        self.refill(now);
        if !self.connected || self.unacknowledged() >= self.cap {
            return None;
        }
        if std::mem::take(&mut self.status_pending) {
            return Some(Pick::Status);
        }
        if let Some(seq) = self.urgent.pop_front() {
            self.ahead.insert(seq);
            return Some(Pick::Message { seq, urgent: true });
        }
        loop {
            let seq = if let Some(seq) = store.first_after(self.live_cursor.max(self.backlog_end)) {
                self.live_cursor = seq;
                seq
            } else if let Some(pick) = self.next_result() {
                return Some(pick);
            } else if self.backlog_cursor < self.backlog_end && self.tokens >= 1.0 {
                match store
                    .first_after(self.backlog_cursor)
                    .filter(|s| *s <= self.backlog_end)
                {
                    Some(seq) => {
                        self.backlog_cursor = seq;
                        // Passing over what another lane sends is free:
                        // thousands of results must not cost the
                        // backlog's windows their drain rate.
                        if self.elsewhere(seq) {
                            continue;
                        }
                        self.tokens -= 1.0;
                        seq
                    }
                    None => {
                        self.backlog_cursor = self.backlog_end;
                        return None;
                    }
                }
            } else {
                return None;
            };
            if !self.elsewhere(seq) {
                return Some(Pick::Message { seq, urgent: false });
            }
        }
    }

    /// `pick` was not submitted (the client's queue was full): it is
    /// offered again next.
    pub fn unpick(&mut self, pick: Pick) {
        match pick {
            Pick::Status => self.status_pending = true,
            Pick::Message { seq, urgent: true } => {
                self.ahead.remove(&seq);
                self.urgent.push_front(seq);
            }
            Pick::Result { seq } => {
                self.results_out.remove(&seq);
                self.results.push_front(seq);
            }
            Pick::Message { seq, urgent: false } => {
                if seq <= self.backlog_end {
                    self.backlog_cursor = seq.saturating_sub(1);
                    self.tokens += 1.0;
                } else {
                    self.live_cursor = seq.saturating_sub(1);
                }
            }
        }
    }

    /// `pick` could not be read from the store: it is not sent on this
    /// connection.
    pub fn skip(&mut self, pick: Pick) {
        match pick {
            Pick::Message { seq, .. } => {
                self.ahead.remove(&seq);
            }
            Pick::Result { seq } => self.settle_result(seq),
            Pick::Status => {}
        }
    }

    fn settle_result(&mut self, seq: u64) {
        self.results_out.remove(&seq);
        self.in_lane.remove(&seq);
    }

    /// `pick` went to the client.
    pub fn submitted(&mut self, pick: Pick) {
        self.submitted.push_back(pick);
    }

    /// The client wrote the oldest submission with packet id `pkid`; with
    /// id 0 (QoS 0) it is complete.
    pub fn sent(&mut self, pkid: u16) -> Option<Completed> {
        let pick = self.submitted.pop_front()?;
        if pkid == 0 {
            Some(self.complete(pick))
        } else {
            self.inflight.insert(pkid, pick);
            None
        }
    }

    /// The broker acknowledged `pkid` (PUBACK, or PUBCOMP for QoS 2).
    pub fn acked(&mut self, pkid: u16) -> Option<Completed> {
        let pick = self.inflight.remove(&pkid)?;
        Some(self.complete(pick))
    }

    fn complete(&mut self, pick: Pick) -> Completed {
        match pick {
            Pick::Status => Completed::Status,
            Pick::Message { seq, .. } => {
                self.ahead.remove(&seq);
                Completed::Message(seq)
            }
            Pick::Result { seq } => {
                self.settle_result(seq);
                Completed::Message(seq)
            }
        }
    }

    /// When the backlog may send again, if it is waiting for a token.
    pub fn backlog_wakeup(&self) -> Option<Instant> {
        let waiting = self.connected
            && self.backlog_cursor < self.backlog_end
            && self.tokens < 1.0
            && self.unacknowledged() < self.cap;
        waiting.then(|| {
            // `rate` is the config's: a tiny one makes a wait no `Duration`
            // holds (`from_secs_f64` would panic).
            let wait = Duration::try_from_secs_f64(((1.0 - self.tokens) / self.rate).max(0.0))
                .unwrap_or(gateway_core::deadline::FAR_FUTURE);
            gateway_core::deadline::after(self.refilled, wait)
        })
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled = now;
    }
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
