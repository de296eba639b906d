//! Tumbling windows: which window a reading belongs to, when a window is due,
//! and the [`Aggregator`] that ties series, windows and closing together.

use std::collections::BTreeMap;

use gateway_core::{DeviceId, MetricName, Reading, Timestamp};

use crate::series::SeriesTable;
use crate::Stats;

#[path = "own_time.rs"]
mod own_time;
pub use own_time::AheadState;
use own_time::AheadWindows;

/// How readings are cut into windows and how long a window waits for
/// stragglers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    /// Window length. Windows are aligned to multiples of it since the Unix
    /// epoch, so every gateway with the same spec cuts the same windows.
    pub window_ms: i64,
    /// How long after its end a window still accepts readings: sensors buffer,
    /// radios retry, brokers redeliver.
    pub grace_ms: i64,
    /// How far ahead of the caller's clock a reading may be stamped. Beyond
    /// that the device clock is wrong, and accepting it would keep a window
    /// (and its memory) open until that time.
    pub max_future_ms: i64,
}

impl WindowSpec {
    /// The `[start, end)` window that contains `t`; `end` saturates at the
    /// last representable timestamp.
    pub fn window_of(&self, t: Timestamp) -> (Timestamp, Timestamp) {
        let (start, end) = self.bounds(t.as_millis());
        (to_timestamp(start), to_timestamp(end))
    }

    fn bounds(&self, t: i64) -> (i64, i64) {
        let start = t - t.rem_euclid(self.window_ms);
        (start, start.saturating_add(self.window_ms))
    }

    /// The instant at which the window starting at `start` is due.
    fn deadline(&self, start: i64) -> i64 {
        start
            .saturating_add(self.window_ms)
            .saturating_add(self.grace_ms)
    }
}

/// Why a [`WindowSpec`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A window must span at least one millisecond.
    #[error("window_ms must be at least 1 ms, got {window_ms}")]
    WindowTooShort { window_ms: i64 },
    /// Grace can be zero (close at the window's end) but not negative.
    #[error("grace_ms must be 0 or more, got {grace_ms}")]
    NegativeGrace { grace_ms: i64 },
    /// Zero accepts readings up to `now`; negative would refuse the present.
    #[error("max_future_ms must be 0 or more, got {max_future_ms}")]
    NegativeMaxFuture { max_future_ms: i64 },
}

/// Why a reading was not added. Neither case changes any state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// Its window is past its grace period or has already been emitted.
    #[error(
        "reading is late: its window ended at {window_end} and is closed or past its grace period"
    )]
    Late { window_end: Timestamp },
    /// It is stamped further ahead of the gateway clock than `max_future_ms`.
    #[error("reading at {time} is further ahead of the gateway clock than max_future_ms allows")]
    Future { time: Timestamp },
    /// Its (device, metric) has no open window and `max_series` are already
    /// open: a flood of made-up ids stops here, series already open go on.
    #[error("its series is new and {max_series} series are already open (aggregation.max_series)")]
    MaxSeries { max_series: usize },
}

/// The closed window of one device: one entry per metric it reported.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceWindow {
    /// The device every metric below belongs to.
    pub device: DeviceId,
    /// Inclusive.
    pub start: Timestamp,
    /// Exclusive.
    pub end: Timestamp,
    /// Sorted by metric name; never empty, every entry has a count of at least 1.
    pub metrics: Vec<(MetricName, Stats)>,
    /// 0, or the number of backward clock steps so far when this window's
    /// span had already been closed once before the latest of them: the
    /// same (device, window) may then have been emitted before with other
    /// readings, and this is a second window over that span, not a copy.
    pub rerun: u32,
    /// 0, or this window's number among the late amendments: readings
    /// placed by their own time in a span whose window had already been
    /// emitted ([`Aggregator::ingest_own_time`]). Its statistics add to
    /// whatever was sent for the span before; it replaces nothing.
    pub amendment: u32,
}

