//! LoRaWAN 1.0.x data frames: PHYPayload in, a verified and decrypted frame
//! out. The AES-CMAC/AES-CTR work is ours ([`super::crypto`]), on keys
//! expanded once per session; the `lorawan` crate builds frames for
//! tests and is the reference our reading is compared with.
//!
//! Two steps, because the keys depend on the frame: [`peek`] reads the
//! header without keys (the caller finds the device by DevAddr and
//! reconstructs the 32-bit FCnt with [`full_fcnt`]), then [`open`] checks the
//! MIC with the NwkSKey and that full counter and decrypts FRMPayload with the
//! AppSKey (FPort > 0) or the NwkSKey (FPort 0). Lengths are checked here
//! before the crate sees the bytes: rust-lorawan #94 was a panic on an FOpts
//! length past the end of the frame (FAULTS §3.4).

use std::fmt;
use std::str::FromStr;

use lorawan::parser;

use super::crypto::{data_mic_with, frm_cipher_in_place, Direction, SessionKeys};
use super::mac::{self, MacCommand};

/// MHDR (1) + FHDR without FOpts (7) + MIC (4): the shortest data frame.
pub const MIN_DATA_FRAME_LEN: usize = 12;
/// MHDR. 1 byte.
const MHDR_LEN: usize = 1;
/// DevAddr (4) + FCtrl (1) + FCnt (2). 7 bytes.
const FHDR_MIN_LEN: usize = 7;
/// MIC. 4 bytes.
const MIC_LEN: usize = 4;

/// An AES-128 session key. `Debug` never shows it: keys never reach logs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Key(pub [u8; 16]);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// A key that is not 32 hex digits. The text is not echoed back: it may be
/// a real key with a typo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("expected a key of 32 hex digits (16 bytes), got {0} characters")]
    Length(usize),
    #[error("expected a key of 32 hex digits, character {0} is not a hex digit")]
    NotHex(usize),
}

impl FromStr for Key {
    type Err = KeyError;

    fn from_str(given: &str) -> Result<Self, Self::Err> {
        let s = super::hex_text::compact_hex(given);
        if s.len() != 32 {
            return Err(KeyError::Length(s.chars().count()));
        }
        if let Some(at) = s.bytes().position(|b| !b.is_ascii_hexdigit()) {
            return Err(KeyError::NotHex(at + 1));
        }
        let mut key = [0u8; 16];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
                .map_err(|_| KeyError::NotHex(2 * i + 1))?;
        }
        Ok(Self(key))
    }
}

/// Message type of a data frame (MHDR bits 7–5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MType {
    UnconfirmedDataUp,
    ConfirmedDataUp,
    UnconfirmedDataDown,
    ConfirmedDataDown,
}

impl MType {
    /// Uplinks are device → network.
    pub fn is_uplink(self) -> bool {
        matches!(self, Self::UnconfirmedDataUp | Self::ConfirmedDataUp)
    }
}

/// What a data frame says before any key is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peek {
    pub mtype: MType,
    /// DevAddr as a number, MSB first (`0x49BE7DF1`); little-endian on air.
    pub dev_addr: u32,
    /// The 16 low bits of FCnt, as on air.
    pub fcnt16: u16,
}

/// A decrypted FRMPayload, held inline up to 64 bytes: a sensor's frame
/// is a few tens of bytes, and a list of its own was an allocation and a
/// free an uplink (callgrind, issue 69). Longer ones (up to the 242 the
/// regions allow) go to the heap, as before.
pub type FramePayload = smallvec::SmallVec<[u8; 64]>;

/// A verified, decrypted data frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFrame {
    pub mtype: MType,
    pub dev_addr: u32,
    /// FCtrl byte (ADR, ACK, FPending/ClassB, FOptsLen).
    pub fctrl: u8,
    pub fcnt16: u16,
    /// The full counter the MIC was verified with.
    pub fcnt: u32,
    /// MAC commands: from FOpts, or from FRMPayload when FPort is 0.
    pub mac_commands: Vec<MacCommand>,
    /// Bytes at the end of the MAC command area that do not form a known
    /// command (a proprietary CID or a cut-off payload): kept, not fatal.
    pub mac_unparsed: Vec<u8>,
    pub fport: Option<u8>,
    /// Decrypted FRMPayload; application data only when `fport > 0`.
    pub payload: FramePayload,
    pub mic: [u8; 4],
}

impl DataFrame {
    /// The payload for an application codec: `None` for FPort 0 (MAC
    /// commands, FAULTS §3.4) and for frames without FPort.
    pub fn application_payload(&self) -> Option<&[u8]> {
        matches!(self.fport, Some(p) if p > 0).then_some(self.payload.as_slice())
    }
}

