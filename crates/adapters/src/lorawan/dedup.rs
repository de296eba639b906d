//! De-duplication of one uplink heard by several forwarders.
//!
//! A device's transmission reaches every gateway in range; each forwards
//! the same PHYPayload bytes. The first copy opens a collection window
//! (ChirpStack's 200 ms by default); copies within it only add their
//! gateway and signal; when it closes the uplink is processed once, with
//! the best RSSI and SNR. A copy arriving after the window is a new
//! candidate, which the frame counter then refuses as a retransmission.
//!
//! Keyed by the PHYPayload bytes alone: frequency and data rate are the
//! same for real copies, and a forged copy differing only there would add
//! nothing but a gateway to the list. Bounded: a flood of distinct frames
//! costs at most `capacity` pending entries; beyond that new frames are
//! refused (and counted by the caller) rather than older ones lost.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::time::Duration;

use gateway_core::hash::SeededState;
use gateway_core::Timestamp;
use hashbrown::HashTable;
/// Re-exported so callers building an [`Uplink`] need no tokio of their own.
pub use tokio::time::Instant;

use super::downlink::Heard;
use super::semtech::GatewayEui;

/// One forwarder's reception of a frame: its signal, and what a reply
/// through it needs (`tmst`, channel, data rate).
pub type Reception = Heard;

/// The forwarders that heard a frame, the first held inline: a building's
/// frame is usually heard by one, and a list of its own was an allocation
/// and a free an uplink (callgrind, issue 69).
pub type HeardList = smallvec::SmallVec<[Heard; 1]>;

/// A frame with every reception of it in the window.
#[derive(Debug, Clone, PartialEq)]
pub struct Uplink {
    pub phy: Vec<u8>,
    /// Best RSSI over the receptions, dBm.
    pub rssi: Option<i16>,
    /// Best SNR over the receptions, dB.
    pub snr: Option<f64>,
    /// Wall time of the first reception: the readings' time.
    pub received: Timestamp,
    /// Each forwarder's best reception, in the order they first heard it:
    /// the path of a reply is chosen among them, and they are the
    /// forwarders of [`Uplink::gateways`].
    pub heard: HeardList,
    /// When the first copy arrived here: how much of the receive delay
    /// is left for a reply.
    pub first_heard: Instant,
}

impl Uplink {
    /// Forwarders that heard it, in arrival order, each once. Read from
    /// [`Uplink::heard`]: a list of their own was an allocation and a free
    /// an uplink (callgrind, issue 69).
    pub fn gateways(&self) -> impl ExactSizeIterator<Item = GatewayEui> + '_ {
        self.heard.iter().map(|h| h.gateway)
    }

    fn add(&mut self, rx: Reception) {
        self.rssi = self.rssi.max(rx.rssi);
        self.snr = match (self.snr, rx.snr) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let full = self.heard.len() >= MAX_HEARD;
        match self.heard.iter_mut().find(|h| h.gateway == rx.gateway) {
            // The same forwarder twice (its retransmission): keep one.
            Some(h) => {
                if rx.snr > h.snr {
                    *h = rx;
                }
            }
            None if !full => self.heard.push(rx),
            // Full: the weakest gives way to a better one, so a reply still
            // takes one of the best paths.
            None => {
                if let Some(weakest) = self.heard.iter_mut().min_by_key(|h| h.score()) {
                    if rx.score() > weakest.score() {
                        *weakest = rx;
                    }
                }
            }
        }
    }
}

/// Forwarders kept for one frame. A real frame reaches a handful; with
/// `gateways` unset any EUI may forward, and copies of one frame under
/// ever new EUIs grew its list for the whole window, each entry kept and
/// scanned for every later copy.
pub const MAX_HEARD: usize = 32;

/// What [`Dedup::offer`] did with a reception.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// The first copy: a window opened.
    New,
    /// A copy of a frame already waiting.
    Duplicate,
    /// Too many frames waiting; this one was dropped.
    Full,
}

