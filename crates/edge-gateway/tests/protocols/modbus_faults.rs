//! `type = "modbus"` when the line or the bus misbehaves, against the real
//! binary: a buffering RS-485 converter (a pyserial script) between the
//! gateway and a pymodbus RTU device that answers late, twice, or always
//! one request behind, or echoes each request as an RS-485 adapter that
//! hears itself does; a scripted Modbus TCP server that sends an answer
//! twice; a TCP server that is not there and a serial port that does not
//! exist at start.
//!
//! Proven: no window ever carries another register's value, whatever the
//! converter does; a device answering out of step is counted, logged and
//! withheld, and read again once it answers in step; an adapter's echo is
//! dropped with `echo = true` and named `echo` without; a doubled TCP answer
//! is dropped by its transaction id and costs the next unit neither its
//! value nor the connection; `/health` and the log
//! say what is wrong with a bus in its own terms; `validate` counts the
//! Modbus devices.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::common::{http_get, http_until, GatewayProcess, WAIT};
use crate::modbus::{
    gateway_config, metric, metrics_of, now_rfc3339, wait_links, window_after, PtyPair, PEER,
};
use serde_json::json;
use test_support::{free_port, have, Message, Mosquitto, PythonPeer, Subscriber};

const CONVERTER: &str = include_str!("../data/modbus_converter.py");

/// Requests the converter forwarded so far.
fn forwarded(converter: &mut PythonPeer) -> u64 {
    converter.send_line("count");
    let mut n = 0;
    loop {
        let line = converter.next_line(WAIT).expect("the converter answers");
        if line == "end" {
            return n;
        }
        if let Some(v) = line.strip_prefix("count ") {
            n = v.parse().unwrap();
        }
    }
}

fn tell(peer: &mut PythonPeer, command: &str) {
    peer.send_line(command);
    assert_eq!(peer.next_line(WAIT).as_deref(), Some("end"), "{command}");
}

#[tokio::test]
async fn late_doubled_and_out_of_step_rtu_answers_never_give_another_registers_value() {
    assert!(have("socat"), "socat is required (apt-get install socat)");
    let upstream = Mosquitto::start();
    let metrics = free_port();
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| -> PathBuf { dir.path().join(n) };
    let (line, conv_gw, conv_dev, device_end) = (
        path("ttyGW"),
        path("ttyCONV-GW"),
        path("ttyCONV-DEV"),
        path("ttyDEV"),
    );
    let _gw_side = PtyPair::start(&line, &conv_gw);
    let _dev_side = PtyPair::start(&conv_dev, &device_end);
    wait_links(&[&line, &conv_gw, &conv_dev, &device_end]).await;
    // Two registers read in two requests of the same shape (one register,
    // function 3): only the order of the answers tells them apart.
    let layout = json!({ "units": { "1": { "holding": { "0": [1000], "100": [2000] } } } });
    let _device = PythonPeer::start_with_args(
        PEER,
        &["rtu", device_end.to_str().unwrap(), &layout.to_string()],
    );
    let mut converter = PythonPeer::start_with_args(
        CONVERTER,
        &[conv_gw.to_str().unwrap(), conv_dev.to_str().unwrap()],
    );
    let body = format!(
        r#"
[[adapter]]
type = "modbus"
name = "rs485"
path = "{line}"
baud = 19200
poll = "200ms"
timeout = "150ms"
max_backoff = "600ms"

[[modbus.device]]
id = "meter"
unit = 1
registers = [{{ metric = "h0", address = 0 }}, {{ metric = "h100", address = 100 }}]
"#,
        line = line.display()
    );
    let mut sub = Subscriber::start(upstream.port(), "building/hq/+/aggregated").await;
    let mut gw = GatewayProcess::start(&gateway_config(upstream.port(), metrics, &body));
    let mut windows: Vec<Message> = Vec::new();
    windows.push(window_after(&mut sub, "meter", "").await);

    for mode in ["double", "late", "behind"] {
        tell(&mut converter, mode);
        let from = forwarded(&mut converter);
        while forwarded(&mut converter) < from + 6 {
            windows.extend(
                sub.collect_until(Duration::from_millis(100), |_| false)
                    .await,
            );
        }
        tell(&mut converter, "normal");
    }
    // In step again: both registers come back, with their own values.
    let back = now_rfc3339();
    let again = window_after(&mut sub, "meter", &back).await;
    let got = metrics_of(&again);
    assert!(
        got.contains_key("h0") && got.contains_key("h100"),
        "{got:?}"
    );
    windows.push(again);
    windows.extend(
        sub.collect_until(Duration::from_millis(100), |_| false)
            .await,
    );

    // Not one window with another register's value, in any mode.
    let mut seen = 0;
    for w in windows.iter().filter(|m| m.json()["device"] == "meter") {
        for (name, want) in [("h0", 1000.0), ("h100", 2000.0)] {
            if let Some(s) = metrics_of(w).get(name) {
                seen += 1;
                for stat in ["min", "max"] {
                    assert_eq!(s[stat].as_f64(), Some(want), "{name} {stat}: {}", w.json());
                }
            }
        }
    }
    assert!(seen >= 4, "{seen} windows checked");

    // Counted and said.
    http_until(metrics, "/metrics", |_, b| {
        metric(
            b,
            "edge_gateway_adapter_errors_total{adapter=\"rs485\",error_type=\"out_of_step\"}",
        ) >= 1.0
    })
    .await;
    gw.wait_for_log("answers out of step").await;
    drop(gw);
}

