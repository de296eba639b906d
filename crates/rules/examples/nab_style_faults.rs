//! The detector on NAB-style faults: NAB's clean artificial files (daily
//! square-ish waves with and without noise, a flat line, plain noise) with
//! one seeded fault laid over each, labelled and scored as NAB labels and
//! scores its own artificial files (a window of a tenth of the file
//! centred on the onset, standard profile). NAB keeps some artificial files
//! with anomalies from its public set; these are the same kinds of fault
//! built from the files that are public, so that they can be measured,
//! never tuned on: the pattern flat for a day, the daily highs a third of
//! the range lower, the whole day a quarter lower, spikes four times as
//! dense, a burst of tall spikes.
//!
//! ```text
//! cargo run --release -p rules --example nab_style_faults -- ../shared/data/nab [--seeds N] [--from SEED] [--show] [--resonance TAIL,DOWN,VIGILANCE] [--alone]
//! ```
//!
//! `--resonance` turns the second family (the adaptive-resonance
//! categoriser) on with these settings; `--alone` turns the first family
//! off, to measure the second alone.
//!
//! Seeds 1-5 are the development set; later seeds are fresh draws.

#[path = "../tests/support/alarms.rs"]
mod alarms;
#[path = "../tests/support/nab.rs"]
mod nab;
#[path = "../tests/support/nab_style.rs"]
mod nab_style;

use std::collections::BTreeMap;
use std::error::Error;
use std::path::PathBuf;

#[derive(Default)]
struct Row {
    raw: f64,
    windows: f64,
    caught: usize,
    false_alarms: usize,
}

impl Row {
    fn add(&mut self, raw: f64, caught: usize, false_alarms: usize) {
        self.raw += raw;
        self.windows += 1.0;
        self.caught += caught;
        self.false_alarms += false_alarms;
    }

    fn show(&self, name: &str) {
        println!(
            "{name:36} {:6.1}  caught {}/{}  false alarms {}",
            100.0 * (self.raw + self.windows) / (2.0 * self.windows),
            self.caught,
            self.windows,
            self.false_alarms
        );
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let dir = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("NAB_DATA").map(PathBuf::from))
        .ok_or(
            "usage: nab_style_faults <NAB corpus directory> [--seeds N] [--from SEED] [--show]",
        )?;
    let seeds: u64 = opt("--seeds").map_or(Ok(5), |s| s.parse())?;
    let from: u64 = opt("--from").map_or(Ok(1), |s| s.parse())?;
    let show = args.iter().any(|a| a == "--show");
    let p = alarms::params_from_args()?;
    let mut by_fault: BTreeMap<&str, Row> = BTreeMap::new();
    let mut by_base: BTreeMap<&str, Row> = BTreeMap::new();
    let mut total = Row::default();
    for d in nab_style::draws(&dir, from, seeds, &p)? {
        if show {
            println!(
                "  {} {} seed {}: window {:?} alerts {:?}",
                d.file,
                d.fault.name(),
                d.seed,
                d.window,
                d.hits
            );
        }
        let (raw, caught, false_alarms) = (d.score.total, d.score.caught, d.score.false_alarms);
        by_fault
            .entry(d.fault.name())
            .or_default()
            .add(raw, caught, false_alarms);
        by_base
            .entry(d.file)
            .or_default()
            .add(raw, caught, false_alarms);
        total.add(raw, caught, false_alarms);
    }
    for (name, row) in by_fault.iter().chain(&by_base) {
        row.show(name);
    }
    total.show("ALL NAB-style faults");
    Ok(())
}
