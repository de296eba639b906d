#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Regression guard: the default anomaly rule over the 45 NAB series of the
//! development set, scored with NAB's standard profile through the same
//! [`Engine`] that `edge-gateway replay` runs. Fails if the normalised score
//! falls below the level reached, or if any file scores more than 0.5 below
//! a detector that never fires.
//!
//! The data is `../shared/data/nab` beside the repository (set `NAB_DATA`
//! to use another copy); the test fails, rather than passes silently, when
//! it is missing.

#[path = "support/nab.rs"]
mod nab;

use anomaly::{AlertState, Engine, DEFAULT_SENSITIVITY};

/// Normalised NAB score reached on 2026-11-22 (75.2), rounded down.
const LEVEL_REACHED: f64 = 75.0;

#[test]
fn the_nab_development_set_scores_at_least_the_level_reached() {
    let dir = std::env::var_os("NAB_DATA").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/nab"),
        std::path::PathBuf::from,
    );
    let corpus = nab::Corpus::load(&dir, "")
        .unwrap_or_else(|e| panic!("NAB data at {}: {e} (set NAB_DATA)", dir.display()));
    assert_eq!(corpus.series.len(), 45, "the development set has 45 files");
    let rules = nab::rules(DEFAULT_SENSITIVITY);
    let (mut raw, mut windows) = (0.0, 0.0);
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
        let w = s.windows.len() as f64;
        if score < -w - 0.5 {
            below_null.push((s.key.clone(), score));
        }
        raw += score;
        windows += w;
    }
    let normalised = 100.0 * (raw + windows) / (2.0 * windows);
    assert!(
        below_null.is_empty(),
        "below never-fires by > 0.5: {below_null:?}"
    );
    assert!(
        normalised >= LEVEL_REACHED,
        "NAB normalised score {normalised:.1}, below the {LEVEL_REACHED} reached"
    );
}
