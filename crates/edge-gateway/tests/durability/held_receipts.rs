//! QoS 1 messages whose receipts the pipeline holds back (the wall clock
//! not yet set at boot holds every reading, `EDGE_GATEWAY_FAULT_CLOCK_STEP_FILE`):
//! the MQTT adapter reads at most 2 048 of them ahead of their receipts
//! and leaves the rest with the broker, and its link stays up meanwhile
//! (the keep-alive's answer waiting unread behind those messages is no
//! dead broker). Once the clock is set, every reading is counted once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use common::{config, http_get, http_until_within, now_ms, GatewayProcess, WAIT};
use test_support::{free_port, metrics, publish_lines, Mosquitto};

const CLOCK_ENV: &str = "EDGE_GATEWAY_FAULT_CLOCK_STEP_FILE";
const BURST: usize = 5_000;

async fn metric(port: u16, name: &str) -> f64 {
    let (_, body) = http_get(port, "/metrics").await;
    metrics::sum(&body, name)
}

#[tokio::test]
async fn a_clock_not_yet_set_holds_a_qos1_burst_without_reading_it_all_or_dropping_the_broker() {
    // No in-flight limit: the broker sends the whole burst at once, more
    // than the adapter may read ahead.
    let local = Mosquitto::start_with(test_support::Options {
        max_inflight: Some(0),
        ..Default::default()
    });
    let upstream = Mosquitto::start();
    let metrics_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let clock = dir.path().join("clock-step");
    // 2001: before the release, so the pipeline holds what comes.
    std::fs::write(&clock, (1_000_000_000_000 - now_ms()).to_string()).unwrap();
    let text = config("gw-held", local.port(), upstream.port(), "1h", "1s").replacen(
        "max_backoff = \"1s\"\n\n[[device]]",
        "max_backoff = \"1s\"\nkeep_alive = \"1s\"\n\n[[device]]",
        1,
    ) + &format!("\n[metrics]\nbind = \"127.0.0.1:{metrics_port}\"\n");
    assert!(text.contains("keep_alive = \"1s\""));
    let clock_env = clock.display().to_string();
    let mut gw = GatewayProcess::start_in_with(dir, &text, &[(CLOCK_ENV, clock_env.as_str())]);
    gw.wait_for_log("Subscribed").await;
    let lines: Vec<String> = (1..=BURST).map(|i| i.to_string()).collect();
    publish_lines(local.port(), "sensors/data/held/temperature", &lines, 1).await;
    let held = "edge_gateway_clock_held_readings_total";
    http_until_within(metrics_port, "/metrics", WAIT, |_, body| {
        metrics::sum(body, held) >= 2_048.0
    })
    .await;
    // Three keep-alives: with the ping judged unanswered the link was
    // dropped at the second, and each new connection read 2 048 more.
    let reconnects = "edge_gateway_adapter_reconnects_total";
    let dropped = tokio::time::timeout(Duration::from_secs(3), async {
        http_until_within(
            metrics_port,
            "/metrics",
            Duration::from_secs(4),
            |_, body| metrics::sum(body, reconnects) > 0.0,
        )
        .await
    })
    .await;
    assert!(
        dropped.is_err(),
        "the adapter lost its broker while its receipts were held"
    );
    assert_eq!(
        metric(metrics_port, held).await,
        2_048.0,
        "read ahead of its receipts: at most 2 048"
    );
    // NTP sets the clock: everything comes, each once.
    std::fs::write(&clock, "0").unwrap();
    let readings = "edge_gateway_aggregator_readings_total";
    let (_, body) = http_until_within(
        metrics_port,
        "/metrics",
        Duration::from_secs(120),
        |_, body| metrics::sum(body, readings) >= BURST as f64,
    )
    .await;
    assert_eq!(
        metrics::sum(&body, readings),
        BURST as f64,
        "each reading counted once"
    );
    assert_eq!(metrics::sum(&body, reconnects), 0.0);
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}
