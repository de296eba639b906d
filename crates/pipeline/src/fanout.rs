//! The pipeline's one stream of events, to every output: the MQTT
//! upstream, the `[[sink]]`s, the dashboard and Home Assistant each
//! receive the same [`SinkEvent`]s and render or store them their own way;
//! one flush handshake covers every durable output.
//!
//! Events are queued on an output's channel before the pipeline asks for a
//! flush, and an output drains its channel before answering, so a `true`
//! from every output covers everything emitted before the checkpoint.

use aggregator::DeviceWindow;
use gateway_core::event::{MetricStats, SinkEvent, StatusEvent, WindowEvent};
use gateway_core::telemetry::LogThrottle;
use gateway_core::{DeviceState, Reading, StatusChange, Timestamp};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use rules::alerts::Transition;

/// Events waiting for each output.
pub const SINK_QUEUE: usize = 1024;

/// One output as the pipeline feeds it.
pub struct Output {
    pub name: String,
    pub events: mpsc::Sender<SinkEvent>,
    /// Alert transitions go here rather than on `events`, so they overtake
    /// the windows queued there (the upstream's urgent lane).
    pub urgent: Option<mpsc::Sender<SinkEvent>>,
    /// Takes readings and journal epochs (the upstream only when it asks:
    /// `Lanes::readings`).
    pub readings: bool,
    /// Without it the pipeline cannot go on: the upstream, whose outbox a
    /// checkpoint relies on. Any other output that stops is only logged.
    pub required: bool,
}

impl Output {
    /// A `[[sink]]`, the dashboard or Home Assistant: every event, in
    /// order.
    pub fn sink(name: impl Into<String>, events: mpsc::Sender<SinkEvent>) -> Self {
        Self {
            name: name.into(),
            events,
            urgent: None,
            readings: true,
            required: false,
        }
    }

    /// Takes the readings too, or not (`Lanes::readings`).
    #[must_use]
    pub fn with_readings(mut self, readings: bool) -> Self {
        self.readings = readings;
        self
    }

    /// The MQTT upstream: windows, statuses and alerts (on `urgent`, when
    /// given), readings only when [`Self::with_readings`] asks; if it is
    /// gone, the pipeline stops.
    pub fn upstream(
        events: mpsc::Sender<SinkEvent>,
        urgent: Option<mpsc::Sender<SinkEvent>>,
    ) -> Self {
        Self {
            name: "upstream".into(),
            events,
            urgent,
            readings: false,
            required: true,
        }
    }
}

/// Where the pipeline's events go.
#[derive(Default)]
pub struct SinkFanout {
    outputs: Vec<Output>,
    /// Some output takes readings.
    takes_readings: bool,
    /// Readings accepted since the last [`Self::send_readings`].
    readings: Vec<Reading>,
    log: LogThrottle,
}

impl SinkFanout {
    pub fn new(outputs: Vec<Output>) -> Self {
        Self {
            takes_readings: outputs.iter().any(|o| o.readings),
            outputs,
            ..Self::default()
        }
    }

    /// A reading was accepted (into its window, or too late for it).
    /// Inlined: called per reading, and most outputs take none (a call
    /// to find that out was a twentieth of the pipeline's own cost).
    #[inline]
    pub fn reading(&mut self, r: &Reading) {
        if self.takes_readings {
            self.keep(r);
        }
    }

    fn keep(&mut self, r: &Reading) {
        self.readings.push(r.clone());
    }

