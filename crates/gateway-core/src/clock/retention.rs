//! The time that retention may prune against.
//!
//! Pruning by age deletes for good. The wall clock of a Raspberry Pi is
//! the input most often wrong (no RTC, NTP late at boot or stepping by
//! days, a flat RTC battery), and a clock 40 days ahead at a restart would
//! otherwise erase 30 days of history in one prune. So retention prunes
//! against a *stable* time:
//!
//! - the wall time, once it has gone that long ([`SETTLE`]) without a step
//!   (a difference beyond [`STEP`] between how far the wall clock and the
//!   monotonic clock moved from one look to the next);
//! - while it has not, the last wall time believed, advanced by the
//!   monotonic clock; with none yet (a process that has not watched the
//!   clock settle), nothing is pruned by age at all;
//! - and never more than the retention past the newest data the store
//!   holds: a store whose newest window is an hour old keeps that hour,
//!   however far ahead a clock that looked stable is.
//!
//! Space (`max_bytes`) is not time: it still prunes oldest first.
//!
//! Pure logic: the caller passes both clocks' readings.

use std::time::Duration;

use tokio::time::Instant;

use super::is_plausible;
use crate::model::Timestamp;

/// A difference between how far the wall and the monotonic clock moved,
/// from one look to the next, beyond this is a step (NTP slews smaller
/// errors instead of stepping).
pub const STEP: Duration = Duration::from_secs(60);

/// How long the wall clock must go without a step before retention
/// believes it. NTP corrects a Pi's clock within minutes of boot when the
/// network is there; an hour also covers a slow link and an operator's
/// `date -s`, and is the history's prune interval, so a clock that was
/// wrong at a restart is watched through one whole interval before the
/// first prune by age. The cost is an hour more of data kept after a
/// restart, which `max_bytes` still bounds.
pub const SETTLE: Duration = Duration::from_secs(3600);

/// Prunes by age skipped because the wall clock has not been stable for
/// [`SETTLE`] since this process started, labelled by `store`.
pub const RETENTION_DEFERRED: &str = "edge_gateway_retention_deferred_total";

/// Watches the wall clock against the monotonic one and says what time
/// retention may prune against.
#[derive(Debug, Clone)]
pub struct RetentionClock {
    settle: Duration,
    /// Wall time (ms) and monotonic time at the last look.
    last: Option<(i64, Instant)>,
    /// Since when (monotonic) the wall clock has not stepped.
    steady_since: Option<Instant>,
    /// The last wall time believed (ms), and when (monotonic).
    believed: Option<(i64, Instant)>,
}

impl Default for RetentionClock {
    fn default() -> Self {
        Self::new(SETTLE)
    }
}

impl RetentionClock {
    pub fn new(settle: Duration) -> Self {
        Self {
            settle,
            last: None,
            steady_since: None,
            believed: None,
        }
    }

    /// Looks at both clocks; returns the stable time (ms since the epoch),
    /// or `None` while there is none to believe.
    pub fn observe(&mut self, wall: Timestamp, mono: Instant) -> Option<i64> {
        let wall_ms = wall.as_millis();
        let steady_since = match (self.last, self.steady_since) {
            (Some((last_wall, last_mono)), Some(since)) => {
                let moved = millis(mono.saturating_duration_since(last_mono));
                let step = wall_ms.saturating_sub(last_wall).saturating_sub(moved);
                if u128::from(step.unsigned_abs()) > STEP.as_millis() {
                    mono
                } else {
                    since
                }
            }
            _ => mono,
        };
        self.steady_since = Some(steady_since);
        self.last = Some((wall_ms, mono));
        if is_plausible(wall) && mono.saturating_duration_since(steady_since) >= self.settle {
            self.believed = Some((wall_ms, mono));
            return Some(wall_ms);
        }
        self.believed
            .map(|(at, then)| at.saturating_add(millis(mono.saturating_duration_since(then))))
    }

    /// Looks at both clocks; returns the cutoff for a store whose newest
    /// data is at `newest_ms` (`None`: an empty store): data older than
    /// the cutoff may be deleted. `None`: nothing may be deleted by age.
    pub fn cutoff(
        &mut self,
        wall: Timestamp,
        mono: Instant,
        newest_ms: Option<i64>,
        retention: Duration,
    ) -> Option<i64> {
        retention_cutoff(self.observe(wall, mono), newest_ms, retention)
    }
}

/// The time a store that keeps `retention` prunes against: the stable
/// time `stable_ms`, but never more than `retention` past the store's
/// newest data (`newest_ms`), so nothing newer than that is ever past it.
pub fn prune_now(
    stable_ms: Option<i64>,
    newest_ms: Option<i64>,
    retention: Duration,
) -> Option<i64> {
    let now = stable_ms?;
    Some(newest_ms.map_or(now, |newest| {
        now.min(newest.saturating_add(millis(retention)))
    }))
}

