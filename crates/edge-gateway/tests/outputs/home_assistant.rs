//! `[home_assistant]` against the real binary and a real Mosquitto, read
//! back by `mosquitto_sub` the way Home Assistant reads it: every config
//! checked against the MQTT sensor schema (required keys, a unit each
//! device class accepts, unique ids), availability, Home Assistant's
//! restart (its birth message), the gateway's restart (same ids, nothing
//! sent again), a device removed from the registry (config cleared), and
//! nothing at all under `homeassistant/` when the section is absent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{http_until, GatewayProcess, WAIT};
use serde_json::Value;
use test_support::{free_port, publish, Message, Mosquitto, Subscriber};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

const GW: &str = "gw-ha";

/// Units Home Assistant accepts per sensor device class (its sensor
/// integration's table, for the classes a building's sensors have).
fn units_of_class(class: &str) -> Option<&'static [&'static str]> {
    Some(match class {
        "temperature" => &["°C", "°F", "K"],
        "humidity" | "battery" | "moisture" => &["%"],
        "carbon_dioxide" | "carbon_monoxide" => &["ppm"],
        "volatile_organic_compounds_parts" => &["ppm", "ppb"],
        "volatile_organic_compounds" | "pm1" | "pm25" | "pm10" => &["µg/m³", "mg/m³"],
        "pressure" | "atmospheric_pressure" => &[
            "Pa", "hPa", "kPa", "bar", "cbar", "mbar", "mmHg", "inHg", "psi",
        ],
        "illuminance" => &["lx"],
        "energy" => &["Wh", "kWh", "MWh", "mWh", "GJ", "MJ"],
        "power" => &["W", "kW", "mW", "MW"],
        "current" => &["A", "mA"],
        "voltage" => &["V", "mV", "µV", "kV"],
        "signal_strength" => &["dB", "dBm"],
        _ => return None,
    })
}

/// Checks one discovery message as Home Assistant's MQTT sensor schema
/// would, returning its unique id.
fn check_sensor(m: &Message) -> String {
    let c = m.json();
    let topic_parts: Vec<&str> = m.topic.split('/').collect();
    assert_eq!(topic_parts.len(), 4, "{}", m.topic);
    assert_eq!(topic_parts[0], "homeassistant");
    assert_eq!(topic_parts[1], "sensor");
    assert_eq!(topic_parts[3], "config");
    let object_id = topic_parts[2];
    assert!(
        object_id
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-'),
        "object id {object_id}"
    );
    assert!(m.retained || m.qos >= 1, "config not retained: {}", m.topic);
    let unique_id = c["unique_id"].as_str().expect("unique_id").to_string();
    assert!(unique_id.starts_with(&format!("{GW}_")), "{unique_id}");
    let state_topic = c["state_topic"].as_str().expect("state_topic (required)");
    assert!(!state_topic.contains(['+', '#']), "{state_topic}");
    let device = &c["device"];
    assert!(
        device["identifiers"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "device.identifiers: {c}"
    );
    assert!(device["name"].is_string(), "device.name: {c}");
    let state_class = c["state_class"].as_str().expect("state_class");
    assert!(
        ["measurement", "total", "total_increasing"].contains(&state_class),
        "{state_class}"
    );
    if let Some(class) = c.get("device_class").and_then(Value::as_str) {
        let allowed = units_of_class(class).unwrap_or_else(|| panic!("unknown class {class}"));
        let unit = c["unit_of_measurement"]
            .as_str()
            .expect("unit with a class");
        assert!(
            allowed.contains(&unit),
            "{unique_id}: {unit} is not a unit of {class}"
        );
        if class == "energy" {
            assert_ne!(state_class, "measurement");
        }
    }
    assert!(c["value_template"].is_string());
    let availability = c["availability"].as_array().expect("availability");
    assert!(
        availability
            .iter()
            .any(|a| a["topic"] == format!("edge-gateway/{GW}/status")),
        "{c}"
    );
    assert_eq!(c["availability_mode"], "all");
    assert_eq!(c["expire_after"], 2700);
    unique_id
}

fn config(broker: u16, line_port: u16, metrics: u16, with_kitchen: bool) -> String {
    let kitchen = if with_kitchen {
        r#"
[[device]]
id = "a4:c1:38:aa:bb:cc"
name = "Kitchen"
primary = "temperature"
"#
    } else {
        ""
    };
    format!(
        r#"
[gateway]
id = "{GW}"
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
expire_after = "45m"

[[adapter]]
type = "mqtt"
name = "local-sensors"
url = "mqtt://127.0.0.1:{broker}"
topics = ["sensors/data/{{device}}/{{metric}}"]
max_backoff = "1s"

[[adapter]]
type = "tcp_line"
name = "bme680-tcp"
bind = "127.0.0.1:{line_port}"
format = "csv"
columns = ["temperature", "pressure", "humidity", "gas"]
device = "bme680-lab"

[[device]]
id = "node-7"
name = "Meeting room CO2"

[[rule]]
name = "co2-high"
kind = "threshold"
metric = "co2"
max = 1000.0
{kitchen}
"#
    )
}

/// A BME680 on an ESP32 sends one CSV line and closes.
async fn send_line(port: u16, line: &str) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(format!("{line}\n").as_bytes()).await.unwrap();
    s.shutdown().await.unwrap();
}

