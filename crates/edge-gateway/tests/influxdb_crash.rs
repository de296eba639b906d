//! A reading acknowledged to its sender must reach InfluxDB even when the
//! gateway is killed after journaling it and before the InfluxDB sink
//! stored it: the restarted gateway gives the sinks the journal again
//! (InfluxDB keeps one point per series and time, so nothing doubles).
//! Against a real InfluxDB 1.x and real Mosquitto brokers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{http_until, GatewayProcess};
use test_support::{free_port, publish_lines, Influxd, Mosquitto};

fn config(local: u16, upstream: u16, influx: &str, metrics: u16) -> String {
    format!(
        r#"
[gateway]
id = "gw-influx-crash"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{upstream}"
max_backoff = "1s"

[aggregation]
window = "1h"

[metrics]
bind = "127.0.0.1:{metrics}"

[[adapter]]
type = "mqtt"
name = "seed-000"
url = "mqtt://127.0.0.1:{local}"
qos = 1
topics = [
  {{ pattern = "bme680/{{device}}/csv", format = "csv", columns = ["ts", "temperature", "humidity", "pressure", "gas"] }},
]
max_backoff = "500ms"

[[sink]]
type = "influxdb"
name = "influx"
url = "{influx}"
database = "bme680_db"
measurement = "bme680_measure"
flush_interval = "100ms"
max_backoff = "500ms"
"#
    )
}

fn temperature_points(db: &Influxd) -> i64 {
    db.try_rows(
        "bme680_db",
        r#"SELECT count("temperature") FROM "bme680_measure""#,
    )
    .unwrap_or_default()
    .first()
    .and_then(|r| r.get(1))
    .and_then(|v| v.as_i64())
    .unwrap_or(0)
}

#[tokio::test]
async fn readings_journaled_but_not_yet_stored_by_the_sink_reach_influxdb_after_a_kill() {
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let db = Influxd::start();
    let metrics = free_port();
    let cfg = config(local.port(), upstream.port(), &db.url(), metrics);
    // The sink holds every batch for ten minutes before storing it: the
    // kill lands after the journal and before the sink.
    let mut gw = GatewayProcess::start_in_with(
        tempfile::tempdir().unwrap(),
        &cfg,
        &[("EDGE_GATEWAY_FAULT_HOLD_SINK_MS", "600000")],
    );
    gw.wait_for_log("Subscribed").await;

    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let lines: Vec<String> = (0..20)
        .map(|i| format!("{},{}.5,40,1013,120000", start + i * 10, 20 + i))
        .collect();
    publish_lines(local.port(), "bme680/bme-1/csv", &lines, 1).await;
    // Every reading taken (and with it journaled) by the gateway.
    http_until(metrics, "/metrics", |_, body| {
        body.lines()
            .any(|l| l == "edge_gateway_aggregator_readings_total 80")
    })
    .await;
    assert_eq!(temperature_points(&db), 0, "the sink is held");

    let mut gw = gw.kill_and_restart(&cfg, &[]).await;
    gw.wait_for_log("Replayed the ingress journal").await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while temperature_points(&db) < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of 20 acknowledged samples reached InfluxDB",
            temperature_points(&db)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sum = db.rows(
        "bme680_db",
        r#"SELECT sum("temperature") FROM "bme680_measure""#,
    );
    let want: f64 = (0..20).map(|i| 20.5 + f64::from(i)).sum();
    assert_eq!(sum[0][1].as_f64(), Some(want), "each sample exactly once");
}
