//! Which address a device is read and written at when more than one
//! answers for its instance.
//!
//! BACnet/IP has no authentication: any host on the network can answer a
//! Who-Is, or announce itself unasked, under any device instance. Two
//! answerers for one instance is what BACnet tools report as a duplicate
//! device ID (two controllers left at one instance), or a forger. Taking
//! the first answer, as the gateway did, read whichever came first and
//! wrote the cloud's commands to it. So a device found by Who-Is is bound
//! only when a single address answers; once a second one answers (in the
//! same Who-Is round, or an I-Am from another address while it is read)
//! the device is ambiguous: neither read nor written, warned about and
//! counted (`duplicate_device`), until a later Who-Is draws one answer
//! again. A configured `address` is never replaced: other answerers are
//! warned about and counted, the device is read at its address.

use std::net::SocketAddr;
use std::sync::Arc;

use gateway_core::telemetry::LogThrottle;
use gateway_core::AdapterStats;
use tracing::info;

use super::writer::DeviceLink;

/// The adapter error counted for each I-Am round or announcement that
/// shows a second address for a device's instance.
pub const DUPLICATE: &str = "duplicate_device";

/// Distinct answerers kept from one round: enough to name them in the
/// warning; a flood of forged I-Ams grows nothing.
const KEPT: usize = 8;

/// The distinct addresses that answered one Who-Is for an instance.
#[derive(Debug, Default)]
pub struct Answers {
    seen: Vec<(SocketAddr, usize)>,
}

/// What one Who-Is round says about where the device is.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Silent,
    /// One address, and the max APDU its I-Am gave.
    One(SocketAddr, usize),
    Several(Vec<SocketAddr>),
}

impl Answers {
    pub fn add(&mut self, from: SocketAddr, max_apdu: usize) {
        if self.seen.len() < KEPT && !self.seen.iter().any(|(a, _)| *a == from) {
            self.seen.push((from, max_apdu));
        }
    }

    pub fn verdict(&self) -> Verdict {
        match self.seen.as_slice() {
            [] => Verdict::Silent,
            [(a, apdu)] => Verdict::One(*a, *apdu),
            all => Verdict::Several(all.iter().map(|(a, _)| *a).collect()),
        }
    }
}

/// One device's binding: its configured address, or the answerers while
/// more than one answers for its instance.
pub struct Binding {
    instance: u32,
    configured: Option<SocketAddr>,
    /// What the writes see: the conflict, while there is one.
    link: Arc<DeviceLink>,
    stats: AdapterStats,
    throttle: LogThrottle,
    adapter: String,
    device: String,
    conflict: Option<Vec<SocketAddr>>,
}

impl Binding {
    pub fn new(
        instance: u32,
        configured: Option<SocketAddr>,
        link: Arc<DeviceLink>,
        stats: AdapterStats,
        adapter: &str,
        device: &str,
    ) -> Self {
        Self {
            instance,
            configured,
            link,
            stats,
            throttle: LogThrottle::default(),
            adapter: adapter.to_string(),
            device: device.to_string(),
            conflict: None,
        }
    }

    /// Where a device found by Who-Is is read after a round that drew
    /// `answers`, with its max APDU; `None` while none or several answer.
    /// A single answerer resolves an earlier conflict.
    pub fn settle(&mut self, answers: &Answers) -> Option<(SocketAddr, usize)> {
        match answers.verdict() {
            Verdict::Silent => None,
            Verdict::One(address, apdu) => {
                if let Some(was) = self.conflict.take() {
                    self.link.conflict(Vec::new());
                    info!(adapter = %self.adapter, device = %self.device, instance = self.instance, %address, before = ?was, "BACnet duplicate device instance resolved: a single address answers Who-Is again; the device is read and written there.");
                }
                Some((address, apdu))
            }
            Verdict::Several(all) => {
                self.ambiguous(all);
                None
            }
        }
    }

    /// An I-Am for the instance from `from` while the device is read at
    /// `bound`: whether it is read on.
    pub fn heard(&mut self, bound: SocketAddr, from: SocketAddr) -> bool {
        if from == bound {
            return true;
        }
        if self.configured.is_some() {
            gateway_core::refuse!(self.stats, self.throttle, DUPLICATE, per "configured";
                adapter = %self.adapter, device = %self.device, instance = self.instance, address = %bound, other = %from,
                "Another address announces this BACnet device instance (a duplicate device instance on the network, or a forger): the configured address kept, the other neither read nor written.");
            return true;
        }
        self.ambiguous(vec![bound, from]);
        false
    }

