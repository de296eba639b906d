//! BTHome v2 service data (UUID 0xFCD2): device-info byte, then objects.
//!
//! bthome.io format page, "BTHome Data format": the first byte is the
//! device info (bit 0 encryption, bit 1 reserved — formerly "MAC included",
//! still sent by old firmwares, bit 2 trigger-based, bits 5–7 version),
//! then objects, each an id byte and a little-endian value whose size,
//! sign and factor the table gives (`bthome_objects`).
//!
//! Parsing is total and keeps what it can (FAULTS §3.5):
//! - an unknown id stops parsing, keeping the objects before it ("A BTHome
//!   receiver will stop parsing object ids as soon as it finds an object id
//!   that isn't supported");
//! - a truncated last object is dropped, the complete ones kept (bthome-ble
//!   still emits 25.06 °C for `4002ca0903bf`);
//! - ids out of numerical order are parsed and flagged;
//! - text that is not UTF-8 is skipped.
//!
//! Decryption and the downgrade rule are here; the counter's replay check
//! needs memory across frames and lives in `replay`.

use super::advert::Mac;
use super::bthome_crypto::{self, BindKey};
use super::bthome_objects::{spec, Kind};
use super::error::DecodeError;
use super::values::Measurements;

/// Device-info bit 0: the objects are encrypted.
pub const INFO_ENCRYPTED: u8 = 0x01;
/// Device-info bit 1: the legacy "MAC included" flag; 6 bytes of MAC
/// (reversed) follow the info byte.
pub const INFO_MAC_INCLUDED: u8 = 0x02;
/// Device-info bit 2: the device advertises on events, not periodically.
pub const INFO_TRIGGER_BASED: u8 = 0x04;
/// The only version accepted, in bits 5–7.
pub const VERSION: u8 = 2;

/// Why object parsing stopped before the end of the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// An id this receiver does not know; nothing after it can be sized.
    UnknownObject { id: u8 },
    /// The object with this id runs past the end of the payload.
    Truncated { id: u8 },
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownObject { id } => {
                write!(f, "object id 0x{id:02x} is unknown; what follows it cannot be sized")
            }
            Self::Truncated { id } => {
                write!(f, "object id 0x{id:02x} runs past the end of the payload")
            }
        }
    }
}

/// An event object (bthome.io format page, "Events"). Events are not
/// measurements, so they never become readings; they are kept for callers
/// that act on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// 0x3A: 0 none, 1 press, 2 double, 3 triple, 4 long, 5 long double,
    /// 6 long triple, 0x80 hold.
    Button { event: u8 },
    /// 0x3C: 0 none, 1 rotate left, 2 rotate right, with a step count.
    Dimmer { event: u8, steps: u8 },
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let button = |event: u8| match event {
            0 => "none".to_string(),
            1 => "press".to_string(),
            2 => "double_press".to_string(),
            3 => "triple_press".to_string(),
            4 => "long_press".to_string(),
            5 => "long_double_press".to_string(),
            6 => "long_triple_press".to_string(),
            0x80 => "hold_press".to_string(),
            other => format!("0x{other:02x}"),
        };
        match *self {
            Self::Button { event } => write!(f, "button {}", button(event)),
            Self::Dimmer { event: 0, .. } => write!(f, "dimmer none"),
            Self::Dimmer { event: 1, steps } => write!(f, "dimmer rotate_left {steps}"),
            Self::Dimmer { event: 2, steps } => write!(f, "dimmer rotate_right {steps}"),
            Self::Dimmer { event, steps } => write!(f, "dimmer 0x{event:02x} {steps}"),
        }
    }
}

/// One decoded BTHome frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frame {
    /// The device-info byte as sent.
    pub info: u8,
    /// The legacy MAC carried in the payload, when the flag is set.
    pub mac_in_payload: Option<Mac>,
    /// The encryption counter, for an encrypted frame.
    pub counter: Option<u32>,
    /// Object 0x00, for de-duplication.
    pub packet_id: Option<u8>,
    /// Object 0x50: seconds since 1970, as the device says.
    pub timestamp: Option<u32>,
    /// Object 0xF0.
    pub device_type_id: Option<u16>,
    /// Object 0xF1 / 0xF2, most significant part first (`[4, 2, 1, 0]`).
    pub firmware_version: Option<Vec<u8>>,
    pub values: Measurements,
    pub events: Vec<Event>,
    /// Why parsing stopped early, if it did.
    pub stop: Option<Stop>,
    /// Ids were not in ascending order (the format page asks for it).
    pub out_of_order: bool,
}

impl Frame {
    pub fn encrypted(&self) -> bool {
        self.info & INFO_ENCRYPTED != 0
    }

    pub fn trigger_based(&self) -> bool {
        self.info & INFO_TRIGGER_BASED != 0
    }
}

/// The device-info byte and what follows it, before any decryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub info: u8,
    pub mac_in_payload: Option<Mac>,
    /// Objects (plaintext) or `ciphertext | counter | MIC` (encrypted).
    pub body: &'a [u8],
}

impl Header<'_> {
    pub fn encrypted(&self) -> bool {
        self.info & INFO_ENCRYPTED != 0
    }
}

