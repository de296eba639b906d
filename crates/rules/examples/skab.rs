//! The external check: the anomaly detector's NAB score on SKAB, a
//! test rig's pump, valves, pressures, temperatures and flow with labelled
//! faults, a corpus no default is chosen on (see `tests/support/skab.rs`
//! for how its files become series and windows).
//!
//! ```text
//! SKAB_DATA=/work/shared/data/skab cargo run --release -p rules --example skab [-- --quiet] [--resonance TAIL,DOWN,VIGILANCE] [--alone]
//! ```
//!
//! `--resonance` turns the second family on, `--alone` the first off.
//!
//! Prints each series' score (the maximum is its number of windows), the
//! normalised score per channel and over every series, and the score of
//! the rig as one rule over all its channels sees it.

use std::collections::BTreeMap;
use std::error::Error;
use std::path::PathBuf;

#[path = "../tests/support/alarms.rs"]
mod alarms;
#[path = "../tests/support/nab.rs"]
mod nab;
#[path = "../tests/support/skab.rs"]
mod skab;

fn main() -> Result<(), Box<dyn Error>> {
    let dir = std::env::var_os("SKAB_DATA")
        .map(PathBuf::from)
        .or_else(|| std::env::args_os().nth(1).map(PathBuf::from))
        .ok_or(
            "set SKAB_DATA to the SKAB data (its valve1, valve2, other and anomaly-free folders)",
        )?;
    let quiet = std::env::args().any(|a| a == "--quiet");
    let series = skab::load(&dir)?;
    let p = alarms::params_from_args()?;
    let scored = skab::score(&series, |s| {
        alarms::raises(
            s.readings.iter().map(|r| (r.time().as_millis(), r.value())),
            &p,
        )
    });
    let mut channels: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for (s, &(raw, caught, fps, alerts)) in series.iter().zip(&scored.per_series) {
        if !quiet {
            println!(
                "{:40} {raw:7.3} windows {:2} caught {caught:2} fp {fps:2} alerts {alerts:2} ({} readings)",
                s.key,
                s.windows.len(),
                s.readings.len()
            );
        }
        let channel = s.key.split('/').nth(1).unwrap_or("");
        let acc = channels.entry(channel).or_default();
        acc.0 += raw;
        acc.1 += s.windows.len() as f64;
    }
    for (channel, (raw, windows)) in &channels {
        println!(
            "{channel:24} {:6.1}",
            100.0 * (raw + windows) / (2.0 * windows)
        );
    }
    println!(
        "SKAB, every channel a series: {:.1}   the rig, alerts of any channel: {:.1}   ({} series, {} windows)",
        scored.channels,
        scored.rig,
        series.len(),
        series.iter().map(|s| s.windows.len()).sum::<usize>()
    );
    Ok(())
}
