//! The first family's spans, caps and feature indices: what the model
//! counts in readings or deviations, named once for every module of the
//! detector.

/// Long memory, in readings, of every learned distribution.
pub(super) const LONG: f64 = 5000.0;
/// The interval at which the memories counted in readings were chosen (5
/// minutes: NAB's files and most of the fault classes); a series that
/// follows the calendar keeps them as long in time at any faster rate.
pub(super) const CHOSEN_AT_MS: f64 = 300_000.0;
/// Readings seen before the detector may fire at all (about a week of
/// hourly readings)...
pub(super) const WARMUP: u64 = 200;
/// ...and time: a day, so that a minute-by-minute series has seen a night
/// and a day before anything counts as unusual...
pub(super) const WARMUP_MS: i64 = 86_400_000;
/// ...or this many readings, for fast series (one a second) that would
/// otherwise wait 86 400 readings.
pub(super) const WARMUP_MAX: u64 = 1000;
/// Standardised deviations are capped here. A feature that never moved has
/// a near-zero spread, so its first move scores in the millions; capped, a
/// move that recurs (a square wave's edges) is learned as normal after a
/// few occurrences instead of never.
pub(super) const Z_CAP: f64 = 60.0;
/// The largest magnitude learned (see `observe_with`): its square and its
/// steps' squares stay finite in `f64`, and the categoriser's `f32`
/// samples hold it.
pub(super) const LARGEST: f64 = 1e30;
/// A series is stuck when its value has not changed for longer than twice
/// its longest remembered run, and at least this many readings...
pub(super) const STUCK_MIN: f64 = 12.0;
/// ...and only if it normally changes on at least this fraction of
/// readings (a tweet count at 0 all night, a door contact, is not stuck).
pub(super) const STUCK_MOVING: f64 = 0.9;
/// The six tests, one bit each: stuck, range, shift, novelty, and the
/// second families' pattern (the categoriser's, the discord's).
pub(super) const ALL_TESTS: u8 = 0b111111;
/// Smoothing spans, in readings, of the multi-scale level features.
pub(super) const SCALES: [f64; 3] = [4.0, 16.0, 64.0];
/// Number of features.
pub(super) const K: usize = 9;
/// Shift episodes, recent ones counting fully, after which another is a
/// habit rather than an anomaly...
pub(super) const RECURS: f64 = 2.0;
/// ...with this decay per reading (half-life about 1 400 readings: five
/// days of 5-minute readings).
pub(super) const EPISODE_DECAY: f64 = 0.9995;
/// Indices of the 64-reading level features (absolute and detrended).
pub(super) const SLOW: [usize; 2] = [3, 6];
/// Indices of the detrended level features (each level minus the slow
/// baseline).
pub(super) const DETRENDED: [usize; 3] = [4, 5, 6];
/// After a detection, every other feature's distribution keeps only this
/// many readings of history (see [`Norm::forget`](super::Norm::forget)).
pub(super) const AFTER_ALERT: f64 = 200.0;
/// Index of the step feature (the change from the last reading).
pub(super) const STEP: usize = 0;
/// Index of the seasonal feature.
pub(super) const SEASONAL: usize = 7;
/// Index of the noise feature.
pub(super) const NOISE: usize = 8;
/// Span, in readings, of the noise feature's running mean square of the
/// change of step.
pub(super) const NOISE_SPAN: f64 = 16.0;
/// The noise feature read the other way, a collapse (see
/// [`Detector::quiet`](super::Detector::quiet)); not a feature of its own.
pub(super) const QUIET: usize = K;
/// The rate of jumps (see [`Steps`](super::Steps)), judged beside the features.
pub(super) const SPIKES: usize = K + 1;
/// A level the series has not taken lately between levels it takes (see
/// [`Levels`](super::Levels)), judged beside the features.
pub(super) const LEVELS: usize = K + 2;
/// Span of the slow baseline the detrended features are measured from.
pub(super) const BASE: f64 = 500.0;
/// Span, in readings, over which the raw evidence is averaged.
pub(super) const SMOOTH: f64 = 12.0;
/// A reading later than this many typical intervals follows a gap.
pub(super) const GAP: f64 = 4.0;
/// Deviations below this are never novel, however quiet the series was.
pub(super) const NOVEL_FLOOR: f64 = 4.0;
/// Per-reading decay of the longest remembered run of one value (half-life
/// about 7000 readings); the novelty test's peaks decay by
/// [`Params::peak_decay`](super::Params::peak_decay).
pub(super) const RUN_DECAY: f64 = 0.9999;
