//! The duplicate cache of RFC 7252 §4.5: a retransmitted request (same peer,
//! same Message ID) is answered with the same reply and not processed again.
//!
//! Bounded: entries leave after their lifetime, and the oldest leave first
//! when the cache is full (a cache holds one lifetime, CON's or NON's, so
//! that its oldest is the first to expire: the handler keeps one of each),
//! so a flood of distinct message ids costs at most
//! `capacity` entries. Each source address holds at most a share of it
//! ([`Dedup::share`]) and beyond that gives up its own oldest: a few busy
//! hosts cannot push another host's exchanges out before their lifetime
//! (a retransmission arriving afterwards would be processed twice).

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use gateway_core::hash::SeededState;
use hashbrown::HashTable;

/// EXCHANGE_LIFETIME (§4.8.2): how long a CON's Message ID stays in use. 247 s.
pub const EXCHANGE_LIFETIME: Duration = Duration::from_secs(247);
/// NON_LIFETIME (§4.8.2): the same for a NON. 145 s.
pub const NON_LIFETIME: Duration = Duration::from_secs(145);
/// MAX_TRANSMIT_WAIT (§4.8.2): a CON's last retransmission is sent within
/// 93 s of the first. A full cache does not push out an exchange younger
/// than this: forged source addresses cost an attacker nothing, and one
/// with a share each filled the cache and flushed a genuine device's
/// exchange before its retransmission came, which was then taken twice.
pub const PROTECTED: Duration = Duration::from_secs(93);

/// What [`Dedup::insert_looked`] did with an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Remembered for its lifetime.
    Kept,
    /// Remembered, and its source address gave up its own oldest exchange
    /// (it holds its whole share): a retransmission of that one would be
    /// processed again.
    GaveUpOwn,
    /// Not remembered: the cache is full of exchanges younger than
    /// [`PROTECTED`], which keep their place. A retransmission of this one
    /// would be processed again.
    Full,
}

/// A peer and a Message ID, hashed as one word for IPv4 (two for IPv6):
/// the derived hash of `(SocketAddr, u16)` fed the hasher five pieces, and
/// a datagram hashes a key up to five times here (the look-up, the
/// eviction of the oldest entry, the insert), 4 % of a datagram's
/// instructions. Equality is still the whole address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key(SocketAddr, u16);

impl Hash for Key {
    #[inline]
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
    /// Each source address's live exchanges, keyed by IP: a sender changes
    /// ports for free. Looked up on every datagram, so by the seeded
    /// hasher: SipHash of the address was a tenth of a CoAP datagram's
    /// cost (issue 69). Its size is bounded by the cache's capacity, which
    /// is what makes a non-PRF hash acceptable for a key a forger chooses
    /// (`gateway_core::hash`).
    sources: Sources,
    /// Exchanges held; the ring also holds the ones a source gave up
    /// (no longer indexed) until they reach its front or a compaction.
    live: usize,
    share: usize,
    /// A full cache keeps exchanges younger than this ([`PROTECTED`]).
    protect: Duration,
    /// Counts the changes that may move or remove an exchange, so that a
    /// [`Probe`] taken before one of them is not trusted.
    epoch: u64,
    /// The last expiry worked out, from its time and lifetime: a wake-up's
    /// datagrams share one time, and the sum was 44 instructions each.
    expiry: (Instant, Duration, Instant),
}

/// A source address's live exchanges, oldest first, linked through the
/// ring (`Exchange::next`): a queue of positions per address was two
/// more buffers to update on every datagram (issue 69).
#[derive(Debug, Clone, Copy)]
struct Chain {
    oldest: u32,
    newest: u32,
    count: usize,
}

/// The sources' chains by address.
#[derive(Default)]
struct Sources {
    table: HashTable<(IpAddr, Chain)>,
    hasher: SeededState,
    /// The bucket of the source found last, checked against the address
    /// it is asked for: a burst comes from one address, whose hash and
    /// probe were about 60 instructions of a CoAP datagram (issue 69),
    /// and a bucket the table moved or emptied since only misses.
    last: usize,
}

