//! How many points one request carries: `batch_size` while InfluxDB keeps
//! up, fewer after a write got no answer within `timeout` (pure).
//!
//! A batch the server needs longer for than the timeout allows (a slow
//! disk, a backlog after an outage) times out again if sent again as it
//! is: it was, forever, and nothing after it was written. So a timeout
//! halves the request, down to one point, and quick writes double it back
//! up to `batch_size`. Slowness never drops a point: a single point that
//! still times out is sent again (after the backoff) like any batch.

use std::time::Duration;

/// Quick deliveries in a row before the request size doubles again. One:
/// a server whose time is not proportional to the batch (a step, a
/// cache) would time out every other write, half the time lost to
/// waiting; eight keeps that to one in nine.
const GROW_AFTER: u32 = 8;

#[derive(Debug)]
pub struct Pace {
    limit: usize,
    batch_size: usize,
    /// A write done within this (a quarter of the timeout) is quick: twice
    /// the points should still fit in half the timeout.
    quick: Duration,
    /// Quick deliveries since the size last changed.
    streak: u32,
}

impl Pace {
    pub fn new(batch_size: usize, timeout: Duration) -> Self {
        let batch_size = batch_size.max(1);
        Self {
            limit: batch_size,
            batch_size,
            quick: timeout / 4,
            streak: 0,
        }
    }

    /// The most points the next request carries.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A request of `points` got no answer in time; true if the size shrank.
    ///
    /// Halved from the request's own size, not from the current limit:
    /// the requests in flight beside it, sent at the old size, time out
    /// too, and each halving the limit again would shrink it to one point
    /// for a single slow moment.
    pub fn timed_out(&mut self, points: usize) -> bool {
        self.streak = 0;
        let next = (points / 2).max(1).min(self.limit);
        let shrank = next < self.limit;
        self.limit = next;
        shrank
    }

    /// A delivery wrote `points` (in requests of at most the limit), the
    /// slowest of its requests taking `slowest`; true if the size grew.
    pub fn written(&mut self, points: usize, slowest: Duration) -> bool {
        if slowest > self.quick {
            self.streak = 0;
            return false;
        }
        // A small delivery that was quick says nothing of a full one.
        if self.limit >= self.batch_size || points.saturating_mul(2) < self.limit {
            return false;
        }
        self.streak += 1;
        if self.streak < GROW_AFTER {
            return false;
        }
        self.streak = 0;
        self.limit = self.limit.saturating_mul(2).min(self.batch_size);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(4);
    const QUICK: Duration = Duration::from_millis(100);

    #[test]
    fn timeouts_halve_the_request_down_to_one_point_and_never_below() {
        let mut p = Pace::new(1000, TIMEOUT);
        assert_eq!(p.limit(), 1000);
        assert!(p.timed_out(1000));
        assert_eq!(p.limit(), 500);
        for _ in 0..20 {
            p.timed_out(p.limit());
        }
        assert_eq!(p.limit(), 1);
        assert!(!p.timed_out(1));
        assert_eq!(p.limit(), 1);
    }

    #[test]
    fn requests_in_flight_at_the_old_size_do_not_halve_it_again() {
        let mut p = Pace::new(1000, TIMEOUT);
        p.timed_out(1000);
        assert!(!p.timed_out(1000));
        assert!(!p.timed_out(1000));
        assert_eq!(p.limit(), 500);
        // A smaller request that also timed out says the size is too big.
        assert!(p.timed_out(300));
        assert_eq!(p.limit(), 150);
    }

    #[test]
    fn quick_full_writes_in_a_row_double_it_back_up_to_batch_size() {
        let mut p = Pace::new(1000, TIMEOUT);
        p.timed_out(1000);
        p.timed_out(500);
        assert_eq!(p.limit(), 250);
        for _ in 1..GROW_AFTER {
            assert!(!p.written(250, QUICK));
        }
        assert!(p.written(250, QUICK));
        assert_eq!(p.limit(), 500);
        for _ in 0..GROW_AFTER {
            p.written(500, QUICK);
        }
        assert_eq!(p.limit(), 1000);
        for _ in 0..GROW_AFTER * 2 {
            assert!(!p.written(1000, QUICK));
        }
        assert_eq!(p.limit(), 1000);
    }

    #[test]
    fn a_slow_write_restarts_the_count_and_small_ones_do_not_count() {
        let mut p = Pace::new(1000, TIMEOUT);
        p.timed_out(1000);
        for _ in 1..GROW_AFTER {
            p.written(500, QUICK);
        }
        // Over a quarter of the timeout: twice as many might not fit.
        assert!(!p.written(500, TIMEOUT / 2));
        for _ in 1..GROW_AFTER {
            assert!(!p.written(500, QUICK));
        }
        for _ in 0..GROW_AFTER * 2 {
            assert!(!p.written(10, QUICK));
        }
        assert!(p.written(500, QUICK));
        assert_eq!(p.limit(), 1000);
    }
}
