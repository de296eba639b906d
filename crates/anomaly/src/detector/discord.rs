//! A second family of detector: the matrix profile's discord, online.
//!
//! The first family asks how far the latest readings lie from what each
//! chosen feature usually does; the adaptive-resonance categoriser
//! (`resonance`) whether the recent shape falls in one of a few learned
//! boxes. This one asks the question of the matrix profile (Yeh et al.
//! 2016, "Matrix Profile I"; the discord of Keogh, Lin and Fu 2005, "HOT
//! SAX"), causally as in its streaming form (Zhu et al. 2016, STAMPI):
//! how far is the newest window of the series from its *nearest
//! neighbour* among the windows the series made before? A window that
//! repeats anything the series has done, however rare or wild, has a
//! near neighbour; a shape never made before has none. No feature is
//! chosen in advance, no category count bounds what is remembered, and
//! noise sets its own yardstick: the nearest neighbour of a noisy window
//! is as far as the noise makes it.
//!
//! The history is a ring of [`RING`] samples, each the mean of `down`
//! readings quantised to a byte on the range the first family's
//! new-territory test keeps (re-quantised when that range moves by more
//! than 1/64 of its width), so the whole memory is half a kilobyte: at 8
//! readings a sample, the last 4 096 readings (two weeks of 5-minute
//! readings). Windows are `length` samples; a window's neighbours are the
//! windows wholly before it (a window overlapping it is its own trivial
//! match). The raw score is the mean absolute difference per sample to
//! the nearest neighbour, in 1/255 of the range.
//!
//! Two windows are compared by their shapes: each less its own mean
//! level, so that a level the series has not held before (a random walk's
//! every new one, a drift) is not news by itself; the first family's
//! level, range and novelty tests keep the levels.
//!
//! The raw score means nothing across series (a noisy series' nearest
//! neighbours are far apart), so it is judged against its own history on
//! that series: its short average against the largest that average has
//! been, decaying (the first family's novelty test does the same with its
//! features). A window fires when the short average is beyond
//! `Params::discord_tail` times that peak, after a probation that fills a
//! quarter of the ring. (A tail in deviations of the average's long
//! distribution, as HTM's anomaly likelihood turns its raw score, Ahmad et
//! al. 2017, was tried first: see `docs/anomaly-experiments.md`.)

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::stats::Norm;

/// Samples of history.
pub const RING: usize = 512;
/// Most readings in one sample.
pub const MOST_DOWN: u32 = 4096;
/// Longest window, in samples.
pub const LONGEST: usize = 64;
/// Samples seen before any window is judged.
const PROBATION: u32 = (RING / 4) as u32;
/// Span, in samples, of the short average of the raw score...
const SHORT: f64 = 2.0;
/// ...and memory, in samples, of its distribution.
const LONG: f64 = 1000.0;
/// The short average counts towards its own history at most this many
/// spreads above its mean: a long discord must not widen the spread it is
/// judged by while it lasts.
const CLIP: f64 = 3.0;
/// The raw score's spread and peak are taken as at least this (in 1/255 of
/// the range): a series that repeats itself exactly has neither, and a
/// difference of one quantisation step would score in the hundreds.
const LEAST_SPREAD: f64 = 0.5;
/// The history is re-quantised when the range has moved by more than this
/// fraction of its width: each re-quantisation rounds.
const RESCALE: f64 = 1.0 / 64.0;
/// The top of the quantised scale.
const TOP: f64 = 255.0;
/// Per-sample decay of the remembered peak of the short average.
const PEAK_DECAY: f32 = 0.999;

/// What the discord says about one reading.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Judgement {
    /// A window ended on this reading and its distance to its nearest
    /// neighbour is beyond the bar: how far, in multiples of the series'
    /// remembered peak.
    pub fire: Option<f64>,
    /// The last window's tail is still beyond half the bar: an anomaly
    /// that lasts is one alert.
    pub lingers: bool,
    /// Where the nearest neighbour's latest sample was, give or take its
    /// usual distance, in the series' units.
    pub expected: (f64, f64),
}

/// The settings of one series' discord (see `Params`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Readings averaged into one sample (already scaled to the series'
    /// rate: see `Detector`).
    pub down: u32,
    /// Samples per window.
    pub length: usize,
    /// Multiple of the remembered peak of the raw score's short average
    /// beyond which a window fires.
    pub tail: f64,
}