/// Splits service data into device info, optional MAC, and body.
///
/// # Errors
/// [`DecodeError::Empty`], [`DecodeError::UnsupportedVersion`] for version
/// bits other than 2, [`DecodeError::MacTruncated`].
pub fn header(data: &[u8]) -> Result<Header<'_>, DecodeError> {
    let Some((&info, rest)) = data.split_first() else {
        return Err(DecodeError::Empty { format: "BTHome" });
    };
    let version = info >> 5;
    if version != VERSION {
        return Err(DecodeError::UnsupportedVersion { version });
    }
    if info & INFO_MAC_INCLUDED == 0 {
        return Ok(Header {
            info,
            mac_in_payload: None,
            body: rest,
        });
    }
    if rest.len() < 6 {
        return Err(DecodeError::MacTruncated { found: rest.len() });
    }
    let (mac, body) = rest.split_at(6);
    let mut printed = [0u8; 6];
    for (dst, src) in printed.iter_mut().zip(mac.iter().rev()) {
        *dst = *src;
    }
    Ok(Header {
        info,
        mac_in_payload: Some(Mac(printed)),
        body,
    })
}

/// Decodes BTHome service data received from `mac`.
///
/// `bindkey` is the device's key, if it has one: an encrypted frame needs
/// it, and a device with one must not send plaintext (bthome.io encryption
/// page warns that receivers accepting both can "trivially" be spoofed).
/// The nonce uses the MAC in the payload when the legacy flag carries one
/// (as bthome-ble does), otherwise the advertiser's.
///
/// ```
/// use adapters::ble::{bthome, BindKey, Mac};
///
/// // bthome.io encryption page: info 0x41 | ciphertext | counter | MIC.
/// let mac: Mac = "54:48:E6:8F:80:A5".parse()?;
/// let key: BindKey = "231d39c1d7cc1ab1aee224cd096db932".parse()?;
/// let data = adapters::ble::advert::parse_hex("41e445f3c9962b332211006c7c4519").unwrap();
/// let frame = bthome::decode(&data, mac, Some(&key))?;
/// assert_eq!(frame.counter, Some(0x0011_2233));
/// assert_eq!(frame.values.get("temperature"), Some(25.06));
/// assert_eq!(frame.values.get("humidity"), Some(50.55));
/// // The same bytes without the key, or plaintext with it: refused.
/// assert!(bthome::decode(&data, mac, None).is_err());
/// assert!(bthome::decode(&[0x40, 0x02, 0xca, 0x09], mac, Some(&key)).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// Header errors (see [`header`]), [`DecodeError::NoBindkey`],
/// [`DecodeError::Downgrade`], and decryption errors
/// ([`bthome_crypto::open`]).
pub fn decode(data: &[u8], mac: Mac, bindkey: Option<&BindKey>) -> Result<Frame, DecodeError> {
    let h = header(data)?;
    let mut frame = Frame {
        info: h.info,
        mac_in_payload: h.mac_in_payload,
        ..Frame::default()
    };
    match (h.encrypted(), bindkey) {
        (true, None) => Err(DecodeError::NoBindkey),
        (false, Some(_)) => Err(DecodeError::Downgrade),
        (false, None) => {
            parse_objects(h.body, &mut frame);
            Ok(frame)
        }
        (true, Some(key)) => {
            let nonce_mac = h.mac_in_payload.unwrap_or(mac);
            let (plain, counter) = bthome_crypto::open(key, nonce_mac, h.info, h.body)?;
            frame.counter = Some(counter);
            parse_objects(&plain, &mut frame);
            Ok(frame)
        }
    }
}

/// Little-endian integer of 1–4 bytes, sign-extended when `signed`.
fn read_le(bytes: &[u8], signed: bool) -> i64 {
    let mut v: u64 = 0;
    for (i, b) in bytes.iter().enumerate() {
        v |= u64::from(*b) << (8 * i);
    }
    if signed {
        let shift = 64 - 8 * bytes.len() as u32;
        // Shift the sign bit to bit 63, then back with sign extension.
        ((v << shift) as i64) >> shift
    } else {
        v as i64
    }
}

/// Parses plaintext objects into `frame`. Total: never fails, stops early
/// as the module doc describes.
pub fn parse_objects(mut body: &[u8], frame: &mut Frame) {
    let mut previous: Option<u8> = None;
    while let Some((&id, rest)) = body.split_first() {
        let Some(spec) = spec(id) else {
            frame.stop = Some(Stop::UnknownObject { id });
            return;
        };
        if previous.is_some_and(|p| id < p) {
            frame.out_of_order = true;
        }
        previous = Some(id);
        // Text and raw carry their own length byte.
        let (skip, len) = match spec.kind.fixed_len() {
            Some(n) => (0, n),
            None => match rest.first() {
                Some(&n) => (1, usize::from(n)),
                None => (0, usize::MAX),
            },
        };
        let Some(value) = rest.get(skip..).and_then(|r| r.get(..len)) else {
            frame.stop = Some(Stop::Truncated { id });
            return;
        };
        body = &rest[skip + len..];
        match spec.kind {
            Kind::Number { signed, scale, .. } => {
                frame
                    .values
                    .push(spec.name, scale.apply(read_le(value, signed)));
            }
            Kind::Binary => frame
                .values
                .push(spec.name, if value[0] == 0 { 0.0 } else { 1.0 }),
            Kind::PacketId => frame.packet_id = Some(value[0]),
            Kind::Timestamp => frame.timestamp = Some(read_le(value, false) as u32),
            Kind::DeviceTypeId => frame.device_type_id = Some(read_le(value, false) as u16),
            Kind::Firmware { .. } => {
                frame.firmware_version = Some(value.iter().rev().copied().collect());
            }
            Kind::Button => frame.events.push(Event::Button { event: value[0] }),
            Kind::Dimmer => frame.events.push(Event::Dimmer {
                event: value[0],
                steps: value[1],
            }),
            // Not numbers, so never readings; invalid UTF-8 text is simply
            // skipped (bthome-ble test_bthome_text_invalid).
            Kind::Text | Kind::Raw => {}
        }
    }
}

#[cfg(test)]
#[path = "bthome_tests.rs"]
mod tests;
