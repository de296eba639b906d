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
//! cargo run --release -p rules --example nab_style_faults -- ../shared/data/nab [--seeds N] [--from SEED] [--show]
//! ```
//!
//! Seeds 1-5 are the development set; later seeds are fresh draws.

#[path = "../tests/support/alarms.rs"]
mod alarms;
#[path = "../tests/support/nab.rs"]
mod nab;

use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};

use anomaly::detector::Params;
use anomaly::synthetic::Rng;

/// Readings a day in NAB's artificial files (one every 5 minutes).
const DAY: usize = 288;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    FlatDay,
    HighsLower,
    DayLower,
    DenserSpikes,
    SpikeBurst,
}

impl Fault {
    const ALL: [Self; 5] = [
        Self::FlatDay,
        Self::HighsLower,
        Self::DayLower,
        Self::DenserSpikes,
        Self::SpikeBurst,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::FlatDay => "pattern flat for a day",
            Self::HighsLower => "daily highs lower",
            Self::DayLower => "whole day lower",
            Self::DenserSpikes => "spikes 4x as dense",
            Self::SpikeBurst => "burst of tall spikes",
        }
    }

    /// A flat line and plain noise have no pattern to lose or highs to
    /// lower.
    fn applies_to(self, daily: bool) -> bool {
        daily || !matches!(self, Self::FlatDay | Self::HighsLower)
    }
}

/// The clean files, and whether each follows a daily pattern.
const BASES: [(&str, bool); 5] = [
    ("art_daily_no_noise.csv", true),
    ("art_daily_small_noise.csv", true),
    ("art_daily_perfect_square_wave.csv", true),
    ("art_flatline.csv", false),
    ("art_noisy.csv", false),
];

fn load(path: &Path) -> Result<Vec<(i64, f64)>, Box<dyn Error>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut rows = Vec::new();
    for line in text.lines().skip(1) {
        let Some((t, v)) = line.split_once(',') else {
            continue;
        };
        let ms = nab::parse_ms(t.trim()).ok_or("bad timestamp")?;
        rows.push((ms, v.trim().parse::<f64>()?));
    }
    Ok(rows)
}

/// `clean` with `fault` laid over it from a seeded onset on day 9 to 11,
/// and the fault's label window.
fn faulty(clean: &[(i64, f64)], fault: Fault, seed: u64) -> (Vec<(i64, f64)>, (usize, usize)) {
    let mut rng = Rng::new(seed.wrapping_mul(0x5851_F42D).wrapping_add(fault as u64));
    let n = clean.len();
    let values: Vec<f64> = clean.iter().map(|r| r.1).collect();
    let (lo, hi) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    let mean = values.iter().sum::<f64>() / n.max(1) as f64;
    // A flat line has no range: its faults are sized by its level.
    let scale = (hi - lo).max(0.2 * mean.abs()).max(1.0);
    let onset = 9 * DAY + (rng.uniform() * 2.0 * DAY as f64) as usize;
    let day = onset..(onset + DAY).min(n);
    let mut xs = values.clone();
    match fault {
        Fault::FlatDay => xs[day].iter_mut().for_each(|x| *x = mean),
        Fault::HighsLower => {
            let mid = lo + (hi - lo) / 2.0;
            xs[day]
                .iter_mut()
                .filter(|x| **x > mid)
                .for_each(|x| *x = (*x - scale / 3.0).max(mid));
        }
        Fault::DayLower => xs[day].iter_mut().for_each(|x| *x -= scale / 4.0),
        Fault::DenserSpikes => {
            // A spike every 150-250 readings from the start, every 37-62
            // from the onset to the end.
            let mut i = (rng.uniform() * 200.0) as usize;
            while i < n {
                xs[i] += scale / 2.0;
                let gap = 150.0 + rng.uniform() * 100.0;
                i += if i >= onset { gap / 4.0 } else { gap } as usize;
            }
        }
        Fault::SpikeBurst => {
            for k in 0..10 {
                if let Some(x) = xs.get_mut(onset + 2 * k) {
                    *x += scale;
                }
            }
        }
    }
    let half = n / 20;
    let window = (onset.saturating_sub(half), (onset + half).min(n - 1));
    let rows = clean.iter().zip(xs).map(|(r, x)| (r.0, x)).collect();
    (rows, window)
}

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
    let p = Params::DEFAULT;
    let mut by_fault: BTreeMap<&str, Row> = BTreeMap::new();
    let mut by_base: BTreeMap<&str, Row> = BTreeMap::new();
    let mut total = Row::default();
    for (file, daily) in BASES {
        let clean = load(&dir.join("artificialNoAnomaly").join(file))?;
        for fault in Fault::ALL.into_iter().filter(|f| f.applies_to(daily)) {
            for seed in from..from + seeds {
                let (rows, window) = faulty(&clean, fault, seed);
                let hits = alarms::raises(rows.iter().copied(), &p);
                let s = nab::score_rows(rows.len(), &[window], &hits);
                if show {
                    println!(
                        "  {file} {} seed {seed}: window {window:?} alerts {hits:?}",
                        fault.name()
                    );
                }
                by_fault
                    .entry(fault.name())
                    .or_default()
                    .add(s.total, s.caught, s.false_alarms);
                by_base
                    .entry(file)
                    .or_default()
                    .add(s.total, s.caught, s.false_alarms);
                total.add(s.total, s.caught, s.false_alarms);
            }
        }
    }
    for (name, row) in by_fault.iter().chain(&by_base) {
        row.show(name);
    }
    total.show("ALL NAB-style faults");
    Ok(())
}
