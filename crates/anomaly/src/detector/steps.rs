//! How the series steps, against how it usually does: how often it jumps,
//! and how large its steps are over the last few hours.
//!
//! A compressor that starts short-cycling, a door opened every few
//! minutes instead of every hour, a load balancer shedding more often:
//! each jump looks like the jumps the series always made, so no test on
//! one reading or one level sees it. Only their rate changed. A fridge
//! whose cycle runs twice as fast, a valve that starts hunting, a sensor
//! that loses half its resolution: each step is ordinary, but their size
//! over hours is not, and the 16-reading noise feature wavers too much to
//! tell.
//!
//! A jump is a step beyond [`JUMP`] times the series' mean step (about 4
//! deviations of a Gaussian step: chance makes one in tens of thousands).
//! The jumps of the last [`WINDOW`] readings are counted, and the count is
//! judged against the series' own history of counts, the way the other
//! features are: a regular spike train has a steady count and its first
//! burst of extra spikes stands out; a series whose jumps come in bursts
//! has learned that its count swings. The mean step of the last
//! [`SIZE_WINDOW`] readings is judged the same way, on a log scale, up
//! and down.

use serde::{Deserialize, Serialize};

use super::stats::Norm;
use super::{LONG, NOVEL_FLOOR};

/// A step beyond this many mean steps is a jump. The mean of |step| is
/// 0.8 of its deviation for Gaussian noise, so this is 4 deviations.
/// (4 and 6 give the same fault-class figures; 8 and 10 miss some of the
/// denser spikes on noise. See docs/anomaly-experiments.md.)
const JUMP: f64 = 5.0;
/// Readings over which jumps are counted (exponentially weighted).
const WINDOW: f64 = 128.0;
/// Nothing is judged before this many windows of steps have been seen,
/// so that the history describes the series and not its first hours.
const YOUNG: f64 = 2.0;
/// The count's spread is taken as at least one jump: in a series that
/// almost never jumps, the spread of its count is nearly zero and a
/// single jump would score in the dozens.
const ONE_JUMP: f64 = 1.0;
/// A value counts towards its own history at most this many spreads from
/// its mean: learned whole, a spike train four times as dense widened the
/// spread it is judged by fivefold within 300 readings, while the count
/// was still rising. (Unclipped, NAB in-sample 76.3 -> 75.3.)
const CLIP: f64 = 3.0;
/// Span, in readings, of the recent mean step: over 256 steps the mean
/// step of Gaussian noise wavers by about 5%.
const SIZE_WINDOW: f64 = 256.0;
/// The log of the recent mean step is taken to spread by at least this
/// (10%): a series whose steps are regular (a fridge's ramps) would
/// otherwise find a change of a few percent novel. With the novelty bar,
/// the mean step must move by about half to count.
const SIZE_SPREAD: f64 = 0.1;

/// The step features of one series: 16 `f64`s, persisted as one base64
/// string: written as named JSON numbers they took 420 bytes, which left
/// the detector 2 bytes under its 4 KB budget.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Steps {
    steps: f64,
    mean_step: f64,
    count: f64,
    counts: Norm,
    jumps: Episodes,
    recent_step: f64,
    sizes: Norm,
    larger: Episodes,
    smaller: Episodes,
}

impl From<Steps> for String {
    fn from(s: Steps) -> Self {
        let [cn, cm, cv] = s.counts.parts();
        let [sn, sm, sv] = s.sizes.parts();
        crate::compact::f64s_to_string(&[
            s.steps,
            s.mean_step,
            s.count,
            cn,
            cm,
            cv,
            s.jumps.peak,
            s.jumps.under_way,
            s.recent_step,
            sn,
            sm,
            sv,
            s.larger.peak,
            s.larger.under_way,
            s.smaller.peak,
            s.smaller.under_way,
        ])
    }
}

impl TryFrom<String> for Steps {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let [steps, mean_step, count, cn, cm, cv, jp, ju, recent_step, sn, sm, sv, lp, lu, sp, su] =
            crate::compact::f64s_from_str::<16>(&text)?;
        Ok(Self {
            steps,
            mean_step,
            count,
            counts: Norm::from_parts([cn, cm, cv]),
            jumps: Episodes {
                peak: jp,
                under_way: ju,
            },
            recent_step,
            sizes: Norm::from_parts([sn, sm, sv]),
            larger: Episodes {
                peak: lp,
                under_way: lu,
            },
            smaller: Episodes {
                peak: sp,
                under_way: su,
            },
        })
    }
}

