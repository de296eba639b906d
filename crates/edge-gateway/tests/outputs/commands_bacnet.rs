//! `[commands]` to a BACnet device against the real binary: a cloud
//! broker (Mosquitto) and bacpypes3 as the device
//! (`tests/data/bacnet_peer.py`), its objects commandable the way
//! bacpypes3 implements §19.2. What the device holds is read back from
//! bacpypes3's own objects (the peer's `get`): present value and the
//! sixteen slots of the priority array.
//!
//! Proven: an analog-value written at priority 16 and held there, by
//! object id and by the metric named after its object-name; `null`
//! relinquishes the slot (present value back to the relinquish default);
//! a binary-value switched on; an undeclared object refused and not
//! written; a value the object type cannot take refused; the device's
//! Error PDU reported `failed` with its class and code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{GatewayProcess, WAIT};
use serde_json::{json, Value};
use test_support::{free_port, publish, Mosquitto, PythonPeer, Subscriber};

const PEER: &str = include_str!("../data/bacnet_peer.py");
const DEVICE: u32 = 1201;

fn config(cloud: u16, metrics: u16, device_port: u16) -> String {
    format!(
        r#"
[gateway]
id = "gw-bacnet-cmd"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{cloud}"
qos = 1
topic_prefix = "building/{{site}}"
max_backoff = "1s"

[metrics]
bind = "127.0.0.1:{metrics}"

[commands]
enabled = true
max_age = "60s"
rate = 50.0
burst = 50

[[adapter]]
type = "bacnet"
name = "bms"
bind = "127.0.0.1:0"
poll = "1s"
timeout = "500ms"
retries = 0
max_backoff = "500ms"

[[bacnet.device]]
instance = {DEVICE}
address = "127.0.0.1:{device_port}"
id = "ahu-7"
# analog-value:99 is declared but not on the device: its write is the
# device's Error PDU.
writable = ["analog-value:3", "binary-value:1", "analog-value:99"]
"#
    )
}

/// What bacpypes3 holds for `object` of the device.
fn held(peer: &mut PythonPeer, object: &str) -> Value {
    peer.send_line(&format!("get {DEVICE} {object}"));
    let line = peer.next_line(WAIT).expect("the peer answers");
    let state: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(peer.next_line(WAIT).as_deref(), Some("ok"));
    state
}

/// Priority 16 (the last slot) holds `want`, every other slot is empty.
fn only_slot_16(state: &Value, want: Value) {
    let slots = state["priority"].as_array().expect("a priority array");
    assert_eq!(slots.len(), 16, "{state}");
    for (i, s) in slots.iter().enumerate() {
        let expected = if i == 15 { want.clone() } else { Value::Null };
        assert_eq!(*s, expected, "slot {} of {state}", i + 1);
    }
}

async fn command(cloud: u16, results: &mut Subscriber, body: Value) -> Value {
    let id = body["id"].as_str().unwrap_or_default().to_string();
    publish(
        cloud,
        "building/hq/ahu-7/command",
        &common::with_ts(body.clone()).to_string(),
        1,
        false,
    )
    .await;
    let m = results
        .wait_for(WAIT, |m| m.json()["id"] == id.as_str())
        .await
        .unwrap_or_else(|| panic!("no result for {body}"));
    assert_eq!(m.topic, "building/hq/ahu-7/command/result");
    m.json()
}

