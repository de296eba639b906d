//! UDP ingest against the machine's own UDP limit:
//! `cargo bench -p edge-gateway --bench udp_ingest`.
//!
//! Side by side, on one machine, with one sender (`edge-gateway simulate
//! --rate 0`, the same datagrams for the limit and the gateway):
//! 1. the raw UDP receive rate: a plain blocking socket that only counts
//!    datagrams, fed CoAP requests and then Semtech PUSH_DATA;
//! 2. the real gateway binary's CoAP server, and its ratio to (1);
//! 3. its `semtech_udp` adapter (MIC check, decrypt, seed_compact decode,
//!    frame counters on disk), in LoRaWAN uplinks/s, and its ratio to (1).
//!
//! Gateway rates are read from its `/metrics` counters, as the `ingest`
//! bench does. `EDGE_BENCH_DATAGRAMS` (default 300 000) sets the burst.
//! UDP has no flow control: what a receiver missed is printed, not hidden.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const IDLE: Duration = Duration::from_secs(3);
/// The LoRaWAN fleet: uplinks go round its devices.
const LORA_DEVICES: &str = "100";
/// Readings per uplink: seed_compact's three values plus rssi, snr, gateways.
const READINGS_PER_UPLINK: f64 = 6.0;

struct Run {
    received: u64,
    seconds: f64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.received as f64 / self.seconds.max(1e-9)
    }
}

fn simulate(protocol: &str, port: u16, n: usize) -> Child {
    Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .args(["simulate", "--protocol", protocol, "--rate", "0"])
        .args(["--target", &format!("127.0.0.1:{port}")])
        .args(["--count", &n.to_string(), "--metrics", "value"])
        .args(["--devices", LORA_DEVICES])
        .stdout(Stdio::null())
        .spawn()
        .expect("edge-gateway simulate")
}

/// (1): a receiver doing nothing but counting datagrams.
fn raw_udp(protocol: &str, n: usize) -> Run {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(IDLE)).unwrap();
    let port = socket.local_addr().unwrap().port();
    let mut sender = simulate(protocol, port, n);
    let mut buf = [0u8; 2048];
    let (mut first, mut last, mut received) = (None, Instant::now(), 0u64);
    while socket.recv(&mut buf).is_ok() {
        let now = Instant::now();
        first.get_or_insert(now);
        last = now;
        received += 1;
        if received as usize >= n {
            break;
        }
    }
    let _ = sender.wait();
    Run {
        received,
        seconds: first.map_or(0.0, |f| (last - f).as_secs_f64()),
    }
}

struct Broker {
    child: Child,
    port: u16,
}

impl Broker {
    fn start() -> Self {
        let port = test_support::free_port();
        let child = Command::new("mosquitto")
            .args(["-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Gateway {
    child: Child,
    metrics: u16,
    coap: u16,
    lora: u16,
    _dir: tempfile::TempDir,
}

impl Gateway {
    fn start(broker: &Broker) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let metrics = test_support::free_port();
        let coap = test_support::free_udp_port();
        let lora = test_support::free_udp_port();
        let tables = Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
            .args([
                "simulate",
                "--protocol",
                "lorawan",
                "--devices",
                LORA_DEVICES,
            ])
            .arg("--print-lorawan-config")
            .output()
            .unwrap();
        let cfg = format!(
            r#"
[gateway]
id = "gw-bench"
state_dir = "{state}"
[upstream]
url = "mqtt://127.0.0.1:{port}"
[aggregation]
window = "1s"
grace = "1s"
[metrics]
bind = "127.0.0.1:{metrics}"
[[adapter]]
type = "coap"
name = "coap"
bind = "127.0.0.1:{coap}"
rate_limit = 0
[[adapter]]
type = "semtech_udp"
name = "lora"
bind = "127.0.0.1:{lora}"
{tables}"#,
            state = dir.path().join("state").display(),
            port = broker.port,
            tables = String::from_utf8(tables.stdout).unwrap(),
        );
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, cfg).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
            .args(["run", "-c"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .spawn()
            .expect("edge-gateway");
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut listening = 0;
        while listening < 2 {
            let line = out.next().expect("gateway log").unwrap();
            if line.contains("CoAP server listening")
                || line.contains("Semtech UDP server listening")
            {
                listening += 1;
            }
        }
        // Keep reading so a full pipe never blocks the gateway's logging.
        std::thread::spawn(move || for _ in out {});
        Self {
            child,
            metrics,
            coap,
            lora,
            _dir: dir,
        }
    }

    fn counter(&self, name: &str) -> f64 {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.metrics)) else {
            return 0.0;
        };
        let _ = write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Polls a counter until it reaches `n` or stops moving for IDLE.
    fn watch(&self, name: &str, n: f64) -> Run {
        let (mut first, mut last, mut value) = (None, Instant::now(), self.counter(name));
        let start = value;
        let mut changed = Instant::now();
        loop {
            let v = self.counter(name);
            let now = Instant::now();
            if v > value {
                first.get_or_insert(now);
                value = v;
                last = now;
                changed = now;
            }
            if value - start >= n || now - changed > IDLE {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Run {
            received: (value - start) as u64,
            seconds: first.map_or(0.0, |f| (last - f).as_secs_f64()),
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn main() {
    let n: usize = std::env::var("EDGE_BENCH_DATAGRAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    println!("burst: {n} datagrams from one `edge-gateway simulate --rate 0`, loopback\n");
    let row = |what: &str, r: &Run, base: Option<f64>| {
        let ratio = base.map_or(String::new(), |b| format!("{:>7.1}%", 100.0 * r.rate() / b));
        println!(
            "{what:<48} {:>10.0}/s {:>9} of {n} in {:>6.2} s {ratio}",
            r.rate(),
            r.received,
            r.seconds
        );
    };
    let broker = Broker::start();
    let gw = Gateway::start(&broker);

    let limit = raw_udp("coap", n);
    row("CoAP: raw UDP receive (the limit)", &limit, None);
    let mut sender = simulate("coap", gw.coap, n);
    let coap = gw.watch(
        "edge_gateway_adapter_readings_total{adapter=\"coap\"}",
        n as f64,
    );
    let _ = sender.wait();
    row(
        "CoAP: gateway ingest, % of limit",
        &coap,
        Some(limit.rate()),
    );

    let limit = raw_udp("lorawan", n);
    row("Semtech UDP: raw UDP receive (the limit)", &limit, None);
    let mut sender = simulate("lorawan", gw.lora, n);
    let readings = gw.watch(
        "edge_gateway_adapter_readings_total{adapter=\"lora\"}",
        n as f64 * READINGS_PER_UPLINK,
    );
    let _ = sender.wait();
    let uplinks = Run {
        received: (readings.received as f64 / READINGS_PER_UPLINK) as u64,
        seconds: readings.seconds,
    };
    row(
        "Semtech UDP: LoRaWAN uplinks, % of limit",
        &uplinks,
        Some(limit.rate()),
    );
}