/// Membership lists of emitted windows kept for reuse; a few cover the
/// windows open at once in any sane spec.
const SPARE_LISTS: usize = 4;

/// Tumbling-window statistics per device × metric. See the crate docs for the
/// semantics.
#[derive(Debug)]
pub struct Aggregator {
    spec: WindowSpec,
    series: SeriesTable,
    /// Window start → ids of the series with an accumulator in that window.
    /// Ordered so that the due windows are a prefix.
    windows: BTreeMap<i64, Vec<u32>>,
    spare: Vec<Vec<u32>>,
    open: usize,
    /// Every window ending at or before this instant has been closed. Only
    /// ever moves forward, so a clock stepping back cannot reopen one.
    watermark: i64,
    /// Most series interned at once; `usize::MAX` when uncapped.
    max_series: usize,
    /// Backward steps of the window clock so far ([`Aggregator::step_back`]).
    steps_back: u32,
    /// Windows ending at or before this had been closed when the clock
    /// last stepped back; emitted again, they are reruns.
    rerun_until: i64,
    /// Late amendments emitted so far: numbers them, across restarts
    /// (checkpointed), so each has an id of its own.
    amendments: u32,
    /// Start of the window the last reading fell in: the readings of a
    /// burst share it, and finding it by a 64-bit division for each one,
    /// twice (checked before the journal, then taken), was a noticeable
    /// share of a reading's cost on the pipeline's task.
    last_start: i64,
    /// The last reading found open: its time, the `now` and the watermark
    /// it was judged at, and its window's start. The readings of a line,
    /// and of most of a burst, share one time and are judged at one `now`
    /// (before the journal, then when counted): the same question, whose
    /// answer depends on nothing else, is then answered by three compares.
    last_open: Option<OpenAt>,
    /// Windows placed by their readings' own time ahead of the gateway
    /// clock, which close on that time, and the spans they were sent for.
    ahead: AheadWindows,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct OpenAt {
    time: i64,
    now: i64,
    watermark: i64,
    start: i64,
}

impl Aggregator {
    /// An aggregator with nothing open.
    ///
    /// # Errors
    /// `window_ms < 1`, `grace_ms < 0` or `max_future_ms < 0`.
    pub fn new(spec: WindowSpec) -> Result<Self, SpecError> {
        if spec.window_ms < 1 {
            return Err(SpecError::WindowTooShort {
                window_ms: spec.window_ms,
            });
        }
        if spec.grace_ms < 0 {
            return Err(SpecError::NegativeGrace {
                grace_ms: spec.grace_ms,
            });
        }
        if spec.max_future_ms < 0 {
            return Err(SpecError::NegativeMaxFuture {
                max_future_ms: spec.max_future_ms,
            });
        }
        Ok(Self {
            spec,
            series: SeriesTable::default(),
            windows: BTreeMap::new(),
            spare: Vec::new(),
            open: 0,
            watermark: i64::MIN,
            max_series: usize::MAX,
            steps_back: 0,
            rerun_until: i64::MIN,
            amendments: 0,
            last_start: i64::MIN,
            last_open: None,
            ahead: AheadWindows::default(),
        })
    }

    /// Lets go of what is kept only to spare later work, once a burst has
    /// passed ([`gateway_core::cache_release`]): the recently looked-up ids'
    /// texts, and the emitted windows' member lists kept for reuse (each as
    /// long as the series a window held). Nothing open changes.
    pub fn let_go_of_caches(&mut self) {
        self.series.let_go_of_recent();
        self.spare = Vec::new();
    }

    /// Caps the series (device × metric) that can be open at once. A reading
    /// of a new series beyond it is refused with [`Rejected::MaxSeries`];
    /// series already open keep taking readings, and a closed series frees
    /// its place. Windows restored from a checkpoint are never refused,
    /// even beyond the cap: they were accepted once.
    pub fn with_max_series(mut self, max_series: usize) -> Self {
        self.max_series = max_series;
        self
    }

