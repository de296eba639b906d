//! Detector cost per reading and memory per series, and the whole rule
//! engine's cost per reading with one rule of each kind.
//!
//! ```text
//! cargo bench -p anomaly --bench detector
//! ```

use std::hint::black_box;
use std::time::Instant;

use anomaly::synthetic::{series, Shape};
use anomaly::{Detector, Engine, DEFAULT_SENSITIVITY};
use gateway_core::config::RuleConfig;
use gateway_core::{DeviceId, MetricName, Reading, TimeSource, Timestamp};

fn main() {
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
        "detector: {best:.1} ns per reading (best of 5 runs over {} readings)",
        xs.len()
    );
    println!(
        "detector: {} bytes in memory per series, {json} bytes as persisted JSON",
        std::mem::size_of::<Detector>()
    );
    engine_bench();
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
