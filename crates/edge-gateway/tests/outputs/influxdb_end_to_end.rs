//! A BME680 node's CSV path from outside, through the real binary: BME680 CSV lines
//! over MQTT into a real InfluxDB 1.x (started here on its own ports), the
//! seed's own query, and every query of the shipped Grafana dashboard.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use common::GatewayProcess;
use test_support::{publish_lines, Influxd, Mosquitto};

const DASHBOARD: &str = include_str!("../../../../packaging/grafana/edge-gateway.json");

use common::now_ms;

fn config(local: u16, upstream: u16, influx: &str) -> String {
    format!(
        r#"
[gateway]
id = "gw-influx"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{upstream}"
max_backoff = "1s"

[aggregation]
window = "1s"
grace = "1s"

[[adapter]]
type = "mqtt"
name = "bme680-csv"
url = "mqtt://127.0.0.1:{local}"
topics = [
  {{ pattern = "bme680/{{device}}/csv", format = "csv", columns = ["ts", "temperature", "humidity", "pressure", "gas"] }},
]
max_backoff = "1s"

[[sink]]
type = "influxdb"
name = "influx"
url = "{influx}"
database = "bme680_db"
measurement = "bme680_measure"
flush_interval = "100ms"
max_backoff = "500ms"

[[device]]
id = "bme-1"
name = "Lab bench"
room = "lab"

[[rule]]
name = "lab-hot"
kind = "threshold"
metric = "temperature"
device = "bme-1"
max = 25.0
"#
    )
}

/// Waits until `check` holds. InfluxDB tells no one when a point becomes
/// queryable, so the event waited for is the query's answer itself.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn count(db: &Influxd, q: &str) -> i64 {
    db.try_rows("bme680_db", q)
        .unwrap_or_default()
        .first()
        .and_then(|r| r.get(1))
        .and_then(|v| v.as_i64())
        .unwrap_or(0)
}

/// Every InfluxQL query of the dashboard: panel targets and annotations.
fn dashboard_queries() -> Vec<String> {
    let d: serde_json::Value = serde_json::from_str(DASHBOARD).unwrap();
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            out.push(t["query"].as_str().unwrap().to_string());
        }
    }
    for a in d["annotations"]["list"].as_array().unwrap() {
        if let Some(q) = a["query"].as_str() {
            out.push(q.to_string());
        }
    }
    out
}

