//! Detector cost per reading and memory per series.
//!
//! ```text
//! cargo bench -p anomaly --bench detector
//! ```

use std::hint::black_box;
use std::time::Instant;

use anomaly::synthetic::{series, Shape};
use anomaly::{Detector, DEFAULT_SENSITIVITY};

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
}
