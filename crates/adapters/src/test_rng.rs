//! A seeded pseudo-random stream for tests that walk many generated cases:
//! the same cases on every run and every machine, with no dependency.

/// Marsaglia's xorshift64: each call the next of the stream from `seed`
/// (not 0, whose stream is all zeros).
pub(crate) fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}
