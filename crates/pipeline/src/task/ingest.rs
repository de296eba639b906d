//! Readings into their windows: what the aggregator takes, re-stamps or
//! refuses, and who else hears of each (sinks, alert rules, counters).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use aggregator::Rejected;
use gateway_core::clock::{OWN_TIME_HORIZON_MS, TIME_TOO_FAR_AHEAD};
use gateway_core::telemetry::LogThrottle;
use gateway_core::{Reading, TimeSource, Timestamp};
use tracing::{info, warn};

use super::{Counters, Pipeline};
use rules::alerts::Transition;

/// Logs the `max_series` refusals once per window: a flood refuses a
/// reading per message, and one line per window says all there is to say.
/// Atomics only because the pipeline's future must be `Send`; one task
/// touches them.
pub(super) struct OncePerWindow {
    /// Start (ms) of the window in which the last line was logged.
    logged: AtomicI64,
    /// Refusals since then.
    since: AtomicU64,
}

impl Default for OncePerWindow {
    fn default() -> Self {
        Self {
            logged: AtomicI64::new(i64::MIN),
            since: AtomicU64::new(0),
        }
    }
}

impl OncePerWindow {
    /// `Some(refused since the last line)` when this one should be logged.
    fn allow(&self, window_start: i64) -> Option<u64> {
        if self.logged.swap(window_start, Ordering::Relaxed) == window_start {
            self.since.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.since.swap(0, Ordering::Relaxed))
    }
}

impl Pipeline {
    /// Adds readings to their windows; `Some(accepted)` when some were
    /// refused or re-stamped, `None` when all were taken as they came. A
    /// reading is never refused for its time within a day ahead of the
    /// gateway clock (see `place_own_time`).
    /// Readings also go to the alert rules, whose transitions land in
    /// `alerts`.
    pub(super) fn ingest(
        &mut self,
        readings: &[Reading],
        now: Timestamp,
        c: &Counters,
        throttle: &LogThrottle,
        alerts: &mut Vec<Transition>,
    ) -> Option<Vec<Reading>> {
        let mut accepted: Option<Vec<Reading>> = None;
        // One atomic add per batch rather than per reading.
        let mut taken = 0u64;
        for (i, r) in readings.iter().enumerate() {
            match self.aggregator.ingest(r, now) {
                Ok(()) => {
                    taken += 1;
                    self.outputs.reading(r);
                    if let Some(rules) = &mut self.alerts {
                        rules.on_reading(r, alerts);
                    }
                    if let Some(a) = accepted.as_mut() {
                        a.push(r.clone());
                    }
                }
                // Stamped by the gateway on arrival and then queued past its
                // window's end, or stamped just before the wall clock stepped
                // back (so now "ahead" of it): the gap is ours, not the
                // sensor's, so it counts now instead of being dropped.
                Err(Rejected::Late { .. } | Rejected::Future { .. })
                    if r.time_source() == TimeSource::Arrival =>
                {
                    let r = r.restamped(now);
                    match self.aggregator.ingest(&r, now) {
                        Ok(()) => {
                            c.aggregated.inc();
                            c.restamped.inc();
                            self.outputs.reading(&r);
                            if let Some(rules) = &mut self.alerts {
                                rules.on_reading(&r, alerts);
                            }
                            accepted
                                .get_or_insert_with(|| readings[..i].to_vec())
                                .push(r);
                        }
                        Err(rej @ Rejected::MaxSeries { .. }) => {
                            accepted.get_or_insert_with(|| readings[..i].to_vec());
                            self.refuse_max_series(&r, &rej, now, c);
                        }
                        // Behind every window (the clock is behind the
                        // windows sent and not followed yet): by its time,
                        // as an amendment, rather than lost.
                        Err(_) => {
                            accepted.get_or_insert_with(|| readings[..i].to_vec());
                            let placed = self.place_own_time(&r, now, c, throttle, alerts);
                            if let Some(a) = accepted.as_mut() {
                                a.extend(placed);
                            }
                        }
                    }
                }
                Err(rej @ Rejected::MaxSeries { .. }) => {
                    accepted.get_or_insert_with(|| readings[..i].to_vec());
                    self.refuse_max_series(r, &rej, now, c);
                }
                // The sensor's own time, outside the windows open now: it
                // was (or will be) acknowledged, so it is placed by that
                // time whatever the gateway's clock says (the clock may be
                // the wrong one): in its window, or in a late amendment
                // when that window was sent already.
                Err(_) => {
                    accepted.get_or_insert_with(|| readings[..i].to_vec());
                    let placed = self.place_own_time(r, now, c, throttle, alerts);
                    if let Some(a) = accepted.as_mut() {
                        a.extend(placed);
                    }
                }
            }
        }
        c.aggregated.add(taken);
        accepted
    }

