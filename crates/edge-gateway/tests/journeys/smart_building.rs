//! The smart-building course: one gateway, every way its sensors talk.
//! A CO₂ sensor publishing JSON over MQTT, a room node POSTing to CoAP, a
//! desk node over CoAP with DTLS-PSK, a radiator valve whose resource the
//! gateway observes, a LoRaWAN CO₂ node (compact binary payloads through a
//! packet forwarder's Semtech UDP) and a BLE thermometer (a recorded
//! capture). Windows go to the cloud broker at QoS 1; the anomaly model
//! and a CO₂ threshold drive the ventilation through local actions.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use adapters::lorawan::frame::{seal, Key};
use anomaly::synthetic::{series, Shape};
use base64::Engine as _;
use edge_gateway::settings;
use gateway_core::{DeviceId, DeviceRegistry, MetricName, Reading, TimeSource, Timestamp};
use pipeline::fanout::alert_event;
use rules::Engine;
use sinks::mqtt_upstream::Renderer;
use test_support::{
    coap_client_run, free_port, free_udp_port, have, publish_lines, CoapServer, Message, Mosquitto,
    Subscriber,
};
use tokio::net::UdpSocket;

use super::support::{check_windows, decimal, get_until, window_totals, Checks, DEADLINE};
use crate::common::GatewayProcess;

const PSK: &str = "course-psk-2026";
const NWK: &str = "2b7e151628aed2a6abf7158809cf4f3c";
const APP: &str = "000102030405060708090a0b0c0d0e0f";
const DEV_ADDR: u32 = 0x260B_5678;
const FORWARDER: [u8; 8] = [0xB8, 0x27, 0xEB, 0xFF, 0xFE, 0x11, 0x22, 0x33];
const BLE_MAC: &str = "A4:C1:38:8D:18:B2";
const ANOMALY_RULE: &str = r#"
[[rule]]
name = "co2-anomaly"
kind = "anomaly"
metric = "co2"
device = "room-a"
"#;

struct Ports {
    local: u16,
    upstream: u16,
    metrics: u16,
    coap: u16,
    coaps: u16,
    observed: u16,
    lora: u16,
}

fn config(p: &Ports, capture: &str) -> String {
    format!(
        r#"
[gateway]
id = "gw-course"
site = "campus"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{upstream}"
qos = 1
max_backoff = "1s"

[aggregation]
window = "2s"
grace = "1s"

[metrics]
bind = "127.0.0.1:{metrics}"

[[adapter]]
type = "mqtt"
name = "room-sensors"
url = "mqtt://127.0.0.1:{local}"
topics = ["course/{{device}}"]
max_backoff = "1s"

[[adapter]]
type = "coap"
name = "coap"
bind = "127.0.0.1:{coap}"

[[adapter]]
type = "coap"
name = "coaps"
bind = "127.0.0.1:{coaps}"
dtls = "psk"

[[coap.psk]]
identity = "node-7"
key = "env:COURSE_PSK"
device = "desk-7"

[[adapter]]
type = "coap_observe"
name = "observed"
resources = [{{ addr = "127.0.0.1:{observed}", path = "/example_data", device = "radiator-3", metric = "temperature" }}]
silence = "1m"

[[adapter]]
type = "semtech_udp"
name = "lora"
bind = "127.0.0.1:{lora}"

[[lorawan.device]]
dev_addr = "{DEV_ADDR:08X}"
nwk_s_key = "{NWK}"
app_s_key = "{APP}"
codec = "struct"
fields = [
  {{ name = "co2", type = "u16" }},
  {{ name = "temperature", type = "i16", scale = 0.1 }},
  {{ name = "humidity", type = "u8" }},
]
id = "meeting-room"
name = "Meeting room"

[[adapter]]
type = "ble"
name = "ble"
source = "replay"
replay_file = "{capture}"
replay_speed = 0

[[device]]
id = "room-a"
name = "Lecture hall"

[[device]]
id = "{ble}"
name = "Lab"
{ANOMALY_RULE}
action = {{ publish = "actuators/hvac_zone_1/command", payload = "increase_ventilation", broker = "mqtt://127.0.0.1:{local}" }}

[[rule]]
name = "co2-high"
kind = "threshold"
metric = "co2"
device = "meeting-room"
max = 1000.0
action = {{ publish = "actuators/hvac_zone_2/command", payload = "ventilation_on", clear_payload = "ventilation_off", cooldown = "0s", broker = "mqtt://127.0.0.1:{local}" }}
"#,
        upstream = p.upstream,
        local = p.local,
        metrics = p.metrics,
        coap = p.coap,
        coaps = p.coaps,
        observed = p.observed,
        lora = p.lora,
        ble = BLE_MAC.to_ascii_lowercase(),
    )
}

