//! Encoders for the binary frames the edge gateway decodes, for sensor
//! nodes written in Rust (RP2040: `thumbv6m-none-eabi`, ESP32-C3:
//! `riscv32imc-unknown-none-elf`).
//!
//! `no_std`, no allocator, no panics on any input: every encoder writes
//! into a fixed array or a caller's buffer and returns an [`EncodeError`]
//! when a value cannot be represented. The formats are the gateway's
//! (`crates/adapters/src/lorawan/codecs/`), and the same encoders exist in
//! MicroPython (`firmware/micropython/lib/wire.py`); the gateway's test
//! `crates/edge-gateway/tests/protocols/firmware_codec.rs` proves the bytes match both
//! ways.
//!
//! Layout:
//! - `seed.rs`: three small fixed-point frames, [`compact_i16`],
//!   [`bitpacked`], [`batch`];
//! - `cayenne.rs`: Cayenne LPP, [`Lpp`] over a caller's buffer;
//! - `bthome.rs`: BTHome v2 service data, [`BtHome`], for BLE nodes.
//!
//! Two rules every encoder shares, so that Rust and Python nodes send the
//! same bytes for the same reading:
//! - a value is scaled to its field's resolution and rounded **half away
//!   from zero** (21.25 °C → 213 in 0.1 °C), as C's `lround` and Rust's
//!   `f64::round` do; truncation (`int(x * 10)`) would turn 21.3 into 212
//!   because 21.3 × 10 = 212.99999999999997 in binary floating point;
//! - a value outside its field's range, or NaN/infinite, is an error,
//!   never clamped or wrapped: a saturated 3276.7 °C is a lie the gateway
//!   cannot tell from a real reading.
#![no_std]

mod bthome;
mod cayenne;
mod seed;

pub use bthome::{BtHome, BtHomeObject};
pub use cayenne::{Lpp, LppType};
pub use seed::{
    batch, bitpacked, compact_i16, Bitpacked, CompactI16, BATCH_HEADER_LEN, BATCH_MAX_READINGS,
    BATCH_READING_LEN,
};

use core::fmt;

/// Why a value or frame could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// NaN or infinite.
    NotFinite {
        /// The field, as the gateway names it (`temperature`).
        field: &'static str,
    },
    /// The scaled value does not fit the field (`humidity` 300 % in a u8).
    OutOfRange {
        /// The field, as the gateway names it.
        field: &'static str,
    },
    /// The output buffer is shorter than the frame.
    BufferTooSmall {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes the buffer has.
        len: usize,
    },
    /// More readings than the frame's count field can announce.
    TooManyReadings {
        /// The most the format allows.
        max: usize,
        /// How many were given.
        found: usize,
    },
    /// A Cayenne LPP type given the wrong number of components.
    WrongValueCount {
        /// The type's name.
        field: &'static str,
        /// Components the type has (3 for an accelerometer).
        expected: usize,
        /// Components given.
        found: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFinite { field } => write!(f, "{field} is not a finite number"),
            Self::OutOfRange { field } => write!(f, "{field} is out of the field's range"),
            Self::BufferTooSmall { needed, len } => {
                write!(f, "frame needs {needed} bytes, buffer has {len}")
            }
            Self::TooManyReadings { max, found } => {
                write!(f, "at most {max} readings per frame, got {found}")
            }
            Self::WrongValueCount {
                field,
                expected,
                found,
            } => write!(f, "{field} takes {expected} values, got {found}"),
        }
    }
}

/// `value × per_unit`, rounded half away from zero, checked against
/// `min..=max`. `core` has no `f64::round` without `std`, hence the cast:
/// `as` truncates toward zero, so ±0.5 first rounds half away from zero.
fn scale(
    value: f64,
    per_unit: f64,
    min: i64,
    max: i64,
    field: &'static str,
) -> Result<i64, EncodeError> {
    if !value.is_finite() {
        return Err(EncodeError::NotFinite { field });
    }
    let x = value * per_unit;
    // Checked in f64 before the cast, which would saturate silently.
    // Bounds are ≤ 2^32 in magnitude, exact in f64.
    let rounded = if x >= 0.0 { x + 0.5 } else { x - 0.5 };
    if rounded >= (max + 1) as f64 || rounded <= (min - 1) as f64 {
        return Err(EncodeError::OutOfRange { field });
    }
    Ok(rounded as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_half_away_from_zero_and_refuses_what_does_not_fit() {
        let s = |v: f64| scale(v, 10.0, -32768, 32767, "t");
        assert_eq!(s(21.3), Ok(213)); // 212.99999999999997 before rounding
        assert_eq!(s(21.25), Ok(213));
        assert_eq!(s(-21.25), Ok(-213));
        assert_eq!(s(-0.04), Ok(0));
        assert_eq!(s(3276.7), Ok(32767));
        assert_eq!(s(-3276.8), Ok(-32768));
        assert_eq!(s(3276.75), Err(EncodeError::OutOfRange { field: "t" }));
        assert_eq!(s(-3276.85), Err(EncodeError::OutOfRange { field: "t" }));
        assert_eq!(s(f64::NAN), Err(EncodeError::NotFinite { field: "t" }));
        assert_eq!(s(f64::INFINITY), Err(EncodeError::NotFinite { field: "t" }));
        let u32_max = i64::from(u32::MAX);
        assert_eq!(scale(4_294_967_295.0, 1.0, 0, u32_max, "u"), Ok(u32_max));
        assert!(scale(4_294_967_295.5, 1.0, 0, u32_max, "u").is_err());
        assert!(scale(-0.5, 1.0, 0, u32_max, "u").is_err());
        assert_eq!(scale(-0.49, 1.0, 0, u32_max, "u"), Ok(0));
    }
}
