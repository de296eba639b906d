//! What keeps a refusal final once the journal is full.
//!
//! A refusal made before the allowance (over the rate, ahead of the clock,
//! expired) is journaled like any result, so the same id sent again gets
//! the same refusal. A flood of them must not grow the journal without
//! bound, so past `REFUSALS_REMEMBERED` ids they get no line of their own.
//! An id refused then and replayed once the device's allowance is back
//! would run: a command the cloud was told was refused, carried out late,
//! or twice once the cloud sent it again under a new id.
//!
//! Instead of the id, the device's *mark* is kept: the newest `ts` of a
//! command for it refused without a line. A command for that device made
//! no later than its mark may be the replay of one of them, and is refused
//! too. One mark a device a target serves (the config bounds them; a
//! device nobody writes to is refused whatever it is sent), on disk as a
//! journal line written twice like every other.
//!
//! On disk a mark is written a second past the `ts` it covers, so a
//! flood's refusals, whose `ts` follow the clock, cost about one line a
//! second and a device, not one each. In memory it is the exact `ts`, so
//! the running gateway refuses no command made after the newest refused;
//! after a restart the written mark holds, up to a second more than
//! needed. A mark never reaches more than `keep` (the longest an id is
//! remembered) past the wall clock, so a forged future `ts` cannot shut a
//! device out for longer than an id of it would be kept; a refusal of a
//! command made further ahead is not covered, and says so. A command older
//! than `keep` is covered by a mark at `keep` ago, so a flood of old ones
//! costs a line a second too. A mark older than `keep` covers only
//! commands expired by their age: it is folded into the journal's horizon
//! and dropped. A mark read back further ahead than a mark can be (a
//! damaged digit) is brought back to that limit, so it cannot shut its
//! device out for good.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// How far past the `ts` it covers a mark is raised (ms).
const LEAD_MS: i64 = 1_000;

/// A mark as a journal line: `{"refused_upto":"…","device":"…"}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MarkLine {
    pub refused_upto: String,
    pub device: String,
}

/// A device's mark (ms since the epoch).
#[derive(Debug, Clone, Copy)]
struct Mark {
    /// The newest `ts` refused: what the running gateway refuses up to.
    refused: i64,
    /// What the journal holds (at least `refused`).
    written: i64,
}

/// What a refusal needs of its device's mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cover {
    /// The mark the journal holds covers it (and the exact mark in memory
    /// now does too).
    Covered,
    /// A mark this high must be written first.
    Write(i64),
    /// Made more than `keep` ahead: no mark may cover it.
    TooFarAhead,
}

/// The marks, by device.
#[derive(Debug, Default)]
pub(crate) struct FloodMarks {
    marks: HashMap<String, Mark>,
}

impl FloodMarks {
    pub fn get(&self, device: &str) -> Option<i64> {
        self.marks.get(device).map(|m| m.refused)
    }

    /// Keeps the higher of `device`'s mark and `at` (a mark read back).
    pub fn merge(&mut self, device: String, at: i64) {
        let mark = self.marks.entry(device).or_insert(Mark {
            refused: at,
            written: at,
        });
        mark.refused = mark.refused.max(at);
        mark.written = mark.written.max(at);
    }

    /// Covers a refusal of `device`'s command made at `ts` (ms), the wall
    /// clock at `now` (ms), as far as what the journal holds already does.
    pub fn cover(&mut self, device: &str, ts: i64, now: i64, keep_ms: i64) -> Cover {
        if ts > now.saturating_add(keep_ms) {
            return Cover::TooFarAhead;
        }
        let ts = ts.max(now.saturating_sub(keep_ms));
        match self.marks.get_mut(device) {
            Some(mark) if ts <= mark.written => {
                mark.refused = mark.refused.max(ts);
                Cover::Covered
            }
            _ => Cover::Write(ts.saturating_add(LEAD_MS)),
        }
    }

    /// The mark [`Cover::Write`] asked for is in the journal now.
    pub fn written_up_to(&mut self, device: &str, ts: i64, written: i64) {
        let mark = self.marks.entry(device.to_string()).or_insert(Mark {
            refused: ts,
            written,
        });
        mark.refused = mark.refused.max(ts);
        mark.written = mark.written.max(written);
    }

