//! How much the gateway tells Home Assistant, whoever asks: pure rules
//! with time passed in.
//!
//! - [`Rediscovery`]: Home Assistant's `online` asks for every config and
//!   last state again, and anyone on its broker can publish it. Fifty of
//!   them made fifty full announcements; now the first is answered, the
//!   rest within the interval make one more at its end.
//! - [`Devices`]: when each device was last heard and how many entities
//!   it has, so a device not heard for `forget_after` is cleared from the
//!   broker and made-up ids cannot grow the announced set past
//!   `max_entities`.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// At most one full announcement per interval.
#[derive(Debug)]
pub struct Rediscovery {
    interval: Duration,
    last: Option<Instant>,
    pending: bool,
}

impl Rediscovery {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            pending: false,
        }
    }

    fn free(&self, now: Instant) -> bool {
        self.last
            .is_none_or(|l| now.saturating_duration_since(l) >= self.interval)
    }

    /// Home Assistant said `online`: whether to announce everything now
    /// (else it is owed at the interval's end).
    pub fn online(&mut self, now: Instant) -> bool {
        if self.free(now) {
            self.last = Some(now);
            self.pending = false;
            true
        } else {
            self.pending = true;
            false
        }
    }

    /// On each tick: whether an announcement owed is due now.
    pub fn owed(&mut self, now: Instant) -> bool {
        if self.pending && self.free(now) {
            self.pending = false;
            self.last = Some(now);
            true
        } else {
            false
        }
    }
}

/// Entities one device may have: a BACnet controller's points, a Modbus
/// meter's registers, far below what a flood of made-up metric names
/// would announce, each a retained config on the broker.
pub const MAX_ENTITIES_PER_DEVICE: usize = 1024;

/// What is kept of one device.
#[derive(Debug, Default, Clone, Copy)]
struct Device {
    /// Entities known (announced or due).
    entities: usize,
    /// Wall-clock milliseconds it was last heard; `None`: not since the
    /// record began (a registered device announced before it spoke).
    heard: Option<i64>,
    /// What the file holds of `heard`: written again only when it moved
    /// by a tenth of `forget_after`, not on every reading.
    saved: Option<i64>,
}

/// Devices' entity counts and last-heard times.
#[derive(Debug)]
pub struct Devices {
    forget_after_ms: i64,
    max_entities: usize,
    devices: HashMap<String, Device>,
    /// Entities of devices not in `[[device]]`.
    unregistered: usize,
}

impl Devices {
    pub fn new(forget_after: Duration, max_entities: usize) -> Self {
        Self {
            forget_after_ms: i64::try_from(forget_after.as_millis()).unwrap_or(i64::MAX),
            max_entities,
            devices: HashMap::new(),
            unregistered: 0,
        }
    }

    /// Whether one more entity of `device` may be announced: a stranger's
    /// while strangers hold fewer than `max_entities`, and no device's
    /// past [`MAX_ENTITIES_PER_DEVICE`] (a registered device's metric names
    /// come from what it sends, so one could make any number).
    pub fn admits(&self, device: &str, registered: bool) -> bool {
        let own = self.devices.get(device).map_or(0, |d| d.entities);
        own < MAX_ENTITIES_PER_DEVICE && (registered || self.unregistered < self.max_entities)
    }

    /// An entity of `device` became known (`heard`: its time on record).
    pub fn add(&mut self, device: &str, registered: bool, heard: Option<i64>) {
        let d = self.devices.entry(device.to_string()).or_default();
        d.entities += 1;
        if let Some(h) = heard {
            d.heard = Some(d.heard.map_or(h, |old| old.max(h)));
            d.saved = d.heard;
        }
        if !registered {
            self.unregistered += 1;
        }
    }

    /// Whether `device` has an entity.
    pub fn has(&self, device: &str) -> bool {
        self.devices.get(device).is_some_and(|d| d.entities > 0)
    }

