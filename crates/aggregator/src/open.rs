//! The accumulators of every series' open windows, by series id.
//!
//! Nearly always a series has exactly one open window, so each id has one
//! inline slot (window start and accumulator, 56 bytes) and the hot path
//! touches nothing else. More appear only while an older window waits out
//! its grace period or when a device reports ahead; those spill into one
//! map shared by all series, rather than a pointer in every slot that is
//! null nearly always (8 bytes a series, 0.4 MB for 10 000 × 5: issue 69).

use std::hash::BuildHasher;

use gateway_core::hash::SeededState;
use hashbrown::HashTable;

use crate::chunked::Chunked;
use crate::Stats;

/// Marks an unused inline slot. Window starts are never negative because
/// timestamps start at the epoch.
const NO_WINDOW: i64 = i64::MIN;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Head {
    start: i64,
    stats: Stats,
}

impl Head {
    const EMPTY: Self = Self {
        start: NO_WINDOW,
        stats: Stats::new(),
    };
}

#[derive(Debug, Default)]
pub(crate) struct OpenTable {
    heads: Chunked<Head>,
    /// The other open windows of the few series with more than one.
    spill: HashTable<Spilled>,
    hasher: SeededState,
}

#[derive(Debug)]
struct Spilled {
    id: u32,
    /// Made with room for one: a series waiting out one window's grace
    /// holds 56 bytes here, not the 224 a first push reserves.
    rest: Vec<(i64, Stats)>,
}

impl OpenTable {
    /// A slot for the next new id, with nothing open.
    pub fn push_slot(&mut self) {
        self.heads.push(Head::EMPTY);
    }

    /// Drops the last id's slot.
    pub fn pop_slot(&mut self) {
        if let Some(id) = self.heads.len().checked_sub(1) {
            self.remove_spilled(id as u32);
        }
        self.heads.pop();
    }

    /// Empties `id`'s slot for reuse by another series.
    pub fn reset(&mut self, id: u32) {
        if let Some(head) = self.heads.get_mut(id as usize) {
            *head = Head::EMPTY;
        }
        self.remove_spilled(id);
    }

    fn remove_spilled(&mut self, id: u32) {
        let hash = self.hasher.hash_one(id);
        if let Ok(entry) = self.spill.find_entry(hash, |s| s.id == id) {
            entry.remove();
            self.give_back_empty_spill();
        }
    }

    fn rest(&self, id: u32) -> Option<&[(i64, Stats)]> {
        let hash = self.hasher.hash_one(id);
        let spilled = self.spill.find(hash, |s| s.id == id)?;
        Some(&spilled.rest)
    }

    fn spill_push(&mut self, id: u32, window: (i64, Stats)) {
        let hash = self.hasher.hash_one(id);
        if let Some(spilled) = self.spill.find_mut(hash, |s| s.id == id) {
            spilled.rest.push(window);
            return;
        }
        let hasher = &self.hasher;
        let rest = vec![window];
        self.spill
            .insert_unique(hash, Spilled { id, rest }, |s| hasher.hash_one(s.id));
    }

    /// Adds `value` to `id`'s window starting at `start`; true if that
    /// window was newly opened. Only the common case (the inline window)
    /// is inlined into the ingest loop: with the rest in the same body the
    /// compiler stopped inlining it at all (issue 69: 3 % of a CSV line).
    #[inline(always)]
    pub fn push(&mut self, id: u32, start: i64, value: f64) -> bool {
        match self.heads.get_mut(id as usize) {
            Some(head) if head.start == start => {
                head.stats.push(value);
                false
            }
            Some(_) => self.push_elsewhere(id, start, value),
            None => false,
        }
    }

    #[inline(never)]
    fn push_elsewhere(&mut self, id: u32, start: i64, value: f64) -> bool {
        if let Some(s) = self.spilled_mut(id, start) {
            s.push(value);
            return false;
        }
        self.open(id, start, Stats::from_values(&[value]));
        true
    }

    fn spilled_mut(&mut self, id: u32, start: i64) -> Option<&mut Stats> {
        let hash = self.hasher.hash_one(id);
        self.spill
            .find_mut(hash, |s| s.id == id)?
            .rest
            .iter_mut()
            .find(|(s, _)| *s == start)
            .map(|(_, st)| st)
    }

    fn open(&mut self, id: u32, start: i64, stats: Stats) {
        let Some(head) = self.heads.get_mut(id as usize) else {
            return;
        };
        if head.start == NO_WINDOW {
            *head = Head { start, stats };
        } else if start > head.start {
            // The newest window takes the inline slot and the one waiting
            // out its grace moves to the spill: readings come in time
            // order, so the next ones are the new window's. Otherwise every
            // reading of the grace period took the slow path (with a grace
            // as long as the window, every reading: issue 69).
            let older = (head.start, head.stats);
            *head = Head { start, stats };
            self.spill_push(id, older);
        } else {
            self.spill_push(id, (start, stats));
        }
    }

    /// Puts a restored accumulator in place (replacing one already open for
    /// that window); true if the window was newly opened.
    pub fn insert(&mut self, id: u32, start: i64, stats: Stats) -> bool {
        match self.heads.get_mut(id as usize) {
            Some(head) if head.start == start => {
                head.stats = stats;
                return false;
            }
            Some(_) => {}
            None => return false,
        }
        if let Some(s) = self.spilled_mut(id, start) {
            *s = stats;
            return false;
        }
        self.open(id, start, stats);
        true
    }

    /// The accumulator of `id`'s window starting at `start`.
    pub fn get(&self, id: u32, start: i64) -> Option<Stats> {
        let head = self.heads.get(id as usize)?;
        if head.start == start {
            return Some(head.stats);
        }
        self.rest(id)?
            .iter()
            .find(|(s, _)| *s == start)
            .map(|(_, st)| *st)
    }

