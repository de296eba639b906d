//! The CoAP message layer (RFC 7252 §3, §4): strict well-formedness checks
//! in front of coap-lite's parser, and the replies the server builds.
//!
//! coap-lite is lenient where the RFC says "MUST be processed as a message
//! format error" (a payload marker with no payload, an Empty message with
//! bytes after the header, an unknown version), so every datagram is walked
//! here first; only a datagram that passes reaches [`Packet::from_bytes`].

use coap_lite::{MessageClass, MessageType, Packet, ResponseType};

/// Fixed header: Ver/T/TKL, Code, Message ID (§3). 4 bytes.
pub const HEADER_LEN: usize = 4;
/// Longest token (§3: TKL 9–15 are reserved). 8 bytes.
pub const MAX_TOKEN_LEN: usize = 8;
/// The byte that separates options from the payload (§3).
const PAYLOAD_MARKER: u8 = 0xFF;

/// Why a datagram is not a CoAP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("datagram of {0} bytes is shorter than the 4-byte header")]
    ShortHeader(usize),
    #[error("protocol version {0}, expected 1")]
    UnknownVersion(u8),
    #[error("token length {0}, expected 0 to 8 and within the datagram")]
    TokenLength(u8),
    #[error("option delta or length nibble 15 outside a payload marker")]
    ReservedNibble,
    #[error("option extends past the end of the datagram")]
    TruncatedOption,
    #[error("option number beyond 65535")]
    OptionNumberOverflow,
    #[error("payload marker followed by an empty payload")]
    EmptyPayload,
    #[error("Empty message (code 0.00) with {0} bytes after the header")]
    EmptyWithBytes(usize),
    #[error("rejected by the message parser")]
    Unparsable,
}

impl FormatError {
    /// A stable snake_case label, for the `error_type` of a counter.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ShortHeader(_) => "short_header",
            Self::UnknownVersion(_) => "unknown_version",
            Self::TokenLength(_) => "invalid_token_length",
            Self::ReservedNibble => "reserved_option_nibble",
            Self::TruncatedOption => "truncated_option",
            Self::OptionNumberOverflow => "option_number_overflow",
            Self::EmptyPayload => "empty_payload_after_marker",
            Self::EmptyWithBytes(_) => "empty_message_with_bytes",
            Self::Unparsable => "unparsable",
        }
    }
}

/// The fixed header, readable even when the rest of the message is not:
/// it decides between a Reset and silence (§4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// 0 CON, 1 NON, 2 ACK, 3 RST.
    pub kind: u8,
    pub tkl: u8,
    pub code: u8,
    pub mid: u16,
}

/// Message types (§3), 2 bits.
pub const CON: u8 = 0;
pub const NON: u8 = 1;

impl Head {
    /// The header of a version-1 message, `None` for anything else.
    pub fn read(buf: &[u8]) -> Option<Self> {
        let [first, code, hi, lo, ..] = *buf else {
            return None;
        };
        (first >> 6 == 1).then_some(Self {
            kind: (first >> 4) & 0b11,
            tkl: first & 0x0F,
            code,
            mid: u16::from_be_bytes([hi, lo]),
        })
    }

    /// The token, when TKL is valid and the datagram holds it.
    pub fn token<'a>(&self, buf: &'a [u8]) -> Option<&'a [u8]> {
        let end = HEADER_LEN + usize::from(self.tkl);
        (usize::from(self.tkl) <= MAX_TOKEN_LEN)
            .then(|| buf.get(HEADER_LEN..end))
            .flatten()
    }
}

/// Checks a datagram against RFC 7252 §3 and §4.1.
///
/// # Errors
/// The first [`FormatError`] found.
pub fn check(buf: &[u8]) -> Result<Head, FormatError> {
    walk(buf).map(|(head, _)| head)
}

/// [`check`], also giving where the payload starts (the datagram's length
/// when it has none).
fn walk(buf: &[u8]) -> Result<(Head, usize), FormatError> {
    walk_visiting(buf, |_, _| {})
}

