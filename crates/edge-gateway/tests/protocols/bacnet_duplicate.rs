//! Two addresses answering for one BACnet device instance (a duplicate
//! device instance: a misconfigured controller, or a forger on the
//! BACnet/IP network), each a bacpypes3 application on its own loopback
//! port (`tests/data/bacnet_peer.py`), against the real binary.
//!
//! Proven: a device found by Who-Is is not read from, nor written to,
//! while a second address answers for its instance: a forged I-Am, or a
//! second bacpypes3 device answering Who-Is with the same instance, is
//! warned about naming both addresses and counted (`duplicate_device`),
//! a command is refused `ambiguous` and neither device's priority array
//! is touched; once a Who-Is draws one answer again the device is read
//! and written at that address; two answering the first Who-Is are
//! neither read nor written. A device with a configured `address` is
//! read and written there whatever other addresses announce its instance.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::bacnet::{gateway_config, metrics_of, ok, window, PEER};
use crate::common;

use common::{http_until, GatewayProcess, WAIT};
use serde_json::{json, Value};
use test_support::metrics::sample;
use test_support::{free_port, publish, Mosquitto, PythonPeer, Subscriber};

const DUPLICATES: &str =
    "edge_gateway_adapter_errors_total{adapter=\"bms\",error_type=\"duplicate_device\"}";
const READINGS: &str = "edge_gateway_adapter_readings_total{adapter=\"bms\"}";

fn commands(upstream: u16, metrics: u16, body: &str) -> String {
    let body = format!(
        r#"
[commands]
enabled = true
max_age = "60s"
rate = 50.0
burst = 50
{body}"#
    );
    gateway_config(upstream, metrics, &body)
}

fn objects(value: f64) -> Value {
    json!([{ "type": "analogValue", "instance": 1, "name": "Level", "value": value, "commandable": true }])
}

/// The sixteenth slot of analog-value:1's priority array on the device
/// the peer knows as `key`.
fn slot_16(peer: &mut PythonPeer, key: u32) -> Value {
    peer.send_line(&format!("get {key} analogValue:1"));
    let line = peer.next_line(WAIT).expect("the peer answers");
    let state: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(peer.next_line(WAIT).as_deref(), Some("ok"));
    state["priority"][15].clone()
}

async fn command(upstream: u16, results: &mut Subscriber, device: &str, body: Value) -> Value {
    let id = body["id"].as_str().unwrap_or_default().to_string();
    publish(
        upstream,
        &format!("building/hq/{device}/command"),
        &common::with_ts(body.clone()).to_string(),
        1,
        false,
    )
    .await;
    results
        .wait_for(WAIT, |m| m.json()["id"] == id.as_str())
        .await
        .unwrap_or_else(|| panic!("no result for {body}"))
        .json()
}

/// Whether no window buffered so far holds the twin's 666.
async fn no_twin_value(sub: &mut Subscriber) -> bool {
    let twin = sub.wait_for(std::time::Duration::ZERO, |m| {
        m.json()["device"] == "boiler"
            && metrics_of(m).get("level").is_some_and(|s| {
                s["max"].as_f64() == Some(666.0) || s["min"].as_f64() == Some(666.0)
            })
    });
    twin.await.is_none()
}

async fn counter(metrics: u16, name: &str, done: impl Fn(f64) -> bool) -> f64 {
    let (_, text) = http_until(metrics, "/metrics", |_, b| {
        done(sample(b, name).unwrap_or(0.0))
    })
    .await;
    sample(&text, name).unwrap_or(0.0)
}

