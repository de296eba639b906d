//! The network layer header (ASHRAE 135-2020 §6.2): version 1, a control
//! octet, optional destination and source networks. The gateway talks to
//! devices on its own BACnet/IP network; a source network (a device
//! behind a router) is kept so the answer can be addressed through it.

use super::CodecError;

pub const VERSION: u8 = 1;
const NETWORK_MESSAGE: u8 = 0x80;
const HAS_DNET: u8 = 0x20;
const HAS_SNET: u8 = 0x08;
pub const EXPECTING_REPLY: u8 = 0x04;

/// A remote station: network number and MAC address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Station {
    pub net: u16,
    pub mac: Vec<u8>,
}

/// A decoded NPDU header and its APDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Npdu<'a> {
    pub control: u8,
    pub destination: Option<Station>,
    pub source: Option<Station>,
    /// `None` for network-layer messages (router messages), which the
    /// gateway ignores.
    pub apdu: Option<&'a [u8]>,
}

fn station(b: &[u8], at: &mut usize) -> Result<Station, CodecError> {
    let h = b.get(*at..*at + 3).ok_or(CodecError::Truncated)?;
    let net = u16::from_be_bytes([h[0], h[1]]);
    let len = usize::from(h[2]);
    let mac = b.get(*at + 3..*at + 3 + len).ok_or(CodecError::Truncated)?;
    *at += 3 + len;
    Ok(Station {
        net,
        mac: mac.to_vec(),
    })
}

pub fn decode(b: &[u8]) -> Result<Npdu<'_>, CodecError> {
    let (&version, _) = b.split_first().ok_or(CodecError::Truncated)?;
    if version != VERSION {
        return Err(CodecError::Unexpected("NPDU version 1"));
    }
    let control = *b.get(1).ok_or(CodecError::Truncated)?;
    let mut at = 2;
    let destination = if control & HAS_DNET != 0 {
        Some(station(b, &mut at)?)
    } else {
        None
    };
    let source = if control & HAS_SNET != 0 {
        Some(station(b, &mut at)?)
    } else {
        None
    };
    if destination.is_some() {
        // Hop count.
        b.get(at).ok_or(CodecError::Truncated)?;
        at += 1;
    }
    let rest = b.get(at..).ok_or(CodecError::Truncated)?;
    let apdu = if control & NETWORK_MESSAGE != 0 {
        None
    } else if rest.is_empty() {
        return Err(CodecError::Truncated);
    } else {
        Some(rest)
    };
    Ok(Npdu {
        control,
        destination,
        source,
        apdu,
    })
}

/// The header before an APDU: addressed to `destination` (through its
/// router) when the device is behind one.
pub fn encode(expecting_reply: bool, destination: Option<&Station>, apdu: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(apdu.len() + 12);
    out.push(VERSION);
    let mut control = if expecting_reply { EXPECTING_REPLY } else { 0 };
    if destination.is_some() {
        control |= HAS_DNET;
    }
    out.push(control);
    if let Some(d) = destination {
        out.extend_from_slice(&d.net.to_be_bytes());
        out.push(d.mac.len() as u8);
        out.extend_from_slice(&d.mac);
        out.push(255);
    }
    out.extend_from_slice(apdu);
    out
}
