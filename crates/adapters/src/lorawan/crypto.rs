//! The AES-128 primitives of LoRaWAN 1.0.x (spec §4.3.3, §4.4, §6.2.5):
//! block encrypt/decrypt, the 4-byte AES-CMAC MIC, and the counter-mode
//! FRMPayload cipher. What a network server *sends* (join-accepts, data
//! downlinks with raw FOpts) is built here, on the same `aes` crate as
//! the `lorawan` crate's; so are the uplinks' MIC and decryption, with
//! [`SessionKeys`] expanded once per session (see there why).

use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes128;
use cmac::{Cmac, Mac};

use super::frame::Key;

/// AES-128 with its key schedule expanded once, and the two CMAC subkeys
/// (RFC 4493 §2.3) derived from it. The `lorawan` crate expands the key
/// anew for every MIC and every decryption (and the CMAC's subkeys with
/// it): about 400 instructions of an uplink's reading's 6 000, for keys
/// that only change when a device joins.
#[derive(Clone)]
pub struct ExpandedKey {
    cipher: Aes128,
    k1: [u8; 16],
    k2: [u8; 16],
}

impl std::fmt::Debug for ExpandedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExpandedKey(<redacted>)")
    }
}

/// RFC 4493 §2.3: the block shifted left by one bit, with R_128 folded in
/// when a bit fell off.
fn cmac_double(block: [u8; 16]) -> [u8; 16] {
    let n = u128::from_be_bytes(block);
    let carry = if n >> 127 == 1 { 0x87 } else { 0 };
    ((n << 1) ^ carry).to_be_bytes()
}

fn xor_into(acc: &mut [u8; 16], other: &[u8]) {
    for (a, b) in acc.iter_mut().zip(other) {
        *a ^= b;
    }
}

impl ExpandedKey {
    pub fn new(key: &Key) -> Self {
        let cipher = Aes128::new(&key.0.into());
        let mut l = [0u8; 16].into();
        cipher.encrypt_block(&mut l);
        let k1 = cmac_double(l.into());
        let k2 = cmac_double(k1);
        Self { cipher, k1, k2 }
    }

    /// AES-128-ECB encryption of one block.
    pub fn encrypt(&self, block: [u8; 16]) -> [u8; 16] {
        let mut b = block.into();
        self.cipher.encrypt_block(&mut b);
        b.into()
    }

    /// AES-CMAC (RFC 4493) of `first | rest`: LoRaWAN's MICs put a
    /// 16-byte block (B0) before the frame, so it is taken apart rather
    /// than copied in front of it.
    pub fn cmac(&self, first: &[u8; 16], rest: &[u8]) -> [u8; 16] {
        let mut x = *first;
        if rest.is_empty() {
            xor_into(&mut x, &self.k1);
            return self.encrypt(x);
        }
        x = self.encrypt(x);
        // The last block, complete or not, is the one the subkey marks.
        let whole = (rest.len() - 1) / 16 * 16;
        for block in rest[..whole].chunks_exact(16) {
            xor_into(&mut x, block);
            x = self.encrypt(x);
        }
        let last = &rest[whole..];
        xor_into(&mut x, last);
        if last.len() == 16 {
            xor_into(&mut x, &self.k1);
        } else {
            x[last.len()] ^= 0x80;
            xor_into(&mut x, &self.k2);
        }
        self.encrypt(x)
    }
}

/// A device session's two keys, expanded: built when the session is (at
/// start for ABP devices, at each join for OTAA ones) and dropped with
/// it, so a new session can never be checked with the old one's schedule.
#[derive(Debug, Clone)]
pub struct SessionKeys {
    pub nwk: ExpandedKey,
    pub app: ExpandedKey,
}

impl SessionKeys {
    pub fn new(nwk_s_key: &Key, app_s_key: &Key) -> Self {
        Self {
            nwk: ExpandedKey::new(nwk_s_key),
            app: ExpandedKey::new(app_s_key),
        }
    }
}

