//! Each device's availability and what Home Assistant's broker holds of
//! it (pure, time passed in). Every availability is a retained QoS 1
//! message: a device, or the link it hangs on, flapping 2 000 times made
//! 2 000 of them. Like the upstream's changes (`changes::MIN_INTERVAL`),
//! a device's availability goes at most once per [`MIN_INTERVAL`]; one
//! that changes sooner is held and goes when the interval has passed,
//! so the broker always ends at the device's last state, never a stale
//! one. Back at the state the broker holds, nothing is owed.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// Shortest time between two availabilities of one device.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Device {
    online: bool,
    /// What the broker was last handed; `None`: nothing, or it is to be
    /// told again (a re-announcement, a message that did not fit).
    published: Option<bool>,
    sent_at: Option<Instant>,
}

impl Device {
    fn owed(&self) -> bool {
        self.published != Some(self.online)
    }

    fn free(&self, now: Instant) -> bool {
        self.sent_at.is_none_or(|t| t + MIN_INTERVAL <= now)
    }
}

#[derive(Debug, Default)]
pub struct Availability {
    devices: HashMap<String, Device>,
}

impl Availability {
    /// Records a device's state: `true` when it is to be published now
    /// (else it is owed, or the broker has it already).
    pub fn set(&mut self, device: &str, online: bool, now: Instant) -> bool {
        let d = self.devices.entry(device.to_string()).or_insert(Device {
            online,
            published: None,
            sent_at: None,
        });
        d.online = online;
        d.owed() && d.free(now)
    }

    /// The broker was handed `online` for `device` at `now`.
    pub fn sent(&mut self, device: &str, online: bool, now: Instant) {
        if let Some(d) = self.devices.get_mut(device) {
            d.published = Some(online);
            d.sent_at = Some(now);
        }
    }

    /// Owed states whose interval has passed by `now` (`None`: every
    /// one), at most `max`.
    pub fn due(&self, now: Option<Instant>, max: usize) -> Vec<(String, bool)> {
        self.devices
            .iter()
            .filter(|(_, d)| d.owed() && now.is_none_or(|now| d.free(now)))
            .take(max)
            .map(|(id, d)| (id.clone(), d.online))
            .collect()
    }

    /// Every device's state is owed again (Home Assistant's broker may
    /// have restarted empty).
    pub fn resend_all(&mut self) {
        for d in self.devices.values_mut() {
            d.published = None;
        }
    }

    pub fn remove(&mut self, device: &str) {
        self.devices.remove(device);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_flap_within_the_interval_is_held_and_its_last_state_goes_when_due() {
        let mut a = Availability::default();
        let t0 = Instant::now();
        assert!(a.set("d", true, t0));
        a.sent("d", true, t0);
        // Within the interval: held, nothing due yet.
        assert!(!a.set("d", false, t0));
        assert!(a.due(Some(t0), 10).is_empty());
        // Back at what the broker holds: nothing owed at all.
        assert!(!a.set("d", true, t0));
        assert!(a.due(Some(t0 + MIN_INTERVAL), 10).is_empty());
        assert!(!a.set("d", false, t0));
        assert_eq!(
            a.due(Some(t0 + MIN_INTERVAL), 10),
            vec![("d".to_string(), false)]
        );
        a.resend_all();
        assert_eq!(a.due(Some(t0 + MIN_INTERVAL), 10).len(), 1);
    }
}
