//! LoRaWAN: the pure parts of the path from a packet forwarder to readings.
//!
//! ```text
//! UDP datagram ──► semtech (GWMP v2 codec) ──► frame (PHYPayload: MIC,
//!                  PUSH_ACK / PULL_ACK bytes      FCnt, decrypt, MAC cmds)
//!                                              ──► codecs (FRMPayload → values)
//! ```
//!
//! Every module here is a pure codec: bytes in, typed values or a typed
//! error out, never a panic. The socket adapter, FCnt persistence and
//! de-duplication build on them.

pub mod codecs;
pub mod config;
pub mod dedup;
pub mod fcnt;
pub mod frame;
pub mod mac;
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
