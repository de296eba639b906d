//! Alerts of one anomaly rule counted the fast way, shared by the
//! false-alarm bench, the `nab_cv` example and the NAB regression test:
//! the detector and the rule engine's trigger alone, without an `Engine`
//! (and its per-reading rule matching) around them, so a grid of
//! parameter sets over millions of readings stays cheap.

#![allow(dead_code)]

use anomaly::detector::{Detector, Params};
use anomaly::synthetic::{clean, false_alarms, Clean, MONDAY_MS};
use rules::trigger::{AlertState, Trigger};

/// The defaults, or the families the command line asks for: `--resonance
/// TAIL,DOWN,VIGILANCE` turns the second family (the adaptive-resonance
/// categoriser) on with these settings, `--discord TAIL,DOWN,LENGTH` the
/// discord, `--rate-floor F` lets a slow series' spans follow its interval
/// down to F, `--no-levels` turns the unusual-level test off, `--alone`
/// turns the first family off.
pub fn params_from_args() -> Result<Params, String> {
    let args: Vec<String> = std::env::args().collect();
    let mut p = Params::DEFAULT;
    if let Some(settings) = args
        .iter()
        .position(|a| a == "--resonance")
        .and_then(|i| args.get(i + 1))
    {
        let parts: Vec<&str> = settings.split(',').collect();
        let bad = || format!("--resonance TAIL,DOWN,VIGILANCE, not {settings}");
        let [tail, down, vigilance] = parts[..] else {
            return Err(bad());
        };
        p.resonance_tail = tail.parse().map_err(|_| bad())?;
        p.resonance_down = down.parse().map_err(|_| bad())?;
        p.resonance_vigilance = vigilance.parse().map_err(|_| bad())?;
    }
    if let Some(settings) = args
        .iter()
        .position(|a| a == "--discord")
        .and_then(|i| args.get(i + 1))
    {
        let parts: Vec<&str> = settings.split(',').collect();
        let bad = || format!("--discord TAIL,DOWN,LENGTH, not {settings}");
        let [tail, down, length] = parts[..] else {
            return Err(bad());
        };
        p.discord_tail = tail.parse().map_err(|_| bad())?;
        p.discord_down = down.parse().map_err(|_| bad())?;
        p.discord_length = length.parse().map_err(|_| bad())?;
    }
    if let Some(floor) = args
        .iter()
        .position(|a| a == "--rate-floor")
        .and_then(|i| args.get(i + 1))
    {
        p.rate_floor = floor
            .parse()
            .map_err(|_| format!("--rate-floor FRACTION, not {floor}"))?;
    }
    p.unusual_levels = !args.iter().any(|a| a == "--no-levels");
    p.first_family = !args.iter().any(|a| a == "--alone");
    Ok(p)
}

/// Indices of the readings `(epoch ms, value)` at which one anomaly rule
/// with these parameters raises an alert, exactly as the engine raises
/// them (the detector, then the shared trigger with the default cooldown).
pub fn raises(readings: impl Iterator<Item = (i64, f64)>, p: &Params) -> Vec<usize> {
    let cooldown_ms =
        i64::try_from(gateway_core::config::rule::default_cooldown().as_millis()).unwrap_or(0);
    let mut det = Detector::new();
    let mut trigger = Trigger::default();
    let mut hits = Vec::new();
    for (i, (t, x)) in readings.enumerate() {
        let v = det.observe_with(t, x, p);
        if trigger.step(t, v.anomaly, !v.active, 0, cooldown_ms) == Some(AlertState::Raised) {
            hits.push(i);
        }
    }
    hits
}

/// False alarms per 10 000 readings of `family` under these parameters,
/// over `runs` seeded series of `readings` readings.
pub fn false_alarm_rate(family: Clean, p: &Params, runs: u64, readings: usize) -> f64 {
    let mut alarms = 0;
    for seed in 1..=runs {
        let (xs, changes) = clean(seed, readings, family);
        let times = (0..).map(|i| MONDAY_MS + i * family.interval_ms());
        let hits = raises(times.zip(xs.iter().copied()), p);
        alarms += false_alarms(&hits, &changes);
    }
    alarms as f64 * 10_000.0 / (runs as f64 * readings as f64)
}
