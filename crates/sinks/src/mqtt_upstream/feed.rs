//! The upstream as one more output: it takes the pipeline's
//! [`SinkEvent`]s like every other, and the forwarder renders each
//! (`render`) as it stores it, with no relay task in between. Windows and
//! device statuses go in order; raised and cleared alerts, command results
//! and configuration states take the urgent lanes, ahead of them. A raise
//! held back by a rule's cooldown never leaves the gateway. Readings come
//! only when the upstream needs them: for the metrics reported on change
//! (`changes`), rendered in order with the windows, and to learn each
//! device's adapter where a unit is set per adapter.

use std::collections::{BTreeMap, HashMap, HashSet};

use gateway_core::config::report::ReportRules;
use gateway_core::telemetry::{Counter, LogThrottle};
use gateway_core::units::Units;
use gateway_core::{DeviceId, OutboundMessage, Reading, SourceId, Telemetry};
use tokio::time::Instant;

use super::changes::{Change, Changes};
use super::render::{is_command_result, Renderer};
use gateway_core::event::{AlertEvent, SinkEvent, StatusEvent};
use tracing::warn;

/// Where a rendered message waits for its turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Windows, statuses and changes, in the order they happened.
    Messages,
    /// Alerts and configuration states: before everything waiting.
    Alerts,
    /// Command results: their own lane, before the backlog.
    Results,
}

/// Messages rendered, each with its lane.
pub type Rendered = Vec<(OutboundMessage, Lane)>;

/// How what the upstream is handed becomes its messages.
pub trait Render: Send + 'static {
    /// What it is handed.
    type Item: Send + 'static;
    /// Appends the messages of `item` to `out` (`urgent`: it came on the
    /// urgent lane).
    fn render(&mut self, item: Self::Item, urgent: bool, out: &mut Rendered);
    /// When messages held back are due (changes coalesced within a
    /// second).
    fn due(&self) -> Option<Instant> {
        None
    }
    /// Appends the messages held back that are due at `now` (`None`:
    /// every one, at stop).
    fn held(&mut self, _now: Option<Instant>, _out: &mut Rendered) {}
    /// Appends what a new connection must carry again because a broker
    /// restarted without persistence has forgotten it: retained state
    /// published once, whose absence would read as "never reported".
    fn reconnected(&mut self, _out: &mut Rendered) {}
}

/// Renders events for one gateway's upstream.
pub struct Feed {
    renderer: Renderer,
    /// Each metric's unit with the config's overrides: a window's and an
    /// alert's `unit` and `text`.
    units: Units,
    /// The metrics reported on change; `None`: none is.
    changes: Option<Reporting>,
    /// Each device's adapter, learnt from its readings, where a unit is
    /// set per adapter (a window does not say which adapter it came from).
    adapters: HashMap<DeviceId, SourceId>,
    /// The latest configuration state, retained upstream: told again on
    /// each new connection, so a fleet view built from retained states does
    /// not lose this gateway when the cloud broker restarts empty.
    config_state: Option<OutboundMessage>,
    /// The devices given a retained status topic, when bounded; `None`:
    /// every device is (a file output, which keeps nothing retained).
    statuses: Option<Statuses>,
}

/// Changes of the metrics of `[upstream] report` sent upstream: how many
/// messages `report = "change"` adds.
pub const UPSTREAM_CHANGES: &str = "edge_gateway_upstream_changes_total";
/// Changes not sent because a later one of the same metric came within a
/// second (`changes::MIN_INTERVAL`): a metric that flaps or is noisy.
pub const UPSTREAM_CHANGES_COALESCED: &str = "edge_gateway_upstream_changes_coalesced_total";

/// `[upstream] report` at work, and its counts.
struct Reporting {
    changes: Changes,
    sent: Counter,
    coalesced: Counter,
}

/// Devices whose adapter is remembered; beyond, the memory starts again.
const MAX_TRACKED_DEVICES: usize = 100_000;

/// Most devices not in `[[device]]` given a retained
/// `{prefix}/{device}/status` upstream. Anyone on a local broker can
/// announce a status for a made-up id, and each id would keep a retained
/// message on the cloud broker for good: past this, a new one's statuses
/// are refused (counted in [`UPSTREAM_STATUSES_REFUSED`], logged).
pub const MAX_STATUS_DEVICES: usize = 4096;
/// Statuses not sent upstream because [`MAX_STATUS_DEVICES`] devices not
/// in `[[device]]` already have a retained status topic.
pub const UPSTREAM_STATUSES_REFUSED: &str = "edge_gateway_upstream_statuses_refused_total";

