//! Which redeliverable messages were already taken, so a copy that a
//! source sends again after a crash or a lost acknowledgement is not
//! counted twice.
//!
//! An MQTT broker resends an unacknowledged QoS 1 message in the same
//! packet-id slot with the DUP flag set. A copy is recognised by its slot
//! and content digest; a message without DUP is always new (a slot is
//! reused only after the broker saw our acknowledgement). Memory is bounded:
//! only the most recent slots are remembered, far more than any broker lets
//! be in flight at once.

use std::collections::VecDeque;
use std::sync::Arc;

use gateway_core::DeliveryKey;

/// The slot of content-addressed keys (TCP lines): MQTT packet ids are
/// never 0, so it is free. Lines have no slot of their own, and a resent
/// line is a copy when any remembered line of its source has its digest.
pub const CONTENT_SLOT: u16 = 0;

/// How many slots are remembered across all sources. Mosquitto allows 20
/// in flight per client by default and 65535 at most.
pub const REMEMBERED: usize = 8192;

/// The last [`REMEMBERED`] messages taken, oldest first.
///
/// A plain ring, searched from the newest entry backwards: only resent
/// copies (DUP) are looked up, which happens only after a reconnect, and
/// only for what was in flight then; in exchange each remembered slot costs
/// 32 bytes instead of the ~150 of a map plus an eviction queue, which
/// matters on a gateway sized for 15 MB.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Deliveries {
    taken: VecDeque<Taken>,
}

/// One remembered slot, as saved in the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub source: Arc<str>,
    pub slot: u16,
    pub digest: u64,
}

impl Deliveries {
    /// Whether `key` is a resent copy of a message already taken: the
    /// latest message taken in its slot had the same content.
    pub fn is_copy(&self, key: &DeliveryKey) -> bool {
        if key.slot == CONTENT_SLOT {
            return key.resent
                && self.taken.iter().rev().any(|t| {
                    t.slot == CONTENT_SLOT && t.digest == key.digest && t.source == key.source
                });
        }
        key.resent
            && self
                .taken
                .iter()
                .rev()
                .find(|t| t.slot == key.slot && t.source == key.source)
                .is_some_and(|t| t.digest == key.digest)
    }

    /// [`Self::is_copy`], and a copy's key becomes the newest remembered:
    /// a message resent at every reconnect of a reload storm, its receipt
    /// never reaching the broker in between, stays known for as long as it
    /// keeps coming instead of being forgotten behind the new messages
    /// taken meanwhile.
    pub fn recognise_copy(&mut self, key: &DeliveryKey) -> bool {
        if !self.is_copy(key) {
            return false;
        }
        let matching =
            |t: &Taken| t.slot == key.slot && t.source == key.source && t.digest == key.digest;
        if let Some(i) = self.taken.iter().rposition(matching) {
            if let Some(t) = self.taken.remove(i) {
                self.taken.push_back(t);
            }
        }
        true
    }

    /// Remembers a message as taken.
    pub fn record(&mut self, source: Arc<str>, slot: u16, digest: u64) {
        if self.taken.len() == REMEMBERED {
            self.taken.pop_front();
        } else if self.taken.capacity() == 0 {
            // Exactly the bound, once, rather than doubling past it.
            self.taken.reserve_exact(REMEMBERED);
        }
        self.taken.push_back(Taken {
            source,
            slot,
            digest,
        });
    }

    /// Forgets the newest record of `key`'s message: it was not taken
    /// after all, so its resend is new.
    pub fn forget(&mut self, key: &DeliveryKey) {
        if let Some(i) = self
            .taken
            .iter()
            .rposition(|t| t.slot == key.slot && t.digest == key.digest && t.source == key.source)
        {
            self.taken.remove(i);
        }
    }

    /// Forgets every slot of `source`: its session started afresh, so its
    /// next messages (packet ids from 1 again) are new whatever they carry.
    pub fn forget_source(&mut self, source: &str) {
        self.taken.retain(|t| &*t.source != source);
    }

