//! InfluxDB output throughput against the limit: points/s the sink gets
//! into a real InfluxDB 1.x (events in, outbox with fsync, line protocol,
//! HTTP) versus InfluxDB's own ingest of the same points from a file over
//! its HTTP API, in the same run on the same server. Target: >= 80 %.
//!
//! `cargo bench -p sinks --bench influxdb` (needs `influxd`; BENCH_POINTS
//! changes the size). Exits non-zero below the target.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::time::{Duration, Instant};

use gateway_core::config::{Problems, SinkSpec};
use gateway_core::event::SinkEvent;
use gateway_core::{
    DeviceId, DeviceRegistry, MetricName, Reading, Telemetry, TimeSource, Timestamp,
};
use sinks::influxdb::line::Encoder;
use sinks::influxdb::{InfluxConfig, SINK_POINTS_WRITTEN};
use sinks::registry::SinkContext;
use sinks::{OutputLink, SinkConfig};
use test_support::Influxd;

const TARGET: f64 = 0.8;
/// Points per request on both sides (InfluxDB recommends 5 000-10 000).
const BATCH: usize = 5000;
const DEVICES: usize = 200;

/// One ingress batch per device sample: four metrics at one time.
fn events(points: usize, base_ms: i64) -> Vec<SinkEvent> {
    (0..points)
        .map(|i| {
            let device = DeviceId::new(format!("bme-{}", i % DEVICES)).unwrap();
            let t = Timestamp::from_millis(base_ms + (i / DEVICES) as i64 * 1000).unwrap();
            let readings = [
                ("temperature", 21.0),
                ("humidity", 40.0),
                ("pressure", 1013.2),
                ("gas", 1.2e5),
            ]
            .into_iter()
            .map(|(m, v)| {
                Reading::new(
                    device.clone(),
                    MetricName::new(m).unwrap(),
                    v + (i % 97) as f64 * 0.01,
                    t,
                    TimeSource::Event,
                )
                .unwrap()
            })
            .collect();
            SinkEvent::Readings(readings)
        })
        .collect()
}

fn main() {
    let points: usize = std::env::var("BENCH_POINTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let db = Influxd::start();
    let base_ms = Timestamp::now().as_millis() - 7 * 24 * 3600 * 1000;
    let evs = events(points, base_ms);
    let tmp = tempfile::tempdir().unwrap();

    // The limit: the same points, as a line-protocol file, POSTed in
    // batches by a plain client.
    let mut cfg = InfluxConfig {
        database: "baseline".into(),
        write: vec![sinks::influxdb::config::Series::Readings],
        ..InfluxConfig::default()
    };
    let mut encoder = Encoder::new(&cfg, DeviceRegistry::default());
    let mut text = String::new();
    for e in &evs {
        encoder.encode(e, &mut text);
    }
    let file = tmp.path().join("points.lp");
    std::fs::File::create(&file)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    db.query("", "CREATE DATABASE baseline");
    let t0 = Instant::now();
    let content = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = content.lines().collect();
    for chunk in lines.chunks(BATCH) {
        let mut body = chunk.join("\n");
        body.push('\n');
        assert_eq!(
            db.write(
                "baseline",
                sinks::influxdb::line::PRECISION,
                body.as_bytes()
            ),
            204
        );
    }
    let baseline = points as f64 / t0.elapsed().as_secs_f64();

    // The sink, from events to acknowledged points.
    cfg.database = "gateway".into();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sink_rate = rt.block_on(async {
        let text = format!(
            "name = \"bench\"\nurl = \"{}\"\ndatabase = \"gateway\"\nwrite = [\"readings\"]\nbatch_size = {BATCH}\nflush_interval = \"100ms\"\n",
            db.url()
        );
        let mut problems = Problems::default();
        let config = SinkConfig::from_table("influxdb", toml::from_str(&text).unwrap(), "sink[0]", &mut problems)
            .unwrap_or_else(|| panic!("{problems}"));
        let telemetry = Telemetry::default();
        let ctx = SinkContext {
            gateway_id: "bench".into(),
            state_dir: tmp.path().join("state"),
            registry: DeviceRegistry::default(),
            units: Default::default(),
            telemetry: telemetry.clone(),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let task = config
            .start(&ctx, OutputLink { messages: rx, urgent: None, flush: None })
            .unwrap();
        let t0 = Instant::now();
        for e in evs {
            tx.send(e).await.unwrap();
        }
        drop(tx);
        // Stops once everything is written (or 5 s after the input ends).
        task.await.unwrap();
        let written = telemetry
            .counter_value(SINK_POINTS_WRITTEN, &[("output", "bench")])
            .unwrap_or(0);
        assert_eq!(written as usize, points, "the sink did not finish");
        points as f64 / t0.elapsed().as_secs_f64()
    });
    let got = db.rows("gateway", "SELECT count(\"temperature\") FROM \"readings\"");
    assert_eq!(got[0][1].as_u64(), Some(points as u64));

    let ratio = sink_rate / baseline;
    println!(
        "influxdb ingest: {points} points (4 fields each), batches of {BATCH}\n  \
         InfluxDB from a file over HTTP: {baseline:>9.0} points/s\n  \
         gateway sink (outbox+HTTP):    {sink_rate:>9.0} points/s  = {:.0} % (target >= {:.0} %)",
        ratio * 100.0,
        TARGET * 100.0
    );
    let _ = Duration::ZERO;
    if ratio < TARGET {
        eprintln!("below target");
        std::process::exit(1);
    }
}
