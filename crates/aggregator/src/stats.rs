//! Streaming count, mean, population standard deviation, min and max.
//!
//! One [`Stats`] lives per open (device, metric, window), so it is small
//! (48 bytes: the count and the scale share one word), `Copy`, and updated in O(1) without keeping the
//! samples.
//!
//! Three layers keep the result close to an exact two-pass computation:
//!
//! 1. **Welford's update** of mean and M2 (sum of squared deviations) instead
//!    of `Σx²/n − mean²`, which cancels catastrophically when the spread is
//!    small next to the mean (an energy counter at 1e12 Wh moving by a few Wh).
//! 2. **Shift** by the first value: Welford runs on `x − x₀`, so a series that
//!    sits far from zero is handled as the small numbers it varies by. The
//!    subtraction is exact when `x` is within a factor two of `x₀` (Sterbenz).
//! 3. **Power-of-two scale** chosen from the first value's binary exponent:
//!    Welford runs on `x / 2^e`. Dividing by a power of two is exact, and it
//!    keeps the squared deltas in range: around 1e-300 `δ·δ` would underflow
//!    to 0 and around 1e200 it would overflow to infinity. Results are scaled
//!    back once, when read.
//!
//! A value whose magnitude is far above the current scale (more than 2^256
//! times) rescales the accumulator upwards first, so nothing can overflow
//! whatever order values arrive in. Values far below the scale are simply
//! absorbed: next to the values that set the scale they do not change mean or
//! deviation at f64 precision.

use std::fmt;

/// Largest scaled magnitude accepted without rescaling. Squares of deltas stay
/// below 2^520 and their sum over even `u64::MAX` samples below 2^584, far from
/// overflow.
const RESCALE_LIMIT: f64 = 1.157_920_892_373_162e77; // 2^256

/// Scale exponents are clamped to ±this so that both `2^e` and `2^-e` are
/// normal f64 values (the normal range is 2^-1022 ..= 2^1023).
const MAX_SCALE_EXP: i32 = 1000;

/// `2^e` for `e` in the normal exponent range, built from its bit pattern
/// because `powi` is not guaranteed exact on every target.
fn pow2(e: i32) -> f64 {
    debug_assert!((-1022..=1023).contains(&e));
    f64::from_bits(((e + 1023) as u64) << 52)
}

/// Multiplies by `2^e` for any `e`, in steps that stay in the normal range.
fn mul_pow2(mut v: f64, mut e: i32) -> f64 {
    while e < -MAX_SCALE_EXP {
        v *= pow2(-MAX_SCALE_EXP);
        e += MAX_SCALE_EXP;
    }
    while e > MAX_SCALE_EXP {
        v *= pow2(MAX_SCALE_EXP);
        e -= MAX_SCALE_EXP;
    }
    v * pow2(e)
}

/// Binary exponent of a finite, non-zero `x`, clamped to ±[`MAX_SCALE_EXP`].
/// Subnormals land on the lower clamp, which lifts them back into the normal
/// range once scaled.
fn scale_exponent(x: f64) -> i32 {
    let biased = ((x.to_bits() >> 52) & 0x7ff) as i32;
    if biased == 0 {
        -MAX_SCALE_EXP
    } else {
        (biased - 1023).clamp(-MAX_SCALE_EXP, MAX_SCALE_EXP)
    }
}

/// Whether a scaled value can enter Welford without rescaling; false for NaN
/// and infinities too, which sends them to the slow path to be dropped.
#[inline]
fn fits_scale(z: f64) -> bool {
    z.abs() < RESCALE_LIMIT
}

/// Running statistics of a stream of finite `f64` values.
///
/// Results are population statistics (`ddof = 0`, like numpy's `np.std`
/// default): a window is the whole population of what was measured in it, not
/// a sample of a larger one.
///
/// `PartialEq` compares the accumulator state: two `Stats` fed the same values
/// in the same order are equal; fed in another order they may differ in the
/// last bits.
///
/// ```
/// use aggregator::Stats;
///
/// let s = Stats::from_values(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
/// assert_eq!(s.count(), 8);
/// assert_eq!(s.avg(), 5.0);
/// assert_eq!(s.std(), 2.0);
/// assert_eq!((s.min(), s.max()), (2.0, 9.0));
/// ```
#[derive(Clone, Copy, PartialEq)]
pub struct Stats {
    /// The number of values (low [`COUNT_BITS`] bits) and the scale
    /// exponent (the high bits, signed): values are scaled by
    /// `2^-scale_exp` (see [`Self::inv_scale`]). One word instead of two
    /// saves 8 of 56 bytes per open series; 2^52 values in one window is
    /// 142 years at a million readings a second.
    count_and_scale: u64,
    /// First value in scaled units (or 0 while every value seen was 0).
    shift: f64,
    /// Mean of `x / 2^scale_exp − shift`.
    mean: f64,
    /// Σ(y − mean)² of the shifted, scaled values `y`.
    m2: f64,
    min: f64,
    max: f64,
}

