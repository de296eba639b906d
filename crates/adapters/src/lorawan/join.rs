//! LoRaWAN 1.0.x over-the-air activation (spec §6.2): the join-request a
//! device sends, the join-accept the network answers, the session keys
//! both sides derive. Pure: bytes and keys in, bytes or a typed error out.
//!
//! Byte order: every multi-byte field is little-endian on air; EUIs are
//! held MSB first, as consoles and labels print them.

use std::fmt;
use std::str::FromStr;

use super::crypto::{decrypt_block, encrypt_block, mic};
use super::frame::Key;

/// MHDR of a join-request: MType 000, Major 00.
const JOIN_REQUEST_MHDR: u8 = 0x00;
/// MHDR of a join-accept: MType 001, Major 00.
const JOIN_ACCEPT_MHDR: u8 = 0x20;
/// MHDR | JoinEUI (8) | DevEUI (8) | DevNonce (2) | MIC (4).
pub const JOIN_REQUEST_LEN: usize = 23;
/// MHDR | JoinNonce (3) | NetID (3) | DevAddr (4) | DLSettings | RxDelay | MIC (4).
const JOIN_ACCEPT_LEN: usize = 17;
/// The same with a 16-byte CFList.
const JOIN_ACCEPT_CFLIST_LEN: usize = 33;

/// A 64-bit EUI (DevEUI, JoinEUI/AppEUI), MSB first.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Eui(pub [u8; 8]);

impl fmt::Display for Eui {
    /// 16 upper-case hex digits, as device labels print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02X}"))
    }
}

impl fmt::Debug for Eui {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Eui({self})")
    }
}

/// An EUI that is not 16 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected an EUI of 16 hex digits, MSB first (\"70B3D57ED0000001\"), got {0:?}")]
pub struct EuiParseError(pub String);

impl FromStr for Eui {
    type Err = EuiParseError;

    fn from_str(given: &str) -> Result<Self, Self::Err> {
        let err = || EuiParseError(given.to_string());
        let s = super::hex_text::compact_hex(given);
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

fn eui_from_air(bytes: &[u8]) -> Eui {
    let mut eui = [0u8; 8];
    for (dst, src) in eui.iter_mut().zip(bytes.iter().rev()) {
        *dst = *src;
    }
    Eui(eui)
}

fn eui_to_air(eui: Eui) -> [u8; 8] {
    let mut air = eui.0;
    air.reverse();
    air
}

/// Why a join frame was refused. Count it by [`JoinError::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("join frame of {len} bytes, expected {expected}")]
    Length { len: usize, expected: usize },
    #[error("MHDR {0:#04x} is not a LoRaWAN R1 join frame of this kind")]
    Mhdr(u8),
    #[error("MIC does not verify with the AppKey")]
    InvalidMic,
}

impl JoinError {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Length { .. } => "join_length",
            Self::Mhdr(_) => "join_mhdr",
            Self::InvalidMic => "join_invalid_mic",
        }
    }
}

/// A join-request's fields; its MIC is checked by [`JoinRequest::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinRequest {
    pub join_eui: Eui,
    pub dev_eui: Eui,
    pub dev_nonce: u16,
}

impl JoinRequest {
    /// Reads a join-request without a key (the DevEUI selects it).
    ///
    /// # Errors
    /// [`JoinError::Length`] or [`JoinError::Mhdr`].
    pub fn parse(phy: &[u8]) -> Result<Self, JoinError> {
        if phy.len() != JOIN_REQUEST_LEN {
            return Err(JoinError::Length {
                len: phy.len(),
                expected: JOIN_REQUEST_LEN,
            });
        }
        if phy[0] != JOIN_REQUEST_MHDR {
            return Err(JoinError::Mhdr(phy[0]));
        }
        Ok(Self {
            join_eui: eui_from_air(&phy[1..9]),
            dev_eui: eui_from_air(&phy[9..17]),
            dev_nonce: u16::from_le_bytes([phy[17], phy[18]]),
        })
    }

    /// Checks a join-request's MIC: AES-CMAC(AppKey, MHDR..DevNonce).
    ///
    /// # Errors
    /// What [`Self::parse`] refuses, and [`JoinError::InvalidMic`].
    pub fn verify(phy: &[u8], app_key: &Key) -> Result<Self, JoinError> {
        let request = Self::parse(phy)?;
        let (body, got) = phy.split_at(JOIN_REQUEST_LEN - 4);
        if mic(app_key, body) != got {
            return Err(JoinError::InvalidMic);
        }
        Ok(request)
    }

