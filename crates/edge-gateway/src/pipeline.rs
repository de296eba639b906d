//! The pipeline task: readings in, window statistics out.
//!
//! One task owns the aggregator, so no lock is taken per reading. It wakes
//! for an arriving batch or for the next window deadline, whichever comes
//! first; the deadline is re-read at most every second so a wall clock that
//! NTP steps is followed without a long oversleep.

use std::sync::Arc;
use std::time::Duration;

use aggregator::{Aggregator, Rejected};
use gateway_core::telemetry::{Counter, LogThrottle};
use gateway_core::{Clock, Ingress, OutboundMessage, Telemetry};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::alerts::Alerts;
use crate::checkpoint::Checkpoint;
use crate::messages::Renderer;

/// The counters the pipeline keeps.
struct Counters {
    aggregated: Counter,
    late: Counter,
    future: Counter,
    windows: Counter,
    status: Counter,
}

pub struct Pipeline {
    pub aggregator: Aggregator,
    pub renderer: Renderer,
    pub clock: Arc<dyn Clock>,
    pub telemetry: Telemetry,
    /// Where and how often open windows are saved; `None` forwards them
    /// early (partial) at shutdown instead.
    pub checkpoint: Option<(Checkpoint, Duration)>,
    /// The alert rules; `None` when there are none. Alerts bypass the
    /// windows: they are sent as soon as a reading, a status change or the
    /// clock triggers them.
    pub alerts: Option<Alerts>,
}

/// Longest sleep between deadline checks.
const MAX_NAP: Duration = Duration::from_secs(1);

impl Pipeline {
    /// Runs until `ingress` closes, then forwards the windows that are due
    /// and saves the open ones to the checkpoint (or, without one, forwards
    /// them early, marked partial) so nothing accepted is left behind.
    pub async fn run(
        mut self,
        mut ingress: mpsc::Receiver<Ingress>,
        out: mpsc::Sender<OutboundMessage>,
    ) {
        let t = &self.telemetry;
        let c = Counters {
            aggregated: t.counter("edge_gateway_aggregator_readings_total", &[]),
            late: t.counter("edge_gateway_aggregator_late_readings_total", &[]),
            future: t.counter("edge_gateway_aggregator_future_readings_total", &[]),
            windows: t.counter("edge_gateway_aggregator_windows_emitted_total", &[]),
            status: t.counter("edge_gateway_device_status_changes_total", &[]),
        };
        let throttle = LogThrottle::default();
        let checkpoint_failures = t.counter("edge_gateway_checkpoint_failures_total", &[]);
        let every = self
            .checkpoint
            .as_ref()
            .map_or(Duration::from_secs(3600), |(_, d)| *d);
        let mut checkpoint_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        checkpoint_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut dirty = false;
        loop {
            let now = self.clock.now();
            if !self.alerts_step(&out, |a, o| a.on_tick(now, o)).await {
                return;
            }
            let nap = self
                .aggregator
                .next_deadline()
                .map(|d| {
                    let ms = d
                        .as_millis()
                        .saturating_sub(self.clock.now().as_millis())
                        .max(0);
                    Duration::from_millis(ms as u64).min(MAX_NAP)
                })
                .unwrap_or(MAX_NAP);
            tokio::select! {
                biased;
                _ = tokio::time::sleep(nap) => {
                    let due = self.aggregator.close_due(self.clock.now());
                    // A forwarded window must leave the checkpoint too, or a
                    // crash would restore and send it again.
                    dirty |= !due.is_empty();
                    if !self.emit(due, None, &out, &c).await {
                        return;
                    }
                }
                msg = ingress.recv() => match msg {
                    Some(Ingress::Readings(readings)) => {
                        dirty = true;
                        let now = self.clock.now();
                        let mut alerts = Vec::new();
                        for r in &readings {
                            match self.aggregator.ingest(r, now) {
                                Ok(()) => {
                                    c.aggregated.inc();
                                    if let Some(a) = &mut self.alerts {
                                        a.on_reading(r, &mut alerts);
                                    }
                                }
                                Err(rej) => {
                                    // Too late for its window is not too late
                                    // for an alert (a device flushing its
                                    // buffer); a clock far ahead is garbage.
                                    if let (Rejected::Late { .. }, Some(a)) = (&rej, &mut self.alerts) {
                                        a.on_reading(r, &mut alerts);
                                    }
                                    let kind = match rej {
                                        Rejected::Late { .. } => { c.late.inc(); "late" }
                                        Rejected::Future { .. } => { c.future.inc(); "future" }
                                    };
                                    if let Some(suppressed) = throttle.allow(kind) {
                                        warn!(device = %r.device(), metric = %r.metric(), time = %r.time(), reason = %rej, suppressed, "Dropping reading outside its window.");
                                    }
                                }
                            }
                        }
                        if !self.alerts_step(&out, |_, o| o.append(&mut alerts)).await {
                            return;
                        }
                    }
                    Some(Ingress::Status(change)) => {
                        c.status.inc();
                        info!(device = %change.device, state = change.state.as_str(), "Device status changed.");
                        if out.send(self.renderer.device_status(&change)).await.is_err()
                            || !self.alerts_step(&out, |a, o| a.on_status(&change, o)).await
                        {
                            return;
                        }
                    }
                    None => break,
                },
                _ = checkpoint_tick.tick(), if self.checkpoint.is_some() => {
                    if let Some(a) = &mut self.alerts {
                        a.save();
                    }
                    if dirty {
                        dirty = false;
                        if let Err(e) = self.save_checkpoint() {
                            checkpoint_failures.inc();
                            if let Some(suppressed) = throttle.allow("checkpoint") {
                                warn!(error = %e, suppressed, "Cannot save the open windows; will retry.");
                            }
                            dirty = true;
                        }
                    }
                }
            }
        }
        if let Some(a) = &mut self.alerts {
            a.save();
        }
        let now = self.clock.now();
        let due = self.aggregator.close_due(now);
        if !self.emit(due, None, &out, &c).await {
            return;
        }
        if self.checkpoint.is_some() {
            match self.save_checkpoint() {
                Ok(()) => {
                    info!(
                        open = self.aggregator.open_series(),
                        "Open windows saved for the next start."
                    );
                    return;
                }
                Err(e) => {
                    checkpoint_failures.inc();
                    warn!(error = %e, "Cannot save the open windows; forwarding them early instead.");
                }
            }
        }
        let rest = self.aggregator.close_all();
        if !rest.is_empty() {
            info!(
                windows = rest.len(),
                "Forwarding open windows early at shutdown."
            );
        }
        self.emit(rest, Some(now), &out, &c).await;
    }

