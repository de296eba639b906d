//! The InfluxDB output against a real InfluxDB 1.x (Debian's `influxd`,
//! started by each test on its own loopback port, data in a temp dir).
#![cfg(feature = "influxdb")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use gateway_core::config::{DeviceConfig, Problems, SinkSpec};
use gateway_core::event::SinkEvent;
use gateway_core::{
    DeviceId, DeviceRegistry, MetricName, Reading, Telemetry, TimeSource, Timestamp,
};
use sinks::influxdb::SINK_POINTS_WRITTEN;
use sinks::registry::SinkContext;
use sinks::{OutputLink, SinkConfig};
use test_support::Influxd;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// A running sink and the pipeline's end of its link.
struct Running {
    events: mpsc::Sender<SinkEvent>,
    flush: mpsc::Sender<oneshot::Sender<bool>>,
    task: JoinHandle<()>,
    telemetry: Telemetry,
}

impl Running {
    /// Everything sent so far is in the sink's outbox on disk.
    async fn flushed(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        self.flush.send(tx).await.unwrap();
        rx.await.unwrap()
    }

    async fn stop(self) {
        drop(self.events);
        drop(self.flush);
        self.task.await.unwrap();
    }
}

fn config(text: &str) -> SinkConfig {
    let mut problems = Problems::default();
    let table: toml::Value = toml::from_str(text).unwrap();
    SinkConfig::from_table("influxdb", table, "sink[0]", &mut problems)
        .unwrap_or_else(|| panic!("{problems}"))
}

fn start(config: &SinkConfig, state_dir: &std::path::Path) -> Running {
    start_with(
        config,
        state_dir,
        "id = \"bme680-1\"\nname = \"Lab bench\"\nroom = \"lab\"\n",
    )
}

/// As [`start`], with one `[[device]]` table of the registry.
fn start_with(config: &SinkConfig, state_dir: &std::path::Path, device: &str) -> Running {
    let devices: Vec<DeviceConfig> = vec![toml::from_str(device).unwrap()];
    let telemetry = Telemetry::default();
    let ctx = SinkContext {
        gateway_id: "gw-test".into(),
        state_dir: state_dir.to_path_buf(),
        registry: DeviceRegistry::from_config(&devices),
        units: Default::default(),
        telemetry: telemetry.clone(),
    };
    let (events, rx) = mpsc::channel(64);
    let (flush, flush_rx) = mpsc::channel(1);
    let task = config
        .start(
            &ctx,
            OutputLink {
                messages: rx,
                urgent: None,
                flush: Some(flush_rx),
            },
        )
        .unwrap();
    Running {
        events,
        flush,
        task,
        telemetry,
    }
}

/// One BME680 node's CSV line: a BME680 sample, four metrics at one time.
fn sample(ms: i64, i: usize) -> Vec<Reading> {
    let t = Timestamp::from_millis(ms).unwrap();
    let v = i as f64;
    [
        ("temperature", 20.0 + v * 0.1),
        ("humidity", 40.0 + v * 0.05),
        ("pressure", 1013.25 - v * 0.01),
        ("gas", 120_000.0 + v * 7.0),
    ]
    .into_iter()
    .map(|(m, x)| {
        Reading::new(
            DeviceId::new("bme680-1").unwrap(),
            MetricName::new(m).unwrap(),
            x,
            t,
            TimeSource::Event,
        )
        .unwrap()
    })
    .collect()
}

/// Waits until `check` holds. InfluxDB tells no one when a point becomes
/// queryable, so the event waited for is the query's answer itself.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn count(db: &Influxd, database: &str, q: &str) -> i64 {
    db.try_rows(database, q)
        .unwrap_or_default()
        .first()
        .and_then(|r| r.get(1))
        .and_then(|v| v.as_i64())
        .unwrap_or(0)
}

const BME680_CSV: &str = r#"
name = "influx"
url = "URL"
database = "bme680_db"
measurement = "bme680_measure"
write = ["readings"]
flush_interval = "100ms"
batch_size = 50
max_backoff = "300ms"
"#;

