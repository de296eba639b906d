#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The per-device multivariate model on seeded synthetic building faults
//! (see `synthetic::Building`), through the rule engine as the gateway runs
//! it: one anomaly rule without `metric`.

use anomaly::synthetic::{building, Building};
use anomaly::Reason;
use gateway_core::config::RuleConfig;
use gateway_core::{DeviceId, MetricName, Reading, TimeSource, Timestamp};
use rules::{AlertState, Engine, EngineState};

fn rules() -> Vec<RuleConfig> {
    #[derive(serde::Deserialize)]
    struct File {
        rule: Vec<RuleConfig>,
    }
    toml::from_str::<File>("[[rule]]\nname = \"device\"\nkind = \"anomaly\"\n")
        .unwrap()
        .rule
}

fn reading(minute: usize, metric: &str, value: f64) -> Reading {
    Reading::new(
        DeviceId::new("dev-1").unwrap(),
        MetricName::new(metric).unwrap(),
        value,
        Timestamp::from_millis(1_767_225_600_000 + minute as i64 * 60_000).unwrap(),
        TimeSource::Event,
    )
    .unwrap()
}

/// Minutes of the multivariate raises, optionally restarting the engine
/// from its saved state (as JSON) at minute `restart`.
fn multivariate_alerts(
    seed: u64,
    fault_at: Option<usize>,
    kind: Building,
    restart: Option<usize>,
) -> Vec<(usize, String)> {
    let rules = rules();
    let mut engine = Engine::new(&rules, &[]);
    let mut out = Vec::new();
    let mut restarted = false;
    for (minute, metric, value) in building(seed, 12 * 1440, fault_at, kind) {
        if restart.is_some_and(|at| minute >= at) && !restarted {
            restarted = true;
            let saved = serde_json::to_string(&engine.state()).unwrap();
            engine = Engine::new(&rules, &[]);
            engine.restore(serde_json::from_str::<EngineState>(&saved).unwrap());
        }
        let r = reading(minute, metric, value);
        let mut alerts = engine.on_tick(r.time());
        alerts.extend(engine.on_reading(&r));
        for a in alerts {
            let Some(e) = a.evidence else { continue };
            if a.state == AlertState::Raised && e.reason == Reason::Multivariate {
                assert!(e.expected.0 <= e.expected.1, "{e:?}");
                out.push((minute, a.metric.clone()));
            }
        }
    }
    out
}

#[test]
fn a_fridge_warming_with_its_door_shut_is_caught() {
    let fault = 10 * 1440 + 180;
    let got = multivariate_alerts(3, Some(fault), Building::FridgeWarmsDoorShut, None);
    let hit = got
        .iter()
        .find(|(m, _)| *m >= fault)
        .unwrap_or_else(|| panic!("{got:?}"));
    assert!(hit.0 < fault + 6 * 60, "{got:?}");
    assert_eq!(hit.1, "temperature", "the metric that moved: {got:?}");
}

#[test]
fn co2_rising_in_an_empty_room_is_caught() {
    let fault = 10 * 1440 + 120;
    let got = multivariate_alerts(5, Some(fault), Building::RoomCo2NobodyIn, None);
    let hit = got
        .iter()
        .find(|(m, _)| *m >= fault)
        .unwrap_or_else(|| panic!("{got:?}"));
    assert!(hit.0 < fault + 6 * 60, "{got:?}");
    assert_eq!(hit.1, "co2", "{got:?}");
}

#[test]
fn normal_days_raise_few_multivariate_alerts() {
    // Measured with the `multivariate` example: 0.15-0.18 a day.
    for kind in [Building::FridgeWarmsDoorShut, Building::RoomCo2NobodyIn] {
        let got = multivariate_alerts(7, None, kind, None);
        assert!(got.len() <= 4, "{kind:?} over 12 days: {got:?}");
    }
}

#[test]
fn the_device_model_survives_a_restart() {
    let fault = Some(10 * 1440 + 180);
    let kind = Building::FridgeWarmsDoorShut;
    let uninterrupted = multivariate_alerts(3, fault, kind, None);
    assert_eq!(
        multivariate_alerts(3, fault, kind, Some(9 * 1440)),
        uninterrupted
    );
}

#[test]
fn a_gateway_engine_hands_refits_out_as_jobs_one_at_a_time() {
    // As the gateway runs it: fits leave the pipeline as jobs, so a tick
    // never spends the 6-11 ms of a fit.
    let rules = rules();
    let mut engine = Engine::new(&rules, &[]);
    engine.fit_elsewhere();
    let mut jobs = Vec::new();
    for (minute, metric, value) in building(7, 3 * 1440, None, Building::FridgeWarmsDoorShut) {
        let r = reading(minute, metric, value);
        engine.on_tick(r.time());
        engine.on_reading(&r);
        if let Some(job) = engine.take_fit() {
            assert!(engine.take_fit().is_none(), "one job out at a time");
            jobs.push(job);
            // Not installed yet: the same model is due until it is.
            let job = jobs.last().unwrap();
            let fitted = anomaly::multivariate::fit(&job.rows, job.columns).ok();
            assert!(
                fitted.is_some(),
                "{} rows of {}",
                job.rows.len(),
                job.columns
            );
            engine.install_fit(&job.key.clone(), fitted);
        }
    }
    assert!(!jobs.is_empty(), "three days of readings make a model due");
    // Installed fits reset the model's count: jobs come every 256 rows
    // (5-minute rows), not at every tick.
    assert!(jobs.len() <= 3 * 1440 / 5 / 256 + 1, "{} jobs", jobs.len());
}
