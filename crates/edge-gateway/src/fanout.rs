//! The pipeline's side of the `[[sink]]` outputs: typed events to every
//! sink, and one flush handshake covering every durable output.
//!
//! The MQTT upstream keeps receiving its rendered messages exactly as
//! before; sinks receive [`SinkEvent`]s next to them. Events are queued on
//! a sink's channel before the pipeline asks for a flush, and a sink drains
//! its channel before answering, so a `true` from every output covers
//! everything emitted before the checkpoint.

use aggregator::DeviceWindow;
use gateway_core::telemetry::LogThrottle;
use gateway_core::Reading;
use gateway_core::{DeviceState, StatusChange};
use rules::Alert;
use sinks::event::{AlertEvent, MetricStats, SinkEvent, StatusEvent, WindowEvent};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

/// Events waiting for each sink.
pub const SINK_QUEUE: usize = 1024;

/// Where the pipeline's events go besides the upstream.
#[derive(Default)]
pub struct SinkFanout {
    sinks: Vec<(String, mpsc::Sender<SinkEvent>)>,
    /// Readings accepted since the last [`Self::send_readings`].
    readings: Vec<Reading>,
    log: LogThrottle,
}

impl SinkFanout {
    pub fn new(sinks: Vec<(String, mpsc::Sender<SinkEvent>)>) -> Self {
        Self {
            sinks,
            ..Self::default()
        }
    }

    /// A reading was accepted (into its window, or too late for it).
    pub fn reading(&mut self, r: &Reading) {
        if !self.sinks.is_empty() {
            self.readings.push(r.clone());
        }
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
        if self.sinks.is_empty() {
            return;
        }
        self.send_readings().await;
        self.send(SinkEvent::JournalEpoch(epoch)).await;
    }

    pub async fn window(&self, w: &DeviceWindow, partial: bool) {
        if self.sinks.is_empty() {
            return;
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
            start: w.start.saturating_add_millis(i64::from(w.rerun)),
            end: w.end,
            partial,
            metrics,
        }))
        .await;
    }

    pub async fn alerts(&self, alerts: Vec<Alert>) {
        for a in alerts {
            self.send(SinkEvent::Alert(AlertEvent {
                device: a.device,
                rule: a.rule,
                metric: a.metric,
                kind: a.kind.as_str().to_string(),
                state: a.state.as_str().to_string(),
                value: a.value,
                limit: a.limit,
                at: a.at,
                reason: a.evidence.as_ref().map(|e| e.reason.as_str().to_string()),
                expected: a.evidence.as_ref().map(|e| e.expected),
            }))
            .await;
        }
    }

    pub async fn status(&self, change: &StatusChange) {
        self.send(SinkEvent::Status(StatusEvent {
            device: change.device.clone(),
            online: change.state == DeviceState::Online,
            at: change.time,
        }))
        .await;
    }

    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }

    /// Waits for room like the upstream does: a sink stores before it
    /// writes, so it only pushes back while its disk is slow.
    async fn send(&self, event: SinkEvent) {
        let Some(((last_name, last), rest)) = self.sinks.split_last() else {
            return;
        };
        for (name, tx) in rest {
            if tx.send(event.clone()).await.is_err() {
                self.gone(name);
            }
        }
        if last.send(event).await.is_err() {
            self.gone(last_name);
        }
    }

    fn gone(&self, name: &str) {
        if let Some(suppressed) = self.log.allow("gone") {
            warn!(output = %name, suppressed, "A sink has stopped; its events are not delivered.");
        }
    }
}

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
