//! The detector on NAB's files changed in ways that should not matter
//! much: values in other units (scaled, shifted) or mirrored (each rise
//! a fall), the clock started at
//! another hour or weekday, readings stamped a little late or early, the
//! series read half as often, the recording started later, rows missing
//! (a sensor or a collector down for a while; "windows spared" keeps the
//! anomalies' own rows, so that only the gaps are measured). A detector
//! that generalises scores about the same on each; a large drop is
//! something it learned about the 45 files (their units, their hours,
//! their rate, their histories) rather than about anomalies, which other
//! series will not share. Label windows follow their rows; random
//! changes are drawn `--draws` times (5) and their scores averaged.
//! `--show FILE` prints that file's alerts, windows and gaps under each
//! change (the first draw).
//!
//! ```text
//! NAB_DATA=/work/shared/data/nab cargo run --release -p rules --example nab_perturbed [-- --quiet] [--draws N] [--show FILE] [--rate-floor F] [--resonance TAIL,DOWN,VIGILANCE] [--alone]
//! ```

use std::error::Error;
use std::path::PathBuf;

use anomaly::synthetic::Rng;

#[path = "../tests/support/alarms.rs"]
mod alarms;
#[path = "../tests/support/nab.rs"]
mod nab;

type Rows = Vec<(i64, f64)>;
/// Label windows, as row indices (inclusive).
type Windows = [(usize, usize)];
/// The rows a change made, and for each the row it came from.
type Changed = (Rows, Vec<usize>);

/// One change to a file: its rows, and the row each kept row came from.
struct Perturbation {
    name: &'static str,
    /// Drawn at random (rows lost, stamps moved): measured over several
    /// draws.
    seeded: bool,
    apply: fn(&Rows, u64, &Windows) -> Changed,
}

fn same_rows(rows: &Rows) -> Vec<usize> {
    (0..rows.len()).collect()
}

fn map_values(rows: &Rows, f: impl Fn(f64, f64, f64) -> f64) -> Changed {
    let (lo, hi) = rows.iter().fold((f64::MAX, f64::MIN), |(lo, hi), r| {
        (lo.min(r.1), hi.max(r.1))
    });
    (
        rows.iter().map(|&(t, x)| (t, f(x, lo, hi))).collect(),
        same_rows(rows),
    )
}

fn shift_time(rows: &Rows, ms: i64) -> Changed {
    (
        rows.iter().map(|&(t, x)| (t + ms, x)).collect(),
        same_rows(rows),
    )
}

/// Drops runs of `min..max` rows, each starting with probability `p` at
/// a row, the way a collector that was down loses them.
fn drop_runs(rows: &Rows, seed: u64, p: f64, min: usize, max: usize) -> Changed {
    drop_runs_sparing(rows, seed, p, min, max, &[])
}

/// [`drop_runs`], no run starting in a label window or ending inside one,
/// so that only the detector's handling of the gaps is measured, not the
/// loss of the anomaly's own rows.
fn drop_runs_sparing(
    rows: &Rows,
    seed: u64,
    p: f64,
    min: usize,
    max: usize,
    spared: &[(usize, usize)],
) -> Changed {
    let mut rng = Rng::new(seed);
    let (mut kept, mut from) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < rows.len() {
        let run = min + (rng.uniform() * (max - min) as f64) as usize;
        let hits_window = spared.iter().any(|&(a, b)| i <= b && i + run >= a);
        if rng.uniform() < p && !hits_window {
            i += run;
            continue;
        }
        kept.push(rows[i]);
        from.push(i);
        i += 1;
    }
    (kept, from)
}

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