/// A BTHome v2 advertisement, unencrypted: temperature (0x02, 0.01 °C,
/// signed LE) and humidity (0x03, 0.01 %, LE), as the capture stores it.
fn bthome(temperature: f64, humidity: f64) -> String {
    let t = ((temperature * 100.0).round() as i16).to_le_bytes();
    let h = ((humidity * 100.0).round() as u16).to_le_bytes();
    let frame = [0x40, 0x02, t[0], t[1], 0x03, h[0], h[1]];
    frame.iter().map(|b| format!("{b:02x}")).collect()
}

/// A PUSH_DATA datagram (protocol v2) with one uplink.
fn push_data(token: u16, phy: &[u8]) -> Vec<u8> {
    let mut d = vec![2];
    d.extend_from_slice(&token.to_be_bytes());
    d.push(0x00);
    d.extend_from_slice(&FORWARDER);
    let body = format!(
        r#"{{"rxpk":[{{"tmst":3512348611,"chan":2,"rfch":0,"freq":868.5,"stat":1,"modu":"LORA","datr":"SF7BW125","codr":"4/5","rssi":-57,"lsnr":9.5,"size":{},"data":"{}"}}]}}"#,
        phy.len(),
        base64::engine::general_purpose::STANDARD.encode(phy)
    );
    d.extend_from_slice(body.as_bytes());
    d
}

/// The LoRaWAN node's payload: CO₂ ppm (u16 BE), temperature × 10 (i16
/// BE), relative humidity % (u8).
fn lora_frame(fcnt: u32, co2: u16, temp_x10: i16, humidity: u8) -> Vec<u8> {
    let mut p = co2.to_be_bytes().to_vec();
    p.extend_from_slice(&temp_x10.to_be_bytes());
    p.push(humidity);
    let key = |s: &str| s.parse::<Key>().unwrap();
    seal(DEV_ADDR, fcnt, 2, &p, &key(NWK), &key(APP)).unwrap()
}

