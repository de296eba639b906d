//! From the tests' evidence on one reading to the verdict: which tests
//! hold, which are armed, the quiet period after a detection, and the
//! reason and expected range a detection reports. Kept apart from the
//! features' arithmetic (`observe_with`) because this is where "one
//! anomaly, one alert" is decided, and every test shares it.

use super::{
    discord, resonance, Detector, Params, Reason, Verdict, AFTER_ALERT, ALL_TESTS, DETRENDED,
    EPISODE_DECAY, LEVELS, NOISE, NOVEL_FLOOR, QUIET, RECURS, SEASONAL, SPIKES, STUCK_MIN,
    STUCK_MOVING,
};

/// What the tests measured on one reading, after the detector learned it.
pub(super) struct Evidence {
    /// The shift score: the averaged evidence in its own deviations.
    pub score: f64,
    /// How far the reading lies beyond the recent range (0 within it), and
    /// that range before the reading.
    pub excess: f64,
    pub territory: (f64, f64),
    /// The value has not changed for longer than it ever did.
    pub stuck: bool,
    /// Spread of the readings around the baseline, and the range they
    /// were expected in.
    pub sd: f64,
    pub expected: (f64, f64),
    /// The largest feature novelty, and the feature.
    pub novelty: f64,
    pub novel_feature: usize,
    /// The level feature furthest out, which names a shift.
    pub strongest: usize,
    /// Past the warm-up: a detection may be reported.
    pub warm: bool,
    /// The second families' judgements.
    pub shape: resonance::Judgement,
    pub discord: discord::Judgement,
    /// The fraction of the spans counted in readings this series keeps
    /// (see `Params::rate_floor`).
    pub rate: f64,
}

