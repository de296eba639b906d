//! Token buckets per key: a sender (a CoAP peer, a device's commands) gets
//! `burst` at once, then `rate` per second, without touching another's
//! allowance. One limiter for every such rule, so they all refill, bound
//! their table and treat "no limit" alike.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

/// `rate` per second after a burst of `burst`, per key; `rate == 0`
/// allows everything.
#[derive(Debug)]
pub struct RateLimiter<K> {
    rate: f64,
    burst: f64,
    max_keys: usize,
    buckets: HashMap<K, (f64, Instant)>,
}

impl<K: Eq + Hash> RateLimiter<K> {
    /// A table bounded only by the keys its caller can make: use
    /// [`RateLimiter::with_max_keys`] where a sender makes them up.
    pub fn new(rate: f64, burst: u32) -> Self {
        Self {
            rate,
            burst: f64::from(burst.max(1)),
            max_keys: usize::MAX,
            buckets: HashMap::new(),
        }
    }

    /// At most `max` keys held. When a new key finds the table full, the
    /// idle ones (full buckets) leave first; if none is idle the table
    /// starts over rather than refusing every new key.
    pub fn with_max_keys(mut self, max: usize) -> Self {
        self.max_keys = max.max(1);
        self
    }

    /// Takes one from `key`'s allowance at `now`; `false` when it has none.
    pub fn allow(&mut self, key: K, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        if self.buckets.len() >= self.max_keys && !self.buckets.contains_key(&key) {
            self.make_room(now);
        }
        let (rate, burst) = (self.rate, self.burst);
        let (tokens, at) = self.buckets.entry(key).or_insert((burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn make_room(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, (tokens, at)| {
            *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
        });
        if self.buckets.len() >= self.max_keys {
            self.buckets.clear();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::IpAddr;
    use std::time::Duration;

    use crate::DeviceId;

    use super::*;

    #[test]
    fn a_burst_then_the_rate_per_peer() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        let mut r = RateLimiter::new(10.0, 3).with_max_keys(8);
        assert!((0..3).all(|_| r.allow(ip, t0)));
        assert!(!r.allow(ip, t0));
        assert!(r.allow(other, t0), "peers are limited separately");
        assert!(r.allow(ip, t0 + Duration::from_millis(100)));
        assert!(!r.allow(ip, t0 + Duration::from_millis(100)));
        let mut off = RateLimiter::new(0.0, 0).with_max_keys(1);
        assert!((0..1000).all(|_| off.allow(ip, t0)));
    }

    #[test]
    fn a_burst_then_the_rate_per_device() {
        let mut r = RateLimiter::new(2.0, 3);
        let a = DeviceId::new("a").unwrap();
        let b = DeviceId::new("b").unwrap();
        let t = Instant::now();
        assert!((0..3).all(|_| r.allow(Some(a.clone()), t)));
        assert!(!r.allow(Some(a.clone()), t));
        assert!(
            r.allow(Some(b.clone()), t),
            "another device keeps its own allowance"
        );
        assert!(!r.allow(Some(a.clone()), t + Duration::from_millis(400)));
        assert!(r.allow(Some(a.clone()), t + Duration::from_millis(1000)));
        // Devices nobody writes to share one allowance, apart from the rest.
        assert!((0..3).all(|_| r.allow(None, t)));
        assert!(!r.allow(None, t));
        assert!(r.allow(Some(b), t));
    }

    #[test]
    fn a_full_table_lets_idle_keys_go_first_then_starts_over() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(1.0, 2).with_max_keys(2);
        assert!(r.allow(1, t0) && r.allow(1, t0));
        assert!(r.allow(2, t0));
        // A second on, key 2 is full again (idle) and key 1 is not: 2
        // leaves, 1 keeps what it spent.
        let t1 = t0 + Duration::from_secs(1);
        assert!(r.allow(3, t1));
        assert!(r.allow(1, t1));
        assert!(!r.allow(1, t1), "a busy key keeps what it spent");
        // 1 and 3 both busy: a new key starts the table over.
        assert!(r.allow(4, t1));
        assert!(
            r.allow(1, t1) && r.allow(1, t1),
            "after starting over, key 1 has its burst again"
        );
    }
}
