//! The seed course's three frames, big-endian (Python `struct` `>`), as
//! the gateway's `compact_i16`, `bitpacked` and `batch` codecs
//! read them.

use crate::{scale, EncodeError};

/// `compact_i16`: temperature (i16, 0.1 °C), humidity (u8, 1 %), battery
/// (u16, 0.01 V). 5 bytes, `>hBH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactI16 {
    /// Temperature in 0.1 °C.
    pub temperature_decidegrees: i16,
    /// Relative humidity in %.
    pub humidity_pct: u8,
    /// Battery voltage in 0.01 V.
    pub battery_centivolts: u16,
}

impl CompactI16 {
    /// Frame length. 5 bytes.
    pub const LEN: usize = 5;

    /// From measured values (°C, %, V), rounded to the frame's resolution.
    ///
    /// # Errors
    /// [`EncodeError::NotFinite`] or [`EncodeError::OutOfRange`] naming the
    /// field (−3276.8..=3276.7 °C, 0..=255 %, 0..=655.35 V).
    pub fn new(temperature_c: f64, humidity_pct: f64, battery_v: f64) -> Result<Self, EncodeError> {
        Ok(Self {
            temperature_decidegrees: scale(temperature_c, 10.0, -32768, 32767, "temperature")?
                as i16,
            humidity_pct: scale(humidity_pct, 1.0, 0, 255, "humidity")? as u8,
            battery_centivolts: scale(battery_v, 100.0, 0, 65535, "battery")? as u16,
        })
    }

    /// The 5 bytes on the wire.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let [t0, t1] = self.temperature_decidegrees.to_be_bytes();
        let [b0, b1] = self.battery_centivolts.to_be_bytes();
        [t0, t1, self.humidity_pct, b0, b1]
    }
}

/// `compact_i16` of measured values: `compact_i16(21.5, 40.0, 3.3)` is
/// `00 D7 28 01 4A`.
///
/// ```
/// assert_eq!(firmware_codec::compact_i16(21.5, 40.0, 3.3), Ok([0x00, 0xD7, 0x28, 0x01, 0x4A]));
/// ```
///
/// # Errors
/// As [`CompactI16::new`].
pub fn compact_i16(
    temperature_c: f64,
    humidity_pct: f64,
    battery_v: f64,
) -> Result<[u8; CompactI16::LEN], EncodeError> {
    Ok(CompactI16::new(temperature_c, humidity_pct, battery_v)?.encode())
}

/// `bitpacked`: temperature in 0.5 °C steps from −20 °C (8 bits),
/// humidity % (7 bits), battery % (7 bits), 2 padding bits. 3 bytes:
/// byte0 = (t + 20) × 2; byte1 = humidity << 1 | battery bit 6; byte2 =
/// battery bits 0–5 << 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bitpacked {
    /// (temperature + 20 °C) × 2, 0..=255 (−20..=107.5 °C).
    pub temperature_raw: u8,
    /// Relative humidity in %, 0..=127.
    pub humidity_pct: u8,
    /// Battery charge in %, 0..=127.
    pub battery_pct: u8,
}

impl Bitpacked {
    /// Frame length. 3 bytes.
    pub const LEN: usize = 3;
    /// Largest value of the 7-bit fields.
    const SEVEN_BITS: i64 = 0x7F;

    /// From measured values (°C, %, %), rounded to the frame's resolution.
    ///
    /// # Errors
    /// [`EncodeError::NotFinite`] or [`EncodeError::OutOfRange`] naming the
    /// field (−20..=107.5 °C, humidity and battery 0..=127).
    pub fn new(
        temperature_c: f64,
        humidity_pct: f64,
        battery_pct: f64,
    ) -> Result<Self, EncodeError> {
        if !temperature_c.is_finite() {
            return Err(EncodeError::NotFinite {
                field: "temperature",
            });
        }
        Ok(Self {
            temperature_raw: scale(temperature_c + 20.0, 2.0, 0, 255, "temperature")? as u8,
            humidity_pct: scale(humidity_pct, 1.0, 0, Self::SEVEN_BITS, "humidity")? as u8,
            battery_pct: scale(battery_pct, 1.0, 0, Self::SEVEN_BITS, "battery")? as u8,
        })
    }

    /// The 3 bytes on the wire. Fields above 7 bits are masked: `new`
    /// never produces them, and a hand-built value must not spill into
    /// its neighbour.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let h = self.humidity_pct & 0x7F;
        let b = self.battery_pct & 0x7F;
        [self.temperature_raw, h << 1 | b >> 6, (b & 0x3F) << 2]
    }
}

/// `bitpacked` of measured values.
///
/// ```
/// assert_eq!(firmware_codec::bitpacked(21.5, 40.0, 85.0), Ok([0x53, 0x51, 0x54]));
/// ```
///
/// # Errors
/// As [`Bitpacked::new`].
pub fn bitpacked(
    temperature_c: f64,
    humidity_pct: f64,
    battery_pct: f64,
) -> Result<[u8; Bitpacked::LEN], EncodeError> {
    Ok(Bitpacked::new(temperature_c, humidity_pct, battery_pct)?.encode())
}

/// `batch` header: count (u8) + base time (u32, epoch s). 5 bytes.
pub const BATCH_HEADER_LEN: usize = 5;
/// `batch` reading: delta (u16, s) + value ×10 (i32). 6 bytes.
pub const BATCH_READING_LEN: usize = 6;
/// The count is one byte.
pub const BATCH_MAX_READINGS: usize = 255;

