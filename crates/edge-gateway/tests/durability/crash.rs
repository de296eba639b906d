//! Exactly-once counting across crashes: QoS 1 readings keep flowing while
//! the gateway is killed with SIGKILL, or the local broker restarts, and
//! every published reading is in exactly one distinct aggregate upstream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::{config, conflicting_ids, rel_close, totals, GatewayProcess, WAIT};
use test_support::{publish_lines, Message, Mosquitto, Subscriber};
use tokio::task::JoinHandle;

const BATCH: usize = 1500;

/// Distinct, irregular values, as the text published and the number read.
fn batch(round: usize) -> (Vec<String>, Vec<f64>) {
    let lines: Vec<String> = (0..BATCH)
        .map(|i| {
            let x = (round * BATCH + i) as f64;
            format!("{:.4}", (x * 0.731).sin() * 12.5 + 20.0)
        })
        .collect();
    let values = lines.iter().map(|l| l.parse().unwrap()).collect();
    (lines, values)
}

fn publish_batch(port: u16, device: &str, lines: Vec<String>) -> JoinHandle<()> {
    let topic = format!("sensors/data/{device}/temperature");
    tokio::spawn(async move { publish_lines(port, &topic, &lines, 1).await })
}

/// Bytes in the ingress journals of a state directory.
/// What the gateway has on disk for its open windows: journal bytes and
/// the checkpoint's modification time. Either changes while readings flow;
/// a batch can be journaled and checkpointed away between two looks, which
/// leaves the journal as empty as before.
fn progress(state: &Path) -> (u64, Option<std::time::SystemTime>) {
    let journaled = std::fs::read_dir(state)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".journal"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    let checkpointed = std::fs::metadata(state.join("windows.ckpt"))
        .and_then(|m| m.modified())
        .ok();
    (journaled, checkpointed)
}

/// Waits until the journal or the checkpoint changes: readings are flowing
/// through the gateway right now.
async fn wait_progress(state: &Path, from: (u64, Option<std::time::SystemTime>)) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while progress(state) == from {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gateway journaled and checkpointed nothing new"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn assert_exactly_once(got: &[Message], device: &str, published: &[f64], log: &str) {
    let t = totals(got);
    let (count, sum, squares) = t.get(device).copied().unwrap_or_default();
    assert_eq!(
        count,
        published.len() as u64,
        "readings counted; the last gateway's log:\n{log}"
    );
    assert!(rel_close(sum, published.iter().sum()), "sum {sum}");
    assert!(
        rel_close(squares, published.iter().map(|v| v * v).sum()),
        "sum of squares {squares}"
    );
    assert_eq!(
        conflicting_ids(got),
        Vec::<String>::new(),
        "an id resent with other content"
    );
}

async fn collect_all(sub: &mut Subscriber, device: &str, n: usize) -> Vec<Message> {
    let got = sub
        .collect_until(Duration::from_secs(60), |m| {
            totals(m).get(device).is_some_and(|t| t.0 >= n as u64)
        })
        .await;
    // Whatever else was in flight: a late duplicate must not exceed the count.
    let mut more = got;
    while let Some(m) = sub.next(Duration::from_millis(1500)).await {
        more.push(m);
    }
    more
}

