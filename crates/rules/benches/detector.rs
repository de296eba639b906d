//! What each component costs, against the budget: the univariate detector
//! per reading and per series, the device model per reading, per fit and
//! per device, and the whole rule engine per reading with one rule of each
//! kind.
//!
//! ```text
//! cargo bench -p rules --bench detector
//! ```

use std::hint::black_box;
use std::time::Instant;

use anomaly::detector::Params;
use anomaly::multivariate::{DeviceModel, MAX_METRICS};
use anomaly::synthetic::{building, series, Building, Shape};
use anomaly::{Detector, DEFAULT_SENSITIVITY};
use gateway_core::config::RuleConfig;
use gateway_core::{DeviceId, MetricName, Reading, TimeSource, Timestamp};
use rules::Engine;

/// The issue's budget: per reading of the univariate detector, persisted
/// state per univariate series and per device model.
const NS_PER_READING_LIMIT: f64 = 2_000.0;
const SERIES_BYTES_LIMIT: usize = 4 * 1024;
const DEVICE_BYTES_LIMIT: usize = 32 * 1024;

fn verdict(ok: bool) -> &'static str {
    if ok {
        "within"
    } else {
        "OVER"
    }
}

fn main() {
    univariate_bench();
    multivariate_bench();
    engine_bench();
}

fn univariate_bench() {
    let xs = series(1, 200_000, 150_000, Shape::LevelShift(4.0));
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let mut det = Detector::new();
        let start = Instant::now();
        for (i, x) in xs.iter().enumerate() {
            black_box(det.observe(i as i64 * 60_000, black_box(*x), DEFAULT_SENSITIVITY));
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e9 / xs.len() as f64);
    }
    let mut det = Detector::new();
    for (i, x) in xs.iter().enumerate() {
        det.observe(i as i64 * 60_000, *x, DEFAULT_SENSITIVITY);
    }
    let json = serde_json::to_vec(&det).map_or(0, |v| v.len());
    println!(
        "univariate detector: {best:.0} ns per reading (best of 5 runs over {} readings; limit {NS_PER_READING_LIMIT:.0} ns: {})",
        xs.len(),
        verdict(best <= NS_PER_READING_LIMIT)
    );
    println!(
        "univariate detector: {json} bytes persisted (JSON) per series (limit {SERIES_BYTES_LIMIT}: {}); {} bytes inline in memory plus {} on the heap (profiles, the half hours' spreads and range ring)",
        verdict(json <= SERIES_BYTES_LIMIT),
        std::mem::size_of::<Detector>(),
        (48 + 168 + 48) * 4 + 16 * 8
    );
    // The default runs both families; the first alone, for what the
    // categoriser adds.
    let first_family_alone = Params {
        resonance_tail: f64::INFINITY,
        ..Params::DEFAULT
    };
    family_bench(&xs, "the first family alone", &first_family_alone);
    let discord = Params {
        discord_tail: 1.5,
        discord_down: 4,
        discord_length: 8,
        ..Params::DEFAULT
    };
    family_bench(&xs, "the discord on too", &discord);
}

/// The detector with `p`'s families on: its cost beside the default's, and
/// the state it persists.
fn family_bench(xs: &[f64], name: &str, p: &Params) {
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let mut det = Detector::new();
        let start = Instant::now();
        for (i, x) in xs.iter().enumerate() {
            black_box(det.observe_with(i as i64 * 60_000, black_box(*x), p));
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e9 / xs.len() as f64);
    }
    let mut det = Detector::new();
    for (i, x) in xs.iter().enumerate() {
        det.observe_with(i as i64 * 60_000, *x, p);
    }
    let json = serde_json::to_vec(&det).map_or(0, |v| v.len());
    println!(
        "{name}: {best:.0} ns per reading (limit {NS_PER_READING_LIMIT:.0} ns: {}); {json} bytes persisted (limit {SERIES_BYTES_LIMIT}: {})",
        verdict(best <= NS_PER_READING_LIMIT),
        verdict(json <= SERIES_BYTES_LIMIT),
    );
}

