//! `Vec<f32>` persisted as one base64 string of its little-endian bytes:
//! 5.3 characters a value instead of 9–12 as JSON numbers, and exact. The
//! seasonal profiles (216 values per series) and the device model's ring
//! (up to 4 096 values) are most of the persisted state; written as numbers
//! they broke the 4 KB per series budget.
//!
//! Use with `#[serde(with = "crate::compact")]`. A struct of `f64`s can
//! persist the same way through [`f64s_to_string`] and [`f64s_from_str`].
//! Fields that were once written as JSON numbers are packed with
//! [`pairs`] and [`f64_array`], which still read the old form, so a state
//! saved before them loads.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{de, Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(values: &[f32], s: S) -> Result<S::Ok, S::Error> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    s.serialize_str(&STANDARD.encode(&bytes))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
    let text = String::deserialize(d)?;
    f32s_from_str(&text).map_err(de::Error::custom)
}

/// `f64` values as one base64 string of their little-endian bytes (10.7
/// characters a value instead of up to 24 as JSON numbers, and exact).
pub fn f64s_to_string(values: &[f64]) -> String {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    STANDARD.encode(&bytes)
}

/// The values [`f64s_to_string`] wrote, however many.
pub fn f64s_from_vec(text: &str) -> Result<Vec<f64>, String> {
    let bytes = STANDARD.decode(text).map_err(|e| e.to_string())?;
    if !bytes.len().is_multiple_of(8) {
        return Err(format!(
            "expected a multiple of 8 bytes (f64 values), got {}",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

/// The `N` values [`f64s_to_string`] wrote.
pub fn f64s_from_str<const N: usize>(text: &str) -> Result<[f64; N], String> {
    let values = f64s_from_vec(text)?;
    let len = values.len();
    values
        .try_into()
        .map_err(|_| format!("expected {} bytes ({N} f64 values), got {}", 8 * N, 8 * len))
}

/// The packed form, or the JSON form a state saved before the packing
/// holds.
#[derive(serde::Deserialize)]
#[serde(untagged)]
pub(crate) enum PackedOr<T> {
    Packed(String),
    Plain(T),
}

fn f32s_from_str(text: &str) -> Result<Vec<f32>, String> {
    let bytes = STANDARD.decode(text).map_err(|e| e.to_string())?;
    if !bytes.len().is_multiple_of(4) {
        return Err(format!(
            "expected a multiple of 4 bytes (f32 values), got {}",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// `Vec<(f32, f32)>` as one base64 string (the range ring's blocks: 714
/// bytes of the detector's 4 KB as JSON pairs, 176 packed). Reads the
/// JSON pairs too. Use with `#[serde(with = "crate::compact::pairs")]`.
pub mod pairs {
    use super::*;

    pub fn serialize<S: Serializer>(values: &[(f32, f32)], s: S) -> Result<S::Ok, S::Error> {
        let flat: Vec<f32> = values.iter().flat_map(|&(a, b)| [a, b]).collect();
        super::serialize(&flat, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(f32, f32)>, D::Error> {
        match PackedOr::<Vec<(f32, f32)>>::deserialize(d)? {
            PackedOr::Plain(v) => Ok(v),
            PackedOr::Packed(text) => {
                let flat = f32s_from_str(&text).map_err(de::Error::custom)?;
                if flat.len() % 2 != 0 {
                    return Err(de::Error::custom("expected pairs of f32 values"));
                }
                Ok(flat.chunks_exact(2).map(|c| (c[0], c[1])).collect())
            }
        }
    }
}

/// `[f64; N]` as one base64 string; reads a JSON array too. Use with
/// `#[serde(with = "crate::compact::f64_array")]`.
pub mod f64_array {
    use super::*;

    pub fn serialize<S: Serializer, const N: usize>(
        values: &[f64; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&f64s_to_string(values))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[f64; N], D::Error> {
        match PackedOr::<Vec<f64>>::deserialize(d)? {
            PackedOr::Packed(text) => f64s_from_str::<N>(&text).map_err(de::Error::custom),
            PackedOr::Plain(v) => {
                let len = v.len();
                v.try_into()
                    .map_err(|_| de::Error::custom(format!("expected {N} values, got {len}")))
            }
        }
    }
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
