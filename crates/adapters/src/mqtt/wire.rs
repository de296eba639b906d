//! MQTT 3.1.1 packets as the ingress adapter's connection reads and
//! writes them: a subscriber's few (CONNECT, SUBSCRIBE, UNSUBSCRIBE, the
//! acknowledgements, PINGREQ, DISCONNECT) written, and what a broker sends
//! a subscriber read in place from the receive buffer.
//!
//! Our own rather than rumqttc's event loop (issue 69): rumqttc copied
//! every PUBLISH's topic into a new `String`, cloned the whole packet into
//! its event queue and read the clock for each, about 1 870 of the 4 000
//! instructions a QoS 0 reading cost. Here a PUBLISH is a view of the
//! buffer: its topic and payload are borrowed, nothing is allocated.

use thiserror::Error;

/// A broker sent what MQTT 3.1.1 does not allow (or not to a subscriber):
/// the connection cannot go on.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    #[error("malformed remaining length")]
    RemainingLength,
    #[error("malformed {0} packet")]
    Malformed(&'static str),
    #[error("unexpected packet type {0:#04x} from the broker")]
    Unexpected(u8),
    #[error("a {kind} packet of {bytes} bytes is over the limit")]
    TooLarge { kind: &'static str, bytes: usize },
}

/// A message the broker delivered, borrowed from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish<'a> {
    /// Not checked as UTF-8 yet: the session counts a bad topic as bad
    /// input, it does not break the connection.
    pub topic: &'a [u8],
    pub payload: &'a [u8],
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    /// 0 at QoS 0.
    pub pkid: u16,
}

#[cfg(test)]
impl Publish<'_> {
    /// The MQTT remaining length: what the size limit is compared with.
    pub(crate) fn packet_bytes(&self) -> usize {
        2 + self.topic.len() + if self.qos == 0 { 0 } else { 2 } + self.payload.len()
    }
}

/// One packet from the broker.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    ConnAck { session_present: bool, code: u8 },
    SubAck { codes: &'a [u8] },
    /// MQTT 3.1.1's UNSUBACK carries no result per filter: a broker that
    /// will not unsubscribe can only close the connection.
    UnsubAck { pkid: u16 },
    Publish(Publish<'a>),
    /// The second step of a QoS 2 delivery: answered with PUBCOMP.
    PubRel { pkid: u16 },
    PingResp,
    /// An acknowledgement of something a subscriber never sends (PUBACK,
    /// PUBREC, PUBCOMP): nothing to do.
    Ignored,
}

/// What the start of the receive buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A whole packet of `len` bytes.
    Frame { frame: Frame<'a>, len: usize },
    /// Not all of it yet: `need` bytes are needed in all.
    Incomplete { need: usize },
    /// A PUBLISH over the limit, `total` bytes with its header: it is to be
    /// skipped (acknowledged when `qos` > 0), never buffered whole.
    Oversized {
        qos: u8,
        pkid: u16,
        remaining: usize,
        total: usize,
    },
}

const CONNACK: u8 = 2;
const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const PUBREC: u8 = 5;
const PUBREL: u8 = 6;
const PUBCOMP: u8 = 7;
const SUBACK: u8 = 9;
const UNSUBACK: u8 = 11;
const PINGRESP: u8 = 13;

/// The largest remaining length MQTT can express (four length bytes).
const MAX_REMAINING: usize = 268_435_455;

/// Reads the packet at the start of `buf`; PUBLISH packets whose remaining
/// length is over `limit` come back as [`Parsed::Oversized`].
pub fn parse(buf: &[u8], limit: usize) -> Result<Parsed<'_>, WireError> {
    let Some(&first) = buf.first() else {
        return Ok(Parsed::Incomplete { need: 2 });
    };
    let Some((remaining, header)) = remaining_length(&buf[1..])? else {
        return Ok(Parsed::Incomplete {
            need: buf.len() + 1,
        });
    };
    let header = header + 1;
    let total = header + remaining;
    let kind = first >> 4;
    if kind == PUBLISH && remaining > limit {
        return oversized(buf, first, header, remaining);
    }
    if kind != PUBLISH && remaining > 4096 {
        return Err(WireError::TooLarge {
            kind: "control",
            bytes: total,
        });
    }
    if buf.len() < total {
        return Ok(Parsed::Incomplete { need: total });
    }
    let body = &buf[header..total];
    let frame = match kind {
        PUBLISH => Frame::Publish(publish(first, body)?),
        CONNACK => match body {
            [flags, code] => Frame::ConnAck {
                session_present: flags & 1 == 1,
                code: *code,
            },
            _ => return Err(WireError::Malformed("CONNACK")),
        },
        SUBACK => match body {
            [_, _, codes @ ..] if !codes.is_empty() => Frame::SubAck { codes },
            _ => return Err(WireError::Malformed("SUBACK")),
        },
        PUBREL => match body {
            [hi, lo] => Frame::PubRel {
                pkid: u16::from_be_bytes([*hi, *lo]),
            },
            _ => return Err(WireError::Malformed("PUBREL")),
        },
        UNSUBACK => match body {
            [hi, lo] => Frame::UnsubAck {
                pkid: u16::from_be_bytes([*hi, *lo]),
            },
            _ => return Err(WireError::Malformed("UNSUBACK")),
        },
        PINGRESP => Frame::PingResp,
        PUBACK | PUBREC | PUBCOMP => Frame::Ignored,
        _ => return Err(WireError::Unexpected(first)),
    };
    Ok(Parsed::Frame { frame, len: total })
}

