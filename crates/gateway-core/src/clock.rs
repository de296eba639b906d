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
