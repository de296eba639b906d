//! The upstream as one more output: it takes the pipeline's
//! [`SinkEvent`]s like every other and hands the forwarder their rendered
//! messages (`render`). Windows and device statuses go to the forwarder's
//! queue in order; raised and cleared alerts to its urgent lane, ahead of
//! them. A raise held back by a rule's cooldown never leaves the gateway.
//! Readings come only when the upstream needs them: for the metrics
//! reported on change (`changes`), rendered onto the windows' queue at
//! once, and to learn each device's adapter where a unit is set per
//! adapter.

use std::collections::HashMap;

use gateway_core::config::report::ReportRules;
use gateway_core::telemetry::Counter;
use gateway_core::units::Units;
use gateway_core::{DeviceId, OutboundMessage, Reading, SourceId, Telemetry};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::changes::{Change, Changes};
use super::render::Renderer;
use crate::OutputLink;
use gateway_core::event::{AlertEvent, SinkEvent};

/// The forwarder's side: where rendered messages go.
pub struct ForwarderQueues {
    /// Windows and statuses, in the order they happened.
    pub messages: mpsc::Sender<OutboundMessage>,
    /// Alerts, stored and sent before whatever waits in `messages`.
    pub urgent: mpsc::Sender<OutboundMessage>,
    /// The forwarder's flush handshake; `None` answers every flush with
    /// `true` (nothing durable behind the queues).
    pub flush: Option<mpsc::Sender<oneshot::Sender<bool>>>,
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

/// The forwarder is gone: nothing more can be handed to it.
struct Gone;

impl Feed {
    pub fn new(renderer: Renderer, units: Units) -> Self {
        Self {
            renderer,
            units,
            changes: None,
            adapters: HashMap::new(),
        }
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

    /// Runs until the pipeline closes `link`'s events (or the forwarder
    /// stops taking them), then drops the queues, so the forwarder
    /// delivers what it holds and stops.
    ///
    /// A flush request is answered only after everything received before
    /// it is in the forwarder's queues, with the forwarder's own answer.
    pub async fn run(mut self, link: OutputLink<SinkEvent>, to: ForwarderQueues) {
        let OutputLink {
            messages: mut events,
            mut urgent,
            mut flush,
        } = link;
        loop {
            let due = self.changes.as_ref().and_then(|r| r.changes.due());
            let handed = tokio::select! {
                biased;
                event = async { urgent.as_mut()?.recv().await }, if urgent.is_some() => match event {
                    Some(event) => match self.hand(event, &to, &mut urgent).await {
                        // A lane that never runs dry (a command flood, each
                        // with its result) must not keep the windows out:
                        // one of them after each.
                        Ok(()) => match events.try_recv() {
                            Ok(event) => self.hand(event, &to, &mut urgent).await,
                            Err(_) => Ok(()),
                        },
                        gone => gone,
                    },
                    None => {
                        urgent = None;
                        Ok(())
                    }
                },
                event = events.recv() => match event {
                    Some(event) => self.hand(event, &to, &mut urgent).await,
                    None => {
                        // The pipeline is done; alerts it sent last may
                        // still wait on their lane, and states held back
                        // go up as they are.
                        let _ = self.drain(&mut urgent, None, &to).await;
                        let _ = self.send_held(None, &to, &mut urgent).await;
                        return;
                    }
                },
                _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    self.send_held(Some(Instant::now()), &to, &mut urgent).await
                }
                request = async { flush.as_mut()?.recv().await }, if flush.is_some() => match request {
                    Some(reply) => self.flush(reply, &mut events, &mut urgent, &to).await,
                    None => {
                        flush = None;
                        Ok(())
                    }
                },
            };
            if handed.is_err() {
                return;
            }
        }
    }