/// The devices not in `[[device]]` whose statuses go upstream: the first
/// `max` to announce one, for as long as the gateway runs, so a device
/// once announced keeps its topic up to date.
struct Statuses {
    admitted: HashSet<DeviceId>,
    max: usize,
    refused: Counter,
    log: LogThrottle,
}

impl Feed {
    pub fn new(renderer: Renderer, units: Units) -> Self {
        Self {
            renderer,
            units,
            changes: None,
            adapters: HashMap::new(),
            config_state: None,
            statuses: None,
        }
    }

    /// Gives at most `max` devices not in `[[device]]` a retained status
    /// topic (the upstream: [`MAX_STATUS_DEVICES`]); the statuses of
    /// others are refused, counted in [`UPSTREAM_STATUSES_REFUSED`].
    #[must_use]
    pub fn with_status_devices(mut self, max: usize, telemetry: &Telemetry) -> Self {
        self.statuses = Some(Statuses {
            admitted: HashSet::new(),
            max,
            refused: telemetry.counter(UPSTREAM_STATUSES_REFUSED, &[]),
            log: LogThrottle::default(),
        });
        self
    }

    /// Reports the metrics `rules` name at once when they change, counted
    /// in [`UPSTREAM_CHANGES`]; the upstream's link must then carry the
    /// readings (`UpstreamSettings::takes_readings`).
    #[must_use]
    pub fn with_changes(mut self, rules: ReportRules, telemetry: &Telemetry) -> Self {
        self.changes = Changes::new(rules).map(|changes| Reporting {
            changes,
            sent: telemetry.counter(UPSTREAM_CHANGES, &[]),
            coalesced: telemetry.counter(UPSTREAM_CHANGES_COALESCED, &[]),
        });
        self
    }

    /// Starts with the adapters devices were last heard through (the
    /// dashboard's `device-adapters.json`), so a window restored at a
    /// restart carries its adapter's `units` before its device speaks
    /// again, not the table's.
    #[must_use]
    pub fn with_kept_adapters(mut self, kept: BTreeMap<String, SourceId>) -> Self {
        if self.units.by_adapter() {
            self.adapters.extend(
                kept.into_iter()
                    .take(MAX_TRACKED_DEVICES)
                    .filter_map(|(device, source)| Some((DeviceId::new(&device).ok()?, source))),
            );
        }
        self
    }

    /// What renders the payloads (for outputs that write the same ones).
    pub fn renderer(&self) -> &Renderer {
        &self.renderer
    }

    /// A window with each metric's unit, as every output shows it.
    fn window(&self, w: &gateway_core::event::WindowEvent) -> OutboundMessage {
        // One lookup for the units, the name and the tags.
        let info = self.renderer.registry.get(&w.device);
        let device_units = info.map(|d| &d.units);
        let source = if self.adapters.is_empty() {
            SourceId::UNKNOWN
        } else {
            self.adapters
                .get(&w.device)
                .copied()
                .unwrap_or(SourceId::UNKNOWN)
        };
        self.renderer.aggregated_of(w, info, |metric| {
            self.units
                .unit_of_device(w.device.as_str(), device_units, source, metric)
        })
    }

    /// Learns each device's adapter (where units are set per adapter) and
    /// renders the changes of the metrics reported on change.
    fn readings(&mut self, readings: &[Reading], out: &mut Rendered) {
        if self.units.by_adapter() {
            for r in readings {
                if r.source() == SourceId::UNKNOWN
                    || self.adapters.get(r.device()) == Some(&r.source())
                {
                    continue;
                }
                if self.adapters.len() >= MAX_TRACKED_DEVICES {
                    self.adapters.clear();
                }
                self.adapters.insert(r.device().clone(), r.source());
            }
        }
        let Some(reporting) = self.changes.as_mut() else {
            return;
        };
        let now = Instant::now();
        let found: Vec<Change> = readings
            .iter()
            .filter_map(|r| reporting.changes.observe(r, now))
            .collect();
        self.changes_into(found, out);
    }

    fn changes_into(&mut self, found: Vec<Change>, out: &mut Rendered) {
        if let Some(r) = self.changes.as_mut() {
            r.sent.add(found.len() as u64);
            r.coalesced.add(r.changes.take_coalesced());
        }
        for c in found {
            let unit = self
                .units
                .of_device(
                    c.device.as_str(),
                    self.renderer.registry.get(&c.device).map(|d| &d.units),
                    c.source,
                    &c.metric,
                )
                .unit;
            out.push((self.renderer.change(&c, &unit), Lane::Messages));
        }
    }

