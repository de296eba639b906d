//! Which COV notifications are the gateway's: one process id per
//! subscription (a device's object), and a notification taken only when
//! it comes from the address that subscription was made at, for its
//! device instance and its object. Anything else under one of our process
//! ids is foreign: a stranger that learnt or guessed an id (process ids
//! travel in clear and are not secret), a notification claiming another
//! device, or another object's value under this object's id. It is
//! counted by why (`cov_foreign`) and never becomes a reading; a
//! confirmed one gets an Error, not the SimpleACK of an accepted one.
//!
//! A process id none of our subscriptions holds (a previous run's, which
//! lapses at the device) is only `unknown`: acknowledged and ignored
//! (FAULTS.md), as before.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};

use super::services::CovNotification;
use super::tags::ObjectId;

/// Why a notification under one of our process ids was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreign {
    /// Not from the address the subscription was made at.
    Address,
    /// Claims another device instance than the subscribed one.
    Device,
    /// Another object than the one subscribed under this process id.
    Object,
}

impl Foreign {
    /// The `reason` label it is counted under.
    pub fn label(self) -> &'static str {
        match self {
            Self::Address => "address",
            Self::Device => "device",
            Self::Object => "object",
        }
    }
}

/// What the client does with a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// One of ours: from the device (its instance) for the object subscribed.
    Ours(u32),
    /// No subscription of this run has the process id.
    Unknown,
    Foreign(Foreign),
}

#[derive(Debug, Clone, Copy)]
struct Subscription {
    instance: u32,
    object: ObjectId,
    /// Where the device was when subscribed.
    peer: SocketAddr,
}

#[derive(Debug, Default)]
struct Inner {
    next: u32,
    ids: HashMap<(u32, ObjectId), u32>,
    subscriptions: HashMap<u32, Subscription>,
}

/// The adapter's subscriptions, shared by the device tasks (which
/// subscribe) and the client's receive task (which judges).
#[derive(Debug)]
pub struct CovRegistry {
    /// A range of ids per gateway run: a previous run's subscriptions,
    /// which keep notifying until they lapse, mostly fall outside it.
    base: u32,
    inner: Mutex<Inner>,
    /// The BBMD the adapter registers with: the one sender whose
    /// Forwarded-NPDU's origin address is believed (anyone can write an
    /// origin address into a datagram).
    bbmd: OnceLock<SocketAddr>,
}

/// Ids per run: a million subscriptions (a site of 2 500 controllers with
/// 400 points each) before they wrap into the run's own earlier ids.
const IDS_PER_RUN: u32 = 1 << 20;

impl Default for CovRegistry {
    fn default() -> Self {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self::with_base(((secs & 0xFFF) as u32) << 20)
    }
}

impl CovRegistry {
    pub fn with_base(base: u32) -> Self {
        Self {
            base,
            inner: Mutex::default(),
            bbmd: OnceLock::new(),
        }
    }

    /// Believes the origin address of what `bbmd` forwards.
    pub fn trust_forwarder(&self, bbmd: SocketAddr) {
        let _ = self.bbmd.set(bbmd);
    }

    /// Whether `udp` is the BBMD the adapter registers with.
    pub fn is_forwarder(&self, udp: SocketAddr) -> bool {
        self.bbmd.get() == Some(&udp)
    }

