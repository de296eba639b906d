//! The duplicate cache of RFC 7252 §4.5: a retransmitted request (same peer,
//! same Message ID) is answered with the same reply and not processed again.
//!
//! Bounded: entries leave after their lifetime, and the oldest leave first
//! when the cache is full, so a flood of distinct message ids costs at most
//! `capacity` entries. Each source address holds at most a share of it
//! ([`Dedup::share`]) and beyond that gives up its own oldest: a few busy
//! hosts cannot push another host's exchanges out before their lifetime
//! (a retransmission arriving afterwards would be processed twice).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use gateway_core::hash::SeededState;
use hashbrown::HashTable;

/// EXCHANGE_LIFETIME (§4.8.2): how long a CON's Message ID stays in use. 247 s.
pub const EXCHANGE_LIFETIME: Duration = Duration::from_secs(247);
/// NON_LIFETIME (§4.8.2): the same for a NON. 145 s.
pub const NON_LIFETIME: Duration = Duration::from_secs(145);

/// A peer and a Message ID, hashed as one word for IPv4 (two for IPv6):
/// the derived hash of `(SocketAddr, u16)` fed the hasher five pieces, and
/// a datagram hashes a key up to five times here (the look-up, the
/// eviction of the oldest entry, the insert), 4 % of a datagram's
/// instructions. Equality is still the whole address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key(SocketAddr, u16);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (port, mid) = (u64::from(self.0.port()), u64::from(self.1));
        match self.0 {
            SocketAddr::V4(a) => {
                state.write_u64(u64::from(a.ip().to_bits()) << 32 | port << 16 | mid);
            }
            SocketAddr::V6(a) => {
                state.write_u128(a.ip().to_bits());
                state.write_u64(port << 16 | mid);
            }
        }
    }
}

/// Replies by (peer, Message ID), bounded in time and size.
///
/// The exchanges lie in a ring in insertion order; a table of their
/// positions (four bytes each) finds them by key. Every datagram looks up
/// a key, evicts the oldest and inserts one: in a map of the entries
/// themselves (about 80 bytes each, 16 384 by default) each of those was a
/// cache miss, and the churn's tombstones made a lookup that finds nothing,
/// the usual case, probe far (`perf`: its lookup alone was 5 % of a
/// gateway's cycles under a CoAP flood). The table stays small enough for
/// the cache, a lookup compares a ring entry only when the table's tag
/// matches, and the ring is read and written at its ends.
pub struct Dedup {
    capacity: usize,
    hasher: SeededState,
    /// Positions in the ring, as sequence numbers (see `front`), by the
    /// hash of their key. Keys are the sender's, so seeded per process.
    index: HashTable<u32>,
    /// Exchanges, oldest first. A renewed exchange keeps its place, with
    /// its new reply and expiry.
    ring: VecDeque<Exchange>,
    /// The sequence number of `ring[0]`, wrapping: the ring never holds
    /// more than `u32::MAX` entries, so the difference is its position.
    front: u32,
    /// Each source address's live exchanges (sequence numbers, oldest
    /// first), keyed by IP: a sender changes ports for free. Looked up on
    /// every datagram, so by the seeded hasher: SipHash of the address was
    /// a tenth of a CoAP datagram's cost (issue 69). Its size is bounded by
    /// the cache's capacity, which is what makes a non-PRF hash acceptable
    /// for a key a forger chooses (`gateway_core::hash`).
    sources: HashMap<IpAddr, VecDeque<u32>, SeededState>,
    /// Exchanges held; the ring also holds the ones a source gave up
    /// (no longer indexed) until they reach its front or a compaction.
    live: usize,
    share: usize,
}

struct Exchange {
    key: Key,
    live: bool,
    /// The reply sent (none for an unanswered NON).
    reply: Option<Vec<u8>>,
    expires: Instant,
}

