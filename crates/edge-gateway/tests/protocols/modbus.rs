//! `type = "modbus"` against the real binary, a real Mosquitto upstream
//! and pymodbus as the devices (an implementation independent of ours):
//! a TCP server, and an RTU server on one end of a `socat` pseudo-terminal
//! pair with the gateway on the other (8N1: a pty ignores parity, so
//! parity is not tested here).
//!
//! Proven: every type and byte/word order reaches upstream with the exact
//! window statistics of the values the peer holds; the shipped SDM120
//! profile; a device's registers are read in grouped requests (counted by
//! the peer); an illegal address is counted, disabled and not fatal; two
//! devices share one RTU line; a device that stops answering goes offline
//! while the other goes on, and comes back; the RTU bus keeps reporting
//! while the TCP server is down, and the TCP device returns with it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{http_get, http_until, GatewayProcess, WAIT};
use serde_json::{json, Value};
use test_support::{free_port, have, Message, Mosquitto, PythonPeer, Subscriber};

pub(crate) const PEER: &str = include_str!("../data/modbus_peer.py");

/// The eight register types with a value each, as (type, big-endian
/// bytes of the raw value, the reading it must give).
fn typed_values() -> Vec<(&'static str, Vec<u8>, f64)> {
    vec![
        ("u16", vec![0xFF, 0xFE], 65534.0),
        ("i16", vec![0xFF, 0xFE], -2.0),
        ("u32", vec![0xDE, 0xAD, 0xBE, 0xEF], 3_735_928_559.0),
        ("i32", vec![0xFF, 0xFE, 0x79, 0x60], -100_000.0),
        (
            "u64",
            vec![0x00, 0x00, 0x00, 0x02, 0x54, 0x0B, 0xE4, 0x00],
            10_000_000_000.0,
        ),
        (
            "i64",
            vec![0xFF, 0xFF, 0xFF, 0xFD, 0xAB, 0xF4, 0x1C, 0x00],
            -10_000_000_000.0,
        ),
        ("f32", vec![0xC2, 0xF6, 0xE9, 0x79], f64::from(-123.456_f32)),
        (
            "f64",
            vec![0x40, 0x09, 0x21, 0xFB, 0x54, 0x44, 0x2D, 0x18],
            std::f64::consts::PI,
        ),
    ]
}

/// `be` laid out in registers the way a device with `order` sends it.
fn words_in(be: &[u8], order: &str) -> Vec<u16> {
    let words: Vec<u16> = be
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    let n = words.len();
    (0..n)
        .map(|i| {
            let w = match order {
                "dcba" | "cdab" => words[n - 1 - i],
                _ => words[i],
            };
            if matches!(order, "dcba" | "badc") {
                w.swap_bytes()
            } else {
                w
            }
        })
        .collect()
}

pub(crate) fn f32_words(v: f32) -> Vec<u16> {
    let b = v.to_be_bytes();
    vec![
        u16::from_be_bytes([b[0], b[1]]),
        u16::from_be_bytes([b[2], b[3]]),
    ]
}