    /// A device's status, unless it would be one retained topic too many.
    fn status(&mut self, s: &StatusEvent) -> Option<OutboundMessage> {
        if let Some(statuses) = self.statuses.as_mut() {
            // Exactly as configured: `KITCHEN`, `kItchen`, … are each a
            // topic of their own, not the registered `kitchen`'s.
            let registered = self.renderer.registry.get_exact(&s.device).is_some();
            if !registered && !statuses.admitted.contains(&s.device) {
                if statuses.admitted.len() >= statuses.max {
                    statuses.refused.inc();
                    if let Some(suppressed) = statuses.log.allow("max_status_devices") {
                        warn!(device = %s.device, suppressed, max = statuses.max, "Upstream: as many devices not in [[device]] as may have a retained status topic already have one: this device's status is not sent.");
                    }
                    return None;
                }
                statuses.admitted.insert(s.device.clone());
            }
        }
        Some(self.renderer.device_status(s))
    }

    /// A raised or cleared alert; a suppressed one stays here.
    fn alert(&self, a: &AlertEvent) -> Option<OutboundMessage> {
        if a.state == "suppressed" {
            return None;
        }
        let info = self.units.of_device(
            a.device.as_str(),
            self.renderer.registry.get(&a.device).map(|d| &d.units),
            a.source,
            &a.metric,
        );
        Some(self.renderer.alert_in(a, &info))
    }
}

impl Render for Feed {
    type Item = SinkEvent;

    fn render(&mut self, event: SinkEvent, _urgent: bool, out: &mut Rendered) {
        let rendered = match event {
            SinkEvent::Alert(a) => self.alert(&a).map(|m| (m, Lane::Alerts)),
            SinkEvent::Command(c) => Some((self.renderer.command_result(&c), Lane::Results)),
            SinkEvent::ConfigState(s) => {
                let message = self.renderer.config_state(&s);
                self.config_state = Some(message.clone());
                Some((message, Lane::Alerts))
            }
            SinkEvent::Window(w) => Some((self.window(&w), Lane::Messages)),
            SinkEvent::Status(s) => self.status(&s).map(|m| (m, Lane::Messages)),
            SinkEvent::Readings(readings) => {
                self.readings(&readings, out);
                None
            }
            SinkEvent::JournalEpoch(_) => None,
        };
        out.extend(rendered);
    }

    fn due(&self) -> Option<Instant> {
        self.changes.as_ref().and_then(|r| r.changes.due())
    }

    fn held(&mut self, now: Option<Instant>, out: &mut Rendered) {
        let Some(reporting) = self.changes.as_mut() else {
            return;
        };
        let due = reporting.changes.take_due(now);
        self.changes_into(due, out);
    }

    fn reconnected(&mut self, out: &mut Rendered) {
        out.extend(self.config_state.clone().map(|m| (m, Lane::Alerts)));
    }
}

/// Messages rendered elsewhere (a test, a tool): those handed on the
/// urgent lane overtake the rest, command results told by their topic.
pub struct Passthrough;

impl Render for Passthrough {
    type Item = OutboundMessage;

