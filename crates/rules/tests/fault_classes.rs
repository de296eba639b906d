//! The detector on the fault-classes corpus (`anomaly::plant`): equipment
//! series with one labelled fault each, built from what equipment does,
//! not from any corpus' files (see `examples/fault_classes.rs`).

#[path = "support/alarms.rs"]
mod alarms;
#[path = "support/fault_classes.rs"]
mod fault_classes;
#[path = "support/nab.rs"]
mod nab;

use anomaly::detector::Params;
use anomaly::plant::{Background, Fault};
use fault_classes::Row;

#[test]
fn a_collapse_of_the_noise_is_caught_wherever_the_noise_is_fine() {
    // A room's rhythm, an office's week, a controlled supply: the value
    // goes on following its pattern with a fifth of its noise (a fridge's
    // ramps dwarf its noise, yet it is caught 9 times in 10, which the
    // anomaly crate's own test holds; a meter's spikes dwarf theirs).
    let mut missed = Vec::new();
    fault_classes::score(
        1..=5,
        &Params::DEFAULT,
        |background, fault, history, seed, (a, b), hits| {
            let fine = matches!(
                background,
                Background::Room
                    | Background::Office
                    | Background::OfficeEveryMinute
                    | Background::Supply
            );
            if fault == Fault::NoiseDown && fine && !hits.iter().any(|&i| (a..=b).contains(&i)) {
                missed.push((background, history, seed));
            }
        },
    );
    assert!(missed.is_empty(), "missed: {missed:?}");
}

#[test]
fn the_fault_classes_score_does_not_fall() {
    // Measured 79.3 (515 of 610 faults, settled and young series, the
    // office read every minute and the room read every 15 minutes among
    // them; 77.9, 435 of 520, before that room; the office read every
    // minute 74.9 before its memories were counted in time; a weaker
    // swing is caught 4 times in 50); see
    // docs/anomaly-experiments.md
    // for the model before this check existed. A change to the detector
    // that loses a class shows here.
    let mut total = Row::default();
    for (_, _, row) in fault_classes::score(1..=5, &Params::DEFAULT, |_, _, _, _, _, _| {}) {
        total.add(&row);
    }
    assert!(
        total.normalised() >= 77.4,
        "{:.1} ({} of {} caught)",
        total.normalised(),
        total.caught,
        total.windows
    );
}
