//! Browan Tabs TBHH100 temperature and humidity sensor (FPort 103), laid
//! out in Browan's "Tabs Temperature & Humidity Sensor" payload document:
//!
//! | byte | field |
//! |---|---|
//! | 0 | status (bits 7–3; bit 0 of them: a threshold event) |
//! | 1 | battery: bits 3–0, V = (25 + n) / 10 |
//! | 2 | temperature: bits 6–0, °C = n − 32 |
//! | 3 | humidity: bits 6–0, % |
//! | 4–7 | reserved (0xFF; CO₂ and VOC on the TBHV110) |
//!
//! Older firmware sends the first four bytes only; both lengths decode.

use super::{scaled, CodecError, DecodedValue};

/// The four bytes every TBHH100 frame carries.
const MIN_LEN: usize = 4;
/// With the four reserved bytes.
const FULL_LEN: usize = 8;

/// Decodes one TBHH100 uplink.
pub(super) fn decode_tbhh100(bytes: &[u8]) -> Result<Vec<DecodedValue>, CodecError> {
    let [status, battery, temperature, humidity] = match bytes {
        [] => return Err(CodecError::Empty),
        [s, b, t, h] | [s, b, t, h, _, _, _, _] => [*s, *b, *t, *h],
        _ => {
            return Err(CodecError::Length {
                expected: if bytes.len() < MIN_LEN {
                    MIN_LEN
                } else {
                    FULL_LEN
                },
                found: bytes.len(),
            })
        }
    };
    Ok(vec![
        DecodedValue::new("status", f64::from(status >> 3)),
        DecodedValue::new("battery_v", scaled(f64::from(25 + (battery & 0x0F)), 0.1)),
        DecodedValue::new("temperature", f64::from(i16::from(temperature & 0x7F) - 32)),
        DecodedValue::new("humidity", f64::from(humidity & 0x7F)),
    ])
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::lorawan::codecs::tests::{hex, values};

    /// TheThingsNetwork/lorawan-devices `vendor/browan/tbhh100-codec.yaml`,
    /// "Temperature & Humidity" (FPort 103): status 1, battery 3.6,
    /// temperature 21, humidity 34.
    pub(crate) const TBHH100_EXAMPLE: &str = "08AB3522FFFFFFFF";

    #[test]
    fn tbhh100_vendor_example() {
        let want = values(&[
            ("status", 1.0),
            ("battery_v", 3.6),
            ("temperature", 21.0),
            ("humidity", 34.0),
        ]);
        assert_eq!(decode_tbhh100(&hex(TBHH100_EXAMPLE)), Ok(want.clone()));
        assert_eq!(decode_tbhh100(&hex("08AB3522")), Ok(want));
    }

    #[test]
    fn below_zero_and_reserved_bits() {
        // Temperature 0x0A → −22 °C; bit 7 of bytes 2 and 3 is not data.
        assert_eq!(
            decode_tbhh100(&hex("00008AE4")),
            Ok(values(&[
                ("status", 0.0),
                ("battery_v", 2.5),
                ("temperature", -22.0),
                ("humidity", 100.0),
            ]))
        );
    }

    #[test]
    fn wrong_lengths_are_errors() {
        assert_eq!(decode_tbhh100(&[]), Err(CodecError::Empty));
        for len in [1, 2, 3, 5, 6, 7, 9, 12] {
            let got = decode_tbhh100(&vec![0x08; len]);
            assert_eq!(got.map_err(|e| e.kind()), Err("wrong_length"), "{len}");
        }
    }
}
