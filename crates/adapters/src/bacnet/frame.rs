//! A whole BACnet/IP datagram, decoded in one call: BVLC, NPDU and APDU.
//! This is the untrusted-input boundary (and the fuzz target): it never
//! panics, and anything it cannot read is a [`CodecError`] the client
//! counts as `malformed`.

use std::net::SocketAddrV4;

use super::apdu::{self, Apdu};
use super::bvlc::{self, Bvlc};
use super::npdu::{self, Station};

/// Why bytes are not a BACnet message the gateway can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("truncated")]
    Truncated,
    #[error("wrong length of {0}")]
    Length(&'static str),
    #[error("expected {0}")]
    Unexpected(&'static str),
}

/// A datagram as the client sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame<'a> {
    /// An APDU; `origin` is set when a BBMD forwarded it (the sender's
    /// own address), `source` when a router did (its network station).
    Apdu {
        origin: Option<SocketAddrV4>,
        source: Option<Station>,
        apdu: Apdu<'a>,
    },
    /// A network-layer message (router traffic): not for the gateway.
    Network,
    /// A BBMD's BVLC-Result.
    BvlcResult(u16),
}

/// Decodes one datagram.
pub fn decode(datagram: &[u8]) -> Result<Frame<'_>, CodecError> {
    let (origin, npdu) = match bvlc::decode(datagram)? {
        Bvlc::Npdu(n) => (None, n),
        Bvlc::Forwarded(from, n) => (Some(from), n),
        Bvlc::Result(code) => return Ok(Frame::BvlcResult(code)),
    };
    let n = npdu::decode(npdu)?;
    let Some(body) = n.apdu else {
        return Ok(Frame::Network);
    };
    Ok(Frame::Apdu {
        origin,
        source: n.source,
        apdu: apdu::decode(body)?,
    })
}

/// A unicast datagram carrying `apdu` (through a router to `destination`
/// when set).
pub fn unicast(apdu: &[u8], expecting_reply: bool, destination: Option<&Station>) -> Vec<u8> {
    bvlc::encode(
        bvlc::function::ORIGINAL_UNICAST,
        &npdu::encode(expecting_reply, destination, apdu),
    )
}

/// A broadcast datagram: Original-Broadcast on the local subnet, or
/// Distribute-Broadcast-To-Network sent to the BBMD of a foreign device.
pub fn broadcast(apdu: &[u8], through_bbmd: bool) -> Vec<u8> {
    let f = if through_bbmd {
        bvlc::function::DISTRIBUTE_BROADCAST
    } else {
        bvlc::function::ORIGINAL_BROADCAST
    };
    bvlc::encode(f, &npdu::encode(false, None, apdu))
}
