//! Alerts through the real binary: readings published with mosquitto_pub
//! on the local broker, alerts observed upstream by a real subscriber,
//! actions observed on the local broker and on a real CoAP server, and the
//! learned state surviving a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use anomaly::synthetic::{series, Shape};
use common::{config, GatewayProcess, WAIT};
use edge_gateway::settings;
use gateway_core::{DeviceId, DeviceRegistry, MetricName, Reading, TimeSource, Timestamp};
use pipeline::fanout::alert_event;
use rules::{AlertState, Engine};
use sinks::mqtt_upstream::Renderer;
use test_support::{
    coap_client_run, free_udp_port, metrics, publish, publish_lines, CoapServer, Message,
    Mosquitto, Subscriber,
};

use common::now_ms;

async fn start(
    gateway_id: &str,
    local: &Mosquitto,
    upstream: &Mosquitto,
    rules: &str,
) -> GatewayProcess {
    let cfg = config(gateway_id, local.port(), upstream.port(), "1h", "5s") + rules;
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Subscribed").await;
    gw
}

fn is_alert(m: &Message) -> bool {
    m.topic.ends_with("/alerts")
}

#[tokio::test]
async fn a_threshold_alert_goes_upstream_and_its_action_reaches_the_actuator() {
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let mut alerts = Subscriber::start(upstream.port(), "building/hq/+/alerts").await;
    let mut actuator = Subscriber::start(local.port(), "actuators/#").await;
    let rules = format!(
        r#"
[[device]]
id = "fridge-2"
name = "Fridge 2"

[[rule]]
name = "fridge-max"
kind = "threshold"
metric = "temperature"
device = "fridge-2"
max = 8.0
action = {{ publish = "actuators/hvac_zone_1/command", payload = "increase_ventilation", clear_payload = "normal_ventilation", broker = "mqtt://127.0.0.1:{port}" }}
"#,
        port = local.port()
    );
    let mut gw = start("gw-alerts", &local, &upstream, &rules).await;

    publish(
        local.port(),
        "sensors/fridge-2",
        r#"{"temperature":9.4}"#,
        1,
        false,
    )
    .await;
    let raised = alerts
        .wait_for(WAIT, is_alert)
        .await
        .expect("alert upstream");
    assert_eq!(raised.topic, "building/hq/fridge-2/alerts");
    let j = raised.json();
    assert_eq!(j["gateway"], "gw-alerts");
    assert_eq!(j["device"], "fridge-2");
    assert_eq!(j["name"], "Fridge 2");
    assert_eq!(j["metric"], "temperature");
    assert_eq!(j["kind"], "threshold");
    assert_eq!(j["state"], "raised");
    assert_eq!(j["value"], 9.4);
    assert_eq!(j["limit"], 8.0);
    assert_eq!(j["rule"], "fridge-max");
    assert!(j["id"].as_str().is_some_and(|s| s.len() == 36));
    assert!(Timestamp::parse_rfc3339(j["ts"].as_str().unwrap()).is_ok());

    let cmd = actuator
        .wait_for(WAIT, |m| m.topic == "actuators/hvac_zone_1/command")
        .await
        .expect("action published on the local broker");
    assert_eq!(cmd.payload, "increase_ventilation");
    gw.wait_for_log("Action done.").await;

    publish(
        local.port(),
        "sensors/fridge-2",
        r#"{"temperature":7.0}"#,
        1,
        false,
    )
    .await;
    let cleared = alerts
        .wait_for(WAIT, is_alert)
        .await
        .expect("clear upstream");
    assert_eq!(cleared.json()["state"], "cleared");
    assert_ne!(cleared.json()["id"], j["id"]);
    let cmd = actuator
        .wait_for(WAIT, |m| m.topic == "actuators/hvac_zone_1/command")
        .await
        .expect("clear action");
    assert_eq!(cmd.payload, "normal_ventilation");
}