    /// Brings marks read back from beyond what `cover` writes (a damaged
    /// digit) back to its limit: the devices they name.
    pub fn clamp(&mut self, now: i64, keep_ms: i64) -> Vec<String> {
        let limit = now.saturating_add(keep_ms).saturating_add(LEAD_MS);
        let mut clamped = Vec::new();
        for (device, mark) in &mut self.marks {
            if mark.written > limit {
                mark.written = limit;
                mark.refused = mark.refused.min(limit);
                clamped.push(device.clone());
            }
        }
        clamped
    }

    /// Drops the marks older than `keep` before `now`: the newest of them,
    /// for the horizon.
    pub fn forget(&mut self, now: i64, keep_ms: i64) -> Option<i64> {
        let oldest_kept = now.saturating_sub(keep_ms);
        let mut newest_dropped = None;
        self.marks.retain(|_, mark| {
            let keep = mark.written >= oldest_kept;
            if !keep {
                newest_dropped = newest_dropped.max(Some(mark.written));
            }
            keep
        });
        newest_dropped
    }

    pub fn len(&self) -> usize {
        self.marks.len()
    }

    /// The marks as the journal holds them.
    pub fn written(&self) -> impl Iterator<Item = (&str, i64)> {
        self.marks.iter().map(|(d, m)| (d.as_str(), m.written))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const KEEP: i64 = 65_000;

    #[test]
    fn a_flood_following_the_clock_raises_the_mark_about_once_a_second() {
        let mut marks = FloodMarks::default();
        let raised = (0..10_000)
            .filter(|i| {
                let ts = 1_000_000 + i; // 10 000 refusals over 10 s
                match marks.cover("ahu-1", ts, ts, KEEP) {
                    Cover::Write(w) => {
                        marks.written_up_to("ahu-1", ts, w);
                        true
                    }
                    _ => false,
                }
            })
            .count();
        assert!((9..=11).contains(&raised), "{raised}");
        assert_eq!(marks.get("ahu-1"), Some(1_000_000 + 9_999), "the exact ts");
        let (_, written) = marks.written().next().unwrap();
        assert!((1_009_999..=1_009_999 + LEAD_MS).contains(&written));
    }

    #[test]
    fn a_ts_more_than_keep_ahead_is_not_covered() {
        let mut marks = FloodMarks::default();
        let now = 1_000_000;
        assert_eq!(
            marks.cover("ahu-1", i64::MAX, now, KEEP),
            Cover::TooFarAhead
        );
        assert_eq!(
            marks.cover("ahu-1", now + KEEP + 1, now, KEEP),
            Cover::TooFarAhead
        );
        assert_eq!(
            marks.cover("ahu-1", now + KEEP, now, KEEP),
            Cover::Write(now + KEEP + LEAD_MS)
        );
        assert_eq!(marks.get("ahu-1"), None, "nothing until it is written");
    }

    #[test]
    fn old_refusals_share_one_mark_at_keep_ago_a_second_at_a_time() {
        let mut marks = FloodMarks::default();
        let now = 100 * KEEP;
        let mut lines = 0;
        for ts in 0..1_000 {
            if let Cover::Write(w) = marks.cover("ahu-1", ts, now, KEEP) {
                marks.written_up_to("ahu-1", ts.max(now - KEEP), w);
                lines += 1;
            }
        }
        assert_eq!(lines, 1);
        assert_eq!(marks.forget(now, KEEP), None, "kept for a second");
    }

    #[test]
    fn a_damaged_mark_far_ahead_is_brought_back() {
        let mut marks = FloodMarks::default();
        marks.merge("ahu-1".into(), 33_351_908_801_100);
        marks.merge("lamp-1".into(), 2_000);
        assert_eq!(marks.clamp(1_000, KEEP), vec!["ahu-1".to_string()]);
        assert_eq!(marks.get("ahu-1"), Some(1_000 + KEEP + LEAD_MS));
        assert_eq!(marks.get("lamp-1"), Some(2_000));
    }

    #[test]
    fn a_mark_older_than_keep_is_dropped_for_the_horizon() {
        let mut marks = FloodMarks::default();
        marks.merge("ahu-1".into(), 1_000);
        marks.merge("lamp-1".into(), 5_000);
        marks.merge("ahu-1".into(), 900);
        assert_eq!(marks.get("ahu-1"), Some(1_000), "a merge keeps the higher");
        assert_eq!(marks.forget(3_000 + KEEP, KEEP), Some(1_000));
        assert_eq!((marks.get("ahu-1"), marks.len()), (None, 1));
        assert_eq!(marks.forget(3_000 + KEEP, KEEP), None);
    }
}
