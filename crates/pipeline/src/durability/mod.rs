//! What makes accepted readings survive a crash: the checkpoint of open
//! windows, the ingress journal on top of it, and the redelivery slots
//! already taken.
//!
//! Invariant: checkpoint + its journal = every reading the pipeline took
//! from a redelivering source and acknowledged. A receipt completes (and
//! the adapter acknowledges) only after the journal holding its readings is
//! synced, and its readings enter their windows only then too: a journal
//! that cannot be written (a full disk) holds back both, so nothing counted
//! is ever sent again by its broker; a checkpoint names the next journal epoch and that journal is
//! started only once the checkpoint is on disk. Readings from sources that
//! cannot redeliver (CoAP NON, UDP) are in the next checkpoint: a kill -9
//! costs at most one `checkpoint_interval` of them.
//!
//! With checkpoints off (`checkpoint_interval = "0s"`) nothing is on disk
//! and receipts complete at once: acknowledgements then mean "received".
//!
//! - [`checkpoint`]: the open windows (`windows.ckpt`, and the generation
//!   before it, `windows.prev.ckpt`);
//! - [`journal`]: the acknowledged readings since (`ingress-N.journal`);
//! - [`committer`]: its group commit, written and synced off the
//!   pipeline's task while the next batch gathers;
//! - [`deliveries`]: which redelivered messages were already taken;
//! - `gateway_core::state_file::fields`: the little-endian fields both files
//!   are made of (shared with the outbox and the history).

use std::path::Path;
use std::time::Duration;

use aggregator::Aggregator;
use std::sync::Arc;

use gateway_core::clock::OWN_TIME_HORIZON_MS;
use gateway_core::telemetry::{Counter, Gauge, LogThrottle};
use gateway_core::{DeliveryKey, Reading, Receipt, Telemetry, Timestamp};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

pub mod checkpoint;
pub mod committer;
pub mod deliveries;
pub mod journal;
pub mod pacing;
mod record_readings;

use checkpoint::{Checkpoint, CheckpointError, Saved};
use committer::{InFlight, Pending};
use deliveries::{Deliveries, Taken};
use journal::Journal;
use pacing::SyncPacing;

struct Store {
    checkpoint: Checkpoint,
    every: Duration,
    journal: Journal,
}

pub struct Durability {
    store: Option<Store>,
    deliveries: Deliveries,
    duplicates: Counter,
    journal_failures: Counter,
    log: LogThrottle,
    /// The epoch named by a checkpoint started and not yet on disk.
    saving: Option<u64>,
    /// The epoch named by the checkpoint on disk now. When the next one
    /// lands this one becomes the previous generation, and the journals
    /// from its epoch on are what rebuilds it: only older ones go.
    on_disk_epoch: u64,
    /// The checkpoint that just landed followed failed ones, so journals
    /// of several epochs are still kept behind it: one more checkpoint
    /// right away deletes them.
    trim_due: bool,
    /// Fault hook for the crash tests: holds each background checkpoint
    /// back this long before it is synced, so a kill can land while one is
    /// in flight. Unset (the default), nothing waits.
    hold_checkpoint: Option<Duration>,
    /// Messages from redelivering sources waiting for the journal, in
    /// arrival order with the session markers. Their readings are in no
    /// window yet: a reading enters a window only once it is on disk, so
    /// a journal that cannot be written (a full disk) holds back both the
    /// acknowledgement and the count, and the broker's resend after a
    /// crash is the first time the reading is counted.
    pending: Vec<Pending>,
    /// Readings in `pending` and in the batch in flight.
    pending_readings: usize,
    /// Keys admitted since nothing last waited for the journal (counted at
    /// an admission, so at most over, never under): while it is within
    /// what [`Deliveries`] is sure to remember ([`Deliveries::assured`]),
    /// every waiting message's key is still there and [`Self::holds`] need
    /// not scan them.
    keyed_since_idle: usize,
    /// The batch being written and synced off the pipeline's task
    /// ([`committer`]).
    in_flight: Option<InFlight>,
    /// The last write failed: the next waits for a new message or an
    /// explicit retry.
    retry_held: bool,
    /// Whether the next batch waits a little to gather more ([`pacing`]).
    pacing: SyncPacing,
    /// Plain readings that came while a batch was in flight, counted after
    /// it ([`committer`]), each with the instant it is judged at.
    deferred: Vec<(Vec<Reading>, Timestamp)>,
    /// Receipts of resent copies, completed with the next commit (the
    /// original may be in it).
    copies: Vec<Receipt>,
    holding: Gauge,
    unjournaled: Counter,
    /// Windows a replayed backward clock step closed: they were closed
    /// (and maybe sent) before the crash too, and go out again with the
    /// same ids and statistics.
    closed_by_step: Vec<aggregator::DeviceWindow>,
    /// Readings read back from the journals at start, for the sinks: they
    /// were acknowledged to their senders but a sink may not have stored
    /// them before the crash (a sink answers the checkpoint's flush only
    /// once stored, so nothing older than these can be missing there).
    /// Grouped by the journal epoch they were appended in.
    replayed: Vec<(u64, Vec<Reading>)>,
    /// How many readings each replayed message held, per epoch, in the
    /// order of `replayed`: where the alert rules, saved part way into an
    /// epoch, pick up.
    replayed_messages: Vec<(u64, Vec<usize>)>,
}