#[tokio::test]
async fn kill_9_while_readings_flow_loses_none_and_counts_none_twice() {
    let local = Mosquitto::start_persistent();
    let upstream = Mosquitto::start();
    let device = "crash-dev";
    let mut sub =
        Subscriber::start(upstream.port(), &format!("building/hq/{device}/aggregated")).await;
    let cfg = config("gw-crash", local.port(), upstream.port(), "1s", "0s");
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Subscribed").await;
    let state = gw.dir.path().join("state");
    let mut published = Vec::new();
    let mut publishers = Vec::new();
    for round in 0..4 {
        let (lines, values) = batch(round);
        published.extend(values);
        let before = progress(&state);
        publishers.push(publish_batch(local.port(), device, lines));
        wait_progress(&state, before).await;
        gw = gw.kill_and_restart(&cfg, &[]).await;
    }
    for p in publishers {
        p.await.unwrap();
    }
    let got = collect_all(&mut sub, device, published.len()).await;
    gw.take_log();
    assert_exactly_once(&got, device, &published, &gw.seen.join("\n"));
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

#[tokio::test]
async fn a_local_broker_restart_while_readings_flow_loses_none_and_counts_none_twice() {
    let mut local = Mosquitto::start_persistent();
    let upstream = Mosquitto::start();
    let device = "brestart-dev";
    let mut sub =
        Subscriber::start(upstream.port(), &format!("building/hq/{device}/aggregated")).await;
    let cfg = config("gw-brestart", local.port(), upstream.port(), "1s", "0s");
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Subscribed").await;
    let state = gw.dir.path().join("state");
    let mut published = Vec::new();
    for round in 0..3 {
        let (lines, values) = batch(round);
        published.extend(values);
        let before = progress(&state);
        // The publisher cannot ride through a broker restart: all of the
        // batch is in the broker before it restarts under the gateway.
        publish_batch(local.port(), device, lines).await.unwrap();
        wait_progress(&state, before).await;
        local.restart();
        gw.wait_for_log_count("Subscribed", round + 2).await;
    }
    let got = collect_all(&mut sub, device, published.len()).await;
    gw.take_log();
    assert_exactly_once(&got, device, &published, &gw.seen.join("\n"));
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// Journal files in the state directory.
fn journals(state: &Path) -> usize {
    std::fs::read_dir(state)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".journal"))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn kill_9_while_a_checkpoint_is_being_synced_loses_none_and_counts_none_twice() {
    // The background checkpoint is held for 5 s before its fsync and
    // rename, so the kill lands while the journal has moved on to the epoch
    // the checkpoint names and the older one is still there: the restart
    // must replay both on top of the previous checkpoint.
    let hold = [("EDGE_GATEWAY_FAULT_HOLD_CHECKPOINT_MS", "5000")];
    let local = Mosquitto::start_persistent();
    let upstream = Mosquitto::start();
    let device = "inflight-dev";
    let mut sub =
        Subscriber::start(upstream.port(), &format!("building/hq/{device}/aggregated")).await;
    let cfg = config("gw-inflight", local.port(), upstream.port(), "1s", "0s");
    let mut gw = GatewayProcess::start_in_with(tempfile::tempdir().unwrap(), &cfg, &hold);
    gw.wait_for_log("Subscribed").await;
    let state = gw.dir.path().join("state");
    let mut published = Vec::new();
    for round in 0..3 {
        let (lines, values) = batch(2 * round);
        published.extend(values);
        publish_batch(local.port(), device, lines).await.unwrap();
        // Two journals on disk: a checkpoint has started and not landed.
        let deadline = tokio::time::Instant::now() + WAIT;
        while journals(&state) < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no checkpoint in flight"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // More readings, acknowledged into the newer journal only.
        let (lines, values) = batch(2 * round + 1);
        published.extend(values);
        let before = progress(&state);
        publish_batch(local.port(), device, lines).await.unwrap();
        wait_progress(&state, before).await;
        assert!(journals(&state) >= 2, "the checkpoint landed too early");
        gw = gw.kill_and_restart(&cfg, &hold).await;
    }
    let got = collect_all(&mut sub, device, published.len()).await;
    gw.take_log();
    assert_exactly_once(&got, device, &published, &gw.seen.join("\n"));
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// Publishes `n` identical readings (`20.0`): sensors repeat themselves,
/// and equal payloads must never be taken for resent copies.
fn publish_constant(port: u16, device: &str, n: usize) -> JoinHandle<()> {
    publish_batch(port, device, vec!["20.0".to_string(); n])
}

#[tokio::test]
async fn after_a_local_broker_crash_equal_payloads_in_reused_packet_ids_are_not_copies() {
    // Mosquitto killed -9 restarts from its last save: its packet ids for
    // the gateway's session start over from there, and equal payloads come
    // again in slots the gateway remembers. Then the gateway is killed while
    // they flow, so the broker resends them marked DUP.
    let mut local = Mosquitto::start_persistent();
    let upstream = Mosquitto::start();
    let device = "constant-dev";
    let mut sub =
        Subscriber::start(upstream.port(), &format!("building/hq/{device}/aggregated")).await;
    let cfg = config("gw-constant", local.port(), upstream.port(), "1s", "0s");
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Subscribed").await;
    let state = gw.dir.path().join("state");
    let mut published = 0usize;
    publish_constant(local.port(), device, BATCH).await.unwrap();
    published += BATCH;
    // Until the gateway took the whole batch: the upstream counts it.
    let got = sub
        .collect_until(WAIT, |m| {
            totals(m).get(device).is_some_and(|t| t.0 >= BATCH as u64)
        })
        .await;
    let mut all: Vec<Message> = got;
    local.kill();
    local.start_again();
    gw.wait_for_log_count("Subscribed", 2).await;
    let mut publishers = Vec::new();
    for _ in 0..4 {
        let before = progress(&state);
        publishers.push(publish_constant(local.port(), device, BATCH));
        published += BATCH;
        wait_progress(&state, before).await;
        gw = gw.kill_and_restart(&cfg, &[]).await;
    }
    for p in publishers {
        p.await.unwrap();
    }
    all.extend(collect_all(&mut sub, device, published - BATCH).await);
    gw.take_log();
    assert_exactly_once(&all, device, &vec![20.0; published], &gw.seen.join("\n"));
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}