/// Frames waiting for their window to close.
///
/// Each frame's bytes are held once, in its [`Uplink`], in a queue in
/// arrival order (hence deadline order); an index holds each frame's
/// sequence number, placed by a keyed hash of its bytes. A table keyed by
/// the bytes needed a second copy of them in the queue of deadlines (an
/// allocation and a copy an uplink) and hashed them twice (issue 69).
#[derive(Debug)]
pub struct Dedup {
    window: Duration,
    capacity: usize,
    /// Seeded at random per process (`gateway_core::hash`, as the CoAP
    /// duplicate cache's): frames made to collide in the index cannot be
    /// computed offline, and a collision costs a comparison of bytes,
    /// never a wrong answer, in a table of bounded size. SipHash was about
    /// 230 instructions a frame, a fifth of the de-duplication (issue 69).
    hasher: SeededState,
    /// Frames waiting, oldest first.
    waiting: VecDeque<Waiting>,
    /// The sequence number of `waiting`'s front; each frame gets the next.
    front: u64,
    /// The waiting frames' sequence numbers, placed by their hash (kept in
    /// [`Waiting`]). Eight bytes a frame: a map from the hash to a list of
    /// places was forty, and in a burst's tens of thousands of waiting
    /// frames its lookups were cache misses (`perf`, issue 69).
    index: HashTable<u64>,
    /// Tests only: hash every frame by its length, so frames collide.
    #[cfg(test)]
    collide: bool,
}

#[derive(Debug)]
struct Waiting {
    deadline: Instant,
    hash: u64,
    up: Uplink,
}

/// Waiting frames below which the queue and index give back what a burst
/// grew them to: a few KiB kept, so a steady flow never reallocates.
const KEPT_CAPACITY: usize = 64;

