//! Milesight ambience monitors (AM100 series, AM307/AM308/AM319): repeated
//! `[channel_id:1][channel_type:1][value:N]`, values little-endian, N fixed
//! by the (id, type) pair. From Milesight-IoT/SensorDecoders, the
//! "Payload Definition" tables of `AM_Series/AM300/README.md`,
//! `AM_Series/AM300_v2/README.md` and `AM_Series/AM100_Series/README.md`.
//!
//! Metric names are the vendor decoders' keys where they fit the units
//! table (`temperature`, `humidity`, `co2`, `pressure`, `pm2_5`); a pair
//! this decoder does not know refuses the payload, since its size is
//! unknown. The `0xFF` channel (protocol, hardware and firmware versions,
//! serial number, sent after a join) is device information, not a
//! measurement: skipped by its known size. History records (`0x20 0xCE`)
//! differ in size between models that share the pair, so they are refused
//! rather than guessed.

use super::{scaled, take, unique_metric, CodecError, DecodedValue};

/// How one channel's value is laid out and scaled.
#[derive(Clone, Copy)]
enum Value {
    /// 1 byte, unsigned, × scale.
    U8(f64),
    /// 2 bytes little-endian, unsigned, × scale.
    U16(f64),
    /// 2 bytes little-endian, signed, × scale.
    I16(f64),
    /// AM104/AM107 light: three u16 (visible+IR lux, IR, visible+IR raw).
    Illumination,
    /// Device information of this many bytes, not a measurement.
    Skip(usize),
}

/// The (channel id, channel type) pairs, with sizes and resolutions.
fn channel(id: u8, kind: u8) -> Option<(&'static str, Value)> {
    use Value::*;
    Some(match (id, kind) {
        (0x01, 0x75) => ("battery", U8(1.0)),          // 1 byte, %
        (0x03, 0x67) => ("temperature", I16(0.1)),     // 2 bytes, 0.1 °C signed
        (0x04, 0x68) => ("humidity", U8(0.5)),         // 1 byte, 0.5 %RH
        (0x05, 0x00) => ("pir", U8(1.0)),              // 1 byte, 1 = triggered
        (0x05, 0x6A) => ("activity", U16(1.0)),        // 2 bytes, AM104/AM107 PIR activity
        (0x06, 0xCB) => ("light_level", U8(1.0)),      // 1 byte, level 0–5
        (0x06, 0x65) => ("illuminance", Illumination), // 3 × 2 bytes, lux
        (0x07, 0x7D) => ("co2", U16(1.0)),             // 2 bytes, ppm
        // 2 bytes as the vendor's examples print it (AM107: ppb; AM319
        // v2 firmware in "IAQ" unit: the level × 100).
        (0x08, 0x7D) => ("tvoc", U16(1.0)),
        (0x08, 0xE6) => ("tvoc_ug_m3", U16(1.0)), // 2 bytes, µg/m³ (v2 firmware)
        (0x09, 0x73) => ("pressure", U16(0.1)),   // 2 bytes, 0.1 hPa
        (0x0A, 0x7D) => ("hcho", U16(0.01)),      // 2 bytes, 0.01 mg/m³
        (0x0B, 0x7D) => ("pm2_5", U16(1.0)),      // 2 bytes, µg/m³
        (0x0C, 0x7D) => ("pm10", U16(1.0)),       // 2 bytes, µg/m³
        (0x0D, 0x7D) => ("o3", U16(0.01)),        // 2 bytes, 0.01 ppm
        (0x0E, 0x01) => ("beep", U8(1.0)),        // 1 byte, 1 = buzzer on
        (0xFF, 0x01) => ("protocol_version", Skip(1)),
        (0xFF, 0x09) => ("hardware_version", Skip(2)),
        (0xFF, 0x0A) => ("firmware_version", Skip(2)),
        (0xFF, 0x0B) => ("power_status", Skip(1)),
        (0xFF, 0x0F) => ("lorawan_class", Skip(1)),
        (0xFF, 0x16) => ("serial_number", Skip(8)),
        (0xFF, 0xFF) => ("tsl_version", Skip(2)),
        _ => return None,
    })
}

