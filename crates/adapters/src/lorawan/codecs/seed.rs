//! The seed course's three sensor frames. All multi-byte fields are
//! big-endian (network order, Python `struct` `>`).

use super::{take, CodecError, DecodedValue};

/// `compact_i16` frame: `>hBH`. 5 bytes.
const COMPACT_LEN: usize = 5;
/// `bitpacked` frame. 3 bytes.
const BITPACKED_LEN: usize = 3;
/// `batch` header: count (u8) + base time (u32, epoch seconds). 5 bytes.
const BATCH_HEADER_LEN: usize = 5;
/// `batch` reading: delta (u16, seconds) + value ×10 (i32). 6 bytes.
const BATCH_READING_LEN: usize = 6;

/// `compact_i16`: temperature ×10 (i16, 0.1 °C), humidity (u8, %),
/// battery ×100 (u16, 0.01 V).
pub(super) fn decode_compact(
    bytes: &[u8],
    out: &mut Vec<DecodedValue>,
) -> Result<(), CodecError> {
    let [t_hi, t_lo, humidity, b_hi, b_lo] =
        <[u8; COMPACT_LEN]>::try_from(bytes).map_err(|_| CodecError::Length {
            expected: COMPACT_LEN,
            found: bytes.len(),
        })?;
    // Pushed one by one: `extend` of an array was a call and a loop more.
    out.reserve(3);
    out.push(DecodedValue::new(
        "temperature",
        f64::from(i16::from_be_bytes([t_hi, t_lo])) / 10.0,
    ));
    out.push(DecodedValue::new("humidity", f64::from(humidity)));
    out.push(DecodedValue::new(
        "battery",
        f64::from(u16::from_be_bytes([b_hi, b_lo])) / 100.0,
    ));
    Ok(())
}

/// `bitpacked`: byte0 = (temperature + 20) × 2; byte1 = humidity (7
/// bits) << 1 | battery bit 6; byte2 = battery bits 0–5 << 2. The two low
/// bits of byte2 are padding and ignored, as the encoder leaves them zero.
pub(super) fn decode_bitpacked(
    bytes: &[u8],
    out: &mut Vec<DecodedValue>,
) -> Result<(), CodecError> {
    let [b0, b1, b2] = <[u8; BITPACKED_LEN]>::try_from(bytes).map_err(|_| CodecError::Length {
        expected: BITPACKED_LEN,
        found: bytes.len(),
    })?;
    let temperature = f64::from(b0) / 2.0 - 20.0;
    let humidity = b1 >> 1;
    let battery = ((b1 & 0x01) << 6) | (b2 >> 2);
    out.reserve(3);
    out.push(DecodedValue::new("temperature", temperature));
    out.push(DecodedValue::new("humidity", f64::from(humidity)));
    out.push(DecodedValue::new("battery", f64::from(battery)));
    Ok(())
}

