//! The latest value of every metric of every device heard, for
//! `GET /s/{device}` and `/.well-known/core`.

use coap_lite::ResponseType;
use gateway_core::{DeviceId, MetricName, Reading, Timestamp};

use super::answer::Answer;
use super::options::{CF_JSON, CF_SENML_CBOR, CF_SENML_JSON, CF_TEXT};
use super::{Handler, Outcome};

/// Largest `/.well-known/core` and `GET /s/{device}` body: the §4.6 payload
/// bound, so a response never needs Block2.
pub(super) const MAX_RESPONSE_PAYLOAD: usize = 1024;
/// Metrics remembered per device for `GET /s/{device}`.
pub(super) const MAX_METRICS_PER_DEVICE: usize = 24;

/// A device's latest value and time per metric, in the order first
/// heard: a scan of its few metrics, each name told first by where its
/// text lies (the same name is one text datagram after datagram), was a
/// B-tree's search by string and a `String` per metric (issue 69).
pub(super) type Latest = Vec<(MetricName, f64, Timestamp)>;

// Once per reading; left out of line by some builds, its call cost more
// than its scan.
#[inline]
fn remember_in(metrics: &mut Latest, r: &Reading) {
    if let Some(latest) = metrics.iter_mut().find(|(m, ..)| m == r.metric()) {
        (latest.1, latest.2) = (r.value(), r.time());
    } else if metrics.len() < MAX_METRICS_PER_DEVICE {
        metrics.push((r.metric().clone(), r.value(), r.time()));
    }
}

impl Handler {
    pub(super) fn remember(&mut self, readings: &[Reading]) {
        for r in readings {
            // A known device, the case of every datagram after its first,
            // is found with one hash and its known metric updated in
            // place: no key is copied (two allocations a reading
            // otherwise), no second lookup.
            if let Some(metrics) = self.latest.get_mut(r.device()) {
                remember_in(metrics, r);
            } else if self.latest.len() < self.limits.max_devices {
                remember_in(self.latest.entry(r.device().clone()).or_default(), r);
            }
        }
    }

    pub(super) fn latest_json(&self, device: &str, out: &mut Outcome) -> Answer {
        let Some(metrics) = DeviceId::new(device).ok().and_then(|d| self.latest.get(&d)) else {
            out.error("not_found", format!("no readings from {device}"));
            return Answer::new(ResponseType::NotFound);
        };
        // By name, as the map keeps them whatever serde_json's features.
        let mut sorted: Vec<_> = metrics.iter().collect();
        sorted.sort_unstable_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        let entries: Vec<(String, serde_json::Value)> = sorted
            .into_iter()
            .map(|(name, value, time)| {
                let entry = serde_json::json!({ "v": value, "t": time.to_rfc3339() });
                (name.to_string(), entry)
            })
            .collect();
        let whole = serde_json::json!({
            "device": device,
            "metrics": entries.iter().cloned().collect::<serde_json::Map<_, _>>(),
        });
        let bytes = whole.to_string().into_bytes();
        if bytes.len() <= MAX_RESPONSE_PAYLOAD {
            return Answer::content(CF_JSON, bytes);
        }
        // Too many metrics for one datagram: the first ones by name that
        // fit, and `truncated`, rather than none of them.
        let mut kept = serde_json::Map::new();
        let mut size = serde_json::json!({ "device": device, "metrics": {}, "truncated": true })
            .to_string()
            .len();
        for (name, entry) in entries {
            // `"name":{…}` and the comma before the next.
            let more = serde_json::Value::String(name.clone()).to_string().len()
                + entry.to_string().len()
                + 2;
            if size + more > MAX_RESPONSE_PAYLOAD {
                break;
            }
            size += more;
            kept.insert(name, entry);
        }
        let doc = serde_json::json!({ "device": device, "metrics": kept, "truncated": true });
        Answer::content(CF_JSON, doc.to_string().into_bytes())
    }

    /// RFC 6690 link format: the ingest collection, then one link per known
    /// device while the body stays under [`MAX_RESPONSE_PAYLOAD`].
    pub(super) fn link_format(&self) -> String {
        let mut out = format!(
            "</s>;rt=\"edge-gateway.ingest\";ct=\"{CF_TEXT} {CF_JSON} {CF_SENML_JSON} {CF_SENML_CBOR}\";title=\"POST or PUT /s/{{device}}[/{{metric}}]\""
        );
        let mut devices: Vec<&str> = self.latest.keys().map(DeviceId::as_str).collect();
        devices.sort_unstable();
        for d in devices {
            let link = format!(",</s/{d}>;rt=\"edge-gateway.latest\";ct={CF_JSON}");
            if out.len() + link.len() > MAX_RESPONSE_PAYLOAD {
                break;
            }
            out.push_str(&link);
        }
        out
    }
}