/// An eight-relay board on RS-485 (coils and inputs only: every read
/// answers in one byte) that goes quiet for a while: once it answers
/// again, it is read again. Every read of its had the shape of a
/// suspect's, and the unit was never asked anything again.
#[tokio::test]
async fn a_relay_board_that_went_quiet_is_read_again_once_it_answers() {
    assert!(have("socat"), "socat is required (apt-get install socat)");
    let upstream = Mosquitto::start();
    let metrics = free_port();
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| -> PathBuf { dir.path().join(n) };
    let (line, conv_gw, conv_dev, device_end) = (
        path("ttyGW"),
        path("ttyCONV-GW"),
        path("ttyCONV-DEV"),
        path("ttyDEV"),
    );
    let _gw_side = PtyPair::start(&line, &conv_gw);
    let _dev_side = PtyPair::start(&conv_dev, &device_end);
    wait_links(&[&line, &conv_gw, &conv_dev, &device_end]).await;
    let layout = json!({ "units": { "1": {
        "coil": { "0": [1, 0, 1, 1, 0, 0, 1, 0] },
        "discrete": { "0": [0, 1] }
    } } });
    let _device = PythonPeer::start_with_args(
        PEER,
        &["rtu", device_end.to_str().unwrap(), &layout.to_string()],
    );
    let mut converter = PythonPeer::start_with_args(
        CONVERTER,
        &[conv_gw.to_str().unwrap(), conv_dev.to_str().unwrap()],
    );
    let body = format!(
        r#"
[[adapter]]
type = "modbus"
name = "rs485"
path = "{line}"
baud = 19200
poll = "200ms"
timeout = "150ms"
max_backoff = "600ms"

[[modbus.device]]
id = "relays"
unit = 1
registers = [
  {{ metric = "relay1", table = "coil", address = 0 }},
  {{ metric = "relay3", table = "coil", address = 2 }},
  {{ metric = "input2", table = "discrete", address = 1 }},
]
"#,
        line = line.display()
    );
    let mut sub = Subscriber::start(upstream.port(), "building/hq/+/aggregated").await;
    let _gw = GatewayProcess::start(&gateway_config(upstream.port(), metrics, &body));
    window_after(&mut sub, "relays", "").await;

    // Quiet for eight requests: enough timeouts to make every read of a
    // one-byte answer suspect. A gateway that stops asking fails here.
    tell(&mut converter, "mute");
    let from = forwarded(&mut converter);
    let quiet_until = std::time::Instant::now() + 2 * WAIT;
    while forwarded(&mut converter) < from + 8 {
        assert!(
            std::time::Instant::now() < quiet_until,
            "the gateway stopped asking the board anything"
        );
        sub.collect_until(Duration::from_millis(100), |_| false)
            .await;
    }
    tell(&mut converter, "normal");

    // A window begun after the board answers again, holding all three (a
    // window may end between two reads of one poll).
    let back = now_rfc3339();
    let again = sub
        .wait_for(WAIT, |m| {
            let j = m.json();
            let got = metrics_of(m);
            j["device"] == "relays"
                && j["window_start"].as_str().unwrap_or("") > back.as_str()
                && ["relay1", "relay3", "input2"]
                    .iter()
                    .all(|n| got.contains_key(*n))
        })
        .await
        .expect("the relay board read again once it answers");
    let got = metrics_of(&again);
    for name in ["relay1", "relay3", "input2"] {
        assert_eq!(got[name]["min"].as_f64(), Some(1.0), "{name}: {got:?}");
    }
}

