//! A QoS 1 adapter restarted by reloads while its broker is slow to read
//! the receipts: the adapter must not leave before the broker has read
//! them, or the broker resends every message whose receipt it dropped,
//! past what the pipeline remembers of the source, and they count twice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::common;

use crate::reload_many_sources::{gateway_sections, readings_at_least};
use common::{http_get, GatewayProcess, WAIT};
use test_support::{free_port, metrics, publish_lines, Mosquitto, Options, SlowUplink, Subscriber};

const BURST: usize = 40_000;
const RELOADS: usize = 3;
/// Later than the one second the adapter used to wait for the broker's
/// close; on a loaded machine Mosquitto took 3.2 s to read eight adapters'
/// receipts and close.
const UPLINK_LATENCY: Duration = Duration::from_millis(1500);

fn cfg(local: u16, upstream: u16, metrics: u16, backoff: &str) -> String {
    gateway_sections("gw-slow", upstream, metrics)
        + &format!(
            r#"
[[adapter]]
type = "mqtt"
name = "burst"
client_id = "burst-client"
url = "mqtt://127.0.0.1:{local}"
topics = ["b/{{device}}/{{metric}}"]
max_backoff = "{backoff}"
"#
        )
}

/// A broker whose reading of receipts lags by 1.5 s (modelled by a late
/// uplink to a real Mosquitto that lets every message be in flight), and a
/// 40 000-message QoS 1 burst across three reloads that restart the
/// adapter: every reading is counted once, and the adapter never left
/// before the broker closed after its last receipts.
#[tokio::test]
async fn a_broker_slow_to_read_receipts_gets_them_all_before_a_restarted_adapter_leaves() {
    let local = Mosquitto::start_with(Options {
        max_inflight: Some(0),
        ..Options::default()
    });
    let slow = SlowUplink::start(local.port(), UPLINK_LATENCY).await;
    let upstream = Mosquitto::start();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/#").await;
    let metrics_port = free_port();
    let backoffs = ["1s", "2s"];
    let mut gw = GatewayProcess::start(&cfg(slow.port(), upstream.port(), metrics_port, "1s"));
    gw.wait_for_log("Subscribed").await;
    gw.wait_for_log("Connected upstream.").await;

    let lines: Vec<String> = (1..=BURST).map(|i| i.to_string()).collect();
    let port = local.port();
    let publisher =
        tokio::spawn(async move { publish_lines(port, "b/dev-0/temperature", &lines, 1).await });
    let total = BURST as f64;
    for i in 0..RELOADS {
        let share = total * (i + 1) as f64 / (RELOADS + 1) as f64;
        readings_at_least(metrics_port, share).await;
        let text = cfg(
            slow.port(),
            upstream.port(),
            metrics_port,
            backoffs[(i + 1) % 2],
        )
        .replace(
            "@STATE_DIR@",
            &gw.dir.path().join("state").display().to_string(),
        );
        std::fs::write(&gw.config_path, text).unwrap();
        gw.signal("HUP");
        gw.wait_for_log_count("Reloaded.", i + 1).await;
    }
    assert_eq!(
        gw.seen
            .iter()
            .filter(|l| l.contains("restarted=[\"burst\"]"))
            .count(),
        RELOADS,
        "each reload restarted the adapter"
    );
    publisher.await.unwrap();
    let taken = readings_at_least(metrics_port, total).await;
    let (_, body) = http_get(metrics_port, "/metrics").await;
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    assert_eq!(taken, total, "readings counted into the windows");
    assert_eq!(
        metrics::sum_with(
            &body,
            "edge_gateway_adapter_errors_total",
            "error_type=\"close_unconfirmed\""
        ),
        None,
        "the adapter left before the broker read its last receipts"
    );
    assert!(
        !gw.seen
            .iter()
            .any(|l| l.contains("did not close the connection")),
        "no close went unconfirmed"
    );
    let got = sub
        .collect_until(WAIT, |msgs| {
            msgs.iter()
                .any(|m| m.topic == "building/hq/dev-0/aggregated")
        })
        .await;
    let agg = got
        .iter()
        .find(|m| m.topic == "building/hq/dev-0/aggregated")
        .map(|m| m.json())
        .unwrap();
    assert_eq!(agg["metrics"]["temperature"]["count"], BURST, "{agg}");
}
