//! The device ids and metric names a CoAP server heard lately, found by
//! the bytes a datagram spells them in.
//!
//! A device's datagrams name it, and its metrics, alike every time: its
//! id and names are then neither checked nor allocated again, and a
//! Uri-Path segment or JSON key found here is known to be text (it is a
//! kept id's or name's), so neither needs a UTF-8 check of its own (a
//! call into `core` of about 70 instructions for a few bytes, issue 69).
//! Each table starts over when full, so a flood of names costs at most
//! its bound.

use std::hash::BuildHasher;

use gateway_core::hash::SeededState;
use gateway_core::{DeviceId, MetricName, ModelError};

/// Metric names remembered: a fleet's sensors name a few dozen.
const MAX_METRICS: usize = 256;

/// Whether `text` is spelled as `bytes`. An id or a name of 4 to 16
/// bytes is compared by two overlapping loads each, not by a call into
/// libc's `bcmp`, which was a fifth of a lookup's instructions for a
/// few bytes (issue 69).
#[inline]
fn spelled(text: &str, bytes: &[u8]) -> bool {
    let text = text.as_bytes();
    let n = bytes.len();
    if text.len() != n {
        return false;
    }
    let word = |b: &[u8], at: usize| {
        b.get(at..)
            .and_then(<[u8]>::first_chunk)
            .map_or(0, |w| u64::from_le_bytes(*w))
    };
    let half = |b: &[u8], at: usize| {
        b.get(at..)
            .and_then(<[u8]>::first_chunk)
            .map_or(0, |w| u32::from_le_bytes(*w))
    };
    match n {
        8..=16 => word(text, 0) == word(bytes, 0) && word(text, n - 8) == word(bytes, n - 8),
        4..=7 => half(text, 0) == half(bytes, 0) && half(text, n - 4) == half(bytes, n - 4),
        _ => text == bytes,
    }
}

/// A bounded table of texts found by their bytes.
struct Table<T> {
    table: hashbrown::HashTable<T>,
    hasher: SeededState,
    max: usize,
}

impl<T: Clone> Table<T> {
    fn new(max: usize) -> Self {
        Self {
            table: hashbrown::HashTable::new(),
            hasher: SeededState::default(),
            max,
        }
    }

    fn find(&self, bytes: &[u8], text: impl Fn(&T) -> &str) -> Option<&T> {
        let hash = self.hasher.hash_one(bytes);
        self.table.find(hash, |t| spelled(text(t), bytes))
    }

    /// Keeps `value`, whose text is `bytes`, not kept yet.
    fn keep(&mut self, bytes: &[u8], value: T, text: impl Fn(&T) -> &str) {
        if self.table.len() >= self.max {
            self.table.clear();
        }
        let hasher = &self.hasher;
        let hash = hasher.hash_one(bytes);
        self.table.insert_unique(hash, value, |t| {
            hasher.hash_one(text(t).as_bytes())
        });
    }
}

/// Ids an [`Ids`] remembers in front of its table.
const RECENT_IDS: usize = 256;

/// The ids of the devices heard lately, by the text of their Uri-Path:
/// one text each, whose address the windows' cache of recent series
/// knows.
pub(super) struct Ids {
    table: Table<DeviceId>,
    /// The id kept last in each slot [`Ids::slot`] picks for its text: a
    /// slot's compare is about half of the table's lookup (the hash, the
    /// probe, the compare: about 100 instructions of a CoAP datagram's,
    /// issue 69). An id found here is one the table kept for that text;
    /// it may outlive the table starting over, at most these few.
    recent: Vec<Option<DeviceId>>,
}

impl Ids {
    pub(super) fn new(max: usize) -> Self {
        Self {
            table: Table::new(max),
            recent: vec![None; RECENT_IDS],
        }
    }

    /// A text's slot in `recent`, of its last two bytes (their low
    /// nibbles): where a fleet's serial numbers and MACs differ, so
    /// `sim-00001` to `sim-00100` each have their own. Texts that share
    /// a slot are found in the table. The handler's latest values pick
    /// their slots alike.
    pub(super) fn slot(bytes: &[u8]) -> usize {
        match bytes {
            [.., a, b] => usize::from(a & 0x0f) << 4 | usize::from(b & 0x0f),
            [b] => usize::from(b & 0x0f),
            [] => 0,
        }
    }

