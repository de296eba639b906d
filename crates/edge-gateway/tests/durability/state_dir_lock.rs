//! A second gateway started on a `state_dir` another one holds (a quick
//! restart under systemd, a copy started by hand) leaves at once with
//! EX_TEMPFAIL (75), so systemd retries it, and says which directory, which
//! lock and which process; the first one is not disturbed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use common::{config, http_until as until, GatewayProcess};
use test_support::{free_port, publish, Mosquitto};

fn with_metrics(cfg: &str, state_dir: &str, port: u16) -> String {
    let cfg = cfg.replace("@STATE_DIR@", state_dir);
    format!("{cfg}\n[metrics]\nbind = \"127.0.0.1:{port}\"\n")
}

#[tokio::test]
async fn a_second_gateway_on_a_held_state_dir_exits_75_naming_the_dir_and_the_first_pid() {
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let shared = tempfile::tempdir().unwrap();
    let state_dir = shared.path().join("state").display().to_string();
    let base = config("gw-lock", local.port(), upstream.port(), "1s", "1s");

    let first_port = free_port();
    let mut first = GatewayProcess::start(&with_metrics(&base, &state_dir, first_port));
    first.wait_for_log("Metrics endpoint listening").await;
    until(first_port, "/health", |c, _| c == 200).await;
    first.wait_for_log("Subscribed").await;
    let first_pid = first.child.id().unwrap();

    let mut second = GatewayProcess::start(&with_metrics(&base, &state_dir, free_port()));
    // "At once" is a start and an exit; the bound only separates that from
    // the zombie of old, which stayed alive for over a minute.
    let status = tokio::time::timeout(Duration::from_secs(20), second.child.wait())
        .await
        .expect("the second gateway stayed alive on a held state_dir")
        .unwrap();
    second.drain_log().await;
    let log = second.seen.join("\n");
    assert_eq!(status.code(), Some(75), "log:\n{log}");
    let line = second
        .seen
        .iter()
        .find(|l| l.contains("in use by another gateway"))
        .unwrap_or_else(|| panic!("no line naming the holder:\n{log}"));
    assert!(line.contains(&state_dir), "{line}");
    assert!(line.contains("gateway.lock"), "{line}");
    assert!(line.contains(&format!("pid {first_pid}")), "{line}");
    assert!(
        !log.contains("Starting adapter"),
        "the second gateway started components:\n{log}"
    );

    // The first one still takes readings and forwards them.
    let mut sub = test_support::Subscriber::start(upstream.port(), "building/hq/#").await;
    publish(
        local.port(),
        "sensors/data/lock-1/temperature",
        "21.5",
        1,
        false,
    )
    .await;
    let agg = sub
        .wait_for(Duration::from_secs(20), |m| {
            m.topic.ends_with("lock-1/aggregated")
        })
        .await
        .expect("the first gateway forwarded the reading");
    assert_eq!(agg.json()["metrics"]["temperature"]["count"], 1);
    first.signal("TERM");
    assert_eq!(first.wait_exit().await, Some(0));
}
