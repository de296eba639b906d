//! NAB-style faults: NAB's clean artificial files with one seeded fault
//! laid over each, labelled as NAB labels its own artificial files (a
//! window of a tenth of the file centred on the onset). Shared by the
//! `nab_style_faults` example and the NAB regression guard.

#![allow(dead_code)]

use std::error::Error;
use std::path::Path;

use anomaly::detector::Params;
use anomaly::synthetic::Rng;

use crate::{alarms, nab};

/// Readings a day in NAB's artificial files (one every 5 minutes).
pub const DAY: usize = 288;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    FlatDay,
    HighsLower,
    DayLower,
    DenserSpikes,
    SpikeBurst,
}

impl Fault {
    pub const ALL: [Self; 5] = [
        Self::FlatDay,
        Self::HighsLower,
        Self::DayLower,
        Self::DenserSpikes,
        Self::SpikeBurst,
    ];

    pub fn name(self) -> &'static str {
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
    pub fn applies_to(self, daily: bool) -> bool {
        daily || !matches!(self, Self::FlatDay | Self::HighsLower)
    }
}

/// The clean files, and whether each follows a daily pattern.
pub const BASES: [(&str, bool); 5] = [
    ("art_daily_no_noise.csv", true),
    ("art_daily_small_noise.csv", true),
    ("art_daily_perfect_square_wave.csv", true),
    ("art_flatline.csv", false),
    ("art_noisy.csv", false),
];

pub fn load(path: &Path) -> Result<Vec<(i64, f64)>, Box<dyn Error>> {
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
pub fn faulty(clean: &[(i64, f64)], fault: Fault, seed: u64) -> (Vec<(i64, f64)>, (usize, usize)) {
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

/// One fault on one clean file, as the detector met it.
pub struct Draw {
    pub file: &'static str,
    pub fault: Fault,
    pub seed: u64,
    pub window: (usize, usize),
    pub hits: Vec<usize>,
    pub score: nab::Score,
}

/// Every fault on every clean file that it applies to, for seeds
/// `from..from + seeds`, scored with the parameters `p`.
pub fn draws(dir: &Path, from: u64, seeds: u64, p: &Params) -> Result<Vec<Draw>, Box<dyn Error>> {
    let mut out = Vec::new();
    for (file, daily) in BASES {
        let clean = load(&dir.join("artificialNoAnomaly").join(file))?;
        for fault in Fault::ALL.into_iter().filter(|f| f.applies_to(daily)) {
            for seed in from..from + seeds {
                let (rows, window) = faulty(&clean, fault, seed);
                let hits = alarms::raises(rows.iter().copied(), p);
                let score = nab::score_rows(rows.len(), &[window], &hits);
                out.push(Draw {
                    file,
                    fault,
                    seed,
                    window,
                    hits,
                    score,
                });
            }
        }
    }
    Ok(out)
}

/// NAB's normalised score over the draws: 0 for a detector that never
/// fires, 100 for one that catches each fault at its window's start.
pub fn normalised<'a>(draws: impl IntoIterator<Item = &'a Draw>) -> f64 {
    let (raw, windows) = draws
        .into_iter()
        .fold((0.0, 0.0), |(r, w), d| (r + d.score.total, w + 1.0));
    100.0 * (raw + windows) / (2.0 * windows)
}