/// The latest non-empty config per topic, once all of `topics` arrived.
async fn configs(sub: &mut Subscriber, topics: &BTreeSet<String>) -> BTreeMap<String, Message> {
    let mut got = BTreeMap::new();
    let msgs = sub
        .collect_until(WAIT, |msgs| {
            let seen: BTreeSet<&str> = msgs
                .iter()
                .filter(|m| m.topic.ends_with("/config") && !m.payload.is_empty())
                .map(|m| m.topic.as_str())
                .collect();
            topics.iter().all(|t| seen.contains(t.as_str()))
        })
        .await;
    for m in msgs {
        if m.topic.ends_with("/config") && !m.payload.is_empty() {
            got.insert(m.topic.clone(), m);
        }
    }
    let missing: Vec<&String> = topics.iter().filter(|t| !got.contains_key(*t)).collect();
    assert!(
        missing.is_empty(),
        "no config on {missing:?}; got {:?}",
        got.keys()
    );
    got
}

fn sensor_topic(device_slug: &str, metric: &str) -> String {
    format!("homeassistant/sensor/{GW}_{device_slug}_{metric}/config")
}

#[tokio::test]
async fn devices_from_mqtt_and_tcp_appear_with_valid_configs_and_survive_restarts() {
    let broker = Mosquitto::start();
    let (line_port, metrics) = (free_port(), free_port());
    let mut discovery = Subscriber::start(broker.port(), "homeassistant/#").await;
    let mut states = Subscriber::start(broker.port(), &format!("edge-gateway/{GW}/#")).await;

    let mut gw = GatewayProcess::start(&config(broker.port(), line_port, metrics, true));
    gw.wait_for_log("Metrics endpoint listening").await;
    http_until(metrics, "/health", |code, _| code == 200).await;
    // The line port answers once the adapter has bound it, which `/health`
    // does not wait for.
    gw.wait_for_log("Listening for lines.").await;
    states
        .wait_for(WAIT, |m| {
            m.topic == format!("edge-gateway/{GW}/status") && m.payload == "online"
        })
        .await
        .expect("birth of the gateway");
    // Retained: Home Assistant started later reads it at once.
    let mut late = Subscriber::start(broker.port(), &format!("edge-gateway/{GW}/status")).await;
    let birth = late.next(WAIT).await.expect("a retained status");
    assert!(birth.retained && birth.payload == "online", "{birth:?}");

    // A registered device's primary metric is announced before it speaks.
    let kitchen_temp = sensor_topic("a4_c1_38_aa_bb_cc", "temperature");
    configs(&mut discovery, &BTreeSet::from([kitchen_temp.clone()])).await;

    // A BLE-style MAC in upper case over MQTT, a CO2 node, a TCP node.
    publish(
        broker.port(),
        "sensors/data/A4:C1:38:AA:BB:CC/temperature",
        "21.5",
        1,
        false,
    )
    .await;
    publish(
        broker.port(),
        "sensors/data/A4:C1:38:AA:BB:CC/humidity",
        "48.2",
        1,
        false,
    )
    .await;
    publish(broker.port(), "sensors/data/node-7/co2", "612", 1, false).await;
    publish(broker.port(), "sensors/data/node-7/battery", "87", 1, false).await;
    send_line(line_port, "21.34,1002.10,41.00,12000").await;

    let expected: BTreeSet<String> = [
        ("a4_c1_38_aa_bb_cc", "temperature"),
        ("a4_c1_38_aa_bb_cc", "humidity"),
        ("node-7", "co2"),
        ("node-7", "battery"),
        ("bme680-lab", "temperature"),
        ("bme680-lab", "pressure"),
        ("bme680-lab", "humidity"),
        ("bme680-lab", "gas"),
    ]
    .iter()
    .map(|(d, m)| sensor_topic(d, m))
    .collect();
    let first = configs(&mut discovery, &expected).await;
    let mut ids = BTreeSet::new();
    for m in first.values() {
        assert!(
            ids.insert(check_sensor(m)),
            "duplicate unique_id in {}",
            m.topic
        );
    }
    let c = |d: &str, metric: &str| first[&sensor_topic(d, metric)].json();
    assert_eq!(
        c("a4_c1_38_aa_bb_cc", "temperature")["device"]["name"],
        "Kitchen"
    );
    assert_eq!(
        c("a4_c1_38_aa_bb_cc", "temperature")["device_class"],
        "temperature"
    );
    assert_eq!(
        c("a4_c1_38_aa_bb_cc", "humidity")["unit_of_measurement"],
        "%"
    );
    assert_eq!(c("node-7", "co2")["device"]["name"], "Meeting room CO2");
    assert_eq!(c("node-7", "co2")["device_class"], "carbon_dioxide");
    assert_eq!(c("node-7", "battery")["device_class"], "battery");
    assert_eq!(c("node-7", "co2")["device"]["model"], "MQTT sensor");
    assert_eq!(c("bme680-lab", "pressure")["unit_of_measurement"], "hPa");
    assert_eq!(
        c("bme680-lab", "pressure")["device"]["model"],
        "TCP line sensor"
    );
    // One device block per device, whatever the metric.
    assert_eq!(
        c("bme680-lab", "gas")["device"]["identifiers"],
        c("bme680-lab", "pressure")["device"]["identifiers"]
    );
    assert!(c("bme680-lab", "gas").get("device_class").is_none());

    // States follow on the state topic, with the device marked online.
    let co2_state = c("node-7", "co2")["state_topic"]
        .as_str()
        .unwrap()
        .to_string();
    let node_availability = c("node-7", "co2")["availability"][1]["topic"]
        .as_str()
        .unwrap()
        .to_string();
    states
        .wait_for(WAIT, |m| {
            m.topic == node_availability && m.payload == "online"
        })
        .await
        .expect("node-7 online");
    publish(broker.port(), "sensors/data/node-7/co2", "640", 1, false).await;
    states
        .wait_for(WAIT, |m| m.topic == co2_state && m.payload == "640")
        .await
        .expect("co2 state");

    // An alert rule becomes a problem sensor, on.
    publish(broker.port(), "sensors/data/node-7/co2", "1500", 1, false).await;
    let alert_topic = format!("homeassistant/binary_sensor/{GW}_node-7_alert_co2-high/config");
    let alert = discovery
        .wait_for(WAIT, |m| m.topic == alert_topic)
        .await
        .expect("alert config");
    let a = alert.json();
    assert_eq!(a["device_class"], "problem");
    assert_eq!(
        a["device"]["identifiers"],
        c("node-7", "co2")["device"]["identifiers"]
    );
    let alert_state = a["state_topic"].as_str().unwrap().to_string();
    states
        .wait_for(WAIT, |m| m.topic == alert_state && m.payload == "ON")
        .await
        .expect("alert state ON");

    // Home Assistant restarts: its birth brings every config back.
    publish(broker.port(), "homeassistant/status", "online", 1, false).await;
    let mut with_alert = expected.clone();
    with_alert.insert(alert_topic.clone());
    let again = configs(&mut discovery, &with_alert).await;
    assert_eq!(again[&alert_topic].json()["unique_id"], a["unique_id"]);
    for (topic, m) in again.iter().filter(|(t, _)| **t != alert_topic) {
        assert_eq!(m.json()["unique_id"], first[topic].json()["unique_id"]);
    }

    // The gateway stops: offline, retained (not the last will: a clean stop).
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    states
        .wait_for(WAIT, |m| {
            m.topic == format!("edge-gateway/{GW}/status") && m.payload == "offline"
        })
        .await
        .expect("offline on stop");

    // Restarted: what a newcomer reads is the same configs, retained, and
    // the gateway sends none of them again.
    let dir = gw.dir;
    let mut gw = GatewayProcess::start_in(dir, &config(broker.port(), line_port, metrics, true));
    gw.wait_for_log("Metrics endpoint listening").await;
    http_until(metrics, "/health", |code, _| code == 200).await;
    states
        .wait_for(WAIT, |m| {
            m.topic == format!("edge-gateway/{GW}/status") && m.payload == "online"
        })
        .await
        .expect("online after restart");
    let mut newcomer = Subscriber::start(broker.port(), "homeassistant/#").await;
    let retained = configs(&mut newcomer, &expected).await;
    for (topic, m) in &retained {
        assert!(m.retained, "{topic} not retained");
        assert_eq!(m.json()["unique_id"], first[topic].json()["unique_id"]);
    }
    publish(broker.port(), "sensors/data/node-7/co2", "700", 1, false).await;
    states
        .wait_for(WAIT, |m| m.topic == co2_state && m.payload == "700")
        .await
        .expect("co2 state after restart");
    let resent: Vec<Message> = discovery
        .collect_until(Duration::from_millis(1), |_| false)
        .await;
    assert!(
        resent.iter().all(|m| !m.topic.ends_with("/config")),
        "configs sent again after a restart: {:?}",
        resent.iter().map(|m| &m.topic).collect::<Vec<_>>()
    );

    // The kitchen leaves the registry: its configs are cleared.
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    let dir = gw.dir;
    let mut gw = GatewayProcess::start_in(dir, &config(broker.port(), line_port, metrics, false));
    for metric in ["temperature", "humidity"] {
        let topic = sensor_topic("a4_c1_38_aa_bb_cc", metric);
        discovery
            .wait_for(WAIT, |m| m.topic == topic && m.payload.is_empty())
            .await
            .unwrap_or_else(|| panic!("{topic} not cleared"));
    }
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

#[tokio::test]
async fn without_the_section_nothing_is_published_for_home_assistant() {
    let broker = Mosquitto::start();
    let metrics = free_port();
    let mut ha = Subscriber::start(broker.port(), "homeassistant/#").await;
    let mut upstream = Subscriber::start(broker.port(), "building/#").await;
    let config = format!(
        r#"
[gateway]
id = "{GW}"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{port}"
topic_prefix = "building/{{site}}"

[aggregation]
window = "1s"
grace = "1s"

[metrics]
bind = "127.0.0.1:{metrics}"

[[adapter]]
type = "mqtt"
name = "local-sensors"
url = "mqtt://127.0.0.1:{port}"
topics = ["sensors/data/{{device}}/{{metric}}"]
"#,
        port = broker.port()
    );
    let mut gw = GatewayProcess::start(&config);
    gw.wait_for_log("Metrics endpoint listening").await;
    http_until(metrics, "/health", |code, _| code == 200).await;
    // `/health` does not wait for the MQTT adapter's subscription, and a
    // reading published before it is not for the gateway to hear.
    gw.wait_for_log("Subscribed.").await;
    publish(broker.port(), "sensors/data/node-7/co2", "612", 1, false).await;
    upstream
        .wait_for(WAIT, |m| m.topic.ends_with("/aggregated"))
        .await
        .expect("the window went upstream");
    publish(broker.port(), "homeassistant/status", "online", 1, false).await;
    publish(broker.port(), "sensors/data/node-7/co2", "640", 1, false).await;
    upstream
        .wait_for(WAIT, |m| m.topic.ends_with("/aggregated"))
        .await
        .expect("a second window went upstream");
    let got = ha.collect_until(Duration::from_millis(1), |_| false).await;
    assert_eq!(
        got.iter()
            .filter(|m| m.topic != "homeassistant/status")
            .count(),
        0,
        "{got:?}"
    );
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

#[tokio::test]
async fn a_silent_device_becomes_unavailable_and_returns_when_it_speaks() {
    let broker = Mosquitto::start();
    let metrics = free_port();
    let mut states = Subscriber::start(broker.port(), &format!("edge-gateway/{GW}/#")).await;
    let config = format!(
        r#"
[gateway]
id = "{GW}"
state_dir = "@STATE_DIR@"

[metrics]
bind = "127.0.0.1:{metrics}"

[home_assistant]
enabled = true
broker = "mqtt://127.0.0.1:{port}"

[[adapter]]
type = "mqtt"
name = "local-sensors"
url = "mqtt://127.0.0.1:{port}"
topics = ["sensors/data/{{device}}/{{metric}}"]

[[rule]]
name = "sensor-silent"
kind = "silence"
after = "2s"
"#,
        port = broker.port()
    );
    let mut gw = GatewayProcess::start(&config);
    gw.wait_for_log("Metrics endpoint listening").await;
    http_until(metrics, "/health", |code, _| code == 200).await;
    gw.wait_for_log("Subscribed.").await;
    let availability = format!("edge-gateway/{GW}/fridge-2/availability");
    let alert = format!("edge-gateway/{GW}/fridge-2/alert/sensor-silent");

    publish(
        broker.port(),
        "sensors/data/fridge-2/temperature",
        "4.1",
        1,
        false,
    )
    .await;
    states
        .wait_for(WAIT, |m| m.topic == availability && m.payload == "online")
        .await
        .expect("online when heard");
    // Nothing more from it: the silence rule makes it unavailable.
    states
        .wait_for(WAIT, |m| m.topic == availability && m.payload == "offline")
        .await
        .expect("offline when silent");
    states
        .wait_for(WAIT, |m| m.topic == alert && m.payload == "ON")
        .await
        .expect("silence alert on");
    publish(
        broker.port(),
        "sensors/data/fridge-2/temperature",
        "4.2",
        1,
        false,
    )
    .await;
    states
        .wait_for(WAIT, |m| m.topic == availability && m.payload == "online")
        .await
        .expect("online again when it speaks");
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

// ---- BLE and LoRaWAN beside MQTT -------------------------------------

const NWK: &str = "2b7e151628aed2a6abf7158809cf4f3c";
const APP: &str = "000102030405060708090a0b0c0d0e0f";
const AM319_ADDR: u32 = 0x2601_0319;
const LHT65_ADDR: u32 = 0x2601_0065;
/// Milesight AM319's documented example: temperature 23.8, humidity 62,
/// co2 936, pressure 1008.6, pm2_5 32, pm10 48 (and more).
const AM319_EXAMPLE: &str =
    "0367EE0004687C05000106CB02077DA803087D2500097366270A7D04000B7D20000C7D3000";
/// The Dragino LHT65 manual's example: BatV 3.062, TempC_SHT 28.29.
const LHT65_EXAMPLE: &str = "CBF60B0D0376010ADD7FFF";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// One LoRaWAN uplink sealed under the ABP session keys, in a PUSH_DATA
/// datagram from a fresh socket, as a packet forwarder sends it; returns
/// once the gateway acknowledged it.
async fn push_uplink(port: u16, fcnt: u32, dev_addr: u32, fport: u8, payload: &[u8]) {
    use adapters::lorawan::frame::{seal, Key};
    use base64::Engine as _;
    let key = |s: &str| s.parse::<Key>().unwrap();
    let phy = seal(dev_addr, fcnt, fport, payload, &key(NWK), &key(APP)).unwrap();
    let token = (fcnt as u16).to_be_bytes();
    let mut d = vec![2, token[0], token[1], 0x00, 0xAA, 0x55, 0x5A, 0, 0, 0, 0, 7];
    d.extend_from_slice(
        format!(
            r#"{{"rxpk":[{{"tmst":3512348611,"chan":2,"rfch":0,"freq":868.5,"stat":1,"modu":"LORA","datr":"SF9BW125","codr":"4/5","rssi":-71,"lsnr":6.5,"size":{},"data":"{}"}}]}}"#,
            phy.len(),
            base64::engine::general_purpose::STANDARD.encode(&phy)
        )
        .as_bytes(),
    );
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(("127.0.0.1", port)).await.unwrap();
    socket.send(&d).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(WAIT, socket.recv(&mut buf))
        .await
        .expect("no PUSH_ACK")
        .unwrap();
    assert_eq!(buf[..n], [2, token[0], token[1], 0x01]);
}

/// A recorded BLE capture (what `source = "replay"` plays): a BTHome v2
/// Xiaomi thermometer, a RuuviTag (data format 5) and a PVVX-flashed
/// LYWSD03MMC, as they advertise.
fn ble_capture() -> String {
    let line = |second: u32, mac: &str, rssi: i8, data: &str| {
        format!(
            r#"{{"ts":"2026-11-21T10:00:{second:02}.000Z","mac":"{mac}","rssi":{rssi},{data}}}"#
        )
    };
    [
        // 25.06 °C, 50.55 %.
        line(0, "A4:C1:38:8D:18:B2", -60, r#""service_data":{"fcd2":"4002ca0903bf13"}"#),
        // Ruuvi's "valid data" example: 24.3 °C, 53.49 %, 1000.44 hPa.
        line(
            1,
            "CB:B8:33:4C:88:4F",
            -70,
            r#""manufacturer_data":{"0499":"0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F"}"#,
        ),
        // 23.40 °C, 54.00 %, 2.955 V, 87 %.
        line(
            2,
            "A4:C1:38:8D:18:C3",
            -80,
            r#""service_data":{"0000181a-0000-1000-8000-00805f9b34fb":"b2188d38c1a4240918158b0b572a05"}"#,
        ),
    ]
    .join("\n")
        + "\n"
}

fn radio_config(broker: u16, lora_port: u16, metrics: u16, capture: &str) -> String {
    format!(
        r#"
[gateway]
id = "{GW}"
site = "hq"
state_dir = "@STATE_DIR@"

[metrics]
bind = "127.0.0.1:{metrics}"

[home_assistant]
enabled = true
broker = "mqtt://127.0.0.1:{broker}"
expire_after = "45m"

[[adapter]]
type = "mqtt"
name = "local-sensors"
url = "mqtt://127.0.0.1:{broker}"
topics = ["sensors/data/{{device}}/{{metric}}"]
max_backoff = "1s"

[[adapter]]
type = "semtech_udp"
name = "lora"
bind = "127.0.0.1:{lora_port}"

[[lorawan.device]]
dev_addr = "{AM319_ADDR:08X}"
nwk_s_key = "{NWK}"
app_s_key = "{APP}"
codec = "milesight"
id = "am319-meeting"
name = "Meeting room air"

[[lorawan.device]]
dev_addr = "{LHT65_ADDR:08X}"
nwk_s_key = "{NWK}"
app_s_key = "{APP}"
codec = "dragino_lht65"
id = "lht65-fridge"

[[adapter]]
type = "ble"
name = "ble"
source = "replay"
replay_file = "{capture}"
replay_speed = 0

[[device]]
id = "a4:c1:38:8d:18:b2"
name = "Living Room"
"#
    )
}

#[tokio::test]
async fn devices_from_ble_and_lorawan_appear_beside_mqtt_with_valid_configs() {
    let broker = Mosquitto::start();
    let (lora_port, metrics) = (test_support::free_udp_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture.jsonl");
    std::fs::write(&capture, ble_capture()).unwrap();
    let mut discovery = Subscriber::start(broker.port(), "homeassistant/#").await;
    let mut states = Subscriber::start(broker.port(), &format!("edge-gateway/{GW}/#")).await;

    let cfg = radio_config(
        broker.port(),
        lora_port,
        metrics,
        &capture.display().to_string(),
    );
    let mut gw = GatewayProcess::start_in(dir, &cfg);
    gw.wait_for_log("Semtech UDP server listening").await;
    gw.wait_for_log("Metrics endpoint listening").await;
    http_until(metrics, "/health", |code, _| code == 200).await;
    gw.wait_for_log("BLE capture played").await;

    push_uplink(lora_port, 1, AM319_ADDR, 85, &hex(AM319_EXAMPLE)).await;
    push_uplink(lora_port, 1, LHT65_ADDR, 2, &hex(LHT65_EXAMPLE)).await;
    publish(broker.port(), "sensors/data/node-7/co2", "612", 1, false).await;

    let bthome = "a4_c1_38_8d_18_b2";
    let ruuvi = "cb_b8_33_4c_88_4f";
    let pvvx = "a4_c1_38_8d_18_c3";
    let expected: BTreeSet<String> = [
        (bthome, "temperature"),
        (bthome, "humidity"),
        (bthome, "rssi"),
        (ruuvi, "temperature"),
        (ruuvi, "pressure"),
        (pvvx, "temperature"),
        (pvvx, "battery"),
        ("am319-meeting", "co2"),
        ("am319-meeting", "pm2_5"),
        ("am319-meeting", "pressure"),
        ("am319-meeting", "rssi"),
        ("lht65-fridge", "temperature"),
        ("node-7", "co2"),
    ]
    .iter()
    .map(|(d, m)| sensor_topic(d, m))
    .collect();
    let got = configs(&mut discovery, &expected).await;
    let mut ids = BTreeSet::new();
    for m in got.values() {
        assert!(
            ids.insert(check_sensor(m)),
            "duplicate unique_id in {}",
            m.topic
        );
    }
    let c = |d: &str, metric: &str| got[&sensor_topic(d, metric)].json();
    assert_eq!(c(bthome, "temperature")["device"]["name"], "Living Room");
    assert_eq!(c(bthome, "temperature")["device_class"], "temperature");
    assert_eq!(c(bthome, "rssi")["device_class"], "signal_strength");
    assert_eq!(c(ruuvi, "pressure")["device_class"], "pressure");
    assert_eq!(c(pvvx, "battery")["unit_of_measurement"], "%");
    assert_eq!(
        c("am319-meeting", "co2")["device"]["name"],
        "Meeting room air"
    );
    assert_eq!(c("am319-meeting", "co2")["device_class"], "carbon_dioxide");
    assert_eq!(c("am319-meeting", "pm2_5")["device_class"], "pm25");
    assert_eq!(
        c("lht65-fridge", "temperature")["unit_of_measurement"],
        "°C"
    );
    assert_eq!(c("node-7", "co2")["device"]["model"], "MQTT sensor");

    // The make, where the adapter knows it: from the BLE format, from the
    // LoRaWAN codec; none for a device the adapter knows nothing of.
    let make = |d: &str, metric: &str| {
        let dev = &c(d, metric)["device"];
        (
            dev["manufacturer"].as_str().map(str::to_string),
            dev["model"].as_str().unwrap().to_string(),
        )
    };
    let is = |m: Option<&str>, model: &str| (m.map(str::to_string), model.to_string());
    assert_eq!(make(bthome, "temperature"), is(None, "BTHome v2 sensor"));
    assert_eq!(make(bthome, "rssi"), make(bthome, "temperature"));
    assert_eq!(
        make(ruuvi, "pressure"),
        is(Some("Ruuvi Innovations"), "RuuviTag")
    );
    assert_eq!(
        make(pvvx, "battery"),
        is(Some("Xiaomi"), "LYWSD03MMC (PVVX firmware)")
    );
    assert_eq!(
        make("am319-meeting", "co2"),
        is(Some("Milesight"), "AM100/AM300 series")
    );
    assert_eq!(
        make("lht65-fridge", "temperature"),
        is(Some("Dragino"), "LHT65")
    );
    assert_eq!(make("node-7", "co2"), is(None, "MQTT sensor"));

    // Each device's values arrive on its state topics, in whatever order.
    let wanted: Vec<(String, &str)> = [
        (bthome, "temperature", "25.06"),
        (pvvx, "humidity", "54"),
        ("am319-meeting", "co2", "936"),
        ("lht65-fridge", "temperature", "28.29"),
        ("node-7", "co2", "612"),
    ]
    .iter()
    .map(|(d, metric, v)| (format!("edge-gateway/{GW}/{d}/{metric}"), *v))
    .collect();
    let arrived = |msgs: &[Message], (topic, value): &(String, &str)| {
        msgs.iter()
            .any(|m| &m.topic == topic && m.payload == *value)
    };
    let got_states = states
        .collect_until(WAIT, |msgs| wanted.iter().all(|w| arrived(msgs, w)))
        .await;
    for w in &wanted {
        assert!(arrived(&got_states, w), "no {} on {}", w.1, w.0);
    }

    // Restarted: the capture plays again and the LoRaWAN device speaks
    // again, and no config is sent again (the make was remembered, so the
    // configs announced before the devices speak are the same).
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    let mut gw = GatewayProcess::start_in(gw.dir, &cfg);
    gw.wait_for_log("Metrics endpoint listening").await;
    http_until(metrics, "/health", |code, _| code == 200).await;
    gw.wait_for_log("BLE capture played").await;
    push_uplink(lora_port, 2, AM319_ADDR, 85, &hex(AM319_EXAMPLE)).await;
    let ruuvi_temperature = format!("edge-gateway/{GW}/{ruuvi}/temperature");
    let am319_co2 = format!("edge-gateway/{GW}/am319-meeting/co2");
    let heard = |msgs: &[Message], topic: &str| msgs.iter().any(|m| m.topic == topic);
    let after = states
        .collect_until(WAIT, |msgs| {
            heard(msgs, &ruuvi_temperature) && heard(msgs, &am319_co2)
        })
        .await;
    for topic in [&ruuvi_temperature, &am319_co2] {
        assert!(
            heard(&after, topic),
            "no state on {topic} after the restart"
        );
    }
    let resent: Vec<Message> = discovery
        .collect_until(Duration::from_millis(1), |_| false)
        .await;
    assert!(
        resent.iter().all(|m| !m.topic.ends_with("/config")),
        "configs sent again after a restart: {:?}",
        resent.iter().map(|m| &m.topic).collect::<Vec<_>>()
    );
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// A meter that forwards a buffered, older reading after a newer one: Home
/// Assistant's state stays the newer reading (a `total_increasing` meter
/// stepping back is read as a reset and its whole count added again),
/// and the next newer reading moves it on.
#[tokio::test]
async fn an_older_reading_arriving_late_does_not_take_the_state_back() {
    let broker = Mosquitto::start();
    let metrics = free_port();
    let config = format!(
        r#"
[gateway]
id = "{GW}"
state_dir = "@STATE_DIR@"

[aggregation]
window = "1m"
grace = "1m"

[metrics]
bind = "127.0.0.1:{metrics}"

[home_assistant]
enabled = true
broker = "mqtt://127.0.0.1:{port}"

[[adapter]]
type = "mqtt"
name = "meters"
url = "mqtt://127.0.0.1:{port}"
topics = ["meters/{{device}}"]
"#,
        port = broker.port()
    );
    let mut gw = GatewayProcess::start(&config);
    gw.wait_for_log("Metrics endpoint listening").await;
    http_until(metrics, "/health", |code, _| code == 200).await;
    gw.wait_for_log("Subscribed.").await;
    let topic = format!("edge-gateway/{GW}/aa_bb_cc_dd_ee_01/energy");
    let mut states = Subscriber::start(broker.port(), &topic).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let meter = "meters/AA:BB:CC:DD:EE:01";
    let reading = |energy: &str, ts: u64| format!(r#"{{"energy":{energy},"ts":{ts}}}"#);
    publish(broker.port(), meter, &reading("14.0", now - 5), 1, false).await;
    states
        .wait_for(WAIT, |m| m.payload == "14")
        .await
        .expect("the first reading is the state");
    for (energy, ts) in [("12.5", now - 25), ("14.5", now)] {
        publish(broker.port(), meter, &reading(energy, ts), 1, false).await;
    }
    // Until the newest reading's state, however long the gateway takes to
    // publish it (a fixed 3 s per state is short for a loaded 2-core
    // machine); whatever came before it is checked below.
    let seen: Vec<String> = states
        .collect_until(WAIT, |m| m.last().is_some_and(|m| m.payload == "14.5"))
        .await
        .into_iter()
        .map(|m| m.payload)
        .collect();
    assert!(seen.last().is_some_and(|s| s == "14.5"), "{seen:?}");
    assert!(!seen.iter().any(|s| s == "12.5"), "{seen:?}");
    // A reading stamped an hour ahead (the node's clock) does not hold
    // the state: the next one, in the present, takes it.
    publish(broker.port(), meter, &reading("50", now + 3600), 1, false).await;
    states
        .wait_for(WAIT, |m| m.payload == "50")
        .await
        .expect("the reading from ahead is shown");
    publish(broker.port(), meter, &reading("15", now + 1), 1, false).await;
    states
        .wait_for(WAIT, |m| m.payload == "15")
        .await
        .expect("the present reading takes the state back from one ahead");
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}
