//! A fleet on a three-node NATS cluster, end to end through the real
//! binary: `cargo bench -p edge-gateway --bench fleet`.
//!
//! For each fleet size (`EDGE_BENCH_FLEET`, default `1,10,50`): a fresh
//! cluster (JetStream, an MQTT listener per node), that many gateways with
//! `upstream.urls` naming the three nodes, each fed by its own writer
//! thread over `tcp_line` (`EDGE_BENCH_FLEET_DEVICES` devices a gateway,
//! default 20; `EDGE_BENCH_FLEET_RATE` lines a second each, default 0: as
//! fast as the writer can send them; for `EDGE_BENCH_FLEET_SECONDS`,
//! default 10), and a consumer on the third
//! node. Halfway through, the node the gateways use (the first) is
//! killed with SIGKILL. `EDGE_BENCH_FLEET_CLEAN=1` runs the gateways with
//! `persistent_session = false`, to compare.
//!
//! Reported per size:
//! - readings/s end to end: readings counted in the consumer's aggregates
//!   (deduplicated by `id`) over the time from the first line written to
//!   the last aggregate received;
//! - lost and duplicate counts, and `seq` gaps, as the consumer sees them;
//! - failover time per gateway: the consumer's last message from it before
//!   the kill to its first after (p50, max). Aggregates leave once a
//!   second (1 s windows), so this includes up to a window of cadence, and
//!   the consumer's own pause while its node's JetStream recovers;
//! - reconnect time per gateway: the kill to its `/metrics` showing the
//!   failover (polled, so a few milliseconds late at most per gateway).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufWriter, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use test_support::NatsCluster;

#[path = "support/mod.rs"]
mod support;

use support::Gateway;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(i: usize, urls: &str, line_port: u16, metrics: u16, persistent: bool) -> String {
    format!(
        r#"
[gateway]
id = "gw-{i:03}"
site = "site-{i:03}"
state_dir = "@STATE_DIR@"
[upstream]
urls = {urls}
qos = 1
topic_prefix = "bench/{{site}}/{{gateway}}"
max_backoff = "2s"
keep_alive = "5s"
persistent_session = {persistent}
[aggregation]
window = "1s"
grace = "1s"
[metrics]
bind = "127.0.0.1:{metrics}"
[[adapter]]
type = "tcp_line"
name = "meter"
bind = "127.0.0.1:{line_port}"
format = "csv"
columns = ["device", "power"]
"#
    )
}

/// One upstream message as the consumer saw it.
struct Seen {
    at: Instant,
    gateway: String,
    id: String,
    seq: u64,
    count: u64,
}

