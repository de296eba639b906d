//! The rule engine: readings, status changes and clock ticks in, alerts
//! out. Pure logic in event time: the caller passes every instant, so the
//! live gateway (wall clock) and `replay` (CSV timestamps) run the same
//! code and get the same alerts.

use std::collections::{BTreeMap, HashMap};

use gateway_core::config::{DeviceConfig, RuleConfig, RuleKind};
use gateway_core::{DeviceId, Reading, TimeSource, Timestamp};
use serde::{Deserialize, Serialize};

use anomaly::detector::Reason;
use anomaly::multivariate::{DeviceModel, Fitted};
use anomaly::When;
use gateway_core::clock::{WallClock, Zone};

use crate::kinds::{self, Outcome, Series, Silence};
use crate::trigger::AlertState;

/// One alert transition, ready to be rendered upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Index of the rule in the config, for its action.
    pub rule_index: usize,
    pub rule: String,
    pub kind: RuleKind,
    pub device: DeviceId,
    /// The rule's metric; empty for a silence rule that watches any metric.
    pub metric: String,
    pub state: AlertState,
    /// threshold: the reading; rate: the change within the span (the
    /// reading minus the lowest, or for a fall the highest, reading of the
    /// span before it); silence: seconds without a reading; anomaly: the
    /// reading.
    pub value: f64,
    /// threshold: the bound crossed; rate: the change per span (signed);
    /// silence: `after` in seconds; anomaly: the detector's score that
    /// fired (standard deviations).
    pub limit: f64,
    pub at: Timestamp,
    /// anomaly (raised): why the detector fired and what it expected.
    pub evidence: Option<Evidence>,
}

/// Why an anomaly alert fired: the detector's reason and the range it
/// expected the reading in, beside the reading itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evidence {
    pub reason: Reason,
    /// (low, high) the reading was expected in.
    pub expected: (f64, f64),
    pub observed: f64,
}

/// How far ahead of the gateway's clock a reading's own time still counts
/// as its instant for the rules: a sensor's clock a little fast, or a
/// reading stamped between two ticks (one a second). As far as the
/// pipeline's default `max_future` places a reading in the windows open
/// now. A reading stamped further ahead is judged at this horizon, so it
/// cannot make the correctly stamped readings after it look old.
pub(crate) const AHEAD_MS: i64 = 60_000;

pub(crate) fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The alert of rule `i`'s transition `o` for `device` at `at`.
fn alert(i: usize, rule: &RuleConfig, device: DeviceId, at: Timestamp, o: Outcome) -> Alert {
    Alert {
        rule_index: i,
        rule: rule.name.clone(),
        kind: rule.kind,
        device,
        metric: rule
            .metric
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
        state: o.state,
        value: o.value,
        limit: o.limit,
        at,
        evidence: o.evidence,
    }
}

/// Everything the engine has learned, for persistence across restarts.
/// Keyed by rule *name*, so reordering rules keeps their state and state of
/// a removed rule is dropped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineState {
    series: Vec<(String, DeviceId, String, Series)>,
    silence: Vec<(String, DeviceId, Silence)>,
    /// Per-device multivariate models of metric-less anomaly rules (absent
    /// in state saved before they existed).
    #[serde(default)]
    devices: Vec<(String, DeviceId, DeviceModel)>,
    /// The time zone whose wall clock the daily and weekly profiles were
    /// learned on (absent in state saved before there was a choice: UTC).
    #[serde(default)]
    zone: Option<String>,
}

impl EngineState {
    /// The zone the profiles in this state were learned on.
    pub fn zone(&self) -> &str {
        self.zone.as_deref().unwrap_or("UTC")
    }
}

/// A reading's instant with the wall clock `offset_ms` ahead of UTC.
fn wall(utc_ms: i64, offset_ms: i64) -> When {
    When {
        utc_ms,
        local_ms: utc_ms.saturating_add(offset_ms),
    }
}