#[tokio::test]
async fn a_coap_put_action_changes_the_actuator_resource() {
    if test_support::coap_client().is_none() {
        panic!("coap-client missing (apt install libcoap3-bin)");
    }
    let server = CoapServer::start(free_udp_port()).await;
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let mut alerts = Subscriber::start(upstream.port(), "building/hq/+/alerts").await;
    let rules = format!(
        r#"
[[rule]]
name = "co2-high"
kind = "threshold"
metric = "co2"
max = 1000.0
action = {{ coap_put = "coap://127.0.0.1:{port}/example_data", payload = "ventilation-on" }}
"#,
        port = server.port()
    );
    let mut gw = start("gw-coap-action", &local, &upstream, &rules).await;
    publish(local.port(), "sensors/room-4", r#"{"co2":1350}"#, 1, false).await;
    alerts
        .wait_for(WAIT, is_alert)
        .await
        .expect("alert upstream");
    gw.wait_for_log("Action done.").await;
    let target = format!("coap://127.0.0.1:{}/example_data", server.port());
    let got = coap_client_run(&["-m", "get", "-B", "2", &target]).await;
    assert!(got.stdout.contains("ventilation-on"), "{got:?}");
}

/// Rules whose actions reach an MQTT and a CoAP actuator, on a gateway
/// with no cloud broker at all (no `[upstream]`, no `[commands]`): its
/// only output is the dashboard.
fn local_actions_config(local: u16, coap: u16, metrics: u16, dashboard: u16) -> String {
    format!(
        r#"
[gateway]
id = "gw-local-actions"
state_dir = "@STATE_DIR@"

[metrics]
bind = "127.0.0.1:{metrics}"

[dashboard]
enabled = true
bind = "127.0.0.1:{dashboard}"

[[adapter]]
type = "mqtt"
name = "building"
url = "mqtt://127.0.0.1:{local}"
topics = ["sensors/{{device}}"]

[[rule]]
name = "fridge-max"
kind = "threshold"
metric = "temperature"
max = 8.0
action = {{ publish = "actuators/fridge_2/alarm", payload = "on", broker = "mqtt://127.0.0.1:{local}" }}

[[rule]]
name = "co2-high"
kind = "threshold"
metric = "co2"
max = 1000.0
action = {{ coap_put = "coap://127.0.0.1:{coap}/example_data", payload = "ventilation-on" }}
"#
    )
}

#[tokio::test]
async fn local_actions_reach_mqtt_and_coap_actuators_through_the_command_path_with_no_cloud_broker()
{
    if test_support::coap_client().is_none() {
        panic!("coap-client missing (apt install libcoap3-bin)");
    }
    // libcoap's coap-server is the CoAP actuator: it keeps what is PUT.
    let server = CoapServer::start(free_udp_port()).await;
    let local = Mosquitto::start();
    let metrics = test_support::free_port();
    let dashboard = test_support::free_port();
    let mut actuator = Subscriber::start(local.port(), "actuators/#").await;
    let mut gw = GatewayProcess::start(&local_actions_config(
        local.port(),
        server.port(),
        metrics,
        dashboard,
    ));
    gw.wait_for_log("Subscribed").await;

    publish(
        local.port(),
        "sensors/fridge-2",
        r#"{"temperature":9.4}"#,
        1,
        false,
    )
    .await;
    publish(local.port(), "sensors/room-4", r#"{"co2":1350}"#, 1, false).await;
    let cmd = actuator
        .wait_for(WAIT, |m| m.topic == "actuators/fridge_2/alarm")
        .await
        .expect("the MQTT action reached the actuator");
    assert_eq!(cmd.payload, "on");
    gw.wait_for_log_count("Action done.", 2).await;
    let target = format!("coap://127.0.0.1:{}/example_data", server.port());
    let got = coap_client_run(&["-m", "get", "-B", "2", &target]).await;
    assert!(got.stdout.contains("ventilation-on"), "{got:?}");

    // Both went through the command path: counted as commands done, and
    // journaled (started, then done) under the actuators' device ids.
    let (_, body) = common::http_until(metrics, "/metrics", |_, b| {
        metrics::sample(
            b,
            r#"edge_gateway_commands_total{status="done",reason="none"}"#,
        ) == Some(2.0)
    })
    .await;
    assert_eq!(
        metrics::sample(&body, r#"edge_gateway_actions_total{outcome="ok"}"#),
        Some(2.0),
        "{body}"
    );
    let journal = std::fs::read_to_string(gw.dir.path().join("state/commands/journal")).unwrap();
    for (device, point, value) in [
        ("actuators.fridge_2.alarm", "publish", "on"),
        ("127.0.0.1:PORT.example_data", "put", "ventilation-on"),
    ] {
        let device = device.replace("PORT", &server.port().to_string());
        let done = journal.lines().any(|l| {
            let j: serde_json::Value = serde_json::from_str(l).unwrap();
            j["id"].as_str().is_some_and(|i| i.starts_with("rule-"))
                && j["device"] == device.as_str()
                && j["metric"] == point
                && j["value"] == value
                && j["status"] == "done"
        });
        assert!(done, "{device} done in the journal:\n{journal}");
    }
    // The results are on the dashboard, as a cloud command's would be.
    let (_, api) = common::http_until(
        dashboard,
        "/api/commands?device=actuators.fridge_2.alarm",
        |c, b| c == 200 && b.contains("\"done\""),
    )
    .await;
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    let row = &api["commands"][0];
    assert_eq!(
        (row["metric"].as_str(), row["value"].as_str()),
        (Some("publish"), Some("on")),
        "{api}"
    );
}

/// A lamp the cloud and a rule both switch: one allowance a device.
fn shared_actuator_config(cloud: u16, building: u16, metrics: u16) -> String {
    format!(
        r#"
[gateway]
id = "gw-shared"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{cloud}"
topic_prefix = "building/{{site}}"
max_backoff = "1s"

[metrics]
bind = "127.0.0.1:{metrics}"

[commands]
enabled = true
rate = 0.001
burst = 1

[[adapter]]
type = "mqtt"
name = "zigbee"
url = "mqtt://127.0.0.1:{building}"
topics = ["zigbee2mqtt/{{device}}"]
command_topic = "zigbee2mqtt/{{device}}/set"

[[device]]
id = "lamp-1"
name = "Lamp"
writable = ["state"]

[[rule]]
name = "daylight"
kind = "threshold"
metric = "lux"
max = 500.0
action = {{ device = "lamp-1", point = "state", payload = "OFF" }}
"#
    )
}

#[tokio::test]
async fn the_same_actuator_commanded_by_a_rule_and_by_the_cloud_has_one_rate_limit() {
    let cloud = Mosquitto::start();
    let building = Mosquitto::start();
    let metrics = test_support::free_port();
    let mut results = Subscriber::start(cloud.port(), "building/hq/+/command/result").await;
    let mut sets = Subscriber::start(building.port(), "zigbee2mqtt/+/set").await;
    let mut gw = GatewayProcess::start(&shared_actuator_config(
        cloud.port(),
        building.port(),
        metrics,
    ));
    gw.wait_for_log("Subscribed to commands on the upstream broker.")
        .await;
    // The building's adapter too: a reading published before it subscribed
    // is not for the gateway to hear.
    gw.wait_for_log("Subscribed.").await;

    // The rule's action takes the lamp's one command (burst = 1)…
    publish(
        building.port(),
        "zigbee2mqtt/motion-1",
        r#"{"lux":900}"#,
        1,
        false,
    )
    .await;
    let set = sets
        .wait_for(WAIT, |m| m.topic == "zigbee2mqtt/lamp-1/set")
        .await
        .expect("the rule's action set the lamp's declared point");
    assert_eq!(set.json(), serde_json::json!({"state": "OFF"}));
    let r = results
        .wait_for(WAIT, |m| m.json()["status"] == "done")
        .await
        .expect("the action's result");
    let r = r.json();
    assert!(
        r["id"].as_str().is_some_and(|i| i.starts_with("rule-")),
        "{r}"
    );
    assert_eq!(
        (r["device"].as_str(), r["metric"].as_str()),
        (Some("lamp-1"), Some("state"))
    );
    gw.wait_for_log("Action done.").await;

    // …so the cloud's command to the same lamp is over the rate.
    let r = crate::commands::command(
        cloud.port(),
        &mut results,
        "lamp-1",
        serde_json::json!({"id": "c-1", "metric": "state", "value": "ON"}),
    )
    .await;
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("refused"), Some("rate")),
        "{r}"
    );
    let (_, body) = common::http_until(metrics, "/metrics", |_, b| {
        metrics::sample(
            b,
            r#"edge_gateway_commands_total{status="refused",reason="rate"}"#,
        ) == Some(1.0)
    })
    .await;
    assert_eq!(
        metrics::sample(
            &body,
            r#"edge_gateway_commands_total{status="done",reason="none"}"#
        ),
        Some(1.0),
        "{body}"
    );
    assert!(
        sets.wait_for(std::time::Duration::from_millis(300), |m| m
            .payload
            .contains("ON"))
            .await
            .is_none(),
        "the refused command wrote nothing"
    );
}

const ANOMALY_RULES: &str = r#"
[[rule]]
name = "temp-anomaly"
kind = "anomaly"
metric = "temperature"

[[rule]]
name = "marker"
kind = "threshold"
metric = "marker"
max = 0.0
cooldown = "0s"
"#;

/// Readings one second apart ending now, with a level shift at 1 800.
fn anomaly_series() -> Vec<(i64, f64)> {
    let values = series(9, 2_200, 1_800, Shape::LevelShift(6.0));
    let start = (now_ms() / 1000 - values.len() as i64) * 1000;
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| (start + i as i64 * 1000, v))
        .collect()
}