const PERTURBATIONS: &[Perturbation] = &[
    Perturbation {
        name: "as published",
        seeded: false,
        apply: |r, _, _| (r.clone(), same_rows(r)),
    },
    Perturbation {
        name: "values x 1000",
        seeded: false,
        apply: |r, _, _| map_values(r, |x, _, _| x * 1000.0),
    },
    Perturbation {
        name: "values / 1000",
        seeded: false,
        apply: |r, _, _| map_values(r, |x, _, _| x / 1000.0),
    },
    Perturbation {
        name: "values + 10 ranges",
        seeded: false,
        apply: |r, _, _| map_values(r, |x, lo, hi| x + 10.0 * (hi - lo).max(1.0)),
    },
    Perturbation {
        name: "values - 1000 ranges",
        seeded: false,
        apply: |r, _, _| map_values(r, |x, lo, hi| x - 1000.0 * (hi - lo).max(1.0)),
    },
    Perturbation {
        // A rise becomes a fall: a building's faults go either way (a
        // fridge warms, a boiler's flow cools), and NAB's are mostly up.
        name: "values mirrored (a rise is a fall)",
        seeded: false,
        apply: |r, _, _| map_values(r, |x, lo, hi| hi + lo - x),
    },
    Perturbation {
        name: "clock + 7 h",
        seeded: false,
        apply: |r, _, _| shift_time(r, 7 * HOUR),
    },
    Perturbation {
        name: "clock + 3 days 5 h",
        seeded: false,
        apply: |r, _, _| shift_time(r, 77 * HOUR),
    },
    Perturbation {
        name: "clock - 11 h",
        seeded: false,
        apply: |r, _, _| shift_time(r, -11 * HOUR),
    },
    Perturbation {
        name: "stamps jittered +-40 s",
        seeded: true,
        apply: |r, seed, _| {
            let mut rng = Rng::new(seed);
            (
                r.iter()
                    .map(|&(t, x)| (t + ((rng.uniform() - 0.5) * 80_000.0) as i64, x))
                    .collect(),
                same_rows(r),
            )
        },
    },
    Perturbation {
        name: "read half as often (pairs averaged)",
        seeded: false,
        apply: |r, _, _| {
            // As a collector averaging over twice the period reports it.
            let from: Vec<usize> = (1..r.len()).step_by(2).collect();
            (
                from.iter()
                    .map(|&i| (r[i].0, 0.5 * (r[i - 1].1 + r[i].1)))
                    .collect(),
                from,
            )
        },
    },
    Perturbation {
        name: "read half as often (every 2nd row)",
        seeded: false,
        apply: |r, _, _| {
            let from: Vec<usize> = (0..r.len()).step_by(2).collect();
            (from.iter().map(|&i| r[i]).collect(), from)
        },
    },
    Perturbation {
        name: "started later (a fifth, before any window)",
        seeded: false,
        apply: |r, _, w| {
            // A fifth of the file, but never a window's rows nor a
            // probation's worth before the first window.
            let first = w.iter().map(|&(a, _)| a).min().unwrap_or(r.len());
            let probation = (r.len() as f64 * 0.15).min(750.0) as usize;
            let skip = (r.len() / 5).min(first.saturating_sub(probation + 50));
            ((r[skip..]).to_vec(), (skip..r.len()).collect())
        },
    },
    Perturbation {
        name: "1 row in 50 lost",
        seeded: true,
        apply: |r, seed, _| drop_runs(r, seed, 0.02, 1, 2),
    },
    Perturbation {
        name: "the same, windows spared",
        seeded: true,
        apply: |r, seed, w| drop_runs_sparing(r, seed, 0.02, 1, 2, w),
    },
    Perturbation {
        name: "outages of 6-60 rows (~5%)",
        seeded: true,
        apply: |r, seed, _| drop_runs(r, seed, 0.0015, 6, 60),
    },
    Perturbation {
        name: "the same, windows spared",
        seeded: true,
        apply: |r, seed, w| drop_runs_sparing(r, seed, 0.0015, 6, 60, w),
    },
    Perturbation {
        name: "outages of 1-3 days (~10%)",
        seeded: true,
        apply: |r, seed, _| drop_runs(r, seed, 0.0002, 288, 864),
    },
    Perturbation {
        name: "the same, windows spared",
        seeded: true,
        apply: |r, seed, w| drop_runs_sparing(r, seed, 0.0002, 288, 864, w),
    },
];