/// Runs every rule over every device × metric.
#[derive(Debug)]
pub struct Engine {
    rules: Vec<RuleConfig>,
    tags: HashMap<DeviceId, BTreeMap<String, String>>,
    series: HashMap<(usize, DeviceId, String), Series>,
    silence: HashMap<(usize, DeviceId), Silence>,
    /// An anomaly rule without `metric` also learns each device's metrics
    /// together.
    devices: HashMap<(usize, DeviceId), DeviceModel>,
    started: bool,
    /// Whether `on_tick` refits due device models itself. The gateway turns
    /// this off and runs [`Engine::take_fit`] jobs on a blocking thread, so
    /// a fit (6-11 ms) never holds up the pipeline; replay keeps it on, for
    /// results that do not depend on thread timing.
    fit_inline: bool,
    /// The device model whose fit job is out, not to be handed out twice.
    fitting: Option<(usize, DeviceId)>,
    /// The building's clocks, which the anomaly rules' daily and weekly
    /// profiles follow.
    wall: WallClock,
    /// The clock of the last [`Engine::on_tick`]: no series' clock goes
    /// more than [`AHEAD_MS`] past it. `None` before the first tick.
    clock_ms: Option<i64>,
}

/// A device model's refit, to run away from the pipeline
/// ([`anomaly::multivariate::fit`] on `rows`), then [`Engine::install_fit`].
#[derive(Debug)]
pub struct FitJob {
    pub key: (usize, DeviceId),
    pub rows: Vec<f64>,
    pub columns: usize,
}

impl Engine {
    /// An engine for validated `rules`; `devices` gives the tags that
    /// `tag = ...` selectors match.
    pub fn new(rules: &[RuleConfig], devices: &[DeviceConfig]) -> Self {
        Self {
            rules: rules.to_vec(),
            tags: devices
                .iter()
                .map(|d| (d.id.clone(), d.tag_map()))
                .collect(),
            series: HashMap::new(),
            silence: HashMap::new(),
            devices: HashMap::new(),
            started: false,
            fit_inline: true,
            fitting: None,
            wall: WallClock::default(),
            clock_ms: None,
        }
    }

    /// Learns daily and weekly routines on this zone's clocks (UTC unless
    /// set). Set before [`Self::restore`], which forgets profiles learned
    /// on another zone's.
    pub fn set_zone(&mut self, zone: Zone) {
        self.wall = WallClock::new(zone);
    }

    /// The zone whose clocks the profiles follow.
    pub fn zone(&self) -> &Zone {
        self.wall.zone()
    }

    /// Leaves device-model refits to the caller ([`Engine::take_fit`]).
    pub fn fit_elsewhere(&mut self) {
        self.fit_inline = false;
    }

    /// The next device model due for a refit, oldest key first; `None`
    /// while one is out or none is due.
    pub fn take_fit(&mut self) -> Option<FitJob> {
        if self.fitting.is_some() {
            return None;
        }
        let key = self.next_due()?;
        let (rows, columns) = self.devices.get(&key)?.training_rows();
        self.fitting = Some(key.clone());
        Some(FitJob { key, rows, columns })
    }

    /// Installs the outcome of a [`FitJob`]; `None` (too few distinct rows,
    /// or the job was lost) keeps the previous model, and the model is due
    /// again at the next tick.
    pub fn install_fit(&mut self, key: &(usize, DeviceId), fitted: Option<Fitted>) {
        if self.fitting.as_ref() == Some(key) {
            self.fitting = None;
        }
        if let (Some(fitted), Some(m)) = (fitted, self.devices.get_mut(key)) {
            m.install(fitted);
        }
    }

    fn next_due(&self) -> Option<(usize, DeviceId)> {
        self.devices
            .iter()
            .filter(|(_, m)| m.fit_due())
            .map(|(k, _)| k)
            .min()
            .cloned()
    }

    /// The rules, in config order (`Alert::rule_index` points here).
    pub fn rules(&self) -> &[RuleConfig] {
        &self.rules
    }

    /// The alerts raised now and not yet cleared: (rule index, device,
    /// metric; empty for a silence rule).
    pub fn raised(&self) -> Vec<(usize, &DeviceId, &str)> {
        let series = self
            .series
            .iter()
            .filter(|(_, s)| s.raised())
            .map(|((i, d, m), _)| (*i, d, m.as_str()));
        let silence = self
            .silence
            .iter()
            .filter(|(_, s)| s.trigger.raised)
            .map(|((i, d), _)| (*i, d, ""));
        series.chain(silence).collect()
    }

    /// Series (rule × device × metric) with state.
    pub fn series_count(&self) -> usize {
        self.series.len() + self.silence.len() + self.devices.len()
    }

    fn selects(&self, rule: &RuleConfig, device: &DeviceId) -> bool {
        if let Some(d) = &rule.device {
            return d == device;
        }
        let Some(tag) = &rule.tag else { return true };
        let Some(tags) = self.tags.get(device) else {
            return false;
        };
        match tag.split_once('=') {
            Some((k, v)) => tags.get(k.trim()).is_some_and(|have| have == v.trim()),
            None => tags.contains_key(tag.trim()),
        }
    }

