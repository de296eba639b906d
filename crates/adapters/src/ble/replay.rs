//! BTHome encryption counters: replay protection across frames and restarts.
//!
//! bthome.io encryption page: the counter "should increase every
//! advertisement" and replay protection "has to be implemented on the
//! receiving side". The rule here (issue #14):
//! - a counter above the last accepted one is accepted, if less than 2^31
//!   above: a bigger jump can only be a frame recorded before the counter
//!   wrapped (at one frame per second, 2^31 frames take 68 years), and
//!   without this limit every such frame would pass again after the wrap;
//! - the same counter again is a repeat of an accepted frame (a BLE device
//!   sends each advertisement several times, and BlueZ's DuplicateData
//!   passes them all): [`Verdict::Repeat`], no values, not an attack;
//! - a lower counter is a replay, refused, except the wrap after
//!   0xFFFFFFFF to a small value: a step forward modulo 2^32 of at most
//!   [`MAX_WRAP_STEP`].
//!
//! The two bthome-ble versions disagree here (FAULTS §3.5, vector notes):
//! 3.25.0 accepts an equal counter and any counter below 100, which lets a
//! recorded frame with a small counter be replayed at any time. This rule
//! only accepts small counters right after the top of the range.
//!
//! The table is plain data: [`CounterTable`] serialises (serde) to the file
//! the adapter keeps in `state_dir`, like the LoRaWAN frame counters, and
//! must be written before the frame's readings leave (FAULTS §3.4).
//! Only frames whose MIC verified may reach [`CounterTable::accept`]: a
//! forged frame must never move the counter.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::advert::Mac;

/// Largest forward step accepted (serial-number arithmetic, RFC 1982).
const MAX_FORWARD_STEP: u32 = 1 << 31;

/// How far past 0xFFFFFFFF a counter may land and still count as the wrap:
/// a device may have sent (and we missed) this many frames around the top.
pub const MAX_WRAP_STEP: u32 = 1 << 16;

/// What to do with a frame whose MIC verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New: accept, and remember the counter.
    Fresh,
    /// The counter of the last accepted frame again.
    Repeat,
    /// Below the last accepted counter and not a wrap.
    Replay { last: u32 },
}

/// Last accepted encryption counter per device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterTable {
    /// Device MAC → last accepted counter.
    last_counter: BTreeMap<Mac, u32>,
    /// Set when a counter changed since [`CounterTable::take_changed`].
    #[serde(skip)]
    changed: bool,
}

impl CounterTable {
    /// A table restored from what the adapter persisted.
    pub fn from_map(last_counter: BTreeMap<Mac, u32>) -> Self {
        Self {
            last_counter,
            changed: false,
        }
    }

    /// The table as data, for persisting.
    pub fn as_map(&self) -> &BTreeMap<Mac, u32> {
        &self.last_counter
    }

    pub fn last(&self, mac: Mac) -> Option<u32> {
        self.last_counter.get(&mac).copied()
    }

    /// Judges `counter` from `mac` without remembering it.
    pub fn check(&self, mac: Mac, counter: u32) -> Verdict {
        let Some(last) = self.last(mac) else {
            // First frame ever seen from this device: nothing to compare.
            return Verdict::Fresh;
        };
        if counter > last && counter - last < MAX_FORWARD_STEP {
            Verdict::Fresh
        } else if counter > last {
            Verdict::Replay { last }
        } else if counter == last {
            Verdict::Repeat
        } else if counter.wrapping_sub(last) <= MAX_WRAP_STEP {
            // e.g. last 0xFFFFFFFF, counter 0: one step forward.
            Verdict::Fresh
        } else {
            Verdict::Replay { last }
        }
    }

    /// Judges `counter` and, when fresh, remembers it.
    pub fn accept(&mut self, mac: Mac, counter: u32) -> Verdict {
        let verdict = self.check(mac, counter);
        if verdict == Verdict::Fresh {
            self.last_counter.insert(mac, counter);
            self.changed = true;
        }
        verdict
    }

    /// Whether a counter changed since the last call (then persist).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Mac = Mac([0x54, 0x48, 0xE6, 0x8F, 0x80, 0xA5]);
    const B: Mac = Mac([0xA4, 0xC1, 0x38, 0x8D, 0x18, 0xB2]);

    #[test]
    fn increasing_repeat_replay_and_wrap() {
        let mut t = CounterTable::default();
        assert_eq!(t.accept(A, 1_122_867), Verdict::Fresh);
        assert!(t.take_changed());
        assert_eq!(t.accept(A, 1_122_868), Verdict::Fresh);
        assert_eq!(t.accept(A, 1_122_868), Verdict::Repeat);
        assert!(t.take_changed());
        assert!(!t.take_changed());
        assert_eq!(t.accept(A, 1_122_866), Verdict::Replay { last: 1_122_868 });
        // A small counter is no wrap in the middle of the range.
        assert_eq!(t.accept(A, 0), Verdict::Replay { last: 1_122_868 });
        assert_eq!(t.last(A), Some(1_122_868));
        // Another device has its own counter.
        assert_eq!(t.accept(B, 5), Verdict::Fresh);

        // A jump of 2^31 or more is refused, so climb to the top in steps.
        assert_eq!(t.accept(A, u32::MAX), Verdict::Replay { last: 1_122_868 });
        assert_eq!(t.accept(A, 0x8000_0000), Verdict::Fresh);
        assert_eq!(t.accept(A, u32::MAX), Verdict::Fresh);
        assert_eq!(t.check(A, 0), Verdict::Fresh);
        assert_eq!(t.check(A, MAX_WRAP_STEP - 1), Verdict::Fresh);
        assert_eq!(
            t.check(A, MAX_WRAP_STEP),
            Verdict::Replay { last: u32::MAX }
        );
        assert_eq!(t.accept(A, 0), Verdict::Fresh);
        // Frames from before the wrap are far "above" 0: refused.
        assert_eq!(t.accept(A, u32::MAX), Verdict::Replay { last: 0 });
        assert_eq!(t.accept(A, 1 << 31), Verdict::Replay { last: 0 });
        assert_eq!(t.accept(A, (1 << 31) - 1), Verdict::Fresh);
    }

    #[test]
    fn the_table_survives_serialisation() {
        let mut t = CounterTable::default();
        t.accept(A, 7);
        t.accept(B, u32::MAX);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(
            json,
            r#"{"last_counter":{"54:48:e6:8f:80:a5":7,"a4:c1:38:8d:18:b2":4294967295}}"#
        );
        let back: CounterTable = serde_json::from_str(&json).unwrap();
        assert_eq!(back.as_map(), t.as_map());
        assert_eq!(back.check(A, 7), Verdict::Repeat);
        assert_eq!(
            CounterTable::from_map(t.as_map().clone()).last(B),
            Some(u32::MAX)
        );
    }
}
