//! The real binary's `ble` adapter, fed by a recorded capture (no radio on
//! this machine) through the same decoding path as the radio: published
//! BTHome, Ruuvi and PVVX advertisements arrive upstream as exact
//! aggregates under their MAC with the registry's name and room; an
//! encrypted frame with an old counter, a plaintext downgrade and a phone's
//! advertisement are refused or dropped and counted; the counter file
//! survives a restart so the replay stays refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use adapters::ble::bthome_crypto::seal;
use adapters::ble::{BindKey, Mac};
use common::{http_until, GatewayProcess, WAIT};
use test_support::{free_port, Message, Mosquitto, Subscriber};

/// bthome.io's encryption example: MAC, key, and the frame (counter 1122867).
const ENC_MAC: &str = "54:48:E6:8F:80:A5";
const ENC_KEY: &str = "231d39c1d7cc1ab1aee224cd096db932";
const ENC_VECTOR: &str = "41e445f3c9962b332211006c7c4519";

/// One capture line at `second` past 10:00.
fn line(second: u32, mac: &str, rssi: i8, data: &str) -> String {
    format!(r#"{{"ts":"2026-11-21T10:00:{second:02}.000Z","mac":"{mac}","rssi":{rssi},{data}}}"#)
}

/// A frame sealed with the example key at `counter`: temperature (0x02,
/// 0.01 °C) 21.00 °C.
fn sealed(counter: u32) -> String {
    let key: BindKey = ENC_KEY.parse().unwrap();
    let mac: Mac = ENC_MAC.parse().unwrap();
    let frame = seal(&key, mac, 0x41, counter, &[0x02, 0x34, 0x08]);
    frame.iter().map(|b| format!("{b:02x}")).collect()
}

fn capture() -> String {
    let bthome = |hex: &str| format!(r#""service_data":{{"fcd2":"{hex}"}}"#);
    [
        // bthome-ble test_bthome_temperature_humidity: 25.06 °C, 50.55 %.
        line(0, "A4:C1:38:8D:18:B2", -60, &bthome("4002ca0903bf13")),
        // Ruuvi docs, data format 5 "valid data" (128-bit UUID key style
        // is for service data; manufacturer data by company id).
        line(
            1,
            "CB:B8:33:4C:88:4F",
            -70,
            r#""manufacturer_data":{"0499":"0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F"}"#,
        ),
        // PVVX custom: 23.40 °C, 54.00 %, 2.955 V, 87 %.
        line(
            2,
            "A4:C1:38:8D:18:C3",
            -80,
            r#""service_data":{"0000181a-0000-1000-8000-00805f9b34fb":"b2188d38c1a4240918158b0b572a05"}"#,
        ),
        // Encrypted, a newer counter than the published frame...
        line(3, ENC_MAC, -50, &bthome(&sealed(1_122_900))),
        // ...so the published frame (counter 1122867) is a replay.
        line(4, ENC_MAC, -50, &bthome(ENC_VECTOR)),
        // Plaintext from the device with a key: a downgrade.
        line(5, ENC_MAC, -50, &bthome("4002ca0903bf13")),
        // A phone (Apple, 0x004c): no series.
        line(6, "11:22:33:44:55:66", -40, r#""manufacturer_data":{"004c":"1005031c6a0c7d"}"#),
    ]
    .join("\n")
        + "\n"
}

fn config(upstream: u16, metrics: u16, capture: &str) -> String {
    format!(
        r#"
[gateway]
id = "gw-ble"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{upstream}"
qos = 1
max_backoff = "1s"

[aggregation]
window = "1s"
grace = "1s"

[metrics]
bind = "127.0.0.1:{metrics}"

[[adapter]]
type = "ble"
name = "ble"
source = "replay"
replay_file = "{capture}"
replay_speed = 0

[[ble.device]]
mac = "{ENC_MAC}"
bindkey = "env:TEST_BTHOME_KEY"

[[device]]
id = "a4:c1:38:8d:18:b2"
name = "Living Room"
room = "living"
"#
    )
}

/// (count, sum, max) of `metric` over `device`'s aggregates.
fn totals(messages: &[Message], device: &str, metric: &str) -> (u64, f64, f64) {
    let mut out = (0, 0.0, f64::NEG_INFINITY);
    for m in messages
        .iter()
        .filter(|m| m.topic == format!("building/hq/{device}/aggregated"))
    {
        if let Some(s) = m.json()["metrics"].get(metric) {
            let n = s["count"].as_u64().unwrap();
            out.0 += n;
            out.1 += n as f64 * s["avg"].as_f64().unwrap();
            out.2 = out.2.max(s["max"].as_f64().unwrap());
        }
    }
    out
}

fn metric(body: &str, name_and_labels: &str) -> Option<f64> {
    test_support::metrics::sample(body, name_and_labels)
}

async fn run_capture(
    dir: tempfile::TempDir,
    upstream: &Mosquitto,
    sub: &mut Subscriber,
) -> (GatewayProcess, Vec<Message>, u16) {
    let path = dir.path().join("capture.jsonl");
    std::fs::write(&path, capture()).unwrap();
    let metrics = free_port();
    let cfg = config(upstream.port(), metrics, &path.display().to_string());
    let mut gw = GatewayProcess::start_in_with(dir, &cfg, &[("TEST_BTHOME_KEY", ENC_KEY)]);
    gw.wait_for_log("BLE capture played").await;
    let messages = sub
        .collect_until(WAIT, |got| {
            [
                "a4:c1:38:8d:18:b2",
                "cb:b8:33:4c:88:4f",
                "a4:c1:38:8d:18:c3",
                "54:48:e6:8f:80:a5",
            ]
            .iter()
            .all(|d| totals(got, d, "rssi").0 >= 1)
        })
        .await;
    (gw, messages, metrics)
}

#[tokio::test]
async fn a_capture_arrives_as_exact_aggregates_and_replays_are_refused() {
    let upstream = Mosquitto::start();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/#").await;
    let dir = tempfile::tempdir().unwrap();
    let (gw, messages, metrics) = run_capture(dir, &upstream, &mut sub).await;

    let close = |a: (u64, f64, f64), b: (u64, f64)| a.0 == b.0 && (a.1 - b.1).abs() < 1e-9;
    // BTHome plain, with the registry's name and room.
    let living = "a4:c1:38:8d:18:b2";
    assert!(close(totals(&messages, living, "temperature"), (1, 25.06)));
    assert!(close(totals(&messages, living, "humidity"), (1, 50.55)));
    assert!(close(totals(&messages, living, "rssi"), (1, -60.0)));
    let agg = messages
        .iter()
        .find(|m| m.topic == format!("building/hq/{living}/aggregated"))
        .unwrap()
        .json();
    assert_eq!(agg["name"], "Living Room");
    assert_eq!(agg["tags"]["room"], "living");
    // Ruuvi: hPa and V, as the issue names them.
    let ruuvi = "cb:b8:33:4c:88:4f";
    assert!(close(totals(&messages, ruuvi, "temperature"), (1, 24.3)));
    assert!(close(totals(&messages, ruuvi, "humidity"), (1, 53.49)));
    assert!(close(totals(&messages, ruuvi, "pressure"), (1, 1000.44)));
    assert!(close(totals(&messages, ruuvi, "voltage"), (1, 2.977)));
    // PVVX.
    let pvvx = "a4:c1:38:8d:18:c3";
    assert!(close(totals(&messages, pvvx, "temperature"), (1, 23.4)));
    assert!(close(totals(&messages, pvvx, "humidity"), (1, 54.0)));
    assert!(close(totals(&messages, pvvx, "battery"), (1, 87.0)));
    // Encrypted: only the fresh frame; the replay and the downgrade gave
    // nothing (one temperature, 21.00).
    let enc = "54:48:e6:8f:80:a5";
    assert!(
        close(totals(&messages, enc, "temperature"), (1, 21.0)),
        "{:?}",
        totals(&messages, enc, "temperature")
    );
    // The phone made no series.
    assert!(!messages
        .iter()
        .any(|m| m.topic.contains("11:22:33:44:55:66")));

    let (_, body) = http_until(metrics, "/metrics", |_, b| {
        b.contains("edge_gateway_ble_unrecognised_total")
    })
    .await;
    let refused = |body: &str, reason: &str| {
        metric(
            body,
            &format!(
                "edge_gateway_ble_refused_total{{adapter=\"ble\",format=\"bthome{}\",reason=\"{reason}\"}}",
                if reason == "replay" { "_encrypted" } else { "" }
            ),
        )
    };
    assert_eq!(refused(&body, "replay"), Some(1.0), "{body}");
    assert_eq!(refused(&body, "downgrade_detected"), Some(1.0), "{body}");
    assert_eq!(
        metric(
            &body,
            "edge_gateway_ble_unrecognised_total{adapter=\"ble\",id=\"company_004c\"}"
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        metric(
            &body,
            "edge_gateway_adapter_received_messages_total{adapter=\"ble\"}"
        ),
        Some(7.0),
        "{body}"
    );
    // A replayed capture holds no connection: /health shows it running.
    let (status, health) = http_until(metrics, "/health", |s, _| s == 200).await;
    assert_eq!(status, 200, "{health}");
    assert!(health.contains("\"ble\":\"running\""), "{health}");

    // The counter is on disk: after a kill and restart, the same capture's
    // fresh frame is a repeat (not accepted again) and the published one
    // still a replay.
    let counters = std::fs::read_to_string(gw.dir.path().join("state/ble-counters.json")).unwrap();
    assert!(
        counters.contains("\"54:48:e6:8f:80:a5\": 1122900"),
        "{counters}"
    );
    let mut gw = gw;
    gw.signal("KILL");
    gw.wait_exit().await;
    let cfg = std::fs::read_to_string(&gw.config_path).unwrap();
    let mut gw = GatewayProcess::start_in_with(gw.dir, &cfg, &[("TEST_BTHOME_KEY", ENC_KEY)]);
    gw.wait_for_log("BLE capture played").await;
    let (_, body) = http_until(metrics, "/metrics", |_, b| {
        b.contains("edge_gateway_ble_duplicates_total")
    })
    .await;
    assert_eq!(
        metric(
            &body,
            "edge_gateway_ble_duplicates_total{adapter=\"ble\",format=\"bthome_encrypted\"}"
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(refused(&body, "replay"), Some(1.0), "{body}");
    assert_eq!(
        metric(
            &body,
            "edge_gateway_ble_advertisements_total{adapter=\"ble\",format=\"bthome_encrypted\"}"
        ),
        None,
        "{body}"
    );
}
