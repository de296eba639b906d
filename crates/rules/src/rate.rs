//! What a rate rule compares: the reading against the lowest and the
//! highest reading of its series within the span before it.
//!
//! A rise of `delta` within *any* interval no longer than the span ends at
//! some reading, and at that reading it is the reading minus the lowest one
//! of the span before it. So comparing each reading with the extremes of
//! its span finds every such rise (or fall) at the reading that completes
//! it, from the second reading of a series on: a fridge warming fast right
//! after a start raises at once, without waiting for a reading a full span
//! old.
//!
//! The extremes come from two monotonic deques (the sliding-window minimum
//! and maximum): each reading enters once and leaves once, and only
//! readings that can still be an extreme are kept. A deque keeps at most
//! one entry per span / [`RATE_POINTS`] (a reading closer than that to the
//! newest entry, and not beyond it, is not kept), so memory per series is
//! bounded whatever the reading rate: about 2 × 1025 entries, 33 KB, in the
//! worst case of a series rising without pause at a high rate.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Entries per span a deque keeps at most.
pub const RATE_POINTS: i64 = 1024;

/// The readings of one series that can still be the lowest or the highest
/// of the span, oldest first. Times are event-time milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RateWindow {
    /// Values rising from front to back: the front is the span's lowest.
    lows: VecDeque<(i64, f64)>,
    /// Values falling from front to back: the front is the span's highest.
    highs: VecDeque<(i64, f64)>,
}

/// How the reading just added compares with its span.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change {
    /// The reading minus the lowest reading within the span (≥ 0).
    pub rise: f64,
    /// The reading minus the highest reading within the span (≤ 0).
    pub fall: f64,
}

impl RateWindow {
    /// Adds the reading `v` at `now` (not before the previous one) and
    /// compares it with every reading in `[now - span, now]`.
    pub fn push(&mut self, now: i64, v: f64, span_ms: i64) -> Change {
        let oldest = now.saturating_sub(span_ms);
        let merge = (span_ms / RATE_POINTS).max(0);
        keep(&mut self.lows, now, v, oldest, merge, |kept, new| {
            kept >= new
        });
        keep(&mut self.highs, now, v, oldest, merge, |kept, new| {
            kept <= new
        });
        Change {
            rise: self.lows.front().map_or(0.0, |&(_, low)| v - low),
            fall: self.highs.front().map_or(0.0, |&(_, high)| v - high),
        }
    }

    /// Entries held (for the memory bound's test).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lows.len() + self.highs.len()
    }
}

/// One monotonic deque's step: drops the entries `v` outranks
/// (`outranked(kept, v)`) and those older than `oldest`, then keeps `v`
/// unless the newest entry is less than `merge` ms older.
fn keep(
    deque: &mut VecDeque<(i64, f64)>,
    now: i64,
    v: f64,
    oldest: i64,
    merge: i64,
    outranked: impl Fn(f64, f64) -> bool,
) {
    while deque.back().is_some_and(|&(_, kept)| outranked(kept, v)) {
        deque.pop_back();
    }
    while deque.front().is_some_and(|&(t, _)| t < oldest) {
        deque.pop_front();
    }
    if deque.back().is_none_or(|&(t, _)| now - t >= merge) {
        deque.push_back((now, v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPAN: i64 = 600_000;

    fn changes(values: &[(i64, f64)]) -> Vec<(f64, f64)> {
        let mut w = RateWindow::default();
        values
            .iter()
            .map(|&(t, v)| {
                let c = w.push(t, v, SPAN);
                (c.rise, c.fall)
            })
            .collect()
    }

    #[test]
    fn each_reading_is_compared_with_the_extremes_of_its_span() {
        assert_eq!(
            changes(&[
                (0, 5.0),
                (60_000, 3.0),
                (120_000, 6.0),
                (600_000, 4.0),
                // 3.0 at 1 m has left the span; 6.0 at 2 m has not.
                (660_001, 4.5),
                (720_001, 4.5),
            ]),
            [
                (0.0, 0.0),
                (0.0, -2.0),
                (3.0, 0.0),
                (1.0, -2.0),
                (0.5, -1.5),
                (0.5, 0.0),
            ]
        );
    }

    #[test]
    fn a_reading_exactly_one_span_old_still_counts() {
        assert_eq!(changes(&[(0, 1.0), (SPAN, 3.0)])[1], (2.0, 0.0));
        assert_eq!(changes(&[(0, 1.0), (SPAN + 1, 3.0)])[1], (0.0, 0.0));
    }

    #[test]
    fn memory_stays_bounded_at_any_reading_rate() {
        let mut w = RateWindow::default();
        // A reading every 10 ms for an hour, rising without pause: nothing
        // is ever outranked in the lows.
        let mut last = Change {
            rise: 0.0,
            fall: 0.0,
        };
        for i in 0..360_000i64 {
            last = w.push(i * 10, i as f64 * 0.001, SPAN);
            assert!(w.len() <= 2 * (RATE_POINTS as usize + 1), "{}", w.len());
        }
        // The rise over the last span is exact to one merge interval.
        let exact = 60_000.0 * 0.001;
        let merge = (SPAN / RATE_POINTS / 10 + 1) as f64 * 0.001;
        assert!(
            last.rise <= exact + 1e-9 && last.rise >= exact - merge,
            "{last:?}"
        );
    }
}
