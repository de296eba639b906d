//! The learned detector: one [`Detector`] per device × metric.
//!
//! See the crate documentation for the model. Everything here is plain
//! arithmetic on `f64` with no allocation per reading, so a gateway can keep
//! thousands of series; the whole learned state is one small serde struct.

mod decide;
mod discord;
mod levels;
mod params;
mod resonance;
mod rhythm;
mod saved;
mod seasonal;
mod spans;
mod stats;
mod steps;
mod verdict;
mod when;

use serde::{Deserialize, Serialize};

use decide::Evidence;
use discord::Discord;
pub use gateway_core::config::DEFAULT_SENSITIVITY;
use levels::Levels;
pub use params::Params;
use resonance::Resonance;
use rhythm::{Rhythm, SpikeRhythm};
use seasonal::Seasonal;
use spans::*;
use stats::{Envelope, Norm};
use steps::Steps;
pub use verdict::{Reason, Verdict};
pub use when::When;

/// Online, causal anomaly detector for one series. See the crate docs.
///
/// Persisted in a packed form (see `saved`): its scalars as one string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "saved::Saved", into = "saved::Saved")]
pub struct Detector {
    n: u64,
    last: f64,
    last_ms: i64,
    /// Time of the first reading, for the warm-up.
    first_ms: i64,
    interval_ms: f64,
    smooth: [f64; 3],
    base: f64,
    vol: f64,
    norms: [Norm; K],
    raw: f64,
    raw_norm: Norm,
    peaks: [f64; K],
    quiet_until: u64,
    /// False from a detection until a reading after the quiet period shows
    /// no evidence at all: an anomaly that persists is one alert, however
    /// long it lasts.
    disarmed: u8,
    /// Reading count at the last value beyond the recent range.
    last_record: u64,
    /// Spread of the reading around the baseline, for `expected`.
    spread: Norm,
    envelope: Envelope,
    seasonal_smooth: f64,
    seasonal: Seasonal,
    /// Readings since the value last changed, and the longest such run
    /// seen (decaying), and how often the value changes at all.
    run: u32,
    longest_run: f64,
    moving: f64,
    /// Recent shift episodes (decaying), and whether one is under way
    /// (whether or not it was news).
    episodes: f64,
    shifted: bool,
    /// Largest averaged evidence of the recent past episodes (decaying
    /// with them) and of the one under way: a habit is a shift of the size
    /// the series has made before, not one several times larger.
    habit_peak: f64,
    episode_peak: f64,
    /// Reading count at the last detection (0 before any), and the
    /// largest averaged evidence seen from then to the end of its quiet
    /// period: the disturbance already reported, which a later shift must
    /// exceed while it is remembered.
    last_alert: u64,
    alert_peak: f64,
    /// Deepest fall of the noise below its usual level (in its own
    /// deviations) over past quiet episodes, decaying like the novelty
    /// peaks, and the one under way.
    quiet_peak: f64,
    quiet_episode: f64,
    steps: Steps,
    /// The step before this one, for the noise feature.
    last_step: f64,
    /// The waits between jumps, and between spikes alone.
    rhythm: Rhythm,
    spike_rhythm: SpikeRhythm,
    /// The levels the series has taken lately.
    levels: Levels,
    /// The second family: the categories of the series' recent shapes.
    /// Absent while it is off (the default), so its bytes are not spent.
    resonance: Option<Box<Resonance>>,
    /// The other second family: the series' recent history, for the
    /// distance of its newest window to the nearest earlier one. Absent
    /// while it is off.
    discord: Option<Box<Discord>>,
    /// Last standardised features, for diagnostics (not persisted).
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
            first_ms: 0,
            interval_ms: 0.0,
            smooth: [0.0; 3],
            base: 0.0,
            vol: 0.0,
            norms: Default::default(),
            raw: 0.0,
            raw_norm: Norm::default(),
            peaks: [0.0; K],
            quiet_until: 0,
            disarmed: 0,
            last_record: 0,
            spread: Norm::default(),
            envelope: Envelope::default(),
            seasonal_smooth: 0.0,
            seasonal: Seasonal::default(),
            run: 0,
            longest_run: 0.0,
            moving: 0.0,
            episodes: 0.0,
            shifted: false,
            habit_peak: 0.0,
            episode_peak: 0.0,
            last_alert: 0,
            alert_peak: 0.0,
            quiet_peak: 0.0,
            quiet_episode: 0.0,
            steps: Steps::default(),
            last_step: 0.0,
            rhythm: Rhythm::default(),
            spike_rhythm: SpikeRhythm::default(),
            levels: Levels::default(),
            resonance: None,
            discord: None,
            zs: [0.0; K],
        }
    }

    /// Forgets the daily and weekly profiles, learned on another wall clock
    /// (the gateway's time zone changed): read on this one they would be
    /// hours off. They are learned again as in a new series.
    pub fn forget_wall_clock(&mut self) {
        self.seasonal = Seasonal::default();
        self.seasonal_smooth = 0.0;
    }

    /// Readings learned so far.
    pub fn seen(&self) -> u64 {
        self.n
    }

    /// Scores `x` against what was learned, then learns it. Non-finite
    /// values are ignored (scored 0, not learned).
    pub fn observe(&mut self, at: impl Into<When>, x: f64, sensitivity: f64) -> Verdict {
        self.observe_with(at, x, &Params::DEFAULT.at_sensitivity(sensitivity))
    }

    /// [`Self::observe`] with explicit parameters (the cross-validation
    /// harness searches them; the product uses the defaults).
    pub fn observe_with(&mut self, at: impl Into<When>, x: f64, p: &Params) -> Verdict {
        let at = at.into();
        let at_ms = at.utc_ms;
        let threshold = p.shift;
        let quiet = Verdict {
            score: 0.0,
            threshold,
            anomaly: false,
            active: self.n < self.quiet_until,
            reason: None,
            expected: (x, x),
        };
        if !x.is_finite() {
            return quiet;
        }
        // A series reading ±1e308 (finite, so accepted) overflowed its
        // spreads to NaN, and a clip with NaN bounds panicked. Clipped
        // far beyond any building's quantity, it is still an anomaly.
        let x = x.clamp(-LARGEST, LARGEST);
        if self.n == 0 {
            self.first_ms = at_ms;
            self.last = x;
            self.smooth = [x; 3];
            self.base = x;
            self.envelope = Envelope::default();
            self.envelope.hi = x;
            self.envelope.lo = x;
        }
        // After a gap the step from the last reading is not a one-step
        // change: it says nothing about the process, only about the link.
        let dt = at_ms.saturating_sub(self.last_ms).max(0) as f64;
        let gap = self.n > 1 && dt > GAP * self.interval_ms;
        if self.n >= 1 && !gap {
            let a = 1.0 / (self.n as f64).min(100.0);
            self.interval_ms += (dt - self.interval_ms) * a;
        }
        self.last_ms = at_ms;
        let rate = params::rate_of(self.interval_ms, self.n, p);
        let p = &p.at_rate(rate);
        let warmup = (WARMUP as f64 * rate).round() as u64;
        let r = if gap { 0.0 } else { x - self.last };
        let trusted = self.seasonal.expected(at);
        let season = trusted.map(|e| e.deviation);
        // A series that follows the calendar (a profile is trusted) varies
        // over days and weeks, so its memories are spans of time: the
        // features' spreads and the novelty peaks keep as many days as they
        // do at the 5-minute rate they were chosen at. Counted in readings,
        // an office read every minute remembered three and a half days:
        // every weekend narrowed its spreads and every Monday was news
        // (299 alerts in 70 series of five weeks, against 20 read every 5
        // minutes). A series without a rhythm keeps counting readings: its
        // events come per reading, not per day.
        let memory = rate
            * match trusted {
                Some(_) if self.interval_ms > 0.0 => {
                    LONG * (CHOSEN_AT_MS / self.interval_ms).max(1.0)
                }
                _ => LONG,
            };
        let peak_decay = if memory > LONG {
            p.peak_decay.powf(LONG / memory)
        } else {
            p.peak_decay
        };
        let mut smooth = self.smooth;
        for (s, span) in smooth.iter_mut().zip(SCALES) {
            *s += (x - *s) * (2.0 / (span * rate + 1.0));
        }
        let base = self.base;
        // The noise is read from the change of the step, not the step: a
        // fridge's ramps (0.1 a minute) dwarfed its sensor's noise (0.05),
        // so the noise falling to a fifth moved the mean square step by
        // 7% and was never seen (0 of 10 in the fault classes; 9 of 10
        // read this way). Half the squared second difference is the
        // squared step of white noise, and a steady slope adds nothing.
        let roughness = 0.5 * (r - self.last_step).powi(2);
        let vol = if gap {
            self.vol
        } else {
            self.vol + (roughness - self.vol) * (2.0 / (NOISE_SPAN * rate + 1.0))
        };
        self.last_step = r;
        // The seasonal residual is learned from the first day on, so its
        // spread is known by the time the profile is trusted and counted.
        let profile = season.unwrap_or_else(|| self.seasonal.daily(at));
        let seasonal_smooth =
            self.seasonal_smooth + (x - base - profile - self.seasonal_smooth) * 0.4;
        let f: [f64; K] = [
            r,
            smooth[0],
            smooth[1],
            smooth[2],
            smooth[0] - base,
            smooth[1] - base,
            smooth[2] - base,
            seasonal_smooth,
            (vol + 1e-12).ln(),
        ];
        let mut score: f64 = 0.0;
        let mut leading: f64 = 0.0;
        let mut strongest = 1;
        let mut novelty: f64 = 0.0;
        let mut novel_feature = 0;
        let mut noise_fall = None;
        let half_hour_spread = self.seasonal.residual_spread(at);
        // A value frozen in a detection's quiet period (a sensor stuck for
        // a day) would teach the step's spread, forgotten at the detection,
        // steps of nothing, and the series' own next edge would be news.
        // (Held back in the whole quiet period, new regimes went unseen.)
        let frozen_in_quiet = self.n <= self.quiet_until && f64::from(self.run) >= STUCK_MIN;
        for (i, (norm, v)) in self.norms.iter_mut().zip(f).enumerate() {
            if gap && (i == STEP || i == NOISE) {
                self.zs[i] = 0.0;
                continue;
            }
            // The noise average starts from nothing, so its first readings
            // are logs of almost zero: learned, they inflated its spread
            // for thousands of readings, and a young series could not see
            // its noise collapse. It counts once its span has filled.
            if i == NOISE && self.n <= NOISE_SPAN as u64 {
                self.zs[i] = 0.0;
                continue;
            }
            if i == SEASONAL && season.is_none() {
                self.zs[i] = 0.0;
                norm.learn(v, memory);
                continue;
            }
            let z = match half_hour_spread {
                // A schedule's switching hours stray far from the profile
                // and its nights hardly at all. Judged on one spread for
                // the day, a morning that started late raised alerts while
                // a night that stayed warm hid behind the mornings. Each
                // half hour is judged on its own spread, up to
                // `half_hour_gain` times as sensitively as on the day's.
                Some(own) if i == SEASONAL => {
                    let day = norm.sd();
                    norm.z_against(v, own.max(day / p.half_hour_gain.max(1.0)))
                }
                _ => norm.z(v),
            };
            if i == NOISE {
                noise_fall = Some(-z);
            }
            let z = if i == NOISE { z.max(0.0) } else { z.abs() };
            let z = z.min(Z_CAP);
            self.zs[i] = z;
            // The slowest levels name a drift but do not feed the shift
            // score: they wander for a long time by chance (white noise
            // averaged over 64 readings sits beyond 3.5 spreads for dozens
            // of readings once in a few thousand), which alone kept the
            // false alarms on clean noise above the limit.
            if (1..NOISE).contains(&i) && z > leading {
                leading = z;
                strongest = i;
            }
            if (1..NOISE).contains(&i) && !SLOW.contains(&i) && z > score {
                score = z;
            }
            if self.n > warmup && z > NOVEL_FLOOR {
                let nv = z / self.peaks[i].max(NOVEL_FLOOR);
                if nv > novelty {
                    novelty = nv;
                    novel_feature = i;
                }
            }
            if i == STEP && frozen_in_quiet {
                continue;
            }
            self.peaks[i] =
                (self.peaks[i] * peak_decay).max(z.min(self.peaks[i].max(NOVEL_FLOOR) * 2.0));
            norm.learn(v, memory);
        }
        if !gap && self.n > 0 {
            let smaller_judged = self.moving > STUCK_MOVING;
            let steps =
                self.steps
                    .observe(r, x, p.peak_decay, rate, self.n > warmup, smaller_judged);
            if steps.jumps > novelty {
                novelty = steps.jumps;
                novel_feature = SPIKES;
            }
            // The waits between jumps, and between spikes alone: both learn
            // every step, the sooner of the two reports.
            let (judged, calm) = (self.n > warmup, self.n > self.quiet_until);
            let sooner = self
                .rhythm
                .observe(steps.jump, p.peak_decay, judged, calm)
                .max(
                    self.spike_rhythm
                        .observe(r, steps.jump, p.peak_decay, judged, calm),
                );
            if sooner > novelty {
                novelty = sooner;
                novel_feature = SPIKES;
            }
            // Steps that grow because the series jumps more often (a
            // compressor short-cycling) are its jumps, not its noise.
            if steps.size > novelty {
                novelty = steps.size;
                novel_feature = if steps.more_jumps { SPIKES } else { NOISE };
            }
        }
        // A reading at a level the series has not taken lately, between
        // levels it does take, is novel, just past the bar, so that a
        // feature further beyond its peak names the reason instead. It is
        // judged inside the range before this reading: what lies beyond is
        // the new-territory test's.
        let untaken = self.levels.observe(
            x,
            (self.envelope.lo, self.envelope.hi),
            p.unusual_levels && self.n > warmup,
        );
        if untaken && novelty < p.novelty + 1.0 {
            novelty = p.novelty + 1.0;
            novel_feature = LEVELS;
        }
        if let Some(fall) = noise_fall {
            let collapse = self.quiet(fall, warmup, p);
            if collapse > novelty {
                novelty = collapse;
                novel_feature = QUIET;
            }
        }
        self.raw += (score - self.raw) * (2.0 / (SMOOTH * rate + 1.0));
        let score = self.raw_norm.z(self.raw);
        self.raw_norm.learn(self.raw, memory);

        // New territory: beyond the range the series has recently covered.
        let excess = self.envelope.excess(x);
        let territory = (self.envelope.lo, self.envelope.hi);
        self.envelope.learn(x, p.range_block);

        // Stuck: the value has not changed for longer than it ever did.
        let same = (x - self.last).abs() <= 1e-9 * (1.0 + x.abs());
        self.moving += ((if same { 0.0 } else { 1.0 }) - self.moving) * (1.0 / 500.0);
        if same {
            self.run = self.run.saturating_add(1);
        } else {
            self.longest_run = self.longest_run.max(f64::from(self.run));
            self.run = 0;
        }
        self.longest_run *= RUN_DECAY;
        let stuck = self.moving > STUCK_MOVING
            && f64::from(self.run) > STUCK_MIN.max(2.0 * self.longest_run);

        let expected_mid = base + season.unwrap_or(0.0);
        let sd = self.spread.sd();
        let expected = (expected_mid - 2.0 * sd, expected_mid + 2.0 * sd);
        self.spread.learn(x - base, memory);
        self.seasonal_smooth = seasonal_smooth;
        self.seasonal.learn(at, x - base, self.interval_ms);
        if let Some(e) = trusted {
            self.seasonal
                .learn_residual(at, seasonal_smooth, e.weekly, self.interval_ms);
        }
        self.base += (x - self.base) * (2.0 / ((BASE * rate).min(self.n as f64 + 1.0) + 1.0));
        self.smooth = smooth;
        self.vol = vol;
        self.last = x;
        self.n += 1;

        let warm = self.n > warmup
            && (at_ms.saturating_sub(self.first_ms) >= WARMUP_MS || self.n > WARMUP_MAX);
        // The second family sees every reading, in the range the first
        // family's new-territory test keeps (this reading included).
        let shape = if p.resonance_tail.is_finite() {
            self.resonance.get_or_insert_with(Box::default).observe(
                x,
                gap,
                warm,
                self.n <= self.quiet_until,
                (self.envelope.lo, self.envelope.hi),
                resonance::Settings {
                    down: p.resonance_down,
                    vigilance: p.resonance_vigilance,
                    tail: p.resonance_tail,
                },
            )
        } else {
            resonance::Judgement::default()
        };
        let discord = if p.discord_tail.is_finite() {
            self.discord.get_or_insert_with(Box::default).observe(
                x,
                gap,
                warm,
                (self.envelope.lo, self.envelope.hi),
                discord::Settings {
                    // A series that follows the calendar keeps as many days
                    // of samples at any rate faster than the 5-minute one
                    // the settings were chosen at (as its memories do):
                    // read every minute, a week's shapes still fit in the
                    // history.
                    down: (f64::from(p.discord_down) * memory / LONG)
                        .round()
                        .min(f64::from(discord::MOST_DOWN)) as u32,
                    length: p.discord_length,
                    tail: p.discord_tail,
                },
            )
        } else {
            discord::Judgement::default()
        };
        self.decide(
            Evidence {
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
            },
            p,
        )
    }
}

