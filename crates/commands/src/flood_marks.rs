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
//! needed. A `ts` beyond the wall clock counts as at most
//! `keep` ahead (the longest an id is remembered), so a forged future `ts`
//! cannot shut a device out for longer than an id of it would be kept. A
//! mark older than `keep` covers only commands expired by their age: it is
//! folded into the journal's horizon and dropped.

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
    /// clock at `now` (ms): the mark to write when the journal's no longer
    /// covers it, else `None`.
    pub fn cover(&mut self, device: &str, ts: i64, now: i64, keep_ms: i64) -> Option<i64> {
        let ts = ts.min(now.saturating_add(keep_ms));
        if let Some(mark) = self.marks.get_mut(device) {
            mark.refused = mark.refused.max(ts);
            if ts <= mark.written {
                return None;
            }
        }
        let written = ts.saturating_add(LEAD_MS);
        self.marks.insert(
            device.to_string(),
            Mark {
                refused: ts,
                written,
            },
        );
        Some(written)
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
                marks.cover("ahu-1", ts, ts, KEEP).is_some()
            })
            .count();
        assert!((9..=11).contains(&raised), "{raised}");
        assert_eq!(marks.get("ahu-1"), Some(1_000_000 + 9_999), "the exact ts");
        let (_, written) = marks.written().next().unwrap();
        assert!((1_009_999..=1_009_999 + LEAD_MS).contains(&written));
    }

    #[test]
    fn a_forged_future_ts_covers_no_more_than_keep_ahead() {
        let mut marks = FloodMarks::default();
        let now = 1_000_000;
        assert_eq!(
            marks.cover("ahu-1", i64::MAX, now, KEEP),
            Some(now + KEEP + LEAD_MS)
        );
        assert_eq!(marks.get("ahu-1"), Some(now + KEEP));
        assert_eq!(marks.get("lamp-1"), None, "another device is not covered");
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