/// A TCP server that is not there and a serial port that does not exist,
/// at start: `/health` and the log say so in the bus's own terms, and
/// `validate` counts the Modbus devices.
#[tokio::test]
async fn buses_that_cannot_be_opened_at_start_are_said_to_be_so() {
    let metrics = free_port();
    let dashboard = free_port();
    let closed = free_port();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("ttyUSB-missing");
    let config = format!(
        r#"
[gateway]
id = "gw-modbus-down"
state_dir = "@STATE_DIR@"

[metrics]
bind = "127.0.0.1:{metrics}"

# The readings' one output: no broker, so /health judges the buses alone.
[dashboard]
enabled = true
bind = "127.0.0.1:{dashboard}"

[[adapter]]
type = "modbus"
name = "boiler-gw"
url = "tcp://127.0.0.1:{closed}"
poll = "200ms"
timeout = "300ms"
max_backoff = "600ms"

[[adapter]]
type = "modbus"
name = "rs485"
path = "{missing}"
poll = "200ms"
timeout = "300ms"
max_backoff = "600ms"

[[modbus.device]]
adapter = "boiler-gw"
id = "boiler"
unit = 1
# A manual's "30001": the 30001/40001 trap, noted by validate.
registers = [{{ metric = "flow_temperature", table = "input", address = 30001 }}]

[[modbus.device]]
adapter = "rs485"
id = "meter"
unit = 1
profile = "eastron_sdm120"
"#,
        missing = missing.display()
    );
    let mut gw = GatewayProcess::start(&config);
    gw.wait_for_log("Metrics endpoint listening").await;
    let (status, body) = http_until(metrics, "/health", |_, b| {
        b.contains("cannot reach its Modbus TCP server")
            && b.contains("cannot open its serial port")
    })
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains(&format!(
            "adapter \\\"boiler-gw\\\" cannot reach its Modbus TCP server tcp://127.0.0.1:{closed}"
        )),
        "{body}"
    );
    assert!(body.contains("refused"), "{body}");
    assert!(
        body.contains("adapter \\\"rs485\\\" cannot open its serial port"),
        "{body}"
    );
    assert!(!body.contains("broker"), "{body}");

    // Offline, for a reason that is not "stopped answering": they never did.
    gw.wait_for_log_count("Modbus device offline", 2).await;
    let offline: Vec<&String> = gw
        .seen
        .iter()
        .filter(|l| l.contains("Modbus device offline"))
        .collect();
    for l in &offline {
        assert!(!l.contains("stopped answering"), "{l}");
        assert!(l.contains("has not answered since the start"), "{l}");
    }
    let (_, text) = http_get(metrics, "/metrics").await;
    assert!(
        metric(
            &text,
            "edge_gateway_adapter_errors_total{adapter=\"boiler-gw\",error_type=\"connection\"}"
        ) >= 1.0
    );

    // validate counts the devices of [[modbus.device]].
    let out = Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .arg("validate")
        .arg("-c")
        .arg(&gw.config_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("2 adapter(s), 2 device(s)"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("modbus.device[0].registers[0].address") && stderr.contains("address = 0"),
        "{stderr}"
    );
    gw.wait_for_log("Starting edge-gateway").await;
    assert_eq!(
        gw.last_logged("devices"),
        Some(2.0),
        "the start log counts them"
    );
    drop(gw);
}

