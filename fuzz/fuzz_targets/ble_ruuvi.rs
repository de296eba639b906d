//! RuuviTag manufacturer data: any bytes must decode or give a typed
//! error, never panic; every value is finite and a 24-byte format-5
//! frame always decodes.
#![no_main]

use adapters::ble::ruuvi;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match ruuvi::decode(data) {
        Ok(r) => {
            assert!(r.values().iter().all(|m| m.value.is_finite()));
            assert_eq!(data.len(), ruuvi::RAWV2_LEN);
        }
        Err(_) => assert!(data.len() != ruuvi::RAWV2_LEN || data[0] != 5),
    }
});
