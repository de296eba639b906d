//! The intern table: (device, metric) → dense `u32` series id, and per id the
//! accumulators of that series' open windows.
//!
//! Strings are hashed once per reading, here; everything downstream (window
//! membership lists, accumulators) is addressed by id. Ids of series without
//! an open window are released, and the lowest free id is reused first, so the
//! tables shrink back after a burst of devices that then went silent.

use std::collections::{BTreeSet, HashMap};

use gateway_core::{DeviceId, MetricName};

use crate::hash::SeededState;
use crate::Stats;

/// A series key as the output needs it. Ordered by device, then metric: the
/// output order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SeriesKey {
    pub device: DeviceId,
    pub metric: MetricName,
}

/// The intern map's key: the device's length (2 bytes, little endian), the
/// device, then the metric, in one allocation. The length prefix keeps
/// `("ab", "c")` and `("a", "bc")` apart; one allocation means a hit costs
/// one cache miss for the comparison, not two; and a plain byte slice hashes
/// and compares without dynamic dispatch.
fn pack_key(buf: &mut Vec<u8>, device: &str, metric: &str) {
    // `DeviceId` caps its length well below this; checked at compile time.
    const _: () = assert!(gateway_core::model::MAX_DEVICE_ID_LEN <= u16::MAX as usize);
    buf.clear();
    buf.extend_from_slice(&(device.len() as u16).to_le_bytes());
    buf.extend_from_slice(device.as_bytes());
    buf.extend_from_slice(metric.as_bytes());
}

