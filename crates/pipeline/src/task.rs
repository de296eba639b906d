//! The pipeline task: readings in, window statistics and alerts out.
//!
//! One task owns the aggregator, so no lock is taken per reading. It wakes
//! for an arriving batch or for the next window deadline, whichever comes
//! first; the deadline is re-read at most every second so a wall clock that
//! NTP steps is followed without a long oversleep.
//!
//! Readings from redelivering sources are journaled before their receipt
//! completes (see `durability`). The write and fsync run on a blocking
//! thread while this task keeps taking messages for the next batch, so one
//! fsync covers whatever arrived during the one before
//! (`durability::committer`, which also says why the windows stay as they
//! were while a batch is in flight).

use std::sync::Arc;
use std::time::Duration;

use aggregator::Aggregator;
use gateway_core::clock::is_plausible;
use gateway_core::telemetry::{Counter, LogThrottle};
use gateway_core::{Clock, Ingress, Telemetry, Timestamp};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use rules::alerts::{Alerts, Transition};

use crate::clock_guard::{ClockGuard, CLOCK_STEPS};
use crate::durability::checkpoint::CheckpointError;
use crate::durability::Durability;
use crate::fanout::SinkFanout;
use crate::{DROPPED_READINGS, FUTURE_READINGS, LATE_READINGS, WINDOWS_EMITTED};

mod checkpointing;
mod ingest;
mod journaled;

use checkpointing::warn_checkpoint;
use ingest::OncePerWindow;

/// The counters the pipeline keeps.
struct Counters {
    aggregated: Counter,
    late: Counter,
    restamped: Counter,
    future: Counter,
    windows: Counter,
    status: Counter,
    max_series: Counter,
    /// Own times more than a day ahead (`place_own_time`).
    too_far_ahead: Counter,
    max_series_log: OncePerWindow,
    /// Steps back the clock guard did not see (shared with its count).
    clock_steps: Counter,
}

pub struct Pipeline {
    pub aggregator: Aggregator,
    pub clock: Arc<dyn Clock>,
    pub telemetry: Telemetry,
    /// Checkpoint and journal; without a checkpoint, open windows are
    /// forwarded early (partial) at shutdown instead.
    pub durability: Durability,
    /// Asks the outputs (the forwarder and every `[[sink]]`, see
    /// `fanout::flush_all`) whether everything sent so far is in their
    /// outboxes: a checkpoint may drop closed windows only once they are.
    pub outbox_flush: Option<mpsc::Sender<oneshot::Sender<bool>>>,
    /// The alert rules; `None` when there are none. Alerts bypass the
    /// windows: they are sent as soon as a reading, a status change or the
    /// clock triggers them.
    pub alerts: Option<Alerts>,
    /// Every output: the one stream of events leaving the pipeline (none:
    /// nothing is kept).
    pub outputs: SinkFanout,
}

/// Longest sleep between deadline checks.
const MAX_NAP: Duration = Duration::from_secs(1);
/// Queued messages taken in one turn of the loop; bounded so that window
/// deadlines and journal completions are still looked at promptly.
const DRAIN: usize = 256;

