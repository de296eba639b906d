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
        self.table.find(hash, |t| text(t).as_bytes() == bytes)
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

/// The ids of the devices heard lately, by the text of their Uri-Path:
/// one text each, whose address the windows' cache of recent series
/// knows.
pub(super) struct Ids(Table<DeviceId>);

impl Ids {
    pub(super) fn new(max: usize) -> Self {
        Self(Table::new(max))
    }

    /// The id kept for a segment spelled exactly as `bytes`, if any.
    pub(super) fn known(&self, bytes: &[u8]) -> Option<&DeviceId> {
        self.0.find(bytes, DeviceId::as_str)
    }

    /// Ids kept.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.table.len()
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
            self.0.keep(text.as_bytes(), id.clone(), DeviceId::as_str);
            return Ok(id);
        }
        Ok(id)
    }
}

/// The metric names of the JSON keys heard lately.
pub(super) struct Metrics(Table<MetricName>);

impl Default for Metrics {
    fn default() -> Self {
        Self(Table::new(MAX_METRICS))
    }
}

impl Metrics {
    /// Names kept.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.table.len()
    }

    /// The metric a key spelled as `bytes` names, as `MetricName::new`
    /// makes it; `None` for bytes that are not text or not a valid name
    /// (which the payload decoder then reports).
    pub(super) fn get(&mut self, bytes: &[u8]) -> Option<MetricName> {
        if let Some(name) = self.0.find(bytes, MetricName::as_str) {
            return Some(name.clone());
        }
        let name = MetricName::new(std::str::from_utf8(bytes).ok()?).ok()?;
        // A name is kept as spelled; were it ever rewritten, it would
        // simply not be found by its bytes.
        if name.as_str().as_bytes() == bytes {
            let name = name.interned();
            self.0.keep(bytes, name.clone(), MetricName::as_str);
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
    fn names_are_found_by_their_bytes_as_the_checks_make_them() {
        let mut metrics = Metrics::default();
        for key in [&b"value"[..], b"temperature", b"\xc3\xa9t\xc3\xa9", b"value"] {
            let text = std::str::from_utf8(key).unwrap();
            assert_eq!(metrics.get(key), Some(MetricName::new(text).unwrap()));
        }
        // Not text, not a name: none, and nothing kept.
        for key in [&b"\xff"[..], b"\xc0\xaf", b"a/b", b"", b"a+", b"\x01"] {
            assert_eq!(metrics.get(key), None, "{key:?}");
            assert!(metrics.0.find(key, MetricName::as_str).is_none());
        }
        // Bounded: past the bound the table starts over.
        for i in 0..MAX_METRICS * 2 {
            let key = format!("m{i}");
            assert_eq!(metrics.get(key.as_bytes()).unwrap().as_str(), key);
            assert!(metrics.0.table.len() <= MAX_METRICS);
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
            assert!(ids.0.table.len() <= 4);
        }
    }
}
