//! The README's promise under the faults that broke it from outside: an
//! upstream outage, then `kill -9` restarts while readings flow, with
//! persistent brokers on both sides. Every acknowledged reading must be in
//! exactly one distinct aggregate upstream (a consumer de-duplicating on
//! `id` and adding up count, sum and sum of squares), and in exactly one
//! window of the dashboard's history (`history export`, counts and sums).
//!
//! `outage_then_five_kills_loses_nothing` is the scenario as reported (the
//! kill points 0.3 s + 0.2 s × i after a batch); the ignored `soak` runs it
//! many times with random kill points, including kills while a checkpoint
//! is being synced, while the outbox drains after the outage, and between a
//! window's emission and its outbox append (`scripts/soak.sh`), and with two
//! faults of a Raspberry Pi's own: the state directory full across some of
//! the kills (a tmpfs the soak mounts as root; without root it says so and
//! leaves that fault out), and the wall clock stepping back (ten minutes or
//! an hour, through the gateway's clock fault hook) before one of them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::tmpfs::Tmpfs;
use common::{conflicting_ids, mark_in_log, rel_close, totals, GatewayProcess, WAIT};
use edge_gateway::fault_clock;
use test_support::{publish_lines_as, Message, Mosquitto, Options, Subscriber};

const DEVICES: [&str; 3] = ["dev-a", "dev-b", "dev-c"];

/// Where one of the five kills lands.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// This long after a batch of 60 per device was published.
    After(Duration),
    /// While a checkpoint is held before its fsync (the gateway runs with
    /// the hold hook) and the journal has moved on to the epoch it names.
    CheckpointInFlight,
    /// While closed windows wait in the forwarder before their outbox
    /// append (the gateway runs with the outbox hold hook).
    BeforeOutboxAppend(Duration),
}

#[derive(Debug, Clone)]
struct Plan {
    kills: Vec<Kill>,
    /// Kill the gateway as soon as it reconnects upstream after the
    /// outage, while the backlog drains at `drain_rate`.
    kill_during_drain: bool,
    /// Fill the state directory before this kill's batch; it is freed
    /// after the next kill.
    disk_full_at: Option<usize>,
    /// Step the wall clock back by this many seconds before this kill's
    /// batch.
    clock_back: Option<(usize, i64)>,
}

impl Plan {
    /// The scenario as it was reported.
    fn reported() -> Self {
        Self {
            kills: (0..5)
                .map(|i| Kill::After(Duration::from_millis(300 + 200 * i)))
                .collect(),
            kill_during_drain: false,
            disk_full_at: None,
            clock_back: None,
        }
    }

    /// Random kill points from a seed (xorshift: the run is reproducible
    /// from the seed it prints).
    fn random(seed: u64) -> Self {
        let mut x = seed.max(1);
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let kills = (0..5)
            .map(|_| match next() % 4 {
                0 => Kill::CheckpointInFlight,
                1 => Kill::BeforeOutboxAppend(Duration::from_millis(next() % 1500)),
                _ => Kill::After(Duration::from_millis(next() % 1500)),
            })
            .collect();
        let kill_during_drain = next() % 2 == 0;
        let disk_full_at = (next() % 2 == 0).then(|| (next() % 4) as usize);
        let clock_back = (next() % 2 == 0).then(|| {
            let back = if next() % 2 == 0 { 600 } else { 3600 };
            ((next() % 5) as usize, back)
        });
        Self {
            kills,
            kill_during_drain,
            disk_full_at,
            clock_back,
        }
    }
}

#[derive(Debug, Default)]
struct Outcome {
    /// Readings published and never counted upstream.
    lost: u64,
    /// Readings counted more than once after de-duplication by id.
    doubled: u64,
    /// Ids that arrived twice with different statistics.
    conflicts: usize,
    /// The same two, in the dashboard's history instead of upstream.
    history_lost: u64,
    history_doubled: u64,
    detail: String,
}