/// [`walk`], passing each option to `visit` as (number, value) once it
/// is checked, in order.
fn walk_visiting<'a>(
    buf: &'a [u8],
    mut visit: impl FnMut(u16, &'a [u8]),
) -> Result<(Head, usize), FormatError> {
    if buf.len() < HEADER_LEN {
        return Err(FormatError::ShortHeader(buf.len()));
    }
    let head = Head::read(buf).ok_or(FormatError::UnknownVersion(buf[0] >> 6))?;
    if head.code == 0 && buf.len() > HEADER_LEN {
        return Err(FormatError::EmptyWithBytes(buf.len() - HEADER_LEN));
    }
    if head.token(buf).is_none() {
        return Err(FormatError::TokenLength(head.tkl));
    }
    let mut i = HEADER_LEN + usize::from(head.tkl);
    let mut number: u32 = 0;
    while i < buf.len() {
        let byte = buf[i];
        i += 1;
        if byte == PAYLOAD_MARKER {
            return if i == buf.len() {
                Err(FormatError::EmptyPayload)
            } else {
                Ok((head, i))
            };
        }
        // Both nibbles plain, as in nearly every option of a request:
        // read without the extended forms' checks (issue 69).
        let (delta, len) = if byte < 0xD0 && byte & 0x0F < 13 {
            (u32::from(byte >> 4), u32::from(byte & 0x0F))
        } else {
            let delta = extended(byte >> 4, buf, &mut i)?;
            (delta, extended(byte & 0x0F, buf, &mut i)?)
        };
        number += delta;
        let Ok(option) = u16::try_from(number) else {
            return Err(FormatError::OptionNumberOverflow);
        };
        let end = i
            .checked_add(len as usize)
            .filter(|end| *end <= buf.len())
            .ok_or(FormatError::TruncatedOption)?;
        visit(option, &buf[i..end]);
        i = end;
    }
    Ok((head, buf.len()))
}

/// An option delta or length with its extended bytes (§3.1).
fn extended(nibble: u8, buf: &[u8], i: &mut usize) -> Result<u32, FormatError> {
    let take = |i: &mut usize, n: usize| -> Result<u32, FormatError> {
        let bytes = buf.get(*i..*i + n).ok_or(FormatError::TruncatedOption)?;
        *i += n;
        Ok(bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
    };
    match nibble {
        0..=12 => Ok(u32::from(nibble)),
        13 => Ok(take(i, 1)? + 13),
        14 => Ok(take(i, 2)? + 269),
        _ => Err(FormatError::ReservedNibble),
    }
}

/// Checks and parses a datagram.
///
/// # Errors
/// A [`FormatError`]; [`FormatError::Unparsable`] if coap-lite refuses what
/// the checks passed.
pub fn parse(buf: &[u8]) -> Result<Packet, FormatError> {
    check(buf)?;
    Packet::from_bytes(buf).map_err(|_| FormatError::Unparsable)
}

/// A request read in place, borrowing from its datagram: what the server
/// asks of an update, without the copies coap-lite makes of every message
/// (a map of lists of vectors for the options, the token and the payload
/// each in a vector of their own: about a fifth of a datagram's cost).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub head: Head,
    pub token: &'a [u8],
    /// The options' bytes, from the first to the payload marker.
    options: &'a [u8],
    pub payload: &'a [u8],
}

impl<'a> Request<'a> {
    /// Checks a datagram as [`check`] does and reads it.
    ///
    /// # Errors
    /// The first [`FormatError`] found.
    pub fn read(buf: &'a [u8]) -> Result<Self, FormatError> {
        Self::read_visiting(buf, |_, _| {})
    }

    /// [`read`](Self::read), passing each option to `visit` as
    /// [`options`](Self::options) gives them, in the walk that checks
    /// them: a second walk for what the server reads of them was about
    /// 130 instructions a datagram (issue 69). On an error `visit` may
    /// have seen the options before it.
    ///
    /// # Errors
    /// The first [`FormatError`] found.
    pub fn read_visiting(
        buf: &'a [u8],
        visit: impl FnMut(u16, &'a [u8]),
    ) -> Result<Self, FormatError> {
        let (head, payload_at) = walk_visiting(buf, visit)?;
        let options_at = HEADER_LEN + usize::from(head.tkl);
        // The marker byte, when there is a payload, ends the options.
        let options_end = if payload_at < buf.len() {
            payload_at - 1
        } else {
            payload_at
        };
        Ok(Self {
            head,
            token: &buf[HEADER_LEN..options_at],
            options: &buf[options_at..options_end],
            payload: &buf[payload_at..],
        })
    }

    /// Every option in order, as (number, value); repeated options once
    /// each.
    pub fn options(&self) -> Options<'a> {
        Options {
            bytes: self.options,
            at: 0,
            number: 0,
        }
    }

