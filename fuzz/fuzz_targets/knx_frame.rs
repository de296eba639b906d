//! A KNXnet/IP datagram (or TCP frame) as the knx adapter reads it: the
//! frame, the cEMI inside a tunnelling request or routing indication,
//! and the group value through every DPT the gateway reads; the bytes as
//! an ETS export too. None may panic.
#![no_main]

use adapters::knx::cemi::{self, Cemi};
use adapters::knx::dpt::Dpt;
use adapters::knx::frame::{self, Frame};
use adapters::knx::link::GroupTelegram;
use libfuzzer_sys::fuzz_target;

const DPTS: &[(u16, u16)] = &[
    (1, 1), (5, 1), (5, 3), (5, 10), (6, 1), (7, 1), (7, 3), (8, 10), (9, 1), (12, 1),
    (13, 13), (14, 56), (16, 0), (16, 1), (17, 1), (18, 1), (20, 102),
];

fuzz_target!(|data: &[u8]| {
    let body = match frame::decode(data) {
        Ok(Frame::TunnellingRequest { cemi, .. }) | Ok(Frame::RoutingIndication { cemi }) => cemi,
        // A cEMI frame on its own, as if tunnelled.
        _ => data,
    };
    if let Ok(Cemi::LData(f)) = cemi::decode(body) {
        if let Some(t) = GroupTelegram::from_ldata(&f, gateway_core::Timestamp::default()) {
            for (main, sub) in DPTS {
                let _ = Dpt::new(*main, *sub).decode(t.data.as_data());
            }
        }
    }
    let _ = frame::total_length(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = adapters::knx::ets::parse(text, "fuzz");
    }
});
