//! Texts interned once, with a reference count: the device ids and the
//! metric names the series are made of.
//!
//! A series used to own its packed "device\0metric" key, so a device with
//! five metrics stored its id five times. Interned apart, a series is two
//! `u32`s and a device's id is stored once for all its metrics (issue 69:
//! 10 000 devices × 5 metrics).

use std::collections::BTreeSet;
use std::hash::BuildHasher;

use gateway_core::hash::SeededState;
use hashbrown::HashTable;

use crate::chunked::Chunked;
use crate::keys::KeyArena;

/// One table of interned texts. Ids are dense and the lowest free one is
/// reused first, so the tables shrink back once the texts of a burst are
/// released.
#[derive(Debug, Default)]
pub(crate) struct Names {
    /// Ids, found by the hash of their text in `texts`.
    index: HashTable<u32>,
    texts: KeyArena,
    /// Series holding each id; the text is forgotten at 0.
    refs: Chunked<u32>,
    free: BTreeSet<u32>,
}

impl Names {
    /// `Ok(id)` of `text`, or `Err(hash)` to [`insert`](Self::insert) it
    /// with.
    #[inline]
    pub fn find(&self, hasher: &SeededState, text: &str) -> Result<u32, u64> {
        let hash = hasher.hash_one(text.as_bytes());
        let texts = &self.texts;
        self.index
            .find(hash, |&id| texts.get(id) == Some(text))
            .copied()
            .ok_or(hash)
    }

    /// Interns `text`, not yet interned, whose hash is `hash`, with no
    /// reference: the caller [`acquire`](Self::acquire)s it.
    pub fn insert(&mut self, hasher: &SeededState, text: &str, hash: u64) -> u32 {
        let id = match self.free.pop_first() {
            Some(id) => id,
            None => {
                // 2^32 texts would need far more memory than the series
                // cap ever lets in.
                let id = self.texts.slots() as u32;
                self.refs.push(0);
                id
            }
        };
        self.texts.put(id, text);
        let texts = &self.texts;
        self.index.insert_unique(hash, id, |&id| {
            hasher.hash_one(texts.get(id).unwrap_or_default().as_bytes())
        });
        id
    }

    pub fn acquire(&mut self, id: u32) {
        if let Some(refs) = self.refs.get_mut(id as usize) {
            *refs += 1;
        }
    }

    /// Drops one reference to `id`; the last forgets its text.
    pub fn release(&mut self, hasher: &SeededState, id: u32) {
        let Some(refs) = self.refs.get_mut(id as usize) else {
            return;
        };
        *refs = refs.saturating_sub(1);
        if *refs > 0 {
            return;
        }
        let Some(text) = self.texts.get(id) else {
            return;
        };
        let hash = hasher.hash_one(text.as_bytes());
        if let Ok(entry) = self.index.find_entry(hash, |&other| other == id) {
            entry.remove();
        }
        self.texts.remove(id);
        self.free.insert(id);
        while let Some(&last) = self.free.last() {
            if last as usize + 1 != self.texts.slots() {
                break;
            }
            self.free.pop_last();
            self.texts.truncate(last as usize);
            self.refs.pop();
        }
        // The index never shrinks by itself; after a burst of one-off
        // devices give its memory back once it is mostly empty.
        if self.index.capacity() > 1024 && self.index.len() < self.index.capacity() / 4 {
            let texts = &self.texts;
            self.index.shrink_to(self.index.len() * 2, |&id| {
                hasher.hash_one(texts.get(id).unwrap_or_default().as_bytes())
            });
        }
    }

    /// The text of a live id.
    #[inline]
    pub fn get(&self, id: u32) -> Option<&str> {
        self.texts.get(id)
    }

    /// Texts interned.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Ids allocated, live or free.
    #[cfg(test)]
    pub fn slots(&self) -> usize {
        self.texts.slots()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn intern(n: &mut Names, h: &SeededState, text: &str) -> u32 {
        let id = match n.find(h, text) {
            Ok(id) => id,
            Err(hash) => n.insert(h, text, hash),
        };
        n.acquire(id);
        id
    }

    #[test]
    fn a_text_lives_while_referenced_and_its_id_is_reused() {
        let h = SeededState::default();
        let mut n = Names::default();
        let a = intern(&mut n, &h, "a");
        assert_eq!(intern(&mut n, &h, "a"), a, "one id per text");
        let b = intern(&mut n, &h, "b");
        let c = intern(&mut n, &h, "c");
        assert_eq!((a, b, c), (0, 1, 2));
        n.release(&h, a);
        assert_eq!(n.find(&h, "a"), Ok(a), "still referenced once");
        n.release(&h, a);
        assert!(n.find(&h, "a").is_err());
        assert_eq!(n.get(a), None);
        assert_eq!(intern(&mut n, &h, "d"), a, "lowest free id reused");
        assert_eq!(n.get(a), Some("d"));
        n.release(&h, c);
        assert_eq!((n.len(), n.slots()), (2, 2), "trailing free id dropped");
        n.release(&h, a);
        n.release(&h, b);
        assert_eq!((n.len(), n.slots()), (0, 0));
    }
}