/// One coaps POST by `coap-client-openssl` as the desk node.
async fn coaps_post(port: u16, body: &str) -> (bool, String) {
    let url = format!("coaps://127.0.0.1:{port}/s/desk-7");
    let out = tokio::time::timeout(
        DEADLINE,
        tokio::process::Command::new("coap-client-openssl")
            .args([
                "-m", "post", "-B", "5", "-t", "50", "-e", body, "-u", "node-7", "-k", PSK, &url,
            ])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("coap-client-openssl did not exit in time")
    .expect("spawn coap-client-openssl");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The CO₂ sensor's series: a noisy level with a daily-like wave and, after
/// the model's 1 000 readings of learning, a jump a ventilation must answer.
fn co2_series() -> Vec<(String, f64)> {
    series(27, 1_200, 1_100, Shape::LevelShift(8.0))
        .into_iter()
        .map(|v| decimal(600.0 + 12.0 * v, 1))
        .collect()
}

/// What the anomaly rule says about `values` stamped `start_ms`, one
/// millisecond apart, as (state, value) per alert.
fn anomaly_expected(values: &[f64], start_ms: i64) -> Vec<(String, f64)> {
    let cfg = settings::parse(ANOMALY_RULE).unwrap();
    let renderer = Renderer {
        gateway_id: "gw-course".into(),
        prefix: "building/campus".into(),
        registry: DeviceRegistry::default(),
    };
    let mut engine = Engine::new(&cfg.rules, &cfg.devices);
    values
        .iter()
        .enumerate()
        .flat_map(|(i, v)| {
            let r = Reading::new(
                DeviceId::new("room-a").unwrap(),
                MetricName::new("co2").unwrap(),
                *v,
                Timestamp::from_millis(start_ms + i as i64).unwrap(),
                TimeSource::Event,
            )
            .unwrap();
            engine.on_reading(&r)
        })
        .map(|a| {
            let j: serde_json::Value = serde_json::from_slice(
                &renderer
                    .alert(&alert_event(&a, gateway_core::SourceId::UNKNOWN))
                    .payload,
            )
            .unwrap();
            (
                j["state"].as_str().unwrap_or_default().to_string(),
                j["value"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect()
}

fn alerts_of(msgs: &[Message], rule: &str) -> Vec<(String, f64)> {
    let mut seen = BTreeMap::new();
    for m in msgs.iter().filter(|m| m.topic.ends_with("/alerts")) {
        let j = m.json();
        if j["rule"] == rule {
            // QoS 1: a copy delivered twice has the same id.
            seen.entry(j["id"].to_string()).or_insert(j);
        }
    }
    let mut rows: Vec<_> = seen.into_values().collect();
    rows.sort_by_key(|j| j["seq"].as_u64());
    rows.iter()
        .map(|j| {
            (
                j["state"].as_str().unwrap_or_default().to_string(),
                j["value"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_smart_building_course_end_to_end() {
    assert!(
        have("coap-client-openssl"),
        "coap-client-openssl is required (apt install libcoap3-bin)"
    );
    let mut c = Checks::new("smart-building course: MQTT, CoAP, DTLS, LoRaWAN, BLE");
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let mut cloud = Subscriber::start(upstream.port(), "building/campus/#").await;
    let mut hvac = Subscriber::start(local.port(), "actuators/#").await;
    let p = Ports {
        local: local.port(),
        upstream: upstream.port(),
        metrics: free_port(),
        coap: free_udp_port(),
        coaps: free_udp_port(),
        observed: free_udp_port(),
        lora: free_udp_port(),
    };
    let valve = CoapServer::start(p.observed).await;
    valve.put("20").await;

    // The BLE thermometer, as `edge-gateway ble record` wrote it.
    let ble_values = [(21.5, 45.0), (21.75, 45.5), (22.0, 46.25)];
    let capture: String = ble_values
        .iter()
        .enumerate()
        .map(|(i, (t, h))| {
            format!(
                "{{\"ts\":\"2026-11-21T10:00:{i:02}.000Z\",\"mac\":\"{BLE_MAC}\",\"rssi\":-62,\"service_data\":{{\"fcd2\":\"{}\"}}}}\n",
                bthome(*t, *h)
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let capture_path = dir.path().join("capture.jsonl");
    std::fs::write(&capture_path, capture).unwrap();
    let mut gw = GatewayProcess::start_in_with(
        dir,
        &config(&p, &capture_path.display().to_string()),
        &[("COURSE_PSK", PSK)],
    );
    let health = get_until(&mut gw, p.metrics, "/health", |s, _| s == 200).await;
    assert!(
        health.is_ok(),
        "the course gateway never became healthy: {health:?}"
    );
    gw.wait_for_log("Observation established").await;

    // MQTT: the CO₂ sensor, one JSON object per reading, each stamped by
    // the sensor a millisecond after the one before. The model scores the
    // time between readings, so arrival stamps would make its verdict
    // depend on how the burst was scheduled, not on what was sent. The
    // stamps start 3 s ahead: windows then close after the last reading
    // arrives however slowly the burst goes (the grace is 1 s), well
    // inside the 60 s a gateway accepts from the future.
    let co2 = co2_series();
    let co2_start_ms = Timestamp::now().as_millis() + 3_000;
    let lines: Vec<String> = co2
        .iter()
        .enumerate()
        .map(|(i, (text, _))| {
            let at = chrono::DateTime::from_timestamp_millis(co2_start_ms + i as i64)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            format!(r#"{{"co2":{text},"ts":"{at}"}}"#)
        })
        .collect();
    publish_lines(p.local, "course/room-a", &lines, 1).await;
    let co2_values: Vec<f64> = co2.iter().map(|(_, v)| *v).collect();

    // CoAP: the room node, JSON (Content-Format 50).
    let mut room_b = (Vec::new(), Vec::new());
    for i in 0..4 {
        let (t, tv) = decimal(20.0 + i as f64 * 0.3, 1);
        let (h, hv) = decimal(38.0 + i as f64, 1);
        let target = format!("coap://127.0.0.1:{}/s/room-b", p.coap);
        let body = format!(r#"{{"temperature":{t},"humidity":{h}}}"#);
        let out = coap_client_run(&["-m", "post", "-t", "50", "-e", &body, &target]).await;
        c.check("CoAP POST from room-b answered", out.success, || {
            format!("{out:?}")
        });
        room_b.0.push(tv);
        room_b.1.push(hv);
    }
    // coaps: the desk node with its pre-shared key.
    let mut desk = Vec::new();
    for i in 0..3 {
        let (t, tv) = decimal(22.0 + i as f64 * 0.5, 1);
        let (ok, text) = coaps_post(p.coaps, &format!(r#"{{"temperature":{t}}}"#)).await;
        c.check("coaps POST from desk-7 answered", ok, || text.clone());
        desk.push(tv);
    }
    // Observe: the radiator valve's resource changes twice.
    for v in ["21", "22.5"] {
        valve.put(v).await;
    }
    // LoRaWAN: the meeting room's CO₂ node through a packet forwarder.
    let lora = [
        (650u16, 215i16, 40u8),
        (820, 219, 41),
        (1150, 224, 43),
        (1230, 228, 44),
        (900, 226, 43),
    ];
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(("127.0.0.1", p.lora)).await.unwrap();
    for (i, (co2, t, h)) in lora.iter().enumerate() {
        let token = 0x2000 + i as u16;
        socket
            .send(&push_data(token, &lora_frame(i as u32 + 1, *co2, *t, *h)))
            .await
            .unwrap();
        let mut ack = [0u8; 16];
        let n = tokio::time::timeout(DEADLINE, socket.recv(&mut ack))
            .await
            .expect("PUSH_ACK in time")
            .unwrap();
        let tb = token.to_be_bytes();
        c.eq(
            "PUSH_ACK for each uplink",
            ack[..n].to_vec(),
            vec![2, tb[0], tb[1], 0x01],
        );
    }

    // Everything each device sent, as the cloud sees it.
    let ble_mac = BLE_MAC.to_ascii_lowercase();
    let mut want: Vec<(&str, &str, Vec<f64>)> = vec![
        ("room-a", "co2", co2_values.clone()),
        ("room-b", "temperature", room_b.0.clone()),
        ("room-b", "humidity", room_b.1.clone()),
        ("desk-7", "temperature", desk.clone()),
        ("radiator-3", "temperature", vec![20.0, 21.0, 22.5]),
        (
            "meeting-room",
            "co2",
            lora.iter().map(|l| f64::from(l.0)).collect(),
        ),
        (
            "meeting-room",
            "temperature",
            lora.iter().map(|l| f64::from(l.1) * 0.1).collect(),
        ),
        (
            "meeting-room",
            "humidity",
            lora.iter().map(|l| f64::from(l.2)).collect(),
        ),
    ];
    want.push((
        ble_mac.as_str(),
        "temperature",
        ble_values.iter().map(|v| v.0).collect(),
    ));
    want.push((
        ble_mac.as_str(),
        "humidity",
        ble_values.iter().map(|v| v.1).collect(),
    ));
    let mut got = cloud
        .collect_until(DEADLINE, |m| {
            let t = window_totals(m);
            want.iter().all(|(d, metric, v)| {
                t.get(&(d.to_string(), metric.to_string()))
                    .is_some_and(|t| t.count >= v.len() as u64)
            })
        })
        .await;
    while let Some(m) = cloud.next(Duration::from_millis(1500)).await {
        got.push(m);
    }
    let totals = window_totals(&got);
    for (device, metric, values) in &want {
        check_windows(&mut c, &totals, device, metric, values);
    }
    // Published at QoS 1: the subscription is QoS 1, so a message
    // published at QoS 0 would arrive at QoS 0.
    let qos: Vec<u8> = got
        .iter()
        .filter(|m| m.topic.ends_with("/aggregated") || m.topic.ends_with("/alerts"))
        .map(|m| m.qos)
        .collect();
    c.check(
        "windows and alerts reach the cloud at QoS 1",
        !qos.is_empty() && qos.iter().all(|q| *q == 1),
        || format!("delivered QoS: {qos:?}"),
    );
    let named = |device: &str| {
        got.iter()
            .filter(|m| m.topic == format!("building/campus/{device}/aggregated"))
            .all(|m| m.json()["name"].is_string())
    };
    c.check(
        "LoRaWAN and BLE windows carry their names",
        named("meeting-room") && named(&ble_mac),
        || "a window without its registry name".into(),
    );

    // The anomaly model, as the same engine alone judges the same readings.
    let expected = anomaly_expected(&co2_values, co2_start_ms);
    let raised = expected.iter().filter(|a| a.0 == "raised").count();
    assert!(raised >= 1, "the CO₂ jump must be an anomaly: {expected:?}");
    c.eq(
        "co2-anomaly alerts upstream (state, value)",
        alerts_of(&got, "co2-anomaly"),
        expected,
    );
    c.eq(
        "co2-high alerts upstream (state, value)",
        alerts_of(&got, "co2-high"),
        vec![
            ("raised".to_string(), 1150.0),
            ("cleared".to_string(), 900.0),
        ],
    );

    // The ventilation: one command per anomaly (the action's 1-minute
    // cooldown), on and off for the threshold.
    let commands = hvac.collect_until(DEADLINE, |m| m.len() >= 3).await;
    let mut commands = commands;
    while let Some(m) = hvac.next(Duration::from_millis(1000)).await {
        commands.push(m);
    }
    let on = |topic: &str| -> Vec<String> {
        commands
            .iter()
            .filter(|m| m.topic == topic)
            .map(|m| m.payload.clone())
            .collect()
    };
    c.eq(
        "ventilation commands for the anomaly",
        on("actuators/hvac_zone_1/command"),
        vec!["increase_ventilation".to_string()],
    );
    c.eq(
        "ventilation commands for the threshold",
        on("actuators/hvac_zone_2/command"),
        vec!["ventilation_on".to_string(), "ventilation_off".to_string()],
    );

    let (_, body) = get_until(&mut gw, p.metrics, "/metrics", |s, _| s == 200)
        .await
        .unwrap_or_default();
    c.eq(
        "adapter errors",
        super::support::metric_sum(&body, "edge_gateway_adapter_errors_total"),
        0.0,
    );
    gw.signal("TERM");
    c.eq("exit status after SIGTERM", gw.wait_exit().await, Some(0));
    drop(valve);
    c.finish();
}