    /// The id kept for a segment spelled exactly as `bytes`, if any.
    pub(super) fn known(&self, bytes: &[u8]) -> Option<&DeviceId> {
        if let Some(Some(id)) = self.recent.get(Self::slot(bytes)) {
            if spelled(id.as_str(), bytes) {
                return Some(id);
            }
        }
        self.table.find(bytes, DeviceId::as_str)
    }

    /// Ids kept.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.table.table.len()
    }

    /// The id `text` names, as `DeviceId::new` makes it.
    pub(super) fn get(&mut self, text: &str) -> Result<DeviceId, ModelError> {
        if let Some(id) = self.known(text.as_bytes()) {
            return Ok(id.clone());
        }
        let id = DeviceId::new(text)?;
        // Only an id spelled as kept is kept: a MAC written another way
        // is looked up by its own text, which the kept one is not.
        if id.as_str() == text {
            let id = id.interned();
            self.table.keep(text.as_bytes(), id.clone(), DeviceId::as_str);
            if let Some(recent) = self.recent.get_mut(Self::slot(text.as_bytes())) {
                *recent = Some(id.clone());
            }
            return Ok(id);
        }
        Ok(id)
    }
}

/// Names a [`Metrics`] remembers in front of its table.
const RECENT_METRICS: usize = 16;

/// The metric names of the JSON keys heard lately.
pub(super) struct Metrics {
    table: Table<MetricName>,
    /// Names found lately, each in the slot [`Metrics::slot`] picks for
    /// its text: a fleet's bodies name the same few keys again and again,
    /// and a slot's compare is a third of the table's lookup (the hash,
    /// the probe, the compare: about 90 instructions of a CoAP
    /// datagram's, issue 69). Each is the name `get` gave for its text.
    recent: [Option<MetricName>; RECENT_METRICS],
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            table: Table::new(MAX_METRICS),
            recent: Default::default(),
        }
    }
}

