//! Commands per device: a token bucket each, so one device's flood is
//! refused without touching another's commands. Devices no adapter writes
//! to share one bucket: a sender can make up any number of them, and each
//! refusal still costs a journal line and a result.

use std::collections::HashMap;

use gateway_core::DeviceId;
use tokio::time::Instant;

/// `rate` per second after a burst of `burst`, per device.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    buckets: HashMap<DeviceId, (f64, Instant)>,
    unserved: (f64, Instant),
}

impl RateLimit {
    pub fn new(rate: f64, burst: u32) -> Self {
        Self {
            rate,
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
            unserved: (f64::from(burst.max(1)), Instant::now()),
        }
    }

    /// Takes one command of `device`'s allowance (`None`: a device no
    /// target serves); `false` when it has none. The map holds only
    /// devices a target serves: it is bounded by the config, not by what a
    /// sender makes up.
    pub fn allow(&mut self, device: Option<&DeviceId>, now: Instant) -> bool {
        let burst = self.burst;
        let (tokens, at) = match device {
            Some(device) => self.buckets.entry(device.clone()).or_insert((burst, now)),
            None => &mut self.unserved,
        };
        let refill = now.saturating_duration_since(*at).as_secs_f64() * self.rate;
        *tokens = (*tokens + refill).min(burst);
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
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_the_rate_per_device() {
        let mut r = RateLimit::new(2.0, 3);
        let a = DeviceId::new("a").unwrap();
        let b = DeviceId::new("b").unwrap();
        let t = Instant::now();
        assert!((0..3).all(|_| r.allow(Some(&a), t)));
        assert!(!r.allow(Some(&a), t));
        assert!(
            r.allow(Some(&b), t),
            "another device keeps its own allowance"
        );
        assert!(!r.allow(Some(&a), t + Duration::from_millis(400)));
        assert!(r.allow(Some(&a), t + Duration::from_millis(1000)));
        // Devices nobody writes to share one allowance, apart from the rest.
        assert!((0..3).all(|_| r.allow(None, t)));
        assert!(!r.allow(None, t));
        assert!(r.allow(Some(&b), t));
    }
}
