//! `[home_assistant] commands` against the real binary: Mosquitto as Home
//! Assistant's broker (read and written with `mosquitto_sub`/`_pub`, as
//! Home Assistant's MQTT integration does), another as the cloud broker,
//! pymodbus as the device (read back with pymodbus's own client).
//!
//! Proven: a writable holding register is announced as a `number` with
//! its min/max/step/unit and command topic, a coil as a `switch`, a
//! read-only register as neither; a value published on a control's
//! command topic is written (read back through the peer) and its result
//! published on the cloud broker and shown on the dashboard's device page
//! and `/api/commands`; an out-of-range value is refused and not written;
//! a retained message there is ignored. With `commands = false` no control
//! is announced and the same publish writes nothing, while cloud commands
//! still work.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::commands::{read_back, start_peer};
use crate::common;

use common::{http_until, GatewayProcess, WAIT};
use serde_json::{json, Value};
use test_support::{free_port, publish, Message, Mosquitto, Subscriber};

const GW: &str = "gw-hac";
const SETPOINT: &str = "homeassistant/number/gw-hac_ahu-1_setpoint/config";
const FAN: &str = "homeassistant/switch/gw-hac_ahu-1_fan/config";
const SETPOINT_SET: &str = "edge-gateway/gw-hac/ahu-1/setpoint/set";
const FAN_SET: &str = "edge-gateway/gw-hac/ahu-1/fan/set";

struct Ports {
    cloud: u16,
    ha: u16,
    modbus: u16,
    metrics: u16,
    dashboard: u16,
}

fn config(p: &Ports, ha_commands: bool, cloud_commands: bool) -> String {
    format!(
        r#"
[gateway]
id = "{GW}"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{cloud}"
qos = 1
topic_prefix = "building/{{site}}"
max_backoff = "1s"

[metrics]
bind = "127.0.0.1:{metrics}"

[dashboard]
enabled = true
bind = "127.0.0.1:{dashboard}"

[commands]
enabled = {cloud_commands}
rate = 50.0
burst = 50

[home_assistant]
enabled = true
broker = "mqtt://127.0.0.1:{ha}"
commands = {ha_commands}

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
  {{ metric = "setpoint", address = 0, type = "i16", scale = 0.1, unit = "°C", writable = true, min = 15.0, max = 30.0 }},
  {{ metric = "supply", address = 1, type = "i16", scale = 0.1 }},
  {{ metric = "fan", table = "coil", address = 1, writable = true }},
]
"#,
        cloud = p.cloud,
        metrics = p.metrics,
        dashboard = p.dashboard,
        ha = p.ha,
        modbus = p.modbus,
    )
}

fn ports(cloud: &Mosquitto, ha: &Mosquitto) -> Ports {
    Ports {
        cloud: cloud.port(),
        ha: ha.port(),
        modbus: free_port(),
        metrics: free_port(),
        dashboard: free_port(),
    }
}

/// The latest non-empty config on each topic, once all of `topics` came.
async fn configs(sub: &mut Subscriber, topics: &[&str]) -> Vec<Message> {
    let msgs = sub
        .collect_until(WAIT, |msgs| {
            topics
                .iter()
                .all(|t| msgs.iter().any(|m| m.topic == *t && !m.payload.is_empty()))
        })
        .await;
    for t in topics {
        assert!(
            msgs.iter().any(|m| m.topic == *t),
            "no config on {t}; got {:?}",
            msgs.iter().map(|m| &m.topic).collect::<Vec<_>>()
        );
    }
    msgs
}

fn latest(msgs: &[Message], topic: &str) -> Value {
    msgs.iter()
        .rev()
        .find(|m| m.topic == topic && !m.payload.is_empty())
        .map(Message::json)
        .unwrap_or_else(|| panic!("no {topic}"))
}

/// Publishes `payload` on a command topic of Home Assistant's broker and
/// waits for its result on the cloud broker.
async fn set(ha: u16, results: &mut Subscriber, topic: &str, payload: &str) -> Value {
    publish(ha, topic, payload, 1, false).await;
    let m = results
        .wait_for(WAIT, |m| {
            m.json()["id"]
                .as_str()
                .is_some_and(|i| i.starts_with("ha-"))
        })
        .await
        .unwrap_or_else(|| panic!("no result for {payload} on {topic}"));
    assert_eq!(m.topic, "building/hq/ahu-1/command/result");
    m.json()
}

