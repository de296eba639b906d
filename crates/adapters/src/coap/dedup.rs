//! The duplicate cache of RFC 7252 §4.5: a retransmitted request (same peer,
//! same Message ID) is answered with the same reply and not processed again.
//!
//! Bounded: entries leave after their lifetime, and the oldest leave first
//! when the cache is full, so a flood of distinct message ids costs at most
//! `capacity` entries.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gateway_core::hash::SeededState;

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
pub struct Dedup {
    capacity: usize,
    /// The reply sent (none for an unanswered NON) and when the entry expires.
    /// Every datagram is looked up and inserted: SipHash was a tenth of a
    /// datagram's cost. Keys are the sender's, so seeded per process.
    entries: HashMap<Key, (Option<Vec<u8>>, Instant), SeededState>,
    /// Keys in insertion order, for eviction, with the expiry they were
    /// inserted with: the front is let be without a look-up while that is
    /// ahead and the cache has room (a renewal only comes after it).
    order: VecDeque<(Key, Instant)>,
}

impl Dedup {
    /// An empty cache holding at most `capacity` exchanges.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: HashMap::default(),
            order: VecDeque::new(),
        }
    }

    /// The cached reply of a duplicate: `Some(reply)` if `(peer, mid)` was
    /// seen within its lifetime.
    pub fn get(&self, peer: SocketAddr, mid: u16, now: Instant) -> Option<Option<Vec<u8>>> {
        match self.entries.get(&Key(peer, mid)) {
            Some((reply, expires)) if *expires > now => Some(reply.clone()),
            _ => None,
        }
    }

    /// Remembers the reply to `(peer, mid)` (none for an unanswered NON)
    /// for `lifetime`, evicting expired and, when full, the oldest entries.
    pub fn insert(
        &mut self,
        peer: SocketAddr,
        mid: u16,
        reply: Option<Vec<u8>>,
        now: Instant,
        lifetime: Duration,
    ) {
        // Expired entries at the front go first; entries are nearly in
        // expiry order (two lifetimes), so this finds almost all of them.
        while let Some((key, inserted_expiry)) = self.order.front() {
            let room = self.order.len() < self.capacity;
            if room
                && (*inserted_expiry > now
                    || self.entries.get(key).is_some_and(|(_, e)| *e > now))
            {
                break;
            }
            if let Some((key, _)) = self.order.pop_front() {
                self.entries.remove(&key);
            }
        }
        let key = Key(peer, mid);
        let expires = gateway_core::deadline::after_std(now, lifetime);
        if self.entries.insert(key, (reply, expires)).is_none() {
            self.order.push_back((key, expires));
        }
    }

    /// Exchanges remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
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
}
