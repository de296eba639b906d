//! The pipeline's side of the ingress journal: hand a batch to the
//! writer, keep taking messages, count the batch once it is durable (see
//! `durability::committer` for why nothing else changes the windows while
//! a batch is in flight).

use std::borrow::Cow;

use aggregator::{Aggregator, Rejected};
use gateway_core::clock::OWN_TIME_HORIZON_MS;
use gateway_core::telemetry::LogThrottle;
use gateway_core::{Reading, TimeSource, Timestamp};

use super::{Counters, Pipeline};
use crate::durability::journal::{JournalError, Written};

impl Pipeline {
    /// Journals what waits for the journal and, once it is on disk, counts
    /// it, before returning: for what must see every durable reading
    /// counted (a window closing, a clock step, the end). False when
    /// upstream is gone.
    pub(super) async fn commit_journal(&mut self, c: &Counters, throttle: &LogThrottle) -> bool {
        let now = self.clock.now();
        self.commit_journal_as_of(now, c, throttle).await
    }

    /// [`Self::commit_journal`], what waits screened as of `now`: before a
    /// backward clock step is followed, the time of the clock the readings
    /// were taken under (the windows still are on it).
    pub(super) async fn commit_journal_as_of(
        &mut self,
        now: Timestamp,
        c: &Counters,
        throttle: &LogThrottle,
    ) -> bool {
        if !self.settle_journal(c, throttle).await {
            return false;
        }
        self.start_journal_write(now);
        self.settle_journal(c, throttle).await
    }

    /// Hands what waits for the journal to its writer, screened as of `now`
    /// ([`Durability::begin_commit`]); it is counted once durable.
    pub(super) fn start_journal_write(&mut self, now: Timestamp) {
        let aggregator = &mut self.aggregator;
        self.durability
            .begin_commit(now, |readings, at| screen(aggregator, readings, at));
    }

    /// Waits for the batch in flight, if any, and counts it. False when
    /// upstream is gone.
    pub(super) async fn settle_journal(&mut self, c: &Counters, throttle: &LogThrottle) -> bool {
        if !self.durability.writing() {
            return true;
        }
        let outcome = self.durability.written().await;
        self.count_journaled(outcome, c, throttle).await
    }

    /// Counts a batch that is durable (none if its write failed), then the
    /// plain readings that waited behind it. False when upstream is gone.
    pub(super) async fn count_journaled(
        &mut self,
        outcome: Result<Written, JournalError>,
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
        // No checkpoint starts a new epoch while a batch is in flight: the
        // epoch now is the one the batch was written in.
        if let (Some(rules), Some(epoch)) = (&mut self.alerts, self.durability.journal_epoch()) {
            rules.journaled(epoch, taken.len());
        }
        self.outputs.send_readings().await;
        self.alerts_step(|_, o| o.append(&mut alerts)).await
    }
}

/// The readings of `readings` that [`Pipeline::ingest`] at `now` will
/// take, as it will take them (arrival-stamped ones past their window, or
/// ahead of a clock that stepped back, re-stamped at `now`): what the
/// journal must hold.
fn screen<'r>(
    aggregator: &mut Aggregator,
    readings: &'r [Reading],
    now: Timestamp,
) -> Cow<'r, [Reading]> {
    // Nearly always every reading is taken as it is: then nothing is
    // copied (a copy of each reading, made and dropped, was a tenth of
    // the journaled path).
    if readings.iter().all(|r| aggregator.check(r, now).is_ok()) {
        return Cow::Borrowed(readings);
    }
    readings
        .iter()
        .filter_map(|r| match aggregator.check(r, now) {
            Ok(()) => Some(r.clone()),
            Err(Rejected::Late { .. } | Rejected::Future { .. })
                if r.time_source() == TimeSource::Arrival =>
            {
                let r = r.restamped(now);
                match aggregator.check(&r, now) {
                    Ok(()) => Some(r),
                    Err(Rejected::MaxSeries { .. }) => None,
                    Err(_) => placed_by_own_time(aggregator, r, now),
                }
            }
            Err(Rejected::MaxSeries { .. }) => None,
            Err(_) => placed_by_own_time(aggregator, r.clone(), now),
        })
        .collect()
}

/// `r` if ingest will place it by its own time (late, or ahead of the
/// clock within a day): journaled, since it is counted and acknowledged.
fn placed_by_own_time(aggregator: &mut Aggregator, r: Reading, now: Timestamp) -> Option<Reading> {
    aggregator
        .check_own_time(&r, now, OWN_TIME_HORIZON_MS)
        .ok()
        .map(|()| r)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use aggregator::WindowSpec;
    use gateway_core::{DeviceId, MetricName};

    fn reading(at: Timestamp, source: TimeSource) -> Reading {
        let device = DeviceId::new("d").unwrap();
        Reading::new(device, MetricName::new("t").unwrap(), 1.0, at, source).unwrap()
    }

    /// The journal holds what ingest will count: a gateway stamp from
    /// before a backward clock step is journaled at the corrected time, a
    /// sensor's own time that far ahead by its own time (placed by it),
    /// and only one more than a day ahead is left out.
    #[test]
    fn screening_after_a_backward_step_restamps_only_the_gateways_stamps() {
        let mut aggregator = Aggregator::new(WindowSpec {
            window_ms: 5_000,
            grace_ms: 1_000,
            max_future_ms: 60_000,
        })
        .unwrap();
        let before_step = Timestamp::from_millis(1_800_000_000_000).unwrap();
        let now = before_step.saturating_add_millis(-600_000);
        let readings = [
            reading(before_step, TimeSource::Arrival),
            reading(before_step, TimeSource::Event),
        ];
        let screened = screen(&mut aggregator, &readings, now);
        assert_eq!(screened.len(), 2, "acknowledged, so journaled");
        assert_eq!(screened[0].time(), now);
        assert_eq!(screened[0].time_source(), TimeSource::Arrival);
        assert_eq!(screened[1].time(), before_step, "placed by its own time");
        let too_far = [reading(
            now.saturating_add_millis(OWN_TIME_HORIZON_MS + 1),
            TimeSource::Event,
        )];
        assert!(screen(&mut aggregator, &too_far, now).is_empty());
    }
}
