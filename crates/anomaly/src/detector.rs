//! The learned detector: one [`Detector`] per device × metric.
//!
//! See the crate documentation for the model. Everything here is plain
//! arithmetic on `f64` with no allocation per reading, so a gateway can keep
//! thousands of series; the whole learned state is one small serde struct.

use serde::{Deserialize, Serialize};

pub use gateway_core::config::DEFAULT_SENSITIVITY;

/// Long memory, in readings, of every learned distribution.
const LONG: f64 = 5000.0;
/// Readings seen before the detector may fire at all.
const WARMUP: u64 = 300;
/// Readings during which a fired detector stays quiet: one anomaly is one
/// alert, not a burst (the anomaly is still learned in winsorised form).
const SUPPRESS: u64 = 400;
/// Standardised deviations are clipped here before they update a
/// distribution, so an anomaly shifts what is normal only slowly.
const CLIP: f64 = 4.0;
/// Smoothing spans, in readings, of the multi-scale level features.
const SCALES: [f64; 3] = [4.0, 16.0, 64.0];

/// Running mean and variance with an exponential memory of [`LONG`]
/// readings, exact (Welford) until it has seen that many.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Norm {
    n: f64,
    mean: f64,
    var: f64,
}

impl Norm {
    /// Standardised deviation of `x` against what was learned so far.
    fn z(&self, x: f64) -> f64 {
        if self.n < 2.0 {
            return 0.0;
        }
        // A series that never moved (a contact at 0, a stuck counter) has
        // no spread; the floor makes its first move count as huge rather
        // than as nothing, and keeps z finite.
        let sd = self.var.sqrt().max(1e-9 * (1.0 + self.mean.abs()));
        ((x - self.mean) / sd).clamp(-1e6, 1e6)
    }

    /// Learns `x`, first pulled back to `CLIP` deviations.
    fn learn(&mut self, x: f64) {
        let x = if self.n >= 30.0 {
            let sd = self.var.sqrt();
            x.clamp(self.mean - CLIP * sd, self.mean + CLIP * sd)
        } else {
            x
        };
        self.n += 1.0;
        let a = 1.0 / self.n.min(LONG);
        let d = x - self.mean;
        self.mean += a * d;
        self.var = (1.0 - a) * (self.var + a * d * d);
    }
}

/// What the detector says about one reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// Strongest standardised deviation among the features (0 while warming
    /// up).
    pub score: f64,
    /// The score the reading had to beat.
    pub threshold: f64,
    /// True when this reading is reported as an anomaly.
    pub anomaly: bool,
}

/// Number of features.
const K: usize = 8;
/// Span of the slow baseline the detrended features are measured from.
const BASE: f64 = 500.0;
/// Span, in readings, over which the raw evidence is averaged.
const SMOOTH: f64 = 12.0;
/// A reading later than this many typical intervals follows a gap.
const GAP: f64 = 4.0;
/// Deviations below this are never novel, however quiet the series was.
const NOVEL_FLOOR: f64 = 4.0;
/// Per-reading decay of the remembered peak deviations (half-life about
/// 7000 readings).
const PEAK_DECAY: f64 = 0.9999;

/// Online, causal anomaly detector for one series. See the crate docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detector {
    n: u64,
    last: f64,
    last_ms: i64,
    interval_ms: f64,
    smooth: [f64; 3],
    base: f64,
    vol: f64,
    norms: [Norm; K],
    raw: f64,
    raw_norm: Norm,
    peaks: [f64; K],
    quiet_until: u64,
    /// Last standardised features, for diagnostics.
    #[serde(skip)]
    pub zs: [f64; K],
}

impl Default for Detector {
    fn default() -> Self {
        Self::new()
    }
}

impl Detector {
    /// A detector that has learned nothing yet.
    pub fn new() -> Self {
        Self {
            n: 0,
            last: 0.0,
            last_ms: 0,
            interval_ms: 0.0,
            smooth: [0.0; 3],
            base: 0.0,
            vol: 0.0,
            norms: Default::default(),
            raw: 0.0,
            raw_norm: Norm::default(),
            peaks: [0.0; K],
            quiet_until: 0,
            zs: [0.0; K],
        }
    }

