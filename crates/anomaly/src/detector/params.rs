//! The detector's few tunable numbers, as one value.
//!
//! Every default here is the one the cross-validation harness
//! (`examples/nab_cv.rs`) chose: picked on four fifths of the NAB
//! development files and scored on the fifth, five times over, under the
//! false-alarm limit on clean synthetic series. A user turns one knob,
//! `sensitivity`, which moves all of them together from these defaults.

use gateway_core::config::DEFAULT_SENSITIVITY;

/// The tunable numbers of the detector at the default sensitivity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// The sustained-shift test fires when its standardised score exceeds
    /// this.
    pub shift: f64,
    /// ...and the strongest level deviation, averaged over the last dozen
    /// readings, is beyond this many of its own spreads: unusual against
    /// how the evidence usually runs is not enough when the evidence is
    /// a level that wanders by chance (white noise averaged, a random
    /// walk).
    pub floor: f64,
    /// The new-territory test fires beyond the recent range by this
    /// fraction of its width...
    pub range: f64,
    /// ...and by at least this many spreads of the series: in noise that
    /// is close to Gaussian the range is only 7–8 spreads wide, and a new
    /// extreme a fraction of a spread beyond it is chance, not news.
    pub range_sd: f64,
    /// The novelty test fires when a feature exceeds its largest
    /// remembered deviation by this factor.
    pub novelty: f64,
    /// Readings per block of the new-territory test's ring of 16 blocks:
    /// the range is what the series covered over the last 15–16 blocks
    /// (about 8 000 readings at 512: an hourly series' last 11 months, a
    /// minute series' last 5 days).
    pub range_block: u32,
    /// A step of more than this many step spreads to a new extreme is a
    /// jump, which the new-territory test reports without the spread
    /// margin. (At 4, one Gaussian step in 16 000 qualifies: white noise
    /// then raised five false alarms in 600 000 readings this way.)
    pub jump: f64,
    /// Per-reading decay of the remembered peak deviations the novelty
    /// test compares with: the slower, the longer a series' largest
    /// habitual moves (a weekday's morning rise, seen after a weekend)
    /// stay known.
    pub peak_decay: f64,
    /// Readings without any test holding after which a detection's alert
    /// clears and the detector may fire again.
    pub quiet: u64,
    /// The seasonal test judges each half hour on how far the series
    /// usually strays from its profile at that half hour, but at most this
    /// many times as sensitively as on the day's spread: a quiet half
    /// hour's spread is learned from a few readings a day, and a low
    /// estimate by chance must not turn the day's ordinary residual into
    /// alerts.
    pub half_hour_gain: f64,
    /// Whether the first family's tests (stuck, range, shift, novelty)
    /// may fire: off only to measure the second family alone.
    pub first_family: bool,
    /// The spans counted in readings (the levels' smoothing, the evidence's
    /// average, the memories, the warm-up, the quiet period, the decays)
    /// were chosen at one reading every 5 minutes. A series read slower
    /// shortens them in proportion to its interval, down to this fraction
    /// (a 10-minute series at 0.5 keeps the 5-minute series' spans in
    /// time). 1 counts every span in readings whatever the rate, as the
    /// detector always did. See docs/anomaly-experiments.md, "Series read
    /// less often".
    pub rate_floor: f64,
    /// Whether a reading at a level the series has not taken lately,
    /// between levels it takes, is novel (see `levels`).
    pub unusual_levels: bool,
    /// The second family, the adaptive-resonance categoriser of the
    /// series' recent shape (see `resonance`): a novel window fires when
    /// its mismatch is beyond this many deviations of the series' own
    /// mismatches; infinite leaves it off (on by default since it catches
    /// faults of shape the first family misses on the building checks,
    /// NAB and SKAB unmoved: `docs/anomaly-experiments.md`).
    pub resonance_tail: f64,
    /// ...its readings per sample of the window...
    pub resonance_down: u32,
    /// ...and its starting (upper) vigilance.
    pub resonance_vigilance: f64,
    /// The other second family, the discord (see `discord`): a window
    /// fires when its distance to its nearest earlier neighbour (averaged
    /// over two windows) is beyond this multiple of the largest that
    /// distance has lately been on the series; infinite leaves it off...
    pub discord_tail: f64,
    /// ...its readings per sample...
    pub discord_down: u32,
    /// ...and its samples per window.
    pub discord_length: usize,
}

impl Params {
    /// The defaults, as chosen by cross-validation.
    pub const DEFAULT: Self = Self {
        shift: 3.0,
        floor: 3.5,
        range: 0.05,
        range_sd: 1.0,
        novelty: 1.3,
        range_block: 512,
        jump: 5.0,
        peak_decay: 0.99997,
        quiet: 100,
        half_hour_gain: 2.0,
        first_family: true,
        rate_floor: 1.0,
        unusual_levels: true,
        resonance_tail: 3.0,
        resonance_down: 8,
        resonance_vigilance: 0.9,
        discord_tail: f64::INFINITY,
        discord_down: 8,
        discord_length: 16,
    };

