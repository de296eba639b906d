//! Memory under a flood of made-up device ids:
//! `cargo bench -p edge-gateway --bench series_flood`.
//!
//! The real gateway binary reads one Mosquitto; `edge-gateway simulate`
//! publishes 200 000 messages from 200 000 distinct device ids (fresh ids
//! every round, three rounds), once with the cap lifted and once with the
//! default `aggregation.max_series`. Printed per round: RSS with the flood's
//! windows open, RSS once they closed, the checkpoint's size, readings taken
//! and refused; then the capped run's peak against the limit. A short window
//! (20 s) makes each round close before the next.
//! `EDGE_BENCH_FLOOD` sets the ids per round.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/mod.rs"]
mod support;

use support::{Broker, Gateway};

/// RSS the capped gateway must stay under through the flood: the default
/// cap's windows (about 8 MB) over an idle gateway's 10–15 MB, with room.
const RSS_LIMIT_MB: f64 = 40.0;
const ROUNDS: usize = 3;

fn start_gateway(broker: &Broker, max_series: usize, state: &Path) -> Gateway {
    let metrics = test_support::free_port();
    let cfg = format!(
        r#"
[gateway]
id = "gw-bench"
state_dir = "{state}"
[upstream]
url = "mqtt://127.0.0.1:{port}"
[aggregation]
window = "20s"
grace = "1s"
max_series = {max_series}
[metrics]
bind = "127.0.0.1:{metrics}"
[[adapter]]
type = "mqtt"
name = "flood"
url = "mqtt://127.0.0.1:{port}"
qos = 1
persistent_session = false
topics = ["sensors/{{device}}"]
"#,
        port = broker.port,
        state = state.display(),
    );
    Gateway::start(&cfg, Some(metrics), &["Subscribed"])
}

fn flood(broker: &Broker, round: usize, n: usize) {
    let status = Command::new(support::gateway_exe())
        .args([
            "simulate",
            "--broker",
            &format!("mqtt://127.0.0.1:{}", broker.port),
        ])
        .args(["--devices", &n.to_string(), "--count", &n.to_string()])
        .args(["--rate", "0", "--qos", "1", "--metrics", "temperature"])
        .args(["--topic", &format!("sensors/r{round}-{{device}}")])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits until `taken() >= n` or it stands still for `idle`.
fn wait_for(mut taken: impl FnMut() -> f64, n: f64, idle: Duration) -> f64 {
    let (mut last, mut since) = (-1.0, Instant::now());
    loop {
        let v = taken();
        if v >= n {
            return v;
        }
        if v > last {
            (last, since) = (v, Instant::now());
        } else if since.elapsed() > idle {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn mb(bytes: f64) -> f64 {
    bytes / 1e6
}

/// One gateway through the rounds; the peak RSS seen.
fn run(broker: &Broker, label: &str, max_series: usize, n: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(broker, max_series, dir.path());
    let rss = || gw.counter("process_resident_memory_bytes");
    let taken = || gw.counter("edge_gateway_aggregator_readings_total");
    let refused =
        || gw.counter("edge_gateway_aggregator_dropped_readings_total{reason=\"max_series\"}");
    let windows = || gw.counter("edge_gateway_aggregator_windows_emitted_total");
    println!(
        "{label}: max_series = {max_series}, RSS idle {:.1} MB",
        mb(rss())
    );
    let mut peak: f64 = 0.0;
    for round in 1..=ROUNDS {
        flood(broker, round, n);
        wait_for(
            || taken() + refused(),
            (round * n) as f64,
            Duration::from_secs(5),
        );
        let open = rss();
        let admitted = taken();
        // Every admitted reading opened a window (one device, one metric):
        // wait for them to close, up to a window and its grace and more.
        wait_for(windows, admitted, Duration::from_secs(40));
        // The checkpoint after a close is written in the background.
        std::thread::sleep(Duration::from_secs(6));
        let closed = rss();
        let ckpt = std::fs::metadata(dir.path().join("windows.ckpt")).map_or(0, |m| m.len());
        peak = peak.max(open).max(closed);
        println!(
            "  round {round}: {:>7.0} taken, {:>7.0} refused; RSS {:>5.1} MB open, {:>5.1} MB after close; checkpoint {:>6.1} KB",
            admitted,
            refused(),
            mb(open),
            mb(closed),
            ckpt as f64 / 1e3
        );
    }
    peak
}

fn main() {
    let n: usize = std::env::var("EDGE_BENCH_FLOOD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    println!("flood: {n} distinct device ids per round, {ROUNDS} rounds, 1 metric, QoS 1\n");
    let broker = Broker::start("max_queued_messages 1000000\nmax_inflight_messages 1000");
    let default_cap = gateway_core::config::AggregationConfig::default().max_series;
    run(&broker, "uncapped (before)", 100_000_000, n);
    let peak = run(&broker, "capped (default)", default_cap, n);
    println!(
        "\ncapped peak RSS {:.1} MB, limit {RSS_LIMIT_MB:.0} MB: {}",
        mb(peak),
        if mb(peak) <= RSS_LIMIT_MB {
            "within"
        } else {
            "OVER"
        }
    );
}
