//! The upstream topics and JSON payloads: a public contract with cloud
//! consumers. Fields may be added, never renamed or removed.

use aggregator::DeviceWindow;
use gateway_core::{DeviceId, DeviceRegistry, OutboundMessage, StatusChange, Timestamp};
use rules::Alert;
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// Namespace of the deterministic message ids (UUID v5).
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2b9e_8d4a_4e57_9a0b_3c5d_7e1f_2a40);

/// Renders upstream messages for one gateway.
#[derive(Debug, Clone)]
pub struct Renderer {
    pub gateway_id: String,
    /// `{prefix}` with `{site}`/`{gateway}` already filled in.
    pub prefix: String,
    pub registry: DeviceRegistry,
}

impl Renderer {
    /// `{prefix}/gateway/{gateway_id}/status`.
    pub fn status_topic(&self) -> String {
        format!("{}/gateway/{}/status", self.prefix, self.gateway_id)
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
    pub fn aggregated(&self, w: &DeviceWindow, partial_at: Option<Timestamp>) -> OutboundMessage {
        let mut key = format!(
            "{}\n{}\n{}\n{}",
            self.gateway_id,
            w.device,
            w.start.as_millis(),
            w.end.as_millis()
        );
        if let Some(at) = partial_at {
            key.push_str(&format!("\npartial\n{}", at.as_millis()));
        }
        // A second window over a span sent before the clock stepped back
        // holds other readings: it must not pass for a copy of the first.
        if w.rerun > 0 {
            key.push_str(&format!("\nrerun\n{}", w.rerun));
        }
        let mut obj = Map::new();
        obj.insert(
            "id".into(),
            json!(Uuid::new_v5(&ID_NAMESPACE, key.as_bytes()).to_string()),
        );
        self.describe(&mut obj, &w.device);
        obj.insert("window_start".into(), json!(w.start.to_rfc3339()));
        obj.insert("window_end".into(), json!(w.end.to_rfc3339()));
        if w.rerun > 0 {
            obj.insert("rerun".into(), json!(w.rerun));
        }
        let metrics: Map<String, Value> = w
            .metrics
            .iter()
            .map(|(name, s)| {
                (
                    name.as_str().to_string(),
                    json!({
                        "count": s.count(),
                        "avg": s.avg(),
                        "min": s.min(),
                        "max": s.max(),
                        "std": s.std(),
                    }),
                )
            })
            .collect();
        obj.insert("metrics".into(), Value::Object(metrics));
        if partial_at.is_some() {
            obj.insert("partial".into(), json!(true));
        }
        OutboundMessage {
            topic: format!("{}/{}/aggregated", self.prefix, w.device),
            payload: Value::Object(obj).to_string().into_bytes(),
            retain: false,
        }
    }

    /// `{prefix}/{device}/status`, retained: a device's last announced state.
    pub fn device_status(&self, s: &StatusChange) -> OutboundMessage {
        let key = format!(
            "{}\n{}\nstatus\n{}\n{}",
            self.gateway_id,
            s.device,
            s.state.as_str(),
            s.time.as_millis()
        );
        let mut obj = Map::new();
        obj.insert(
            "id".into(),
            json!(Uuid::new_v5(&ID_NAMESPACE, key.as_bytes()).to_string()),
        );
        self.describe(&mut obj, &s.device);
        obj.insert("state".into(), json!(s.state.as_str()));
        obj.insert("ts".into(), json!(s.time.to_rfc3339()));
        OutboundMessage {
            topic: format!("{}/{}/status", self.prefix, s.device),
            payload: Value::Object(obj).to_string().into_bytes(),
            retain: true,
        }
    }

    /// `{prefix}/{device}/alerts`: one alert transition: `id, gateway,
    /// device, name, metric, kind, state, value, limit, ts, rule`, `text`,
    /// and `unit` when known (see [`Self::alert_in`]); a raised anomaly alert adds why it fired: `reason` (`seasonal`,
    /// `level_shift`, `stuck`, `spike`, `drift`, `noise`, `multivariate`),
    /// `expected` (`{"low": …, "high": …}`, the range the reading was
    /// expected in) and `observed` (the reading).
    ///
    /// The id is derived from the transition (gateway, rule, device, metric,
    /// state, time): unique per alert, yet the same alert re-sent after a
    /// reconnect keeps its id, and replaying the same data gives the same
    /// ids.
    pub fn alert(&self, a: &Alert) -> OutboundMessage {
        self.alert_in(a, &gateway_core::units::known(&a.metric))
    }

    /// [`Self::alert`] with the metric's unit as the config sets it; adds
    /// `unit` (when known: of `value`, `limit` and `expected`, seconds for
    /// a silence), `text` (the alert in one line, its numbers in the unit),
    /// and for an anomaly `score` (the same number as `limit`, which for an
    /// anomaly is the detector's score, not a bound in the unit).
    pub fn alert_in(&self, a: &Alert, info: &gateway_core::units::MetricInfo) -> OutboundMessage {
        let key = format!(
            "{}\n{}\nalert\n{}\n{}\n{}\n{}",
            self.gateway_id,
            a.device,
            a.rule,
            a.metric,
            a.state.as_str(),
            a.at.as_millis()
        );
        let mut payload = json!({
            "id": Uuid::new_v5(&ID_NAMESPACE, key.as_bytes()).to_string(),
            "gateway": self.gateway_id,
            "device": a.device.as_str(),
            "name": self.registry.name_of(&a.device),
            "metric": a.metric,
            "kind": a.kind.as_str(),
            "state": a.state.as_str(),
            "value": a.value,
            "limit": a.limit,
            "ts": a.at.to_rfc3339(),
            "rule": a.rule,
        });
        let facts = gateway_core::units::AlertFacts {
            rule: &a.rule,
            state: a.state.as_str(),
            kind: a.kind.as_str(),
            metric: &a.metric,
            value: a.value,
            limit: a.limit,
            expected: a.evidence.as_ref().map(|e| e.expected),
        };
        if let Some(obj) = payload.as_object_mut() {
            // A silence counts seconds whatever the metric.
            let unit = if facts.kind == "silence" {
                "s"
            } else {
                info.unit.as_str()
            };
            if !unit.is_empty() {
                obj.insert("unit".into(), json!(unit));
            }
            if facts.kind == "anomaly" {
                obj.insert("score".into(), json!(a.limit));
            }
            obj.insert("text".into(), json!(facts.line(info)));
        }
        if let (Some(e), Some(obj)) = (&a.evidence, payload.as_object_mut()) {
            obj.insert("reason".into(), json!(e.reason.as_str()));
            obj.insert(
                "expected".into(),
                json!({ "low": e.expected.0, "high": e.expected.1 }),
            );
            obj.insert("observed".into(), json!(e.observed));
        }
        OutboundMessage {
            topic: format!("{}/{}/alerts", self.prefix, a.device),
            payload: payload.to_string().into_bytes(),
            retain: false,
        }
    }
}
