//! Runs the detector over seeded synthetic series and prints, per shape,
//! how many of the runs detected the anomaly, the median delay, and the
//! false alarms per 10 000 readings.
//!
//! ```text
//! cargo run -p anomaly --release --example synthetic [-- --sensitivity S] [--readings N]
//! ```

use anomaly::synthetic::{series, Shape};
use anomaly::{Detector, DEFAULT_SENSITIVITY};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sensitivity = args
        .iter()
        .position(|a| a == "--sensitivity")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SENSITIVITY);
    let n: usize = args
        .iter()
        .position(|a| a == "--readings")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let (at, runs) = (n * 3 / 5, 20u64);
    let shapes = [
        ("clean noise", Shape::Clean),
        ("level shift +4σ", Shape::LevelShift(4.0)),
        ("level shift -3σ", Shape::LevelShift(-3.0)),
        ("spike +8σ", Shape::Spike(8.0)),
        ("drift +6σ / 500", Shape::Drift(6.0)),
        ("noise ×3", Shape::NoiseChange(3.0)),
    ];
    for (name, shape) in shapes {
        let (mut hits, mut delays, mut false_alarms) = (0, Vec::new(), 0);
        for seed in 1..=runs {
            let mut det = Detector::new();
            let mut found = None;
            for (i, x) in series(seed, n, at, shape).into_iter().enumerate() {
                let v = det.observe(i as i64 * 60_000, x, sensitivity);
                if !v.anomaly {
                    continue;
                }
                if shape != Shape::Clean && i >= at && i < at + 1000 && found.is_none() {
                    found = Some(i - at);
                } else if i >= 750 {
                    false_alarms += 1;
                }
            }
            if let Some(d) = found {
                hits += 1;
                delays.push(d);
            }
        }
        delays.sort_unstable();
        let median = delays
            .get(delays.len() / 2)
            .map_or("-".into(), |d| d.to_string());
        let rate = false_alarms as f64 * 10_000.0 / ((n - 750) as f64 * runs as f64);
        println!("{name:<18} detected {hits:>2}/{runs}  median delay {median:>4}  false alarms per 10k readings {rate:.2}");
    }
}
