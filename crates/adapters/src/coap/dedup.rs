//! The duplicate cache of RFC 7252 §4.5: a retransmitted request (same peer,
//! same Message ID) is answered with the same reply and not processed again.
//!
//! Bounded: entries leave after their lifetime, and the oldest leave first
//! when the cache is full, so a flood of distinct message ids costs at most
//! `capacity` entries.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::SocketAddr;
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
}

struct Exchange {
    key: Key,
    /// The reply sent (none for an unanswered NON).
    reply: Option<Vec<u8>>,
    expires: Instant,
}

impl Dedup {
    /// An empty cache holding at most `capacity` exchanges.
    pub fn new(capacity: usize) -> Self {
        Self {
            // Positions are u32 sequence numbers.
            capacity: capacity.clamp(1, u32::MAX as usize / 2),
            hasher: SeededState::default(),
            index: HashTable::new(),
            ring: VecDeque::new(),
            front: 0,
        }
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
    pub fn insert(
        &mut self,
        peer: SocketAddr,
        mid: u16,
        reply: Option<Vec<u8>>,
        now: Instant,
        lifetime: Duration,
    ) {
        while let Some(oldest) = self.ring.front() {
            let room = self.ring.len() < self.capacity;
            if room && oldest.expires > now {
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
            return;
        }
        let seq = self.front.wrapping_add(self.ring.len() as u32);
        self.ring.push_back(Exchange {
            key,
            reply,
            expires,
        });
        let (ring, front, hasher) = (&self.ring, self.front, &self.hasher);
        self.index.insert_unique(hash, seq, |&s| {
            ring.get(s.wrapping_sub(front) as usize)
                .map_or(0, |e| hasher.hash_one(e.key))
        });
    }

    fn pop_front(&mut self) {
        let Some(oldest) = self.ring.pop_front() else {
            return;
        };
        let seq = self.front;
        self.front = self.front.wrapping_add(1);
        if let Ok(entry) = self
            .index
            .find_entry(self.hasher.hash_one(oldest.key), |&s| s == seq)
        {
            entry.remove();
        }
    }

    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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

    /// The ring and its index against a plain model (a list in insertion
    /// order) over long churn: evictions by age and by size, renewals,
    /// lookups of held, evicted and never-seen exchanges, and sequence
    /// numbers that wrap.
    #[test]
    fn the_ring_answers_as_a_plain_list_over_long_churn() {
        let peers: Vec<SocketAddr> = ["10.0.0.1:5683", "10.0.0.2:40000", "[fe80::1]:5683"]
            .iter()
            .map(|p| p.parse().unwrap())
            .collect();
        let t0 = Instant::now();
        let mut d = Dedup::new(50);
        d.front = u32::MAX - 300;
        let mut model: Vec<(SocketAddr, u16, Option<Vec<u8>>, Instant)> = Vec::new();
        let mut next = crate::test_rng::xorshift(0x9E37_79B9_7F4A_7C15);
        for step in 0..20_000u32 {
            let now = t0 + Duration::from_millis(u64::from(step) * 50);
            let r = next();
            let peer = peers[(r % 3) as usize];
            let mid = (r >> 8) as u16 % 120;
            let want = model
                .iter()
                .find(|e| e.0 == peer && e.1 == mid && e.3 > now)
                .map(|e| e.2.clone());
            assert_eq!(d.get(peer, mid, now), want, "step {step}");
            if r >> 40 & 1 == 0 {
                let reply = (r >> 41 & 1 == 0).then(|| vec![step as u8]);
                let lifetime = Duration::from_secs(1 + (r >> 42) % 4);
                while let Some(oldest) = model.first() {
                    if model.len() < 50 && oldest.3 > now {
                        break;
                    }
                    model.remove(0);
                }
                let expires = now + lifetime;
                match model.iter_mut().find(|e| e.0 == peer && e.1 == mid) {
                    Some(e) => (e.2, e.3) = (reply.clone(), expires),
                    None => model.push((peer, mid, reply.clone(), expires)),
                }
                d.insert(peer, mid, reply, now, lifetime);
                assert_eq!(d.len(), model.len(), "step {step}");
                assert_eq!(d.index.len(), d.len());
            }
        }
    }
}
