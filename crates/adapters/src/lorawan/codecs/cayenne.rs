//! Cayenne Low Power Payload: repeated `[channel:1][type:1][value:N]`,
//! big-endian, type = IPSO object id − 3200.
//!
//! Our own total decoder: the `cayenne_lpp` crate panics on 6 of 12
//! truncated inputs (shared/CRATES.md). Names follow The Things Stack,
//! `<type>_<channel>`, with `_x`/`_y`/`_z` or `_latitude`/`_longitude`/
//! `_altitude` for the multi-value types, so dashboards built on TTS
//! output keep working. An unknown type refuses the whole payload, as TTS
//! and go-cayenne-lib do: its size is unknown, so nothing after it can be
//! trusted.

use super::{take, CodecError, DecodedValue};

/// How one type's value is laid out.
struct Layout {
    name: &'static str,
    /// Bytes per component: 1, 2, 3 or 4.
    width: usize,
    signed: bool,
    /// Value = raw × scale.
    scale: f64,
    /// Component suffixes; empty for a single value.
    parts: &'static [&'static str],
}

const XYZ: &[&str] = &["x", "y", "z"];
const GPS: &[&str] = &["latitude", "longitude", "altitude"];
const RGB: &[&str] = &["r", "g", "b"];

const fn one(name: &'static str, width: usize, signed: bool, scale: f64) -> Layout {
    Layout {
        name,
        width,
        signed,
        scale,
        parts: &[],
    }
}

/// The myDevices table plus the extended types of ElectronicCats/CayenneLPP
/// (`src/CayenneLPP.h`). Sizes and resolutions in the comments.
fn layout(type_id: u8) -> Option<Layout> {
    Some(match type_id {
        0x00 => one("digital_in", 1, false, 1.0),        // 1 byte
        0x01 => one("digital_out", 1, false, 1.0),       // 1 byte
        0x02 => one("analog_in", 2, true, 0.01),         // 2 bytes, 0.01 signed
        0x03 => one("analog_out", 2, true, 0.01),        // 2 bytes, 0.01 signed
        0x64 => one("generic_sensor", 4, false, 1.0),    // 4 bytes, unsigned
        0x65 => one("luminosity", 2, false, 1.0),        // 2 bytes, 1 lux unsigned
        0x66 => one("presence", 1, false, 1.0),          // 1 byte
        0x67 => one("temperature", 2, true, 0.1),        // 2 bytes, 0.1 °C signed
        0x68 => one("relative_humidity", 1, false, 0.5), // 1 byte, 0.5 % unsigned
        0x71 => Layout {
            parts: XYZ,
            ..one("accelerometer", 2, true, 0.001) // 3 × 2 bytes, 0.001 G signed
        },
        0x73 => one("barometric_pressure", 2, false, 0.1), // 2 bytes, 0.1 hPa unsigned
        0x74 => one("voltage", 2, false, 0.01),            // 2 bytes, 0.01 V unsigned
        0x75 => one("current", 2, false, 0.001),           // 2 bytes, 0.001 A unsigned
        0x76 => one("frequency", 4, false, 1.0),           // 4 bytes, 1 Hz unsigned
        0x78 => one("percentage", 1, false, 1.0),          // 1 byte, 1 % unsigned
        0x79 => one("altitude", 2, true, 1.0),             // 2 bytes, 1 m signed
        0x80 => one("power", 2, false, 1.0),               // 2 bytes, 1 W unsigned
        0x82 => one("distance", 4, false, 0.001),          // 4 bytes, 0.001 m unsigned
        0x83 => one("energy", 4, false, 0.001),            // 4 bytes, 0.001 kWh unsigned
        0x84 => one("direction", 2, false, 1.0),           // 2 bytes, 1° unsigned
        0x85 => one("unix_time", 4, false, 1.0),           // 4 bytes, 1 s unsigned
        0x86 => Layout {
            parts: XYZ,
            ..one("gyrometer", 2, true, 0.01) // 3 × 2 bytes, 0.01 °/s signed
        },
        0x88 => Layout {
            parts: GPS,
            // 3 × 3 bytes signed: lat/lon 0.0001°, alt 0.01 m (scaled below).
            ..one("gps", 3, true, 0.0001)
        },
        0x8E => one("switch", 1, false, 1.0),        // 1 byte
        0x8F => one("concentration", 2, false, 1.0), // 2 bytes, 1 ppm unsigned
        0x90 => Layout {
            parts: RGB,
            ..one("colour", 1, false, 1.0) // 3 × 1 byte, 0–255 per channel
        },
        _ => return None,
    })
}

