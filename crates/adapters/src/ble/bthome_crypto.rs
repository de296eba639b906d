//! BTHome v2 encryption: AES-128-CCM with a per-device bindkey.
//!
//! bthome.io encryption page: the payload after the device-info byte is
//! `ciphertext | counter (4 bytes LE) | MIC (4 bytes)`; the nonce is
//! `MAC (6, as printed) | UUID d2fc | device-info byte | counter (4, LE)`,
//! 13 bytes; the tag is 4 bytes and there is no associated data (v1 used
//! `0x11`: beware bthome-ble's `tests/test_v2_encryption.py`, whose expected
//! MIC is the v1 result, CRATES.md). A tag that does not verify yields no
//! plaintext at all, so a wrong key can never produce values.

use std::fmt;
use std::str::FromStr;

use aes::Aes128;
use ccm::aead::generic_array::GenericArray;
use ccm::aead::{AeadInPlace, KeyInit};
use ccm::consts::{U13, U4};
use ccm::Ccm;

use super::advert::{parse_hex, Mac};
use super::error::DecodeError;

/// AES-128, 4-byte tag, 13-byte nonce (2-byte length field).
type BthomeCcm = Ccm<Aes128, U4, U13>;

/// Counter (4) and MIC (4) after the ciphertext.
pub const TRAILER_LEN: usize = 8;

/// A device's 16-byte bindkey. Never printed: `Debug` and `Display` show
/// only that a key is there (issue #14: keys are never logged).
#[derive(Clone, PartialEq, Eq)]
pub struct BindKey(pub [u8; 16]);

/// Why a bindkey string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a BTHome bindkey is 32 hex digits (16 bytes), got {len} characters{what}")]
pub struct BindKeyError {
    len: usize,
    what: &'static str,
}

impl FromStr for BindKey {
    type Err = BindKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |what| BindKeyError { len: s.len(), what };
        let bytes = parse_hex(s).ok_or(err(" that are not all hex"))?;
        let key: [u8; 16] = bytes.try_into().map_err(|_| err(""))?;
        Ok(Self(key))
    }
}

impl fmt::Debug for BindKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BindKey(<redacted>)")
    }
}

/// The 13-byte CCM nonce of one frame.
pub fn nonce(mac: Mac, info: u8, counter: u32) -> [u8; 13] {
    let mut n = [0u8; 13];
    n[..6].copy_from_slice(&mac.0);
    // The UUID as it is on air (little-endian 0xFCD2).
    n[6..8].copy_from_slice(&[0xD2, 0xFC]);
    n[8] = info;
    n[9..].copy_from_slice(&counter.to_le_bytes());
    n
}

/// Decrypts `body` (`ciphertext | counter | MIC`) of a frame from `mac`
/// whose device-info byte is `info`. Returns the plaintext objects and the
/// counter.
///
/// # Errors
/// [`DecodeError::EncryptedTooShort`] when there is no room for counter and
/// MIC; [`DecodeError::Decryption`] when the tag does not verify.
pub fn open(key: &BindKey, mac: Mac, info: u8, body: &[u8]) -> Result<(Vec<u8>, u32), DecodeError> {
    let Some(split) = body.len().checked_sub(TRAILER_LEN) else {
        return Err(DecodeError::EncryptedTooShort { found: body.len() });
    };
    let (ciphertext, trailer) = body.split_at(split);
    let (counter_bytes, mic) = trailer.split_at(4);
    let mut counter = [0u8; 4];
    counter.copy_from_slice(counter_bytes);
    let counter = u32::from_le_bytes(counter);
    let cipher = BthomeCcm::new(GenericArray::from_slice(&key.0));
    let nonce = nonce(mac, info, counter);
    let mut plain = ciphertext.to_vec();
    cipher
        .decrypt_in_place_detached(
            GenericArray::from_slice(&nonce),
            &[],
            &mut plain,
            GenericArray::from_slice(mic),
        )
        .map_err(|_| DecodeError::Decryption)?;
    Ok((plain, counter))
}