#[tokio::test]
async fn bacnet_writes_at_priority_16_relinquish_and_refusals_read_back_through_bacpypes3() {
    let cloud = Mosquitto::start();
    let metrics = free_port();
    let port = free_port();
    let layout = json!({ "devices": [
        { "instance": DEVICE, "port": port, "objects": [
            { "type": "analogValue", "instance": 3, "name": "Room Setpoint", "value": 21.0, "commandable": true },
            { "type": "binaryValue", "instance": 1, "name": "Fan Command", "value": 0, "commandable": true },
            { "type": "analogValue", "instance": 4, "name": "Limit", "value": 7.0, "commandable": true },
        ]},
    ]});
    let mut peer = PythonPeer::start_with_args(PEER, &[&layout.to_string()]);
    assert_eq!(held(&mut peer, "analogValue:3")["value"], 21.0);
    let limit_before = held(&mut peer, "analogValue:4");

    let mut results = Subscriber::start(cloud.port(), "building/hq/+/command/result").await;
    let mut gw = GatewayProcess::start(&config(cloud.port(), metrics, port));
    gw.wait_for_log("Subscribed to commands on the upstream broker.")
        .await;
    gw.wait_for_log("BACnet device found.").await;

    // By object id: WriteProperty at priority 16, done on the SimpleACK.
    let r = command(
        cloud.port(),
        &mut results,
        json!({"id": "b-1", "metric": "analog-value:3", "value": 23.5}),
    )
    .await;
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("done"), Some("")),
        "{r}"
    );
    assert_eq!(r["device"], "ahu-7");
    assert_eq!(r["value"], 23.5);
    let s = held(&mut peer, "analogValue:3");
    assert_eq!(s["value"], 23.5, "{s}");
    only_slot_16(&s, json!(23.5));

    // By the metric its object-name gives ("Room Setpoint").
    let r = command(
        cloud.port(),
        &mut results,
        json!({"id": "b-2", "metric": "room_setpoint", "value": 22.25}),
    )
    .await;
    assert_eq!(r["status"], "done", "{r}");
    let s = held(&mut peer, "analogValue:3");
    assert_eq!(s["value"], 22.25, "{s}");
    only_slot_16(&s, json!(22.25));

    // null relinquishes: slot 16 empty, the relinquish default (21.0) wins.
    let r = command(
        cloud.port(),
        &mut results,
        json!({"id": "b-3", "metric": "analog-value:3", "value": null}),
    )
    .await;
    assert_eq!(r["status"], "done", "{r}");
    assert_eq!(r["value"], Value::Null);
    let s = held(&mut peer, "analogValue:3");
    assert_eq!(s["value"], 21.0, "{s}");
    only_slot_16(&s, Value::Null);

    // A binary-value switched on: enumerated active at priority 16.
    let r = command(
        cloud.port(),
        &mut results,
        json!({"id": "b-4", "metric": "binary-value:1", "value": true}),
    )
    .await;
    assert_eq!(r["status"], "done", "{r}");
    let s = held(&mut peer, "binaryValue:1");
    assert_eq!(s["value"], 1.0, "{s}");
    only_slot_16(&s, json!(1.0));

    // Refused, nothing written: an object the device has but the config
    // does not declare (by id and by its name), a value a binary object
    // cannot take, a text for an analog one.
    for (body, reason) in [
        (
            json!({"id": "r-1", "metric": "analog-value:4", "value": 5.0}),
            "not_writable",
        ),
        (
            json!({"id": "r-2", "metric": "limit", "value": 5.0}),
            "not_writable",
        ),
        (
            json!({"id": "r-3", "metric": "binary-value:1", "value": 2}),
            "out_of_range",
        ),
        (
            json!({"id": "r-4", "metric": "analog-value:3", "value": "warm"}),
            "type",
        ),
    ] {
        let r = command(cloud.port(), &mut results, body.clone()).await;
        assert_eq!(
            (r["status"].as_str(), r["reason"].as_str()),
            (Some("refused"), Some(reason)),
            "{body} -> {r}"
        );
    }
    assert_eq!(held(&mut peer, "analogValue:4"), limit_before);
    assert_eq!(limit_before["value"], 7.0);
    assert_eq!(held(&mut peer, "binaryValue:1")["value"], 1.0);
    assert_eq!(held(&mut peer, "analogValue:3")["value"], 21.0);

    // Declared, but the device has no such object: its Error PDU.
    let r = command(
        cloud.port(),
        &mut results,
        json!({"id": "f-1", "metric": "analog-value:99", "value": 1.0}),
    )
    .await;
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("failed"), Some("error")),
        "{r}"
    );
    assert_eq!(r["detail"], "object/unknown-object", "{r}");
}