impl Dedup {
    pub fn new(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity: capacity.max(1),
            hasher: SeededState::default(),
            waiting: VecDeque::new(),
            front: 0,
            index: HashTable::new(),
            #[cfg(test)]
            collide: false,
        }
    }

    fn hash(&self, phy: &[u8]) -> u64 {
        #[cfg(test)]
        if self.collide {
            return phy.len() as u64;
        }
        self.hasher.hash_one(phy)
    }

    /// Adds one reception of `phy`, heard at `now` (wall time `arrival`).
    /// `phy` is taken as is (a `Vec` costs no copy) and kept in the
    /// [`Uplink`].
    pub fn offer(
        &mut self,
        phy: impl Into<Vec<u8>> + AsRef<[u8]>,
        rx: Reception,
        arrival: Timestamp,
        now: Instant,
    ) -> Offer {
        let hash = self.hash(phy.as_ref());
        let (waiting, front) = (&self.waiting, self.front);
        let at = |seq: u64| place(seq, front);
        let found = self.index.find(hash, |&seq| {
            at(seq)
                .and_then(|i| waiting.get(i))
                .is_some_and(|w| w.hash == hash && w.up.phy == phy.as_ref())
        });
        if let Some(w) = found.copied().and_then(at).and_then(|i| self.waiting.get_mut(i)) {
            w.up.add(rx);
            return Offer::Duplicate;
        }
        if self.waiting.len() >= self.capacity {
            return Offer::Full;
        }
        let seq = self.front + self.waiting.len() as u64;
        let mut up = Uplink {
            phy: phy.into(),
            rssi: None,
            snr: None,
            received: arrival,
            heard: HeardList::new(),
            first_heard: now,
        };
        up.add(rx);
        self.waiting.push_back(Waiting {
            deadline: gateway_core::deadline::after(now, self.window),
            hash,
            up,
        });
        let (waiting, front) = (&self.waiting, self.front);
        self.index.insert_unique(hash, seq, |&s| rehash(waiting, front, s));
        Offer::New
    }

    /// The oldest waiting frame, out of the queue and the index.
    fn pop_front(&mut self) -> Option<Uplink> {
        let w = self.waiting.pop_front()?;
        unindex(&mut self.index, w.hash, self.front);
        self.front += 1;
        Some(w.up)
    }

    /// The `n` oldest waiting frames, out of the queue and the index, in
    /// one list: each frame moved once, straight into it, where a pop at
    /// a time moved it three times (callgrind, issue 69).
    fn take_front(&mut self, n: usize) -> Vec<Uplink> {
        let front = self.front;
        self.front += n as u64;
        let index = &mut self.index;
        let taken = self
            .waiting
            .drain(..n)
            .zip(front..)
            .map(|(w, seq)| {
                unindex(index, w.hash, seq);
                w.up
            })
            .collect();
        self.give_back_burst();
        taken
    }

    /// Once a burst has passed, the queue and index shrink to what is
    /// left (twice it, so the next frames do not grow them at once): a
    /// LoRaWAN burst's tens of thousands of waiting frames grew them to
    /// about 10 MB, held for good (issue 69). Only when they are four
    /// times too large, so a steady flow never shrinks and regrows them.
    fn give_back_burst(&mut self) {
        let keep = (self.waiting.len() * 2).max(KEPT_CAPACITY);
        if self.waiting.capacity() >= keep * 4 {
            self.waiting.shrink_to(keep);
        }
        if self.index.capacity() >= keep * 4 {
            let (waiting, front) = (&self.waiting, self.front);
            self.index.shrink_to(keep, |&s| rehash(waiting, front, s));
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.waiting.front().map(|w| w.deadline)
    }

    /// The oldest frame whose window has closed by `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Uplink> {
        if self.waiting.front()?.deadline > now {
            return None;
        }
        self.pop_front()
    }

    /// Every frame whose window has closed by `now`, oldest first: the
    /// list sized once, where one grown by a push at a time was copied
    /// over and over in a burst (about 400 instructions an uplink,
    /// callgrind, issue 69). Frames wait in arrival order, so their
    /// deadlines are in order too and the closed ones are a prefix.
    pub fn pop_all_due(&mut self, now: Instant) -> Vec<Uplink> {
        let due = self.waiting.partition_point(|w| w.deadline <= now);
        self.take_front(due)
    }

    /// Every waiting frame, oldest first, windows closed or not (shutdown).
    pub fn drain(&mut self) -> Vec<Uplink> {
        self.take_front(self.waiting.len())
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

/// Forgets the frame `seq` of hash `hash`.
fn unindex(index: &mut HashTable<u64>, hash: u64, seq: u64) {
    if let Ok(entry) = index.find_entry(hash, |&s| s == seq) {
        entry.remove();
    }
}

/// Where frame `seq` waits when the oldest waiting is `front`. An index
/// entry older than the front (a broken invariant) is then not found, in
/// a debug build as in release, rather than an overflow panicking the
/// listener.
fn place(seq: u64, front: u64) -> Option<usize> {
    usize::try_from(seq.checked_sub(front)?).ok()
}

/// The hash of the waiting frame `seq`, for the index to move it when it
/// grows or shrinks. Every indexed frame is waiting; a frame that were not
/// would hash to 0 and only be found slower, never wrongly.
fn rehash(waiting: &VecDeque<Waiting>, front: u64, seq: u64) -> u64 {
    place(seq, front)
        .and_then(|i| waiting.get(i))
        .map_or(0, |w| w.hash)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tokio::time::advance;

    fn rx(gw: u8, rssi: i16, snr: f64) -> Reception {
        Reception {
            gateway: GatewayEui([gw; 8]),
            rssi: Some(rssi),
            snr: Some(snr),
            tmst: Some(1),
            freq: Some(868.1),
            datr: Some("SF7BW125".into()),
            rfch: Some(0),
        }
    }

    fn t() -> Timestamp {
        Timestamp::default()
    }

    #[tokio::test(start_paused = true)]
    async fn copies_under_ever_new_forwarders_keep_the_best_few() {
        let mut d = Dedup::new(Duration::from_millis(200), 16);
        let now = Instant::now();
        // 200 forged forwarders, each hearing the frame better than the last.
        for gw in 0..200u8 {
            let offer = d.offer(vec![1, 2, 3], rx(gw, -120 + i16::from(gw / 2), f64::from(gw) / 10.0), t(), now);
            assert_eq!(offer, if gw == 0 { Offer::New } else { Offer::Duplicate });
        }
        advance(Duration::from_millis(200)).await;
        let up = d.pop_due(Instant::now()).unwrap();
        assert_eq!(up.heard.len(), MAX_HEARD);
        let mut kept: Vec<u8> = up.gateways().map(|g| g.0[0]).collect();
        kept.sort_unstable();
        let best: Vec<u8> = (200 - MAX_HEARD as u8..200).collect();
        assert_eq!(kept, best, "the best receptions stay");
        assert_eq!(up.snr, Some(19.9));
    }

    #[tokio::test(start_paused = true)]
    async fn copies_within_the_window_are_one_uplink_with_the_best_signal() {
        let mut d = Dedup::new(Duration::from_millis(200), 16);
        assert_eq!(
            d.offer(b"frame", rx(1, -110, -3.5), t(), Instant::now()),
            Offer::New
        );
        advance(Duration::from_millis(150)).await;
        assert_eq!(
            d.offer(b"frame", rx(2, -90, -7.0), t(), Instant::now()),
            Offer::Duplicate
        );
        assert_eq!(
            d.offer(b"frame", rx(1, -80, 9.0), t(), Instant::now()),
            Offer::Duplicate
        );
        assert_eq!(
            d.offer(b"other", rx(2, -100, 1.0), t(), Instant::now()),
            Offer::New
        );
        advance(Duration::from_millis(49)).await;
        assert_eq!(d.pop_due(Instant::now()), None, "the window is still open");
        advance(Duration::from_millis(1)).await;
        let up = d.pop_due(Instant::now()).unwrap();
        assert_eq!(up.phy, b"frame");
        assert_eq!(
            up.gateways().collect::<Vec<_>>(),
            [GatewayEui([1; 8]), GatewayEui([2; 8])]
        );
        assert_eq!((up.rssi, up.snr), (Some(-80), Some(9.0)));
        assert_eq!(up.heard.len(), 2, "one entry per forwarder");
        assert_eq!(up.heard[0].snr, Some(9.0), "its best copy");
        assert_eq!(
            d.pop_due(Instant::now()),
            None,
            "the second frame came later"
        );
        assert_eq!(
            d.next_deadline(),
            Some(Instant::now() + Duration::from_millis(150))
        );
        // A copy after the window closed is a new candidate.
        assert_eq!(
            d.offer(b"frame", rx(3, -70, 0.0), t(), Instant::now()),
            Offer::New
        );
        advance(Duration::from_millis(200)).await;
        assert_eq!(d.pop_due(Instant::now()).unwrap().phy, b"other");
        assert_eq!(
            d.pop_due(Instant::now()).unwrap().gateways().collect::<Vec<_>>(),
            [GatewayEui([3; 8])]
        );
        assert!(d.is_empty());
    }

    /// An index entry behind the front is not found, and panics nowhere.
    #[test]
    fn a_place_behind_the_front_is_none() {
        assert_eq!(place(7, 7), Some(0));
        assert_eq!(place(9, 7), Some(2));
        assert_eq!(place(6, 7), None);
        assert_eq!(place(0, u64::MAX), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_once_passed_gives_its_room_back() {
        let mut d = Dedup::new(Duration::from_millis(200), 65_536);
        let frame = |i: u32| i.to_le_bytes().to_vec();
        for i in 0..20_000 {
            assert_eq!(d.offer(frame(i), rx(1, -100, 0.0), t(), Instant::now()), Offer::New);
        }
        assert!(d.waiting.capacity() >= 20_000 && d.index.capacity() >= 20_000);
        advance(Duration::from_millis(100)).await;
        // The flow goes on, slower: the room stays while the burst waits.
        for i in 20_000..20_100 {
            d.offer(frame(i), rx(1, -100, 0.0), t(), Instant::now());
        }
        advance(Duration::from_millis(100)).await;
        assert_eq!(d.pop_all_due(Instant::now()).len(), 20_000);
        assert!(
            d.waiting.capacity() <= 4 * 200 && d.index.capacity() <= 4 * 200,
            "queue {} and index {} slots kept for 100 frames",
            d.waiting.capacity(),
            d.index.capacity()
        );
        // What is left is still found, and still comes due.
        assert_eq!(d.offer(frame(20_050), rx(2, -90, 1.0), t(), Instant::now()), Offer::Duplicate);
        assert_eq!(d.offer(frame(7), rx(2, -90, 1.0), t(), Instant::now()), Offer::New);
        advance(Duration::from_millis(100)).await;
        let rest = d.pop_all_due(Instant::now());
        assert_eq!(rest.len(), 100);
        assert_eq!(rest[50].heard.len(), 2, "the copy joined its frame");
        advance(Duration::from_millis(100)).await;
        assert_eq!(d.pop_all_due(Instant::now())[0].phy, frame(7));
        assert!(d.index.is_empty() && d.waiting.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_due_frames_are_taken_together_and_only_they() {
        let (mut one, mut each) = (
            Dedup::new(Duration::from_millis(200), 64),
            Dedup::new(Duration::from_millis(200), 64),
        );
        for i in 0..40u8 {
            for d in [&mut one, &mut each] {
                d.offer(vec![i], rx(i % 3, -100, 1.0), t(), Instant::now());
                d.offer(vec![i], rx(7, -90, 2.0), t(), Instant::now());
            }
            advance(Duration::from_millis(10)).await;
        }
        for step in [0, 5, 1, 190, 3, 100, 400] {
            advance(Duration::from_millis(step)).await;
            let now = Instant::now();
            let mut popped = Vec::new();
            while let Some(up) = each.pop_due(now) {
                popped.push(up);
            }
            let taken = one.pop_all_due(now);
            assert_eq!(taken, popped, "after {step} ms");
            assert!(taken.capacity() <= taken.len().max(1) * 2);
            assert_eq!(one.len(), each.len());
            assert_eq!(one.next_deadline(), each.next_deadline());
        }
        assert!(one.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn bounded_and_drained_at_shutdown() {
        let mut d = Dedup::new(Duration::from_millis(200), 2);
        let now = Instant::now();
        assert_eq!(d.offer(b"a", rx(1, -1, 0.0), t(), now), Offer::New);
        assert_eq!(d.offer(b"b", rx(1, -1, 0.0), t(), now), Offer::New);
        assert_eq!(d.offer(b"c", rx(1, -1, 0.0), t(), now), Offer::Full);
        assert_eq!(d.offer(b"a", rx(2, -1, 0.0), t(), now), Offer::Duplicate);
        let all: Vec<Vec<u8>> = d.drain().into_iter().map(|u| u.phy).collect();
        assert_eq!(all, [b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(d.len(), 0);
    }

    /// The table keyed by the frame's bytes this queue and index replaced,
    /// kept as the reference: the same offers and pops must give the same
    /// answers and uplinks.
    struct Reference {
        window: Duration,
        capacity: usize,
        pending: HashMap<Vec<u8>, Uplink>,
        deadlines: VecDeque<(Instant, Vec<u8>)>,
    }

    impl Reference {
        fn offer(&mut self, phy: &[u8], rx: Reception, arrival: Timestamp, now: Instant) -> Offer {
            if let Some(up) = self.pending.get_mut(phy) {
                up.add(rx);
                return Offer::Duplicate;
            }
            if self.pending.len() >= self.capacity {
                return Offer::Full;
            }
            let mut up = Uplink {
                phy: phy.to_vec(),
                rssi: None,
                snr: None,
                received: arrival,
                heard: HeardList::new(),
                first_heard: now,
            };
            up.add(rx);
            self.pending.insert(phy.to_vec(), up);
            self.deadlines
                .push_back((gateway_core::deadline::after(now, self.window), phy.to_vec()));
            Offer::New
        }

        fn pop_due(&mut self, now: Instant) -> Option<Uplink> {
            if self.deadlines.front()?.0 > now {
                return None;
            }
            let (_, phy) = self.deadlines.pop_front()?;
            self.pending.remove(&phy)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_queue_and_index_answer_as_the_table_keyed_by_bytes() {
        for collide in [false, true] {
            let mut state = 0x6969_u64 + u64::from(collide);
            let mut next = |below: u64| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state % below
            };
            let window = Duration::from_millis(200);
            let mut d = Dedup::new(window, 12);
            d.collide = collide;
            let mut r = Reference {
                window,
                capacity: 12,
                pending: HashMap::new(),
                deadlines: VecDeque::new(),
            };
            let (mut offers, mut pops) = (0, 0);
            for _ in 0..20_000 {
                if next(10) < 6 {
                    // Few distinct frames of few lengths: copies, frames
                    // of one length (one hash when colliding), a full queue.
                    let len = next(4);
                    let phy: Vec<u8> = (0..len).map(|_| next(3) as u8).collect();
                    let (gw, rssi, snr) = (next(4) as u8, next(80) as i16 - 120, next(30) as f64 - 20.0);
                    let reception = rx(gw, rssi, snr);
                    let now = Instant::now();
                    let want = r.offer(&phy, reception.clone(), t(), now);
                    assert_eq!(d.offer(phy.clone(), reception, t(), now), want, "{phy:?}");
                    offers += 1;
                } else if next(2) == 0 {
                    let now = Instant::now();
                    assert_eq!(d.pop_due(now), r.pop_due(now));
                    pops += 1;
                } else {
                    advance(Duration::from_millis(next(60))).await;
                }
                assert_eq!(d.len(), r.pending.len());
                assert_eq!(d.next_deadline(), r.deadlines.front().map(|(at, _)| *at));
            }
            assert!(offers > 10_000 && pops > 3_000);
            let rest: Vec<Vec<u8>> = d.drain().into_iter().map(|u| u.phy).collect();
            let want: Vec<Vec<u8>> = r.deadlines.iter().map(|(_, p)| p.clone()).collect();
            assert_eq!(rest, want);
            assert!(d.index.is_empty(), "nothing left in the index");
        }
    }
}