/// Why a PHYPayload was not accepted. Count it by [`FrameError::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("PHYPayload of {len} bytes, a data frame has at least 12")]
    TooShort { len: usize },
    #[error("LoRaWAN major version {0}, expected 0 (R1)")]
    UnsupportedMajor(u8),
    #[error("join request, not a data frame")]
    JoinRequest,
    #[error("join accept: a downlink, not expected from a device")]
    JoinAccept,
    #[error("MType {0:#05b} is RFU or proprietary, not a data frame")]
    NotDataFrame(u8),
    #[error("FOptsLen {fopts_len} needs {needed} bytes, frame has {len}")]
    FOptsOverflow {
        fopts_len: u8,
        needed: usize,
        len: usize,
    },
    #[error("MAC commands in FOpts and in an FPort 0 payload at once (LoRaWAN 1.0.x 4.3.1.6)")]
    MacCommandsTwice,
    #[error("malformed frame")]
    Malformed,
    #[error("MIC mismatch")]
    InvalidMic,
}

impl FrameError {
    /// A stable snake_case label, for the `error_type` of a counter.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TooShort { .. } => "too_short",
            Self::UnsupportedMajor(_) => "unsupported_major",
            Self::JoinRequest => "join_request",
            Self::JoinAccept => "join_accept",
            Self::NotDataFrame(_) => "not_data_frame",
            Self::FOptsOverflow { .. } => "fopts_overflow",
            Self::MacCommandsTwice => "mac_commands_twice",
            Self::Malformed => "malformed",
            Self::InvalidMic => "invalid_mic",
        }
    }
}

/// Reads the header of a data frame, without keys.
///
/// # Errors
/// A [`FrameError`] for anything but a well-formed LoRaWAN R1 data frame.
pub fn peek(phy: &[u8]) -> Result<Peek, FrameError> {
    let Some(&mhdr) = phy.first() else {
        return Err(FrameError::TooShort { len: 0 });
    };
    let major = mhdr & 0b11;
    if major != 0 {
        return Err(FrameError::UnsupportedMajor(major));
    }
    let mtype = match mhdr >> 5 {
        0b000 => return Err(FrameError::JoinRequest),
        0b001 => return Err(FrameError::JoinAccept),
        0b010 => MType::UnconfirmedDataUp,
        0b011 => MType::UnconfirmedDataDown,
        0b100 => MType::ConfirmedDataUp,
        0b101 => MType::ConfirmedDataDown,
        other => return Err(FrameError::NotDataFrame(other)),
    };
    let [_, a0, a1, a2, a3, fctrl, c0, c1, ..] = *phy else {
        return Err(FrameError::TooShort { len: phy.len() });
    };
    if phy.len() < MIN_DATA_FRAME_LEN {
        return Err(FrameError::TooShort { len: phy.len() });
    }
    let fopts_len = fctrl & 0x0F;
    let needed = MHDR_LEN + FHDR_MIN_LEN + usize::from(fopts_len) + MIC_LEN;
    if phy.len() < needed {
        return Err(FrameError::FOptsOverflow {
            fopts_len,
            needed,
            len: phy.len(),
        });
    }
    Ok(Peek {
        mtype,
        dev_addr: u32::from_le_bytes([a0, a1, a2, a3]),
        fcnt16: u16::from_le_bytes([c0, c1]),
    })
}

/// LoRaWAN 1.0.x §4.3.1.6: MAC commands in FOpts and an FPort 0 payload
/// of MAC commands at once is not a frame a device sends (a frame
/// [`peek`] accepted: its FOpts fit).
pub fn has_mac_commands_twice(phy: &[u8]) -> bool {
    let Some(&fctrl) = phy.get(5) else {
        return false;
    };
    let fport_at = MHDR_LEN + FHDR_MIN_LEN + usize::from(fctrl & 0x0F);
    fctrl & 0x0F > 0 && phy.len() > fport_at + MIC_LEN && phy[fport_at] == 0
}

/// Verifies the MIC with `nwk_s_key` and the full counter `fcnt`, then
/// decrypts FRMPayload. Expands both keys for this one frame: the uplink
/// path keeps a session's [`SessionKeys`] and calls [`open_with`].
///
/// # Errors
/// What [`peek`] refuses, and [`FrameError::InvalidMic`].
pub fn open(
    phy: &[u8],
    nwk_s_key: &Key,
    app_s_key: &Key,
    fcnt: u32,
) -> Result<DataFrame, FrameError> {
    open_with(phy, &SessionKeys::new(nwk_s_key, app_s_key), fcnt)
}

