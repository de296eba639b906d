//! The interned texts (device ids, metric names: `names.rs`), back to back
//! in one buffer and addressed by id.
//!
//! One small allocation per text would cost a malloc header and rounding
//! on each (a 16-byte id takes 32 bytes), and, worse, would scatter
//! long-lived chunks among the short-lived ones of every reading, so the
//! allocator could not hand the memory of a burst back. One buffer costs
//! the text's bytes and an 8-byte span.

use crate::chunked::Chunked;

/// Where one key lies: page and offset in it. `len == 0` marks a free id:
/// a packed key always holds at least its separator.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    page: u32,
    /// [`PAGE`] is 64 KiB, so offsets and lengths within one fit 16 bits.
    offset: u16,
    len: u16,
}

#[derive(Debug, Default)]
pub(crate) struct KeyArena {
    /// Pages of [`PAGE`] bytes (a key never straddles two), so the buffer
    /// grows without moving, like [`Chunked`].
    pages: Vec<String>,
    spans: Chunked<Span>,
    /// Bytes of `pages` that belong to released keys.
    dead: usize,
    /// Bytes of `pages` in use, live or dead.
    used: usize,
}

/// Bytes per page of keys; far more than the longest key (a device id and a
/// metric name are a few hundred bytes at most).
const PAGE: usize = 64 * 1024;

/// Below this the keys are never compacted: copying them would cost more
/// than the bytes it frees.
const COMPACT_FLOOR: usize = 2 * PAGE;

impl KeyArena {
    /// The key of a live id.
    #[inline]
    pub fn get(&self, id: u32) -> Option<&str> {
        let span = self.spans.get(id as usize)?;
        if span.len == 0 {
            return None;
        }
        let start = span.offset as usize;
        self.pages
            .get(span.page as usize)?
            .get(start..start + span.len as usize)
    }

    /// Ids allocated, live or free.
    pub fn slots(&self) -> usize {
        self.spans.len()
    }

    /// Stores `key` under `id`, which is either a free id or the next new
    /// one ([`slots`](Self::slots)).
    pub fn put(&mut self, id: u32, key: &str) {
        let span = self.append(key);
        match self.spans.get_mut(id as usize) {
            Some(slot) => *slot = span,
            None => self.spans.push(span),
        }
    }

    fn append(&mut self, key: &str) -> Span {
        let fits = |p: &String| p.len() + key.len() <= p.capacity();
        if !self.pages.last().is_some_and(fits) {
            self.pages.push(String::with_capacity(PAGE));
        }
        let page_index = self.pages.len() - 1;
        let Some(page) = self.pages.last_mut() else {
            return Span::default();
        };
        // Pages are PAGE bytes; a key is a few hundred at most (DeviceId
        // and MetricName cap their lengths).
        let span = Span {
            page: page_index as u32,
            offset: page.len() as u16,
            len: key.len() as u16,
        };
        page.push_str(key);
        self.used += key.len();
        span
    }

    /// Frees `id`'s key; the bytes are reclaimed by the next compaction.
    pub fn remove(&mut self, id: u32) {
        if let Some(span) = self.spans.get_mut(id as usize) {
            self.dead += span.len as usize;
            *span = Span::default();
        }
        self.compact_if_worth_it();
    }

    /// Drops free ids at the end.
    pub fn truncate(&mut self, slots: usize) {
        while self.spans.len() > slots {
            if let Some(span) = self.spans.pop() {
                self.dead += span.len as usize;
            }
        }
        self.compact_if_worth_it();
    }

    fn compact_if_worth_it(&mut self) {
        if self.used > COMPACT_FLOOR && self.dead > self.used / 2 {
            self.compact();
        } else if self.used == self.dead {
            self.pages.clear();
            (self.used, self.dead) = (0, 0);
        }
    }

    /// Copies the live keys into fresh pages. Amortised: it runs only once
    /// the dead bytes outweigh the live ones.
    fn compact(&mut self) {
        let old = std::mem::take(&mut self.pages);
        (self.used, self.dead) = (0, 0);
        for i in 0..self.spans.len() {
            let Some(&span) = self.spans.get(i) else {
                continue;
            };
            if span.len == 0 {
                continue;
            }
            let start = span.offset as usize;
            let key = old
                .get(span.page as usize)
                .and_then(|p| p.get(start..start + span.len as usize))
                .unwrap_or_default();
            let moved = self.append(key);
            if let Some(slot) = self.spans.get_mut(i) {
                *slot = moved;
            }
        }
    }

    /// Bytes held for keys, live or dead; for tests of the compaction.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.pages.iter().map(String::capacity).sum()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_removals_and_compaction() {
        let mut a = KeyArena::default();
        let n = 20_000u32;
        for id in 0..n {
            a.put(id, &format!("device-{id}\0temperature"));
        }
        let full = a.held();
        // Free three in four, which compacts on the way.
        for id in (0..n).filter(|id| id % 4 != 0) {
            a.remove(id);
        }
        for id in 0..n {
            let want = (id % 4 == 0).then(|| format!("device-{id}\0temperature"));
            assert_eq!(a.get(id).map(str::to_string), want, "id {id}");
        }
        assert!(
            a.held() <= full / 2,
            "{} of {full} bytes still held",
            a.held()
        );
        // A freed id takes a new key.
        a.put(1, "other\0co2");
        assert_eq!(a.get(1), Some("other\0co2"));
        a.truncate(2);
        assert_eq!((a.slots(), a.get(0)), (2, Some("device-0\0temperature")));
        assert_eq!(a.get(2), None);
    }
}