    fn render(&mut self, msg: OutboundMessage, urgent: bool, out: &mut Rendered) {
        let lane = match (urgent, is_command_result(&msg.topic)) {
            (false, _) => Lane::Messages,
            (true, true) => Lane::Results,
            (true, false) => Lane::Alerts,
        };
        out.push((msg, lane));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use gateway_core::{DeviceId, DeviceRegistry, SourceId, Timestamp};

    use super::*;
    use gateway_core::event::{MetricStats, StatusEvent, WindowEvent};

    const T0: i64 = 1_767_225_600_000;

    fn feed() -> Feed {
        Feed::new(
            Renderer {
                gateway_id: "gw-01".into(),
                prefix: "building/hq".into(),
                registry: DeviceRegistry::default(),
            },
            Units::default(),
        )
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(T0 + ms).unwrap()
    }

    fn window(minute: i64) -> SinkEvent {
        SinkEvent::Window(WindowEvent {
            device: DeviceId::new("fridge-2").unwrap(),
            start: at(minute * 60_000),
            end: at((minute + 1) * 60_000),
            partial: false,
            window_start: at(minute * 60_000),
            rerun: 0,
            amendment: 0,
            partial_at: None,
            metrics: vec![(
                "temperature".into(),
                MetricStats {
                    count: 1,
                    avg: 4.0,
                    min: 4.0,
                    max: 4.0,
                    std: 0.0,
                },
            )],
        })
    }

    fn status(online: bool) -> SinkEvent {
        SinkEvent::Status(StatusEvent {
            device: DeviceId::new("fridge-2").unwrap(),
            online,
            at: at(1),
        })
    }

    fn alert(state: &str, ms: i64) -> SinkEvent {
        SinkEvent::Alert(AlertEvent {
            device: DeviceId::new("fridge-2").unwrap(),
            rule: "fridge-max".into(),
            metric: "temperature".into(),
            kind: "threshold".into(),
            state: state.into(),
            value: 9.0,
            limit: 8.0,
            at: at(ms),
            reason: None,
            expected: None,
            observed: None,
            source: SourceId::UNKNOWN,
        })
    }

    fn render(feed: &mut Feed, event: SinkEvent, urgent: bool) -> Rendered {
        let mut out = Vec::new();
        feed.render(event, urgent, &mut out);
        out
    }

    fn rendered(event: SinkEvent, urgent: bool) -> Option<(String, Lane)> {
        let mut out = render(&mut feed(), event, urgent);
        assert!(out.len() <= 1, "one message at most");
        out.pop().map(|(m, lane)| (m.topic, lane))
    }

    /// A window restored at a restart, before its device speaks again:
    /// its adapter's unit, from the adapters kept, not the table's.
    #[test]
    fn a_restored_window_has_its_kept_adapters_unit() {
        let sources = gateway_core::Sources::default();
        let probes = sources.register("probes", "mqtt");
        let units = Units::default().with_adapters(
            BTreeMap::from([(
                "probes".to_string(),
                BTreeMap::from([("temperature".to_string(), "°F".to_string())]),
            )]),
            sources,
        );
        let unit_of = |mut feed: Feed| {
            let out = render(&mut feed, window(0), false);
            let body: serde_json::Value = serde_json::from_slice(&out[0].0.payload).unwrap();
            body["metrics"]["temperature"]["unit"].clone()
        };
        let plain = Feed::new(feed().renderer, units.clone());
        assert_eq!(unit_of(plain), "°C");
        let kept = Feed::new(feed().renderer, units)
            .with_kept_adapters(BTreeMap::from([("fridge-2".to_string(), probes)]));
        assert_eq!(unit_of(kept), "°F");
    }

    #[test]
    fn windows_and_statuses_wait_in_order_and_alerts_overtake_them_from_either_lane() {
        for urgent in [false, true] {
            assert_eq!(
                rendered(window(0), urgent),
                Some(("building/hq/fridge-2/aggregated".into(), Lane::Messages))
            );
            assert_eq!(
                rendered(status(false), urgent),
                Some(("building/hq/fridge-2/status".into(), Lane::Messages))
            );
            for state in ["raised", "cleared"] {
                assert_eq!(
                    rendered(alert(state, 1), urgent),
                    Some(("building/hq/fridge-2/alerts".into(), Lane::Alerts))
                );
            }
        }
    }

    #[test]
    fn past_the_bound_a_new_device_gets_no_retained_status_and_those_announced_keep_theirs() {
        let telemetry = Telemetry::default();
        let registry = DeviceRegistry::from_config(&crate::test_devices(
            "[[device]]\nid = \"fridge-2\"\nname = \"Fridge 2\"\n",
        ));
        let mut feed = Feed::new(
            Renderer {
                registry,
                ..feed().renderer
            },
            Units::default(),
        )
        .with_status_devices(2, &telemetry);
        let mut status_of = |device: &str, online: bool| {
            let event = SinkEvent::Status(StatusEvent {
                device: DeviceId::new(device).unwrap(),
                online,
                at: at(1),
            });
            let out = render(&mut feed, event, false);
            assert!(out.len() <= 1);
            out.into_iter().next().map(|(m, _)| {
                assert!(m.retain);
                m.topic
            })
        };
        let refused = || telemetry.counter_value(UPSTREAM_STATUSES_REFUSED, &[]);
        assert_eq!(
            status_of("made-up-1", true).as_deref(),
            Some("building/hq/made-up-1/status")
        );
        assert_eq!(
            status_of("made-up-2", true).as_deref(),
            Some("building/hq/made-up-2/status")
        );
        assert_eq!(refused(), Some(0));
        for i in 3..10 {
            assert_eq!(status_of(&format!("made-up-{i}"), true), None);
        }
        assert_eq!(refused(), Some(7));
        // Those announced go on being told, and a [[device]] always is;
        // another spelling of it is another topic, bounded like the rest.
        assert_eq!(
            status_of("made-up-1", false).as_deref(),
            Some("building/hq/made-up-1/status")
        );
        assert_eq!(
            status_of("made-up-2", false).as_deref(),
            Some("building/hq/made-up-2/status")
        );
        assert_eq!(
            status_of("fridge-2", false).as_deref(),
            Some("building/hq/fridge-2/status")
        );
        assert_eq!(status_of("FRIDGE-2", false), None);
        assert_eq!(refused(), Some(8));
        // Windows of a refused device still go up: only the retained
        // topic is bounded.
        assert!(matches!(
            render(&mut feed, window(0), false).as_slice(),
            [(m, Lane::Messages)] if !m.retain
        ));
    }

    #[test]
    fn without_a_bound_every_device_gets_its_status() {
        let mut feed = feed();
        for i in 0..(MAX_STATUS_DEVICES + 10) {
            let event = SinkEvent::Status(StatusEvent {
                device: DeviceId::new(format!("d-{i}")).unwrap(),
                online: true,
                at: at(1),
            });
            assert_eq!(render(&mut feed, event, false).len(), 1);
        }
    }

    #[test]
    fn a_suppressed_alert_never_goes_upstream() {
        assert_eq!(rendered(alert("suppressed", 1), true), None);
        assert_eq!(rendered(alert("suppressed", 2), false), None);
        let (m, lane) = render(&mut feed(), alert("raised", 3), true).pop().unwrap();
        let sent = serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap();
        assert_eq!(sent["state"], "raised");
        assert_eq!(lane, Lane::Alerts);
    }

    #[test]
    fn readings_are_not_the_upstreams_business() {
        assert_eq!(rendered(SinkEvent::Readings(Vec::new()), false), None);
    }

    #[test]
    fn messages_rendered_elsewhere_keep_their_lanes() {
        let msg = |topic: &str| OutboundMessage {
            topic: topic.into(),
            payload: b"{}".to_vec(),
            retain: false,
        };
        let lane = |topic: &str, urgent| {
            let mut out = Vec::new();
            Passthrough.render(msg(topic), urgent, &mut out);
            out.pop().map(|(_, l)| l)
        };
        assert_eq!(lane("p/d/aggregated", false), Some(Lane::Messages));
        assert_eq!(lane("p/d/alerts", true), Some(Lane::Alerts));
        assert_eq!(lane("p/d/command/result", true), Some(Lane::Results));
        assert_eq!(lane("p/d/command/result", false), Some(Lane::Messages));
    }

    /// Issue 68 (9, 11): a window carries each metric's unit; a metric of
    /// `[upstream] report` goes out at once when it changes, in order with
    /// the windows, the others only in their windows.
    #[tokio::test(start_paused = true)]
    async fn a_window_carries_its_units_and_a_reported_metric_goes_out_when_it_changes() {
        use gateway_core::config::report::{ReportMode, ReportRules};
        use gateway_core::{MetricName, Reading, TimeSource};
        let rules = ReportRules::new(
            &[("fridge-*/door".to_string(), ReportMode::Change)]
                .into_iter()
                .collect(),
        );
        let mut feed = feed().with_changes(rules, &gateway_core::Telemetry::default());
        let reading = |metric: &str, value: f64, ms: i64| {
            Reading::new(
                DeviceId::new("fridge-2").unwrap(),
                MetricName::new(metric).unwrap(),
                value,
                at(ms),
                TimeSource::Event,
            )
            .unwrap()
        };
        let mut out = render(
            &mut feed,
            SinkEvent::Readings(vec![
                reading("door", 0.0, 0),
                reading("temperature", 4.0, 0),
                reading("door", 0.0, 500),
                reading("door", 1.0, 1_000),
            ]),
            false,
        );
        out.extend(render(&mut feed, window(0), false));
        let due = feed.due().expect("a change held back");
        tokio::time::sleep_until(due).await;
        feed.held(Some(Instant::now()), &mut out);
        let got: Vec<(String, serde_json::Value, Lane)> = out
            .into_iter()
            .map(|(m, lane)| {
                (
                    m.topic.clone(),
                    serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap(),
                    lane,
                )
            })
            .collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got.iter().all(|(_, _, lane)| *lane == Lane::Messages));
        // The second change came within a second of the first: held
        // until its second has passed, behind the window.
        assert_eq!(got[0].0, "building/hq/fridge-2/change");
        assert_eq!(got[0].1["value"], 0.0);
        assert_eq!(got[1].0, "building/hq/fridge-2/aggregated");
        assert_eq!(got[1].1["metrics"]["temperature"]["unit"], "°C");
        assert_eq!(got[2].0, "building/hq/fridge-2/change");
        assert_eq!(got[2].1["value"], 1.0);
        assert_eq!(got[2].1["previous"], 0.0);
        assert_eq!(got[2].1["ts"], "2026-01-01T00:00:01Z");
        assert_eq!(feed.due(), None, "nothing else");
    }
}
