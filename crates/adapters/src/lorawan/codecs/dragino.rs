//! Dragino LHT65 temperature and humidity sensor (FPort 2): 11 bytes,
//! big-endian, laid out in the LHT65 user manual § "Uplink Payload":
//!
//! | bytes | field |
//! |---|---|
//! | 0–1 | battery: bits 15–14 status (0 ultra low … 3 good), bits 13–0 mV |
//! | 2–3 | SHT temperature, signed, 0.01 °C |
//! | 4–5 | SHT humidity, bits 11–0, 0.1 % |
//! | 6 | external sensor: bits 3–0 type, bit 6 poll reply, bit 7 not connected |
//! | 7–10 | external sensor value, by type |
//!
//! Type 9 (DS18B20 with timestamp, datalog mode) moves the probe into bytes
//! 0–1 and the battery status into byte 4's top bits, and stamps the frame
//! with the device's clock in bytes 7–10. An external type this decoder
//! does not know leaves its value out and the rest of the frame decodes:
//! `ext_sensor_type` says which it was.

use super::{scaled, CodecError, DecodedValue};

/// The LHT65 frame length.
const FRAME_LEN: usize = 11;
/// A DS18B20 reading of 0x7FFF (327.67 °C): the probe does not answer.
const PROBE_ABSENT: i16 = 0x7FFF;

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Decodes one LHT65 uplink.
pub(super) fn decode_lht65(bytes: &[u8]) -> Result<Vec<DecodedValue>, CodecError> {
    if bytes.is_empty() {
        return Err(CodecError::Empty);
    }
    // Every index below is < FRAME_LEN, so past this check none can fail.
    if bytes.len() != FRAME_LEN {
        return Err(CodecError::Length {
            expected: FRAME_LEN,
            found: bytes.len(),
        });
    }
    let ext = bytes[6];
    let ext_type = ext & 0x0F;
    let disconnected = ext & 0x80 != 0;
    let mut out = Vec::new();
    let mut push = |metric: &'static str, value: f64| out.push(DecodedValue::new(metric, value));
    let probe = |at: usize| {
        let raw = be16(bytes, at) as i16;
        (raw != PROBE_ABSENT).then(|| scaled(f64::from(raw), 0.01))
    };
    let mut time_ms = None;
    if ext_type == 0x09 {
        if let Some(t) = probe(0) {
            push("ext_temperature", t);
        }
        push("bat_status", f64::from(bytes[4] >> 6));
        time_ms = Some(i64::from(be32(bytes, 7)) * 1000);
    } else {
        push(
            "battery_v",
            scaled(f64::from(be16(bytes, 0) & 0x3FFF), 0.001),
        );
        push("bat_status", f64::from(bytes[0] >> 6));
    }
    // Type 15 carries the probe's ROM id in bytes 2–5 instead.
    if ext_type != 0x0F {
        push(
            "temperature",
            scaled(f64::from(be16(bytes, 2) as i16), 0.01),
        );
        push("humidity", scaled(f64::from(be16(bytes, 4) & 0x0FFF), 0.1));
    }
    push("ext_sensor_type", f64::from(ext_type));
    if ext_type != 0 {
        push("ext_sensor_connected", if disconnected { 0.0 } else { 1.0 });
    }
    if !disconnected {
        match ext_type {
            0x01 => {
                if let Some(t) = probe(7) {
                    push("ext_temperature", t);
                }
            }
            0x04 => {
                push("ext_pin_level", f64::from(u8::from(bytes[7] != 0)));
                push("ext_interrupt", f64::from(u8::from(bytes[8] != 0)));
            }
            0x05 => push("illuminance", f64::from(be16(bytes, 7))),
            0x06 => push("adc_voltage", scaled(f64::from(be16(bytes, 7)), 0.001)),
            0x07 => push("ext_count", f64::from(be16(bytes, 7))),
            0x08 => push("ext_count", f64::from(be32(bytes, 7))),
            _ => {}
        }
    }
    if let Some(ms) = time_ms {
        for v in &mut out {
            v.time_ms = Some(ms);
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::lorawan::codecs::tests::{hex, values};

    /// The LHT65 user manual's uplink example, also
    /// TheThingsNetwork/lorawan-devices `vendor/dragino/lht65-codec.yaml`
    /// "Temperature": BatV 3.062, Bat_status 3, TempC_SHT 28.29,
    /// Hum_SHT 88.6, Ext_sensor "Temperature Sensor", TempC_DS 27.81.
    pub(crate) const LHT65_EXAMPLE: &str = "CBF6 0B0D 0376 01 0ADD 7FFF";

    #[test]
    fn lht65_manual_example() {
        assert_eq!(
            decode_lht65(&hex(LHT65_EXAMPLE)),
            Ok(values(&[
                ("battery_v", 3.062),
                ("bat_status", 3.0),
                ("temperature", 28.29),
                ("humidity", 88.6),
                ("ext_sensor_type", 1.0),
                ("ext_sensor_connected", 1.0),
                ("ext_temperature", 27.81),
            ]))
        );
    }

    #[test]
    fn flags_and_other_external_sensors() {
        // No external sensor; negative SHT temperature 0xFF38 = −2.00 °C.
        assert_eq!(
            decode_lht65(&hex("8BF6 FF38 0200 00 7FFF 7FFF")),
            Ok(values(&[
                ("battery_v", 3.062),
                ("bat_status", 2.0),
                ("temperature", -2.0),
                ("humidity", 51.2),
                ("ext_sensor_type", 0.0),
            ]))
        );
        // Probe configured but its cable unplugged (bit 7): no value.
        let got = decode_lht65(&hex("CBF6 0B0D 0376 81 0ADD 7FFF")).unwrap();
        assert_eq!(
            got.last(),
            Some(&DecodedValue::new("ext_sensor_connected", 0.0))
        );
        // Probe answering 0x7FFF: present but no reading.
        let got = decode_lht65(&hex("CBF6 0B0D 0376 01 7FFF 7FFF")).unwrap();
        assert!(got.iter().all(|v| v.metric != "ext_temperature"), "{got:?}");
        // Illuminance, ADC and a 4-byte counter.
        let ext = |hex_frame: &str| decode_lht65(&hex(hex_frame)).unwrap().pop();
        assert_eq!(
            ext("CBF6 0B0D 0376 05 01F4 0000"),
            Some(DecodedValue::new("illuminance", 500.0))
        );
        assert_eq!(
            ext("CBF6 0B0D 0376 06 0CE4 0000"),
            Some(DecodedValue::new("adc_voltage", 3.3))
        );
        assert_eq!(
            ext("CBF6 0B0D 0376 08 0001 0000"),
            Some(DecodedValue::new("ext_count", 65536.0))
        );
        // A type this decoder does not know: the rest still decodes.
        assert_eq!(
            ext("CBF6 0B0D 0376 0C 0001 0000"),
            Some(DecodedValue::new("ext_sensor_connected", 1.0))
        );
    }

    #[test]
    fn datalog_type_stamps_the_frame_with_the_device_clock() {
        // DS18B20 23.45 °C in bytes 0–1, status 3 in byte 4, time
        // 0x6A1F6F30 = 1780444976 s.
        let got = decode_lht65(&hex("0929 0B0D C376 09 6A1F6F30")).unwrap();
        assert_eq!(got[0].metric, "ext_temperature");
        assert_eq!(got[0].value, 23.45);
        assert_eq!(
            got[1],
            DecodedValue {
                time_ms: Some(1_780_444_976_000),
                ..DecodedValue::new("bat_status", 3.0)
            }
        );
        assert!(got.iter().all(|v| v.time_ms == Some(1_780_444_976_000)));
    }

    #[test]
    fn wrong_lengths_are_errors() {
        assert_eq!(decode_lht65(&[]), Err(CodecError::Empty));
        let full = hex(LHT65_EXAMPLE);
        for cut in 1..full.len() {
            assert_eq!(
                decode_lht65(&full[..cut]),
                Err(CodecError::Length {
                    expected: 11,
                    found: cut
                })
            );
        }
        let mut long = full.clone();
        long.push(0);
        assert!(decode_lht65(&long).is_err());
    }
}