/// The cutoff of a store that keeps `retention` ([`prune_now`] less the
/// retention): data older than it may be deleted.
pub fn retention_cutoff(
    stable_ms: Option<i64>,
    newest_ms: Option<i64>,
    retention: Duration,
) -> Option<i64> {
    prune_now(stable_ms, newest_ms, retention).map(|now| now.saturating_sub(millis(retention)))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::EARLIEST_PLAUSIBLE_MS;

    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;
    const DAY: i64 = 24 * HOUR;
    const RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

    /// A wall time well after the release floor.
    fn at(ms: i64) -> Timestamp {
        Timestamp::default().saturating_add_millis(EARLIEST_PLAUSIBLE_MS + 100 * DAY + ms)
    }

    fn mono(start: Instant, ms: i64) -> Instant {
        start + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }

    /// Looks every minute from `from` to `to` (monotonic ms), with the wall
    /// clock at `wall(mono_ms)`; returns the last answer.
    fn watch(
        c: &mut RetentionClock,
        start: Instant,
        from: i64,
        to: i64,
        wall: impl Fn(i64) -> i64,
    ) -> Option<i64> {
        let mut last = None;
        let mut t = from;
        while t <= to {
            last = c.observe(at(wall(t)), mono(start, t));
            t += MIN;
        }
        last
    }

    #[test]
    fn a_clock_is_believed_only_after_it_has_gone_the_settling_time_without_a_step() {
        let start = Instant::now();
        let mut c = RetentionClock::default();
        assert_eq!(c.observe(at(0), start), None, "nothing watched yet");
        assert_eq!(watch(&mut c, start, MIN, HOUR - MIN, |t| t), None);
        assert_eq!(
            c.observe(at(HOUR), mono(start, HOUR)),
            Some(at(HOUR).as_millis())
        );
    }

    #[test]
    fn a_forward_jump_of_days_prunes_nothing_until_the_clock_has_stayed_there() {
        let start = Instant::now();
        let mut c = RetentionClock::default();
        let newest = at(2 * HOUR).as_millis();
        let before = watch(&mut c, start, 0, 2 * HOUR, |t| t);
        assert_eq!(before, Some(at(2 * HOUR).as_millis()));
        // Forty days ahead from here on.
        let ahead = |t: i64| if t > 2 * HOUR { t + 40 * DAY } else { t };
        for t in (2 * HOUR + MIN..3 * HOUR + MIN).step_by(60_000) {
            let stable = c.observe(at(ahead(t)), mono(start, t));
            assert_eq!(
                stable,
                Some(at(t).as_millis()),
                "the last believed time, advanced by the monotonic clock"
            );
        }
        let stable = c.observe(
            at(ahead(3 * HOUR + 2 * MIN)),
            mono(start, 3 * HOUR + 2 * MIN),
        );
        assert_eq!(stable, Some(at(40 * DAY + 3 * HOUR + 2 * MIN).as_millis()));
        // Believed now, but capped at the retention past the newest data.
        let cutoff = retention_cutoff(stable, Some(newest), RETENTION);
        assert_eq!(cutoff, Some(newest));
    }

    #[test]
    fn a_jump_back_moves_nothing_newer_than_now() {
        let start = Instant::now();
        let mut c = RetentionClock::default();
        assert!(watch(&mut c, start, 0, HOUR, |t| t).is_some());
        // Ten days back, and it stays there.
        let back = |t: i64| if t > HOUR { t - 10 * DAY } else { t };
        let during = watch(&mut c, start, HOUR + MIN, 2 * HOUR, back);
        assert_eq!(during, Some(at(2 * HOUR).as_millis()), "not ten days back");
        let newest = at(HOUR).as_millis();
        let cutoff = retention_cutoff(during, Some(newest), RETENTION);
        assert!(cutoff <= Some(newest - millis(RETENTION) + HOUR));
        // Once settled, the earlier time is believed: it prunes less, and
        // data now "ahead" of it is kept, never deleted or refused.
        let after = watch(&mut c, start, 2 * HOUR + MIN, 2 * HOUR + 2 * MIN, back);
        assert_eq!(after, Some(at(2 * HOUR + 2 * MIN - 10 * DAY).as_millis()));
        let cutoff = retention_cutoff(after, Some(newest), RETENTION);
        assert!(cutoff < Some(newest - millis(RETENTION)));
    }

    #[test]
    fn a_restart_forty_days_ahead_loses_no_window() {
        let start = Instant::now();
        let mut c = RetentionClock::default();
        let newest = at(0).as_millis();
        let ahead = |t: i64| t + 40 * DAY;
        for t in (0..HOUR).step_by(60_000) {
            assert_eq!(
                c.cutoff(at(ahead(t)), mono(start, t), Some(newest), RETENTION),
                None,
                "no history of stability in this process: nothing by age"
            );
        }
        // Stayed there past the settling time: believed, and capped at the
        // retention past the newest data, so its hour stays.
        let cutoff = c.cutoff(at(ahead(HOUR)), mono(start, HOUR), Some(newest), RETENTION);
        assert_eq!(cutoff, Some(newest));
    }

    #[test]
    fn a_clock_before_the_release_is_never_believed() {
        let start = Instant::now();
        let mut c = RetentionClock::new(Duration::from_secs(60));
        let unset = Timestamp::default();
        assert_eq!(c.observe(unset, start), None);
        assert_eq!(c.observe(unset, mono(start, 2 * MIN)), None);
    }

    #[test]
    fn the_cutoff_is_the_retention_before_the_stable_time_or_the_newest_data() {
        let d = Duration::from_secs(3600);
        assert_eq!(retention_cutoff(None, Some(0), d), None);
        assert_eq!(retention_cutoff(Some(10 * HOUR), None, d), Some(9 * HOUR));
        assert_eq!(
            retention_cutoff(Some(10 * HOUR), Some(9 * HOUR + 1), d),
            Some(9 * HOUR)
        );
        assert_eq!(
            retention_cutoff(Some(10 * HOUR), Some(5 * HOUR), d),
            Some(5 * HOUR)
        );
    }
}
