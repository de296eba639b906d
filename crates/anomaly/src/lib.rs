//! Alerts: thresholds, rate of change, silence and a learned anomaly model.
//!
//! Like the aggregator this crate is pure logic over readings: no sockets,
//! no clock of its own (every call takes the time), deterministic results.
//!
//! - [`detector`]: the learned, online anomaly detector, one per device ×
//!   metric, whose whole state is a small serde struct.
//! - [`engine`]: the `[[rule]]` engine (threshold, rate, silence, anomaly)
//!   in event time: readings, status changes and ticks in, alerts out.
//! - [`trigger`]: the raise/clear state machine the rule kinds share
//!   (minimum duration, one clear per raise, cooldown).
//! - [`synthetic`]: seeded test series (level shift, spike, drift, noise
//!   change, clean noise).
//!
//! # The anomaly model
//!
//! The detector sees each reading once, in time order, and decides at once
//! (causal, no look-ahead). Its only knob is `sensitivity` in (0, 1],
//! default [`DEFAULT_SENSITIVITY`]; everything else is learned per series.
//!
//! 1. **Features.** From each reading it derives eight numbers: the step
//!    from the previous reading (the residual of a last-value predictor);
//!    the level smoothed over 4, 16 and 64 readings; the same three levels
//!    minus a slow 500-reading baseline (a shift relative to the recent
//!    past, robust to seasonal drift); and the log of the recent step
//!    variance (a change in noise).
//! 2. **Standardise.** Each feature has a running mean and variance with a
//!    memory of 5 000 readings (exact Welford until then). A reading is
//!    scored *before* it is learned, and what is learned is first clipped to
//!    4 deviations, so an anomaly moves "normal" only slowly. Standardising
//!    each feature against its own history absorbs the series' units and its
//!    autocorrelation, which is why no per-series tuning is needed.
//! 3. **Two detectors in an ensemble.**
//!    - *Sustained shift*: the strongest level deviation, averaged over 12
//!      readings and standardised again against its own history (the
//!      "anomaly likelihood" idea of Numenta's detectors): a level that
//!      stays unusual for hours counts, one odd reading does not. Fires
//!      above `2 + 2·(1 − sensitivity)` (3.0 by default).
//!    - *Novelty*: any feature (a spike in the step, a burst of noise, a
//!      jump in level) beyond 4 deviations *and* beyond 1.4× the largest
//!      deviation that feature showed in its remembered past (a peak that
//!      decays with a half-life of about 7 000 readings). Series with heavy
//!      tails learn their own big peaks; quiet series fire on a clean 4σ.
//! 4. **Suppression.** After a detection the detector stays quiet for 400
//!    readings and keeps learning: one anomaly gives one alert, as the best
//!    NAB detectors do.
//! 5. **Warm-up and gaps.** Nothing fires during the first 300 readings. A
//!    reading after a gap of more than 4 typical intervals is not scored for
//!    its step or noise (the step across a gap says nothing about the
//!    process).
//!
//! Cost: O(1) time, no allocation per reading; about 90–100 ns per reading
//! and 432 bytes per series in memory (1 KB as persisted JSON), measured
//! with `cargo bench -p anomaly --bench detector` on the 2-core build
//! machine. The same bench runs the whole engine with one rule of each kind
//! over 1 000 devices: about 420–540 ns per reading (the higher figure
//! with other builds sharing the machine), 2 KB of persisted state per
//! device.
//!
//! ndarray and linfa were considered and left out: the model is eight
//! scalar running statistics updated per reading, which a fixed array does
//! with no allocation; linfa's estimators are batch fits (KMeans, GMM, SVM)
//! that would need a buffered history per series and a refit schedule, both
//! at odds with "online, a few hundred bytes per series".
//!
//! # Figures
//!
//! NAB standard profile, default sensitivity, measured with
//! `cargo run -p anomaly --release --example nab -- FILE.csv windows.json`
//! on the series in `/work/shared/data/nab/` (best published in brackets):
//!
//! | series | score | detections |
//! |---|---|---|
//! | ambient_temperature_system_failure (2 windows) | 1.50 (1.76) | both windows near their centre (+0.859, +0.863), 2 false positives (−0.22) |
//! | art_daily_jumpsup (1 window) | 0.86 (0.861) | the jump, at the window's centre |
//!
//! The two false positives on the temperature series are real oddities the
//! labels do not count: an 8 °F one-hour dip in August and a day of
//! unusually low temperature in February.
//!
//! Synthetic series (AR(1) noise with a daily sine, 20 seeded runs of 10 000
//! readings, anomaly at reading 6 000), from
//! `cargo run -p anomaly --release --example synthetic`:
//!
//! | shape | detected | median delay (readings) |
//! |---|---|---|
//! | level shift +4σ | 20/20 | 54 |
//! | level shift −3σ | 20/20 | 17 |
//! | spike +8σ | 18/20 | 0 |
//! | drift +6σ over 500 readings | 20/20 | 156 |
//! | noise ×3 | 20/20 | 9 |
//!
//! False alarms on clean noise: 0 per 10 000 readings in the 10 000-reading
//! runs, 0.54 per 10 000 over 50 000-reading runs (`-- --readings 50000`).
//!
//! # Why the temperature series stops at 1.50
//!
//! Both windows are caught where the failure is labelled, at the window's
//! centre, which the scoring sigmoid rates +0.86; even a detection at the
//! very start of a window earns at most +1. Without the two false
//! positives the score would be 1.72, so beating 1.76 needs both silencing
//! them and detecting each failure about a day earlier. The two false
//! positives are the largest one-hour step of the whole series and a day
//! colder than any since the autumn: silencing them means ignoring exactly
//! what the detector exists to report. These were measured and left out
//! (ambient score; synthetic table from the `synthetic` example):
//!
//! - *Another sensitivity*: 0.4–0.6 all score 1.50–1.51; 0.7–0.8 add a false
//!   positive (1.40–1.43); 0.3 misses a window (−0.26).
//! - *A Page–Hinkley accumulator* on the standardised shift score, beside
//!   the threshold (slack 1–2, limit 5–20): the two windows gain +0.01
//!   together, but 1–3 more false positives (1.18–1.40) and 1.4–6× the
//!   false alarms before the anomaly in the synthetic runs.
//! - *Agreement of two views* (the shift must be unusual both against the
//!   long-run level and against the 500-reading baseline: minimum or
//!   geometric mean of the two instead of the maximum): earlier windows
//!   (+0.886/+0.872 with the minimum) but 3–5 false positives (1.21–1.40)
//!   and false alarms on clean noise (0.05–0.16 per 10 000). Sensitivity
//!   0.3 to compensate scores 1.62, but delays the drift from 156 to 353
//!   readings and drops the +8σ spike from 18/20 to 12/20 runs.
//! - *A daily profile*: the office's hour-of-day profile (±1.2 °F) is small
//!   next to the failures (≈10 °F over days), which the 16- and 64-reading
//!   levels already average across the day.

pub mod detector;
pub mod engine;
pub mod multivariate;
pub mod synthetic;
pub mod trigger;

pub use detector::{Detector, Reason, Verdict};
pub use engine::{Alert, Engine, EngineState, Evidence};
pub use gateway_core::config::DEFAULT_SENSITIVITY;
pub use trigger::AlertState;

/// The alert kinds the rules produce, as they appear upstream in the
/// `kind` field of an alert.
pub const ALERT_KINDS: [&str; 4] = ["threshold", "rate", "silence", "anomaly"];
