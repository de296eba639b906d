//! Damaged state files between runs must not cost acknowledged readings:
//! a scribbled journal record costs itself only, and a damaged checkpoint
//! falls back to the generation before it with the journals since.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{totals, GatewayProcess, WAIT};
use test_support::{publish_lines, Mosquitto, Subscriber};

const WINDOW_S: u64 = 10;

fn config(id: &str, local: u16, upstream: u16, checkpoint_interval: &str) -> String {
    format!(
        r#"
[gateway]
id = "{id}"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{upstream}"
qos = 1
topic_prefix = "building/{{site}}"
max_backoff = "1s"

[aggregation]
window = "{WINDOW_S}s"
grace = "0s"
checkpoint_interval = "{checkpoint_interval}"

[[adapter]]
type = "mqtt"
name = "local-sensors"
url = "mqtt://127.0.0.1:{local}"
topics = ["sensors/data/{{device}}/{{metric}}"]
max_backoff = "1s"
"#
    )
}

/// Waits for the start of the next window, so readings published now stay
/// in one open window for the rest of the test's few seconds: the window
/// is wall-clock aligned, and this is that schedule, not a wait for an event.
async fn start_of_next_window() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let into = now.as_millis() as u64 % (WINDOW_S * 1000);
    tokio::time::sleep(Duration::from_millis(WINDOW_S * 1000 - into + 50)).await;
}

fn files(state: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(state)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    v
}

fn scribble(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    let end = (mid + 50).min(bytes.len());
    for b in &mut bytes[mid..end] {
        *b = b'x';
    }
    std::fs::write(path, bytes).unwrap();
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

async fn count_upstream(sub: &mut Subscriber, device: &str, n: u64) -> u64 {
    let got = sub
        .collect_until(Duration::from_secs(WINDOW_S * 3), |m| {
            totals(m).get(device).is_some_and(|t| t.0 >= n)
        })
        .await;
    totals(&got).get(device).map_or(0, |t| t.0)
}

#[tokio::test]
async fn a_damaged_checkpoint_falls_back_to_the_previous_generation() {
    let local = Mosquitto::start_persistent();
    let upstream = Mosquitto::start();
    let device = "ckpt-dev";
    let mut sub =
        Subscriber::start(upstream.port(), &format!("building/hq/{device}/aggregated")).await;
    let cfg = config("gw-ckpt", local.port(), upstream.port(), "300ms");
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Subscribed").await;
    let state = gw.dir.path().join("state");
    let ckpt = state.join("windows.ckpt");

    start_of_next_window().await;
    let topic = format!("sensors/data/{device}/temperature");
    // Two batches, each followed by a checkpoint landing: the journal of
    // the first is then retired, and only the checkpoints hold it.
    for n in [500, 10] {
        let before = modified(&ckpt);
        let lines: Vec<String> = (0..n).map(|i| format!("{}.5", i % 40)).collect();
        publish_lines(local.port(), &topic, &lines, 1).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        while modified(&ckpt) == before {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no checkpoint landed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    gw.signal("KILL");
    gw.wait_exit().await;
    assert!(
        state.join("windows.prev.ckpt").exists(),
        "a previous generation"
    );
    scribble(&ckpt);

    let mut gw = GatewayProcess::start_in(gw.dir, &cfg);
    gw.wait_for_log("Subscribed").await;
    assert_eq!(count_upstream(&mut sub, device, 510).await, 510);
    assert!(state.join("windows.ckpt.damaged").exists(), "kept aside");
    gw.signal("TERM");
    gw.wait_exit().await;
}

#[tokio::test]
async fn a_scribbled_journal_record_costs_only_itself() {
    let local = Mosquitto::start_persistent();
    let upstream = Mosquitto::start();
    let device = "journal-dev";
    let mut sub =
        Subscriber::start(upstream.port(), &format!("building/hq/{device}/aggregated")).await;
    // No checkpoint lands while the test runs: the readings are in the
    // journal only.
    let cfg = config("gw-journal", local.port(), upstream.port(), "1h");
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Subscribed").await;
    let state = gw.dir.path().join("state");

    start_of_next_window().await;
    let lines: Vec<String> = (0..746).map(|i| format!("{}.25", i % 30)).collect();
    publish_lines(
        local.port(),
        &format!("sensors/data/{device}/temperature"),
        &lines,
        1,
    )
    .await;
    // mosquitto_pub returned: every message was acknowledged by the broker;
    // wait until the gateway has journaled (and so acknowledged) them all.
    let journal = files(&state, ".journal").pop().unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = 0;
    loop {
        let len = std::fs::metadata(&journal).map_or(0, |m| m.len());
        if len > 0 && len == last {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "journal still growing"
        );
        last = len;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    gw.signal("KILL");
    gw.wait_exit().await;
    scribble(&journal);

    let mut gw = GatewayProcess::start_in(gw.dir, &cfg);
    gw.wait_for_log("Subscribed").await;
    let n = count_upstream(&mut sub, device, 746).await;
    // 50 bytes hit at most two records of one reading each.
    assert!(
        (744..=746).contains(&n),
        "{n} of 746 readings after the damage"
    );
    gw.signal("TERM");
    gw.wait_exit().await;
}