    /// The frame a device sends: for the simulator and tests.
    pub fn seal(&self, app_key: &Key) -> Vec<u8> {
        let mut phy = Vec::with_capacity(JOIN_REQUEST_LEN);
        phy.push(JOIN_REQUEST_MHDR);
        phy.extend_from_slice(&eui_to_air(self.join_eui));
        phy.extend_from_slice(&eui_to_air(self.dev_eui));
        phy.extend_from_slice(&self.dev_nonce.to_le_bytes());
        let m = mic(app_key, &phy);
        phy.extend_from_slice(&m);
        phy
    }
}

/// A join-accept's fields (spec §6.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinAccept {
    /// AppNonce (1.0.0–1.0.2) / JoinNonce (1.0.3+): 24 bits.
    pub join_nonce: u32,
    /// 24 bits.
    pub net_id: u32,
    /// MSB first, as printed.
    pub dev_addr: u32,
    /// RX1DROffset (bits 6–4) and RX2 data rate (bits 3–0).
    pub dl_settings: u8,
    /// RX1 delay in seconds (0 means 1).
    pub rx_delay: u8,
    /// Extra channels (EU868-like regions) or a channel mask (US915).
    pub cf_list: Option<[u8; 16]>,
}

impl JoinAccept {
    fn plain(&self) -> Vec<u8> {
        let mut phy = Vec::with_capacity(JOIN_ACCEPT_CFLIST_LEN);
        phy.push(JOIN_ACCEPT_MHDR);
        phy.extend_from_slice(&self.join_nonce.to_le_bytes()[..3]);
        phy.extend_from_slice(&self.net_id.to_le_bytes()[..3]);
        phy.extend_from_slice(&self.dev_addr.to_le_bytes());
        phy.push(self.dl_settings);
        phy.push(self.rx_delay);
        if let Some(cf) = &self.cf_list {
            phy.extend_from_slice(cf);
        }
        phy
    }

    /// The frame as sent: MIC over the plaintext, then everything after
    /// MHDR "encrypted" with AES-ECB *decrypt* under the AppKey.
    pub fn seal(&self, app_key: &Key) -> Vec<u8> {
        let mut plain = self.plain();
        let m = mic(app_key, &plain);
        plain.extend_from_slice(&m);
        let mut out = vec![JOIN_ACCEPT_MHDR];
        for chunk in plain[1..].chunks(16) {
            let mut block = [0u8; 16];
            block.copy_from_slice(chunk); // 16 or 32 bytes: whole blocks
            out.extend_from_slice(&decrypt_block(app_key, block));
        }
        out
    }

    /// What a device does with a join-accept: encrypt to undo the
    /// network's decrypt, then check the MIC. For the simulator and
    /// `decode`.
    ///
    /// # Errors
    /// A [`JoinError`].
    pub fn open(phy: &[u8], app_key: &Key) -> Result<Self, JoinError> {
        if phy.len() != JOIN_ACCEPT_LEN && phy.len() != JOIN_ACCEPT_CFLIST_LEN {
            return Err(JoinError::Length {
                len: phy.len(),
                expected: JOIN_ACCEPT_LEN,
            });
        }
        if phy[0] != JOIN_ACCEPT_MHDR {
            return Err(JoinError::Mhdr(phy[0]));
        }
        let mut plain = vec![phy[0]];
        for chunk in phy[1..].chunks(16) {
            let mut block = [0u8; 16];
            block.copy_from_slice(chunk);
            plain.extend_from_slice(&encrypt_block(app_key, block));
        }
        let (body, got) = plain.split_at(plain.len() - 4);
        if mic(app_key, body) != got {
            return Err(JoinError::InvalidMic);
        }
        let u24 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], 0]);
        let cf_list = (body.len() == JOIN_ACCEPT_CFLIST_LEN - 4).then(|| {
            let mut cf = [0u8; 16];
            cf.copy_from_slice(&body[13..29]);
            cf
        });
        Ok(Self {
            join_nonce: u24(&body[1..4]),
            net_id: u24(&body[4..7]),
            dev_addr: u32::from_le_bytes([body[7], body[8], body[9], body[10]]),
            dl_settings: body[11],
            rx_delay: body[12],
            cf_list,
        })
    }
}

/// The session keys of LoRaWAN 1.0.x (spec §6.2.5):
/// `aes128_encrypt(AppKey, 0x01|0x02 | JoinNonce | NetID | DevNonce | pad16)`.
pub fn session_keys(app_key: &Key, join_nonce: u32, net_id: u32, dev_nonce: u16) -> (Key, Key) {
    let derive = |prefix: u8| {
        let mut block = [0u8; 16];
        block[0] = prefix;
        block[1..4].copy_from_slice(&join_nonce.to_le_bytes()[..3]);
        block[4..7].copy_from_slice(&net_id.to_le_bytes()[..3]);
        block[7..9].copy_from_slice(&dev_nonce.to_le_bytes());
        Key(encrypt_block(app_key, block))
    };
    (derive(0x01), derive(0x02))
}

