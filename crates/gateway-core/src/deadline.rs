//! Instants computed from durations that come from outside: a server's
//! `Retry-After`, a config's `idle_timeout = "100000000y"`, a saved
//! backoff. `Instant + Duration` panics when the sum does not fit
//! (`overflow when adding duration to instant`), and in a release build
//! with `panic = "abort"` that ends the process, again at every restart
//! while the input stays the same. Every such sum goes through here.

use std::time::Duration;

/// The farthest any wait reaches: about 30 years, as tokio's own "never".
/// Longer waits are the same thing in practice, and this one always fits
/// in an `Instant`.
pub const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `now + wait`, with a wait beyond [`FAR_FUTURE`] cut to it; never panics.
pub fn after(now: tokio::time::Instant, wait: Duration) -> tokio::time::Instant {
    now.checked_add(wait.min(FAR_FUTURE)).unwrap_or(now)
}

/// [`after`] for `std::time::Instant`.
pub fn after_std(now: std::time::Instant, wait: Duration) -> std::time::Instant {
    now.checked_add(wait.min(FAR_FUTURE)).unwrap_or(now)
}

/// `wait` from now on tokio's clock.
pub fn from_now(wait: Duration) -> tokio::time::Instant {
    after(tokio::time::Instant::now(), wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Edge values and a spread of pseudo-random ones (xorshift), seconds
    /// and nanoseconds, as a header or a config could give them.
    fn waits() -> Vec<Duration> {
        let mut v = vec![
            Duration::ZERO,
            Duration::from_nanos(1),
            FAR_FUTURE,
            FAR_FUTURE + Duration::from_nanos(1),
            Duration::from_secs(u64::MAX / 2),
            Duration::from_secs(i64::MAX as u64),
            Duration::from_secs(u64::MAX),
            Duration::MAX,
        ];
        let mut x = 0x9E37_79B9_7F4A_7C15_u64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.push(Duration::new(x >> (x % 64), (x % 1_000_000_000) as u32));
        }
        v
    }

    #[test]
    fn any_wait_gives_an_instant_no_earlier_than_now_and_never_panics() {
        let now = tokio::time::Instant::now();
        let now_std = std::time::Instant::now();
        for wait in waits() {
            let t = after(now, wait);
            assert!(t >= now);
            assert_eq!(t - now, wait.min(FAR_FUTURE), "{wait:?}");
            let t = after_std(now_std, wait);
            assert_eq!(t - now_std, wait.min(FAR_FUTURE), "{wait:?}");
        }
    }
}
