//! Per-peer token buckets (RFC 7252 §4.7: servers "SHOULD implement some
//! rate limiting"). Keyed by IP address, not port: a sender changes ports for
//! free. The table is bounded; when full, idle peers (full buckets) leave
//! first, and if none is idle the table starts over rather than refusing
//! every new peer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Token buckets per peer address.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    max_peers: usize,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl RateLimiter {
    /// `rate` per second, `burst` at once; `rate == 0` allows everything.
    pub fn new(rate: u32, burst: u32, max_peers: usize) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            max_peers: max_peers.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Whether one more datagram from `ip` may be handled at `now`.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= self.max_peers {
            let (rate, burst) = (self.rate, self.burst);
            self.buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
            if self.buckets.len() >= self.max_peers {
                self.buckets.clear();
            }
        }
        let (tokens, at) = self.buckets.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.rate)
            .min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        let mut r = RateLimiter::new(10, 3, 8);
        assert!((0..3).all(|_| r.allow(ip, t0)));
        assert!(!r.allow(ip, t0));
        assert!(r.allow(other, t0), "peers are limited separately");
        assert!(r.allow(ip, t0 + Duration::from_millis(100)));
        assert!(!r.allow(ip, t0 + Duration::from_millis(100)));
        let mut off = RateLimiter::new(0, 0, 1);
        assert!((0..1000).all(|_| off.allow(ip, t0)));
    }
}
