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
    /// The series' previous reading, wherever it is: the only one to
    /// compare with when it is older than the span (a sensor that reports
    /// less often than once a span). State saved before it existed has
    /// none, which the next reading sets.
    #[serde(default)]
    last: Option<(i64, f64)>,
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
    /// compares it with every reading in `[now - span, now]`; when none
    /// but itself is there, with the previous reading, its change scaled
    /// to the span.
    pub fn push(&mut self, now: i64, v: f64, span_ms: i64) -> Change {
        let oldest = now.saturating_sub(span_ms);
        let before = self.last.replace((now, v));
        let merge = (span_ms / RATE_POINTS).max(0);
        keep(&mut self.lows, now, v, oldest, merge, |kept, new| {
            kept >= new
        });
        keep(&mut self.highs, now, v, oldest, merge, |kept, new| {
            kept <= new
        });
        // A battery node reporting every 15 minutes never had two readings
        // within a `+2.0 per 10m` span: its rule could never fire, however
        // fast the fridge warmed. The previous reading, older than the span
        // (every later one would be in it), gives the change over the gap,
        // at the same rate per span: 4.0 then 9.0 fifteen minutes later is
        // +3.33 per 10 m; a slow drift over a long outage stays under.
        if let Some((t, before)) = before.filter(|&(t, _)| t < oldest && now > t) {
            let scaled = (v - before) * span_ms as f64 / (now - t) as f64;
            return Change {
                rise: scaled.max(0.0),
                fall: scaled.min(0.0),
            };
        }
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
        // Just past it: the change over the gap, per span.
        let (rise, fall) = changes(&[(0, 1.0), (2 * SPAN, 3.0)])[1];
        assert_eq!((rise, fall), (1.0, 0.0));
    }

    #[test]
    fn readings_further_apart_than_the_span_compare_at_the_same_rate() {
        // A node every 15 minutes, a 10-minute span: 4.0, 4.5, then 9.0.
        assert_eq!(
            changes(&[(0, 4.0), (900_000, 4.5), (1_800_000, 9.0), (2_700_000, 6.0)]),
            [
                (0.0, 0.0),
                (0.5 / 1.5, 0.0),
                (4.5 / 1.5, 0.0),
                (0.0, -3.0 / 1.5)
            ]
        );
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
