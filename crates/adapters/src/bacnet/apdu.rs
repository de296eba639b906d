//! The application layer's PDU headers (ASHRAE 135-2020 §20.1): the eight
//! PDU types, invoke ids, segmentation fields, max-APDU and max-segments.
//! The service parameters inside are in `services`.

use super::CodecError;

/// Confirmed service choices (§21, BACnetConfirmedServiceChoice).
pub mod confirmed {
    pub const CONFIRMED_COV_NOTIFICATION: u8 = 1;
    pub const SUBSCRIBE_COV: u8 = 5;
    pub const READ_PROPERTY: u8 = 12;
    pub const READ_PROPERTY_MULTIPLE: u8 = 14;
    pub const WRITE_PROPERTY: u8 = 15;
}

/// Unconfirmed service choices.
pub mod unconfirmed {
    pub const I_AM: u8 = 0;
    pub const UNCONFIRMED_COV_NOTIFICATION: u8 = 2;
    pub const WHO_IS: u8 = 8;
}

/// Abort reasons the gateway acts on (§20.1.9, BACnetAbortReason).
pub mod abort {
    pub const BUFFER_OVERFLOW: u8 = 1;
    pub const SEGMENTATION_NOT_SUPPORTED: u8 = 4;
}

/// The max-APDU sizes field 0..5 stands for (§20.1.2.5).
const MAX_APDU: [usize; 6] = [50, 128, 206, 480, 1024, 1476];

/// The largest APDU BACnet/IP carries, and what the gateway accepts.
pub const MAX_APDU_IP: usize = 1476;

pub fn max_apdu_of(code: u8) -> usize {
    MAX_APDU
        .get(usize::from(code & 0x0F))
        .copied()
        .unwrap_or(MAX_APDU_IP)
}

fn max_apdu_code(size: usize) -> u8 {
    MAX_APDU.iter().rposition(|m| *m <= size).unwrap_or(0) as u8
}

/// Segments the gateway says it accepts in one response: field value 6 =
/// 64 (§20.1.2.4), about 94 kB at 1476 bytes, far above any object list
/// read here yet bounded so a hostile stream cannot grow without end.
pub const MAX_SEGMENTS_CODE: u8 = 6;
pub const MAX_SEGMENTS: usize = 64;

/// A decoded APDU, its service parameters borrowed.
#[derive(Debug, Clone, PartialEq)]
pub enum Apdu<'a> {
    ConfirmedRequest {
        invoke_id: u8,
        /// Set when the request itself is segmented, which the gateway
        /// does not accept (it is a client).
        segmented: bool,
        service: u8,
        body: &'a [u8],
    },
    Unconfirmed {
        service: u8,
        body: &'a [u8],
    },
    SimpleAck {
        invoke_id: u8,
        service: u8,
    },
    ComplexAck {
        invoke_id: u8,
        /// `Some((sequence, proposed window, more follows))` when segmented.
        segment: Option<(u8, u8, bool)>,
        service: u8,
        body: &'a [u8],
    },
    SegmentAck {
        invoke_id: u8,
        nak: bool,
        sequence: u8,
        window: u8,
    },
    Error {
        invoke_id: u8,
        service: u8,
        /// The error class and code (§18), as application enumerations.
        body: &'a [u8],
    },
    Reject {
        invoke_id: u8,
        reason: u8,
    },
    Abort {
        invoke_id: u8,
        from_server: bool,
        reason: u8,
    },
}

impl Apdu<'_> {
    /// The invoke id of an answer to a confirmed request.
    pub fn invoke_id(&self) -> Option<u8> {
        match *self {
            Self::SimpleAck { invoke_id, .. }
            | Self::ComplexAck { invoke_id, .. }
            | Self::SegmentAck { invoke_id, .. }
            | Self::Error { invoke_id, .. }
            | Self::Reject { invoke_id, .. }
            | Self::Abort { invoke_id, .. } => Some(invoke_id),
            Self::ConfirmedRequest { .. } | Self::Unconfirmed { .. } => None,
        }
    }
}

fn at(b: &[u8], i: usize) -> Result<u8, CodecError> {
    b.get(i).copied().ok_or(CodecError::Truncated)
}

