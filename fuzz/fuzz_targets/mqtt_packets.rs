//! The bytes a broker sends the MQTT adapter, read packet after packet as
//! its connection reads its receive buffer: the first byte picks the size
//! limit, the rest is the stream. None may panic, every whole packet is
//! within the bytes, and an incomplete one asks for more than there is.
#![no_main]

use adapters::mqtt::wire::{parse, Frame, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&limit, mut rest)) = data.split_first() else {
        return;
    };
    let limit = usize::from(limit) * 64;
    loop {
        match parse(rest, limit) {
            Ok(Parsed::Frame { frame, len }) => {
                assert!(len >= 2 && len <= rest.len());
                if let Frame::Publish(p) = frame {
                    assert!(p.topic.len() + p.payload.len() <= len);
                    assert!(p.payload.len() <= limit);
                }
                rest = &rest[len..];
            }
            Ok(Parsed::Oversized { remaining, total, .. }) => {
                assert!(remaining > limit && total > remaining);
                if total >= rest.len() {
                    break;
                }
                rest = &rest[total..];
            }
            Ok(Parsed::Incomplete { need }) => {
                assert!(need > rest.len());
                break;
            }
            Err(_) => break,
        }
    }
});