/// Encrypts `objects` as a device would: the whole service data
/// (`info | [MAC reversed] | ciphertext | counter | MIC`), for tests,
/// benches and simulators. `info` must have the encryption bit set; when it
/// has the legacy MAC-in-payload bit, the MAC is written after it.
pub fn seal(key: &BindKey, mac: Mac, info: u8, counter: u32, objects: &[u8]) -> Vec<u8> {
    let cipher = BthomeCcm::new(GenericArray::from_slice(&key.0));
    let nonce = nonce(mac, info, counter);
    let mut out = vec![info];
    if info & super::bthome::INFO_MAC_INCLUDED != 0 {
        out.extend(mac.0.iter().rev());
    }
    let start = out.len();
    out.extend_from_slice(objects);
    let tag = cipher
        .encrypt_in_place_detached(GenericArray::from_slice(&nonce), &[], &mut out[start..])
        // CCM with a 2-byte length field takes up to 65 535 bytes; a BLE
        // payload is at most 255, so this cannot fail for a real frame.
        .unwrap_or_default();
    out.extend_from_slice(&counter.to_le_bytes());
    out.extend_from_slice(&tag);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ble::advert::parse_hex;

    fn key(s: &str) -> BindKey {
        s.parse().unwrap()
    }

    const MAC: Mac = Mac([0x54, 0x48, 0xE6, 0x8F, 0x80, 0xA5]);
    const KEY: &str = "231d39c1d7cc1ab1aee224cd096db932";

    #[test]
    fn the_bthome_io_example_decrypts() {
        // bthome.io encryption page: 41 | e445f3c9962b | 33221100 | 6c7c4519.
        assert_eq!(
            nonce(MAC, 0x41, 0x0011_2233),
            parse_hex("5448e68f80a5d2fc4133221100").unwrap()[..]
        );
        let body = parse_hex("e445f3c9962b332211006c7c4519").unwrap();
        let (plain, counter) = open(&key(KEY), MAC, 0x41, &body).unwrap();
        assert_eq!(plain, parse_hex("02ca0903bf13").unwrap());
        assert_eq!(counter, 1_122_867);
    }

    #[test]
    fn seal_is_the_inverse_of_open_and_matches_the_published_bytes() {
        let sealed = seal(
            &key(KEY),
            MAC,
            0x41,
            1_122_867,
            &parse_hex("02ca0903bf13").unwrap(),
        );
        assert_eq!(sealed, parse_hex("41e445f3c9962b332211006c7c4519").unwrap());
    }

    #[test]
    fn a_flipped_bit_or_a_wrong_key_gives_no_plaintext() {
        let mut body = parse_hex("e445f3c9962b332211006c7c4519").unwrap();
        let wrong = key("814aac74c4f17b6c1581e1ab87816b99");
        assert_eq!(open(&wrong, MAC, 0x41, &body), Err(DecodeError::Decryption));
        // The nonce binds the MAC and the info byte too.
        let other = Mac([0x54, 0x48, 0xE6, 0x8F, 0x80, 0xA6]);
        assert_eq!(
            open(&key(KEY), other, 0x41, &body),
            Err(DecodeError::Decryption)
        );
        assert_eq!(
            open(&key(KEY), MAC, 0x45, &body),
            Err(DecodeError::Decryption)
        );
        body[0] ^= 1;
        assert_eq!(
            open(&key(KEY), MAC, 0x41, &body),
            Err(DecodeError::Decryption)
        );
    }

    #[test]
    fn too_short_for_counter_and_mic() {
        assert_eq!(
            open(&key(KEY), MAC, 0x41, &[0; 7]),
            Err(DecodeError::EncryptedTooShort { found: 7 })
        );
    }

    #[test]
    fn bindkeys_parse_and_never_print() {
        let k = key(KEY);
        assert_eq!(k.0[0], 0x23);
        assert_eq!(format!("{k:?}"), "BindKey(<redacted>)");
        assert!("231d".parse::<BindKey>().is_err());
        assert!(format!("{KEY}zz").parse::<BindKey>().is_err());
        assert!("x".repeat(32).parse::<BindKey>().is_err());
    }
}