    /// `device` was heard at `now_ms`; true when its record on disk is
    /// stale enough to be written again.
    pub fn heard(&mut self, device: &str, now_ms: i64) -> bool {
        let Some(d) = self.devices.get_mut(device) else {
            return false;
        };
        d.heard = Some(d.heard.map_or(now_ms, |h| h.max(now_ms)));
        let step = (self.forget_after_ms / 10).max(1000);
        let stale = d.saved.is_none_or(|s| now_ms.saturating_sub(s) >= step);
        if stale {
            d.saved = d.heard;
        }
        stale
    }

    /// When `device` was last heard.
    pub fn heard_at(&self, device: &str) -> Option<i64> {
        self.devices.get(device).and_then(|d| d.heard)
    }

    /// Devices that `is_registered` says are not in `[[device]]` and were
    /// not heard for `forget_after` at `now_ms` (`0s`: none). A device
    /// never heard since the record began counts from `since_ms`, when
    /// this run started.
    pub fn expired(
        &mut self,
        now_ms: i64,
        since_ms: i64,
        is_registered: &dyn Fn(&str) -> bool,
    ) -> Vec<String> {
        if self.forget_after_ms <= 0 {
            return Vec::new();
        }
        let mut gone: Vec<String> = self
            .devices
            .iter()
            .filter(|(id, d)| {
                d.entities > 0
                    && now_ms.saturating_sub(d.heard.unwrap_or(since_ms)) >= self.forget_after_ms
                    && !is_registered(id)
            })
            .map(|(id, _)| id.clone())
            .collect();
        gone.sort();
        gone
    }

    /// Every entity of `device` was cleared.
    pub fn remove(&mut self, device: &str, registered: bool) {
        if let Some(d) = self.devices.remove(device) {
            if !registered {
                self.unregistered = self.unregistered.saturating_sub(d.entities);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fifty_onlines_make_one_announcement_and_one_more_at_most() {
        let mut r = Rediscovery::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let started: usize = (0..50)
            .map(|i| r.online(t0 + Duration::from_millis(i * 10)))
            .filter(|now| *now)
            .count();
        assert_eq!(started, 1);
        assert!(!r.owed(t0 + Duration::from_secs(59)));
        assert!(r.owed(t0 + Duration::from_secs(60)), "the burst's owed one");
        assert!(!r.owed(t0 + Duration::from_secs(200)), "owed once");
        // A real restart of Home Assistant later is answered at once.
        assert!(r.online(t0 + Duration::from_secs(300)));
    }

    #[test]
    fn made_up_ids_are_bounded_and_silent_ones_expire() {
        let hour = 3_600_000;
        let mut d = Devices::new(Duration::from_secs(24 * 3600), 3);
        for i in 0..3 {
            assert!(d.admits(&format!("junk-{i}"), false));
            d.add(&format!("junk-{i}"), false, None);
        }
        assert!(!d.admits("junk-3", false), "the fourth stranger waits");
        assert!(d.admits("kitchen", true), "a [[device]] device appears");
        d.add("kitchen", true, Some(0));
        let registered = |id: &str| id == "kitchen";
        // Heard now: junk-0 at 2 h, the others never.
        assert!(d.heard("junk-0", 2 * hour));
        assert!(!d.heard("junk-0", 2 * hour + 1000), "not saved each time");
        assert!(d.expired(25 * hour, 0, &registered) == ["junk-1", "junk-2"]);
        assert_eq!(
            d.expired(27 * hour, 0, &registered),
            ["junk-0", "junk-1", "junk-2"],
            "the registered kitchen stays"
        );
        d.remove("junk-1", false);
        assert!(d.admits("junk-4", false), "a forgotten device makes room");
        // Even a registered device's metric names are bounded.
        for _ in 1..MAX_ENTITIES_PER_DEVICE {
            d.add("kitchen", true, None);
        }
        assert!(
            !d.admits("kitchen", true),
            "one device, {MAX_ENTITIES_PER_DEVICE} entities"
        );
        assert!(d.admits("hall", true));
        assert!(!d.has("junk-1"));
        let mut never = Devices::new(Duration::ZERO, 3);
        never.add("x", false, Some(0));
        assert!(never.expired(i64::MAX, 0, &registered).is_empty());
    }
}