/// One series' discord. See the module documentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Discord {
    /// Sum and count of the readings of the sample under way.
    sum: f64,
    taken: u16,
    /// The range the history is quantised on.
    lo: f64,
    hi: f64,
    /// Samples taken (saturating).
    samples: u32,
    /// Short average of the raw score, and the distribution of that
    /// average.
    short: f32,
    history: Norm,
    /// The largest short average seen since the probation, decaying.
    peak: f32,
    lingers: bool,
    /// The quantised samples, oldest first.
    ring: Vec<u8>,
}

impl Default for Discord {
    fn default() -> Self {
        Self {
            sum: 0.0,
            taken: 0,
            lo: 0.0,
            hi: 0.0,
            samples: 0,
            short: 0.0,
            history: Norm::default(),
            peak: 0.0,
            lingers: false,
            ring: Vec::new(),
        }
    }
}

impl Discord {
    /// Takes one reading (`gap`: it follows a gap in time, so the sample
    /// under way is dropped) and judges the window it completes, if any,
    /// on the range `range`. `judged` says whether a window may fire (the
    /// detector is warm).
    pub fn observe(
        &mut self,
        x: f64,
        gap: bool,
        judged: bool,
        range: (f64, f64),
        settings: Settings,
    ) -> Judgement {
        if gap {
            self.sum = 0.0;
            self.taken = 0;
        }
        self.sum += x;
        self.taken = self.taken.saturating_add(1);
        let mut out = Judgement {
            fire: None,
            lingers: self.lingers,
            expected: (x, x),
        };
        if u32::from(self.taken) < settings.down.clamp(1, MOST_DOWN) {
            return out;
        }
        let sample = self.sum / f64::from(self.taken);
        self.sum = 0.0;
        self.taken = 0;
        self.rescale(range);
        if self.ring.len() >= RING {
            self.ring.copy_within(1.., 0);
            self.ring.pop();
        }
        let q = self.quantise(sample);
        self.ring.push(q);
        self.samples = self.samples.saturating_add(1);
        let m = settings.length.clamp(2, LONGEST);
        let Some((distance, nearest)) = self.nearest(m) else {
            return out;
        };
        let short =
            f64::from(self.short) + (distance - f64::from(self.short)) * (2.0 / (SHORT + 1.0));
        self.short = short as f32;
        let short = f64::from(self.short);
        let spread = self.history.sd().max(LEAST_SPREAD);
        let learned = if self.history.seen() >= 2.0 {
            short.min(self.history.mean() + CLIP * spread)
        } else {
            short
        };
        self.history.learn(learned, LONG);
        let width = self.hi - self.lo;
        let at = self.lo + f64::from(self.ring[nearest]) / TOP * width;
        let usual = self.history.mean() / TOP * width;
        out.expected = (at - usual, at + usual);
        let ready = self.samples > PROBATION;
        let ratio = short / f64::from(self.peak).max(LEAST_SPREAD);
        // The peak is learned from half-way through the probation: the
        // windows judged first need a yardstick, and the very first ones,
        // with hardly any neighbours, would set one far too high.
        if self.samples > PROBATION / 2 {
            self.peak = (self.peak * PEAK_DECAY).max(short as f32);
        }
        self.lingers = ready && ratio > 0.5 * settings.tail;
        out.lingers = self.lingers;
        if judged && ready && ratio > settings.tail {
            out.fire = Some(ratio);
        }
        out
    }

    /// The newest window's distance to its nearest earlier neighbour (mean
    /// absolute difference per sample, in 1/255 of the range) and the
    /// index in the ring of that neighbour's latest sample; none until the
    /// ring holds two windows.
    fn nearest(&self, m: usize) -> Option<(f64, usize)> {
        let len = self.ring.len();
        if len < 2 * m {
            return None;
        }
        let newest = &self.ring[len - m..];
        let total = |w: &[u8]| w.iter().map(|&v| i32::from(v)).sum::<i32>();
        let own = total(newest);
        let mut other = total(&self.ring[..m]);
        let mut best = (u32::MAX, 0);
        for start in 0..=len - 2 * m {
            if start > 0 {
                other += i32::from(self.ring[start + m - 1]) - i32::from(self.ring[start - 1]);
            }
            // Each window less its own level: the shape alone (see the
            // module documentation).
            let offset = (own - other) / m as i32;
            let d = l1_shifted(newest, &self.ring[start..start + m], offset as i16);
            if d < best.0 {
                best = (d, start + m - 1);
            }
        }
        Some((f64::from(best.0) / m as f64, best.1))
    }

