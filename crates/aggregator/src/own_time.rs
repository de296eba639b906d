//! Windows that close on their readings' own timeline, ahead of the
//! gateway's clock.
//!
//! A reading placed by its own time far ahead of the gateway clock (the
//! gateway's clock stepped back and stayed there, or a node buffers and
//! its clock is right) would otherwise wait for the gateway clock to
//! reach its window: ten minutes for a ten-minute step, with the
//! readings acknowledged and nothing upstream. Its window closes instead
//! when the *reading's* clock passes the window's end and grace, as that
//! clock is seen from here: the gateway clock plus how far ahead the
//! reading was when it came. Only windows lying wholly ahead (closed on
//! that timeline before the gateway clock reaches their start) close this
//! way, so no reading the gateway stamps itself is ever cut short by it.
//!
//! Such a window goes out before the watermark covers its span, so the
//! span is remembered per device until the watermark does: a reading for
//! it that comes later (a straggler, or the same device once the gateway
//! clock reaches the span) goes out as a late amendment, never as a second
//! first window under the same id.

use std::collections::BTreeMap;

use gateway_core::{DeviceId, Reading, Timestamp};

use super::{Aggregator, DeviceWindow, Rejected};

/// [`AheadWindows`] as plain data, for checkpoints.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AheadState {
    /// (window start, the gateway-clock instant it closes at).
    pub close_at: Vec<(i64, i64)>,
    /// (window start, a device whose window over it was sent ahead of the
    /// watermark).
    pub sent: Vec<(i64, DeviceId)>,
}

#[derive(Debug, Default)]
pub(crate) struct AheadWindows {
    /// Window start → the gateway-clock instant at which it closes.
    close_at: BTreeMap<i64, i64>,
    /// Window start → devices whose window over that span went out ahead
    /// of the watermark.
    sent: BTreeMap<i64, Vec<DeviceId>>,
}

impl AheadWindows {
    pub(crate) fn is_ahead(&self, start: i64) -> bool {
        self.close_at.contains_key(&start)
    }

    /// The window at `start` closes at `at` or, if a reading of it seen
    /// before put it later, then: the reading least ahead (the slowest to
    /// arrive) sets the close, so none of its stragglers is cut off.
    pub(crate) fn close_no_earlier_than(&mut self, start: i64, at: i64) {
        let entry = self.close_at.entry(start).or_insert(at);
        *entry = (*entry).max(at);
    }

    /// The window at `start` closed by the gateway clock, or for good.
    pub(crate) fn forget(&mut self, start: i64) {
        self.close_at.remove(&start);
    }

    /// Starts of the windows due at `now`, removed from the schedule.
    pub(crate) fn take_due(&mut self, now: i64) -> Vec<i64> {
        let due: Vec<i64> = self
            .close_at
            .iter()
            .filter(|(_, &at)| at <= now)
            .map(|(&start, _)| start)
            .collect();
        for start in &due {
            self.close_at.remove(start);
        }
        due
    }

    /// The earliest close scheduled.
    pub(crate) fn next_close(&self) -> Option<i64> {
        self.close_at.values().copied().min()
    }

    pub(crate) fn record_sent(&mut self, start: i64, device: &DeviceId) {
        let devices = self.sent.entry(start).or_default();
        if !devices.contains(device) {
            devices.push(device.clone());
        }
    }

    pub(crate) fn was_sent(&self, start: i64, device: &str) -> bool {
        self.sent
            .get(&start)
            .is_some_and(|d| d.iter().any(|d| d.as_str() == device))
    }

    /// Spans the watermark now covers need no memory of their own: a
    /// reading for them is late by the watermark.
    pub(crate) fn covered_up_to(&mut self, watermark: i64, window_ms: i64) {
        while let Some(entry) = self.sent.first_entry() {
            if entry.key().saturating_add(window_ms) > watermark {
                break;
            }
            entry.remove();
        }
    }