/// A DevAddr for a type-0 NetID (LoRaWAN Backend Interfaces §13): the
/// NwkID (the NetID's 6 low bits) in the 6 top bits, then 25 bits of
/// NwkAddr.
pub fn dev_addr(net_id: u32, nwk_addr: u32) -> u32 {
    ((net_id & 0x3F) << 25) | (nwk_addr & 0x01FF_FFFF)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::lorawan::test_hex;

    /// Published example: avbentem's "Deciphering a LoRaWAN OTAA Join
    /// Accept" (runkit.com/avbentem/deciphering-a-lorawan-otaa-join-accept),
    /// quoted by lorawan-packet-decoder and buzzware/decrypt-join-accept's
    /// README: AppKey B6B53F4A168A7A88BDF7EA135CE9CFCA, AppNonce E5063A,
    /// NetID 000013, DevAddr 26012E43, DLSettings 03, RXDelay 01, CFList
    /// 184F84E85684B85E84886684586E8400, MIC 55121DE0.
    const PUBLISHED_ACCEPT: &str =
        "204DD85AE608B87FC4889970B7D2042C9E72959B0057AED6094B16003DF12DE145";
    const PUBLISHED_APP_KEY: &str = "B6B53F4A168A7A88BDF7EA135CE9CFCA";

    fn published_fields() -> JoinAccept {
        let mut cf = [0u8; 16];
        cf.copy_from_slice(&test_hex("184F84E85684B85E84886684586E8400"));
        JoinAccept {
            join_nonce: 0xE5063A,
            net_id: 0x000013,
            dev_addr: 0x2601_2E43,
            dl_settings: 0x03,
            rx_delay: 0x01,
            cf_list: Some(cf),
        }
    }

    #[test]
    fn the_published_join_accept_is_built_byte_for_byte() {
        let key: Key = PUBLISHED_APP_KEY.parse().unwrap();
        assert_eq!(
            published_fields().seal(&key),
            test_hex(PUBLISHED_ACCEPT),
            "MIC 55121DE0 and the ECB-decrypt 'encryption' of the spec"
        );
    }

    #[test]
    fn the_published_join_accept_opens_and_a_wrong_key_does_not() {
        let key: Key = PUBLISHED_APP_KEY.parse().unwrap();
        let phy = test_hex(PUBLISHED_ACCEPT);
        assert_eq!(JoinAccept::open(&phy, &key).unwrap(), published_fields());
        let other: Key = "B6B53F4A168A7A88BDF7EA135CE9CFCB".parse().unwrap();
        assert_eq!(JoinAccept::open(&phy, &other), Err(JoinError::InvalidMic));
    }

    #[test]
    fn a_join_request_round_trips_and_a_flipped_bit_fails_its_mic() {
        let key: Key = "2b7e151628aed2a6abf7158809cf4f3c".parse().unwrap();
        let req = JoinRequest {
            join_eui: "70B3D57ED00000DC".parse().unwrap(),
            dev_eui: "00AFEE7CF5ED6F1E".parse().unwrap(),
            dev_nonce: 0xCC85,
        };
        let phy = req.seal(&key);
        // The wire layout of lora-packet's README join-request example
        // (00DC0000D07ED5B370 1E6FEDF57CEEAF00 85CC, its MIC aside: that
        // example's AppKey is not published).
        assert_eq!(
            &phy[..19],
            test_hex("00DC0000D07ED5B3701E6FEDF57CEEAF0085CC").as_slice()
        );
        assert_eq!(JoinRequest::verify(&phy, &key).unwrap(), req);
        let mut bad = phy.clone();
        bad[18] ^= 1;
        assert_eq!(JoinRequest::verify(&bad, &key), Err(JoinError::InvalidMic));
        assert!(matches!(
            JoinRequest::parse(&phy[..22]),
            Err(JoinError::Length { .. })
        ));
    }

    #[test]
    fn type_0_dev_addrs_carry_the_nwk_id() {
        assert_eq!(dev_addr(0x000013, 0x0001), 0x2600_0001);
        assert_eq!(dev_addr(0x000000, 0x1FF_FFFF), 0x01FF_FFFF);
        assert_eq!(dev_addr(0x000013, 0x0200_0001) >> 25, 0x13);
    }
}