/// What the step features say about one step: the novelty of the jump
/// count and of the recent mean step (0 when not novel), and whether the
/// series jumps more often than usual (then larger steps are its jumps).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepNovelty {
    pub jumps: f64,
    pub size: f64,
    pub more_jumps: bool,
    /// Whether this step was a jump.
    pub jump: bool,
}

impl Steps {
    /// Learns the step `step` to `x` (not one across a gap). Each feature's
    /// novelty is its deviation over the largest of its past episodes
    /// (taken as at least [`NOVEL_FLOOR`]), 0 when not beyond that floor;
    /// past episodes fade by `decay` per reading. Judged only when
    /// `judged`; smaller steps only when `smaller_judged` (a series that
    /// often repeats its value, a count, has no fine noise to lose).
    pub fn observe(
        &mut self,
        step: f64,
        x: f64,
        decay: f64,
        rate: f64,
        judged: bool,
        smaller_judged: bool,
    ) -> StepNovelty {
        let size = step.abs();
        self.steps += 1.0;
        self.mean_step += (size - self.mean_step) / self.steps.min(LONG);
        self.recent_step += (size - self.recent_step) * (2.0 / (SIZE_WINDOW * rate + 1.0));
        // A value that never moved has no mean step; rounding noise on it
        // is not a jump.
        let least = 1e-9 * (1.0 + x.abs());
        let jump = size > JUMP * self.mean_step.max(least);
        self.count = self.count * (1.0 - 1.0 / (WINDOW * rate)) + if jump { 1.0 } else { 0.0 };
        if self.steps <= YOUNG * WINDOW {
            return StepNovelty {
                jump,
                ..StepNovelty::default()
            };
        }
        let jumps = judge(&mut self.counts, self.count, ONE_JUMP);
        let log_size = (self.recent_step + least).ln();
        let size = judge(&mut self.sizes, log_size, SIZE_SPREAD);
        let larger = self.larger.novelty(size, decay);
        let smaller = self.smaller.novelty(-size, decay);
        let jumps_novelty = self.jumps.novelty(jumps, decay);
        if !judged {
            return StepNovelty {
                jump,
                ..StepNovelty::default()
            };
        }
        StepNovelty {
            jumps: jumps_novelty,
            size: if smaller_judged {
                larger.max(smaller)
            } else {
                larger
            },
            more_jumps: jumps > 1.0,
            jump,
        }
    }

    /// Keeps only `readings` readings of the jump count's history (after a
    /// detection, as for the other features). The step size keeps its
    /// history, as the detrended levels do: forgotten, the steps of the
    /// disturbance just reported became the yardstick, and what followed
    /// raised alerts of its own (fault classes, seeds 1-5: 75.8 with 411
    /// false alarms, against 76.3 with 393).
    pub fn forget(&mut self, readings: f64) {
        self.counts.forget(readings);
    }
}

/// The deviation of `v` from its history (spread taken as at least
/// `least`), then learns it, clipped at [`CLIP`] spreads once there is a
/// history to clip against: clipped from the start, a history began at 0
/// and crept towards the series' level (the log of a mean step of 10 kW is
/// 9) with a spread that took thousands of readings to shrink again.
fn judge(history: &mut Norm, v: f64, least: f64) -> f64 {
    let spread = history.sd().max(least);
    let z = history.z_against(v, spread);
    let mean = history.mean();
    let learned = if history.seen() < 2.0 {
        v
    } else {
        // Not `clamp`: it panics on NaN bounds, which a history damaged on
        // disk can hold.
        v.max(mean - CLIP * spread).min(mean + CLIP * spread)
    };
    history.learn(learned, LONG);
    z
}

/// The deepest deviation of a feature's past episodes (decaying), and the
/// one under way: as for the noise collapse, these features rise over
/// many readings, and judged against their own rise they would never be
/// novel.
#[derive(Debug, Clone, Default, PartialEq)]
struct Episodes {
    peak: f64,
    under_way: f64,
}

