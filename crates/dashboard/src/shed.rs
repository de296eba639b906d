//! Which connections the dashboard keeps when too many come.
//!
//! One global cap shared by everyone let 500 clients that connect, send
//! nothing and reconnect keep every person out. Here:
//! - each client address holds at most [`Limits::per_address`] connections
//!   (pages and API calls) and [`Limits::per_address_streams`] `/events`
//!   streams: one address cannot take the room of the others;
//! - `/events` streams are counted apart from page requests: open pages
//!   (each holds a stream) never leave a page request without room;
//! - when the pages are full, the connection idle the longest (keep-alive
//!   with no request, or one that never sent its head) is closed for the
//!   newcomer: a person's request wins over a silent socket;
//! - every refusal and eviction is counted by reason in
//!   [`CONNECTIONS_REFUSED`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gateway_core::Telemetry;
use tokio_util::sync::CancellationToken;

/// Connections refused or closed to make room, by `reason`:
/// `per_address` (that address holds its share), `full` (no idle one to
/// close), `idle_evicted` (an idle one closed for a newcomer),
/// `streams_full` and `streams_per_address` (an `/events` request answered
/// 503), `head_timeout` (no request head in time).
pub const CONNECTIONS_REFUSED: &str = "edge_gateway_dashboard_connections_refused_total";

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Page and API connections at once, all addresses.
    pub pages: usize,
    /// `/events` streams at once, all addresses.
    pub streams: usize,
    /// Page and API connections of one address.
    pub per_address: usize,
    /// `/events` streams of one address (one per open tab).
    pub per_address_streams: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // A Pi's service has 1024 descriptors by default: this leaves
        // most of them to the data path.
        Self {
            pages: 128,
            streams: 64,
            // A quarter each: room for a reverse proxy's pool (all its
            // users come from one address) and still three quarters for
            // everyone else when one address misbehaves.
            per_address: 32,
            per_address_streams: 16,
        }
    }
}

#[derive(Debug)]
struct Entry {
    address: IpAddr,
    stream: bool,
    /// Since when no request is in progress; `None` while one is.
    idle_since: Option<Instant>,
    close: CancellationToken,
}

struct Table {
    next: u64,
    entries: HashMap<u64, Entry>,
}

/// The dashboard's open connections.
#[derive(Clone)]
pub struct Connections {
    limits: Limits,
    table: Arc<Mutex<Table>>,
    telemetry: Telemetry,
}

/// One admitted connection; dropping it frees its place.
pub struct Slot {
    id: u64,
    table: Arc<Mutex<Table>>,
    /// Cancelled when the connection is closed to make room.
    pub close: CancellationToken,
}

impl Connections {
    pub fn new(limits: Limits, telemetry: Telemetry) -> Self {
        Self {
            limits,
            table: Arc::new(Mutex::new(Table {
                next: 0,
                entries: HashMap::new(),
            })),
            telemetry,
        }
    }

    pub fn refused(&self, reason: &str) {
        self.telemetry
            .counter(CONNECTIONS_REFUSED, &[("reason", reason)])
            .inc();
    }