impl Detector {
    /// The novelty of a fall of the noise `fall` deviations below its
    /// usual level (0 when not novel), and what it teaches.
    ///
    /// A sensor that goes on reporting a value with the life gone out of
    /// it (a default, a disconnected input reading its bias, a controller
    /// holding its output) is anomalous without being stuck. The noise's
    /// running average forgets the old steps one by one, so its fall is
    /// gradual: judged against its own descent, as the other features'
    /// peaks are, it would never be novel. It is judged against the
    /// deepest fall of the series' past quiet episodes instead, by the same
    /// factor as the other features, so a series that habitually goes
    /// quiet (at night, between batches) has learned how quiet. A series
    /// that often repeats its value (a count, a coarse quantiser) has no
    /// fine noise to lose: as for `stuck`, only one that changes on 90% of
    /// its readings is judged.
    fn quiet(&mut self, fall: f64, warmup: u64, p: &Params) -> f64 {
        let fall = fall.clamp(0.0, Z_CAP);
        let known = self.quiet_peak.max(NOVEL_FLOOR);
        let novel = self.n > warmup && self.moving > STUCK_MOVING && fall > p.novelty * known;
        // An episode is a stretch with the noise a deviation or more below
        // its usual level; its depth is learned when it ends, so the
        // episode under way never raises its own bar.
        if fall > 1.0 {
            self.quiet_episode = self.quiet_episode.max(fall);
        } else {
            self.quiet_peak = self.quiet_peak.max(self.quiet_episode);
            self.quiet_episode = 0.0;
        }
        self.quiet_peak *= p.peak_decay;
        // Scaled so that it compares with the other features' novelty,
        // which fires beyond `p.novelty`.
        if novel {
            fall / known
        } else {
            0.0
        }
    }
}