fn consumer(port: u16, ready: mpsc::Sender<()>, out: mpsc::Sender<Seen>, done: Arc<AtomicBool>) {
    let mut opts = MqttOptions::new("fleet-bench-consumer", "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(10));
    // NATS may close the consumer's connection while JetStream recovers
    // from the kill: a persistent session keeps what arrives meanwhile.
    opts.set_clean_session(false);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut connection) = Client::new(opts, 64);
    for event in connection.iter() {
        match event {
            Ok(Event::Incoming(Packet::ConnAck(c))) if !c.session_present => {
                let _ = client.try_subscribe("bench/#", QoS::AtLeastOnce);
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                let _ = ready.send(());
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let Ok(j) = serde_json::from_slice::<serde_json::Value>(&p.payload) else {
                    continue;
                };
                let count = j["metrics"]
                    .as_object()
                    .map_or(0, |m| m.values().filter_map(|s| s["count"].as_u64()).sum());
                let seen = Seen {
                    at: Instant::now(),
                    gateway: j["gateway"].as_str().unwrap_or_default().to_string(),
                    id: j["id"].as_str().unwrap_or_default().to_string(),
                    seq: j["seq"].as_u64().unwrap_or(0),
                    count,
                };
                if out.send(seen).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(_) if done.load(Ordering::Relaxed) => return,
            Err(e) => {
                eprintln!("consumer: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// Lines `device,value` round-robin over `devices` until `stop`, `rate` a
/// second (0: as fast as possible); returns how many were written.
fn writer(port: u16, devices: usize, rate: f64, stop: Arc<AtomicBool>) -> u64 {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut w = BufWriter::with_capacity(64 * 1024, stream);
    let mut n = 0u64;
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if rate > 0.0 {
            w.flush().unwrap();
            let due = start + Duration::from_secs_f64(n as f64 / rate);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        for _ in 0..256 {
            let d = n as usize % devices;
            writeln!(w, "dev-{d:03},{}", 100 + n % 17).unwrap();
            n += 1;
        }
    }
    w.flush().unwrap();
    n
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn run(size: usize, devices: usize, rate: f64, seconds: f64, persistent: bool) {
    let mut cluster = NatsCluster::start(3);
    let urls = cluster.urls_toml();
    let (ready_tx, ready) = mpsc::channel();
    let (seen_tx, seen_rx) = mpsc::channel();
    let consumer_port = cluster.mqtt_port(2);
    let done = Arc::new(AtomicBool::new(false));
    let consumer_done = done.clone();
    std::thread::spawn(move || consumer(consumer_port, ready_tx, seen_tx, consumer_done));
    ready
        .recv_timeout(Duration::from_secs(20))
        .expect("consumer subscribed");

    let started = Instant::now();
    let mut fleet = Vec::new();
    for i in 0..size {
        let (line_port, metrics) = (test_support::free_port(), test_support::free_port());
        let gw = Gateway::start(
            &config(i, &urls, line_port, metrics, persistent),
            Some(metrics),
            &["Listening for lines.", "Connected upstream."],
        );
        fleet.push((gw, line_port));
    }
    let startup = started.elapsed().as_secs_f64();

    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let writers: Vec<_> = fleet
        .iter()
        .map(|(_, port)| {
            let (port, stop) = (*port, stop.clone());
            std::thread::spawn(move || writer(port, devices, rate, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds / 2.0));
    let kill_at = Instant::now();
    cluster.kill(0);
    // Polled: /metrics is the only view of a gateway's connection here.
    let mut reconnects = Vec::new();
    let mut pending: Vec<&Gateway> = fleet.iter().map(|(gw, _)| gw).collect();
    let poll_until = kill_at + Duration::from_secs_f64(seconds / 2.0).max(Duration::from_secs(30));
    while !pending.is_empty() && Instant::now() < poll_until {
        pending.retain(|gw| {
            let moved = gw.counter("edge_gateway_upstream_failovers_total") >= 1.0;
            if moved {
                reconnects.push(kill_at.elapsed().as_secs_f64());
            }
            !moved
        });
        std::thread::sleep(Duration::from_millis(20));
    }
    let unreconnected = pending.len();
    let rest = Duration::from_secs_f64(seconds / 2.0).saturating_sub(kill_at.elapsed());
    std::thread::sleep(rest);
    reconnects.sort_by(f64::total_cmp);
    stop.store(true, Ordering::Relaxed);
    let sent: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();

    // Everything the gateways took in, once the consumer has it all (or
    // nothing more came for 15 s).
    let mut seen = Vec::new();
    let mut counted: HashMap<String, u64> = HashMap::new();
    let mut total = 0u64;
    while total < sent {
        match seen_rx.recv_timeout(Duration::from_secs(15)) {
            Ok(s) => {
                if !counted.contains_key(&s.id) {
                    counted.insert(s.id.clone(), s.count);
                    total += s.count;
                }
                seen.push(s);
            }
            Err(_) => break,
        }
    }
    let last_at = seen.last().map_or(t0, |s| s.at);
    let e2e = (last_at - t0).as_secs_f64();

    let mut per_gw: BTreeMap<&str, Vec<&Seen>> = BTreeMap::new();
    for s in &seen {
        per_gw.entry(s.gateway.as_str()).or_default().push(s);
    }
    let mut gaps = Vec::new();
    let mut seq_gaps = 0u64;
    for msgs in per_gw.values() {
        let before = msgs.iter().filter(|s| s.at <= kill_at).map(|s| s.at).max();
        let after = msgs.iter().filter(|s| s.at > kill_at).map(|s| s.at).min();
        if let (Some(b), Some(a)) = (before, after) {
            gaps.push((a - b).as_secs_f64());
        }
        let seqs: HashSet<u64> = msgs.iter().map(|s| s.seq).collect();
        let max = seqs.iter().max().copied().unwrap_or(0);
        seq_gaps += (1..=max).filter(|s| !seqs.contains(s)).count() as u64;
    }
    gaps.sort_by(f64::total_cmp);
    let duplicates = seen.len() - counted.len();
    println!(
        "fleet {size:>3} gateways x {devices} devices, {rate_in} ({session} sessions): {sent} readings in, {total} counted once upstream \
         (lost {lost}), {msgs} messages ({duplicates} duplicates, {seq_gaps} seq gaps); \
         {rate:.0} readings/s end to end over {e2e:.1}s; reconnected after the kill p50 {r50:.2}s \
         max {rmax:.2}s ({unreconnected} not within 30s); delivery gap at the consumer p50 {p50:.2}s \
         max {max:.2}s ({n} of {size} gateways measured); start-up {startup:.1}s",
        lost = sent.saturating_sub(total),
        msgs = seen.len(),
        rate = total as f64 / e2e.max(1e-9),
        p50 = percentile(&gaps, 0.5),
        max = percentile(&gaps, 1.0),
        n = gaps.len(),
        r50 = percentile(&reconnects, 0.5),
        rmax = percentile(&reconnects, 1.0),
        session = if persistent { "persistent" } else { "clean" },
        rate_in = if rate > 0.0 {
            format!("{rate} lines/s each")
        } else {
            "lines as fast as possible".to_string()
        },
    );
    done.store(true, Ordering::Relaxed);
    drop(fleet);
}

fn main() {
    let sizes: Vec<usize> = std::env::var("EDGE_BENCH_FLEET")
        .unwrap_or_else(|_| "1,10,50".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let devices = env_or("EDGE_BENCH_FLEET_DEVICES", 20usize);
    let seconds = env_or("EDGE_BENCH_FLEET_SECONDS", 10.0f64);
    let persistent = std::env::var("EDGE_BENCH_FLEET_CLEAN").is_err();
    let rate = env_or("EDGE_BENCH_FLEET_RATE", 0.0f64);
    for size in sizes {
        run(size, devices, rate, seconds, persistent);
    }
}
