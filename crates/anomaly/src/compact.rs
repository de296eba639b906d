//! `Vec<f32>` persisted as one base64 string of its little-endian bytes:
//! 5.3 characters a value instead of 9–12 as JSON numbers, and exact. The
//! seasonal profiles (216 values per series) and the device model's ring
//! (up to 4 096 values) are most of the persisted state; written as numbers
//! they broke the 4 KB per series budget.
//!
//! Use with `#[serde(with = "crate::compact")]`. A struct of `f64`s can
//! persist the same way through [`f64s_to_string`] and [`f64s_from_str`].

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{de, Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(values: &[f32], s: S) -> Result<S::Ok, S::Error> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    s.serialize_str(&STANDARD.encode(&bytes))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
    let text = String::deserialize(d)?;
    let bytes = STANDARD.decode(&text).map_err(de::Error::custom)?;
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

/// `f64` values as one base64 string of their little-endian bytes (10.7
/// characters a value instead of up to 24 as JSON numbers, and exact).
pub fn f64s_to_string(values: &[f64]) -> String {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    STANDARD.encode(&bytes)
}

/// The `N` values [`f64s_to_string`] wrote.
pub fn f64s_from_str<const N: usize>(text: &str) -> Result<[f64; N], String> {
    let bytes = STANDARD.decode(text).map_err(|e| e.to_string())?;
    if bytes.len() != 8 * N {
        return Err(format!(
            "expected {} bytes ({N} f64 values), got {}",
            8 * N,
            bytes.len()
        ));
    }
    let mut values = [0.0; N];
    for (v, c) in values.iter_mut().zip(bytes.chunks_exact(8)) {
        *v = f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {

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

    #[test]
    fn f64s_round_trip_exactly_and_a_wrong_count_is_an_error() {
        let v = [0.0, -1.5, f64::MIN_POSITIVE, 1.0 / 3.0];
        let text = super::f64s_to_string(&v);
        assert_eq!(super::f64s_from_str::<4>(&text), Ok(v));
        assert!(super::f64s_from_str::<3>(&text).is_err());
        assert!(super::f64s_from_str::<4>("@@@@").is_err());
    }
}