impl Dedup {
    /// An empty cache holding at most `capacity` exchanges.
    pub fn new(capacity: usize) -> Self {
        // Positions are u32 sequence numbers, and the ring may hold twice
        // the capacity before it is compacted.
        let capacity = capacity.clamp(1, u32::MAX as usize / 4);
        Self {
            capacity,
            hasher: SeededState::default(),
            index: HashTable::new(),
            ring: VecDeque::new(),
            front: 0,
            sources: HashMap::default(),
            live: 0,
            share: Self::share(capacity),
        }
    }

    /// The exchanges one source address may hold: a 64th of the cache (256
    /// of the default 16 384: over a second's worth of CON requests for
    /// EXCHANGE_LIFETIME), never under 64 nor over the whole. It takes 64
    /// busy hosts to fill the cache and push out a quiet one's exchanges.
    pub fn share(capacity: usize) -> usize {
        (capacity / 64).max(64).min(capacity)
    }

    /// The position in the ring of the exchange `key`, if it is held.
    fn position(&self, key: &Key, hash: u64) -> Option<usize> {
        let (ring, front) = (&self.ring, self.front);
        self.index
            .find(hash, |&seq| {
                ring.get(seq.wrapping_sub(front) as usize)
                    .is_some_and(|e| e.key == *key)
            })
            .map(|&seq| seq.wrapping_sub(front) as usize)
    }

    /// The reply to replay for a retransmission of (`peer`, `mid`): `Some(None)`
    /// when the exchange is known but had no reply (a NON), `None` when it
    /// is new or expired.
    pub fn get(&self, peer: SocketAddr, mid: u16, now: Instant) -> Option<Option<Vec<u8>>> {
        let key = Key(peer, mid);
        let at = self.position(&key, self.hasher.hash_one(key))?;
        let e = self.ring.get(at)?;
        (e.expires > now).then(|| e.reply.clone())
    }

    /// Remembers the reply to (`peer`, `mid`) for `lifetime`, first letting
    /// go of expired exchanges at the front, and of the oldest when full.
    /// Returns whether the peer's address gave up one of its own exchanges
    /// before its lifetime (it holds its whole share): a retransmission of
    /// that one would be processed again.
    pub fn insert(
        &mut self,
        peer: SocketAddr,
        mid: u16,
        reply: Option<Vec<u8>>,
        now: Instant,
        lifetime: Duration,
    ) -> bool {
        while let Some(oldest) = self.ring.front() {
            let room = self.live < self.capacity;
            if oldest.live && room && oldest.expires > now {
                break;
            }
            self.pop_front();
        }
        let key = Key(peer, mid);
        let expires = gateway_core::deadline::after_std(now, lifetime);
        let hash = self.hasher.hash_one(key);
        if let Some(at) = self.position(&key, hash) {
            if let Some(e) = self.ring.get_mut(at) {
                e.reply = reply;
                e.expires = expires;
            }
            return false;
        }
        if self.ring.len() >= 2 * self.capacity {
            self.compact();
        }
        let seq = self.front.wrapping_add(self.ring.len() as u32);
        // One lookup of the address: its oldest leaves when it holds its
        // share, and the new exchange joins.
        let mine = self.sources.entry(peer.ip()).or_default();
        let given_up = if mine.len() >= self.share {
            mine.pop_front()
        } else {
            None
        };
        mine.push_back(seq);
        let gave_up = given_up.is_some();
        if let Some(old) = given_up {
            self.let_go(old);
        }
        self.ring.push_back(Exchange {
            key,
            live: true,
            reply,
            expires,
        });
        self.live += 1;
        self.index_insert(hash, seq);
        gave_up
    }

    fn index_insert(&mut self, hash: u64, seq: u32) {
        let (ring, front, hasher) = (&self.ring, self.front, &self.hasher);
        self.index.insert_unique(hash, seq, |&s| {
            ring.get(s.wrapping_sub(front) as usize)
                .map_or(0, |e| hasher.hash_one(e.key))
        });
    }

    fn unindex(&mut self, key: Key, seq: u32) {
        if let Ok(entry) = self
            .index
            .find_entry(self.hasher.hash_one(key), |&s| s == seq)
        {
            entry.remove();
        }
    }

