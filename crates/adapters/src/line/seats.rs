//! Who holds the `tcp_line` adapter's connections, and when each last
//! sent a byte: when every slot is taken, the connection silent longest
//! gives its slot to the newcomer. 64 sockets a buggy node leaked after
//! Wi-Fi drops (or anyone on the network opened and left) kept every
//! sensor out for up to `idle_timeout`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A connection silent for less than this keeps its slot: a node that
/// is sending is never cut for another.
pub const MIN_SILENCE_TO_EVICT: Duration = Duration::from_secs(2);

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
    last_read_ms: Arc<AtomicU64>,
    evict: CancellationToken,
}

/// One connection's seat: touched at each read, cancelled to evict it,
/// given back when dropped.
pub struct Seat {
    id: u64,
    seats: Seats,
    last_read_ms: Arc<AtomicU64>,
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

    /// A seat for a new connection.
    pub fn take(&self) -> Seat {
        let last_read_ms = Arc::new(AtomicU64::new(self.now_ms()));
        let evict = CancellationToken::new();
        let mut t = self.table();
        let id = t.next;
        t.next += 1;
        t.held.insert(
            id,
            Held {
                last_read_ms: last_read_ms.clone(),
                evict: evict.clone(),
            },
        );
        Seat {
            id,
            seats: self.clone(),
            last_read_ms,
            evict,
        }
    }

    /// Tells the connection silent longest, if silent for at least
    /// [`MIN_SILENCE_TO_EVICT`], to close; whether one was.
    pub fn evict_the_most_silent(&self) -> bool {
        let now = self.now_ms();
        let least = u64::try_from(MIN_SILENCE_TO_EVICT.as_millis()).unwrap_or(u64::MAX);
        let t = self.table();
        let silent = t
            .held
            .values()
            .filter(|h| !h.evict.is_cancelled())
            .map(|h| (h.last_read_ms.load(Ordering::Relaxed), h))
            .filter(|(at, _)| now.saturating_sub(*at) >= least)
            .min_by_key(|(at, _)| *at);
        match silent {
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

    #[tokio::test(start_paused = true)]
    async fn the_connection_silent_longest_is_evicted_and_a_busy_one_never() {
        let seats = Seats::default();
        let old = seats.take();
        tokio::time::advance(Duration::from_secs(5)).await;
        let newer = seats.take();
        tokio::time::advance(Duration::from_secs(1)).await;
        let busy = seats.take();
        // Only `old` has been silent for 2 s or more.
        assert!(seats.evict_the_most_silent());
        assert!(old.evict.is_cancelled());
        assert!(!newer.evict.is_cancelled() && !busy.evict.is_cancelled());
        // The next one only once it has been silent long enough.
        assert!(!seats.evict_the_most_silent());
        tokio::time::advance(Duration::from_secs(2)).await;
        busy.touch();
        assert!(seats.evict_the_most_silent());
        assert!(newer.evict.is_cancelled() && !busy.evict.is_cancelled());
        drop(old);
        drop(newer);
        assert_eq!(seats.table().held.len(), 1);
    }
}