    /// The spec this aggregator was built with.
    pub fn spec(&self) -> WindowSpec {
        self.spec
    }

    /// Adds one reading to the window containing `reading.time()`.
    ///
    /// # Errors
    /// [`Rejected::Future`] if the reading is stamped more than
    /// `max_future_ms` after `now`; [`Rejected::Late`] if its window's end plus
    /// grace is at or before `now`, or the window was already emitted;
    /// [`Rejected::MaxSeries`] if its series is new and the cap is reached.
    pub fn ingest(&mut self, reading: &Reading, now: Timestamp) -> Result<(), Rejected> {
        let start = self.window_open_at(reading, now)?;
        let id = if self.series.len() < self.max_series {
            self.series.intern(reading.device(), reading.metric())
        } else {
            self.series
                .find(reading.device(), reading.metric())
                .ok_or(Rejected::MaxSeries {
                    max_series: self.max_series,
                })?
        };
        if self.series.push(id, start, reading.value()) {
            self.opened(start, id);
        }
        Ok(())
    }

    /// What [`ingest`](Self::ingest) would answer, without taking the
    /// reading: to decide what to make durable before it is counted. The
    /// series cap is judged as things stand; readings of several new
    /// series checked one after the other may pass here and not all fit.
    ///
    /// # Errors
    /// As [`ingest`](Self::ingest).
    pub fn check(&mut self, reading: &Reading, now: Timestamp) -> Result<(), Rejected> {
        self.window_open_at(reading, now)?;
        self.check_series_cap(reading)
    }

    /// [`Rejected::MaxSeries`] when `reading` would open a new series
    /// beyond the cap.
    fn check_series_cap(&mut self, reading: &Reading) -> Result<(), Rejected> {
        if self.series.len() >= self.max_series
            && self
                .series
                .find(reading.device(), reading.metric())
                .is_none()
        {
            return Err(Rejected::MaxSeries {
                max_series: self.max_series,
            });
        }
        Ok(())
    }

    /// The start of the window `reading` goes in, if it still takes
    /// readings at `now`.
    #[inline]
    fn window_open_at(&mut self, reading: &Reading, now: Timestamp) -> Result<i64, Rejected> {
        let time = reading.time();
        let (t, now) = (time.as_millis(), now.as_millis());
        match self.last_open {
            Some(last) if last.time == t && last.now == now && last.watermark == self.watermark => {
                Ok(last.start)
            }
            _ => self.judge_window(time, now),
        }
    }

    fn judge_window(&mut self, time: Timestamp, now: i64) -> Result<i64, Rejected> {
        let t = time.as_millis();
        if t > now.saturating_add(self.spec.max_future_ms) {
            return Err(Rejected::Future { time });
        }
        let (start, end) = self.bounds_near_last(t);
        if self.spec.deadline(start) <= now || end <= self.watermark {
            return Err(Rejected::Late {
                window_end: to_timestamp(end),
            });
        }
        self.last_open = Some(OpenAt {
            time: t,
            now,
            watermark: self.watermark,
            start,
        });
        Ok(start)
    }

    /// [`WindowSpec::bounds`] of `t`, without the division when `t` falls
    /// in the same window as the reading before.
    fn bounds_near_last(&mut self, t: i64) -> (i64, i64) {
        let start = self.last_start;
        if t.checked_sub(start)
            .is_some_and(|d| (0..self.spec.window_ms).contains(&d))
        {
            return (start, start.saturating_add(self.spec.window_ms));
        }
        let bounds = self.spec.bounds(t);
        self.last_start = bounds.0;
        bounds
    }

    /// Whether the window containing `now` is already closed: the wall
    /// clock stepped back behind the windows emitted, and readings stamped
    /// now would all be refused as late.
    pub fn is_behind(&self, now: Timestamp) -> bool {
        self.spec.bounds(now.as_millis()).1 <= self.watermark
    }

