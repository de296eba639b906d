//! When to send, and how much: pure, driven by the instants it is given.
//!
//! A batch leaves once `batch_size` points wait or the oldest waiting one
//! has waited `flush_interval`, whichever comes first; a failed write waits
//! for its retry time; a refused one (400/413) is resent in halves until a
//! single record is left, which is dead-lettered.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub struct Batcher {
    batch_size: usize,
    flush_interval: Duration,
    /// When the oldest unsent record was stored.
    pending_since: Option<Instant>,
    retry_at: Option<Instant>,
    /// Points per request now: `batch_size`, or less while splitting.
    cap: usize,
    /// Points of a refused batch not yet resent: they go without waiting
    /// for the interval again.
    split_left: usize,
}

impl Batcher {
    pub fn new(batch_size: usize, flush_interval: Duration) -> Self {
        Self {
            batch_size: batch_size.max(1),
            flush_interval,
            pending_since: None,
            retry_at: None,
            cap: batch_size.max(1),
            split_left: 0,
        }
    }

    /// Records were stored (or found in the outbox at start).
    pub fn stored(&mut self, now: Instant) {
        self.pending_since.get_or_insert(now);
    }

    /// Points the next request may carry.
    pub fn cap(&self) -> usize {
        self.cap
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
        if draining || waiting_points >= self.batch_size || self.split_left > 0 {
            return Some(since);
        }
        Some(since + self.flush_interval)
    }

    /// A write of `sent` points succeeded; `left` records still wait.
    pub fn written(&mut self, sent: usize, left: usize, now: Instant) {
        self.retry_at = None;
        self.split_left = self.split_left.saturating_sub(sent);
        self.cap = (self.cap.saturating_mul(2)).min(self.batch_size);
        if left == 0 {
            self.pending_since = None;
        } else {
            // What is left was stored before this write went out: it is
            // due at once when it fills a batch, else after the interval.
            self.pending_since = Some(self.pending_since.unwrap_or(now));
        }
    }

    /// A write failed and should be tried again at `at`.
    pub fn retry_at(&mut self, at: Instant) {
        self.retry_at = Some(at);
    }

    /// A batch of `points` was refused as a whole: try halves now. False
    /// when it was a single record already (dead-letter it).
    pub fn split(&mut self, points: usize, records: usize) -> bool {
        if records <= 1 {
            return false;
        }
        self.cap = (points / 2).max(1);
        self.split_left = self.split_left.max(points);
        self.retry_at = None;
        true
    }

    /// A refused record of `points` was set aside: carry on at once.
    pub fn dead_lettered(&mut self, points: usize, left: usize) {
        self.retry_at = None;
        self.split_left = self.split_left.saturating_sub(points);
        if left == 0 {
            self.pending_since = None;
        }
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
        b.written(10, 0, Instant::now());
        assert_eq!(b.next_send(0, false), None);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_wait_and_refusals_split_down_to_one_record() {
        let t0 = Instant::now();
        let mut b = Batcher::new(8, Duration::from_secs(1));
        b.stored(t0);
        b.retry_at(t0 + Duration::from_secs(5));
        assert_eq!(b.next_send(100, true), Some(t0 + Duration::from_secs(5)));
        assert!(b.split(8, 3));
        assert_eq!((b.cap(), b.next_send(100, false)), (4, Some(t0)));
        assert!(b.split(4, 2));
        assert_eq!(b.cap(), 2);
        assert!(!b.split(2, 1));
        // The rest of the refused batch goes at once, then the interval
        // applies again.
        b.written(2, 5, t0);
        assert_eq!((b.cap(), b.next_send(5, false)), (4, Some(t0)));
        b.written(4, 5, t0);
        b.dead_lettered(2, 5);
        assert_eq!(b.cap(), 8);
        assert_eq!(b.next_send(5, false), Some(t0 + Duration::from_secs(1)));
    }
}