/// [`open`] with a session's keys expanded beforehand. Byte for byte what
/// the `lorawan` crate's `validate_mic` and `decrypt` compute (a test
/// compares the two on random frames and keys), without expanding the
/// AES key schedule for each call or copying the frame.
///
/// # Errors
/// What [`peek`] refuses, and [`FrameError::InvalidMic`].
pub fn open_with(phy: &[u8], keys: &SessionKeys, fcnt: u32) -> Result<DataFrame, FrameError> {
    let head = peek(phy)?;
    // peek(): len ≥ 12 and the FHDR with its FOpts fits before the MIC.
    let mic_at = phy.len() - MIC_LEN;
    // The direction bit of B0 and A_i is the MHDR's bit 5, as the crate
    // reads it (set for the downlink MTypes).
    let dir = if phy[0] & 0x20 == 0 {
        Direction::Up
    } else {
        Direction::Down
    };
    let mut mic = [0u8; MIC_LEN];
    mic.copy_from_slice(&phy[mic_at..]);
    if data_mic_with(&keys.nwk, dir, head.dev_addr, fcnt, &phy[..mic_at]) != mic {
        return Err(FrameError::InvalidMic);
    }
    let fctrl = phy[5];
    let fport_at = MHDR_LEN + FHDR_MIN_LEN + usize::from(fctrl & 0x0F);
    let fopts = &phy[MHDR_LEN + FHDR_MIN_LEN..fport_at];
    // Our own FPort: lorawan 0.9's `f_port()` says `None` when FPort is
    // present with an empty FRMPayload, which the spec allows
    // (lora-packet-empty-frmpayload). Decryption is unaffected: with no
    // FRMPayload bytes there is nothing to decrypt with either key.
    let fport = (mic_at > fport_at).then(|| phy[fport_at]);
    let payload = match fport {
        Some(port) => {
            let mut payload = FramePayload::from_slice(&phy[fport_at + 1..mic_at]);
            let key = if port == 0 { &keys.nwk } else { &keys.app };
            // The crate's counter for the key stream: the high half of
            // `fcnt` with the 16 bits on air (the same as `fcnt` for every
            // counter [`full_fcnt`] gives).
            let ctr = ((fcnt >> 16) << 16) ^ u32::from(head.fcnt16);
            frm_cipher_in_place(key, dir, head.dev_addr, ctr, &mut payload);
            payload
        }
        None => FramePayload::new(),
    };
    // FPort 0 carries MAC commands in FRMPayload (then FOpts must be empty).
    let mac_area = if fport == Some(0) { &payload[..] } else { fopts };
    let (mac_commands, rest) = mac::parse(mac_area, head.mtype.is_uplink());
    Ok(DataFrame {
        mtype: head.mtype,
        dev_addr: head.dev_addr,
        fctrl,
        fcnt16: head.fcnt16,
        fcnt,
        mac_unparsed: rest.to_vec(),
        mac_commands,
        fport,
        payload,
        mic,
    })
}

/// Builds an unconfirmed data uplink: the inverse of [`open`], for tests,
/// benches and fuzz seeds (the gateway itself never sends uplinks).
///
/// # Errors
/// [`FrameError::Malformed`] for a payload over 242 bytes.
pub fn seal(
    dev_addr: u32,
    fcnt: u32,
    fport: u8,
    payload: &[u8],
    nwk_s_key: &Key,
    app_s_key: &Key,
) -> Result<Vec<u8>, FrameError> {
    use lorawan::creator::DataPayloadCreator;
    use lorawan::keys::{AppSKey, NewSKey};
    if payload.len() > 242 {
        return Err(FrameError::Malformed);
    }
    let mut phy = DataPayloadCreator::new();
    phy.set_confirmed(false)
        .set_uplink(true)
        .set_f_port(fport)
        // On air DevAddr is little-endian; the creator copies bytes as given.
        .set_dev_addr(&dev_addr.to_le_bytes())
        .set_fctrl(&parser::FCtrl::new(0, true))
        .set_fcnt(fcnt);
    phy.build(
        payload,
        &[],
        &NewSKey::from(nwk_s_key.0),
        &AppSKey::from(app_s_key.0),
    )
    .map(<[u8]>::to_vec)
    .map_err(|_| FrameError::Malformed)
}

/// The full 32-bit FCnt from the 16 bits on air, relative to the next
/// expected counter (last accepted + 1): ChirpStack's `get_full_f_cnt_up`
/// (chirpstack/src/storage/device.rs). The previous counter maps to itself
/// (a retransmission); anything else is the nearest counter at or after
/// `next_expected`, wrapping at 2^32.
pub fn full_fcnt(next_expected: u32, received16: u16) -> u32 {
    let expected16 = next_expected as u16; // the low 16 bits
    if received16 == expected16.wrapping_sub(1) {
        return next_expected.wrapping_sub(1);
    }
    let gap = u32::from(received16.wrapping_sub(expected16));
    next_expected.wrapping_add(gap)
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
