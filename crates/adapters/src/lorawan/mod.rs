//! LoRaWAN: from a packet forwarder's datagram to verified readings.
//!
//! ```text
//! UDP datagram ──► semtech (GWMP v2 codec) ──► dedup (one uplink per frame
//!                  PUSH_ACK / PULL_ACK bytes      heard by N forwarders)
//!   ──► uplink (device by DevAddr, frame: MIC, FCnt, decrypt; fcnt: the
//!       last counter per device on disk) ──► codecs (FRMPayload → values)
//! ```
//!
//! `source` is the only module doing I/O besides `fcnt`'s file: the
//! `semtech_udp` adapter's socket loop. Everything else is a pure codec or
//! state machine: bytes in, typed values or a typed error out, never a
//! panic. `config` holds `[[lorawan.device]]` and the adapter's table;
//! `command` turns commands from the cloud into queued downlinks whose
//! results wait for them to leave.

pub mod adr;
pub mod class_a;
pub mod codecs;
pub mod command;
pub mod config;
pub mod crypto;
pub mod dedup;
pub mod downlink;
pub mod downlink_feed;
pub mod fcnt;
pub mod frame;
pub mod hex_text;
pub mod join;
pub mod kind;
pub mod mac;
pub mod otaa;
pub mod region;
pub mod semtech;
pub mod source;
pub mod uplink;

/// Bytes from a hex string, for tests built from published vectors.
#[cfg(test)]
pub(crate) fn test_hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length: {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
