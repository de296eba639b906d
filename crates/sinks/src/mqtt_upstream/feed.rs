//! The upstream as one more output: it takes the pipeline's
//! [`SinkEvent`]s like every other, and the forwarder renders each
//! (`render`) as it stores it. Windows and device statuses go in order;
//! raised and cleared alerts, command results and configuration states
//! take the urgent lanes, ahead of them. A raise held back by a rule's
//! cooldown never leaves the gateway, and readings are not the upstream's
//! business.

use gateway_core::units::Units;
use gateway_core::OutboundMessage;

use super::render::{is_command_result, Renderer};
use gateway_core::event::{AlertEvent, SinkEvent};

/// Where a rendered message waits for its turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Windows and statuses, in the order they happened.
    Messages,
    /// Alerts and configuration states: before everything waiting.
    Alerts,
    /// Command results: their own lane, before the backlog.
    Results,
}

/// How what the upstream is handed becomes its messages.
pub trait Render: Send + 'static {
    /// What it is handed.
    type Item: Send + 'static;
    /// The message for `item` and its lane (`urgent`: it came on the
    /// urgent lane); `None`: nothing for the upstream.
    fn render(&self, item: Self::Item, urgent: bool) -> Option<(OutboundMessage, Lane)>;
}

/// Renders events for one gateway's upstream.
pub struct Feed {
    pub renderer: Renderer,
    /// Each metric's unit with the config's overrides: an alert's `unit`
    /// and `text`.
    pub units: Units,
}

impl Feed {
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

    fn render(&self, event: SinkEvent, _urgent: bool) -> Option<(OutboundMessage, Lane)> {
        match event {
            SinkEvent::Alert(a) => self.alert(&a).map(|m| (m, Lane::Alerts)),
            SinkEvent::Command(c) => Some((self.renderer.command_result(&c), Lane::Results)),
            SinkEvent::ConfigState(s) => Some((self.renderer.config_state(&s), Lane::Alerts)),
            SinkEvent::Window(w) => Some((self.renderer.aggregated(&w), Lane::Messages)),
            SinkEvent::Status(s) => Some((self.renderer.device_status(&s), Lane::Messages)),
            SinkEvent::Readings(_) | SinkEvent::JournalEpoch(_) => None,
        }
    }
}

/// Messages rendered elsewhere (a test, a tool): those handed on the
/// urgent lane overtake the rest, command results told by their topic.
pub struct Rendered;

impl Render for Rendered {
    type Item = OutboundMessage;

    fn render(&self, msg: OutboundMessage, urgent: bool) -> Option<(OutboundMessage, Lane)> {
        let lane = match (urgent, is_command_result(&msg.topic)) {
            (false, _) => Lane::Messages,
            (true, true) => Lane::Results,
            (true, false) => Lane::Alerts,
        };
        Some((msg, lane))
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
        Feed {
            renderer: Renderer {
                gateway_id: "gw-01".into(),
                prefix: "building/hq".into(),
                registry: DeviceRegistry::default(),
            },
            units: Units::default(),
        }
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

    fn rendered(event: SinkEvent, urgent: bool) -> Option<(String, Lane)> {
        feed().render(event, urgent).map(|(m, lane)| (m.topic, lane))
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
    fn a_suppressed_alert_never_goes_upstream() {
        assert_eq!(rendered(alert("suppressed", 1), true), None);
        assert_eq!(rendered(alert("suppressed", 2), false), None);
        let (m, lane) = feed().render(alert("raised", 3), true).unwrap();
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
        let lane = |topic: &str, urgent| Rendered.render(msg(topic), urgent).map(|(_, l)| l);
        assert_eq!(lane("p/d/aggregated", false), Some(Lane::Messages));
        assert_eq!(lane("p/d/alerts", true), Some(Lane::Alerts));
        assert_eq!(lane("p/d/command/result", true), Some(Lane::Results));
        assert_eq!(lane("p/d/command/result", false), Some(Lane::Messages));
    }
}
