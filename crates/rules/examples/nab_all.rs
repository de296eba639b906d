//! Scores the anomaly rule over every NAB series in a folder, in process,
//! through the same [`Engine`] that `edge-gateway replay` runs: the fast
//! loop for work on the detector (the binary's `nab_eval.py` is the
//! reference and gives the same figures).
//!
//! ```text
//! cargo run -p rules --release --example nab_all -- DATA_DIR [--only SUBSTRING] [--sensitivity S] [--quiet]
//! ```
//!
//! DATA_DIR holds NAB's folders, `windows.json` and `published_scores.json`
//! (the folder `NAB_DATA` names for the regression test). Prints each file's score beside ARTime's and
//! the normalised score per family and overall.

use std::collections::BTreeMap;
use std::error::Error;

#[path = "../tests/support/nab.rs"]
mod nab;
use anomaly::DEFAULT_SENSITIVITY;
use nab::Series;
use rules::Engine;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args
        .first()
        .ok_or("usage: nab_all DATA_DIR [--only S] [--sensitivity S]")?;
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let only = opt("--only").unwrap_or_default();
    let sensitivity: f64 = opt("--sensitivity").map_or(Ok(DEFAULT_SENSITIVITY), |s| s.parse())?;
    let quiet = args.iter().any(|a| a == "--quiet");
    let corpus = nab::Corpus::load(std::path::Path::new(dir), &only)?;
    let mut families: BTreeMap<String, (f64, f64, f64, f64)> = BTreeMap::new();
    let mut total = (0.0, 0.0, 0.0, 0.0);
    let mut worst: Vec<(f64, String)> = Vec::new();
    for s in &corpus.series {
        let hits = detections(s, sensitivity);
        let r = nab::score(s, &hits);
        let windows = s.windows.len() as f64;
        let artime = s.published.get("ARTime").copied().unwrap_or(f64::NAN);
        if !quiet {
            println!(
                "{:60} {:7.3} (ARTime {:7.3}) windows {} caught {} fp {} alerts {}",
                s.key,
                r.total,
                artime,
                s.windows.len(),
                r.caught,
                r.false_alarms,
                hits.len()
            );
        }
        worst.push((r.total + windows, s.key.clone()));
        let fam = nab::family(&s.key).to_string();
        for acc in [families.entry(fam).or_default(), &mut total] {
            acc.0 += r.total;
            acc.1 += windows;
            acc.2 += artime;
            acc.3 += 1.0;
        }
    }
    let norm = |raw: f64, w: f64| 100.0 * (raw + w) / (2.0 * w);
    for (fam, (raw, w, art, n)) in &families {
        println!(
            "{fam:16} {:6.1}  (ARTime {:6.1}) over {n} files",
            norm(*raw, *w),
            norm(*art, *w)
        );
    }
    worst.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (margin, key) in worst.iter().take(3) {
        println!("  worst vs null: {key} {margin:+.3}");
    }
    println!(
        "ALL              {:6.1}  (ARTime {:6.1}) over {} files",
        norm(total.0, total.1),
        norm(total.2, total.1),
        total.3
    );
    Ok(())
}

/// Row indices at which the rule raised an alert.
fn detections(s: &Series, sensitivity: f64) -> Vec<usize> {
    let rules = nab::rules(sensitivity);
    let mut engine = Engine::new(&rules, &[]);
    let mut hits = Vec::new();
    let trace = std::env::var("NAB_TRACE").is_ok_and(|t| s.key.contains(&t));
    for (i, r) in s.readings.iter().enumerate() {
        for a in engine.on_reading(r) {
            if a.state != rules::AlertState::Raised {
                continue;
            }
            hits.push(i);
            if trace {
                let inside = s.windows.iter().any(|&(a, b)| i >= a && i <= b);
                println!("  {i} {} {:?} in-window {inside}", r.value(), a.evidence);
            }
        }
    }
    hits
}
