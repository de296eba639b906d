//! Which redeliverable messages were already taken, so a copy that a
//! source sends again after a crash or a lost acknowledgement is not
//! counted twice.
//!
//! An MQTT broker resends an unacknowledged QoS 1 message in the same
//! packet-id slot with the DUP flag set. A copy is recognised by its slot
//! and content digest; a message without DUP is always new (a slot is
//! reused only after the broker saw our acknowledgement). Memory is bounded:
//! only the most recent slots of each source are remembered, far more than
//! any broker lets be in flight at once, and each source keeps its own
//! share, so one source's burst cannot push out another's copies.

use std::collections::VecDeque;
use std::sync::Arc;

use gateway_core::DeliveryKey;

/// The slot of content-addressed keys (TCP lines): MQTT packet ids are
/// never 0, so it is free. Lines have no slot of their own, and a resent
/// line is a copy when any remembered line of its source has its digest.
pub const CONTENT_SLOT: u16 = 0;

/// How many slots one source has remembered at most. Mosquitto allows 20
/// in flight per client by default and 65535 at most; an MQTT adapter
/// reads no further than 2 048 unacknowledged messages ahead
/// (`adapters::mqtt::source::MAX_UNACKED`), so a quarter of this is the
/// most one connection can leave for the broker to resend.
pub const REMEMBERED: usize = 8192;

/// How many slots all sources have remembered together. Past it, the
/// source remembering the most forgets its oldest: each of `n` sources
/// keeps at least `REMEMBERED_IN_ALL / n`, the 2 048 an MQTT adapter can
/// leave unacknowledged for up to eight adapters bursting at once. At 16
/// bytes a slot this is the 256 KiB the single ring of 8 192 slots (32
/// bytes each, with its source) took before.
pub const REMEMBERED_IN_ALL: usize = 2 * REMEMBERED;

/// The last messages taken, per source.
///
/// Plain rings, searched from the newest entry backwards: only resent
/// copies (DUP) are looked up, which happens only after a reconnect, and
/// only for what was in flight then; in exchange each remembered slot costs
/// 16 bytes instead of the ~150 of a map plus an eviction queue, which
/// matters on a gateway sized for 15 MB. Sources are few (one per
/// redeliverable adapter) and found by a short scan.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Deliveries {
    sources: Vec<Remembered>,
    /// Slots remembered over all sources.
    total: usize,
    /// The most sources remembered at once: what [`Self::assured`] is
    /// judged by, as a source forgotten since may have made others forget.
    most_sources: usize,
}

#[derive(Debug, Clone, PartialEq)]
struct Remembered {
    source: Arc<str>,
    /// Oldest first.
    taken: VecDeque<Slot>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    digest: u64,
    slot: u16,
}

/// One remembered slot, as saved in the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub source: Arc<str>,
    pub slot: u16,
    pub digest: u64,
}

impl Remembered {
    /// Where the remembered message `key` is a copy of, if it is one: for
    /// a packet id, the latest message taken in its slot had the same
    /// content; for a line, any remembered line had.
    fn copy_at(&self, key: &DeliveryKey) -> Option<usize> {
        if !key.resent {
            return None;
        }
        if key.slot == CONTENT_SLOT {
            return self
                .taken
                .iter()
                .rposition(|t| t.slot == CONTENT_SLOT && t.digest == key.digest);
        }
        let i = self.taken.iter().rposition(|t| t.slot == key.slot)?;
        (self.taken[i].digest == key.digest).then_some(i)
    }
}

impl Deliveries {
    fn of(&self, source: &Arc<str>) -> Option<usize> {
        self.sources
            .iter()
            .position(|r| Arc::ptr_eq(&r.source, source) || r.source == *source)
    }

    /// Whether `key` is a resent copy of a message already taken: the
    /// latest message taken in its slot had the same content.
    pub fn is_copy(&self, key: &DeliveryKey) -> bool {
        key.resent
            && self
                .of(&key.source)
                .is_some_and(|s| self.sources[s].copy_at(key).is_some())
    }

    /// [`Self::is_copy`], and a copy's key becomes the newest remembered:
    /// a message resent at every reconnect of a reload storm, its receipt
    /// never reaching the broker in between, stays known for as long as it
    /// keeps coming instead of being forgotten behind the new messages
    /// taken meanwhile.
    pub fn recognise_copy(&mut self, key: &DeliveryKey) -> bool {
        // Every message asks; only a resend is looked up.
        if !key.resent {
            return false;
        }
        let Some(s) = self.of(&key.source) else {
            return false;
        };
        let r = &mut self.sources[s];
        let Some(i) = r.copy_at(key) else {
            return false;
        };
        if let Some(t) = r.taken.remove(i) {
            r.taken.push_back(t);
        }
        true
    }

