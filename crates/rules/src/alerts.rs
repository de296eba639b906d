//! Alerts in the running gateway: the rule engine fed by the pipeline, its
//! transitions handed back at once (they bypass the windows; the fanout
//! sends them to every output), those whose actions are to run handed to
//! the actions output (`actions`),
//! and the engine's learned state kept in `{state_dir}/alerts.json` across
//! restarts.
//!
//! The file is replaced atomically: written to a temporary file, fsynced,
//! renamed over the old one, and the directory fsynced, so a power cut
//! leaves the old state or the new one. An unreadable file is moved aside
//! (`alerts.json.damaged`) and the detectors start learning afresh.

use std::path::Path;

use crate::{Alert, AlertState, Engine, EngineState};
use anomaly::multivariate::Fitted;
use gateway_core::clock::Zone;
use gateway_core::config::{ActionConfig, DeviceConfig, RuleConfig};
use gateway_core::event::{AlertEvent, SinkEvent};
use gateway_core::state_file::inventory;
use gateway_core::state_file::json::{JsonStateError, JsonStateFile, StateDocument};
use gateway_core::telemetry::{Counter, LogThrottle};
use gateway_core::{DeviceState, Reading, SourceId, StatusChange, Telemetry, Timestamp};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

/// Silence rules are checked at most this often (ms).
const TICK_MS: i64 = 1000;

/// Raises a rule's `cooldown` held back, by `rule`: each one is also in
/// the alert history (state `suppressed`), never upstream.
pub const ALERTS_SUPPRESSED: &str = "edge_gateway_alerts_suppressed_total";

/// Clears of an action not sent because another alert driving the same
/// actuator (same broker, topic and payloads) is still raised.
pub const ACTION_CLEARS_HELD: &str = "edge_gateway_action_clears_held_total";

pub type StoreError = JsonStateError;

/// An alert transition as the outputs receive it; `source`: the adapter
/// of the reading that decided it.
pub fn alert_event(a: &Alert, source: SourceId) -> AlertEvent {
    AlertEvent {
        device: a.device.clone(),
        rule: a.rule.clone(),
        metric: a.metric.clone(),
        kind: a.kind.as_str().to_string(),
        state: a.state.as_str().to_string(),
        value: a.value,
        limit: a.limit,
        at: a.at,
        reason: a.evidence.as_ref().map(|e| e.reason.as_str().to_string()),
        expected: a.evidence.as_ref().map(|e| e.expected),
        observed: a.evidence.as_ref().map(|e| e.observed),
        source,
    }
}

/// One transition of an alert rule (suppressed ones too: the outputs
/// record them, the upstream drops them), and the adapter of the reading
/// that decided it, whose `units` may say what the metric is measured in
/// (`SourceId::UNKNOWN` when the clock or a status change did).
#[derive(Debug, Clone)]
pub struct Transition {
    pub alert: Alert,
    pub source: SourceId,
}

/// How far into the ingress journal the saved state goes: every durable
/// message of the epochs before `epoch`, and the first `messages` of
/// `epoch`. After a crash the journal's later messages are played through
/// the rules again, so a raise or clear decided after the last save (and
/// sent, or not, before the crash) is decided again, with the same id,
/// and the rules go on from where they were: a clear lost to a crash left
/// the rule raised, and the fridge's next excursion was never raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JournalMark {
    pub epoch: u64,
    pub messages: u64,
}

/// The engine's state as `alerts.json` holds it.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedState {
    #[serde(flatten)]
    state: EngineState,
    /// Absent in files saved before it existed, or without a journal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    journal_mark: Option<JournalMark>,
}

impl StateDocument for SavedState {
    const FILE_NAME: &'static str = inventory::ALERTS;
}

/// `{state_dir}/alerts.json`.
pub struct AlertStore {
    file: JsonStateFile<SavedState>,
}

impl AlertStore {
    pub fn in_dir(state_dir: &Path) -> Self {
        Self {
            file: JsonStateFile::in_state_dir(state_dir),
        }
    }

    /// The saved state, `None` if there is none.
    ///
    /// # Errors
    /// Unreadable, or damaged (then already moved aside).
    pub fn load(&self) -> Result<Option<(EngineState, Option<JournalMark>)>, StoreError> {
        Ok(self.file.load()?.map(|s| (s.state, s.journal_mark)))
    }

