//! What the pages show "now": each device's latest values, last seen time,
//! announced state and recent raw readings, and the active alerts; plus
//! the broadcast that feeds `/events`.
//!
//! Kept in memory (raw readings are not history), rebuilt at start from
//! the history's devices and alert transitions. One short lock per event
//! batch; pages copy what they need out of it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::json;
use sinks::event::SinkEvent;
use tokio::sync::broadcast;

use super::history::{AlertRow, KnownDevice, WindowRow};

/// Raw readings kept per device for the device page.
const RECENT_READINGS: usize = 20;
/// Events buffered for `/events` clients; a client further behind than
/// this loses the oldest and is told to reload (`lagged`).
pub const BROADCAST_CAPACITY: usize = 1024;

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
}

#[derive(Debug, Default)]
struct State {
    devices: BTreeMap<String, DeviceNow>,
    /// (device, rule) → the raise.
    active: BTreeMap<(String, String), AlertRow>,
}

/// An alert transition as history keeps it.
pub fn alert_row(a: &sinks::event::AlertEvent) -> AlertRow {
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
    }
}

/// Shared between the writer task and the HTTP handlers.
#[derive(Clone)]
pub struct Live {
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<Arc<str>>,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            events: broadcast::channel(BROADCAST_CAPACITY).0,
        }
    }
}

impl Live {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A handler that panicked mid-update leaves plain data behind.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Seeds from history: devices known before a restart, and alerts whose
    /// last transition was a raise. `alerts` is newest first.
    pub fn restore(&self, devices: &[KnownDevice], alerts: &[AlertRow]) {
        let mut s = self.lock();
        for d in devices {
            s.devices.entry(d.id.clone()).or_default();
        }
        let mut decided = std::collections::BTreeSet::new();
        for a in alerts {
            let key = (a.device.clone(), a.rule.clone());
            if decided.insert(key.clone()) && a.state == "raised" {
                s.active.insert(key, a.clone());
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
                let mut s = self.lock();
                for r in readings {
                    let at = r.time().as_millis();
                    let d = s.devices.entry(r.device().to_string()).or_default();
                    d.last_seen = Some(d.last_seen.map_or(at, |l| l.max(at)));
                    if d.online == Some(false) {
                        d.online = Some(true);
                    }
                    let metric = r.metric().as_str().to_string();
                    let newer = d.latest.get(&metric).is_none_or(|(_, t)| *t <= at);
                    if newer {
                        d.latest.insert(metric.clone(), (r.value(), at));
                    }
                    if d.recent.len() >= RECENT_READINGS {
                        d.recent.pop_front();
                    }
                    d.recent.push_back((at, metric.clone(), r.value()));
                    self.publish(
                        "reading",
                        json!({"device": r.device().as_str(), "metric": metric, "value": r.value(), "at": at}),
                    );
                }
            }
            SinkEvent::Window(w) => {
                let mut metrics = serde_json::Map::new();
                for (name, st) in &w.metrics {
                    windows.push(WindowRow {
                        device: w.device.to_string(),
                        metric: name.clone(),
                        agg: super::history::Aggregate {
                            start: w.start.as_millis(),
                            end: w.end.as_millis(),
                            count: st.count,
                            avg: st.avg,
                            min: st.min,
                            max: st.max,
                            std: st.std,
                        },
                    });
                    metrics.insert(
                        name.clone(),
                        json!({"avg": st.avg, "min": st.min, "max": st.max, "count": st.count}),
                    );
                }
                self.lock().devices.entry(w.device.to_string()).or_default();
                self.publish(
                    "window",
                    json!({"device": w.device.as_str(), "start": w.start.as_millis(), "end": w.end.as_millis(), "metrics": metrics}),
                );
            }
            SinkEvent::Alert(a) => {
                let row = alert_row(a);
                self.show_alert(&row);
                alerts.push(row);
            }
            SinkEvent::Status(st) => {
                self.lock()
                    .devices
                    .entry(st.device.to_string())
                    .or_default()
                    .online = Some(st.online);
                self.publish(
                    "status",
                    json!({"device": st.device.as_str(), "online": st.online, "at": st.at.as_millis()}),
                );
            }
        }
    }

    /// Marks an alert raised or cleared and tells the open pages.
    pub fn show_alert(&self, row: &AlertRow) {
        {
            let mut s = self.lock();
            let key = (row.device.clone(), row.rule.clone());
            if row.state == "raised" {
                s.active.insert(key, row.clone());
            } else {
                s.active.remove(&key);
            }
        }
        self.publish("alert", serde_json::to_value(row).unwrap_or_default());
    }

    /// A copy of every device's present state.
    pub fn devices(&self) -> BTreeMap<String, DeviceNow> {
        self.lock().devices.clone()
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
