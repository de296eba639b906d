//! How often the series jumps, against how often it usually does.
//!
//! A compressor that starts short-cycling, a door that opens every few
//! minutes instead of every hour, a load balancer shedding more often:
//! each jump looks like the jumps the series always made, so no test on
//! one reading or one level sees it. Only their rate changed.
//!
//! A jump is a step beyond [`JUMP`] times the series' mean step (about 4
//! deviations of a Gaussian step: chance makes one in tens of thousands).
//! The jumps of the last [`WINDOW`] readings are counted, and the count is
//! judged against the series' own history of counts, the way the other
//! features are: a regular spike train has a steady count and its first
//! burst of extra spikes stands out; a series whose jumps come in bursts
//! has learned that its count swings.

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
/// The count is judged once this many windows of steps have been seen,
/// so that its history describes the series and not its first hours.
const YOUNG: f64 = 2.0;
/// The count's spread is taken as at least one jump: in a series that
/// almost never jumps, the spread of its count is nearly zero and a
/// single jump would score in the dozens.
const ONE_JUMP: f64 = 1.0;
/// A count counts towards its own history at most this many spreads from
/// its mean: learned whole, a spike train four times as dense widened the
/// spread it is judged by fivefold within 300 readings, while the count
/// was still rising. (Unclipped, NAB in-sample 76.3 -> 75.3.)
const CLIP: f64 = 3.0;

/// The jump-rate feature of one series; a few `f64`s.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpikeRate {
    steps: f64,
    mean_step: f64,
    count: f64,
    counts: Norm,
    /// Highest deviation of the count over past episodes (decaying), and
    /// the one under way: as for the noise collapse, the count rises over
    /// many readings, and judged against its own rise it would never be
    /// novel.
    peak: f64,
    episode: f64,
}

impl SpikeRate {
    /// Learns the step `step` to `x` (not one across a gap) and returns
    /// how novel the count of jumps now is: its deviation over the largest
    /// of the series' past episodes (taken as at least [`NOVEL_FLOOR`]), or
    /// 0 when it is not beyond that floor. Past episodes fade by `decay`
    /// per reading. Judged only when `judged`.
    pub fn observe(&mut self, step: f64, x: f64, decay: f64, judged: bool) -> f64 {
        let size = step.abs();
        self.steps += 1.0;
        self.mean_step += (size - self.mean_step) / self.steps.min(LONG);
        // A value that never moved has no mean step; rounding noise on it
        // is not a jump.
        let least = 1e-9 * (1.0 + x.abs());
        let jump = size > JUMP * self.mean_step.max(least);
        self.count = self.count * (1.0 - 1.0 / WINDOW) + if jump { 1.0 } else { 0.0 };
        if self.steps <= YOUNG * WINDOW {
            return 0.0;
        }
        let spread = self.counts.sd().max(ONE_JUMP);
        let z = self.counts.z_against(self.count, spread).max(0.0);
        let known = self.peak.max(NOVEL_FLOOR);
        let novelty = if judged && z > NOVEL_FLOOR {
            z / known
        } else {
            0.0
        };
        if z > 1.0 {
            self.episode = self.episode.max(z);
        } else {
            self.peak = self.peak.max(self.episode);
            self.episode = 0.0;
        }
        self.peak *= decay;
        let mean = self.counts.mean();
        let clipped = self.count.clamp(mean - CLIP * spread, mean + CLIP * spread);
        self.counts.learn(clipped, LONG);
        novelty
    }

    /// Keeps only `readings` readings of the count's history (after a
    /// detection, as for the other features).
    pub fn forget(&mut self, readings: f64) {
        self.counts.forget(readings);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The novelty after each of `n` steps of a flat line with a jump of
    /// 40 every `every` readings (up, then back down).
    fn train(rate: &mut SpikeRate, n: usize, every: usize) -> Vec<f64> {
        (0..n)
            .map(|i| {
                let step = match i % every {
                    0 => 40.0,
                    1 => -40.0,
                    _ => 0.0,
                };
                rate.observe(step, 20.0, 0.99997, true)
            })
            .collect()
    }

    #[test]
    fn a_steady_spike_train_is_not_novel_and_four_times_the_rate_is() {
        let mut rate = SpikeRate::default();
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
        let mut rate = SpikeRate::default();
        let mut rng = crate::synthetic::Rng::new(3);
        for _ in 0..3_000 {
            rate.observe(rng.normal(), 20.0, 0.99997, true);
        }
        assert_eq!(rate.observe(30.0, 20.0, 0.99997, true), 0.0);
        let mut novelty = 0.0;
        for i in 0..48 {
            let step = if i % 6 == 0 { 30.0 } else { rng.normal() };
            novelty = rate.observe(step, 20.0, 0.99997, true);
        }
        assert!(novelty > 1.3, "{novelty}");
    }

    #[test]
    fn a_fault_does_not_widen_the_spread_it_is_judged_by() {
        let mut clipped = SpikeRate::default();
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
}
