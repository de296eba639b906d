//! SIGTERM with the cloud away: the gateway flushes its open windows to the
//! outbox on disk and exits within its bound instead of waiting for a
//! broker that is not there; the next start delivers them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use common::{config, http_until, GatewayProcess, WAIT};
use test_support::{free_port, publish, Mosquitto, Subscriber};

/// The forwarder gives up delivering after 5 s; the rest is process exit.
/// Generous against a loaded CI machine, far below systemd's 30 s stop timeout.
const STOP_BOUND: Duration = Duration::from_secs(15);

#[tokio::test]
async fn sigterm_with_upstream_down_flushes_to_disk_and_exits_in_bounded_time() {
    let local = Mosquitto::start();
    let mut upstream = Mosquitto::start_persistent();
    upstream.stop();
    let metrics = free_port();
    // No checkpoints: open windows are forwarded (partial) at SIGTERM.
    let cfg = config("gw-stop", local.port(), upstream.port(), "1h", "1s").replace(
        "grace = \"1s\"",
        "grace = \"1s\"\ncheckpoint_interval = \"0s\"",
    ) + &format!("\n[metrics]\nbind = \"127.0.0.1:{metrics}\"\n");
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Subscribed").await;
    publish(local.port(), "sensors/data/s1/temperature", "4", 1, false).await;
    publish(local.port(), "sensors/data/s1/temperature", "6", 1, false).await;
    http_until(metrics, "/metrics", |_, b| {
        b.contains("edge_gateway_adapter_readings_total{adapter=\"local-sensors\"} 2\n")
    })
    .await;

    gw.signal("TERM");
    let code = tokio::time::timeout(STOP_BOUND, gw.child.wait())
        .await
        .expect("exit within the stop bound")
        .unwrap()
        .code();
    assert_eq!(code, Some(0));
    gw.drain_log().await;
    gw.wait_for_log("undelivered messages stay in the outbox")
        .await;

    // The window flushed at SIGTERM is delivered by the next start.
    upstream.restart();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/s1/aggregated").await;
    let cfg = cfg.replace(&format!("127.0.0.1:{metrics}"), "127.0.0.1:0");
    let mut gw = GatewayProcess::start_in(gw.dir, &cfg);
    let agg = sub.next(WAIT).await.expect("the flushed window").json();
    assert_eq!(agg["partial"], true, "{agg}");
    assert_eq!(agg["metrics"]["temperature"]["count"], 2, "{agg}");
    assert_eq!(agg["metrics"]["temperature"]["avg"], 5.0, "{agg}");
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}