    /// Who sent a datagram that came from `udp` with `origin` in its
    /// Forwarded-NPDU header: the origin only when the configured BBMD
    /// forwarded it.
    pub fn sender(&self, udp: SocketAddr, origin: Option<SocketAddr>) -> SocketAddr {
        match origin {
            Some(o) if self.bbmd.get() == Some(&udp) => o,
            _ => udp,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The process id to subscribe `object` of device `instance` at
    /// `peer` with: the same one for every renewal in this run (a
    /// renewal must find the device's existing subscription, not add
    /// one), and from now on only `peer` may notify under it. Set before
    /// the request goes out: the device notifies at once, often before
    /// its SimpleACK is read.
    pub fn subscribe(&self, instance: u32, object: ObjectId, peer: SocketAddr) -> u32 {
        let mut inner = self.lock();
        let id = match inner.ids.get(&(instance, object)) {
            Some(id) => *id,
            None => {
                let id = self.base.wrapping_add(inner.next % IDS_PER_RUN);
                inner.next = inner.next.wrapping_add(1);
                inner.ids.insert((instance, object), id);
                id
            }
        };
        inner.subscriptions.insert(
            id,
            Subscription {
                instance,
                object,
                peer,
            },
        );
        id
    }

    /// Judges a notification that came from `from`.
    pub fn check(&self, from: SocketAddr, n: &CovNotification) -> Verdict {
        let inner = self.lock();
        let Some(s) = inner.subscriptions.get(&n.process_id) else {
            return Verdict::Unknown;
        };
        if s.peer != from {
            Verdict::Foreign(Foreign::Address)
        } else if n.device != ObjectId::device(s.instance) {
            Verdict::Foreign(Foreign::Device)
        } else if n.object != s.object {
            Verdict::Foreign(Foreign::Object)
        } else {
            Verdict::Ours(s.instance)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn notification(process_id: u32, device: u32, object: &str) -> CovNotification {
        CovNotification {
            process_id,
            device: ObjectId::device(device),
            object: object.parse().unwrap(),
            time_remaining: 60,
            values: Vec::new(),
        }
    }

    #[test]
    fn one_process_id_per_subscription_kept_over_renewals_and_judged_on_all_three() {
        let cov = CovRegistry::with_base(7 << 20);
        let device: SocketAddr = "10.0.0.5:47808".parse().unwrap();
        let stranger: SocketAddr = "10.0.0.66:47808".parse().unwrap();
        let ai1 = "analog-input:1".parse().unwrap();
        let ai2 = "analog-input:2".parse().unwrap();
        let a = cov.subscribe(1001, ai1, device);
        let b = cov.subscribe(1001, ai2, device);
        assert_ne!(a, b, "one id per object");
        assert_eq!(cov.subscribe(1001, ai1, device), a, "renewed under its id");
        assert_eq!(a >> 20, 7, "within the run's range");

        let ok = notification(a, 1001, "analog-input:1");
        assert_eq!(cov.check(device, &ok), Verdict::Ours(1001));
        assert_eq!(cov.check(stranger, &ok), Verdict::Foreign(Foreign::Address));
        assert_eq!(
            cov.check(device, &notification(a, 1002, "analog-input:1")),
            Verdict::Foreign(Foreign::Device)
        );
        assert_eq!(
            cov.check(device, &notification(a, 1001, "analog-input:2")),
            Verdict::Foreign(Foreign::Object)
        );
        assert_eq!(
            cov.check(device, &notification(a ^ 0xFF, 1001, "analog-input:1")),
            Verdict::Unknown
        );
        // The device found again elsewhere: only its new address counts.
        let moved: SocketAddr = "10.0.0.9:47808".parse().unwrap();
        assert_eq!(cov.subscribe(1001, ai1, moved), a);
        assert_eq!(cov.check(moved, &ok), Verdict::Ours(1001));
        assert_eq!(cov.check(device, &ok), Verdict::Foreign(Foreign::Address));
    }

    #[test]
    fn a_forwarded_origin_is_believed_only_from_the_configured_bbmd() {
        let cov = CovRegistry::with_base(0);
        let device: SocketAddr = "10.0.0.5:47808".parse().unwrap();
        let stranger: SocketAddr = "10.0.0.66:47808".parse().unwrap();
        let bbmd: SocketAddr = "10.0.0.1:47808".parse().unwrap();
        // A stranger writing the device's address as the origin of a
        // Forwarded-NPDU is still the stranger.
        assert_eq!(cov.sender(stranger, Some(device)), stranger);
        assert_eq!(cov.sender(bbmd, Some(device)), bbmd, "no BBMD configured");
        cov.trust_forwarder(bbmd);
        assert_eq!(cov.sender(bbmd, Some(device)), device);
        assert_eq!(cov.sender(stranger, Some(device)), stranger);
        assert_eq!(cov.sender(device, None), device);
    }
}
