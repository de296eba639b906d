//! What the detector says about a reading, and why.

use serde::{Deserialize, Serialize};

/// Why a detection fired, as in the alert's `reason` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Off what is normal at this time of day or week.
    Seasonal,
    /// The level moved, up or down, and stayed.
    LevelShift,
    /// The value stopped moving where the series normally moves.
    Stuck,
    /// One reading, or a short burst, far off.
    Spike,
    /// A slow move away from the usual level.
    Drift,
    /// The reading-to-reading noise changed.
    Noise,
    /// Spikes, or sudden steps, come far more often than they used to.
    SpikeRate,
    /// A combination of a device's metrics no single one shows.
    Multivariate,
    /// The shape of the last hours is unlike any the series has made
    /// (the second family, the adaptive-resonance categoriser).
    Pattern,
    /// A value between the levels the series takes, where it has not been
    /// lately (a valve stuck half open, a CPU at 60 % that idles at 10
    /// and peaks at 100).
    UnusualLevel,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Seasonal => "seasonal",
            Self::LevelShift => "level_shift",
            Self::Stuck => "stuck",
            Self::Spike => "spike",
            Self::Drift => "drift",
            Self::Noise => "noise",
            Self::SpikeRate => "spike_rate",
            Self::Multivariate => "multivariate",
            Self::Pattern => "pattern",
            Self::UnusualLevel => "unusual_level",
        }
    }
}

/// What the detector says about one reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// Strongest standardised evidence (0 while warming up).
    pub score: f64,
    /// The score the reading had to beat.
    pub threshold: f64,
    /// True when this reading is reported as an anomaly.
    pub anomaly: bool,
    /// True while a reported anomaly is still being held (its quiet
    /// period): the alert clears when this turns false.
    pub active: bool,
    /// Why, when `anomaly`.
    pub reason: Option<Reason>,
    /// The range the reading was expected in (low, high).
    pub expected: (f64, f64),
}
