//! The CoAP server's datagram handling: any bytes, from a couple of peers,
//! through one long-lived handler (so the duplicate cache and Block1
//! transfers carry state between inputs). It must never panic, and any reply
//! must be a version-1 message no larger than the RFC 7252 §4.6 bound.
#![no_main]

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use adapters::coap::handler::{Handler, Limits};
use gateway_core::Timestamp;
use libfuzzer_sys::fuzz_target;

static HANDLER: Mutex<Option<Handler>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let Some((&which, datagram)) = data.split_first() else {
        return;
    };
    let peer: SocketAddr = if which & 1 == 0 {
        ([127, 0, 0, 1], 5683).into()
    } else {
        ([192, 0, 2, 1], 40000).into()
    };
    let mut guard = HANDLER.lock().unwrap_or_else(|e| e.into_inner());
    let handler = guard.get_or_insert_with(|| {
        Handler::new(
            Limits {
                max_payload_bytes: 1024,
                max_body_bytes: 8192,
                dedup_capacity: 4096,
                max_devices: 64,
                max_readings_per_message: adapters::payload::DEFAULT_MAX_READINGS_PER_MESSAGE,
            },
            1,
        )
    });
    let arrival = Timestamp::from_millis(1_763_719_200_000).unwrap_or_else(|_| unreachable!());
    let out = if which & 2 == 0 {
        handler.handle(peer, datagram, Instant::now(), arrival)
    } else {
        handler.oversize(datagram)
    };
    if let Some(reply) = out.reply {
        assert!(reply.len() >= 4 && reply[0] >> 6 == 1);
        assert!(reply.len() <= 1152);
    }
});