    /// Replaces the saved state atomically.
    ///
    /// # Errors
    /// A write, fsync or rename that failed; the previous file stays.
    pub fn save(
        &self,
        state: EngineState,
        journal_mark: Option<JournalMark>,
    ) -> Result<(), StoreError> {
        self.file.save(&SavedState {
            state,
            journal_mark,
        })
    }
}

/// The rule engine as the pipeline uses it.
pub struct Alerts {
    engine: Engine,
    store: Option<AlertStore>,
    /// The actions output's link: the alerts whose actions are to run.
    actions: Option<mpsc::Sender<SinkEvent>>,
    next_tick_ms: i64,
    dirty: bool,
    /// Where the restored state's journal position was ([`JournalMark`]).
    restored_mark: Option<JournalMark>,
    /// How far into the journal the rules have gone in this run.
    mark: Option<JournalMark>,
    raised: Counter,
    cleared: Counter,
    /// [`ALERTS_SUPPRESSED`] per rule, by rule index.
    suppressed: Vec<Counter>,
    actions_dropped: Counter,
    /// Clears not sent because another alert holds the actuator on.
    clears_held: Counter,
    store_failures: Counter,
    throttle: LogThrottle,
    /// A device model's refit running on a blocking thread: a fit takes
    /// 6-11 ms, which the pipeline task must not spend between readings.
    fit: Option<(FitKey, oneshot::Receiver<Result<Fitted, String>>)>,
}

type FitKey = (usize, gateway_core::DeviceId);

impl Alerts {
    /// The engine for `rules`, with the state saved in `state_dir` (if
    /// given and readable) restored.
    pub fn new(
        rules: &[RuleConfig],
        devices: &[DeviceConfig],
        zone: Zone,
        state_dir: Option<&Path>,
        actions: Option<mpsc::Sender<SinkEvent>>,
        telemetry: &Telemetry,
    ) -> Self {
        let mut engine = Engine::new(rules, devices);
        engine.fit_elsewhere();
        engine.set_zone(zone);
        let store_failures = telemetry.counter("edge_gateway_alert_state_failures_total", &[]);
        let store = state_dir.map(AlertStore::in_dir);
        let mut restored_mark = None;
        if let Some(s) = &store {
            match s.load() {
                Ok(Some((state, mark))) => {
                    restored_mark = mark;
                    if state.zone() != engine.zone().name() {
                        info!(
                            was = state.zone(),
                            now = engine.zone().name(),
                            "The time zone changed: the anomaly rules learn their daily and weekly routines again on the new clocks (a week)."
                        );
                    }
                    engine.restore(state);
                    info!(
                        series = engine.series_count(),
                        "Restored the alert rules' learned state."
                    );
                }
                Ok(None) => {}
                Err(e) => {
                    store_failures.inc();
                    warn!(error = %e, "Alert rules start afresh: their saved state is unreadable.");
                }
            }
        }
        Self {
            engine,
            store,
            actions,
            next_tick_ms: i64::MIN,
            dirty: false,
            restored_mark,
            mark: None,
            raised: telemetry.counter("edge_gateway_alerts_total", &[("state", "raised")]),
            cleared: telemetry.counter("edge_gateway_alerts_total", &[("state", "cleared")]),
            suppressed: rules
                .iter()
                .map(|r| telemetry.counter(ALERTS_SUPPRESSED, &[("rule", &r.name)]))
                .collect(),
            actions_dropped: telemetry.counter("edge_gateway_actions_dropped_total", &[]),
            clears_held: telemetry.counter(ACTION_CLEARS_HELD, &[]),
            store_failures,
            throttle: LogThrottle::default(),
            fit: None,
        }
    }

