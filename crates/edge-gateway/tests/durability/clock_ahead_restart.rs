//! A restart with the clock 40 days ahead (retention 30 days), then back:
//! the dashboard's history keeps every window (issue 51). Played from
//! outside on the real binary: the second run's wall clock is moved by
//! libfaketime (`LD_PRELOAD`, `FAKETIME="+40d"`), as a Pi whose RTC
//! battery is flat boots with a wrong date. Before the fix the prune at
//! start deleted every hour of it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::PathBuf;

use common::{http_until, now_ms, GatewayProcess};
use serde_json::Value;
use test_support::free_port;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const MIN: i64 = 60_000;
const WINDOWS: i64 = 7;
const DEFERRED: &str = r#"edge_gateway_retention_deferred_total{store="history"}"#;

fn config(line_port: u16, metrics: u16, dashboard: u16) -> String {
    format!(
        r#"
[gateway]
id = "gw-clock-ahead"
site = "hq"
state_dir = "@STATE_DIR@"

[aggregation]
window = "1m"
grace = "1s"

[metrics]
bind = "127.0.0.1:{metrics}"

[dashboard]
enabled = true
bind = "127.0.0.1:{dashboard}"
retention = "30days"
write_interval = "200ms"

[[adapter]]
type = "tcp_line"
name = "fridge-tcp"
bind = "127.0.0.1:{line_port}"
format = "csv"
columns = ["ts", "temperature"]
peers = {{ "127.0.0.1" = "fridge-1" }}
"#
    )
}

/// libfaketime's preload library, installed if it is missing and can be.
fn libfaketime() -> Option<PathBuf> {
    let find = || {
        std::fs::read_dir("/usr/lib")
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path().join("faketime/libfaketime.so.1"))
            .chain([PathBuf::from("/usr/lib/faketime/libfaketime.so.1")])
            .find(|p| p.exists())
    };
    if let Some(found) = find() {
        return Some(found);
    }
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if root {
        let _ = std::process::Command::new("apt-get")
            .args(["install", "-y", "-qq", "faketime"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
    }
    find()
}

/// The windows' starts in history for `[from, to)`, by the API.
async fn window_starts(dashboard: u16, from: i64, to: i64) -> Vec<i64> {
    let path = format!("/api/series?device=fridge-1&metric=temperature&from={from}&to={to}");
    let (_, body) = http_until(dashboard, &path, |code, _| code == 200).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    v["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["start"].as_i64().unwrap())
        .collect()
}

async fn started(gw: &mut GatewayProcess, metrics: u16) {
    gw.wait_for_log("Metrics endpoint listening").await;
    http_until(metrics, "/health", |c, _| c == 200).await;
    // The line port answers once the adapter has bound it, which `/health`
    // does not wait for.
    gw.wait_for_log("Listening for lines.").await;
    // The history's first prune runs at start: once it is counted as
    // deferred, it is over.
    http_until(metrics, "/metrics", |c, body| {
        c == 200 && test_support::metrics::sample(body, DEFERRED).is_some_and(|v| v != 0.0)
    })
    .await;
}

async fn stop(gw: &mut GatewayProcess) {
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_forty_days_ahead_keeps_every_window_of_the_history() {
    let Some(lib) = libfaketime() else {
        eprintln!("SKIPPED: libfaketime is not installed and cannot be (apt-get install faketime)");
        return;
    };
    restart_ahead_and_back(&lib, "+40d", false).await;
}

/// The soak's case of issue 51 (`scripts/soak.sh`): restarts with the
/// clock ahead by more than the retention (31 days to a year), the run
/// ahead ended by a clean stop or a kill -9. Each run must keep every
/// window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: run by scripts/soak.sh"]
async fn soak_restart_with_the_clock_ahead_keeps_every_window() {
    let Some(lib) = libfaketime() else {
        eprintln!("SKIPPED: libfaketime is not installed and cannot be (apt-get install faketime)");
        return;
    };
    // A fifth of the outage soak's runs (each is three starts of the
    // gateway), at least one per offset.
    let runs: usize = std::env::var("EDGE_SOAK_RUNS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .map_or(4, |n| (n / 5).max(4));
    let aheads = ["+31d", "+40d", "+90d", "+365d"];
    for run in 0..runs {
        let ahead = aheads[run % aheads.len()];
        let kill = run % 2 == 1;
        restart_ahead_and_back(&lib, ahead, kill).await;
        println!(
            "soak clock ahead: run {run}: {ahead}, ended by {}: every window kept",
            if kill { "kill -9" } else { "TERM" }
        );
    }
}

/// Seven windows in history, a restart with the clock `ahead` (ended by a
/// kill -9 when `kill`), then one at the right time: every window must
/// be in the history API's answer each time.
async fn restart_ahead_and_back(lib: &std::path::Path, ahead: &str, kill: bool) {
    let (line_port, metrics, dashboard) = (free_port(), free_port(), free_port());
    let cfg = config(line_port, metrics, dashboard);
    let mut gw = GatewayProcess::start(&cfg);
    started(&mut gw, metrics).await;

    // One reading a minute for the last seven minutes, each with its own
    // time: seven windows, closed at once (their spans are over).
    let now = now_ms();
    let first = (now / MIN - WINDOWS) * MIN;
    let mut wire = String::new();
    for i in 0..WINDOWS {
        wire.push_str(&format!(
            "{},{}\n",
            first + i * MIN + 30_000,
            4.0 + i as f64
        ));
    }
    let mut s = TcpStream::connect(("127.0.0.1", line_port)).await.unwrap();
    s.write_all(wire.as_bytes()).await.unwrap();
    s.shutdown().await.unwrap();
    let (from, to) = (first - MIN, now + MIN);
    let want: Vec<i64> = (0..WINDOWS).map(|i| first + i * MIN).collect();
    let path = format!("/api/series?device=fridge-1&metric=temperature&from={from}&to={to}");
    http_until(dashboard, &path, |code, body| {
        code == 200
            && serde_json::from_str::<Value>(body).is_ok_and(|v| {
                v["points"]
                    .as_array()
                    .is_some_and(|p| p.len() == want.len())
            })
    })
    .await;
    assert_eq!(window_starts(dashboard, from, to).await, want);
    stop(&mut gw).await;

    // Ahead by more than the retention: the history's prune at start must
    // delete nothing.
    let lib = lib.display().to_string();
    let faked = [
        ("LD_PRELOAD", lib.as_str()),
        ("FAKETIME", ahead),
        // Tokio's timers and the step detection run on the monotonic clock:
        // only the wall clock is wrong, as on the Pi.
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let mut gw = GatewayProcess::start_in_with(gw.dir, &cfg, &faked);
    started(&mut gw, metrics).await;
    // The gateway's "now" is days ahead: its last day holds nothing.
    let recent = "/api/series?device=fridge-1&metric=temperature";
    let (_, body) = http_until(dashboard, recent, |code, _| code == 200).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["points"], Value::Array(vec![]), "the clock is not ahead");
    assert_eq!(
        window_starts(dashboard, from, to).await,
        want,
        "windows pruned by a clock {ahead} ahead"
    );
    if kill {
        gw.signal("KILL");
        gw.wait_exit().await;
    } else {
        stop(&mut gw).await;
    }
    gw.drain_log().await;
    let log = gw.seen.join("\n");
    assert!(log.contains("pruned by space only"), "{log}");

    // Back to the right time: every window is still there.
    let mut gw = GatewayProcess::start_in(gw.dir, &cfg);
    started(&mut gw, metrics).await;
    assert_eq!(window_starts(dashboard, from, to).await, want);
    stop(&mut gw).await;
}
