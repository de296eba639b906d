//! The `struct` codec: a fixed binary layout declared in `gateway.toml`,
//! for vendor devices without writing code:
//!
//! ```toml
//! fields = [
//!   { name = "co2", type = "u16", endian = "be", scale = 1.0, at_byte = 0 },
//!   { name = "temperature", type = "i16", scale = 0.01 },
//! ]
//! ```
//!
//! `at_byte` is the field's position in the payload, counted in bytes from
//! 0; without it a field starts where the previous one ended. It was called
//! `offset`, which still works, but beside `scale` it read as a value
//! offset: two fields at `offset = 0` passed, then every uplink was refused
//! as the wrong length. So fields may not overlap. `scale` multiplies the
//! raw integer (default 1.0), `endian` is `be` (default) or `le`.
//!
//! The payload must be exactly as long as the layout (or as the device's
//! `frame_bytes`, when bytes after the last field are padding): a longer or
//! shorter frame is another firmware version, and reading it with this
//! layout would shift values silently. A layout that cannot fit in a
//! LoRaWAN frame, or in the declared `frame_bytes`, is refused.

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
    /// Byte position in the payload, from 0; default: right after the
    /// previous field. `offset` is its old name.
    #[serde(default, alias = "offset")]
    pub at_byte: Option<usize>,
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
    #[error("field {index}: ends at byte {end}, past the {MAX_PAYLOAD} bytes of the largest LoRaWAN payload")]
    TooLong { index: usize, end: usize },
    #[error("field {index} ({name}): bytes {start}..{end} overlap field {other} ({other_name}); at_byte is the field's byte position in the payload, not a value added to it")]
    Overlap {
        index: usize,
        name: String,
        start: usize,
        end: usize,
        other: usize,
        other_name: String,
    },
    #[error("the fields take {layout} bytes, more than frame_bytes = {frame}")]
    LongerThanFrame { layout: usize, frame: usize },
    #[error("frame_bytes = {0}: expected 1 to {MAX_PAYLOAD}")]
    BadFrame(usize),
}

/// Largest FRMPayload a layout can describe: 242 bytes (the largest
/// MACPayload of any region's fastest data rate, 250, less the 8 bytes of
/// a frame header without options), so for any region.
const MAX_PAYLOAD: usize = 242;

/// A validated layout: field positions resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct StructLayout {
    fields: Vec<(usize, FieldSpec)>,
    len: usize,
}

impl StructLayout {
    /// Resolves positions and checks the fields; the payload is as long as
    /// the fields reach.
    ///
    /// # Errors
    /// The first [`LayoutError`]; config validation reports it with the
    /// device's path.
    pub fn new(specs: Vec<FieldSpec>) -> Result<Self, LayoutError> {
        Self::with_frame(specs, None)
    }

    /// Like [`StructLayout::new`], for a device whose payload is
    /// `frame_bytes` long (bytes after the last field are padding).
    ///
    /// # Errors
    /// The first [`LayoutError`], and a layout longer than the frame.
    pub fn with_frame(
        specs: Vec<FieldSpec>,
        frame_bytes: Option<usize>,
    ) -> Result<Self, LayoutError> {
        if let Some(frame) = frame_bytes.filter(|f| !(1..=MAX_PAYLOAD).contains(f)) {
            return Err(LayoutError::BadFrame(frame));
        }
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
            let at = spec.at_byte.unwrap_or(next);
            let end = at.saturating_add(spec.ty.size());
            if end > MAX_PAYLOAD {
                return Err(LayoutError::TooLong { index, end });
            }
            let overlapped = fields.iter().enumerate().find(|(_, (start, other))| {
                let other: &FieldSpec = other;
                at < start + other.ty.size() && *start < end
            });
            if let Some((other, (_, other_spec))) = overlapped {
                return Err(LayoutError::Overlap {
                    index,
                    name: spec.name,
                    start: at,
                    end,
                    other,
                    other_name: other_spec.name.clone(),
                });
            }
            next = end;
            len = len.max(end);
            fields.push((at, spec));
        }
        if let Some(frame) = frame_bytes {
            if len > frame {
                return Err(LayoutError::LongerThanFrame { layout: len, frame });
            }
            len = frame;
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
        DecodedValue::new(metric.to_string(), value)
    }

    #[test]
    fn the_issue_example_and_defaults() {
        let l = layout(
            r#"fields = [
                { name = "co2", type = "u16", endian = "be", scale = 1.0, at_byte = 0 },
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
    fn a_frame_longer_than_the_fields_is_padding_and_a_shorter_one_is_refused() {
        #[derive(Deserialize)]
        struct Doc {
            fields: Vec<FieldSpec>,
        }
        let fields = || {
            toml::from_str::<Doc>(
                r#"fields = [{ name = "co2", type = "u16" }, { name = "t", type = "i16", scale = 0.1 }]"#,
            )
            .unwrap()
            .fields
        };
        let l = StructLayout::with_frame(fields(), Some(6)).unwrap();
        assert_eq!(l.len(), 6);
        assert_eq!(
            l.decode(&[0x01, 0x90, 0x00, 0xD2, 0xEE, 0xEE]),
            Ok(vec![v("co2", 400.0), v("t", 21.0)])
        );
        assert_eq!(
            StructLayout::with_frame(fields(), Some(3)),
            Err(LayoutError::LongerThanFrame {
                layout: 4,
                frame: 3
            })
        );
        assert_eq!(
            StructLayout::with_frame(fields(), Some(0)),
            Err(LayoutError::BadFrame(0))
        );
        // Adjacent fields do not overlap; gaps are allowed.
        assert!(layout(
            r#"fields = [{ name = "a", type = "u16", at_byte = 2 }, { name = "b", type = "u16", at_byte = 0 }, { name = "c", type = "u8", at_byte = 5 }]"#
        )
        .is_ok());
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
        let rows: [(&str, LayoutError); 6] = [
            ("fields = []", LayoutError::NoFields),
            (
                // `offset` read as a value offset: both fields at byte 0.
                r#"fields = [{ name = "co2", type = "u16", offset = 0 }, { name = "temperature", type = "i16", offset = 0 }]"#,
                LayoutError::Overlap {
                    index: 1,
                    name: "temperature".into(),
                    start: 0,
                    end: 2,
                    other: 0,
                    other_name: "co2".into(),
                },
            ),
            (
                r#"fields = [{ name = "a", type = "u32" }, { name = "b", type = "u8", at_byte = 3 }]"#,
                LayoutError::Overlap {
                    index: 1,
                    name: "b".into(),
                    start: 3,
                    end: 4,
                    other: 0,
                    other_name: "a".into(),
                },
            ),
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
                r#"fields = [{ name = "a", type = "u16", at_byte = 241 }]"#,
                LayoutError::TooLong { index: 0, end: 243 },
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
