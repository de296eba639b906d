//! Repeated advertisements of one measurement, dropped before they become
//! readings twice.
//!
//! Devices send each measurement several times to beat radio loss, and
//! BlueZ's DuplicateData hands every copy over. Two rules:
//! - BTHome packet id (object 0x00, uint8, wraps at 256): bthome-ble's
//!   `_skip_old_or_duplicated_advertisement`: within 4 s of the last
//!   accepted frame, a frame is new only if `0 < (new − old) mod 256 < 64`;
//!   after 4 s there is no filtering. Time is a monotonic clock passed in
//!   (FAULTS §3.5, §3.7), never the wall clock. The window counts from the
//!   last *accepted* frame, so a device that keeps the same id while its
//!   value does not change still reports every 4 s instead of vanishing.
//! - Ruuvi measurement sequence, PVVX / ATC frame counter: the same number
//!   as the last accepted frame is the same measurement (Ruuvi data format
//!   5 doc: "multiple packets with the same measurements can be sent").
//!
//! Both tables are bounded (FAULTS §3.10, advertisement storms): when full,
//! entries older than the window are dropped first, then the oldest.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::advert::Mac;

/// bthome-ble's window for packet-id filtering.
pub const PACKET_ID_WINDOW: Duration = Duration::from_secs(4);
/// An id at most this far ahead (mod 256) is newer (bthome-ble).
const PACKET_ID_AHEAD: u8 = 64;
/// Devices remembered per table.
pub const DEFAULT_CAPACITY: usize = 4096;

/// Last accepted BTHome packet id per device.
#[derive(Debug)]
pub struct PacketIds {
    last: HashMap<Mac, (u8, Instant)>,
    capacity: usize,
}

impl Default for PacketIds {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl PacketIds {
    pub fn new(capacity: usize) -> Self {
        Self {
            last: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Whether a frame from `mac` with packet id `id` at `now` is new; a new
    /// one is remembered.
    pub fn accept(&mut self, mac: Mac, id: u8, now: Instant) -> bool {
        if let Some(&(old, at)) = self.last.get(&mac) {
            let within = now.saturating_duration_since(at) <= PACKET_ID_WINDOW;
            let ahead = id.wrapping_sub(old);
            if within && !(1..PACKET_ID_AHEAD).contains(&ahead) {
                return false;
            }
        } else if self.last.len() >= self.capacity {
            self.make_room(now);
        }
        self.last.insert(mac, (id, now));
        true
    }

    fn make_room(&mut self, now: Instant) {
        self.last
            .retain(|_, (_, at)| now.saturating_duration_since(*at) <= PACKET_ID_WINDOW);
        if self.last.len() >= self.capacity {
            if let Some(oldest) = self
                .last
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(m, _)| *m)
            {
                self.last.remove(&oldest);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

/// Last accepted measurement sequence number per device and format.
#[derive(Debug)]
pub struct Sequences {
    last: HashMap<(Mac, &'static str), (u32, u64)>,
    capacity: usize,
    /// Insertion clock, to drop the least recently seen when full.
    tick: u64,
}

impl Default for Sequences {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl Sequences {
    pub fn new(capacity: usize) -> Self {
        Self {
            last: HashMap::new(),
            capacity: capacity.max(1),
            tick: 0,
        }
    }

    /// Whether sequence `seq` of `format` from `mac` is a new measurement;
    /// a new one is remembered.
    pub fn accept(&mut self, mac: Mac, format: &'static str, seq: u32) -> bool {
        self.tick += 1;
        let key = (mac, format);
        if let Some(entry) = self.last.get_mut(&key) {
            if entry.0 == seq {
                return false;
            }
            *entry = (seq, self.tick);
            return true;
        }
        if self.last.len() >= self.capacity {
            if let Some(oldest) = self
                .last
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| *k)
            {
                self.last.remove(&oldest);
            }
        }
        self.last.insert(key, (seq, self.tick));
        true
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Mac = Mac([0xA4, 0xC1, 0x38, 0x8D, 0x18, 0xB2]);
    const B: Mac = Mac([0xA4, 0xC1, 0x38, 0x8D, 0x18, 0xB3]);

    #[test]
    fn packet_ids_follow_bthome_ble() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = PacketIds::default();
        assert!(p.accept(A, 9, t0), "first frame");
        assert!(!p.accept(A, 9, t0), "same id within 4 s");
        assert!(!p.accept(A, 8, t0), "older id");
        assert!(p.accept(B, 9, t0), "another device");
        assert!(p.accept(A, 9, t0 + s(5)), "more than 4 s later");
        assert!(p.accept(A, 10, t0 + s(5)), "next id");
        // Wrapping at 256: 255 → 0 is one step ahead.
        assert!(p.accept(A, 255, t0 + s(11)));
        assert!(p.accept(A, 0, t0 + s(11)));
        assert!(p.accept(A, 63, t0 + s(11)), "63 ahead is newer");
        assert!(!p.accept(A, 127, t0 + s(11)), "64 ahead is not");
        // Exactly 4 s is still inside the window.
        assert!(!p.accept(A, 63, t0 + s(15)));
        assert!(p.accept(A, 63, t0 + s(15) + Duration::from_millis(1)));
    }

    #[test]
    fn packet_ids_wrap_like_bthome_ble_test_increasing_packet_id() {
        // 189 → 190 (+1) → 253 (+63) → 47 (+50, across 255), all at once.
        let t0 = Instant::now();
        let mut p = PacketIds::default();
        for id in [189, 190, 253, 47] {
            assert!(p.accept(A, id, t0), "{id}");
        }
    }

    #[test]
    fn packet_id_table_is_bounded() {
        let t0 = Instant::now();
        let mut p = PacketIds::new(2);
        assert!(p.accept(A, 1, t0));
        assert!(p.accept(B, 1, t0 + Duration::from_secs(1)));
        let c = Mac([1, 2, 3, 4, 5, 6]);
        assert!(p.accept(c, 1, t0 + Duration::from_secs(2)));
        assert_eq!(p.len(), 2);
        // A (the oldest) was dropped, so its repeat passes; c is remembered.
        assert!(p.accept(A, 1, t0 + Duration::from_secs(2)));
        assert!(!p.accept(c, 1, t0 + Duration::from_secs(2)));
    }

    #[test]
    fn sequences_drop_the_same_measurement() {
        let mut s = Sequences::new(2);
        assert!(s.accept(A, "ruuvi", 205));
        assert!(!s.accept(A, "ruuvi", 205));
        assert!(s.accept(A, "pvvx", 205), "formats are apart");
        assert!(s.accept(A, "ruuvi", 206));
        assert!(!s.accept(A, "ruuvi", 206));
        assert_eq!(s.len(), 2);
        assert!(s.accept(B, "ruuvi", 1));
        assert_eq!(s.len(), 2);
    }
}
