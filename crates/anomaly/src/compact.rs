//! `Vec<f32>` persisted as one base64 string of its little-endian bytes:
//! 5.3 characters a value instead of 9–12 as JSON numbers, and exact. The
//! seasonal profiles (216 values per series) and the device model's ring
//! (up to 4 096 values) are most of the persisted state; written as numbers
//! they broke the 4 KB per series budget.
//!
//! Use with `#[serde(with = "crate::compact")]`.

use serde::{de, Deserialize, Deserializer, Serializer};

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The bytes of a base64 string, or what is wrong with it.
fn decode(text: &str) -> Result<Vec<u8>, String> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = ALPHABET
            .iter()
            .position(|&a| a == c)
            .ok_or_else(|| format!("expected base64, found {:?}", char::from(c)))?;
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

pub fn serialize<S: Serializer>(values: &[f32], s: S) -> Result<S::Ok, S::Error> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    s.serialize_str(&encode(&bytes))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
    let text = String::deserialize(d)?;
    let bytes = decode(&text).map_err(de::Error::custom)?;
    if !bytes.len().is_multiple_of(4) {
        return Err(de::Error::custom(format!(
            "expected a multiple of 4 bytes (f32 values), got {}",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_vectors() {
        // RFC 4648 §10.
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain.as_bytes()), coded);
            assert_eq!(decode(coded), Ok(plain.as_bytes().to_vec()));
        }
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Holder {
        #[serde(with = "super")]
        v: Vec<f32>,
    }

    #[test]
    fn values_round_trip_exactly_and_bad_input_is_an_error() {
        let h = Holder {
            v: vec![0.0, -1.5, f32::MIN_POSITIVE, 3.402_823e38, 1.0 / 3.0],
        };
        let json = serde_json::to_string(&h).unwrap_or_default();
        assert_eq!(serde_json::from_str::<Holder>(&json).ok(), Some(h));
        assert!(serde_json::from_str::<Holder>(r#"{"v":"Zg=="}"#).is_err());
        assert!(serde_json::from_str::<Holder>(r#"{"v":"@@@@"}"#).is_err());
    }
}
