//! `edge-gateway history export --commands` through the real binary: the
//! results of commands from a cloud broker (a real Mosquitto) are kept in
//! the dashboard's history and written out as CSV, beside the running
//! gateway and after it stopped, narrowed by `--device`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{http_until, GatewayProcess, WAIT};
use serde_json::json;
use test_support::{free_port, publish, Mosquitto, Subscriber};

fn config(cloud: u16, building: u16, dashboard: u16, metrics: u16) -> String {
    format!(
        r#"
[gateway]
id = "gw-export"
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
write_interval = "200ms"

[commands]
enabled = true

[[adapter]]
type = "mqtt"
name = "zigbee"
url = "mqtt://127.0.0.1:{building}"
topics = ["zigbee2mqtt/{{device}}"]
command_topic = "zigbee2mqtt/{{device}}/set"

[[device]]
id = "lamp-1"
name = "Kitchen lamp"
writable = ["brightness"]
"#
    )
}

fn export(config: &std::path::Path, extra: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .args(["history", "export", "--commands", "-c"])
        .arg(config)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The rows without their time column, which the export must fill.
fn rows(csv: &str) -> Vec<String> {
    csv.lines()
        .skip(1)
        .map(|l| {
            let (time, rest) = l.split_once(',').unwrap();
            assert!(time.ends_with('Z') && time.len() > 20, "RFC 3339: {l}");
            rest.to_string()
        })
        .collect()
}

#[tokio::test]
async fn command_results_are_kept_in_history_and_exported_as_csv() {
    let cloud = Mosquitto::start();
    let building = Mosquitto::start();
    let mut results = Subscriber::start(cloud.port(), "building/hq/+/command/result").await;
    let metrics = free_port();
    let mut gw =
        GatewayProcess::start(&config(cloud.port(), building.port(), free_port(), metrics));
    gw.wait_for_log("Subscribed to commands on the upstream broker.")
        .await;
    // The mqtt adapter on the building broker, which carries x-1.
    gw.wait_for_log("Subscribed.").await;

    for (device, body) in [
        (
            "lamp-1",
            json!({"id": "x-1", "metric": "brightness", "value": 120}),
        ),
        (
            "lamp-1",
            json!({"id": "x-2", "metric": "colour", "value": "red"}),
        ),
        (
            "boiler-9",
            json!({"id": "x-3", "metric": "setpoint", "value": 20.5}),
        ),
    ] {
        publish(
            cloud.port(),
            &format!("building/hq/{device}/command"),
            &common::with_ts(body.clone()).to_string(),
            1,
            false,
        )
        .await;
        let id = body["id"].as_str().unwrap().to_string();
        results
            .wait_for(WAIT, |m| m.json()["id"] == id.as_str())
            .await
            .unwrap_or_else(|| panic!("no result for {body}"));
    }

    // Each result is durable in history once counted there.
    http_until(metrics, "/metrics", |_, b| {
        test_support::metrics::sample(b, "edge_gateway_history_commands_written_total")
            .is_some_and(|v| v >= 3.0)
    })
    .await;
    let want = [
        "x-1,lamp-1,brightness,120,done,,",
        "x-2,lamp-1,colour,red,refused,not_writable,colour is not in this device's writable list",
        "x-3,boiler-9,setpoint,20.5,refused,not_writable,no adapter writes to this device: declare its writable points",
    ];
    let running = export(&gw.config_path, &[]);
    assert_eq!(
        running.lines().next(),
        Some("time,id,device,metric,value,status,reason,detail")
    );
    assert_eq!(rows(&running), want, "{running}");

    // Narrowed to one device, by its [[device]] name.
    let lamp = export(&gw.config_path, &["--device", "Kitchen lamp"]);
    assert_eq!(rows(&lamp), want[..2], "{lamp}");

    // The same after the gateway stopped.
    gw.signal("TERM");
    gw.wait_exit().await;
    assert_eq!(export(&gw.config_path, &[]), running);
}