fn value(device: usize, k: usize) -> String {
    format!(
        "{:.4}",
        ((k as f64) * 0.731 + device as f64).sin() * 12.5 + 20.0
    )
}

/// The next `n` readings of every device.
struct Readings {
    next: [usize; 3],
    published: BTreeMap<&'static str, Vec<f64>>,
}

impl Readings {
    fn new() -> Self {
        Self {
            next: [0; 3],
            published: BTreeMap::new(),
        }
    }

    /// Publishes `n` per device, in parallel, each device in its own
    /// persistent session, and returns once the local broker has them all.
    async fn publish(&mut self, port: u16, n: usize) {
        let mut tasks = Vec::new();
        for (d, device) in DEVICES.iter().enumerate() {
            let lines: Vec<String> = (self.next[d]..self.next[d] + n)
                .map(|k| value(d, k))
                .collect();
            self.next[d] += n;
            self.published
                .entry(device)
                .or_default()
                .extend(lines.iter().map(|l| l.parse::<f64>().unwrap()));
            let topic = format!("sensors/data/{device}/temperature");
            let id = format!("pub-{device}");
            tasks.push(tokio::spawn(async move {
                publish_lines_as(port, &topic, &lines, 1, &id).await
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
}

/// The drain after the outage is slowed down when a kill is to land in it.
fn gateway_config(local: u16, upstream: u16, plan: &Plan) -> String {
    let drain_rate = if plan.kill_during_drain { 20 } else { 200 };
    format!(
        r#"
[gateway]
id = "gw-outage"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{upstream}"
qos = 1
topic_prefix = "building/{{site}}"

[outbox]
drain_rate = {drain_rate}

[aggregation]
window = "1s"
grace = "1s"

# History written more often than the checkpoint: a kill then re-closes
# windows history already holds, which must overwrite, not add.
[dashboard]
enabled = true
bind = "127.0.0.1:0"
write_interval = "1s"

[[adapter]]
type = "mqtt"
name = "local-sensors"
url = "mqtt://127.0.0.1:{local}"
topics = ["sensors/data/{{device}}/{{metric}}"]
"#
    )
}

const HOLD_CHECKPOINT: (&str, &str) = ("EDGE_GATEWAY_FAULT_HOLD_CHECKPOINT_MS", "3000");
const HOLD_OUTBOX: (&str, &str) = ("EDGE_GATEWAY_FAULT_HOLD_OUTBOX_MS", "3000");

fn journals(state: &Path) -> usize {
    std::fs::read_dir(state)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".journal"))
                .count()
        })
        .unwrap_or(0)
}

async fn run(plan: &Plan) -> Outcome {
    // As reported: persistence on both, the in-flight window left at
    // Mosquitto's default.
    let broker = Options {
        persistence: true,
        default_inflight: true,
        ..Options::default()
    };
    let local = Mosquitto::start_with(broker.clone());
    let mut upstream = Mosquitto::start_with(broker);
    let consumer = format!("consumer-{}", upstream.port());
    let mut sub =
        Subscriber::start_persistent(upstream.port(), "building/hq/+/aggregated", &consumer).await;
    let cfg = gateway_config(local.port(), upstream.port(), plan);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let disk = match plan.disk_full_at {
        Some(_) => {
            let disk = Tmpfs::mount(&state, "32m");
            if disk.is_none() {
                println!("(cannot mount a tmpfs without root: the full-disk fault is left out)");
            }
            disk
        }
        None => None,
    };
    let clock_file = dir.path().join("clock-step-ms");
    std::fs::write(&clock_file, "0").unwrap();
    let clock_path = clock_file.display().to_string();
    let clock_env = (fault_clock::CLOCK_STEP_FILE_ENV, clock_path.as_str());
    let mut gw = GatewayProcess::start_in_with(dir, &cfg, &[clock_env]);
    gw.wait_for_log("Subscribed").await;
    let mut readings = Readings::new();

    readings.publish(local.port(), 100).await;
    mark_in_log("upstream stopped");
    upstream.stop();
    // The outage: five batches one second apart (the load's own pace).
    let mut pace = tokio::time::interval(Duration::from_secs(1));
    for _ in 0..5 {
        pace.tick().await;
        readings.publish(local.port(), 50).await;
    }
    upstream.start_again();
    mark_in_log("upstream back");
    if plan.kill_during_drain {
        gw.wait_for_log("Connected upstream").await;
        gw = gw.kill_and_restart(&cfg, &[clock_env]).await;
    }

    let mut stepped_ms = 0;
    for (i, kill) in plan.kills.iter().enumerate() {
        let env: &[(&str, &str)] = match kill {
            Kill::After(_) => &[clock_env],
            Kill::CheckpointInFlight => &[HOLD_CHECKPOINT, clock_env],
            Kill::BeforeOutboxAppend(_) => &[HOLD_OUTBOX, clock_env],
        };
        if env.len() > 1 {
            gw = gw.kill_and_restart(&cfg, env).await;
        }
        if let Some((_, back_s)) = plan.clock_back.filter(|(at, _)| *at == i) {
            stepped_ms -= back_s * 1000;
            std::fs::write(&clock_file, stepped_ms.to_string()).unwrap();
            mark_in_log(&format!("clock back {back_s} s"));
        }
        if let Some(disk) = disk.as_ref() {
            if plan.disk_full_at == Some(i) {
                disk.fill();
                mark_in_log("disk full");
            } else if plan.disk_full_at.is_some_and(|at| at + 2 == i) {
                disk.free();
                mark_in_log("disk freed");
            }
        }
        readings.publish(local.port(), 60).await;
        match kill {
            // The fault schedule itself, not a wait for an event.
            Kill::After(d) | Kill::BeforeOutboxAppend(d) => tokio::time::sleep(*d).await,
            Kill::CheckpointInFlight => {
                let deadline = tokio::time::Instant::now() + WAIT;
                while journals(&state) < 2 && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        mark_in_log(&format!("kill {i}"));
        gw.signal("KILL");
        gw.wait_exit().await;
        readings.publish(local.port(), 40).await;
        gw = GatewayProcess::start_in_with(gw.dir, &cfg, &[clock_env]);
        gw.wait_for_log("Subscribed").await;
    }
    if let Some(disk) = disk.as_ref() {
        disk.free();
    }
    mark_in_log("last batch");
    readings.publish(local.port(), 50).await;

    let expected: BTreeMap<&str, usize> = readings
        .published
        .iter()
        .map(|(d, v)| (*d, v.len()))
        .collect();
    let mut got: Vec<Message> = sub
        .collect_until(Duration::from_secs(90), |m| {
            let t = totals(m);
            expected
                .iter()
                .all(|(d, n)| t.get(*d).is_some_and(|c| c.0 >= *n as u64))
        })
        .await;
    // Whatever else is in flight: a late copy must not add to the count.
    while let Some(m) = sub.next(Duration::from_millis(1500)).await {
        got.push(m);
    }
    gw.take_log();
    let t = totals(&got);
    note_windows_in_log(&got);
    let mut out = Outcome {
        conflicts: conflicting_ids(&got).len(),
        ..Outcome::default()
    };
    for (device, values) in &readings.published {
        let (count, sum, squares) = t.get(*device).copied().unwrap_or_default();
        let n = values.len() as u64;
        out.lost += n.saturating_sub(count);
        out.doubled += count.saturating_sub(n);
        let sums_match = rel_close(sum, values.iter().sum())
            && rel_close(squares, values.iter().map(|v| v * v).sum());
        out.detail += &format!("{device}: {count}/{n} sums match: {sums_match}; ");
        if count == n && !sums_match {
            // Right count, wrong readings: one lost and one doubled.
            out.lost += 1;
            out.doubled += 1;
        }
    }
    sub.stop().await;
    gw.signal("TERM");
    gw.wait_exit().await;
    for (device, values) in &readings.published {
        let (count, sum) = history_totals(&gw.config_path, device);
        let n = values.len() as u64;
        out.history_lost += n.saturating_sub(count);
        out.history_doubled += count.saturating_sub(n);
        let sums_match = rel_close(sum, values.iter().sum());
        out.detail += &format!("history {device}: {count}/{n} sums match: {sums_match}; ");
        if count == n && !sums_match {
            out.history_lost += 1;
            out.history_doubled += 1;
        }
    }
    out
}

/// Every distinct window upstream, in `EDGE_TEST_LOG_FILE` for a
/// post-mortem: which spans an inexact run is missing.
fn note_windows_in_log(got: &[Message]) {
    let mut seen = std::collections::BTreeSet::new();
    for m in got.iter().filter(|m| m.topic.ends_with("/aggregated")) {
        let j = m.json();
        let count: u64 = j["metrics"].as_object().map_or(0, |ms| {
            ms.values().filter_map(|s| s["count"].as_u64()).sum()
        });
        seen.insert(format!(
            "upstream: {} {} count {count} id {} rerun {} amendment {}",
            j["device"], j["window_start"], j["id"], j["rerun"], j["amendment"]
        ));
    }
    for line in seen {
        mark_in_log(&line);
    }
}

/// Readings and their sum over every window `history export` reads for a
/// device's temperature.
fn history_totals(config: &Path, device: &str) -> (u64, f64) {
    let bin = std::env::var("EDGE_GATEWAY_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_edge-gateway").to_string());
    let out = std::process::Command::new(bin)
        .args(["history", "export", "-c"])
        .arg(config)
        .args(["--device", device, "--metric", "temperature"])
        .args(["--from", "0", "--to", "now"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "history export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    let mut totals = (0u64, 0.0);
    for line in csv.lines().skip(1) {
        // device,metric,start,end,count,avg,min,max,std
        let f: Vec<&str> = line.split(',').collect();
        let count: u64 = f[4].parse().unwrap();
        let avg: f64 = f[5].parse().unwrap();
        totals.0 += count;
        totals.1 += avg * count as f64;
    }
    totals
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_then_five_kills_loses_nothing() {
    let out = run(&Plan::reported()).await;
    assert_eq!(
        (out.lost, out.doubled, out.conflicts),
        (0, 0, 0),
        "{}",
        out.detail
    );
    assert_eq!(
        (out.history_lost, out.history_doubled),
        (0, 0),
        "{}",
        out.detail
    );
}

/// `EDGE_SOAK_RUNS` runs (default 50) with random kill points; prints one
/// line per run and the totals. `scripts/soak.sh` runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a soak of many minutes: scripts/soak.sh"]
async fn soak() {
    let runs: u64 = std::env::var("EDGE_SOAK_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let base: u64 = std::env::var("EDGE_SOAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs())
        });
    let (mut lost, mut doubled, mut conflicts, mut bad_runs) = (0, 0, 0, 0);
    let (mut history_lost, mut history_doubled) = (0, 0);
    for i in 0..runs {
        let seed = base.wrapping_add(i);
        let plan = Plan::random(seed);
        let out = run(&plan).await;
        println!(
            "run {:>3} seed {seed}: lost {} doubled {} conflicting ids {} history lost {} doubled {} | {:?} drain-kill {} disk full at {:?} clock back {:?} | {}",
            i + 1,
            out.lost,
            out.doubled,
            out.conflicts,
            out.history_lost,
            out.history_doubled,
            plan.kills,
            plan.kill_during_drain,
            plan.disk_full_at,
            plan.clock_back,
            out.detail
        );
        lost += out.lost;
        doubled += out.doubled;
        conflicts += out.conflicts;
        history_lost += out.history_lost;
        history_doubled += out.history_doubled;
        if out.lost + out.doubled + out.history_lost + out.history_doubled > 0 || out.conflicts > 0
        {
            bad_runs += 1;
        }
    }
    println!(
        "soak: {runs} runs, {bad_runs} inexact; readings lost {lost}, counted twice {doubled}, conflicting ids {conflicts}; in history lost {history_lost}, counted twice {history_doubled}"
    );
    assert_eq!(
        (lost, doubled, conflicts, history_lost, history_doubled),
        (0, 0, 0, 0, 0)
    );
}

/// SenML from one message for `n` devices: a window close then forwards
/// `n` aggregates at once, so the upstream can be stopped in mid-stream.
fn senml_for_devices(prefix: &str, n: usize, round: usize) -> String {
    let records: Vec<String> = (0..n)
        .map(|d| {
            format!(
                r#"{{"bn":"{prefix}{d:03}:","n":"temperature","v":{}}}"#,
                value(d % 3, round * n + d)
            )
        })
        .collect();
    format!("[{}]", records.join(","))
}

/// The upstream broker stops while a window close is being forwarded, comes
/// back, and the gateway is killed just after it reconnected: whatever it
/// had in flight when the broker went away must still be delivered.
async fn outage_mid_stream_then_kill(delay_after_reconnect: Duration) -> Outcome {
    const N: usize = 300;
    let local = Mosquitto::start_persistent();
    let mut upstream = Mosquitto::start_persistent();
    let consumer = format!("consumer-{}", upstream.port());
    let mut sub =
        Subscriber::start_persistent(upstream.port(), "building/hq/+/aggregated", &consumer).await;
    let cfg = format!(
        r#"
[gateway]
id = "gw-midstream"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{up}"
qos = 1
topic_prefix = "building/{{site}}"
max_backoff = "500ms"

[aggregation]
window = "1s"
grace = "0s"

[[adapter]]
type = "mqtt"
name = "local-sensors"
url = "mqtt://127.0.0.1:{local}"
topics = [{{ pattern = "senml/#", format = "senml" }}]
max_backoff = "500ms"
"#,
        up = upstream.port(),
        local = local.port()
    );
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Subscribed").await;
    let mut expected = 0u64;
    for round in 0..2 {
        let pack = senml_for_devices("mid-", N, round);
        test_support::publish(local.port(), "senml/pack", &pack, 1, false).await;
        expected += N as u64;
    }
    // The first aggregate of the close: the rest are in flight right now.
    let first = sub
        .wait_for(WAIT, |m| m.topic.ends_with("/aggregated"))
        .await
        .expect("the window close");
    upstream.stop();
    upstream.start_again();
    gw.wait_for_log_count("Connected upstream", 2).await;
    tokio::time::sleep(delay_after_reconnect).await;
    gw.signal("KILL");
    gw.wait_exit().await;
    let mut gw = GatewayProcess::start_in(gw.dir, &cfg);
    gw.wait_for_log("Subscribed").await;
    let before: u64 = totals(std::slice::from_ref(&first))
        .values()
        .map(|t| t.0)
        .sum();
    let mut got = vec![first];
    got.extend(
        sub.collect_until(Duration::from_secs(30), |m| {
            totals(m).values().map(|t| t.0).sum::<u64>() + before >= expected
        })
        .await,
    );
    while let Some(m) = sub.next(Duration::from_millis(1500)).await {
        got.push(m);
    }
    let counted: u64 = totals(&got).values().map(|t| t.0).sum();
    sub.stop().await;
    gw.signal("TERM");
    gw.wait_exit().await;
    Outcome {
        lost: expected.saturating_sub(counted),
        doubled: counted.saturating_sub(expected),
        conflicts: conflicting_ids(&got).len(),
        detail: format!("{counted}/{expected}"),
        ..Outcome::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_in_mid_stream_then_a_kill_after_reconnecting_loses_nothing() {
    let out = outage_mid_stream_then_kill(Duration::ZERO).await;
    assert_eq!(
        (out.lost, out.doubled, out.conflicts),
        (0, 0, 0),
        "{}",
        out.detail
    );
}