    pub(crate) fn clear_schedule(&mut self) {
        self.close_at.clear();
    }

    pub(crate) fn schedule(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.close_at.iter().map(|(&s, &at)| (s, at))
    }

    pub(crate) fn sent(&self) -> impl Iterator<Item = (i64, &DeviceId)> + '_ {
        self.sent
            .iter()
            .flat_map(|(&s, devices)| devices.iter().map(move |d| (s, d)))
    }
}

impl Aggregator {
    /// Adds a reading by its own time whatever the windows already sent:
    /// for a reading that was acknowledged and must not be lost for the
    /// gateway's clock. A reading whose window is due joins it; one whose
    /// span was emitted already opens a late amendment, due at once
    /// ([`DeviceWindow::amendment`]); one stamped up to `horizon_ms` ahead
    /// of `now` opens (or joins) its window, which closes when the
    /// reading's own clock, as seen from here, passes its end and grace
    /// (see the module's docs), or when the gateway clock does.
    ///
    /// # Errors
    /// [`Rejected::Future`] beyond `now + horizon_ms`;
    /// [`Rejected::MaxSeries`] as [`ingest`](Self::ingest).
    pub fn ingest_own_time(
        &mut self,
        reading: &Reading,
        now: Timestamp,
        horizon_ms: i64,
    ) -> Result<(), Rejected> {
        self.check_own_time(reading, now, horizon_ms)?;
        let t = reading.time().as_millis();
        let (start, _) = self.spec.bounds(t);
        let opened_here = !self.windows.contains_key(&start);
        let id = self.series.intern(reading.device(), reading.metric());
        if self.series.push(id, start, reading.value()) {
            self.opened(start, id);
        }
        let now = now.as_millis();
        let ahead_by = t.saturating_sub(now);
        if ahead_by > self.spec.max_future_ms && (opened_here || self.ahead.is_ahead(start)) {
            let close_at = self.spec.deadline(start).saturating_sub(ahead_by);
            if close_at <= start {
                self.ahead.close_no_earlier_than(start, close_at);
            }
        }
        Ok(())
    }

    /// What [`ingest_own_time`](Self::ingest_own_time) would answer,
    /// without taking the reading.
    ///
    /// # Errors
    /// As [`ingest_own_time`](Self::ingest_own_time).
    pub fn check_own_time(
        &mut self,
        reading: &Reading,
        now: Timestamp,
        horizon_ms: i64,
    ) -> Result<(), Rejected> {
        let time = reading.time();
        if time.as_millis() > now.as_millis().saturating_add(horizon_ms) {
            return Err(Rejected::Future { time });
        }
        self.check_series_cap(reading)
    }

    /// Emits the windows ahead of the gateway clock whose own timeline
    /// closed them by `now`, and remembers their spans per device.
    pub(super) fn close_ahead_due(&mut self, now: i64, out: &mut Vec<DeviceWindow>) {
        let due = self.ahead.take_due(now);
        if due.is_empty() {
            return;
        }
        for start in due {
            let Some(members) = self.windows.remove(&start) else {
                continue;
            };
            let first = out.len();
            self.emit(start, members, out);
            for w in &out[first..] {
                self.ahead.record_sent(start, &w.device);
            }
        }
        out.sort_by_key(|w| w.start);
    }

    /// Windows ahead of the gateway clock and the spans sent ahead of
    /// the watermark: for checkpoints.
    pub fn ahead_state(&self) -> AheadState {
        AheadState {
            close_at: self.ahead.schedule().collect(),
            sent: self.ahead.sent().map(|(s, d)| (s, d.clone())).collect(),
        }
    }

    pub(crate) fn restore_ahead(&mut self, state: &AheadState) {
        for &(start, at) in &state.close_at {
            self.ahead.close_no_earlier_than(start, at);
        }
        for (start, device) in &state.sent {
            self.ahead.record_sent(*start, device);
        }
    }
}
