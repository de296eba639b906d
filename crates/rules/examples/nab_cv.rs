//! Cross-validation of the anomaly detector's defaults on the NAB
//! development files: the figure that says whether a default generalises.
//!
//! ```text
//! NAB_DATA=/work/shared/data/nab [SKAB_DATA=/work/shared/data/skab] cargo run --release -p rules --example nab_cv
//! ```
//!
//! The 45 files are dealt into 5 fixed folds, stratified by NAB family (each
//! folder's files shuffled with a fixed seed, then dealt in turn). For each
//! fold, every parameter set of a small grid is scored (NAB standard
//! profile, normalised, the scorer of `tests/support/nab.rs`, a port of
//! `nab_score.py`) on the other four folds; the best one whose false
//! alarms on the clean synthetic series stay within the limit is then
//! scored on the held-out fold. It prints, per fold, the choice, its
//! in-fold and out-of-fold scores; overall, the pooled out-of-fold score,
//! the mean in-fold score and the gap; and the default the procedure picks
//! (the median of the five choices, per parameter), which must be
//! `Params::DEFAULT`. It then runs the same procedure with each NAB family
//! held out in turn (a harsher split: no fold holds files like those its
//! choice was made on) and, where `SKAB_DATA` names SKAB's data, prints
//! the defaults' score on that external corpus beside them.

use std::error::Error;
use std::path::PathBuf;

#[path = "../tests/support/alarms.rs"]
mod alarms;
#[path = "../tests/support/cv.rs"]
mod cv;
#[path = "../tests/support/nab.rs"]
mod nab;
#[path = "../tests/support/skab.rs"]
mod skab;

use anomaly::detector::Params;

