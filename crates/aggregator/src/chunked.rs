//! A vector in fixed-size chunks, for the per-series tables.
//!
//! A `Vec` of 50 000 accumulators grows by doubling, and each doubling
//! copies it into a new block and frees the old one. Once glibc serves
//! blocks that size from its heap rather than from `mmap` (its threshold
//! rises after the first large free), every freed predecessor stays
//! resident: the process kept up to twice the table. Chunks are allocated
//! once, never moved, and the last one is freed when it empties.

/// Entries per chunk: 1024 accumulators are 80 KiB, under glibc's initial
/// mmap threshold, and one chunk is the most a table wastes.
pub(crate) const CHUNK: usize = 1024;

#[derive(Debug)]
pub(crate) struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn push(&mut self, value: T) {
        if self.len.is_multiple_of(CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        if let Some(last) = self.chunks.last_mut() {
            last.push(value);
            self.len += 1;
        }
    }

    pub fn pop(&mut self) -> Option<T> {
        let last = self.chunks.last_mut()?;
        let value = last.pop();
        if last.is_empty() {
            self.chunks.pop();
        }
        if value.is_some() {
            self.len -= 1;
        }
        value
    }

    #[inline]
    pub fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)
    }

    #[inline]
    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.chunks.get_mut(i / CHUNK)?.get_mut(i % CHUNK)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pushes_pops_and_indexes_across_chunks() {
        let mut c = Chunked::default();
        let n = 3 * CHUNK + 5;
        for i in 0..n {
            c.push(i);
        }
        assert_eq!(c.len(), n);
        for i in [0, CHUNK - 1, CHUNK, 2 * CHUNK + 7, n - 1] {
            assert_eq!(c.get(i), Some(&i));
        }
        assert_eq!(c.get(n), None);
        *c.get_mut(CHUNK).unwrap() = 0;
        assert_eq!(c.get(CHUNK), Some(&0));
        for i in (2 * CHUNK..n).rev() {
            assert_eq!(c.pop(), Some(i));
        }
        assert_eq!(
            (c.len(), c.chunks.len()),
            (2 * CHUNK, 2),
            "emptied chunk freed"
        );
    }
}
