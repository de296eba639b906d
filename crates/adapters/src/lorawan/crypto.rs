//! The AES-128 primitives of LoRaWAN 1.0.x (spec §4.3.3, §4.4, §6.2.5):
//! block encrypt/decrypt, the 4-byte AES-CMAC MIC, and the counter-mode
//! FRMPayload cipher of downlinks. The `lorawan` crate verifies uplinks;
//! what a network server *sends* (join-accepts, data downlinks with raw
//! FOpts) is built here, on the same `aes` crate.

use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes128;
use cmac::{Cmac, Mac};

use super::frame::Key;

/// Direction bit of the B0/Ai blocks: 0 uplink, 1 downlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up = 0,
    Down = 1,
}

/// AES-128-ECB encryption of one block.
pub fn encrypt_block(key: &Key, block: [u8; 16]) -> [u8; 16] {
    let cipher = Aes128::new(&key.0.into());
    let mut b = block.into();
    cipher.encrypt_block(&mut b);
    b.into()
}

/// AES-128-ECB decryption of one block: what the network server applies to
/// a join-accept so the device, which only has the encrypt direction, can
/// undo it (spec §6.2.5).
pub fn decrypt_block(key: &Key, block: [u8; 16]) -> [u8; 16] {
    let cipher = Aes128::new(&key.0.into());
    let mut b = block.into();
    cipher.decrypt_block(&mut b);
    b.into()
}

/// The first four bytes of AES-CMAC(key, msg).
pub fn mic(key: &Key, msg: &[u8]) -> [u8; 4] {
    // A 16-byte key always fits Aes128's key size.
    let mut mac = <Cmac<Aes128> as KeyInit>::new(&key.0.into());
    mac.update(msg);
    let tag = mac.finalize().into_bytes();
    [tag[0], tag[1], tag[2], tag[3]]
}

/// MIC of a data frame: CMAC over B0 | msg (spec §4.4).
pub fn data_mic(key: &Key, dir: Direction, dev_addr: u32, fcnt: u32, msg: &[u8]) -> [u8; 4] {
    let mut b0 = [0u8; 16];
    b0[0] = 0x49;
    b0[5] = dir as u8;
    b0[6..10].copy_from_slice(&dev_addr.to_le_bytes());
    b0[10..14].copy_from_slice(&fcnt.to_le_bytes());
    b0[15] = u8::try_from(msg.len()).unwrap_or(u8::MAX);
    let mut all = Vec::with_capacity(16 + msg.len());
    all.extend_from_slice(&b0);
    all.extend_from_slice(msg);
    mic(key, &all)
}

/// FRMPayload encryption (and decryption: it is a XOR with a key stream),
/// spec §4.3.3.
pub fn frm_cipher(key: &Key, dir: Direction, dev_addr: u32, fcnt: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for (i, chunk) in data.chunks(16).enumerate() {
        let mut a = [0u8; 16];
        a[0] = 0x01;
        a[5] = dir as u8;
        a[6..10].copy_from_slice(&dev_addr.to_le_bytes());
        a[10..14].copy_from_slice(&fcnt.to_le_bytes());
        a[15] = u8::try_from(i + 1).unwrap_or(u8::MAX);
        let s = encrypt_block(key, a);
        out.extend(chunk.iter().zip(s).map(|(d, k)| d ^ k));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::lorawan::test_hex;

    #[test]
    fn cmac_matches_rfc4493_example_2() {
        // RFC 4493 §4, Example 2: 16-byte message.
        let key: Key = "2b7e151628aed2a6abf7158809cf4f3c".parse().unwrap();
        let msg = test_hex("6bc1bee22e409f96e93d7e117393172a");
        assert_eq!(mic(&key, &msg), [0x07, 0x0a, 0x16, 0xb4]);
    }

    #[test]
    fn block_decrypt_undoes_encrypt() {
        let key: Key = "000102030405060708090a0b0c0d0e0f".parse().unwrap();
        let block = [7u8; 16];
        assert_eq!(decrypt_block(&key, encrypt_block(&key, block)), block);
    }
}