    /// Readings learned so far.
    pub fn seen(&self) -> u64 {
        self.n
    }

    /// Scores `x` against what was learned, then learns it. Non-finite
    /// values are ignored (scored 0, not learned).
    pub fn observe(&mut self, at_ms: i64, x: f64, sensitivity: f64) -> Verdict {
        let threshold = threshold(sensitivity);
        if !x.is_finite() {
            return Verdict {
                score: 0.0,
                threshold,
                anomaly: false,
            };
        }
        if self.n == 0 {
            self.last = x;
            self.smooth = [x; 3];
            self.base = x;
        }
        // After a gap the step from the last reading is not a one-step
        // change: it says nothing about the process, only about the link.
        let dt = (at_ms - self.last_ms).max(0) as f64;
        let gap = self.n > 1 && dt > GAP * self.interval_ms;
        if self.n >= 1 && !gap {
            let a = 1.0 / (self.n as f64).min(100.0);
            self.interval_ms += (dt - self.interval_ms) * a;
        }
        self.last_ms = at_ms;
        let r = if gap { 0.0 } else { x - self.last };
        let mut smooth = self.smooth;
        for (s, span) in smooth.iter_mut().zip(SCALES) {
            *s += (x - *s) * (2.0 / (span + 1.0));
        }
        let base = self.base;
        let vol = if gap {
            self.vol
        } else {
            self.vol + (r * r - self.vol) * (2.0 / 17.0)
        };
        let f: [f64; K] = [
            r,
            smooth[0],
            smooth[1],
            smooth[2],
            smooth[0] - base,
            smooth[1] - base,
            smooth[2] - base,
            (vol + 1e-12).ln(),
        ];
        let mut score: f64 = 0.0;
        let mut novelty: f64 = 0.0;
        for (i, (norm, v)) in self.norms.iter_mut().zip(f).enumerate() {
            if gap && (i == 0 || i == K - 1) {
                self.zs[i] = 0.0;
                continue;
            }
            let z = norm.z(v);
            let z = if i == K - 1 { z.max(0.0) } else { z.abs() };
            self.zs[i] = z;
            if (1..K - 1).contains(&i) {
                score = score.max(z);
            }
            if self.n > WARMUP && z > NOVEL_FLOOR {
                novelty = novelty.max(z / self.peaks[i].max(NOVEL_FLOOR));
            }
            self.peaks[i] =
                (self.peaks[i] * PEAK_DECAY).max(z.min(self.peaks[i].max(NOVEL_FLOOR) * 2.0));
            norm.learn(v);
        }
        self.raw += (score - self.raw) * (2.0 / (SMOOTH + 1.0));
        let score = self.raw_norm.z(self.raw);
        self.raw_norm.learn(self.raw);
        self.base += (x - self.base) * (2.0 / (BASE.min(self.n as f64 + 1.0) + 1.0));
        self.smooth = smooth;
        self.vol = vol;
        self.last = x;
        self.n += 1;

        let warm = self.n > WARMUP;
        let (novel, _) = novelty_limits(sensitivity);
        let anomaly = warm && self.n > self.quiet_until && (score > threshold || novelty > novel);
        if anomaly {
            self.quiet_until = self.n + SUPPRESS;
        }
        Verdict {
            score: if warm { score } else { 0.0 },
            threshold,
            anomaly,
        }
    }
}

/// Maps sensitivity in (0, 1] to the score a reading must beat.
pub fn threshold(sensitivity: f64) -> f64 {
    let s = if sensitivity.is_finite() {
        sensitivity.clamp(0.01, 1.0)
    } else {
        DEFAULT_SENSITIVITY
    };
    2.0 + 2.0 * (1.0 - s)
}

