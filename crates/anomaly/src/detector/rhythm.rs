//! How long the series waits between its jumps, against the shortest
//! wait it usually makes.
//!
//! A pulse train (a pump's start, a door contact, a load balancer's
//! health check) jumps at a steady rhythm. When it starts jumping four
//! times as often, the count of jumps over the last hours (see
//! [`super::steps`]) needs several of the new jumps before it leaves its
//! usual swing: NAB-style spikes four times as dense on a flat line were
//! caught in 2 of 5 windows. The waits say it within two jumps, because a
//! steady rhythm's waits hardly vary.
//!
//! A wait is judged against the shortest the series has made, in units of
//! how far its typical wait lies above that shortest (on a log scale).
//! That scale is the series' own: a steady train's typical wait lies
//! about a third above its shortest (a spike every 150-250 readings), so
//! a wait of half the shortest is far beyond;
//! jumps that come at random (plain noise with a rare large step, a meter
//! with appliances) have already made waits of a few readings, and
//! nothing can be shorter by a margin of their scale.
//!
//! Two short waits in a row are needed: one chance jump between two
//! regular ones makes a single short wait (a weekly pattern read every
//! minute, with its Gaussian noise, doubled its false alarms on one), a
//! rhythm that quickens makes them all short.

use serde::{Deserialize, Serialize};

/// Jumps closer than this many readings are one event: a spike is a jump
/// up and a jump back down.
const MERGE: f64 = 3.0;
/// Waits seen before any is judged: the shortest of fewer than a dozen
/// says little. An office read every minute jumps about once a day, at
/// random; judged after 10 waits it raised 13 more false alarms in the
/// fault classes' 360 such series (seeds 26-45), after 12 it raises 11.
/// After 20, spikes on a flat line were never judged before their fault.
const YOUNG: f64 = 12.0;
/// The typical wait (log) is an average over about this many waits.
const MEMORY: f64 = 100.0;
/// The typical wait is taken to lie at least this far (log) above the
/// shortest: a metronome's waits do not vary at all, and one reading's
/// jitter would be news.
const LEAST_SCALE: f64 = 0.2;
/// A wait this many scales below the shortest is as novel as the other
/// features' novelty bar takes (so at the default bar of 1.3, 2.6 scales:
/// for a train whose typical wait is a third above its shortest, under
/// half that shortest).
const DEPTH: f64 = 2.0;

/// Seven `f64`s, persisted as one base64 string (the detector is within
/// 100 bytes of its 4 KB budget).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Rhythm {
    since_jump: f64,
    since_event: f64,
    waits: f64,
    typical: f64,
    shortest: f64,
    last_wait: f64,
    last_depth: f64,
    /// 1 when the wait under way began outside a detection's quiet
    /// period, 0 when it began inside one.
    calm_start: f64,
}

impl From<Rhythm> for String {
    fn from(r: Rhythm) -> Self {
        crate::compact::f64s_to_string(&r.parts())
    }
}

impl TryFrom<String> for Rhythm {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        crate::compact::f64s_from_str::<8>(&text).map(Rhythm::from_parts)
    }
}

impl Rhythm {
    /// Its eight numbers in the persisted order.
    fn parts(&self) -> [f64; 8] {
        [
            self.since_jump,
            self.since_event,
            self.waits,
            self.typical,
            self.shortest,
            self.last_wait,
            self.last_depth,
            self.calm_start,
        ]
    }

    fn from_parts(
        [since_jump, since_event, waits, typical, shortest, last_wait, last_depth, calm_start]: [f64; 8],
    ) -> Self {
        Self {
            since_jump,
            since_event,
            waits,
            typical,
            shortest,
            last_wait,
            last_depth,
            calm_start,
        }
    }

    /// A detection at this reading: the waits that begin with the
    /// disturbance just reported (a sensor stuck for a day jumps several
    /// times as it recovers) are its own, not a new rhythm.
    pub fn disturbed(&mut self) {
        self.calm_start = 0.0;
    }

