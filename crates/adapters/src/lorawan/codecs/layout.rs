//! The `struct` codec: a fixed binary layout declared in `gateway.toml`,
//! for vendor devices without writing code:
//!
//! ```toml
//! fields = [
//!   { name = "co2", type = "u16", endian = "be", scale = 1.0, offset = 0 },
//!   { name = "temperature", type = "i16", scale = 0.01 },
//! ]
//! ```
//!
//! `offset` is the field's byte position in the payload; without it a
//! field starts where the previous one ended. `scale` multiplies the raw
//! integer (default 1.0), `endian` is `be` (default) or `le`. The payload
//! must be exactly as long as the layout: a longer or shorter frame is
//! another firmware version, and reading it with this layout would shift
//! values silently.

use std::collections::HashSet;

use gateway_core::MetricName;
use serde::Deserialize;

use super::{CodecError, DecodedValue};

/// Wire type of one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    U8,
    I8,
    U16,
    I16,
    U24,
    I24,
    U32,
    I32,
    /// IEEE 754 single precision; NaN and infinities are refused.
    F32,
}

impl FieldType {
    /// Size on the wire, bytes.
    pub fn size(self) -> usize {
        match self {
            Self::U8 | Self::I8 => 1,
            Self::U16 | Self::I16 => 2,
            Self::U24 | Self::I24 => 3,
            Self::U32 | Self::I32 | Self::F32 => 4,
        }
    }
}

/// Byte order of a multi-byte field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endian {
    #[default]
    Be,
    Le,
}

fn one() -> f64 {
    1.0
}

/// One entry of `fields`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// Metric name of the value.
    pub name: String,
    #[serde(rename = "type")]
    pub ty: FieldType,
    #[serde(default)]
    pub endian: Endian,
    /// Value = raw × scale.
    #[serde(default = "one")]
    pub scale: f64,
    /// Byte position; default: right after the previous field.
    pub offset: Option<usize>,
}

/// A layout that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("expected at least one field")]
    NoFields,
    #[error("field {index}: {reason}")]
    BadName { index: usize, reason: String },
    #[error("field {index}: name {name:?} is used twice")]
    DuplicateName { index: usize, name: String },
    #[error("field {index}: expected a finite, non-zero scale")]
    BadScale { index: usize },
    #[error("field {index}: ends past byte 255, the largest LoRaWAN payload")]
    TooLong { index: usize },
}

/// Largest FRMPayload a layout can describe. 255 bytes (a PHYPayload's
/// upper bound, so an upper bound for any region).
const MAX_PAYLOAD: usize = 255;

/// A validated layout: field positions resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct StructLayout {
    fields: Vec<(usize, FieldSpec)>,
    len: usize,
}

impl StructLayout {
    /// Resolves offsets and checks the fields.
    ///
    /// # Errors
    /// The first [`LayoutError`]; config validation reports it with the
    /// device's path.
    pub fn new(specs: Vec<FieldSpec>) -> Result<Self, LayoutError> {
        if specs.is_empty() {
            return Err(LayoutError::NoFields);
        }
        let mut names = HashSet::new();
        let mut fields = Vec::with_capacity(specs.len());
        let (mut next, mut len) = (0usize, 0usize);
        for (index, spec) in specs.into_iter().enumerate() {
            // The same rules as every other metric name, so a reading built
            // from this field cannot be refused downstream.
            if let Err(e) = MetricName::new(spec.name.as_str()) {
                return Err(LayoutError::BadName {
                    index,
                    reason: e.to_string(),
                });
            }
            if !names.insert(spec.name.clone()) {
                return Err(LayoutError::DuplicateName {
                    index,
                    name: spec.name,
                });
            }
            if !spec.scale.is_finite() || spec.scale == 0.0 {
                return Err(LayoutError::BadScale { index });
            }
            let at = spec.offset.unwrap_or(next);
            next = at
                .checked_add(spec.ty.size())
                .filter(|end| *end <= MAX_PAYLOAD)
                .ok_or(LayoutError::TooLong { index })?;
            len = len.max(next);
            fields.push((at, spec));
        }
        Ok(Self { fields, len })
    }

    /// The payload length this layout reads, bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: [`StructLayout::new`] refuses an empty layout.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Decodes one payload.
    ///
    /// # Errors
    /// [`CodecError::Length`] when the payload is not exactly
    /// [`StructLayout::len`] bytes; [`CodecError::NotFinite`] for a NaN or
    /// infinite `f32`.
    pub fn decode(&self, bytes: &[u8]) -> Result<Vec<DecodedValue>, CodecError> {
        if bytes.len() != self.len {
            return Err(CodecError::Length {
                expected: self.len,
                found: bytes.len(),
            });
        }
        self.fields
            .iter()
            .map(|(at, spec)| {
                let raw = bytes
                    .get(*at..*at + spec.ty.size())
                    .ok_or(CodecError::Length {
                        expected: self.len,
                        found: bytes.len(),
                    })?;
                let value = read(raw, spec.ty, spec.endian) * spec.scale;
                if !value.is_finite() {
                    return Err(CodecError::NotFinite {
                        field: spec.name.clone(),
                    });
                }
                Ok(DecodedValue::new(spec.name.clone(), value))
            })
            .collect()
    }
}