/// Maps sensitivity in (0, 1] to the score a reading must beat.
pub fn threshold(sensitivity: f64) -> f64 {
    Params::DEFAULT.at_sensitivity(sensitivity).shift
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
            // Sizes in innovations of AR(1) noise on a daily sine of
            // amplitude 2: at the default sensitivity (false alarms within
            // 0.2 per 10 000 clean readings) a shift must stand clear of
            // the whole spread, sine included.
            (Shape::LevelShift(6.0), 200),
            (Shape::LevelShift(-5.0), 300),
            (Shape::Spike(12.0), 1),
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

    /// Readings from the onset at 5 000 to the first detection of `shape`
    /// in seed `seed`, read every `interval_ms` with these parameters.
    fn delay(shape: Shape, seed: u64, interval_ms: i64, p: &Params) -> Option<usize> {
        let mut det = Detector::new();
        series(seed, 7_000, 5_000, shape)
            .iter()
            .enumerate()
            .filter(|(i, x)| {
                det.observe_with(*i as i64 * interval_ms, **x, p).anomaly && *i >= 5_000
            })
            .map(|(i, _)| i - 5_000)
            .next()
    }

    #[test]
    fn a_series_read_every_10_minutes_asked_to_follow_its_rate_sees_a_drift_sooner() {
        // With its spans counted in readings, a series read every 10
        // minutes averages twice as long in time as the 5-minute series
        // they were chosen on, and a drift is reported later; asked to
        // follow its rate, it keeps their span in time.
        let follow = Params {
            rate_floor: 0.5,
            ..Params::DEFAULT
        };
        let (mut counted, mut followed) = (0, 0);
        for seed in 1..=5 {
            let ten_minutes = 600_000;
            counted +=
                delay(Shape::Drift(6.0), seed, ten_minutes, &Params::DEFAULT).unwrap_or(2_000);
            followed += delay(Shape::Drift(6.0), seed, ten_minutes, &follow).unwrap_or(2_000);
            // Read every 5 minutes, nothing changes.
            assert_eq!(
                delay(Shape::Drift(6.0), seed, 300_000, &Params::DEFAULT),
                delay(Shape::Drift(6.0), seed, 300_000, &follow)
            );
        }
        assert!(followed < counted, "followed {followed}, counted {counted}");
    }

    #[test]
    fn the_alerts_do_not_depend_on_the_units_the_clock_or_the_direction() {
        // A series in other units (kelvin for Celsius, watts for
        // kilowatts) or stamped by a clock in another time zone is the
        // same series: a detector that learned something about the
        // numbers or hours it was chosen on (NAB's, 5 minutes apart)
        // would raise elsewhere; one that learned that NAB's anomalies are
        // mostly rises would miss a building's falls. (The NAB files
        // changed these ways score as published: `examples/nab_perturbed.rs`.)
        let seven_hours = 7 * 3_600_000;
        for (seed, shape) in [
            (1, Shape::LevelShift(6.0)),
            (2, Shape::Drift(6.0)),
            (3, Shape::Spike(12.0)),
            (4, Shape::NoiseChange(3.0)),
        ] {
            let xs = series(seed, 7_000, 5_000, shape);
            let alerts = |map: &dyn Fn(usize, f64) -> (i64, f64)| -> Vec<usize> {
                let mut det = Detector::new();
                (0..xs.len())
                    .filter(|&i| {
                        let (t, x) = map(i, xs[i]);
                        det.observe(t, x, DEFAULT_SENSITIVITY).anomaly
                    })
                    .collect()
            };
            let published = alerts(&|i, x| (i as i64 * 300_000, x));
            assert!(!published.is_empty(), "{shape:?}: nothing raised");
            for (change, changed) in [
                ("x 1000", alerts(&|i, x| (i as i64 * 300_000, x * 1000.0))),
                ("+ 273.15", alerts(&|i, x| (i as i64 * 300_000, x + 273.15))),
                // A rise mirrored is a fall: a fridge that warms and a
                // boiler's flow that cools are the same anomaly.
                ("mirrored", alerts(&|i, x| (i as i64 * 300_000, 40.0 - x))),
                (
                    "clock + 7 h",
                    alerts(&|i, x| (i as i64 * 300_000 + seven_hours, x)),
                ),
            ] {
                assert_eq!(changed, published, "{shape:?}, values {change}");
            }
        }
    }

    /// A unit's power read every 5 minutes: off (0.2 kW) or on (5 kW) as
    /// its thermostat asks, one to three hours at a time, noisy; from
    /// reading `fault` on, for three hours, a failed stage runs it at 2.4
    /// kW. The first alert in those three hours, and its reason.
    fn half_power(seed: u64, p: &Params) -> Option<(usize, Option<Reason>)> {
        let mut rng = crate::synthetic::Rng::new(seed);
        let mut det = Detector::new();
        let fault = 20 * 288 + 100;
        let (mut on, mut left) = (false, 0usize);
        (0..fault + 36)
            .map(|i| {
                if left == 0 {
                    on = !on;
                    left = 12 + (rng.uniform() * 24.0) as usize;
                }
                left -= 1;
                let level: f64 = if (fault..fault + 36).contains(&i) {
                    2.4
                } else if on {
                    5.0
                } else {
                    0.2
                };
                let x = level + 0.05 * level.max(1.0) * rng.normal();
                (i, det.observe_with(i as i64 * 300_000, x, p))
            })
            .find(|(i, v)| *i >= fault && v.anomaly)
            .map(|(i, v)| (i - fault, v.reason))
    }

    #[test]
    fn a_unit_running_between_its_usual_levels_is_reported_at_once() {
        // Off or on, never between: half power is a level it has not
        // taken, though inside its range and near its average, where
        // neither the range test nor the levels look. Reported on its
        // first reading; with the unusual-level test off, not at all in
        // the three hours.
        let off = Params {
            unusual_levels: false,
            ..Params::DEFAULT
        };
        for seed in 1..=5 {
            assert_eq!(
                half_power(seed, &Params::DEFAULT),
                Some((0, Some(Reason::UnusualLevel))),
                "seed {seed}"
            );
            assert_eq!(half_power(seed, &off), None, "seed {seed}, the test off");
        }
    }

    #[test]
    fn clean_noise_raises_at_most_two_false_alarms_in_8000_readings() {
        // Measured: 1.35 per 10 000 readings over 20 seeds (the `synthetic`
        // example); the old model's 0 came with 48.6 on NAB.
        let mut total = 0;
        for seed in 1..=5 {
            let hits = detections(Shape::Clean, seed);
            assert!(hits.len() <= 2, "seed {seed}: {hits:?}");
            total += hits.len();
        }
        assert!(total <= 6, "{total} false alarms over 5 seeds");
    }

    #[test]
    fn a_flat_line_with_a_spike_every_few_hours_is_quiet_once_it_has_learned_them() {
        // A door contact or a pump's start pulse: a flat line with a
        // spike every 150 to 250 readings. Once the first spikes were
        // reported, the later ones are its habit even though their scores
        // fell below the threshold. Before the habit counted such episodes
        // too, a later spike a little above its fellows fired as a level
        // shift 9 times in these 10 series (the NAB-style flat file's
        // false alarms before its fault); now 3 times, where a spike's
        // evidence hovers at the floor and its rare crossings are the only
        // episodes the habit sees.
        let mut late = Vec::new();
        for seed in 1..=10 {
            let mut rng = crate::synthetic::Rng::new(seed);
            let mut det = Detector::new();
            let mut next = (rng.uniform() * 200.0) as usize;
            for i in 0..4_000 {
                let spike = i == next;
                if spike {
                    next += 150 + (rng.uniform() * 100.0) as usize;
                }
                let x = if spike { 20.0 } else { 0.0 };
                let v = det.observe(i as i64 * 300_000, x, DEFAULT_SENSITIVITY);
                if v.anomaly && i >= 1_000 {
                    late.push((seed, i, v.reason));
                }
            }
        }
        assert!(late.len() <= 3, "{late:?}");
    }

    /// Of 10 seeded spike trains (a spike every 150-250 readings, every
    /// 37-62 from reading 3 000), how many are reported `spike_rate`
    /// within 150 readings of that onset, each reading made by `reading`
    /// from its index, whether it spikes, and the train's generator.
    fn quickening_trains_reported_soon(
        mut reading: impl FnMut(usize, bool, &mut crate::synthetic::Rng) -> f64,
    ) -> usize {
        let mut soon = 0;
        for seed in 1..=10 {
            let mut rng = crate::synthetic::Rng::new(seed);
            let mut det = Detector::new();
            let mut next = (rng.uniform() * 200.0) as usize;
            let onset = 3_000;
            let mut reported = None;
            for i in 0..3_400 {
                let spike = i == next || i == onset;
                if spike {
                    let wait = 150.0 + rng.uniform() * 100.0;
                    next = i + if i >= onset { wait / 4.0 } else { wait } as usize;
                }
                let x = reading(i, spike, &mut rng);
                let v = det.observe(i as i64 * 300_000, x, DEFAULT_SENSITIVITY);
                if v.anomaly && i >= onset && reported.is_none() {
                    reported = Some((i - onset, v.reason));
                }
            }
            if reported.is_some_and(|(after, r)| after <= 150 && r == Some(Reason::SpikeRate)) {
                soon += 1;
            }
        }
        soon
    }

    #[test]
    fn a_spike_train_four_times_as_dense_is_reported_spike_rate_within_two_spikes() {
        // A door contact opened every 150-250 readings, then every 37-62
        // from reading 3 000 (a door propped and pushed, a pump hunting).
        // Counted over the last hours, the spikes took 4 or 5 of the new
        // ones to leave their usual swing (NAB-style: caught in 2 of 5
        // windows); the waits between them say it at the second short
        // one, the spikes' own waits at the first. Before the waits were
        // judged, none of these 10 series was reported within 400
        // readings; with the waits over every jump, 8 within 150; with the
        // spikes' own too, all 10.
        let soon = quickening_trains_reported_soon(|_, spike, _| if spike { 20.0 } else { 0.0 });
        assert!(soon >= 9, "{soon} of 10");
    }

    #[test]
    fn a_spike_train_that_quickens_on_a_daily_wave_is_reported_spike_rate() {
        // The same train laid on a day that steps up at 8:00 and down at
        // 20:00 (a schedule): the wave's own steps fall between the
        // spikes, and the waits over every jump look random. Judged on
        // the spikes' own waits, all 10 of these series are reported
        // within 150 readings of the onset; judged on every jump's, none
        // was.
        let soon = quickening_trains_reported_soon(|i, spike, rng| {
            let day = if (96..240).contains(&(i % 288)) {
                10.0
            } else {
                0.0
            };
            day + 0.05 * rng.normal() + if spike { 5.0 } else { 0.0 }
        });
        assert!(soon >= 9, "{soon} of 10");
    }

    /// Per seed, whether a day frozen at the day's mean on a schedule's
    /// wave (up at 8:00, down at 20:00) was reported while frozen, and the
    /// alerts from its end to four days on.
    fn a_frozen_day_and_after(seed: u64) -> (bool, usize) {
        let mut rng = crate::synthetic::Rng::new(seed);
        let mut det = Detector::new();
        let onset = 9 * 288 + (rng.uniform() * 288.0) as usize;
        let (end, last) = (onset + 288, onset + 5 * 288);
        let (mut caught, mut after) = (false, 0);
        for i in 0..last {
            // NAB's daily files' shape: nights at 20, a jump at 9:00 to a
            // day that climbs from 65 to 80, noisier, and down at 18:00 in
            // two steps.
            let phase = i % 288;
            let day = match phase {
                108..216 => 65.0 + 15.0 * (phase - 108) as f64 / 108.0 + 4.0 * rng.normal(),
                216..228 => 32.0 + 1.5 * rng.normal(),
                _ => 20.0 + 1.2 * rng.normal(),
            };
            let x = if (onset..end).contains(&i) { 40.0 } else { day };
            let v = det.observe(i as i64 * 300_000, x, DEFAULT_SENSITIVITY);
            caught |= v.anomaly && (onset..end).contains(&i);
            after += usize::from(v.anomaly && i >= end);
        }
        (caught, after)
    }

    #[test]
    fn the_day_after_a_frozen_day_is_not_news() {
        // The detection forgets the step's spread, to learn a new regime
        // quickly; the frozen day then taught it steps of nothing, and
        // the wave's first edge after the quiet period was reported as a
        // spike (NAB-style flat days: a false alarm a day later in half
        // the draws). A frozen value's steps inside a detection's quiet
        // period are not learned: these 20 series raised 7 alerts in the
        // days after before, 2 now; every frozen day is reported either
        // way.
        let mut after_all = 0;
        for seed in 1..=20 {
            let (caught, after) = a_frozen_day_and_after(seed);
            assert!(caught, "seed {seed}: the frozen day was not reported");
            after_all += after;
        }
        assert!(after_all <= 3, "{after_all} alerts in the days after");
    }

    #[test]
    fn a_fridge_whose_sensor_noise_falls_to_a_fifth_is_reported_as_noise() {
        // Its ramps of 0.1 a minute dwarf its noise of 0.05: read from
        // the steps themselves, the noise falling to a fifth moved their
        // mean square by 7% and was caught in 0 of these 10 series.
        use crate::plant::{labelled, Background, Fault, History};
        let mut caught = 0;
        for seed in 1..=5 {
            for history in [History::Settled, History::Young] {
                let s = labelled(seed, Background::Fridge, Fault::NoiseDown, history);
                let mut det = Detector::new();
                let hit = s.readings.iter().enumerate().any(|(i, &(t, x))| {
                    let v = det.observe(t, x, DEFAULT_SENSITIVITY);
                    v.anomaly
                        && v.reason == Some(Reason::Noise)
                        && (s.window.0..=s.window.1).contains(&i)
                });
                caught += usize::from(hit);
            }
        }
        assert!(caught >= 8, "{caught} of 10");
    }

    #[test]
    fn a_detection_is_followed_by_quiet_not_a_burst() {
        let hits = detections(Shape::LevelShift(6.0), 3);
        for w in hits.windows(2) {
            assert!(w[1] - w[0] > Params::DEFAULT.quiet as usize, "{hits:?}");
        }
    }

    #[test]
    fn an_alert_clears_on_the_rule_the_config_template_states() {
        // gateway.toml says: 100 readings after the raise, or after the
        // last reading that still looked anomalous.
        assert_eq!(Params::DEFAULT.quiet, 100);
        let xs = series(9, 6_000, 5_000, Shape::Spike(12.0));
        let mut det = Detector::new();
        let (mut raised, mut cleared) = (None, None);
        for (i, x) in xs.iter().enumerate() {
            let v = det.observe(i as i64 * 60_000, *x, DEFAULT_SENSITIVITY);
            // The clean stretch before the spike may hold a chance alarm
            // (the budget is 0.2 per 10 000 readings): follow the spike's.
            if v.anomaly && raised.is_none() && i >= 5_000 {
                raised = Some(i);
            }
            if raised.is_some() && cleared.is_none() && !v.active {
                cleared = Some(i);
            }
        }
        let (Some(r), Some(c)) = (raised, cleared) else {
            panic!("raised {raised:?}, cleared {cleared:?}");
        };
        assert_eq!(r, 5_000);
        // A spike keeps the short levels up for a few readings at most.
        assert!((r + 100..=r + 120).contains(&c), "raised {r}, cleared {c}");
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
        // A day and a half of minutes at 0 (past the warm-up), then a move.
        let mut d = Detector::new();
        for i in 0..2_000 {
            assert!(!d.observe(i * 60_000, 0.0, 0.5).anomaly, "reading {i}");
        }
        assert!(d.observe(2_000 * 60_000, 1.0, 0.5).anomaly);
    }

    #[test]
    fn huge_and_tiny_magnitudes_behave_alike() {
        let mut first: Option<Vec<usize>> = None;
        for scale in [1e-6, 1.0, 1e9] {
            let xs = series(4, 6_000, 5_000, Shape::LevelShift(6.0));
            let mut d = Detector::new();
            let hits: Vec<usize> = xs
                .iter()
                .enumerate()
                .filter(|(i, x)| d.observe(*i as i64 * 60_000, *x * scale, 0.5).anomaly)
                .map(|(i, _)| i)
                .collect();
            assert!(
                hits.iter().any(|&i| (5_000..5_200).contains(&i)),
                "scale {scale}: {hits:?}"
            );
            // Every statistic is relative to the series' own spread: the
            // same readings at any scale give the same detections.
            match &first {
                None => first = Some(hits),
                Some(f) => assert_eq!(f, &hits, "scale {scale}"),
            }
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

    /// A compressor's current every 5 minutes: noise around 5 A, a start
    /// (a one-reading surge of 40 A) every `every` readings, and from
    /// `onset` on every `every / 4`: the compressor short-cycles.
    fn short_cycling(every: usize, onset: usize, seed: u64) -> Vec<f64> {
        let mut rng = crate::synthetic::Rng::new(seed);
        (0..onset + 600)
            .map(|i| {
                let period = if i < onset { every } else { every / 4 };
                let surge = if i % period == 0 { 40.0 } else { 0.0 };
                5.0 + 0.5 * rng.normal() + surge
            })
            .collect()
    }

    /// The first family alone: the tests below check its reasons, which
    /// the second family (on by default) may pre-empt with `pattern`.
    const FIRST_FAMILY: Params = Params {
        resonance_tail: f64::INFINITY,
        ..Params::DEFAULT
    };

    /// Asserts that a fresh detector fed `xs` (one every `interval_ms`)
    /// raises nothing before `onset` and, with the first family alone,
    /// reports `reason` within 300 readings of it; with the defaults, it
    /// reports something as soon.
    fn reported_after_onset(xs: Vec<f64>, interval_ms: i64, onset: usize, reason: Reason) {
        for (p, expected) in [(FIRST_FAMILY, Some(reason)), (Params::DEFAULT, None)] {
            let mut d = Detector::new();
            let alerts: Vec<(usize, Option<Reason>)> = xs
                .iter()
                .enumerate()
                .map(|(i, x)| (i, d.observe_with(i as i64 * interval_ms, *x, &p)))
                .filter(|(_, v)| v.anomaly)
                .map(|(i, v)| (i, v.reason))
                .collect();
            assert!(
                alerts.iter().all(|&(i, _)| i >= onset),
                "alerts before the onset {alerts:?}"
            );
            assert!(
                alerts
                    .iter()
                    .any(|&(i, r)| i < onset + 300 && (expected.is_none() || r == expected)),
                "{alerts:?}"
            );
        }
    }

    #[test]
    fn a_compressor_that_starts_short_cycling_is_reported_spike_rate() {
        // Each start looks like every start before it: only their rate
        // changed, and nothing but that rate tells.
        for seed in 1..=3 {
            reported_after_onset(
                short_cycling(60, 3_000, seed),
                300_000,
                3_000,
                Reason::SpikeRate,
            );
        }
    }

    /// A fridge read every minute: ramps of `rate` °C a minute between 3
    /// and 5 (a 40-minute cycle at 0.1), with a little sensor noise, and
    /// twice as fast from `onset` on: the compressor short-cycles.
    fn fridge(onset: usize, seed: u64) -> Vec<f64> {
        let mut rng = crate::synthetic::Rng::new(seed);
        let (mut t, mut cooling) = (4.0, true);
        (0..onset + 600)
            .map(|i| {
                let rate = if i < onset { 0.1 } else { 0.2 };
                if cooling {
                    t -= rate;
                    cooling = t > 3.0;
                } else {
                    t += rate;
                    cooling = t >= 5.0;
                }
                t + 0.05 * rng.normal()
            })
            .collect()
    }

    #[test]
    fn a_fridge_whose_cycle_runs_twice_as_fast_is_reported() {
        // Every ramp stays between 3 and 5 and every step is ordinary:
        // only their size over hours tells.
        for seed in 1..=3 {
            reported_after_onset(fridge(6_000, seed), 60_000, 6_000, Reason::Noise);
        }
    }

    #[test]
    fn a_state_saved_before_the_spike_rate_or_the_noise_of_steps_still_loads() {
        let mut d = Detector::new();
        for (i, x) in short_cycling(60, 2_000, 4)
            .into_iter()
            .enumerate()
            .take(1_000)
        {
            d.observe(i as i64 * 300_000, x, DEFAULT_SENSITIVITY);
        }
        let mut saved = serde_json::to_value(saved::Saved::unpacked(&d)).unwrap();
        saved.as_object_mut().unwrap().remove("steps").unwrap();
        // Nor the step before, which the noise feature reads since.
        saved.as_object_mut().unwrap().remove("last_step").unwrap();
        // Nor the waits between jumps.
        saved.as_object_mut().unwrap().remove("rhythm").unwrap();
        let restored: Detector = serde_json::from_value(saved).unwrap();
        assert_eq!(restored.seen(), 1_000);
    }

    #[test]
    fn a_state_saved_before_its_features_were_packed_still_loads() {
        // The scalars, the features' distributions, their peaks and the
        // range ring's blocks were JSON numbers; they are base64 now
        // (3 989 -> 3 065 bytes), and the old form must still load to the
        // same state.
        let mut d = Detector::new();
        for (i, x) in series(3, 3_000, 0, Shape::Clean).into_iter().enumerate() {
            d.observe(i as i64 * 60_000, x, DEFAULT_SENSITIVITY);
        }
        let packed = serde_json::to_value(&d).unwrap();
        assert!(packed["scalars"].is_string() && packed.get("n").is_none());
        assert!(packed["norms"].is_string() && packed["peaks"].is_string());
        assert!(packed["envelope"]["blocks"].is_string());
        let mut saved = serde_json::to_value(saved::Saved::unpacked(&d)).unwrap();
        assert!(saved["n"].is_u64() && saved.get("scalars").is_none());
        let old = |v: serde_json::Value| serde_json::to_value(v).unwrap();
        saved["norms"] = old(serde_json::json!(d
            .norms
            .iter()
            .map(|n| {
                let [n, mean, var] = n.parts();
                serde_json::json!({ "n": n, "mean": mean, "var": var })
            })
            .collect::<Vec<_>>()));
        saved["peaks"] = old(serde_json::json!(d.peaks));
        let blocks: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&d.envelope.blocks_for_test()).unwrap())
                .unwrap();
        saved["envelope"]["blocks"] = blocks;
        let restored: Detector = serde_json::from_value(saved).unwrap();
        // (Compared as saved: the diagnostics are not persisted.)
        assert_eq!(
            serde_json::to_value(&restored).unwrap(),
            serde_json::to_value(&d).unwrap()
        );
        for (field, bad) in [("norms", "AAAA"), ("scalars", "AAAA"), ("scalars", "@@")] {
            let mut torn = serde_json::to_value(&d).unwrap();
            torn[field] = serde_json::json!(bad);
            assert!(serde_json::from_value::<Detector>(torn).is_err(), "{field}");
        }
        let mut lacking = serde_json::to_value(saved::Saved::unpacked(&d)).unwrap();
        lacking.as_object_mut().unwrap().remove("n").unwrap();
        assert!(serde_json::from_value::<Detector>(lacking).is_err());
    }

    /// Twelve days of a daily square wave every 5 minutes (20 by night, 80
    /// from 08:00 to 18:00, noise of 1), whose tenth day stays at 50: a
    /// shape the series never made, inside its usual range.
    fn a_day_of_a_new_shape() -> Vec<f64> {
        let mut rng = crate::synthetic::Rng::new(4);
        (0..12 * 288)
            .map(|i| {
                let (day, slot) = (i / 288, i % 288);
                let level = match ((96..216).contains(&slot), day == 9) {
                    (true, true) => 50.0,
                    (true, false) => 80.0,
                    (false, _) => 20.0,
                };
                level + rng.normal()
            })
            .collect()
    }

    #[test]
    fn the_second_family_reports_a_shape_never_made_as_pattern_and_persists() {
        let p = Params {
            first_family: false,
            resonance_tail: 2.0,
            resonance_down: 4,
            resonance_vigilance: 0.9,
            ..Params::DEFAULT
        };
        reports_a_new_shape_as_pattern_and_persists(&p, "resonance");
    }

    #[test]
    fn the_discord_reports_a_shape_never_made_as_pattern_and_persists() {
        let p = Params {
            first_family: false,
            discord_tail: 1.5,
            discord_down: 8,
            discord_length: 16,
            ..Params::DEFAULT
        };
        reports_a_new_shape_as_pattern_and_persists(&p, "discord");
    }

    /// Alone, the second family `field` under `p` reports the day of a new
    /// shape, and nothing before it, and judges alike once restored.
    fn reports_a_new_shape_as_pattern_and_persists(p: &Params, field: &str) {
        let p = *p;
        let xs = a_day_of_a_new_shape();
        let mut d = Detector::new();
        let mut restored = None;
        let mut hits = Vec::new();
        for (i, &x) in xs.iter().enumerate() {
            let t = i as i64 * 300_000;
            let v = d.observe_with(t, x, &p);
            if let Some(r) = restored.as_mut() {
                assert_eq!(Detector::observe_with(r, t, x, &p), v, "reading {i}");
            }
            if i == 8 * 288 {
                // Half-way, saved and restored: it judges alike, and the
                // categories are in the saved state.
                let saved = serde_json::to_value(&d).unwrap();
                assert!(saved[field].is_string());
                restored = Some(serde_json::from_value::<Detector>(saved).unwrap());
            }
            if v.anomaly {
                hits.push((i, v.reason, v.expected, x));
            }
        }
        let day = 9 * 288 + 96..9 * 288 + 216;
        assert!(hits.iter().all(|h| h.0 >= day.start), "{hits:?}");
        let (_, reason, (lo, hi), x) = hits
            .iter()
            .find(|h| day.contains(&h.0))
            .copied()
            .unwrap_or_else(|| panic!("not reported: {hits:?}"));
        assert_eq!(reason, Some(Reason::Pattern));
        // Expected where the nearest learned shape held its latest sample:
        // a day's high or a night's low, not the 50 it saw.
        assert!(
            lo <= hi && !(lo..=hi).contains(&x),
            "{lo}..{hi} against {x}"
        );
    }

    #[test]
    fn the_second_family_off_leaves_no_trace_in_the_saved_state() {
        let mut d = Detector::new();
        for (i, x) in a_day_of_a_new_shape().into_iter().enumerate().take(2_000) {
            d.observe_with(i as i64 * 300_000, x, &FIRST_FAMILY);
        }
        let saved = serde_json::to_value(&d).unwrap();
        assert!(saved.get("resonance").is_none());
        assert!(saved.get("discord").is_none());
    }

    /// Noise around 20 every minute, then the value freezes at `freeze_at`.
    fn frozen(freeze_at: usize) -> Vec<f64> {
        let mut rng = crate::synthetic::Rng::new(21);
        let mut last = 20.0;
        (0..freeze_at + 200)
            .map(|i| {
                if i < freeze_at {
                    last = 20.0 + rng.normal();
                }
                last
            })
            .collect()
    }

    #[test]
    fn a_sensor_that_stops_moving_is_reported_stuck() {
        let mut d = Detector::new();
        let mut hits = Vec::new();
        for (i, x) in frozen(3_000).into_iter().enumerate() {
            let v = d.observe(i as i64 * 60_000, x, DEFAULT_SENSITIVITY);
            if v.anomaly {
                hits.push((i, v.reason));
            }
        }
        let stuck: Vec<_> = hits.iter().filter(|h| h.1 == Some(Reason::Stuck)).collect();
        assert_eq!(stuck.len(), 1, "{hits:?}");
        assert!((3_000..3_030).contains(&stuck[0].0), "{hits:?}");
    }

    #[test]
    fn a_sensor_whose_noise_collapses_is_reported_noise() {
        // Noise around 20 every minute; at 3 000 the value goes on moving,
        // but with a tenth of the noise (a disconnected input reading its
        // bias): not stuck, not off its level, and yet not the sensor.
        let mut rng = crate::synthetic::Rng::new(8);
        let mut d = Detector::new();
        let mut hits = Vec::new();
        for i in 0..3_300 {
            let noise = if i < 3_000 { 1.0 } else { 0.1 };
            let v = d.observe(i * 60_000, 20.0 + noise * rng.normal(), DEFAULT_SENSITIVITY);
            if v.anomaly {
                hits.push((i, v.reason));
            }
        }
        assert!(
            hits.iter()
                .any(|&(i, r)| (3_000..3_060).contains(&i) && r == Some(Reason::Noise)),
            "{hits:?}"
        );
        assert!(
            hits.iter().all(|&(i, _)| i >= 3_000),
            "false alarms: {hits:?}"
        );
    }

    #[test]
    fn a_count_that_often_repeats_may_go_quiet() {
        // Whole numbers that repeat on a quarter of the readings (a count,
        // a coarse quantiser) have no fine noise to lose: a quiet spell
        // that mostly repeats one value is not reported as a collapse.
        let mut rng = crate::synthetic::Rng::new(9);
        let mut d = Detector::new();
        for i in 0..4_000 {
            let x = if (3_000..3_200).contains(&i) {
                20.0 + (rng.uniform() * 1.1).floor()
            } else {
                (20.0 + 1.5 * rng.normal()).round()
            };
            let v = d.observe(i * 60_000, x, DEFAULT_SENSITIVITY);
            assert_ne!(v.reason, Some(Reason::Noise), "reading {i}");
        }
    }

    #[test]
    fn a_series_that_never_moves_is_never_stuck() {
        let mut d = Detector::new();
        for i in 0..5_000 {
            let v = d.observe(i * 60_000, 45.0, DEFAULT_SENSITIVITY);
            assert_ne!(v.reason, Some(Reason::Stuck), "reading {i}");
        }
    }

    #[test]
    fn an_offices_first_weekend_is_not_an_anomaly() {
        // Every 5 minutes from a Monday: 23 from 08:00 to 18:00 on
        // weekdays, 18 otherwise, AR(1) noise. Nothing the first week has
        // shown says that Saturday differs from Friday, but nothing says
        // it does not either.
        let mut rng = crate::synthetic::Rng::new(12);
        let mut d = Detector::new();
        let mut ar = 0.0;
        let mut hits = Vec::new();
        for i in 0..9 * 288 {
            let (day, hour) = (i / 288, (i % 288) / 12);
            let busy = day % 7 < 5 && (8..18).contains(&hour);
            ar = 0.5 * ar + rng.normal();
            let x = if busy { 23.0 } else { 18.0 } + ar;
            let v = d.observe(
                crate::synthetic::MONDAY_MS + i as i64 * 300_000,
                x,
                DEFAULT_SENSITIVITY,
            );
            if v.anomaly && day >= 5 {
                hits.push((day, hour, v.reason));
            }
        }
        assert!(hits.is_empty(), "{hits:?}");
    }

    /// Five weeks of an office every 5 minutes (23 from 08:00 to 18:00 on
    /// weekdays, 18 otherwise, on its own clocks) whose clocks go forward
    /// an hour, as in Europe at the end of March; the seasonal alerts in
    /// the month after, for ten offices, read on the wall clock or in UTC.
    fn alerts_after_a_change_of_the_clocks(on_the_wall_clock: bool) -> Vec<(u64, i64)> {
        const HOUR: i64 = 3_600_000;
        let change = crate::synthetic::MONDAY_MS + 34 * 24 * HOUR + 2 * HOUR;
        let mut hits = Vec::new();
        for seed in 1..=10 {
            let mut rng = crate::synthetic::Rng::new(seed);
            let mut d = Detector::new();
            let mut ar = 0.0;
            for i in 0..65 * 288 {
                let utc_ms = crate::synthetic::MONDAY_MS + i * 300_000;
                let local_ms = utc_ms + if utc_ms >= change { 2 * HOUR } else { HOUR };
                let day = (local_ms - crate::synthetic::MONDAY_MS).div_euclid(24 * HOUR);
                let hour = (local_ms - crate::synthetic::MONDAY_MS).rem_euclid(24 * HOUR) / HOUR;
                let busy = day % 7 < 5 && (8..18).contains(&hour);
                ar = 0.5 * ar + rng.normal();
                let x = if busy { 23.0 } else { 18.0 } + ar;
                let at = if on_the_wall_clock {
                    When { utc_ms, local_ms }
                } else {
                    When::utc(utc_ms)
                };
                let v = d.observe(at, x, DEFAULT_SENSITIVITY);
                if v.anomaly && utc_ms >= change && v.reason == Some(Reason::Seasonal) {
                    hits.push((seed, day));
                }
            }
        }
        hits
    }

    #[test]
    fn an_office_keeps_its_profile_when_the_clocks_change() {
        let in_utc = alerts_after_a_change_of_the_clocks(false);
        assert!(
            in_utc.len() >= 5,
            "the check sees the fault it guards against: {in_utc:?}"
        );
        let on_the_wall = alerts_after_a_change_of_the_clocks(true);
        assert!(on_the_wall.is_empty(), "{on_the_wall:?}");
    }

    #[test]
    fn a_day_that_misses_its_daily_rise_is_reported_seasonal() {
        // Every 5 minutes: 80 from 08:00 to 18:00, 20 otherwise, noise of 2;
        // on day 10 the rise does not come.
        let mut rng = crate::synthetic::Rng::new(5);
        let mut d = Detector::new();
        let mut hits = Vec::new();
        for i in 0..12 * 288 {
            let (day, hour) = (i / 288, (i % 288) / 12);
            let high = (8..18).contains(&hour) && day != 10;
            let x = if high { 80.0 } else { 20.0 } + 2.0 * rng.normal();
            let v = d.observe(i as i64 * 300_000, x, DEFAULT_SENSITIVITY);
            if v.anomaly && i >= 3 * 288 {
                hits.push((day, hour, v.reason));
            }
        }
        assert!(
            hits.iter()
                .any(|&(d, h, r)| d == 10 && (8..12).contains(&h) && r == Some(Reason::Seasonal)),
            "{hits:?}"
        );
        assert!(
            hits.iter().all(|&(d, _, _)| d >= 10),
            "false alarms: {hits:?}"
        );
    }

    /// Alerts of a room on a heating schedule, read every 5 minutes with
    /// noise of 0.1: set back to 16 at night, heated to 21 by day. The
    /// heating comes on at some time between 05:00 and 07:00 (an optimum
    /// start), warming the room over an hour, and goes off at 22:00, the
    /// room cooling over two. On the night starting on day `fault_day`
    /// the setback holds the room at `faulty_night` instead.
    fn alerts_on_a_schedule_with_a_bad_night(
        fault_day: usize,
        faulty_night: f64,
    ) -> Vec<(usize, usize, Reason)> {
        let mut rng = crate::synthetic::Rng::new(8);
        let mut d = Detector::new();
        let mut hits = Vec::new();
        let mut start = 72;
        for i in 0..(fault_day + 2) * 288 {
            let (day, slot) = (i / 288, i % 288);
            if slot == 0 {
                start = 60 + (rng.uniform() * 24.0) as usize;
            }
            let faulty = (day == fault_day && slot >= 264) || (day == fault_day + 1 && slot < 60);
            let night = if faulty { faulty_night } else { 16.0 };
            let x = if slot < start {
                night
            } else if slot < 264 {
                night + (21.0 - night) * ((slot - start) as f64 / 12.0).min(1.0)
            } else {
                21.0 - (21.0 - night) * ((slot - 264) as f64 / 24.0).min(1.0)
            } + 0.1 * rng.normal();
            let v = d.observe(i as i64 * 300_000, x, DEFAULT_SENSITIVITY);
            if let Some(reason) = v.reason.filter(|_| v.anomaly) {
                hits.push((day, slot / 12, reason));
            }
        }
        hits
    }

    #[test]
    fn a_night_the_heating_is_not_set_back_is_reported_seasonal() {
        // Judged on the day's spread, both failed: the mornings' varying
        // starts raised a seasonal alert every few days, and a night at 18
        // was within the noise of the mornings. Four weeks, so that every
        // half hour's own spread has been learned for a week.
        let hits = alerts_on_a_schedule_with_a_bad_night(28, 18.0);
        let night = |day: usize, hour: usize| (day == 28 && hour >= 22) || (day == 29 && hour < 5);
        assert!(
            hits.iter().any(|&(day, hour, reason)| night(day, hour)
                && matches!(reason, Reason::Seasonal | Reason::LevelShift)),
            "{hits:?}"
        );
        assert!(
            hits.iter().all(|&(day, _, _)| day >= 28),
            "false alarms: {hits:?}"
        );
    }

    #[test]
    fn a_day_that_runs_low_on_a_square_wave_is_reported_in_its_second_week() {
        // A two-week recording, as most public benchmark files are: an
        // exact daily square wave (20 by night, 80 by day) with a little
        // noise, and from midday on day 10 everything 15 lower for a day
        // (reached over an hour: no step for the other tests to see). The
        // nights then sit ten noise spreads below anything they did, but
        // judged on the day's spread (its switching edges) that was
        // nothing, and the half hours' own spreads came a week after the
        // profile, on day 14. Now a profile that fits this closely uses
        // them after two days, and the low day does not widen its own half
        // hours' spreads.
        let mut rng = crate::synthetic::Rng::new(3);
        let mut d = Detector::new();
        let fault = 10 * 288 + 150..11 * 288 + 150;
        let mut hits = Vec::new();
        for i in 0..14 * 288 {
            let slot = i % 288;
            let up = ((slot as f64 - 108.0) / 6.0).clamp(0.0, 1.0)
                * ((216.0 - slot as f64) / 6.0).clamp(0.0, 1.0);
            let into_fault = i as f64 - fault.start as f64;
            let low = if fault.contains(&i) {
                15.0 * (into_fault / 12.0).min(1.0)
            } else {
                0.0
            };
            let x = 20.0 + 60.0 * up - low + 1.5 * rng.normal();
            if d.observe(i as i64 * 300_000, x, DEFAULT_SENSITIVITY)
                .anomaly
            {
                hits.push(i);
            }
        }
        assert!(
            hits.iter().all(|&i| i >= fault.start),
            "false alarms: {hits:?}"
        );
        assert!(
            hits.iter().any(|i| fault.contains(i)),
            "the low day was not reported: {hits:?}"
        );
    }

    /// Alerts raised from day 7 on, as (seed, day), in ten offices read
    /// every minute for five weeks (`synthetic::Clean::WeeklyEveryMinute`),
    /// with `fault` (a day index) spending that weekday unoccupied.
    fn minute_offices(fault: Option<usize>) -> Vec<(u64, usize)> {
        use crate::synthetic::{clean, Clean, MONDAY_MS};
        let mut hits = Vec::new();
        for seed in 1..=10 {
            let (mut xs, _) = clean(seed, 35 * 1440, Clean::WeeklyEveryMinute);
            if let Some(day) = fault {
                for x in &mut xs[day * 1440 + 480..day * 1440 + 1080] {
                    *x -= 5.0;
                }
            }
            let mut d = Detector::new();
            for (i, x) in xs.into_iter().enumerate() {
                let v = d.observe(MONDAY_MS + i as i64 * 60_000, x, DEFAULT_SENSITIVITY);
                if v.anomaly && i >= 7 * 1440 {
                    hits.push((seed, i / 1440));
                }
            }
        }
        hits
    }

    #[test]
    fn an_office_read_every_minute_is_quiet_on_its_weekends_and_mondays() {
        // Its memories counted in readings spanned three and a half days:
        // each weekend narrowed the spreads, each Monday morning was news
        // (and the second Saturday, judged by the daily profile). Measured
        // in these ten offices: 36 alerts from day 7 on before, 5 now.
        let hits = minute_offices(None);
        assert!(hits.len() <= 10, "{} alerts: {hits:?}", hits.len());
    }

    /// Alerts raised after the first week in 30 offices read every 15
    /// minutes for a year (`synthetic::Clean::WeeklyEveryQuarterHour`), and
    /// the readings they were judged on.
    fn quarter_hour_offices(p: &Params) -> (usize, usize) {
        use crate::synthetic::{clean, Clean, MONDAY_MS};
        const PER_DAY: usize = 96;
        const OFFICES: u64 = 30;
        let (mut alerts, mut judged) = (0, 0);
        for seed in 1..=OFFICES {
            let (xs, _) = clean(seed, 365 * PER_DAY, Clean::WeeklyEveryQuarterHour);
            let mut d = Detector::new();
            let mut was_anomalous = false;
            for (i, x) in xs.into_iter().enumerate() {
                let v = d.observe_with(MONDAY_MS + i as i64 * 900_000, x, p);
                if i >= 7 * PER_DAY {
                    judged += 1;
                    if v.anomaly && !was_anomalous {
                        alerts += 1;
                    }
                }
                was_anomalous = v.anomaly;
            }
        }
        (alerts, judged)
    }

    #[test]
    fn an_office_read_every_15_minutes_by_a_battery_node_stays_within_the_false_alarm_limit() {
        // Every span counted in readings was chosen at 5 minutes; at 15 the
        // memories of extremes hold a third of the time in as many
        // readings, and stay that many readings long: shortened to follow
        // the interval (`rate_floor`), they let the new-territory and
        // seasonal tests fire twice as often (0.23 per 10 000 readings in
        // the false-alarm bench, over its 0.2 limit; here 32 alerts
        // against 11).
        let (alerts, readings) = quarter_hour_offices(&Params::DEFAULT);
        let limit = (0.2 * readings as f64 / 10_000.0) as usize;
        assert!(alerts <= limit, "{alerts} false alarms, limit {limit}");
    }

    #[test]
    fn an_office_read_every_minute_that_stays_empty_on_a_weekday_is_reported() {
        // The longer memories must not blunt it: Wednesday of the fourth
        // week with nobody in.
        let hits = minute_offices(Some(23));
        let caught = (1..=10).filter(|s| hits.contains(&(*s, 23))).count();
        assert_eq!(caught, 10, "{hits:?}");
    }
}