    /// Remembers a message as taken.
    pub fn record(&mut self, source: &Arc<str>, slot: u16, digest: u64) {
        let s = match self.of(source) {
            Some(s) => s,
            None => {
                self.sources.push(Remembered {
                    source: source.clone(),
                    taken: VecDeque::new(),
                });
                self.most_sources = self.most_sources.max(self.sources.len());
                self.sources.len() - 1
            }
        };
        let r = &mut self.sources[s];
        if r.taken.len() == REMEMBERED {
            r.taken.pop_front();
        } else {
            self.total += 1;
        }
        r.taken.push_back(Slot { digest, slot });
        if self.total > REMEMBERED_IN_ALL {
            self.forget_oldest_of_the_largest();
        }
    }

    /// Over [`REMEMBERED_IN_ALL`]: the source remembering the most (the
    /// one taking the most) gives up its oldest slot, so the others keep
    /// their share.
    fn forget_oldest_of_the_largest(&mut self) {
        let Some(r) = self.sources.iter_mut().max_by_key(|r| r.taken.len()) else {
            return;
        };
        if r.taken.pop_front().is_some() {
            self.total -= 1;
        }
        // Its ring grew while it had more room; what it keeps now is
        // bounded by the total, and so should its memory be: every ring
        // holds at most twice what it keeps (growth doubles too).
        let len = r.taken.len();
        if len * 2 <= r.taken.capacity() {
            r.taken.shrink_to(len + len / 4);
        }
    }

    /// How many keys taken after one are sure to leave it remembered
    /// (recognised copies moved behind it aside).
    pub fn assured(&self) -> usize {
        REMEMBERED.min(REMEMBERED_IN_ALL / self.most_sources.max(1))
    }

    /// Forgets the newest record of `key`'s message: it was not taken
    /// after all, so its resend is new.
    pub fn forget(&mut self, key: &DeliveryKey) {
        let Some(s) = self.of(&key.source) else {
            return;
        };
        let r = &mut self.sources[s];
        if let Some(i) = r
            .taken
            .iter()
            .rposition(|t| t.slot == key.slot && t.digest == key.digest)
        {
            r.taken.remove(i);
            self.total -= 1;
        }
    }

    /// Forgets every slot of `source`: its session started afresh, so its
    /// next messages (packet ids from 1 again) are new whatever they carry.
    pub fn forget_source(&mut self, source: &str) {
        if let Some(s) = self.sources.iter().position(|r| &*r.source == source) {
            let r = self.sources.swap_remove(s);
            self.total -= r.taken.len();
        }
    }

    /// The remembered slots, each source's oldest first.
    pub fn to_list(&self) -> Vec<Taken> {
        let mut list = Vec::with_capacity(self.total);
        for r in &self.sources {
            list.extend(r.taken.iter().map(|t| Taken {
                source: r.source.clone(),
                slot: t.slot,
                digest: t.digest,
            }));
        }
        list
    }