/// `batch`: count (u8), base time (u32, epoch s), then `count` ×
/// (delta u16 s, value ×10 i32). Each reading is `value` at base + delta.
/// The length must match the count exactly.
pub(super) fn decode_batch(bytes: &[u8], out: &mut Vec<DecodedValue>) -> Result<(), CodecError> {
    if bytes.is_empty() {
        return Err(CodecError::Empty);
    }
    let [count] = take::<1>(bytes, 0, "count")?;
    let base = u32::from_be_bytes(take::<4>(bytes, 1, "base time")?);
    let expected = BATCH_HEADER_LEN + usize::from(count) * BATCH_READING_LEN;
    if bytes.len() > expected {
        return Err(CodecError::TrailingBytes {
            extra: bytes.len() - expected,
        });
    }
    for i in 0..usize::from(count) {
        let at = BATCH_HEADER_LEN + i * BATCH_READING_LEN;
        let delta = u16::from_be_bytes(take::<2>(bytes, at, "delta")?);
        let value = i32::from_be_bytes(take::<4>(bytes, at + 2, "value")?);
        // u32 + u16 seconds, in ms, fits an i64 with room to spare.
        let seconds = i64::from(base) + i64::from(delta);
        out.push(DecodedValue {
            metric: "value".into(),
            value: f64::from(value) / 10.0,
            time_ms: Some(seconds * 1000),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Codec;
    use super::*;

    fn v(metric: &str, value: f64) -> DecodedValue {
        DecodedValue::new(metric.to_string(), value)
    }

    fn at(value: f64, seconds: i64) -> DecodedValue {
        DecodedValue {
            metric: "value".into(),
            value,
            time_ms: Some(seconds * 1000),
        }
    }

    type Row = (
        &'static str,
        Codec,
        &'static [u8],
        Result<Vec<DecodedValue>, CodecError>,
    );

    #[test]
    fn seed_frames() {
        let rows: Vec<Row> = vec![
            (
                "compact: 21.5 °C, 40 %, 3.30 V",
                Codec::CompactI16,
                &[
                    0x00, 0xD7, // temperature 215 → 21.5 °C
                    0x28, // humidity 40 %
                    0x01, 0x4A, // battery 330 → 3.30 V
                ],
                Ok(vec![
                    v("temperature", 21.5),
                    v("humidity", 40.0),
                    v("battery", 3.3),
                ]),
            ),
            (
                "compact: negative temperature, full-scale fields",
                Codec::CompactI16,
                &[
                    0xFF, 0x9C, // temperature −100 → −10.0 °C
                    0xFF, // humidity 255 (not clamped: the sensor said so)
                    0xFF, 0xFF, // battery 65535 → 655.35 V
                ],
                Ok(vec![
                    v("temperature", -10.0),
                    v("humidity", 255.0),
                    v("battery", 655.35),
                ]),
            ),
            (
                "compact: 4 bytes",
                Codec::CompactI16,
                &[0x00, 0xD7, 0x28, 0x01],
                Err(CodecError::Length {
                    expected: 5,
                    found: 4,
                }),
            ),
            (
                "compact: 6 bytes",
                Codec::CompactI16,
                &[0x00, 0xD7, 0x28, 0x01, 0x4A, 0x00],
                Err(CodecError::Length {
                    expected: 5,
                    found: 6,
                }),
            ),
            (
                "bitpacked: 21.5 °C, 40 %, 85 %",
                Codec::Bitpacked,
                &[
                    0x53, // (21.5 + 20) × 2 = 83
                    0x51, // humidity 40 << 1 | battery 85 bit 6 (1)
                    0x54, // battery 85 bits 0–5 (0b010101) << 2
                ],
                Ok(vec![
                    v("temperature", 21.5),
                    v("humidity", 40.0),
                    v("battery", 85.0),
                ]),
            ),
            (
                "bitpacked: extremes, padding bits ignored",
                Codec::Bitpacked,
                &[
                    0x00, // −20 °C
                    0xFF, // humidity 127, battery bit 6 set
                    0xFF, // battery bits 0–5 all set, padding 0b11
                ],
                Ok(vec![
                    v("temperature", -20.0),
                    v("humidity", 127.0),
                    v("battery", 127.0),
                ]),
            ),
            (
                "bitpacked: 2 bytes",
                Codec::Bitpacked,
                &[0x53, 0x51],
                Err(CodecError::Length {
                    expected: 3,
                    found: 2,
                }),
            ),
            (
                "batch: two readings, each with its own time",
                Codec::Batch,
                &[
                    0x02, // count 2
                    0x6A, 0xFF, 0xC4, 0x00, // base 1795146752 s
                    0x00, 0x00, // delta 0 s
                    0x00, 0x00, 0x00, 0xD7, // 215 → 21.5
                    0x00, 0x3C, // delta 60 s
                    0xFF, 0xFF, 0xFF, 0xF6, // −10 → −1.0
                ],
                Ok(vec![at(21.5, 1_795_146_752), at(-1.0, 1_795_146_812)]),
            ),
            (
                "batch: count 0 is a valid, empty batch",
                Codec::Batch,
                &[0x00, 0x00, 0x00, 0x00, 0x01],
                Ok(vec![]),
            ),
            ("batch: empty", Codec::Batch, &[], Err(CodecError::Empty)),
            (
                "batch: header cut short",
                Codec::Batch,
                &[0x01, 0x6A, 0xFF],
                Err(CodecError::Truncated {
                    field: "base time",
                    offset: 1,
                    needed: 4,
                    len: 3,
                }),
            ),
            (
                "batch: count says 2, one reading present",
                Codec::Batch,
                &[0x02, 0, 0, 0, 0, 0x00, 0x01, 0, 0, 0, 1],
                Err(CodecError::Truncated {
                    field: "delta",
                    offset: 11,
                    needed: 2,
                    len: 11,
                }),
            ),
            (
                "batch: reading value cut short",
                Codec::Batch,
                &[0x01, 0, 0, 0, 0, 0x00, 0x01, 0, 0, 0],
                Err(CodecError::Truncated {
                    field: "value",
                    offset: 7,
                    needed: 4,
                    len: 10,
                }),
            ),
            (
                "batch: bytes after the last reading",
                Codec::Batch,
                &[0x01, 0, 0, 0, 0, 0x00, 0x01, 0, 0, 0, 1, 0xAA],
                Err(CodecError::TrailingBytes { extra: 1 }),
            ),
        ];
        for (label, codec, bytes, want) in rows {
            assert_eq!(codec.decode(bytes), want, "{label}");
        }
    }

    #[test]
    fn compact_round_trip_over_the_whole_temperature_range() {
        for raw in [i16::MIN, -400, -1, 0, 1, 215, i16::MAX] {
            let [hi, lo] = raw.to_be_bytes();
            let got = Codec::CompactI16.decode(&[hi, lo, 50, 0x01, 0x2C]).unwrap();
            assert_eq!(got[0].value, f64::from(raw) / 10.0, "{raw}");
            assert_eq!(got[2].value, 3.0);
        }
    }

    #[test]
    fn bitpacked_round_trip_of_every_humidity_and_battery() {
        for humidity in 0u8..128 {
            for battery in 0u8..128 {
                let bytes = [80, humidity << 1 | battery >> 6, (battery & 0x3F) << 2];
                let got = Codec::Bitpacked.decode(&bytes).unwrap();
                assert_eq!(got[0].value, 20.0);
                assert_eq!(
                    (got[1].value, got[2].value),
                    (f64::from(humidity), f64::from(battery))
                );
            }
        }
    }

    #[test]
    fn batch_of_255_readings_is_accepted_and_256th_byte_group_is_not() {
        let mut bytes = vec![255, 0, 0, 0, 10];
        for i in 0..255u16 {
            bytes.extend_from_slice(&i.to_be_bytes());
            bytes.extend_from_slice(&i32::from(i).to_be_bytes());
        }
        let got = Codec::Batch.decode(&bytes).unwrap();
        assert_eq!(got.len(), 255);
        assert_eq!(got[254], at(25.4, 10 + 254));
        bytes.extend_from_slice(&[0; 6]);
        assert_eq!(
            Codec::Batch.decode(&bytes),
            Err(CodecError::TrailingBytes { extra: 6 })
        );
    }
}
