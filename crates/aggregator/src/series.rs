//! The intern table: (device, metric) → dense `u32` series id, and per id the
//! accumulators of that series' open windows.
//!
//! Strings are hashed once per reading, here; everything downstream (window
//! membership lists, accumulators) is addressed by id. Ids of series without
//! an open window are released, and the lowest free id is reused first, so the
//! tables shrink back after a burst of devices that then went silent.
//!
//! Memory per live series is what bounds a gateway with many sensors (the
//! target is 10 000 devices × 5 metrics in well under 15 MB), so each series
//! costs its accumulator, its key's bytes in one shared buffer
//! ([`KeyArena`]) and a 4-byte id in the index; keys are not duplicated in
//! a map and a separate list.

use std::collections::BTreeSet;
use std::hash::BuildHasher;

use gateway_core::{DeviceId, MetricName};
use hashbrown::HashTable;

use crate::chunked::Chunked;
use crate::keys::KeyArena;
use crate::Stats;
use gateway_core::hash::SeededState;

/// Separates device and metric in a packed key. Control characters are
/// refused in both, so it cannot occur inside either; and it sorts before
/// every byte they can hold, so packed keys in byte order are in (device,
/// metric) order, the output order.
const SEPARATOR: char = '\0';

fn pack_key(buf: &mut String, device: &str, metric: &str) {
    buf.clear();
    buf.push_str(device);
    buf.push(SEPARATOR);
    buf.push_str(metric);
}

/// (device, metric) of a packed key.
pub(crate) fn unpack_key(key: &str) -> (&str, &str) {
    key.split_once(SEPARATOR).unwrap_or((key, ""))
}

/// The first 16 bytes of a packed key as a big-endian integer, zero-padded.
///
/// Where two prefixes differ they order exactly as the full keys do: at the
/// first differing byte either both keys have a byte, or the shorter one has
/// ended and its padding 0 sorts first, as the shorter string does. Equal
/// prefixes decide nothing and fall back to comparing the full keys.
fn key_prefix(key: &str) -> u128 {
    let bytes = key.as_bytes();
    let mut buf = [0; 16];
    let n = bytes.len().min(16);
    buf[..n].copy_from_slice(&bytes[..n]);
    u128::from_be_bytes(buf)
}

/// Marks an unused inline slot. Window starts are never negative because
/// timestamps start at the epoch.
const NO_WINDOW: i64 = i64::MIN;

/// The open windows of one series. Nearly always there is exactly one, so it
/// is stored inline and the hot path touches no second allocation; more appear
/// only while an older window waits out its grace period or when a device
/// reports ahead. The spill list is boxed so the common case pays 8 bytes
/// for it, not 24.
#[derive(Debug)]
pub(crate) struct OpenWindows {
    head_start: i64,
    head: Stats,
    // The extra allocation is the point: it is made only for the rare
    // spilled series, and every other series saves 16 bytes.
    #[allow(clippy::box_collection)]
    rest: Option<Box<Vec<(i64, Stats)>>>,
}

impl OpenWindows {
    const EMPTY: Self = Self {
        head_start: NO_WINDOW,
        head: Stats::new(),
        rest: None,
    };

    fn rest_mut(&mut self, start: i64) -> Option<&mut Stats> {
        self.rest
            .as_deref_mut()?
            .iter_mut()
            .find(|(s, _)| *s == start)
            .map(|(_, st)| st)
    }

    /// Adds `value` to the window starting at `start`; true if that window
    /// was newly opened. Only the common case (the inline window) is
    /// inlined into the ingest loop: with the rest in the same body the
    /// compiler stopped inlining it at all (issue 69: 3 % of a CSV line).
    #[inline(always)]
    pub fn push(&mut self, start: i64, value: f64) -> bool {
        if self.head_start == start {
            self.head.push(value);
            return false;
        }
        self.push_elsewhere(start, value)
    }

