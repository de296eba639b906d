//! Throughput of the aggregator: `cargo bench -p aggregator`.
//!
//! A plain `main` (no bench framework, so no extra dependency): each phase runs
//! once over pre-built readings and prints updates/s and ns/update.
//!
//! - `Stats::push`: the accumulator alone, the ceiling for everything else.
//! - baseline: only reading the device and metric strings of the pre-built
//!   readings in random order. In a pipeline a reading is hot in cache when
//!   it is ingested, here it is not; this is the bench's own share.
//! - ingest, 1k series: a working set that fits in cache, series in turn.
//! - ingest, round robin: each device sends all its metrics, devices take
//!   turns, over 100k series (a polling adapter's pattern).
//! - ingest, random: every reading hits a random one of 100k series, the
//!   cache-hostile worst case.
//! - close, last window: emitting a window over 100k series that then have no
//!   open window, so all of them are also forgotten.
//! - close, steady state: the next window is already open (the usual case
//!   with a grace period), so the series stay interned.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aggregator::{Aggregator, Stats, WindowSpec};
use gateway_core::{DeviceId, MetricName, Reading, TimeSource, Timestamp};

const DEVICES: usize = 20_000;
const METRICS: [&str; 5] = ["temperature", "humidity", "co2", "voc", "battery"];
const SERIES: usize = DEVICES * METRICS.len();
/// Distinct pre-built readings per series, so values vary.
const PER_SERIES: usize = 4;
const UPDATES: usize = 10_000_000;
const WINDOW_MS: i64 = 60_000;
/// 2025-11-21T10:00:00Z, a window boundary.
const BASE_MS: i64 = 1_763_719_200_000;

/// Seeded xorshift64: reproducible and dependency-free.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Index of the `i`th reading when `series` series take turns, each turn
/// using the next of that series' pre-built readings.
fn round_robin(i: usize, series: usize) -> usize {
    (i % series) * PER_SERIES + (i / series) % PER_SERIES
}

fn report(name: &str, updates: usize, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    println!(
        "{name:<34} {updates:>10} updates in {:>8.1} ms: {:>6.1} M updates/s, {:>6.1} ns/update",
        secs * 1e3,
        updates as f64 / secs / 1e6,
        secs * 1e9 / updates as f64
    );
}