    /// Places a reading the open windows refused by its own time
    /// ([`aggregator::Aggregator::ingest_own_time`]), counted by why it
    /// was outside them; returns it when taken. Only a time more than
    /// [`OWN_TIME_HORIZON_MS`] ahead is refused, which the inputs that
    /// acknowledge refuse before their acknowledgement
    /// (`gateway_core::clock::own_time_refusal`).
    fn place_own_time(
        &mut self,
        r: &Reading,
        now: Timestamp,
        c: &Counters,
        throttle: &LogThrottle,
        alerts: &mut Vec<Transition>,
    ) -> Option<Reading> {
        let late = r.time() <= now;
        match self.aggregator.ingest_own_time(r, now, OWN_TIME_HORIZON_MS) {
            Ok(()) => {
                c.aggregated.inc();
                let (kind, counter) = if late {
                    ("late", &c.late)
                } else {
                    ("future", &c.future)
                };
                counter.inc();
                if let Some(suppressed) = throttle.allow(kind) {
                    if late {
                        info!(device = %r.device(), metric = %r.metric(), time = %r.time(), now = %now, suppressed, "A reading too late for its window: placed by its own time, in a late amendment if its window was sent already.");
                    } else {
                        info!(device = %r.device(), metric = %r.metric(), time = %r.time(), now = %now, suppressed, "A reading stamped ahead of the gateway clock (beyond max_future): placed by its own time; its window waits for the clock.");
                    }
                }
                self.outputs.reading(r);
                if let Some(rules) = &mut self.alerts {
                    rules.on_reading(r, alerts);
                }
                Some(r.clone())
            }
            Err(rej @ Rejected::MaxSeries { .. }) => {
                self.refuse_max_series(r, &rej, now, c);
                None
            }
            Err(rej) => {
                c.too_far_ahead.inc();
                if let Some(suppressed) = throttle.allow(TIME_TOO_FAR_AHEAD) {
                    warn!(device = %r.device(), metric = %r.metric(), time = %r.time(), reason = %rej, suppressed, "Dropping a reading stamped more than a day ahead of the gateway clock (its sensor's clock is wrong).");
                }
                None
            }
        }
    }

    /// Counts a reading refused by `aggregation.max_series`, and logs the
    /// first one of each window.
    fn refuse_max_series(&self, r: &Reading, rej: &Rejected, now: Timestamp, c: &Counters) {
        c.max_series.inc();
        let (window, _) = self.aggregator.spec().window_of(now);
        if let Some(earlier) = c.max_series_log.allow(window.as_millis()) {
            warn!(device = %r.device(), metric = %r.metric(), reason = %rej, refused_before = earlier, "Refusing readings of new series until open ones close (logged once per window).");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OncePerWindow;

    #[test]
    fn refusals_are_logged_once_per_window_with_the_count_since() {
        let once = OncePerWindow::default();
        // (window start, expected)
        let steps = [
            (0, Some(0)),
            (0, None),
            (0, None),
            (60, Some(2)),
            (60, None),
            (120, Some(1)),
        ];
        for (i, (window, want)) in steps.into_iter().enumerate() {
            assert_eq!(once.allow(window), want, "step {i}");
        }
    }
}
