//! One message larger than the MQTT adapter reads must not jam ingest:
//! without a PUBACK the broker resends it on every reconnect, and a client
//! that fails its connection on a packet over its size limit (rumqttc did)
//! never gets past it. It must be skipped without being buffered,
//! acknowledged, counted and dropped, and the good readings behind it must
//! arrive, on the same connection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::process::Stdio;

use common::{config, http_until as until, totals, GatewayProcess, WAIT};
use test_support::{free_port, publish, Mosquitto, Subscriber};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// `mosquitto_pub -s`: the payload from stdin, as the report did it.
async fn publish_bytes(port: u16, topic: &str, payload: Vec<u8>, qos: u8) {
    let mut child = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-q", &qos.to_string(), "-t", topic, "-s"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&payload).await.unwrap();
    drop(stdin);
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}

fn metric(text: &str, name: &str) -> f64 {
    test_support::metrics::sample(text, name).unwrap_or(0.0)
}

async fn oversized_then_good_readings(qos: u8) {
    let local = Mosquitto::start_persistent();
    let upstream = Mosquitto::start();
    let port = free_port();
    let device = format!("poison-{qos}");
    let cfg = format!(
        "{}\n[metrics]\nbind = \"127.0.0.1:{port}\"\n",
        config(
            &format!("gw-poison-{qos}"),
            local.port(),
            upstream.port(),
            "1s",
            "0s"
        )
    );
    let mut sub =
        Subscriber::start(upstream.port(), &format!("building/hq/{device}/aggregated")).await;
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Subscribed").await;

    // Over max_payload_bytes (65 536) + the 1 KiB allowed for the header.
    let topic = format!("sensors/data/{device}/temperature");
    publish_bytes(local.port(), &topic, vec![b'1'; 70_000], qos).await;
    // A second one behind it: it is skipped unread as well, on the same
    // connection (at QoS 1 the broker keeps it for the gateway until it is
    // acknowledged, so an unacknowledged first one would block it).
    publish_bytes(local.port(), &topic, vec![b'2'; 70_000], qos).await;
    let oversized = 2.0;
    for v in ["21.0", "22.0", "23.0"] {
        publish(local.port(), &topic, v, qos, false).await;
    }
    let got = sub
        .collect_until(WAIT, |m| totals(m).get(&device).is_some_and(|t| t.0 >= 3))
        .await;
    let (count, sum, _) = totals(&got).get(&device).copied().unwrap_or_default();
    assert_eq!((count, sum), (3, 66.0), "the good readings behind it");

    let errors =
        "edge_gateway_adapter_errors_total{adapter=\"local-sensors\",error_type=\"payload_too_large\"}";
    let (_, text) = until(port, "/metrics", |_, b| metric(b, errors) >= oversized).await;
    assert_eq!(
        metric(&text, errors),
        oversized,
        "each counted once:\n{text}"
    );
    let reconnects = metric(
        &text,
        "edge_gateway_adapter_reconnects_total{adapter=\"local-sensors\"}",
    );
    assert_eq!(reconnects, 0.0, "skipped without breaking the connection");
    until(port, "/health", |c, _| c == 200).await;
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

#[tokio::test]
async fn an_oversized_qos1_message_is_acknowledged_counted_and_dropped() {
    oversized_then_good_readings(1).await;
}

#[tokio::test]
async fn an_oversized_qos0_message_is_counted_and_ingest_goes_on() {
    oversized_then_good_readings(0).await;
}