/// A Modbus TCP gateway that sends one answer twice (a known fault of
/// some gateways and converters). Scripted here: pymodbus, or any server
/// library, cannot be made to double an answer. Unit 1 holds 100 and unit
/// 2 holds 200 at every holding register; the third answer to unit 1 is
/// sent twice, and the server says which unit the request after it was
/// for. The copy used to be read as that request's answer, refused as
/// another transaction's, and the connection dropped: the next unit lost
/// its poll and was blamed for it.
#[tokio::test]
async fn a_doubled_tcp_answer_costs_the_next_unit_neither_its_value_nor_the_connection() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let upstream = Mosquitto::start();
    let metrics = free_port();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let (after_double, next_unit) = tokio::sync::oneshot::channel::<u8>();
    let accepted = connections.clone();
    let server = tokio::spawn(async move {
        let mut after_double = Some(after_double);
        let mut answered_unit1 = 0;
        let mut doubled = false;
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            accepted.fetch_add(1, Ordering::SeqCst);
            // A read of holding registers: MBAP header (7) and PDU (5).
            let mut req = [0u8; 12];
            while s.read_exact(&mut req).await.is_ok() {
                let unit = req[6];
                if doubled {
                    if let Some(tx) = after_double.take() {
                        let _ = tx.send(unit);
                    }
                }
                let count = u16::from_be_bytes([req[10], req[11]]);
                let mut answer = req[..2].to_vec();
                answer.extend([0, 0]);
                answer.extend((3 + 2 * count).to_be_bytes());
                answer.extend([unit, 3, u8::try_from(2 * count).unwrap()]);
                for _ in 0..count {
                    answer.extend((100 * u16::from(unit)).to_be_bytes());
                }
                let mut out = answer.clone();
                if unit == 1 {
                    answered_unit1 += 1;
                    if answered_unit1 == 3 {
                        out.extend(&answer);
                        doubled = true;
                    }
                }
                if s.write_all(&out).await.is_err() {
                    break;
                }
            }
        }
    });
    let body = format!(
        r#"
[[adapter]]
type = "modbus"
name = "plc-gw"
url = "tcp://127.0.0.1:{port}"
poll = "300ms"
timeout = "500ms"
max_backoff = "600ms"

[[modbus.device]]
id = "unit-1"
unit = 1
registers = [{{ metric = "h0", address = 0 }}]

[[modbus.device]]
id = "unit-2"
unit = 2
registers = [{{ metric = "h0", address = 0 }}]
"#
    );
    let mut sub = Subscriber::start(upstream.port(), "building/hq/+/aggregated").await;
    let mut gw = GatewayProcess::start(&gateway_config(upstream.port(), metrics, &body));
    let unit = tokio::time::timeout(WAIT, next_unit)
        .await
        .expect("the doubled answer is sent")
        .unwrap();
    assert_eq!(unit, 2, "the request after unit 1's doubled answer");
    let after = now_rfc3339();
    // Unit 2 read, with its own value, in the windows after the copy.
    for _ in 0..2 {
        let w = window_after(&mut sub, "unit-2", &after).await;
        let h0 = &metrics_of(&w)["h0"];
        for stat in ["min", "max"] {
            assert_eq!(h0[stat].as_f64(), Some(200.0), "{}", w.json());
        }
    }
    let (_, text) = http_until(metrics, "/metrics", |_, b| {
        metric(
            b,
            "edge_gateway_adapter_errors_total{adapter=\"plc-gw\",error_type=\"late_answer\"}",
        ) >= 1.0
    })
    .await;
    assert_eq!(
        metric(
            &text,
            "edge_gateway_adapter_errors_total{adapter=\"plc-gw\",error_type=\"late_answer\"}"
        ),
        1.0
    );
    for error_type in ["protocol", "timeout", "connection"] {
        let name = format!(
            "edge_gateway_adapter_errors_total{{adapter=\"plc-gw\",error_type=\"{error_type}\"}}"
        );
        assert!(metric(&text, &name) <= 0.0, "{error_type}: {text}");
    }
    assert!(
        metric(
            &text,
            "edge_gateway_adapter_reconnects_total{adapter=\"plc-gw\"}"
        ) <= 0.0,
        "{text}"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 1);
    gw.wait_for_log("doubled or late answer").await;
    drop(gw);
    server.abort();
}

/// One RS-485 line of the echo test: the gateway's end, and the
/// converter (echoing on command) and pymodbus device behind it.
struct EchoLine {
    gateway_end: PathBuf,
    converter: PythonPeer,
    _device: PythonPeer,
    _ptys: (PtyPair, PtyPair),
}

async fn echo_line(dir: &std::path::Path, name: &str) -> EchoLine {
    let path = |n: &str| -> PathBuf { dir.join(format!("{name}-{n}")) };
    let (line, conv_gw, conv_dev, device_end) =
        (path("GW"), path("CONV-GW"), path("CONV-DEV"), path("DEV"));
    let gw_side = PtyPair::start(&line, &conv_gw);
    let dev_side = PtyPair::start(&conv_dev, &device_end);
    wait_links(&[&line, &conv_gw, &conv_dev, &device_end]).await;
    let layout = json!({ "units": { "1": { "holding": { "0": [1000], "100": [2000] } } } });
    let device = PythonPeer::start_with_args(
        PEER,
        &["rtu", device_end.to_str().unwrap(), &layout.to_string()],
    );
    let converter = PythonPeer::start_with_args(
        CONVERTER,
        &[conv_gw.to_str().unwrap(), conv_dev.to_str().unwrap()],
    );
    EchoLine {
        gateway_end: line,
        converter,
        _device: device,
        _ptys: (gw_side, dev_side),
    }
}

