//! The demo's live view: what a cloud consumer of `building/demo/#` gets,
//! one readable block per message.
//!
//! [`View`] turns a message into text and is pure; [`Printer`] is the MQTT
//! subscriber that feeds it and writes to stdout. Anything unexpected
//! (unknown topic, malformed JSON) is shown raw rather than dropped: the
//! demo is also a way to see what the gateway really sends.

use std::time::Duration;

use anyhow::Context as _;
use gateway_core::Timestamp;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde_json::{Map, Value};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::{disconnect, mqtt_options, spawn_poller, Poller};

/// How long the printer gets to subscribe before the demo gives up.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Raw payloads longer than this are cut when shown.
const MAX_RAW_CHARS: usize = 300;
/// Column widths of the aggregate lines.
const NAME_WIDTH: usize = 12;
const METRIC_WIDTH: usize = 12;

/// Metrics shown first, in this order; others follow alphabetically.
const METRIC_ORDER: [&str; 5] = ["temperature", "humidity", "co2", "pressure", "gas"];

/// The subscriber printing everything under the demo's topic prefix.
#[derive(Debug)]
pub struct Printer {
    client: AsyncClient,
    poller: Poller,
    offline: watch::Receiver<bool>,
    closed: CancellationToken,
}

impl Printer {
    /// Subscribes to `{prefix}/#` on the broker at `port` and returns once
    /// the subscription is acknowledged, so nothing sent after is missed.
    ///
    /// # Errors
    /// The broker did not acknowledge the subscription in time.
    pub async fn start(port: u16, prefix: &str, gateway_id: &str) -> anyhow::Result<Self> {
        let (client, eventloop) =
            AsyncClient::new(mqtt_options(port, "edge-gateway-demo-printer"), 64);
        let filter = format!("{prefix}/#");
        let (ready_tx, ready_rx) = oneshot::channel();
        let (offline_tx, offline) = watch::channel(false);
        let mut ready = Some(ready_tx);
        let mut view = View::new(prefix, gateway_id);
        let closed = CancellationToken::new();
        let stdout_gone = closed.clone();
        let subscriber = client.clone();
        let sub_filter = filter.clone();
        let poller = spawn_poller(eventloop, move |event| match event {
            // A broker forgets subscriptions with the connection: renew.
            Event::Incoming(Packet::ConnAck(_)) => {
                let _ = subscriber.try_subscribe(&sub_filter, QoS::AtLeastOnce);
            }
            Event::Incoming(Packet::SubAck(_)) => {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
            }
            Event::Incoming(Packet::Publish(p)) => {
                let text = view.render(&p.topic, &p.payload);
                if !super::say(&text) {
                    stdout_gone.cancel();
                }
                if view.is_gateway_offline(&p.topic, &p.payload) {
                    let _ = offline_tx.send(true);
                }
            }
            _ => {}
        });
        let printer = Self {
            client,
            poller,
            offline,
            closed,
        };
        match tokio::time::timeout(SUBSCRIBE_TIMEOUT, ready_rx).await {
            Ok(Ok(())) => Ok(printer),
            _ => {
                printer.finish(Duration::ZERO).await;
                Err(anyhow::anyhow!(
                    "no acknowledgement within {SUBSCRIBE_TIMEOUT:?}"
                ))
                .with_context(|| format!("subscribing to {filter} on the embedded broker"))
            }
        }
    }

    /// Resolves once stdout cannot be written any more.
    pub async fn output_closed(&self) {
        self.closed.cancelled().await;
    }

    /// Waits up to `wait` for the gateway's `offline` (the last thing it
    /// sends when stopping), then disconnects.
    pub async fn finish(mut self, wait: Duration) {
        let _ = tokio::time::timeout(wait, self.offline.wait_for(|off| *off)).await;
        disconnect(&self.client, self.poller).await;
    }
}

/// Renders upstream messages as text, remembering the last window shown so
/// windows are set apart by a blank line.
#[derive(Debug, Clone)]
pub struct View {
    prefix: String,
    gateway_status_topic: String,
    last_window: Option<String>,
}

