//! The upstream topics and JSON payloads: a public contract with cloud
//! consumers. Fields may be added, never renamed or removed.

use std::collections::BTreeMap;

use gateway_core::registry::DeviceInfo;
use gateway_core::units::MetricInfo;
use gateway_core::{DeviceId, DeviceRegistry, OutboundMessage, Timestamp};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use gateway_core::event::{
    AlertEvent, CommandEvent, ConfigStateEvent, MetricStats, StatusEvent, WindowEvent,
};

use super::changes::Change;
use super::text::{decimal, IdText, JsonOut, TimeText};

/// Namespace of the deterministic message ids (UUID v5).
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2b9e_8d4a_4e57_9a0b_3c5d_7e1f_2a40);

/// `{prefix}/gateway/{gateway_id}/status`: the gateway's retained
/// `online`/`offline`, also its Last Will.
pub fn status_topic(prefix: &str, gateway_id: &str) -> String {
    format!("{prefix}/gateway/{gateway_id}/status")
}

/// What a command result's topic ends with, after `{prefix}/{device}`.
const RESULT_SUFFIX: &str = "/command/result";

/// Whether `topic` is a command result's: a device id has no `/`, so no
/// other upstream topic ends so.
pub fn is_command_result(topic: &str) -> bool {
    topic.ends_with(RESULT_SUFFIX)
}

/// Renders upstream messages for one gateway.
#[derive(Debug, Clone)]
pub struct Renderer {
    pub gateway_id: String,
    /// `{prefix}` with `{site}`/`{gateway}` already filled in.
    pub prefix: String,
    pub registry: DeviceRegistry,
}

impl Renderer {
    /// See [`status_topic`].
    pub fn status_topic(&self) -> String {
        status_topic(&self.prefix, &self.gateway_id)
    }

    fn describe(&self, obj: &mut Map<String, Value>, device: &DeviceId) {
        obj.insert("gateway".into(), json!(self.gateway_id));
        obj.insert("device".into(), json!(device.as_str()));
        obj.insert("name".into(), json!(self.registry.name_of(device)));
        if let Some(info) = self.registry.get(device) {
            if !info.tags.is_empty() {
                obj.insert("tags".into(), json!(info.tags));
            }
        }
    }

    /// `{prefix}/{device}/aggregated`.
    ///
    /// The id is derived from gateway, device and window, so the same window
    /// re-sent after a reconnect or a restart carries the same id and
    /// consumers can deduplicate on it. A window closed early at shutdown
    /// (`"partial": true`) gets an id of its own, since the rest of that
    /// window may still be forwarded after a restart, and so does a window
    /// over a span already sent before the wall clock stepped back
    /// (`"rerun": n`, the n-th backward step): it holds other readings.
    /// A late amendment (`"amendment": n`) has its own id too: readings
    /// that came after the span's window was sent, to be added to it.
    ///
    /// Each metric carries its `unit` as the name table says it (see
    /// [`Self::aggregated_in`] for the config's and the devices' own).
    pub fn aggregated(&self, w: &WindowEvent) -> OutboundMessage {
        self.aggregated_in(w, |metric| gateway_core::units::known(metric).unit)
    }

    /// [`Self::aggregated`] with each metric's unit from `unit_of` (empty:
    /// not known, and left out), as every output shows it.
    pub fn aggregated_in(
        &self,
        w: &WindowEvent,
        unit_of: impl FnMut(&str) -> String,
    ) -> OutboundMessage {
        self.aggregated_of(w, self.registry.get(&w.device), unit_of)
    }

