//! `type = "knx"` against the real binary, a real Mosquitto upstream,
//! knxd (Debian's package: a KNXnet/IP tunnelling server and router with
//! its `dummy` bus, on a loopback port of its own) and xknx as the
//! devices (`tests/data/knx_peer.py`, a tunnelling client of knxd): two
//! KNX stacks independent of ours.
//!
//! Proven: every DPT the adapter reads, from values xknx encodes, arrives
//! upstream with exact window statistics and its unit (5.001 as the exact
//! raw × 100 / 255, where xknx rounds to whole percent); an ETS export
//! maps its addresses by the documented rule, a `[[knx.group]]` replacing
//! a row; a telegram to an unknown address and one its DPT cannot read
//! are counted, not stored; a 16.000 text is a text field. knxd restarted:
//! the tunnel (in NAT mode) comes back and the `read_on_start` address is
//! read again (xknx answers the GroupValueRead); restarted while another
//! xknx client takes the gateway's channel: the silent tunnel is made again
//! and hears the bus, the other client's kept. Every tunnel slot taken: "no more
//! connections" in the log, `/metrics` and `/health`, then connected once one is
//! free; a command written as a GroupValueWrite that xknx receives with
//! the bytes its own encoder gives, `done` on knxd's L_Data.con, and an
//! out-of-range one refused. `knx discover` finds knxd; `knx monitor`
//! prints xknx's telegram decoded. Routing on loopback multicast: knxd routes
//! xknx's telegrams to the gateway and the gateway's write to xknx; a
//! ROUTING_BUSY xknx encodes holds the next write for its wait time;
//! xknx routing from 15.15.250 (Home Assistant's default, and the
//! gateway's) is read, not taken for the gateway's own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{http_until, with_ts, GatewayProcess, WAIT};
use serde_json::{json, Value};
use test_support::metrics::sample;
use test_support::{free_port, publish, Mosquitto, PythonPeer, Subscriber};

pub(crate) const PEER: &str = include_str!("../data/knx_peer.py");

/// knxd on `port` of loopback with `slots` tunnel slots and routing on
/// 224.0.23.12:`port`; killed on drop.
pub(crate) struct Knxd {
    child: Child,
    port: u16,
}

impl Knxd {
    pub(crate) fn start(port: u16, slots: u8) -> Self {
        Self::start_with(port, slots, &[])
    }