/// RS-485 adapters that echo every byte the gateway sends (the converter
/// sends each request back before forwarding it to the pymodbus device).
/// On the line with `echo = true` the echo is dropped and both registers
/// are read with their own values; when the echo stops there, the poll
/// fails as `bad_echo`, and reads again once it is back. On the line not
/// told, the gateway says `echo` (and to set `echo = true`), not `crc`:
/// before, every poll of an echoing line failed as a garbled answer.
#[tokio::test]
async fn an_rs485_adapters_echo_is_dropped_when_said_and_named_when_not() {
    assert!(have("socat"), "socat is required (apt-get install socat)");
    let upstream = Mosquitto::start();
    let metrics = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut said = echo_line(dir.path(), "said").await;
    let mut unsaid = echo_line(dir.path(), "unsaid").await;
    tell(&mut said.converter, "echo");
    tell(&mut unsaid.converter, "echo");
    let body = format!(
        r#"
[[adapter]]
type = "modbus"
name = "echoing"
path = "{said}"
baud = 19200
echo = true
poll = "200ms"
timeout = "150ms"
max_backoff = "600ms"

[[adapter]]
type = "modbus"
name = "unsaid"
path = "{unsaid}"
baud = 19200
poll = "200ms"
timeout = "150ms"
max_backoff = "600ms"

[[modbus.device]]
adapter = "echoing"
id = "meter"
unit = 1
registers = [{{ metric = "h0", address = 0 }}, {{ metric = "h100", address = 100 }}]

[[modbus.device]]
adapter = "unsaid"
id = "meter-unsaid"
unit = 1
registers = [{{ metric = "h0", address = 0 }}]
"#,
        said = said.gateway_end.display(),
        unsaid = unsaid.gateway_end.display(),
    );
    let errors = |adapter: &str, error_type: &str| {
        format!("edge_gateway_adapter_errors_total{{adapter=\"{adapter}\",error_type=\"{error_type}\"}}")
    };
    let mut sub = Subscriber::start(upstream.port(), "building/hq/+/aggregated").await;
    let mut gw = GatewayProcess::start(&gateway_config(upstream.port(), metrics, &body));
    // Windows of the meter after `after` until one holds both registers
    // (a window may close between a poll's two reads), each value its own.
    async fn both_read(sub: &mut Subscriber, after: &str) {
        for _ in 0..10 {
            let w = window_after(sub, "meter", after).await;
            let got = metrics_of(&w);
            for (name, want) in [("h0", 1000.0), ("h100", 2000.0)] {
                if let Some(s) = got.get(name) {
                    for stat in ["min", "max"] {
                        assert_eq!(s[stat].as_f64(), Some(want), "{}", w.json());
                    }
                }
            }
            if got.contains_key("h0") && got.contains_key("h100") {
                return;
            }
        }
        panic!("no window of the meter with both registers");
    }
    both_read(&mut sub, "").await;

    // Not told: its own request named for what it is.
    http_until(metrics, "/metrics", |_, b| {
        metric(b, &errors("unsaid", "echo")) >= 1.0
    })
    .await;
    gw.wait_for_log("Set echo = true").await;

    // Told: no fault at all while the adapter echoes.
    let (_, text) = http_get(metrics, "/metrics").await;
    for error_type in ["crc", "echo", "bad_echo", "out_of_step"] {
        assert!(
            metric(&text, &errors("echoing", error_type)) <= 0.0,
            "{error_type}: {text}"
        );
    }
    assert!(metric(&text, &errors("unsaid", "crc")) <= 0.0, "{text}");

    // The echo gone where it is expected: bad_echo, then read again once
    // it is back.
    tell(&mut said.converter, "noecho");
    http_until(metrics, "/metrics", |_, b| {
        metric(b, &errors("echoing", "bad_echo")) >= 1.0
    })
    .await;
    gw.wait_for_log("did not come back as sent").await;
    tell(&mut said.converter, "echo");
    let back = now_rfc3339();
    both_read(&mut sub, &back).await;
    drop(gw);
}
