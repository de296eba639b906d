//! UDP ingest against the machine's own UDP limit:
//! `cargo bench -p edge-gateway --bench udp_ingest`.
//!
//! Side by side, on one machine, with one sender (`edge-gateway simulate
//! --rate 0`, the same datagrams for the limit and the gateway):
//! 1. the raw UDP receive rate: a plain blocking socket that only counts
//!    datagrams, fed CoAP requests and then Semtech PUSH_DATA;
//! 2. the real gateway binary's CoAP server, and its ratio to (1);
//! 3. its `semtech_udp` adapter (MIC check, decrypt, compact_i16 decode,
//!    frame counters on disk), in LoRaWAN uplinks/s, and its ratio to (1);
//! 4. the CPU each spends per datagram (user + system, `/proc/<pid>/stat`;
//!    the raw receiver is this process), and both again with the gateway
//!    pinned to one core;
//! 5. for Semtech UDP, how many datagrams the gateway read, refused as
//!    `overloaded` and never read, and how many frames it refused as
//!    `dedup_full`, and the load average, since the rates
//!    are shares of two cores with the sender and whatever else runs.
//!
//! Gateway rates are read from its `/metrics` counters, as the `ingest`
//! bench does. `EDGE_BENCH_DATAGRAMS` (default 300 000) sets the burst;
//! `EDGE_BENCH_ROUNDS` (default 3) sets how many rounds of limit and
//! gateway the free pass runs, each with a fresh gateway; the goals are
//! judged on their medians. `EDGE_BENCH_PINNED=0` leaves out the pass
//! pinned to one core.
//! UDP has no flow control: what a receiver missed is printed, not hidden.
//!
//! The goals (issue 69) are judged on both figures of the free passes, each
//! printed as a `goal:` line (`scripts/bench-ratios.sh` collects them):
//! the rate at least 90 % of the raw receiver's, and the gateway's CPU per
//! unit of work at most [`COAP_CPU_GOAL_US`] per CoAP datagram and
//! [`LORAWAN_CPU_GOAL_US`] per LoRaWAN uplink, on a machine whose raw
//! receiver takes 2.1-2.4 µs a datagram; and, for any other machine, as
//! a multiple of the raw receiver's CPU measured in the same run
//! ([`GOAL_CLASS_RAW_US`]). A rate ratio on two cores shared with the
//! sender swings by tens of percent from run to run; the CPU per unit,
//! beside the raw receiver's in the same run, does not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// The LoRaWAN fleet: uplinks go round its devices.
#[path = "support/mod.rs"]
mod support;

use support::{pin_to_one_core, Broker, CpuMeter, Gateway, Run, IDLE};

const LORA_DEVICES: &str = "100";
/// The gateway's UDP receive buffer (`adapters::udp::RECEIVE_BUFFER`).
const RAW_RECEIVE_BUFFER: usize = 2 << 20;
/// Readings per uplink: compact_i16's three values plus rssi, snr, gateways.
const READINGS_PER_UPLINK: f64 = 6.0;
/// Each path's rate against its raw receiver's, at least.
const RATE_GOAL: f64 = 0.9;
/// Gateway CPU per CoAP datagram (parse, decode, windows), at most.
const COAP_CPU_GOAL_US: f64 = 3.0;
/// Gateway CPU per LoRaWAN uplink (JSON, base64, MIC, decryption, codec,
/// six readings), at most, on this machine class.
const LORAWAN_CPU_GOAL_US: f64 = 5.0;
/// The raw receiver's CPU per datagram on the machine class the two goals
/// above were set for (2.1-2.4 µs); the slower end, so that the goals as
/// multiples of the raw receiver (1.25× and 2.08×) are the stricter ones.
/// A machine slower or faster than that class moves both figures of a
/// run together, so the multiple judges the gateway and not the machine.
const GOAL_CLASS_RAW_US: f64 = 2.4;

fn simulate(protocol: &str, port: u16, n: usize) -> Child {
    Command::new(support::gateway_exe())
        .args(["simulate", "--protocol", protocol, "--rate", "0"])
        .args(["--target", &format!("127.0.0.1:{port}")])
        .args(["--count", &n.to_string(), "--metrics", "value"])
        .args(["--devices", LORA_DEVICES])
        .stdout(Stdio::null())
        .spawn()
        .expect("edge-gateway simulate")
}

/// (1): a receiver doing nothing but counting datagrams, and its CPU per
/// datagram.
fn raw_udp(protocol: &str, n: usize) -> (Run, f64) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    // The room the gateway's own UDP sockets ask for (`adapters::udp`), so
    // neither side loses a burst to a smaller buffer than the other.
    socket2::SockRef::from(&socket)
        .set_recv_buffer_size(RAW_RECEIVE_BUFFER)
        .unwrap();
    socket.set_read_timeout(Some(IDLE)).unwrap();
    let port = socket.local_addr().unwrap().port();
    let mut sender = simulate(protocol, port, n);
    let cpu = CpuMeter::start(std::process::id());
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
    let per = cpu.micros_per(received);
    let _ = sender.wait();
    let run = Run {
        received,
        seconds: first.map_or(0.0, |f| (last - f).as_secs_f64()),
    };
    (run, per)
}