    /// Follows a wall clock that stepped back to `now`: the windows of the
    /// corrected clock take readings again. Windows emitted before stay
    /// emitted; the ones still open, stamped by the clock that ran ahead,
    /// are closed and returned now (that clock's time ended at the step;
    /// left open they would wait for the corrected clock to catch up).
    /// A window over a span closed before the step is marked as a rerun
    /// when it closes ([`DeviceWindow::rerun`]). `None` when the clock is
    /// not behind.
    pub fn step_back(&mut self, now: Timestamp) -> Option<Vec<DeviceWindow>> {
        if !self.is_behind(now) {
            return None;
        }
        let closed = self.close_all();
        self.rerun_until = self.rerun_until.max(self.watermark);
        self.steps_back = self.steps_back.saturating_add(1);
        self.watermark = now.as_millis().saturating_sub(self.spec.grace_ms);
        Some(closed)
    }

    /// Backward steps followed so far and the end of the span closed
    /// before the latest (for checkpoints).
    pub fn steps_back(&self) -> (u32, i64) {
        (self.steps_back, self.rerun_until)
    }

    /// Late amendments emitted so far (for checkpoints).
    pub fn amendments(&self) -> u32 {
        self.amendments
    }

    pub(crate) fn restore_amendments(&mut self, n: u32) {
        self.amendments = self.amendments.max(n);
    }

    pub(crate) fn restore_steps_back(&mut self, steps: u32, rerun_until: i64) {
        if steps > self.steps_back {
            self.steps_back = steps;
            self.rerun_until = self.rerun_until.max(rerun_until);
        }
    }

    /// Closes and returns every window whose end + grace is at or before
    /// `now`: one [`DeviceWindow`] per (device, window), ordered by window
    /// start, then device id.
    pub fn close_due(&mut self, now: Timestamp) -> Vec<DeviceWindow> {
        let now = now.as_millis();
        let mut out = Vec::new();
        while let Some(entry) = self.windows.first_entry() {
            if self.spec.deadline(*entry.key()) > now {
                break;
            }
            let (start, members) = entry.remove_entry();
            self.ahead.forget(start);
            self.emit(start, members, &mut out);
        }
        self.close_ahead_due(now, &mut out);
        self.watermark = self.watermark.max(now.saturating_sub(self.spec.grace_ms));
        self.ahead
            .covered_up_to(self.watermark, self.spec.window_ms);
        out
    }

    /// Closes every open window regardless of time, for shutdown; same
    /// grouping and order as [`close_due`](Self::close_due). Windows up to
    /// the latest one emitted count as closed afterwards.
    pub fn close_all(&mut self) -> Vec<DeviceWindow> {
        let mut out = Vec::new();
        while let Some((start, members)) = self.windows.pop_first() {
            // Emitted before the watermark passes it: a late amendment is
            // told from a first window by the watermark it finds.
            self.emit(start, members, &mut out);
            self.watermark = self.watermark.max(self.spec.bounds(start).1);
        }
        self.ahead.clear_schedule();
        self.ahead
            .covered_up_to(self.watermark, self.spec.window_ms);
        out
    }

    /// Earliest `now` at which [`close_due`](Self::close_due) returns
    /// something; `None` when no window is open. Lets the caller sleep exactly
    /// until then instead of polling.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let by_gateway_clock = self
            .windows
            .first_key_value()
            .map(|(&start, _)| self.spec.deadline(start));
        let ahead = self.ahead.next_close();
        let at = match (by_gateway_clock, ahead) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(to_timestamp(at))
    }

    /// Open (device, metric, window) accumulators: the memory in use, for
    /// telemetry.
    pub fn open_series(&self) -> usize {
        self.open
    }

    /// Interned (device, metric) pairs. Bounded by the series with an open
    /// window, since a series is forgotten when its last window closes.
    pub fn interned_series(&self) -> usize {
        self.series.len()
    }