    /// Sends the readings gathered from one ingress batch.
    pub async fn send_readings(&mut self) {
        if self.readings.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.readings);
        self.send(SinkEvent::Readings(batch)).await;
    }

    /// The readings accepted from now on are journaled in `epoch` (see
    /// [`SinkEvent::JournalEpoch`]); those gathered before it leave first,
    /// so the event stands between the two in every sink's stream.
    pub async fn journal_epoch(&mut self, epoch: u64) {
        if !self.takes_readings {
            return;
        }
        self.send_readings().await;
        self.send(SinkEvent::JournalEpoch(epoch)).await;
    }

    /// A closed window; `partial_at`: cut short at shutdown at that
    /// instant. False when a required output is gone.
    #[must_use]
    pub async fn window(&self, w: &DeviceWindow, partial_at: Option<Timestamp>) -> bool {
        if self.outputs.is_empty() {
            return true;
        }
        let metrics = w
            .metrics
            .iter()
            .map(|(name, s)| {
                (
                    name.as_str().to_string(),
                    MetricStats {
                        count: s.count(),
                        avg: s.avg(),
                        min: s.min(),
                        max: s.max(),
                        std: s.std(),
                    },
                )
            })
            .collect();
        self.send(SinkEvent::Window(WindowEvent {
            device: w.device.clone(),
            // Stores that keep one window per start (the history, InfluxDB
            // points) would let a rerun (see `DeviceWindow::rerun`) replace
            // the window sent over the same span before the clock stepped
            // back: it starts a millisecond per step later for them.
            start: w.start.saturating_add_millis(store_offset(w)),
            end: w.end,
            partial: partial_at.is_some(),
            window_start: w.start,
            rerun: w.rerun,
            amendment: w.amendment,
            partial_at,
            metrics,
        }))
        .await
    }

    /// Alert transitions, each to every output. False when a required
    /// output is gone.
    #[must_use]
    pub async fn alerts(&self, transitions: Vec<Transition>) -> bool {
        let mut ok = true;
        for t in transitions {
            ok &= self
                .send(SinkEvent::Alert(alert_event(&t.alert, t.source)))
                .await;
        }
        ok
    }

    /// A device's announced state. False when a required output is gone.
    #[must_use]
    pub async fn status(&self, change: &StatusChange) -> bool {
        self.send(SinkEvent::Status(StatusEvent {
            device: change.device.clone(),
            online: change.state == DeviceState::Online,
            at: change.time,
        }))
        .await
    }

    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
    }

    /// Waits for room like the forwarder does: an output stores before it
    /// writes, so it only pushes back while its disk is slow. False when
    /// a required output is gone.
    async fn send(&self, event: SinkEvent) -> bool {
        let readings = matches!(event, SinkEvent::Readings(_) | SinkEvent::JournalEpoch(_));
        let alert = matches!(event, SinkEvent::Alert(_));
        // The last one takes the event itself.
        let last = self.outputs.iter().rposition(|o| o.readings || !readings);
        let mut event = Some(event);
        let mut ok = true;
        for (i, output) in self.outputs.iter().enumerate() {
            if readings && !output.readings {
                continue;
            }
            let this = if Some(i) == last {
                event.take()
            } else {
                event.clone()
            };
            let Some(this) = this else { break };
            let lane = match &output.urgent {
                Some(urgent) if alert => urgent,
                _ => &output.events,
            };
            if lane.send(this).await.is_err() {
                if output.required {
                    ok = false;
                } else {
                    self.gone(&output.name);
                }
            }
        }
        ok
    }

    fn gone(&self, name: &str) {
        if let Some(suppressed) = self.log.allow("gone") {
            warn!(output = %name, suppressed, "A sink has stopped; its events are not delivered.");
        }
    }
}

pub use rules::alerts::alert_event;

/// Answers the pipeline's flush requests by asking every durable output
/// (upstream first, then each sink): `true` only when all of them say
/// everything they were handed is on disk.
pub async fn flush_all(
    mut requests: mpsc::Receiver<oneshot::Sender<bool>>,
    outputs: Vec<mpsc::Sender<oneshot::Sender<bool>>>,
) {
    while let Some(reply) = requests.recv().await {
        let mut answers = Vec::with_capacity(outputs.len());
        for out in &outputs {
            let (tx, rx) = oneshot::channel();
            if out.send(tx).await.is_ok() {
                answers.push(rx);
            } else {
                answers.push(closed());
            }
        }
        let mut all = true;
        for rx in answers {
            all &= matches!(rx.await, Ok(true));
        }
        let _ = reply.send(all);
    }
}

/// A receiver whose sender is gone: an output that stopped answers "no".
fn closed() -> oneshot::Receiver<bool> {
    oneshot::channel().1
}

/// How much later than its window's start a store that keeps one window
/// per start files this one: a millisecond per backward step for a rerun;
/// an amendment a millisecond per amendment more (cycling through 1 000,
/// and never past its window's end), so that neither replaces what was
/// stored for the span before.
fn store_offset(w: &aggregator::DeviceWindow) -> i64 {
    let rerun = i64::from(w.rerun);
    if w.amendment == 0 {
        return rerun;
    }
    let last = (w.end.as_millis() - w.start.as_millis() - 1).max(0);
    (rerun + 1 + i64::from(w.amendment % 1000)).min(last)
}
