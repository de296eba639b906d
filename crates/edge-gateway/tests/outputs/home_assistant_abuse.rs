//! `[home_assistant]` against strangers on the same brokers, played on the
//! real binary with a real Mosquitto and read back with `mosquitto_sub`:
//!
//! - look-alike ids (a device `fridge` sending `2_temperature` beside the
//!   kitchen's `fridge_2`, `hall way` / `hall_way`, a MAC and its
//!   underscore spelling, two Chinese room names) each get an entity of
//!   their own, the kitchen's keeps its id, and a restart changes none;
//! - fifty `online`s on `homeassistant/status` make one announcement, and
//!   three hundred made-up devices stop at `max_entities` without a state
//!   dropped; three thousand devices and five `online`s drop no state;
//! - a stranger not heard for `forget_after`, a `[[device]]` removed from
//!   the config, and a config left at an id of the release before leave
//!   nothing retained behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use common::{http_get, GatewayProcess, WAIT};
use test_support::{free_port, publish, publish_lines, Message, Mosquitto, Subscriber};

fn config(gw: &str, broker: u16, metrics: u16, home_assistant: &str, devices: &str) -> String {
    format!(
        r#"
[gateway]
id = "{gw}"
site = "hq"
state_dir = "@STATE_DIR@"

[aggregation]
window = "1s"
grace = "1s"

[metrics]
bind = "127.0.0.1:{metrics}"

[home_assistant]
enabled = true
broker = "mqtt://127.0.0.1:{broker}"
{home_assistant}

[[adapter]]
type = "mqtt"
name = "local-sensors"
url = "mqtt://127.0.0.1:{broker}"
topics = [
  "sensors/data/{{device}}/{{metric}}",
  {{ pattern = "sensors/batch", format = "json", device_field = "id" }},
]
max_backoff = "1s"
{devices}
"#
    )
}

/// A counter from `/metrics` (0 when absent), summed over its labels
/// where `label` is empty.
async fn metric(port: u16, name: &str, label: &str) -> u64 {
    let (_, body) = http_get(port, "/metrics").await;
    let total = if label.is_empty() {
        test_support::metrics::sum(&body, name)
    } else {
        test_support::metrics::sum_with(&body, name, label).unwrap_or(0.0)
    };
    total as u64
}

