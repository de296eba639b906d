//! `type = "serial_line"` with a `socat` pseudo-terminal pair standing in
//! for an ESP-NOW relay board on USB: boot noise, MAC → room name
//! through `[[device]]`, and the port removed and created again, the line
//! it cut (without its newline) dropped and counted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{http_get, http_until, rel_close, totals, GatewayProcess, WAIT};
use test_support::{free_port, have, Mosquitto, Subscriber};

/// `socat` linking two pseudo-terminals: `port` for the gateway, `board`
/// for the test to write to as the relay board would.
struct PtyPair {
    child: Child,
}

impl PtyPair {
    fn start(port: &Path, board: &Path) -> Self {
        let child = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", port.display()))
            .arg(format!("pty,raw,echo=0,link={}", board.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn socat");
        Self { child }
    }

    /// The port vanishes, as an unplugged board does.
    fn remove(mut self, port: &Path) {
        // SIGTERM: socat closes the ptys and unlinks its links.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(port);
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until socat has made both links.
async fn wait_links(links: &[&Path]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !links.iter().all(|l| l.exists()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "socat made no links"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn write_board(board: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().write(true).open(board).unwrap();
    f.write_all(bytes).unwrap();
    f.flush().unwrap();
}

fn metric(body: &str, name_and_labels: &str) -> f64 {
    test_support::metrics::sample(body, name_and_labels).unwrap_or(-1.0)
}

const READINGS: &str = "edge_gateway_adapter_readings_total{adapter=\"espnow-relay\"}";
const CONNECTED: &str = "edge_gateway_adapter_connected{adapter=\"espnow-relay\"}";

#[tokio::test]
async fn a_relay_port_that_vanishes_and_returns_is_read_again_and_its_cut_line_dropped() {
    if !have("socat") {
        // scripts/test.sh installs it; say so rather than pass silently.
        panic!("socat is required for this test (apt-get install socat)");
    }
    let upstream = Mosquitto::start();
    let metrics = free_port();
    let dir = tempfile::tempdir().unwrap();
    let port: PathBuf = dir.path().join("ttyRELAY");
    let board: PathBuf = dir.path().join("ttyBOARD");
    let kitchen = "24:6f:28:aa:bb:01";
    let mut sub = Subscriber::start(
        upstream.port(),
        &format!("building/hq/{kitchen}/aggregated"),
    )
    .await;
    let cfg = format!(
        r#"
[gateway]
id = "gw-serial"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{up}"
qos = 1
topic_prefix = "building/{{site}}"
max_backoff = "1s"

[aggregation]
window = "1s"
grace = "0s"

[metrics]
bind = "127.0.0.1:{metrics}"

[[adapter]]
type = "serial_line"
name = "espnow-relay"
path = "{port}"
format = "csv"
columns = ["mac", "temperature", "humidity"]
max_backoff = "200ms"

[[device]]
id = "{kitchen}"
name = "Kitchen"
room = "kitchen"
"#,
        up = upstream.port(),
        port = port.display(),
    );
    let pair = PtyPair::start(&port, &board);
    wait_links(&[&port, &board]).await;
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Metrics endpoint listening").await;
    gw.wait_for_log("Serial port open.").await;
    http_until(metrics, "/metrics", |_, b| metric(b, CONNECTED) == 1.0).await;

    // The ESP32's ROM banner read at the wrong baud rate, then lines.
    write_board(&board, b"\xe0\x1c\x9c\xfc\x80\xf0ets Jun  8 2016\r\n");
    let mut sent = Vec::new();
    let mut wire = String::new();
    for i in 0..20 {
        let (t, h) = (21.0 + i as f64 / 10.0, 40.0 + i as f64);
        wire.push_str(&format!("{kitchen},{t:.1},{h:.1}\r\n"));
        sent.extend([t, h]);
    }
    write_board(&board, wire.as_bytes());
    http_until(metrics, "/metrics", |_, b| metric(b, READINGS) == 40.0).await;
    let (_, body) = http_get(metrics, "/metrics").await;
    let errors = "edge_gateway_adapter_errors_total";
    let bad =
        test_support::metrics::sum_with(&body, errors, "adapter=\"espnow-relay\"").unwrap_or(0.0);
    assert!(bad >= 1.0, "boot noise counted as bad lines: {body}");

    // The board's last line has no newline when the port goes: cut where
    // the plug came out (`29.5,55.0` may have been `29.5,55.25`), it is
    // dropped and counted, and never glued to the first line after the port
    // returns. In one write with a whole line, so the gateway has read it
    // once that line is counted.
    write_board(
        &board,
        format!("{kitchen},25.0,45.0\r\n{kitchen},29.5,55.0").as_bytes(),
    );
    sent.extend([25.0, 45.0]);
    http_until(metrics, "/metrics", |_, b| metric(b, READINGS) == 42.0).await;
    pair.remove(&port);
    gw.wait_for_log("Serial port lost").await;
    let incomplete =
        "edge_gateway_adapter_errors_total{adapter=\"espnow-relay\",error_type=\"incomplete_line\"}";
    http_until(metrics, "/metrics", |_, b| metric(b, incomplete) == 1.0).await;
    assert_eq!(
        metric(&http_get(metrics, "/metrics").await.1, READINGS),
        42.0
    );
    http_until(metrics, "/metrics", |_, b| metric(b, CONNECTED) == 0.0).await;
    let (_, health) = http_get(metrics, "/health").await;
    assert!(
        health.contains("\"espnow-relay\":\"connecting\""),
        "{health}"
    );

    let _pair = PtyPair::start(&port, &board);
    wait_links(&[&port, &board]).await;
    gw.wait_for_log_count("Serial port open.", 2).await;
    http_until(metrics, "/metrics", |_, b| metric(b, CONNECTED) == 1.0).await;
    let mut wire = String::new();
    for i in 0..10 {
        let (t, h) = (25.0 + i as f64 / 10.0, 50.0 + i as f64);
        wire.push_str(&format!("{kitchen},{t:.1},{h:.1}\n"));
        sent.extend([t, h]);
    }
    write_board(&board, wire.as_bytes());
    http_until(metrics, "/metrics", |_, b| metric(b, READINGS) == 62.0).await;
    let (_, health) = http_get(metrics, "/health").await;
    assert!(health.contains("\"espnow-relay\":\"running\""), "{health}");

    let got = sub
        .collect_until(Duration::from_secs(30), |m| {
            totals(m)
                .get(kitchen)
                .is_some_and(|t| t.0 >= sent.len() as u64)
        })
        .await;
    let (count, sum, _) = totals(&got).get(kitchen).copied().unwrap_or_default();
    assert_eq!(count, sent.len() as u64);
    assert!(
        rel_close(sum, sent.iter().sum()),
        "sum {sum}: the cut line never, nothing glued"
    );
    assert!(
        got.iter().all(|m| m.json()["name"] == "Kitchen"),
        "the MAC is named through [[device]]"
    );
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// A relay board removed from the config (SIGHUP) leaves nothing behind:
/// not the "cannot read its serial port" of `/health`, nor its
/// `edge_gateway_adapter_link_info` in `/metrics`.
#[tokio::test(flavor = "current_thread")]
async fn a_serial_adapter_removed_by_a_reload_leaves_no_state_behind() {
    let state = tempfile::tempdir().unwrap();
    let unplugged = state.path().join("ttyUSB-unplugged");
    let config = |adapter: bool| {
        let section = format!(
            "[[adapter]]\ntype = \"serial_line\"\nname = \"relay\"\npath = \"{}\"\nformat = \"csv\"\ncolumns = [\"mac\", \"temperature\"]\n",
            unplugged.display()
        );
        gateway_settings::parse(&format!(
            "[gateway]\nid = \"gw-removed\"\nstate_dir = \"{}\"\n{}",
            state.path().display(),
            if adapter { section.as_str() } else { "" }
        ))
        .unwrap()
    };
    let mut gw = edge_gateway::runtime::Gateway::start(
        &config(true),
        std::sync::Arc::new(gateway_core::SystemClock),
    )
    .unwrap();
    let link = gateway_core::component::ADAPTER_LINK;
    tokio::time::timeout(WAIT, async {
        while gw.telemetry.gauges(link).is_empty() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the adapter says what it is linked to");
    let unplugged_health = edge_gateway::health::check(&gw.telemetry);
    assert!(!unplugged_health.healthy, "{}", unplugged_health.body);

    let summary = gw.reload(config(false)).await;
    assert_eq!(summary.stopped, ["relay"]);
    assert!(
        gw.telemetry.gauges(link).is_empty(),
        "{:?}",
        gw.telemetry.gauges(link)
    );
    let health = edge_gateway::health::check(&gw.telemetry);
    assert!(health.healthy, "{}", health.body);
    gw.stop().await.unwrap();
}

/// An ESP32 behind a USB bridge (CP2102) that hangs and resets mid-line:
/// the port stays, so nothing but the pause ends the cut line. It is
/// dropped and counted `incomplete_line`, and the first line the board
/// prints after its reset is read whole, not glued to it.
#[tokio::test]
async fn a_line_the_board_stops_writing_halfway_is_dropped_not_glued_to_the_next() {
    if !have("socat") {
        panic!("socat is required for this test (apt-get install socat)");
    }
    let upstream = Mosquitto::start();
    let metrics = free_port();
    let dir = tempfile::tempdir().unwrap();
    let port: PathBuf = dir.path().join("ttyRELAY");
    let board: PathBuf = dir.path().join("ttyBOARD");
    let kitchen = "24:6f:28:aa:bb:01";
    let cfg = format!(
        r#"
[gateway]
id = "gw-serial-reset"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{up}"
max_backoff = "1s"

[metrics]
bind = "127.0.0.1:{metrics}"

[[adapter]]
type = "serial_line"
name = "espnow-relay"
path = "{port}"
format = "csv"
columns = ["mac", "temperature", "humidity"]
"#,
        up = upstream.port(),
        port = port.display(),
    );
    let _pair = PtyPair::start(&port, &board);
    wait_links(&[&port, &board]).await;
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Metrics endpoint listening").await;
    gw.wait_for_log("Serial port open.").await;
    http_until(metrics, "/metrics", |_, b| metric(b, CONNECTED) == 1.0).await;

    // A whole line, then the board hangs after `…,29.5,4` (of 41.0).
    write_board(
        &board,
        format!("{kitchen},25.0,45.0\r\n{kitchen},29.5,4").as_bytes(),
    );
    http_until(metrics, "/metrics", |_, b| metric(b, READINGS) == 2.0).await;
    let incomplete =
        "edge_gateway_adapter_errors_total{adapter=\"espnow-relay\",error_type=\"incomplete_line\"}";
    http_until(metrics, "/metrics", |_, b| metric(b, incomplete) == 1.0).await;
    // Reset: its first line after the boot is whole, and taken.
    write_board(&board, format!("{kitchen},26.0,46.0\r\n").as_bytes());
    http_until(metrics, "/metrics", |_, b| metric(b, READINGS) == 4.0).await;
    let (_, body) = http_get(metrics, "/metrics").await;
    let glued = "edge_gateway_adapter_errors_total{adapter=\"espnow-relay\",error_type=\"csv_column_count\"}";
    assert_eq!(metric(&body, glued), -1.0, "nothing glued: {body}");
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// A relay sketch that prints each line as a C string with its terminator
/// (`Serial.write(buf, strlen(buf) + 1)`): a NUL after every line, or
/// right before its line ending. Every line is a reading, none refused:
/// the NUL once led the next line, whose MAC was then refused and its
/// reading lost.
#[tokio::test]
async fn a_nul_after_each_line_of_a_c_string_sketch_loses_no_reading() {
    if !have("socat") {
        panic!("socat is required for this test (apt-get install socat)");
    }
    let upstream = Mosquitto::start();
    let metrics = free_port();
    let dir = tempfile::tempdir().unwrap();
    let port: PathBuf = dir.path().join("ttyRELAY");
    let board: PathBuf = dir.path().join("ttyBOARD");
    let kitchen = "24:6f:28:aa:bb:01";
    let mut sub = Subscriber::start(
        upstream.port(),
        &format!("building/hq/{kitchen}/aggregated"),
    )
    .await;
    let cfg = format!(
        r#"
[gateway]
id = "gw-serial-nul"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{up}"
qos = 1
topic_prefix = "building/{{site}}"
max_backoff = "1s"

[aggregation]
window = "1s"
grace = "0s"

[metrics]
bind = "127.0.0.1:{metrics}"

[[adapter]]
type = "serial_line"
name = "espnow-relay"
path = "{port}"
format = "csv"
columns = ["mac", "temperature", "humidity"]
"#,
        up = upstream.port(),
        port = port.display(),
    );
    let _pair = PtyPair::start(&port, &board);
    wait_links(&[&port, &board]).await;
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Metrics endpoint listening").await;
    gw.wait_for_log("Serial port open.").await;
    http_until(metrics, "/metrics", |_, b| metric(b, CONNECTED) == 1.0).await;

    let endings = ["\n\0", "\r\n\0", "\0\r\n", "\0\n"];
    let mut sent = Vec::new();
    let mut wire = Vec::new();
    for i in 0..12 {
        let (t, h) = (21.0 + i as f64 / 10.0, 40.0 + i as f64);
        wire.extend_from_slice(format!("{kitchen},{t:.1},{h:.1}").as_bytes());
        wire.extend_from_slice(endings[i % endings.len()].as_bytes());
        sent.extend([t, h]);
    }
    // Half in one write, the rest a line per write: NULs inside a read
    // and at its end.
    let (bulk, rest) = wire.split_at(wire.len() / 2);
    write_board(&board, bulk);
    for line in rest.split_inclusive(|&b| b == 0) {
        write_board(&board, line);
    }
    let received = "edge_gateway_adapter_received_messages_total{adapter=\"espnow-relay\"}";
    http_until(metrics, "/metrics", |_, b| metric(b, received) == 12.0).await;
    let (_, body) = http_get(metrics, "/metrics").await;
    let errors = test_support::metrics::sum_with(
        &body,
        "edge_gateway_adapter_errors_total",
        "adapter=\"espnow-relay\"",
    )
    .unwrap_or(0.0);
    assert_eq!(errors, 0.0, "no line refused: {body}");
    assert_eq!(metric(&body, READINGS), sent.len() as f64);

    let got = sub
        .collect_until(Duration::from_secs(30), |m| {
            totals(m)
                .get(kitchen)
                .is_some_and(|t| t.0 >= sent.len() as u64)
        })
        .await;
    let (count, sum, _) = totals(&got).get(kitchen).copied().unwrap_or_default();
    assert_eq!(count, sent.len() as u64);
    assert!(rel_close(sum, sent.iter().sum()), "sum {sum}");
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// A gateway reading one ESP-NOW relay's port (a pty pair, the board's
/// end to write to), connected; kept together so that it lives as long
/// as the test.
struct RelayPort {
    _upstream: Mosquitto,
    _pair: PtyPair,
    _dir: tempfile::TempDir,
    gw: GatewayProcess,
    metrics: u16,
    board: PathBuf,
}

impl RelayPort {
    async fn start(gateway: &str, device: &str) -> Self {
        let upstream = Mosquitto::start();
        let metrics = free_port();
        let dir = tempfile::tempdir().unwrap();
        let port: PathBuf = dir.path().join("ttyRELAY");
        let board: PathBuf = dir.path().join("ttyBOARD");
        let cfg = format!(
            r#"
[gateway]
id = "{gateway}"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{up}"
max_backoff = "1s"

[metrics]
bind = "127.0.0.1:{metrics}"

[[adapter]]
type = "serial_line"
name = "espnow-relay"
path = "{port}"
format = "csv"
columns = ["temperature", "humidity"]
device = "{device}"
"#,
            up = upstream.port(),
            port = port.display(),
        );
        let pair = PtyPair::start(&port, &board);
        wait_links(&[&port, &board]).await;
        let mut gw = GatewayProcess::start(&cfg);
        gw.wait_for_log("Metrics endpoint listening").await;
        gw.wait_for_log("Serial port open.").await;
        http_until(metrics, "/metrics", |_, b| metric(b, CONNECTED) == 1.0).await;
        Self {
            _upstream: upstream,
            _pair: pair,
            _dir: dir,
            gw,
            metrics,
            board,
        }
    }
}

/// A board that resets mid-line (brown-out, watchdog, the reset button)
/// behind a USB bridge: the port stays, the board goes quiet while it
/// boots, then prints its first line. The fragment before the reset was
/// glued to that line (`21.5,422.0,45.1`), refused with it: the first
/// reading after every reset lost, and the error counted against it. The
/// glued line, refused whole, is read again from the boot pause inside
/// it: the fragment is dropped and counted `incomplete_line`, the line
/// taken. A
/// line the sketch prints in two writes a few milliseconds apart is one
/// line, as before.
#[tokio::test]
async fn a_board_reset_mid_line_loses_only_the_cut_line_not_the_first_after_boot() {
    if !have("socat") {
        panic!("socat is required for this test (apt-get install socat)");
    }
    // Whole, so that the broker, the ports and the directory live on.
    let mut relay = RelayPort::start("gw-serial-boot", "24:6f:28:aa:bb:01").await;
    let (metrics, board) = (relay.metrics, relay.board.clone());

    // The sketch prints a line in two parts (`Serial.print(t);
    // Serial.println(h)` with a little work between): one line.
    write_board(&board, b"21.0,");
    std::thread::sleep(Duration::from_millis(5));
    write_board(&board, b"44.0\r\n");
    http_until(metrics, "/metrics", |_, b| metric(b, READINGS) == 2.0).await;

    // Then it resets after `21.5,4` (of 45.0): the device's own boot
    // pause (an ESP32's is a few hundred milliseconds), then its first line.
    write_board(&board, b"21.5,4");
    std::thread::sleep(Duration::from_millis(300));
    write_board(&board, b"22.0,45.1\r\n");
    let incomplete =
        "edge_gateway_adapter_errors_total{adapter=\"espnow-relay\",error_type=\"incomplete_line\"}";
    let refused = |b: &str| {
        test_support::metrics::sum_with(
            b,
            "edge_gateway_adapter_errors_total",
            "adapter=\"espnow-relay\"",
        )
        .unwrap_or(0.0)
            - metric(b, incomplete).max(0.0)
    };
    // Either outcome ends the wait: the line taken, or refused glued.
    http_until(metrics, "/metrics", |_, b| {
        metric(b, READINGS) == 4.0 || refused(b) >= 1.0
    })
    .await;
    let (_, body) = http_get(metrics, "/metrics").await;
    assert_eq!(refused(&body), 0.0, "nothing glued and refused: {body}");
    assert_eq!(metric(&body, READINGS), 4.0, "{body}");
    assert_eq!(metric(&body, incomplete), 1.0, "the cut line: {body}");
    relay.gw.signal("TERM");
    assert_eq!(relay.gw.wait_exit().await, Some(0));
}

/// A sketch that pauses inside every line: `Serial.print(t);
/// Serial.print(','); sensors.requestTemperatures(); Serial.println(h)`,
/// the DS18B20's conversion blocking it 750 ms between the two halves.
/// No reset: each line decodes whole and is taken whole, however long the
/// pause inside it (up to the stall, a second and more). Cutting such
/// lines at a reset-sized pause lost every reading of the sketch.
#[tokio::test]
async fn a_sketch_that_pauses_750_ms_inside_every_line_has_every_reading_taken() {
    if !have("socat") {
        panic!("socat is required for this test (apt-get install socat)");
    }
    // Whole, so that the broker, the ports and the directory live on.
    let mut relay = RelayPort::start("gw-serial-ds18b20", "24:6f:28:aa:bb:02").await;
    let (metrics, board) = (relay.metrics, relay.board.clone());

    let errors = |b: &str| {
        test_support::metrics::sum_with(
            b,
            "edge_gateway_adapter_errors_total",
            "adapter=\"espnow-relay\"",
        )
        .unwrap_or(0.0)
    };
    for taken in [2.0, 4.0, 6.0] {
        write_board(&board, b"21.5,");
        // The device's own behaviour, not a wait for the gateway: the
        // sketch blocks on the DS18B20's 750 ms conversion mid-line.
        tokio::time::sleep(Duration::from_millis(750)).await;
        write_board(&board, b"45.1\r\n");
        // Either outcome ends the wait: the line taken, or anything
        // refused (its start cut, the rest refused).
        http_until(metrics, "/metrics", |_, b| {
            metric(b, READINGS) == taken || errors(b) >= 1.0
        })
        .await;
    }
    let (_, body) = http_get(metrics, "/metrics").await;
    assert_eq!(errors(&body), 0.0, "nothing cut or refused: {body}");
    assert_eq!(metric(&body, READINGS), 6.0, "every reading: {body}");
    relay.gw.signal("TERM");
    assert_eq!(relay.gw.wait_exit().await, Some(0));
}
