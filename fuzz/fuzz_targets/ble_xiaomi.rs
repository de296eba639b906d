//! PVVX / ATC1441 service data (0x181A): any bytes must decode or give a
//! typed error, never panic; every value is finite, and the layout follows
//! the length.
#![no_main]

use adapters::ble::xiaomi::{self, Layout};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = xiaomi::decode(data) {
        assert!(t.values().iter().all(|m| m.value.is_finite()));
        let want = if data.len() == xiaomi::ATC_LEN {
            Layout::Atc1441
        } else {
            Layout::Pvvx
        };
        assert_eq!(t.layout, want);
    }
});