/// The gateway with a CoAP server and a `semtech_udp` adapter, each on a
/// free UDP port, and the LoRaWAN fleet's devices.
struct UdpGateway {
    gw: Gateway,
    coap: u16,
    lora: u16,
}

impl UdpGateway {
    fn start(broker: &Broker) -> Self {
        let metrics = test_support::free_port();
        let coap = test_support::free_udp_port();
        let lora = test_support::free_udp_port();
        let tables = Command::new(support::gateway_exe())
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
state_dir = "@STATE_DIR@"
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
            port = broker.port,
            tables = String::from_utf8(tables.stdout).unwrap(),
        );
        let gw = Gateway::start(
            &cfg,
            Some(metrics),
            &["CoAP server listening", "Semtech UDP server listening"],
        );
        Self { gw, coap, lora }
    }
}

/// What one pass of the gateway measured, beside the raw receiver's
/// figures of the same round.
struct Pass {
    coap_pct: f64,
    coap_us: f64,
    lora_pct: f64,
    lora_us: f64,
}

/// The raw receiver's rate and CPU per datagram for each protocol, measured
/// just before a gateway pass.
struct Limits {
    coap: Run,
    coap_us: f64,
    lora: Run,
    lora_us: f64,
}

fn main() {
    let n: usize = std::env::var("EDGE_BENCH_DATAGRAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    // The issue's rate goals are judged on the median of three rounds: a
    // single rate ratio on two cores shared with the sender swings widely.
    let rounds: usize = std::env::var("EDGE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    println!(
        "burst: {n} datagrams from one `edge-gateway simulate --rate 0`, loopback; {rounds} round(s), judged on the median\n"
    );
    // The rates are shares of two cores with the sender: what else ran
    // then says how far two runs compare.
    println!("load average at start: {}", load_average());
    let broker = Broker::start("");
    let mut free = Vec::with_capacity(rounds);
    let mut raw = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        let tag = if rounds > 1 {
            format!(", round {round}")
        } else {
            String::new()
        };
        let limits = measure_limits(n, &tag);
        free.push(gateway_pass(&broker, n, false, &limits, &tag));
        raw.push((limits.coap_us, limits.lora_us));
    }
    let med = |f: &dyn Fn(&Pass) -> f64| median(free.iter().map(f).collect());
    let (coap_raw_us, lora_raw_us) = (
        median(raw.iter().map(|r| r.0).collect()),
        median(raw.iter().map(|r| r.1).collect()),
    );
    // Each round's gateway against that round's raw receiver, then the
    // median: the machine's pace drifts between rounds, and a ratio of
    // two medians could pair figures of different rounds.
    let per_round = |f: &dyn Fn(&Pass, &(f64, f64)) -> f64| {
        median(free.iter().zip(&raw).map(|(p, r)| f(p, r)).collect())
    };
    let of = if rounds > 1 {
        format!(" (median of {rounds})")
    } else {
        String::new()
    };
    support::goal(
        &format!("CoAP rate, % of raw UDP{of}"),
        med(&|p| p.coap_pct),
        100.0 * RATE_GOAL,
        support::AtLeast,
        "%",
    );
    support::goal(
        &format!("CoAP CPU per datagram{of} (raw receiver {coap_raw_us:.2} µs)"),
        med(&|p| p.coap_us),
        COAP_CPU_GOAL_US,
        support::AtMost,
        "µs",
    );
    support::goal(
        &format!("Semtech UDP rate, % of raw UDP{of}"),
        med(&|p| p.lora_pct),
        100.0 * RATE_GOAL,
        support::AtLeast,
        "%",
    );
    support::goal(
        &format!("LoRaWAN CPU per uplink{of} (raw receiver {lora_raw_us:.2} µs)"),
        med(&|p| p.lora_us),
        LORAWAN_CPU_GOAL_US,
        support::AtMost,
        "µs",
    );
    support::goal(
        &format!("CoAP CPU per datagram, × the raw receiver's{of}"),
        per_round(&|p, raw| p.coap_us / raw.0),
        COAP_CPU_GOAL_US / GOAL_CLASS_RAW_US,
        support::AtMost,
        "×",
    );
    support::goal(
        &format!("LoRaWAN CPU per uplink, × the raw receiver's{of}"),
        per_round(&|p, raw| p.lora_us / raw.1),
        LORAWAN_CPU_GOAL_US / GOAL_CLASS_RAW_US,
        support::AtMost,
        "×",
    );
    if std::env::var("EDGE_BENCH_PINNED").map_or(true, |v| v != "0") {
        let limits = measure_limits(n, ", before the pinned pass");
        gateway_pass(&broker, n, true, &limits, "");
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn row(what: &str, n: usize, r: &Run, base: Option<f64>) {
    let ratio = base.map_or(String::new(), |b| format!("{:>7.1}%", 100.0 * r.rate() / b));
    println!(
        "{what:<62} {:>10.0}/s {:>9} of {n} in {:>6.2} s {ratio}",
        r.rate(),
        r.received,
        r.seconds
    );
}

fn cpu(what: &str, gateway_us: f64, raw_us: f64) {
    println!("{what:<62} gateway {gateway_us:>5.2} µs, raw receiver {raw_us:>5.2} µs per datagram");
}

fn measure_limits(n: usize, tag: &str) -> Limits {
    let (coap, coap_us) = raw_udp("coap", n);
    row(
        &format!("CoAP: raw UDP receive (the limit){tag}"),
        n,
        &coap,
        None,
    );
    let (lora, lora_us) = raw_udp("lorawan", n);
    row(
        &format!("Semtech UDP: raw UDP receive (the limit){tag}"),
        n,
        &lora,
        None,
    );
    Limits {
        coap,
        coap_us,
        lora,
        lora_us,
    }
}

/// (2)-(5) with a fresh gateway (fresh frame counters: the simulator
/// starts its devices' counters over each time).
fn gateway_pass(broker: &Broker, n: usize, pinned: bool, limits: &Limits, tag: &str) -> Pass {
    let gw = UdpGateway::start(broker);
    let how = if pinned {
        format!(", gateway on CPU 0{tag}")
    } else {
        tag.to_string()
    };
    if pinned {
        pin_to_one_core(gw.gw.pid());
    }
    let meter = CpuMeter::start(gw.gw.pid());
    let mut sender = simulate("coap", gw.coap, n);
    let (coap, used) = gw.gw.watch_costed(
        "edge_gateway_adapter_readings_total{adapter=\"coap\"}",
        0.0,
        n as f64,
        &[gw.gw.pid()],
    );
    let coap_us = meter.micros_per_until(used[0], coap.received);
    let _ = sender.wait();
    row(
        &format!("CoAP: gateway ingest{how}, % of limit"),
        n,
        &coap,
        Some(limits.coap.rate()),
    );
    cpu(&format!("CoAP: CPU{how}"), coap_us, limits.coap_us);

    let meter = CpuMeter::start(gw.gw.pid());
    let mut sender = simulate("lorawan", gw.lora, n);
    let (readings, used) = gw.gw.watch_costed(
        "edge_gateway_adapter_readings_total{adapter=\"lora\"}",
        0.0,
        n as f64 * READINGS_PER_UPLINK,
        &[gw.gw.pid()],
    );
    let _ = sender.wait();
    let uplinks = Run {
        received: (readings.received as f64 / READINGS_PER_UPLINK) as u64,
        seconds: readings.seconds,
    };
    let lora_us = meter.micros_per_until(used[0], uplinks.received);
    row(
        &format!("Semtech UDP: LoRaWAN uplinks{how}, % of limit"),
        n,
        &uplinks,
        Some(limits.lora.rate()),
    );
    cpu(
        &format!("Semtech UDP: CPU per uplink{how}"),
        lora_us,
        limits.lora_us,
    );
    // Where the datagrams went: read (and ACKed), refused for want of
    // room between the receive loop and the processor, never read.
    let read = gw
        .gw
        .counter("edge_gateway_adapter_received_messages_total{adapter=\"lora\"}");
    let overloaded = gw
        .gw
        .counter("edge_gateway_adapter_errors_total{adapter=\"lora\",error_type=\"overloaded\"}");
    // Frames refused for want of room in the de-duplication table: each
    // is an uplink the rate above misses.
    let dedup_full = gw
        .gw
        .counter("edge_gateway_adapter_errors_total{adapter=\"lora\",error_type=\"dedup_full\"}");
    println!(
        "{:<62} read {read:.0}, refused `overloaded` {overloaded:.0}, \
         frames refused `dedup_full` {dedup_full:.0}, never read {:.0}",
        format!("Semtech UDP: datagrams{how}"),
        (n as f64 - read).max(0.0),
    );
    println!("{:<62} {}", "load average", load_average());
    Pass {
        coap_pct: 100.0 * coap.rate() / limits.coap.rate().max(1e-9),
        coap_us,
        lora_pct: 100.0 * uplinks.rate() / limits.lora.rate().max(1e-9),
        lora_us,
    }
}

/// `/proc/loadavg`'s three averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