/// `batch`: `readings` as `(seconds after base_ts, value)`, each read
/// by the gateway as metric `value` at `base_ts + delta`. Writes
/// `5 + 6 × n` bytes to the start of `out` and returns that length.
///
/// ```
/// let mut buf = [0u8; 17];
/// let n = firmware_codec::batch(1_795_146_752, &[(0, 21.5), (60, -1.0)], &mut buf);
/// assert_eq!(n, Ok(17));
/// assert_eq!(buf[..5], [0x02, 0x6A, 0xFF, 0xC4, 0x00]);
/// ```
///
/// # Errors
/// [`EncodeError::TooManyReadings`] above 255, [`EncodeError::BufferTooSmall`],
/// or a value error for `value` (0.1 resolution, i32 range).
pub fn batch(base_ts: u32, readings: &[(u16, f64)], out: &mut [u8]) -> Result<usize, EncodeError> {
    if readings.len() > BATCH_MAX_READINGS {
        return Err(EncodeError::TooManyReadings {
            max: BATCH_MAX_READINGS,
            found: readings.len(),
        });
    }
    let needed = BATCH_HEADER_LEN + readings.len() * BATCH_READING_LEN;
    let len = out.len();
    let frame = out
        .get_mut(..needed)
        .ok_or(EncodeError::BufferTooSmall { needed, len })?;
    let (header, body) = frame.split_at_mut(BATCH_HEADER_LEN);
    // The length check above guarantees the cast: at most 255 readings.
    header[0] = readings.len() as u8;
    header[1..].copy_from_slice(&base_ts.to_be_bytes());
    for ((delta, value), slot) in readings
        .iter()
        .zip(body.chunks_exact_mut(BATCH_READING_LEN))
    {
        let raw = scale(
            *value,
            10.0,
            i64::from(i32::MIN),
            i64::from(i32::MAX),
            "value",
        )? as i32;
        slot[..2].copy_from_slice(&delta.to_be_bytes());
        slot[2..].copy_from_slice(&raw.to_be_bytes());
    }
    Ok(needed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_frames() {
        assert_eq!(
            compact_i16(21.5, 40.0, 3.3),
            Ok([
                0x00, 0xD7, // 215 → 21.5 °C
                0x28, // 40 %
                0x01, 0x4A, // 330 → 3.30 V
            ])
        );
        assert_eq!(
            compact_i16(-10.0, 255.0, 655.35),
            Ok([0xFF, 0x9C, 0xFF, 0xFF, 0xFF])
        );
        assert_eq!(
            compact_i16(21.5, 256.0, 3.3),
            Err(EncodeError::OutOfRange { field: "humidity" })
        );
        assert_eq!(
            compact_i16(21.5, 40.0, -0.01),
            Err(EncodeError::OutOfRange { field: "battery" })
        );
        assert_eq!(
            compact_i16(f64::NAN, 40.0, 3.3),
            Err(EncodeError::NotFinite {
                field: "temperature"
            })
        );
    }

    #[test]
    fn bitpacked_frames() {
        assert_eq!(bitpacked(21.5, 40.0, 85.0), Ok([0x53, 0x51, 0x54]));
        assert_eq!(bitpacked(-20.0, 127.0, 127.0), Ok([0x00, 0xFF, 0xFC]));
        assert_eq!(bitpacked(107.5, 0.0, 0.0), Ok([0xFF, 0x00, 0x00]));
        assert_eq!(
            bitpacked(-20.3, 0.0, 0.0),
            Err(EncodeError::OutOfRange {
                field: "temperature"
            })
        );
        assert_eq!(
            bitpacked(20.0, 128.0, 0.0),
            Err(EncodeError::OutOfRange { field: "humidity" })
        );
        assert_eq!(
            bitpacked(f64::INFINITY, 0.0, 0.0),
            Err(EncodeError::NotFinite {
                field: "temperature"
            })
        );
        let hand = Bitpacked {
            temperature_raw: 0,
            humidity_pct: 0xFF,
            battery_pct: 0,
        };
        assert_eq!(hand.encode(), [0x00, 0xFE, 0x00]);
    }

    #[test]
    fn batch_frames() {
        let mut buf = [0u8; 32];
        assert_eq!(
            batch(1_795_146_752, &[(0, 21.5), (60, -1.0)], &mut buf),
            Ok(17)
        );
        assert_eq!(
            buf[..17],
            [
                0x02, // count
                0x6A, 0xFF, 0xC4, 0x00, // base 1795146752 s
                0x00, 0x00, 0x00, 0x00, 0x00, 0xD7, // +0 s, 215
                0x00, 0x3C, 0xFF, 0xFF, 0xFF, 0xF6, // +60 s, −10
            ]
        );
        assert_eq!(batch(1, &[], &mut buf), Ok(5));
        assert_eq!(buf[..5], [0, 0, 0, 0, 1]);
        assert_eq!(
            batch(1, &[(0, 1.0); 5], &mut buf),
            Err(EncodeError::BufferTooSmall {
                needed: 35,
                len: 32
            })
        );
        assert_eq!(
            batch(1, &[(0, 1.0); 256], &mut [0u8; 2048]),
            Err(EncodeError::TooManyReadings {
                max: 255,
                found: 256
            })
        );
        let mut big = [0u8; 5 + 6 * 255];
        assert_eq!(batch(1, &[(0, 1.0); 255], &mut big), Ok(big.len()));
        assert_eq!(
            batch(1, &[(0, 1.0), (1, f64::NAN)], &mut buf),
            Err(EncodeError::NotFinite { field: "value" })
        );
    }
}