fn report_close(name: &str, series: usize, windows: usize, elapsed: Duration) {
    println!(
        "{name:<34} {series:>10} series  in {:>8.1} ms -> {windows} device windows, {:.0} ns/series",
        elapsed.as_secs_f64() * 1e3,
        elapsed.as_secs_f64() * 1e9 / series as f64
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let metrics: Vec<MetricName> = METRICS
        .iter()
        .map(|m| MetricName::new(*m))
        .collect::<Result<_, _>>()?;
    // Device-major order: readings[(d * METRICS + m) * PER_SERIES + k].
    let mut readings = Vec::with_capacity(SERIES * PER_SERIES);
    for d in 0..DEVICES {
        let device = DeviceId::new(format!("70B3D57ED00{d:05X}"))?;
        for metric in &metrics {
            for _ in 0..PER_SERIES {
                let jitter = (rng.next() % 50_000) as i64;
                let value = 20.0 + (rng.next() % 10_000) as f64 / 1000.0;
                readings.push(Reading::new(
                    device.clone(),
                    metric.clone(),
                    value,
                    Timestamp::from_millis(BASE_MS + jitter)?,
                    TimeSource::Event,
                )?);
            }
        }
    }
    let now = Timestamp::from_millis(BASE_MS + WINDOW_MS - 1)?;
    let due = Timestamp::from_millis(BASE_MS + WINDOW_MS + 5_000)?;
    let spec = WindowSpec {
        window_ms: WINDOW_MS,
        grace_ms: 5_000,
        max_future_ms: 2_000,
    };
    println!(
        "{SERIES} series ({DEVICES} devices x {} metrics), {} pre-built readings",
        METRICS.len(),
        readings.len()
    );

    let values: Vec<f64> = readings.iter().map(Reading::value).collect();
    let start = Instant::now();
    let mut s = Stats::new();
    for i in 0..UPDATES {
        s.push(values[i % values.len()]);
    }
    report("Stats::push", UPDATES, start.elapsed());
    black_box(s.std());

    // Indices drawn up front so the generator is not timed.
    let order: Vec<u32> = (0..UPDATES)
        .map(|_| (rng.next() % readings.len() as u64) as u32)
        .collect();
    let start = Instant::now();
    let mut touched = 0_usize;
    for &i in &order {
        let r = &readings[i as usize];
        let (d, m) = (r.device().as_str(), r.metric().as_str());
        touched += d.len() + m.len() + usize::from(d.as_bytes()[0]) + usize::from(m.as_bytes()[0]);
    }
    report("baseline: touch random readings", UPDATES, start.elapsed());
    black_box(touched);

    let hot = &readings[..1000 * PER_SERIES];
    let mut agg = Aggregator::new(spec)?;
    let start = Instant::now();
    for i in 0..UPDATES {
        agg.ingest(&hot[round_robin(i, 1000)], now)?;
    }
    report("ingest, 1k series (in cache)", UPDATES, start.elapsed());
    black_box(agg.close_all());

    let mut agg = Aggregator::new(spec)?;
    let start = Instant::now();
    for i in 0..UPDATES {
        agg.ingest(&readings[round_robin(i, SERIES)], now)?;
    }
    report("ingest, round robin over 100k", UPDATES, start.elapsed());
    black_box(agg.close_all());
    let mut agg = Aggregator::new(spec)?;
    let start = Instant::now();
    for &i in &order {
        agg.ingest(&readings[i as usize], now)?;
    }
    report("ingest, random over 100k", UPDATES, start.elapsed());

    let open = agg.open_series();
    let start = Instant::now();
    let out = agg.close_due(due);
    let elapsed = start.elapsed();
    report_close("close, last window", open, out.len(), elapsed);
    let total: u64 = out
        .iter()
        .flat_map(|w| w.metrics.iter())
        .map(|(_, s)| s.count())
        .sum();
    assert_eq!(total, UPDATES as u64, "every update lands in the window");
    drop(out);

    // One reading per series per window, for WINDOWS consecutive windows.
    const WINDOWS: i64 = 6;
    let per_window: Vec<Vec<Reading>> = (0..WINDOWS)
        .map(|w| {
            readings
                .iter()
                .step_by(PER_SERIES)
                .map(|r| {
                    let t = Timestamp::from_millis(r.time().as_millis() + w * WINDOW_MS)?;
                    Reading::new(
                        r.device().clone(),
                        r.metric().clone(),
                        r.value(),
                        t,
                        TimeSource::Event,
                    )
                })
                .collect::<Result<_, _>>()
        })
        .collect::<Result<_, _>>()?;
    drop(readings);
    let mut agg = Aggregator::new(spec)?;
    let mut worst = Duration::ZERO;
    let mut sum = Duration::ZERO;
    for (w, batch) in (0..WINDOWS).zip(&per_window) {
        // Every reading of window w is at most 50 s into it.
        let now = Timestamp::from_millis(BASE_MS + w * WINDOW_MS + 50_000)?;
        for r in batch {
            agg.ingest(r, now)?;
        }
        if w == 0 {
            continue;
        }
        let start = Instant::now();
        let out = agg.close_due(now);
        let elapsed = start.elapsed();
        assert_eq!(out.len(), DEVICES);
        assert_eq!(agg.interned_series(), SERIES);
        drop(out);
        worst = worst.max(elapsed);
        sum += elapsed;
    }
    let closes = (WINDOWS - 1) as u32;
    report_close("close, steady state (mean)", SERIES, DEVICES, sum / closes);
    report_close("close, steady state (worst)", SERIES, DEVICES, worst);
    Ok(())
}
