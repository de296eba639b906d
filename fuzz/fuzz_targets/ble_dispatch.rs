//! The dispatcher with its memory: a stream of advertisements from a few
//! devices, one of them with a bindkey, through one long-lived decoder (so
//! counters, packet ids and sequences carry state between inputs).
//!
//! Input: byte 0 picks the device (bits 0-1), the data's key (bits 2-3:
//! BTHome, 0x181A, Ruuvi, an unknown company) and how far the clock moves
//! (bits 4-7, in seconds); the rest is the data. It must never panic,
//! every reading is finite, the keyed device never yields a plaintext
//! format, and an encrypted frame is only accepted with a counter the
//! table then holds.
#![no_main]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use adapters::ble::{Advertisement, BindKey, BleDecoder, Format, Mac, Outcome, ServiceUuid};
use gateway_core::Timestamp;
use libfuzzer_sys::fuzz_target;

const KEY: BindKey = BindKey([
    0x23, 0x1d, 0x39, 0xc1, 0xd7, 0xcc, 0x1a, 0xb1, 0xae, 0xe2, 0x24, 0xcd, 0x09, 0x6d, 0xb9, 0x32,
]);
const KEYED: Mac = Mac([0x54, 0x48, 0xE6, 0x8F, 0x80, 0xA5]);

struct State {
    decoder: BleDecoder,
    now: Instant,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let state = guard.get_or_insert_with(|| State {
        decoder: BleDecoder::default(),
        now: Instant::now(),
    });
    state.now += Duration::from_secs(u64::from(mode >> 4));
    let mac = match mode & 3 {
        0 => KEYED,
        n => Mac([0xA4, 0xC1, 0x38, 0x8D, 0x18, n]),
    };
    let key = (mac == KEYED).then_some(&KEY);
    let Ok(time) = Timestamp::from_millis(1_763_719_200_000) else {
        return;
    };
    let mut adv = Advertisement::new(mac, Some(-60), time);
    match (mode >> 2) & 3 {
        0 => adv.service_data.push((ServiceUuid::BTHOME, rest.to_vec())),
        1 => adv
            .service_data
            .push((ServiceUuid::ENVIRONMENTAL_SENSING, rest.to_vec())),
        2 => adv.manufacturer_data.push((0x0499, rest.to_vec())),
        _ => adv.manufacturer_data.push((0x004C, rest.to_vec())),
    }
    match state.decoder.decode(&adv, key, state.now) {
        Outcome::Decoded(d) => {
            assert!(d.readings(time).iter().all(|r| r.value().is_finite()));
            if key.is_some() {
                assert_eq!(d.format, Format::BthomeEncrypted);
                assert!(state.decoder.counters.last(mac).is_some());
            } else {
                assert_ne!(d.format, Format::BthomeEncrypted);
            }
        }
        Outcome::NotUnderstood(u) => assert_eq!(u.company_ids, [0x004C]),
        Outcome::Duplicate { .. } | Outcome::Refused { .. } => {}
    }
});