#[tokio::test]
async fn bme680_csv_over_mqtt_reaches_influxdb_and_every_dashboard_query_returns_data() {
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let db = Influxd::start();
    let mut gw = GatewayProcess::start(&config(local.port(), upstream.port(), &db.url()));
    gw.wait_for_log("Subscribed").await;

    // 30 samples over 1.5 s (two windows close), the last ones above the
    // rule's 25 °C, and one sample 50 min old: too late for any window,
    // still a true sample for the raw series.
    let start = now_ms();
    let mut temps = Vec::new();
    let mut lines = Vec::new();
    for i in 0..30 {
        let t = 20.0 + f64::from(i) * 0.2;
        temps.push(t);
        lines.push(format!(
            "{},{t},{},{},{}",
            start + i64::from(i) * 50,
            40.0 + f64::from(i),
            1013.0 - f64::from(i) * 0.1,
            120_000 + i * 10
        ));
    }
    temps.push(18.0);
    lines.push(format!("{},18.0,41,1012,119000", start - 50 * 60_000));
    publish_lines(local.port(), "bme680/bme-1/csv", &lines, 1).await;

    until("every sample queryable", || {
        count(&db, r#"SELECT count("temperature") FROM "bme680_measure""#) == 31
    })
    .await;
    let rows = db.rows(
        "bme680_db",
        r#"SELECT mean("temperature") FROM "bme680_measure" WHERE time > now() - 1h"#,
    );
    let mean = rows[0][1].as_f64().unwrap();
    let expected = temps.iter().sum::<f64>() / temps.len() as f64;
    assert!((mean - expected).abs() < 1e-9, "{mean} != {expected}");

    until("the closed windows' aggregates", || {
        count(&db, r#"SELECT count("temperature_avg") FROM "aggregates""#) >= 2
    })
    .await;
    until("the raised alert", || {
        count(
            &db,
            r#"SELECT count("value") FROM "alerts" WHERE "state" = 'raised'"#,
        ) >= 1
    })
    .await;
    // Health points come every 10 s; readings/s needs two of them.
    until("two health points", || {
        count(&db, r#"SELECT count("readings_total") FROM "gateway""#) >= 2
    })
    .await;

    let queries = dashboard_queries();
    assert!(queries.len() >= 9, "{queries:?}");
    for q in queries {
        let q = q
            .replace("$timeFilter", "time > now() - 1h")
            .replace("$__interval", "1s")
            .replace("$measurement", "bme680_measure");
        let v = db.query("bme680_db", &q);
        assert!(
            v["results"][0]["error"].is_null(),
            "dashboard query failed: {q}: {v}"
        );
        let has_value = v["results"][0]["series"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["values"].as_array().into_iter().flatten())
            .any(|row| {
                row.as_array()
                    .is_some_and(|r| r.iter().skip(1).any(|x| !x.is_null()))
            });
        assert!(has_value, "dashboard query returned no data: {q}: {v}");
    }
}

/// HTTPS to a real InfluxDB serving TLS with a private CA: with the wrong
/// CA the sink logs a TLS error naming `ca_file` and keeps the points in
/// its outbox; restarted with the right `ca_file`, it writes them all.
#[tokio::test]
async fn https_with_a_wrong_ca_names_ca_file_and_keeps_the_points_until_fixed() {
    let pki = test_support::Pki::generate();
    let other = test_support::Pki::generate();
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let db = Influxd::start_tls(
        &pki.path("ca.pem"),
        &pki.path("server.pem"),
        &pki.path("server.key"),
    );
    assert!(db.url().starts_with("https://"));
    let with_ca = |ca: &std::path::Path| {
        config(local.port(), upstream.port(), &db.url()).replace(
            "measurement = \"bme680_measure\"",
            &format!(
                "measurement = \"bme680_measure\"\nca_file = \"{}\"",
                ca.display()
            ),
        )
    };
    let mut gw = GatewayProcess::start(&with_ca(&other.path("ca.pem")));
    gw.wait_for_log("Subscribed").await;
    let start = now_ms();
    let lines: Vec<String> = (0..10)
        .map(|i| format!("{},21.{i},40,1013,120000", start + i * 10))
        .collect();
    publish_lines(local.port(), "bme680/bme-1/csv", &lines, 1).await;
    gw.wait_for_log("check this sink's ca_file").await;

    let mut gw = gw
        .kill_and_restart(&with_ca(&pki.path("ca.pem")), &[])
        .await;
    gw.wait_for_log("InfluxDB output started.").await;
    until("the points kept through the TLS failure", || {
        count(&db, r#"SELECT count("temperature") FROM "bme680_measure""#) == 10
    })
    .await;
}

/// `unit_tag = true`: every point names its unit as the pages do, with
/// the adapter's override (a bridge whose nodes report their battery in
/// volts), so Grafana can group or label by it.
#[tokio::test]
async fn unit_tag_names_each_metrics_unit_with_the_adapters_override() {
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let db = Influxd::start();
    let cfg = format!(
        r#"
[gateway]
id = "gw-units"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{upstream}"
max_backoff = "1s"

[aggregation]
window = "1s"
grace = "0s"

[[adapter]]
type = "mqtt"
name = "lora-bridge"
url = "mqtt://127.0.0.1:{local}"
topics = ["nodes/{{device}}"]
units = {{ battery = "V" }}
max_backoff = "1s"

[[sink]]
type = "influxdb"
name = "influx"
url = "{influx}"
database = "units_db"
unit_tag = true
flush_interval = "100ms"
max_backoff = "500ms"

[[rule]]
name = "co2-high"
kind = "threshold"
metric = "co2"
max = 1000.0
"#,
        upstream = upstream.port(),
        local = local.port(),
        influx = db.url(),
    );
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Subscribed").await;
    let lines: Vec<String> = (0..20)
        .map(|i| {
            format!(
                r#"{{"co2": {}, "battery": 3.7, "temperature": 21.5}}"#,
                900 + i * 10
            )
        })
        .collect();
    publish_lines(local.port(), "nodes/eui-70b3d57ed005a1b2", &lines, 1).await;

    let units_db = |q: &str| -> i64 {
        db.try_rows("units_db", q)
            .unwrap_or_default()
            .first()
            .and_then(|r| r.get(1))
            .and_then(|v| v.as_i64())
            .unwrap_or(0)
    };
    until("every reading", || {
        units_db(r#"SELECT count("co2") FROM "readings""#) == 20
    })
    .await;
    let tags = db.query(
        "units_db",
        r#"SHOW TAG VALUES FROM "readings" WITH KEY = "unit""#,
    );
    let mut units: Vec<String> = tags["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap_or_else(|| panic!("{tags}"))
        .iter()
        .map(|kv| kv[1].as_str().unwrap().to_string())
        .collect();
    units.sort();
    assert_eq!(units, ["V", "ppm", "°C"], "{tags}");
    // Grouped by unit: the battery is in volts (the adapter's), not "%".
    let grouped = db.query(
        "units_db",
        r#"SELECT last("battery") FROM "readings" GROUP BY "unit""#,
    );
    let series = grouped["results"][0]["series"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{grouped}");
    assert_eq!(series[0]["tags"]["unit"], "V", "{grouped}");
    assert_eq!(series[0]["values"][0][1], 3.7, "{grouped}");

    until("a window in ppm", || {
        units_db(r#"SELECT count("co2_avg") FROM "aggregates" WHERE "unit" = 'ppm'"#) >= 1
    })
    .await;
    until("the raised alert in ppm", || {
        units_db(r#"SELECT count("value") FROM "alerts" WHERE "unit" = 'ppm'"#) >= 1
    })
    .await;
    let text = db.rows(
        "units_db",
        r#"SELECT "text" FROM "alerts" WHERE "state" = 'raised'"#,
    );
    let text = text[0][1].as_str().unwrap();
    assert!(
        text.starts_with("co2-high raised threshold: co2 ")
            && text.ends_with(" ppm (limit 1000 ppm)"),
        "{text}"
    );
    gw.signal("TERM");
    gw.wait_exit().await;
}