fn main() -> Result<(), Box<dyn Error>> {
    let dir = std::env::var_os("NAB_DATA")
        .map(PathBuf::from)
        .or_else(|| std::env::args_os().nth(1).map(PathBuf::from))
        .ok_or("set NAB_DATA to the NAB development data (windows.json and the folders)")?;
    if std::env::args().any(|a| a == "--false-alarms") {
        // The clean synthetic families alone, for every parameter set (or
        // for the families the other flags select, if any).
        let asked = alarms::params_from_args()?;
        let sets = if asked == Params::DEFAULT {
            cv::grid()
        } else {
            vec![asked]
        };
        for p in sets {
            println!(
                "{}: {}",
                cv::show(&p),
                cv::show_rates(&cv::false_alarm_rates(&p))
            );
        }
        return Ok(());
    }
    let corpus = nab::Corpus::load(&dir, "")?;
    if std::env::args().any(|a| a == "--resonance-grid") {
        return second_family(&corpus, &cv::resonance_grid());
    }
    if std::env::args().any(|a| a == "--discord-grid") {
        return second_family(&corpus, &cv::discord_grid());
    }
    // `--resonance TAIL,DOWN,VIGILANCE` runs the procedure with the second
    // family on at these settings in every set of the grid.
    // `--discord TAIL,DOWN,LENGTH` does the same with the discord, and
    // `--rate-floor F` with a slow series' spans following its interval,
    // `--no-levels` with the unusual-level test off; `--levels-product`
    // crosses the grid with that test on and off.
    // `--resonance-grid` and `--discord-grid` run the procedure over a
    // second family's own grid instead (the first at its defaults).
    // `--resonance-product` crosses the grid with the second family off
    // and at the settings its own procedures picked, so that each fold
    // chooses both families' settings without the files it is scored on.
    let families = alarms::params_from_args()?;
    let second: Vec<Params> = if std::env::args().any(|a| a == "--resonance-product") {
        cv::resonance_picks()
    } else if std::env::args().any(|a| a == "--levels-product") {
        // Each fold chooses the unusual-level test on or off with the rest.
        [true, false]
            .map(|unusual_levels| Params {
                unusual_levels,
                ..families
            })
            .to_vec()
    } else {
        vec![families]
    };
    let grid: Vec<Params> = second
        .iter()
        .flat_map(|families| {
            cv::grid().into_iter().map(|p| Params {
                first_family: families.first_family,
                resonance_tail: families.resonance_tail,
                resonance_down: families.resonance_down,
                resonance_vigilance: families.resonance_vigilance,
                discord_tail: families.discord_tail,
                discord_down: families.discord_down,
                discord_length: families.discord_length,
                rate_floor: families.rate_floor,
                unusual_levels: families.unusual_levels,
                ..p
            })
        })
        .collect();
    println!(
        "{} files, {} parameter sets; false-alarm limit {} per 10 000 clean readings",
        corpus.series.len(),
        grid.len(),
        cv::FALSE_ALARM_LIMIT
    );
    let report = cv::run(&corpus, &grid, true);
    if std::env::args().any(|a| a == "--table") {
        for (p, (score, fa)) in grid.iter().zip(&report.table) {
            // The procedure measures only the sets it had to; the table
            // shows every one.
            let fa = fa.unwrap_or_else(|| cv::false_alarm_rates(p).into_iter().fold(0.0, f64::max));
            println!("{score:5.1} max false alarms {fa:.2}  {}", cv::show(p));
        }
    }
    for (k, f) in report.folds.iter().enumerate() {
        println!(
            "fold {}: {:2} files held out  in-fold {:5.1}  out-of-fold {:5.1}  chose {}",
            k + 1,
            f.held_out,
            f.in_fold,
            f.out_of_fold,
            cv::show(&f.chosen)
        );
    }
    println!(
        "overall: out-of-fold {:.1}  in-fold {:.1}  gap {:.1}",
        report.out_of_fold,
        report.in_fold,
        report.in_fold - report.out_of_fold
    );
    let by_family = cv::run_folds(&corpus, &grid, true, &cv::family_folds(&corpus));
    println!(
        "each NAB family held out in turn: out-of-fold {:.1}  in-fold {:.1}  (folds {})",
        by_family.out_of_fold,
        by_family.in_fold,
        by_family
            .folds
            .iter()
            .map(|f| format!("{:.1}", f.out_of_fold))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    println!(
        "default picked (median of the fold choices): {}",
        cv::show(&report.picked)
    );
    println!(
        "  its false alarms per 10 000 clean readings: {}",
        cv::show_rates(&cv::false_alarm_rates(&report.picked))
    );
    println!(
        "  its score on all 45 (in-sample, for reference only): {:.1}",
        report.picked_all
    );
    // The harness runs the detector and trigger directly, for speed; the
    // engine `edge-gateway replay` runs must raise at the same readings.
    let rules = nab::rules(anomaly::DEFAULT_SENSITIVITY);
    let mismatched: Vec<&str> = corpus
        .series
        .iter()
        .filter(|s| {
            let mut engine = rules::Engine::new(&rules, &[]);
            let via_engine: Vec<usize> = s
                .readings
                .iter()
                .enumerate()
                .filter(|(_, r)| {
                    engine
                        .on_reading(r)
                        .iter()
                        .any(|a| a.state == rules::AlertState::Raised)
                })
                .map(|(i, _)| i)
                .collect();
            let direct = cv::raises(
                s.readings.iter().map(|r| (r.time().as_millis(), r.value())),
                &Params::DEFAULT,
            );
            via_engine != direct
        })
        .map(|s| s.key.as_str())
        .collect();
    println!(
        "the engine (replay) with the default rule raises where the harness does: {}",
        if mismatched.is_empty() {
            "yes, on every file".to_string()
        } else {
            format!("NO: {mismatched:?}")
        }
    );
    // The external check, a corpus no default is chosen on.
    if let Some(skab_dir) = std::env::var_os("SKAB_DATA") {
        let series = skab::load(std::path::Path::new(&skab_dir))?;
        let scored = skab::score(&series, |s| {
            cv::raises(
                s.readings.iter().map(|r| (r.time().as_millis(), r.value())),
                &Params::DEFAULT,
            )
        });
        println!(
            "SKAB (external, Params::DEFAULT): the rig {:.1}, every channel a series {:.1}",
            scored.rig, scored.channels
        );
    }
    if report.picked != Params::DEFAULT {
        println!(
            "NOTE: Params::DEFAULT is {}, not the picked set",
            cv::show(&Params::DEFAULT)
        );
    }
    Ok(())
}

/// A second family (`grid`: the defaults, then its sets): each of its
/// sets in-sample, alone (the first family off) and with the first; then
/// the same procedure over its grid (the first family at its defaults),
/// 5 folds and each family held out, and its false alarms.
fn second_family(corpus: &nab::Corpus, grid: &[Params]) -> Result<(), Box<dyn Error>> {
    let on = &grid[1..];
    let alone: Vec<Params> = on
        .iter()
        .map(|p| Params {
            first_family: false,
            ..*p
        })
        .collect();
    let summary = |name: &str, sets: &[Params]| {
        let report = cv::run(corpus, sets, true);
        let by_family = cv::run_folds(corpus, sets, true, &cv::family_folds(corpus));
        println!(
            "{name}: out-of-fold {:.1} (in-fold {:.1}), each family held out {:.1} (folds {}); picked {}",
            report.out_of_fold,
            report.in_fold,
            by_family.out_of_fold,
            by_family
                .folds
                .iter()
                .map(|f| format!("{:.1}", f.out_of_fold))
                .collect::<Vec<_>>()
                .join(" / "),
            cv::show(&report.picked)
        );
        for (k, f) in report.folds.iter().enumerate() {
            println!("  fold {} chose {}", k + 1, cv::show(&f.chosen));
        }
        println!(
            "  picked: in-sample {:.1}, false alarms per 10 000 clean readings: {}",
            report.picked_all,
            cv::show_rates(&cv::false_alarm_rates(&report.picked))
        );
        report
    };
    let table = cv::run(corpus, &alone, false).table;
    for (p, (score, _)) in alone.iter().zip(&table) {
        println!("alone {score:5.1}  {}", cv::show(p));
    }
    let table = cv::run(corpus, grid, false).table;
    for (p, (score, _)) in grid.iter().zip(&table) {
        println!("with the first family {score:5.1}  {}", cv::show(p));
    }
    summary("the second family alone", &alone);
    summary("with the first family, the second on", on);
    summary("with the first family, the second on or off", grid);
    Ok(())
}