    /// Learns one step (`jump`: whether it was one) and returns the
    /// novelty of the two waits that end at it, if both were short (0
    /// otherwise, and when not `judged`). The shortest wait is forgotten
    /// towards the typical one by `decay` per reading, as the other
    /// features' peaks are.
    pub fn observe(&mut self, jump: bool, decay: f64, judged: bool, calm: bool) -> f64 {
        self.observe_waits(false, jump, decay, judged, calm)
    }

    /// [`Self::observe`]; `single`: one short wait is enough.
    fn observe_waits(
        &mut self,
        single: bool,
        jump: bool,
        decay: f64,
        judged: bool,
        calm: bool,
    ) -> f64 {
        self.since_jump += 1.0;
        self.since_event += 1.0;
        self.shortest += (1.0 - decay) * (self.typical - self.shortest);
        if !jump {
            return 0.0;
        }
        let merged = self.since_jump < MERGE;
        self.since_jump = 0.0;
        if merged {
            return 0.0;
        }
        let wait = self.since_event.ln();
        self.since_event = 0.0;
        self.waits += 1.0;
        // The first jump ends no wait: the series' start is not a jump.
        if self.waits < 2.0 {
            return 0.0;
        }
        let scale = (self.typical - self.shortest).max(LEAST_SCALE);
        let depth = if self.calm_start > 0.0 {
            (self.shortest - wait) / scale
        } else {
            0.0
        };
        self.calm_start = if calm { 1.0 } else { 0.0 };
        self.typical += (wait - self.typical) / (self.waits - 1.0).min(MEMORY);
        // The previous wait is learned only now, so that the second of two
        // short waits is judged against the shortest before the first.
        self.shortest = if self.waits < 4.0 {
            self.typical
        } else {
            self.shortest.min(self.last_wait)
        };
        let both = if single {
            depth
        } else {
            depth.min(self.last_depth)
        };
        self.last_wait = wait;
        self.last_depth = depth;
        if judged && self.waits > YOUNG + 1.0 {
            both.max(0.0) / DEPTH
        } else {
            0.0
        }
    }
}

/// The waits between spikes alone: a jump answered within [`MERGE`]
/// readings by a jump the other way. On a daily wave the wave's own steps
/// fall between the spikes, and the waits over all jumps looked random
/// (a steady spike train laid on NAB's daily waves, quickening four times,
/// was caught in a third of the draws where the flat line's was caught in
/// all); the spikes' own waits keep their rhythm.
///
/// One short wait is enough here, where [`Rhythm`] wants two: the chance
/// jump that made a single short wait among regular ones (a weekly
/// pattern's noise between its steps) is no spike train's, and a series
/// whose spikes come at random (a meter's appliances) has made short
/// waits already, so its scale is wide. Reported a spike sooner, the
/// NAB-style trains are caught inside their window more often (see
/// `docs/anomaly-experiments.md`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct SpikeRhythm {
    waits: Rhythm,
    /// The last jump not yet answered: its sign times the readings since
    /// it (0: none).
    open: f64,
}

impl From<SpikeRhythm> for String {
    fn from(s: SpikeRhythm) -> Self {
        let [a, b, c, d, e, f, g, h] = s.waits.parts();
        crate::compact::f64s_to_string(&[a, b, c, d, e, f, g, h, s.open])
    }
}

impl TryFrom<String> for SpikeRhythm {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let [a, b, c, d, e, f, g, h, open] = crate::compact::f64s_from_str::<9>(&text)?;
        Ok(Self {
            waits: Rhythm::from_parts([a, b, c, d, e, f, g, h]),
            open,
        })
    }
}

impl SpikeRhythm {
    /// See [`Rhythm::disturbed`].
    pub fn disturbed(&mut self) {
        self.waits.disturbed();
    }