    #[inline(never)]
    fn push_elsewhere(&mut self, start: i64, value: f64) -> bool {
        if let Some(s) = self.rest_mut(start) {
            s.push(value);
            return false;
        }
        self.open(start, Stats::from_values(&[value]));
        true
    }

    fn open(&mut self, start: i64, stats: Stats) {
        if self.head_start == NO_WINDOW {
            self.head_start = start;
            self.head = stats;
        } else if start > self.head_start {
            // The newest window takes the inline slot and the one waiting
            // out its grace moves to the spill list: readings come in time
            // order, so the next ones are the new window's. Otherwise every
            // reading of the grace period took the slow path (with a grace
            // as long as the window, every reading: issue 69).
            let older = (self.head_start, self.head);
            self.rest.get_or_insert_default().push(older);
            self.head_start = start;
            self.head = stats;
        } else {
            self.rest.get_or_insert_default().push((start, stats));
        }
    }

    /// Every open window of this series: (start, accumulator).
    pub fn iter(&self) -> impl Iterator<Item = (i64, &Stats)> {
        let head = (self.head_start != NO_WINDOW).then_some((self.head_start, &self.head));
        head.into_iter().chain(
            self.rest
                .iter()
                .flat_map(|r| r.iter().map(|(s, st)| (*s, st))),
        )
    }

    /// Puts a restored accumulator in place (replacing one already open for
    /// that window); true if the window was newly opened.
    pub fn insert(&mut self, start: i64, stats: Stats) -> bool {
        if self.head_start == start {
            self.head = stats;
            return false;
        }
        if let Some(s) = self.rest_mut(start) {
            *s = stats;
            return false;
        }
        self.open(start, stats);
        true
    }

    /// Removes and returns the accumulator of the window starting at `start`.
    pub fn take(&mut self, start: i64) -> Option<Stats> {
        if self.head_start == start {
            let taken = self.head;
            match self.rest.as_deref_mut().and_then(Vec::pop) {
                Some((s, stats)) => {
                    self.head_start = s;
                    self.head = stats;
                }
                None => self.head_start = NO_WINDOW,
            }
            self.drop_empty_spill();
            return Some(taken);
        }
        let rest = self.rest.as_deref_mut()?;
        let pos = rest.iter().position(|(s, _)| *s == start)?;
        let taken = rest.swap_remove(pos).1;
        self.drop_empty_spill();
        Some(taken)
    }