    /// Hands over what waits on the urgent lane, then on `events`.
    async fn drain(
        &mut self,
        urgent: &mut Option<mpsc::Receiver<SinkEvent>>,
        events: Option<&mut mpsc::Receiver<SinkEvent>>,
        to: &ForwarderQueues,
    ) -> Result<(), Gone> {
        if let Some(lane) = urgent.as_mut() {
            while let Ok(event) = lane.try_recv() {
                self.hand(event, to, &mut None).await?;
            }
        }
        if let Some(events) = events {
            while let Ok(event) = events.try_recv() {
                self.hand(event, to, urgent).await?;
            }
        }
        Ok(())
    }

    /// Everything received before the request goes to the forwarder
    /// first (the pipeline queued it before asking), then the forwarder
    /// answers whether it is all on disk.
    async fn flush(
        &mut self,
        reply: oneshot::Sender<bool>,
        events: &mut mpsc::Receiver<SinkEvent>,
        urgent: &mut Option<mpsc::Receiver<SinkEvent>>,
        to: &ForwarderQueues,
    ) -> Result<(), Gone> {
        let drained = self.drain(urgent, Some(events), to).await;
        let stored = match (&drained, &to.flush) {
            (Err(Gone), _) => false,
            (Ok(()), None) => true,
            (Ok(()), Some(flush)) => {
                let (tx, rx) = oneshot::channel();
                flush.send(tx).await.is_ok() && matches!(rx.await, Ok(true))
            }
        };
        let _ = reply.send(stored);
        drained
    }

    /// Renders one event onto its queue. A window or status waiting for
    /// room in the forwarder's queue lets the alerts of `urgent` pass.
    async fn hand(
        &mut self,
        event: SinkEvent,
        to: &ForwarderQueues,
        urgent: &mut Option<mpsc::Receiver<SinkEvent>>,
    ) -> Result<(), Gone> {
        let msg = match event {
            SinkEvent::Alert(a) => return self.alert(&a, to).await,
            SinkEvent::Command(c) => {
                let msg = self.renderer.command_result(&c);
                return to.urgent.send(msg).await.map_err(|_| Gone);
            }
            SinkEvent::ConfigState(s) => {
                let msg = self.renderer.config_state(&s);
                return to.urgent.send(msg).await.map_err(|_| Gone);
            }
            SinkEvent::Window(w) => self.window(&w),
            SinkEvent::Status(s) => self.renderer.device_status(&s),
            SinkEvent::Readings(readings) => return self.readings(&readings, to, urgent).await,
            SinkEvent::JournalEpoch(_) => return Ok(()),
        };
        self.send(msg, to, urgent).await
    }

    /// A window with each metric's unit, as every output shows it.
    fn window(&self, w: &gateway_core::event::WindowEvent) -> OutboundMessage {
        let device_units = self.renderer.registry.get(&w.device).map(|d| &d.units);
        let source = self
            .adapters
            .get(&w.device)
            .copied()
            .unwrap_or(SourceId::UNKNOWN);
        self.renderer.aggregated_in(w, |metric| {
            self.units
                .of_device(w.device.as_str(), device_units, source, metric)
                .unit
        })
    }

    /// Learns each device's adapter (where units are set per adapter) and
    /// sends the changes of the metrics reported on change.
    async fn readings(
        &mut self,
        readings: &[Reading],
        to: &ForwarderQueues,
        urgent: &mut Option<mpsc::Receiver<SinkEvent>>,
    ) -> Result<(), Gone> {
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
            return Ok(());
        };
        let now = Instant::now();
        let found: Vec<Change> = readings
            .iter()
            .filter_map(|r| reporting.changes.observe(r, now))
            .collect();
        self.send_changes(found, to, urgent).await
    }

    /// The changes held back whose second has passed (`None`: every one,
    /// at shutdown).
    async fn send_held(
        &mut self,
        now: Option<Instant>,
        to: &ForwarderQueues,
        urgent: &mut Option<mpsc::Receiver<SinkEvent>>,
    ) -> Result<(), Gone> {
        let Some(reporting) = self.changes.as_mut() else {
            return Ok(());
        };
        let due = reporting.changes.take_due(now);
        self.send_changes(due, to, urgent).await
    }

