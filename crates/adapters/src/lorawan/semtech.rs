//! Semtech UDP packet forwarder protocol v2 (GWMP, Lora-net/packet_forwarder
//! PROTOCOL.TXT): datagrams in, typed frames out; ACK bytes back.
//!
//! Our own codec rather than the `semtech-udp` crate 0.12, which does not
//! compile on a fresh resolve (it asks for `rand = "0"`, now 0.10 without
//! `thread_rng`, and cannot be pinned back while btleplug needs rand 0.10:
//! shared/CRATES.md). The protocol is four header layouts and a JSON body,
//! so owning it costs little, and every field read here is typed and
//! optional where forwarders differ, never unwrapped (STYLE §10).
//!
//! Tolerance follows chirpstack-gateway-bridge and FAULTS §3.3: versions 1
//! and 2 only; unknown JSON fields ignored (SX1302 `jver`, `rsig`, `foff`,
//! ...); one bad `rxpk` (invalid base64, `size` ≠ decoded length, a field
//! of the wrong type) drops that packet and keeps its neighbours; `datr` is
//! a string for LoRa and a number for FSK. The CRC filter (`stat`) is the
//! caller's decision: see [`Rxpk::crc_ok`].

use std::fmt;

use serde::Deserialize;

/// Header: version, token (2 bytes), identifier. 4 bytes.
pub const HEADER_LEN: usize = 4;
/// Header plus the forwarder's gateway EUI. 12 bytes.
pub const HEADER_WITH_EUI_LEN: usize = 12;

/// Datagram identifiers (PROTOCOL.TXT §3–§6). 1 byte at offset 3.
const PUSH_DATA: u8 = 0x00;
const PUSH_ACK: u8 = 0x01;
const PULL_DATA: u8 = 0x02;
const PULL_RESP: u8 = 0x03;
const PULL_ACK: u8 = 0x04;
const TX_ACK: u8 = 0x05;

/// The 4-byte header every datagram starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Protocol version, 1 or 2; echoed in the ACK.
    pub version: u8,
    /// Opaque: echoed byte for byte. lora_pkt_fwd writes token_h then
    /// token_l, the gateway bridge reads a little-endian u16; bytes avoid
    /// the question.
    pub token: [u8; 2],
    /// Datagram identifier.
    pub identifier: u8,
}

impl Header {
    /// The header of a supported datagram.
    ///
    /// # Errors
    /// [`DatagramError::TooShort`] under 4 bytes,
    /// [`DatagramError::UnsupportedVersion`] unless version 1 or 2.
    pub fn read(buf: &[u8]) -> Result<Self, DatagramError> {
        let [version, t0, t1, identifier, ..] = *buf else {
            return Err(DatagramError::TooShort {
                len: buf.len(),
                min: HEADER_LEN,
            });
        };
        if !matches!(version, 1 | 2) {
            return Err(DatagramError::UnsupportedVersion(version));
        }
        Ok(Self {
            version,
            token: [t0, t1],
            identifier,
        })
    }
}

/// A forwarder's gateway EUI, MSB first as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GatewayEui(pub [u8; 8]);

impl fmt::Display for GatewayEui {
    /// 16 lower-case hex digits, as ChirpStack prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// A gateway EUI that is not 16 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a gateway EUI of 16 hex digits (\"0102030405060708\"), got {0:?}")]
pub struct EuiError(pub String);

impl std::str::FromStr for GatewayEui {
    type Err = EuiError;

    fn from_str(given: &str) -> Result<Self, Self::Err> {
        let err = || EuiError(given.to_string());
        let s = super::hex_text::compact_hex(given);
        // Digits only: `from_str_radix` would take "+A" as 0x0A.
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err());
        }
        let mut eui = [0u8; 8];
        for (i, byte) in eui.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| err())?;
        }
        Ok(Self(eui))
    }
}

/// One datagram from a packet forwarder.
#[derive(Debug, Clone, PartialEq)]
pub enum Datagram {
    /// Received packets and/or statistics; answer with [`push_ack`].
    PushData {
        header: Header,
        gateway: GatewayEui,
        data: PushData,
    },
    /// Keep-alive that opens the downlink path; answer with [`pull_ack`].
    PullData { header: Header, gateway: GatewayEui },
    /// Outcome of a downlink. `error` is `txpk_ack.error` when present
    /// (`NONE` means success in v2).
    TxAck {
        header: Header,
        gateway: GatewayEui,
        error: Option<String>,
    },
}

/// The JSON body of a PUSH_DATA.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PushData {
    /// One entry per `rxpk` element, in order; a bad element is an `Err`
    /// so the others still count.
    pub rxpk: Vec<Result<Rxpk, EntryError>>,
    /// The `stat` object, when there is one.
    pub stat: Option<Result<Stat, EntryError>>,
}