#[tokio::test]
async fn bme680_readings_answer_the_existing_panels_query_with_their_means() {
    let db = Influxd::start();
    let state = tempfile::tempdir().unwrap();
    let sink = start(&config(&BME680_CSV.replace("URL", &db.url())), state.path());
    let now = Timestamp::now().as_millis();
    let n = 120;
    let mut sent_temps = Vec::new();
    for i in 0..n {
        let readings = sample(now - 30 * 60_000 + i as i64 * 10_000, i);
        sent_temps.push(readings[0].value());
        sink.events
            .send(SinkEvent::Readings(readings))
            .await
            .unwrap();
    }
    // The existing Grafana panel's query, with the issue's time filter; the database
    // did not exist: the sink created it.
    let q = r#"SELECT mean("temperature") FROM "bme680_measure" WHERE time > now() - 1h"#;
    until("all points queryable", || {
        count(
            &db,
            "bme680_db",
            r#"SELECT count("temperature") FROM "bme680_measure""#,
        ) == n as i64
    })
    .await;
    let rows = db.rows("bme680_db", q);
    let mean = rows[0][1].as_f64().unwrap();
    let expected = sent_temps.iter().sum::<f64>() / n as f64;
    assert!((mean - expected).abs() < 1e-9, "{mean} != {expected}");
    // One point per sample, four fields, tagged with the registry's name and tags.
    let rows = db.rows(
        "bme680_db",
        r#"SELECT "temperature","humidity","pressure","gas","name","room" FROM "bme680_measure" WHERE "device" = 'bme680-1' LIMIT 1"#,
    );
    assert_eq!(rows[0][1].as_f64(), Some(20.0));
    assert_eq!(rows[0][4].as_f64(), Some(120_000.0));
    assert_eq!(rows[0][5].as_str(), Some("Lab bench"));
    assert_eq!(rows[0][6].as_str(), Some("lab"));
    // Counted once InfluxDB's answer is read, just after it stored them.
    until("the points counted", || {
        sink.telemetry
            .counter_value(SINK_POINTS_WRITTEN, &[("output", "influx")])
            == Some(n as u64)
    })
    .await;
    sink.stop().await;
}