    /// A series back to one window gives its spill list back.
    fn drop_empty_spill(&mut self) {
        if self.rest.as_ref().is_some_and(|r| r.is_empty()) {
            self.rest = None;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.head_start == NO_WINDOW
    }
}

/// Interned series and their open windows, indexed by series id.
#[derive(Debug, Default)]
pub(crate) struct SeriesTable {
    /// Ids, found by the hash of their packed key in `keys`: the key is
    /// stored once, not again as a map key.
    index: HashTable<u32>,
    hasher: SeededState,
    /// Reused for packing lookup keys, so a hit allocates nothing.
    scratch: String,
    /// Packed keys ([`pack_key`]) by id. Kept apart from `open` so the
    /// per-reading path does not drag keys through the cache.
    keys: KeyArena,
    open: Chunked<OpenWindows>,
    free: BTreeSet<u32>,
    recent: Recent,
}

/// The ids of the pairs looked up lately, found by the identity of their
/// shared texts: the readings of one sensor carry clones of the same ids
/// message after message, and packing, hashing and comparing their key
/// was an eighth of the gateway's CPU on acknowledged TCP lines. Holding
/// the clones keeps the texts (and so their addresses) from being reused;
/// releasing any id forgets every entry, so an entry never names an id
/// that now belongs to another series. A fixed 64 sets, not per series.
///
/// Two entries a set, the older replaced: with one, two of a node's
/// metrics whose addresses met in a set (a run in three or so, with four
/// nodes of four metrics) evicted each other on every line, and that run
/// spent a tenth of its intern work on full lookups.
#[derive(Debug, Default)]
struct Recent {
    sets: Vec<RecentSet>,
}

#[derive(Debug, Clone, Default)]
struct RecentSet {
    /// Text addresses of each way's (device, metric); (0, 0) when empty,
    /// which no text has. Compared as plain integers on every reading.
    addrs: [(usize, usize); 2],
    ids: [u32; 2],
    /// The clones that keep those addresses from being reused.
    held: [Option<(DeviceId, MetricName)>; 2],
    /// The way to replace next: the one not hit or put last.
    older: usize,
}

const RECENT_SETS: usize = 64;

impl Recent {
    fn set(device: &DeviceId, metric: &MetricName) -> usize {
        let mixed = (device.text_addr() as u64) ^ (metric.text_addr() as u64).rotate_left(29);
        // Fibonacci hashing: the top bits of the product pick the set.
        (mixed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize
    }

    #[inline]
    fn get(&mut self, device: &DeviceId, metric: &MetricName) -> Option<u32> {
        let set = self.sets.get_mut(Self::set(device, metric))?;
        let key = (device.text_addr(), metric.text_addr());
        let way = if set.addrs[0] == key {
            0
        } else if set.addrs[1] == key {
            1
        } else {
            return None;
        };
        set.older = way ^ 1;
        Some(set.ids[way])
    }

    fn put(&mut self, device: &DeviceId, metric: &MetricName, id: u32) {
        if self.sets.is_empty() {
            self.sets.resize(RECENT_SETS, RecentSet::default());
        }
        if let Some(set) = self.sets.get_mut(Self::set(device, metric)) {
            let way = set.older & 1;
            set.addrs[way] = (device.text_addr(), metric.text_addr());
            set.ids[way] = id;
            set.held[way] = Some((device.clone(), metric.clone()));
            set.older = way ^ 1;
        }
    }

    fn forget(&mut self) {
        self.sets.clear();
    }

    /// The ids' texts this holds clones of.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.sets.iter().flat_map(|s| &s.held).flatten().count()
    }
}

impl SeriesTable {
    /// The id of `(device, metric)`, interning it if needed.
    pub fn intern(&mut self, device: &DeviceId, metric: &MetricName) -> u32 {
        if let Some(id) = self.recent.get(device, metric) {
            return id;
        }
        let id = match self.lookup(device, metric) {
            Ok(id) => id,
            Err(hash) => self.insert_scratch(hash),
        };
        self.recent.put(device, metric, id);
        id
    }

    /// The id of `(device, metric)` if it is interned, without interning
    /// it: a series refused by the cap must not take a slot.
    pub fn find(&mut self, device: &DeviceId, metric: &MetricName) -> Option<u32> {
        if let Some(id) = self.recent.get(device, metric) {
            return Some(id);
        }
        self.lookup(device, metric).ok()
    }

    /// `Ok(id)`, or `Err(hash)` of the key now packed in `scratch`.
    fn lookup(&mut self, device: &DeviceId, metric: &MetricName) -> Result<u32, u64> {
        pack_key(&mut self.scratch, device.as_str(), metric.as_str());
        let hash = self.hasher.hash_one(self.scratch.as_bytes());
        let keys = &self.keys;
        let is_scratch = |&id: &u32| keys.get(id) == Some(self.scratch.as_str());
        self.index.find(hash, is_scratch).copied().ok_or(hash)
    }

    /// Interns the key packed in `scratch`, whose hash is `hash`.
    fn insert_scratch(&mut self, hash: u64) -> u32 {
        let id = match self.free.pop_first() {
            Some(id) => id,
            None => {
                // Cannot truncate: 2^32 series would need several hundred GB
                // of keys and accumulators before the id space ran out.
                let id = self.keys.slots() as u32;
                self.open.push(OpenWindows::EMPTY);
                id
            }
        };
        self.keys.put(id, &self.scratch);
        let (keys, hasher) = (&self.keys, &self.hasher);
        self.index.insert_unique(hash, id, |&id| {
            hasher.hash_one(keys.get(id).unwrap_or_default().as_bytes())
        });
        id
    }

