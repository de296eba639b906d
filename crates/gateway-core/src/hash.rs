//! A fast, per-process seeded hasher for the maps every reading or datagram
//! passes through: the aggregator's intern map, the CoAP duplicate cache.
//!
//! The intern map hashes every reading's device and metric, so the std default
//! (SipHash-1-3) was the largest single cost of an in-cache ingest (and a
//! tenth of a CoAP datagram's, in its duplicate cache). This is
//! the folded-multiply construction of foldhash (hashbrown's default hasher):
//! 8 bytes per 64×64→128-bit multiply, high and low halves xored.
//!
//! Device ids come from the network, so the keys are attacker-chosen. The seed
//! and multiplier are drawn from std's `RandomState` (the OS random source) at
//! construction, so collisions cannot be precomputed offline; like foldhash it
//! is not a keyed PRF, which is acceptable for a map whose size is bounded
//! otherwise: the intern map holds only series with an open window (the
//! traffic of one window plus grace), the duplicate cache its capacity.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// Builds [`SeededHasher`]s that share one random seed.
#[derive(Debug, Clone)]
pub struct SeededState {
    seed: u64,
    /// Odd, so the multiply never discards the low bit entirely.
    mul: u64,
}

impl Default for SeededState {
    fn default() -> Self {
        let random = RandomState::new();
        Self {
            seed: random.hash_one(0x243F_6A88_85A3_08D3_u64),
            mul: random.hash_one(0x1319_8A2E_0370_7344_u64) | 1,
        }
    }
}

impl BuildHasher for SeededState {
    type Hasher = SeededHasher;

    fn build_hasher(&self) -> SeededHasher {
        SeededHasher {
            state: self.seed,
            mul: self.mul,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SeededHasher {
    state: u64,
    mul: u64,
}

#[inline]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

impl SeededHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.state = folded_multiply(self.state ^ word, self.mul);
    }
}

// Loads by `first_chunk`, not `copy_from_slice`: without LTO the latter
// stayed a call per word (`copy_from_slice_impl`), most of a short key's
// hash (issue 69). Callers pass at least the word's length.
#[inline]
fn read_u64(bytes: &[u8]) -> u64 {
    bytes.first_chunk().map_or(0, |w| u64::from_le_bytes(*w))
}

#[inline]
fn read_u32(bytes: &[u8]) -> u32 {
    bytes.first_chunk().map_or(0, |w| u32::from_le_bytes(*w))
}

impl Hasher for SeededHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let len = bytes.len();
        if len >= 8 {
            let mut chunks = bytes.chunks_exact(8);
            for chunk in &mut chunks {
                self.mix(read_u64(chunk));
            }
            if !chunks.remainder().is_empty() {
                // The last 8 bytes, overlapping the previous word: one plain
                // load instead of assembling the tail byte by byte. Callers
                // hash the length first (`[u8]: Hash` does), so overlapping
                // reads of different inputs cannot coincide.
                self.mix(read_u64(&bytes[len - 8..]));
            }
        } else if len >= 4 {
            let lo = u64::from(read_u32(&bytes[..4]));
            let hi = u64::from(read_u32(&bytes[len - 4..]));
            self.mix(lo | hi << 32);
        } else if len > 0 {
            let word = u64::from(bytes[0])
                | u64::from(bytes[len / 2]) << 8
                | u64::from(bytes[len - 1]) << 16
                | (len as u64) << 24;
            self.mix(word);
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // One more round so the last word reaches every bit, top (hashbrown's
        // 7-bit tag) and bottom (its bucket index) alike.
        folded_multiply(self.state, self.mul.rotate_left(32) | 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// As the intern map hashes its keys: length prefix, then the bytes.
    fn hash(state: &SeededState, bytes: &[u8]) -> u64 {
        state.hash_one(bytes)
    }

    #[test]
    fn near_identical_keys_spread_over_buckets_and_tags() {
        let state = SeededState::default();
        // Device ids that differ in one hex digit, as real fleets do.
        let keys: Vec<Vec<u8>> = (0..4096)
            .map(|i| format!("70B3D57ED00{i:05X}temperature").into_bytes())
            .collect();
        let hashes: Vec<u64> = keys.iter().map(|k| hash(&state, k)).collect();
        let distinct: HashSet<u64> = hashes.iter().copied().collect();
        assert_eq!(distinct.len(), keys.len(), "full-width collisions");
        // Low 12 bits pick one of 4096 buckets; a good hash fills ~63% of them.
        let buckets: HashSet<u64> = hashes.iter().map(|h| h & 0xfff).collect();
        assert!(buckets.len() > 2400, "only {} buckets used", buckets.len());
        // Top 7 bits are the tag: all 128 values should occur.
        let tags: HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert_eq!(tags.len(), 128);
    }

    #[test]
    fn tails_and_lengths_are_distinguished() {
        let state = SeededState::default();
        // Every length class (0, 1-3, 4-7, 8, 9-15, 16) and neighbours that
        // differ only in the bytes an overlapping read sees twice.
        let keys: [&[u8]; 14] = [
            b"",
            b"\0",
            b"a",
            b"a\0",
            b"ab",
            b"ba",
            b"abcd",
            b"abcde",
            b"abcdefgh",
            b"abcdefgh\0",
            b"abcdefghi",
            b"abcdefghij",
            b"abcdefgxhij",
            b"abcdefghijklmnop",
        ];
        let distinct: HashSet<u64> = keys.iter().map(|k| hash(&state, k)).collect();
        assert_eq!(distinct.len(), keys.len());
    }

    #[test]
    fn seeds_differ_between_maps() {
        let (a, b) = (SeededState::default(), SeededState::default());
        assert_ne!(hash(&a, b"dev-1"), hash(&b, b"dev-1"));
    }
}
