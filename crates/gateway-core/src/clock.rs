//! Wall-clock time as the pipeline sees it.
//!
//! Windows are aligned to UTC, so they need wall time; tests need that time
//! to follow tokio's paused clock. Components take an `Arc<dyn Clock>`.

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

#[cfg(test)]
mod tests {
    use super::*;

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
