//! When to send, and how much: pure, driven by the instants it is given.
//!
//! A batch leaves once `batch_size` points wait or the oldest waiting one
//! has waited `flush_interval`, whichever comes first (`batch_size`, or
//! the smaller size `pace` chose after a timeout); after a failed
//! write, the next one waits for its retry time. "Waiting" means stored
//! and not yet in a request: several requests may be in flight. (A refused batch is bisected right away by the I/O
//! loop, down to the single points that are dead-lettered.)

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub struct Batcher {
    batch_size: usize,
    flush_interval: Duration,
    /// When the oldest unsent record was stored.
    pending_since: Option<Instant>,
    retry_at: Option<Instant>,
}

impl Batcher {
    pub fn new(batch_size: usize, flush_interval: Duration) -> Self {
        Self {
            batch_size: batch_size.max(1),
            flush_interval,
            pending_since: None,
            retry_at: None,
        }
    }

    /// Records were stored (or found in the outbox at start, or put back
    /// by a failed write).
    pub fn stored(&mut self, now: Instant) {
        self.pending_since.get_or_insert(now);
    }

    /// When the next request should go, given the points waiting; `None`
    /// when nothing waits. `draining`: the pipeline has stopped, so there
    /// is nothing to wait for.
    pub fn next_send(&self, waiting_points: usize, draining: bool) -> Option<Instant> {
        let since = self.pending_since?;
        if waiting_points == 0 {
            return None;
        }
        if let Some(at) = self.retry_at {
            return Some(at);
        }
        if draining || waiting_points >= self.batch_size {
            return Some(since);
        }
        Some(gateway_core::deadline::after(since, self.flush_interval))
    }

    /// A batch went out; `left` points still wait. The retry time, if
    /// any, is used up: a write that fails again sets a new one.
    pub fn dispatched(&mut self, left: usize, now: Instant) {
        self.retry_at = None;
        if left == 0 {
            self.pending_since = None;
        } else {
            // What is left was stored before this write went out: it is
            // due at once when it fills a batch, else after the interval.
            self.pending_since = Some(self.pending_since.unwrap_or(now));
        }
    }

    /// Requests carry at most `points` now (fewer after a timeout): a
    /// batch of that many is full and leaves at once, not after
    /// `flush_interval`.
    pub fn resize(&mut self, points: usize) {
        self.batch_size = points.max(1);
    }

    /// A write failed; the next one goes no earlier than `at`.
    pub fn retry_at(&mut self, at: Instant) {
        self.retry_at = Some(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_batch_leaves_when_full_or_when_its_oldest_point_has_waited() {
        let t0 = Instant::now();
        let mut b = Batcher::new(100, Duration::from_secs(1));
        assert_eq!(b.next_send(0, false), None);
        b.stored(t0);
        tokio::time::advance(Duration::from_millis(300)).await;
        b.stored(Instant::now());
        assert_eq!(b.next_send(10, false), Some(t0 + Duration::from_secs(1)));
        assert_eq!(b.next_send(100, false), Some(t0));
        assert_eq!(b.next_send(10, true), Some(t0));
        b.dispatched(0, Instant::now());
        assert_eq!(b.next_send(0, false), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_write_waits_for_its_retry_time_even_when_draining() {
        let t0 = Instant::now();
        let mut b = Batcher::new(8, Duration::from_secs(1));
        b.stored(t0);
        b.retry_at(t0 + Duration::from_secs(5));
        assert_eq!(b.next_send(100, true), Some(t0 + Duration::from_secs(5)));
        b.dispatched(3, t0);
        assert_eq!(b.next_send(3, false), Some(t0 + Duration::from_secs(1)));
        assert_eq!(b.next_send(8, false), Some(t0));
    }
}
