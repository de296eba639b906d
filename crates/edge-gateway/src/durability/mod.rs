//! What makes accepted readings survive a crash: the checkpoint of open
//! windows, the ingress journal on top of it, and the redelivery slots
//! already taken.
//!
//! Invariant: checkpoint + its journal = every reading the pipeline took
//! from a redelivering source and acknowledged. A receipt completes (and
//! the adapter acknowledges) only after the journal holding its readings is
//! synced; a checkpoint names the next journal epoch and that journal is
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
//! - [`deliveries`]: which redelivered messages were already taken;
//! - `binary`: the little-endian fields both files are made of.

use std::path::Path;
use std::time::Duration;

use aggregator::Aggregator;
use gateway_core::telemetry::{Counter, LogThrottle};
use gateway_core::{DeliveryKey, Reading, Receipt, Telemetry};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

mod binary;
pub mod checkpoint;
pub mod deliveries;
pub mod journal;

use checkpoint::{Checkpoint, CheckpointError, Saved};
use deliveries::{Deliveries, Taken};
use journal::{Journal, MAX_BATCH};

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
    /// Fault hook for the crash tests: holds each background checkpoint
    /// back this long before it is synced, so a kill can land while one is
    /// in flight. Unset (the default), nothing waits.
    hold_checkpoint: Option<Duration>,
    /// Readings read back from the journals at start, for the sinks: they
    /// were acknowledged to their senders but a sink may not have stored
    /// them before the crash (a sink answers the checkpoint's flush only
    /// once stored, so nothing older than these can be missing there).
    replayed: Vec<Reading>,
}

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
            hold_checkpoint: std::env::var(HOLD_CHECKPOINT_ENV)
                .ok()
                .and_then(|ms| ms.parse().ok())
                .map(Duration::from_millis),
            replayed: Vec::new(),
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
        for entry in &replay.entries {
            if let Some(source) = &entry.new_session {
                d.deliveries.forget_source(source);
            }
            if let Some((source, slot, digest)) = &entry.key {
                d.deliveries.record(source.clone(), *slot, *digest);
            }
            d.replayed.extend(entry.readings.iter().cloned());
            for r in &entry.readings {
                // Judged as when it arrived: it was accepted then, and its
                // window may have ended while the gateway was down.
                match aggregator.ingest(r, r.time()) {
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

    /// The readings replayed from the journals at start, once: the sinks
    /// are given them again (InfluxDB keeps one point per series and time,
    /// so a point written twice is written once).
    pub fn take_replayed(&mut self) -> Vec<Reading> {
        std::mem::take(&mut self.replayed)
    }

    /// How often to checkpoint; `None` when nothing is kept on disk.
    pub fn every(&self) -> Option<Duration> {
        self.store.as_ref().map(|s| s.every)
    }

    /// Whether a message is new (to be ingested) rather than a resent copy
    /// of one already taken; remembers new ones.
    pub fn admit(&mut self, key: Option<&DeliveryKey>) -> bool {
        let Some(k) = key else { return true };
        if self.deliveries.is_copy(k) {
            self.duplicates.inc();
            return false;
        }
        self.deliveries.record(k.source.clone(), k.slot, k.digest);
        true
    }

    /// `source`'s session started afresh: what it sends from now on is
    /// new, whatever slot and content it has. Journaled in order with the
    /// messages, so a replay forgets at the same point.
    pub fn new_session(&mut self, source: &str) {
        self.deliveries.forget_source(source);
        if let Some(s) = &mut self.store {
            s.journal.append_new_session(source);
        }
    }

    /// Journals the readings the aggregator accepted; the receipt
    /// completes once they are on disk.
    pub fn log(&mut self, readings: &[Reading], receipt: Receipt) {
        match &mut self.store {
            Some(s) => {
                s.journal.append(receipt.key.as_ref(), readings);
                s.journal.wait(receipt);
            }
            None => receipt.complete(),
        }
    }

    /// Completes a copy's receipt together with what it copies (which may
    /// still be waiting for the same commit).
    pub fn acknowledge_copy(&mut self, receipt: Receipt) {
        match &mut self.store {
            Some(s) => s.journal.wait(receipt),
            None => receipt.complete(),
        }
    }

    /// Whether to commit now: the batch is large, or nothing else is queued.
    pub fn should_commit(&self, queue_empty: bool) -> bool {
        self.store.as_ref().is_some_and(|s| {
            let n = s.journal.uncommitted();
            n > 0 && (queue_empty || n >= MAX_BATCH)
        })
    }

    /// Syncs the journal and completes its receipts. On failure (a full
    /// disk) nothing is acknowledged: the sources keep their copies and
    /// slow down, and the commit is retried.
    pub fn commit(&mut self) {
        let Some(s) = &mut self.store else { return };
        if let Err(e) = s.journal.commit() {
            self.journal_failures.inc();
            if let Some(suppressed) = self.log.allow("journal") {
                error!(error = %e, disk_full = e.is_disk_full(), waiting = s.journal.uncommitted(), suppressed, "Cannot write the ingress journal: holding acknowledgements (the local broker keeps the readings) and retrying.");
            }
        }
    }

    /// Saves a checkpoint of the aggregator's open windows and starts a new
    /// journal, all before returning. Call only once everything the
    /// aggregator no longer holds (closed windows) is stored in the outbox.
    ///
    /// # Errors
    /// The checkpoint could not be written; the old one and the current
    /// journal stay valid.
    pub fn save(&mut self, aggregator: &Aggregator) -> Result<(), CheckpointError> {
        self.commit();
        let Some(s) = &mut self.store else {
            return Ok(());
        };
        let next = s.journal.epoch() + 1;
        let deliveries = self.deliveries.to_list();
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
    /// means the checkpoint is already on disk (or there is none to keep):
    /// with records the journal could not write, it is saved in place the
    /// old way, since they are in this checkpoint only.
    ///
    /// # Errors
    /// The checkpoint or the next journal could not be written; the old
    /// checkpoint and journal stay valid.
    pub fn begin_save(
        &mut self,
        aggregator: &Aggregator,
        stored: impl std::future::Future<Output = bool> + Send + 'static,
    ) -> Result<Option<oneshot::Receiver<Result<(), CheckpointError>>>, CheckpointError> {
        self.commit();
        let Some(s) = &mut self.store else {
            return Ok(None);
        };
        if s.journal.uncommitted() > 0 {
            return self.save(aggregator).map(|()| None);
        }
        let next = s.journal.epoch() + 1;
        let deliveries = self.deliveries.to_list();
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
    )
}