    /// Installs a finished refit and starts the next one due, on a blocking
    /// thread (inline where there is no runtime to run one on).
    fn drive_fits(&mut self) {
        if let Some((key, rx)) = &mut self.fit {
            let fitted = match rx.try_recv() {
                Ok(fitted) => fitted,
                Err(oneshot::error::TryRecvError::Empty) => return,
                // The thread died: keep the old model, retry later.
                Err(oneshot::error::TryRecvError::Closed) => Err("the fit's thread ended".into()),
            };
            let key = key.clone();
            self.install_fit(&key, fitted);
            self.fit = None;
        }
        let Some(job) = self.engine.take_fit() else {
            return;
        };
        let fit =
            move || anomaly::multivariate::fit(&job.rows, job.columns).map_err(|e| e.to_string());
        if tokio::runtime::Handle::try_current().is_ok() {
            let (tx, rx) = oneshot::channel();
            tokio::task::spawn_blocking(move || {
                let _ = tx.send(fit());
            });
            self.fit = Some((job.key, rx));
        } else {
            let key = job.key.clone();
            self.install_fit(&key, fit());
        }
    }

    fn install_fit(&mut self, key: &FitKey, fitted: Result<Fitted, String>) {
        // Once a device a day or so: how a user (and a test) knows the
        // multivariate alerts have a model to compare with.
        let rule = self
            .engine
            .rules()
            .get(key.0)
            .map_or("", |r| r.name.as_str());
        match &fitted {
            Ok(_) => {
                info!(rule, device = %key.1, "Anomaly rule learned how the device's metrics move together.")
            }
            Err(error) => {
                info!(rule, device = %key.1, %error, "Anomaly rule could not learn how the device's metrics move together; its last model stays.")
            }
        }
        self.engine.install_fit(key, fitted.ok());
        self.dirty = true;
    }

    /// One accepted reading; its transitions land in `out`.
    pub fn on_reading(&mut self, r: &Reading, out: &mut Vec<Transition>) {
        self.dirty = true;
        let alerts = self.engine.on_reading(r);
        self.emit(alerts, r.source(), out);
    }

    /// The clock moved: silence rules are checked (at most once a second).
    pub fn on_tick(&mut self, now: Timestamp, out: &mut Vec<Transition>) {
        if now.as_millis() < self.next_tick_ms {
            return;
        }
        self.next_tick_ms = now.as_millis().saturating_add(TICK_MS);
        self.drive_fits();
        let alerts = self.engine.on_tick(now);
        self.emit(alerts, SourceId::UNKNOWN, out);
    }

    /// The wall clock stepped by `step_ms` (seen against the monotonic
    /// clock): silence is judged on the time that passed, and the next
    /// check stays a second away rather than a whole step back.
    pub fn clock_stepped(&mut self, step_ms: i64) {
        self.dirty = true;
        self.engine.clock_stepped(step_ms);
        if self.next_tick_ms != i64::MIN {
            self.next_tick_ms = self.next_tick_ms.saturating_add(step_ms);
        }
    }

    /// A device announced its state.
    pub fn on_status(&mut self, change: &StatusChange, out: &mut Vec<Transition>) {
        self.dirty = true;
        let online = change.state == DeviceState::Online;
        let alerts = self.engine.on_status(&change.device, online, change.time);
        self.emit(alerts, SourceId::UNKNOWN, out);
    }

    /// Counts and logs each transition, and starts the actions of raised
    /// and cleared ones. `source`: see [`Transition::source`].
    fn emit(&mut self, alerts: Vec<Alert>, source: SourceId, out: &mut Vec<Transition>) {
        for a in alerts {
            self.dirty = true;
            match a.state {
                AlertState::Raised => self.raised.inc(),
                AlertState::Cleared => self.cleared.inc(),
                AlertState::Suppressed => {
                    // Recorded (history, `[[sink]]`s), but no one is alerted
                    // again within the cooldown: not upstream, no action.
                    if let Some(c) = self.suppressed.get(a.rule_index) {
                        c.inc();
                    }
                    info!(rule = %a.rule, device = %a.device, metric = %a.metric, kind = a.kind.as_str(), value = a.value, limit = a.limit, "Alert suppressed: within the rule's cooldown.");
                    out.push(Transition { alert: a, source });
                    continue;
                }
            }
            info!(rule = %a.rule, device = %a.device, metric = %a.metric, kind = a.kind.as_str(), state = a.state.as_str(), value = a.value, limit = a.limit, "Alert.");
            out.push(Transition {
                alert: a.clone(),
                source,
            });
            let action = self
                .engine
                .rules()
                .get(a.rule_index)
                .and_then(|r| r.action.clone());
            if let (Some(action), AlertState::Cleared) = (&action, a.state) {
                let holders = self.holders(action);
                if action.clear_payload.is_some() && !holders.is_empty() {
                    // One device's clear told a shared actuator "normal"
                    // while another device was still in alarm.
                    self.clears_held.inc();
                    info!(rule = %a.rule, device = %a.device, target = %action.target(), held_by = %holders.join(", "), "Action's clear held back: other alerts still hold it on.");
                    continue;
                }
            }
            if let (Some(_), Some(tx)) = (action, &self.actions) {
                if tx
                    .try_send(SinkEvent::Alert(alert_event(&a, source)))
                    .is_err()
                {
                    self.actions_dropped.inc();
                    if let Some(suppressed) = self.throttle.allow("actions") {
                        warn!(
                            suppressed,
                            "Action queue full or closed; dropping an action."
                        );
                    }
                }
            }
        }
    }