    /// [`Self::aggregated_in`] with the device's entry in the registry
    /// looked up already (a miss costs a lower-cased copy of the id).
    ///
    /// Written straight from the window, with no `serde_json::Value` tree
    /// in between: the same bytes, keys in the order the tree's sorted map
    /// put them (issue 69).
    pub(crate) fn aggregated_of<U: AsRef<str>>(
        &self,
        w: &WindowEvent,
        info: Option<&DeviceInfo>,
        mut unit_of: impl FnMut(&str) -> U,
    ) -> OutboundMessage {
        let id = IdText::new(window_id(&self.gateway_id, w));
        let mut j = JsonOut::with_capacity(320 + 112 * w.metrics.len());
        // The keys are fixed and in this order, so the text between the
        // values is written in one piece each, as `open` and `key` would
        // write it (`render_equivalence_tests`): a sixth of a window's
        // cost less.
        if w.amendment > 0 {
            j.raw(b"{\"amendment\":");
            j.u64(w.amendment.into());
            j.raw(b",\"device\":");
        } else {
            j.raw(b"{\"device\":");
        }
        j.str(w.device.as_str());
        j.raw(b",\"gateway\":");
        j.str(&self.gateway_id);
        j.raw(b",\"id\":");
        j.plain_str(id.as_str());
        j.raw(b",\"metrics\":");
        j.open();
        let mut metric = |name: &str, s: &MetricStats| {
            let unit = unit_of(name);
            let unit = unit.as_ref();
            j.key_text(name);
            j.raw(b"{\"avg\":");
            j.f64(s.avg);
            j.raw(b",\"count\":");
            j.u64(s.count);
            j.raw(b",\"max\":");
            j.f64(s.max);
            j.raw(b",\"min\":");
            j.f64(s.min);
            j.raw(b",\"std\":");
            j.f64(s.std);
            if !unit.is_empty() {
                j.raw(b",\"unit\":");
                j.str(unit);
            }
            j.close();
        };
        if w.metrics.windows(2).all(|p| p[0].0 < p[1].0) {
            for (name, s) in &w.metrics {
                metric(name, s);
            }
        } else {
            // Rare (the aggregator hands them sorted): in order, the last
            // of a name kept, as the map they were collected into did.
            let by_name: BTreeMap<&str, &MetricStats> =
                w.metrics.iter().map(|(n, s)| (n.as_str(), s)).collect();
            for (name, s) in by_name {
                metric(name, s);
            }
        }
        j.close();
        j.raw(b",\"name\":");
        j.str(info.map_or(w.device.as_str(), |d| d.name.as_str()));
        if w.partial_at.is_some() {
            j.key("partial");
            j.bool(true);
        }
        if w.rerun > 0 {
            j.key("rerun");
            j.u64(w.rerun.into());
        }
        if let Some(tags) = info.map(|d| &d.tags).filter(|t| !t.is_empty()) {
            j.key("tags");
            j.open();
            for (k, v) in tags {
                j.key_text(k);
                j.str(v);
            }
            j.close();
        }
        j.raw(b",\"window_end\":");
        j.plain_str(TimeText::new(w.end).as_str());
        j.raw(b",\"window_start\":");
        j.plain_str(TimeText::new(w.window_start).as_str());
        j.close();
        OutboundMessage {
            topic: device_topic(&self.prefix, w.device.as_str(), "/aggregated"),
            payload: j.into_bytes(),
            retain: false,
        }
    }

    /// `{prefix}/{device}/change`: a metric of `[upstream] report` took a
    /// new value: `{"id", "gateway", "device", "name", "tags"?, "metric",
    /// "value", "previous"?, "unit"?, "ts"}`, `ts` the reading's time,
    /// `previous` the value reported before it (absent for the first since
    /// the gateway started). Not retained: each is one event. The id is
    /// derived from device, metric, time and value, so the same reading
    /// re-sent (after a reconnect, or replayed after a crash) keeps it.
    pub fn change(&self, c: &Change, unit: &str) -> OutboundMessage {
        let key = format!(
            "{}\n{}\nchange\n{}\n{}\n{}",
            self.gateway_id,
            c.device,
            c.metric,
            c.at.as_millis(),
            c.value.to_bits()
        );
        let mut obj = Map::new();
        obj.insert(
            "id".into(),
            json!(Uuid::new_v5(&ID_NAMESPACE, key.as_bytes()).to_string()),
        );
        self.describe(&mut obj, &c.device);
        obj.insert("metric".into(), json!(c.metric));
        obj.insert("value".into(), json!(c.value));
        if let Some(p) = c.previous {
            obj.insert("previous".into(), json!(p));
        }
        if !unit.is_empty() {
            obj.insert("unit".into(), json!(unit));
        }
        obj.insert("ts".into(), json!(c.at.to_rfc3339()));
        OutboundMessage {
            topic: format!("{}/{}/change", self.prefix, c.device),
            payload: Value::Object(obj).to_string().into_bytes(),
            retain: false,
        }
    }