    /// Removes and returns the accumulator of `id`'s window starting at
    /// `start`. One probe of the spill: at a steady state's close, every
    /// series' closing window is there.
    pub fn take(&mut self, id: u32, start: i64) -> Option<Stats> {
        let head = self.heads.get_mut(id as usize)?;
        let in_head = head.start == start;
        if in_head && self.spill.is_empty() {
            let taken = head.stats;
            *head = Head::EMPTY;
            return Some(taken);
        }
        let hash = self.hasher.hash_one(id);
        let Ok(mut entry) = self.spill.find_entry(hash, |s| s.id == id) else {
            if !in_head {
                return None;
            }
            let taken = head.stats;
            *head = Head::EMPTY;
            return Some(taken);
        };
        let rest = &mut entry.get_mut().rest;
        let taken = if in_head {
            let taken = head.stats;
            *head = match rest.pop() {
                Some((start, stats)) => Head { start, stats },
                None => Head::EMPTY,
            };
            taken
        } else {
            let pos = rest.iter().position(|(s, _)| *s == start)?;
            rest.swap_remove(pos).1
        };
        // A series back to one window gives its spill list back.
        if rest.is_empty() {
            entry.remove();
            self.give_back_empty_spill();
        }
        Some(taken)
    }

    /// Once the last grace period is over the spill is empty; its
    /// capacity, sized by every series of a window, goes back too.
    fn give_back_empty_spill(&mut self) {
        if self.spill.is_empty() && self.spill.capacity() > 0 {
            self.spill = HashTable::new();
        }
    }

    /// Whether `id` has no open window.
    pub fn is_empty(&self, id: u32) -> bool {
        self.heads
            .get(id as usize)
            .is_none_or(|h| h.start == NO_WINDOW)
    }

    /// The inline window's start, for tests of which window holds it.
    #[cfg(test)]
    pub fn head_start(&self, id: u32) -> Option<i64> {
        self.heads
            .get(id as usize)
            .map(|h| h.start)
            .filter(|&s| s != NO_WINDOW)
    }

    /// Series with more than one open window.
    #[cfg(test)]
    pub fn spilled(&self) -> usize {
        self.spill.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_series_costs_what_the_memory_budget_assumes() {
        // 10 000 devices × 5 metrics are 50 000 of these: the window start
        // and its accumulator, nothing else.
        assert_eq!(std::mem::size_of::<Head>(), 56);
    }

    fn one() -> OpenTable {
        let mut t = OpenTable::default();
        t.push_slot();
        t
    }

    #[test]
    fn open_windows_spill_and_refill_the_inline_slot() {
        let mut w = one();
        // (start, value, expect newly opened)
        let pushes = [
            (0, 1.0, true),
            (0, 3.0, false),
            (10, 5.0, true),
            (20, 7.0, true),
            (10, 6.0, false),
        ];
        for (start, v, new) in pushes {
            assert_eq!(w.push(0, start, v), new, "push {start} {v}");
        }
        let s = w.take(0, 0).unwrap();
        assert_eq!((s.count(), s.avg()), (2, 2.0));
        assert!(w.take(0, 0).is_none());
        let s = w.take(0, 10).unwrap();
        assert_eq!((s.count(), s.avg()), (2, 5.5));
        assert!(!w.is_empty(0));
        assert_eq!(w.take(0, 20).unwrap().count(), 1);
        assert!(w.is_empty(0));
        assert!(w.take(0, 20).is_none());
        assert_eq!(w.spilled(), 0);
        assert_eq!(w.spill.capacity(), 0, "the spill's memory given back");
    }

    /// Readings come in time order: once the next window opens, its
    /// readings take the inline slot's fast path while the older window
    /// waits out its grace in the spill.
    #[test]
    fn the_newest_window_takes_the_inline_slot() {
        let mut w = one();
        assert!(w.push(0, 0, 1.0));
        assert!(w.push(0, 60, 2.0));
        assert_eq!(w.head_start(0), Some(60));
        assert!(!w.push(0, 60, 4.0));
        assert!(!w.push(0, 0, 3.0), "a late reading still finds its window");
        assert_eq!(w.get(0, 0).map(|s| (s.count(), s.avg())), Some((2, 2.0)));
        assert_eq!(w.take(0, 0).map(|s| (s.count(), s.avg())), Some((2, 2.0)));
        assert_eq!(w.head_start(0), Some(60));
        assert_eq!(w.spilled(), 0, "back to one window, the spill is empty");
        assert_eq!(w.take(0, 60).map(|s| (s.count(), s.avg())), Some((2, 3.0)));
        assert!(w.is_empty(0));
    }

    #[test]
    fn a_reset_slot_keeps_nothing_of_its_series() {
        let mut t = one();
        t.push_slot();
        t.push(0, 0, 1.0);
        t.push(0, 10, 2.0);
        t.push(1, 10, 5.0);
        t.reset(0);
        assert!(t.is_empty(0));
        assert_eq!((t.get(0, 0), t.get(0, 10)), (None, None));
        assert_eq!(t.get(1, 10).map(|s| s.count()), Some(1));
        // Restored over an open window, an accumulator replaces it.
        assert!(!t.insert(1, 10, Stats::from_values(&[7.0, 9.0])));
        assert!(t.insert(1, 0, Stats::from_values(&[1.0])));
        assert_eq!(t.get(1, 10).map(|s| s.avg()), Some(8.0));
        assert_eq!(t.spilled(), 1);
        t.pop_slot();
        assert_eq!(t.spilled(), 0);
    }
}