    fn quantise(&self, x: f64) -> u8 {
        ((x - self.lo) / (self.hi - self.lo) * TOP)
            .round()
            .clamp(0.0, TOP) as u8
    }

    /// Moves the quantisation to `range` when it has moved far enough:
    /// each sample keeps its value, to a step of the new scale.
    fn rescale(&mut self, (lo, hi): (f64, f64)) {
        let width = (hi - lo).max(1e-9 * (1.0 + hi.abs()));
        if !width.is_finite() || !lo.is_finite() {
            return;
        }
        if self.ring.is_empty() || !(self.hi - self.lo).is_finite() || self.hi <= self.lo {
            self.lo = lo;
            self.hi = lo + width;
            return;
        }
        let old = self.hi - self.lo;
        let moved = (lo - self.lo).abs().max((lo + width - self.hi).abs());
        if moved <= RESCALE * old.max(width) {
            return;
        }
        let (old_lo, new_lo) = (self.lo, lo);
        self.lo = lo;
        self.hi = lo + width;
        for q in &mut self.ring {
            let v = old_lo + f64::from(*q) / TOP * old;
            *q = ((v - new_lo) / width * TOP).round().clamp(0.0, TOP) as u8;
        }
        // The distances are measured on the new scale now: their history
        // too, or a range that narrowed (its old extremes forgotten) would
        // make every window look far from its neighbours.
        let k = old / width;
        let [n, mean, var] = self.history.parts();
        self.history = Norm::from_parts([n, mean * k, var * k * k]);
        self.short = (f64::from(self.short) * k) as f32;
        self.peak = (f64::from(self.peak) * k) as f32;
    }
}

/// Sum of absolute differences of `a` and `b` raised by `offset`, in a
/// form the compiler vectorises.
fn l1_shifted(a: &[u8], b: &[u8], offset: i16) -> u32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| u32::from((i16::from(x) - i16::from(y) - offset).unsigned_abs()))
        .sum()
}

/// Bytes of the fixed part of the persisted form (the variance, an `f64`,
/// comes after it): five `f64`s, two `f32`s, the sample count, the
/// readings taken and a flag.
const FIXED: usize = 5 * 8 + 2 * 4 + 4 + 3;

impl From<Discord> for String {
    fn from(d: Discord) -> Self {
        let mut bytes = Vec::with_capacity(FIXED + d.ring.len());
        let [n, mean, var] = d.history.parts();
        for v in [d.sum, d.lo, d.hi, n, mean] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        // The variance as f64 too, but after the scalars that fit in f32.
        bytes.extend_from_slice(&d.short.to_le_bytes());
        bytes.extend_from_slice(&d.peak.to_le_bytes());
        bytes.extend_from_slice(&d.samples.to_le_bytes());
        bytes.extend_from_slice(&d.taken.to_le_bytes());
        bytes.push(u8::from(d.lingers));
        bytes.extend_from_slice(&var.to_le_bytes());
        bytes.extend_from_slice(&d.ring);
        STANDARD.encode(bytes)
    }
}

