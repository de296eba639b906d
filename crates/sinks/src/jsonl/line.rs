//! Events as JSON lines (pure): one object per line, its `type` first,
//! then the same fields as the upstream's payload of that event (the
//! public contract of the root README, `id` included, `seq` not), so a
//! consumer reads the file as it reads the cloud topics and
//! de-duplicates on `id` alike. Readings, which the upstream does not
//! send, are `{"type":"reading","gateway","device","name","metric",
//! "value","ts"}`.

use gateway_core::event::SinkEvent;
use gateway_core::Reading;
use serde_json::json;

use super::config::{JsonlConfig, Series};
use crate::mqtt_upstream::{Feed, Render};

/// Renders events into lines for one output.
pub struct Lines {
    pub feed: Feed,
    write: Vec<Series>,
}

impl Lines {
    pub fn new(feed: Feed, config: &JsonlConfig) -> Self {
        Self {
            feed,
            write: config.write.clone(),
        }
    }

    fn writes(&self, s: Series) -> bool {
        self.write.contains(&s)
    }

    /// Appends `event`'s lines to `out`; returns how many.
    pub fn encode(&mut self, event: SinkEvent, out: &mut String) -> usize {
        let series = match &event {
            SinkEvent::Readings(readings) => {
                if !self.writes(Series::Readings) {
                    return 0;
                }
                for r in readings {
                    self.reading(r, out);
                }
                return readings.len();
            }
            SinkEvent::Window(_) => Series::Aggregates,
            SinkEvent::Alert(_) => Series::Alerts,
            SinkEvent::Status(_) => Series::Statuses,
            // Not a [[sink]]'s: the upstream's and the dashboard's.
            SinkEvent::Command(_) | SinkEvent::ConfigState(_) | SinkEvent::JournalEpoch(_) => {
                return 0
            }
        };
        if !self.writes(series) {
            return 0;
        }
        // A suppressed alert is not rendered, as upstream.
        let mut rendered = Vec::new();
        self.feed.render(event, false, &mut rendered);
        for (msg, _) in &rendered {
            typed(series.line_type(), &msg.payload, out);
        }
        rendered.len()
    }

    fn reading(&self, r: &Reading, out: &mut String) {
        let renderer = self.feed.renderer();
        let line = json!({
            "type": Series::Readings.line_type(),
            "gateway": renderer.gateway_id,
            "device": r.device().as_str(),
            "name": renderer.registry.name_of(r.device()),
            "metric": r.metric().as_str(),
            "value": r.value(),
            "ts": r.time().to_rfc3339(),
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
}

/// `payload` (a JSON object) with `"type"` put first, as one line.
fn typed(kind: &str, payload: &[u8], out: &mut String) {
    out.push_str("{\"type\":\"");
    out.push_str(kind);
    out.push('"');
    let text = String::from_utf8_lossy(payload);
    match text.strip_prefix('{') {
        Some(rest) if rest.trim_start().starts_with('}') => out.push('}'),
        Some(rest) => {
            out.push(',');
            out.push_str(rest);
        }
        // Never: every payload is an object.
        None => out.push('}'),
    }
    out.push('\n');
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use gateway_core::event::{AlertEvent, MetricStats, WindowEvent};
    use gateway_core::units::Units;
    use gateway_core::{DeviceId, DeviceRegistry, MetricName, SourceId, TimeSource, Timestamp};

    use super::*;
    use crate::mqtt_upstream::Renderer;

    const T0: i64 = 1_767_225_600_000;

    fn lines(write: &[Series]) -> Lines {
        let config = JsonlConfig {
            write: write.to_vec(),
            ..JsonlConfig::default()
        };
        Lines::new(
            Feed::new(
                Renderer {
                    gateway_id: "gw-01".into(),
                    prefix: "building/hq".into(),
                    registry: DeviceRegistry::default(),
                },
                Units::default(),
            ),
            &config,
        )
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(T0 + ms).unwrap()
    }

    fn window() -> SinkEvent {
        SinkEvent::Window(WindowEvent {
            device: DeviceId::new("fridge-\"2\"").unwrap(),
            start: at(0),
            end: at(60_000),
            partial: false,
            window_start: at(0),
            rerun: 0,
            amendment: 0,
            partial_at: None,
            metrics: vec![(
                "temperature".into(),
                MetricStats {
                    count: 2,
                    avg: 4.5,
                    min: 4.0,
                    max: 5.0,
                    std: 0.5,
                },
            )],
        })
    }

    fn alert(state: &str) -> SinkEvent {
        SinkEvent::Alert(AlertEvent {
            device: DeviceId::new("fridge-2").unwrap(),
            rule: "fridge-max".into(),
            metric: "temperature".into(),
            kind: "threshold".into(),
            state: state.into(),
            value: 9.0,
            limit: 8.0,
            at: at(1),
            reason: None,
            expected: None,
            observed: None,
            source: SourceId::UNKNOWN,
        })
    }

    fn parsed(out: &str) -> Vec<serde_json::Value> {
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn each_line_is_the_upstream_payload_with_its_type_first() {
        let mut l = lines(&[Series::Aggregates, Series::Alerts]);
        let mut out = String::new();
        assert_eq!(l.encode(window(), &mut out), 1);
        assert_eq!(l.encode(alert("raised"), &mut out), 1);
        assert_eq!(l.encode(alert("suppressed"), &mut out), 0);
        assert!(out.starts_with("{\"type\":\"aggregate\","), "{out}");
        let got = parsed(&out);
        assert_eq!(got.len(), 2);
        let mut upstream = Vec::new();
        l.feed.render(window(), false, &mut upstream);
        let mut want: serde_json::Value = serde_json::from_slice(&upstream[0].0.payload).unwrap();
        want["type"] = "aggregate".into();
        assert_eq!(got[0], want, "the upstream's fields, id included");
        assert_eq!(got[0]["device"], "fridge-\"2\"", "escaped as JSON");
        assert_eq!(got[1]["type"], "alert");
        assert_eq!(got[1]["state"], "raised");
    }

    #[test]
    fn readings_are_written_only_when_asked() {
        let reading = Reading::new(
            DeviceId::new("bme-1").unwrap(),
            MetricName::new("temperature").unwrap(),
            21.5,
            at(5),
            TimeSource::Event,
        )
        .unwrap();
        let event = || SinkEvent::Readings(vec![reading.clone(), reading.clone()]);
        let mut out = String::new();
        assert_eq!(lines(&[Series::Aggregates]).encode(event(), &mut out), 0);
        assert!(out.is_empty());
        assert_eq!(lines(&[Series::Readings]).encode(event(), &mut out), 2);
        let got = parsed(&out);
        assert_eq!(got[0]["type"], "reading");
        assert_eq!(got[0]["value"], 21.5);
        assert_eq!(got[0]["metric"], "temperature");
        assert_eq!(got[0]["ts"], at(5).to_rfc3339());
        // Unwritten series: not even rendered.
        assert_eq!(lines(&[Series::Readings]).encode(window(), &mut out), 0);
    }
}