    /// Every exchange of `peer` leaves: a new DTLS session from its
    /// address is a new endpoint (RFC 7252 §9.1.2: messages match within
    /// one session), whose Message IDs start afresh; another device's, or
    /// the same device restarted, must not get the old session's replies.
    pub fn forget_peer(&mut self, peer: SocketAddr) {
        let Some(mine) = self.sources.get(&peer.ip()) else {
            return;
        };
        let front = self.front;
        let theirs: Vec<u32> = mine
            .iter()
            .copied()
            .filter(|seq| {
                self.ring
                    .get(seq.wrapping_sub(front) as usize)
                    .is_some_and(|e| e.live && e.key.0 == peer)
            })
            .collect();
        for seq in &theirs {
            let Some(e) = self.ring.get_mut(seq.wrapping_sub(front) as usize) else {
                continue;
            };
            e.live = false;
            e.reply = None;
            let key = e.key;
            self.live -= 1;
            self.unindex(key, *seq);
        }
        if let Some(mine) = self.sources.get_mut(&peer.ip()) {
            mine.retain(|seq| !theirs.contains(seq));
            if mine.is_empty() {
                self.sources.remove(&peer.ip());
            }
        }
    }

    /// The exchange at `seq` (already out of its source's list) leaves;
    /// its ring slot stays, dead, until the front or a compaction reaches it.
    fn let_go(&mut self, seq: u32) {
        let at = seq.wrapping_sub(self.front) as usize;
        let Some(e) = self.ring.get_mut(at) else {
            return;
        };
        e.live = false;
        e.reply = None;
        let key = e.key;
        self.live -= 1;
        self.unindex(key, seq);
    }

    fn pop_front(&mut self) {
        let Some(oldest) = self.ring.pop_front() else {
            return;
        };
        let seq = self.front;
        self.front = self.front.wrapping_add(1);
        if !oldest.live {
            return;
        }
        self.live -= 1;
        let ip = oldest.key.0.ip();
        if let Some(mine) = self.sources.get_mut(&ip) {
            // The ring's oldest is its source's oldest.
            if mine.front() == Some(&seq) {
                mine.pop_front();
            }
            if mine.is_empty() {
                self.sources.remove(&ip);
            }
        }
        self.unindex(oldest.key, seq);
    }