    /// Windows ending at or before this instant (ms) are closed; `i64::MIN`
    /// while none is.
    pub fn watermark_ms(&self) -> i64 {
        self.watermark
    }

    pub(crate) fn watermark(&self) -> i64 {
        self.watermark
    }

    pub(crate) fn raise_watermark(&mut self, to: i64) {
        self.watermark = self.watermark.max(to);
    }

    /// Visits every open accumulator, in window-start order, without
    /// copying the table: a checkpoint of many series is encoded straight
    /// from here rather than from an owned snapshot of it.
    pub fn for_each_open(&self, mut f: impl FnMut(&str, &str, i64, crate::StatsState)) {
        for (&start, ids) in &self.windows {
            for &id in ids {
                let Some((device, metric)) = self.series.key(id) else {
                    continue;
                };
                if let Some(stats) = self.series.stats(id, start) {
                    f(device, metric, start, stats.state());
                }
            }
        }
    }

    pub(crate) fn insert_accumulator(
        &mut self,
        device: &DeviceId,
        metric: &MetricName,
        start: i64,
        stats: Stats,
    ) {
        let id = self.series.intern(device, metric);
        if self.series.insert(id, start, stats) {
            self.opened(start, id);
        }
    }

    /// Series `id` has a new accumulator in the window at `start`.
    #[inline]
    fn opened(&mut self, start: i64, id: u32) {
        let spare = &mut self.spare;
        self.windows
            .entry(start)
            .or_insert_with(|| spare.pop().unwrap_or_default())
            .push(id);
        self.open += 1;
    }

    fn emit(&mut self, start: i64, mut members: Vec<u32>, out: &mut Vec<DeviceWindow>) {
        let (start_ms, end_ms) = self.spec.bounds(start);
        let (start_ts, end_ts) = (to_timestamp(start_ms), to_timestamp(end_ms));
        let rerun = if end_ms <= self.rerun_until {
            self.steps_back
        } else {
            0
        };
        // A window over a span already emitted (its end at or below the
        // watermark, or this device's window sent ahead of it) holds late
        // readings only: an amendment, numbered once for this span.
        let span_sent = end_ms <= self.watermark;
        let mut amendment = 0;
        self.series.sort_ids(&mut members);
        let mut current: Option<DeviceWindow> = None;
        for &id in &members {
            let Some(stats) = self.series.take(id, start) else {
                continue;
            };
            self.open -= 1;
            let Some((device, metric)) = self.series.key(id) else {
                continue;
            };
            // Both were validated when their reading was made, so this
            // cannot fail; a key that somehow did would be skipped, not
            // emitted under another name.
            let Ok(metric) = MetricName::new(metric) else {
                debug_assert!(false, "interned metric {metric:?} is invalid");
                continue;
            };
            match current.as_mut() {
                Some(dw) if dw.device.as_str() == device => dw.metrics.push((metric, stats)),
                _ => {
                    let Ok(device) = DeviceId::new(device) else {
                        debug_assert!(false, "interned device {device:?} is invalid");
                        continue;
                    };
                    out.extend(current.take());
                    let late = span_sent || self.ahead.was_sent(start, device.as_str());
                    if late && amendment == 0 {
                        self.amendments = self.amendments.wrapping_add(1).max(1);
                        amendment = self.amendments;
                    }
                    current = Some(DeviceWindow {
                        device,
                        start: start_ts,
                        end: end_ts,
                        metrics: vec![(metric, stats)],
                        rerun,
                        amendment: if late { amendment } else { 0 },
                    });
                }
            }
            if self.series.is_closed(id) {
                self.series.release(id);
            }
        }
        out.extend(current);
        if self.spare.len() < SPARE_LISTS {
            members.clear();
            self.spare.push(members);
        }
    }
}

/// Window arithmetic stays inside the timestamp range (it starts at a valid
/// reading time); the clamp only bites for a window ending past year 9999.
fn to_timestamp(ms: i64) -> Timestamp {
    Timestamp::default().saturating_add_millis(ms)
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