    /// A place for a new connection from `address`, or the reason there
    /// is none (counted).
    pub fn admit(&self, address: IpAddr) -> Result<Slot, &'static str> {
        let mut t = lock(&self.table);
        let mine = t
            .entries
            .values()
            .filter(|e| !e.stream && e.address == address)
            .count();
        if mine >= self.limits.per_address {
            drop(t);
            self.refused("per_address");
            return Err("per_address");
        }
        let pages = t.entries.values().filter(|e| !e.stream).count();
        if pages >= self.limits.pages {
            let oldest = t
                .entries
                .iter()
                .filter(|(_, e)| !e.stream)
                .filter_map(|(id, e)| e.idle_since.map(|since| (since, *id)))
                .min();
            match oldest {
                Some((_, id)) => {
                    if let Some(e) = t.entries.remove(&id) {
                        e.close.cancel();
                    }
                    self.refused("idle_evicted");
                }
                None => {
                    drop(t);
                    self.refused("full");
                    return Err("full");
                }
            }
        }
        let id = t.next;
        t.next += 1;
        let close = CancellationToken::new();
        t.entries.insert(
            id,
            Entry {
                address,
                stream: false,
                idle_since: Some(Instant::now()),
                close: close.clone(),
            },
        );
        Ok(Slot {
            id,
            table: self.table.clone(),
            close,
        })
    }

    /// Moves `slot` to the streams, if there is room for one more (for
    /// its address and in all); the reason otherwise (counted).
    pub fn to_stream(&self, slot: &Slot) -> Result<(), &'static str> {
        let mut t = lock(&self.table);
        let Some(address) = t.entries.get(&slot.id).map(|e| e.address) else {
            return Err("full");
        };
        let streams = t.entries.values().filter(|e| e.stream);
        let (all, mine) = streams.fold((0, 0), |(all, mine), e| {
            (all + 1, mine + usize::from(e.address == address))
        });
        let reason = if mine >= self.limits.per_address_streams {
            "streams_per_address"
        } else if all >= self.limits.streams {
            "streams_full"
        } else {
            if let Some(e) = t.entries.get_mut(&slot.id) {
                e.stream = true;
                e.idle_since = None;
            }
            return Ok(());
        };
        drop(t);
        self.refused(reason);
        Err(reason)
    }

    #[cfg(test)]
    fn open(&self) -> (usize, usize) {
        let t = lock(&self.table);
        let streams = t.entries.values().filter(|e| e.stream).count();
        (t.entries.len() - streams, streams)
    }
}

impl Slot {
    /// A request is being answered: not idle.
    pub fn busy(&self) {
        if let Some(e) = lock(&self.table).entries.get_mut(&self.id) {
            e.idle_since = None;
        }
    }

    /// The answer went out: idle (unless it became a stream).
    pub fn idle(&self) {
        if let Some(e) = lock(&self.table).entries.get_mut(&self.id) {
            if !e.stream {
                e.idle_since = Some(Instant::now());
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.table).entries.remove(&self.id);
    }
}

fn lock(table: &Mutex<Table>) -> std::sync::MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ATTACKER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
    const PERSON: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));

    fn limits() -> Limits {
        Limits {
            pages: 4,
            streams: 2,
            per_address: 3,
            per_address_streams: 1,
        }
    }

    #[test]
    fn one_address_gets_its_share_and_the_oldest_idle_goes_first_when_full() {
        let t = Telemetry::default();
        let c = Connections::new(limits(), t.clone());
        let held: Vec<Slot> = (0..3).map(|_| c.admit(ATTACKER).unwrap()).collect();
        assert_eq!(c.admit(ATTACKER).err(), Some("per_address"));
        // The person gets in beside the attacker's share.
        let page = c.admit(PERSON).unwrap();
        page.busy();
        // Full: the attacker's oldest idle socket is closed, never the
        // person's request in progress.
        let other = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3));
        let newcomer = c.admit(other).unwrap();
        assert!(held[0].close.is_cancelled());
        assert!(!page.close.is_cancelled());
        assert_eq!(c.open(), (4, 0));
        // Nothing idle left to close: refused.
        for s in &held[1..] {
            s.busy();
        }
        newcomer.busy();
        assert_eq!(c.admit(other).err(), Some("full"));
        let count = |r: &str| t.counter_value(CONNECTIONS_REFUSED, &[("reason", r)]);
        assert_eq!(count("per_address"), Some(1));
        assert_eq!(count("idle_evicted"), Some(1));
        assert_eq!(count("full"), Some(1));
        drop(held);
        assert_eq!(c.open(), (2, 0));
    }

    #[test]
    fn streams_are_counted_apart_from_pages() {
        let c = Connections::new(limits(), Telemetry::default());
        let a = c.admit(ATTACKER).unwrap();
        let b = c.admit(ATTACKER).unwrap();
        c.to_stream(&a).unwrap();
        assert_eq!(c.to_stream(&b), Err("streams_per_address"));
        let p = c.admit(PERSON).unwrap();
        c.to_stream(&p).unwrap();
        let q = c.admit(PERSON).unwrap();
        assert_eq!(c.to_stream(&q), Err("streams_per_address"));
        assert_eq!(c.open(), (2, 2));
        // Streams leave the page room whole: four pages still fit.
        let pages: Vec<Slot> = (0..2)
            .map(|i| {
                c.admit(IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 1, i)))
                    .unwrap()
            })
            .collect();
        assert_eq!(c.open(), (4, 2));
        drop(pages);
    }
}
