//! `[upstream] report`: the metrics sent upstream at once when their value
//! changes (`{prefix}/{device}/change`), besides their windows. Judged on
//! the readings the pipeline accepted, as every adapter delivers them, so
//! it works alike for MQTT, Modbus, BACnet or LoRaWAN.
//!
//! A change is a value other than the last one reported for the series
//! (the first reading after a start is one: the cloud cannot know the
//! state otherwise). A reading older than the last one reported (late, or
//! replayed from the journal after a crash) says nothing about the state
//! now and is not reported. The feed's task does this, not the pipeline's:
//! the pipeline only hands the upstream the readings it already hands the
//! other outputs, and only when some metric is reported on change.

use std::collections::HashMap;

use gateway_core::config::report::{ReportMode, ReportRules};
use gateway_core::{DeviceId, MetricName, Reading, SourceId, Timestamp};

/// Series remembered at once; beyond, the memory is cleared and each
/// series reported on change sends its next value again (a bound against
/// a flood of made-up ids, at the price of a repeated state).
const MAX_SERIES: usize = 100_000;

/// One new value of a metric reported on change.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub device: DeviceId,
    pub metric: String,
    pub value: f64,
    /// The value reported before, this run; `None` for the first.
    pub previous: Option<f64>,
    /// The reading's own time.
    pub at: Timestamp,
    pub source: SourceId,
}

#[derive(Debug, Clone, Copy)]
enum Series {
    /// Windowed only: judged once, then skipped at one lookup.
    Window,
    /// Reported on change: the last value reported and its time.
    Change(Option<(f64, Timestamp)>),
}

/// The rules and what each series last reported.
#[derive(Debug)]
pub struct Changes {
    rules: ReportRules,
    series: HashMap<(DeviceId, MetricName), Series>,
}

impl Changes {
    /// `None` when no metric is reported on change.
    pub fn new(rules: ReportRules) -> Option<Self> {
        (!rules.is_empty()).then(|| Self {
            rules,
            series: HashMap::new(),
        })
    }

    /// The change `r` makes, if it is one.
    pub fn observe(&mut self, r: &Reading) -> Option<Change> {
        // Most readings are of metrics no key names: out at a few compares.
        if !self.rules.may_report(r.metric().as_str()) {
            return None;
        }
        let key = (r.device().clone(), r.metric().clone());
        let series = match self.series.get_mut(&key) {
            Some(s) => s,
            None => {
                if self.series.len() >= MAX_SERIES {
                    self.series.clear();
                }
                let s = match self.rules.mode(r.device().as_str(), r.metric().as_str()) {
                    ReportMode::Change => Series::Change(None),
                    ReportMode::Window => Series::Window,
                };
                self.series.entry(key).or_insert(s)
            }
        };
        let Series::Change(last) = series else {
            return None;
        };
        let previous = match *last {
            Some((_, at)) if r.time() < at => return None,
            Some((value, _)) if value.to_bits() == r.value().to_bits() => return None,
            Some((value, _)) => Some(value),
            None => None,
        };
        *last = Some((r.value(), r.time()));
        Some(Change {
            device: r.device().clone(),
            metric: r.metric().as_str().to_string(),
            value: r.value(),
            previous,
            at: r.time(),
            source: r.source(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use gateway_core::TimeSource;
    use std::collections::BTreeMap;

    fn reading(device: &str, metric: &str, value: f64, ms: i64) -> Reading {
        Reading::new(
            DeviceId::new(device).unwrap(),
            MetricName::new(metric).unwrap(),
            value,
            Timestamp::from_millis(1_767_225_600_000 + ms).unwrap(),
            TimeSource::Event,
        )
        .unwrap()
    }

    fn changes(keys: &[&str]) -> Option<Changes> {
        let map: BTreeMap<String, ReportMode> = keys
            .iter()
            .map(|k| ((*k).to_string(), ReportMode::Change))
            .collect();
        Changes::new(ReportRules::new(&map))
    }

    #[test]
    fn the_first_value_and_each_new_one_are_changes_repeats_and_older_ones_not() {
        assert!(changes(&[]).is_none(), "nothing to do without rules");
        let mut c = changes(&["ahu-*/fan"]).unwrap();
        let seen: Vec<Option<(f64, Option<f64>)>> = [
            reading("ahu-1", "fan", 0.0, 0),
            reading("ahu-1", "fan", 0.0, 1_000),
            reading("ahu-1", "fan", 1.0, 2_000),
            // Late: older than the last reported.
            reading("ahu-1", "fan", 0.0, 1_500),
            reading("ahu-1", "fan", 1.0, 3_000),
            reading("ahu-1", "fan", 0.0, 4_000),
            reading("ahu-1", "temperature", 21.0, 4_000),
            reading("vav-1", "fan", 1.0, 4_000),
        ]
        .iter()
        .map(|r| c.observe(r).map(|ch| (ch.value, ch.previous)))
        .collect();
        assert_eq!(
            seen,
            [
                Some((0.0, None)),
                None,
                Some((1.0, Some(0.0))),
                None,
                None,
                Some((0.0, Some(1.0))),
                None,
                None
            ]
        );
    }
}