/// The remaining length and how many bytes encoded it; `None` when they
/// are not all in `buf` yet.
fn remaining_length(buf: &[u8]) -> Result<Option<(usize, usize)>, WireError> {
    // A sensor's message fits in one length byte.
    if let Some(&byte) = buf.first().filter(|&&b| b < 0x80) {
        return Ok(Some((usize::from(byte), 1)));
    }
    let mut value = 0usize;
    for (i, byte) in buf.iter().enumerate().take(4) {
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 4 {
        return Err(WireError::RemainingLength);
    }
    Ok(None)
}

fn publish(first: u8, body: &[u8]) -> Result<Publish<'_>, WireError> {
    let qos = (first >> 1) & 3;
    if qos == 3 {
        return Err(WireError::Malformed("PUBLISH (QoS 3)"));
    }
    let [hi, lo, rest @ ..] = body else {
        return Err(WireError::Malformed("PUBLISH"));
    };
    let topic_len = usize::from(u16::from_be_bytes([*hi, *lo]));
    if rest.len() < topic_len {
        return Err(WireError::Malformed("PUBLISH"));
    }
    let (topic, rest) = rest.split_at(topic_len);
    let (pkid, payload) = if qos == 0 {
        (0, rest)
    } else {
        let [hi, lo, payload @ ..] = rest else {
            return Err(WireError::Malformed("PUBLISH"));
        };
        (u16::from_be_bytes([*hi, *lo]), payload)
    };
    Ok(Publish {
        topic,
        payload,
        qos,
        retain: first & 1 == 1,
        dup: first & 8 == 8,
        pkid,
    })
}

/// An oversized PUBLISH: only its packet id is needed (to acknowledge
/// it), which follows the topic.
fn oversized(
    buf: &[u8],
    first: u8,
    header: usize,
    remaining: usize,
) -> Result<Parsed<'_>, WireError> {
    let qos = (first >> 1) & 3;
    let total = header + remaining;
    if qos == 0 {
        return Ok(Parsed::Oversized {
            qos,
            pkid: 0,
            remaining,
            total,
        });
    }
    if qos == 3 {
        return Err(WireError::Malformed("PUBLISH (QoS 3)"));
    }
    let Some(&[hi, lo]) = buf.get(header..header + 2) else {
        return Ok(Parsed::Incomplete { need: header + 2 });
    };
    let at = header + 2 + usize::from(u16::from_be_bytes([hi, lo]));
    if at + 2 > total {
        return Err(WireError::Malformed("PUBLISH"));
    }
    let Some(&[hi, lo]) = buf.get(at..at + 2) else {
        return Ok(Parsed::Incomplete { need: at + 2 });
    };
    Ok(Parsed::Oversized {
        qos,
        pkid: u16::from_be_bytes([hi, lo]),
        remaining,
        total,
    })
}

