//! What the pages show "now": each device's latest values, last seen time,
//! announced state and recent raw readings, and the active alerts; plus
//! the broadcast that feeds `/events`.
//!
//! Kept in memory (raw readings are not history), rebuilt at start from
//! the history's devices and alert transitions. One short lock per event
//! batch; pages copy what they need out of it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use gateway_core::event::SinkEvent;
use gateway_core::{SourceId, Subject};
use serde_json::json;
use tokio::sync::broadcast;

use super::commands::{CommandRow, RecentCommands};
use super::history::{Aggregate, AlertRow, KnownDevice, WindowRow};
use super::latest_file::Kept;
use super::open::OpenWindows;

/// Raw readings kept per device for the device page.
const RECENT_READINGS: usize = 20;
/// Events buffered for `/events` clients; a client further behind than
/// this loses the oldest and is told to reload (`lagged`).
pub const BROADCAST_CAPACITY: usize = 1024;

/// Devices the present keeps at most, the most recently seen: as many as
/// `dashboard-latest.json` keeps across a restart. Every reading or Last
/// Will of a new id added a row for good, and the aggregator's
/// `max_series` bounds only the series open at once: a device putting a
/// counter in its topic, or a stranger on the local broker, grew the
/// gateway's memory (and the overview) by every id it ever made up; a
/// status message is not bounded by `max_series` at all. A device let go
/// keeps its history and comes back when it speaks again.
pub const MAX_LIVE_DEVICES: usize = super::latest_file::MAX_KEPT_DEVICES;

/// Metrics one device's present keeps at most, the most recently heard:
/// room for a BACnet controller's hundreds of points, while a device that
/// puts a counter in its metric level (`sensors/data/{device}/{metric}`)
/// no longer adds a value to memory, and to its overview row, per name it
/// ever made up. A metric let go keeps its history.
pub const MAX_LIVE_METRICS: usize = 1024;

/// How far ahead of the gateway clock a latest value's time may be and
/// still hold back older readings: `max_future`'s default.
const LATEST_AHEAD_MS: i64 = 60_000;

/// One device as the pages show it now.
#[derive(Debug, Clone, Default)]
pub struct DeviceNow {
    /// Latest raw reading time (ms).
    pub last_seen: Option<i64>,
    /// `Some(false)` after the device's Last Will said offline.
    pub online: Option<bool>,
    /// metric → (value, at ms).
    pub latest: BTreeMap<String, (f64, i64)>,
    /// Newest last: (at ms, metric, value).
    pub recent: VecDeque<(i64, String, f64)>,
    /// The adapter its latest reading came through.
    pub source: SourceId,
    /// Its readings describe the radio infrastructure (a LoRaWAN
    /// forwarder's counters), shown with the gateway, not as a device.
    pub infrastructure: bool,
    /// metric → its latest closed window.
    pub last_window: BTreeMap<String, super::history::Aggregate>,
}

impl DeviceNow {
    /// Lets go of the metrics heard least recently once there are more
    /// than [`MAX_LIVE_METRICS`], an eighth of the bound at a time (one
    /// sort per hundred new names, not per name), with their last windows.
    fn bound_metrics(&mut self) {
        if self.latest.len() > MAX_LIVE_METRICS {
            let mut heard: Vec<(i64, &String)> =
                self.latest.iter().map(|(m, (_, at))| (*at, m)).collect();
            heard.sort_unstable();
            let excess = self.latest.len() - (MAX_LIVE_METRICS - MAX_LIVE_METRICS / 8);
            let gone: Vec<String> = heard
                .into_iter()
                .take(excess)
                .map(|(_, m)| m.clone())
                .collect();
            for m in gone {
                self.latest.remove(&m);
                self.last_window.remove(&m);
            }
        }
        // The window of a metric let go while it was open closes after it
        // (and restored windows need no reading): such windows go once
        // there are an eighth more than the bound, not one scan per window.
        if self.last_window.len() > MAX_LIVE_METRICS + MAX_LIVE_METRICS / 8 {
            let latest = &self.latest;
            self.last_window.retain(|m, _| latest.contains_key(m));
        }
    }
}

#[derive(Debug)]
struct State {
    devices: BTreeMap<String, DeviceNow>,
    /// Readings of windows not closed yet, for the charts.
    open: OpenWindows,
    /// (device, rule) → the raise.
    active: BTreeMap<(String, String), AlertRow>,
    /// A device's adapter changed (or was first heard) since the last
    /// [`Live::changed_sources`].
    sources_changed: bool,
    /// A reading or a device's status came since the last
    /// [`Live::changed_latest`].
    latest_changed: bool,
    /// The last command results per device.
    commands: RecentCommands,
}