/// GPS altitude resolution, the one component with its own scale. 0.01 m.
const GPS_ALTITUDE_SCALE: f64 = 0.01;

/// A big-endian integer of `bytes.len()` (1..=4) bytes, sign-extended when
/// `signed`.
fn integer(bytes: &[u8], signed: bool) -> i64 {
    let raw = bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
    let bits = 8 * bytes.len() as u32;
    if signed && bits < 64 && raw >> (bits - 1) & 1 == 1 {
        i64::from(raw) - (1i64 << bits)
    } else {
        i64::from(raw)
    }
}

/// Decodes a whole Cayenne LPP payload.
pub(super) fn decode(bytes: &[u8]) -> Result<Vec<DecodedValue>, CodecError> {
    if bytes.is_empty() {
        return Err(CodecError::Empty);
    }
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let [channel, type_id] = take::<2>(bytes, at, "channel and type")?;
        let layout = layout(type_id).ok_or(CodecError::UnknownType { channel, type_id })?;
        at += 2;
        let count = layout.parts.len().max(1);
        let size = layout.width * count;
        let value = at
            .checked_add(size)
            .and_then(|end| bytes.get(at..end))
            .ok_or(CodecError::Truncated {
                field: layout.name,
                offset: at,
                needed: size,
                len: bytes.len(),
            })?;
        at += size;
        for (i, chunk) in value.chunks_exact(layout.width).enumerate() {
            let scale = if type_id == 0x88 && i == 2 {
                GPS_ALTITUDE_SCALE
            } else {
                layout.scale
            };
            // Rounded to the resolution's decimals, so 0x0110 × 0.1 reads
            // 27.2 rather than 27.200000000000003.
            let value = round(integer(chunk, layout.signed) as f64 * scale, scale);
            let metric = match layout.parts.get(i) {
                Some(part) => format!("{}_{channel}_{part}", layout.name),
                None => format!("{}_{channel}", layout.name),
            };
            out.push(DecodedValue::new(metric, value));
        }
    }
    Ok(out)
}