    #[inline]
    pub fn open(&self, id: u32) -> Option<&OpenWindows> {
        self.open.get(id as usize)
    }

    pub fn open_mut(&mut self, id: u32) -> Option<&mut OpenWindows> {
        self.open.get_mut(id as usize)
    }

    /// (device, metric) of a live id.
    pub fn key(&self, id: u32) -> Option<(&str, &str)> {
        self.packed(id).map(unpack_key)
    }

    fn packed(&self, id: u32) -> Option<&str> {
        self.keys.get(id)
    }

    /// Orders ids by (device, metric). Sorting compares 16-byte key prefixes
    /// gathered once, not keys behind a pointer each time; they are gathered
    /// only here, at window close, rather than stored per series.
    pub fn sort_ids(&self, ids: &mut [u32]) {
        let mut keyed: Vec<(u128, u32)> = ids
            .iter()
            .map(|&id| (self.packed(id).map_or(0, key_prefix), id))
            .collect();
        keyed.sort_unstable_by(|&(pa, a), &(pb, b)| {
            pa.cmp(&pb)
                .then_with(|| self.packed(a).cmp(&self.packed(b)))
        });
        for (slot, (_, id)) in ids.iter_mut().zip(keyed) {
            *slot = id;
        }
    }

    /// Drops the clones of recently looked-up ids once a burst has passed
    /// ([`gateway_core::cache_release`]): the texts of the burst's last
    /// devices, which would pin the heap's free memory around them. Ids are
    /// unchanged; the next lookups find them by their keys.
    pub fn let_go_of_recent(&mut self) {
        self.recent.forget();
        self.scratch = String::new();
    }

    /// Forgets a series that has no open window left.
    pub fn release(&mut self, id: u32) {
        self.recent.forget();
        let idx = id as usize;
        let Some(key) = self.keys.get(id) else {
            return;
        };
        let hash = self.hasher.hash_one(key.as_bytes());
        if let Ok(entry) = self.index.find_entry(hash, |&other| other == id) {
            entry.remove();
        }
        self.keys.remove(id);
        // Drop a spilled window list too: a series that went quiet should not
        // pin memory sized for its busiest moment.
        if let Some(w) = self.open.get_mut(idx) {
            *w = OpenWindows::EMPTY;
        }
        self.free.insert(id);
        while let Some(&last) = self.free.last() {
            if last as usize + 1 != self.keys.slots() {
                break;
            }
            self.free.pop_last();
            self.keys.truncate(last as usize);
            self.open.pop();
        }
        // Tables never shrink by themselves; after a burst of one-off devices
        // give the memory back once they are mostly empty.
        if self.index.capacity() > 1024 && self.index.len() < self.index.capacity() / 4 {
            let (keys, hasher) = (&self.keys, &self.hasher);
            self.index.shrink_to(self.index.len() * 2, |&id| {
                hasher.hash_one(keys.get(id).unwrap_or_default().as_bytes())
            });
        }
    }