    /// Evaluates every rule that watches this reading's device and metric.
    /// A reading older than the last one of its series is ignored.
    pub fn on_reading(&mut self, r: &Reading) -> Vec<Alert> {
        let mut out = Vec::new();
        let stamped = r.time().as_millis();
        // A gateway stamp behind the series' last one is queueing order,
        // not an old sample: the pipeline re-stamps readings that waited
        // past their window at the time it takes them, so the readings
        // queued behind them (stamped earlier, still in an open window)
        // follow a later stamp. Skipping them, as a sensor's own stale
        // time is skipped, lost a fridge's "too warm" and a live anomaly
        // whenever the gateway fell behind a burst.
        let arrival = r.time_source() == TimeSource::Arrival;
        let series_time = |last_ms: i64| {
            if arrival {
                stamped.max(last_ms)
            } else {
                stamped
            }
        };
        let v = r.value();
        if !v.is_finite() {
            return out;
        }
        // Past it, an instant is a sensor's clock error, not the order of
        // its readings (`kinds::advance`).
        let horizon = self
            .clock_ms
            .map_or(i64::MAX, |c| c.saturating_add(AHEAD_MS));
        let offset_ms = self.wall.local_ms(stamped) - stamped;
        for i in 0..self.rules.len() {
            let rule = &self.rules[i];
            if !self.selects(rule, r.device()) {
                continue;
            }
            let metric_matches = rule.metric.as_ref().is_none_or(|m| m == r.metric());
            if !metric_matches {
                continue;
            }
            let alert = |o: Outcome| alert(i, rule, r.device().clone(), r.time(), o);
            if rule.kind == RuleKind::Silence {
                let s = self
                    .silence
                    .entry((i, r.device().clone()))
                    .or_insert_with(|| Silence::since(stamped.min(horizon)));
                // As for the other kinds: a reading stamped a day ahead
                // must not hide a silence for that day.
                s.last_seen_ms = s.last_seen_ms.min(horizon);
                let now = series_time(s.last_seen_ms).min(horizon);
                out.extend(s.heard(now, ms(rule.cooldown)).map(alert));
                continue;
            }
            if rule.kind == RuleKind::Anomaly && rule.metric.is_none() {
                let model = self.devices.entry((i, r.device().clone())).or_default();
                if let Some((metric, raised)) =
                    kinds::device_anomaly(model, wall(stamped, offset_ms), r.metric().as_str(), v)
                {
                    let mut a = alert(raised);
                    a.metric = metric;
                    // A device-level alert has no lasting condition to clear
                    // on: it is raised and cleared at once.
                    let mut cleared = a.clone();
                    cleared.state = AlertState::Cleared;
                    cleared.evidence = None;
                    out.push(a);
                    out.push(cleared);
                }
            }
            let key = (i, r.device().clone(), r.metric().to_string());
            let series = self.series.entry(key).or_insert_with(|| Series::new(rule));
            out.extend(
                series
                    .evaluate(rule, v, series_time, horizon, offset_ms)
                    .map(alert),
            );
        }
        out
    }

    /// Advances the clock: raises silence alerts whose `after` has passed.
    /// The first tick also starts watching the registry's devices that a
    /// silence rule selects, so a device that never speaks is noticed.
    pub fn on_tick(&mut self, now: Timestamp) -> Vec<Alert> {
        let now_ms = now.as_millis();
        self.clock_ms = Some(now_ms);
        if !self.started {
            self.started = true;
            let devices: Vec<DeviceId> = self.tags.keys().cloned().collect();
            for (i, rule) in self.rules.iter().enumerate() {
                if rule.kind != RuleKind::Silence {
                    continue;
                }
                for d in &devices {
                    if self.selects(rule, d) {
                        self.silence
                            .entry((i, d.clone()))
                            .or_insert_with(|| Silence::since(now_ms));
                    }
                }
            }
        }
        // Inline (replay), refit the device models that are due, at most
        // one per tick: each fit is bounded (6-11 ms measured). The gateway
        // takes them as jobs instead (`take_fit`).
        if self.fit_inline {
            if let Some(key) = self.next_due() {
                if let Some(m) = self.devices.get_mut(&key) {
                    // Too few distinct rows is the only failure; the model
                    // keeps its previous fit and tries again later.
                    let _ = m.refit();
                }
            }
        }
        let mut out = Vec::new();
        let mut keys: Vec<&(usize, DeviceId)> = self.silence.keys().collect();
        keys.sort();
        let keys: Vec<(usize, DeviceId)> = keys.into_iter().cloned().collect();
        for (i, device) in keys {
            let rule = &self.rules[i];
            let Some(after) = rule.after.map(ms) else {
                continue;
            };
            let Some(s) = self.silence.get_mut(&(i, device.clone())) else {
                continue;
            };
            // Stamped when the silence began to count, not when the tick
            // noticed it, so replay and live agree to the millisecond.
            if let Some((due, o)) = s.tick(now_ms, after, ms(rule.cooldown)) {
                let at = Timestamp::from_millis(due).unwrap_or(now);
                out.push(alert(i, rule, device, at, o));
            }
        }
        out
    }

