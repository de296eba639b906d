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

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use gateway_core::config::report::{ReportMode, ReportRules};
use gateway_core::{DeviceId, MetricName, Reading, SourceId, Timestamp};
use tokio::time::Instant;

/// Series remembered at once; beyond, the memory is cleared and each
/// series reported on change sends its next value again (a bound against
/// a flood of made-up ids, at the price of a repeated state).
const MAX_SERIES: usize = 100_000;

/// Changes of one series closer together than this are coalesced: the
/// latest waits until the interval has passed since the last one sent,
/// then goes (unless the state went back to the one sent). A flapping or
/// noisy metric named by mistake costs at most a message a second, and
/// its last state still goes up.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

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

#[derive(Debug, Default)]
struct Reported {
    /// The last value sent and its reading's time.
    last: Option<(f64, Timestamp)>,
    sent_at: Option<Instant>,
    /// A change that came too soon after the last one sent.
    held: Option<Change>,
}

impl Reported {
    fn free_at(&self) -> Option<Instant> {
        self.sent_at.map(|t| t + MIN_INTERVAL)
    }

    fn send(&mut self, c: &Change, now: Instant) {
        self.last = Some((c.value, c.at));
        self.sent_at = Some(now);
        self.held = None;
    }
}

#[derive(Debug)]
enum Series {
    /// Windowed only: judged once, then skipped at one lookup.
    Window,
    Change(Reported),
}

type Key = (DeviceId, MetricName);

/// The rules and what each series last reported.
#[derive(Debug)]
pub struct Changes {
    rules: ReportRules,
    series: HashMap<Key, Series>,
    /// When each held change may go, earliest first. An entry whose
    /// series no longer holds one at that time is stale and skipped.
    due: BinaryHeap<Reverse<(Instant, Key)>>,
    /// Changes replaced by a later one while held, not yet told.
    coalesced: u64,
}

impl Changes {
    /// `None` when no metric is reported on change.
    pub fn new(rules: ReportRules) -> Option<Self> {
        (!rules.is_empty()).then(|| Self {
            rules,
            series: HashMap::new(),
            due: BinaryHeap::new(),
            coalesced: 0,
        })
    }

    /// The change `r` makes that is to be sent now, if any (one that
    /// comes within [`MIN_INTERVAL`] of the last sent is held: see
    /// [`Self::take_due`]).
    pub fn observe(&mut self, r: &Reading, now: Instant) -> Option<Change> {
        // Most readings are of metrics no key names: out at a few compares.
        if !self.rules.may_report(r.metric().as_str()) {
            return None;
        }
        let key = (r.device().clone(), r.metric().clone());
        if !self.series.contains_key(&key) {
            if self.series.len() >= MAX_SERIES {
                self.series.clear();
                self.due.clear();
            }
            let s = match self.rules.mode(r.device().as_str(), r.metric().as_str()) {
                ReportMode::Change => Series::Change(Reported::default()),
                ReportMode::Window => Series::Window,
            };
            self.series.insert(key.clone(), s);
        }
        let Some(Series::Change(s)) = self.series.get_mut(&key) else {
            return None;
        };
        // Older than what was seen last (late, or replayed): not the state.
        let newest = s.held.as_ref().map(|h| h.at).or(s.last.map(|l| l.1));
        if newest.is_some_and(|t| r.time() < t) {
            return None;
        }
        let value = r.value();
        if s.last.is_some_and(|(v, _)| v.to_bits() == value.to_bits()) {
            // Back to the state the cloud has: nothing to send.
            if s.held.take().is_some() {
                self.coalesced += 1;
            }
            return None;
        }
        if s.held
            .as_ref()
            .is_some_and(|h| h.value.to_bits() == value.to_bits())
        {
            // The held state again: it keeps its first time.
            return None;
        }
        let change = Change {
            device: r.device().clone(),
            metric: r.metric().as_str().to_string(),
            value,
            previous: s.last.map(|l| l.0),
            at: r.time(),
            source: r.source(),
        };
        if s.free_at().is_none_or(|t| t <= now) {
            if s.held.is_some() {
                self.coalesced += 1;
            }
            s.send(&change, now);
            return Some(change);
        }
        let free_at = s.free_at();
        if s.held.replace(change).is_some() {
            self.coalesced += 1;
        } else if let Some(t) = free_at {
            self.due.push(Reverse((t, key)));
        }
        None
    }

    /// When the first held change may go (perhaps earlier: a stale entry
    /// only wakes the caller for nothing).
    pub fn due(&self) -> Option<Instant> {
        self.due.peek().map(|Reverse((t, _))| *t)
    }

    /// The held changes whose interval has passed (all of them with
    /// `None`: at shutdown, the last states go up).
    pub fn take_due(&mut self, now: Option<Instant>) -> Vec<Change> {
        let mut out = Vec::new();
        while let Some(Reverse((t, _))) = self.due.peek() {
            if now.is_some_and(|now| *t > now) {
                break;
            }
            let Some(Reverse((t, key))) = self.due.pop() else {
                break;
            };
            let Some(Series::Change(s)) = self.series.get_mut(&key) else {
                continue;
            };
            if s.free_at() != Some(t) {
                continue;
            }
            if let Some(c) = s.held.take() {
                s.send(&c, now.unwrap_or(t));
                out.push(c);
            }
        }
        out
    }

    /// Changes replaced while held since the last call, for the count.
    pub fn take_coalesced(&mut self) -> u64 {
        std::mem::take(&mut self.coalesced)
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
        let mut now = Instant::now();
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
        .map(|r| {
            // Each a second after the one before: none is held.
            now += MIN_INTERVAL;
            c.observe(r, now).map(|ch| (ch.value, ch.previous))
        })
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

    #[test]
    fn changes_closer_than_a_second_are_coalesced_and_the_last_state_goes_when_due() {
        let mut c = changes(&["*/state"]).unwrap();
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let sent = c.observe(&reading("pump", "state", 0.0, 0), at(0.0));
        assert_eq!(sent.map(|c| c.value), Some(0.0));
        // Flapping within the second: held, each replacing the one before.
        assert!(c
            .observe(&reading("pump", "state", 1.0, 100), at(0.1))
            .is_none());
        assert!(c
            .observe(&reading("pump", "state", 2.0, 200), at(0.2))
            .is_none());
        assert_eq!(c.due(), Some(at(1.0)));
        assert!(c.take_due(Some(at(0.9))).is_empty());
        let due = c.take_due(Some(at(1.0)));
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].value, due[0].previous), (2.0, Some(0.0)));
        assert_eq!(due[0].at, reading("pump", "state", 0.0, 200).time());
        assert_eq!(c.due(), None);
        assert_eq!(c.take_coalesced(), 1);
        // Held, then back to the state sent: nothing goes.
        assert!(c
            .observe(&reading("pump", "state", 5.0, 1_100), at(1.1))
            .is_none());
        assert!(c
            .observe(&reading("pump", "state", 2.0, 1_200), at(1.2))
            .is_none());
        assert!(c.take_due(Some(at(5.0))).is_empty(), "nothing held");
        assert_eq!(c.due(), None);
        // Held at shutdown: sent.
        assert!(c
            .observe(&reading("pump", "state", 3.0, 1_300), at(1.3))
            .is_none());
        let last = c.take_due(None);
        assert_eq!(last.iter().map(|c| c.value).collect::<Vec<_>>(), [3.0]);
    }
}