    /// These parameters moved to `sensitivity` in (0, 1] (higher alerts on
    /// smaller deviations); at [`DEFAULT_SENSITIVITY`] they are unchanged.
    pub fn at_sensitivity(self, sensitivity: f64) -> Self {
        let more = clamp_sensitivity(sensitivity) - DEFAULT_SENSITIVITY;
        Self {
            shift: self.shift - 2.0 * more,
            floor: self.floor * (1.0 - more),
            range: self.range * (1.0 - more),
            novelty: (self.novelty - 0.6 * more).max(1.0),
            ..self
        }
    }
}

impl Params {
    /// These parameters for a series whose spans are `rate` (at most 1) of
    /// the ones counted in readings: the decays per reading steeper, the
    /// quiet period and the range's blocks shorter.
    pub(super) fn at_rate(self, rate: f64) -> Self {
        if rate >= 1.0 {
            return self;
        }
        Self {
            peak_decay: self.peak_decay.powf(1.0 / rate),
            quiet: ((self.quiet as f64) * rate).round().max(1.0) as u64,
            range_block: ((f64::from(self.range_block)) * rate).round().max(1.0) as u32,
            ..self
        }
    }
}

/// Readings after which a series' interval is known well enough for its
/// spans to follow it...
const RATE_KNOWN: u64 = 10;
/// ...and the shortest those spans get, whatever the floor asked: the
/// shortest level's smoothing (4 readings) stays a reading or more.
const MOST_SHORTENED: f64 = 0.25;

/// The fraction of the spans counted in readings that a series read every
/// `interval_ms` keeps, after `readings` readings (see
/// [`Params::rate_floor`]): 1 for a series read every 5 minutes or faster,
/// or whose interval is not known yet.
pub(super) fn rate_of(interval_ms: f64, readings: u64, p: &Params) -> f64 {
    if p.rate_floor >= 1.0 || interval_ms <= 0.0 || readings <= RATE_KNOWN {
        return 1.0;
    }
    (super::CHOSEN_AT_MS / interval_ms).clamp(p.rate_floor.max(MOST_SHORTENED), 1.0)
}

impl Default for Params {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Sensitivity pulled into (0, 1]; the default when not a number.
pub fn clamp_sensitivity(sensitivity: f64) -> f64 {
    if sensitivity.is_finite() {
        sensitivity.clamp(0.01, 1.0)
    } else {
        DEFAULT_SENSITIVITY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: f64 = 60_000.0;

    #[test]
    fn spans_follow_the_interval_only_when_asked_and_only_for_slow_series() {
        let off = Params::DEFAULT;
        let half = Params {
            rate_floor: 0.5,
            ..Params::DEFAULT
        };
        let tenth = Params {
            rate_floor: 0.1,
            ..Params::DEFAULT
        };
        // The default counts every span in readings, whatever the rate.
        assert_eq!(rate_of(10.0 * MINUTE, 500, &off), 1.0);
        // Asked: a 10-minute series keeps half, a 1-minute one all...
        assert_eq!(rate_of(10.0 * MINUTE, 500, &half), 0.5);
        assert_eq!(
            rate_of(7.5 * MINUTE, 500, &half),
            300_000.0 / (7.5 * MINUTE)
        );
        assert_eq!(rate_of(MINUTE, 500, &half), 1.0);
        // ...an hourly one no less than the floor, nor ever below a
        // quarter (the 4-reading level would average less than a reading).
        assert_eq!(rate_of(60.0 * MINUTE, 500, &half), 0.5);
        assert_eq!(rate_of(60.0 * MINUTE, 500, &tenth), MOST_SHORTENED);
        // Before its interval is known, a series counts in readings.
        assert_eq!(rate_of(60.0 * MINUTE, RATE_KNOWN, &half), 1.0);
        assert_eq!(rate_of(0.0, 500, &half), 1.0);
    }

    #[test]
    fn at_a_rate_the_per_reading_numbers_keep_their_span_in_time() {
        let p = Params::DEFAULT;
        assert_eq!(p.at_rate(1.0), p);
        let half = p.at_rate(0.5);
        // Two readings at half the rate decay as much as one did.
        assert!((half.peak_decay - p.peak_decay * p.peak_decay).abs() < 1e-12);
        assert_eq!(half.quiet, p.quiet / 2);
        assert_eq!(half.range_block, p.range_block / 2);
        // The thresholds are not spans.
        assert_eq!(
            (half.shift, half.floor, half.novelty),
            (p.shift, p.floor, p.novelty)
        );
    }
}