async fn metric_until(port: u16, name: &str, label: &str, done: impl Fn(u64) -> bool) -> u64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = metric(port, name, label).await;
        if done(v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}{label} stayed at {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Stops the gateway as systemd does (it writes down what it announced)
/// and starts it again on the same state directory with `config`.
async fn restart(mut gw: GatewayProcess, config: &str) -> GatewayProcess {
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    let mut gw = GatewayProcess::start_in(gw.dir, config);
    gw.wait_for_log("Subscribed").await;
    gw
}

/// The latest non-empty config per topic, once `n` distinct ones are in.
async fn configs(sub: &mut Subscriber, n: usize) -> BTreeMap<String, Message> {
    let msgs = sub
        .collect_until(WAIT, |msgs| {
            let seen: BTreeSet<&str> = msgs
                .iter()
                .filter(|m| m.topic.ends_with("/config") && !m.payload.is_empty())
                .map(|m| m.topic.as_str())
                .collect();
            seen.len() >= n
        })
        .await;
    let mut got = BTreeMap::new();
    for m in msgs {
        if m.topic.ends_with("/config") && !m.payload.is_empty() {
            got.insert(m.topic.clone(), m);
        }
    }
    assert!(
        got.len() >= n,
        "{} configs of {n}: {:?}",
        got.len(),
        got.keys()
    );
    got
}

#[tokio::test]
async fn look_alike_ids_get_entities_of_their_own_across_restarts() {
    let broker = Mosquitto::start();
    let metrics = free_port();
    let gw_id = "gw-att";
    let cfg = config(
        gw_id,
        broker.port(),
        metrics,
        "",
        "[[device]]\nid = \"fridge_2\"\nname = \"Kitchen fridge\"\n",
    );
    let mut discovery = Subscriber::start(broker.port(), "homeassistant/#").await;
    let mut states = Subscriber::start(broker.port(), &format!("edge-gateway/{gw_id}/#")).await;
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Subscribed").await;
    metric_until(metrics, "edge_gateway_home_assistant_connected", "", |v| {
        v == 1
    })
    .await;

    // device id → (topic it sends on, value it sends).
    let sent: Vec<(&str, &str, &str)> = vec![
        ("fridge_2", "sensors/data/fridge_2/temperature", "4.5"),
        ("fridge", "sensors/data/fridge/2_temperature", "99"),
        ("hall way", "sensors/data/hall way/temperature", "20.5"),
        ("hall_way", "sensors/data/hall_way/temperature", "21.5"),
        (
            "aa:bb:cc:dd:ee:01",
            "sensors/data/AA:BB:CC:DD:EE:01/temperature",
            "22.5",
        ),
        (
            "aa_bb_cc_dd_ee_01",
            "sensors/data/aa_bb_cc_dd_ee_01/temperature",
            "23.5",
        ),
        ("会议室-1", "sensors/data/会议室-1/temperature", "24.5"),
        ("办公室-1", "sensors/data/办公室-1/temperature", "25.5"),
    ];
    for (_, topic, value) in &sent {
        publish(broker.port(), topic, value, 1, false).await;
    }
    let first = configs(&mut discovery, sent.len()).await;
    assert_eq!(first.len(), sent.len(), "{:?}", first.keys());

    // One entity, one device block and one state topic per device.
    let mut unique_ids = BTreeSet::new();
    let mut identifiers = BTreeSet::new();
    let mut state_of: BTreeMap<String, String> = BTreeMap::new();
    for m in first.values() {
        let c = m.json();
        let object_id = m.topic.split('/').nth(2).unwrap();
        assert!(
            object_id
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-'),
            "{object_id}"
        );
        assert!(unique_ids.insert(c["unique_id"].as_str().unwrap().to_string()));
        assert!(identifiers.insert(c["device"]["identifiers"][0].to_string()));
        let name = c["device"]["name"].as_str().unwrap().to_string();
        let previous = state_of.insert(name.clone(), c["state_topic"].as_str().unwrap().into());
        assert!(previous.is_none(), "two entities named {name}");
    }
    assert_eq!(state_of.len(), sent.len(), "{state_of:?}");
    let state_topics: BTreeSet<&String> = state_of.values().collect();
    assert_eq!(state_topics.len(), sent.len());

    // The kitchen fridge keeps the id it had; the stranger's 99 is not it.
    let kitchen = format!("homeassistant/sensor/{gw_id}_fridge_2_temperature/config");
    let k = first[&kitchen].json();
    assert_eq!(k["device"]["name"], "Kitchen fridge");
    assert_eq!(k["unique_id"], format!("{gw_id}_fridge_2_temperature"));
    // Every device's state topic carries its own value.
    let want: BTreeMap<String, String> = sent
        .iter()
        .map(|(d, _, v)| {
            let name = if *d == "fridge_2" {
                "Kitchen fridge"
            } else {
                d
            };
            (state_of[name].clone(), v.to_string())
        })
        .collect();
    let got = states
        .collect_until(WAIT, |msgs| {
            want.iter()
                .all(|(t, v)| msgs.iter().any(|m| &m.topic == t && &m.payload == v))
        })
        .await;
    for (topic, value) in &want {
        let on_topic: Vec<&str> = got
            .iter()
            .filter(|m| &m.topic == topic)
            .map(|m| m.payload.as_str())
            .collect();
        assert_eq!(on_topic, [value.as_str()], "{topic}");
    }

    // A restart: the same ids, nothing announced or cleared again.
    let gw = restart(gw, &cfg).await;
    let mut again = Subscriber::start(broker.port(), "homeassistant/#").await;
    let retained = configs(&mut again, sent.len()).await;
    let ids_again: BTreeSet<String> = retained
        .values()
        .map(|m| m.json()["unique_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids_again, unique_ids);
    publish(
        broker.port(),
        "sensors/data/fridge_2/temperature",
        "4.6",
        1,
        false,
    )
    .await;
    states
        .wait_for(WAIT, |m| {
            m.topic == state_of["Kitchen fridge"] && m.payload == "4.6"
        })
        .await
        .expect("the kitchen's state after the restart");
    for kind in ["config", "clear"] {
        let n = metric(
            metrics,
            "edge_gateway_home_assistant_published_total",
            &format!("kind=\"{kind}\""),
        )
        .await;
        assert_eq!(n, 0, "{kind} published again after a restart");
    }
    drop(gw);
}

#[tokio::test]
async fn online_floods_and_made_up_devices_get_bounded_answers() {
    let broker = Mosquitto::start();
    let metrics = free_port();
    let gw_id = "gw-flood";
    let cfg = config(
        gw_id,
        broker.port(),
        metrics,
        "announce_interval = \"1h\"\nmax_entities = 40",
        "[[device]]\nid = \"kitchen\"\nname = \"Kitchen\"\nprimary = \"temperature\"\n",
    );
    let mut discovery = Subscriber::start(broker.port(), "homeassistant/#").await;
    let mut states = Subscriber::start(broker.port(), &format!("edge-gateway/{gw_id}/#")).await;
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Subscribed").await;
    metric_until(metrics, "edge_gateway_home_assistant_connected", "", |v| {
        v == 1
    })
    .await;

    // Two real devices not in [[device]], then 300 made-up ones, then the
    // kitchen: all on one topic, so the kitchen's state says all are in.
    let mut lines: Vec<String> = ["hall-1", "hall-2"]
        .iter()
        .map(|d| format!(r#"{{"id":"{d}","temperature":20}}"#))
        .collect();
    lines.extend((0..300).map(|i| format!(r#"{{"id":"junk-{i}","temperature":{i}}}"#)));
    lines.push(r#"{"id":"kitchen","temperature":5.5}"#.into());
    publish_lines(broker.port(), "sensors/batch", &lines, 1).await;
    let kitchen_state = format!("edge-gateway/{gw_id}/kitchen/temperature");
    states
        .wait_for(WAIT, |m| m.topic == kitchen_state && m.payload == "5.5")
        .await
        .expect("the kitchen, after the flood");

    let announced = configs(&mut discovery, 41).await;
    let junk = announced.keys().filter(|t| t.contains("junk")).count();
    assert_eq!(junk + 2, 40, "max_entities for devices not in [[device]]");
    assert_eq!(announced.len(), 41, "{:?}", announced.keys());
    assert!(announced.keys().any(|t| t.contains("_kitchen_")));
    let refused = metric(metrics, "edge_gateway_home_assistant_refused_total", "").await;
    assert_eq!(refused, 300 - junk as u64);
    assert_eq!(
        metric(metrics, "edge_gateway_home_assistant_dropped_total", "").await,
        0,
        "no state dropped"
    );

    // Case variants of the registered kitchen are strangers to Home
    // Assistant: past max_entities they are refused, not announced as
    // more devices named "Kitchen" (they were, uncapped and never
    // forgotten).
    let variants: Vec<String> = ["KITCHEN", "Kitchen", "kItchen"]
        .iter()
        .map(|d| format!(r#"{{"id":"{d}","temperature":1}}"#))
        .collect();
    publish_lines(broker.port(), "sensors/batch", &variants, 1).await;
    metric_until(
        metrics,
        "edge_gateway_home_assistant_refused_total",
        "",
        |v| v == 300 - junk as u64 + 3,
    )
    .await;

    // Fifty `online`s from anyone on the broker: one announcement.
    let before = metric(
        metrics,
        "edge_gateway_home_assistant_published_total",
        "kind=\"config\"",
    )
    .await;
    let onlines: Vec<String> = (0..50).map(|_| "online".to_string()).collect();
    publish_lines(broker.port(), "homeassistant/status", &onlines, 1).await;
    metric_until(
        metrics,
        "edge_gateway_home_assistant_births_total",
        "",
        |v| v == 50,
    )
    .await;
    let after = metric(
        metrics,
        "edge_gateway_home_assistant_published_total",
        "kind=\"config\"",
    )
    .await;
    assert_eq!(after - before, 41, "one config per entity, once");
    // Its last states follow the configs, once.
    let resent = states
        .collect_until(WAIT, |msgs| {
            msgs.iter()
                .any(|m| m.topic == kitchen_state && m.payload == "5.5")
        })
        .await;
    assert!(resent.len() <= 2 * 41 + 2, "{} states", resent.len());
    assert_eq!(
        metric(metrics, "edge_gateway_home_assistant_dropped_total", "").await,
        0
    );
    drop(gw);
}

/// The issue's numbers: 3 000 devices and 5 `online`s made 25 288
/// publishes and dropped 917 states.
#[tokio::test]
async fn three_thousand_devices_and_five_onlines_drop_no_state() {
    let broker = Mosquitto::start();
    let metrics = free_port();
    let gw_id = "gw-fleet";
    let cfg = config(
        gw_id,
        broker.port(),
        metrics,
        "announce_interval = \"1h\"",
        "",
    );
    let mut states = Subscriber::start(broker.port(), &format!("edge-gateway/{gw_id}/#")).await;
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Subscribed").await;
    metric_until(metrics, "edge_gateway_home_assistant_connected", "", |v| {
        v == 1
    })
    .await;
    let config_total = "kind=\"config\"";
    let published = "edge_gateway_home_assistant_published_total";

    let lines: Vec<String> = (0..3000)
        .map(|i| format!(r#"{{"id":"room-{i}","temperature":{}}}"#, 20 + i % 5))
        .collect();
    publish_lines(broker.port(), "sensors/batch", &lines, 1).await;
    metric_until(metrics, published, config_total, |v| v == 3000).await;

    let onlines: Vec<String> = (0..5).map(|_| "online".to_string()).collect();
    publish_lines(broker.port(), "homeassistant/status", &onlines, 1).await;
    metric_until(
        metrics,
        "edge_gateway_home_assistant_births_total",
        "",
        |v| v == 5,
    )
    .await;
    // Readings go on while the configs go out again.
    let more: Vec<String> = (0..3000)
        .map(|i| format!(r#"{{"id":"room-{i}","temperature":{}.5}}"#, 20 + i % 5))
        .collect();
    publish_lines(broker.port(), "sensors/batch", &more, 1).await;
    metric_until(metrics, published, config_total, |v| v == 6000).await;
    publish(
        broker.port(),
        "sensors/data/room-0/temperature",
        "19.5",
        1,
        false,
    )
    .await;
    states
        .wait_for(WAIT, |m| {
            m.topic == format!("edge-gateway/{gw_id}/room-0/temperature") && m.payload == "19.5"
        })
        .await
        .expect("a state after the announcement");
    assert_eq!(
        metric(metrics, "edge_gateway_home_assistant_dropped_total", "").await,
        0,
        "no state dropped"
    );
    assert_eq!(
        metric(metrics, published, config_total).await,
        6000,
        "one announcement"
    );
    let mut figures = String::new();
    for kind in ["config", "clear", "state", "availability"] {
        let n = metric(metrics, published, &format!("kind=\"{kind}\"")).await;
        figures.push_str(&format!(" {kind}={n}"));
    }
    eprintln!("3000 devices, 6001 readings, 5 onlines: published{figures}");
    drop(gw);
}

#[tokio::test]
async fn strangers_removed_devices_and_old_ids_leave_nothing_retained() {
    let broker = Mosquitto::start();
    let metrics = free_port();
    let gw_id = "gw-tidy";
    let kitchen = "[[device]]\nid = \"kitchen\"\nname = \"Kitchen\"\nprimary = \"temperature\"\n";
    let cfg = config(
        gw_id,
        broker.port(),
        metrics,
        "forget_after = \"2s\"",
        kitchen,
    );
    // What the release before left: a config at the flattened id of
    // `hall way`, and its record.
    let legacy = format!("homeassistant/sensor/{gw_id}_hall_way_temperature/config");
    publish(broker.port(), &legacy, r#"{"name":"old"}"#, 1, true).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    std::fs::write(
        dir.path().join("state/home-assistant.json"),
        r#"{"version":1,"entities":[{"component":"sensor","device":"hall way","key":"temperature","digest":1,"registered":false}]}"#,
    )
    .unwrap();

    let mut sub = Subscriber::start(broker.port(), "#").await;
    let mut gw = GatewayProcess::start_in(dir, &cfg);
    gw.wait_for_log("Subscribed").await;
    sub.wait_for(WAIT, |m| m.topic == legacy && m.payload.is_empty())
        .await
        .expect("the old id's config emptied");
    let hall = sub
        .wait_for(WAIT, |m| {
            m.topic.ends_with("/config") && m.topic.contains("hall_20_way") && !m.payload.is_empty()
        })
        .await
        .expect("hall way announced at its own id");
    assert_eq!(hall.json()["device"]["name"], "hall way");

    // The kitchen and a visitor speak; the visitor never again.
    publish(
        broker.port(),
        "sensors/data/kitchen/temperature",
        "5",
        1,
        false,
    )
    .await;
    publish(
        broker.port(),
        "sensors/data/visitor-1/temperature",
        "21",
        1,
        false,
    )
    .await;
    let visitor_config = format!("homeassistant/sensor/{gw_id}_visitor-1_temperature/config");
    let visitor_availability = format!("edge-gateway/{gw_id}/visitor-1/availability");
    let kitchen_config = format!("homeassistant/sensor/{gw_id}_kitchen_temperature/config");
    let kitchen_availability = format!("edge-gateway/{gw_id}/kitchen/availability");
    sub.wait_for(WAIT, |m| m.topic == visitor_config && !m.payload.is_empty())
        .await
        .expect("the visitor announced");
    let seen = sub
        .collect_until(WAIT, |msgs| {
            [&visitor_config, &visitor_availability]
                .iter()
                .all(|t| msgs.iter().any(|m| &&m.topic == t && m.payload.is_empty()))
        })
        .await;
    for t in [&visitor_config, &visitor_availability] {
        assert!(
            seen.iter().any(|m| &m.topic == t && m.payload.is_empty()),
            "{t} emptied after forget_after"
        );
    }
    assert!(
        !seen
            .iter()
            .any(|m| m.topic == kitchen_config && m.payload.is_empty()),
        "a [[device]] device is not forgotten"
    );

    // The kitchen removed from the config: its config and its retained
    // availability are emptied.
    let cfg = config(gw_id, broker.port(), metrics, "forget_after = \"2s\"", "");
    let _gw = restart(gw, &cfg).await;
    let seen = sub
        .collect_until(WAIT, |msgs| {
            [&kitchen_config, &kitchen_availability]
                .iter()
                .all(|t| msgs.iter().any(|m| &&m.topic == t && m.payload.is_empty()))
        })
        .await;
    for t in [&kitchen_config, &kitchen_availability] {
        assert!(
            seen.iter().any(|m| &m.topic == t && m.payload.is_empty()),
            "{t} emptied after the kitchen left the config"
        );
    }
    let mut late = Subscriber::start(broker.port(), &kitchen_availability).await;
    assert!(
        late.next(std::time::Duration::from_millis(500))
            .await
            .is_none(),
        "nothing retained on {kitchen_availability}"
    );
}