/// A received radio packet (`rxpk` element).
#[derive(Debug, Clone, PartialEq)]
pub struct Rxpk {
    /// Gateway receive time, ISO 8601 (`time`): only when the forwarder has
    /// GPS or NTP; never trusted as a clock (FAULTS §3.3).
    pub time: Option<String>,
    /// Concentrator counter, µs (`tmst`); wraps every ~71.6 min.
    pub tmst: Option<u32>,
    /// Concentrator IF channel (`chan`).
    pub chan: Option<u8>,
    /// Concentrator RF chain (`rfch`).
    pub rfch: Option<u8>,
    /// Centre frequency, MHz (`freq`).
    pub freq: Option<f64>,
    /// CRC status (`stat`): 1 OK, −1 bad, 0 no CRC.
    pub stat: i8,
    /// `LORA` or `FSK` (`modu`).
    pub modu: Option<Text>,
    /// Data rate (`datr`).
    pub datr: Option<DataRate>,
    /// Coding rate (`codr`), e.g. `4/5`.
    pub codr: Option<Text>,
    /// RSSI, dBm (`rssi`; jver 2 forwarders put it in `rsig` instead).
    pub rssi: Option<i16>,
    /// SNR, dB (`lsnr`; jver 2: in `rsig`).
    pub lsnr: Option<f64>,
    /// Per-antenna signal of jver 2 forwarders (`rsig`).
    pub rsig: Vec<Rsig>,
    /// The PHYPayload, base64-decoded; its length equals `size`.
    pub data: Vec<u8>,
}

impl Rxpk {
    /// `stat` = 1: the concentrator checked the CRC. The default forwarder
    /// setting and the gateway bridge both drop everything else.
    pub fn crc_ok(&self) -> bool {
        self.stat == 1
    }

    /// RSSI: `rssi`, else the best `rsig[].rssic`.
    pub fn best_rssi(&self) -> Option<i16> {
        self.rssi
            .or_else(|| self.rsig.iter().filter_map(|r| r.rssic).max())
    }

    /// SNR: `lsnr`, else the best `rsig[].lsnr`.
    pub fn best_snr(&self) -> Option<f64> {
        self.lsnr.or_else(|| {
            self.rsig
                .iter()
                .filter_map(|r| r.lsnr)
                .fold(None, |best: Option<f64>, s| {
                    Some(best.map_or(s, |b| b.max(s)))
                })
        })
    }
}

/// One antenna's reception, in jver 2 `rsig` arrays.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Rsig {
    pub ant: Option<u8>,
    pub chan: Option<u8>,
    /// Channel RSSI, dBm.
    #[serde(default, deserialize_with = "signal::rssi")]
    pub rssic: Option<i16>,
    #[serde(default, deserialize_with = "signal::snr")]
    pub lsnr: Option<f64>,
}

/// The signal's fields read leniently: PROTOCOL.TXT says integers for the
/// RSSI and a number for the SNR, but some forwarders write `-80.0` or
/// `"7"`. A signal figure of another shape is left out; refusing the
/// field refused the whole `rxpk`, a MIC-valid reading lost for its
/// metadata.
mod signal {
    use serde::{Deserialize, Deserializer};

    fn number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Ok(match Option::<serde_json::Value>::deserialize(d)? {
            Some(serde_json::Value::Number(n)) => n.as_f64(),
            Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .filter(|v: &f64| v.is_finite()))
    }

    pub fn rssi<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i16>, D::Error> {
        Ok(number(d)?
            .map(f64::round)
            .filter(|v| (f64::from(i16::MIN)..=f64::from(i16::MAX)).contains(v))
            .map(|v| v as i16))
    }

    pub fn snr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        number(d)
    }
}

/// Forwarder statistics (`stat` object), kept as gateway metrics.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Stat {
    /// `YYYY-MM-DD hh:mm:ss GMT`, not RFC 3339.
    pub time: Option<String>,
    pub lati: Option<f64>,
    pub long: Option<f64>,
    pub alti: Option<i32>,
    /// Radio packets received.
    pub rxnb: Option<u32>,
    /// Radio packets received with a valid CRC.
    pub rxok: Option<u32>,
    /// Radio packets forwarded.
    pub rxfw: Option<u32>,
    /// Upstream datagrams acknowledged, %; null from some forwarders.
    pub ackr: Option<f64>,
    /// Downlink datagrams received.
    pub dwnb: Option<u32>,
    /// Packets emitted.
    pub txnb: Option<u32>,
}