    /// Drops the dead slots: a host over its share leaves one per insert,
    /// and they must not hold memory (nor positions) for a whole lifetime.
    /// At most once per `capacity` inserts, so constant time on average.
    fn compact(&mut self) {
        self.ring.retain(|e| e.live);
        self.index.clear();
        self.sources.clear();
        for i in 0..self.ring.len() {
            let seq = self.front.wrapping_add(i as u32);
            let key = self.ring[i].key;
            self.sources.entry(key.0.ip()).or_default().push_back(seq);
            let hash = self.hasher.hash_one(key);
            self.index_insert(hash, seq);
        }
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_forgotten_leaves_its_neighbours_on_the_same_ip_alone() {
        let restarted: SocketAddr = "127.0.0.1:41001".parse().unwrap();
        let neighbour: SocketAddr = "127.0.0.1:41002".parse().unwrap();
        let t0 = Instant::now();
        let mut d = Dedup::new(1000);
        for mid in 0..5 {
            d.insert(restarted, mid, Some(vec![1]), t0, EXCHANGE_LIFETIME);
            d.insert(neighbour, mid, Some(vec![2]), t0, EXCHANGE_LIFETIME);
        }
        d.forget_peer(restarted);
        assert_eq!(d.len(), 5);
        assert_eq!(d.get(restarted, 3, t0), None);
        assert_eq!(d.get(neighbour, 3, t0), Some(Some(vec![2])));
        // Its new exchanges are remembered as any.
        d.insert(restarted, 3, Some(vec![3]), t0, EXCHANGE_LIFETIME);
        assert_eq!(d.get(restarted, 3, t0), Some(Some(vec![3])));
        for mid in 100..2000 {
            d.insert(neighbour, mid, None, t0, EXCHANGE_LIFETIME);
        }
        assert!(d.len() <= 1000);
    }

    #[test]
    fn expires_and_stays_bounded() {
        let peer: SocketAddr = "127.0.0.1:5683".parse().unwrap();
        let t0 = Instant::now();
        let mut d = Dedup::new(3);
        d.insert(peer, 1, Some(vec![1]), t0, EXCHANGE_LIFETIME);
        assert_eq!(d.get(peer, 1, t0), Some(Some(vec![1])));
        assert_eq!(d.get(peer, 2, t0), None);
        assert_eq!(d.get(peer, 1, t0 + EXCHANGE_LIFETIME), None);
        for mid in 2..10 {
            d.insert(peer, mid, None, t0, EXCHANGE_LIFETIME);
        }
        assert_eq!(d.len(), 3);
        assert_eq!(d.get(peer, 9, t0), Some(None));
        assert_eq!(d.get(peer, 2, t0), None, "the oldest left first");
    }

    /// Expired entries leave when the next insert comes, without the cache
    /// being full; an exchange renewed after its expiry stays for its new
    /// lifetime.
    #[test]
    fn the_expired_leave_and_a_renewed_exchange_stays() {
        let peer: SocketAddr = "[::1]:5683".parse().unwrap();
        let t0 = Instant::now();
        let mut d = Dedup::new(100);
        for mid in 0..10 {
            d.insert(peer, mid, None, t0, NON_LIFETIME);
        }
        let later = t0 + NON_LIFETIME;
        d.insert(peer, 0, Some(vec![7]), later, EXCHANGE_LIFETIME);
        assert_eq!(d.get(peer, 0, later), Some(Some(vec![7])));
        d.insert(peer, 50, None, later, NON_LIFETIME);
        // 0 renewed stays at the front and holds the expired behind it
        // until it expires itself; both answers are right meanwhile.
        assert_eq!(d.get(peer, 1, later), None);
        assert_eq!(d.get(peer, 0, later), Some(Some(vec![7])));
        let end = later + EXCHANGE_LIFETIME;
        d.insert(peer, 51, None, end, NON_LIFETIME);
        assert_eq!(d.len(), 1, "everything expired left");
        assert_eq!(d.get(peer, 51, end), Some(None));
        assert_eq!(d.get(peer, 0, end), None);
    }

    /// The tester's flood: 17 000 requests from 40 addresses into the
    /// default 16 384 entries. Each keeps its own newest exchanges; a quiet
    /// device's exchange stays for its lifetime.
    #[test]
    fn busy_hosts_cannot_push_out_a_quiet_hosts_exchange() {
        let t0 = Instant::now();
        let mut d = Dedup::new(16_384);
        let device: SocketAddr = "10.1.0.1:40000".parse().unwrap();
        d.insert(device, 4242, Some(vec![0x44]), t0, EXCHANGE_LIFETIME);
        let share = Dedup::share(16_384);
        for host in 0..40u8 {
            let peer = SocketAddr::from(([127, 0, 30, host + 1], 5000));
            for mid in 0..425u16 {
                let now = t0 + Duration::from_millis(u64::from(mid));
                d.insert(peer, mid, None, now, EXCHANGE_LIFETIME);
            }
            assert_eq!(d.get(peer, 424, t0), Some(None), "its newest");
        }
        let later = t0 + Duration::from_secs(10);
        assert_eq!(d.get(device, 4242, later), Some(Some(vec![0x44])));
        let busy = SocketAddr::from(([127, 0, 30, 1], 5000));
        assert_eq!(d.get(busy, 424 - share as u16, t0), None, "over its share");
        assert_eq!(d.len(), 1 + 40 * share);
        assert_eq!(d.index.len(), d.len());
        assert!(d.ring.len() <= 2 * 16_384);
    }

    /// One host over its share for a long while: the ring's dead slots are
    /// compacted away, and lookups stay right across compactions.
    #[test]
    fn a_host_over_its_share_costs_no_more_than_the_capacity() {
        let t0 = Instant::now();
        let mut d = Dedup::new(128);
        d.front = u32::MAX - 100;
        let quiet: SocketAddr = "[fe80::2]:5683".parse().unwrap();
        let busy: SocketAddr = "[fe80::1]:5683".parse().unwrap();
        d.insert(quiet, 1, Some(vec![1]), t0, EXCHANGE_LIFETIME);
        for i in 0..10_000u32 {
            d.insert(busy, i as u16, Some(vec![i as u8]), t0, EXCHANGE_LIFETIME);
            assert!(d.ring.len() <= 256, "{i}");
            assert_eq!(d.len(), 1 + (i as usize + 1).min(64));
            assert_eq!(d.get(busy, i as u16, t0), Some(Some(vec![i as u8])));
        }
        assert_eq!(d.get(busy, 9_999 - 64, t0), None);
        assert_eq!(d.get(busy, 9_999 - 63, t0), Some(Some(vec![(9_999 - 63) as u8])));
        assert_eq!(d.get(quiet, 1, t0), Some(Some(vec![1])));
        assert_eq!(d.index.len(), d.len());
    }

    /// The ring and its index against a plain model (a list in insertion
    /// order) over long churn: evictions by age and by size, renewals,
    /// lookups of held, evicted and never-seen exchanges, and sequence
    /// numbers that wrap.
    #[test]
    fn the_ring_answers_as_a_plain_list_over_long_churn() {
        churn(50, &["10.0.0.1:5683", "10.0.0.2:40000", "[fe80::1]:5683"], 120);
        // Small enough that the sources' shares (64) bind: a source gives
        // up its own oldest, the ring compacts; two ports are one source.
        let peers = ["10.0.0.1:5683", "10.0.0.1:6000", "10.0.0.2:40000", "[fe80::1]:5683"];
        churn(200, &peers, 400);
    }

    fn churn(capacity: usize, peers: &[&str], mids: u16) {
        let peers: Vec<SocketAddr> = peers.iter().map(|p| p.parse().unwrap()).collect();
        let share = Dedup::share(capacity);
        let t0 = Instant::now();
        let mut d = Dedup::new(capacity);
        d.front = u32::MAX - 300;
        let mut model: Vec<(SocketAddr, u16, Option<Vec<u8>>, Instant)> = Vec::new();
        let mut next = crate::test_rng::xorshift(0x9E37_79B9_7F4A_7C15);
        for step in 0..20_000u32 {
            let now = t0 + Duration::from_millis(u64::from(step) * 50);
            let r = next();
            let peer = peers[(r % peers.len() as u64) as usize];
            let mid = (r >> 8) as u16 % mids;
            let want = model
                .iter()
                .find(|e| e.0 == peer && e.1 == mid && e.3 > now)
                .map(|e| e.2.clone());
            assert_eq!(d.get(peer, mid, now), want, "step {step}");
            if r >> 40 & 3 != 0 {
                let reply = (r >> 42 & 1 == 0).then(|| vec![step as u8]);
                let lifetime = Duration::from_secs(1 + (r >> 43) % 40);
                while let Some(oldest) = model.first() {
                    if model.len() < capacity && oldest.3 > now {
                        break;
                    }
                    model.remove(0);
                }
                let expires = now + lifetime;
                match model.iter_mut().find(|e| e.0 == peer && e.1 == mid) {
                    Some(e) => (e.2, e.3) = (reply.clone(), expires),
                    None => {
                        let mine = |e: &(SocketAddr, u16, _, _)| e.0.ip() == peer.ip();
                        if model.iter().filter(|e| mine(e)).count() >= share {
                            let first = model.iter().position(mine).unwrap();
                            model.remove(first);
                        }
                        model.push((peer, mid, reply.clone(), expires));
                    }
                }
                d.insert(peer, mid, reply, now, lifetime);
                assert_eq!(d.len(), model.len(), "step {step}");
                assert_eq!(d.index.len(), d.len());
                assert!(d.ring.len() <= 2 * capacity);
            }
        }
    }
}
