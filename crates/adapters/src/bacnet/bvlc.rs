//! BACnet Virtual Link Control, the BACnet/IP header (ASHRAE 135-2020
//! Annex J.2): type 0x81, a function, the whole datagram's length.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::CodecError;

pub const TYPE: u8 = 0x81;

/// BVLC functions the gateway sends or understands.
pub mod function {
    pub const RESULT: u8 = 0x00;
    pub const REGISTER_FOREIGN_DEVICE: u8 = 0x05;
    pub const FORWARDED_NPDU: u8 = 0x04;
    pub const DISTRIBUTE_BROADCAST: u8 = 0x09;
    pub const ORIGINAL_UNICAST: u8 = 0x0A;
    pub const ORIGINAL_BROADCAST: u8 = 0x0B;
}

/// One BVLL message, its NPDU borrowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bvlc<'a> {
    /// An NPDU sent to us (unicast or broadcast).
    Npdu(&'a [u8]),
    /// An NPDU a BBMD forwarded, with the address of the device that
    /// originally sent it (the one to answer).
    Forwarded(SocketAddrV4, &'a [u8]),
    /// A BBMD's answer to a registration (0 = success).
    Result(u16),
}

/// Splits a datagram into its BVLC and NPDU.
pub fn decode(d: &[u8]) -> Result<Bvlc<'_>, CodecError> {
    if d.len() < 4 {
        return Err(CodecError::Truncated);
    }
    if d[0] != TYPE {
        return Err(CodecError::Unexpected("BVLC type 0x81"));
    }
    let len = usize::from(u16::from_be_bytes([d[2], d[3]]));
    if len != d.len() {
        return Err(CodecError::Length("BVLC"));
    }
    let body = &d[4..];
    match d[1] {
        function::ORIGINAL_UNICAST
        | function::ORIGINAL_BROADCAST
        | function::DISTRIBUTE_BROADCAST => Ok(Bvlc::Npdu(body)),
        function::FORWARDED_NPDU => {
            let a = body.get(..6).ok_or(CodecError::Truncated)?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            let port = u16::from_be_bytes([a[4], a[5]]);
            Ok(Bvlc::Forwarded(SocketAddrV4::new(ip, port), &body[6..]))
        }
        function::RESULT => {
            let c = body.get(..2).ok_or(CodecError::Truncated)?;
            Ok(Bvlc::Result(u16::from_be_bytes([c[0], c[1]])))
        }
        _ => Err(CodecError::Unexpected(
            "a BVLC function the gateway handles",
        )),
    }
}

/// Wraps an NPDU: unicast, or broadcast (`Distribute-Broadcast-To-Network`
/// when registered as a foreign device, J.5.2.4).
pub fn encode(function: u8, npdu: &[u8]) -> Vec<u8> {
    let len = (npdu.len() + 4) as u16;
    let mut out = Vec::with_capacity(npdu.len() + 4);
    out.extend_from_slice(&[TYPE, function]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(npdu);
    out
}

/// Register-Foreign-Device with a time-to-live in seconds (J.5.2.1).
pub fn register_foreign_device(ttl_secs: u16) -> Vec<u8> {
    let mut out = vec![TYPE, function::REGISTER_FOREIGN_DEVICE, 0, 6];
    out.extend_from_slice(&ttl_secs.to_be_bytes());
    out
}
