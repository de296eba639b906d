//! Where a detector fires against NAB's label windows: per file, its
//! alerts, the windows it caught and how early in each (0 = the window's
//! first reading, 1 = its last), and its false alarms; overall, how many
//! windows it caught, how early on average, and its alerts outside them.
//! The question it answers is *why* a detector scores what it scores:
//! too few alerts, too late in the windows, or too many outside them.
//!
//! ```text
//! NAB_DATA=/work/shared/data/nab cargo run --release -p rules --example nab_windows [-- --quiet] [--resonance TAIL,DOWN,VIGILANCE] [--discord TAIL,DOWN,LENGTH] [--alone]
//! ```
//!
//! It runs the same harness as `nab_cv` (the detector and the trigger),
//! with the families the flags select, as `nab_cv`'s other flags do.

use std::error::Error;
use std::path::PathBuf;

#[path = "../tests/support/alarms.rs"]
mod alarms;
#[path = "../tests/support/nab.rs"]
mod nab;

fn main() -> Result<(), Box<dyn Error>> {
    let dir = std::env::var_os("NAB_DATA")
        .map(PathBuf::from)
        .ok_or("set NAB_DATA to the NAB development data")?;
    let quiet = std::env::args().any(|a| a == "--quiet");
    let p = alarms::params_from_args()?;
    let corpus = nab::Corpus::load(&dir, "")?;
    let (mut windows, mut caught, mut early, mut alerts, mut outside) = (0, 0, 0.0, 0, 0);
    let (mut raw, mut in_probation) = (0.0, 0);
    for s in &corpus.series {
        let hits = alarms::raises(
            s.readings.iter().map(|r| (r.time().as_millis(), r.value())),
            &p,
        );
        let probation = ((0.15 * s.readings.len() as f64).floor()).min(750.0) as usize;
        let score = nab::score(s, &hits);
        raw += score.total;
        alerts += hits.len();
        outside += score.false_alarms;
        in_probation += hits.iter().filter(|&&i| i < probation).count();
        let mut found = Vec::new();
        for &(a, b) in &s.windows {
            windows += 1;
            let first = hits.iter().find(|&&i| i >= a && i <= b && i >= probation);
            match first {
                Some(&i) => {
                    let at = (i - a) as f64 / (b - a).max(1) as f64;
                    caught += 1;
                    early += at;
                    found.push(format!("{at:.2}"));
                }
                None => found.push("missed".to_string()),
            }
        }
        if !quiet {
            println!(
                "{:58} {:7.3} alerts {:3} outside {:3}  windows (width {}): {}",
                s.key,
                score.total,
                hits.len(),
                score.false_alarms,
                s.windows.first().map_or(0, |&(a, b)| b - a + 1),
                found.join(" ")
            );
        }
    }
    let n = corpus.series.len();
    println!(
        "{caught} of {windows} windows caught, on average {:.2} of the way into the window; \
         {alerts} alerts, {outside} outside the windows ({in_probation} in the probation); \
         NAB {:.1} over {n} files",
        early / f64::from(caught.max(1)),
        100.0 * (raw + f64::from(windows)) / (2.0 * f64::from(windows))
    );
    Ok(())
}