/// `raw` (exactly `ty.size()` bytes) as a number.
fn read(raw: &[u8], ty: FieldType, endian: Endian) -> f64 {
    let mut be = [0u8; 4];
    let start = 4 - raw.len();
    be[start..].copy_from_slice(raw);
    if endian == Endian::Le {
        be[start..].reverse();
    }
    let unsigned = u32::from_be_bytes(be);
    let bits = 8 * raw.len() as u32;
    match ty {
        FieldType::F32 => f64::from(f32::from_bits(unsigned)),
        FieldType::I8 | FieldType::I16 | FieldType::I24 | FieldType::I32 => {
            // Shift the sign bit to bit 31, then back with sign extension.
            f64::from((unsigned << (32 - bits)) as i32 >> (32 - bits))
        }
        _ => f64::from(unsigned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(toml_text: &str) -> Result<StructLayout, LayoutError> {
        #[derive(Deserialize)]
        struct Doc {
            fields: Vec<FieldSpec>,
        }
        StructLayout::new(toml::from_str::<Doc>(toml_text).unwrap().fields)
    }

    fn v(metric: &str, value: f64) -> DecodedValue {
        DecodedValue::new(metric, value)
    }

    #[test]
    fn the_issue_example_and_defaults() {
        let l = layout(
            r#"fields = [
                { name = "co2", type = "u16", endian = "be", scale = 1.0, offset = 0 },
                { name = "temperature", type = "i16", scale = 0.01 },
                { name = "pressure", type = "u24", endian = "le", scale = 0.01 },
                { name = "flag", type = "u8", offset = 8 },
            ]"#,
        )
        .unwrap();
        assert_eq!(l.len(), 9);
        let bytes = [
            0x01, 0x90, // co2 400 ppm
            0xF8, 0x30, // temperature −2000 × 0.01 = −20.0
            0x34, 0x8A, 0x01, // pressure 0x018A34 = 100916 × 0.01 (LE)
            0xEE, // padding, not in the layout
            0x01, // flag at offset 8
        ];
        assert_eq!(
            l.decode(&bytes),
            Ok(vec![
                v("co2", 400.0),
                v("temperature", -20.0),
                v("pressure", 1009.16),
                v("flag", 1.0),
            ])
        );
        assert_eq!(
            l.decode(&bytes[..8]),
            Err(CodecError::Length {
                expected: 9,
                found: 8
            })
        );
        assert_eq!(
            l.decode(&[0; 10]),
            Err(CodecError::Length {
                expected: 9,
                found: 10
            })
        );
    }

    #[test]
    fn every_type_signed_and_unsigned_both_endians() {
        let rows: [(FieldType, Endian, &[u8], f64); 12] = [
            (FieldType::U8, Endian::Be, &[0xFF], 255.0),
            (FieldType::I8, Endian::Be, &[0xFF], -1.0),
            (FieldType::U16, Endian::Le, &[0x34, 0x12], 4660.0),
            (FieldType::I16, Endian::Be, &[0x80, 0x00], -32768.0),
            (FieldType::I16, Endian::Le, &[0x00, 0x80], -32768.0),
            (
                FieldType::U24,
                Endian::Be,
                &[0xFF, 0xFF, 0xFF],
                16_777_215.0,
            ),
            (FieldType::I24, Endian::Be, &[0xFF, 0xFF, 0xFE], -2.0),
            (FieldType::I24, Endian::Le, &[0xFE, 0xFF, 0xFF], -2.0),
            (
                FieldType::U32,
                Endian::Be,
                &[0xFF, 0xFF, 0xFF, 0xFF],
                4_294_967_295.0,
            ),
            (
                FieldType::I32,
                Endian::Le,
                &[0xFF, 0xFF, 0xFF, 0x7F],
                2_147_483_647.0,
            ),
            (FieldType::F32, Endian::Be, &[0x41, 0xAC, 0x00, 0x00], 21.5),
            (FieldType::F32, Endian::Le, &[0x00, 0x00, 0xAC, 0x41], 21.5),
        ];
        for (ty, endian, bytes, want) in rows {
            assert_eq!(
                read(bytes, ty, endian),
                want,
                "{ty:?} {endian:?} {bytes:02x?}"
            );
        }
    }

    #[test]
    fn nan_is_an_error_not_a_value() {
        let l = layout(r#"fields = [{ name = "t", type = "f32" }]"#).unwrap();
        assert_eq!(
            l.decode(&[0x7F, 0xC0, 0x00, 0x00]),
            Err(CodecError::NotFinite { field: "t".into() })
        );
    }

    #[test]
    fn bad_layouts() {
        for name in ["", "a/b", "#"] {
            let text = format!(r#"fields = [{{ name = "{name}", type = "u8" }}]"#);
            assert!(
                matches!(layout(&text), Err(LayoutError::BadName { index: 0, .. })),
                "{name:?}"
            );
        }
        let rows: [(&str, LayoutError); 4] = [
            ("fields = []", LayoutError::NoFields),
            (
                r#"fields = [{ name = "a", type = "u8" }, { name = "a", type = "u8" }]"#,
                LayoutError::DuplicateName {
                    index: 1,
                    name: "a".into(),
                },
            ),
            (
                r#"fields = [{ name = "a", type = "u8", scale = 0.0 }]"#,
                LayoutError::BadScale { index: 0 },
            ),
            (
                r#"fields = [{ name = "a", type = "u16", offset = 254 }]"#,
                LayoutError::TooLong { index: 0 },
            ),
        ];
        for (text, want) in rows {
            assert_eq!(layout(text), Err(want), "{text}");
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)] // only the parse result matters
        struct Doc {
            fields: Vec<FieldSpec>,
        }
        for text in [
            r#"fields = [{ name = "a", type = "u64" }]"#,
            r#"fields = [{ name = "a", type = "u8", endian = "middle" }]"#,
            r#"fields = [{ name = "a", type = "u8", unit = "C" }]"#,
        ] {
            assert!(toml::from_str::<Doc>(text).is_err(), "{text}");
        }
    }
}
