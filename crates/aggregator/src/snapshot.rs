//! The aggregator's open state as plain data, to be checkpointed to disk and
//! restored after a restart so an open window neither loses nor re-counts
//! what it held.

use gateway_core::{DeviceId, MetricName};

use crate::stats::Stats;
use crate::window::{Aggregator, AheadState};

/// A [`Stats`] accumulator's exact internal state. Restoring it gives
/// bit-identical results to never having stopped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatsState {
    pub count: u64,
    pub shift: f64,
    pub mean: f64,
    pub m2: f64,
    pub min: f64,
    pub max: f64,
    pub scale_exp: i32,
}

/// One open (device, metric, window) accumulator.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenSeries {
    pub device: DeviceId,
    pub metric: MetricName,
    pub window_start_ms: i64,
    pub stats: StatsState,
}

/// Everything an [`Aggregator`] needs to carry on where it stopped.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    /// Windows ending at or before this were emitted (`i64::MIN`: none yet).
    pub watermark_ms: i64,
    pub open: Vec<OpenSeries>,
    /// Backward clock steps followed so far, and the end of the span that
    /// was closed before the latest ([`Aggregator::step_back`]): a window
    /// of that span emitted after a restart must still be a rerun.
    pub steps_back: u32,
    pub rerun_until: i64,
    /// Late amendments emitted so far ([`Aggregator::amendments`]).
    pub amendments: u32,
    /// Windows ahead of the gateway clock that close on their readings'
    /// own time, and the spans sent that way per device, which later
    /// readings amend ([`Aggregator::ahead_state`]).
    pub ahead: AheadState,
}

impl Aggregator {
    /// The open windows and watermark, in window-start order.
    pub fn snapshot(&self) -> Snapshot {
        let (steps_back, rerun_until) = self.steps_back();
        Snapshot {
            watermark_ms: self.watermark(),
            open: self.open_accumulators(),
            steps_back,
            rerun_until,
            amendments: self.amendments(),
            ahead: self.ahead_state(),
        }
    }

    fn open_accumulators(&self) -> Vec<OpenSeries> {
        let mut out = Vec::with_capacity(self.open_series());
        self.for_each_open(|device, metric, window_start_ms, stats| {
            if let (Ok(device), Ok(metric)) = (DeviceId::new(device), MetricName::new(metric)) {
                out.push(OpenSeries {
                    device,
                    metric,
                    window_start_ms,
                    stats,
                });
            }
        });
        out
    }

    /// Re-opens the windows of a snapshot. Meant for a fresh aggregator at
    /// start; an accumulator already open for the same window is replaced.
    pub fn restore(&mut self, snapshot: &Snapshot) {
        self.raise_watermark(snapshot.watermark_ms);
        self.restore_steps_back(snapshot.steps_back, snapshot.rerun_until);
        self.restore_amendments(snapshot.amendments);
        self.restore_ahead(&snapshot.ahead);
        for s in &snapshot.open {
            self.insert_accumulator(
                &s.device,
                &s.metric,
                s.window_start_ms,
                Stats::from_state(s.stats),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WindowSpec;
    use gateway_core::{Reading, TimeSource, Timestamp};

    fn r(device: &str, metric: &str, v: f64, t: i64) -> Reading {
        Reading::new(
            DeviceId::new(device).unwrap(),
            MetricName::new(metric).unwrap(),
            v,
            Timestamp::from_millis(t).unwrap(),
            TimeSource::Event,
        )
        .unwrap()
    }

    #[test]
    fn a_restored_aggregator_finishes_windows_exactly_as_one_that_never_stopped() {
        let spec = WindowSpec {
            window_ms: 1000,
            grace_ms: 0,
            max_future_ms: 10_000,
        };
        let mut whole = Aggregator::new(spec).unwrap();
        let mut first = Aggregator::new(spec).unwrap();
        let now = Timestamp::from_millis(0).unwrap();
        let early = [
            r("a", "t", 1e12 + 0.5, 10),
            r("a", "t", 1e12 + 0.25, 20),
            r("b", "h", 1e-300, 1500),
            r("a", "t", 3.0, 2100),
        ];
        let late = [
            r("a", "t", 1e12 + 0.75, 30),
            r("b", "h", 3e-300, 1600),
            r("c", "x", -1.0, 40),
        ];
        for x in &early {
            whole.ingest(x, now).unwrap();
            first.ingest(x, now).unwrap();
        }
        let snap = first.snapshot();
        assert_eq!(snap.open.len(), 3);
        let mut second = Aggregator::new(spec).unwrap();
        second.restore(&snap);
        assert_eq!(
            second.snapshot(),
            snap,
            "restore then snapshot is the identity"
        );
        for x in &late {
            whole.ingest(x, now).unwrap();
            second.ingest(x, now).unwrap();
        }
        let end = Timestamp::from_millis(10_000).unwrap();
        assert_eq!(
            second.close_due(end),
            whole.close_due(end),
            "bit-identical windows"
        );
    }

    #[test]
    fn the_watermark_survives_so_emitted_windows_stay_closed() {
        let spec = WindowSpec {
            window_ms: 1000,
            grace_ms: 0,
            max_future_ms: 10_000,
        };
        let mut a = Aggregator::new(spec).unwrap();
        a.ingest(&r("a", "t", 1.0, 100), Timestamp::from_millis(0).unwrap())
            .unwrap();
        assert_eq!(a.close_due(Timestamp::from_millis(1500).unwrap()).len(), 1);
        let mut b = Aggregator::new(spec).unwrap();
        b.restore(&a.snapshot());
        // A clock that came back earlier after the restart must not reopen it.
        let err = b.ingest(&r("a", "t", 2.0, 200), Timestamp::from_millis(300).unwrap());
        assert!(matches!(err, Err(crate::Rejected::Late { .. })));
    }
}
