//! BTHome v2 service data: any bytes, plaintext and with a bindkey, must
//! decode or give a typed error, never panic, and every value is finite.
//! Any bytes sealed as a device would must open to the objects a
//! plaintext frame of the same bytes gives: decryption changes nothing
//! but the transport.
#![no_main]

use adapters::ble::bthome::{self, Frame};
use adapters::ble::bthome_crypto::seal;
use adapters::ble::{BindKey, Mac};
use libfuzzer_sys::fuzz_target;

const MAC: Mac = Mac([0x54, 0x48, 0xE6, 0x8F, 0x80, 0xA5]);
// bthome.io encryption page example key.
const KEY: BindKey = BindKey([
    0x23, 0x1d, 0x39, 0xc1, 0xd7, 0xcc, 0x1a, 0xb1, 0xae, 0xe2, 0x24, 0xcd, 0x09, 0x6d, 0xb9, 0x32,
]);

fn finite(f: &Frame) {
    assert!(f.values.iter().all(|m| m.value.is_finite()));
}

fuzz_target!(|data: &[u8]| {
    for key in [None, Some(&KEY)] {
        if let Ok(f) = bthome::decode(data, MAC, key) {
            finite(&f);
        }
    }
    let plain = bthome::decode(&[&[0x40], data].concat(), MAC, None);
    let sealed = seal(&KEY, MAC, 0x41, 7, data);
    let opened = bthome::decode(&sealed, MAC, Some(&KEY));
    match (plain, opened) {
        (Ok(p), Ok(o)) => {
            assert_eq!(o.counter, Some(7));
            assert_eq!((p.values, p.stop, p.events), (o.values, o.stop, o.events));
        }
        (p, o) => panic!("plain {p:?} vs sealed {o:?}"),
    }
});