/// Readings waiting, unacknowledged and uncounted, for the ingress journal
/// to be writable again.
pub const JOURNAL_HOLDING: &str = "edge_gateway_journal_holding_readings";
/// Readings dropped because the journal could not take them for long and
/// nobody would resend them (see [`MAX_PENDING_READINGS`]).
pub const JOURNAL_DROPPED: &str = "edge_gateway_journal_dropped_readings_total";

/// Readings held for an unwritable journal before messages nobody waits
/// for (a serial line's) are dropped; what a broker or a TCP node waits for
/// is bounded by them (Mosquitto lets 20 messages be in flight).
pub const MAX_PENDING_READINGS: usize = 10_000;

/// Resent copies of messages already taken, not counted again.
pub const INGRESS_DUPLICATES: &str = "edge_gateway_ingress_duplicates_total";
/// Journal commits that failed (a full disk): acknowledgements wait.
pub const JOURNAL_FAILURES: &str = "edge_gateway_journal_failures_total";

/// Milliseconds to hold each background checkpoint before syncing it; a
/// test hook, not a setting.
const HOLD_CHECKPOINT_ENV: &str = "EDGE_GATEWAY_FAULT_HOLD_CHECKPOINT_MS";

impl Durability {
    /// Nothing on disk: receipts complete at once.
    pub fn in_memory(telemetry: &Telemetry) -> Self {
        Self {
            store: None,
            deliveries: Deliveries::default(),
            duplicates: telemetry.counter(INGRESS_DUPLICATES, &[]),
            journal_failures: telemetry.counter(JOURNAL_FAILURES, &[]),
            log: LogThrottle::default(),
            saving: None,
            on_disk_epoch: 0,
            trim_due: false,
            hold_checkpoint: std::env::var(HOLD_CHECKPOINT_ENV)
                .ok()
                .and_then(|ms| ms.parse().ok())
                .map(Duration::from_millis),
            closed_by_step: Vec::new(),
            pending: Vec::new(),
            pending_readings: 0,
            keyed_since_idle: 0,
            in_flight: None,
            retry_held: false,
            pacing: SyncPacing::default(),
            deferred: Vec::new(),
            copies: Vec::new(),
            holding: telemetry.gauge(JOURNAL_HOLDING, &[]),
            unjournaled: telemetry.counter(JOURNAL_DROPPED, &[]),
            replayed: Vec::new(),
            replayed_messages: Vec::new(),
        }
    }