impl State {
    /// Lets go of the least recently seen devices once there are more
    /// than [`MAX_LIVE_DEVICES`]: an eighth of the bound at a time, so a
    /// flood of new ids sorts the table once per thousand ids, not per id.
    /// A device with an active alert stays (the alert is about it).
    fn bound_devices(&mut self) {
        if self.devices.len() <= MAX_LIVE_DEVICES {
            return;
        }
        let alerting: std::collections::BTreeSet<&str> =
            self.active.keys().map(|(d, _)| d.as_str()).collect();
        let mut seen: Vec<(Option<i64>, &String)> = self
            .devices
            .iter()
            .filter(|(id, _)| !alerting.contains(id.as_str()))
            .map(|(id, d)| (d.last_seen, id))
            .collect();
        // Never seen (restored from history only) sorts first: `None`.
        seen.sort_unstable();
        let excess = self.devices.len() - (MAX_LIVE_DEVICES - MAX_LIVE_DEVICES / 8);
        let gone: Vec<String> = seen
            .into_iter()
            .take(excess)
            .map(|(_, id)| id.clone())
            .collect();
        for id in gone {
            self.devices.remove(&id);
        }
        // What the latest file and the adapters' file keep follows.
        self.latest_changed = true;
        self.sources_changed = true;
    }
}

/// An alert transition as history keeps it.
pub fn alert_row(a: &gateway_core::event::AlertEvent) -> AlertRow {
    AlertRow {
        device: a.device.to_string(),
        rule: a.rule.clone(),
        metric: a.metric.clone(),
        kind: a.kind.clone(),
        state: a.state.clone(),
        value: a.value,
        limit: a.limit,
        at: a.at.as_millis(),
        reason: a.reason.clone(),
        expected: a.expected.map(|(lo, hi)| [lo, hi]),
    }
}

/// Shared between the writer task and the HTTP handlers.
#[derive(Clone)]
pub struct Live {
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<Arc<str>>,
}

impl Default for Live {
    /// Minute windows.
    fn default() -> Self {
        Self::new(60_000)
    }
}