    /// The values of option `number`, in order.
    pub fn option(&self, number: u16) -> impl Iterator<Item = &'a [u8]> {
        self.options()
            .filter(move |(n, _)| *n == number)
            .map(|(_, v)| v)
    }

    /// The first value of option `number`.
    pub fn first(&self, number: u16) -> Option<&'a [u8]> {
        self.option(number).next()
    }

    /// The request's code as coap-lite names it (a response code or an
    /// unknown method is not a [`MessageClass::Request`]).
    pub fn class(&self) -> MessageClass {
        MessageClass::from(self.head.code)
    }
}

/// The options of a [`Request`], which [`walk`] has checked already.
pub struct Options<'a> {
    bytes: &'a [u8],
    at: usize,
    number: u32,
}

impl<'a> Iterator for Options<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let byte = *self.bytes.get(self.at)?;
        self.at += 1;
        // Checked before a Request is made; were it not, the options end.
        let delta = extended(byte >> 4, self.bytes, &mut self.at).ok()?;
        let len = extended(byte & 0x0F, self.bytes, &mut self.at).ok()? as usize;
        self.number += delta;
        let value = self.bytes.get(self.at..self.at.checked_add(len)?)?;
        self.at += len;
        Some((u16::try_from(self.number).ok()?, value))
    }
}

/// A Reset for message `mid` (§4.2): 4 bytes, T=RST, code 0.00.
pub fn reset(mid: u16) -> Vec<u8> {
    let [hi, lo] = mid.to_be_bytes();
    vec![0x70, 0x00, hi, lo]
}

/// An unsigned option value in the fewest bytes (§3.2 `uint`).
pub fn uint(v: u32) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    bytes[skip..].to_vec()
}

/// An unsigned option value, `None` when longer than 4 bytes.
pub fn read_uint(bytes: &[u8]) -> Option<u32> {
    (bytes.len() <= 4).then(|| bytes.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b)))
}

/// A response to `request`: piggybacked in an ACK with the request's message
/// id, or a NON with `mid`.
pub fn response(request: &Request, piggyback: bool, mid: u16, code: ResponseType) -> Packet {
    let mut p = Packet::new();
    p.header.set_version(1);
    p.header.set_type(if piggyback {
        MessageType::Acknowledgement
    } else {
        MessageType::NonConfirmable
    });
    p.header.message_id = if piggyback { request.head.mid } else { mid };
    p.header.code = MessageClass::Response(code);
    p.set_token(request.token.to_vec());
    p
}