    /// Restores the last run into `aggregator`: its checkpoint, then its
    /// journal on top. Falls back to memory only when the state directory
    /// cannot be used at all, and says so.
    pub fn open(
        state_dir: &Path,
        every: Duration,
        aggregator: &mut Aggregator,
        telemetry: &Telemetry,
    ) -> Self {
        let mut d = Self::in_memory(telemetry);
        if every.is_zero() {
            return d;
        }
        if let Err(e) = std::fs::create_dir_all(state_dir) {
            error!(state_dir = %state_dir.display(), error = %e, "Cannot use the state directory: open windows will not survive a restart and readings are acknowledged on receipt.");
            return d;
        }
        let checkpoint = Checkpoint::in_dir(state_dir);
        let failures = telemetry.counter("edge_gateway_checkpoint_failures_total", &[]);
        let (restored, keep_from) = restore_generation(&checkpoint, &failures);
        let epoch = match restored {
            Some(saved) => {
                aggregator.restore(&saved.snapshot);
                d.deliveries = Deliveries::from_list(&saved.deliveries);
                info!(
                    open = saved.snapshot.open.len(),
                    "Restored the open windows of the last run."
                );
                saved.journal_epoch
            }
            None => journal::oldest_epoch(state_dir).unwrap_or(0),
        };
        let keep_from = keep_from.unwrap_or(epoch);
        d.on_disk_epoch = keep_from.min(epoch);
        let (journal, replay) = match Journal::open(state_dir, epoch, keep_from) {
            Ok(opened) => opened,
            Err(e) => {
                failures.inc();
                error!(error = %e, "Cannot open the ingress journal: readings are acknowledged on receipt until the next start.");
                return d;
            }
        };
        journal::report(&replay, epoch);
        let (mut late, mut taken) = (0usize, 0usize);
        let mut starts = replay.epochs.iter().peekable();
        for (i, entry) in replay.entries.iter().enumerate() {
            while let Some((_, epoch)) = starts.next_if(|(at, _)| *at <= i) {
                d.replayed.push((*epoch, Vec::new()));
                d.replayed_messages.push((*epoch, Vec::new()));
            }
            if let Some(source) = &entry.new_session {
                d.deliveries.forget_source(source);
            }
            // A checkpoint taken after the step holds it already.
            if let Some((at, steps)) = entry.step_back {
                if let (Ok(at), true) = (
                    gateway_core::Timestamp::from_millis(at),
                    aggregator.steps_back().0 < steps,
                ) {
                    d.closed_by_step
                        .extend(aggregator.step_back(at).unwrap_or_default());
                }
            }
            if let Some((source, slot, digest)) = &entry.key {
                d.deliveries.record(source, *slot, *digest);
            }
            if let Some((_, readings)) = d.replayed.last_mut() {
                readings.extend(entry.readings.iter().cloned());
            }
            if entry.new_session.is_none() && entry.step_back.is_none() {
                if let Some((_, sizes)) = d.replayed_messages.last_mut() {
                    sizes.push(entry.readings.len());
                }
            }
            for r in &entry.readings {
                // Judged as when it arrived: it was accepted then, and its
                // window may have ended while the gateway was down.
                // One whose window the restored checkpoint had sent goes
                // in a late amendment, as it did (or would have) then.
                let placed = aggregator
                    .ingest(r, r.time())
                    .or_else(|_| aggregator.ingest_own_time(r, r.time(), OWN_TIME_HORIZON_MS));
                match placed {
                    Ok(()) => taken += 1,
                    Err(_) => late += 1,
                }
            }
        }
        if late > 0 {
            warn!(
                taken,
                late, "Some journaled readings fell outside the restored windows."
            );
        }
        d.store = Some(Store {
            checkpoint,
            every,
            journal,
        });
        d
    }

    /// Gives back the buffers a burst grew, once it has passed
    /// ([`gateway_core::cache_release`]): only empty ones, nothing waiting
    /// for the journal is touched.
    pub fn let_go_of_buffers(&mut self) {
        if let Some(store) = &mut self.store {
            store.journal.let_go_of_buffers();
        }
        if self.pending.is_empty() {
            self.pending = Vec::new();
        }
        if self.deferred.is_empty() {
            self.deferred = Vec::new();
        }
        if self.copies.is_empty() {
            self.copies = Vec::new();
        }
    }

    /// The readings replayed from the journals at start, once: the sinks
    /// are given them again (InfluxDB keeps one point per series and time,
    /// so a point written twice is written once).
    /// Each group comes with the journal epoch it was appended in.
    pub fn take_replayed(&mut self) -> Vec<(u64, Vec<Reading>)> {
        std::mem::take(&mut self.replayed)
    }

    /// The readings each replayed message held, per epoch, in the order
    /// of [`Self::take_replayed`]'s, once.
    pub fn take_replayed_messages(&mut self) -> Vec<(u64, Vec<usize>)> {
        std::mem::take(&mut self.replayed_messages)
    }

    /// The journal epoch appends go to now; `None` without a journal.
    pub fn journal_epoch(&self) -> Option<u64> {
        self.store.as_ref().map(|s| s.journal.epoch())
    }

    /// The windows a replayed backward clock step closed, once.
    pub fn take_closed_by_step(&mut self) -> Vec<aggregator::DeviceWindow> {
        std::mem::take(&mut self.closed_by_step)
    }

    /// How often to checkpoint; `None` when nothing is kept on disk.
    pub fn every(&self) -> Option<Duration> {
        self.store.as_ref().map(|s| s.every)
    }

    /// Whether a message is new (to be ingested) rather than a resent copy
    /// of one already taken; remembers new ones.
    pub fn admit(&mut self, key: Option<&DeliveryKey>) -> bool {
        let Some(k) = key else { return true };
        if self.pending.is_empty() && self.in_flight.is_none() {
            self.keyed_since_idle = 0;
        }
        let forgotten_may_wait = self.keyed_since_idle >= self.deliveries.assured();
        if self.deliveries.recognise_copy(k) || (k.resent && forgotten_may_wait && self.holds(k)) {
            self.duplicates.inc();
            return false;
        }
        self.deliveries.record(&k.source, k.slot, k.digest);
        self.keyed_since_idle = self.keyed_since_idle.saturating_add(1);
        true
    }