    /// From [`Self::to_list`], or the single list of every source (oldest
    /// first) an older version saved: each source's order is the same.
    pub fn from_list(list: &[Taken]) -> Self {
        let mut d = Self::default();
        for t in list {
            d.record(&t.source, t.slot, t.digest);
        }
        d
    }

    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
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
        d.record(&"local".into(), 7, 99);
        assert!(d.is_copy(&key(7, 99, true)));
        assert!(!d.is_copy(&key(7, 99, false)), "a reused slot is new");
        assert!(!d.is_copy(&key(7, 98, true)), "different content");
        assert!(!d.is_copy(&key(8, 99, true)), "different slot");
        d.record(&"local".into(), 7, 5);
        assert!(!d.is_copy(&key(7, 99, true)), "the slot was reused");
    }

    #[test]
    fn a_new_session_of_one_source_makes_its_resends_new_and_keeps_the_others() {
        let mut d = Deliveries::default();
        d.record(&"local".into(), 7, 99);
        d.record(&"other".into(), 7, 99);
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
        d.record(&"lines".into(), CONTENT_SLOT, 11);
        d.record(&"lines".into(), CONTENT_SLOT, 12);
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
        d.record(&"local".into(), 7, 99);
        for i in 0..(REMEMBERED as u64 - 1) {
            d.record(&"local".into(), (100 + i % 60_000) as u16, i);
        }
        assert!(d.recognise_copy(&key(7, 99, true)), "still remembered");
        d.record(&"local".into(), 65_000, 1);
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
            d.record(&"local".into(), (i % 65_535) as u16, i);
        }
        assert_eq!(d.len(), REMEMBERED);
        assert!(!d.is_copy(&key(0, 0, true)), "oldest forgotten");
        let last = REMEMBERED as u64 + 99;
        assert!(d.is_copy(&key(last as u16, last, true)));
        let back = Deliveries::from_list(&d.to_list());
        assert_eq!(back.to_list(), d.to_list());
        assert!(back.is_copy(&key(last as u16, last, true)));
    }

    fn from(source: &str, slot: u16, digest: u64) -> DeliveryKey {
        DeliveryKey {
            source: source.into(),
            slot,
            digest,
            resent: true,
        }
    }

    /// Eight MQTT adapters each left 2 048 messages unacknowledged (their
    /// read-ahead bound) at a reload, then seven took far more before the
    /// first one's broker resent: its copies are still known. In the one
    /// ring of 8 192 shared by all, every one of them was forgotten.
    #[test]
    fn other_sources_bursting_leave_each_source_its_share() {
        const MAX_UNACKED: u64 = 2048;
        let sources: Vec<Arc<str>> = (0..8).map(|i| format!("s{i}").into()).collect();
        let mut d = Deliveries::default();
        for i in 0..MAX_UNACKED {
            for s in &sources {
                d.record(s, 1 + i as u16, i);
            }
        }
        for i in 0..(REMEMBERED as u64 * 3) {
            for s in &sources[1..] {
                d.record(s, 1 + (i % 60_000) as u16, 1_000_000 + i);
            }
        }
        for i in 0..MAX_UNACKED {
            assert!(d.is_copy(&from("s0", 1 + i as u16, i)), "{i}");
        }
        assert_eq!(d.len(), REMEMBERED_IN_ALL);
        assert_eq!(d.assured(), MAX_UNACKED as usize);
        let allocated: usize = d.sources.iter().map(|r| r.taken.capacity()).sum();
        // Each ring shrank towards its share: 312 KiB for 256 KiB kept.
        assert!(allocated <= REMEMBERED_IN_ALL * 5 / 4, "{allocated}");
    }

    #[test]
    fn one_source_alone_remembers_its_own_bound_and_no_more() {
        let mut d = Deliveries::default();
        let a: Arc<str> = "a".into();
        for i in 0..(REMEMBERED as u64 + 1) {
            d.record(&a, 1 + (i % 60_000) as u16, i);
        }
        assert_eq!(d.len(), REMEMBERED);
        assert!(!d.is_copy(&from("a", 1, 0)), "the oldest forgotten");
        assert!(d.is_copy(&from("a", 2, 1)));
        assert_eq!(d.assured(), REMEMBERED);
    }

    /// Many sources over time (renames, adapters added by reloads) never
    /// hold more than the total bound, in slots or in allocated memory.
    #[test]
    fn memory_stays_bounded_however_many_sources_take() {
        let mut d = Deliveries::default();
        for round in 0..3u64 {
            for s in 0..40 {
                let source: Arc<str> = format!("s{s}").into();
                for i in 0..3000u64 {
                    d.record(&source, 1 + i as u16, round * 10_000 + i);
                }
            }
        }
        assert_eq!(d.len(), REMEMBERED_IN_ALL);
        let allocated: usize = d.sources.iter().map(|r| r.taken.capacity()).sum();
        assert!(allocated <= 2 * REMEMBERED_IN_ALL, "{allocated}");
        assert_eq!(std::mem::size_of::<Slot>(), 16);
        for s in 0..40 {
            d.forget_source(&format!("s{s}"));
        }
        assert!(d.is_empty());
        assert!(d.sources.is_empty(), "a forgotten source costs nothing");
    }

    /// An older version saved one list of every source, interleaved,
    /// oldest first: read back, each source keeps its own order, so the
    /// latest message of a slot is still the one that counts.
    #[test]
    fn a_list_saved_by_an_older_version_reads_back_per_source() {
        let list: Vec<Taken> = [("a", 7, 1), ("b", 7, 2), ("a", 7, 3), ("b", 8, 4)]
            .into_iter()
            .map(|(source, slot, digest)| Taken {
                source: source.into(),
                slot,
                digest,
            })
            .collect();
        let d = Deliveries::from_list(&list);
        assert!(d.is_copy(&from("a", 7, 3)));
        assert!(!d.is_copy(&from("a", 7, 1)), "slot 7 of a was reused");
        assert!(d.is_copy(&from("b", 7, 2)));
        assert!(d.is_copy(&from("b", 8, 4)));
        assert_eq!(d.len(), 4);
        let again = Deliveries::from_list(&d.to_list());
        assert_eq!(again.to_list(), d.to_list());
    }
}