impl Sources {
    /// Where `ip`'s chain is, remembered for the next call.
    #[inline]
    fn find(&mut self, ip: IpAddr) -> Option<usize> {
        if !matches!(self.table.get_bucket(self.last), Some((at, _)) if *at == ip) {
            let hash = self.hasher.hash_one(ip);
            self.last = self.table.find_bucket_index(hash, |(at, _)| *at == ip)?;
        }
        Some(self.last)
    }

    #[inline]
    fn chain(&mut self, bucket: usize) -> Option<&mut Chain> {
        self.table.get_bucket_mut(bucket).map(|(_, chain)| chain)
    }

    fn get(&mut self, ip: IpAddr) -> Option<Chain> {
        let bucket = self.find(ip)?;
        self.chain(bucket).copied()
    }

    /// Sets `ip`'s chain, kept or not.
    fn set(&mut self, ip: IpAddr, chain: Chain) {
        if let Some(kept) = self.find(ip).and_then(|bucket| self.chain(bucket)) {
            *kept = chain;
            return;
        }
        let hasher = &self.hasher;
        let hash = hasher.hash_one(ip);
        let entry = self
            .table
            .insert_unique(hash, (ip, chain), |(at, _)| hasher.hash_one(at));
        self.last = entry.bucket_index();
    }

    fn remove_at(&mut self, bucket: usize) {
        if let Ok(entry) = self.table.get_bucket_entry(bucket) {
            entry.remove();
        }
    }

    fn remove(&mut self, ip: IpAddr) {
        if let Some(bucket) = self.find(ip) {
            self.remove_at(bucket);
        }
    }

    fn clear(&mut self) {
        self.table.clear();
    }
}

struct Exchange {
    key: Key,
    /// The hash of `key`: letting go of an exchange, and growing the
    /// index, would hash it again.
    hash: u64,
    /// The sequence number of its source's next newer exchange, while it
    /// is live and not its source's newest.
    next: u32,
    live: bool,
    /// When it was first remembered (a renewal keeps it).
    born: Instant,
    /// The reply sent (none for an unanswered NON).
    reply: Option<Vec<u8>>,
    expires: Instant,
}

/// What [`Dedup::look`] found of an exchange.
pub enum Seen {
    /// A retransmission: the reply to send again (none for a NON).
    Before(Option<Vec<u8>>),
    /// New (or expired): to [`Dedup::insert_looked`] once answered.
    New(Probe),
}

/// A lookup's result kept for the insert that follows it, so that the
/// datagram's exchange is hashed and searched once.
pub struct Probe {
    key: Key,
    hash: u64,
    /// Where the exchange was held (live, whether expired or not).
    at: Option<u32>,
    epoch: u64,
}

impl Dedup {
    /// An empty cache holding at most `capacity` exchanges.
    pub fn new(capacity: usize) -> Self {
        // Positions are u32 sequence numbers, and the ring may hold twice
        // the capacity before it is compacted.
        let capacity = capacity.clamp(1, u32::MAX as usize / 4);
        let now = Instant::now();
        Self {
            capacity,
            hasher: SeededState::default(),
            index: HashTable::new(),
            ring: VecDeque::new(),
            front: 0,
            sources: Sources::default(),
            live: 0,
            share: Self::share(capacity),
            protect: PROTECTED,
            epoch: 0,
            expiry: (now, Duration::ZERO, now),
        }
    }

    /// The exchanges one source address may hold: a 64th of the cache (256
    /// of the default 16 384: over a second's worth of CON requests for
    /// EXCHANGE_LIFETIME), never under 64 nor over the whole. It takes 64
    /// busy hosts to fill the cache and push out a quiet one's exchanges.
    pub fn share(capacity: usize) -> usize {
        (capacity / 64).max(64).min(capacity)
    }