    /// Whether a message with `k`'s key waits for the journal (staged, or
    /// in the batch in flight). [`Deliveries`] forgets the oldest keys of
    /// a source past its bound, and while the journal cannot be written (a
    /// full disk) more keyed messages than that can arrive behind a held
    /// one: its sender, never answered, sends it again, and the copy was
    /// taken as new, both counted once the disk had room. What is held is
    /// in memory anyway, and only a message that says it is a resend is
    /// looked for, once more keys than are remembered came since nothing
    /// waited (a scan per line of every line held would cost a Pi dearly
    /// in a normal burst).
    fn holds(&self, k: &DeliveryKey) -> bool {
        let same = |p: &Pending| {
            matches!(p, Pending::Message { receipt: Receipt { key: Some(h), .. }, .. }
                if h.slot == k.slot && h.digest == k.digest && h.source == k.source)
        };
        self.pending.iter().any(same)
            || self
                .in_flight
                .as_ref()
                .is_some_and(|b| b.messages.iter().any(same))
    }

    /// `source`'s session started afresh: what it sends from now on is
    /// new, whatever slot and content it has. Journaled in order with the
    /// messages, so a replay forgets at the same point.
    pub fn new_session(&mut self, source: &str) {
        self.deliveries.forget_source(source);
        if self.store.is_some() {
            self.pending.push(Pending::NewSession(Arc::from(source)));
        }
    }

    /// The window clock followed a wall clock that stepped back to
    /// `at_ms` ([`Aggregator::step_back`]): journaled in order with the
    /// messages, so a replay steps back at the same point.
    pub fn stepped_back(&mut self, at_ms: i64, steps: u32) {
        if self.store.is_some() {
            self.pending.push(Pending::StepBack(at_ms, steps));
        }
    }

    /// Whether messages from redelivering sources go through the journal
    /// ([`stage`](Self::stage)) rather than being taken and acknowledged
    /// at once.
    pub fn journaling(&self) -> bool {
        self.store.is_some()
    }

    /// Saves a checkpoint of the aggregator's open windows and starts a new
    /// journal, all before returning. Call only once everything the
    /// aggregator no longer holds (closed windows) is stored in the outbox.
    ///
    /// # Errors
    /// The checkpoint could not be written; the old one and the current
    /// journal stay valid.
    pub fn save(&mut self, aggregator: &Aggregator) -> Result<(), CheckpointError> {
        self.no_batch_in_flight()?;
        let deliveries = self.taken_and_counted();
        let Some(s) = &mut self.store else {
            return Ok(());
        };
        let next = s.journal.epoch() + 1;
        s.checkpoint
            .save(|out| write_checkpoint(out, aggregator, next, &deliveries))?;
        if let Err(e) = s.journal.rotate(next) {
            // The checkpoint names a journal that does not exist yet:
            // appending to the old one would lose it on replay, so stop
            // journaling until the next start.
            error!(error = %e, "Cannot start a new ingress journal: readings are acknowledged on receipt until the next start.");
            self.store = None;
            return Ok(());
        }
        s.journal.retire_before(self.on_disk_epoch);
        self.on_disk_epoch = next;
        Ok(())
    }