/// Why a whole datagram was dropped. Count it by [`DatagramError::kind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatagramError {
    #[error("datagram of {len} bytes, expected at least {min}")]
    TooShort { len: usize, min: usize },
    #[error("protocol version {0}, expected 1 or 2")]
    UnsupportedVersion(u8),
    #[error("unknown datagram identifier 0x{0:02x}")]
    UnknownIdentifier(u8),
    /// PUSH_ACK, PULL_RESP or PULL_ACK: server-to-forwarder datagrams.
    #[error("identifier 0x{0:02x} is sent by servers, not forwarders")]
    WrongDirection(u8),
    #[error("invalid JSON body: {0}")]
    InvalidJson(String),
}

impl DatagramError {
    /// A stable snake_case label, for the `error_type` of a counter.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TooShort { .. } => "too_short",
            Self::UnsupportedVersion(_) => "unsupported_version",
            Self::UnknownIdentifier(_) => "unknown_identifier",
            Self::WrongDirection(_) => "wrong_direction",
            Self::InvalidJson(_) => "invalid_json",
        }
    }
}

/// Why one `rxpk` element or the `stat` object was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// Missing `data`/`size`/`stat`, or a field of the wrong type.
    #[error("invalid fields: {0}")]
    Fields(String),
    #[error("`data` is not standard base64")]
    Base64,
    #[error("`size` is {size} but `data` decodes to {decoded} bytes")]
    SizeMismatch { size: u16, decoded: usize },
}

impl EntryError {
    /// A stable snake_case label, for the `error_type` of a counter.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Fields(_) => "invalid_fields",
            Self::Base64 => "invalid_base64",
            Self::SizeMismatch { .. } => "size_mismatch",
        }
    }
}

/// A datagram's fixed part, checked, and its JSON body still unparsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub header: Header,
    pub gateway: GatewayEui,
    pub body: &'a [u8],
}

impl Envelope<'_> {
    pub fn is_push_data(&self) -> bool {
        self.header.identifier == PUSH_DATA
    }
}

/// Reads a datagram's header and gateway EUI, enough to acknowledge it.
///
/// # Errors
/// A [`DatagramError`] other than `Json`/`Base64`.
pub fn envelope(buf: &[u8]) -> Result<Envelope<'_>, DatagramError> {
    let header = Header::read(buf)?;
    match header.identifier {
        PUSH_DATA | PULL_DATA | TX_ACK => {}
        PUSH_ACK | PULL_RESP | PULL_ACK => {
            return Err(DatagramError::WrongDirection(header.identifier))
        }
        other => return Err(DatagramError::UnknownIdentifier(other)),
    }
    let (eui, body) = match (
        buf.get(4..HEADER_WITH_EUI_LEN),
        buf.get(HEADER_WITH_EUI_LEN..),
    ) {
        (Some(eui), Some(body)) => (eui, body),
        _ => {
            return Err(DatagramError::TooShort {
                len: buf.len(),
                min: HEADER_WITH_EUI_LEN,
            })
        }
    };
    let mut gateway = [0u8; 8];
    gateway.copy_from_slice(eui);
    Ok(Envelope {
        header,
        gateway: GatewayEui(gateway),
        body,
    })
}

/// Parses one datagram from a forwarder.
///
/// # Errors
/// A [`DatagramError`].
pub fn parse(buf: &[u8]) -> Result<Datagram, DatagramError> {
    let Envelope {
        header,
        gateway,
        body,
    } = envelope(buf)?;
    Ok(match header.identifier {
        PUSH_DATA => Datagram::PushData {
            header,
            gateway,
            data: push_data(body)?,
        },
        PULL_DATA => Datagram::PullData { header, gateway },
        _ => Datagram::TxAck {
            header,
            gateway,
            error: tx_ack_error(body)?,
        },
    })
}

/// PUSH_ACK for a PUSH_DATA: version, the same token, 0x01.
pub fn push_ack(header: Header) -> [u8; 4] {
    [header.version, header.token[0], header.token[1], PUSH_ACK]
}

/// PULL_ACK for a PULL_DATA: version, the same token, 0x04.
pub fn pull_ack(header: Header) -> [u8; 4] {
    [header.version, header.token[0], header.token[1], PULL_ACK]
}

#[derive(Deserialize)]
struct Body {
    rxpk: Option<Vec<serde_json::Value>>,
    stat: Option<serde_json::Value>,
}

/// A body whose every entry is well-formed, read in one pass with its
/// strings borrowed from the datagram.
#[derive(Deserialize)]
struct TypedBody<'a> {
    #[serde(borrow)]
    rxpk: Option<Vec<RawRxpk<&'a str>>>,
    stat: Option<Stat>,
}

