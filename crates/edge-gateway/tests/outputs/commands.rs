//! `[commands]` against the real binary: a cloud broker and a building
//! broker (two Mosquittos), pymodbus as the device (its registers read
//! back with pymodbus's own client), results read on the cloud broker.
//!
//! Proven: a set point written (scale inverted) and read back through the
//! peer, an f32 in word-swapped order, a coil switched; out-of-range,
//! undeclared and unknown points refused and nothing written; one id
//! twice executes once and gets its result again; an expired command is
//! not executed; a malformed one is refused; a command on the building's
//! broker is never executed; a Zigbee2MQTT-style `/set` published on the
//! building broker; a kill -9 between write and result writes once, and
//! one before the outbox stored a result loses no result; the
//! counters by status and reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{http_until, GatewayProcess, WAIT};
use serde_json::{json, Value};
use test_support::{free_port, peers_python, publish, Mosquitto, PythonPeer, Subscriber};

const PEER: &str = include_str!("../data/modbus_peer.py");
const READ: &str = include_str!("../data/modbus_read.py");

/// Reads `count` values of `table` at `address` from the peer with
/// pymodbus's client.
pub(crate) fn read_back(port: u16, unit: u8, table: &str, address: u16, count: u16) -> Vec<u16> {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("read.py");
    std::fs::write(&script, READ).unwrap();
    let out = std::process::Command::new(peers_python())
        .arg(&script)
        .args([
            port.to_string(),
            unit.to_string(),
            table.to_string(),
            address.to_string(),
            count.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect()
}

pub(crate) fn metric(body: &str, name_and_labels: &str) -> f64 {
    test_support::metrics::sample(body, name_and_labels).unwrap_or(0.0)
}

pub(crate) fn config(cloud: u16, building: u16, metrics: u16, modbus: u16) -> String {
    format!(
        r#"
[gateway]
id = "gw-cmd"
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
type = "modbus"
name = "plant"
url = "tcp://127.0.0.1:{modbus}"
poll = "1s"
timeout = "500ms"
max_backoff = "1s"

[[modbus.device]]
id = "ahu-1"
unit = 1
registers = [
  {{ metric = "setpoint", address = 0, type = "i16", scale = 0.1, writable = true, min = 15.0, max = 30.0 }},
  {{ metric = "supply", address = 1, type = "i16", scale = 0.1 }},
  {{ metric = "flow", address = 2, type = "f32", order = "cdab", writable = true }},
  {{ metric = "fan", table = "coil", address = 1, writable = true }},
]

[[adapter]]
type = "mqtt"
name = "zigbee"
url = "mqtt://127.0.0.1:{building}"
topics = ["zigbee2mqtt/{{device}}"]
command_topic = "zigbee2mqtt/{{device}}/set"

[[device]]
id = "lamp-1"
name = "Lamp"
writable = ["state", "brightness"]
"#
    )
}

/// Sends a command on the cloud broker (stamped now, unless it has its
/// `ts`) and waits for its result there.
pub(crate) async fn command(
    cloud: u16,
    results: &mut Subscriber,
    device: &str,
    body: Value,
) -> Value {
    let id = body["id"].as_str().unwrap_or_default().to_string();
    publish(
        cloud,
        &format!("building/hq/{device}/command"),
        &common::with_ts(body.clone()).to_string(),
        1,
        false,
    )
    .await;
    let m = results
        .wait_for(WAIT, |m| m.json()["id"] == id.as_str())
        .await
        .unwrap_or_else(|| panic!("no result for {body}"));
    assert_eq!(m.topic, format!("building/hq/{device}/command/result"));
    m.json()
}

pub(crate) fn start_peer(port: u16) -> PythonPeer {
    let layout = json!({ "units": { "1": {
        "holding": { "0": [200, 215, 0, 0] },
        "coil": { "0": [0, 0] },
    }}});
    PythonPeer::start_with_args(PEER, &["tcp", &port.to_string(), &layout.to_string()])
}

#[tokio::test]
async fn modbus_and_mqtt_writes_refusals_repeats_expiry_and_the_building_broker() {
    let cloud = Mosquitto::start();
    let building = Mosquitto::start();
    let metrics = free_port();
    let modbus = free_port();
    let _peer = start_peer(modbus);
    let mut results = Subscriber::start(cloud.port(), "building/hq/+/command/result").await;
    let mut sets = Subscriber::start(building.port(), "zigbee2mqtt/+/set").await;
    let mut gw = GatewayProcess::start(&config(cloud.port(), building.port(), metrics, modbus));
    gw.wait_for_log("Subscribed to commands on the upstream broker.")
        .await;
    gw.wait_for_log("Modbus bus open.").await;

    // A set point the register cannot hold exactly: rounded to 218, and
    // the result says what the device now holds beside what was asked
    // (the next command sets it to 23.5).
    let r = command(
        cloud.port(),
        &mut results,
        "ahu-1",
        json!({"id": "c-1b", "metric": "setpoint", "value": 21.76}),
    )
    .await;
    assert_eq!(r["status"], "done", "{r}");
    assert_eq!(r["value"], 21.76);
    let applied = r["applied"].as_f64().expect("applied");
    assert!((applied - 21.8).abs() < 1e-9, "{r}");
    assert_eq!(read_back(modbus, 1, "holding", 0, 1), vec![218]);

    // A set point in the reading's unit: 23.5 °C is 235 at scale 0.1.
    let r = command(
        cloud.port(),
        &mut results,
        "ahu-1",
        json!({"id": "c-1", "metric": "setpoint", "value": 23.5}),
    )
    .await;
    assert_eq!(r["status"], "done", "{r}");
    assert_eq!(r["reason"], "");
    assert_eq!(r["gateway"], "gw-cmd");
    assert_eq!(r["device"], "ahu-1");
    assert_eq!(r["metric"], "setpoint");
    assert_eq!(r["value"], 23.5);
    assert!(r["seq"].as_u64().is_some(), "{r}");
    assert!(r["ts"].as_str().is_some(), "{r}");
    assert_eq!(read_back(modbus, 1, "holding", 0, 1), vec![235]);
    assert_eq!(r["applied"], 23.5, "what the device holds, read back");

    // An f32 in word-swapped order: 12.5 is 0x4148_0000, low word first.
    let r = command(
        cloud.port(),
        &mut results,
        "ahu-1",
        json!({"id": "c-2", "metric": "flow", "value": 12.5}),
    )
    .await;
    assert_eq!(r["status"], "done", "{r}");
    assert_eq!(read_back(modbus, 1, "holding", 2, 2), vec![0x0000, 0x4148]);

    // A coil switched on.
    let r = command(
        cloud.port(),
        &mut results,
        "ahu-1",
        json!({"id": "c-3", "metric": "fan", "value": true}),
    )
    .await;
    assert_eq!(r["status"], "done", "{r}");
    assert_eq!(read_back(modbus, 1, "coil", 1, 1), vec![1]);

    // Refused, and nothing written: above max, a coil given 2, a point
    // not declared writable, a device nobody writes to, a malformed one.
    for (device, body, reason) in [
        (
            "ahu-1",
            json!({"id": "r-1", "metric": "setpoint", "value": 35.0}),
            "out_of_range",
        ),
        (
            "ahu-1",
            json!({"id": "r-2", "metric": "fan", "value": 2}),
            "out_of_range",
        ),
        (
            "ahu-1",
            json!({"id": "r-3", "metric": "supply", "value": 20.0}),
            "not_writable",
        ),
        (
            "boiler-9",
            json!({"id": "r-4", "metric": "setpoint", "value": 20.0}),
            "not_writable",
        ),
        (
            "ahu-1",
            json!({"id": "r-5", "metric": "setpoint", "value": "warm"}),
            "type",
        ),
        (
            "ahu-1",
            json!({"id": "r-6", "metric": "setpoint"}),
            "malformed",
        ),
    ] {
        let r = command(cloud.port(), &mut results, device, body.clone()).await;
        assert_eq!(r["status"], "refused", "{body} -> {r}");
        assert_eq!(r["reason"], reason, "{body} -> {r}");
    }
    assert_eq!(read_back(modbus, 1, "holding", 0, 2), vec![235, 215]);
    assert_eq!(read_back(modbus, 1, "coil", 1, 1), vec![1]);

    // The same id again, with another value: its first result again,
    // nothing written.
    let r = command(
        cloud.port(),
        &mut results,
        "ahu-1",
        json!({"id": "c-1", "metric": "setpoint", "value": 18.0}),
    )
    .await;
    assert_eq!(r["status"], "done", "{r}");
    assert_eq!(r["value"], 23.5, "the first command's result: {r}");
    assert_eq!(read_back(modbus, 1, "holding", 0, 1), vec![235]);

    // Expired by its ts: not executed.
    let r = command(
        cloud.port(),
        &mut results,
        "ahu-1",
        json!({"id": "e-1", "metric": "setpoint", "value": 16.0, "ts": "2020-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(r["status"], "expired", "{r}");
    assert_eq!(r["reason"], "max_age");
    assert_eq!(read_back(modbus, 1, "holding", 0, 1), vec![235]);

    // The same command topic on the building's broker: never executed.
    publish(
        building.port(),
        "building/hq/ahu-1/command",
        &json!({"id": "b-1", "metric": "setpoint", "value": 17.0}).to_string(),
        1,
        false,
    )
    .await;
    publish(
        building.port(),
        "zigbee2mqtt/lamp-1/command",
        &json!({"id": "b-2", "metric": "state", "value": "ON"}).to_string(),
        1,
        false,
    )
    .await;

    // MQTT: a Zigbee2MQTT-style /set on the building broker, done on its PUBACK.
    let r = command(
        cloud.port(),
        &mut results,
        "lamp-1",
        json!({"id": "m-1", "metric": "brightness", "value": 120}),
    )
    .await;
    assert_eq!(r["status"], "done", "{r}");
    let set = sets
        .wait_for(WAIT, |m| m.topic == "zigbee2mqtt/lamp-1/set")
        .await
        .expect("the /set publish");
    assert_eq!(set.json(), json!({"brightness": 120}));
    assert_eq!(set.qos, 1);
    let r = command(
        cloud.port(),
        &mut results,
        "lamp-1",
        json!({"id": "m-2", "metric": "color", "value": "red"}),
    )
    .await;
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("refused"), Some("not_writable")),
        "{r}"
    );

    // By now the building broker's messages had every chance: no result,
    // no write, no /set from them.
    assert_eq!(read_back(modbus, 1, "holding", 0, 1), vec![235]);
    assert!(sets
        .wait_for(std::time::Duration::from_millis(300), |m| m
            .payload
            .contains("ON"))
        .await
        .is_none());
    assert!(results
        .wait_for(std::time::Duration::from_millis(300), |m| m.json()["id"]
            .as_str()
            .is_some_and(|i| i.starts_with("b-")))
        .await
        .is_none());

    let (_, body) = http_until(metrics, "/metrics", |_, b| {
        metric(
            b,
            "edge_gateway_commands_total{status=\"done\",reason=\"none\"}",
        ) >= 4.0
    })
    .await;
    for (labels, want) in [
        ("{status=\"refused\",reason=\"out_of_range\"}", 2.0),
        ("{status=\"refused\",reason=\"not_writable\"}", 3.0),
        ("{status=\"refused\",reason=\"malformed\"}", 1.0),
        ("{status=\"expired\",reason=\"max_age\"}", 1.0),
    ] {
        assert_eq!(
            metric(&body, &format!("edge_gateway_commands_total{labels}")),
            want,
            "{labels}\n{body}"
        );
    }
    assert_eq!(metric(&body, "edge_gateway_commands_repeated_total"), 1.0);
}

#[tokio::test]
async fn a_kill_between_write_and_result_writes_once() {
    let cloud = Mosquitto::start();
    let building = Mosquitto::start();
    let metrics = free_port();
    let modbus = free_port();
    let mut peer = start_peer(modbus);
    let mut results = Subscriber::start(cloud.port(), "building/hq/+/command/result").await;
    let config = config(cloud.port(), building.port(), metrics, modbus);
    let dir = tempfile::tempdir().unwrap();
    let mut gw = GatewayProcess::start_in_with(
        dir,
        &config,
        &[("EDGE_GATEWAY_FAULT_HOLD_COMMAND_RESULT_MS", "60000")],
    );
    gw.wait_for_log("Subscribed to commands on the upstream broker.")
        .await;
    publish(
        cloud.port(),
        "building/hq/ahu-1/command",
        &common::with_ts(json!({"id": "k-1", "metric": "setpoint", "value": 21.0})).to_string(),
        1,
        false,
    )
    .await;
    gw.wait_for_log("Fault hook: holding a written command's result.")
        .await;
    assert_eq!(read_back(modbus, 1, "holding", 0, 1), vec![210]);

    // Killed after the write, before its result: the broker still holds
    // the unacknowledged command and delivers it again.
    gw.signal("KILL");
    gw.wait_exit().await;
    let mut gw = GatewayProcess::start_in_with(gw.dir, &config, &[]);
    gw.wait_for_log("Subscribed to commands on the upstream broker.")
        .await;
    let r = results
        .wait_for(WAIT, |m| m.json()["id"] == "k-1")
        .await
        .expect("a result for the interrupted command");
    assert_eq!(r.json()["status"], "failed", "{}", r.payload);
    assert_eq!(r.json()["reason"], "interrupted");
    gw.wait_for_log("A command id seen before").await;

    // Written once: one write request (function 6) reached the device.
    peer.send_line("count");
    let mut writes = 0;
    while let Some(line) = peer.next_line(WAIT) {
        if line == "end" {
            break;
        }
        if line.starts_with("count 1 6 ") {
            writes = line.rsplit(' ').next().unwrap().parse().unwrap();
        }
    }
    assert_eq!(writes, 1);
    assert_eq!(read_back(modbus, 1, "holding", 0, 1), vec![210]);
}

/// A command is acknowledged to the cloud broker only once its result is
/// in the outbox. The fault hook holds the outbox's every batch of
/// messages for a minute (the readings `report` sends up keep it busy),
/// so the result waits in the outbox's queue when the gateway is killed.
/// Acknowledged before, the broker never delivered the command again and
/// its result was lost; now the broker delivers it again after the
/// restart and the journal answers with the result, the write not made a
/// second time.
#[tokio::test]
async fn a_kill_before_the_outbox_stored_a_result_loses_no_result() {
    let cloud = Mosquitto::start();
    let building = Mosquitto::start();
    let metrics = free_port();
    let modbus = free_port();
    let mut peer = start_peer(modbus);
    let mut results = Subscriber::start(cloud.port(), "building/hq/+/command/result").await;
    let config = config(cloud.port(), building.port(), metrics, modbus).replace(
        "max_backoff = \"1s\"\n\n[metrics]",
        "max_backoff = \"1s\"\nreport = { \"ahu-1/supply\" = \"change\" }\n\n[metrics]",
    );
    let dir = tempfile::tempdir().unwrap();
    let mut gw = GatewayProcess::start_in_with(
        dir,
        &config,
        &[("EDGE_GATEWAY_FAULT_HOLD_OUTBOX_MS", "60000")],
    );
    gw.wait_for_log("Subscribed to commands on the upstream broker.")
        .await;
    // Polled readings handed to the upstream: its outbox is holding them.
    http_until(metrics, "/metrics", |_, b| {
        metric(b, "edge_gateway_adapter_readings_total{adapter=\"plant\"}") >= 8.0
    })
    .await;
    publish(
        cloud.port(),
        "building/hq/ahu-1/command",
        &common::with_ts(json!({"id": "s-1", "metric": "setpoint", "value": 22.0})).to_string(),
        1,
        false,
    )
    .await;
    http_until(metrics, "/metrics", |_, b| {
        metric(
            b,
            "edge_gateway_commands_total{status=\"done\",reason=\"none\"}",
        ) >= 1.0
    })
    .await;
    assert_eq!(read_back(modbus, 1, "holding", 0, 1), vec![220]);

    gw.signal("KILL");
    gw.wait_exit().await;
    let mut gw = GatewayProcess::start_in_with(gw.dir, &config, &[]);
    gw.wait_for_log("Subscribed to commands on the upstream broker.")
        .await;
    let r = results
        .wait_for(WAIT, |m| m.json()["id"] == "s-1")
        .await
        .expect("the result of the command written before the kill");
    assert_eq!(r.json()["status"], "done", "{}", r.payload);

    // Written once: one write request (function 6) reached the device.
    peer.send_line("count");
    let mut writes = 0;
    while let Some(line) = peer.next_line(WAIT) {
        if line == "end" {
            break;
        }
        if line.starts_with("count 1 6 ") {
            writes = line.rsplit(' ').next().unwrap().parse().unwrap();
        }
    }
    assert_eq!(writes, 1);
}