    /// `{prefix}/{device}/status`, retained: a device's last announced state.
    pub fn device_status(&self, s: &StatusEvent) -> OutboundMessage {
        let state = if s.online { "online" } else { "offline" };
        let key = format!(
            "{}\n{}\nstatus\n{}\n{}",
            self.gateway_id,
            s.device,
            state,
            s.at.as_millis()
        );
        let mut obj = Map::new();
        obj.insert(
            "id".into(),
            json!(Uuid::new_v5(&ID_NAMESPACE, key.as_bytes()).to_string()),
        );
        self.describe(&mut obj, &s.device);
        obj.insert("state".into(), json!(state));
        obj.insert("ts".into(), json!(s.at.to_rfc3339()));
        OutboundMessage {
            topic: format!("{}/{}/status", self.prefix, s.device),
            payload: Value::Object(obj).to_string().into_bytes(),
            retain: true,
        }
    }

    /// A command's result on `{prefix}/{device}/command/result`:
    /// `{"id", "gateway", "device", "metric", "value", "status", "reason",
    /// "detail", "ts"}` and, when the device's value was read back,
    /// `applied` (the forwarder adds `seq`). Not retained: each is one
    /// event.
    pub fn command_result(&self, c: &CommandEvent) -> OutboundMessage {
        let mut payload = json!({
            "id": c.id,
            "gateway": self.gateway_id,
            "device": c.device.as_str(),
            "metric": c.metric,
            "value": c.value,
            "status": c.status,
            "reason": c.reason,
            "detail": c.detail,
            "ts": c.at.to_rfc3339(),
        });
        if let Some(applied) = c.applied.filter(|v| v.is_finite()) {
            payload["applied"] = json!(applied);
        }
        OutboundMessage {
            topic: format!(
                "{}/{}{RESULT_SUFFIX}",
                self.prefix,
                c.topic_device.as_deref().unwrap_or(c.device.as_str())
            ),
            payload: payload.to_string().into_bytes(),
            retain: false,
        }
    }

    /// `{prefix}/gateway/{gateway_id}/config/state`, retained: where the
    /// configuration pushed from the cloud stands (`docs/fleet.md`), with
    /// `gateway` added.
    pub fn config_state(&self, s: &ConfigStateEvent) -> OutboundMessage {
        let mut payload = s.payload.clone();
        if let Some(obj) = payload.as_object_mut() {
            obj.insert("gateway".into(), json!(self.gateway_id));
        }
        OutboundMessage {
            topic: format!("{}/gateway/{}/config/state", self.prefix, self.gateway_id),
            payload: payload.to_string().into_bytes(),
            retain: true,
        }
    }

    /// `{prefix}/{device}/alerts`: one alert transition: `id, gateway,
    /// device, name, metric, kind, state, value, limit, ts, rule`, `text`,
    /// and `unit` when known (see [`Self::alert_in`]); a raised anomaly
    /// alert adds why it fired: `reason` (`seasonal`, `level_shift`,
    /// `stuck`, `spike`, `spike_rate`, `drift`, `noise`, `multivariate`,
    /// `pattern`, `unusual_level`),
    /// `expected` (`{"low": …, "high": …}`, the range the reading was
    /// expected in) and `observed` (the reading).
    ///
    /// The id is derived from the transition (gateway, rule, device, metric,
    /// state, time): unique per alert, yet the same alert re-sent after a
    /// reconnect keeps its id, and replaying the same data gives the same
    /// ids.
    pub fn alert(&self, a: &AlertEvent) -> OutboundMessage {
        self.alert_in(a, &gateway_core::units::known(&a.metric))
    }