impl Live {
    /// The present of a gateway whose windows last `window_ms`.
    pub fn new(window_ms: i64) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                devices: BTreeMap::new(),
                open: OpenWindows::new(window_ms),
                active: BTreeMap::new(),
                sources_changed: false,
                latest_changed: false,
                commands: RecentCommands::default(),
            })),
            events: broadcast::channel(BROADCAST_CAPACITY).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A handler that panicked mid-update leaves plain data behind.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Seeds from history: devices known before a restart, and alerts whose
    /// last transition was a raise. `alerts` is newest first.
    pub fn restore(&self, devices: &[KnownDevice], alerts: &[AlertRow]) {
        let mut s = self.lock();
        // History written before ids were canonical may hold a MAC in
        // upper case: it is the same device, not a second row.
        let canonical = |id: &str| {
            gateway_core::DeviceId::new(id).map_or_else(|_| id.to_string(), |d| d.to_string())
        };
        for d in devices {
            s.devices.entry(canonical(&d.id)).or_default();
        }
        let mut decided = std::collections::BTreeSet::new();
        // A raise suppressed by the cooldown decides nothing active.
        for a in alerts.iter().filter(|a| a.state != "suppressed") {
            let key = (canonical(&a.device), a.rule.clone());
            if decided.insert(key.clone()) && a.state == "raised" {
                s.active.insert(
                    key.clone(),
                    AlertRow {
                        device: key.0,
                        ..a.clone()
                    },
                );
            }
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.events.subscribe()
    }

    fn publish(&self, event: &str, data: serde_json::Value) {
        // No receiver is fine: nobody has a page open.
        let _ = self
            .events
            .send(Arc::from(format!("event: {event}\ndata: {data}\n\n")));
    }

    /// Applies one pipeline event; returns what history must keep.
    pub fn apply(
        &self,
        event: &SinkEvent,
        windows: &mut Vec<WindowRow>,
        alerts: &mut Vec<AlertRow>,
    ) {
        match event {
            SinkEvent::Readings(readings) => {
                let ahead_limit = gateway_core::Timestamp::now()
                    .as_millis()
                    .saturating_add(LATEST_AHEAD_MS);
                let mut s = self.lock();
                s.latest_changed |= !readings.is_empty();
                for r in readings {
                    let at = r.time().as_millis();
                    let d = s.devices.entry(r.device().to_string()).or_default();
                    d.last_seen = Some(d.last_seen.map_or(at, |l| l.max(at)));
                    if d.online == Some(false) {
                        d.online = Some(true);
                    }
                    let moved = r.source() != SourceId::UNKNOWN && d.source != r.source();
                    if moved {
                        d.source = r.source();
                    }
                    d.infrastructure = r.subject() == Subject::Infrastructure;
                    let metric = r.metric().as_str().to_string();
                    // A value kept from ahead of the gateway clock (a node's
                    // clock ahead, the gateway's NTP-stepped back) does not
                    // hold: it froze "latest" for up to a day.
                    let newer = d
                        .latest
                        .get(&metric)
                        .is_none_or(|(_, t)| *t <= at || *t > ahead_limit);
                    if newer && d.latest.insert(metric.clone(), (r.value(), at)).is_none() {
                        d.bound_metrics();
                    }
                    if d.recent.len() >= RECENT_READINGS {
                        d.recent.pop_front();
                    }
                    d.recent.push_back((at, metric.clone(), r.value()));
                    let infrastructure = d.infrastructure;
                    s.sources_changed |= moved;
                    if !infrastructure {
                        s.open.reading(r.device().as_str(), &metric, at, r.value());
                    }
                    self.publish(
                        "reading",
                        json!({"device": r.device().as_str(), "metric": metric, "value": r.value(), "at": at}),
                    );
                }
            }
            SinkEvent::Window(w) => {
                let mut metrics = serde_json::Map::new();
                let mut closed = Vec::with_capacity(w.metrics.len());
                for (name, st) in &w.metrics {
                    let agg = super::history::Aggregate {
                        start: w.start.as_millis(),
                        end: w.end.as_millis(),
                        count: st.count,
                        avg: st.avg,
                        min: st.min,
                        max: st.max,
                        std: st.std,
                    };
                    closed.push((name.clone(), agg));
                    windows.push(WindowRow {
                        device: w.device.to_string(),
                        metric: name.clone(),
                        agg,
                    });
                    metrics.insert(
                        name.clone(),
                        json!({"avg": st.avg, "min": st.min, "max": st.max, "count": st.count}),
                    );
                }
                {
                    let mut s = self.lock();
                    for (name, agg) in &closed {
                        s.open.closed(w.device.as_str(), name, agg.end);
                    }
                    let d = s.devices.entry(w.device.to_string()).or_default();
                    for (name, agg) in closed {
                        // A late window of an older period does not replace a newer one.
                        if d.last_window
                            .get(&name)
                            .is_none_or(|l| l.start <= agg.start)
                        {
                            d.last_window.insert(name, agg);
                        }
                    }
                    d.bound_metrics();
                }
                self.publish(
                    "window",
                    json!({"device": w.device.as_str(), "start": w.start.as_millis(), "end": w.end.as_millis(), "metrics": metrics}),
                );
            }
            SinkEvent::Alert(a) => {
                let row = alert_row(a);
                self.show_alert(&row, None);
                alerts.push(row);
            }
            // The dashboard keeps readings by their own time.
            // The gateway page reads the configuration's state from /health.
            SinkEvent::JournalEpoch(_) | SinkEvent::ConfigState(_) => {}
            SinkEvent::Command(c) => {
                let row = CommandRow::of(c);
                self.lock().commands.push(c.device.as_str(), row.clone());
                let mut data = json!(row);
                if let Some(obj) = data.as_object_mut() {
                    obj.insert("device".into(), json!(c.device.as_str()));
                }
                self.publish("command", data);
            }
            SinkEvent::Status(st) => {
                let mut s = self.lock();
                s.latest_changed = true;
                s.devices.entry(st.device.to_string()).or_default().online = Some(st.online);
                drop(s);
                self.publish(
                    "status",
                    json!({"device": st.device.as_str(), "online": st.online, "at": st.at.as_millis()}),
                );
            }
        }
        self.lock().bound_devices();
    }

    /// Marks an alert raised or cleared (a suppressed one changes nothing
    /// active) and tells the open pages.
    /// `texts`: the value and what it is measured against, in the metric's
    /// unit (see `units::alert_texts`), for the pages open on `/events`.
    pub fn show_alert(&self, row: &AlertRow, texts: Option<(String, String)>) {
        {
            let mut s = self.lock();
            let key = (row.device.clone(), row.rule.clone());
            match row.state.as_str() {
                "raised" => {
                    s.active.insert(key, row.clone());
                }
                "cleared" => {
                    s.active.remove(&key);
                }
                // Suppressed by the cooldown: history only, nothing active.
                _ => {}
            }
        }
        let mut event = serde_json::to_value(row).unwrap_or_default();
        if let (Some((value, against)), Some(obj)) = (texts, event.as_object_mut()) {
            obj.insert("value_text".into(), json!(value));
            obj.insert("limit_text".into(), json!(against));
        }
        self.publish("alert", event);
    }

    /// A copy of every device's present state.
    pub fn devices(&self) -> BTreeMap<String, DeviceNow> {
        self.lock().devices.clone()
    }

    /// Each device's adapter as kept before a restart, for devices history
    /// knows (see [`Self::restore`]).
    pub fn restore_sources(&self, sources: &BTreeMap<String, SourceId>) {
        let mut s = self.lock();
        for (id, source) in sources {
            if let Some(d) = s.devices.get_mut(id) {
                if d.source == SourceId::UNKNOWN {
                    d.source = *source;
                }
            }
        }
    }

    /// Every device's adapter, when one changed since the last call.
    pub fn changed_sources(&self) -> Option<BTreeMap<String, SourceId>> {
        let mut s = self.lock();
        if !std::mem::take(&mut s.sources_changed) {
            return None;
        }
        Some(
            s.devices
                .iter()
                .filter(|(_, d)| d.source != SourceId::UNKNOWN)
                .map(|(id, d)| (id.clone(), d.source))
                .collect(),
        )
    }

    /// Every device's latest values, when a reading or a status came
    /// since the last call (see [`super::latest_file`]).
    pub fn changed_latest(&self) -> Option<BTreeMap<String, Kept>> {
        let mut s = self.lock();
        if !std::mem::take(&mut s.latest_changed) {
            return None;
        }
        Some(
            s.devices
                .iter()
                .filter(|(_, d)| d.last_seen.is_some() || d.online.is_some())
                .map(|(id, d)| {
                    let kept = Kept {
                        last_seen: d.last_seen,
                        online: d.online,
                        infrastructure: d.infrastructure,
                        latest: d.latest.clone(),
                    };
                    (id.clone(), kept)
                })
                .collect(),
        )
    }

    /// A save of [`Self::changed_latest`] failed: offer them again.
    pub fn latest_unsaved(&self) {
        self.lock().latest_changed = true;
    }

    /// Each device's latest values as kept before a restart. A reading
    /// that came since is newer and stays.
    pub fn restore_latest(&self, kept: BTreeMap<String, Kept>) {
        let mut s = self.lock();
        for (id, k) in kept {
            let d = s.devices.entry(id).or_default();
            if d.last_seen.is_none() {
                d.last_seen = k.last_seen;
            }
            if d.online.is_none() {
                d.online = k.online;
            }
            d.infrastructure |= k.infrastructure;
            for (metric, (value, at)) in k.latest {
                d.latest.entry(metric).or_insert((value, at));
            }
        }
        // History may know more devices than the present keeps; after the
        // kept values, so those seen last are the ones that stay.
        s.bound_devices();
    }

    /// A save of [`Self::changed_sources`] failed: offer them again.
    pub fn sources_unsaved(&self) {
        self.lock().sources_changed = true;
    }

    /// The adapter `id`'s latest reading came through.
    pub fn source_of(&self, id: &str) -> SourceId {
        self.lock()
            .devices
            .get(id)
            .map_or(SourceId::UNKNOWN, |d| d.source)
    }

    /// A series' readings not in a closed window yet (see [`OpenWindows`]).
    pub fn open_points(&self, device: &str, metric: &str) -> Vec<Aggregate> {
        self.lock().open.points(device, metric)
    }

    /// `device`'s last command results, newest first.
    pub fn commands_of(&self, device: &str) -> Vec<CommandRow> {
        self.lock().commands.of(device)
    }

    pub fn device(&self, id: &str) -> Option<DeviceNow> {
        self.lock().devices.get(id).cloned()
    }

    /// Active alerts, newest first.
    pub fn active(&self) -> Vec<AlertRow> {
        let mut v: Vec<AlertRow> = self.lock().active.values().cloned().collect();
        v.sort_by_key(|a| std::cmp::Reverse(a.at));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_from_before_canonical_ids_restores_one_device() {
        let live = Live::default();
        let known = |id: &str| KnownDevice {
            id: id.into(),
            last_end: 0,
            metrics: vec!["temperature".into()],
        };
        let raised = AlertRow {
            device: "AA:BB:CC:DD:EE:FF".into(),
            rule: "too-hot".into(),
            metric: "temperature".into(),
            kind: "threshold".into(),
            state: "raised".into(),
            value: 31.0,
            limit: 30.0,
            at: 1,
            reason: None,
            expected: None,
        };
        live.restore(
            &[known("AA:BB:CC:DD:EE:FF"), known("aa:bb:cc:dd:ee:ff")],
            &[raised],
        );
        assert_eq!(
            live.devices().keys().collect::<Vec<_>>(),
            ["aa:bb:cc:dd:ee:ff"]
        );
        assert_eq!(live.active()[0].device, "aa:bb:cc:dd:ee:ff");
    }

    /// An older reading arriving late does not replace the latest value;
    /// but a value from ahead of the gateway clock (a node's clock ahead)
    /// does not hold it for the day it is ahead.
    #[test]
    fn a_latest_value_from_ahead_of_the_clock_does_not_hold() {
        use gateway_core::{DeviceId, MetricName, Reading, TimeSource, Timestamp};
        let now = Timestamp::now().as_millis();
        let reading = |value: f64, at: i64| {
            Reading::new(
                DeviceId::new("meter-1").unwrap(),
                MetricName::new("energy").unwrap(),
                value,
                Timestamp::from_millis(at).unwrap(),
                TimeSource::Event,
            )
            .unwrap()
        };
        let live = Live::default();
        let (mut windows, mut alerts) = (Vec::new(), Vec::new());
        let mut latest = |value: f64, at: i64| {
            live.apply(
                &SinkEvent::Readings(vec![reading(value, at)]),
                &mut windows,
                &mut alerts,
            );
            live.devices()["meter-1"].latest["energy"].0
        };
        assert_eq!(latest(14.0, now - 5_000), 14.0);
        assert_eq!(latest(12.5, now - 25_000), 14.0, "an older one waits");
        assert_eq!(latest(50.0, now + 3_600_000), 50.0);
        assert_eq!(latest(15.0, now), 15.0, "the present takes it back");
    }

    #[test]
    fn kept_values_come_back_and_a_newer_reading_wins() {
        use gateway_core::{DeviceId, MetricName, Reading, TimeSource, Timestamp};
        let reading = |device: &str, metric: &str, value: f64, at: i64| {
            Reading::new(
                DeviceId::new(device).unwrap(),
                MetricName::new(metric).unwrap(),
                value,
                Timestamp::from_millis(at).unwrap(),
                TimeSource::Event,
            )
            .unwrap()
        };
        let before = Live::default();
        assert!(before.changed_latest().is_none(), "nothing came yet");
        let (mut windows, mut alerts) = (Vec::new(), Vec::new());
        before.apply(
            &SinkEvent::Readings(vec![
                reading("kitchen", "temperature", 21.5, 1_000),
                reading("kitchen", "humidity", 40.0, 1_000),
                reading("office", "temperature", 19.0, 2_000),
            ]),
            &mut windows,
            &mut alerts,
        );
        let kept = before.changed_latest().unwrap();
        assert!(before.changed_latest().is_none(), "taken once");

        // After the restart the office reported first.
        let after = Live::default();
        after.apply(
            &SinkEvent::Readings(vec![reading("office", "temperature", 20.5, 9_000)]),
            &mut windows,
            &mut alerts,
        );
        after.restore_latest(kept);
        let devices = after.devices();
        assert_eq!(devices["kitchen"].latest["temperature"], (21.5, 1_000));
        assert_eq!(devices["kitchen"].latest["humidity"], (40.0, 1_000));
        assert_eq!(devices["kitchen"].last_seen, Some(1_000));
        assert_eq!(devices["office"].latest["temperature"], (20.5, 9_000));
        assert_eq!(devices["office"].last_seen, Some(9_000));
    }

    /// A flood of made-up ids (a counter in the topic, a stranger on the
    /// broker, Last Wills of ids never heard) keeps the present to the
    /// devices seen last; one with an active alert stays.
    #[test]
    fn made_up_ids_do_not_grow_the_present_without_bound() {
        use gateway_core::event::StatusEvent;
        use gateway_core::{DeviceId, MetricName, Reading, TimeSource, Timestamp};
        let reading = |device: &str, at: i64| {
            Reading::new(
                DeviceId::new(device).unwrap(),
                MetricName::new("temperature").unwrap(),
                20.0,
                Timestamp::from_millis(at).unwrap(),
                TimeSource::Event,
            )
            .unwrap()
        };
        let live = Live::default();
        let (mut windows, mut alerts) = (Vec::new(), Vec::new());
        live.apply(
            &SinkEvent::Readings(vec![reading("fridge", 1)]),
            &mut windows,
            &mut alerts,
        );
        live.show_alert(
            &AlertRow {
                device: "fridge".into(),
                rule: "too-warm".into(),
                metric: "temperature".into(),
                kind: "threshold".into(),
                state: "raised".into(),
                value: 9.0,
                limit: 8.0,
                at: 1,
                reason: None,
                expected: None,
            },
            None,
        );
        let flood = MAX_LIVE_DEVICES + 500;
        for batch in 0..flood / 1000 + 1 {
            let readings = (batch * 1000..((batch + 1) * 1000).min(flood))
                .map(|i| reading(&format!("made-up-{i}"), 1_000 + i as i64))
                .collect();
            live.apply(&SinkEvent::Readings(readings), &mut windows, &mut alerts);
        }
        for i in 0..500 {
            live.apply(
                &SinkEvent::Status(StatusEvent {
                    device: DeviceId::new(format!("will-{i}")).unwrap(),
                    online: false,
                    at: Timestamp::from_millis(1).unwrap(),
                }),
                &mut windows,
                &mut alerts,
            );
        }
        let devices = live.devices();
        assert!(
            devices.len() <= MAX_LIVE_DEVICES,
            "{} devices",
            devices.len()
        );
        assert!(devices.contains_key("fridge"), "its alert is active");
        let last = format!("made-up-{}", flood - 1);
        assert!(devices.contains_key(&last), "the newest stays");
        assert!(!devices.contains_key("made-up-0"), "the oldest went");
        assert!(live.changed_latest().unwrap().len() <= MAX_LIVE_DEVICES);
    }

    /// A device making up a metric name per message keeps the names heard
    /// last, not every one it ever sent.
    #[test]
    fn made_up_metric_names_do_not_grow_a_device_without_bound() {
        use gateway_core::{DeviceId, MetricName, Reading, TimeSource, Timestamp};
        let live = Live::default();
        let (mut windows, mut alerts) = (Vec::new(), Vec::new());
        let names = MAX_LIVE_METRICS + 300;
        let readings = (0..names)
            .map(|i| {
                Reading::new(
                    DeviceId::new("counter-in-topic").unwrap(),
                    MetricName::new(format!("m{i}")).unwrap(),
                    1.0,
                    Timestamp::from_millis(1_000 + i as i64).unwrap(),
                    TimeSource::Event,
                )
                .unwrap()
            })
            .collect();
        live.apply(&SinkEvent::Readings(readings), &mut windows, &mut alerts);
        let d = &live.devices()["counter-in-topic"];
        assert!(
            d.latest.len() <= MAX_LIVE_METRICS,
            "{} metrics",
            d.latest.len()
        );
        assert!(
            d.latest.contains_key(&format!("m{}", names - 1)),
            "the newest stays"
        );
        assert!(!d.latest.contains_key("m0"), "the oldest went");

        // Their windows close after they were let go: those do not pile up
        // either.
        use gateway_core::event::{MetricStats, WindowEvent};
        let at = |ms: i64| Timestamp::from_millis(ms).unwrap();
        let stats = MetricStats {
            count: 1,
            avg: 1.0,
            min: 1.0,
            max: 1.0,
            std: 0.0,
        };
        live.apply(
            &SinkEvent::Window(WindowEvent {
                device: DeviceId::new("counter-in-topic").unwrap(),
                start: at(0),
                end: at(60_000),
                partial: false,
                window_start: at(0),
                rerun: 0,
                amendment: 0,
                partial_at: None,
                metrics: (0..names).map(|i| (format!("m{i}"), stats)).collect(),
            }),
            &mut windows,
            &mut alerts,
        );
        let d = &live.devices()["counter-in-topic"];
        assert!(
            d.last_window.len() <= MAX_LIVE_METRICS + MAX_LIVE_METRICS / 8,
            "{} last windows",
            d.last_window.len()
        );
        assert_eq!(windows.len(), names, "history still gets every window");
    }
}
