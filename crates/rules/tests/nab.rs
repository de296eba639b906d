#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Regression guard on the figure that says whether the anomaly model
//! generalises: its NAB score on files it was not tuned on. It runs the
//! whole cross-validation procedure of `examples/nab_cv.rs` (5 fixed folds
//! of the 45 development files, stratified by NAB family; each fold's
//! parameters chosen on the other four among the grid's sets within the
//! false-alarm limit on clean synthetic series) and fails if the pooled
//! out-of-fold score falls below the level reached, the in-fold/out-of-fold
//! gap reaches 3 points, or the procedure no longer picks
//! `Params::DEFAULT`; the same procedure with each NAB family held out in
//! turn must hold its level too, and so must the NAB-style faults laid
//! over its clean artificial files. It also fails if the default rule,
//! through the same [`Engine`] that `edge-gateway replay` runs, scores any
//! file more than 0.5 below a detector that never fires.
//!
//! Opt-in: set `NAB_DATA` to the NAB development data (`windows.json`,
//! `published_scores.json` and NAB's folders); without it the test says so
//! and passes. Run it optimised: each procedure takes about 25 s of two
//! cores in release (`cargo test --release -p rules --test nab`), and
//! many minutes unoptimised.

#[path = "support/alarms.rs"]
mod alarms;
#[path = "support/cv.rs"]
mod cv;
#[path = "support/nab.rs"]
mod nab;
#[path = "support/nab_style.rs"]
mod nab_style;

use anomaly::detector::Params;
use anomaly::DEFAULT_SENSITIVITY;
use rules::{AlertState, Engine};

/// Pooled out-of-fold score of `nab_cv` (78.5 since a level the series has
/// not taken lately is judged; 77.6 before), less a small
/// margin for harmless changes (half a point is about one window caught a
/// little later, or four false alarms).
const OUT_OF_FOLD_REACHED: f64 = 78.0;
/// Pooled out-of-fold score with each NAB family held out in turn (77.1,
/// as above; 76.2 before), less the same margin.
const FAMILY_OUT_OF_FOLD_REACHED: f64 = 76.6;
/// NAB-style faults on NAB's clean artificial files (`examples/
/// nab_style_faults.rs`), the nearest measure of the artificial files NAB
/// keeps back: seeds 1-5 (82.0) and fresh seeds 6-15 (80.7), since a
/// level the series has not taken lately is judged (81.9 and 78.8
/// before), less the same margin.
const NAB_STYLE_REACHED: f64 = 81.5;
const NAB_STYLE_FRESH_REACHED: f64 = 80.2;
/// The largest in-fold/out-of-fold gap allowed.
const GAP_LIMIT: f64 = 3.0;

fn corpus() -> Option<nab::Corpus> {
    let Some(dir) = std::env::var_os("NAB_DATA") else {
        // Straight to stderr: the harness captures `eprintln!` of a passing test.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED the NAB regression guard: NAB_DATA is not set (point it at the NAB corpus folder to run it)\n",
        );
        return None;
    };
    let dir = std::path::PathBuf::from(dir);
    let corpus = nab::Corpus::load(&dir, "")
        .unwrap_or_else(|e| panic!("NAB data at {}: {e}", dir.display()));
    assert_eq!(corpus.series.len(), 45, "the development set has 45 files");
    Some(corpus)
}

#[test]
fn the_out_of_fold_nab_score_holds_and_the_gap_stays_small() {
    let Some(corpus) = corpus() else { return };
    let started = std::time::Instant::now();
    let report = cv::run(&corpus, &cv::grid(), true);
    let gap = report.in_fold - report.out_of_fold;
    eprintln!(
        "out-of-fold {:.1}, in-fold {:.1}, gap {gap:.1} ({:.0} s)",
        report.out_of_fold,
        report.in_fold,
        started.elapsed().as_secs_f64()
    );
    assert!(
        report.out_of_fold >= OUT_OF_FOLD_REACHED,
        "out-of-fold NAB score {:.1}, below the {OUT_OF_FOLD_REACHED} reached",
        report.out_of_fold
    );
    assert!(
        gap < GAP_LIMIT,
        "in-fold/out-of-fold gap {gap:.1} (limit {GAP_LIMIT})"
    );
    assert_eq!(
        report.picked,
        Params::DEFAULT,
        "the procedure picks {}, not Params::DEFAULT",
        cv::show(&report.picked)
    );
}

#[test]
fn the_score_with_each_family_held_out_holds() {
    let Some(corpus) = corpus() else { return };
    let report = cv::run_folds(&corpus, &cv::grid(), true, &cv::family_folds(&corpus));
    eprintln!(
        "each family held out: out-of-fold {:.1}, in-fold {:.1}",
        report.out_of_fold, report.in_fold
    );
    assert!(
        report.out_of_fold >= FAMILY_OUT_OF_FOLD_REACHED,
        "out-of-fold NAB score with each family held out {:.1}, below the {FAMILY_OUT_OF_FOLD_REACHED} reached",
        report.out_of_fold
    );
}

#[test]
fn the_default_rule_never_scores_a_file_well_below_silence() {
    let Some(corpus) = corpus() else { return };
    let rules = nab::rules(DEFAULT_SENSITIVITY);
    let mut below_null = Vec::new();
    for s in &corpus.series {
        let mut engine = Engine::new(&rules, &[]);
        let hits: Vec<usize> = s
            .readings
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                engine
                    .on_reading(r)
                    .iter()
                    .any(|a| a.state == AlertState::Raised)
            })
            .map(|(i, _)| i)
            .collect();
        let score = nab::score(s, &hits).total;
        if score < -(s.windows.len() as f64) - 0.5 {
            below_null.push((s.key.clone(), score));
        }
    }
    assert!(
        below_null.is_empty(),
        "below never-fires by > 0.5: {below_null:?}"
    );
}

#[test]
fn the_nab_style_faults_score_holds() {
    let Some(dir) = std::env::var_os("NAB_DATA") else {
        // `corpus()` says that the guard is skipped.
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    for (from, seeds, reached) in [(1, 5, NAB_STYLE_REACHED), (6, 10, NAB_STYLE_FRESH_REACHED)] {
        let draws = nab_style::draws(&dir, from, seeds, &Params::DEFAULT)
            .unwrap_or_else(|e| panic!("NAB data at {}: {e}", dir.display()));
        let score = nab_style::normalised(&draws);
        assert!(
            score >= reached,
            "NAB-style faults, seeds {from}-{}: {score:.1} < {reached}",
            from + seeds - 1
        );
    }
}