/// What a CONNECT carries.
#[derive(Debug, Clone)]
pub(crate) struct Connect<'a> {
    pub(crate) client_id: &'a str,
    pub(crate) keep_alive_secs: u16,
    pub(crate) clean_session: bool,
    pub(crate) credentials: Option<(&'a str, &'a str)>,
}

/// Appends `connect` to `out`.
pub(crate) fn write_connect(connect: &Connect<'_>, out: &mut Vec<u8>) {
    let mut body = Vec::with_capacity(64);
    body.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4]);
    let mut flags = 0u8;
    if connect.clean_session {
        flags |= 0x02;
    }
    if connect.credentials.is_some() {
        flags |= 0xc0;
    }
    body.push(flags);
    body.extend_from_slice(&connect.keep_alive_secs.to_be_bytes());
    string(connect.client_id.as_bytes(), &mut body);
    if let Some((user, password)) = connect.credentials {
        string(user.as_bytes(), &mut body);
        string(password.as_bytes(), &mut body);
    }
    packet(0x10, &body, out);
}

/// Appends a SUBSCRIBE of `filters` (each with its QoS) to `out`.
pub(crate) fn write_subscribe(pkid: u16, filters: &[(String, u8)], out: &mut Vec<u8>) {
    let mut body = Vec::with_capacity(64);
    body.extend_from_slice(&pkid.to_be_bytes());
    for (filter, qos) in filters {
        string(filter.as_bytes(), &mut body);
        body.push(*qos);
    }
    packet(0x82, &body, out);
}

/// Appends an UNSUBSCRIBE of `filters` to `out`; MQTT forbids one
/// without any, so the caller sends none then.
pub(crate) fn write_unsubscribe(pkid: u16, filters: &[String], out: &mut Vec<u8>) {
    let mut body = Vec::with_capacity(64);
    body.extend_from_slice(&pkid.to_be_bytes());
    for filter in filters {
        string(filter.as_bytes(), &mut body);
    }
    packet(0xa2, &body, out);
}

/// The acknowledgements a subscriber writes, each a packet id, named as
/// MQTT names the packets.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ack {
    /// QoS 1 received.
    PubAck(u16),
    /// QoS 2 received (the broker should send none: it is subscribed as 1).
    PubRec(u16),
    /// QoS 2 released.
    PubComp(u16),
}

pub(crate) fn write_ack(ack: Ack, out: &mut Vec<u8>) {
    let (first, pkid) = match ack {
        Ack::PubAck(p) => (0x40, p),
        Ack::PubRec(p) => (0x50, p),
        Ack::PubComp(p) => (0x70, p),
    };
    let [hi, lo] = pkid.to_be_bytes();
    out.extend_from_slice(&[first, 2, hi, lo]);
}

pub(crate) const PINGREQ: [u8; 2] = [0xc0, 0];
pub(crate) const DISCONNECT: [u8; 2] = [0xe0, 0];

/// An MQTT string: a 2-byte length, then the bytes (a filter or an id is
/// far under 64 KiB: config validation bounds them).
fn string(bytes: &[u8], out: &mut Vec<u8>) {
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&bytes[..usize::from(len)]);
}

fn packet(first: u8, body: &[u8], out: &mut Vec<u8>) {
    out.push(first);
    let mut len = body.len().min(MAX_REMAINING);
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
