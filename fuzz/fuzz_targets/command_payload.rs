//! The command parser (`commands::parse`): any bytes as a command payload
//! and any text as its topic. Nothing may panic; an accepted command has an
//! id within bounds and a finite number where it holds one; a refused one
//! says why.
#![no_main]

use commands::parse::{device_of_topic, parse, readable_id, MAX_ID};
use gateway_core::command::CommandValue;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let topic = String::from_utf8_lossy(data);
    let _ = device_of_topic("building/hq", &topic);
    if let Some(id) = readable_id(data) {
        assert!(!id.is_empty() && id.chars().count() <= MAX_ID);
    }
    match parse(data) {
        Ok(c) => {
            assert!(!c.id.is_empty() && c.id.chars().count() <= MAX_ID);
            if let CommandValue::Number(v) = c.value {
                assert!(v.is_finite());
            }
            let _ = c.value.to_json();
        }
        Err(m) => assert!(!m.detail.is_empty()),
    }
});
