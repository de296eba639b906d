//! Wall-clock time as the pipeline sees it.
//!
//! Windows are aligned to UTC, so they need wall time; tests need that time
//! to follow tokio's paused clock. Components take an `Arc<dyn Clock>`.
//! [`retention`] says what time a store may prune against when the wall
//! clock may be the wrong one.

pub mod retention;
pub mod zone;

pub use retention::RetentionClock;
pub use zone::{UnknownZone, WallClock, Zone};

use crate::model::Timestamp;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Wall time that advances with tokio's clock from a fixed start, so a test
/// with `start_paused = true` controls it with `tokio::time::advance`.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start: Timestamp,
    origin: tokio::time::Instant,
}

impl TokioClock {
    pub fn starting_at(start: Timestamp) -> Self {
        Self {
            start,
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let elapsed = tokio::time::Instant::now().duration_since(self.origin);
        self.start
            .saturating_add_millis(i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
    }
}

/// No wall clock reading before this instant (ms since the epoch) is
/// believed: the gateway did not exist yet. A Raspberry Pi has no
/// real-time clock and boots in 1970, or at its last shutdown time, until
/// NTP answers. A fixed date of the release rather than the build time
/// keeps builds reproducible; move it forward at each release.
/// 2026-11-01T00:00:00Z.
pub const EARLIEST_PLAUSIBLE_MS: i64 = 1_793_491_200_000;

/// Whether `now` can be a real wall-clock time (see [`EARLIEST_PLAUSIBLE_MS`]).
pub fn is_plausible(now: Timestamp) -> bool {
    now.as_millis() >= EARLIEST_PLAUSIBLE_MS
}

/// How far ahead of the gateway clock a reading's own time is still
/// believed. Within it the gateway's clock is as likely to be wrong as the
/// sensor's (a Pi whose clock NTP has not corrected yet, or stepped back):
/// the reading is placed by its own time and its window waits for the
/// clock. Beyond it the sensor's clock is the wrong one, and a window
/// held open for longer would cost its memory for that long. One day
/// covers the steps the gateway's own clock takes (minutes at boot, a day
/// for a bad RTC battery); a window per `window` of it per series is the
/// worst it costs.
pub const OWN_TIME_HORIZON_MS: i64 = 24 * 3600 * 1000;

/// Why a reading stamped with its own `time` is refused before it is
/// acknowledged, as a snake_case reason (`err N <reason>` on a line
/// input, the `error_type` of its counter); `None` when it is taken.
/// Only times that no clock error of the gateway's can explain are
/// refused: before this release (the sensor's clock is not set), or more
/// than [`OWN_TIME_HORIZON_MS`] ahead of a gateway clock that is itself
/// set. Everything else is taken, placed by its own time, and never
/// dropped afterwards for it.
pub fn own_time_refusal(time: Timestamp, now: Timestamp) -> Option<&'static str> {
    if time.as_millis() < EARLIEST_PLAUSIBLE_MS {
        return Some(TIME_BEFORE_RELEASE);
    }
    if is_plausible(now) && time.as_millis() > now.as_millis().saturating_add(OWN_TIME_HORIZON_MS) {
        return Some(TIME_TOO_FAR_AHEAD);
    }
    None
}

/// [`own_time_refusal`]: a reading's own time is before this release.
pub const TIME_BEFORE_RELEASE: &str = "time_before_release";
/// [`own_time_refusal`]: a reading's own time is a day or more ahead.
pub const TIME_TOO_FAR_AHEAD: &str = "time_too_far_ahead";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_times_are_refused_only_where_no_gateway_clock_error_explains_them() {
        let now = Timestamp::default().saturating_add_millis(EARLIEST_PLAUSIBLE_MS + 86_400_000);
        let unset = Timestamp::default();
        let at = |d: i64| now.saturating_add_millis(d);
        assert_eq!(own_time_refusal(at(0), now), None);
        assert_eq!(own_time_refusal(at(-86_400_000), now), None, "a day behind");
        assert_eq!(
            own_time_refusal(at(600_000), now),
            None,
            "ten minutes ahead"
        );
        assert_eq!(own_time_refusal(at(OWN_TIME_HORIZON_MS), now), None);
        assert_eq!(
            own_time_refusal(at(OWN_TIME_HORIZON_MS + 1), now),
            Some(TIME_TOO_FAR_AHEAD)
        );
        assert_eq!(
            own_time_refusal(at(-86_400_001), now),
            Some(TIME_BEFORE_RELEASE)
        );
        // Nothing is ahead of a clock that is not set.
        assert_eq!(own_time_refusal(at(OWN_TIME_HORIZON_MS * 3), unset), None);
    }

    #[test]
    fn the_floor_is_the_first_of_november_2026() {
        let floor = Timestamp::parse_rfc3339("2026-11-01T00:00:00Z").map(Timestamp::as_millis);
        assert_eq!(floor, Ok(EARLIEST_PLAUSIBLE_MS));
        assert!(!is_plausible(Timestamp::default()));
        assert!(is_plausible(
            Timestamp::default().saturating_add_millis(EARLIEST_PLAUSIBLE_MS)
        ));
    }
}