impl Pipeline {
    /// Runs until `ingress` closes, then forwards the windows that are due
    /// and saves the open ones to the checkpoint (or, without one, forwards
    /// them early, marked partial) so nothing accepted is left behind.
    pub async fn run(mut self, mut ingress: mpsc::Receiver<Ingress>) {
        let t = &self.telemetry;
        let c = Counters {
            aggregated: t.counter("edge_gateway_aggregator_readings_total", &[]),
            late: t.counter(LATE_READINGS, &[]),
            restamped: t.counter("edge_gateway_aggregator_restamped_readings_total", &[]),
            future: t.counter(FUTURE_READINGS, &[]),
            windows: t.counter(WINDOWS_EMITTED, &[]),
            status: t.counter("edge_gateway_device_status_changes_total", &[]),
            max_series: t.counter(DROPPED_READINGS, &[("reason", "max_series")]),
            too_far_ahead: t.counter(
                DROPPED_READINGS,
                &[("reason", gateway_core::clock::TIME_TOO_FAR_AHEAD)],
            ),
            max_series_log: OncePerWindow::default(),
            clock_steps: t.counter(CLOCK_STEPS, &[]),
        };
        let throttle = LogThrottle::default();
        // Numbered per epoch by sinks that number readings, as in the run
        // that journaled them.
        let replayed = self.durability.take_replayed();
        for (epoch, readings) in &replayed {
            self.outputs.journal_epoch(*epoch).await;
            for r in readings {
                self.outputs.reading(r);
            }
        }
        let transitions = replay_alerts(&mut self.alerts, &mut self.durability, &replayed);
        if !transitions.is_empty() && !self.outputs.alerts(transitions).await {
            upstream_gone();
            return;
        }
        // Closed before the crash by a backward clock step the journal
        // replayed: sent again as they were (same ids).
        let closed_by_step = self.durability.take_closed_by_step();
        let replayed_a_step = !closed_by_step.is_empty();
        if !self.emit(closed_by_step, None, &c).await {
            return;
        }
        self.outputs.send_readings().await;
        if let Some(epoch) = self.durability.journal_epoch() {
            self.outputs.journal_epoch(epoch).await;
        }
        let checkpoint_failures = t.counter("edge_gateway_checkpoint_failures_total", &[]);
        let every = self.durability.every().unwrap_or(Duration::from_secs(3600));
        let checkpoints = self.durability.every().is_some();
        let mut checkpoint_tick =
            tokio::time::interval_at(gateway_core::deadline::from_now(every), every);
        checkpoint_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut dirty = replayed_a_step;
        // A checkpoint whose fsyncs run in the background, and whether
        // windows closed since it was started.
        let mut saving: Option<oneshot::Receiver<Result<(), CheckpointError>>> = None;
        let mut closed_since_save = false;
        let mut guard = ClockGuard::new(t);
        // Woken when the gateway's heap check finds a burst has passed.
        let mut caches = gateway_core::cache_release::Listener::default();
        // One timer for the nap, moved at every turn: a new one each turn
        // was put in the timer wheel when first polled and taken out when
        // dropped, about 650 instructions a turn (callgrind, issue 69),
        // where moving a timer later only marks it.
        let nap_timer = tokio::time::sleep(MAX_NAP);
        tokio::pin!(nap_timer);
        loop {
            let now = self.clock.now();
            let mono = tokio::time::Instant::now();
            let clock_ok = guard.check(now, mono);
            self.silence_follows(&mut guard);
            if clock_ok && guard.is_holding() {
                // Judged as when they arrived: held by the gateway, not late.
                for (msg, arrived) in guard.release(now, mono) {
                    if !self
                        .take(msg, Some(arrived), now, &c, &throttle, &mut dirty)
                        .await
                    {
                        return;
                    }
                }
            }
            let Some(closed) = self.follow_clock(&mut guard, &c, &throttle).await else {
                return;
            };
            dirty |= closed;
            closed_since_save |= closed;
            // Silence is checked at every wake: the timer branch never fires
            // while readings keep arriving. Not on a wrong clock: every
            // device would look silent since 1970, or for the step.
            if clock_ok && !self.alerts_step(|a, o| a.on_tick(now, o)).await {
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
            // A batch held back under a flood starts when its wait is over
            // (at the end of the turn, like any other).
            let sync_held = self.durability.sync_held_until();
            nap_timer.as_mut().reset(tokio::time::Instant::now() + nap);
            tokio::select! {
                biased;
                () = &mut nap_timer => {
                    // A step back during the nap is followed before what
                    // waits is judged by the stepped clock.
                    let Some(closed) = self.follow_clock(&mut guard, &c, &throttle).await else {
                        return;
                    };
                    dirty |= closed;
                    closed_since_save |= closed;
                    // What waits for the journal is counted before its
                    // window closes, if the disk takes it.
                    if !self.commit_journal(&c, &throttle).await {
                        return;
                    }
                    // On a wrong clock nothing closes: a 1970 window would
                    // go upstream as data. Nor while readings held for it
                    // wait to be released (at the top of the loop): the
                    // windows they belong in would close before them.
                    let now = self.clock.now();
                    let due = if is_plausible(now) && !guard.is_holding() {
                        self.aggregator.close_due(now)
                    } else {
                        Vec::new()
                    };
                    if !due.is_empty() {
                        if !self.emit(due, None, &c).await {
                            return;
                        }
                        // A forwarded window must leave the checkpoint at
                        // once, or a crash would restore it and send it again
                        // with different content under the same id: a
                        // checkpoint starts now, or right after the one in
                        // flight.
                        dirty = true;
                        closed_since_save = true;
                        if checkpoints && saving.is_none() {
                            saving = self.start_checkpoint(&checkpoint_failures, &throttle).await;
                            dirty = saving.is_none();
                            closed_since_save = false;
                        }
                    }
                }
                outcome = self.durability.written(), if self.durability.writing() => {
                    if !self.count_journaled(outcome, &c, &throttle).await {
                        return;
                    }
                }
                () = tokio::time::sleep_until(sync_held.unwrap_or_else(tokio::time::Instant::now)), if sync_held.is_some() => {}
                msg = ingress.recv() => {
                // A step seen only now must be followed before this message
                // is judged by the stepped clock.
                let Some(closed) = self.follow_clock(&mut guard, &c, &throttle).await else {
                    return;
                };
                dirty |= closed;
                closed_since_save |= closed;
                let Some(msg) = msg else { break };
                // What else is queued already is taken in the same turn, as
                // of the same instant: a turn of this loop (clock checks,
                // the nap's timer, the select) cost more than the message
                // itself when each took one.
                let now = self.clock.now();
                let plausible = is_plausible(now);
                let mut next = Some(msg);
                let mut taken = 0;
                while let Some(msg) = next.take() {
                    match msg {
                        msg @ (Ingress::Readings(_) | Ingress::Durable { .. })
                            if !plausible || guard.is_holding() =>
                        {
                            guard.hold(msg, tokio::time::Instant::now());
                        }
                        msg => {
                            if !self.take(msg, None, now, &c, &throttle, &mut dirty).await {
                                return;
                            }
                        }
                    }
                    taken += 1;
                    // A full batch behind the journal write waits for it at
                    // the end of the turn, as a single message would.
                    if taken < DRAIN && !self.durability.batch_full() {
                        next = ingress.try_recv().ok();
                    }
                }},
                outcome = async { saving.as_mut()?.await.ok() }, if saving.is_some() => {
                    saving = None;
                    let outcome = outcome.unwrap_or(Err(CheckpointError::Interrupted));
                    if let Err(e) = self.durability.finish(outcome) {
                        dirty = true;
                        warn_checkpoint(&e, &checkpoint_failures, &throttle);
                    } else if closed_since_save || self.durability.take_trim_due() {
                        if !self.settle_journal(&c, &throttle).await {
                            return;
                        }
                        saving = self.start_checkpoint(&checkpoint_failures, &throttle).await;
                        dirty = saving.is_none();
                        closed_since_save = false;
                    }
                }
                () = caches.asked() => {
                    self.aggregator.let_go_of_caches();
                    self.durability.let_go_of_buffers();
                }
                _ = checkpoint_tick.tick(), if checkpoints => {
                    // A journal write that failed (a full disk) is retried
                    // at every tick, dirty or not: nothing else may wake
                    // for it, since the broker sends no more until these
                    // are acknowledged, and a tick as short as the nap
                    // keeps the nap from ever firing.
                    let Some(closed) = self.follow_clock(&mut guard, &c, &throttle).await else {
                        return;
                    };
                    dirty |= closed;
                    closed_since_save |= closed;
                    if !self.commit_journal(&c, &throttle).await {
                        return;
                    }
                    // After the journal's last batch is counted and before
                    // a checkpoint starts the next epoch: nothing counted
                    // falls between the rules' mark and the journal kept.
                    if let Some(a) = &mut self.alerts {
                        a.save();
                    }
                    if dirty && saving.is_none() {
                        saving = self.start_checkpoint(&checkpoint_failures, &throttle).await;
                        dirty = saving.is_none();
                    }
                }
            }
            // Messages queue behind the batch in flight only up to a
            // batch; then the sources wait, as they did for a sync here.
            if self.durability.batch_full() && !self.settle_journal(&c, &throttle).await {
                return;
            }
            if self.durability.should_commit() {
                let Some(closed) = self.follow_clock(&mut guard, &c, &throttle).await else {
                    return;
                };
                dirty |= closed;
                closed_since_save |= closed;
                let now = self.clock.now();
                self.start_journal_write(now);
            }
        }
        if guard.held_readings() > 0 {
            warn!(
                readings = guard.held_readings(),
                "Stopping on a wall clock that never became plausible: the held readings are not counted (MQTT QoS 1 ones stay with their broker)."
            );
        }
        if let Some(rx) = saving.take() {
            let outcome = rx.await.unwrap_or(Err(CheckpointError::Interrupted));
            if let Err(e) = self.durability.finish(outcome) {
                warn_checkpoint(&e, &checkpoint_failures, &throttle);
            }
        }
        if !self.commit_journal(&c, &throttle).await {
            return;
        }
        if self.durability.pending_readings() > 0 {
            warn!(
                readings = self.durability.pending_readings(),
                "Stopping with readings the ingress journal could not take: they are not counted and not acknowledged (their broker sends them again)."
            );
        }
        if let Some(a) = &mut self.alerts {
            a.save();
        }
        let now = self.clock.now();
        let due = self.aggregator.close_due(now);
        if !self.emit(due, None, &c).await {
            return;
        }
        if checkpoints {
            match self.save_checkpoint().await {
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
        self.emit(rest, Some(now), &c).await;
    }

    /// Handles one message from the ingress queue. False when upstream is
    /// gone.
    /// `at`: when a held message arrived; `now`: the time of this turn,
    /// for the others.
    async fn take(
        &mut self,
        msg: Ingress,
        at: Option<Timestamp>,
        now: Timestamp,
        c: &Counters,
        throttle: &LogThrottle,
        dirty: &mut bool,
    ) -> bool {
        match msg {
            Ingress::Readings(readings) => {
                *dirty = true;
                let now = at.unwrap_or(now);
                if self.durability.writing() {
                    self.durability.defer(readings, now);
                    return true;
                }
                let mut alerts = Vec::new();
                let _ = self.ingest(&readings, now, c, throttle, &mut alerts);
                self.outputs.send_readings().await;
                self.alerts_step(|_, o| o.append(&mut alerts)).await
            }
            Ingress::Durable { readings, receipt } => {
                if !self.durability.admit(receipt.key.as_ref()) {
                    debug!(source = ?receipt.key, "Dropping a resent copy of a message already taken.");
                    self.durability.acknowledge_copy(receipt);
                    return true;
                }
                *dirty = true;
                if self.durability.journaling() {
                    // Counted once on disk (`commit_journal`).
                    self.durability.stage(readings, receipt, at);
                    return true;
                }
                let mut alerts = Vec::new();
                let now = at.unwrap_or(now);
                let _ = self.ingest(&readings, now, c, throttle, &mut alerts);
                receipt.complete();
                self.outputs.send_readings().await;
                self.alerts_step(|_, o| o.append(&mut alerts)).await
            }
            Ingress::NewSession { source } => {
                info!(%source, "New broker session: its packet ids start over, so earlier deliveries no longer mark copies.");
                self.durability.new_session(&source);
                true
            }
            Ingress::Status(change) => {
                c.status.inc();
                info!(device = %change.device, state = change.state.as_str(), "Device status changed.");
                if !self.outputs.status(&change).await {
                    return upstream_gone();
                }
                self.alerts_step(|a, o| a.on_status(&change, o)).await
            }
        }
    }

    /// A step of the wall clock moves what the silence rules measure: a
    /// step forward raised every device as silent for the step, a step
    /// back hid every silence for as long.
    fn silence_follows(&mut self, guard: &mut ClockGuard) {
        if let (Some(step), Some(alerts)) = (guard.take_step(), self.alerts.as_mut()) {
            alerts.clock_stepped(step);
        }
    }

    /// Follows the wall clock if it stepped back behind the windows already
    /// closed: what was taken before the step is counted first, judged by
    /// the clock it was taken under; then the window clock follows and the
    /// windows of the old clock close. `Some(whether windows were sent)`,
    /// `None` when upstream is gone.
    async fn follow_clock(
        &mut self,
        guard: &mut ClockGuard,
        c: &Counters,
        throttle: &LogThrottle,
    ) -> Option<bool> {
        let now = self.clock.now();
        let plausible = guard.check(now, tokio::time::Instant::now());
        self.silence_follows(guard);
        if !plausible {
            return Some(false);
        }
        if !self.aggregator.is_behind(now) {
            // A step back within the open windows needs no following, and
            // the windows cannot fall behind later without another step.
            guard.took_step_back();
            return Some(false);
        }
        if !self
            .commit_journal_as_of(guard.before_step(now), c, throttle)
            .await
        {
            return None;
        }
        let closed = self.follow_step_back(now, guard.took_step_back(), &c.clock_steps);
        if closed.is_empty() {
            return Some(false);
        }
        self.emit(closed, None, c).await.then_some(true)
    }

    /// The wall clock is behind the windows already closed (NTP corrected
    /// a clock that ran ahead): the window clock follows it, so readings
    /// stamped now are not refused as late. `seen` says the clock guard
    /// has counted and logged this step already; otherwise (a step while
    /// the gateway was stopped, or one under a minute) it is done here.
    fn follow_step_back(
        &mut self,
        now: Timestamp,
        seen: bool,
        steps: &Counter,
    ) -> Vec<aggregator::DeviceWindow> {
        let closed_until = self.aggregator.watermark_ms();
        let Some(closed) = self.aggregator.step_back(now) else {
            return Vec::new();
        };
        let (n, _) = self.aggregator.steps_back();
        self.durability.stepped_back(now.as_millis(), n);
        if seen {
            debug!(now = %now, "The window clock follows the wall clock back.");
        } else {
            steps.inc();
            warn!(now = %now, closed_until_ms = closed_until, "The wall clock is behind the windows already sent (it stepped back): windows follow it; the ones sent stay sent, and a window over a span already sent goes out as a rerun with an id of its own.");
        }
        closed
    }

    /// Runs `f` on the alert rules (if any) and sends the transitions it
    /// produced. False when upstream is gone.
    async fn alerts_step(&mut self, f: impl FnOnce(&mut Alerts, &mut Vec<Transition>)) -> bool {
        let Some(alerts) = &mut self.alerts else {
            return true;
        };
        let mut transitions = Vec::new();
        f(alerts, &mut transitions);
        if transitions.is_empty() || self.outputs.alerts(transitions).await {
            true
        } else {
            upstream_gone()
        }
    }

    /// Sends closed windows to every output. With `cut_at`, windows that had
    /// not yet ended at that instant are marked partial. False when
    /// upstream is gone.
    async fn emit(
        &self,
        windows: Vec<aggregator::DeviceWindow>,
        cut_at: Option<gateway_core::Timestamp>,
        c: &Counters,
    ) -> bool {
        for w in &windows {
            debug!(device = %w.device, start = %w.start, metrics = w.metrics.len(), "Window closed.");
            c.windows.inc();
            let partial_at = cut_at.filter(|at| *at < w.end);
            if !self.outputs.window(w, partial_at).await {
                return upstream_gone();
            }
        }
        true
    }
}

/// The upstream forwarder failed: windows would be dropped from the
/// checkpoint that never reached its outbox, so nothing more is taken.
fn upstream_gone() -> bool {
    warn!("Upstream forwarder is gone; stopping the pipeline.");
    false
}

/// The journal's messages after the alert rules' saved state, played
/// through the rules again: a raise or clear decided after the last
/// save is decided again (the same reading, the same id, so a copy of
/// one sent before the crash is told by its id), and the rules go on
/// from where they stopped. A state saved without a mark (an earlier
/// release) replays nothing, as then.
fn replay_alerts(
    alerts: &mut Option<Alerts>,
    durability: &mut Durability,
    replayed: &[(u64, Vec<gateway_core::Reading>)],
) -> Vec<Transition> {
    let messages = durability.take_replayed_messages();
    let current = durability.journal_epoch();
    let Some(rules) = alerts else {
        return Vec::new();
    };
    let mut transitions = Vec::new();
    if let Some(from) = rules.restored_mark() {
        for ((epoch, readings), (_, sizes)) in replayed.iter().zip(&messages) {
            let skip_messages = match epoch.cmp(&from.epoch) {
                std::cmp::Ordering::Less => sizes.len(),
                std::cmp::Ordering::Equal => usize::try_from(from.messages).unwrap_or(usize::MAX),
                std::cmp::Ordering::Greater => 0,
            };
            let skip: usize = sizes.iter().take(skip_messages).sum();
            for r in readings.iter().skip(skip) {
                rules.on_reading(r, &mut transitions);
            }
        }
    }
    // Appending goes on in the newest epoch read, after its messages.
    if let Some(epoch) = current {
        let already = messages
            .iter()
            .find(|(e, _)| *e == epoch)
            .map_or(0, |(_, sizes)| sizes.len());
        rules.journaled(epoch, already);
    }
    transitions
}
