//! What `[upstream] report = "change"` costs per reading:
//! `cargo bench -p pipeline --bench upstream_feed`.
//!
//! CPU time of this one thread (a current-thread runtime runs the feed's
//! task here too), per reading, for the same readings through:
//!
//! 1. the aggregator's ingest alone: the pipeline's own work per reading,
//!    the reference the rest is read against;
//! 2. the fan-out to an upstream that takes no readings (the default: no
//!    metric reported on change, no unit set per adapter);
//! 3. the same, the upstream taking the readings but judging none (what
//!    the pipeline's side costs: a copy per reading, a send per batch);
//! 4. the fan-out to an upstream that takes them, its feed judging each
//!    against `[upstream] report` (one metric of five reported on change,
//!    changing every 50th reading of it), changes rendered and queued.
//!
//! A plain `main`, no bench framework; CPU, not wall time, so other work
//! on the machine barely moves the figures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;

use aggregator::{Aggregator, WindowSpec};
use gateway_core::config::report::{ReportMode, ReportRules};
use gateway_core::units::Units;
use gateway_core::{DeviceId, DeviceRegistry, MetricName, Reading, TimeSource, Timestamp};
use pipeline::fanout::{Output, SinkFanout};
use sinks::mqtt_upstream::{Feed, Render, Renderer};
use tokio::sync::mpsc;

const DEVICES: usize = 1_000;
const METRICS: [&str; 5] = ["temperature", "humidity", "co2", "fan", "battery"];
const READINGS: usize = 1_000_000;
/// Readings per ingress batch (one `send_readings` each).
const BATCH: usize = 64;
const T0: i64 = 1_767_225_600_000;

/// CPU nanoseconds this thread has run (`/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn readings() -> Vec<Reading> {
    let devices: Vec<DeviceId> = (0..DEVICES)
        .map(|d| DeviceId::new(format!("ahu-{d}")).unwrap().interned())
        .collect();
    let metrics: Vec<MetricName> = METRICS
        .iter()
        .map(|m| MetricName::new(*m).unwrap().interned())
        .collect();
    (0..READINGS)
        .map(|i| {
            let d = i / METRICS.len() % DEVICES;
            let m = i % METRICS.len();
            let round = i / (METRICS.len() * DEVICES);
            let value = if METRICS[m] == "fan" {
                ((round / 50) % 2) as f64
            } else {
                20.0 + (i % 7) as f64
            };
            Reading::new(
                devices[d].clone(),
                metrics[m].clone(),
                value,
                Timestamp::from_millis(T0 + i as i64).unwrap(),
                TimeSource::Event,
            )
            .unwrap()
        })
        .collect()
}

/// A fan-out to one upstream feed whose rendered messages are counted and
/// dropped; `readings`: it takes them, `report`: with the rule.
fn upstream(readings: bool, report: bool) -> (SinkFanout, tokio::task::JoinHandle<u64>) {
    let (events, rx) = mpsc::channel(1024);
    let (out, mut sent) = mpsc::channel(1024);
    let mut feed = Feed::new(
        Renderer {
            gateway_id: "gw-bench".into(),
            prefix: "building/hq".into(),
            registry: DeviceRegistry::default(),
        },
        Units::default(),
    );
    if report {
        let rules: BTreeMap<String, ReportMode> =
            [("ahu-*/fan".to_string(), ReportMode::Change)].into();
        feed = feed.with_changes(
            ReportRules::new(&rules),
            &gateway_core::Telemetry::default(),
        );
    }
    // The upstream's rendering as its forwarder does it, each message
    // queued; the changes still held at the end go too.
    tokio::spawn(async move {
        let (mut feed, mut rx) = (feed, rx);
        let mut rendered = Vec::new();
        while let Some(event) = rx.recv().await {
            feed.render(event, false, &mut rendered);
            for (msg, _) in rendered.drain(..) {
                if out.send(msg).await.is_err() {
                    return;
                }
            }
        }
        feed.held(None, &mut rendered);
        for (msg, _) in rendered.drain(..) {
            let _ = out.send(msg).await;
        }
    });
    let counter = tokio::spawn(async move {
        let mut n = 0u64;
        while sent.recv().await.is_some() {
            n += 1;
        }
        n
    });
    let fanout = SinkFanout::new(vec![Output::upstream(events, None).with_readings(readings)]);
    (fanout, counter)
}

