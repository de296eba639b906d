//! Lines without their own time whose node stopped waiting for their `ok`,
//! so that the resend the node owes them is taken for what it is.
//!
//! A line whose readings carry no time of their own (the gateway stamps
//! its arrival) is not keyed by the pipeline: an equal line is an equal new
//! reading, the same temperature a minute later. But while the journal
//! cannot be written (a full state directory) the gateway holds lines
//! unanswered, and a node with `ack` closes its socket after its timeout
//! and sends them again on its next connection: the same reading, counted
//! twice once the disk had room.
//!
//! What tells a resend from a repeat is that the first copy was never
//! answered to the node: a line of a connection that ended (or whose node
//! stopped sending on it) without the `ok` that covers it is remembered
//! here, by the node's address and a digest of the line. A later line from
//! the same address with the same digest takes its place: it is not handed
//! on again, and is answered `ok` when the remembered line is durable (at
//! once if it already is). Each remembered line stands for one resend, so a
//! resend followed by an equal new reading on the same connection is one
//! copy and one reading. A line answered `ok` is never remembered, so an
//! equal line after it is new; and a connection from that address whose
//! every line was answered says the node holds nothing older any more
//! (the reference node resends its whole queue first), so what it did not
//! resend is forgotten rather than merged with a later equal reading.
//!
//! This assumes what the `ack` protocol asks of a node: it keeps a line
//! until an `ok` covers it and sends it again on its next connection. A
//! sender that ignores `ok`, sends an equal line while the first one is
//! held and its connection has ended, is answered `ok` for a line counted
//! once.

use std::collections::VecDeque;
use std::net::IpAddr;

use futures::future::{FutureExt, Shared};
use gateway_core::telemetry::Gauge;
use gateway_core::ReceiptWaiter;

/// Remembered lines of one adapter at most: a fleet of nodes that each
/// keep a small queue (the reference node keeps 18) fits many times over;
/// the oldest goes first.
pub const MAX_UNANSWERED: usize = 2048;

/// Lines remembered now, per adapter (a gauge).
pub const LINE_UNANSWERED: &str = "edge_gateway_line_unanswered_lines";

/// A receipt that a line's connection and the connection of its resend
/// both wait for.
pub(crate) type Done = Shared<ReceiptWaiter>;

/// Makes a receipt's waiter shareable.
pub(crate) fn shareable(waiter: ReceiptWaiter) -> Done {
    waiter.shared()
}

struct Line {
    ip: IpAddr,
    digest: u64,
    done: Done,
    /// When it was remembered (a counter, not a clock).
    seq: u64,
}

/// The remembered lines of one adapter, oldest first.
pub(crate) struct Unanswered {
    lines: VecDeque<Line>,
    next: u64,
    gauge: Gauge,
}

impl Unanswered {
    pub fn new(gauge: Gauge) -> Self {
        Self {
            lines: VecDeque::new(),
            next: 0,
            gauge,
        }
    }

    /// Where the lines remembered from now on begin: a connection takes
    /// it when it opens, to [`settle`](Self::settle) only older ones.
    pub fn mark(&self) -> u64 {
        self.next
    }

    /// Remembers a line from `ip` never answered `ok` to its node.
    pub fn remember(&mut self, ip: IpAddr, digest: u64, done: Done) {
        if self.lines.len() == MAX_UNANSWERED {
            self.lines.pop_front();
        }
        self.lines.push_back(Line {
            ip,
            digest,
            done,
            seq: self.next,
        });
        self.next += 1;
        self.gauge.set(self.lines.len() as f64);
    }

    /// The receipt of a remembered line from `ip` with `digest`, the
    /// oldest, which a resend takes (and the line is forgotten: it stands
    /// for one resend only).
    pub fn claim(&mut self, ip: IpAddr, digest: u64) -> Option<Done> {
        if self.lines.is_empty() {
            return None;
        }
        let i = self
            .lines
            .iter()
            .position(|l| l.ip == ip && l.digest == digest)?;
        let line = self.lines.remove(i)?;
        self.gauge.set(self.lines.len() as f64);
        Some(line.done)
    }

    /// A connection from `ip` opened at `mark` had every line answered:
    /// the node holds nothing it sent before, so lines of `ip` remembered
    /// before that and not resent are not coming again.
    pub fn settle(&mut self, ip: IpAddr, mark: u64) {
        if self.lines.is_empty() {
            return;
        }
        self.lines.retain(|l| l.ip != ip || l.seq >= mark);
        self.gauge.set(self.lines.len() as f64);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use gateway_core::{Receipt, Telemetry};

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn unanswered() -> (Unanswered, Telemetry) {
        let telemetry = Telemetry::default();
        let gauge = telemetry.gauge(LINE_UNANSWERED, &[]);
        (Unanswered::new(gauge), telemetry)
    }

    fn done() -> (Receipt, Done) {
        let (receipt, waiter) = Receipt::new(None);
        (receipt, shareable(waiter))
    }

    #[tokio::test]
    async fn a_remembered_line_stands_for_one_resend_from_its_own_node() {
        let (mut u, telemetry) = unanswered();
        let (receipt, d) = done();
        u.remember(ip(1), 7, d);
        assert!(u.claim(ip(2), 7).is_none(), "another node's equal line");
        assert!(u.claim(ip(1), 8).is_none(), "another line");
        let resend = u.claim(ip(1), 7).unwrap();
        assert!(u.claim(ip(1), 7).is_none(), "the next equal line is new");
        assert_eq!(telemetry.gauges(LINE_UNANSWERED)[0].1, 0.0);
        receipt.complete();
        assert!(resend.await.is_ok(), "answered when the first copy is");
    }

    #[tokio::test]
    async fn an_answered_connection_forgets_what_its_node_did_not_resend() {
        let (mut u, telemetry) = unanswered();
        let (_r1, d1) = done();
        let (_r2, d2) = done();
        let (_r3, d3) = done();
        u.remember(ip(1), 7, d1);
        u.remember(ip(2), 7, d2);
        let mark = u.mark();
        u.remember(ip(1), 9, d3);
        u.settle(ip(1), mark);
        assert!(u.claim(ip(1), 7).is_none(), "older, not resent: forgotten");
        assert!(u.claim(ip(1), 9).is_some(), "newer than the connection");
        assert!(u.claim(ip(2), 7).is_some(), "another node's");
        assert_eq!(telemetry.gauges(LINE_UNANSWERED)[0].1, 0.0);
    }

    #[test]
    fn the_oldest_goes_past_the_bound() {
        let (mut u, _telemetry) = unanswered();
        let mut receipts = Vec::new();
        for i in 0..=MAX_UNANSWERED as u64 {
            let (r, d) = done();
            receipts.push(r);
            u.remember(ip(1), i, d);
        }
        assert!(u.claim(ip(1), 0).is_none());
        assert!(u.claim(ip(1), MAX_UNANSWERED as u64).is_some());
    }
}