/// The statistics of each metric of a window upstream, by metric.
pub(crate) fn metrics_of(m: &Message) -> BTreeMap<String, Value> {
    m.json()["metrics"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

pub(crate) fn metric(body: &str, name_and_labels: &str) -> f64 {
    test_support::metrics::sample(body, name_and_labels).unwrap_or(-1.0)
}

/// Asks the peer how many requests of each (unit, function) it received.
fn peer_counts(peer: &mut PythonPeer) -> BTreeMap<(u8, u8), u64> {
    peer.send_line("count");
    let mut out = BTreeMap::new();
    loop {
        let line = peer
            .next_line(WAIT)
            .expect("the peer answers `count` with lines ending in `end`");
        if line == "end" {
            return out;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 4 && f[0] == "count" {
            out.insert(
                (f[1].parse().unwrap(), f[2].parse().unwrap()),
                f[3].parse().unwrap(),
            );
        }
    }
}

pub(crate) fn gateway_config(upstream: u16, metrics: u16, body: &str) -> String {
    format!(
        r#"
[gateway]
id = "gw-modbus"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{upstream}"
qos = 1
topic_prefix = "building/{{site}}"
max_backoff = "1s"

[aggregation]
window = "1s"
grace = "0s"

[metrics]
bind = "127.0.0.1:{metrics}"
{body}
"#
    )
}

#[tokio::test]
async fn every_type_and_order_the_sdm120_profile_grouped_reads_and_an_illegal_address() {
    let upstream = Mosquitto::start();
    let metrics = free_port();
    let port = free_port();

    // Unit 1: each type in each order, one after the other, plus a scaled
    // register, coils and discrete inputs. Unit 2: an SDM120 meter at its
    // vendor addresses. Unit 3: a map with an address the device lacks.
    let mut holding = Vec::new();
    let mut registers = Vec::new();
    let mut expected: BTreeMap<String, f64> = BTreeMap::new();
    for order in ["abcd", "dcba", "badc", "cdab"] {
        for (ty, be, want) in typed_values() {
            let metric = format!("{ty}_{order}");
            registers.push(format!(
                "{{ metric = \"{metric}\", address = {}, type = \"{ty}\", order = \"{order}\" }}",
                holding.len()
            ));
            holding.extend(words_in(&be, order));
            expected.insert(metric, want);
        }
    }
    let scaled_at = holding.len();
    holding.push(251);
    registers.push(format!(
        "{{ metric = \"supply_temperature\", address = {scaled_at}, type = \"i16\", scale = 0.1, offset = -40.0, unit = \"°C\" }}"
    ));
    expected.insert("supply_temperature".into(), 251.0 * 0.1 + -40.0);
    // A meter's "no value": NaN and infinity, counted and logged, never
    // a reading.
    let not_finite_at = holding.len();
    holding.extend([0x7FC0, 0x0000, 0x7F80, 0x0000]);
    registers.push(format!(
        "{{ metric = \"nan\", address = {not_finite_at}, type = \"f32\" }}"
    ));
    registers.push(format!(
        "{{ metric = \"infinite\", address = {}, type = \"f32\" }}",
        not_finite_at + 2
    ));
    // A heat pump's status word, one metric per named bit, and its
    // serial number as text.
    let status_at = holding.len();
    holding.push(0x8001);
    registers.push(format!(
        "{{ address = {status_at}, bits = {{ compressor_on = 0, defrost = 1, fault = 15 }} }}"
    ));
    expected.insert("compressor_on".into(), 1.0);
    expected.insert("defrost".into(), 0.0);
    expected.insert("fault".into(), 1.0);
    let serial_at = holding.len();
    holding.extend([0x534E, 0x2D30, 0x3034, 0x3200]);
    registers.push(format!(
        "{{ metric = \"serial_number\", address = {serial_at}, type = \"string\", length = 4 }}"
    ));
    registers.push("{ metric = \"pump\", table = \"coil\", address = 3 }".into());
    registers.push("{ metric = \"alarm\", table = \"discrete\", address = 1 }".into());
    expected.insert("pump".into(), 1.0);
    expected.insert("alarm".into(), 1.0);

    let sdm: [(&str, u16, f32); 6] = [
        ("voltage", 0x0000, 230.4),
        ("current", 0x0006, 4.25),
        ("power", 0x000C, 951.5),
        ("power_factor", 0x001E, 0.97),
        ("frequency", 0x0046, 50.01),
        ("energy", 0x0156, 1234.5),
    ];
    // The holes of an SDM120's map hold zeros, as the meter answers them.
    let mut sdm_block = vec![0u16; 0x4C];
    for (_, at, v) in sdm.iter().filter(|s| s.1 < 0x4C) {
        let w = f32_words(*v);
        sdm_block[usize::from(*at)] = w[0];
        sdm_block[usize::from(*at) + 1] = w[1];
    }
    let layout = json!({ "units": {
        "1": {
            "holding": { "0": holding },
            "coil": { "0": [0, 0, 0, 1, 0] },
            "discrete": { "0": [0, 1] },
        },
        "2": { "input": { "0": sdm_block, "342": f32_words(1234.5) } },
        "3": { "holding": { "0": [11], "5": [13] } },
    }});
    let mut peer =
        PythonPeer::start_with_args(PEER, &["tcp", &port.to_string(), &layout.to_string()]);

    let body = format!(
        r#"
[[adapter]]
type = "modbus"
name = "plant"
url = "tcp://127.0.0.1:{port}"
poll = "200ms"
timeout = "500ms"
max_backoff = "1s"

[[modbus.device]]
id = "ahu-1"
unit = 1
registers = [
  {regs}
]

[[modbus.device]]
id = "meter-1"
unit = 2
name = "Main meter"
room = "plant-room"
profile = "eastron_sdm120"
# Read once: the peer's request count is then one poll's.
poll = "1h"

[[modbus.device]]
id = "odd-map"
unit = 3
registers = [
  {{ metric = "first", address = 0 }},
  {{ metric = "missing", address = 2 }},
  {{ metric = "last", address = 5 }},
]
"#,
        regs = registers.join(",\n  ")
    );
    let mut sub = Subscriber::start(upstream.port(), "building/hq/+/aggregated").await;
    let mut gw = GatewayProcess::start(&gateway_config(upstream.port(), metrics, &body));
    gw.wait_for_log("Modbus bus open.").await;

    // Exact statistics of every type and order: constant values, so every
    // window's min, max and avg are the value itself and std is 0.
    let ahu = sub
        .wait_for(WAIT, |m| m.json()["device"] == "ahu-1")
        .await
        .expect("a window of ahu-1");
    let got = metrics_of(&ahu);
    for (metric, want) in &expected {
        let s = got
            .get(metric)
            .unwrap_or_else(|| panic!("{metric} missing upstream: {got:?}"));
        for stat in ["min", "max", "avg"] {
            assert_eq!(s[stat].as_f64(), Some(*want), "{metric} {stat}: {s}");
        }
        assert_eq!(s["std"].as_f64(), Some(0.0), "{metric}");
        assert!(s["count"].as_u64().unwrap() >= 1);
    }
    assert_eq!(got.len(), expected.len(), "{got:?}");

    // The SDM120 profile: the vendor's addresses, f32 big-endian.
    let meter = sub
        .wait_for(WAIT, |m| m.json()["device"] == "meter-1")
        .await
        .expect("a window of meter-1");
    assert_eq!(meter.json()["name"], "Main meter");
    let got = metrics_of(&meter);
    for (name, _, v) in sdm {
        assert_eq!(got[name]["avg"].as_f64(), Some(f64::from(v)), "{name}");
        assert_eq!(got[name]["count"].as_u64(), Some(1), "{name}: read once");
    }

    // Grouped: one poll of the SDM120's ten registers made three
    // requests, all of input registers (function 4), not one per metric.
    let counts = peer_counts(&mut peer);
    let meter_requests = counts.get(&(2, 4)).copied().unwrap_or(0);
    // SDM120 profile: voltage 0x00, current 0x06, power 0x0C, apparent
    // 0x12, reactive 0x18, pf 0x1E (one read, 0x00..0x1F: holes of 4),
    // frequency 0x46, import 0x48, export 0x4A (one read), energy 0x156.
    assert_eq!(meter_requests, 3, "{counts:?}");
    assert_eq!(counts.get(&(2, 3)), None, "no holding reads: {counts:?}");
    // Unit 1: 32 typed values and the scaled one in one holding read per
    // poll, coils and discrete inputs in one read each: as many of each.
    let holding_reads = counts[&(1, 3)];
    let coil_reads = counts[&(1, 1)];
    assert!(
        holding_reads.abs_diff(coil_reads) <= 1 && holding_reads.abs_diff(counts[&(1, 2)]) <= 1,
        "one request per table and poll: {counts:?}"
    );

    // The illegal address: the merged read was refused (exception 2), the
    // registers then read alone, the missing one disabled and reported;
    // the others arrive.
    let odd = sub
        .wait_for(WAIT, |m| m.json()["device"] == "odd-map")
        .await
        .expect("a window of odd-map");
    let got = metrics_of(&odd);
    assert_eq!(got["first"]["avg"].as_f64(), Some(11.0));
    assert_eq!(got["last"]["avg"].as_f64(), Some(13.0));
    assert!(!got.contains_key("missing"));
    gw.wait_for_log("The device refuses this register").await;
    // The 30001/40001 trap is named where it bites.
    gw.wait_for_log("addresses are 0-based").await;
    let (_, body) = http_until(metrics, "/metrics", |_, b| {
        metric(
            b,
            "edge_gateway_modbus_exceptions_total{adapter=\"plant\",device=\"odd-map\",code=\"2\"}",
        ) >= 2.0
    })
    .await;
    assert_eq!(
        metric(
            &body,
            "edge_gateway_modbus_disabled_registers{adapter=\"plant\",device=\"odd-map\"}"
        ),
        1.0
    );
    assert!(
        metric(
            &body,
            "edge_gateway_adapter_errors_total{adapter=\"plant\",error_type=\"exception\"}"
        ) >= 2.0
    );
    assert!(
        metric(
            &body,
            "edge_gateway_adapter_errors_total{adapter=\"plant\",error_type=\"not_finite\"}"
        ) >= 2.0,
        "NaN and infinity counted: {body}"
    );
    gw.wait_for_log("not a finite number").await;
    // The serial number: text, shown as read.
    assert_eq!(
        metric(
            &body,
            "edge_gateway_modbus_text_info{adapter=\"plant\",device=\"ahu-1\",metric=\"serial_number\",text=\"SN-0042\"}"
        ),
        1.0,
        "{body}"
    );
    // Later polls of odd-map ask only what it has: two requests each.
    let before = peer_counts(&mut peer)[&(3, 3)];
    let again = sub
        .wait_for(WAIT, |m| {
            m.json()["device"] == "odd-map" && m.json()["id"] != odd.json()["id"]
        })
        .await
        .expect("odd-map goes on");
    assert_eq!(metrics_of(&again)["last"]["avg"].as_f64(), Some(13.0));
    let after = peer_counts(&mut peer)[&(3, 3)];
    assert!(
        after > before,
        "odd-map is still read: {before} then {after}"
    );

    // The installer's view of the same device.
    let out = Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .args(["modbus", "scan", "--url"])
        .arg(format!("tcp://127.0.0.1:{port}"))
        .args([
            "--unit", "2", "--table", "input", "--from", "0", "--count", "2",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("abcd  u32 ") && text.contains("f32 230.4"),
        "{text}"
    );
    let (status, _) = http_get(metrics, "/health").await;
    assert_eq!(status, 200);
}

/// `socat` linking two pseudo-terminals.
pub(crate) struct PtyPair {
    child: Child,
}

impl PtyPair {
    pub(crate) fn start(a: &Path, b: &Path) -> Self {
        let child = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn socat");
        Self { child }
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until socat has made both links (they appear once it runs).
pub(crate) async fn wait_links(links: &[&Path]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !links.iter().all(|l| l.exists()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "socat made no links"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits for a window of `device` that starts after `after` (a window
/// already closed before a fault proves nothing about after it).
pub(crate) async fn window_after(sub: &mut Subscriber, device: &str, after: &str) -> Message {
    sub.wait_for(WAIT, |m| {
        if !m.topic.ends_with("/aggregated") {
            return false;
        }
        let j = m.json();
        j["device"] == device && j["window_start"].as_str().unwrap_or("") > after
    })
    .await
    .unwrap_or_else(|| panic!("no window of {device} after {after}"))
}

/// The wall clock as the upstream writes `window_start` (RFC 3339, UTC,
/// milliseconds), so windows can be compared as text.
pub(crate) fn now_rfc3339() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    gateway_core::Timestamp::from_millis(ms)
        .unwrap()
        .to_rfc3339()
}

#[tokio::test]
async fn two_devices_on_one_rtu_line_a_silent_one_and_a_tcp_server_that_restarts() {
    assert!(have("socat"), "socat is required (apt-get install socat)");
    let upstream = Mosquitto::start();
    let metrics = free_port();
    let tcp_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let line: PathBuf = dir.path().join("ttyGW");
    let device_end: PathBuf = dir.path().join("ttyDEV");
    let _pair = PtyPair::start(&line, &device_end);
    wait_links(&[&line, &device_end]).await;

    let rtu_layout = json!({ "units": {
        "1": { "holding": { "0": [215, 1] } },
        "2": { "input": { "10": f32_words(19.5) } },
    }});
    let mut rtu_peer = PythonPeer::start_with_args(
        PEER,
        &["rtu", device_end.to_str().unwrap(), &rtu_layout.to_string()],
    );
    let tcp_layout = json!({ "units": { "1": { "holding": { "0": [4200] } } } }).to_string();
    let tcp_args = ["tcp", &tcp_port.to_string(), tcp_layout.as_str()];
    let mut tcp_peer = PythonPeer::start_with_args(PEER, &tcp_args);

    let body = format!(
        r#"
[[adapter]]
type = "modbus"
name = "rs485"
path = "{line}"
baud = 19200
poll = "200ms"
timeout = "300ms"
max_backoff = "600ms"

[[adapter]]
type = "modbus"
name = "boiler-gw"
url = "tcp://127.0.0.1:{tcp_port}"
poll = "200ms"
timeout = "300ms"
# Long: a server that worked is tried again at least once a poll period,
# whatever the backoff has grown to.
max_backoff = "60s"

[[modbus.device]]
adapter = "rs485"
id = "room-1"
unit = 1
registers = [
  {{ metric = "temperature", address = 0, type = "i16", scale = 0.1 }},
  {{ metric = "occupied", address = 1 }},
]

[[modbus.device]]
adapter = "rs485"
id = "room-2"
unit = 2
registers = [{{ metric = "temperature", table = "input", address = 10, type = "f32" }}]

[[modbus.device]]
adapter = "boiler-gw"
id = "boiler"
unit = 1
registers = [{{ metric = "flow_temperature", address = 0, scale = 0.01 }}]
"#,
        line = line.display()
    );
    let mut sub = Subscriber::start(upstream.port(), "building/hq/#").await;
    let mut gw = GatewayProcess::start(&gateway_config(upstream.port(), metrics, &body));
    gw.wait_for_log("Modbus bus open.").await;

    // Both units of the line, one after the other on the same port.
    let r1 = window_after(&mut sub, "room-1", "").await;
    assert_eq!(
        metrics_of(&r1)["temperature"]["avg"].as_f64(),
        Some(215.0 * 0.1)
    );
    assert_eq!(metrics_of(&r1)["occupied"]["avg"].as_f64(), Some(1.0));
    let r2 = window_after(&mut sub, "room-2", "").await;
    assert_eq!(metrics_of(&r2)["temperature"]["avg"].as_f64(), Some(19.5));
    let b = window_after(&mut sub, "boiler", "").await;
    assert_eq!(
        metrics_of(&b)["flow_temperature"]["avg"].as_f64(),
        Some(4200.0 * 0.01)
    );

    // Room 2 stops answering, as a device pulled off the line: offline,
    // counted as timeouts, while room 1 on the same line goes on.
    rtu_peer.send_line("mute 2");
    assert!(rtu_peer.next_line(WAIT).is_some_and(|l| l == "end"));
    let offline = sub
        .wait_for(WAIT, |m| {
            m.topic == "building/hq/room-2/status" && m.json()["state"] == "offline"
        })
        .await;
    assert!(offline.is_some(), "room-2 reported offline");
    let muted_at = now_rfc3339();
    window_after(&mut sub, "room-1", &muted_at).await;
    let (_, body) = http_get(metrics, "/metrics").await;
    assert!(
        metric(
            &body,
            "edge_gateway_adapter_errors_total{adapter=\"rs485\",error_type=\"timeout\"}"
        ) >= 2.0,
        "{body}"
    );
    assert_eq!(
        metric(
            &body,
            "edge_gateway_modbus_device_up{adapter=\"rs485\",device=\"room-2\"}"
        ),
        0.0
    );
    assert_eq!(
        metric(
            &body,
            "edge_gateway_modbus_device_up{adapter=\"rs485\",device=\"room-1\"}"
        ),
        1.0
    );

    // Back on the line: online again, its windows resume.
    rtu_peer.send_line("unmute 2");
    assert!(rtu_peer.next_line(WAIT).is_some_and(|l| l == "end"));
    let back = now_rfc3339();
    let r2 = window_after(&mut sub, "room-2", &back).await;
    assert_eq!(metrics_of(&r2)["temperature"]["avg"].as_f64(), Some(19.5));

    // The TCP server goes away: the line keeps reporting meanwhile.
    tcp_peer.kill();
    let killed = now_rfc3339();
    window_after(&mut sub, "room-1", &killed).await;
    window_after(&mut sub, "room-2", &killed).await;
    // Refused again and again: with a doubling backoff eight refusals
    // take 50 s and the ninth try comes 50 s later; tried at the poll
    // period, they take a couple of seconds and the server is read again
    // at the next period after it is back.
    http_until(metrics, "/metrics", |_, b| {
        metric(
            b,
            "edge_gateway_adapter_errors_total{adapter=\"boiler-gw\",error_type=\"connection\"}",
        ) >= 8.0
    })
    .await;

    // And comes back on the same port: so does the boiler.
    let _tcp_peer = PythonPeer::start_with_args(PEER, &tcp_args);
    let restarted = now_rfc3339();
    let b = window_after(&mut sub, "boiler", &restarted).await;
    assert_eq!(
        metrics_of(&b)["flow_temperature"]["avg"].as_f64(),
        Some(4200.0 * 0.01)
    );
    let (status, _) = http_get(metrics, "/health").await;
    assert_eq!(status, 200);
    drop(gw);
}

/// A register map changed and SIGHUP: the bus is restarted with the new
/// map (its section is the family's, read when the adapter is built). The
/// reload said "only takes effect at a restart" and kept reading the old
/// map, as it did for a changed ETS export.
#[tokio::test]
async fn a_register_map_changed_at_sighup_is_read_at_once() {
    let upstream = Mosquitto::start();
    let metrics = free_port();
    let port = free_port();
    let layout = json!({ "units": { "1": { "holding": { "0": [210, 555] } } } });
    let _peer = PythonPeer::start_with_args(PEER, &["tcp", &port.to_string(), &layout.to_string()]);
    let body = |registers: &str| {
        format!(
            r#"
[[adapter]]
type = "modbus"
name = "plant"
url = "tcp://127.0.0.1:{port}"
poll = "200ms"
timeout = "500ms"
max_backoff = "1s"

[[modbus.device]]
id = "ahu-1"
unit = 1
registers = [{registers}]
"#
        )
    };
    let mut sub = Subscriber::start(upstream.port(), "building/hq/+/aggregated").await;
    let mut gw = GatewayProcess::start(&gateway_config(
        upstream.port(),
        metrics,
        &body(r#"{ metric = "supply", address = 0 }"#),
    ));
    window_after(&mut sub, "ahu-1", "").await;

    let text = std::fs::read_to_string(&gw.config_path).unwrap().replace(
        r#"{ metric = "supply", address = 0 }"#,
        r#"{ metric = "supply", address = 0 }, { metric = "flow", address = 1 }"#,
    );
    std::fs::write(&gw.config_path, text).unwrap();
    gw.signal("HUP");
    gw.wait_for_log("Reloaded.").await;
    let reloaded = gw.seen.iter().find(|l| l.contains("Reloaded.")).unwrap();
    assert!(reloaded.contains("restarted=[\"plant\"]"), "{reloaded}");
    let after = now_rfc3339();
    let w = sub
        .wait_for(WAIT, |m| {
            m.json()["device"] == "ahu-1"
                && m.json()["window_start"].as_str().unwrap_or("") > after.as_str()
                && metrics_of(m).contains_key("flow")
        })
        .await
        .expect("the new register read after the reload");
    assert_eq!(metrics_of(&w)["flow"]["avg"], 555.0);
}
