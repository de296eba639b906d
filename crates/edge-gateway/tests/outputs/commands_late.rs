//! A command must never reach a device after its result was sent, nor
//! after its `max_age`, however long the path to the device is down. An
//! outside tester stopped the building's broker, sent two commands for a
//! Zigbee2MQTT lamp (reported `failed`, `timeout`), started the broker
//! again and saw both published 37 s later: the MQTT client had queued
//! them and sent them on reconnecting.
//!
//! Proven here against the real binary and two real Mosquittos: a result
//! goes on the topic its command came on, however the device was spelt
//! there; with the
//! building's broker down, a command is refused `offline` and nothing is
//! published, then or ever; once the broker is back the next command is
//! the first thing the lamp gets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::commands::command;
use crate::common::{GatewayProcess, WAIT};
use serde_json::json;
use test_support::{free_port, Mosquitto, Subscriber};

fn config(cloud: u16, building: u16, metrics: u16) -> String {
    format!(
        r#"
[gateway]
id = "gw-late"
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
max_age = "20s"

[[adapter]]
type = "mqtt"
name = "zigbee"
url = "mqtt://127.0.0.1:{building}"
topics = ["zigbee2mqtt/{{device}}"]
command_topic = "zigbee2mqtt/{{device}}/set"
max_backoff = "1s"

[[device]]
id = "lamp-1"
name = "Lamp"
writable = ["state", "brightness"]
"#
    )
}

#[tokio::test]
async fn a_command_for_a_broker_that_is_down_is_never_published_later() {
    let cloud = Mosquitto::start();
    let mut building = Mosquitto::start_persistent();
    let metrics = free_port();
    let mut results = Subscriber::start(cloud.port(), "building/hq/+/command/result").await;
    // A persistent session on the building's broker: whatever the
    // gateway publishes while this watcher is away is queued for it.
    let mut sets =
        Subscriber::start_persistent(building.port(), "zigbee2mqtt/#", "lamp-watch").await;
    let mut gw = GatewayProcess::start(&config(cloud.port(), building.port(), metrics));
    gw.wait_for_log("Subscribed to commands on the upstream broker.")
        .await;

    // A DevEUI as network servers print it, upper case: the result goes
    // on the topic the command came on (`command` checks it), naming the
    // device by its id.
    for level in ["70B3D57ED0001234", "AA-BB-CC-DD-EE-FF"] {
        let r = command(
            cloud.port(),
            &mut results,
            level,
            json!({"id": format!("spelt-{level}"), "metric": "state", "value": "ON"}),
        )
        .await;
        assert_eq!(r["reason"], "not_writable", "{r}");
        assert_ne!(r["device"], level, "{r}");
    }

    let r = command(
        cloud.port(),
        &mut results,
        "lamp-1",
        json!({"id": "up-1", "metric": "state", "value": "ON"}),
    )
    .await;
    assert_eq!(r["status"], "done", "{r}");
    let set = sets
        .wait_for(WAIT, |m| m.topic == "zigbee2mqtt/lamp-1/set")
        .await
        .expect("the first /set");
    assert_eq!(set.json(), json!({"state": "ON"}));

    building.stop();
    for (id, metric, value) in [
        ("down-1", "brightness", json!(7)),
        ("down-2", "state", json!("OFF")),
    ] {
        let r = command(
            cloud.port(),
            &mut results,
            "lamp-1",
            json!({"id": id, "metric": metric, "value": value}),
        )
        .await;
        assert_eq!(
            (r["status"].as_str(), r["reason"].as_str()),
            (Some("refused"), Some("offline")),
            "{r}"
        );
    }

    building.start_again();
    let r = command(
        cloud.port(),
        &mut results,
        "lamp-1",
        json!({"id": "up-2", "metric": "brightness", "value": 200}),
    )
    .await;
    assert_eq!(r["status"], "done", "{r}");
    // The watcher's session kept everything published since it left: the
    // first /set after the outage is the new command's, and nothing of
    // the refused ones follows.
    let next = sets
        .wait_for(WAIT, |m| m.topic == "zigbee2mqtt/lamp-1/set")
        .await
        .expect("the /set after the outage");
    assert_eq!(next.json(), json!({"brightness": 200}));
    assert!(
        sets.wait_for(Duration::from_millis(500), |m| m.topic
            == "zigbee2mqtt/lamp-1/set")
            .await
            .is_none(),
        "a refused command was published after all"
    );
}