/// `value` rounded to the number of decimals of `scale` (at most 4).
fn round(value: f64, scale: f64) -> f64 {
    let factor = (1.0 / scale).round();
    if factor <= 1.0 {
        value
    } else {
        (value * factor).round() / factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn values(pairs: &[(&str, f64)]) -> Vec<DecodedValue> {
        pairs
            .iter()
            .map(|(m, v)| DecodedValue::new(m.to_string(), *v))
            .collect()
    }

    /// tests/data/vectors/cayenne_lpp.json `vectors`, names as TTS prints them.
    #[test]
    fn published_vectors() {
        let rows: [(&str, &str, Vec<DecodedValue>); 3] = [
            (
                "two-temperatures",
                "03670110056700ff",
                values(&[("temperature_3", 27.2), ("temperature_5", 25.5)]),
            ),
            (
                "temperature-and-accelerometer",
                "0167ffd7067104d2fb2e0000",
                values(&[
                    ("temperature_1", -4.1),
                    ("accelerometer_6_x", 1.234),
                    ("accelerometer_6_y", -1.234),
                    ("accelerometer_6_z", 0.0),
                ]),
            ),
            (
                "all-12-basic-types",
                "0100ff0201640302154a0403eab6056501f40666320767ff640868a00971fe58000f06820a7329ef0b8601630231fe660c8807fd8700bef500086a",
                values(&[
                    ("digital_in_1", 255.0),
                    ("digital_out_2", 100.0),
                    ("analog_in_3", 54.5),
                    ("analog_out_4", -54.5),
                    ("luminosity_5", 500.0),
                    ("presence_6", 50.0),
                    ("temperature_7", -15.6),
                    ("relative_humidity_8", 80.0),
                    ("accelerometer_9_x", -0.424),
                    ("accelerometer_9_y", 0.015),
                    ("accelerometer_9_z", 1.666),
                    ("barometric_pressure_10", 1073.5),
                    ("gyrometer_11_x", 3.55),
                    ("gyrometer_11_y", 5.61),
                    ("gyrometer_11_z", -4.1),
                    ("gps_12_latitude", 52.3655),
                    ("gps_12_longitude", 4.8885),
                    ("gps_12_altitude", 21.54),
                ]),
            ),
        ];
        for (id, payload, want) in rows {
            assert_eq!(decode(&hex(payload)), Ok(want), "{id}");
        }
    }

    #[test]
    fn extended_types() {
        let got = decode(&hex(concat!(
            "017401f4", // voltage ch1: 500 → 5.00 V
            "028f0190", // concentration ch2: 400 ppm
            "037932",   // altitude ch3 (0x79) with 1 of its 2 bytes
        )));
        assert_eq!(
            got,
            Err(CodecError::Truncated {
                field: "altitude",
                offset: 10,
                needed: 2,
                len: 11
            })
        );
        let got = decode(&hex(concat!(
            "017401f4",     // voltage ch1: 500 → 5.00 V
            "028f0190",     // concentration ch2: 400 ppm
            "0379ff9c",     // altitude ch3: −100 m
            "048200003039", // distance ch4: 12345 → 12.345 m
            "057864",       // percentage ch5: 100 %
            "088e01",       // switch ch8: on
            "0990ff8000",   // colour ch9: r 255, g 128, b 0
            "0a856a1f6f30", // unix_time ch10: 1780444976
        )));
        assert_eq!(
            got,
            Ok(values(&[
                ("voltage_1", 5.0),
                ("concentration_2", 400.0),
                ("altitude_3", -100.0),
                ("distance_4", 12.345),
                ("percentage_5", 100.0),
                ("switch_8", 1.0),
                ("colour_9_r", 255.0),
                ("colour_9_g", 128.0),
                ("colour_9_b", 0.0),
                ("unix_time_10", 1_780_444_976.0),
            ]))
        );
    }

    /// `bad_inputs` of the vectors, and every truncation of a valid payload.
    #[test]
    fn bad_inputs_are_errors() {
        assert_eq!(
            decode(&hex("01ffff")),
            Err(CodecError::UnknownType {
                channel: 1,
                type_id: 0xff
            })
        );
        assert_eq!(
            decode(&hex("0c8807fd8700be")),
            Err(CodecError::Truncated {
                field: "gps",
                offset: 2,
                needed: 9,
                len: 7
            })
        );
        assert_eq!(decode(&[]), Err(CodecError::Empty));
        let full = hex("0100ff0201640302154a0403eab6056501f40666320767ff640868a00971fe58000f06820a7329ef0b8601630231fe660c8807fd8700bef500086a");
        let item_ends = [3, 6, 10, 14, 18, 21, 25, 28, 36, 40, 48, 59];
        for cut in 1..full.len() {
            let got = decode(&full[..cut]);
            if item_ends.contains(&cut) {
                assert!(got.is_ok(), "cut at {cut}: {got:?}");
            } else {
                assert_eq!(got.map_err(|e| e.kind()), Err("truncated"), "cut at {cut}");
            }
        }
    }

    #[test]
    fn integers_sign_extend_by_width() {
        assert_eq!(integer(&[0xFF], true), -1);
        assert_eq!(integer(&[0xFF], false), 255);
        assert_eq!(integer(&[0x80, 0x00, 0x00], true), -8_388_608);
        assert_eq!(integer(&[0x7F, 0xFF, 0xFF], true), 8_388_607);
        assert_eq!(integer(&[0xFF, 0xFF, 0xFF, 0xFF], false), 4_294_967_295);
        assert_eq!(integer(&[0xFF, 0xFF, 0xFF, 0xFF], true), -1);
    }
}
