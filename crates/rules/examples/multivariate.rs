//! Seeded synthetic building faults through the rule engine with one
//! metric-less anomaly rule (a univariate detector per metric and one
//! multivariate model per device). Prints, per fault, how many runs each
//! side caught within six hours, the median delay, and the false alarms
//! before the fault.
//!
//! ```text
//! cargo run -p rules --release --example multivariate [-- --runs N]
//! ```

use anomaly::synthetic::{building, Building, Rng};
use anomaly::Reason;
use gateway_core::config::RuleConfig;
use gateway_core::{DeviceId, MetricName, Reading, TimeSource, Timestamp};
use rules::{AlertState, Engine};

const DAYS: usize = 14;
const WITHIN: usize = 6 * 60;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs: u64 = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let rules = rules();
    for kind in [Building::FridgeWarmsDoorShut, Building::RoomCo2NobodyIn] {
        // [multivariate, univariate]: caught, delays, false alarms.
        let mut caught = [0u64; 2];
        let mut delays: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
        let mut false_alarms = [0u64; 2];
        let mut rows_before = 0usize;
        for seed in 1..=runs {
            let fault_at = 10 * 1440 + (Rng::new(seed).uniform() * 1440.0) as usize;
            let mut engine = Engine::new(&rules, &[]);
            let mut first = [None::<usize>; 2];
            for (minute, metric, value) in building(seed, DAYS * 1440, Some(fault_at), kind) {
                let Some(r) = reading(minute, metric, value) else {
                    continue;
                };
                let mut alerts = engine.on_tick(r.time());
                alerts.extend(engine.on_reading(&r));
                for a in alerts.iter().filter(|a| a.state == AlertState::Raised) {
                    let side = match a.evidence.map(|e| e.reason) {
                        Some(Reason::Multivariate) => 0,
                        _ => 1,
                    };
                    if minute < fault_at {
                        false_alarms[side] += 1;
                    } else if minute < fault_at + WITHIN && first[side].is_none() {
                        first[side] = Some(minute - fault_at);
                    }
                }
            }
            rows_before += fault_at;
            for side in 0..2 {
                if let Some(d) = first[side] {
                    caught[side] += 1;
                    delays[side].push(d);
                }
            }
        }
        println!("{kind:?}");
        for (side, name) in ["multivariate", "univariate  "].iter().enumerate() {
            delays[side].sort_unstable();
            let median = delays[side]
                .get(delays[side].len() / 2)
                .map_or("-".into(), |d| format!("{d} min"));
            println!(
                "  {name} caught {:>2}/{runs} within 6 h, median delay {median:>7}, false alarms before the fault {:.2} per day",
                caught[side],
                false_alarms[side] as f64 / (rows_before as f64 / 1440.0)
            );
        }
    }
}

fn rules() -> Vec<RuleConfig> {
    #[derive(serde::Deserialize)]
    struct File {
        rule: Vec<RuleConfig>,
    }
    toml::from_str::<File>("[[rule]]\nname = \"device\"\nkind = \"anomaly\"\n")
        .map(|f| f.rule)
        .unwrap_or_default()
}

fn reading(minute: usize, metric: &str, value: f64) -> Option<Reading> {
    let at = Timestamp::from_millis(1_767_225_600_000 + minute as i64 * 60_000).ok()?;
    Reading::new(
        DeviceId::new("dev-1").ok()?,
        MetricName::new(metric).ok()?,
        value,
        at,
        TimeSource::Event,
    )
    .ok()
}