    /// The wall clock stepped by `step_ms` while the gateway ran: what the
    /// silence rules measure moves with it (see `Silence::shift`).
    pub fn clock_stepped(&mut self, step_ms: i64) {
        for s in self.silence.values_mut() {
            s.shift(step_ms);
        }
    }

    /// A device announced `offline` (raise its silence alerts at once) or
    /// `online` (clear them: it speaks again).
    pub fn on_status(&mut self, device: &DeviceId, online: bool, at: Timestamp) -> Vec<Alert> {
        let now = at.as_millis();
        let mut out = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.kind != RuleKind::Silence || !self.selects(rule, device) {
                continue;
            }
            let s = self
                .silence
                .entry((i, device.clone()))
                .or_insert_with(|| Silence::since(now));
            let limit = rule.after.map_or(0.0, |a| ms(a) as f64 / 1000.0);
            if let Some(o) = s.status(online, now, limit, ms(rule.cooldown)) {
                out.push(alert(i, rule, device.clone(), at, o));
            }
        }
        out
    }

    /// Everything learned so far, to persist.
    pub fn state(&self) -> EngineState {
        let mut series: Vec<_> = self
            .series
            .iter()
            .map(|((i, d, m), s)| (self.rules[*i].name.clone(), d.clone(), m.clone(), s.clone()))
            .collect();
        series.sort_by(|a, b| (&a.0, &a.1, &a.2).cmp(&(&b.0, &b.1, &b.2)));
        let mut silence: Vec<_> = self
            .silence
            .iter()
            .map(|((i, d), s)| (self.rules[*i].name.clone(), d.clone(), s.clone()))
            .collect();
        silence.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let mut devices: Vec<_> = self
            .devices
            .iter()
            .map(|((i, d), m)| (self.rules[*i].name.clone(), d.clone(), m.clone()))
            .collect();
        devices.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        EngineState {
            series,
            silence,
            devices,
            zone: Some(self.wall.zone().name().to_string()),
        }
    }

    /// Restores what [`Engine::state`] saved. State of rules no longer in
    /// the config, or whose kind changed, is dropped.
    pub fn restore(&mut self, state: EngineState) {
        let other_clock = state.zone() != self.wall.zone().name();
        let index: HashMap<&str, usize> = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.as_str(), i))
            .collect();
        for (name, device, metric, s) in state.series {
            let Some(&i) = index.get(name.as_str()) else {
                continue;
            };
            let fits = matches!(
                (&s, self.rules[i].kind),
                (Series::Threshold { .. }, RuleKind::Threshold)
                    | (Series::Rate { .. }, RuleKind::Rate)
                    | (Series::Anomaly { .. }, RuleKind::Anomaly)
            );
            if fits {
                self.series.insert((i, device, metric), s);
            }
        }
        for (name, device, m) in state.devices {
            if let Some(&i) = index.get(name.as_str()) {
                let rule = &self.rules[i];
                if rule.kind == RuleKind::Anomaly && rule.metric.is_none() {
                    self.devices.insert((i, device), m);
                }
            }
        }
        for (name, device, s) in state.silence {
            if let Some(&i) = index.get(name.as_str()) {
                if self.rules[i].kind == RuleKind::Silence {
                    self.silence.insert((i, device), s);
                }
            }
        }
        if other_clock {
            for series in self.series.values_mut() {
                series.forget_wall_clock();
            }
            for model in self.devices.values_mut() {
                model.forget_wall_clock();
            }
        }
    }
}
