//! A reading's time on two clocks.

/// When a reading was taken, twice over: UTC for gaps and ages, and the
/// building's wall clock for the daily and weekly profiles. An office's
/// schedule follows its clocks, so in UTC it moved an hour at each change
/// of daylight saving time and its profiles raised `seasonal` alerts for
/// days afterwards. An `i64` is a time whose wall clock is UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct When {
    pub utc_ms: i64,
    pub local_ms: i64,
}

impl When {
    /// A time whose wall clock is UTC.
    pub const fn utc(ms: i64) -> Self {
        Self {
            utc_ms: ms,
            local_ms: ms,
        }
    }
}

impl From<i64> for When {
    fn from(ms: i64) -> Self {
        Self::utc(ms)
    }
}