    async fn send_changes(
        &mut self,
        found: Vec<Change>,
        to: &ForwarderQueues,
        urgent: &mut Option<mpsc::Receiver<SinkEvent>>,
    ) -> Result<(), Gone> {
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
            let msg = self.renderer.change(&c, &unit);
            self.send(msg, to, urgent).await?;
        }
        Ok(())
    }

    /// Onto the forwarder's queue, in order; while it waits for room the
    /// alerts and results of `urgent` pass.
    async fn send(
        &self,
        msg: OutboundMessage,
        to: &ForwarderQueues,
        urgent: &mut Option<mpsc::Receiver<SinkEvent>>,
    ) -> Result<(), Gone> {
        loop {
            tokio::select! {
                biased;
                event = async { urgent.as_mut()?.recv().await }, if urgent.is_some() => match event {
                    Some(SinkEvent::Alert(a)) => self.alert(&a, to).await?,
                    Some(SinkEvent::Command(c)) => {
                        let msg = self.renderer.command_result(&c);
                        to.urgent.send(msg).await.map_err(|_| Gone)?;
                    }
                    Some(SinkEvent::ConfigState(s)) => {
                        let msg = self.renderer.config_state(&s);
                        to.urgent.send(msg).await.map_err(|_| Gone)?;
                    }
                    // Only alerts, command results and configuration
                    // states take the urgent lane.
                    Some(_) => {}
                    None => *urgent = None,
                },
                permit = to.messages.reserve() => {
                    let Ok(permit) = permit else { return Err(Gone) };
                    permit.send(msg);
                    return Ok(());
                }
            }
        }
    }

    /// A raised or cleared alert, to the urgent lane; a suppressed one
    /// stays here.
    async fn alert(&self, a: &AlertEvent, to: &ForwarderQueues) -> Result<(), Gone> {
        if a.state == "suppressed" {
            return Ok(());
        }
        let info = self.units.of_device(
            a.device.as_str(),
            self.renderer.registry.get(&a.device).map(|d| &d.units),
            a.source,
            &a.metric,
        );
        let msg = self.renderer.alert_in(a, &info);
        to.urgent.send(msg).await.map_err(|_| Gone)
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

    struct Forwarder {
        messages: mpsc::Receiver<OutboundMessage>,
        urgent: mpsc::Receiver<OutboundMessage>,
        flush: mpsc::Receiver<oneshot::Sender<bool>>,
    }

    /// The feed running between the pipeline's senders and a forwarder
    /// the test plays.
    fn start() -> (
        mpsc::Sender<SinkEvent>,
        mpsc::Sender<SinkEvent>,
        mpsc::Sender<oneshot::Sender<bool>>,
        Forwarder,
    ) {
        let (events, events_rx) = mpsc::channel(64);
        let (urgent, urgent_rx) = mpsc::channel(64);
        let (flush, flush_rx) = mpsc::channel(1);
        let (messages_tx, messages) = mpsc::channel(64);
        let (urgent_tx, forwarder_urgent) = mpsc::channel(64);
        let (forwarder_flush_tx, forwarder_flush) = mpsc::channel(1);
        tokio::spawn(feed().run(
            OutputLink {
                messages: events_rx,
                urgent: Some(urgent_rx),
                flush: Some(flush_rx),
            },
            ForwarderQueues {
                messages: messages_tx,
                urgent: urgent_tx,
                flush: Some(forwarder_flush_tx),
            },
        ));
        let forwarder = Forwarder {
            messages,
            urgent: forwarder_urgent,
            flush: forwarder_flush,
        };
        (events, urgent, flush, forwarder)
    }

    fn topics(rx: &mut mpsc::Receiver<OutboundMessage>) -> Vec<String> {
        let mut got = Vec::new();
        while let Ok(m) = rx.try_recv() {
            got.push(m.topic);
        }
        got
    }

    #[tokio::test]
    async fn everything_before_a_flush_is_with_the_forwarder_before_it_is_asked() {
        let (events, urgent, flush, mut fwd) = start();
        for minute in 0..40 {
            events.send(window(minute)).await.unwrap();
        }
        events.send(status(false)).await.unwrap();
        events.send(alert("cleared", 2)).await.unwrap();
        urgent.send(alert("raised", 1)).await.unwrap();
        for answer in [false, true] {
            let (reply, answered) = oneshot::channel();
            flush.send(reply).await.unwrap();
            let asked = fwd.flush.recv().await.expect("the forwarder is asked");
            let sent = topics(&mut fwd.messages);
            let alerts = topics(&mut fwd.urgent);
            if answer {
                assert!(sent.is_empty() && alerts.is_empty(), "nothing new");
            } else {
                let mut want = vec!["building/hq/fridge-2/aggregated".to_string(); 40];
                want.push("building/hq/fridge-2/status".into());
                assert_eq!(sent, want);
                assert_eq!(alerts, vec!["building/hq/fridge-2/alerts"; 2]);
            }
            asked.send(answer).unwrap();
            assert_eq!(answered.await, Ok(answer), "the forwarder's answer");
        }
    }

    #[tokio::test]
    async fn a_suppressed_alert_never_goes_upstream() {
        let (events, urgent, flush, mut fwd) = start();
        urgent.send(alert("suppressed", 1)).await.unwrap();
        events.send(alert("suppressed", 2)).await.unwrap();
        urgent.send(alert("raised", 3)).await.unwrap();
        drop((events, urgent, flush));
        let mut sent = Vec::new();
        while let Some(m) = fwd.urgent.recv().await {
            sent.push(serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap());
        }
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0]["state"], "raised");
        assert!(fwd.messages.recv().await.is_none(), "nor as a message");
    }

    /// Issue 68 (9, 11): a window carries each metric's unit; a metric of
    /// `[upstream] report` goes out at once when it changes, in order with
    /// the windows, the others only in their windows.
    #[tokio::test(start_paused = true)]
    async fn a_window_carries_its_units_and_a_reported_metric_goes_out_when_it_changes() {
        use gateway_core::config::report::ReportMode;
        use gateway_core::{MetricName, Reading, TimeSource};
        let rules = ReportRules::new(
            &[("fridge-*/door".to_string(), ReportMode::Change)]
                .into_iter()
                .collect(),
        );
        let (events, events_rx) = mpsc::channel(64);
        let (_urgent, urgent_rx) = mpsc::channel(64);
        let (messages_tx, mut messages) = mpsc::channel(64);
        let (urgent_tx, _forwarder_urgent) = mpsc::channel(64);
        tokio::spawn(feed().with_changes(rules, &Telemetry::default()).run(
            OutputLink {
                messages: events_rx,
                urgent: Some(urgent_rx),
                flush: None,
            },
            ForwarderQueues {
                messages: messages_tx,
                urgent: urgent_tx,
                flush: None,
            },
        ));
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
        events
            .send(SinkEvent::Readings(vec![
                reading("door", 0.0, 0),
                reading("temperature", 4.0, 0),
                reading("door", 0.0, 500),
                reading("door", 1.0, 1_000),
            ]))
            .await
            .unwrap();
        events.send(window(0)).await.unwrap();
        let mut got = Vec::new();
        for _ in 0..3 {
            let m = tokio::time::timeout(std::time::Duration::from_secs(5), messages.recv())
                .await
                .expect("a change or the window")
                .unwrap();
            got.push((
                m.topic.clone(),
                serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap(),
            ));
        }
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
        assert!(messages.try_recv().is_err(), "nothing else");
    }

    #[tokio::test]
    async fn a_gone_forwarder_stops_the_feed() {
        let (events, _urgent, _flush, fwd) = start();
        drop(fwd);
        // The feed's channel closes once it has found the forwarder gone.
        let mut minute = 0;
        while events.send(window(minute)).await.is_ok() {
            minute += 1;
            assert!(minute < 1000, "the feed kept taking events");
        }
    }
}
