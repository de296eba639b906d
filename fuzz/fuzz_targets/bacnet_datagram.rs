//! A BACnet/IP datagram as the client reads it: the frame (BVLC, NPDU,
//! APDU), then every service decoder on its parameters, and the bytes as
//! a stream of segments into one reassembly. None may panic, and a
//! reassembly never holds more than its bound.
#![no_main]

use adapters::bacnet::apdu::Apdu;
use adapters::bacnet::frame::{self, Frame};
use adapters::bacnet::segment::{Reassembly, MAX_BYTES};
use adapters::bacnet::services;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Frame::Apdu { apdu, .. }) = frame::decode(data) {
        match apdu {
            Apdu::Unconfirmed { body, .. }
            | Apdu::ComplexAck { body, .. }
            | Apdu::ConfirmedRequest { body, .. } => {
                let _ = services::decode_i_am(body);
                let _ = services::decode_read_property_ack(body);
                let _ = services::decode_rpm_ack(body);
                let _ = services::decode_cov_notification(body);
            }
            Apdu::Error { body, .. } => {
                let _ = services::decode_error(body);
            }
            _ => {}
        }
    }
    // Every 4 bytes: sequence, window, more, length of the segment's body.
    let mut r = Reassembly::new(12);
    let mut rest = data;
    while rest.len() >= 4 {
        let (h, tail) = rest.split_at(4);
        let n = usize::from(h[3]).min(tail.len());
        let (body, next) = tail.split_at(n);
        match r.push(h[0], h[1], h[2] & 1 == 1, 12, body) {
            Ok(p) => {
                if let Some(done) = p.done {
                    assert!(done.len() <= MAX_BYTES);
                    break;
                }
            }
            Err(_) => break,
        }
        rest = next;
    }
});