    /// The remembered slots, oldest first.
    pub fn to_list(&self) -> Vec<Taken> {
        self.taken.iter().cloned().collect()
    }

    pub fn from_list(list: &[Taken]) -> Self {
        let mut d = Self::default();
        for t in list {
            d.record(t.source.clone(), t.slot, t.digest);
        }
        d
    }

    pub fn len(&self) -> usize {
        self.taken.len()
    }

    pub fn is_empty(&self) -> bool {
        self.taken.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(slot: u16, digest: u64, resent: bool) -> DeliveryKey {
        DeliveryKey {
            source: "local".into(),
            slot,
            digest,
            resent,
        }
    }

    #[test]
    fn only_a_resent_copy_of_the_same_content_is_a_copy() {
        let mut d = Deliveries::default();
        d.record("local".into(), 7, 99);
        assert!(d.is_copy(&key(7, 99, true)));
        assert!(!d.is_copy(&key(7, 99, false)), "a reused slot is new");
        assert!(!d.is_copy(&key(7, 98, true)), "different content");
        assert!(!d.is_copy(&key(8, 99, true)), "different slot");
        d.record("local".into(), 7, 5);
        assert!(!d.is_copy(&key(7, 99, true)), "the slot was reused");
    }

    #[test]
    fn a_new_session_of_one_source_makes_its_resends_new_and_keeps_the_others() {
        let mut d = Deliveries::default();
        d.record("local".into(), 7, 99);
        d.record("other".into(), 7, 99);
        d.forget_source("local");
        assert!(
            !d.is_copy(&key(7, 99, true)),
            "equal payloads are new readings"
        );
        let other = DeliveryKey {
            source: "other".into(),
            ..key(7, 99, true)
        };
        assert!(d.is_copy(&other), "another source's session is untouched");
    }

    #[test]
    fn content_addressed_keys_match_any_remembered_digest_of_their_source() {
        let mut d = Deliveries::default();
        d.record("lines".into(), CONTENT_SLOT, 11);
        d.record("lines".into(), CONTENT_SLOT, 12);
        let line = |digest, source: &str| DeliveryKey {
            source: source.into(),
            slot: CONTENT_SLOT,
            digest,
            resent: true,
        };
        assert!(d.is_copy(&line(11, "lines")), "not only the latest");
        assert!(d.is_copy(&line(12, "lines")));
        assert!(!d.is_copy(&line(13, "lines")));
        assert!(!d.is_copy(&line(11, "other")));
    }

    #[test]
    fn a_recognised_copy_is_remembered_anew_behind_what_came_since() {
        let mut d = Deliveries::default();
        d.record("local".into(), 7, 99);
        for i in 0..(REMEMBERED as u64 - 1) {
            d.record("local".into(), (100 + i % 60_000) as u16, i);
        }
        assert!(d.recognise_copy(&key(7, 99, true)), "still remembered");
        d.record("local".into(), 65_000, 1);
        assert!(
            d.is_copy(&key(7, 99, true)),
            "the copy made it the newest, so the next new message forgets another"
        );
        assert!(!d.recognise_copy(&key(7, 98, true)), "different content");
        assert_eq!(d.len(), REMEMBERED);
    }

    #[test]
    fn memory_is_bounded_and_survives_a_round_trip() {
        let mut d = Deliveries::default();
        for i in 0..(REMEMBERED as u64 + 100) {
            d.record("local".into(), (i % 65_535) as u16, i);
        }
        assert_eq!(d.len(), REMEMBERED);
        assert!(!d.is_copy(&key(0, 0, true)), "oldest forgotten");
        let last = REMEMBERED as u64 + 99;
        assert!(d.is_copy(&key(last as u16, last, true)));
        let back = Deliveries::from_list(&d.to_list());
        assert_eq!(back.to_list(), d.to_list());
        assert!(back.is_copy(&key(last as u16, last, true)));
    }
}