#[tokio::test]
async fn an_outage_and_a_restart_of_the_sink_lose_nothing_and_write_every_point_once() {
    let mut db = Influxd::start();
    let state = tempfile::tempdir().unwrap();
    let cfg = config(&BME680_CSV.replace("URL", &db.url()));
    let sink = start(&cfg, state.path());
    let base = Timestamp::now().as_millis() - 20 * 60_000;
    let q = r#"SELECT count("temperature") FROM "bme680_measure""#;
    for i in 0..40 {
        sink.events
            .send(SinkEvent::Readings(sample(base + i as i64 * 1000, i)))
            .await
            .unwrap();
    }
    until("first points", || count(&db, "bme680_db", q) == 40).await;

    // The database goes away; the gateway keeps taking readings, and says
    // they are on disk (its checkpoint may move on).
    db.stop();
    for i in 40..100 {
        sink.events
            .send(SinkEvent::Readings(sample(base + i as i64 * 1000, i)))
            .await
            .unwrap();
    }
    assert!(
        sink.flushed().await,
        "the sink's outbox holds the points durably"
    );
    // The gateway restarts too, while the database is still down: the
    // points come back from the sink's outbox.
    sink.stop().await;
    db.restart();
    let sink = start(&cfg, state.path());
    until("every point after the outage", || {
        count(&db, "bme680_db", q) == 100
    })
    .await;
    // Exactly once each: 100 distinct sample times, none twice, none lost.
    let rows = db.rows("bme680_db", r#"SELECT "temperature" FROM "bme680_measure""#);
    assert_eq!(rows.len(), 100);
    let times: std::collections::BTreeSet<i64> =
        rows.iter().map(|r| r[0].as_i64().unwrap()).collect();
    assert_eq!(times.len(), 100);
    assert_eq!(*times.iter().next().unwrap(), base);
    sink.stop().await;
}

#[tokio::test]
async fn a_refused_point_is_dead_lettered_and_counted_and_the_rest_goes_on() {
    let db = Influxd::start();
    let state = tempfile::tempdir().unwrap();
    let base = Timestamp::now().as_millis() - 60_000;
    // `value` is already a string field in this measurement: InfluxDB
    // refuses the alerts' float `value` with 400 "field type conflict".
    db.query("", "CREATE DATABASE bme680_db");
    let line = format!("conflict,device=x value=\"text\" {base}\n");
    assert_eq!(db.write("bme680_db", "ms", line.as_bytes()), 204);
    let mut alerts = BME680_CSV
        .replace("URL", &db.url())
        .replace("write = [\"readings\"]", "write = [\"alerts\"]")
        .replace("name = \"influx\"", "name = \"alerts\"");
    alerts.push_str("alerts_measurement = \"conflict\"\n");
    let sink = start(&config(&alerts), state.path());
    let alert = |i: i64, rule: &str| {
        SinkEvent::Alert(gateway_core::event::AlertEvent {
            device: DeviceId::new("bme680-1").unwrap(),
            rule: rule.into(),
            metric: "temperature".into(),
            kind: "threshold".into(),
            state: "raised".into(),
            value: 31.0,
            limit: 30.0,
            at: Timestamp::from_millis(base + i).unwrap(),
            reason: None,
            expected: None,
            observed: None,
            source: gateway_core::SourceId::UNKNOWN,
        })
    };
    sink.events.send(alert(1, "refused")).await.unwrap();
    until("the refused point set aside", || {
        sink.telemetry
            .counter_value(sinks::influxdb::SINK_DEAD_LETTER, &[("output", "alerts")])
            == Some(1)
    })
    .await;
    let dead = state.path().join("sink-alerts").join("dead-letter.lp");
    let text = std::fs::read_to_string(&dead).unwrap();
    assert!(text.contains("field type conflict"), "{text}");
    assert!(text.contains("rule=refused"), "{text}");
    assert!(
        sink.telemetry
            .counter_value(
                sinks::influxdb::SINK_BATCHES_FAILED,
                &[("output", "alerts"), ("reason", "bad_request")]
            )
            .unwrap_or(0)
            >= 1
    );
    // Nothing waits behind it: the outbox is empty again.
    until("the outbox emptied", || {
        sink.telemetry
            .gauges("edge_gateway_outbox_messages")
            .iter()
            .any(|(l, v)| l.iter().any(|(k, n)| k == "output" && n == "alerts") && *v == 0.0)
    })
    .await;
    sink.stop().await;
}

/// A database an earlier bridge filled holds `gas` as integers: with
/// `integer_fields = ["gas"]` the gateway's readings are written beside
/// them, where without it InfluxDB refused every point whole.
#[tokio::test]
async fn integer_fields_write_into_a_database_that_holds_them_as_integers() {
    let db = Influxd::start();
    let state = tempfile::tempdir().unwrap();
    let base = Timestamp::now().as_millis() - 60_000;
    db.query("", "CREATE DATABASE bme680_db");
    let line = format!("bme680_measure,device=old temperature=21.3,gas=12000i {base}\n");
    assert_eq!(db.write("bme680_db", "ms", line.as_bytes()), 204);
    let text = BME680_CSV.replace("URL", &db.url()) + "integer_fields = [\"gas\"]\n";
    let sink = start(&config(&text), state.path());
    for i in 0..3 {
        sink.events
            .send(SinkEvent::Readings(sample(
                base + 1000 * (i + 1),
                i as usize,
            )))
            .await
            .unwrap();
    }
    until("the three samples written beside the old one", || {
        count(
            &db,
            "bme680_db",
            "SELECT count(\"gas\") FROM \"bme680_measure\"",
        ) == 4
    })
    .await;
    assert_eq!(
        count(
            &db,
            "bme680_db",
            "SELECT count(\"temperature\") FROM \"bme680_measure\""
        ),
        4
    );
    assert_eq!(
        sink.telemetry
            .counter_value(sinks::influxdb::SINK_DEAD_LETTER, &[("output", "influx")])
            .unwrap_or(0),
        0
    );
    sink.stop().await;
}

/// One-metric readings of one device, all stamped `ms`: what 300 key=value
/// lines written to a TCP socket in one go become.
fn burst(device: &str, ms: i64, n: usize) -> Vec<Reading> {
    (0..n)
        .map(|i| {
            Reading::new(
                DeviceId::new(device).unwrap(),
                MetricName::new("temperature").unwrap(),
                20.0 + i as f64 * 0.01,
                Timestamp::from_millis(ms).unwrap(),
                TimeSource::Event,
            )
            .unwrap()
        })
        .collect()
}

fn sum(db: &Influxd, q: &str) -> f64 {
    db.rows("bme680_db", q)[0][1].as_f64().unwrap()
}

#[tokio::test]
async fn readings_with_equal_timestamps_are_each_a_point_and_a_replay_overwrites_them() {
    let db = Influxd::start();
    let cfg = config(&BME680_CSV.replace("URL", &db.url()));
    let ms = Timestamp::now().as_millis() - 60_000;
    // 300 readings of one series in one millisecond, in one event; then
    // two devices whose own second-resolution `ts` repeats four times a
    // second (4 samples of 4 metrics per device and second, 5 seconds).
    let mut events = vec![SinkEvent::Readings(burst("tcp-1", ms, 300))];
    let mut want_sum = 300.0 * 20.0 + (0..300).map(|i| i as f64 * 0.01).sum::<f64>();
    for i in 0..20 {
        let second = (ms / 1000 - 10 + (i as i64 / 4)) * 1000;
        for device in ["esp-a", "esp-b"] {
            let mut readings = sample(second, i);
            for r in &mut readings {
                *r = Reading::new(
                    DeviceId::new(device).unwrap(),
                    r.metric().clone(),
                    r.value(),
                    r.time(),
                    TimeSource::Event,
                )
                .unwrap();
            }
            want_sum += readings[0].value();
            events.push(SinkEvent::Readings(readings));
        }
    }
    let all = r#"SELECT count("temperature") FROM "bme680_measure""#;
    let total = r#"SELECT sum("temperature") FROM "bme680_measure""#;
    let state = tempfile::tempdir().unwrap();
    let sink = start(&cfg, state.path());
    for e in &events {
        sink.events.send(e.clone()).await.unwrap();
    }
    until("340 points", || count(&db, "bme680_db", all) >= 340).await;
    sink.stop().await;
    assert_eq!(count(&db, "bme680_db", all), 340);
    // Four metrics per sample, each kept: no sample lost a field.
    assert_eq!(
        count(
            &db,
            "bme680_db",
            r#"SELECT count("gas") FROM "bme680_measure""#
        ),
        40
    );
    let got = sum(&db, total);
    assert!((got - want_sum).abs() < 1e-6, "{got} != {want_sum}");

    // A restarted gateway gives a fresh sink (its state gone with the
    // crash) the same readings again, as the journal replay does: the
    // points are overwritten, not doubled.
    let state = tempfile::tempdir().unwrap();
    let sink = start(&cfg, state.path());
    for e in &events {
        sink.events.send(e.clone()).await.unwrap();
    }
    until("the replay written", || {
        sink.telemetry
            .counter_value(SINK_POINTS_WRITTEN, &[("output", "influx")])
            == Some(340)
    })
    .await;
    sink.stop().await;
    assert_eq!(count(&db, "bme680_db", all), 340);
    let got = sum(&db, total);
    assert!((got - want_sum).abs() < 1e-6, "{got} != {want_sum}");
}

/// Names InfluxDB's line protocol cannot carry as they are: trailing
/// backslashes (read as escaping the separator), backslashes before an
/// escaped character in a field key, a field named `time`. Found writing
/// them to a real `influxd`: `node\` was merged into `node`'s series (one
/// reading overwrote the other), a metric `t\\` broke its line (`hum` after
/// it was lost, or the point refused), `time` was dropped, and `time` and
/// `time_value` (or `device` and `device_value`) were one field, one of
/// the two values lost. Each device is now its own series and every
/// field arrives, nothing dead-lettered.
#[tokio::test]
async fn names_with_backslashes_and_time_each_arrive_apart() {
    let db = Influxd::start();
    let state = tempfile::tempdir().unwrap();
    let sink = start(&config(&BME680_CSV.replace("URL", &db.url())), state.path());
    let now = Timestamp::now().as_millis();
    let devices = ["node", "node\\", "node\\\\", "\\"];
    let metrics = [
        "t",
        "t\\",
        "t\\\\",
        "a\\,b",
        "a,b",
        "device\\",
        "time",
        "time_value",
        "device",
        "device_value",
        "hum",
    ];
    for (d, device) in devices.iter().enumerate() {
        let at = Timestamp::from_millis(now - 60_000).unwrap();
        let readings = metrics
            .iter()
            .enumerate()
            .map(|(m, metric)| {
                Reading::new(
                    DeviceId::new(*device).unwrap(),
                    MetricName::new(*metric).unwrap(),
                    (d * 10 + m) as f64,
                    at,
                    TimeSource::Event,
                )
                .unwrap()
            })
            .collect();
        sink.events
            .send(SinkEvent::Readings(readings))
            .await
            .unwrap();
    }
    until("a point of every device", || {
        count(
            &db,
            "bme680_db",
            r#"SELECT count("hum") FROM "bme680_measure""#,
        ) == 4
    })
    .await;
    let series = db.rows(
        "bme680_db",
        r#"SHOW TAG VALUES FROM "bme680_measure" WITH KEY = "device""#,
    );
    assert_eq!(series.len(), 4, "one series a device: {series:?}");
    let fields = db.rows("bme680_db", r#"SHOW FIELD KEYS FROM "bme680_measure""#);
    assert_eq!(
        fields.len(),
        metrics.len(),
        "one field a metric: {fields:?}"
    );
    assert!(
        fields.iter().all(|f| f[0].as_str() != Some("device")),
        "no field takes the device tag's name: {fields:?}"
    );
    // Every value of every device, summed: nothing lost, nothing merged.
    let want: f64 = (0..devices.len())
        .flat_map(|d| (0..metrics.len()).map(move |m| (d * 10 + m) as f64))
        .sum();
    let got: f64 = fields
        .iter()
        .filter_map(|f| f[0].as_str())
        .map(|field| {
            let q = format!(
                r#"SELECT sum("{}") FROM "bme680_measure""#,
                field.replace('\\', "\\\\").replace('"', "\\\"")
            );
            db.rows("bme680_db", &q)[0][1].as_f64().unwrap()
        })
        .sum();
    assert_eq!(got, want);
    until("the points counted", || {
        sink.telemetry
            .counter_value(SINK_POINTS_WRITTEN, &[("output", "influx")])
            == Some(4)
    })
    .await;
    sink.stop().await;
}

/// A device tagged both `time` and `time_tag`: InfluxDB refuses a tag key
/// `time`, which is written `time_tag`; both were written under that key,
/// one value lost. Each arrives under a key of its own.
#[tokio::test]
async fn tags_time_and_time_tag_of_one_device_each_arrive() {
    let db = Influxd::start();
    let state = tempfile::tempdir().unwrap();
    let sink = start_with(
        &config(&BME680_CSV.replace("URL", &db.url())),
        state.path(),
        "id = \"clock-1\"\nname = \"Clock\"\ntags = { time = \"utc\", time_tag = \"ntp\" }\n",
    );
    let at = Timestamp::from_millis(Timestamp::now().as_millis() - 60_000).unwrap();
    let reading = Reading::new(
        DeviceId::new("clock-1").unwrap(),
        MetricName::new("drift").unwrap(),
        0.25,
        at,
        TimeSource::Event,
    )
    .unwrap();
    sink.events
        .send(SinkEvent::Readings(vec![reading]))
        .await
        .unwrap();
    until("the point", || {
        count(
            &db,
            "bme680_db",
            r#"SELECT count("drift") FROM "bme680_measure""#,
        ) == 1
    })
    .await;
    let value_of = |key: &str| {
        db.rows(
            "bme680_db",
            &format!(r#"SHOW TAG VALUES FROM "bme680_measure" WITH KEY = "{key}""#),
        )
        .iter()
        .filter_map(|r| r.get(1).and_then(|v| v.as_str()).map(str::to_string))
        .collect::<Vec<_>>()
    };
    assert_eq!(value_of("time_tag"), ["utc"], "the tag `time`");
    assert_eq!(value_of("time_tag_tag"), ["ntp"], "the tag `time_tag`");
    sink.stop().await;
}

/// A device tagged `device` and `unit`, keys the gateway writes itself
/// (`unit` with `unit_tag`): InfluxDB keeps one value per tag key, so one
/// of each pair was lost. The gateway's arrive under their keys, the
/// device's as `device_tag` and `unit_tag`, and a query by both finds the
/// point.
#[tokio::test]
async fn device_tags_named_as_the_gateways_own_arrive_beside_them() {
    let db = Influxd::start();
    let state = tempfile::tempdir().unwrap();
    let text = format!("{BME680_CSV}unit_tag = true\n").replace("URL", &db.url());
    let sink = start_with(
        &config(&text),
        state.path(),
        "id = \"node-1\"\nname = \"Node\"\ntags = { device = \"x\", unit = \"y\" }\n",
    );
    let at = Timestamp::from_millis(Timestamp::now().as_millis() - 60_000).unwrap();
    let reading = Reading::new(
        DeviceId::new("node-1").unwrap(),
        MetricName::new("temperature").unwrap(),
        21.5,
        at,
        TimeSource::Event,
    )
    .unwrap();
    sink.events
        .send(SinkEvent::Readings(vec![reading]))
        .await
        .unwrap();
    until("the point", || {
        count(
            &db,
            "bme680_db",
            r#"SELECT count("temperature") FROM "bme680_measure""#,
        ) == 1
    })
    .await;
    let value_of = |key: &str| {
        db.rows(
            "bme680_db",
            &format!(r#"SHOW TAG VALUES FROM "bme680_measure" WITH KEY = "{key}""#),
        )
        .iter()
        .filter_map(|r| r.get(1).and_then(|v| v.as_str()).map(str::to_string))
        .collect::<Vec<_>>()
    };
    assert_eq!(value_of("device"), ["node-1"], "the gateway's `device`");
    assert_eq!(value_of("unit"), ["°C"], "the gateway's `unit`");
    assert_eq!(value_of("device_tag"), ["x"], "the device's `device`");
    assert_eq!(value_of("unit_tag"), ["y"], "the device's `unit`");
    assert_eq!(
        count(
            &db,
            "bme680_db",
            r#"SELECT count("temperature") FROM "bme680_measure" WHERE "device" = 'node-1' AND "device_tag" = 'x' AND "unit" = '°C' AND "unit_tag" = 'y'"#,
        ),
        1
    );
    sink.stop().await;
}

/// The database is dropped while the gateway writes to it (someone's
/// clean-up, a re-provisioned server): InfluxDB answers 404 "database not
/// found"; with `create_database` the sink creates it again and writes
/// what waited, losing none of the readings taken meanwhile.
#[tokio::test]
async fn a_database_dropped_while_running_is_created_again_and_nothing_is_lost() {
    let db = Influxd::start();
    let state = tempfile::tempdir().unwrap();
    let sink = start(&config(&BME680_CSV.replace("URL", &db.url())), state.path());
    let base = Timestamp::now().as_millis() - 10 * 60_000;
    let q = r#"SELECT count("temperature") FROM "bme680_measure""#;
    for i in 0..10 {
        sink.events
            .send(SinkEvent::Readings(sample(base + i as i64 * 1000, i)))
            .await
            .unwrap();
    }
    until("first points", || count(&db, "bme680_db", q) == 10).await;
    db.query("", "DROP DATABASE bme680_db");
    for i in 10..30 {
        sink.events
            .send(SinkEvent::Readings(sample(base + i as i64 * 1000, i)))
            .await
            .unwrap();
    }
    until("the points after the drop", || {
        count(&db, "bme680_db", q) == 20
    })
    .await;
    sink.stop().await;
}

/// After a long outage the backlog holds points older than the retention
/// policy: InfluxDB 1.x answers 400 "partial write: points beyond
/// retention policy dropped=N" and stores the rest of the batch. The old
/// point is set aside and counted; the fresh ones are written.
#[tokio::test]
async fn points_beyond_the_retention_policy_are_dead_lettered_and_the_rest_written() {
    let db = Influxd::start();
    let state = tempfile::tempdir().unwrap();
    db.query("", "CREATE DATABASE bme680_db");
    db.query(
        "bme680_db",
        "CREATE RETENTION POLICY short ON bme680_db DURATION 1h REPLICATION 1",
    );
    let mut text = BME680_CSV.replace("URL", &db.url());
    text.push_str("retention_policy = \"short\"\nbatch_size = 10\nflush_interval = \"10s\"\n");
    let text =
        text.replacen("batch_size = 50\n", "", 1)
            .replacen("flush_interval = \"100ms\"\n", "", 1);
    let sink = start(&config(&text), state.path());
    let now = Timestamp::now().as_millis();
    for i in 0..10 {
        let at = if i == 3 {
            now - 3 * 3_600_000
        } else {
            now - 60_000 + i as i64 * 1000
        };
        sink.events
            .send(SinkEvent::Readings(sample(at, i)))
            .await
            .unwrap();
    }
    until("the old point set aside", || {
        sink.telemetry
            .counter_value(sinks::influxdb::SINK_DEAD_LETTER, &[("output", "influx")])
            == Some(1)
    })
    .await;
    let q = r#"SELECT count("temperature") FROM "short"."bme680_measure""#;
    until("the fresh points", || count(&db, "bme680_db", q) == 9).await;
    let dead =
        std::fs::read_to_string(state.path().join("sink-influx").join("dead-letter.lp")).unwrap();
    assert!(dead.contains("beyond retention policy"), "{dead}");
    sink.stop().await;
}

/// A `retention_policy` the database does not have (a typo, or a database
/// dropped and created again by the sink without it): InfluxDB 1.x
/// answers 500 "retention policy not found". The sink took it for a
/// server fault (`reason="server_error"`, "InfluxDB write failed;
/// retrying") where it is a setting to fix; it now says so, as for a
/// missing database, and the points wait until the policy exists.
#[tokio::test]
async fn a_missing_retention_policy_is_reported_as_a_setting_and_the_points_wait() {
    let db = Influxd::start();
    let state = tempfile::tempdir().unwrap();
    db.query("", "CREATE DATABASE bme680_db");
    let mut text = BME680_CSV.replace("URL", &db.url());
    text.push_str("retention_policy = \"weekly\"\n");
    let sink = start(&config(&text), state.path());
    let now = Timestamp::now().as_millis();
    for i in 0..5 {
        sink.events
            .send(SinkEvent::Readings(sample(
                now - 60_000 + i as i64 * 1000,
                i,
            )))
            .await
            .unwrap();
    }
    let failed = |reason: &str| {
        sink.telemetry
            .counter_value(
                sinks::influxdb::SINK_BATCHES_FAILED,
                &[("output", "influx"), ("reason", reason)],
            )
            .unwrap_or(0)
    };
    until("the refusal counted as a setting", || {
        failed("not_found") >= 2
    })
    .await;
    assert_eq!(failed("server_error"), 0);
    db.query(
        "bme680_db",
        "CREATE RETENTION POLICY weekly ON bme680_db DURATION 7d REPLICATION 1",
    );
    let q = r#"SELECT count("temperature") FROM "weekly"."bme680_measure""#;
    until("the points, once the policy exists", || {
        count(&db, "bme680_db", q) == 5
    })
    .await;
    sink.stop().await;
}

/// Device ids, metric names and `[[device]]` tag values with every
/// character line protocol treats specially (spaces, commas, `=`, quotes,
/// a trailing backslash inside a word, non-ASCII) read back from a real
/// InfluxDB exactly as they were sent.
#[tokio::test]
async fn odd_ids_metrics_and_tag_values_read_back_as_sent() {
    let db = Influxd::start();
    let state = tempfile::tempdir().unwrap();
    let device_table = "id = \"Room 1, floor=2\"\nname = \"Lab \\\"bench\\\", east=1\"\n\
                        room = \" leading and trailing \"\n\
                        tags = { note = \"Küche 温度 ☃\", empty = \"\", \"k,e y=\" = \"v\\\\\" }\n";
    let sink = start_with(
        &config(&BME680_CSV.replace("URL", &db.url())),
        state.path(),
        device_table,
    );
    let devices = ["Room 1, floor=2", "quote\"d", "ünï,cø=dé 温度", "a\\b c"];
    let metrics = ["temp C", "a=b", "x,y", "\"q\"", "ü°", "=", ",", " "];
    let at = Timestamp::from_millis(Timestamp::now().as_millis() - 60_000).unwrap();
    for (d, device) in devices.iter().enumerate() {
        let readings = metrics
            .iter()
            .enumerate()
            .map(|(m, metric)| {
                Reading::new(
                    DeviceId::new(*device).unwrap(),
                    MetricName::new(*metric).unwrap(),
                    (d * 10 + m) as f64,
                    at,
                    TimeSource::Event,
                )
                .unwrap()
            })
            .collect();
        sink.events
            .send(SinkEvent::Readings(readings))
            .await
            .unwrap();
    }
    until("a point of every device", || {
        count(
            &db,
            "bme680_db",
            r#"SELECT count("temp C") FROM "bme680_measure""#,
        ) == 4
    })
    .await;
    let mut got: Vec<String> = db
        .rows(
            "bme680_db",
            r#"SHOW TAG VALUES FROM "bme680_measure" WITH KEY = "device""#,
        )
        .iter()
        .map(|r| r[1].as_str().unwrap().to_string())
        .collect();
    got.sort();
    let mut want: Vec<String> = devices.iter().map(|d| d.to_string()).collect();
    want.sort();
    assert_eq!(got, want);
    let mut fields: Vec<String> = db
        .rows("bme680_db", r#"SHOW FIELD KEYS FROM "bme680_measure""#)
        .iter()
        .map(|r| r[0].as_str().unwrap().to_string())
        .collect();
    fields.sort();
    let mut want: Vec<String> = metrics.iter().map(|m| m.to_string()).collect();
    want.sort();
    assert_eq!(fields, want);
    let rows = db.rows(
        "bme680_db",
        r#"SELECT "a=b","name","room","note" FROM "bme680_measure" WHERE "device" = 'Room 1, floor=2'"#,
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][1].as_f64(), Some(1.0));
    assert_eq!(rows[0][2].as_str(), Some("Lab \"bench\", east=1"));
    assert_eq!(rows[0][3].as_str(), Some(" leading and trailing "));
    assert_eq!(rows[0][4].as_str(), Some("Küche 温度 ☃"));
    // A key with separators arrives whole; a value's trailing backslash as
    // the docs say (`＼`); an empty value is no tag at all.
    let rows = db.rows(
        "bme680_db",
        r#"SELECT "a=b","k,e y=" FROM "bme680_measure" WHERE "device" = 'Room 1, floor=2'"#,
    );
    assert_eq!(rows[0][2].as_str(), Some("v\u{FF3C}"));
    let keys: Vec<String> = db
        .rows("bme680_db", r#"SHOW TAG KEYS FROM "bme680_measure""#)
        .iter()
        .map(|r| r[0].as_str().unwrap().to_string())
        .collect();
    assert!(!keys.iter().any(|k| k == "empty"), "{keys:?}");
    sink.stop().await;
}

/// The least privilege a gateway needs: a user with WRITE on a database
/// an administrator created. With `create_database` (on by default) the
/// sink first sends `CREATE DATABASE`, which InfluxDB refuses such a user
/// (403 "requires admin privilege"); the sink then tried again and again
/// and never wrote a point, though every write would have been taken,
/// until its outbox filled and dropped the oldest readings. A refused
/// `CREATE DATABASE` now leaves the writes to say whether the database is
/// there.
#[tokio::test]
async fn a_user_who_may_write_but_not_create_databases_gets_its_points_written() {
    let db = Influxd::start_with_auth();
    let admin = |q: &str| {
        let path = format!(
            "/query?u=admin&p=pw&q={}",
            url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
        );
        let (status, body) = test_support::http(db.port(), "POST", &path, "text/plain", b"");
        assert_eq!(status, 200, "{q}: {body}");
        body
    };
    let (status, body) = test_support::http(
        db.port(),
        "POST",
        "/query?q=CREATE%20USER%20admin%20WITH%20PASSWORD%20%27pw%27%20WITH%20ALL%20PRIVILEGES",
        "text/plain",
        b"",
    );
    assert_eq!(status, 200, "{body}");
    admin("CREATE DATABASE bme680_db");
    admin("CREATE USER gw WITH PASSWORD 'gw-pw'");
    admin("GRANT WRITE ON bme680_db TO gw");
    std::env::set_var("INFLUX_V1_TEST_GW_PW", "gw-pw");
    let mut text = BME680_CSV.replace("URL", &db.url());
    text.push_str("username = \"gw\"\npassword_env = \"INFLUX_V1_TEST_GW_PW\"\n");
    let state = tempfile::tempdir().unwrap();
    let sink = start(&config(&text), state.path());
    let base = Timestamp::now().as_millis() - 60_000;
    for i in 0..10 {
        sink.events
            .send(SinkEvent::Readings(sample(base + i as i64 * 1000, i)))
            .await
            .unwrap();
    }
    until("the points written", || {
        sink.telemetry
            .counter_value(SINK_POINTS_WRITTEN, &[("output", "influx")])
            == Some(10)
    })
    .await;
    let body = admin(r#"SELECT count("temperature") FROM "bme680_db"."autogen"."bme680_measure""#);
    assert!(body.contains("[\"1970-01-01T00:00:00Z\",10]"), "{body}");
    sink.stop().await;
}

/// `gzip = true` against a real InfluxDB 1.x: the compressed bodies are
/// read and every point stored.
#[tokio::test]
async fn gzipped_writes_are_stored_by_a_real_influxd() {
    let db = Influxd::start();
    let state = tempfile::tempdir().unwrap();
    let mut text = BME680_CSV.replace("URL", &db.url());
    text.push_str("gzip = true\n");
    let sink = start(&config(&text), state.path());
    let base = Timestamp::now().as_millis() - 60_000;
    for i in 0..120 {
        sink.events
            .send(SinkEvent::Readings(sample(base + i as i64 * 100, i)))
            .await
            .unwrap();
    }
    let q = r#"SELECT count("gas") FROM "bme680_measure""#;
    until("every gzipped point", || count(&db, "bme680_db", q) == 120).await;
    sink.stop().await;
}

/// influxd restarts (SIGKILL, then up again on the same data) while the
/// sink runs on, its kept-alive connections broken: the readings taken
/// before, during and after are each stored once.
#[tokio::test]
async fn influxd_restarting_under_a_running_sink_loses_nothing() {
    let mut db = Influxd::start();
    let state = tempfile::tempdir().unwrap();
    let sink = start(&config(&BME680_CSV.replace("URL", &db.url())), state.path());
    let base = Timestamp::now().as_millis() - 10 * 60_000;
    let q = r#"SELECT count("temperature") FROM "bme680_measure""#;
    for i in 0..30 {
        sink.events
            .send(SinkEvent::Readings(sample(base + i as i64 * 1000, i)))
            .await
            .unwrap();
    }
    until("the first points", || count(&db, "bme680_db", q) == 30).await;
    db.stop();
    for i in 30..60 {
        sink.events
            .send(SinkEvent::Readings(sample(base + i as i64 * 1000, i)))
            .await
            .unwrap();
    }
    assert!(sink.flushed().await);
    db.restart();
    for i in 60..90 {
        sink.events
            .send(SinkEvent::Readings(sample(base + i as i64 * 1000, i)))
            .await
            .unwrap();
    }
    until("every point, once", || count(&db, "bme680_db", q) == 90).await;
    let rows = db.rows("bme680_db", r#"SELECT "temperature" FROM "bme680_measure""#);
    assert_eq!(rows.len(), 90);
    sink.stop().await;
}

/// A backlog older than the retention policy (an outage longer than it):
/// InfluxDB refuses the whole batch, "partial write: points beyond
/// retention policy dropped=N" with N every point of it. The sink still
/// split the batch down to single points, about two requests per point
/// (a day of one building's readings, hundreds of thousands of requests
/// while newer readings waited behind them). A refusal that drops every
/// point sent is now set aside whole, in one request.
#[tokio::test]
async fn a_batch_refused_whole_for_its_age_is_set_aside_without_splitting() {
    let db = Influxd::start();
    let state = tempfile::tempdir().unwrap();
    db.query("", "CREATE DATABASE bme680_db");
    db.query(
        "bme680_db",
        "CREATE RETENTION POLICY short ON bme680_db DURATION 1h REPLICATION 1",
    );
    let mut text = BME680_CSV.replace("URL", &db.url());
    text.push_str("retention_policy = \"short\"\n");
    let text = text
        .replacen("batch_size = 50\n", "batch_size = 40\n", 1)
        .replacen(
            "flush_interval = \"100ms\"\n",
            "flush_interval = \"10s\"\n",
            1,
        );
    let sink = start(&config(&text), state.path());
    let old = Timestamp::now().as_millis() - 3 * 3_600_000;
    for i in 0..40 {
        sink.events
            .send(SinkEvent::Readings(sample(old + i as i64 * 1000, i)))
            .await
            .unwrap();
    }
    until("the old points set aside", || {
        sink.telemetry
            .counter_value(sinks::influxdb::SINK_DEAD_LETTER, &[("output", "influx")])
            == Some(40)
    })
    .await;
    let refusals = sink
        .telemetry
        .counter_value(
            sinks::influxdb::SINK_BATCHES_FAILED,
            &[("output", "influx"), ("reason", "bad_request")],
        )
        .unwrap_or(0);
    assert_eq!(refusals, 1, "requests refused on the way");
    let dead =
        std::fs::read_to_string(state.path().join("sink-influx").join("dead-letter.lp")).unwrap();
    assert_eq!(dead.lines().filter(|l| !l.starts_with('#')).count(), 40);
    assert!(
        dead.contains("beyond retention policy dropped=40"),
        "{dead}"
    );
    sink.stop().await;
}