    /// The alerts raised now whose rules drive the same actuator as
    /// `action` (`device · rule`): while any is, the actuator stays on.
    /// From the engine's state, which a restart restores, so a clear after
    /// a restart still knows who holds the actuator.
    fn holders(&self, action: &ActionConfig) -> Vec<String> {
        let rules = self.engine.rules();
        let mut held: Vec<String> = self
            .engine
            .raised()
            .into_iter()
            .filter_map(|(i, device, _)| {
                let rule = rules.get(i)?;
                let other = rule.action.as_ref()?;
                other
                    .same_actuator(action)
                    .then(|| format!("{device} · {}", rule.name))
            })
            .collect();
        held.sort();
        held
    }

    /// How far into the ingress journal the restored state went, if the
    /// file said.
    pub fn restored_mark(&self) -> Option<JournalMark> {
        self.restored_mark
    }

    /// `messages` durable messages of the journal's `epoch` went through
    /// the rules, after those counted before.
    pub fn journaled(&mut self, epoch: u64, messages: usize) {
        let mark = self.mark.get_or_insert(JournalMark { epoch, messages: 0 });
        if mark.epoch != epoch {
            *mark = JournalMark { epoch, messages: 0 };
        }
        mark.messages = mark.messages.saturating_add(messages as u64);
    }

