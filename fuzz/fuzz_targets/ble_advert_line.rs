//! A recorded advertisement line (`source = "replay"`, `ble record`): any
//! bytes as a line must parse or give a typed error, never panic; and a
//! parsed advertisement written back with `to_line` must parse to itself.
#![no_main]

use adapters::ble::Advertisement;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(adv) = Advertisement::parse_line(line) {
        let again = Advertisement::parse_line(&adv.to_line());
        assert_eq!(again.as_ref(), Ok(&adv));
    }
});
