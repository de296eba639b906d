//! Capped exponential backoff with jitter, for every reconnect loop.
//!
//! Jitter spreads the reconnects of many gateways (or many adapters of one)
//! that lost the same broker at the same moment, so a returning broker is not
//! hit by a synchronised storm. "Equal jitter": half the delay is fixed, half
//! random, so the wait never collapses to zero.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        Self::with_seed(initial, max, seed)
    }

    /// Deterministic jitter, for tests.
    pub fn with_seed(initial: Duration, max: Duration, seed: u64) -> Self {
        Self {
            initial: initial.min(max),
            max,
            attempt: 0,
            rng: seed | 1,
        }
    }

    /// The wait before the next attempt; grows until the cap.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.attempt.min(30);
        self.attempt = self.attempt.saturating_add(1);
        let full = self
            .initial
            .saturating_mul(1u32 << exp.min(31))
            .min(self.max);
        let half = full / 2;
        // xorshift64*: enough randomness for jitter, no dependency.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let frac = (r >> 11) as f64 / (1u64 << 53) as f64;
        half + half.mul_f64(frac)
    }

    /// Call after a successful connection.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The cap: the wait for a fault that retrying soon cannot clear.
    pub fn max(&self) -> Duration {
        self.max
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::with_seed(Duration::from_millis(100), Duration::from_secs(2), 7);
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] <= Duration::from_millis(100));
        for d in &delays {
            assert!(*d <= Duration::from_secs(2), "{d:?} above cap");
        }
        assert!(
            delays[9] >= Duration::from_secs(1),
            "capped delays keep at least half"
        );
        assert!(delays.windows(2).any(|w| w[0] != w[1]));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