impl Detector {
    /// Decides the verdict on the reading the evidence is about.
    pub(super) fn decide(&mut self, evidence: Evidence, p: &Params) -> Verdict {
        let Evidence {
            score,
            excess,
            territory,
            stuck,
            sd,
            expected,
            novelty,
            novel_feature,
            strongest,
            warm,
            shape,
            discord,
            rate,
        } = evidence;
        let episode_decay = if rate < 1.0 {
            EPISODE_DECAY.powf(1.0 / rate)
        } else {
            EPISODE_DECAY
        };
        let threshold = p.shift;
        let quiet_readings = p.quiet;
        let novel = p.novelty;
        let range_margin = p.range;
        // Each test is armed on its own: after a detection, a test that
        // still holds cannot fire again until it has stopped holding, so a
        // lasting anomaly is one alert, while another test may still report
        // something new.
        // A shift that keeps coming back (a CPU's nightly job, a little
        // off the clock for the seasonal profile) is the series' habit:
        // once it has begun twice within the recent past, it no longer
        // fires, unless it is far larger than those episodes were (by the
        // novelty factor: `Twitter_volume_CVS`'s burst eight times the
        // size of its usual ones was silenced as a habit). Each episode
        // counts once, however long it lasts.
        let shifted = score > threshold && self.raw > p.floor;
        let habit = self.episodes >= RECURS && self.raw <= p.novelty * self.habit_peak;
        // An episode is counted whether or not its score is still news: a
        // move the series keeps making is learned, scores under the
        // threshold, and its habit faded while it went on recurring, until
        // one return a little larger than the others fired (a flat line's
        // regular spikes, AWS CPUs' recurring load). It lasts as long as
        // the shift test counts a shift as lingering.
        let episode = self.raw > p.floor && score > 0.5 * threshold;
        if episode && !self.shifted {
            self.episodes += 1.0;
        }
        if episode {
            self.episode_peak = self.episode_peak.max(self.raw);
        } else if self.shifted {
            self.habit_peak = self.habit_peak.max(self.episode_peak);
            self.episode_peak = 0.0;
        }
        self.episodes *= episode_decay;
        self.habit_peak *= episode_decay;
        self.shifted = episode;
        if self.n <= self.quiet_until {
            self.alert_peak = self.alert_peak.max(self.raw);
        }
        // Refractory: after a detection the shift test wants more evidence
        // than the reported disturbance reached, a demand that fades as a
        // habit episode is forgotten (the same "recent past"), so the
        // aftershocks of one event (a burst of tweets, an autoscaling group
        // settling) raise one alert. The peak is taken over the whole quiet
        // period, not at the first crossing: the averaged evidence is still
        // climbing when the alert fires. (Cross-validated: out-of-fold
        // 74.4 -> 75.2, gap 0.0. See docs/anomaly-experiments.md.)
        let refractory = shifted
            && self.last_alert > 0
            && self.raw
                <= self.alert_peak
                    * episode_decay.powf(self.n.saturating_sub(self.last_alert) as f64);
        let shift = shifted && !habit && !refractory;
        let width = self.envelope.width();
        // A jump to a new extreme is news even when it is barely beyond
        // the range; a wander to one must go further to count.
        let jump = self.zs[0] > p.jump;
        let range = excess.abs() > range_margin && (jump || excess.abs() * width > p.range_sd * sd);
        let novel_hit = novelty > novel;
        let first = p.first_family;
        let holds = [
            first && stuck,
            first && range,
            first && shift,
            first && novel_hit,
            shape.fire.is_some(),
            discord.fire.is_some(),
        ];
        // The shift test re-arms only once its score has fallen to half the
        // threshold (a shifted level hovering around the threshold while it
        // is learned is still the same anomaly), the range test once no
        // record has been set for SUPPRESS readings.
        if excess != 0.0 {
            self.last_record = self.n;
        }
        let recent_record = self.n.saturating_sub(self.last_record) < quiet_readings;
        let lingers = [
            stuck,
            recent_record,
            score > 0.5 * threshold,
            novel_hit,
            shape.novel,
            discord.lingers,
        ];
        // A detection's quiet period lasts until no test has held for
        // SUPPRESS readings. (Until none has *lingered* was tried: NAB 70.1
        // instead of 75.2, as the later stages of an anomaly went unseen.)
        let quiet = self.n <= self.quiet_until;
        if quiet && holds.iter().any(|h| *h) {
            self.quiet_until = self.quiet_until.max(self.n + quiet_readings);
        }
        for (i, h) in lingers.iter().enumerate() {
            if !h && !quiet {
                self.disarmed &= !(1 << i);
            }
        }
        let firing = holds
            .iter()
            .enumerate()
            .position(|(i, h)| *h && self.disarmed & (1 << i) == 0);
        // A frozen value drags the levels away too, and the shift test may
        // notice first: a series that normally moves but has not for a few
        // readings is reported stuck, the more useful explanation.
        let frozen = self.moving > STUCK_MOVING && f64::from(self.run) >= STUCK_MIN / 2.0;
        let reason = firing.map(|path| match path {
            _ if frozen => Reason::Stuck,
            0 => Reason::Stuck,
            1 if self.zs[0] > NOVEL_FLOOR => Reason::Spike,
            1 => Reason::LevelShift,
            2 => match strongest {
                SEASONAL => Reason::Seasonal,
                3 | 6 => Reason::Drift,
                _ => Reason::LevelShift,
            },
            4 | 5 => Reason::Pattern,
            _ => match novel_feature {
                0 => Reason::Spike,
                NOISE | QUIET => Reason::Noise,
                SPIKES => Reason::SpikeRate,
                LEVELS => Reason::UnusualLevel,
                SEASONAL => Reason::Seasonal,
                _ => Reason::LevelShift,
            },
        });
        let fire = warm && self.n > self.quiet_until && reason.is_some();
        if fire {
            // What follows an anomaly is often a new regime (a CPU after a
            // deployment, a count after a launch), and an anomaly's own
            // readings inflate the spreads it is judged by for the next
            // 5 000: so the distributions of the step, the absolute
            // levels, the seasonal residual and the noise restart from a
            // short memory, and what comes after is learned within a few
            // hundred readings. The detrended levels keep theirs: they are
            // measured from the slow baseline, which follows a new regime
            // anyway, and forgetting them too cost
            // `ambient_temperature_system_failure` its second window.
            // (Cross-validated: out-of-fold 72.1 -> 74.4; forgetting every
            // feature, 73.8. See docs/anomaly-experiments.md.)
            self.steps.forget(AFTER_ALERT * rate);
            for (i, norm) in self.norms.iter_mut().enumerate() {
                if !DETRENDED.contains(&i) {
                    norm.forget(AFTER_ALERT * rate);
                }
            }
            self.disarmed = ALL_TESTS;
            self.rhythm.disturbed();
            self.spike_rhythm.disturbed();
            self.quiet_until = self.n + quiet_readings;
            self.last_alert = self.n;
            self.alert_peak = self.raw;
        }
        // A reading beyond the recent range is shown against that range;
        // anything else against the baseline (or the profile) ± 2 spreads.
        let (lo, hi) = if firing == Some(5) && !frozen {
            // Where the nearest earlier window was, give or take its usual
            // distance.
            discord.expected
        } else if reason == Some(Reason::Pattern) {
            // Where the nearest learned shape held its latest sample.
            shape.expected
        } else if range {
            (territory.0.min(expected.0), territory.1.max(expected.1))
        } else {
            expected
        };
        Verdict {
            score: if warm { score } else { 0.0 },
            threshold,
            anomaly: fire,
            active: self.n < self.quiet_until,
            reason: if fire { reason } else { None },
            expected: (lo, hi),
        }
    }
}
