//! A reading acknowledged to its sender must reach InfluxDB even when the
//! gateway is killed after journaling it and before the InfluxDB sink
//! stored it: the restarted gateway gives the sinks the journal again
//! (InfluxDB keeps one point per series and time, so nothing doubles).
//! Against a real InfluxDB 1.x and real Mosquitto brokers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

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
name = "bme680-csv"
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

/// The sink writing raw readings only: its points-written counter then
/// counts these samples and nothing else (the default also writes a health
/// point every 10 s, which would let a wait on that counter end one sample
/// early).
fn readings_only(cfg: String) -> String {
    cfg.replace(
        "flush_interval = \"100ms\"",
        "flush_interval = \"100ms\"\nwrite = [\"readings\"]",
    )
}

fn points_written(body: &str) -> Option<u64> {
    let points = "edge_gateway_sink_points_written_total{output=\"influx\"}";
    test_support::metrics::sample(body, points).map(|v| v as u64)
}

/// Two ESP32 nodes whose own `ts` has whole seconds, four samples a
/// second: every sample is a point, and when a kill -9 makes the restarted
/// gateway give the sink the journal again, the resent points overwrite
/// the ones InfluxDB already has instead of doubling them.
#[tokio::test]
async fn samples_sharing_a_second_are_each_a_point_and_a_replay_after_a_kill_overwrites_them() {
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let db = Influxd::start();
    let metrics = free_port();
    // No checkpoint before the kill: the whole journal is replayed.
    let cfg = readings_only(config(local.port(), upstream.port(), &db.url(), metrics)).replace(
        "window = \"1h\"",
        "window = \"1h\"\ncheckpoint_interval = \"1h\"",
    );
    let mut gw = GatewayProcess::start_in(tempfile::tempdir().unwrap(), &cfg);
    gw.wait_for_log("Subscribed").await;

    let start_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 30;
    let mut want = 0.0;
    for node in ["esp-a", "esp-b"] {
        let lines: Vec<String> = (0..20)
            .map(|i| {
                want += 20.25 + f64::from(i);
                format!(
                    "{},{}.25,40,1013,120000",
                    start_s + i64::from(i / 4),
                    20 + i
                )
            })
            .collect();
        publish_lines(local.port(), &format!("bme680/{node}/csv"), &lines, 1).await;
    }
    http_until(metrics, "/metrics", |_, body| {
        points_written(body).is_some_and(|n| n >= 40)
    })
    .await;
    assert_eq!(temperature_points(&db), 40, "one point per sample");

    let mut gw = gw.kill_and_restart(&cfg, &[]).await;
    gw.wait_for_log("Replayed the ingress journal").await;
    // The replayed samples were written again by the new process...
    http_until(metrics, "/metrics", |_, body| {
        points_written(body).is_some_and(|n| n >= 40)
    })
    .await;
    // ...onto the same points.
    assert_eq!(temperature_points(&db), 40, "a replay must not double");
    let sum = db.rows(
        "bme680_db",
        r#"SELECT sum("temperature") FROM "bme680_measure""#,
    );
    let got = sum[0][1].as_f64().unwrap();
    assert!((got - want).abs() < 1e-9, "{got} != {want}");
}

/// Whether a checkpoint has landed: it is renamed into place only once
/// complete (the journal it names was started when it began).
fn checkpoint_landed(state: &std::path::Path) -> bool {
    state.join("windows.ckpt").exists()
}

fn checkpoint_inode(state: &std::path::Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(state.join("windows.ckpt"))
        .ok()
        .map(|m| m.ino())
}

/// A node stamping whole seconds sends two samples of one second, a
/// checkpoint lands, it sends two more of the same second, and the gateway
/// is killed: the restart replays only the journal since the checkpoint.
/// Those two must land on the points the first run gave them, not on the
/// first two samples' points (which would keep four points with a wrong
/// sum: two samples lost, two doubled).
#[tokio::test]
async fn a_replay_from_a_checkpoint_inside_one_second_rewrites_only_its_own_samples() {
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let db = Influxd::start();
    let metrics = free_port();
    // The kill must come before the checkpoint after the one the test
    // waits for: between them the test publishes, waits for InfluxDB to
    // have the points and asks it, which can take more than 5 s on a
    // loaded 2-core machine (the second checkpoint then holds samples 3 and 4, and
    // nothing is replayed). 15 s leaves that margin three times over.
    let cfg = readings_only(config(local.port(), upstream.port(), &db.url(), metrics)).replace(
        "window = \"1h\"",
        "window = \"1h\"\ncheckpoint_interval = \"15s\"",
    );
    let mut gw = GatewayProcess::start_in(tempfile::tempdir().unwrap(), &cfg);
    gw.wait_for_log("Subscribed").await;
    let state = gw.dir.path().join("state");
    let second = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 30;
    let sample = |t: f64| format!("{second},{t},40,1013,120000");
    assert!(!checkpoint_landed(&state), "nothing to checkpoint yet");

    publish_lines(
        local.port(),
        "bme680/esp-a/csv",
        &[sample(1.0), sample(2.0)],
        1,
    )
    .await;
    http_until(metrics, "/metrics", |_, body| {
        points_written(body).is_some_and(|n| n >= 2)
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !checkpoint_landed(&state) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no checkpoint landed: {:?}",
            std::fs::read_dir(&state)
                .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
                .unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Each checkpoint is renamed into place: a new file, a new inode.
    let landed = checkpoint_inode(&state);
    publish_lines(
        local.port(),
        "bme680/esp-a/csv",
        &[sample(3.0), sample(4.0)],
        1,
    )
    .await;
    http_until(metrics, "/metrics", |_, body| {
        points_written(body).is_some_and(|n| n >= 4)
    })
    .await;
    assert_eq!(temperature_points(&db), 4, "one point per sample");

    gw.signal("KILL");
    gw.wait_exit().await;
    assert_eq!(
        checkpoint_inode(&state),
        landed,
        "another checkpoint landed before the kill: the test's premise, not the gateway, failed"
    );
    let mut gw = GatewayProcess::start_in(gw.dir, &cfg);
    gw.wait_for_log("Replayed the ingress journal").await;
    let replayed = gw
        .seen
        .iter()
        .find(|l| l.contains("Replayed the ingress journal"))
        .cloned()
        .unwrap_or_default();
    assert!(
        replayed.contains("messages=2"),
        "only the two samples after the checkpoint are replayed: {replayed}"
    );
    http_until(metrics, "/metrics", |_, body| {
        points_written(body).is_some_and(|n| n >= 2)
    })
    .await;
    assert_eq!(temperature_points(&db), 4, "a replay must not double");
    let sum = db.rows(
        "bme680_db",
        r#"SELECT sum("temperature") FROM "bme680_measure""#,
    );
    assert_eq!(sum[0][1].as_f64(), Some(10.0), "1 + 2 + 3 + 4, each once");
}