/// The first 16 bytes of a device id as a big-endian integer, zero-padded.
///
/// Where two prefixes differ they order exactly as the full ids do: at the
/// first differing byte either both ids have a byte, or the shorter one has
/// ended and its padding 0 sorts first, as the shorter string does. Equal
/// prefixes decide nothing and fall back to comparing the full keys.
fn device_prefix(device: &DeviceId) -> u128 {
    let bytes = device.as_str().as_bytes();
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
/// reports ahead.
#[derive(Debug)]
pub(crate) struct OpenWindows {
    head_start: i64,
    head: Stats,
    rest: Vec<(i64, Stats)>,
}

impl OpenWindows {
    const EMPTY: Self = Self {
        head_start: NO_WINDOW,
        head: Stats::new(),
        rest: Vec::new(),
    };

    /// Adds `value` to the window starting at `start`; true if that window
    /// was newly opened.
    #[inline]
    pub fn push(&mut self, start: i64, value: f64) -> bool {
        if self.head_start == start {
            self.head.push(value);
            return false;
        }
        if let Some((_, s)) = self.rest.iter_mut().find(|(s, _)| *s == start) {
            s.push(value);
            return false;
        }
        let stats = Stats::from_values(&[value]);
        if self.head_start == NO_WINDOW {
            self.head_start = start;
            self.head = stats;
        } else {
            self.rest.push((start, stats));
        }
        true
    }

    /// Every open window of this series: (start, accumulator).
    pub fn iter(&self) -> impl Iterator<Item = (i64, &Stats)> {
        let head = (self.head_start != NO_WINDOW).then_some((self.head_start, &self.head));
        head.into_iter()
            .chain(self.rest.iter().map(|(s, st)| (*s, st)))
    }

    /// Puts a restored accumulator in place (replacing one already open for
    /// that window); true if the window was newly opened.
    pub fn insert(&mut self, start: i64, stats: Stats) -> bool {
        if self.head_start == start {
            self.head = stats;
            return false;
        }
        if let Some((_, s)) = self.rest.iter_mut().find(|(s, _)| *s == start) {
            *s = stats;
            return false;
        }
        if self.head_start == NO_WINDOW {
            self.head_start = start;
            self.head = stats;
        } else {
            self.rest.push((start, stats));
        }
        true
    }

    /// Removes and returns the accumulator of the window starting at `start`.
    pub fn take(&mut self, start: i64) -> Option<Stats> {
        if self.head_start == start {
            let taken = self.head;
            match self.rest.pop() {
                Some((s, stats)) => {
                    self.head_start = s;
                    self.head = stats;
                }
                None => self.head_start = NO_WINDOW,
            }
            return Some(taken);
        }
        let pos = self.rest.iter().position(|(s, _)| *s == start)?;
        Some(self.rest.swap_remove(pos).1)
    }

    pub fn is_empty(&self) -> bool {
        self.head_start == NO_WINDOW
    }
}

/// Interned series and their open windows, indexed by series id.
#[derive(Debug, Default)]
pub(crate) struct SeriesTable {
    ids: HashMap<Box<[u8]>, u32, SeededState>,
    /// Reused for packing lookup keys, so a hit allocates nothing.
    scratch: Vec<u8>,
    /// Parallel to `open`; `None` for a released id. Kept apart from `open`
    /// so the per-reading path does not drag keys through the cache.
    keys: Vec<Option<SeriesKey>>,
    /// Parallel to `keys`: [`device_prefix`] of each key, so sorting a closing
    /// window mostly compares integers instead of chasing string pointers.
    prefixes: Vec<u128>,
    open: Vec<OpenWindows>,
    free: BTreeSet<u32>,
}

impl SeriesTable {
    /// The id of `(device, metric)`, interning it if needed.
    pub fn intern(&mut self, device: &DeviceId, metric: &MetricName) -> u32 {
        pack_key(&mut self.scratch, device.as_str(), metric.as_str());
        if let Some(&id) = self.ids.get(self.scratch.as_slice()) {
            return id;
        }
        let key = SeriesKey {
            device: device.clone(),
            metric: metric.clone(),
        };
        let id = match self.free.pop_first() {
            Some(id) => {
                self.prefixes[id as usize] = device_prefix(&key.device);
                self.keys[id as usize] = Some(key);
                id
            }
            None => {
                // Cannot truncate: 2^32 series would need several hundred GB
                // of keys and accumulators before the id space ran out.
                let id = self.keys.len() as u32;
                self.prefixes.push(device_prefix(&key.device));
                self.keys.push(Some(key));
                self.open.push(OpenWindows::EMPTY);
                id
            }
        };
        self.ids.insert(self.scratch.as_slice().into(), id);
        id
    }

    #[inline]
    pub fn open(&self, id: u32) -> Option<&OpenWindows> {
        self.open.get(id as usize)
    }

    pub fn open_mut(&mut self, id: u32) -> &mut OpenWindows {
        &mut self.open[id as usize]
    }

    pub fn key(&self, id: u32) -> Option<&SeriesKey> {
        self.keys.get(id as usize).and_then(Option::as_ref)
    }

    /// Orders ids by (device, metric) as [`SeriesKey`]'s `Ord` does.
    pub fn sort_ids(&self, ids: &mut [u32]) {
        let prefix = |id: u32| self.prefixes.get(id as usize).copied().unwrap_or(0);
        ids.sort_unstable_by(|&a, &b| {
            prefix(a)
                .cmp(&prefix(b))
                .then_with(|| self.key(a).cmp(&self.key(b)))
        });
    }

    /// Forgets a series that has no open window left.
    pub fn release(&mut self, id: u32) {
        let idx = id as usize;
        let Some(key) = self.keys.get_mut(idx).and_then(Option::take) else {
            return;
        };
        pack_key(&mut self.scratch, key.device.as_str(), key.metric.as_str());
        self.ids.remove(self.scratch.as_slice());
        // Drop a spilled window list too: a series that went quiet should not
        // pin memory sized for its busiest moment.
        self.open[idx] = OpenWindows::EMPTY;
        self.free.insert(id);
        while let Some(&last) = self.free.last() {
            if last as usize + 1 != self.keys.len() {
                break;
            }
            self.free.pop_last();
            self.keys.pop();
            self.prefixes.pop();
            self.open.pop();
        }
        // `HashMap` never shrinks by itself; after a burst of one-off devices
        // give the memory back once the table is mostly empty.
        if self.ids.capacity() > 1024 && self.ids.len() < self.ids.capacity() / 4 {
            self.ids.shrink_to(self.ids.len() * 2);
        }
    }

    /// Number of interned series.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Slots allocated, live or free; for tests of the shrinking.
    #[cfg(test)]
    pub fn slots(&self) -> usize {
        self.keys.len()
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
            assert_eq!(t.key(*id).unwrap().device, d);
        }
        assert_eq!(t.len(), 4);
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
        let got: Vec<&SeriesKey> = ids.iter().map(|&id| t.key(id).unwrap()).collect();
        let mut want = got.clone();
        want.sort();
        assert_eq!(got, want);
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
}
