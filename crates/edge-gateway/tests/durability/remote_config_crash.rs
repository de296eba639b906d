//! kill -9 at each journaled step of applying a pushed configuration
//! (issue 71): the fault hook `EDGE_GATEWAY_FAULT_REMOTE_CONFIG_HOLD` stops
//! the apply right after that step and the test kills the process there.
//! Started again, the gateway runs the old configuration or the new one,
//! whole (its adapters are exactly one set or the other), reports the one
//! it runs, and every reading published around the kill is in exactly one
//! window upstream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::common;
use common::remote::{
    adapters, base_config, healthy, healthy_on, lab_layer, public_key, push, signed, States,
    FLEET_KEY, PREFIX,
};
use common::{totals, GatewayProcess};
use test_support::{free_port, publish_lines, Message, Mosquitto, Subscriber};

const HOLD: &str = "EDGE_GATEWAY_FAULT_REMOTE_CONFIG_HOLD";
const VERDICT: Duration = Duration::from_secs(15);

/// What the start after the kill must run.
#[derive(Debug, Clone, Copy, PartialEq)]
enum After {
    /// The push, applied.
    New,
    /// The local files, with the push reported as this.
    Old(&'static str, &'static str),
}

fn lines(round: usize, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{:.3}", 18.0 + ((round * n + i) as f64 * 0.61).cos()))
        .collect()
}

async fn kill_at(step: &str, healthy_push: bool, after: After) {
    let cloud = Mosquitto::start();
    let building = Mosquitto::start();
    let metrics = free_port();
    let config = base_config(
        cloud.port(),
        building.port(),
        metrics,
        &[public_key(FLEET_KEY)],
        "",
    );
    let mut states = States::start(cloud.port()).await;
    let mut windows = Subscriber::start(cloud.port(), &format!("{PREFIX}/flow-1/aggregated")).await;
    let dir = tempfile::tempdir().unwrap();
    let mut gw = GatewayProcess::start_in_with(dir, &config, &[(HOLD, step)]);
    let old = healthy(metrics).await;
    assert_eq!(adapters(&old), ["building"]);
    let topic = "sensors/flow-1/temperature";
    let mut published = 0;
    let batch = lines(0, 120);
    publish_lines(building.port(), topic, &batch, 1).await;
    published += batch.len();

    // A port another process holds makes the push unhealthy.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = if healthy_push {
        free_port()
    } else {
        taken.local_addr().unwrap().port()
    };
    push(cloud.port(), &signed(FLEET_KEY, 2, "v2", &lab_layer(port))).await;
    gw.wait_for_log(&format!("step=\"{step}\"")).await;
    // Readings go on arriving while the gateway is stuck there.
    let batch = lines(1, 120);
    publish_lines(building.port(), topic, &batch, 1).await;
    published += batch.len();
    gw.signal("KILL");
    gw.wait_exit().await;

    let mut gw = GatewayProcess::start_in(gw.dir, &config);
    let h = match after {
        After::New => {
            let s = states.wait(2, "applied", VERDICT).await;
            assert_eq!(s["applied"], "v2");
            healthy_on(metrics, Some("v2"), "applied").await
        }
        After::Old(status, reason) => {
            let s = states.wait(2, status, VERDICT).await;
            assert_eq!(s["reason"], reason, "{s}");
            assert_eq!(s["applied"], serde_json::Value::Null, "{s}");
            healthy_on(metrics, None, status).await
        }
    };
    let expected: &[&str] = match after {
        After::New => &["building", "lab-lines"],
        After::Old(..) => &["building"],
    };
    assert_eq!(adapters(&h), expected, "killed at {step}");
    let batch = lines(2, 120);
    publish_lines(building.port(), topic, &batch, 1).await;
    published += batch.len();

    let got = windows
        .collect_until(Duration::from_secs(30), |m| {
            totals(m)
                .get("flow-1")
                .is_some_and(|t| t.0 >= published as u64)
        })
        .await;
    let mut all: Vec<Message> = got;
    while let Some(m) = windows.next(Duration::from_millis(1500)).await {
        all.push(m);
    }
    assert_eq!(
        totals(&all).get("flow-1").map_or(0, |t| t.0),
        published as u64,
        "readings counted upstream, killed at {step}"
    );
    assert_eq!(common::conflicting_ids(&all), Vec::<String>::new());
    // Settled: the retained push is applied at most once more (when the
    // kill came before the journal named it), never in a loop.
    gw.take_log();
    let restarts = gw
        .seen
        .iter()
        .filter(|l| l.contains("Restarting on the configuration"))
        .count();
    let expected = usize::from(step == "written" || step == "marked");
    assert_eq!(
        restarts,
        expected,
        "killed at {step}: {}",
        gw.seen.join("\n")
    );
    drop(taken);
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

#[tokio::test]
async fn kill_9_after_the_layer_is_written_runs_the_old_then_applies_the_push_again() {
    // The journal never named the layer: the retained push is taken anew.
    kill_at("written", true, After::New).await;
}

/// A power cut between `mark.json` and the journal: the mark file holds
/// the push's serial, the journal does not name it. It was refused as
/// `stale` at the mark it had set itself, and had to be pushed anew.
#[tokio::test]
async fn kill_9_between_the_mark_and_the_journal_applies_the_push_again() {
    kill_at("marked", true, After::New).await;
}

#[tokio::test]
async fn kill_9_once_staged_starts_on_the_new_configuration() {
    kill_at("staged", true, After::New).await;
}

#[tokio::test]
async fn kill_9_after_the_clean_stop_starts_on_the_new_configuration() {
    kill_at("stopped", true, After::New).await;
}

#[tokio::test]
async fn kill_9_while_checking_rolls_back_to_the_old_configuration() {
    kill_at("checking", true, After::Old("rolled_back", "interrupted")).await;
}

#[tokio::test]
async fn kill_9_once_healthy_but_not_committed_rolls_back() {
    kill_at("healthy", true, After::Old("rolled_back", "interrupted")).await;
}

#[tokio::test]
async fn kill_9_after_the_commit_keeps_the_new_configuration() {
    kill_at("committed", true, After::New).await;
}

#[tokio::test]
async fn kill_9_after_a_rollback_is_journaled_runs_the_old_configuration() {
    kill_at("rolled_back", false, After::Old("rolled_back", "health")).await;
}
