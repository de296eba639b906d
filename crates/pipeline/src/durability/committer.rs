//! Group commit of the ingress journal off the pipeline's task.
//!
//! An fdatasync takes milliseconds, tens on an SD card. Run on the
//! pipeline's task it stopped every reading behind it: `tcp_line` with
//! `ack` reached about half of raw TCP. Now a batch's encoded records go to
//! a blocking thread, one write and sync in flight at a time, and the
//! pipeline keeps taking messages meanwhile; they wait for the next batch,
//! which starts as soon as the one in flight is durable (so a batch is
//! whatever arrived during one sync). When a batch is durable its readings
//! are counted and its receipts completed, batches in the order appended.
//!
//! Exactness: the journal must hold exactly what is counted, since a
//! replay rebuilds the windows from it. A batch is screened when handed off
//! and counted only once durable, so the aggregator is kept as it was in
//! between: while a batch is in flight nothing else enters a window (plain
//! readings wait behind it, [`Durability::defer`]), no window closes and
//! the clock does not step back (the pipeline waits for the batch first),
//! and the batch is counted as of the instant it was screened. Same state,
//! same instant: the aggregator takes exactly what the screen kept, late
//! windows and `max_series` included. The alternatives were worse:
//! screening at count time would put the count before the journal, which
//! is what must not happen, and reserving series and watermarks for
//! batches in flight would copy the aggregator's rules here. What it costs
//! is that plain readings and window closes may wait for one sync, which
//! before this every reading did.
//!
//! A checkpoint waits for the batch in flight too: its records go to the
//! file they were taken from, and its readings are in no snapshot yet.

use std::borrow::Cow;

use gateway_core::{DeliveryKey, Reading, Receipt, Timestamp};
use tokio::task::JoinHandle;
use tracing::error;

use super::journal::{JournalError, Written, MAX_BATCH};
use super::{Durability, MAX_PENDING_READINGS};

/// One message waiting for the journal.
pub(super) enum Pending {
    Message {
        readings: Vec<Reading>,
        receipt: Receipt,
        /// When to judge it as taken (its arrival, for a message held
        /// while the clock was unset); `None`: when it is screened.
        at: Option<Timestamp>,
    },
    NewSession(std::sync::Arc<str>),
    StepBack(i64, u32),
}

/// A batch being written and synced.
pub(super) struct InFlight {
    task: JoinHandle<Result<Written, JournalError>>,
    /// As staged, to be counted once durable, or staged again (and
    /// screened afresh) if the write fails.
    pub(super) messages: Vec<Pending>,
    copies: Vec<Receipt>,
    readings: usize,
    /// When it was screened: it is counted as of then.
    now: Timestamp,
}

/// Readings to count, in order, each group with the instant it is judged at.
pub type Taken = Vec<(Vec<Reading>, Timestamp)>;

impl Durability {
    /// Keeps a message for the next commit, which journals it and hands
    /// its readings back to be counted; until then they are in no window.
    /// Call only while [`journaling`](Self::journaling).
    pub fn stage(&mut self, readings: Vec<Reading>, receipt: Receipt, at: Option<Timestamp>) {
        self.retry_held = false;
        self.pending_readings += readings.len();
        self.pending.push(Pending::Message {
            readings,
            receipt,
            at,
        });
        if self.pending_readings > MAX_PENDING_READINGS {
            self.drop_unawaited();
        }
    }

    /// Over [`MAX_PENDING_READINGS`]: drops the messages nobody waits for,
    /// oldest first, and forgets their keys so a resend is new. A batch in
    /// flight is left alone: it may be on disk already. So is a message
    /// whose resent copy waits: the copy is answered with the next commit
    /// as if it were the message, so the message is what that answer
    /// stands for (a node that gave up on a held line and sent it again on
    /// a new connection was answered `ok` for a line never journaled).
    fn drop_unawaited(&mut self) {
        let mut dropped = 0usize;
        let deliveries = &mut self.deliveries;
        let copies = &self.copies;
        let a_copy_waits = |key: Option<&DeliveryKey>| {
            key.is_some_and(|k| {
                copies.iter().any(|c| {
                    c.is_awaited()
                        && c.key.as_ref().is_some_and(|c| {
                            c.slot == k.slot && c.digest == k.digest && c.source == k.source
                        })
                })
            })
        };
        self.pending.retain(|p| match p {
            Pending::Message {
                readings, receipt, ..
            } if !receipt.is_awaited() && !a_copy_waits(receipt.key.as_ref()) => {
                if let Some(k) = &receipt.key {
                    deliveries.forget(k);
                }
                dropped += readings.len();
                false
            }
            _ => true,
        });
        if dropped > 0 {
            self.pending_readings -= dropped;
            self.unjournaled.add(dropped as u64);
            error!(
                dropped,
                "The ingress journal still cannot be written: dropping readings nobody would resend."
            );
        }
    }