impl View {
    /// A view of the messages under `prefix` from gateway `gateway_id`.
    pub fn new(prefix: &str, gateway_id: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
            gateway_status_topic: format!("{prefix}/gateway/{gateway_id}/status"),
            last_window: None,
        }
    }

    /// Whether this message is the gateway announcing it is offline.
    pub fn is_gateway_offline(&self, topic: &str, payload: &[u8]) -> bool {
        topic == self.gateway_status_topic && payload.trim_ascii() == b"offline"
    }

    /// The text to print for one message: one or more full lines.
    ///
    /// Names and fields come from the network: control characters in them
    /// are replaced, so a hostile payload cannot drive the terminal.
    pub fn render(&mut self, topic: &str, payload: &[u8]) -> String {
        self.lines(topic, payload)
            .chars()
            .map(|c| {
                if c.is_control() && c != '\n' {
                    '\u{FFFD}'
                } else {
                    c
                }
            })
            .collect()
    }

    fn lines(&mut self, topic: &str, payload: &[u8]) -> String {
        let levels: Vec<&str> = topic
            .strip_prefix(&self.prefix)
            .and_then(|rest| rest.strip_prefix('/'))
            .map(|rest| rest.split('/').collect())
            .unwrap_or_default();
        let json = serde_json::from_slice::<Value>(payload).ok();
        let obj = json.as_ref().and_then(Value::as_object);
        if let ([_, "aggregated"], Some(obj)) = (levels.as_slice(), obj) {
            if let Some(text) = self.aggregate(obj) {
                return text;
            }
        }
        // Anything else interrupts the current window's group.
        self.last_window = None;
        let now = || clock(Timestamp::now());
        let text = match (levels.as_slice(), obj) {
            (["gateway", id, "status"], _) => {
                Some(format!("{}  gateway {id} {}", now(), shown(payload)))
            }
            ([_, "status"], Some(obj)) => device_status(obj),
            (levels, _) if levels.last() == Some(&"alerts") => Some(alert(topic, obj, payload)),
            _ => None,
        };
        let mut text = text.unwrap_or_else(|| format!("{}  {}", now(), raw(topic, payload)));
        text.push('\n');
        text
    }

    fn aggregate(&mut self, obj: &Map<String, Value>) -> Option<String> {
        let range = format!(
            "{}–{}",
            time_field(obj, "window_start")?,
            time_field(obj, "window_end")?
        );
        let name = device_name(obj);
        let metrics = obj.get("metrics")?.as_object()?;
        let partial = obj.get("partial").and_then(Value::as_bool) == Some(true);
        let mut out = String::new();
        if self.last_window.as_deref() != Some(range.as_str()) {
            out.push('\n');
            self.last_window = Some(range.clone());
        }
        let mut names: Vec<&String> = metrics.keys().collect();
        names.sort_by_key(|m| {
            let rank = METRIC_ORDER.iter().position(|o| o == m);
            (rank.unwrap_or(METRIC_ORDER.len()), m.as_str())
        });
        for metric in names {
            let s = &metrics[metric];
            let num = |k: &str| s.get(k).and_then(Value::as_f64);
            let (decimals, unit) = style(metric);
            let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.decimals$}"));
            out.push_str(&format!(
                "{range}  {name:<NAME_WIDTH$} {metric:<METRIC_WIDTH$} avg {:>7} {unit:<3}  min {:>7}  max {:>7}  std {:>5}  n={}{}\n",
                f(num("avg")),
                f(num("min")),
                f(num("max")),
                f(num("std")),
                s.get("count").and_then(Value::as_u64).unwrap_or(0),
                if partial { "  (partial)" } else { "" },
            ));
        }
        Some(out)
    }
}

fn device_status(obj: &Map<String, Value>) -> Option<String> {
    let state = obj.get("state")?.as_str()?;
    let at = time_field(obj, "ts").unwrap_or_else(|| clock(Timestamp::now()));
    Some(format!("{at}  {} is {state}", device_name(obj)))
}

/// Alerts are printed whatever their exact shape: the known fields when
/// present, the raw payload otherwise.
fn alert(topic: &str, obj: Option<&Map<String, Value>>, payload: &[u8]) -> String {
    let at = obj
        .and_then(|o| ["ts", "time", "at"].iter().find_map(|k| time_field(o, k)))
        .unwrap_or_else(|| clock(Timestamp::now()));
    let Some(obj) = obj else {
        return format!("{at}  !!! ALERT  {}", raw(topic, payload));
    };
    let mut line = format!("{at}  !!! ALERT  {}", device_name(obj));
    for key in ["metric", "kind", "state", "value", "limit", "message"] {
        match obj.get(key) {
            Some(Value::Number(n)) => match n.as_f64() {
                Some(v) => line.push_str(&format!("  {key}={v:.2}")),
                None => line.push_str(&format!("  {key}={n}")),
            },
            Some(Value::String(s)) => line.push_str(&format!("  {key}={s}")),
            Some(Value::Null) | None => {}
            Some(other) => line.push_str(&format!("  {key}={other}")),
        }
    }
    line
}

fn raw(topic: &str, payload: &[u8]) -> String {
    format!("{topic}  {}", shown(payload))
}

/// A payload as one line of text, cut to a sane length.
fn shown(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload);
    let text = text.trim();
    let mut out: String = text
        .chars()
        .take(MAX_RAW_CHARS)
        .map(|c| if c == '\n' { ' ' } else { c })
        .collect();
    if text.chars().count() > MAX_RAW_CHARS {
        out.push('…');
    }
    out
}

/// The registered name, else the device id, else a placeholder.
fn device_name(obj: &Map<String, Value>) -> &str {
    ["name", "device"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_str))
        .unwrap_or("(unknown device)")
}

