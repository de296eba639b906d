//! Who holds the `tcp_line` adapter's connections, and when each last
//! sent a byte: when every slot is taken, a connection gives its slot to
//! the newcomer. 64 sockets a buggy node leaked after Wi-Fi drops (or
//! anyone on the network opened and left) kept every sensor out for up
//! to `idle_timeout`; and one host opening 64 new ones every two seconds
//! kept them out as well, so one address holds at most half the slots
//! when they are all taken.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A connection silent for less than this keeps its slot: a node that
/// is sending is never cut for another.
pub const MIN_SILENCE_TO_EVICT: Duration = Duration::from_secs(2);
/// A connection that has sent nothing since it was opened this long ago
/// is taken for one that will not: a node sends its line at once.
pub const MIN_AGE_OF_A_MUTE_CONNECTION: Duration = Duration::from_millis(500);

/// The table of connections, shared with each connection's task.
#[derive(Clone)]
pub struct Seats {
    inner: Arc<Mutex<Table>>,
    started: Instant,
}

struct Table {
    next: u64,
    held: HashMap<u64, Held>,
}

struct Held {
    ip: IpAddr,
    last_read_ms: Arc<AtomicU64>,
    sent: Arc<AtomicBool>,
    evict: CancellationToken,
}

/// One connection's seat: touched at each read, cancelled to evict it,
/// given back when dropped.
pub struct Seat {
    id: u64,
    seats: Seats,
    last_read_ms: Arc<AtomicU64>,
    sent: Arc<AtomicBool>,
    pub evict: CancellationToken,
}

impl Default for Seats {
    fn default() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Table {
                next: 0,
                held: HashMap::new(),
            })),
            started: Instant::now(),
        }
    }
}

impl Seats {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A seat for a new connection from `ip`.
    pub fn take(&self, ip: IpAddr) -> Seat {
        let last_read_ms = Arc::new(AtomicU64::new(self.now_ms()));
        let sent = Arc::new(AtomicBool::new(false));
        let evict = CancellationToken::new();
        let mut t = self.table();
        let id = t.next;
        t.next += 1;
        t.held.insert(
            id,
            Held {
                ip,
                last_read_ms: last_read_ms.clone(),
                sent: sent.clone(),
                evict: evict.clone(),
            },
        );
        Seat {
            id,
            seats: self.clone(),
            last_read_ms,
            sent,
            evict,
        }
    }

    /// Every one of `max` slots is taken and `ip` asks for one: tells a
    /// connection to close for it; whether one was. From an address that
    /// holds half the slots already, its own silent longest; else the
    /// one silent longest among those that never sent a byte (open for
    /// [`MIN_AGE_OF_A_MUTE_CONNECTION`]) or have been silent for
    /// [`MIN_SILENCE_TO_EVICT`].
    pub fn make_room(&self, ip: IpAddr, max: usize) -> bool {
        let now = self.now_ms();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let (silent, mute) = (ms(MIN_SILENCE_TO_EVICT), ms(MIN_AGE_OF_A_MUTE_CONNECTION));
        let t = self.table();
        let live = || t.held.values().filter(|h| !h.evict.is_cancelled());
        let over_share = live().filter(|h| h.ip == ip).count() >= (max / 2).max(1);
        let pick = live()
            .map(|h| (h.last_read_ms.load(Ordering::Relaxed), h))
            .filter(|(at, h)| {
                let quiet = now.saturating_sub(*at);
                if over_share {
                    h.ip == ip
                } else if h.sent.load(Ordering::Relaxed) {
                    quiet >= silent
                } else {
                    quiet >= mute
                }
            })
            .min_by_key(|(at, h)| (h.sent.load(Ordering::Relaxed), *at));
        match pick {
            Some((_, h)) => {
                h.evict.cancel();
                true
            }
            None => false,
        }
    }
}

impl Seat {
    /// The connection read something.
    pub fn touch(&self) {
        self.last_read_ms
            .store(self.seats.now_ms(), Ordering::Relaxed);
        self.sent.store(true, Ordering::Relaxed);
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.seats.table().held.remove(&self.id);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_never_sent_goes_first_and_a_sending_one_only_once_silent() {
        let seats = Seats::default();
        let sensor = seats.take(ip(1));
        sensor.touch();
        let mute = seats.take(ip(2));
        let busy = seats.take(ip(3));
        busy.touch();
        // Nothing is old enough yet.
        assert!(!seats.make_room(ip(9), 8));
        tokio::time::advance(Duration::from_millis(600)).await;
        busy.touch();
        assert!(seats.make_room(ip(9), 8));
        assert!(mute.evict.is_cancelled(), "the one that never sent");
        assert!(!seats.make_room(ip(9), 8), "the others sent within 2 s");
        tokio::time::advance(Duration::from_secs(2)).await;
        busy.touch();
        assert!(seats.make_room(ip(9), 8));
        assert!(sensor.evict.is_cancelled() && !busy.evict.is_cancelled());
        drop((sensor, mute));
        assert_eq!(seats.table().held.len(), 1);
    }

    /// One host opening new connections faster than any gets old: past
    /// half the slots it only ever replaces its own, so the other half
    /// stays for everyone else.
    #[tokio::test(start_paused = true)]
    async fn an_address_holding_half_the_slots_gives_up_its_own() {
        let seats = Seats::default();
        let sensor = seats.take(ip(1));
        sensor.touch();
        let churn: Vec<Seat> = (0..4).map(|_| seats.take(ip(66))).collect();
        assert!(seats.make_room(ip(66), 8));
        assert_eq!(churn.iter().filter(|s| s.evict.is_cancelled()).count(), 1);
        assert!(!sensor.evict.is_cancelled());
    }
}