/// The B0 block of a data frame's MIC and the A_i blocks of its
/// FRMPayload cipher (spec §4.3.3, §4.4): they differ in the first byte
/// and the last.
fn helper_block(first: u8, dir: Direction, dev_addr: u32, fcnt: u32, last: u8) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0] = first;
    b[5] = dir as u8;
    b[6..10].copy_from_slice(&dev_addr.to_le_bytes());
    b[10..14].copy_from_slice(&fcnt.to_le_bytes());
    b[15] = last;
    b
}

/// The MIC of a data frame, `msg` being the frame without its MIC
/// (spec §4.4), with an expanded NwkSKey.
pub fn data_mic_with(
    key: &ExpandedKey,
    dir: Direction,
    dev_addr: u32,
    fcnt: u32,
    msg: &[u8],
) -> [u8; 4] {
    // The spec's B0 carries len(msg) in one byte, as the `lorawan` crate
    // writes it (truncated): a frame over 255 bytes is no LoRa frame.
    let b0 = helper_block(0x49, dir, dev_addr, fcnt, msg.len() as u8);
    let tag = key.cmac(&b0, msg);
    [tag[0], tag[1], tag[2], tag[3]]
}

/// XORs `data` in place with the FRMPayload key stream (spec §4.3.3):
/// encryption and decryption alike.
pub fn frm_cipher_in_place(
    key: &ExpandedKey,
    dir: Direction,
    dev_addr: u32,
    fcnt: u32,
    data: &mut [u8],
) {
    for (i, chunk) in data.chunks_mut(16).enumerate() {
        // At most 16 blocks in a LoRa frame; the crate's counter is a u8.
        let s = key.encrypt(helper_block(0x01, dir, dev_addr, fcnt, (i + 1) as u8));
        for (d, k) in chunk.iter_mut().zip(s) {
            *d ^= k;
        }
    }
}

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
    data_mic_with(&ExpandedKey::new(key), dir, dev_addr, fcnt, msg)
}

/// FRMPayload encryption (and decryption: it is a XOR with a key stream),
/// spec §4.3.3.
pub fn frm_cipher(key: &Key, dir: Direction, dev_addr: u32, fcnt: u32, data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    frm_cipher_in_place(&ExpandedKey::new(key), dir, dev_addr, fcnt, &mut out);
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
    fn expanded_cmac_matches_rfc4493_and_the_cmac_crate() {
        let key: Key = "2b7e151628aed2a6abf7158809cf4f3c".parse().unwrap();
        let expanded = ExpandedKey::new(&key);
        let rfc = test_hex(
            "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51\
             30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
        );
        // RFC 4493 §4, examples 2, 3 and 4: 16, 40 and 64 bytes.
        for (len, tag) in [
            (16, "070a16b46b4d4144f79bdd9dd04a287c"),
            (40, "dfa66747de9ae63030ca32611497c827"),
            (64, "51f0bebf7e3b9d92fc49741779363cfe"),
        ] {
            let (first, rest) = rfc[..len].split_at(16);
            let first: [u8; 16] = first.try_into().unwrap();
            assert_eq!(expanded.cmac(&first, rest).to_vec(), test_hex(tag), "{len}");
        }
        // Every length of a LoRa frame's MIC input, random keys and bytes,
        // against RustCrypto's CMAC (subkeys whose top bit is set or not).
        let mut state = 0x5EED_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for len in 16..=16 + 255 {
            let mut key = [0u8; 16];
            key.iter_mut().for_each(|b| *b = next() as u8);
            let msg: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let mut reference = <Cmac<Aes128> as KeyInit>::new(&key.into());
            reference.update(&msg);
            let (first, rest) = msg.split_at(16);
            let tag = ExpandedKey::new(&Key(key)).cmac(&first.try_into().unwrap(), rest);
            assert_eq!(tag[..], reference.finalize().into_bytes()[..], "{len}");
        }
    }

    #[test]
    fn block_decrypt_undoes_encrypt() {
        let key: Key = "000102030405060708090a0b0c0d0e0f".parse().unwrap();
        let block = [7u8; 16];
        assert_eq!(decrypt_block(&key, encrypt_block(&key, block)), block);
    }
}