/// An RFC 3339 field as `HH:MM:SS` (UTC).
fn time_field(obj: &Map<String, Value>, key: &str) -> Option<String> {
    let text = obj.get(key)?.as_str()?;
    Timestamp::parse_rfc3339(text).ok().map(clock)
}

fn clock(t: Timestamp) -> String {
    let secs = t.as_millis().div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Decimals and unit for the metrics the demo (and typical nodes) send.
fn style(metric: &str) -> (usize, &'static str) {
    match metric {
        "temperature" => (2, "°C"),
        "humidity" => (1, "%"),
        "co2" => (0, "ppm"),
        "pressure" => (1, "hPa"),
        "gas" => (0, "Ω"),
        "battery" => (0, "%"),
        "voltage" => (2, "V"),
        _ => (2, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> View {
        View::new("building/demo", "demo-gw")
    }

    const AGGREGATE: &str = r#"{"id":"x","gateway":"demo-gw","device":"a2:b2:c2:d2:e2:f2","name":"Living Room",
        "window_start":"2026-01-05T10:00:00Z","window_end":"2026-01-05T10:00:10Z",
        "metrics":{"co2":{"count":10,"avg":612.4,"min":598,"max":640,"std":12.1},
                   "temperature":{"count":10,"avg":21.424,"min":21.1,"max":21.9,"std":0.2149}}}"#;

    #[test]
    fn an_aggregate_is_one_line_per_metric_with_units() {
        let text = view().render(
            "building/demo/a2:b2:c2:d2:e2:f2/aggregated",
            AGGREGATE.as_bytes(),
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "", "a new window starts with a blank line");
        assert_eq!(
            lines[1],
            "10:00:00–10:00:10  Living Room  temperature  avg   21.42 °C   min   21.10  max   21.90  std  0.21  n=10"
        );
        assert_eq!(
            lines[2],
            "10:00:00–10:00:10  Living Room  co2          avg     612 ppm  min     598  max     640  std    12  n=10"
        );
    }

    #[test]
    fn the_same_window_is_not_separated_again_and_partial_is_marked() {
        let mut v = view();
        v.render("building/demo/x/aggregated", AGGREGATE.as_bytes());
        let partial = AGGREGATE.replacen("\"id\"", "\"partial\":true,\"id\"", 1);
        let text = v.render("building/demo/x/aggregated", partial.as_bytes());
        assert!(!text.starts_with('\n'), "{text}");
        assert!(text.lines().all(|l| l.ends_with("(partial)")), "{text}");
    }

    #[test]
    fn statuses_read_like_sentences() {
        let mut v = view();
        let s = r#"{"name":"Fridge 2","device":"fridge-2","state":"online","ts":"2026-01-05T10:00:03.250Z"}"#;
        assert_eq!(
            v.render("building/demo/fridge-2/status", s.as_bytes()),
            "10:00:03  Fridge 2 is online\n"
        );
        let g = v.render("building/demo/gateway/demo-gw/status", b"online");
        assert!(g.ends_with("  gateway demo-gw online\n"), "{g}");
        assert!(v.is_gateway_offline("building/demo/gateway/demo-gw/status", b"offline"));
        assert!(!v.is_gateway_offline("building/demo/gateway/demo-gw/status", b"online"));
    }

    #[test]
    fn alerts_show_their_fields_prominently() {
        let a = r#"{"name":"Fridge 2","metric":"temperature","kind":"threshold","state":"firing","value":8.1,"limit":8,"ts":"2026-01-05T10:01:00Z"}"#;
        assert_eq!(
            view().render("building/demo/fridge-2/alerts", a.as_bytes()),
            "10:01:00  !!! ALERT  Fridge 2  metric=temperature  kind=threshold  state=firing  value=8.10  limit=8.00\n"
        );
        let garbage = view().render("building/demo/fridge-2/alerts", b"{oops");
        assert!(
            garbage.contains("  !!! ALERT  building/demo/fridge-2/alerts  {oops"),
            "{garbage}"
        );
    }

    #[test]
    fn malformed_or_unknown_messages_are_shown_raw() {
        let mut v = view();
        for (topic, payload) in [
            ("building/demo/x/aggregated", &b"{not json"[..]),
            ("building/demo/x/aggregated", &b"{\"metrics\":1}"[..]),
            ("building/demo/x/status", &b"\xff\xfe"[..]),
            ("building/demo/x/y/z", &b"hello"[..]),
        ] {
            let text = v.render(topic, payload);
            assert!(text.contains(topic), "{topic}: {text}");
            assert!(text.ends_with('\n'));
        }
        let long = "a".repeat(1000);
        assert!(v.render("building/demo/q", long.as_bytes()).len() < 400);
        let hostile = v.render("building/demo/q", b"\x1b[2Jgone\nnext");
        assert!(
            !hostile.contains('\x1b') && hostile.matches('\n').count() == 1,
            "{hostile:?}"
        );
    }
}