impl Episodes {
    /// The novelty of the deviation `z` (positive: the direction judged),
    /// and what it teaches.
    fn novelty(&mut self, z: f64, decay: f64) -> f64 {
        let known = self.peak.max(NOVEL_FLOOR);
        let novelty = if z > NOVEL_FLOOR { z / known } else { 0.0 };
        if z > 1.0 {
            self.under_way = self.under_way.max(z);
        } else {
            self.peak = self.peak.max(self.under_way);
            self.under_way = 0.0;
        }
        self.peak *= decay;
        novelty
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The novelty after each of `n` steps of a flat line with a jump of
    /// 40 every `every` readings (up, then back down).
    fn train(rate: &mut Steps, n: usize, every: usize) -> Vec<f64> {
        (0..n)
            .map(|i| {
                let step = match i % every {
                    0 => 40.0,
                    1 => -40.0,
                    _ => 0.0,
                };
                rate.observe(step, 20.0, 0.99997, 1.0, true, true).jumps
            })
            .collect()
    }

    #[test]
    fn a_steady_spike_train_is_not_novel_and_four_times_the_rate_is() {
        let mut rate = Steps::default();
        let before = train(&mut rate, 3_000, 60);
        assert!(
            before.iter().all(|&v| v == 0.0),
            "{:?}",
            before.iter().cloned().fold(0.0, f64::max)
        );
        let after = train(&mut rate, 300, 15);
        let first = after.iter().position(|&v| v > 1.3);
        assert!(first.is_some_and(|i| i < 150), "{first:?}");
    }

    #[test]
    fn a_series_that_never_jumped_needs_more_than_one_jump() {
        // One jump in a series that never jumped is the new-territory
        // test's business; the rate needs several within its window.
        let mut rate = Steps::default();
        let mut rng = crate::synthetic::Rng::new(3);
        for _ in 0..3_000 {
            rate.observe(rng.normal(), 20.0, 0.99997, 1.0, true, true);
        }
        assert_eq!(
            rate.observe(30.0, 20.0, 0.99997, 1.0, true, true).jumps,
            0.0
        );
        let mut novelty = 0.0;
        for i in 0..48 {
            let step = if i % 6 == 0 { 30.0 } else { rng.normal() };
            novelty = rate.observe(step, 20.0, 0.99997, 1.0, true, true).jumps;
        }
        assert!(novelty > 1.3, "{novelty}");
    }

    #[test]
    fn a_fault_does_not_widen_the_spread_it_is_judged_by() {
        let mut clipped = Steps::default();
        train(&mut clipped, 3_000, 60);
        let spread_before = clipped.counts.sd();
        train(&mut clipped, 300, 15);
        // Learned whole, the count (4 to 19 jumps) took the spread from
        // 0.57 to 3.2 in these 300 readings; clipped, to 1.06.
        assert!(
            clipped.counts.sd() < 1.5 * spread_before.max(ONE_JUMP),
            "{spread_before} -> {:?}",
            clipped.counts
        );
    }

    /// The novelty of the step size after `n` steps of Gaussian noise with
    /// deviation `sd`.
    fn noise(steps: &mut Steps, rng: &mut crate::synthetic::Rng, n: usize, sd: f64) -> Vec<f64> {
        (0..n)
            .map(|_| {
                steps
                    .observe(sd * rng.normal(), 20.0, 0.99997, 1.0, true, true)
                    .size
            })
            .collect()
    }

    #[test]
    fn steps_half_again_as_large_or_half_as_large_are_novel_and_noise_is_not() {
        // Watts of a plant and volts of a cell behave alike: the size is
        // judged on a log scale, whose history must not start from 0.
        for scale in [1e-4, 1.0, 1e4] {
            for (after, within) in [(1.8, 400), (0.5, 300)] {
                let mut steps = Steps::default();
                let mut rng = crate::synthetic::Rng::new(5);
                let before = noise(&mut steps, &mut rng, 5_000, scale);
                assert!(
                    before.iter().all(|&v| v == 0.0),
                    "{scale} {after}: noise alone was novel"
                );
                let changed = noise(&mut steps, &mut rng, 1_000, after * scale);
                let first = changed.iter().position(|&v| v > 1.3);
                assert!(
                    first.is_some_and(|i| i < within),
                    "{scale} {after}: {first:?}"
                );
            }
        }
    }
}