/// An `rxpk` element as it appears on the wire; `S` is `&str` when read
/// straight from the datagram, `String` when read from a `Value`.
#[derive(Deserialize)]
struct RawRxpk<S> {
    time: Option<S>,
    tmst: Option<u32>,
    chan: Option<u8>,
    rfch: Option<u8>,
    freq: Option<f64>,
    stat: i8,
    modu: Option<S>,
    datr: Option<DataRate>,
    codr: Option<S>,
    #[serde(default, deserialize_with = "signal::rssi")]
    rssi: Option<i16>,
    #[serde(default, deserialize_with = "signal::snr")]
    lsnr: Option<f64>,
    #[serde(default)]
    rsig: Vec<Rsig>,
    size: u16,
    data: S,
}

/// The JSON body of a PUSH_DATA.
///
/// # Errors
/// [`DatagramError`] `Json` or `Base64`.
pub fn push_data(body: &[u8]) -> Result<PushData, DatagramError> {
    // The plain shape most forwarders send, without serde; it declines
    // everything else.
    if let Some(data) = fast::push_data(body) {
        return Ok(data);
    }
    push_data_serde(body)
}

/// [`push_data`] through serde alone.
fn push_data_serde(body: &[u8]) -> Result<PushData, DatagramError> {
    // The usual datagram parses typed in one pass. Only when that fails is
    // it read again entry by entry through `Value`, so that one bad `rxpk`
    // (or a string with escapes, which cannot be borrowed) costs only
    // itself; a body both paths accept gives the same result either way.
    if let Ok(typed) = serde_json::from_slice::<TypedBody<'_>>(body) {
        return Ok(PushData {
            rxpk: typed
                .rxpk
                .unwrap_or_default()
                .into_iter()
                .map(rxpk)
                .collect(),
            stat: typed.stat.map(Ok),
        });
    }
    push_data_by_entry(body)
}

/// [`push_data`] through `Value`: each `rxpk` element and `stat` read on
/// its own, so a bad one becomes an `Err` entry, not a dropped datagram.
fn push_data_by_entry(body: &[u8]) -> Result<PushData, DatagramError> {
    let body: Body =
        serde_json::from_slice(body).map_err(|e| DatagramError::InvalidJson(e.to_string()))?;
    Ok(PushData {
        rxpk: body
            .rxpk
            .unwrap_or_default()
            .into_iter()
            .map(|value| {
                serde_json::from_value::<RawRxpk<String>>(value)
                    .map_err(|e| EntryError::Fields(e.to_string()))
                    .and_then(rxpk)
            })
            .collect(),
        stat: body
            .stat
            .map(|v| serde_json::from_value(v).map_err(|e| EntryError::Fields(e.to_string()))),
    })
}

fn rxpk<S: AsRef<str> + Into<String>>(raw: RawRxpk<S>) -> Result<Rxpk, EntryError> {
    let data = base64_decode(raw.data.as_ref()).ok_or(EntryError::Base64)?;
    if data.len() != usize::from(raw.size) {
        return Err(EntryError::SizeMismatch {
            size: raw.size,
            decoded: data.len(),
        });
    }
    Ok(Rxpk {
        time: raw.time.map(Into::into),
        tmst: raw.tmst,
        chan: raw.chan,
        rfch: raw.rfch,
        freq: raw.freq,
        stat: raw.stat,
        modu: raw.modu.map(text),
        datr: raw.datr,
        codr: raw.codr.map(text),
        rssi: raw.rssi,
        lsnr: raw.lsnr,
        rsig: raw.rsig,
        data,
    })
}

/// `txpk_ack.error` of an optional TX_ACK body. Trailing NULs are
/// stripped: some forwarders send the C string's terminator.
/// The error a TX_ACK reports, if any.
///
/// # Errors
/// [`DatagramError::InvalidJson`].
pub fn tx_ack_error(body: &[u8]) -> Result<Option<String>, DatagramError> {
    let end = body.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let body = &body[..end];
    if body.is_empty() {
        return Ok(None);
    }
    #[derive(Deserialize)]
    struct TxAckBody {
        txpk_ack: Option<TxpkAck>,
    }
    #[derive(Deserialize)]
    struct TxpkAck {
        error: Option<String>,
    }
    let parsed: TxAckBody =
        serde_json::from_slice(body).map_err(|e| DatagramError::InvalidJson(e.to_string()))?;
    Ok(parsed.txpk_ack.and_then(|a| a.error))
}

#[path = "semtech_base64.rs"]
mod base64_text;
pub use base64_text::base64_decode;
use base64_text::base64_decode_bytes;

#[path = "semtech_fast.rs"]
mod fast;

#[path = "semtech_text.rs"]
mod text_fields;
#[cfg(test)]
use text_fields::KNOWN_TEXTS;
use text_fields::text_of_bytes;
pub use text_fields::{text, DataRate, Text};

#[cfg(test)]
#[path = "semtech_tests.rs"]
mod tests;