    fn slot(&self, seq: u32) -> Option<&Exchange> {
        self.ring.get(seq.wrapping_sub(self.front) as usize)
    }

    fn slot_mut(&mut self, seq: u32) -> Option<&mut Exchange> {
        self.ring.get_mut(seq.wrapping_sub(self.front) as usize)
    }

    #[allow(clippy::manual_hash_one)] // see the hash below
    fn probe(&self, peer: SocketAddr, mid: u16) -> Probe {
        let key = Key(peer, mid);
        // BuildHasher::hash_one spelled out: a build left that call out
        // of line, a fifth of the probe.
        let mut hasher = self.hasher.build_hasher();
        key.hash(&mut hasher);
        let hash = hasher.finish();
        let at = self
            .index
            .find(hash, |&seq| self.slot(seq).is_some_and(|e| e.key == key))
            .copied();
        Probe {
            key,
            hash,
            at,
            epoch: self.epoch,
        }
    }

    /// [`look`](Self::look) without the probe: `Some(None)` for a known
    /// exchange that had no reply, `None` for a new or expired one.
    #[cfg(test)]
    pub fn get(&self, peer: SocketAddr, mid: u16, now: Instant) -> Option<Option<Vec<u8>>> {
        match self.look(peer, mid, now) {
            Seen::Before(reply) => Some(reply),
            Seen::New(_) => None,
        }
    }

    /// The reply to replay for a retransmission of (`peer`, `mid`)
    /// (`Seen::Before(None)` when the exchange is known but had no reply, a
    /// NON), or, for a new or expired exchange, the search that found
    /// nothing, kept for [`insert_looked`](Self::insert_looked).
    pub fn look(&self, peer: SocketAddr, mid: u16, now: Instant) -> Seen {
        let probe = self.probe(peer, mid);
        match probe.at.and_then(|seq| self.slot(seq)) {
            Some(e) if e.expires > now => Seen::Before(e.reply.clone()),
            _ => Seen::New(probe),
        }
    }

    /// [`insert_looked`](Self::insert_looked) without a probe.
    #[cfg(test)]
    pub fn insert(
        &mut self,
        peer: SocketAddr,
        mid: u16,
        reply: Option<Vec<u8>>,
        now: Instant,
        lifetime: Duration,
    ) -> Inserted {
        let probe = self.probe(peer, mid);
        self.insert_looked(probe, reply, now, lifetime)
    }

    /// Remembers the reply to the exchange `probe` looked up for
    /// `lifetime`, first letting go of expired exchanges at the front, and
    /// of the oldest when full, unless that is younger than [`PROTECTED`]
    /// (then this one is not remembered); a probe older than another change
    /// of the cache is looked up again. Returns whether it was kept, and
    /// whether the peer's address gave up one of its own exchanges before
    /// its lifetime for it (it holds its whole share).
    pub fn insert_looked(
        &mut self,
        probe: Probe,
        reply: Option<Vec<u8>>,
        now: Instant,
        lifetime: Duration,
    ) -> Inserted {
        let probe = if probe.epoch == self.epoch {
            probe
        } else {
            self.probe(probe.key.0, probe.key.1)
        };
        self.epoch = self.epoch.wrapping_add(1);
        while let Some(oldest) = self.ring.front() {
            if oldest.live && oldest.expires > now {
                break;
            }
            self.pop_front();
        }
        let Probe { key, hash, at, .. } = probe;
        let expires = match self.expiry {
            (at, life, expires) if at == now && life == lifetime => expires,
            _ => {
                let expires = gateway_core::deadline::after_std(now, lifetime);
                self.expiry = (now, lifetime, expires);
                expires
            }
        };
        // Fronts left, never other exchanges: one found still in the ring
        // is the one probed.
        if let Some(e) = at.and_then(|seq| self.slot_mut(seq)) {
            e.reply = reply;
            e.expires = expires;
            return Inserted::Kept;
        }
        // Full: the oldest leaves before its time, for a new exchange only
        // (a renewed one takes no more room), unless it is recent: its
        // retransmissions may still come, and a flood from forged addresses
        // must not buy the right to have them processed twice. The flood's
        // own new exchanges go unremembered instead, until the oldest age.
        // A source holding its whole share gives up its own oldest (below)
        // and takes nobody else's place.
        let own_full = self.live >= self.capacity
            && self
                .sources
                .get(key.0.ip())
                .is_some_and(|chain| chain.count >= self.share);
        while !own_full && self.live >= self.capacity && !self.ring.is_empty() {
            if let Some(oldest) = self.ring.front() {
                if oldest.live && now.saturating_duration_since(oldest.born) < self.protect {
                    return Inserted::Full;
                }
            }
            self.pop_front();
        }
        if self.ring.len() >= 2 * self.capacity {
            self.compact();
        }
        let seq = self.front.wrapping_add(self.ring.len() as u32);
        let given_up = self.join(key.0.ip(), seq);
        if let Some(old) = given_up {
            self.let_go(old);
        }
        self.ring.push_back(Exchange {
            key,
            hash,
            next: seq,
            live: true,
            born: now,
            reply,
            expires,
        });
        self.live += 1;
        self.index_insert(hash, seq);
        if given_up.is_some() {
            Inserted::GaveUpOwn
        } else {
            Inserted::Kept
        }
    }