impl Metrics {
    /// Names kept.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.table.table.len()
    }

    /// A key's slot in `recent`, of its length and its first and last
    /// bytes: no hash, just apart for the few keys of a fleet's bodies
    /// (`temperature`, `humidity`, `co2`); two that share a slot take
    /// turns in it, each found in the table when the other is there.
    fn slot(bytes: &[u8]) -> usize {
        let first = usize::from(bytes.first().copied().unwrap_or(0));
        let last = usize::from(bytes.last().copied().unwrap_or(0));
        (bytes.len() ^ first ^ last.rotate_left(2)) % RECENT_METRICS
    }

    /// The metric a key spelled as `bytes` names, as `MetricName::new`
    /// makes it; `None` for bytes that are not text or not a valid name
    /// (which the payload decoder then reports).
    pub(super) fn get(&mut self, bytes: &[u8]) -> Option<MetricName> {
        let slot = Self::slot(bytes);
        if let Some(Some(name)) = self.recent.get(slot) {
            if spelled(name.as_str(), bytes) {
                return Some(name.clone());
            }
        }
        let name = self.find_or_keep(bytes)?;
        if let Some(recent) = self.recent.get_mut(slot) {
            *recent = Some(name.clone());
        }
        Some(name)
    }

    fn find_or_keep(&mut self, bytes: &[u8]) -> Option<MetricName> {
        if let Some(name) = self.table.find(bytes, MetricName::as_str) {
            return Some(name.clone());
        }
        let name = MetricName::new(std::str::from_utf8(bytes).ok()?).ok()?;
        // A name is kept as spelled; were it ever rewritten, it would
        // simply not be found by its bytes.
        if name.as_str().as_bytes() == bytes {
            let name = name.interned();
            self.table.keep(bytes, name.clone(), MetricName::as_str);
            return Some(name);
        }
        Some(name)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn spelled_is_equality() {
        let texts: Vec<String> = (0..20)
            .flat_map(|n| ["a", "b", "\u{e9}"].map(|c| c.repeat(n)))
            .chain((0..20).map(|n| format!("{}b", "a".repeat(n))))
            .chain((0..20).map(|n| format!("b{}", "a".repeat(n))))
            .chain((0..20).map(|n| format!("{}b{}", "a".repeat(n / 2), "a".repeat(n - n / 2))))
            .collect();
        for a in &texts {
            for b in &texts {
                assert_eq!(spelled(a, b.as_bytes()), a == b, "{a:?} {b:?}");
            }
        }
    }

    /// Against the ids made afresh: ids that share slots, texts that are
    /// not ids or not as spelled, and the table starting over, in random
    /// turns. A known id is the one its text makes, and an id just kept
    /// is known.
    #[test]
    fn the_recent_ids_give_what_the_checks_make() {
        let texts: Vec<String> = (0..300)
            .map(|i| format!("sim-{i:05}"))
            .chain((0..20).map(|i| format!("node-{}", "1".repeat(i % 5))))
            .chain(["a/b", "AA-BB-CC-DD-EE-FF", "aa:bb:cc:dd:ee:ff", "x", ""].map(String::from))
            .collect();
        let mut next = crate::test_rng::xorshift(0x9e37_79b9_7f4a_7c15);
        let mut ids = Ids::new(64);
        for _ in 0..20_000 {
            let text = &texts[(next() % texts.len() as u64) as usize];
            let made = DeviceId::new(text.as_str()).ok();
            if let Some(id) = ids.known(text.as_bytes()) {
                assert_eq!(Some(id), made.as_ref(), "{text}");
                assert_eq!(id.as_str(), text);
            }
            if next().is_multiple_of(2) {
                assert_eq!(ids.get(text).ok(), made, "{text}");
                if made.as_ref().is_some_and(|m| m.as_str() == text) {
                    assert_eq!(ids.known(text.as_bytes()), made.as_ref(), "{text}");
                }
            }
            assert!(ids.len() <= 64);
        }
    }

    /// Against the names made afresh: keys that share slots, keys that
    /// are not names, and the table starting over, in random turns.
    #[test]
    fn the_recent_names_give_what_the_checks_make() {
        let keys: Vec<Vec<u8>> = (0..40)
            .map(|i| format!("k{}", "x".repeat(i % 7)).into_bytes())
            .chain((0..40).map(|i| format!("m{i}e").into_bytes()))
            .chain([&b"a/b"[..], b"\xff", b"", b"temperature", b"t"].map(<[u8]>::to_vec))
            .collect();
        let mut next = crate::test_rng::xorshift(0x2545_f491_4f6c_dd1d);
        let mut metrics = Metrics::default();
        for _ in 0..20_000 {
            let key = &keys[(next() % keys.len() as u64) as usize];
            let made = std::str::from_utf8(key)
                .ok()
                .and_then(|t| MetricName::new(t).ok());
            assert_eq!(metrics.get(key), made, "{key:?}");
            // Past the table's bound it starts over; the recent names stay
            // right.
            if next().is_multiple_of(500) {
                for i in 0..MAX_METRICS {
                    metrics.get(format!("flood{i}").as_bytes());
                }
            }
        }
    }

    #[test]
    fn names_are_found_by_their_bytes_as_the_checks_make_them() {
        let mut metrics = Metrics::default();
        for key in [&b"value"[..], b"temperature", b"\xc3\xa9t\xc3\xa9", b"value"] {
            let text = std::str::from_utf8(key).unwrap();
            assert_eq!(metrics.get(key), Some(MetricName::new(text).unwrap()));
        }
        // Not text, not a name: none, and nothing kept.
        for key in [&b"\xff"[..], b"\xc0\xaf", b"a/b", b"", b"a+", b"\x01"] {
            assert_eq!(metrics.get(key), None, "{key:?}");
            assert!(metrics.table.find(key, MetricName::as_str).is_none());
        }
        // Bounded: past the bound the table starts over.
        for i in 0..MAX_METRICS * 2 {
            let key = format!("m{i}");
            assert_eq!(metrics.get(key.as_bytes()).unwrap().as_str(), key);
            assert!(metrics.table.table.len() <= MAX_METRICS);
        }

        let mut ids = Ids::new(4);
        let id = ids.get("sim-00001").unwrap();
        assert_eq!(ids.known(b"sim-00001"), Some(&id));
        assert_eq!(ids.known(b"sim-00002"), None);
        // A MAC in another notation is its canonical id, kept only as
        // spelled canonically.
        let mac = ids.get("AA-BB-CC-DD-EE-FF").unwrap();
        assert_eq!(mac.as_str(), "aa:bb:cc:dd:ee:ff");
        assert_eq!(ids.known(b"AA-BB-CC-DD-EE-FF"), None);
        assert!(ids.get("a/b").is_err());
        for i in 0..10 {
            ids.get(&format!("d{i}")).unwrap();
            assert!(ids.table.table.len() <= 4);
        }
    }
}