pub fn decode(b: &[u8]) -> Result<Apdu<'_>, CodecError> {
    let first = at(b, 0)?;
    let rest = |from: usize| b.get(from..).ok_or(CodecError::Truncated);
    Ok(match first >> 4 {
        0 => {
            let segmented = first & 0x08 != 0;
            let invoke_id = at(b, 2)?;
            let s = if segmented { 5 } else { 3 };
            Apdu::ConfirmedRequest {
                invoke_id,
                segmented,
                service: at(b, s)?,
                body: rest(s + 1)?,
            }
        }
        1 => Apdu::Unconfirmed {
            service: at(b, 1)?,
            body: rest(2)?,
        },
        2 => Apdu::SimpleAck {
            invoke_id: at(b, 1)?,
            service: at(b, 2)?,
        },
        3 => {
            let invoke_id = at(b, 1)?;
            if first & 0x08 != 0 {
                Apdu::ComplexAck {
                    invoke_id,
                    segment: Some((at(b, 2)?, at(b, 3)?, first & 0x04 != 0)),
                    service: at(b, 4)?,
                    body: rest(5)?,
                }
            } else {
                Apdu::ComplexAck {
                    invoke_id,
                    segment: None,
                    service: at(b, 2)?,
                    body: rest(3)?,
                }
            }
        }
        4 => Apdu::SegmentAck {
            invoke_id: at(b, 1)?,
            nak: first & 0x02 != 0,
            sequence: at(b, 2)?,
            window: at(b, 3)?,
        },
        5 => Apdu::Error {
            invoke_id: at(b, 1)?,
            service: at(b, 2)?,
            body: rest(3)?,
        },
        6 => Apdu::Reject {
            invoke_id: at(b, 1)?,
            reason: at(b, 2)?,
        },
        7 => Apdu::Abort {
            invoke_id: at(b, 1)?,
            from_server: first & 0x01 != 0,
            reason: at(b, 2)?,
        },
        _ => return Err(CodecError::Unexpected("a PDU type from 0 to 7")),
    })
}

/// A confirmed request the gateway sends: never segmented itself,
/// accepting segmented answers up to `MAX_SEGMENTS` of `MAX_APDU_IP`.
pub fn confirmed_request(invoke_id: u8, service: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    // Segmented-response-accepted.
    out.push(0x02);
    out.push((MAX_SEGMENTS_CODE << 4) | max_apdu_code(MAX_APDU_IP));
    out.push(invoke_id);
    out.push(service);
    out.extend_from_slice(body);
    out
}

pub fn unconfirmed_request(service: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 2);
    out.extend_from_slice(&[0x10, service]);
    out.extend_from_slice(body);
    out
}

/// A client's SegmentACK (`nak`: a segment was missing, resend after
/// `sequence`).
pub fn segment_ack(invoke_id: u8, nak: bool, sequence: u8, window: u8) -> Vec<u8> {
    vec![
        0x40 | if nak { 0x02 } else { 0 },
        invoke_id,
        sequence,
        window,
    ]
}

/// The SimpleACK a confirmed COV notification needs.
pub fn simple_ack(invoke_id: u8, service: u8) -> Vec<u8> {
    vec![0x20, invoke_id, service]
}

/// An Error PDU answering a confirmed request: its class and code
/// (§20.1.7, both application-tagged enumerations).
pub fn error(invoke_id: u8, service: u8, class: u32, code: u32) -> Vec<u8> {
    let mut out = vec![0x50, invoke_id, service];
    super::tags::put_value(&mut out, &super::tags::Value::Enumerated(class));
    super::tags::put_value(&mut out, &super::tags::Value::Enumerated(code));
    out
}

/// An Abort the gateway sends as a client (a segmented request it will
/// not take, a reassembly it gives up).
pub fn client_abort(invoke_id: u8, reason: u8) -> Vec<u8> {
    vec![0x70, invoke_id, reason]
}

/// An Abort the gateway sends as the server of a request (the SRV bit
/// set): a device tells it apart from an Abort of its own transactions.
pub fn server_abort(invoke_id: u8, reason: u8) -> Vec<u8> {
    vec![0x71, invoke_id, reason]
}