/// The bytes of a packet this module built. Our replies are small, so the
/// only failure (a message over coap-lite's size limit) falls back to the
/// header alone rather than to no reply.
pub fn encode(p: &Packet) -> Vec<u8> {
    p.to_bytes_unlimited().unwrap_or_else(|_| {
        let mut bare = p.clone();
        bare.payload.clear();
        bare.clear_all_options();
        bare.to_bytes_unlimited().unwrap_or_default()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn vectors() -> serde_json::Value {
        let text = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/data/vectors/coap_rfc7252.json"
        ));
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn rfc_vectors_parse() {
        // RFC 7252 Figure 16: CON GET /temperature, MID 0x7d34.
        let p = parse(&hex("40017d34bb74656d7065726174757265")).unwrap();
        assert_eq!(p.header.message_id, 0x7d34);
        assert_eq!(p.header.get_type(), MessageType::Confirmable);
        assert_eq!(
            p.get_first_option(coap_lite::CoapOption::UriPath).unwrap(),
            b"temperature"
        );
        // Figure 17: token 0x20; Figure 16's ACK with payload "22.3 C".
        assert_eq!(
            parse(&hex("41017d3520bb74656d7065726174757265"))
                .unwrap()
                .get_token(),
            [0x20]
        );
        assert_eq!(
            parse(&hex("60457d34ff32322e332043")).unwrap().payload,
            b"22.3 C"
        );
        let doc = vectors();
        let vs = doc["vectors"].as_array().unwrap();
        assert!(!vs.is_empty());
        for v in vs {
            let bytes = hex(v["hex"].as_str().unwrap());
            let p = parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", v["id"]));
            let mid = v["expected"]["mid"].as_str().unwrap();
            assert_eq!(format!("{:#06x}", p.header.message_id), mid, "{}", v["id"]);
            let token = v["expected"]["token"].as_str().unwrap_or("");
            assert_eq!(hex(token), p.get_token(), "{}", v["id"]);
        }
    }

    /// The in-place read sees what coap-lite's parse sees: token, every
    /// option in order (extended numbers and lengths included), payload.
    #[test]
    fn a_request_read_in_place_matches_coap_lite() {
        let mut datagrams: Vec<Vec<u8>> = vectors()["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| hex(v["hex"].as_str().unwrap()))
            .collect();
        // POST /s/dev-1/temperature, Content-Format 50, a 300-byte Uri-Query
        // (length 14: two extended bytes), option 2048 (delta 14), payload.
        let mut p = Packet::new();
        p.header.set_version(1);
        p.header.code = MessageClass::Request(coap_lite::RequestType::Post);
        p.header.message_id = 0x1234;
        p.set_token(vec![1, 2, 3]);
        for segment in ["s", "dev-1", "temperature"] {
            p.add_option(coap_lite::CoapOption::UriPath, segment.as_bytes().to_vec());
        }
        p.add_option(coap_lite::CoapOption::ContentFormat, uint(50));
        p.add_option(coap_lite::CoapOption::UriQuery, vec![b'q'; 300]);
        p.add_option(coap_lite::CoapOption::Unknown(2048), vec![7]);
        p.payload = br#"{"value": 21.5}"#.to_vec();
        datagrams.push(p.to_bytes().unwrap());
        for bytes in datagrams {
            let Ok(lite) = parse(&bytes) else { continue };
            let ours = Request::read(&bytes).unwrap();
            assert_eq!(ours.head.mid, lite.header.message_id);
            assert_eq!(ours.token, lite.get_token());
            assert_eq!(ours.payload, lite.payload.as_slice());
            assert_eq!(ours.class(), lite.header.code);
            let mut theirs = Vec::new();
            for (number, values) in lite.options() {
                for v in values {
                    theirs.push((*number, v.clone()));
                }
            }
            let mine: Vec<(u16, Vec<u8>)> = ours.options().map(|(n, v)| (n, v.to_vec())).collect();
            assert_eq!(mine, theirs, "{bytes:02x?}");
            let mut visited = Vec::new();
            Request::read_visiting(&bytes, |n, v| visited.push((n, v.to_vec()))).unwrap();
            assert_eq!(visited, theirs, "{bytes:02x?}");
        }
    }

    #[test]
    fn bad_inputs_are_format_errors() {
        let cases = [
            (
                "40013039bf17746869735f706174685f69735f6c6f6e676572",
                "reserved_option_nibble",
            ),
            ("49017d34000000000000000000", "invalid_token_length"),
            ("40017d34ff", "empty_payload_after_marker"),
            ("40017d34bf", "reserved_option_nibble"),
            ("40017d34f1", "reserved_option_nibble"),
            ("60007d3800", "empty_message_with_bytes"),
            ("40017d34bb74656d70", "truncated_option"),
            ("80017d34", "unknown_version"),
            ("40017d", "short_header"),
            ("42017d3401", "invalid_token_length"),
            ("40017d34d0", "truncated_option"),
            ("40017d34e0ff", "truncated_option"),
            ("40017d34e0ffff", "option_number_overflow"),
        ];
        for (h, kind) in cases {
            assert_eq!(check(&hex(h)).unwrap_err().kind(), kind, "{h}");
        }
        let doc = vectors();
        let bad = doc["bad_inputs"].as_array().unwrap();
        assert!(!bad.is_empty());
        for b in bad {
            let bytes = hex(b["hex"].as_str().unwrap());
            // Reserved code class 1 is well-formed; the handler resets it.
            let ok = b["id"] == "reserved-code-class-1";
            assert_eq!(check(&bytes).is_ok(), ok, "{}", b["id"]);
        }
    }

    #[test]
    fn uint_round_trip_and_reset() {
        for v in [0, 1, 255, 256, 65_535, 1 << 20, u32::MAX] {
            assert_eq!(read_uint(&uint(v)), Some(v));
        }
        assert_eq!(uint(0), Vec::<u8>::new());
        assert_eq!(reset(0x1234), hex("70001234"));
    }
}