    /// Saves the learned state if anything changed since the last save,
    /// with how far into the ingress journal it goes.
    pub fn save(&mut self) {
        let Some(store) = &self.store else { return };
        if !self.dirty {
            return;
        }
        match store.save(self.engine.state(), self.mark) {
            Ok(()) => self.dirty = false,
            Err(e) => {
                self.store_failures.inc();
                if let Some(suppressed) = self.throttle.allow("store") {
                    warn!(error = %e, suppressed, "Cannot save the alert rules' state; will retry.");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_core::{DeviceId, MetricName, TimeSource};

    fn device_rule() -> Vec<RuleConfig> {
        #[derive(serde::Deserialize)]
        struct File {
            rule: Vec<RuleConfig>,
        }
        let text = "[[rule]]\nname = \"room\"\nkind = \"anomaly\"\n";
        toml::from_str::<File>(text)
            .map(|f| f.rule)
            .unwrap_or_default()
    }

    fn reading(minute: i64, metric: &str, value: f64) -> Option<Reading> {
        Reading::new(
            DeviceId::new("room-1").ok()?,
            MetricName::new(metric).ok()?,
            value,
            Timestamp::from_millis(1_767_225_600_000 + minute * 60_000).ok()?,
            TimeSource::Event,
        )
        .ok()
    }

    fn co2_rule() -> Vec<RuleConfig> {
        #[derive(serde::Deserialize)]
        struct File {
            rule: Vec<RuleConfig>,
        }
        let text = r#"
[[rule]]
name = "co2-high"
kind = "threshold"
metric = "co2"
max = 1000.0
cooldown = "0s"
action = { publish = "actuators/hvac_zone_1/command", payload = "increase_ventilation", clear_payload = "normal_ventilation", cooldown = "0s" }
"#;
        toml::from_str::<File>(text)
            .map(|f| f.rule)
            .unwrap_or_default()
    }

    fn co2(device: &str, minute: i64, value: f64) -> Reading {
        Reading::new(
            DeviceId::new(device).unwrap(),
            MetricName::new("co2").unwrap(),
            value,
            Timestamp::from_millis(1_767_225_600_000 + minute * 60_000).unwrap(),
            TimeSource::Event,
        )
        .unwrap()
    }

    /// The payloads sent, in order, as "device payload" (the one rule's).
    fn sent(jobs: &mut mpsc::Receiver<SinkEvent>) -> Vec<String> {
        let rules = co2_rule();
        let Some(action) = rules.first().and_then(|r| r.action.as_ref()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while let Ok(SinkEvent::Alert(alert)) = jobs.try_recv() {
            let payload = match alert.state.as_str() {
                "raised" => action.payload.to_string(),
                _ => action
                    .clear_payload
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            };
            out.push(format!("{} {payload}", alert.device));
        }
        out
    }

    #[test]
    fn a_shared_actuator_is_switched_back_only_by_the_last_clear_even_after_a_restart() {
        let rules = co2_rule();
        assert_eq!(rules.len(), 1);
        let telemetry = Telemetry::default();
        let state = tempfile::tempdir().unwrap();
        let (tx, mut jobs) = mpsc::channel(16);
        let mut alerts = Alerts::new(
            &rules,
            &[],
            Zone::utc(),
            Some(state.path()),
            Some(tx),
            &telemetry,
        );
        let mut out = Vec::new();
        alerts.on_reading(&co2("room-a", 0, 1200.0), &mut out);
        alerts.on_reading(&co2("room-b", 1, 1250.0), &mut out);
        alerts.on_reading(&co2("room-b", 2, 800.0), &mut out);
        assert_eq!(
            sent(&mut jobs),
            ["room-a increase_ventilation", "room-b increase_ventilation"],
            "room-b's clear is held back: room-a is still above 1000"
        );
        assert_eq!(
            out.iter()
                .filter(|t| t.alert.state == AlertState::Cleared)
                .count(),
            1,
            "the clear itself is still recorded and sent to the outputs"
        );
        assert_eq!(telemetry.counter_value(ACTION_CLEARS_HELD, &[]), Some(1));
        // A restart between: the engine's saved state says room-a holds it.
        alerts.save();
        drop(alerts);
        let (tx, mut jobs) = mpsc::channel(16);
        let mut alerts = Alerts::new(
            &rules,
            &[],
            Zone::utc(),
            Some(state.path()),
            Some(tx),
            &telemetry,
        );
        alerts.on_reading(&co2("room-b", 3, 1300.0), &mut out);
        alerts.on_reading(&co2("room-b", 4, 700.0), &mut out);
        alerts.on_reading(&co2("room-a", 5, 600.0), &mut out);
        assert_eq!(
            sent(&mut jobs),
            ["room-b increase_ventilation", "room-a normal_ventilation"],
            "the last device to clear switches the actuator back"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_device_model_refits_on_a_blocking_thread_not_in_the_tick() {
        let rules = device_rule();
        assert_eq!(rules.len(), 1);
        let telemetry = Telemetry::default();
        let mut alerts = Alerts::new(&rules, &[], Zone::utc(), None, None, &telemetry);
        let mut out = Vec::new();
        let mut sent_out = false;
        // Five-minute rows of two metrics: a model is due after 256 rows.
        for step in 0..2000i64 {
            let minute = step * 5;
            for (metric, value) in [
                ("temperature", 21.0 + (step % 7) as f64 * 0.1),
                ("co2", 420.0 + (step % 11) as f64),
            ] {
                if let Some(r) = reading(minute, metric, value) {
                    alerts.on_reading(&r, &mut out);
                }
            }
            if let Some(now) = reading(minute, "t", 0.0).map(|r| r.time()) {
                alerts.on_tick(now, &mut out);
            }
            if alerts.fit.is_some() {
                sent_out = true;
                break;
            }
        }
        assert!(sent_out, "a refit went to a blocking thread");
        // The thread finishes on its own; the next tick installs it.
        let (key, rx) = alerts.fit.take().unwrap_or_else(|| unreachable!());
        let fitted = rx.await.unwrap_or_else(|e| Err(e.to_string()));
        assert!(fitted.is_ok(), "the job fitted: {fitted:?}");
        alerts.install_fit(&key, fitted);
        assert!(alerts.engine.take_fit().is_none(), "nothing else is due");
    }
}