    /// Starts a checkpoint without waiting for the disk: the file is
    /// written here (into the page cache, milliseconds for 50 000 series),
    /// the journal moves on to the epoch it names, and the fsyncs and the
    /// rename run in the background once `stored` says the outbox holds the
    /// closed windows. The pipeline keeps taking readings meanwhile; before,
    /// it stopped for the outbox flush and three fsyncs at every window
    /// close, and alerts waited behind them.
    ///
    /// Hand the receiver's outcome to [`finish`](Self::finish). `Ok(None)`
    /// means there is no checkpoint to keep. Messages still waiting for
    /// the journal are not in it (their readings are in no window yet):
    /// they go to the next journal, and its remembered deliveries leave
    /// them out, so their resend after a crash counts.
    ///
    /// # Errors
    /// The checkpoint or the next journal could not be written; the old
    /// checkpoint and journal stay valid.
    pub fn begin_save(
        &mut self,
        aggregator: &Aggregator,
        stored: impl std::future::Future<Output = bool> + Send + 'static,
    ) -> Result<Option<oneshot::Receiver<Result<(), CheckpointError>>>, CheckpointError> {
        self.no_batch_in_flight()?;
        let deliveries = self.taken_and_counted();
        let Some(s) = &mut self.store else {
            return Ok(None);
        };
        let next = s.journal.epoch() + 1;
        let staged = s
            .checkpoint
            .stage(|out| write_checkpoint(out, aggregator, next, &deliveries))?;
        s.journal
            .start_next(next)
            .map_err(|e| CheckpointError::Journal(e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        let hold = self.hold_checkpoint;
        tokio::spawn(async move {
            if let Some(hold) = hold {
                tokio::time::sleep(hold).await;
            }
            let outcome = if stored.await {
                tokio::task::spawn_blocking(move || staged.commit())
                    .await
                    .unwrap_or(Err(CheckpointError::Interrupted))
            } else {
                Err(CheckpointError::NotStored)
            };
            let _ = tx.send(outcome);
        });
        self.saving = Some(next);
        Ok(Some(rx))
    }

    /// Whether a checkpoint should start at once to delete the journals
    /// that failed checkpoints left behind the one that just landed.
    pub fn take_trim_due(&mut self) -> bool {
        std::mem::take(&mut self.trim_due)
    }

    /// A batch in flight would be written to the journal the checkpoint
    /// replaces, with readings the snapshot does not hold: a checkpoint
    /// waits for it to be counted (the pipeline's `settle_journal`).
    fn no_batch_in_flight(&self) -> Result<(), CheckpointError> {
        match self.in_flight {
            Some(_) => Err(CheckpointError::Journal(
                "a journal batch is still being written".into(),
            )),
            None => Ok(()),
        }
    }

    /// The remembered deliveries without those still waiting for the
    /// journal: a checkpoint holds no reading of theirs, so after a crash
    /// their resend must count.
    fn taken_and_counted(&self) -> Vec<Taken> {
        let mut list = self.deliveries.to_list();
        for p in &self.pending {
            if let Pending::Message {
                receipt: Receipt { key: Some(k), .. },
                ..
            } = p
            {
                list.retain(|t| {
                    !(t.source == k.source && t.slot == k.slot && t.digest == k.digest)
                });
            }
        }
        list
    }

    /// Completes a checkpoint started by [`begin_save`](Self::begin_save).
    /// On success the journals it holds are deleted. On failure they stay:
    /// the previous checkpoint and every journal since still restore
    /// everything, and the next checkpoint retries.
    ///
    /// # Errors
    /// The checkpoint's own failure, passed on to be counted and logged.
    pub fn finish(&mut self, outcome: Result<(), CheckpointError>) -> Result<(), CheckpointError> {
        let epoch = self.saving.take();
        outcome?;
        if let (Some(s), Some(epoch)) = (&mut self.store, epoch) {
            s.journal.retire_before(self.on_disk_epoch);
            self.trim_due = epoch > self.on_disk_epoch.saturating_add(1);
            self.on_disk_epoch = epoch;
            if s.journal.epoch() == epoch {
                s.journal.mark_dir_synced();
            }
        }
        Ok(())
    }
}

/// The newest checkpoint generation that reads, and the epoch of the one
/// before it (whose journals are kept). A damaged file is moved aside and
/// the generation before it restored: with the journals since it, that is
/// everything acknowledged.
fn restore_generation(checkpoint: &Checkpoint, failures: &Counter) -> (Option<Saved>, Option<u64>) {
    let previous = || match checkpoint.load_previous() {
        Ok(saved) => saved,
        Err(e) => {
            failures.inc();
            error!(error = %e, "The previous checkpoint is unreadable too; it is kept aside. Replaying every journal there is.");
            checkpoint.quarantine_previous();
            None
        }
    };
    match checkpoint.load() {
        Ok(Some(saved)) => {
            let keep_from = previous().map(|p| p.journal_epoch);
            (Some(saved), keep_from)
        }
        // No checkpoint, or a crash between its two renames.
        Ok(None) => (previous(), None),
        Err(e) => {
            failures.inc();
            error!(error = %e, "The last checkpoint is unreadable; it is kept aside. Restoring the one before it and the journals since.");
            checkpoint.quarantine();
            (previous(), None)
        }
    }
}

/// The checkpoint of `aggregator`'s open windows, naming journal `next`.
fn write_checkpoint(
    out: &mut std::fs::File,
    aggregator: &Aggregator,
    next: u64,
    deliveries: &[Taken],
) -> std::io::Result<()> {
    checkpoint::write_with(
        out,
        aggregator.watermark_ms(),
        |put| aggregator.for_each_open(put),
        next,
        deliveries,
        {
            let (steps, until) = aggregator.steps_back();
            (steps, until, aggregator.amendments())
        },
        &aggregator.ahead_state(),
    )
}