/// The label windows of `s` on the rows kept (`from[k]` is row k's
/// original row); a window whose rows were all lost is dropped.
fn windows_on(s: &nab::Series, from: &[usize]) -> Vec<(usize, usize)> {
    s.windows
        .iter()
        .filter_map(|&(a, b)| {
            let first = from.iter().position(|&i| i >= a)?;
            let last = from.iter().rposition(|&i| i <= b)?;
            (first <= last).then_some((first, last))
        })
        .collect()
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = std::env::var_os("NAB_DATA")
        .map(PathBuf::from)
        .ok_or("set NAB_DATA to the NAB development data")?;
    let args: Vec<String> = std::env::args().collect();
    let quiet = args.iter().any(|a| a == "--quiet");
    // `--show FILE`: that file's alerts, windows and lost rows under each
    // change, to see why it moved.
    let show = args
        .iter()
        .position(|a| a == "--show")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let p = alarms::params_from_args()?;
    let corpus = nab::Corpus::load(&dir, "")?;
    let as_published: Vec<f64> = corpus
        .series
        .iter()
        .map(|s| {
            let hits = alarms::raises(
                s.readings.iter().map(|r| (r.time().as_millis(), r.value())),
                &p,
            );
            nab::score(s, &hits).total
        })
        .collect();
    let draws: u64 = args
        .iter()
        .position(|a| a == "--draws")
        .and_then(|i| args.get(i + 1))
        .map_or(Ok(5), |n| n.parse())?;
    println!(
        "{:44} {:>6} {:>11} {:>8} {:>8} {:>8}",
        "change (random ones: mean of the draws)", "NAB", "draws", "caught", "outside", "windows"
    );
    for pert in PERTURBATIONS {
        // A random change is drawn `draws` times: one draw's figure moves
        // by a point or two with which rows it took.
        let runs = if pert.seeded { draws } else { 1 };
        let mut scores = Vec::new();
        let (mut caught, mut outside, mut windows) = (0, 0, 0);
        let mut moved = Vec::new();
        for draw in 0..runs {
            let (mut raw, mut null, mut perfect) = (0.0, 0.0, 0.0);
            for (k, s) in corpus.series.iter().enumerate() {
                let rows: Rows = s
                    .readings
                    .iter()
                    .map(|r| (r.time().as_millis(), r.value()))
                    .collect();
                let seed = 7 + k as u64 + 1000 * draw;
                let (rows, from) = (pert.apply)(&rows, seed, &s.windows);
                let wins = windows_on(s, &from);
                let hits = alarms::raises(rows.iter().copied(), &p);
                // The published file's probation, on the rows that are left.
                let published_probation = nab::probation_of(s.readings.len());
                let probation = from.partition_point(|&row| row < published_probation);
                let score = nab::score_after_probation(rows.len(), probation, &wins, &hits);
                if draw == 0 && show.as_deref().is_some_and(|f| s.key.contains(f)) {
                    let lost: Vec<(usize, usize)> = from
                        .windows(2)
                        .enumerate()
                        .filter(|(_, w)| w[1] > w[0] + 1)
                        .map(|(k, w)| (k + 1, w[1] - w[0] - 1))
                        .collect();
                    println!(
                        "    {}: windows {wins:?} alerts {hits:?} gaps (at row, rows lost) {lost:?}",
                        s.key
                    );
                }
                raw += score.total;
                null -= wins.len() as f64;
                perfect += wins.len() as f64;
                caught += score.caught;
                outside += score.false_alarms;
                windows += wins.len();
                if draw == 0 && (score.total - as_published[k]).abs() > 0.3 {
                    moved.push((s.key.clone(), as_published[k], score.total, hits.len()));
                }
            }
            scores.push(100.0 * (raw - null) / (perfect - null));
        }
        let mean = scores.iter().sum::<f64>() / scores.len() as f64;
        let (lo, hi) = scores
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        let spread = if runs > 1 {
            format!("{lo:.1}-{hi:.1}")
        } else {
            String::new()
        };
        let per_draw = |x: usize| x as f64 / runs as f64;
        println!(
            "{:44} {mean:6.1} {spread:>11} {:>8.1} {:>8.1} {:>8.1}",
            pert.name,
            per_draw(caught),
            per_draw(outside),
            per_draw(windows)
        );
        if !quiet {
            for (key, before, after, alerts) in moved {
                println!("    {key:58} {before:7.3} -> {after:7.3} ({alerts} alerts, first draw)");
            }
        }
    }
    Ok(())
}