/// Bits of [`Stats::count_and_scale`] that hold the count; the remaining 12
/// hold the scale exponent, whose ±[`MAX_SCALE_EXP`] fits in ±2047.
const COUNT_BITS: u32 = 52;
/// The largest count: further values still update the statistics as if
/// this many had been seen.
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;

/// Packs a count and a scale exponent (already within ±[`MAX_SCALE_EXP`]).
const fn pack(count: u64, scale_exp: i32) -> u64 {
    ((scale_exp as i64 as u64) << COUNT_BITS) | count
}

impl Stats {
    /// The exact internal state, for checkpoints.
    pub fn state(&self) -> crate::StatsState {
        crate::StatsState {
            count: self.count(),
            shift: self.shift,
            mean: self.mean,
            m2: self.m2,
            min: self.min,
            max: self.max,
            scale_exp: self.scale_exp(),
        }
    }

    /// Rebuilds an accumulator from [`state`](Self::state). A count or
    /// scale no accumulator can reach is clamped to the nearest one that
    /// can.
    pub fn from_state(s: crate::StatsState) -> Self {
        Self {
            count_and_scale: pack(
                s.count.min(COUNT_MAX),
                s.scale_exp.clamp(-MAX_SCALE_EXP, MAX_SCALE_EXP),
            ),
            shift: s.shift,
            mean: s.mean,
            m2: s.m2,
            min: s.min,
            max: s.max,
        }
    }
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Stats {
    // The internal shift and scale are noise to a reader; show the results.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stats")
            .field("count", &self.count())
            .field("avg", &self.avg())
            .field("std", &self.std())
            .field("min", &self.min())
            .field("max", &self.max())
            .finish()
    }
}