    /// [`Self::alert`] with the metric's unit as the config sets it; adds
    /// `unit` (when known: of `value`, `limit` and `expected`, seconds for
    /// a silence), `text` (the alert in one line, its numbers in the unit),
    /// and for an anomaly `score` (the same number as `limit`, which for an
    /// anomaly is the detector's score, not a bound in the unit).
    pub fn alert_in(&self, a: &AlertEvent, info: &MetricInfo) -> OutboundMessage {
        let key = format!(
            "{}\n{}\nalert\n{}\n{}\n{}\n{}",
            self.gateway_id,
            a.device,
            a.rule,
            a.metric,
            a.state,
            a.at.as_millis()
        );
        let mut obj = Map::new();
        obj.insert(
            "id".into(),
            json!(Uuid::new_v5(&ID_NAMESPACE, key.as_bytes()).to_string()),
        );
        obj.insert("gateway".into(), json!(self.gateway_id));
        obj.insert("device".into(), json!(a.device.as_str()));
        obj.insert("name".into(), json!(self.registry.name_of(&a.device)));
        obj.insert("metric".into(), json!(a.metric));
        obj.insert("kind".into(), json!(a.kind));
        obj.insert("state".into(), json!(a.state));
        obj.insert("value".into(), json!(a.value));
        obj.insert("limit".into(), json!(a.limit));
        obj.insert("ts".into(), json!(a.at.to_rfc3339()));
        obj.insert("rule".into(), json!(a.rule));
        // A silence counts seconds whatever the metric.
        let unit = if a.kind == "silence" {
            "s"
        } else {
            info.unit.as_str()
        };
        if !unit.is_empty() {
            obj.insert("unit".into(), json!(unit));
        }
        if a.kind == "anomaly" {
            obj.insert("score".into(), json!(a.limit));
        }
        obj.insert("text".into(), json!(a.facts().line(info)));
        if let Some(reason) = &a.reason {
            obj.insert("reason".into(), json!(reason));
            if let Some((low, high)) = a.expected {
                obj.insert("expected".into(), json!({ "low": low, "high": high }));
            }
            if let Some(observed) = a.observed {
                obj.insert("observed".into(), json!(observed));
            }
        }
        OutboundMessage {
            topic: format!("{}/{}/alerts", self.prefix, a.device),
            payload: Value::Object(obj).to_string().into_bytes(),
            retain: false,
        }
    }
}

/// `{prefix}/{device}{suffix}`.
fn device_topic(prefix: &str, device: &str, suffix: &str) -> String {
    let mut topic = String::with_capacity(prefix.len() + 1 + device.len() + suffix.len());
    topic.push_str(prefix);
    topic.push('/');
    topic.push_str(device);
    topic.push_str(suffix);
    topic
}