    /// Readings waiting for the journal, the batch in flight included.
    pub fn pending_readings(&self) -> usize {
        self.pending_readings
    }

    /// Completes a copy's receipt together with what it copies (which may
    /// still be waiting for the same commit).
    pub fn acknowledge_copy(&mut self, receipt: Receipt) {
        match &mut self.store {
            Some(_) => self.copies.push(receipt),
            None => receipt.complete(),
        }
    }

    /// Whether to start a batch now: something waits and the disk is free.
    /// After a failed write, only once a new message comes or the caller
    /// retries on its timer: a full disk is not hammered in a loop.
    /// Under a flood, the next batch also waits a moment to gather more
    /// ([`pacing`](super::pacing)); [`Self::sync_held_until`] says until
    /// when.
    pub fn should_commit(&self) -> bool {
        self.could_commit() && self.sync_held_until().is_none()
    }

    /// Something waits and the disk is free.
    fn could_commit(&self) -> bool {
        let waiting = !self.pending.is_empty() || !self.copies.is_empty();
        self.store.is_some() && self.in_flight.is_none() && !self.retry_held && waiting
    }

    /// When a batch held back to gather more may start: wake then.
    pub fn sync_held_until(&self) -> Option<tokio::time::Instant> {
        if !self.could_commit() {
            return None;
        }
        let waiting = self.pending.len() + self.copies.len();
        self.pacing.held_until(waiting, tokio::time::Instant::now())
    }

    /// Whether a batch is being written.
    pub fn writing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Whether enough waits behind the batch in flight that the pipeline
    /// should stop taking messages until it is durable: the sources are
    /// slowed down as they were when the sync ran on the pipeline's task,
    /// and a slow disk does not grow what waits (deferred plain readings
    /// included) without bound.
    pub fn batch_full(&self) -> bool {
        let behind = self.pending.len() + self.copies.len() + self.deferred.len();
        self.writing() && behind >= MAX_BATCH
    }