    /// Learns one step (`step`, and whether it was a jump) and returns the
    /// novelty of the wait between spikes that ends at it, judged as
    /// [`Rhythm::observe`] judges waits.
    pub fn observe(&mut self, step: f64, jump: bool, decay: f64, judged: bool, calm: bool) -> f64 {
        let answered = jump && self.open != 0.0 && self.open.signum() != step.signum();
        if answered {
            self.open = 0.0;
        } else if jump {
            self.open = step.signum();
        } else if self.open != 0.0 {
            self.open += self.open.signum();
            if self.open.abs() > MERGE {
                self.open = 0.0;
            }
        }
        self.waits
            .observe_waits(true, answered, decay, judged, calm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::Rng;

    /// Feeds `jumps` (each a wait in readings before a jump) and returns
    /// the largest novelty seen.
    fn play(rhythm: &mut Rhythm, waits: impl IntoIterator<Item = usize>) -> f64 {
        let mut most: f64 = 0.0;
        for wait in waits {
            for _ in 1..wait {
                rhythm.observe(false, 0.99997, true, true);
            }
            most = most.max(rhythm.observe(true, 0.99997, true, true));
        }
        most
    }

    fn regular(rng: &mut Rng, n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| 150 + (rng.uniform() * 100.0) as usize)
            .collect()
    }

    #[test]
    fn a_steady_train_is_not_novel_and_one_four_times_as_fast_is_within_two_jumps() {
        let mut rng = Rng::new(7);
        let mut rhythm = Rhythm::default();
        assert_eq!(play(&mut rhythm, regular(&mut rng, 40)), 0.0);
        let faster: Vec<usize> = regular(&mut rng, 2).iter().map(|w| w / 4).collect();
        assert!(play(&mut rhythm, faster) > 1.3);
    }

    #[test]
    fn one_chance_jump_between_two_regular_ones_is_not_novel() {
        let mut rng = Rng::new(8);
        let mut rhythm = Rhythm::default();
        play(&mut rhythm, regular(&mut rng, 40));
        assert!(play(&mut rhythm, [40, 160, 200, 180]) < 1.0);
    }

    #[test]
    fn jumps_at_random_are_never_novel() {
        // Waits of an exponential distribution (a meter's appliances): its
        // shortest waits are a few readings, and its scale is wide.
        let mut rng = Rng::new(9);
        let mut rhythm = Rhythm::default();
        let waits = (0..2_000).map(|_| 3 + (-250.0 * (1.0 - rng.uniform()).ln()) as usize);
        assert!(play(&mut rhythm, waits) < 1.3);
    }

    #[test]
    fn only_a_jump_answered_the_other_way_is_a_spike() {
        fn feed(spikes: &mut SpikeRhythm, steps: &[f64]) {
            for &step in steps {
                spikes.observe(step, step.abs() > 1.0, 0.9999, true, true);
            }
        }
        let mut spikes = SpikeRhythm::default();
        // A step up that stays, a step down that stays: a schedule's day.
        feed(
            &mut spikes,
            &[0.0, 10.0, 0.0, 0.0, 0.0, 0.0, -10.0, 0.0, 0.0, 0.0, 0.0],
        );
        assert_eq!(spikes.waits.waits, 0.0);
        // Up and back: one spike. Up, then up again: none.
        feed(
            &mut spikes,
            &[5.0, -5.0, 0.0, 0.0, 0.0, 0.0, 5.0, 5.0, 0.0, 0.0, 0.0, 0.0],
        );
        assert_eq!(spikes.waits.waits, 1.0);
        // Answered too late (beyond the merge): none.
        feed(
            &mut spikes,
            &[5.0, 0.0, 0.0, 0.0, 0.0, -5.0, 0.0, 0.0, 0.0, 0.0],
        );
        assert_eq!(spikes.waits.waits, 1.0);
        // A dip is a spike too.
        feed(&mut spikes, &[-5.0, 0.0, 5.0]);
        assert_eq!(spikes.waits.waits, 2.0);
        let text = String::from(spikes.clone());
        assert_eq!(SpikeRhythm::try_from(text), Ok(spikes));
    }

    #[test]
    fn a_spike_is_one_event_not_two() {
        let mut rhythm = Rhythm::default();
        for wait in [200, 1, 199, 1, 200, 1] {
            play(&mut rhythm, [wait]);
        }
        assert_eq!(rhythm.waits, 3.0);
    }
}