#[tokio::test]
async fn a_second_address_answering_for_a_discovered_device_stops_its_reads_and_writes_until_it_is_gone(
) {
    let upstream = Mosquitto::start();
    let metrics = free_port();
    let (real, twin, stranger, local) = (free_port(), free_port(), free_port(), free_port());
    let layout = json!({ "devices": [
        { "instance": 7201, "port": real, "objects": objects(5.0) },
        // Same instance, another address: off until the test starts it.
        { "instance": 7201, "key": 7299, "port": twin, "stopped": true, "objects": objects(666.0) },
    ]});
    let mut peer = PythonPeer::start_with_args(PEER, &[&layout.to_string()]);
    let body = format!(
        r#"
[[adapter]]
type = "bacnet"
name = "bms"
bind = "127.0.0.1:{local}"
poll = "200ms"
timeout = "400ms"
retries = 0
max_backoff = "500ms"
broadcast = ["127.0.0.1:{real}", "127.0.0.1:{twin}"]

[[bacnet.device]]
instance = 7201
id = "boiler"
writable = ["analog-value:1"]
"#
    );
    let mut sub = Subscriber::start(upstream.port(), "building/hq/+/aggregated").await;
    let mut results = Subscriber::start(upstream.port(), "building/hq/+/command/result").await;
    let mut gw = GatewayProcess::start(&commands(upstream.port(), metrics, &body));
    gw.wait_for_log("Subscribed to commands on the upstream broker.")
        .await;
    let w = window(&mut sub, "boiler", |w| w.contains_key("level")).await;
    assert_eq!(w["level"]["max"].as_f64(), Some(5.0), "{w:?}");

    // A forged I-Am from a stranger: warned, naming both addresses, and
    // counted; the next Who-Is draws only the real device's answer, which
    // is read again.
    ok(&mut peer, &format!("iam {local} 7201 {stranger}"));
    gw.wait_for_log("Duplicate BACnet device instance").await;
    let line = gw
        .seen
        .iter()
        .find(|l| l.contains("Duplicate BACnet device instance"))
        .cloned()
        .unwrap_or_default();
    assert!(
        line.contains(&format!("127.0.0.1:{real}"))
            && line.contains(&format!("127.0.0.1:{stranger}"))
            && line.contains("7201"),
        "{line}"
    );
    counter(metrics, DUPLICATES, |n| n >= 1.0).await;
    gw.wait_for_log("duplicate device instance resolved").await;
    let before = counter(metrics, READINGS, |_| true).await;
    counter(metrics, READINGS, |n| n > before).await;

    // A second device answering Who-Is for the instance: not read, nor
    // written, round after round.
    ok(&mut peer, "start 7299");
    ok(&mut peer, &format!("announce 7299 {local}"));
    let first = counter(metrics, DUPLICATES, |n| n >= 2.0).await;
    // The conflict, then a Who-Is answered by both: from then on, nothing.
    counter(metrics, DUPLICATES, |n| n >= first + 1.0).await;
    let readings = counter(metrics, READINGS, |_| true).await;
    counter(metrics, DUPLICATES, |n| n >= first + 3.0).await;
    let (_, text) = http_until(metrics, "/metrics", |_, _| true).await;
    assert_eq!(
        sample(&text, READINGS),
        Some(readings),
        "read while ambiguous"
    );
    assert_eq!(
        sample(
            &text,
            "edge_gateway_bacnet_device_up{adapter=\"bms\",device=\"boiler\"}"
        ),
        Some(0.0),
        "{text}"
    );
    let r = command(
        upstream.port(),
        &mut results,
        "boiler",
        json!({"id": "d-1", "metric": "analog-value:1", "value": 42.0}),
    )
    .await;
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("refused"), Some("ambiguous")),
        "{r}"
    );
    assert!(
        r["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(&twin.to_string()),
        "{r}"
    );
    assert_eq!(slot_16(&mut peer, 7201), Value::Null);
    assert_eq!(slot_16(&mut peer, 7299), Value::Null);

    // The twin gone, one answer again: read and written at the real one.
    ok(&mut peer, "stop 7299");
    gw.wait_for_log_count("duplicate device instance resolved", 2)
        .await;
    let before = counter(metrics, READINGS, |_| true).await;
    counter(metrics, READINGS, |n| n > before).await;
    let r = command(
        upstream.port(),
        &mut results,
        "boiler",
        json!({"id": "d-2", "metric": "analog-value:1", "value": 23.5}),
    )
    .await;
    assert_eq!(r["status"].as_str(), Some("done"), "{r}");
    assert_eq!(slot_16(&mut peer, 7201), json!(23.5));
    for l in gw
        .seen
        .iter()
        .filter(|l| l.contains("BACnet device found."))
    {
        assert!(l.contains(&format!("127.0.0.1:{real}")), "{l}");
    }
    assert!(no_twin_value(&mut sub).await, "the twin's value upstream");
}

