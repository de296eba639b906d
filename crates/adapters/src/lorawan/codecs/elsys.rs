//! Elsys sensors (ERS, ERS CO2, ERS Sound, ERS VOC, ELT, EMS...): repeated
//! `[type:1][value:N]`, big-endian, N fixed by the type. Types and sizes
//! from the Elsys payload document (elsys.se "Elsys payload", the table
//! also in the vendor's decoder `vendor/elsys/elsys.js` of
//! TheThingsNetwork/lorawan-devices).
//!
//! A type this decoder does not know refuses the payload: its size is
//! unknown. A repeated type (two external probes) gets `_2`, `_3`.

use super::{scaled, take, unique_metric, CodecError, DecodedValue};

/// How one type's value is laid out.
#[derive(Clone, Copy)]
enum Value {
    /// Unsigned big-endian integer of this many bytes, × scale.
    Unsigned(usize, f64),
    /// Signed big-endian integer of this many bytes, × scale.
    Signed(usize, f64),
    /// Three signed bytes, X, Y, Z (63 = 1 G).
    Acceleration,
    /// Two signed 16-bit values ×0.1 °C: the IR sensor's own and the target's.
    IrTemperature,
    /// Two bytes, peak and average sound level in dB.
    Sound,
    /// Not a measurement this gateway forwards: skipped by its size
    /// (GPS as raw counts, the 8×8 Grid-EYE image, debug words).
    Skip(usize),
}

/// The Elsys types with their sizes and resolutions.
fn layout(type_id: u8) -> Option<(&'static str, Value)> {
    use Value::*;
    Some(match type_id {
        0x01 => ("temperature", Signed(2, 0.1)),   // 2 bytes, 0.1 °C
        0x02 => ("humidity", Unsigned(1, 1.0)),    // 1 byte, %
        0x03 => ("acceleration", Acceleration),    // 3 × 1 byte, 63 = 1 G
        0x04 => ("illuminance", Unsigned(2, 1.0)), // 2 bytes, lux
        0x05 => ("motion", Unsigned(1, 1.0)),      // 1 byte, PIR count
        0x06 => ("co2", Unsigned(2, 1.0)),         // 2 bytes, ppm
        0x07 => ("battery_v", Unsigned(2, 0.001)), // 2 bytes, mV (VDD)
        0x08 => ("analog_1_voltage", Unsigned(2, 0.001)), // 2 bytes, mV
        0x09 => ("gps", Skip(6)),                  // 3 + 3 bytes
        0x0A => ("pulse_1", Unsigned(2, 1.0)),     // 2 bytes, count since last
        0x0B => ("pulse_1_total", Unsigned(4, 1.0)), // 4 bytes, absolute count
        0x0C => ("external_temperature", Signed(2, 0.1)), // 2 bytes, 0.1 °C
        0x0D => ("digital_in", Unsigned(1, 1.0)),  // 1 byte, 0 or 1
        0x0E => ("distance_mm", Unsigned(2, 1.0)), // 2 bytes, mm
        0x0F => ("acc_motion", Unsigned(1, 1.0)),  // 1 byte, count
        0x10 => ("ir_temperature", IrTemperature), // 2 + 2 bytes, 0.1 °C
        0x11 => ("occupancy", Unsigned(1, 1.0)),   // 1 byte, 0 free, 1 pending, 2 occupied
        0x12 => ("waterleak", Unsigned(1, 1.0)),   // 1 byte, 0–255
        0x13 => ("grideye", Skip(65)),             // 1 reference + 64 pixels
        0x14 => ("pressure", Unsigned(4, 0.001)),  // 4 bytes, 0.001 hPa
        0x15 => ("sound", Sound),                  // 2 × 1 byte, dB
        0x16 => ("pulse_2", Unsigned(2, 1.0)),     // 2 bytes
        0x17 => ("pulse_2_total", Unsigned(4, 1.0)), // 4 bytes
        0x18 => ("analog_2_voltage", Unsigned(2, 0.001)), // 2 bytes, mV
        0x19 => ("external_temperature_2", Signed(2, 0.1)), // 2 bytes, 0.1 °C
        0x1A => ("digital_in_2", Unsigned(1, 1.0)), // 1 byte
        0x1B => ("analog_voltage", Signed(4, 0.000_001)), // 4 bytes, µV signed
        0x1C => ("tvoc", Unsigned(2, 1.0)),        // 2 bytes, ppb
        0x3D => ("debug", Skip(4)),                // 4 bytes
        _ => return None,
    })
}

/// A big-endian integer of `bytes.len()` (1..=4) bytes.
fn integer(bytes: &[u8], signed: bool) -> f64 {
    let raw = bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
    let bits = 8 * bytes.len() as u32;
    if signed && bits > 0 && raw >> (bits - 1) & 1 == 1 {
        (i64::from(raw) - (1i64 << bits)) as f64
    } else {
        f64::from(raw)
    }
}