#[tokio::test]
async fn controls_are_announced_and_their_commands_written_and_shown() {
    let cloud = Mosquitto::start();
    let ha = Mosquitto::start();
    let p = ports(&cloud, &ha);
    let _peer = start_peer(p.modbus);
    let mut discovery = Subscriber::start(ha.port(), "homeassistant/#").await;
    let mut results = Subscriber::start(cloud.port(), "building/hq/+/command/result").await;
    // A retained command, delivered (as retained) when the gateway
    // subscribes: it would run again at every reconnect.
    publish(ha.port(), SETPOINT_SET, "16", 1, true).await;
    // Home Assistant's commands alone: the cloud's stay off.
    let mut gw = GatewayProcess::start(&config(&p, true, false));
    gw.wait_for_log("Taking commands from Home Assistant's broker.")
        .await;
    gw.wait_for_log("Modbus bus open.").await;

    let msgs = configs(&mut discovery, &[SETPOINT, FAN]).await;
    let number = latest(&msgs, SETPOINT);
    assert_eq!(number["min"], 15.0, "{number}");
    assert_eq!(number["max"], 30.0, "{number}");
    assert_eq!(number["step"], 0.1, "{number}");
    assert_eq!(number["unit_of_measurement"], "°C", "{number}");
    assert_eq!(number["command_topic"], SETPOINT_SET);
    assert_eq!(number["state_topic"], "edge-gateway/gw-hac/ahu-1/setpoint");
    assert_eq!(number["unique_id"], "gw-hac_ahu-1_setpoint");
    assert!(number["device"]["identifiers"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
    assert!(number["availability"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
    let switch = latest(&msgs, FAN);
    assert_eq!(switch["command_topic"], FAN_SET, "{switch}");
    assert_eq!(switch["payload_on"], "1", "{switch}");
    assert_eq!(switch["payload_off"], "0", "{switch}");
    assert_eq!(switch["state_topic"], "edge-gateway/gw-hac/ahu-1/fan");
    // Configs are sent QoS 1 (retained: a live subscriber is not told),
    // and the controls went out together: the read-only register has none.
    assert!(msgs
        .iter()
        .filter(|m| m.topic == SETPOINT)
        .all(|m| m.qos >= 1));
    assert!(
        !msgs.iter().any(|m| m.topic.ends_with("ahu-1_supply/config")
            && (m.topic.contains("/number/") || m.topic.contains("/switch/")))
    );
    // The retained one was ignored and counted.
    http_until(p.metrics, "/metrics", |_, b| {
        // Once per connect: a reconnect gets it again.
        test_support::metrics::sample(
            b,
            "edge_gateway_home_assistant_commands_total{outcome=\"retained\"}",
        )
        .is_some_and(|n| n >= 1.0)
    })
    .await;
    assert_eq!(read_back(p.modbus, 1, "holding", 0, 1), vec![200]);

    // What Home Assistant's number publishes: 22.5 °C is 225 at scale 0.1.
    let r = set(ha.port(), &mut results, SETPOINT_SET, "22.5").await;
    assert_eq!(r["status"], "done", "{r}");
    assert_eq!(r["metric"], "setpoint");
    assert_eq!(r["value"], 22.5);
    assert_eq!(r["device"], "ahu-1");
    let first = r["id"].as_str().unwrap().to_string();
    assert_eq!(read_back(p.modbus, 1, "holding", 0, 1), vec![225]);

    // The switch's payload_on.
    let r = set(ha.port(), &mut results, FAN_SET, "1").await;
    assert_eq!(r["status"], "done", "{r}");
    assert_eq!(read_back(p.modbus, 1, "coil", 1, 1), vec![1]);

    // Beyond max: refused with its reason, nothing written.
    let r = set(ha.port(), &mut results, SETPOINT_SET, "35").await;
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("refused"), Some("out_of_range")),
        "{r}"
    );
    let refused = r["id"].as_str().unwrap().to_string();
    assert_ne!(refused, first);
    assert_eq!(read_back(p.modbus, 1, "holding", 0, 1), vec![225]);

    let (_, body) = http_until(p.metrics, "/metrics", |c, _| c == 200).await;
    assert_eq!(
        test_support::metrics::sample(
            &body,
            "edge_gateway_home_assistant_commands_total{outcome=\"queued\"}"
        ),
        Some(3.0)
    );

    // The dashboard's device page shows the last commands, newest first.
    let (_, page) = http_until(p.dashboard, "/device?id=ahu-1", |c, b| {
        c == 200 && b.contains(&refused)
    })
    .await;
    let table = page
        .split(r#"<table id="commands">"#)
        .nth(1)
        .expect("a commands table")
        .split("</table>")
        .next()
        .unwrap();
    assert!(table.contains(&first), "{table}");
    assert!(table.contains("out_of_range"), "{table}");
    assert!(table.contains("22.5"), "{table}");
    assert!(
        table.find(&refused) < table.find(&first),
        "newest first: {table}"
    );
    let (code, api) = http_until(p.dashboard, "/api/commands?device=ahu-1", |c, _| c == 200).await;
    assert_eq!(code, 200);
    let api: Value = serde_json::from_str(&api).unwrap();
    let rows = api["commands"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{api}");
    assert_eq!(rows[0]["id"], refused.as_str());
    assert_eq!(rows[0]["status"], "refused");
    assert_eq!(rows[0]["reason"], "out_of_range");
    assert_eq!(rows[2]["id"], first.as_str());
    assert_eq!(rows[2]["value"], 22.5);
    assert_eq!(rows[2]["metric"], "setpoint");
    drop(gw);
}

#[tokio::test]
async fn without_commands_nothing_is_announced_or_written_from_home_assistant() {
    let cloud = Mosquitto::start();
    let ha = Mosquitto::start();
    let p = ports(&cloud, &ha);
    let _peer = start_peer(p.modbus);
    let mut discovery = Subscriber::start(ha.port(), "homeassistant/#").await;
    let mut results = Subscriber::start(cloud.port(), "building/hq/+/command/result").await;
    // The cloud's commands on: the write path exists, Home Assistant's
    // broker is just not one of its ways in.
    let mut gw = GatewayProcess::start(&config(&p, false, true));
    gw.wait_for_log("Subscribed to commands on the upstream broker.")
        .await;
    gw.wait_for_log("Modbus bus open.").await;

    // The setpoint's sensor comes with its first reading, after where the
    // controls would have been announced (at start).
    let sensor = "homeassistant/sensor/gw-hac_ahu-1_setpoint/config";
    let msgs = configs(&mut discovery, &[sensor]).await;
    assert!(
        !msgs
            .iter()
            .any(|m| m.topic.starts_with("homeassistant/number/")
                || m.topic.starts_with("homeassistant/switch/")),
        "{:?}",
        msgs.iter().map(|m| &m.topic).collect::<Vec<_>>()
    );

    publish(ha.port(), SETPOINT_SET, "22.5", 1, false).await;
    publish(ha.port(), FAN_SET, "1", 1, false).await;
    // A cloud command after them is run and answered...
    publish(
        cloud.port(),
        "building/hq/ahu-1/command",
        &common::with_ts(json!({"id": "c-1", "metric": "setpoint", "value": 21.0})).to_string(),
        1,
        false,
    )
    .await;
    let r = results
        .wait_for(WAIT, |m| m.json()["id"] == "c-1")
        .await
        .expect("the cloud command's result");
    assert_eq!(r.json()["status"], "done", "{}", r.payload);
    // ...while Home Assistant's messages got no result and wrote nothing.
    assert!(results
        .wait_for(Duration::from_millis(500), |m| m.json()["id"]
            .as_str()
            .is_some_and(|i| i.starts_with("ha-")))
        .await
        .is_none());
    assert_eq!(read_back(p.modbus, 1, "holding", 0, 1), vec![210]);
    assert_eq!(read_back(p.modbus, 1, "coil", 1, 1), vec![0]);
    let (_, body) = http_until(p.metrics, "/metrics", |c, _| c == 200).await;
    assert!(
        !body.contains("edge_gateway_home_assistant_commands_total"),
        "{body}"
    );
    drop(gw);
}
