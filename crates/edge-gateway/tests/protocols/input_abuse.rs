//! What devices and an attacker did to the inputs in the third outside
//! round, played against the real binary the way they did it:
//!
//! - a BME680 node's connection reset mid-line (`SO_LINGER 0`), beside one
//!   that sends its last line without a newline and closes cleanly;
//! - an ESP-NOW relay on a pseudo-terminal: boot noise glued to the first
//!   line, a header line, a MAC in three notations against a `[[device]]`
//!   written with dashes, and the port unplugged in the middle of a line;
//! - one retained QoS 1 reading across a clean restart, a kill -9 and a
//!   restart of a broker that keeps its persistence;
//! - a 16 MB SenML pack of a million records;
//! - PULL_DATA from thousands of made-up forwarder EUIs;
//! - a `[[device]] id` that can never match anything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{http_get, http_until, GatewayProcess, WAIT};
use test_support::{free_port, free_udp_port, have, publish, Message, Mosquitto, Subscriber};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

/// The value of the sample `name_and_labels` on a `/metrics` body, 0 when
/// it is absent (a counter never incremented is not rendered).
fn metric(body: &str, name_and_labels: &str) -> f64 {
    test_support::metrics::sample(body, name_and_labels).unwrap_or(0.0)
}

fn errors(adapter: &str, kind: &str) -> String {
    format!(r#"edge_gateway_adapter_errors_total{{adapter="{adapter}",error_type="{kind}"}}"#)
}

fn readings(adapter: &str) -> String {
    format!(r#"edge_gateway_adapter_readings_total{{adapter="{adapter}"}}"#)
}

/// Polls `/metrics` until `sample` is `want`; the body then.
async fn metric_is(port: u16, sample: &str, want: f64) -> String {
    http_until(port, "/metrics", |_, b| metric(b, sample) == want)
        .await
        .1
}

/// Statistics of `metric` for `device` over every distinct window
/// upstream: (count, min, max).
fn stats_of(messages: &[Message], device: &str, metric: &str) -> (u64, f64, f64) {
    let mut seen = std::collections::HashSet::new();
    let (mut n, mut lo, mut hi) = (0, f64::INFINITY, f64::NEG_INFINITY);
    for m in messages.iter().filter(|m| m.topic.ends_with("/aggregated")) {
        let j = m.json();
        if j["device"] != device || !seen.insert(j["id"].to_string()) {
            continue;
        }
        if let Some(s) = j["metrics"].get(metric) {
            n += s["count"].as_u64().unwrap();
            lo = lo.min(s["min"].as_f64().unwrap());
            hi = hi.max(s["max"].as_f64().unwrap());
        }
    }
    (n, lo, hi)
}

fn head(id: &str, upstream: u16, metrics: u16) -> String {
    format!(
        r#"
[gateway]
id = "{id}"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{upstream}"
qos = 1
topic_prefix = "building/{{site}}"
max_backoff = "1s"

[aggregation]
window = "1s"
grace = "1s"

[metrics]
bind = "127.0.0.1:{metrics}"
"#
    )
}

#[tokio::test]
async fn a_line_cut_by_a_reset_is_dropped_and_one_ended_by_a_clean_close_is_kept() {
    let upstream = Mosquitto::start();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/+/aggregated").await;
    let (lines, metrics) = (free_port(), free_port());
    let cfg = format!(
        r#"{}
[[adapter]]
type = "tcp_line"
name = "bme680-tcp"
bind = "127.0.0.1:{lines}"
columns = ["temperature", "pressure", "humidity", "gas"]
"#,
        head("gw-reset", upstream.port(), metrics)
    );
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Metrics endpoint listening").await;
    gw.wait_for_log("Listening for lines.").await;
    http_until(metrics, "/health", |code, _| code == 200).await;

    // A node whose Wi-Fi drops while it writes: a whole line, the start of
    // the next (gas 14049 cut after "14"), then a reset instead of a close.
    let mut node = TcpStream::connect(("127.0.0.1", lines)).await.unwrap();
    node.write_all(b"21.4,1013.1,45.0,14048\n21.5,1013.2,45.1,14")
        .await
        .unwrap();
    // Read by the gateway (the whole line's readings are counted) before
    // the reset, so the cut line is in its hands when the reset comes.
    metric_is(metrics, &readings("bme680-tcp"), 4.0).await;
    node.set_zero_linger().unwrap();
    drop(node);
    let body = metric_is(metrics, &errors("bme680-tcp", "incomplete_line"), 1.0).await;
    assert_eq!(metric(&body, &readings("bme680-tcp")), 4.0, "{body}");

    // MicroPython's `s.send(line); s.close()`: no newline, a clean close.
    let mut node = TcpStream::connect(("127.0.0.1", lines)).await.unwrap();
    node.write_all(b"21.6,1013.3,45.2,14050").await.unwrap();
    node.shutdown().await.unwrap();
    metric_is(metrics, &readings("bme680-tcp"), 8.0).await;
    gw.wait_for_log("Dropping a line without its newline").await;

    let got = sub
        .collect_until(WAIT, |m| stats_of(m, "127.0.0.1", "gas").0 >= 2)
        .await;
    assert_eq!(
        stats_of(&got, "127.0.0.1", "gas"),
        (2, 14048.0, 14050.0),
        "the cut line's gas=14 never stored"
    );
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// `socat` linking two pseudo-terminals: the gateway's port and the
/// relay board's side, which the test writes to.
struct Relay {
    child: Child,
}

impl Relay {
    async fn start(port: &Path, board: &Path) -> Self {
        let child = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", port.display()))
            .arg(format!("pty,raw,echo=0,link={}", board.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn socat");
        let deadline = tokio::time::Instant::now() + WAIT;
        while !(port.exists() && board.exists()) {
            assert!(tokio::time::Instant::now() < deadline, "no pty links");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Self { child }
    }

    fn print(board: &Path, bytes: &[u8]) {
        let mut f = std::fs::OpenOptions::new().write(true).open(board).unwrap();
        f.write_all(bytes).unwrap();
    }

    /// The USB cable pulled: the port vanishes.
    fn unplug(mut self, port: &Path) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(port);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_relay_s_noise_header_notations_and_unplug_make_no_phantom_and_no_wrong_value() {
    assert!(have("socat"), "socat is required (apt-get install socat)");
    let upstream = Mosquitto::start();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/+/aggregated").await;
    let (metrics, dashboard) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let (port, board) = (dir.path().join("ttyRELAY"), dir.path().join("ttyBOARD"));
    let cfg = format!(
        r#"{}
[dashboard]
enabled = true
bind = "127.0.0.1:{dashboard}"

[[adapter]]
type = "serial_line"
name = "espnow-relay"
path = "{port}"
format = "csv"
columns = ["mac", "temperature", "humidity"]
max_backoff = "200ms"

[[device]]
id = "a2-b2-c2-d2-e2-f2"
name = "Kitchen"
"#,
        head("gw-relay", upstream.port(), metrics),
        port = port.display(),
    );
    let relay = Relay::start(&port, &board).await;
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Metrics endpoint listening").await;
    gw.wait_for_log("Serial port open.").await;
    http_until(metrics, "/health", |code, _| code == 200).await;

    // Boot noise glued to the first line, the logger's header, then the
    // kitchen node as three relays print MACs.
    Relay::print(
        &board,
        b"rl~lxA2:B2:C2:D2:E2:F2,21.5,40.0\r\n\
          mac,temperature,humidity\r\n\
          A2:B2:C2:D2:E2:F2,21.6,41.0\r\n\
          a2-b2-c2-d2-e2-f2,21.7,42.0\r\n\
          A2B2C2D2E2F2,21.8,43.0\r\n",
    );
    let body = metric_is(metrics, &readings("espnow-relay"), 6.0).await;
    assert_eq!(
        metric(&body, &errors("espnow-relay", "invalid_device")),
        1.0
    );
    assert_eq!(metric(&body, &errors("espnow-relay", "csv_header")), 1.0);
    assert_eq!(
        metric(&body, &errors("espnow-relay", "field_not_numeric")),
        0.0,
        "the header is one refusal, not one per column: {body}"
    );

    // The cable is pulled while the relay prints `…,22.5,41.0`. In one
    // write with a whole line: once that line is counted, the gateway
    // holds the cut one.
    Relay::print(
        &board,
        b"A2:B2:C2:D2:E2:F2,22.0,44.0\r\nA2:B2:C2:D2:E2:F2,22.5,4",
    );
    metric_is(metrics, &readings("espnow-relay"), 8.0).await;
    relay.unplug(&port);
    let body = metric_is(metrics, &errors("espnow-relay", "incomplete_line"), 1.0).await;
    assert_eq!(
        metric(&body, &readings("espnow-relay")),
        8.0,
        "humidity 4 not taken"
    );
    let (code, health) = http_until(metrics, "/health", |code, _| code == 503).await;
    assert_eq!(code, 503);
    assert!(
        health.contains("\"espnow-relay\":\"connecting\"")
            && health.contains("cannot read its serial port")
            && !health.contains("broker"),
        "{health}"
    );

    let kitchen = "a2:b2:c2:d2:e2:f2";
    let got = sub
        .collect_until(WAIT, |m| stats_of(m, kitchen, "humidity").0 >= 4)
        .await;
    assert_eq!(stats_of(&got, kitchen, "humidity"), (4, 41.0, 44.0));
    for m in &got {
        let j = m.json();
        assert_eq!(j["device"], kitchen, "one device, no phantom: {j}");
        assert_eq!(
            j["name"], "Kitchen",
            "named through the dashed [[device]]: {j}"
        );
    }
    let (code, devices) = http_get(dashboard, "/api/devices").await;
    assert_eq!(code, 200);
    let devices: serde_json::Value = serde_json::from_str(&devices).unwrap();
    let rows = devices["devices"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "one row, not a never-seen twin: {devices}");
    assert_eq!(
        (rows[0]["id"].as_str(), rows[0]["name"].as_str()),
        (Some(kitchen), Some("Kitchen"))
    );
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

#[tokio::test]
async fn a_retained_reading_counts_once_across_restarts_a_kill_and_a_broker_restart() {
    let mut local = Mosquitto::start_persistent();
    let upstream = Mosquitto::start();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/+/aggregated").await;
    let metrics = free_port();
    let cfg = format!(
        r#"{}
[[adapter]]
type = "mqtt"
name = "meters"
url = "mqtt://127.0.0.1:{local}"
topics = ["meters/{{device}}"]
status_topics = ["meters/status/{{device}}"]
qos = 1
max_backoff = "200ms"
"#,
        head("gw-retained", upstream.port(), metrics),
        local = local.port(),
    );
    let ignored = r#"edge_gateway_adapter_retained_ignored_total{adapter="meters"}"#;
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Metrics endpoint listening").await;
    gw.wait_for_log("Subscribed.").await;
    http_until(metrics, "/health", |code, _| code == 200).await;
    // The meter's reading, retained at QoS 1, and its retained status.
    publish(local.port(), "meters/status/house", "online", 1, true).await;
    publish(
        local.port(),
        "meters/house",
        r#"{"energy_kwh":12.5}"#,
        1,
        true,
    )
    .await;
    metric_is(metrics, &readings("meters"), 1.0).await;

    // A clean restart: the broker delivers both retained messages again
    // (and the live copy too if its acknowledgement had not gone out: a
    // resent copy the journal recognises, not a retained one).
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    let mut gw = GatewayProcess::start_in(gw.dir, &cfg);
    gw.wait_for_log("Metrics endpoint listening").await;
    gw.wait_for_log("Subscribed.").await;
    metric_is(metrics, ignored, 1.0).await;

    // kill -9 and the same gateway again.
    let mut gw = gw.kill_and_restart(&cfg, &[]).await;
    gw.wait_for_log("Metrics endpoint listening").await;
    metric_is(metrics, ignored, 1.0).await;

    // The local broker restarts with its persistence: session, retained
    // messages and all; the gateway reconnects and subscribes again.
    gw.take_log();
    let before = gw.seen.iter().filter(|l| l.contains("Subscribed.")).count();
    local.restart();
    gw.wait_for_log_count("Subscribed.", before + 1).await;
    // (How many copies a restarted broker sends is its own affair.)
    http_until(metrics, "/metrics", |_, b| metric(b, ignored) >= 2.0).await;

    // A live reading of another meter, after all of it: its window closes
    // with or after every window a copy of the retained reading went to,
    // and they are published in that order.
    publish(
        local.port(),
        "meters/garage",
        r#"{"energy_kwh":3.0}"#,
        1,
        false,
    )
    .await;
    let got = sub
        .collect_until(Duration::from_secs(30), |m| {
            stats_of(m, "garage", "energy_kwh").0 >= 1 && stats_of(m, "house", "energy_kwh").0 >= 1
        })
        .await;
    assert_eq!(stats_of(&got, "garage", "energy_kwh").0, 1);
    assert_eq!(
        stats_of(&got, "house", "energy_kwh"),
        (1, 12.5, 12.5),
        "one retained reading is one reading, whatever restarted"
    );
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

#[tokio::test]
async fn a_senml_pack_of_a_million_records_is_refused_whole_and_the_next_one_taken() {
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let metrics = free_port();
    let cfg = format!(
        r#"{}
[[adapter]]
type = "mqtt"
name = "senml"
url = "mqtt://127.0.0.1:{local}"
topics = [{{ pattern = "senml/#", format = "senml" }}]
qos = 1
max_payload_bytes = 16777216
"#,
        head("gw-senml", upstream.port(), metrics),
        local = local.port(),
    );
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Metrics endpoint listening").await;
    gw.wait_for_log("Subscribed.").await;
    http_until(metrics, "/health", |code, _| code == 200).await;

    // 10^6 records, 16 MB: under the largest max_payload_bytes.
    let mut pack = String::with_capacity(16_100_000);
    pack.push_str(r#"[{"bn":"flood/","n":"t","v":1}"#);
    for _ in 1..1_000_000 {
        pack.push_str(r#",{"n":"t","v":1}"#);
    }
    pack.push(']');
    assert!(pack.len() < 16 * 1024 * 1024);
    let file = gw.dir.path().join("pack.json");
    std::fs::write(&file, &pack).unwrap();
    let status = tokio::process::Command::new("mosquitto_pub")
        .args([
            "-p",
            &local.port().to_string(),
            "-q",
            "1",
            "-t",
            "senml/flood",
        ])
        .arg("-f")
        .arg(&file)
        .status()
        .await
        .unwrap();
    assert!(status.success());
    metric_is(metrics, &errors("senml", "too_many_readings"), 1.0).await;
    gw.wait_for_log("max_readings_per_message").await;

    let small = r#"[{"bn":"urn:dev:mac:0024befffe804ff1:","n":"temperature","v":21.5},{"n":"humidity","v":40}]"#;
    publish(local.port(), "senml/ok", small, 1, false).await;
    let body = metric_is(metrics, &readings("senml"), 2.0).await;
    assert_eq!(metric(&body, &errors("senml", "too_many_readings")), 1.0);
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

#[tokio::test]
async fn a_flood_of_made_up_forwarders_is_bounded_and_a_real_one_keeps_its_path() {
    let upstream = Mosquitto::start();
    let metrics = free_port();
    let udp = free_udp_port();
    let cfg = format!(
        r#"{}

[[adapter]]
type = "semtech_udp"
name = "lora"
bind = "127.0.0.1:{udp}"
"#,
        head("gw-pull-flood", upstream.port(), metrics)
    );
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Metrics endpoint listening").await;
    gw.wait_for_log("Semtech UDP server listening").await;
    let pull = |eui: [u8; 8], token: u16| {
        let t = token.to_be_bytes();
        let mut d = vec![2, t[0], t[1], 0x02];
        d.extend_from_slice(&eui);
        d
    };
    let real = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    real.connect(("127.0.0.1", udp)).await.unwrap();
    let real_eui = [0xB8, 0x27, 0xEB, 0xFF, 0xFE, 0, 0, 1];
    real.send(&pull(real_eui, 1)).await.unwrap();
    assert_eq!(ack(&real).await, [2, 0, 1, 0x04]);

    // 12-byte PULL_DATA from 5 000 EUIs nobody owns, in bursts the
    // socket buffer holds, each burst counted before the next.
    let flood = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    flood.connect(("127.0.0.1", udp)).await.unwrap();
    let received = r#"edge_gateway_adapter_received_messages_total{adapter="lora"}"#;
    for burst in 0..50u64 {
        for i in 0..100u64 {
            let n = burst * 100 + i;
            flood
                .send(&pull((n | 1 << 40).to_be_bytes(), n as u16))
                .await
                .unwrap();
        }
        metric_is(metrics, received, (2 + burst * 100 + 99) as f64).await;
    }
    let refused = 5_000.0 - 1_023.0;
    let body = metric_is(metrics, &errors("lora", "too_many_forwarders"), refused).await;
    assert!(
        metric(&body, "process_resident_memory_bytes") < 200e6,
        "the flood is bounded: {body}"
    );
    // The real forwarder, known and live, is never refused.
    real.send(&pull(real_eui, 2)).await.unwrap();
    assert_eq!(ack(&real).await, [2, 0, 2, 0x04]);
    gw.wait_for_log("Refusing a forwarder's PULL_DATA").await;
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// The next datagram on `socket`: a PULL_ACK where one is expected.
async fn ack(socket: &UdpSocket) -> Vec<u8> {
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(WAIT, socket.recv(&mut buf))
        .await
        .expect("a PULL_ACK")
        .unwrap();
    buf[..n].to_vec()
}

#[tokio::test]
async fn validate_names_a_device_id_that_can_never_match() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let run = |cfg: &str| {
        std::fs::write(&path, cfg).unwrap();
        Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
            .arg("validate")
            .arg("-c")
            .arg(&path)
            .output()
            .unwrap()
    };
    let device = |id: &str| {
        format!(
            "[gateway]\nid = \"gw\"\n[upstream]\nurl = \"mqtt://127.0.0.1:1883\"\n\
             [[device]]\nid = \"{id}\"\nname = \"Boiler\"\n"
        )
    };
    for never in ["24:6f:28:aa:bb", "24:6f-28:aa:bb:02", " 24:6f:28:aa:bb:02"] {
        let out = run(&device(never));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "a note, not an error: {stderr}");
        assert!(
            stderr.contains("note: device[0].id") && stderr.contains("never"),
            "{never:?}: {stderr}"
        );
    }
    for fine in ["24-6F-28-AA-BB-02", "246f28aabb02", "Boiler room"] {
        let out = run(&device(fine));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.contains("device[0].id"),
            "{fine:?}: {stderr}"
        );
    }
}