/// A window's id: see [`Renderer::aggregated`]. The key's text is part of
/// the contract (consumers de-duplicate on the id), so it never changes:
/// `gateway\ndevice\nstart\nend`, then `\npartial\n{cut}`,
/// `\nrerun\n{n}` and `\namendment\n{n}` where they apply, numbers in
/// decimal (milliseconds for times).
fn window_id(gateway_id: &str, w: &WindowEvent) -> Uuid {
    let mut key = String::with_capacity(gateway_id.len() + w.device.as_str().len() + 96);
    let mut digits = [0; 20];
    // A `Timestamp` is never before 1970.
    let mut millis = |key: &mut String, t: Timestamp| {
        key.push_str(decimal(t.as_millis().unsigned_abs(), &mut digits));
    };
    key.push_str(gateway_id);
    key.push('\n');
    key.push_str(w.device.as_str());
    key.push('\n');
    millis(&mut key, w.window_start);
    key.push('\n');
    millis(&mut key, w.end);
    if let Some(at) = w.partial_at {
        key.push_str("\npartial\n");
        millis(&mut key, at);
    }
    // A second window over a span sent before the clock stepped back
    // holds other readings: it must not pass for a copy of the first.
    if w.rerun > 0 {
        key.push_str("\nrerun\n");
        key.push_str(decimal(w.rerun.into(), &mut digits));
    }
    // A late amendment holds only readings that came after its span's
    // window was sent: its own id, so no consumer takes it for a copy.
    if w.amendment > 0 {
        key.push_str("\namendment\n");
        key.push_str(decimal(w.amendment.into(), &mut digits));
    }
    Uuid::new_v5(&ID_NAMESPACE, key.as_bytes())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! The payloads pinned byte for byte: consumers de-duplicate on `id`,
    //! so a change here re-sends every window after an upgrade.

    use gateway_core::units::Units;
    use gateway_core::{SourceId, Timestamp};

    use super::*;
    use gateway_core::event::MetricStats;

    fn renderer() -> Renderer {
        let devices = crate::test_devices(
            r#"
[[device]]
id = "fridge-2"
name = "Fridge 2"
room = "kitchen"
tags = { zone = "north" }
units = { co2 = "ppb" }
"#,
        );
        Renderer {
            gateway_id: "gw-01".into(),
            prefix: "building/hq".into(),
            registry: DeviceRegistry::from_config(&devices),
        }
    }

    fn t0() -> Timestamp {
        Timestamp::from_millis(1_767_225_600_123).unwrap()
    }

    fn fridge() -> DeviceId {
        DeviceId::new("fridge-2").unwrap()
    }

    fn window(partial_at: Option<Timestamp>) -> WindowEvent {
        WindowEvent {
            device: fridge(),
            start: t0().saturating_add_millis(2),
            end: t0().saturating_add_millis(60_000),
            partial: partial_at.is_some(),
            window_start: t0(),
            rerun: 2,
            amendment: 0,
            partial_at,
            metrics: vec![
                (
                    "co2".into(),
                    MetricStats {
                        count: 3,
                        avg: 267.266_666_666_666_65,
                        min: 0.300_000_000_000_000_04,
                        max: 401.5,
                        std: 188.774_933_599_658_74,
                    },
                ),
                (
                    "temperature".into(),
                    MetricStats {
                        count: 1,
                        avg: 21.3,
                        min: 21.3,
                        max: 21.3,
                        std: 0.0,
                    },
                ),
            ],
        }
    }

    fn text(m: &OutboundMessage) -> &str {
        std::str::from_utf8(&m.payload).unwrap()
    }

    #[test]
    fn a_rerun_window_keeps_its_own_start_and_a_partial_one_its_cut_in_the_id() {
        let r = renderer();
        // Each metric's unit as the outputs show it: the device's own
        // `units = { co2 = "ppb" }` over the table's ppm (issue 68, 9).
        let units = Units::default();
        let device_units = r.registry.get(&fridge()).map(|d| &d.units);
        let unit_of = |m: &str| units.of(device_units, SourceId::UNKNOWN, m).unit;
        let whole = r.aggregated_in(&window(None), unit_of);
        assert_eq!(whole.topic, "building/hq/fridge-2/aggregated");
        assert!(!whole.retain);
        assert_eq!(
            text(&whole),
            r#"{"device":"fridge-2","gateway":"gw-01","id":"3c03a5af-7a65-54ef-b715-0da5edb1e1d0","metrics":{"co2":{"avg":267.26666666666665,"count":3,"max":401.5,"min":0.30000000000000004,"std":188.77493359965874,"unit":"ppb"},"temperature":{"avg":21.3,"count":1,"max":21.3,"min":21.3,"std":0.0,"unit":"°C"}},"name":"Fridge 2","rerun":2,"tags":{"room":"kitchen","zone":"north"},"window_end":"2026-01-01T00:01:00.123Z","window_start":"2026-01-01T00:00:00.123Z"}"#
        );
        // A unit not known is left out, nothing else changes.
        let cut = r.aggregated_in(&window(Some(t0().saturating_add_millis(30_000))), |_| {
            String::new()
        });
        assert_eq!(
            text(&cut),
            r#"{"device":"fridge-2","gateway":"gw-01","id":"1d1a1a65-8392-5cfd-8b97-3e49c8503e81","metrics":{"co2":{"avg":267.26666666666665,"count":3,"max":401.5,"min":0.30000000000000004,"std":188.77493359965874},"temperature":{"avg":21.3,"count":1,"max":21.3,"min":21.3,"std":0.0}},"name":"Fridge 2","partial":true,"rerun":2,"tags":{"room":"kitchen","zone":"north"},"window_end":"2026-01-01T00:01:00.123Z","window_start":"2026-01-01T00:00:00.123Z"}"#
        );
    }

    #[test]
    fn a_change_carries_its_value_time_unit_and_the_value_before() {
        let r = renderer();
        let mut c = Change {
            device: fridge(),
            metric: "door".into(),
            value: 1.0,
            previous: Some(0.0),
            at: t0(),
            source: SourceId::UNKNOWN,
        };
        let m = r.change(&c, "");
        assert_eq!(m.topic, "building/hq/fridge-2/change");
        assert!(!m.retain);
        assert_eq!(
            text(&m),
            r#"{"device":"fridge-2","gateway":"gw-01","id":"326abe2e-a23c-5921-8a1c-f7ccc9185c3c","metric":"door","name":"Fridge 2","previous":0.0,"tags":{"room":"kitchen","zone":"north"},"ts":"2026-01-01T00:00:00.123Z","value":1.0}"#
        );
        c.previous = None;
        c.metric = "setpoint".into();
        c.value = 4.5;
        let m = r.change(&c, "°C");
        assert_eq!(
            text(&m),
            r#"{"device":"fridge-2","gateway":"gw-01","id":"a4e4c6a9-fc68-51fd-a0f8-30a886940474","metric":"setpoint","name":"Fridge 2","tags":{"room":"kitchen","zone":"north"},"ts":"2026-01-01T00:00:00.123Z","unit":"°C","value":4.5}"#
        );
    }

    #[test]
    fn a_configuration_state_is_retained_under_the_gateway() {
        let m = renderer().config_state(&ConfigStateEvent {
            payload: serde_json::json!({"desired": "v2", "status": "applied"}),
        });
        assert_eq!(m.topic, "building/hq/gateway/gw-01/config/state");
        assert!(m.retain);
        assert_eq!(
            text(&m),
            r#"{"desired":"v2","gateway":"gw-01","status":"applied"}"#
        );
    }

    #[test]
    fn a_device_status_is_retained() {
        let m = renderer().device_status(&StatusEvent {
            device: fridge(),
            online: false,
            at: t0(),
        });
        assert_eq!(m.topic, "building/hq/fridge-2/status");
        assert!(m.retain);
        assert_eq!(
            text(&m),
            r#"{"device":"fridge-2","gateway":"gw-01","id":"6ebd3a42-0553-576d-8c33-49da88ac5df3","name":"Fridge 2","state":"offline","tags":{"room":"kitchen","zone":"north"},"ts":"2026-01-01T00:00:00.123Z"}"#
        );
    }

    #[test]
    fn an_anomaly_alert_states_its_evidence_in_the_devices_unit() {
        let r = renderer();
        let a = AlertEvent {
            device: fridge(),
            rule: "r1".into(),
            metric: "co2".into(),
            kind: "anomaly".into(),
            state: "raised".into(),
            value: 12.345,
            limit: 8.0,
            at: t0(),
            reason: Some("spike".into()),
            expected: Some((1.5, 2.25)),
            observed: Some(12.345),
            source: SourceId::UNKNOWN,
        };
        let info = Units::default().of(
            r.registry.get(&a.device).map(|d| &d.units),
            a.source,
            &a.metric,
        );
        let m = r.alert_in(&a, &info);
        assert_eq!(m.topic, "building/hq/fridge-2/alerts");
        assert!(!m.retain);
        assert_eq!(
            text(&m),
            r#"{"device":"fridge-2","expected":{"high":2.25,"low":1.5},"gateway":"gw-01","id":"c1de0820-3c74-57ce-b819-7cefaf484fb8","kind":"anomaly","limit":8.0,"metric":"co2","name":"Fridge 2","observed":12.345,"reason":"spike","rule":"r1","score":8.0,"state":"raised","text":"r1 raised anomaly: co2 12 ppb (expected 2–2 ppb · score 8.0)","ts":"2026-01-01T00:00:00.123Z","unit":"ppb","value":12.345}"#
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "render_equivalence_tests.rs"]
mod equivalence_tests;