impl TryFrom<String> for Discord {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let bytes = STANDARD.decode(&text).map_err(|e| e.to_string())?;
        let whole = FIXED + 8;
        if bytes.len() < whole || bytes.len() - whole > RING {
            return Err(format!(
                "expected {whole} bytes and up to {RING} samples, got {}",
                bytes.len()
            ));
        }
        let mut from = bytes.as_slice();
        let mut take = |n: usize| {
            let (head, rest) = from.split_at(n);
            from = rest;
            head
        };
        let f = |b: &[u8]| f64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        let (sum, lo, hi, n, mean) = (f(take(8)), f(take(8)), f(take(8)), f(take(8)), f(take(8)));
        let short = f32::from_le_bytes(take(4).try_into().unwrap_or([0; 4]));
        let peak = f32::from_le_bytes(take(4).try_into().unwrap_or([0; 4]));
        let samples = u32::from_le_bytes(take(4).try_into().unwrap_or([0; 4]));
        let taken = u16::from_le_bytes(take(2).try_into().unwrap_or([0; 2]));
        let lingers = take(1)[0] != 0;
        let var = f(take(8));
        let ring = take(bytes.len() - whole).to_vec();
        Ok(Self {
            sum,
            taken,
            lo,
            hi,
            samples,
            short,
            history: Norm::from_parts([n, mean, var]),
            peak,
            lingers,
            ring,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::Rng;

    const SETTINGS: Settings = Settings {
        down: 8,
        length: 16,
        tail: 1.5,
    };

    /// A daily square wave read every 5 minutes (20 by night, 80 from
    /// 08:00 to 18:00) with a little noise; on `odd_day` the day stays at
    /// 50 (inside the usual range: no level or range test sees it).
    fn square_days(days: usize, odd_day: Option<usize>, seed: u64) -> Vec<f64> {
        let mut rng = Rng::new(seed);
        (0..days * 288)
            .map(|i| {
                let (day, slot) = (i / 288, i % 288);
                let high = (96..216).contains(&slot);
                let level = match (high, Some(day) == odd_day) {
                    (true, true) => 50.0,
                    (true, false) => 80.0,
                    (false, _) => 20.0,
                };
                level + rng.normal()
            })
            .collect()
    }

    /// Feeds `xs` and returns the readings from `from` on at which a
    /// window fired.
    fn fires(d: &mut Discord, xs: &[f64], from: usize) -> Vec<usize> {
        xs.iter()
            .enumerate()
            .filter(|&(i, &x)| {
                d.observe(x, false, true, (15.0, 85.0), SETTINGS)
                    .fire
                    .is_some()
                    && i >= from
            })
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn regular_days_are_no_discord() {
        for seed in 1..=3 {
            let mut d = Discord::default();
            let hits = fires(&mut d, &square_days(16, None, seed), 2 * 288);
            assert!(hits.is_empty(), "seed {seed}: {hits:?}");
            assert_eq!(d.ring.len(), RING);
        }
    }

    #[test]
    fn a_day_of_a_new_shape_is_a_discord() {
        let mut d = Discord::default();
        let hits = fires(&mut d, &square_days(12, Some(9), 1), 2 * 288);
        let day = 9 * 288 + 96..9 * 288 + 216;
        assert!(hits.iter().any(|i| day.contains(i)), "{hits:?}");
        assert!(hits.iter().all(|&i| i >= day.start), "{hits:?}");
    }

    #[test]
    fn a_shape_made_before_is_no_discord_however_rare() {
        // Once a day the series spikes to 90 for half an hour: the first
        // spike is news, the ones after have a neighbour.
        let mut rng = Rng::new(5);
        let xs: Vec<f64> = (0..10 * 288)
            .map(|i| if i % 288 < 6 { 90.0 } else { 20.0 } + rng.normal())
            .collect();
        let mut d = Discord::default();
        let hits = fires(&mut d, &xs, 3 * 288);
        assert!(hits.is_empty(), "{hits:?}");
    }

    #[test]
    fn a_restored_state_judges_alike_and_a_torn_one_is_an_error() {
        let xs = square_days(6, Some(4), 2);
        let mut a = Discord::default();
        fires(&mut a, &xs[..3 * 288], 0);
        let text = String::from(a.clone());
        let mut b = Discord::try_from(text.clone()).unwrap();
        assert_eq!(a, b);
        // The whole history in well under a kilobyte of text.
        assert!(text.len() <= 4 * (FIXED + 8 + RING).div_ceil(3));
        assert!(text.len() <= 800, "{}", text.len());
        assert_eq!(
            fires(&mut a, &xs[3 * 288..], 0),
            fires(&mut b, &xs[3 * 288..], 0)
        );
        assert!(Discord::try_from(text[..40].to_string()).is_err());
        assert!(Discord::try_from("@@".to_string()).is_err());
    }

    #[test]
    fn a_damaged_saved_state_judges_without_panicking() {
        // A state file edited by hand or torn on a full disk: any bytes of
        // a valid length load, and whatever they say (NaN ranges, a count
        // beyond the ring) judges on, on any settings.
        let mut rng = Rng::new(11);
        for k in 0..100 {
            let len = FIXED + 8 + (k * 7) % (RING + 1);
            let bytes: Vec<u8> = (0..len).map(|_| (rng.uniform() * 256.0) as u8).collect();
            let mut d = Discord::try_from(STANDARD.encode(bytes)).unwrap();
            let settings = Settings {
                down: k as u32 % 5,
                length: k % 80,
                tail: 1.0,
            };
            for i in 0..300 {
                let x = match i % 7 {
                    0 => f64::MAX,
                    1 => -1e300,
                    2 => f64::NAN,
                    _ => rng.normal(),
                };
                let range = if i % 11 == 0 {
                    (f64::MIN, f64::MAX)
                } else {
                    (-3.0, 3.0)
                };
                d.observe(x, i % 50 == 0, true, range, settings);
            }
        }
    }
}