    /// Runs `f` on the alert rules (if any) and sends the alerts it
    /// produced. False when upstream is gone.
    async fn alerts_step(
        &mut self,
        out: &mpsc::Sender<OutboundMessage>,
        f: impl FnOnce(&mut Alerts, &mut Vec<OutboundMessage>),
    ) -> bool {
        let Some(alerts) = &mut self.alerts else {
            return true;
        };
        let mut msgs = Vec::new();
        f(alerts, &mut msgs);
        for m in msgs {
            if out.send(m).await.is_err() {
                warn!("Upstream forwarder is gone; stopping the pipeline.");
                return false;
            }
        }
        true
    }

    fn save_checkpoint(&self) -> Result<(), crate::checkpoint::CheckpointError> {
        match &self.checkpoint {
            Some((c, _)) => c.save(&self.aggregator.snapshot()),
            None => Ok(()),
        }
    }

    /// Sends closed windows upstream. With `cut_at`, windows that had not yet
    /// ended at that instant are marked partial.
    async fn emit(
        &self,
        windows: Vec<aggregator::DeviceWindow>,
        cut_at: Option<gateway_core::Timestamp>,
        out: &mpsc::Sender<OutboundMessage>,
        c: &Counters,
    ) -> bool {
        for w in &windows {
            debug!(device = %w.device, start = %w.start, metrics = w.metrics.len(), "Window closed.");
            c.windows.inc();
            let partial_at = cut_at.filter(|at| *at < w.end);
            if out
                .send(self.renderer.aggregated(w, partial_at))
                .await
                .is_err()
            {
                warn!("Upstream forwarder is gone; stopping the pipeline.");
                return false;
            }
        }
        true
    }
}