    /// Adds the exchange `seq` (not yet in the ring) to its source's chain;
    /// when the source holds its share, its oldest leaves the chain and is
    /// returned, to be let go.
    fn join(&mut self, ip: IpAddr, seq: u32) -> Option<u32> {
        let (ring, front) = (&mut self.ring, self.front);
        let Some(chain) = self
            .sources
            .find(ip)
            .and_then(|bucket| self.sources.chain(bucket))
        else {
            self.sources.set(
                ip,
                Chain {
                    oldest: seq,
                    newest: seq,
                    count: 1,
                },
            );
            return None;
        };
        let mut given_up = None;
        if chain.count >= self.share {
            given_up = Some(chain.oldest);
            chain.count -= 1;
            chain.oldest = match ring.get(chain.oldest.wrapping_sub(front) as usize) {
                Some(e) if chain.count > 0 => e.next,
                _ => seq,
            };
        }
        if chain.count > 0 {
            if let Some(e) = ring.get_mut(chain.newest.wrapping_sub(front) as usize) {
                e.next = seq;
            }
        } else {
            chain.oldest = seq;
        }
        chain.newest = seq;
        chain.count += 1;
        given_up
    }

    fn index_insert(&mut self, hash: u64, seq: u32) {
        let (ring, front) = (&self.ring, self.front);
        self.index.insert_unique(hash, seq, |&s| {
            ring.get(s.wrapping_sub(front) as usize)
                .map_or(0, |e| e.hash)
        });
    }

    fn unindex(&mut self, hash: u64, seq: u32) {
        if let Ok(entry) = self.index.find_entry(hash, |&s| s == seq) {
            entry.remove();
        }
    }

    /// Every exchange of `peer` leaves: a new DTLS session from its
    /// address is a new endpoint (RFC 7252 §9.1.2: messages match within
    /// one session), whose Message IDs start afresh; another device's, or
    /// the same device restarted, must not get the old session's replies.
    pub fn forget_peer(&mut self, peer: SocketAddr) {
        let ip = peer.ip();
        let Some(chain) = self.sources.get(ip) else {
            return;
        };
        self.epoch = self.epoch.wrapping_add(1);
        let mut kept = Vec::new();
        let mut seq = chain.oldest;
        for _ in 0..chain.count {
            let Some(e) = self.slot_mut(seq) else {
                break;
            };
            let (this, next, hash) = (seq, e.next, e.hash);
            seq = next;
            if e.key.0 != peer {
                kept.push(this);
                continue;
            }
            e.live = false;
            e.reply = None;
            self.live -= 1;
            self.unindex(hash, this);
        }
        for pair in kept.windows(2) {
            if let Some(e) = self.slot_mut(pair[0]) {
                e.next = pair[1];
            }
        }
        match (kept.first(), kept.last()) {
            (Some(&oldest), Some(&newest)) => {
                let count = kept.len();
                self.sources.set(
                    ip,
                    Chain {
                        oldest,
                        newest,
                        count,
                    },
                );
            }
            _ => {
                self.sources.remove(ip);
            }
        }
    }

