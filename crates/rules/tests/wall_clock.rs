#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `[gateway] timezone`: anomaly rules learn an office's routine on the
//! building's clocks, across changes of daylight saving time and restarts.

#[path = "support/config.rs"]
mod config;

use anomaly::synthetic::Rng;
use gateway_core::clock::Zone;
use gateway_core::config::RuleConfig;
use gateway_core::{DeviceId, MetricName, Reading, TimeSource, Timestamp};
use rules::{AlertState, Engine, EngineState};

const HOUR: i64 = 3_600_000;
/// Monday 2026-02-23 00:00 UTC: five weeks before Europe's clocks go
/// forward, on Sunday 2026-03-29 at 01:00 UTC.
const START: i64 = 1_771_804_800_000;
const SPRING: i64 = 1_774_746_000_000;

fn rules_and_zone(timezone: &str) -> (Vec<RuleConfig>, Zone) {
    let c = config::parse(&format!(
        "[gateway]\ntimezone = \"{timezone}\"\n\n\
         [[rule]]\nname = \"office-anomaly\"\nkind = \"anomaly\"\nmetric = \"temperature\"\n"
    ));
    let zone = c.gateway.zone().unwrap();
    (c.rules, zone)
}

fn engine(timezone: &str) -> Engine {
    let (rules, zone) = rules_and_zone(timezone);
    let mut e = Engine::new(&rules, &[]);
    e.set_zone(zone);
    e
}

/// An office's temperature every 5 minutes: 23 from 08:00 to 18:00 on
/// weekdays on its own clocks (`offset_ms` ahead of UTC), 18 otherwise.
struct Office {
    rng: Rng,
    ar: f64,
}

impl Office {
    fn new(seed: u64) -> Self {
        Self {
            rng: Rng::new(seed),
            ar: 0.0,
        }
    }

    fn reading(&mut self, utc_ms: i64, offset_ms: i64, skip_morning: bool) -> Reading {
        let local = utc_ms + offset_ms - START;
        let (day, hour) = (
            local.div_euclid(24 * HOUR),
            local.rem_euclid(24 * HOUR) / HOUR,
        );
        let busy = day % 7 < 5 && (8..18).contains(&hour) && !(skip_morning && hour < 12);
        self.ar = 0.5 * self.ar + self.rng.normal();
        let v = if busy { 23.0 } else { 18.0 } + self.ar;
        Reading::new(
            DeviceId::new("office-3").unwrap(),
            MetricName::new("temperature").unwrap(),
            v,
            Timestamp::from_millis(utc_ms).unwrap(),
            TimeSource::Event,
        )
        .unwrap()
    }
}

/// Berlin's offset from UTC in spring 2026.
fn berlin(utc_ms: i64) -> i64 {
    if utc_ms >= SPRING {
        2 * HOUR
    } else {
        HOUR
    }
}

/// Seasonal alerts raised in the four weeks after the clocks went forward,
/// over ten offices in Berlin.
fn seasonal_after_the_change(timezone: &str) -> Vec<(u64, i64)> {
    let mut hits = Vec::new();
    for seed in 1..=10 {
        let mut e = engine(timezone);
        let mut office = Office::new(seed);
        let mut t = START;
        while t < SPRING + 28 * 24 * HOUR {
            for a in e.on_reading(&office.reading(t, berlin(t), false)) {
                let seasonal = a
                    .evidence
                    .as_ref()
                    .is_some_and(|ev| ev.reason.as_str() == "seasonal");
                if a.state == AlertState::Raised && t >= SPRING && seasonal {
                    hits.push((seed, (t - SPRING) / (24 * HOUR)));
                }
            }
            t += 300_000;
        }
    }
    hits
}

#[test]
fn an_offices_routine_on_its_own_clocks_survives_the_change_to_summer_time() {
    let on_utc = seasonal_after_the_change("UTC");
    assert!(
        on_utc.len() >= 5,
        "read in UTC, the routine moves an hour and raises alerts: {on_utc:?}"
    );
    let on_berlin = seasonal_after_the_change("Europe/Berlin");
    assert!(on_berlin.is_empty(), "{on_berlin:?}");
}

/// Five weeks of an office on UTC's clocks learned by an engine on UTC's,
/// then its state restored into an engine on `timezone`'s, which sees
/// three weekdays more; the third misses its morning. The seasonal alerts
/// of those days.
fn after_a_restart_on(timezone: &str) -> (EngineState, Vec<i64>) {
    let mut before = engine("UTC");
    let mut office = Office::new(3);
    let restart = START + 35 * 24 * HOUR;
    let mut t = START;
    while t < restart {
        before.on_reading(&office.reading(t, 0, false));
        t += 300_000;
    }
    let saved: EngineState =
        serde_json::from_str(&serde_json::to_string(&before.state()).unwrap()).unwrap();
    let mut after = engine(timezone);
    after.restore(saved.clone());
    let mut hits = Vec::new();
    while t < restart + 3 * 24 * HOUR {
        let skip = t >= restart + 2 * 24 * HOUR;
        for a in after.on_reading(&office.reading(t, 0, skip)) {
            let seasonal = a
                .evidence
                .as_ref()
                .is_some_and(|ev| ev.reason.as_str() == "seasonal");
            if a.state == AlertState::Raised && seasonal {
                hits.push((t - restart) / HOUR);
            }
        }
        t += 300_000;
    }
    (saved, hits)
}

#[test]
fn a_restart_keeps_the_routine_on_the_same_clocks_and_forgets_it_on_others() {
    let (saved, same) = after_a_restart_on("UTC");
    assert_eq!(saved.zone(), "UTC");
    assert!(
        same.iter().any(|h| (48..60).contains(h)),
        "the kept routine sees the missed morning: {same:?}"
    );
    assert!(same.iter().all(|h| *h >= 48), "{same:?}");
    // The same office read on clocks three hours ahead: its learned
    // mornings would fall three hours off and every day would look wrong.
    let (_, other) = after_a_restart_on("Etc/GMT-3");
    assert!(other.is_empty(), "{other:?}");
}

#[test]
fn state_saved_before_zones_existed_was_learned_on_utc() {
    let old = r#"{"series":[],"silence":[],"devices":[]}"#;
    let state: EngineState = serde_json::from_str(old).unwrap();
    assert_eq!(state.zone(), "UTC");
    assert_eq!(engine("Europe/Berlin").state().zone(), "Europe/Berlin");
}
