//! False alarms per 10 000 readings of long clean series, at the default
//! sensitivity, against the limit: white noise, a random walk, daily and
//! weekly patterns with noise (the office's week read every 5 minutes and
//! every minute), and set-point changes that settle (the
//! first alert within 500 readings of a change is a detection of it, not
//! a false alarm; any other alert is one).
//!
//! ```text
//! cargo bench -p rules --bench false_alarms [-- --resonance TAIL,DOWN,VIGILANCE] [--alone]
//! ```
//!
//! `--resonance` turns the second family on, `--alone` the first off.

#[path = "../tests/support/alarms.rs"]
mod alarms;

use alarms::false_alarm_rate;
use anomaly::synthetic::Clean;
use anomaly::DEFAULT_SENSITIVITY;

/// The issue's limit, per 10 000 readings.
const LIMIT: f64 = 0.2;
/// Seeded runs per family, and readings per run (a minute-by-minute
/// series: 5 runs of 200 000 readings is about two years of one sensor).
const RUNS: u64 = 5;
const READINGS: usize = 200_000;

fn main() {
    let p = match alarms::params_from_args() {
        Ok(p) => p.at_sensitivity(DEFAULT_SENSITIVITY),
        Err(e) => {
            eprintln!("{e}");
            return;
        }
    };
    let mut worst: f64 = 0.0;
    for family in Clean::ALL {
        let rate = false_alarm_rate(family, &p, RUNS, READINGS);
        worst = worst.max(rate);
        println!(
            "{:28} {rate:.2} false alarms per 10 000 readings ({RUNS} × {READINGS} readings; limit {LIMIT}: {})",
            family.name(),
            if rate <= LIMIT { "within" } else { "OVER" }
        );
    }
    println!(
        "worst family: {worst:.2} per 10 000 readings (limit {LIMIT}: {})",
        if worst <= LIMIT { "within" } else { "OVER" }
    );
}
