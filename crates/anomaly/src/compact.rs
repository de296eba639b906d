//! `Vec<f32>` persisted as one base64 string of its little-endian bytes:
//! 5.3 characters a value instead of 9–12 as JSON numbers, and exact. The
//! seasonal profiles (216 values per series) and the device model's ring
//! (up to 4 096 values) are most of the persisted state; written as numbers
//! they broke the 4 KB per series budget.
//!
//! Use with `#[serde(with = "crate::compact")]`.

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
}