/// How far beyond the largest deviation remembered a feature must go to be
/// novel, at this sensitivity.
fn novelty_limits(sensitivity: f64) -> (f64, f64) {
    let s = if sensitivity.is_finite() {
        sensitivity.clamp(0.01, 1.0)
    } else {
        DEFAULT_SENSITIVITY
    };
    (1.1 + 0.6 * (1.0 - s), NOVEL_FLOOR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{series, Shape};

    fn detections(shape: Shape, seed: u64) -> Vec<usize> {
        let mut det = Detector::new();
        series(seed, 8_000, 5_000, shape)
            .into_iter()
            .enumerate()
            .filter(|(i, x)| {
                det.observe(*i as i64 * 60_000, *x, DEFAULT_SENSITIVITY)
                    .anomaly
            })
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn each_shape_is_detected_soon_after_it_starts() {
        for (shape, within) in [
            (Shape::LevelShift(4.0), 200),
            (Shape::LevelShift(-3.0), 200),
            (Shape::Spike(8.0), 1),
            (Shape::Drift(6.0), 500),
            (Shape::NoiseChange(3.0), 200),
        ] {
            let hits = detections(shape, 7);
            assert!(
                hits.iter().any(|&i| (5_000..5_000 + within).contains(&i)),
                "{shape:?}: {hits:?}"
            );
        }
    }

    #[test]
    fn clean_noise_raises_at_most_one_false_alarm_in_8000_readings() {
        for seed in 1..=5 {
            let hits = detections(Shape::Clean, seed);
            assert!(hits.len() <= 1, "seed {seed}: {hits:?}");
        }
    }

    #[test]
    fn a_detection_is_followed_by_quiet_not_a_burst() {
        let hits = detections(Shape::LevelShift(6.0), 3);
        for w in hits.windows(2) {
            assert!(w[1] - w[0] > SUPPRESS as usize, "{hits:?}");
        }
    }

    #[test]
    fn restored_state_gives_the_same_verdicts() {
        let xs = series(11, 6_000, 4_000, Shape::LevelShift(5.0));
        let mut a = Detector::new();
        let mut first = Vec::new();
        for (i, x) in xs.iter().enumerate().take(3_000) {
            first.push(a.observe(i as i64 * 1000, *x, 0.5));
        }
        let saved = serde_json::to_string(&a).unwrap();
        let mut b: Detector = serde_json::from_str(&saved).unwrap();
        for (i, x) in xs.iter().enumerate().skip(3_000) {
            let t = i as i64 * 1000;
            assert_eq!(a.observe(t, *x, 0.5), b.observe(t, *x, 0.5), "reading {i}");
        }
        assert_eq!(a.seen(), 6_000);
    }

    #[test]
    fn a_constant_series_that_moves_is_detected() {
        let mut d = Detector::new();
        for i in 0..1_000 {
            assert!(!d.observe(i * 1000, 0.0, 0.5).anomaly, "reading {i}");
        }
        assert!(d.observe(1_000_000, 1.0, 0.5).anomaly);
    }

    #[test]
    fn huge_and_tiny_magnitudes_behave_alike() {
        for scale in [1e-6, 1.0, 1e9] {
            let xs = series(4, 6_000, 5_000, Shape::LevelShift(6.0));
            let mut d = Detector::new();
            let hits: Vec<usize> = xs
                .iter()
                .enumerate()
                .filter(|(i, x)| d.observe(*i as i64 * 1000, *x * scale, 0.5).anomaly)
                .map(|(i, _)| i)
                .collect();
            assert!(
                hits.iter().any(|&i| (5_000..5_200).contains(&i)),
                "scale {scale}: {hits:?}"
            );
            assert!(hits.iter().all(|&i| i >= 5_000), "scale {scale}: {hits:?}");
        }
    }

    #[test]
    fn non_finite_values_are_ignored() {
        let mut d = Detector::new();
        let v = d.observe(0, f64::NAN, 0.5);
        assert!(!v.anomaly);
        assert_eq!(d.seen(), 0);
    }

    #[test]
    fn a_gap_in_time_is_not_a_jump() {
        let xs = series(5, 3_000, 0, Shape::Clean);
        let mut d = Detector::new();
        let mut t = 0;
        for (i, x) in xs.iter().enumerate() {
            // A day without readings, then the same process resumes 3 units
            // lower: the step across the gap must not count as a spike.
            t += if i == 2_000 { 86_400_000 } else { 60_000 };
            let v = d.observe(t, *x, 0.5);
            assert!(!v.anomaly || i != 2_000, "reading {i}: {v:?}");
        }
    }
}