/// Decodes a whole Elsys payload.
pub(super) fn decode(bytes: &[u8]) -> Result<Vec<DecodedValue>, CodecError> {
    if bytes.is_empty() {
        return Err(CodecError::Empty);
    }
    let mut out: Vec<DecodedValue> = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let [type_id] = take::<1>(bytes, at, "type")?;
        let (name, value) = layout(type_id).ok_or_else(|| CodecError::UnknownChannel {
            format: "Elsys",
            what: format!("type 0x{type_id:02x}"),
            offset: at,
        })?;
        at += 1;
        let size = match value {
            Value::Unsigned(n, _) | Value::Signed(n, _) | Value::Skip(n) => n,
            Value::Acceleration => 3,
            Value::IrTemperature => 4,
            Value::Sound => 2,
        };
        let field = at
            .checked_add(size)
            .and_then(|end| bytes.get(at..end))
            .ok_or(CodecError::Truncated {
                field: name,
                offset: at,
                needed: size,
                len: bytes.len(),
            })?;
        at += size;
        let mut push = |metric: &'static str, v: f64| {
            let metric = unique_metric(&out, metric);
            out.push(DecodedValue::new(metric, v));
        };
        match value {
            Value::Unsigned(_, scale) => push(name, scaled(integer(field, false), scale)),
            Value::Signed(_, scale) => push(name, scaled(integer(field, true), scale)),
            Value::Acceleration => {
                for (axis, b) in ["acc_x", "acc_y", "acc_z"].into_iter().zip(field) {
                    push(axis, f64::from(*b as i8));
                }
            }
            Value::IrTemperature => {
                push(
                    "ir_internal_temperature",
                    scaled(integer(&field[..2], true), 0.1),
                );
                push(
                    "ir_external_temperature",
                    scaled(integer(&field[2..], true), 0.1),
                );
            }
            Value::Sound => {
                push("sound_peak", f64::from(field[0]));
                push("sound_avg", f64::from(field[1]));
            }
            Value::Skip(_) => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::lorawan::codecs::tests::{hex, values};

    /// The Elsys payload document's example (elsys.se "Elsys payload";
    /// also TheThingsNetwork/lorawan-devices `vendor/elsys/ers-co2-codec.yaml`
    /// without its last item): temperature 22.6, humidity 41, light 39,
    /// motion 6, co2 776, vdd 3426 mV.
    pub(crate) const ERS_CO2_EXAMPLE: &str = "0100E2 0229 040027 0506 060308 070D62";

    #[test]
    fn elsys_document_example() {
        assert_eq!(
            decode(&hex(ERS_CO2_EXAMPLE)),
            Ok(values(&[
                ("temperature", 22.6),
                ("humidity", 41.0),
                ("illuminance", 39.0),
                ("motion", 6.0),
                ("co2", 776.0),
                ("battery_v", 3.426),
            ]))
        );
    }

    /// TheThingsNetwork/lorawan-devices `vendor/elsys/ers-co2-codec.yaml`,
    /// "ERS CO2 temperature, humidity, light, motion and co2": 22.6, 41,
    /// 39, 6, 776.
    #[test]
    fn ttn_device_repository_example() {
        assert_eq!(
            decode(&hex("0100E2022904002705060603 08")),
            Ok(values(&[
                ("temperature", 22.6),
                ("humidity", 41.0),
                ("illuminance", 39.0),
                ("motion", 6.0),
                ("co2", 776.0),
            ]))
        );
    }

    /// The document's example with two external probes on type 0x19, as in
    /// the Elsys ELT test frames: 22.6 °C and 16.3 °C.
    #[test]
    fn repeated_external_probes() {
        let frame = format!("{ERS_CO2_EXAMPLE} 1900E2 1900A3");
        let got = decode(&hex(&frame)).unwrap();
        assert_eq!(
            got[6..],
            values(&[
                ("external_temperature_2", 22.6),
                ("external_temperature_2_2", 16.3),
            ])[..]
        );
    }

    #[test]
    fn multi_value_and_signed_types() {
        let got = decode(&hex(concat!(
            "01FF9C",     // temperature −100 → −10.0 °C
            "03FE0140",   // acceleration −2, 1, 64
            "100064FFF6", // IR: internal 10.0, external −1.0 °C
            "153C28",     // sound peak 60, avg 40 dB
            "14000F68E4", // pressure 1009.892 hPa
            "1C0190",     // tvoc 400 ppb
            "3D00000000", // debug, skipped
        )));
        assert_eq!(
            got,
            Ok(values(&[
                ("temperature", -10.0),
                ("acc_x", -2.0),
                ("acc_y", 1.0),
                ("acc_z", 64.0),
                ("ir_internal_temperature", 10.0),
                ("ir_external_temperature", -1.0),
                ("sound_peak", 60.0),
                ("sound_avg", 40.0),
                ("pressure", 1009.892),
                ("tvoc", 400.0),
            ]))
        );
    }

    #[test]
    fn bad_frames_are_errors() {
        assert_eq!(decode(&[]), Err(CodecError::Empty));
        assert_eq!(
            decode(&hex("0100E2 3F00")).map_err(|e| e.to_string()),
            Err("unknown Elsys type 0x3f at offset 3".to_string())
        );
        let full = hex(ERS_CO2_EXAMPLE);
        let ends = [3, 5, 8, 10, 13];
        for cut in 1..full.len() {
            let got = decode(&full[..cut]);
            if ends.contains(&cut) {
                assert!(got.is_ok(), "cut at {cut}: {got:?}");
            } else {
                assert_eq!(got.map_err(|e| e.kind()), Err("truncated"), "cut at {cut}");
            }
        }
    }
}