/// Publishes readings, then a marker whose alert proves they were all
/// processed (one publisher, one topic: the broker keeps their order).
async fn feed(local: &Mosquitto, part: &[(i64, f64)], marker: i64) {
    let lines: Vec<String> = part
        .iter()
        .map(|(t, v)| format!(r#"{{"temperature":{v},"ts":{t}}}"#))
        .collect();
    publish_lines(local.port(), "sensors/lab-1", &lines, 1).await;
    let last = part.last().unwrap().0;
    publish(
        local.port(),
        "sensors/lab-1",
        &format!(r#"{{"marker":{marker},"ts":{last}}}"#),
        1,
        false,
    )
    .await;
}

#[tokio::test]
async fn the_learned_state_survives_a_restart() {
    let readings = anomaly_series();
    // What one uninterrupted engine says about the same readings.
    let cfg = settings::parse(ANOMALY_RULES).unwrap();
    let renderer = Renderer {
        gateway_id: "gw-restart".into(),
        prefix: "building/hq".into(),
        registry: DeviceRegistry::default(),
    };
    let mut engine = Engine::new(&cfg.rules, &cfg.devices);
    let expected: Vec<String> = readings
        .iter()
        .flat_map(|(t, v)| {
            let r = Reading::new(
                DeviceId::new("lab-1").unwrap(),
                MetricName::new("temperature").unwrap(),
                *v,
                Timestamp::from_millis(*t).unwrap(),
                TimeSource::Event,
            )
            .unwrap();
            engine.on_reading(&r)
        })
        // A raise held back by the cooldown is recorded, never sent.
        .filter(|a| a.state != AlertState::Suppressed)
        .map(|a| {
            let msg = renderer.alert(&alert_event(&a, gateway_core::SourceId::UNKNOWN));
            msg.topic + " " + &String::from_utf8(msg.payload).unwrap()
        })
        .collect();
    assert!(
        expected.iter().any(|m| m.contains("\"raised\"")),
        "the shift must raise an alert: {expected:?}"
    );

    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let mut alerts = Subscriber::start(upstream.port(), "building/hq/+/alerts").await;
    let mut gw = start("gw-restart", &local, &upstream, ANOMALY_RULES).await;
    // Restart 100 readings before the shift: a detector that forgot what it
    // learned would still be warming up when the shift comes.
    let (first, second) = readings.split_at(1_700);
    feed(&local, first, 1).await;
    let mut got: Vec<Message> = alerts
        .collect_until(WAIT, |m| {
            m.iter()
                .any(|m| m.payload.contains("\"rule\":\"marker\"") && m.payload.contains("raised"))
        })
        .await;
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));

    let dir = std::mem::replace(&mut gw.dir, tempfile::tempdir().unwrap());
    let cfg = std::fs::read_to_string(&gw.config_path).unwrap();
    assert!(
        dir.path().join("state/alerts.json").exists(),
        "state saved at shutdown"
    );
    let mut gw = GatewayProcess::start_in(dir, &cfg);
    gw.wait_for_log("Restored the alert rules' learned state.")
        .await;
    gw.wait_for_log("Subscribed").await;
    feed(&local, second, -1).await;
    got.extend(
        alerts
            .collect_until(WAIT, |m| {
                // The marker's alert clears (it was raised before the restart).
                m.iter().any(|m| {
                    m.payload.contains("\"rule\":\"marker\"") && m.payload.contains("cleared")
                })
            })
            .await,
    );
    let got: Vec<String> = got
        .into_iter()
        .filter(|m| m.payload.contains("temp-anomaly"))
        .map(|m| m.topic + " " + &m.payload)
        .collect();
    let parse = |s: &String| -> serde_json::Value {
        serde_json::from_str(s.split_once(' ').unwrap().1).unwrap()
    };
    // Upstream adds the outbox's `seq`, which an engine alone has not got.
    let unsequenced = |s: &String| -> serde_json::Value {
        let mut j = parse(s);
        let seq = j.as_object_mut().and_then(|o| o.remove("seq"));
        assert!(seq.is_some_and(|n| n.is_u64()), "seq in {s}");
        j
    };
    assert_eq!(
        got.iter().map(unsequenced).collect::<Vec<_>>(),
        expected.iter().map(parse).collect::<Vec<_>>(),
        "same alerts as one uninterrupted run"
    );
    // The raise states its numbers in °C and its score apart, keeping
    // `limit` (the score, as before) for existing consumers.
    let raised = got
        .iter()
        .map(parse)
        .find(|j| j["state"] == "raised")
        .unwrap();
    assert_eq!(raised["unit"], "°C", "{raised}");
    assert_eq!(raised["score"], raised["limit"], "{raised}");
    let text = raised["text"].as_str().unwrap();
    let (lo, hi) = (
        raised["expected"]["low"].as_f64().unwrap(),
        raised["expected"]["high"].as_f64().unwrap(),
    );
    assert!(
        text.starts_with("temp-anomaly raised anomaly: temperature ")
            && text.contains(&format!("expected {lo:.1}–{hi:.1} °C · score "))
            && !text.contains("limit"),
        "{text}"
    );
}

#[tokio::test]
async fn readings_at_the_ends_of_f64_raise_an_anomaly_and_the_gateway_goes_on() {
    // A sensor gone wrong, or an attacker, publishing ±1e308: finite, so
    // JSON and the gateway accept them. The detector once panicked on
    // them, which the release build's abort made a crash on every start
    // (the journal replays what was accepted).
    let calm = anomaly_series();
    let (calm, _) = calm.split_at(1_500);
    let last = calm.last().unwrap().0;
    let wild: Vec<(i64, f64)> = (1..=100)
        .map(|i| (last + i * 1000, if i % 2 == 0 { -1e308 } else { 1e308 }))
        .collect();
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let mut alerts = Subscriber::start(upstream.port(), "building/hq/+/alerts").await;
    let mut gw = start("gw-wild", &local, &upstream, ANOMALY_RULES).await;
    feed(&local, &[calm, &wild].concat(), 1).await;
    let got = alerts
        .collect_until(WAIT, |m| {
            m.iter()
                .any(|m| m.payload.contains("\"rule\":\"marker\"") && m.payload.contains("raised"))
        })
        .await;
    let raised: Vec<serde_json::Value> = got
        .iter()
        .filter(|m| m.payload.contains("temp-anomaly"))
        .map(|m| serde_json::from_str(&m.payload).unwrap())
        .filter(|j: &serde_json::Value| j["state"] == "raised")
        .collect();
    assert!(
        raised
            .iter()
            .any(|j| j["observed"].as_f64().map(f64::abs) == Some(1e308)),
        "{raised:?}"
    );
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// `edge_gateway_outbox_messages` from `/metrics`.
fn outbox_messages(body: &str) -> f64 {
    test_support::metrics::sample(body, "edge_gateway_outbox_messages").unwrap_or(0.0)
}

#[tokio::test]
async fn an_alert_overtakes_the_windows_waiting_for_the_upstream_broker() {
    let local = Mosquitto::start();
    let mut upstream = Mosquitto::start_persistent();
    // A persistent session: the broker keeps what arrives while this
    // subscriber reconnects after the broker's restart.
    let mut seen =
        Subscriber::start_persistent(upstream.port(), "building/hq/#", "overtake-watcher").await;
    let metrics = test_support::free_port();
    // drain_rate = 1: the windows stored while the broker was away go out
    // one per second afterwards, so an alert behind them would wait ~10 s.
    let cfg = config("gw-urgent", local.port(), upstream.port(), "1s", "0s")
        + &format!(
            r#"
[outbox]
drain_rate = 1

[metrics]
bind = "127.0.0.1:{metrics}"

[[rule]]
name = "too-hot"
kind = "threshold"
metric = "temperature"
max = 50.0
"#
        );
    assert!(cfg.contains("drain_rate = 1"));
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Subscribed").await;
    gw.wait_for_log("Connected upstream.").await;
    upstream.stop();
    gw.wait_for_log("Lost the upstream broker").await;

    for i in 0..10 {
        let topic = format!("sensors/dev-{i}");
        publish(local.port(), &topic, r#"{"temperature":20.5}"#, 1, false).await;
    }
    let (_, body) =
        common::http_until(metrics, "/metrics", |_, b| outbox_messages(b) >= 10.0).await;
    let windows_waiting = outbox_messages(&body);
    publish(
        local.port(),
        "sensors/oven",
        r#"{"temperature":99.0}"#,
        1,
        false,
    )
    .await;
    common::http_until(metrics, "/metrics", |_, b| {
        outbox_messages(b) > windows_waiting
    })
    .await;

    upstream.restart();
    let mut windows_first = 0;
    loop {
        let m = seen.next(WAIT).await.expect("the alert upstream");
        if m.topic == "building/hq/oven/alerts" {
            assert_eq!(m.json()["state"], "raised");
            break;
        }
        if m.topic.ends_with("/aggregated") {
            windows_first += 1;
        }
    }
    assert_eq!(
        windows_first, 0,
        "the alert waited behind {windows_first} of the {windows_waiting} stored messages"
    );
}

#[tokio::test]
async fn an_anomaly_rule_without_a_metric_catches_a_fridge_warming_with_its_door_shut() {
    // The template's device model: one rule without `metric` learns how a
    // device's metrics move together. `validate` once refused the rule it
    // documents, so no user could turn it on.
    use anomaly::synthetic::{building, Building};
    const RULES: &str = r#"
[[rule]]
name = "fridge-model"
kind = "anomaly"
device = "fridge-1"

[[rule]]
name = "marker"
kind = "threshold"
metric = "marker"
max = 0.0
cooldown = "0s"
"#;
    let fault = 10 * 1440 + 180;
    let minutes = fault + 6 * 60;
    let first_ms = (now_ms() / 60_000 - minutes as i64) * 60_000;
    let mut by_minute: Vec<serde_json::Map<String, serde_json::Value>> =
        vec![serde_json::Map::new(); minutes];
    for (minute, metric, value) in building(3, minutes, Some(fault), Building::FridgeWarmsDoorShut)
    {
        by_minute[minute].insert(metric.into(), value.into());
    }
    let lines: Vec<String> = by_minute
        .into_iter()
        .enumerate()
        .map(|(minute, mut fields)| {
            fields.insert("ts".into(), (first_ms + minute as i64 * 60_000).into());
            serde_json::Value::Object(fields).to_string()
        })
        .collect();
    let (before, after) = lines.split_at(fault);

    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let mut alerts = Subscriber::start(upstream.port(), "building/hq/+/alerts").await;
    let mut gw = start("gw-fridge", &local, &upstream, RULES).await;
    publish_lines(local.port(), "sensors/fridge-1", before, 1).await;
    // Ten normal days make a model (fitted beside the pipeline); the fault
    // waits for it, as the fridge's would for its first day.
    gw.wait_for_log("Anomaly rule learned how the device's metrics move together.")
        .await;
    publish_lines(local.port(), "sensors/fridge-1", after, 1).await;
    let marker = format!(
        r#"{{"marker":1,"ts":{}}}"#,
        first_ms + (minutes as i64 - 1) * 60_000
    );
    publish(local.port(), "sensors/fridge-1", &marker, 1, false).await;
    let got = alerts
        .collect_until(WAIT, |m| {
            m.iter()
                .any(|m| m.payload.contains("\"rule\":\"marker\"") && m.payload.contains("raised"))
        })
        .await;
    let raised: Vec<serde_json::Value> = got
        .iter()
        .map(|m| serde_json::from_str(&m.payload).unwrap())
        .filter(|j: &serde_json::Value| j["rule"] == "fridge-model" && j["state"] == "raised")
        .collect();
    let fault_ms = first_ms + fault as i64 * 60_000;
    let caught = raised.iter().find(|j| {
        j["reason"] == "multivariate"
            && j["metric"] == "temperature"
            && j["device"] == "fridge-1"
            && Timestamp::parse_rfc3339(j["ts"].as_str().unwrap_or(""))
                .is_ok_and(|t| t.as_millis() >= fault_ms)
    });
    assert!(caught.is_some(), "{raised:#?}");
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}