async fn fan_out(readings: bool, report: bool, all: &[Reading]) -> (f64, u64) {
    let (mut fanout, counter) = upstream(readings, report);
    let start = thread_cpu_ns();
    for batch in all.chunks(BATCH) {
        for r in batch {
            fanout.reading(r);
        }
        fanout.send_readings().await;
    }
    drop(fanout);
    let changes = counter.await.unwrap();
    let ns = (thread_cpu_ns() - start) as f64 / all.len() as f64;
    (ns, changes)
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let all = readings();
    let now = Timestamp::from_millis(T0).unwrap();

    // One window over the whole run: every reading lands in it.
    let mut agg = Aggregator::new(WindowSpec {
        window_ms: 3_600_000,
        grace_ms: 0,
        max_future_ms: 3_600_000,
    })
    .unwrap();
    let start = thread_cpu_ns();
    for r in &all {
        black_box(agg.ingest(r, now)).ok();
    }
    let reference = (thread_cpu_ns() - start) as f64 / all.len() as f64;

    let (off, none) = rt.block_on(fan_out(false, false, &all));
    let (taken, also_none) = rt.block_on(fan_out(true, false, &all));
    let (on, changes) = rt.block_on(fan_out(true, true, &all));
    assert_eq!(none + also_none, 0);
    println!(
        "{READINGS} readings ({DEVICES} devices x {} metrics), CPU of this thread per reading:",
        METRICS.len()
    );
    println!("  aggregator ingest (reference)          {reference:>8.1} ns");
    println!(
        "  fan-out, upstream takes no readings    {off:>8.1} ns  ({:+.1} % of the reference)",
        off / reference * 100.0
    );
    println!(
        "  fan-out, upstream takes them, no rule  {taken:>8.1} ns  ({:+.1} % of the reference)",
        taken / reference * 100.0
    );
    println!(
        "  fan-out, report = change on 1 metric   {on:>8.1} ns  ({:+.1} % of the reference; {changes} changes sent)",
        on / reference * 100.0
    );
    println!(
        "  added by report = change              {:>8.1} ns per reading",
        on - off
    );

    // Issue 68 (9): a window's units are looked up when it is rendered,
    // once per metric and window, never per reading.
    let renderer = Renderer {
        gateway_id: "gw-bench".into(),
        prefix: "building/hq".into(),
        registry: DeviceRegistry::default(),
    };
    let units = Units::default();
    let stats = gateway_core::event::MetricStats {
        count: 12,
        avg: 21.5,
        min: 20.0,
        max: 23.0,
        std: 0.5,
    };
    let window = gateway_core::event::WindowEvent {
        device: DeviceId::new("ahu-1").unwrap(),
        start: now,
        end: now,
        partial: false,
        window_start: now,
        rerun: 0,
        amendment: 0,
        partial_at: None,
        metrics: METRICS.iter().map(|m| ((*m).to_string(), stats)).collect(),
    };
    const WINDOWS: usize = 20_000;
    let time = |with_units: bool| {
        let start = thread_cpu_ns();
        for _ in 0..WINDOWS {
            let m = renderer.aggregated_in(&window, |metric| {
                if with_units {
                    units
                        .of_device("ahu-1", None, gateway_core::SourceId::UNKNOWN, metric)
                        .unit
                } else {
                    String::new()
                }
            });
            black_box(m);
        }
        (thread_cpu_ns() - start) as f64 / WINDOWS as f64 / 1000.0
    };
    let bare = time(false);
    let with_units = time(true);
    println!(
        "a window of {} metrics rendered: {bare:.2} µs without units, {with_units:.2} µs with them ({:+.2} µs per metric, once per window)",
        METRICS.len(),
        (with_units - bare) / METRICS.len() as f64
    );
}