    /// Screens, encodes and hands the waiting messages to a blocking thread
    /// to be written and synced; false when nothing was started (nothing
    /// waits, no journal, or a batch is in flight already). `screen` gives,
    /// for a message's readings, those the windows will take as of `now`
    /// (or the message's own instant), re-stamped as they will be: only
    /// they are journaled, so a replay rebuilds exactly what is counted.
    pub fn begin_commit(
        &mut self,
        now: Timestamp,
        mut screen: impl for<'r> FnMut(&'r [Reading], Timestamp) -> Cow<'r, [Reading]>,
    ) -> bool {
        self.retry_held = false;
        let Some(s) = &mut self.store else {
            return false;
        };
        if self.in_flight.is_some() || (self.pending.is_empty() && self.copies.is_empty()) {
            return false;
        }
        s.journal.reserve(self.pending_readings);
        let mut readings = 0;
        for p in &self.pending {
            match p {
                Pending::Message {
                    readings: r,
                    receipt,
                    at,
                } => {
                    readings += r.len();
                    let kept = screen(r, at.unwrap_or(now));
                    s.journal.append(receipt.key.as_ref(), &kept);
                }
                Pending::NewSession(source) => s.journal.append_new_session(source),
                Pending::StepBack(at, steps) => s.journal.append_step_back(*at, *steps),
            }
        }
        let write = s.journal.take_write();
        let task = tokio::task::spawn_blocking(move || write.run());
        self.in_flight = Some(InFlight {
            task,
            messages: std::mem::take(&mut self.pending),
            copies: std::mem::take(&mut self.copies),
            readings,
            now,
        });
        true
    }

    /// The outcome of the batch in flight, once its sync is done; never
    /// resolves when none is. Cancel-safe: dropping it leaves the batch in
    /// flight, to be awaited again.
    pub async fn written(&mut self) -> Result<Written, JournalError> {
        match &mut self.in_flight {
            Some(batch) => (&mut batch.task)
                .await
                .unwrap_or_else(|e| Err(JournalError::Stopped(e.to_string()))),
            None => std::future::pending().await,
        }
    }

    /// Completes the batch in flight with its [`written`](Self::written)
    /// outcome: once durable, completes its receipts and returns its
    /// readings, to be counted now and in this order.
    ///
    /// On failure (a full disk) nothing is returned or acknowledged: the
    /// messages wait again, ahead of those staged since (their sources keep
    /// their copies and slow down), and the next commit appends them again,
    /// screened afresh, to the file cut back to its last good length.
    pub fn finish_commit(&mut self, outcome: Result<Written, JournalError>) -> Taken {
        let (Some(batch), Some(s)) = (self.in_flight.take(), &mut self.store) else {
            return Vec::new();
        };
        let done = match outcome {
            Ok(done) => done,
            Err(e) => {
                self.put_back(batch);
                self.pacing.clear();
                self.journal_failures.inc();
                self.holding.set(self.pending_readings as f64);
                self.retry_held = true;
                if let Some(suppressed) = self.log.allow("journal") {
                    error!(error = %e, disk_full = e.is_disk_full(), waiting = self.pending_readings, suppressed, "Cannot write the ingress journal: holding these readings out of the windows and unacknowledged (their broker keeps them) and retrying.");
                }
                return Vec::new();
            }
        };
        self.pacing
            .synced(done.bytes(), done.took(), tokio::time::Instant::now());
        s.journal.written(done);
        self.pending_readings -= batch.readings;
        self.holding.set(0.0);
        let mut taken: Taken = Vec::new();
        for p in batch.messages {
            if let Pending::Message {
                readings,
                receipt,
                at,
            } = p
            {
                // One group per message, as it came: merging them copied
                // every reading of a batch once more.
                taken.push((readings, at.unwrap_or(batch.now)));
                receipt.complete();
            }
        }
        for r in batch.copies {
            r.complete();
        }
        taken
    }

    /// A failed batch's messages wait again, ahead of those staged since.
    fn put_back(&mut self, mut batch: InFlight) {
        batch.messages.append(&mut self.pending);
        self.pending = batch.messages;
        batch.copies.append(&mut self.copies);
        self.copies = batch.copies;
    }

    /// Keeps readings from a source that is not journaled until the batch
    /// in flight is counted: taken now, they would change the windows that
    /// batch was screened against.
    pub fn defer(&mut self, readings: Vec<Reading>, now: Timestamp) {
        self.deferred.push((readings, now));
    }

    /// The readings [`defer`](Self::defer)red, to be counted after the
    /// batch that was in flight, each as of when it arrived.
    pub fn take_deferred(&mut self) -> Taken {
        std::mem::take(&mut self.deferred)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::borrow::Cow;
    use std::fs::OpenOptions;
    use std::sync::Arc;
    use std::time::Duration;

    use aggregator::{Aggregator, WindowSpec};
    use gateway_core::{
        DeliveryKey, DeviceId, MetricName, Reading, Receipt, Telemetry, TimeSource, Timestamp,
    };

    use super::super::deliveries::REMEMBERED;
    use super::super::{Durability, INGRESS_DUPLICATES, JOURNAL_FAILURES, MAX_PENDING_READINGS};

    const NOW: i64 = 1_800_000_000_000;

    fn aggregator() -> Aggregator {
        Aggregator::new(WindowSpec {
            window_ms: 60_000,
            grace_ms: 5_000,
            max_future_ms: 60_000,
        })
        .unwrap()
    }

    fn reading(value: f64) -> Reading {
        Reading::new(
            DeviceId::new("d1").unwrap(),
            MetricName::new("t").unwrap(),
            value,
            Timestamp::from_millis(NOW).unwrap(),
            TimeSource::Event,
        )
        .unwrap()
    }

    fn open(dir: &std::path::Path, telemetry: &Telemetry) -> Durability {
        Durability::open(dir, Duration::from_secs(60), &mut aggregator(), telemetry)
    }

    fn values(taken: &super::Taken) -> Vec<f64> {
        taken
            .iter()
            .flat_map(|(r, _)| r.iter().map(Reading::value))
            .collect()
    }

    /// `/dev/full` fails every write with ENOSPC, as a full disk does.
    fn fail_writes(d: &mut Durability) -> Arc<std::fs::File> {
        let full = OpenOptions::new().append(true).open("/dev/full").unwrap();
        let s = d.store.as_mut().unwrap();
        s.journal.replace_file(Arc::new(full))
    }

    #[tokio::test]
    async fn nothing_is_acknowledged_or_counted_before_the_sync_nor_after_a_failed_one() {
        let dir = tempfile::tempdir().unwrap();
        let telemetry = Telemetry::default();
        let mut d = open(dir.path(), &telemetry);
        let now = Timestamp::from_millis(NOW).unwrap();
        let (first, mut first_ack) = Receipt::new(None);
        d.stage(vec![reading(1.0)], first, None);
        let good = fail_writes(&mut d);
        assert!(d.begin_commit(now, |r, _| Cow::Borrowed(r)));
        assert!(
            first_ack.try_recv().is_err(),
            "acknowledged while in flight"
        );
        // Arrives during the write: waits for the next batch.
        let (second, mut second_ack) = Receipt::new(None);
        d.stage(vec![reading(2.0)], second, None);
        assert!(
            !d.begin_commit(now, |r, _| Cow::Borrowed(r)),
            "one batch at a time"
        );
        let outcome = d.written().await;
        assert!(outcome.as_ref().is_err_and(|e| e.is_disk_full()));
        assert!(d.finish_commit(outcome).is_empty(), "a failed batch counts");
        assert!(first_ack.try_recv().is_err(), "a failed batch acknowledged");
        assert_eq!(telemetry.counter(JOURNAL_FAILURES, &[]).get(), 1);
        assert_eq!(d.pending_readings(), 2);
        // The disk has room again: both go, the failed batch first.
        d.store.as_mut().unwrap().journal.replace_file(good);
        assert!(d.begin_commit(now, |r, _| Cow::Borrowed(r)));
        let outcome = d.written().await;
        let taken = d.finish_commit(outcome);
        assert_eq!(values(&taken), [1.0, 2.0]);
        assert!(first_ack.try_recv().is_ok() && second_ack.try_recv().is_ok());
        assert_eq!(d.pending_readings(), 0);
        drop(d);
        let mut again = open(dir.path(), &telemetry);
        let replayed: Vec<f64> = again
            .take_replayed()
            .iter()
            .flat_map(|(_, r)| r.iter().map(Reading::value))
            .collect();
        assert_eq!(replayed, [1.0, 2.0], "journaled once, in order");
    }

    /// A line's key, as `tcp_line` gives a line with its own time.
    fn line_key(digest: u64) -> DeliveryKey {
        DeliveryKey {
            source: "lines".into(),
            slot: 0,
            digest,
            resent: true,
        }
    }

    fn commit_all(d: &mut Durability) -> bool {
        d.begin_commit(Timestamp::from_millis(NOW).unwrap(), |r, _| {
            Cow::Borrowed(r)
        })
    }

    /// A full disk holds a node's line unanswered while more keyed lines
    /// than the deliveries remember come in behind it; the node, never
    /// answered, sends it again. The copy is known, in flight or staged,
    /// and the line counted once when the disk has room.
    #[tokio::test]
    async fn a_held_line_resent_behind_more_keys_than_are_remembered_is_a_copy() {
        let dir = tempfile::tempdir().unwrap();
        let telemetry = Telemetry::default();
        let mut d = open(dir.path(), &telemetry);
        let good = fail_writes(&mut d);
        let held = line_key(u64::MAX);
        assert!(d.admit(Some(&held)));
        let (receipt, _node_gave_up) = Receipt::new(Some(held.clone()));
        d.stage(vec![reading(1.0)], receipt, None);
        let mut others = Vec::new();
        for digest in 0..REMEMBERED as u64 {
            let key = line_key(digest);
            assert!(d.admit(Some(&key)));
            let (receipt, ack) = Receipt::new(Some(key));
            d.stage(vec![reading(2.0)], receipt, None);
            others.push(ack);
        }
        assert!(commit_all(&mut d));
        assert!(!d.admit(Some(&held)), "resent while its batch is in flight");
        let outcome = d.written().await;
        assert!(d.finish_commit(outcome).is_empty(), "the disk is full");
        assert!(!d.admit(Some(&held)), "resent while it waits again");
        let (copy, mut copy_ack) = Receipt::new(Some(held.clone()));
        d.acknowledge_copy(copy);
        d.store.as_mut().unwrap().journal.replace_file(good);
        assert!(commit_all(&mut d));
        let outcome = d.written().await;
        let taken = values(&d.finish_commit(outcome));
        assert_eq!(taken.iter().filter(|v| **v == 1.0).count(), 1);
        assert_eq!(taken.len(), REMEMBERED + 1);
        assert!(copy_ack.try_recv().is_ok(), "the copy answered with it");
        assert_eq!(telemetry.counter(INGRESS_DUPLICATES, &[]).get(), 2);
    }

    /// Over the bound of held readings, a message nobody waits for is
    /// dropped, but not one whose resent copy waits: the copy's `ok` is
    /// the promise that the message is journaled.
    #[tokio::test]
    async fn a_held_message_whose_resent_copy_waits_is_never_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let telemetry = Telemetry::default();
        let mut d = open(dir.path(), &telemetry);
        let good = fail_writes(&mut d);
        let held = line_key(7);
        assert!(d.admit(Some(&held)));
        // The node's first connection is gone: nobody waits for it there.
        let (receipt, gone) = Receipt::new(Some(held.clone()));
        drop(gone);
        d.stage(vec![reading(1.0)], receipt, None);
        assert!(!d.admit(Some(&held)));
        let (copy, mut copy_ack) = Receipt::new(Some(held.clone()));
        d.acknowledge_copy(copy);
        // A serial line nobody waits for, and a flood that passes the bound.
        let (serial, _) = Receipt::new(None);
        d.stage(vec![reading(3.0)], serial, None);
        let (flood, _flood_ack) = Receipt::new(None);
        d.stage(vec![reading(2.0); MAX_PENDING_READINGS], flood, None);
        assert_eq!(d.pending_readings(), MAX_PENDING_READINGS + 1);
        d.store.as_mut().unwrap().journal.replace_file(good);
        assert!(commit_all(&mut d));
        let outcome = d.written().await;
        let taken = values(&d.finish_commit(outcome));
        assert_eq!(taken.first(), Some(&1.0), "the held line journaled");
        assert!(!taken.contains(&3.0), "what nobody waits for dropped");
        assert!(copy_ack.try_recv().is_ok());
    }

    #[tokio::test]
    async fn only_the_screened_readings_are_journaled_and_counted_as_of_the_screen() {
        let dir = tempfile::tempdir().unwrap();
        let telemetry = Telemetry::default();
        let mut d = open(dir.path(), &telemetry);
        let now = Timestamp::from_millis(NOW).unwrap();
        let (receipt, _ack) = Receipt::new(None);
        d.stage(vec![reading(1.0), reading(-1.0)], receipt, None);
        fn positive(r: &[Reading], _: Timestamp) -> Cow<'_, [Reading]> {
            r.iter().filter(|r| r.value() > 0.0).cloned().collect()
        }
        assert!(d.begin_commit(now, positive));
        let outcome = d.written().await;
        let taken = d.finish_commit(outcome);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].1, now, "judged when screened");
        drop(d);
        let mut again = open(dir.path(), &telemetry);
        let replayed = again.take_replayed();
        assert_eq!(replayed[0].1, [reading(1.0)]);
    }

    #[tokio::test]
    async fn a_checkpoint_waits_for_the_batch_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let telemetry = Telemetry::default();
        let mut d = open(dir.path(), &telemetry);
        let now = Timestamp::from_millis(NOW).unwrap();
        let (receipt, _ack) = Receipt::new(None);
        d.stage(vec![reading(1.0)], receipt, None);
        assert!(d.begin_commit(now, |r, _| Cow::Borrowed(r)));
        let agg = aggregator();
        assert!(d.save(&agg).is_err(), "rotated under a batch in flight");
        let outcome = d.written().await;
        d.finish_commit(outcome);
        assert!(d.save(&agg).is_ok());
    }
}