    /// Number of interned series.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Slots allocated, live or free; for tests of the shrinking.
    #[cfg(test)]
    pub fn slots(&self) -> usize {
        self.keys.slots()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dm(d: &str, m: &str) -> (DeviceId, MetricName) {
        (DeviceId::new(d).unwrap(), MetricName::new(m).unwrap())
    }

    #[test]
    fn interning_is_stable_and_distinguishes_both_parts() {
        let mut t = SeriesTable::default();
        // ("ab", "c") and ("a", "bc") must not collide into one series.
        let pairs = [("ab", "c"), ("a", "bc"), ("ab", "d"), ("x", "c")];
        let ids: Vec<u32> = pairs
            .iter()
            .map(|(d, m)| {
                let (d, m) = dm(d, m);
                t.intern(&d, &m)
            })
            .collect();
        assert_eq!(ids, [0, 1, 2, 3]);
        for ((d, m), id) in pairs.iter().zip(&ids) {
            let (d, m) = dm(d, m);
            assert_eq!(t.intern(&d, &m), *id);
            assert_eq!(t.key(*id).unwrap(), (d.as_str(), m.as_str()));
        }
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn two_metrics_of_a_node_that_share_a_set_are_both_remembered() {
        let device = DeviceId::new("node-1").unwrap();
        // Metric texts until two land in one set, as a node's columns do
        // in some runs (their addresses are the allocator's choice).
        let mut by_set: std::collections::HashMap<usize, MetricName> = Default::default();
        let mut kept = Vec::new();
        let (first, second) = loop {
            let m = MetricName::new(format!("m{}", kept.len())).unwrap();
            kept.push(m.clone());
            match by_set.insert(Recent::set(&device, &m), m.clone()) {
                Some(other) => break (other, m),
                None => continue,
            }
        };
        let mut recent = Recent::default();
        recent.put(&device, &first, 1);
        recent.put(&device, &second, 2);
        // A line of that node reads both, again and again.
        for _ in 0..3 {
            assert_eq!(recent.get(&device, &first), Some(1));
            assert_eq!(recent.get(&device, &second), Some(2));
        }
        // A third in the set replaces the one used longest ago.
        let third = loop {
            let m = MetricName::new(format!("m{}", kept.len())).unwrap();
            kept.push(m.clone());
            if Recent::set(&device, &m) == Recent::set(&device, &first) {
                break m;
            }
        };
        recent.get(&device, &first);
        recent.put(&device, &third, 3);
        assert_eq!(recent.get(&device, &first), Some(1));
        assert_eq!(recent.get(&device, &second), None);
        assert_eq!(recent.get(&device, &third), Some(3));
    }

    #[test]
    fn a_remembered_id_is_the_interned_one_and_a_release_forgets_it() {
        let mut t = SeriesTable::default();
        let (a, m) = dm("a", "m");
        let (b, _) = dm("b", "m");
        let id_a = t.intern(&a, &m);
        let id_b = t.intern(&b, &m);
        // Clones hit the memo, equal ids built afresh the index: one id.
        assert_eq!(t.intern(&a.clone(), &m.clone()), id_a);
        let (a2, m2) = dm("a", "m");
        assert_eq!(t.intern(&a2, &m2), id_a);
        assert_eq!(t.find(&b, &m), Some(id_b));
        // Released, then the id is reused by another series: the memo must
        // not give it back for the old pair.
        t.release(id_a);
        assert_eq!(t.find(&a, &m), None);
        let (c, _) = dm("c", "m");
        let id_c = t.intern(&c, &m);
        assert_eq!(id_c, id_a, "lowest free id reused");
        assert_ne!(t.intern(&a, &m), id_c);
        assert_eq!(t.key(id_c).unwrap(), ("c", "m"));
    }

    #[test]
    fn letting_go_of_the_recent_ids_keeps_every_id() {
        let mut t = SeriesTable::default();
        let pairs: Vec<_> = (0..300)
            .map(|i| dm(&format!("dev-{i}"), "temperature"))
            .collect();
        let ids: Vec<_> = pairs.iter().map(|(d, m)| t.intern(d, m)).collect();
        assert!(t.recent.held() > 0);
        t.let_go_of_recent();
        assert_eq!(t.recent.held(), 0, "no id text held after letting go");
        // The same answers, from the index, then from the memo again.
        for _ in 0..2 {
            for ((d, m), id) in pairs.iter().zip(&ids) {
                assert_eq!(t.find(d, m), Some(*id));
                assert_eq!(t.intern(d, m), *id);
            }
        }
        assert_eq!(t.len(), 300);
    }

    #[test]
    fn released_ids_are_reused_lowest_first_and_trailing_slots_dropped() {
        let mut t = SeriesTable::default();
        for i in 0..4 {
            let (d, m) = dm(&format!("d{i}"), "m");
            t.intern(&d, &m);
        }
        t.release(1);
        t.release(3);
        assert_eq!((t.len(), t.slots()), (2, 3), "trailing id 3 dropped");
        assert!(t.key(1).is_none());
        let (d, m) = dm("new", "m");
        assert_eq!(t.intern(&d, &m), 1, "lowest free id reused");
        t.release(0);
        t.release(1);
        t.release(2);
        assert_eq!((t.len(), t.slots()), (0, 0));
        // A released key interns afresh.
        let (d, m) = dm("d2", "m");
        assert_eq!(t.intern(&d, &m), 0);
    }

    #[test]
    fn sorting_by_prefix_matches_full_key_order() {
        // Ids around the 16-byte prefix length, sharing long prefixes, one a
        // prefix of another, and byte order (uppercase before lowercase).
        let devices = [
            "70B3D57ED0001234",
            "70B3D57ED0001234-b",
            "70B3D57ED0001234-a",
            "70B3D57ED000123",
            "70B3D57ED0001235",
            "a",
            "A",
            "ab",
            "a b",
            "sensor-with-a-very-long-name-2",
            "sensor-with-a-very-long-name-10",
            "ü-umlaut",
        ];
        let mut t = SeriesTable::default();
        let mut ids = Vec::new();
        for d in devices {
            for m in ["temp", "co2", "rh"] {
                let (d, m) = dm(d, m);
                ids.push(t.intern(&d, &m));
            }
        }
        t.sort_ids(&mut ids);
        let got: Vec<(&str, &str)> = ids.iter().map(|&id| t.key(id).unwrap()).collect();
        let mut want = got.clone();
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn a_series_costs_what_the_memory_budget_assumes() {
        // 10 000 devices × 5 metrics are 50 000 of these: 64 bytes of
        // accumulator per series (one cache line), plus its key bytes.
        assert!(std::mem::size_of::<OpenWindows>() <= 64);
    }

    #[test]
    fn open_windows_spill_and_refill_the_inline_slot() {
        let mut w = OpenWindows::EMPTY;
        // (start, value, expect newly opened)
        let pushes = [
            (0, 1.0, true),
            (0, 3.0, false),
            (10, 5.0, true),
            (20, 7.0, true),
            (10, 6.0, false),
        ];
        for (start, v, new) in pushes {
            assert_eq!(w.push(start, v), new, "push {start} {v}");
        }
        let s = w.take(0).unwrap();
        assert_eq!((s.count(), s.avg()), (2, 2.0));
        assert!(w.take(0).is_none());
        let s = w.take(10).unwrap();
        assert_eq!((s.count(), s.avg()), (2, 5.5));
        assert!(!w.is_empty());
        assert_eq!(w.take(20).unwrap().count(), 1);
        assert!(w.is_empty());
        assert!(w.take(20).is_none());
    }

    /// Readings come in time order: once the next window opens, its
    /// readings take the inline slot's fast path while the older window
    /// waits out its grace in the spill list.
    #[test]
    fn the_newest_window_takes_the_inline_slot() {
        let mut w = OpenWindows::EMPTY;
        assert!(w.push(0, 1.0));
        assert!(w.push(60, 2.0));
        assert_eq!(w.head_start, 60);
        assert!(!w.push(60, 4.0));
        assert!(!w.push(0, 3.0), "a late reading still finds its window");
        assert_eq!(w.take(0).map(|s| (s.count(), s.avg())), Some((2, 2.0)));
        assert_eq!(w.head_start, 60);
        assert!(
            w.rest.is_none(),
            "back to one window, the spill list is given back"
        );
        assert_eq!(w.take(60).map(|s| (s.count(), s.avg())), Some((2, 3.0)));
        assert!(w.is_empty());
    }
}