/// Both answer the gateway's very first Who-Is, the twin first (its
/// address is first in `broadcast`): it won, its 666 went upstream and the
/// command was written to it.
#[tokio::test]
async fn two_devices_answering_the_first_who_is_are_neither_read_nor_written() {
    let upstream = Mosquitto::start();
    let metrics = free_port();
    let (real, twin, local) = (free_port(), free_port(), free_port());
    let layout = json!({ "devices": [
        { "instance": 7203, "port": real, "objects": objects(5.0) },
        { "instance": 7203, "key": 7297, "port": twin, "objects": objects(666.0) },
    ]});
    let mut peer = PythonPeer::start_with_args(PEER, &[&layout.to_string()]);
    let body = format!(
        r#"
[[adapter]]
type = "bacnet"
name = "bms"
bind = "127.0.0.1:{local}"
poll = "200ms"
timeout = "400ms"
retries = 0
max_backoff = "500ms"
broadcast = ["127.0.0.1:{twin}", "127.0.0.1:{real}"]

[[bacnet.device]]
instance = 7203
id = "boiler"
writable = ["analog-value:1"]
"#
    );
    let mut sub = Subscriber::start(upstream.port(), "building/hq/+/aggregated").await;
    let mut results = Subscriber::start(upstream.port(), "building/hq/+/command/result").await;
    let mut gw = GatewayProcess::start(&commands(upstream.port(), metrics, &body));
    gw.wait_for_log("Subscribed to commands on the upstream broker.")
        .await;
    let r = command(
        upstream.port(),
        &mut results,
        "boiler",
        json!({"id": "f-1", "metric": "analog-value:1", "value": 42.0}),
    )
    .await;
    // Before the first round is over the device is only not found yet.
    let reason = r["reason"].as_str().unwrap_or_default();
    assert!(
        r["status"] == "refused" && ["ambiguous", "offline"].contains(&reason),
        "{r}"
    );
    counter(metrics, DUPLICATES, |n| n >= 3.0).await;
    let r = command(
        upstream.port(),
        &mut results,
        "boiler",
        json!({"id": "f-2", "metric": "analog-value:1", "value": 42.0}),
    )
    .await;
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("refused"), Some("ambiguous")),
        "{r}"
    );
    assert_eq!(slot_16(&mut peer, 7203), Value::Null);
    assert_eq!(slot_16(&mut peer, 7297), Value::Null);
    let (_, text) = http_until(metrics, "/metrics", |_, _| true).await;
    assert_eq!(sample(&text, READINGS).unwrap_or(0.0), 0.0, "{text}");
    assert!(no_twin_value(&mut sub).await, "the twin's value upstream");
    assert!(
        !gw.seen.iter().any(|l| l.contains("BACnet device found.")),
        "bound to one of them"
    );
}

#[tokio::test]
async fn a_configured_address_is_read_and_written_whatever_else_announces_its_instance() {
    let upstream = Mosquitto::start();
    let metrics = free_port();
    let (real, twin, stranger, local) = (free_port(), free_port(), free_port(), free_port());
    let layout = json!({ "devices": [
        { "instance": 7202, "port": real, "objects": objects(5.0) },
        { "instance": 7202, "key": 7298, "port": twin, "objects": objects(666.0) },
    ]});
    let mut peer = PythonPeer::start_with_args(PEER, &[&layout.to_string()]);
    let body = format!(
        r#"
[[adapter]]
type = "bacnet"
name = "bms"
bind = "127.0.0.1:{local}"
poll = "200ms"
timeout = "400ms"
retries = 0
max_backoff = "500ms"

[[bacnet.device]]
instance = 7202
address = "127.0.0.1:{real}"
id = "boiler"
writable = ["analog-value:1"]
"#
    );
    let mut sub = Subscriber::start(upstream.port(), "building/hq/+/aggregated").await;
    let mut results = Subscriber::start(upstream.port(), "building/hq/+/command/result").await;
    let mut gw = GatewayProcess::start(&commands(upstream.port(), metrics, &body));
    gw.wait_for_log("BACnet device found.").await;

    // Another device and a stranger announce the instance, again and again.
    for _ in 0..3 {
        ok(&mut peer, &format!("announce 7298 {local}"));
        ok(&mut peer, &format!("iam {local} 7202 {stranger}"));
    }
    counter(metrics, DUPLICATES, |n| n >= 6.0).await;
    gw.wait_for_log("configured address kept").await;
    let before = counter(metrics, READINGS, |_| true).await;
    counter(metrics, READINGS, |n| n > before).await;
    let w = window(&mut sub, "boiler", |w| w.contains_key("level")).await;
    assert_eq!(w["level"]["max"].as_f64(), Some(5.0), "{w:?}");
    let r = command(
        upstream.port(),
        &mut results,
        "boiler",
        json!({"id": "c-1", "metric": "analog-value:1", "value": 23.5}),
    )
    .await;
    assert_eq!(r["status"].as_str(), Some("done"), "{r}");
    assert_eq!(slot_16(&mut peer, 7202), json!(23.5));
    assert_eq!(slot_16(&mut peer, 7298), Value::Null);
    for l in gw
        .seen
        .iter()
        .filter(|l| l.contains("BACnet device found."))
    {
        assert!(l.contains(&format!("127.0.0.1:{real}")), "{l}");
    }
    assert!(no_twin_value(&mut sub).await, "the twin's value upstream");
}