    /// The exchange at `seq` (already out of its source's chain) leaves;
    /// its ring slot stays, dead, until the front or a compaction reaches it.
    fn let_go(&mut self, seq: u32) {
        let Some(e) = self.slot_mut(seq) else {
            return;
        };
        e.live = false;
        e.reply = None;
        let hash = e.hash;
        self.live -= 1;
        self.unindex(hash, seq);
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
        if let Some(bucket) = self.sources.find(ip) {
            if let Some(chain) = self.sources.chain(bucket) {
                // The ring's oldest is its source's oldest.
                if chain.oldest == seq {
                    chain.count -= 1;
                    chain.oldest = oldest.next;
                }
                if chain.count == 0 {
                    self.sources.remove_at(bucket);
                }
            }
        }
        self.unindex(oldest.hash, seq);
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
            let (ip, hash) = (self.ring[i].key.0.ip(), self.ring[i].hash);
            match self.sources.find(ip).and_then(|b| self.sources.chain(b)) {
                None => self.sources.set(
                    ip,
                    Chain {
                        oldest: seq,
                        newest: seq,
                        count: 1,
                    },
                ),
                Some(chain) => {
                    let at = chain.newest.wrapping_sub(self.front) as usize;
                    if let Some(e) = self.ring.get_mut(at) {
                        e.next = seq;
                    }
                    chain.newest = seq;
                    chain.count += 1;
                }
            }
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
        d.protect = Duration::ZERO;
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

    /// Forged source addresses cost an attacker nothing: one exchange from
    /// each of as many as the cache holds filled it, and a genuine
    /// device's exchange, the oldest, left before its retransmission came.
    /// Exchanges younger than `PROTECTED` now stay; the flood's own go
    /// unremembered until the oldest are old enough to leave.
    #[test]
    fn a_flood_from_forged_addresses_does_not_flush_a_recent_exchange() {
        let t0 = Instant::now();
        let mut d = Dedup::new(16_384);
        let device: SocketAddr = "10.1.0.1:40000".parse().unwrap();
        d.insert(device, 4242, Some(vec![0x44]), t0, EXCHANGE_LIFETIME);
        let flood = t0 + Duration::from_secs(1);
        let mut full = 0;
        for i in 0..20_000u32 {
            let forged = SocketAddr::from(((0xC633_0000 + i).to_be_bytes(), 5683));
            if d.insert(forged, 1, None, flood, EXCHANGE_LIFETIME) == Inserted::Full {
                full += 1;
            }
        }
        assert_eq!(full, 20_000 - 16_383, "the flood's exchanges past the capacity");
        assert_eq!(d.len(), 16_384);
        let retransmitted = t0 + Duration::from_secs(45);
        assert_eq!(d.get(device, 4242, retransmitted), Some(Some(vec![0x44])));
        // Past PROTECTED the oldest leave for new exchanges as before.
        let later = t0 + PROTECTED;
        let next: SocketAddr = "10.1.0.2:40000".parse().unwrap();
        assert_eq!(d.insert(next, 1, None, later, EXCHANGE_LIFETIME), Inserted::Kept);
        assert_eq!(d.get(device, 4242, later), None);
        assert_eq!(d.get(next, 1, later), Some(None));
        assert_eq!(d.len(), 16_384);
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

    /// A full cache renewing an exchange it holds takes no more room, so
    /// its oldest stays.
    #[test]
    fn a_renewal_in_a_full_cache_pushes_nothing_out() {
        let t0 = Instant::now();
        let mut d = Dedup::new(64);
        let a: SocketAddr = "10.0.0.1:5683".parse().unwrap();
        for mid in 0..64 {
            d.insert(a, mid, Some(vec![1]), t0, EXCHANGE_LIFETIME);
        }
        let later = t0 + Duration::from_secs(1);
        d.insert(a, 63, Some(vec![2]), later, EXCHANGE_LIFETIME);
        assert_eq!(d.len(), 64);
        assert_eq!(d.get(a, 0, later), Some(Some(vec![1])));
        assert_eq!(d.get(a, 63, later), Some(Some(vec![2])));
    }

    fn churn(capacity: usize, peers: &[&str], mids: u16) {
        let peers: Vec<SocketAddr> = peers.iter().map(|p| p.parse().unwrap()).collect();
        let share = Dedup::share(capacity);
        let t0 = Instant::now();
        let mut d = Dedup::new(capacity);
        // The eviction of the oldest by size, modelled here; the protection
        // of the young is tested on its own.
        d.protect = Duration::ZERO;
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
            // The handler's way: the probe of the lookup kept for the insert.
            let probe = match d.look(peer, mid, now) {
                Seen::Before(reply) => {
                    assert_eq!(Some(reply), want, "step {step}");
                    None
                }
                Seen::New(probe) => Some(probe),
            };
            if r >> 50 & 63 == 0 {
                model.retain(|e| e.0 != peer);
                d.forget_peer(peer);
                assert_eq!(d.len(), model.len(), "step {step}");
                check_chains(&d);
            }
            if r >> 40 & 3 != 0 {
                let reply = (r >> 42 & 1 == 0).then(|| vec![step as u8]);
                let lifetime = Duration::from_secs(1 + (r >> 43) % 40);
                while model.first().is_some_and(|oldest| oldest.3 <= now) {
                    model.remove(0);
                }
                let expires = now + lifetime;
                match model.iter_mut().find(|e| e.0 == peer && e.1 == mid) {
                    Some(e) => (e.2, e.3) = (reply.clone(), expires),
                    None => {
                        let mine = |e: &(SocketAddr, u16, _, _)| e.0.ip() == peer.ip();
                        let own_full = model.len() >= capacity
                            && model.iter().filter(|e| mine(e)).count() >= share;
                        while !own_full && model.len() >= capacity {
                            model.remove(0);
                        }
                        if model.iter().filter(|e| mine(e)).count() >= share {
                            let first = model.iter().position(mine).unwrap();
                            model.remove(first);
                        }
                        model.push((peer, mid, reply.clone(), expires));
                    }
                }
                match probe.filter(|_| r >> 44 & 1 == 0) {
                    // A probe from before a forget_peer is looked up again.
                    Some(probe) => d.insert_looked(probe, reply, now, lifetime),
                    None => d.insert(peer, mid, reply, now, lifetime),
                };
                assert_eq!(d.len(), model.len(), "step {step}");
                assert_eq!(d.index.len(), d.len());
                assert!(d.ring.len() <= 2 * capacity);
                if step % 97 == 0 {
                    check_chains(&d);
                }
            }
        }
    }

    /// Each source's chain links its live exchanges, oldest first, in
    /// ring order, and the chains hold every live exchange.
    fn check_chains(d: &Dedup) {
        let mut held = 0;
        for (ip, chain) in d.sources.table.iter() {
            let want: Vec<u32> = (0..d.ring.len())
                .filter(|&i| d.ring[i].live && d.ring[i].key.0.ip() == *ip)
                .map(|i| d.front.wrapping_add(i as u32))
                .collect();
            let mut got = vec![chain.oldest];
            while got.len() < chain.count {
                got.push(d.slot(*got.last().unwrap()).unwrap().next);
            }
            assert_eq!(got, want, "{ip}");
            assert_eq!(chain.newest, *want.last().unwrap());
            held += chain.count;
        }
        assert_eq!(held, d.len());
    }
}