/// Decodes a whole Milesight payload.
pub(super) fn decode(bytes: &[u8]) -> Result<Vec<DecodedValue>, CodecError> {
    if bytes.is_empty() {
        return Err(CodecError::Empty);
    }
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let [id, kind] = take::<2>(bytes, at, "channel id and type")?;
        let (name, value) = channel(id, kind).ok_or_else(|| CodecError::UnknownChannel {
            format: "Milesight",
            what: format!("channel 0x{id:02x} type 0x{kind:02x}"),
            offset: at,
        })?;
        at += 2;
        let mut push = |metric: &'static str, v: f64| {
            let metric = unique_metric(&out, metric);
            out.push(DecodedValue::new(metric, v));
        };
        match value {
            Value::U8(scale) => {
                let [b] = take::<1>(bytes, at, name)?;
                push(name, scaled(f64::from(b), scale));
                at += 1;
            }
            Value::U16(scale) => {
                let raw = u16::from_le_bytes(take::<2>(bytes, at, name)?);
                push(name, scaled(f64::from(raw), scale));
                at += 2;
            }
            Value::I16(scale) => {
                let raw = i16::from_le_bytes(take::<2>(bytes, at, name)?);
                push(name, scaled(f64::from(raw), scale));
                at += 2;
            }
            Value::Illumination => {
                let raw = take::<6>(bytes, at, name)?;
                let word = |i: usize| f64::from(u16::from_le_bytes([raw[i], raw[i + 1]]));
                push("illuminance", word(0));
                push("infrared_and_visible", word(2));
                push("infrared", word(4));
                at += 6;
            }
            Value::Skip(n) => {
                // Checked like a value, so a cut frame is still an error.
                at.checked_add(n).filter(|end| *end <= bytes.len()).ok_or(
                    CodecError::Truncated {
                        field: name,
                        offset: at,
                        needed: n,
                        len: bytes.len(),
                    },
                )?;
                at += n;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::lorawan::codecs::tests::{hex, values};

    /// Milesight-IoT/SensorDecoders `AM_Series/AM300/README.md` and
    /// `AM_Series/AM300_v2/README.md` (AM307/AM319), section "Example":
    /// temperature 23.8, humidity 62, pir "trigger", light_level 2, co2 936,
    /// tvoc 37, pressure 1008.6, hcho 0.04, pm2_5 32, pm10 48.
    pub(crate) const AM319_EXAMPLE: &str =
        "0367EE00 04687C 050001 06CB02 077DA803 087D2500 09736627 0A7D0400 0B7D2000 0C7D3000";

    #[test]
    fn am319_vendor_example() {
        assert_eq!(
            decode(&hex(AM319_EXAMPLE)),
            Ok(values(&[
                ("temperature", 23.8),
                ("humidity", 62.0),
                ("pir", 1.0),
                ("light_level", 2.0),
                ("co2", 936.0),
                ("tvoc", 37.0),
                ("pressure", 1008.6),
                ("hcho", 0.04),
                ("pm2_5", 32.0),
                ("pm10", 48.0),
            ]))
        );
    }

    /// Milesight-IoT/SensorDecoders `AM100/README.md` (AM104/AM107),
    /// "Example for The Things Network": battery 92, temperature 30.8,
    /// humidity 50.5, activity 73, illumination 28, infrared 20,
    /// infrared_and_visible 121, co2 1255, tvoc 7, pressure 1004.7.
    #[test]
    fn am107_vendor_example() {
        let frame = "01755C 03673401 046865 056A4900 06651C0079001400 077DE704 087D0700 09733F27";
        assert_eq!(
            decode(&hex(frame)),
            Ok(values(&[
                ("battery", 92.0),
                ("temperature", 30.8),
                ("humidity", 50.5),
                ("activity", 73.0),
                ("illuminance", 28.0),
                ("infrared_and_visible", 121.0),
                ("infrared", 20.0),
                ("co2", 1255.0),
                ("tvoc", 7.0),
                ("pressure", 1004.7),
            ]))
        );
    }

    /// Milesight-IoT/SensorDecoders `AM_Series/AM103/README.md`, "Example":
    /// battery 100, temperature 28, humidity 54.5, co2 453.
    #[test]
    fn am103_vendor_example() {
        assert_eq!(
            decode(&hex("0175640367180104686D077DC501")),
            Ok(values(&[
                ("battery", 100.0),
                ("temperature", 28.0),
                ("humidity", 54.5),
                ("co2", 453.0),
            ]))
        );
    }

    #[test]
    fn device_information_is_skipped_and_negative_temperatures_read() {
        // ff01 protocol 0x01, ff16 serial (8 bytes), ff0a firmware 1.2,
        // then 0367 0xFF9C = −100 → −10.0 °C.
        let frame = "FF0101FF166136B19276870000FF0A0102 0367 9CFF";
        assert_eq!(decode(&hex(frame)), Ok(values(&[("temperature", -10.0)])));
        assert_eq!(decode(&hex("FF0101")), Ok(Vec::new()));
    }

    #[test]
    fn repeated_channels_get_distinct_names() {
        assert_eq!(
            decode(&hex("0367EE000367F000")),
            Ok(values(&[("temperature", 23.8), ("temperature_2", 24.0)]))
        );
    }

    #[test]
    fn bad_frames_are_errors() {
        assert_eq!(decode(&[]), Err(CodecError::Empty));
        assert_eq!(
            decode(&hex("0367EE00 20CE00")).map_err(|e| e.to_string()),
            Err("unknown Milesight channel 0x20 type 0xce at offset 4".to_string())
        );
        assert_eq!(
            decode(&hex("0367EE00 2A")).map_err(|e| e.kind()),
            Err("truncated")
        );
        assert_eq!(
            decode(&hex("FF16 6136B1")),
            Err(CodecError::Truncated {
                field: "serial_number",
                offset: 2,
                needed: 8,
                len: 5
            })
        );
        // Every cut of the vendor frame that is not at an item boundary.
        let full = hex(AM319_EXAMPLE);
        let ends = [4, 7, 10, 13, 17, 21, 25, 29, 33, 37];
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
