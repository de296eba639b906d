//! The cross-validation procedure, shared by the `nab_cv` example and the
//! NAB regression test: fixed stratified folds, a small grid over the
//! detector's parameters, the choice made on four folds and scored on the
//! fifth, under the false-alarm limit on clean synthetic series.

#![allow(dead_code)]

use std::collections::BTreeMap;

use anomaly::detector::Params;
use anomaly::synthetic::{Clean, Rng};

use super::alarms;
use super::nab::{self, Corpus, Series};

/// The limit: false alarms per 10 000 clean readings.
pub const FALSE_ALARM_LIMIT: f64 = 0.2;
/// Folds, and the seed that deals the files into them.
pub const FOLDS: usize = 5;
const FOLD_SEED: u64 = 33;
/// Clean series per family and their length: 3 × 200 000 readings.
const CLEAN_RUNS: u64 = 3;
const CLEAN_READINGS: usize = 200_000;
/// A parameter set may be chosen only if its worst family stays within
/// this fraction of the limit on those series: the estimate from a few
/// alarms is noisy, and the bench measures on more series.
const FALSE_ALARM_MARGIN: f64 = 0.75;

/// The parameter sets searched.
pub fn grid() -> Vec<Params> {
    let mut out = Vec::new();
    for shift in [2.5, 3.0] {
        for floor in [3.5, 4.0] {
            for range in [0.05, 0.1] {
                for range_sd in [1.0, 1.5, 2.0] {
                    for novelty in [1.3, 1.6] {
                        for peak_decay in [0.9999, 0.99997, 0.99999] {
                            for range_block in [256, 512] {
                                out.push(Params {
                                    shift,
                                    floor,
                                    range,
                                    range_sd,
                                    novelty,
                                    peak_decay,
                                    range_block,
                                    ..Params::DEFAULT
                                });
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// The second family's sets (the first family at its defaults): off,
/// and each tail bar, sample size and starting vigilance.
pub fn resonance_grid() -> Vec<Params> {
    let mut out = vec![Params::DEFAULT];
    for resonance_tail in [2.0, 3.0, 4.0, 6.0] {
        for resonance_down in [2, 4, 8] {
            for resonance_vigilance in [0.85, 0.9, 0.95] {
                out.push(Params {
                    resonance_tail,
                    resonance_down,
                    resonance_vigilance,
                    ..Params::DEFAULT
                });
            }
        }
    }
    out
}

/// The discord's sets (the first family at its defaults): off, and each
/// tail bar, and sample size with window length (the span a window
/// covers: 16 to 128 readings).
pub fn discord_grid() -> Vec<Params> {
    let mut out = vec![Params::DEFAULT];
    for discord_tail in [1.2, 1.3, 1.5, 2.0] {
        for (discord_down, discord_length) in [(2, 8), (4, 8), (8, 8), (4, 16), (8, 16)] {
            out.push(Params {
                discord_tail,
                discord_down,
                discord_length,
                ..Params::DEFAULT
            });
        }
    }
    out
}

/// The second family off, and at the settings `nab_cv --resonance-grid`
/// picked for it (with the first family, then alone).
pub fn resonance_picks() -> Vec<Params> {
    let mut out = vec![Params::DEFAULT];
    for (resonance_tail, resonance_down, resonance_vigilance) in
        [(3.0, 4, 0.85), (3.0, 8, 0.9), (3.0, 2, 0.95)]
    {
        out.push(Params {
            resonance_tail,
            resonance_down,
            resonance_vigilance,
            ..Params::DEFAULT
        });
    }
    out
}

pub fn show(p: &Params) -> String {
    let mut text = format!(
        "shift {} floor {} range {} range_sd {} range_block {} novelty {} peak_decay {} jump {} quiet {} half_hour_gain {}",
        p.shift, p.floor, p.range, p.range_sd, p.range_block, p.novelty, p.peak_decay, p.jump, p.quiet, p.half_hour_gain
    );
    if !p.first_family {
        text.push_str(" first family off");
    }
    if p.resonance_tail.is_finite() {
        text.push_str(&format!(
            " resonance: tail {} down {} vigilance {}",
            p.resonance_tail, p.resonance_down, p.resonance_vigilance
        ));
    }
    if p.discord_tail.is_finite() {
        text.push_str(&format!(
            " discord: tail {} down {} length {}",
            p.discord_tail, p.discord_down, p.discord_length
        ));
    }
    if !p.unusual_levels {
        text.push_str(" unusual levels off");
    }
    if p.rate_floor < 1.0 {
        text.push_str(&format!(" rate floor {}", p.rate_floor));
    }
    text
}

pub fn show_rates(rates: &[f64]) -> String {
    Clean::ALL
        .iter()
        .zip(rates)
        .map(|(f, r)| format!("{} {r:.2}", f.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub use super::alarms::raises;

fn series_hits(s: &Series, p: &Params) -> Vec<usize> {
    raises(
        s.readings.iter().map(|r| (r.time().as_millis(), r.value())),
        p,
    )
}

/// False alarms per 10 000 readings on each clean family.
pub fn false_alarm_rates(p: &Params) -> Vec<f64> {
    Clean::ALL
        .iter()
        .map(|&family| alarms::false_alarm_rate(family, p, CLEAN_RUNS, CLEAN_READINGS))
        .collect()
}

/// Fold of each file: each folder's files, sorted then shuffled with a
/// fixed seed, are dealt in turn, continuing from where the last folder
/// stopped so the folds stay the same size.
pub fn folds(corpus: &Corpus) -> Vec<usize> {
    let mut by_family: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in corpus.series.iter().enumerate() {
        let folder = s.key.split('/').next().unwrap_or("");
        by_family.entry(folder).or_default().push(i);
    }
    let mut rng = Rng::new(FOLD_SEED);
    let mut fold = vec![0; corpus.series.len()];
    let mut deal = 0;
    for files in by_family.values_mut() {
        files.sort_by(|&a, &b| corpus.series[a].key.cmp(&corpus.series[b].key));
        for i in (1..files.len()).rev() {
            let j = (rng.uniform() * (i + 1) as f64) as usize;
            files.swap(i, j.min(i));
        }
        for &f in files.iter() {
            fold[f] = deal % FOLDS;
            deal += 1;
        }
    }
    fold
}

pub struct Fold {
    pub held_out: usize,
    pub chosen: Params,
    pub in_fold: f64,
    pub out_of_fold: f64,
}

pub struct Report {
    pub folds: Vec<Fold>,
    /// Normalised score pooled over every file, each scored with the
    /// choice made without it.
    pub out_of_fold: f64,
    /// Mean of the folds' in-fold scores.
    pub in_fold: f64,
    /// Median of the fold choices, per parameter.
    pub picked: Params,
    /// The picked set's score on all files (in-sample).
    pub picked_all: f64,
    /// Every parameter set's score on all files (in-sample) and its worst
    /// false-alarm rate where it was measured, for study.
    pub table: Vec<(f64, Option<f64>)>,
}

/// Normalised score of `files` from their raw scores.
fn normalised(raw: &[f64], windows: &[f64], files: &[usize]) -> f64 {
    let (r, w) = files
        .iter()
        .fold((0.0, 0.0), |(r, w), &f| (r + raw[f], w + windows[f]));
    100.0 * (r + w) / (2.0 * w)
}

/// Raw NAB score of every file under each parameter set, on two threads.
fn score_matrix(corpus: &Corpus, grid: &[Params]) -> Vec<Vec<f64>> {
    let work = |chunk: &[Params]| -> Vec<Vec<f64>> {
        chunk
            .iter()
            .map(|p| {
                corpus
                    .series
                    .iter()
                    .map(|s| nab::score(s, &series_hits(s, p)).total)
                    .collect()
            })
            .collect()
    };
    let half = grid.len().div_ceil(2);
    std::thread::scope(|scope| {
        let (a, b) = grid.split_at(half);
        let other = scope.spawn(|| work(b));
        let mut out = work(a);
        out.extend(other.join().unwrap_or_default());
        out
    })
}

/// Runs the whole procedure. Without `limit_false_alarms` every set of the
/// grid may be chosen.
///
/// The clean series are the slow part (3 × 200 000 readings per family
/// per set), so a set's false alarms are measured only when it is a
/// fold's best remaining candidate: each fold walks its sets from the
/// highest in-fold score down (ties in grid order, as a full scan would
/// break them) and takes the first within the limit. The choice is the
/// one an eager check of every set would make, at a few sets' cost.
pub fn run(corpus: &Corpus, grid: &[Params], limit_false_alarms: bool) -> Report {
    run_folds(corpus, grid, limit_false_alarms, &folds(corpus))
}

/// Fold of each file when each NAB family is held out in turn (the
/// artificial files, AWS, ad exchange, known causes, traffic, tweets): a
/// harsher test than [`folds`], whose every fold holds files like those it
/// was chosen on.
pub fn family_folds(corpus: &Corpus) -> Vec<usize> {
    let names: Vec<&str> = corpus.series.iter().map(|s| nab::family(&s.key)).collect();
    let mut distinct = names.clone();
    distinct.sort_unstable();
    distinct.dedup();
    names
        .iter()
        .map(|n| distinct.iter().position(|d| d == n).unwrap_or(0))
        .collect()
}

/// [`run`] with these folds (numbered from 0).
pub fn run_folds(
    corpus: &Corpus,
    grid: &[Params],
    limit_false_alarms: bool,
    fold_of: &[usize],
) -> Report {
    let mut worst_rate: Vec<Option<f64>> = vec![None; grid.len()];
    let raw = score_matrix(corpus, grid);
    let windows: Vec<f64> = corpus
        .series
        .iter()
        .map(|s| s.windows.len() as f64)
        .collect();
    let mut folds = Vec::new();
    let mut oof_raw = vec![0.0; corpus.series.len()];
    let fold_count = fold_of.iter().max().map_or(0, |m| m + 1);
    for k in 0..fold_count {
        let train: Vec<usize> = (0..fold_of.len()).filter(|&f| fold_of[f] != k).collect();
        let test: Vec<usize> = (0..fold_of.len()).filter(|&f| fold_of[f] == k).collect();
        let mut ranked: Vec<(f64, usize)> = (0..grid.len())
            .map(|g| (normalised(&raw[g], &windows, &train), g))
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let best = ranked.into_iter().find(|&(_, g)| {
            if !limit_false_alarms {
                return true;
            }
            let rate = *worst_rate[g]
                .get_or_insert_with(|| false_alarm_rates(&grid[g]).into_iter().fold(0.0, f64::max));
            rate <= FALSE_ALARM_MARGIN * FALSE_ALARM_LIMIT
        });
        let Some((in_fold, g)) = best else {
            continue;
        };
        for &f in &test {
            oof_raw[f] = raw[g][f];
        }
        folds.push(Fold {
            held_out: test.len(),
            chosen: grid[g],
            in_fold,
            out_of_fold: normalised(&raw[g], &windows, &test),
        });
    }
    let all: Vec<usize> = (0..corpus.series.len()).collect();
    let out_of_fold = normalised(&oof_raw, &windows, &all);
    let in_fold = folds.iter().map(|f| f.in_fold).sum::<f64>() / folds.len().max(1) as f64;
    let median = |get: fn(&Params) -> f64| {
        let mut v: Vec<f64> = folds.iter().map(|f| get(&f.chosen)).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let picked = Params {
        shift: median(|p| p.shift),
        floor: median(|p| p.floor),
        range: median(|p| p.range),
        range_sd: median(|p| p.range_sd),
        novelty: median(|p| p.novelty),
        jump: median(|p| p.jump),
        range_block: median(|p| f64::from(p.range_block)) as u32,
        peak_decay: median(|p| p.peak_decay),
        quiet: median(|p| p.quiet as f64) as u64,
        half_hour_gain: median(|p| p.half_hour_gain),
        first_family: folds.first().is_none_or(|f| f.chosen.first_family),
        rate_floor: median(|p| p.rate_floor),
        unusual_levels: median(|p| f64::from(u8::from(p.unusual_levels))) > 0.5,
        resonance_tail: median(|p| p.resonance_tail),
        resonance_down: median(|p| f64::from(p.resonance_down)) as u32,
        resonance_vigilance: median(|p| p.resonance_vigilance),
        discord_tail: median(|p| p.discord_tail),
        discord_down: median(|p| f64::from(p.discord_down)) as u32,
        discord_length: median(|p| p.discord_length as f64) as usize,
    };
    let picked_all = match grid.iter().position(|p| *p == picked) {
        Some(g) => normalised(&raw[g], &windows, &all),
        None => normalised(&score_matrix(corpus, &[picked])[0], &windows, &all),
    };
    let table = raw
        .iter()
        .zip(&worst_rate)
        .map(|(r, &fa)| (normalised(r, &windows, &all), fa))
        .collect();
    Report {
        table,
        folds,
        out_of_fold,
        in_fold,
        picked,
        picked_all,
    }
}