impl Stats {
    /// An empty accumulator.
    pub const fn new() -> Self {
        Self {
            count_and_scale: pack(0, 0),
            shift: 0.0,
            mean: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// Statistics of a slice, in one pass.
    pub fn from_values(values: &[f64]) -> Self {
        let mut s = Self::new();
        for &v in values {
            s.push(v);
        }
        s
    }

    /// `2^-scale_exp`, so the hot path multiplies instead of divides.
    /// Derived rather than stored: three integer operations, and 8 bytes
    /// less per open series.
    #[inline]
    fn inv_scale(&self) -> f64 {
        pow2(-self.scale_exp())
    }

    /// The scale exponent: the word's high bits, sign-extended.
    #[inline]
    fn scale_exp(&self) -> i32 {
        ((self.count_and_scale as i64) >> COUNT_BITS) as i32
    }

    #[inline]
    fn set_scale_exp(&mut self, exp: i32) {
        self.count_and_scale = pack(self.count(), exp);
    }

    /// Adds one value.
    ///
    /// Non-finite values (NaN, ±infinity) are skipped and not counted: one of
    /// them would otherwise turn every statistic of the window into NaN.
    /// [`gateway_core::Reading`] already refuses them, so the aggregator never
    /// passes one.
    #[inline]
    pub fn push(&mut self, x: f64) {
        let z = x * self.inv_scale();
        // `shift == 0` with `z != 0` means only zeros were seen so far (or
        // nothing): the scale has not been chosen from a real magnitude yet.
        if !fits_scale(z) || (self.shift == 0.0 && z != 0.0) {
            self.push_slow(x);
            return;
        }
        self.welford(x, z);
    }

    #[inline]
    fn welford(&mut self, x: f64, z: f64) {
        let y = z - self.shift;
        // The count sits in the low bits: adding one increments it, unless
        // it is full, which must not carry into the scale.
        if self.count() < COUNT_MAX {
            self.count_and_scale += 1;
        }
        // The reciprocal does not depend on the previous mean, so the slow
        // division overlaps with it instead of lengthening the chain from one
        // update of this accumulator to the next.
        let inv_n = 1.0 / self.count() as f64;
        let delta = y - self.mean;
        self.mean += delta * inv_n;
        self.m2 += delta * (y - self.mean);
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    #[cold]
    fn push_slow(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        if self.count() == 0 || (self.min == 0.0 && self.max == 0.0) {
            // Every earlier value (if any) was exactly 0, so the state can be
            // rebuilt exactly around this first non-zero value: the n zeros
            // become n copies of `-shift`, with no spread.
            self.set_scale_exp(scale_exponent(x));
            self.shift = x * self.inv_scale();
            self.mean = if self.count() == 0 { 0.0 } else { -self.shift };
            self.m2 = 0.0;
        } else if !fits_scale(x * self.inv_scale()) {
            self.rescale_to(scale_exponent(x));
        }
        self.welford(x, x * self.inv_scale());
    }

    /// Moves the accumulator to a larger scale. Lower bits of the old state
    /// may be lost, but only where they are negligible next to the new value.
    fn rescale_to(&mut self, exp: i32) {
        let d = self.scale_exp() - exp;
        self.shift = mul_pow2(self.shift, d);
        self.mean = mul_pow2(self.mean, d);
        self.m2 = mul_pow2(self.m2, 2 * d);
        self.set_scale_exp(exp);
    }

    /// Number of values added.
    pub fn count(&self) -> u64 {
        self.count_and_scale & COUNT_MAX
    }

    /// Arithmetic mean; NaN when empty. Clamped into `[min, max]` so that
    /// rounding can never report a mean outside the observed range.
    pub fn avg(&self) -> f64 {
        if self.count() == 0 {
            return f64::NAN;
        }
        let mean = (self.shift + self.mean) * pow2(self.scale_exp());
        // Not `clamp`, which panics when min > max or either is NaN: a
        // checkpoint can hold such a pair (`from_state` takes it as read),
        // and a panic at every window close of a restored state is a
        // crash on every start.
        mean.max(self.min).min(self.max)
    }

    /// Population standard deviation (divides by `n`); NaN when empty, 0 for
    /// one value.
    pub fn std(&self) -> f64 {
        if self.count() == 0 {
            return f64::NAN;
        }
        // Welford keeps M2 non-negative in exact arithmetic; the `max` guards
        // the last bit of rounding.
        (self.m2.max(0.0) / self.count() as f64).sqrt() * pow2(self.scale_exp())
    }

    /// Smallest value; NaN when empty.
    pub fn min(&self) -> f64 {
        if self.count() == 0 {
            f64::NAN
        } else {
            self.min
        }
    }

    /// Largest value; NaN when empty.
    pub fn max(&self) -> f64 {
        if self.count() == 0 {
            f64::NAN
        } else {
            self.max
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Independent reference: scale by the largest magnitude's power of two,
    /// compensated (Neumaier) sum for the mean, then the corrected two-pass
    /// formula `(Σd² − (Σd)²/n) / n`, which cancels the small error left in the
    /// mean.
    fn two_pass(values: &[f64]) -> (f64, f64) {
        let max_abs = values.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
        let e = if max_abs == 0.0 {
            0
        } else {
            (max_abs.log2().floor() as i32).clamp(-1000, 1000)
        };
        let scaled: Vec<f64> = values.iter().map(|v| times_pow2(*v, -e)).collect();
        let n = scaled.len() as f64;
        let (mut sum, mut comp) = (0.0_f64, 0.0_f64);
        for &v in &scaled {
            let t = sum + v;
            comp += if sum.abs() >= v.abs() {
                (sum - t) + v
            } else {
                (v - t) + sum
            };
            sum = t;
        }
        let mean = (sum + comp) / n;
        let (mut sd, mut sd2) = (0.0, 0.0);
        for &v in &scaled {
            sd += v - mean;
            sd2 += (v - mean) * (v - mean);
        }
        let var = ((sd2 - sd * sd / n) / n).max(0.0);
        (times_pow2(mean, e), times_pow2(var.sqrt(), e))
    }

    /// `v · 2^e` by another route than the code under test.
    fn times_pow2(v: f64, e: i32) -> f64 {
        v * 2f64.powi(e / 2) * 2f64.powi(e - e / 2)
    }

    fn close(got: f64, want: f64, abs_floor: f64) -> bool {
        (got - want).abs() <= 1e-9 * want.abs() || (got - want).abs() <= abs_floor
    }

    /// Deterministic noise in [-0.5, 0.5).
    fn noise(n: usize, mut state: u64) -> Vec<f64> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            })
            .collect()
    }

    struct Case {
        name: &'static str,
        values: Vec<f64>,
        /// Exact (mean, std) where it is known in closed form.
        exact: Option<(f64, f64)>,
    }

    fn cases() -> Vec<Case> {
        let textbook = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        let scaled = |e: i32| {
            textbook
                .iter()
                .map(|v| times_pow2(*v, e))
                .collect::<Vec<_>>()
        };
        vec![
            Case {
                name: "one sample",
                values: vec![42.5],
                exact: Some((42.5, 0.0)),
            },
            Case {
                name: "constant",
                values: vec![0.1; 17],
                exact: Some((0.1, 0.0)),
            },
            Case {
                name: "all zeros",
                values: vec![0.0; 5],
                exact: Some((0.0, 0.0)),
            },
            Case {
                name: "textbook",
                values: textbook.to_vec(),
                exact: Some((5.0, 2.0)),
            },
            Case {
                name: "textbook times 2^900",
                values: scaled(900),
                exact: Some((times_pow2(5.0, 900), times_pow2(2.0, 900))),
            },
            Case {
                name: "textbook times 2^-1000 (deltas square to 0 unscaled)",
                values: scaled(-1000),
                exact: Some((times_pow2(5.0, -1000), times_pow2(2.0, -1000))),
            },
            Case {
                name: "huge 1e200 with 1e-10 relative spread",
                values: noise(1000, 1).iter().map(|n| 1e200 + n * 1e190).collect(),
                exact: None,
            },
            Case {
                name: "tiny 1e-300 scale",
                values: noise(1000, 2).iter().map(|n| 1e-300 * (1.0 + n)).collect(),
                exact: None,
            },
            Case {
                name: "subnormal",
                values: vec![1e-310, 3e-310, 2e-310, 5e-311],
                exact: None,
            },
            Case {
                name: "energy counter 1e12 + symmetric offsets",
                values: vec![1e12 - 1.5, 1e12 - 0.5, 1e12 + 0.5, 1e12 + 1.5],
                exact: Some((1e12, 1.25_f64.sqrt())),
            },
            Case {
                name: "energy counter 1e12 + milli noise",
                values: noise(5000, 3).iter().map(|n| 1e12 + n * 1e-2).collect(),
                exact: None,
            },
            Case {
                name: "rising counter 1e12",
                values: (0..2000).map(|i| 1e12 + f64::from(i) * 0.25).collect(),
                exact: None,
            },
            Case {
                name: "negative",
                values: vec![-5.0, -3.25, -10.5, -7.75, -0.001],
                exact: None,
            },
            Case {
                name: "mixed signs",
                values: vec![-1e3, 2.5, 1e3, -0.001, 0.0, 17.0, -42.0],
                exact: None,
            },
            Case {
                name: "zeros first, then tiny",
                values: vec![0.0, 0.0, 1e-300, 2e-300, 3e-300],
                exact: None,
            },
            Case {
                name: "tiny first, then huge (forces a rescale)",
                values: vec![1e-300, 1e300, 3e300],
                exact: None,
            },
            Case {
                name: "near f64::MAX, both signs",
                values: vec![1.5e308, -1.5e308, 1.5e308, -1.5e308],
                exact: Some((0.0, 1.5e308)),
            },
            Case {
                name: "room temperature, many samples",
                values: noise(20_000, 4).iter().map(|n| 21.3 + n * 0.8).collect(),
                exact: None,
            },
        ]
    }

    #[test]
    fn stats_match_two_pass_reference() {
        for case in cases() {
            let s = Stats::from_values(&case.values);
            let (mean, std) = two_pass(&case.values);
            let max_abs = case.values.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
            let min = case.values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = case
                .values
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max);
            let n = case.name;
            assert_eq!(s.count(), case.values.len() as u64, "{n}: count");
            assert_eq!((s.min(), s.max()), (min, max), "{n}: min/max");
            // A mean near zero of large values is only defined to the
            // rounding of those values.
            let mean_floor = max_abs * 1e-15;
            assert!(
                close(s.avg(), mean, mean_floor),
                "{n}: avg {} vs {mean}",
                s.avg()
            );
            // No absolute floor for std: it must be right relative to itself,
            // which is what fails when scaling or shifting breaks.
            assert!(close(s.std(), std, 0.0), "{n}: std {} vs {std}", s.std());
            if let Some((em, es)) = case.exact {
                assert!(close(s.avg(), em, mean_floor), "{n}: avg vs exact {em}");
                assert!(
                    close(s.std(), es, 0.0),
                    "{n}: std {} vs exact {es}",
                    s.std()
                );
            }
        }
    }

    #[test]
    fn count_and_scale_share_one_word() {
        assert_eq!(std::mem::size_of::<Stats>(), 48);
        // Tiny and huge values put the scale far below and above 0: both
        // must come back with their sign, and the count beside them intact.
        for (values, exp) in [
            (vec![1e-300, 3e-300, 2e-300], -997),
            (vec![1e300, 3e300, 2e300], 996),
            (vec![-5.0, 5.0, 7.0], 2),
        ] {
            let s = Stats::from_values(&values);
            assert_eq!(s.scale_exp(), exp, "{values:?}");
            assert_eq!(s.count(), 3, "{values:?}");
            assert_eq!(Stats::from_state(s.state()), s);
            let (mean, std) = two_pass(&values);
            assert!(close(s.avg(), mean, 0.0) && close(s.std(), std, 0.0));
        }
    }

    #[test]
    fn a_full_count_never_carries_into_the_scale() {
        let mut s = Stats::from_values(&[1e-300, 2e-300]);
        let mut state = s.state();
        state.count = u64::MAX;
        s = Stats::from_state(state);
        assert_eq!(s.count(), COUNT_MAX, "a checkpoint's count is clamped");
        let exp = s.scale_exp();
        s.push(1.5e-300);
        assert_eq!((s.count(), s.scale_exp()), (COUNT_MAX, exp));
        assert!(s.avg() > 1e-300 && s.avg() < 2e-300);
    }

    #[test]
    fn hard_rows_defeat_unscaled_unshifted_welford() {
        // Guards the table above: plain Welford (no scale, no shift) must get
        // these rows wrong, or they would not be testing the scale and shift.
        let plain = |v: &[f64]| {
            let (mut n, mut mean, mut m2) = (0.0, 0.0, 0.0);
            for &x in v {
                n += 1.0;
                let d = x - mean;
                mean += d / n;
                m2 += d * (x - mean);
            }
            (m2 / n).sqrt()
        };
        for case in cases() {
            let needs_care = [
                "textbook times 2^-1000",
                "tiny",
                "subnormal",
                "energy counter 1e12 + milli",
            ];
            if needs_care.iter().any(|p| case.name.starts_with(p)) {
                let (_, std) = two_pass(&case.values);
                let got = plain(&case.values);
                assert!(!close(got, std, 0.0), "{}: {got} vs {std}", case.name);
            }
        }
    }

    #[test]
    fn empty_stats_are_nan_not_zero() {
        let s = Stats::new();
        assert_eq!(s.count(), 0);
        for v in [s.avg(), s.std(), s.min(), s.max()] {
            assert!(v.is_nan());
        }
        assert_eq!(Stats::default(), Stats::from_values(&[]));
    }

    #[test]
    fn a_restored_state_with_an_impossible_range_reports_without_a_panic() {
        let good = Stats::from_values(&[1.0, 2.0, 3.0]).state();
        for (min, max) in [
            (5.0, 1.0),
            (f64::NAN, 3.0),
            (1.0, f64::NAN),
            (f64::NAN, f64::NAN),
        ] {
            let s = Stats::from_state(crate::StatsState { min, max, ..good });
            assert_eq!(s.count(), 3);
            let _ = (s.avg(), s.std(), s.min(), s.max());
        }
        // A sound range still bounds the mean.
        assert_eq!(Stats::from_state(good).avg(), 2.0);
    }

    #[test]
    fn non_finite_values_are_skipped() {
        let mut s = Stats::new();
        for v in [f64::NAN, 1.0, f64::INFINITY, 3.0, f64::NEG_INFINITY] {
            s.push(v);
        }
        assert_eq!(s.count(), 2);
        assert_eq!((s.avg(), s.std()), (2.0, 1.0));
    }

    #[test]
    fn push_and_from_values_agree() {
        let values = noise(100, 9);
        let mut s = Stats::new();
        for &v in &values {
            s.push(v);
        }
        assert_eq!(s, Stats::from_values(&values));
    }
}
