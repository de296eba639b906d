//! The readings of windows not closed yet, for the charts: with hourly
//! windows a device that reports every 10 s would otherwise show "no
//! data" for its first hour, and its newest hour never.
//!
//! Each series keeps its readings since its last closed window as a few
//! slots (a twelfth of a window each: 5 min of an hourly window), merged
//! the way history merges windows; a closed window drops the slots it
//! covers, since history now holds them. Memory is bounded by
//! [`MAX_SLOTS`] per series, whatever the devices send.

use std::collections::{HashMap, VecDeque};

use super::history::{merge, Aggregate};

/// Slots per window.
const SLOTS_PER_WINDOW: i64 = 12;
/// Slots kept per series: the open window and the one closing after it.
pub const MAX_SLOTS: usize = 2 * SLOTS_PER_WINDOW as usize;

#[derive(Debug, Default)]
struct Series {
    /// Every window ending at or before this is in history.
    closed_until: Option<i64>,
    /// Sorted by start.
    slots: VecDeque<Aggregate>,
}

/// The open windows of every series.
#[derive(Debug)]
pub struct OpenWindows {
    slot_ms: i64,
    /// device → metric → its open windows.
    series: HashMap<String, HashMap<String, Series>>,
}

impl OpenWindows {
    /// Slots for windows of `window_ms`.
    pub fn new(window_ms: i64) -> Self {
        Self {
            slot_ms: (window_ms / SLOTS_PER_WINDOW).max(1000),
            series: HashMap::new(),
        }
    }

    /// One accepted reading.
    pub fn reading(&mut self, device: &str, metric: &str, at: i64, value: f64) {
        if !value.is_finite() {
            return;
        }
        let slot_ms = self.slot_ms;
        let s = self.series_mut(device, metric);
        if s.closed_until.is_some_and(|c| at < c) {
            return;
        }
        let start = at.div_euclid(slot_ms) * slot_ms;
        let one = Aggregate {
            start,
            end: start.saturating_add(slot_ms),
            count: 1,
            avg: value,
            min: value,
            max: value,
            std: 0.0,
        };
        match s.slots.binary_search_by_key(&start, |a| a.start) {
            Ok(i) => merge(&mut s.slots[i], &one),
            Err(i) => {
                s.slots.insert(i, one);
                // A device whose windows never close (or whose clock runs
                // on) keeps its newest slots only.
                while s.slots.len() > MAX_SLOTS {
                    s.slots.pop_front();
                }
            }
        }
    }

    /// A window of the series closed at `end`: history holds what it
    /// covered.
    pub fn closed(&mut self, device: &str, metric: &str, end: i64) {
        let s = self.series_mut(device, metric);
        s.closed_until = Some(s.closed_until.map_or(end, |c| c.max(end)));
        while s.slots.front().is_some_and(|a| a.start < end) {
            s.slots.pop_front();
        }
    }

    /// The series' readings not in a closed window yet, as slots sorted by
    /// start.
    pub fn points(&self, device: &str, metric: &str) -> Vec<Aggregate> {
        self.series
            .get(device)
            .and_then(|m| m.get(metric))
            .map(|s| s.slots.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Allocates a key only for a series not seen before: this runs for
    /// every reading.
    fn series_mut(&mut self, device: &str, metric: &str) -> &mut Series {
        if !self.series.contains_key(device) {
            self.series.insert(device.to_string(), HashMap::new());
        }
        let metrics = self
            .series
            .get_mut(device)
            .expect("inserted above when missing");
        if !metrics.contains_key(metric) {
            metrics.insert(metric.to_string(), Series::default());
        }
        metrics
            .get_mut(metric)
            .expect("inserted above when missing")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn readings_fill_slots_until_their_window_closes() {
        let mut o = OpenWindows::new(HOUR);
        let t0 = 100 * HOUR;
        // 10 s readings for 70 minutes, rising from 8.0 to 12.1 and back.
        for i in 0..420 {
            let v = if i == 200 { 12.1 } else { 8.0 };
            o.reading("fridge", "temperature", t0 + i * 10_000, v);
        }
        let pts = o.points("fridge", "temperature");
        assert_eq!(pts.len(), 14, "5 min slots over 70 min");
        assert_eq!(pts.iter().map(|p| p.count).sum::<u64>(), 420);
        assert_eq!(pts[0].start, t0);
        assert!(pts.iter().any(|p| p.max == 12.1));
        o.closed("fridge", "temperature", t0 + HOUR);
        let pts = o.points("fridge", "temperature");
        assert_eq!(pts.len(), 2, "the hour is in history now");
        assert_eq!(pts.iter().map(|p| p.count).sum::<u64>(), 60);
        // A reading of the closed window arriving late adds nothing.
        o.reading("fridge", "temperature", t0 + 5_000, 30.0);
        assert_eq!(o.points("fridge", "temperature").len(), 2);
        assert!(o.points("fridge", "humidity").is_empty());
    }

    #[test]
    fn a_series_that_never_closes_keeps_its_newest_slots() {
        let mut o = OpenWindows::new(60_000);
        for i in 0..10_000 {
            o.reading("d", "m", i * 5_000, i as f64);
        }
        let pts = o.points("d", "m");
        assert_eq!(pts.len(), MAX_SLOTS);
        assert_eq!(pts.last().map(|p| p.max), Some(9_999.0));
        o.reading("d", "m", 0, f64::NAN);
        assert_eq!(o.points("d", "m").len(), MAX_SLOTS);
    }
}