    /// With `server` options of knxd's put before its `-S`.
    pub(crate) fn start_with(port: u16, slots: u8, server: &[&str]) -> Self {
        let child = Command::new("knxd")
            .args([
                "-e",
                "0.0.1",
                "-E",
                &format!("0.0.2:{slots}"),
                "-n",
                "edge-test",
                "-T",
                "-R",
                "-D",
            ])
            .args(server)
            .arg("-S")
            .arg(format!("224.0.23.12:{port}"))
            .args(["-I", "lo", "-b", "dummy:"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("knxd (Debian's knxd package: scripts/test.sh installs it)");
        let knxd = Self { child, port };
        knxd.wait_answering();
        knxd
    }

    /// Until knxd answers a CONNECTIONSTATE_REQUEST (for a channel it
    /// does not have: any answer says it serves).
    fn wait_answering(&self) {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        probe
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let me = probe.local_addr().unwrap();
        let std::net::SocketAddr::V4(me) = me else {
            panic!()
        };
        let mut req = vec![0x06, 0x10, 0x02, 0x07, 0x00, 0x10, 0xFE, 0x00, 0x08, 0x01];
        req.extend_from_slice(&me.ip().octets());
        req.extend_from_slice(&me.port().to_be_bytes());
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 64];
        while Instant::now() < deadline {
            let _ = probe.send_to(&req, ("127.0.0.1", self.port));
            if probe.recv_from(&mut buf).is_ok() {
                return;
            }
        }
        panic!("knxd did not answer on port {}", self.port);
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Knxd {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) fn ok(peer: &mut PythonPeer, command: &str) {
    peer.send_line(command);
    let answer = peer
        .wait_for_line(|l| l == "ok", WAIT)
        .unwrap_or_else(|| panic!("the peer did not do {command}"));
    assert_eq!(answer, "ok");
}

pub(crate) fn config(upstream: u16, metrics: u16, body: &str) -> String {
    format!(
        r#"
[gateway]
id = "gw-knx"
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

/// Every window of each device merged: metric → (count, sum, min, max).
type Merged = BTreeMap<(String, String), (u64, f64, f64, f64)>;

fn merge(windows: &[test_support::Message]) -> Merged {
    let mut by_id = BTreeMap::new();
    for m in windows {
        let j = m.json();
        by_id.insert(j["id"].as_str().unwrap().to_string(), j);
    }
    let mut out: Merged = BTreeMap::new();
    for j in by_id.values() {
        let device = j["device"].as_str().unwrap().to_string();
        for (metric, s) in j["metrics"].as_object().unwrap() {
            let n = s["count"].as_u64().unwrap();
            let e = out.entry((device.clone(), metric.clone())).or_insert((
                0,
                0.0,
                f64::INFINITY,
                f64::NEG_INFINITY,
            ));
            e.0 += n;
            e.1 += n as f64 * s["avg"].as_f64().unwrap();
            e.2 = e.2.min(s["min"].as_f64().unwrap());
            e.3 = e.3.max(s["max"].as_f64().unwrap());
        }
    }
    out
}

/// One DPT's case: dpt, address, metric, values xknx encodes, what the
/// gateway reports.
type DptCase = (
    &'static str,
    &'static str,
    &'static str,
    Vec<Value>,
    Vec<f64>,
);

fn dpt_cases() -> Vec<DptCase> {
    vec![
        (
            "1.001",
            "1/0/1",
            "switch",
            vec![json!(true), json!(false)],
            vec![1.0, 0.0],
        ),
        // Raw 128 and 255: exactly 128 × 100 / 255 (xknx says 50) and 100.
        (
            "5.001",
            "1/0/2",
            "valve",
            vec![json!(50), json!(100)],
            vec![128.0 * 100.0 / 255.0, 100.0],
        ),
        (
            "5.010",
            "1/0/3",
            "count_u8",
            vec![json!(0), json!(200)],
            vec![0.0, 200.0],
        ),
        (
            "6.001",
            "1/0/4",
            "offset",
            vec![json!(-128), json!(127)],
            vec![-128.0, 127.0],
        ),
        (
            "7.001",
            "1/0/5",
            "pulses",
            vec![json!(1234), json!(65535)],
            vec![1234.0, 65535.0],
        ),
        (
            "8.001",
            "1/0/6",
            "delta",
            vec![json!(-32768), json!(32767)],
            vec![-32768.0, 32767.0],
        ),
        (
            "9.001",
            "1/0/7",
            "temperature",
            vec![json!(21.5), json!(-5.25)],
            vec![21.5, -5.25],
        ),
        // 9.x keeps 11 bits of mantissa: xknx's own decoding of its bytes.
        (
            "9.004",
            "1/0/8",
            "illuminance",
            vec![json!(12345.6), json!(0.5)],
            vec![12349.44, 0.5],
        ),
        (
            "9.007",
            "1/0/9",
            "humidity",
            vec![json!(45.5), json!(60)],
            vec![45.52, 60.0],
        ),
        (
            "9.008",
            "1/0/10",
            "co2",
            vec![json!(612), json!(1500.5)],
            vec![611.84, 1500.16],
        ),
        (
            "12.001",
            "1/0/11",
            "counter",
            vec![json!(4294967295u64), json!(0)],
            vec![4294967295.0, 0.0],
        ),
        (
            "13.010",
            "1/0/12",
            "energy_wh",
            vec![json!(123456), json!(-42)],
            vec![123456.0, -42.0],
        ),
        (
            "13.013",
            "1/0/13",
            "energy_kwh",
            vec![json!(98765), json!(0)],
            vec![98765.0, 0.0],
        ),
        (
            "14.056",
            "1/0/14",
            "power",
            vec![json!(1234.5678), json!(0.1)],
            // The 7 digits a single carries, as ETS and xknx show them.
            vec![1234.568, 0.1],
        ),
        (
            "14.019",
            "1/0/15",
            "current",
            vec![json!(1.5), json!(-3.25)],
            vec![1.5, -3.25],
        ),
        (
            "17.001",
            "1/0/16",
            "scene",
            vec![json!(1), json!(64)],
            vec![1.0, 64.0],
        ),
        (
            "18.001",
            "1/0/17",
            "scene_control",
            vec![json!(5), json!(64)],
            vec![5.0, 64.0],
        ),
        (
            "20.102",
            "1/0/18",
            "hvac_mode",
            vec![json!(1), json!(3)],
            vec![1.0, 3.0],
        ),
    ]
}

/// ETS 6's "1/1" export of a small project, tab-separated.
const ETS_EXPORT: &str = "\"Group name\"\t\"Address\"\t\"Central\"\t\"Unfiltered\"\t\"Description\"\t\"DatapointType\"\t\"Security\"
\"Ground floor\"\t\"3/-/-\"\t\"\"\t\"\"\t\"\"\t\"\"\t\"Auto\"
\"Küche\"\t\"3/1/-\"\t\"\"\t\"\"\t\"\"\t\"\"\t\"Auto\"
\"Temperatur Ist\"\t\"3/1/0\"\t\"\"\t\"\"\t\"\"\t\"DPST-9-1\"\t\"Auto\"
\"CO2\"\t\"3/1/1\"\t\"\"\t\"\"\t\"\"\t\"DPST-9-8\"\t\"Auto\"
\"Meeting Room 2\"\t\"3/2/-\"\t\"\"\t\"\"\t\"\"\t\"\"\t\"Auto\"
\"Window contact\"\t\"3/2/0\"\t\"\"\t\"\"\t\"\"\t\"DPST-1-19\"\t\"Auto\"
\"Date\"\t\"3/2/1\"\t\"\"\t\"\"\t\"\"\t\"DPST-11-1\"\t\"Auto\"
\"Replaced\"\t\"3/2/2\"\t\"\"\t\"\"\t\"\"\t\"DPST-9-1\"\t\"Auto\"
";

#[tokio::test]
async fn knx_every_dpt_from_xknx_exact_upstream_with_units_an_ets_export_and_faults_counted() {
    let port = free_port();
    let _knxd = Knxd::start(port, 8);
    let mut peer = PythonPeer::start_with_args(PEER, &[&port.to_string()]);
    let upstream = Mosquitto::start();
    let (metrics, dashboard) = (free_port(), free_port());
    // The export beside gateway.toml, named by a relative path.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("knx-ga.csv"), ETS_EXPORT).unwrap();
    let mut body = format!(
        r#"
[dashboard]
enabled = true
bind = "127.0.0.1:{dashboard}"
write_interval = "200ms"

[[adapter]]
type = "knx"
name = "rooms"
url = "udp://127.0.0.1:{port}"
heartbeat = "2s"
timeout = "1s"
group_addresses = "knx-ga.csv"

[[knx.group]]
address = "3/2/2"
dpt = "9.001"
device = "meeting-2"
metric = "setpoint"

[[knx.group]]
address = "1/0/19"
dpt = "16.000"
device = "room-1"
metric = "display"
"#
    );
    for (dpt, address, metric, _, _) in dpt_cases() {
        body.push_str(&format!(
            "\n[[knx.group]]\naddress = \"{address}\"\ndpt = \"{dpt}\"\ndevice = \"room-1\"\nmetric = \"{metric}\"\n"
        ));
    }
    let mut sub = Subscriber::start(upstream.port(), "building/hq/+/aggregated").await;
    let mut gw = GatewayProcess::start_in(dir, &config(upstream.port(), metrics, &body));
    gw.wait_for_log("KNX bus reachable").await;

    for (dpt, address, _, values, _) in dpt_cases() {
        for v in values {
            ok(&mut peer, &format!("write {address} {dpt} {v}"));
        }
    }
    ok(&mut peer, "write 1/0/19 16.000 \"hello\"");
    ok(&mut peer, "write 3/1/0 9.001 19.5");
    ok(&mut peer, "write 3/1/1 9.008 800");
    ok(&mut peer, "write 3/2/0 1.019 true");
    ok(&mut peer, "write 3/2/2 9.001 22");
    // No group names 9/7/9; 1/0/7 is 9.001, which takes 2 bytes.
    ok(&mut peer, "raw 9/7/9 0c33");
    ok(&mut peer, "raw 1/0/7 0c");

    let cases = dpt_cases();
    let expected_count = |m: &Merged| {
        let room = cases.iter().all(|(_, _, metric, values, _)| {
            m.get(&("room-1".to_string(), metric.to_string()))
                .map(|e| e.0)
                == Some(values.len() as u64)
        });
        room && m.contains_key(&("meeting-2".to_string(), "setpoint".to_string()))
            && m.contains_key(&("meeting-room-2".to_string(), "window_contact".to_string()))
            && m.contains_key(&("kueche".to_string(), "co2".to_string()))
    };
    let windows = sub
        .collect_until(WAIT, |msgs| expected_count(&merge(msgs)))
        .await;
    let merged = merge(&windows);
    assert!(expected_count(&merged), "{merged:?}");
    for (dpt, _, metric, _, want) in &cases {
        let (n, sum, min, max) = merged[&("room-1".to_string(), metric.to_string())];
        let want_min = want.iter().cloned().fold(f64::INFINITY, f64::min);
        let want_max = want.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let want_sum: f64 = want.iter().sum();
        assert_eq!(n, want.len() as u64, "{dpt} {metric}");
        assert_eq!((min, max), (want_min, want_max), "{dpt} {metric}");
        assert!(
            (sum - want_sum).abs() <= 1e-9 * want_sum.abs().max(1.0),
            "{dpt} {metric}: {sum} vs {want_sum}"
        );
    }
    // Upstream, each metric's unit from its DPT beside its statistics.
    let upstream_unit = |device: &str, metric: &str| {
        windows
            .iter()
            .map(|m| m.json())
            .find(|j| j["device"] == device && j["metrics"][metric].is_object())
            .map(|j| j["metrics"][metric]["unit"].clone())
    };
    for (device, metric, unit) in [
        ("room-1", "temperature", "°C"),
        ("room-1", "illuminance", "lx"),
        ("room-1", "energy_kwh", "kWh"),
        ("room-1", "current", "A"),
        ("kueche", "co2", "ppm"),
    ] {
        assert_eq!(
            upstream_unit(device, metric),
            Some(json!(unit)),
            "{device} {metric}"
        );
    }
    // The export's rule: the middle group names the device, the address
    // the metric; the [[knx.group]] of 3/2/2 replaced its row; the
    // address without a DPT the gateway reads (11.001) is left out.
    let one = |device: &str, metric: &str| merged[&(device.to_string(), metric.to_string())];
    assert_eq!(one("kueche", "temperatur_ist").2, 19.5);
    assert_eq!(one("kueche", "co2").2, 800.0);
    assert_eq!(one("meeting-room-2", "window_contact").2, 1.0);
    assert_eq!(one("meeting-2", "setpoint").2, 22.0);
    assert!(
        !merged
            .keys()
            .any(|(d, m)| m == "replaced" || m == "date" || d == "room-1" && m == "display"),
        "{merged:?}"
    );
    gw.wait_for_log("adapter[0].group_addresses: 1 of the group addresses")
        .await;

    // Units from the DPTs, as the dashboard shows them.
    let (_, text) = http_until(dashboard, "/api/devices", |code, b| {
        code == 200 && b.contains("energy_kwh") && b.contains("kueche")
    })
    .await;
    let devices: Value = serde_json::from_str(&text).unwrap();
    let device = |id: &str| {
        devices["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id}: {text}"))
    };
    let room = device("room-1");
    for (metric, unit) in [
        ("temperature", "°C"),
        ("illuminance", "lx"),
        ("humidity", "%"),
        ("co2", "ppm"),
        ("valve", "%"),
        ("energy_wh", "Wh"),
        ("energy_kwh", "kWh"),
        ("power", "W"),
        ("current", "A"),
    ] {
        assert_eq!(room["latest"][metric]["unit"], unit, "{metric}: {room}");
    }
    assert_eq!(device("kueche")["latest"]["co2"]["unit"], "ppm");

    // Counted, never stored: the unknown address, the short payload (by
    // its DPT), the text.
    let (_, text) = http_until(metrics, "/metrics", |_, b| {
        sample(b, "edge_gateway_knx_undecodable_total{adapter=\"rooms\",dpt=\"9.001\"}").is_some()
            && sample(b, "edge_gateway_adapter_errors_total{adapter=\"rooms\",error_type=\"unknown_address\"}").is_some()
    })
    .await;
    assert_eq!(
        sample(
            &text,
            "edge_gateway_knx_undecodable_total{adapter=\"rooms\",dpt=\"9.001\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "edge_gateway_adapter_errors_total{adapter=\"rooms\",error_type=\"unknown_address\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "edge_gateway_adapter_ignored_fields_total{adapter=\"rooms\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "edge_gateway_knx_text_info{adapter=\"rooms\",device=\"room-1\",metric=\"display\",text=\"hello\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "edge_gateway_adapter_connected{adapter=\"rooms\"}"),
        Some(1.0)
    );

    // The installer's tools against the same knxd: discover (a unicast
    // search: knxd answers no multicast search from its own address) and
    // the group monitor, decoding by --dpt.
    let bin = env!("CARGO_BIN_EXE_edge-gateway");
    let out = tokio::process::Command::new(bin)
        .args([
            "knx",
            "discover",
            "--to",
            &format!("127.0.0.1:{port}"),
            "--wait",
            "1s",
        ])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("\"edge-test\"")
            && text.contains("tunnelling_v1")
            && text.contains("routing_v1"),
        "{text}"
    );
    assert!(
        text.contains(&format!("url = \"udp://127.0.0.1:{port}\"")),
        "{text}"
    );
    let mut monitor = tokio::process::Command::new(bin)
        .args([
            "knx",
            "monitor",
            "--url",
            &format!("udp://127.0.0.1:{port}"),
            "--dpt",
            "1/0/7=9.001",
            "--count",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut err = tokio::io::BufReader::new(monitor.stderr.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(
        WAIT,
        tokio::io::AsyncBufReadExt::read_line(&mut err, &mut line),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(line.starts_with("Connected to"), "{line}");
    ok(&mut peer, "write 1/0/7 9.001 21.5");
    let out = tokio::time::timeout(WAIT, monitor.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("-> 1/0/7 write 0c33 21.5 °C [9.001]"),
        "{text}"
    );
}

#[tokio::test]
async fn knx_reconnects_after_knxd_restarts_and_reads_its_state_addresses_again() {
    let port = free_port();
    let mut knxd = Knxd::start(port, 8);
    // The device on knxd's routing multicast: it hears the gateway's
    // reads through knxd, and is there before, during and after the
    // restart, so the read after the reconnect cannot slip past it.
    let mut peer = PythonPeer::start_with_args(PEER, &[&port.to_string(), "routing"]);
    ok(&mut peer, "state 4/0/1 9.001 20.5");
    let upstream = Mosquitto::start();
    let metrics = free_port();
    let body = format!(
        r#"
[[adapter]]
type = "knx"
name = "rooms"
url = "udp://127.0.0.1:{port}"
heartbeat = "1s"
timeout = "500ms"
max_backoff = "1s"
pace = 20
# As through a NAT router: knxd answers where the requests came from.
nat = true

[[knx.group]]
address = "4/0/1"
dpt = "9.001"
device = "room-4"
metric = "temperature"
read_on_start = true

[[knx.group]]
address = "4/0/2"
dpt = "9.007"
device = "room-4"
metric = "humidity"
poll = "1s"
{more}"#,
        more = (0..10)
            .map(|i| format!("\n[[knx.group]]\naddress = \"4/1/{i}\"\ndpt = \"1.001\"\ndevice = \"room-4\"\nmetric = \"window_{i}\"\nread_on_start = true\n"))
            .collect::<String>()
    );
    let mut sub = Subscriber::start(upstream.port(), "building/hq/+/aggregated").await;
    let mut gw = GatewayProcess::start(&config(upstream.port(), metrics, &body));
    // The read on start, answered by xknx.
    let read = peer.wait_for_line(|l| l.contains("\"4/0/1\"") && l.contains("\"read\""), WAIT);
    assert!(read.is_some(), "no GroupValueRead from the gateway");
    let w = sub
        .wait_for(WAIT, |m| {
            m.json()["device"] == "room-4" && m.json()["metrics"]["temperature"]["avg"] == 20.5
        })
        .await;
    assert!(w.is_some(), "the response to the read is a reading");

    // Eleven reads on start at a pace of 20 a second: spread over half a
    // second at least, never a burst; the polled address read again.
    let mut reads = Vec::new();
    while reads.len() < 10 {
        let l = peer
            .wait_for_line(|l| l.contains("\"4/1/") && l.contains("\"read\""), WAIT)
            .unwrap_or_else(|| panic!("only {} reads on start: {reads:?}", reads.len()));
        let seen: Value = serde_json::from_str(&l).unwrap();
        reads.push(seen["t"].as_f64().unwrap());
    }
    // The peer's own clock: when each read reached it.
    let span = reads[9] - reads[0];
    assert!(span >= 0.4, "ten reads in {span} s: not paced");
    for _ in 0..2 {
        let polled =
            peer.wait_for_line(|l| l.contains("\"4/0/2\"") && l.contains("\"read\""), WAIT);
        assert!(polled.is_some(), "the poll address is read every second");
    }

    // knxd goes away and comes back, its tunnels forgotten.
    knxd.kill();
    ok(&mut peer, "state 4/0/1 9.001 23.5");
    gw.wait_for_log("KNX tunnel lost").await;
    let _knxd = Knxd::start(port, 8);
    gw.wait_for_log_count("KNX tunnel connected.", 2).await;
    let read = peer.wait_for_line(|l| l.contains("\"4/0/1\"") && l.contains("\"read\""), WAIT);
    assert!(
        read.is_some(),
        "the state address is read again after the reconnect"
    );
    let w = sub
        .wait_for(WAIT, |m| {
            m.json()["device"] == "room-4" && m.json()["metrics"]["temperature"]["avg"] == 23.5
        })
        .await;
    assert!(w.is_some(), "the new state arrives");
    let (_, text) = http_until(metrics, "/metrics", |_, b| {
        sample(b, "edge_gateway_adapter_connected{adapter=\"rooms\"}") == Some(1.0)
    })
    .await;
    assert_eq!(
        sample(
            &text,
            "edge_gateway_adapter_errors_total{adapter=\"rooms\",error_type=\"heartbeat_lost\"}"
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn knx_tunnel_whose_channel_another_client_took_after_a_knxd_restart_is_refreshed_when_silent(
) {
    let port = free_port();
    let mut knxd = Knxd::start(port, 8);
    // The device that writes, on knxd's routing multicast: there through
    // the restart, and no tunnel.
    let mut sender = PythonPeer::start_with_args(PEER, &[&port.to_string(), "routing"]);
    // Home Assistant, say: started now, connected when told.
    let mut other = PythonPeer::start_with_args(PEER, &[&port.to_string(), "later"]);
    let upstream = Mosquitto::start();
    let metrics = free_port();
    // A heartbeat long enough that none falls in knxd's short absence:
    // after it, knxd would answer it for the other client's channel.
    let body = format!(
        r#"
[[adapter]]
type = "knx"
name = "rooms"
url = "udp://127.0.0.1:{port}"
heartbeat = "60s"
timeout = "500ms"
max_backoff = "1s"
refresh_after_silence = "5s"

[[knx.group]]
address = "5/0/1"
dpt = "9.001"
device = "room-5"
metric = "temperature"
"#
    );
    let mut sub = Subscriber::start(upstream.port(), "building/hq/+/aggregated").await;
    let mut gw = GatewayProcess::start(&config(upstream.port(), metrics, &body));
    gw.wait_for_log("KNX tunnel connected.").await;
    assert_eq!(
        gw.last_logged("channel"),
        Some(1.0),
        "the gateway's channel"
    );

    // knxd restarted at once; the other client connects first and is
    // given channel 1, the gateway's.
    knxd.kill();
    let _knxd = Knxd::start(port, 8);
    other.send_line("connect");
    let channel = other
        .wait_for_line(|l| l.starts_with("{\"channel\""), WAIT)
        .expect("the other client connected");
    assert_eq!(
        channel, "{\"channel\": 1}",
        "knxd gave the other client channel 1"
    );
    gw.take_log();
    assert_eq!(
        gw.seen
            .iter()
            .filter(|l| l.contains("KNX tunnel connected."))
            .count(),
        1,
        "the gateway made no new tunnel before the other client took its channel: {:?}",
        gw.seen
    );

    // Deaf on channel 1 (knxd sends it to the other client), the heartbeat
    // no help: after 5 s of silence, a new tunnel, without a moment down.
    gw.wait_for_log("KNX tunnel heard no telegram for 5s").await;
    gw.wait_for_log_count("KNX tunnel connected.", 2).await;
    assert_ne!(gw.last_logged("channel"), Some(1.0), "a channel of its own");
    ok(&mut sender, "write 5/0/1 9.001 21.5");
    let w = sub
        .wait_for(WAIT, |m| {
            m.json()["device"] == "room-5" && m.json()["metrics"]["temperature"]["avg"] == 21.5
        })
        .await;
    assert!(
        w.is_some(),
        "the telegram reaches the gateway after the refresh"
    );
    // The other client kept its tunnel: the gateway disconnected no one.
    let seen = other.wait_for_line(|l| l.contains("\"5/0/1\"") && l.contains("0c33"), WAIT);
    assert!(seen.is_some(), "the other client still hears the bus");
    let (_, text) = http_until(metrics, "/metrics", |_, b| {
        sample(
            b,
            "edge_gateway_adapter_errors_total{adapter=\"rooms\",error_type=\"silent\"}",
        )
        .is_some_and(|n| n >= 1.0)
    })
    .await;
    assert_eq!(
        sample(&text, "edge_gateway_adapter_connected{adapter=\"rooms\"}"),
        Some(1.0),
        "{text}"
    );
    assert!(
        !gw.seen.iter().any(|l| l.contains("KNX tunnel lost")),
        "a refresh, not a loss: {:?}",
        gw.seen
    );
}

pub(crate) async fn command(
    cloud: u16,
    results: &mut Subscriber,
    device: &str,
    body: Value,
) -> Value {
    let id = body["id"].as_str().unwrap_or_default().to_string();
    publish(
        cloud,
        &format!("building/hq/{device}/command"),
        &with_ts(body.clone()).to_string(),
        1,
        false,
    )
    .await;
    let m = results
        .wait_for(WAIT, |m| m.json()["id"] == id.as_str())
        .await
        .unwrap_or_else(|| panic!("no result for {body}"));
    m.json()
}

#[tokio::test]
async fn knx_no_more_connections_is_named_then_writes_reach_xknx_with_its_own_bytes() {
    // knxd's single tunnel slot, taken by an xknx client before the
    // gateway starts; the xknx that watches the bus is on knxd's routing
    // multicast, which takes no slot.
    let port = free_port();
    let _knxd = Knxd::start(port, 1);
    let mut squatter = PythonPeer::start_with_args(PEER, &[&port.to_string()]);
    let mut watcher = PythonPeer::start_with_args(PEER, &[&port.to_string(), "routing"]);
    let cloud = Mosquitto::start();
    let metrics = free_port();
    let body = format!(
        r#"
[commands]
enabled = true
max_age = "60s"
# Eight commands to one device in a row: more than the default burst.
burst = 20

[[adapter]]
type = "knx"
name = "rooms"
url = "udp://127.0.0.1:{port}"
timeout = "500ms"
max_backoff = "1s"

[[knx.group]]
address = "2/0/1"
dpt = "9.001"
device = "room-2"
metric = "setpoint"
writable = true
min = 16.0
max = 28.0

[[knx.group]]
address = "2/0/2"
dpt = "1.001"
device = "room-2"
metric = "light"
writable = true

[[knx.group]]
address = "2/0/3"
dpt = "5.001"
device = "room-2"
metric = "blind"
writable = true

[[knx.group]]
address = "2/0/4"
dpt = "13.013"
device = "room-2"
metric = "meter"
writable = true
"#
    );
    let mut results = Subscriber::start(cloud.port(), "building/hq/+/command/result").await;
    let mut gw = GatewayProcess::start(&config(cloud.port(), metrics, &body));
    gw.wait_for_log("no more connections").await;
    let (_, text) = http_until(metrics, "/metrics", |_, b| {
        sample(b, "edge_gateway_adapter_errors_total{adapter=\"rooms\",error_type=\"no_more_connections\"}").is_some()
    })
    .await;
    assert_eq!(
        sample(&text, "edge_gateway_adapter_connected{adapter=\"rooms\"}"),
        Some(0.0),
        "{text}"
    );

    http_until(metrics, "/health", |code, b| {
        code == 503
            && b.contains("no tunnel to its KNXnet/IP interface")
            && b.contains("has no more connections")
    })
    .await;

    // A slot frees: the gateway takes it.
    squatter.send_line("quit");
    assert!(squatter.wait_for_line(|l| l == "bye", WAIT).is_some());
    gw.wait_for_log("KNX tunnel connected.").await;
    gw.wait_for_log("Subscribed to commands on the upstream broker.")
        .await;
    http_until(metrics, "/health", |code, _| code == 200).await;

    // Each value on the bus with the bytes xknx's own encoder gives it
    // (the values of crates/adapters/src/knx/vectors.json): 21.5 °C is
    // 0x0C33, on is the 1-bit 1, 30 % is 0x4C (76.5 rounds to even),
    // 98765 kWh is 0x000181CD.
    for (id, metric, value, address, data) in [
        ("k-1", "setpoint", json!(21.5), "2/0/1", json!("0c33")),
        ("k-2", "light", json!(true), "2/0/2", json!(1)),
        ("k-3", "blind", json!(30), "2/0/3", json!("4c")),
        ("k-4", "meter", json!(98765), "2/0/4", json!("000181cd")),
        ("k-5", "light", json!(0), "2/0/2", json!(0)),
    ] {
        let r = command(
            cloud.port(),
            &mut results,
            "room-2",
            json!({"id": id, "metric": metric, "value": value}),
        )
        .await;
        assert_eq!(r["status"], "done", "{r}");
        let line = watcher
            .wait_for_line(
                |l| l.contains(&format!("\"dst\": \"{address}\"")) && l.contains("\"write\""),
                WAIT,
            )
            .unwrap_or_else(|| panic!("xknx saw no write to {address}"));
        let seen: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(seen["data"], data, "{id}: {line}");
    }
    // Refused, nothing sent: beyond max, not a number, not writable.
    for (id, metric, value, reason) in [
        ("r-1", "setpoint", json!(30), "out_of_range"),
        ("r-2", "blind", json!("half"), "type"),
        ("r-3", "temperature", json!(20), "not_writable"),
    ] {
        let r = command(
            cloud.port(),
            &mut results,
            "room-2",
            json!({"id": id, "metric": metric, "value": value}),
        )
        .await;
        assert_eq!(
            (r["status"].as_str(), r["reason"].as_str()),
            (Some("refused"), Some(reason)),
            "{r}"
        );
    }
    watcher.send_line("write 2/1/9 9.001 1");
    let next = watcher
        .wait_for_line(
            |l| l == "ok" || (l.contains("\"write\"") && l.contains("\"2/0/")),
            WAIT,
        )
        .unwrap();
    assert_eq!(next, "ok", "a refused command reached the bus: {next}");
}

#[tokio::test]
async fn knx_routing_on_loopback_multicast_both_ways_through_knxd() {
    let port = free_port();
    let _knxd = Knxd::start(port, 4);
    let mut peer = PythonPeer::start_with_args(PEER, &[&port.to_string()]);
    let cloud = Mosquitto::start();
    let metrics = free_port();
    let body = format!(
        r#"
[commands]
enabled = true
max_age = "60s"

[[adapter]]
type = "knx"
name = "router"
url = "multicast://224.0.23.12:{port}"
interface = "127.0.0.1"
individual_address = "1.1.250"

[[knx.group]]
address = "5/0/1"
dpt = "9.001"
device = "hall"
metric = "temperature"

[[knx.group]]
address = "5/0/2"
dpt = "5.001"
device = "hall"
metric = "blind"
writable = true
"#
    );
    let mut sub = Subscriber::start(cloud.port(), "building/hq/+/aggregated").await;
    let mut results = Subscriber::start(cloud.port(), "building/hq/+/command/result").await;
    let mut gw = GatewayProcess::start(&config(cloud.port(), metrics, &body));
    gw.wait_for_log("KNX routing joined.").await;
    gw.wait_for_log("Subscribed to commands on the upstream broker.")
        .await;
    // xknx → knxd's tunnel → knxd's routing multicast → the gateway.
    ok(&mut peer, "write 5/0/1 9.001 18.75");
    let w = sub
        .wait_for(WAIT, |m| {
            m.json()["device"] == "hall" && m.json()["metrics"]["temperature"]["avg"] == 18.75
        })
        .await;
    assert!(w.is_some(), "the routed telegram is a reading");
    // The gateway → the multicast → knxd → xknx.
    let r = command(
        cloud.port(),
        &mut results,
        "hall",
        json!({"id": "m-1", "metric": "blind", "value": 100}),
    )
    .await;
    assert_eq!(r["status"], "done", "{r}");
    let line = peer
        .wait_for_line(
            |l| l.contains("\"dst\": \"5/0/2\"") && l.contains("\"write\""),
            WAIT,
        )
        .expect("xknx receives the routed write");
    let seen: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (seen["src"].as_str(), seen["data"].as_str()),
        (Some("1.1.250"), Some("ff")),
        "{line}"
    );

    // A router asks for quiet (ROUTING_BUSY, 2 s, as xknx encodes it):
    // counted, and the next write waits it out.
    peer.send_line("busy 2000");
    let busy = peer
        .wait_for_line(|l| l.starts_with("{\"busy\""), WAIT)
        .expect("xknx sent ROUTING_BUSY");
    let busy_at = serde_json::from_str::<Value>(&busy).unwrap()["busy"]
        .as_f64()
        .unwrap();
    http_until(metrics, "/metrics", |_, b| {
        sample(
            b,
            "edge_gateway_adapter_errors_total{adapter=\"router\",error_type=\"bus_busy\"}",
        ) == Some(1.0)
    })
    .await;
    let r = command(
        cloud.port(),
        &mut results,
        "hall",
        json!({"id": "m-2", "metric": "blind", "value": 50}),
    )
    .await;
    assert_eq!(r["status"], "done", "{r}");
    let line = peer
        .wait_for_line(
            |l| l.contains("\"dst\": \"5/0/2\"") && l.contains("\"write\""),
            WAIT,
        )
        .expect("xknx receives the write after the busy spell");
    let seen: Value = serde_json::from_str(&line).unwrap();
    let waited = seen["t"].as_f64().unwrap() - busy_at;
    assert!(waited >= 2.0, "written {waited} s after a 2 s ROUTING_BUSY");

    // A BUSY asking for 65 s (anyone on the multicast may send one)
    // pauses writes for 5 s at most.
    peer.send_line("busy 65535");
    let busy = peer
        .wait_for_line(|l| l.starts_with("{\"busy\""), WAIT)
        .expect("xknx sent ROUTING_BUSY");
    let busy_at = serde_json::from_str::<Value>(&busy).unwrap()["busy"]
        .as_f64()
        .unwrap();
    http_until(metrics, "/metrics", |_, b| {
        sample(
            b,
            "edge_gateway_adapter_errors_total{adapter=\"router\",error_type=\"bus_busy\"}",
        ) == Some(2.0)
    })
    .await;
    let r = command(
        cloud.port(),
        &mut results,
        "hall",
        json!({"id": "m-3", "metric": "blind", "value": 25}),
    )
    .await;
    assert_eq!(r["status"], "done", "{r}");
    let line = peer
        .wait_for_line(
            |l| l.contains("\"dst\": \"5/0/2\"") && l.contains("\"write\""),
            WAIT,
        )
        .expect("xknx receives the write after the capped busy spell");
    let seen: Value = serde_json::from_str(&line).unwrap();
    let waited = seen["t"].as_f64().unwrap() - busy_at;
    assert!(
        (5.0..15.0).contains(&waited),
        "written {waited} s after a ROUTING_BUSY of 65 535 ms (capped at 5 s)"
    );
}

/// Home Assistant (xknx) routes from 15.15.250 by default, the gateway's
/// own default `individual_address`: with both on the multicast, the
/// gateway took every telegram of xknx's for a copy of its own and
/// dropped it, uncounted. xknx as a KNX IP device on the routing
/// multicast (no knxd between), both with their defaults: xknx's
/// telegram is a reading, counted as an address conflict, and the
/// gateway's own write still reaches xknx from that address.
#[tokio::test]
async fn knx_routing_reads_home_assistants_telegrams_from_the_same_default_address() {
    let port = free_port();
    let mut peer = PythonPeer::start_with_args(PEER, &[&port.to_string(), "routing"]);
    let cloud = Mosquitto::start();
    let metrics = free_port();
    let body = format!(
        r#"
[commands]
enabled = true
max_age = "60s"

[[adapter]]
type = "knx"
name = "router"
url = "multicast://224.0.23.12:{port}"
interface = "127.0.0.1"

[[knx.group]]
address = "5/0/1"
dpt = "9.001"
device = "hall"
metric = "temperature"

[[knx.group]]
address = "5/0/2"
dpt = "5.001"
device = "hall"
metric = "blind"
writable = true
"#
    );
    let mut sub = Subscriber::start(cloud.port(), "building/hq/+/aggregated").await;
    let mut results = Subscriber::start(cloud.port(), "building/hq/+/command/result").await;
    let mut gw = GatewayProcess::start(&config(cloud.port(), metrics, &body));
    gw.wait_for_log("KNX routing joined.").await;
    gw.wait_for_log("Subscribed to commands on the upstream broker.")
        .await;
    ok(&mut peer, "write 5/0/1 9.001 18.75");
    let w = sub
        .wait_for(WAIT, |m| {
            m.json()["device"] == "hall" && m.json()["metrics"]["temperature"]["avg"] == 18.75
        })
        .await;
    assert!(w.is_some(), "xknx's telegram from 15.15.250 is a reading");
    http_until(metrics, "/metrics", |_, b| {
        sample(
            b,
            "edge_gateway_adapter_errors_total{adapter=\"router\",error_type=\"address_conflict\"}",
        ) == Some(1.0)
    })
    .await;
    let r = command(
        cloud.port(),
        &mut results,
        "hall",
        json!({"id": "blind-1", "metric": "blind", "value": 100}),
    )
    .await;
    assert_eq!(r["status"], "done", "{r}");
    let line = peer
        .wait_for_line(
            |l| l.contains("\"dst\": \"5/0/2\"") && l.contains("\"write\""),
            WAIT,
        )
        .expect("xknx receives the gateway's write");
    let seen: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(seen["src"].as_str(), Some("15.15.250"), "{line}");
}
