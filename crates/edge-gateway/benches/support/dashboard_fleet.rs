//! The building the dashboard benches measure: 500 devices x 3 metrics,
//! a day of windows in history and a latest value for every series.
//!
//! `dashboard` times the history inserts itself, so it takes the parts;
//! `dashboard_render` only needs the result and calls [`fill_day`].
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Instant;

use dashboard::history::{Aggregate, Batch, History, WindowRow};
use dashboard::live::Live;
use dashboard::{auth::Auth, AppState};
use gateway_core::config::DeviceConfig;
use gateway_core::event::SinkEvent;
use gateway_core::{
    DeviceId, DeviceRegistry, MetricName, Reading, SourceId, SystemClock, Telemetry, TimeSource,
    Timestamp,
};

pub const DEVICES: usize = 500;
pub const METRICS: [&str; 3] = ["temperature", "humidity", "co2"];
pub const DAY_MS: i64 = 86_400_000;

/// One window per minute, like `window = "1m"`, for a day;
/// `DASHBOARD_BENCH_WINDOW_MS` sets another length (a quick run of the
/// page-weight figures in a debug build: `1800000`).
pub fn window_ms() -> i64 {
    std::env::var("DASHBOARD_BENCH_WINDOW_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000)
}

pub fn dev(i: usize) -> String {
    format!("sensor-{i:04}")
}

/// The `w`-th window close of every device and metric, starting at
/// `start`, as the writer batches them at a checkpoint.
pub fn window_rows(w: i64, start: i64, window: i64) -> Vec<WindowRow> {
    (0..DEVICES)
        .flat_map(|d| {
            METRICS.iter().map(move |m| WindowRow {
                device: dev(d),
                metric: (*m).to_string(),
                agg: Aggregate {
                    start,
                    end: start + window,
                    count: 12,
                    avg: 20.0 + (w % 60) as f64 / 10.0 + d as f64 / 100.0,
                    min: 19.0,
                    max: 23.0,
                    std: 0.4,
                },
            })
        })
        .collect()
}

/// The day before `now` in history, `per_commit` windows to a commit.
/// What is stored does not depend on `per_commit`; more per commit only
/// spends fewer fsyncs setting up a bench that does not time the inserts.
pub fn fill_day(store: &History, now: i64, window: i64, per_commit: i64) {
    let windows = DAY_MS / window;
    let t0 = now - windows * window;
    let mut w = 0;
    while w < windows {
        let batch = Batch {
            windows: (w..(w + per_commit).min(windows))
                .flat_map(|w| window_rows(w, t0 + w * window, window))
                .collect(),
            alerts: vec![],
            commands: vec![],
        };
        store.write(&batch, 0).unwrap();
        w += per_commit;
    }
    // Seal the hours that are over, as the gateway's hourly prune has by
    // then: the pages read sealed hours, not only memory.
    store.prune(i64::MIN, u64::MAX).unwrap();
}

/// The live side: a reading of every device and metric at `now`.
pub fn live_at(now: i64) -> Live {
    let live = Live::default();
    let readings: Vec<Reading> = (0..DEVICES)
        .flat_map(|d| {
            METRICS.iter().map(move |m| {
                Reading::new(
                    DeviceId::new(dev(d)).unwrap(),
                    MetricName::new(*m).unwrap(),
                    21.3,
                    Timestamp::from_millis(now).unwrap(),
                    TimeSource::Arrival,
                )
                .map(|mut r| {
                    // As the adapter's sender stamps it: the row names its protocol.
                    r.set_source(SourceId(1));
                    r
                })
                .unwrap()
            })
        })
        .collect();
    live.apply(
        &SinkEvent::Readings(readings),
        &mut Vec::new(),
        &mut Vec::new(),
    );
    live
}

/// What the pages are served from: every device named, on 10 floors, no
/// rules, no auth.
pub fn app_state(live: Live, store: Arc<History>, window: i64) -> Arc<AppState> {
    let devices: Vec<DeviceConfig> = (0..DEVICES)
        .map(|d| {
            toml::from_str(&format!(
                "id = \"{}\"\nname = \"Room {d}\"\nroom = \"r{d}\"\nfloor = {}",
                dev(d),
                d / 50
            ))
            .unwrap()
        })
        .collect();
    Arc::new(AppState {
        live,
        store: Some(store),
        registry: DeviceRegistry::from_config(&devices),
        rules: vec![],
        telemetry: Telemetry::default(),
        clock: Arc::new(SystemClock),
        started: Instant::now(),
        window_ms: window,
        outputs: vec![],
        auth: Auth::new(&[], &Telemetry::default()),
        health: edge_gateway::health::for_dashboard(),
        allowed_hosts: vec![],
        view: dashboard::view::View {
            sources: {
                let s = gateway_core::Sources::default();
                s.register("local-sensors", "mqtt");
                s
            },
            ..Default::default()
        },
    })
}
