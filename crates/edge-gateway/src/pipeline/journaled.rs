//! The pipeline's side of the ingress journal: hand a batch to the
//! writer, keep taking messages, count the batch once it is durable (see
//! `durability::committer` for why nothing else changes the windows while
//! a batch is in flight).

use aggregator::{Aggregator, Rejected};
use gateway_core::telemetry::LogThrottle;
use gateway_core::{OutboundMessage, Reading, TimeSource, Timestamp};
use tokio::sync::mpsc;

use super::{Counters, Pipeline};
use crate::durability::journal::{JournalError, Written};

impl Pipeline {
    /// Journals what waits for the journal and, once it is on disk, counts
    /// it, before returning: for what must see every durable reading
    /// counted (a window closing, a clock step, the end). False when
    /// upstream is gone.
    pub(super) async fn commit_journal(
        &mut self,
        out: &mpsc::Sender<OutboundMessage>,
        c: &Counters,
        throttle: &LogThrottle,
    ) -> bool {
        if !self.settle_journal(out, c, throttle).await {
            return false;
        }
        self.start_journal_write();
        self.settle_journal(out, c, throttle).await
    }

    /// Hands what waits for the journal to its writer, screened as of now
    /// ([`Durability::begin_commit`]); it is counted once durable.
    pub(super) fn start_journal_write(&mut self) {
        let now = self.clock.now();
        let aggregator = &mut self.aggregator;
        self.durability
            .begin_commit(now, |readings, at| screen(aggregator, readings, at));
    }

    /// Waits for the batch in flight, if any, and counts it. False when
    /// upstream is gone.
    pub(super) async fn settle_journal(
        &mut self,
        out: &mpsc::Sender<OutboundMessage>,
        c: &Counters,
        throttle: &LogThrottle,
    ) -> bool {
        if !self.durability.writing() {
            return true;
        }
        let outcome = self.durability.written().await;
        self.count_journaled(outcome, out, c, throttle).await
    }

    /// Counts a batch that is durable (none if its write failed), then the
    /// plain readings that waited behind it. False when upstream is gone.
    pub(super) async fn count_journaled(
        &mut self,
        outcome: Result<Written, JournalError>,
        out: &mpsc::Sender<OutboundMessage>,
        c: &Counters,
        throttle: &LogThrottle,
    ) -> bool {
        let taken = self.durability.finish_commit(outcome);
        let deferred = self.durability.take_deferred();
        if taken.is_empty() && deferred.is_empty() {
            return true;
        }
        let mut alerts = Vec::new();
        for (readings, at) in taken.iter().chain(&deferred) {
            let _ = self.ingest(readings, *at, c, throttle, &mut alerts);
        }
        self.sinks.send_readings().await;
        self.alerts_step(out, |_, o| o.append(&mut alerts)).await
    }
}

/// The readings of `readings` that [`Pipeline::ingest`] at `now` will
/// take, as it will take them (arrival-stamped ones past their window
/// re-stamped at `now`): what the journal must hold.
fn screen(aggregator: &mut Aggregator, readings: &[Reading], now: Timestamp) -> Vec<Reading> {
    readings
        .iter()
        .filter_map(|r| match aggregator.check(r, now) {
            Ok(()) => Some(r.clone()),
            Err(Rejected::Late { .. }) if r.time_source() == TimeSource::Arrival => {
                let r = r.restamped(now);
                aggregator.check(&r, now).ok().map(|()| r)
            }
            Err(_) => None,
        })
        .collect()
}