    fn ambiguous(&mut self, all: Vec<SocketAddr>) {
        gateway_core::refuse!(self.stats, self.throttle, DUPLICATE, per "ambiguous";
            adapter = %self.adapter, device = %self.device, instance = self.instance, addresses = ?all,
            "Duplicate BACnet device instance: more than one address answers for it (two controllers at one instance, or a forger). The device is neither read nor written until a Who-Is draws a single answer again; give its `address` in its [[bacnet.device]] to say which it is.");
        self.link.conflict(all.clone());
        self.conflict = Some(all);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use gateway_core::component::ADAPTER_ERRORS;
    use gateway_core::telemetry::Telemetry;

    fn at(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 168, 1, 40], port))
    }

    fn binding(configured: Option<SocketAddr>) -> (Binding, Arc<DeviceLink>, Telemetry) {
        let telemetry = Telemetry::default();
        let link = Arc::new(DeviceLink::default());
        let stats = AdapterStats::new(&telemetry, "bms");
        let b = Binding::new(7, configured, link.clone(), stats, "bms", "ahu");
        (b, link, telemetry)
    }

    fn duplicates(t: &Telemetry) -> u64 {
        t.counter(ADAPTER_ERRORS, &[("adapter", "bms"), ("error_type", DUPLICATE)])
            .get()
    }

    #[test]
    fn one_address_answering_however_often_binds_it() {
        let mut a = Answers::default();
        assert_eq!(a.verdict(), Verdict::Silent);
        a.add(at(1), 480);
        a.add(at(1), 1476);
        assert_eq!(a.verdict(), Verdict::One(at(1), 480));
        let (mut b, link, t) = binding(None);
        assert_eq!(b.settle(&a), Some((at(1), 480)));
        assert_eq!(duplicates(&t), 0);
        assert!(link.conflicting().is_empty());
    }

    #[test]
    fn two_addresses_in_one_round_bind_neither_until_one_answers_alone() {
        let mut a = Answers::default();
        a.add(at(1), 1476);
        a.add(at(2), 1476);
        let (mut b, link, t) = binding(None);
        assert_eq!(b.settle(&a), None);
        assert_eq!(duplicates(&t), 1);
        assert_eq!(link.conflicting(), vec![at(1), at(2)]);
        // Nobody answers: still ambiguous, not resolved by silence.
        assert_eq!(b.settle(&Answers::default()), None);
        assert_eq!(link.conflicting(), vec![at(1), at(2)]);
        // Both again: counted again.
        assert_eq!(b.settle(&a), None);
        assert_eq!(duplicates(&t), 2);
        let mut alone = Answers::default();
        alone.add(at(2), 1476);
        assert_eq!(b.settle(&alone), Some((at(2), 1476)));
        assert!(link.conflicting().is_empty());
    }

    #[test]
    fn an_announcement_from_another_address_stops_a_discovered_device() {
        let (mut b, link, t) = binding(None);
        assert!(b.heard(at(1), at(1)), "its own I-Am (a restart)");
        assert_eq!(duplicates(&t), 0);
        assert!(!b.heard(at(1), at(9)));
        assert_eq!(duplicates(&t), 1);
        assert_eq!(link.conflicting(), vec![at(1), at(9)]);
    }

    #[test]
    fn a_configured_address_is_never_replaced_only_counted() {
        let (mut b, link, t) = binding(Some(at(1)));
        for _ in 0..3 {
            assert!(b.heard(at(1), at(9)));
        }
        assert_eq!(duplicates(&t), 3);
        assert!(link.conflicting().is_empty());
    }

    #[test]
    fn a_flood_of_answerers_keeps_a_few() {
        let mut a = Answers::default();
        for p in 0..10_000 {
            a.add(at(p), 1476);
        }
        match a.verdict() {
            Verdict::Several(all) => assert_eq!(all.len(), KEPT),
            v => panic!("{v:?}"),
        }
    }
}