/// A meeting room's three metrics, a reading of each a minute, for 8 days.
fn multivariate_bench() {
    let readings = building(1, 8 * 1440, None, Building::RoomCo2NobodyIn);
    let mut model = DeviceModel::default();
    let (mut fits, mut fit_ns) = (Vec::new(), 0.0);
    let start = Instant::now();
    for (minute, metric, value) in &readings {
        black_box(model.observe(*minute as i64 * 60_000, metric, *value));
        if model.fit_due() {
            let t = Instant::now();
            let _ = model.refit();
            let ns = t.elapsed().as_secs_f64() * 1e9;
            fit_ns += ns;
            fits.push(ns / 1e6);
        }
    }
    let score_ns = (start.elapsed().as_secs_f64() * 1e9 - fit_ns) / readings.len() as f64;
    fits.sort_by(f64::total_cmp);
    let json = serde_json::to_vec(&model).map_or(0, |v| v.len());
    println!(
        "device model (3 metrics): {score_ns:.0} ns per reading scored; {} fits, median {:.2} ms, slowest {:.2} ms (off the per-reading path: Engine::on_tick, one device per tick)",
        fits.len(),
        fits.get(fits.len() / 2).copied().unwrap_or(0.0),
        fits.last().copied().unwrap_or(0.0)
    );
    println!(
        "device model (3 metrics): {json} bytes persisted (JSON) (limit {DEVICE_BYTES_LIMIT}: {}); with {} metrics, the most a model takes: about {} bytes",
        verdict(json <= DEVICE_BYTES_LIMIT),
        MAX_METRICS,
        json * (MAX_METRICS + 2) / (3 + 2)
    );
}

fn rules() -> Vec<RuleConfig> {
    let text = r#"
[[rule]]
name = "max"
kind = "threshold"
metric = "temperature"
max = 30.0
hysteresis = 0.5
for = "1m"

[[rule]]
name = "warming"
kind = "rate"
metric = "temperature"
rate = "+6.0 per 10m"

[[rule]]
name = "silent"
kind = "silence"
after = "15m"

[[rule]]
name = "anomaly"
kind = "anomaly"
metric = "temperature"
"#;
    #[derive(serde::Deserialize)]
    struct File {
        rule: Vec<RuleConfig>,
    }
    toml::from_str::<File>(text)
        .map(|f| f.rule)
        .unwrap_or_default()
}

fn engine_bench() {
    let rules = rules();
    let (devices, per_device) = (1_000usize, 200usize);
    let ids: Vec<DeviceId> = (0..devices)
        .filter_map(|d| DeviceId::new(format!("dev-{d}")).ok())
        .collect();
    let Ok(metric) = MetricName::new("temperature") else {
        return;
    };
    let xs = series(2, per_device, per_device, Shape::Clean);
    let mut readings = Vec::with_capacity(devices * per_device);
    for (i, x) in xs.iter().enumerate() {
        for id in &ids {
            let Ok(at) = Timestamp::from_millis(1_700_000_000_000 + i as i64 * 60_000) else {
                continue;
            };
            if let Ok(r) = Reading::new(id.clone(), metric.clone(), *x, at, TimeSource::Event) {
                readings.push(r);
            }
        }
    }
    let mut engine = Engine::new(&rules, &[]);
    let start = Instant::now();
    let mut alerts = 0usize;
    for r in &readings {
        alerts += black_box(engine.on_reading(r)).len();
    }
    let ns = start.elapsed().as_secs_f64() * 1e9 / readings.len() as f64;
    let state = serde_json::to_vec(&engine.state()).map_or(0, |v| v.len());
    println!(
        "engine: {ns:.0} ns per reading with {} rules over {devices} devices ({} readings, {alerts} alerts); {} bytes of persisted state per device",
        rules.len(),
        readings.len(),
        state / devices
    );
}
