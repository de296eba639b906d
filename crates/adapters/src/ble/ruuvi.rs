//! RuuviTag data format 5 (RAWv2): manufacturer data of company 0x0499.
//!
//! Ruuvi docs, "Data Format 5 (RAWv2)" (communication/bluetooth-advertisements/
//! data-format-5-rawv2.md), 24 bytes, all fields big-endian two's complement:
//!
//! ```text
//! offset size field                 unit / encoding           not available
//!  0     1    data format (5)
//!  1     2    temperature  i16      0.005 °C                  0x8000
//!  3     2    humidity     u16      0.0025 %                  0xFFFF
//!  5     2    pressure     u16      Pa, offset −50 000 Pa     0xFFFF
//!  7     6    acceleration x/y/z i16 mG                       0x8000
//! 13     2    power info: 11 bits battery mV above 1600 mV    2047
//!                          5 bits TX power, 2 dBm from −40    31
//! 15     1    movement counter u8                             255
//! 16     2    measurement sequence u16                        65535
//! 18     6    MAC                                             FF:FF:FF:FF:FF:FF
//! ```
//!
//! "Not available" gives no value, never a number (FAULTS §3.5). Humidity
//! above 100 % is legal (the maximum vector is 163.835 %) and is kept.
//! Names and units are BTHome's (issue #14): pressure in hPa, the battery as
//! `voltage` in V, acceleration in m/s² (BTHome object 0x51's unit).

use super::advert::Mac;
use super::error::DecodeError;
use super::values::Measurements;

/// Ruuvi Innovations' Bluetooth SIG company id.
pub const COMPANY_ID: u16 = 0x0499;
/// Data format 5 is 24 bytes long.
pub const RAWV2_LEN: usize = 24;
/// Standard gravity, m/s² per g (the acceleration is sent in mG).
const STANDARD_GRAVITY: f64 = 9.806_65;

/// One RAWv2 frame, every field `None` when "not available".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawV2 {
    /// °C.
    pub temperature: Option<f64>,
    /// %.
    pub humidity: Option<f64>,
    /// hPa.
    pub pressure: Option<f64>,
    /// m/s².
    pub acceleration: [Option<f64>; 3],
    /// V.
    pub voltage: Option<f64>,
    /// dBm.
    pub tx_power: Option<i8>,
    pub movement_counter: Option<u8>,
    pub measurement_sequence: Option<u16>,
    pub mac: Option<Mac>,
}

impl RawV2 {
    /// The values as readings would carry them: `temperature`, `humidity`,
    /// `pressure`, `acceleration_x/y/z`, `voltage`, `tx_power`,
    /// `movement_counter`. The measurement sequence is for de-duplication
    /// and the MAC is the device's id, so neither is a value.
    pub fn values(&self) -> Measurements {
        let mut m = Measurements::default();
        m.push_some("temperature", self.temperature);
        m.push_some("humidity", self.humidity);
        m.push_some("pressure", self.pressure);
        m.push_some("acceleration_x", self.acceleration[0]);
        m.push_some("acceleration_y", self.acceleration[1]);
        m.push_some("acceleration_z", self.acceleration[2]);
        m.push_some("voltage", self.voltage);
        m.push_some("tx_power", self.tx_power.map(f64::from));
        m.push_some("movement_counter", self.movement_counter.map(f64::from));
        m
    }
}

fn be_u16(d: &[u8; RAWV2_LEN], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

fn be_i16(d: &[u8; RAWV2_LEN], at: usize) -> i16 {
    i16::from_be_bytes([d[at], d[at + 1]])
}

/// Decodes the manufacturer data of company 0x0499 (without the company id).
///
/// # Errors
/// [`DecodeError::Empty`]; [`DecodeError::UnsupportedFormat`] for another
/// data format (3, 6, E1, C5…); [`DecodeError::Length`] when format 5 is not
/// exactly 24 bytes (a shifted field is worse than no data).
pub fn decode(data: &[u8]) -> Result<RawV2, DecodeError> {
    let Some(&format) = data.first() else {
        return Err(DecodeError::Empty { format: "Ruuvi" });
    };
    if format != 5 {
        return Err(DecodeError::UnsupportedFormat { format });
    }
    let d: &[u8; RAWV2_LEN] = data.try_into().map_err(|_| DecodeError::Length {
        format: "Ruuvi RAWv2",
        expected: "24",
        found: data.len(),
    })?;
    let i16_or_none = |at| Some(be_i16(d, at)).filter(|&v| v != i16::MIN);
    let u16_or_none = |at| Some(be_u16(d, at)).filter(|&v| v != u16::MAX);
    let acc = |at| i16_or_none(at).map(|mg| f64::from(mg) / 1000.0 * STANDARD_GRAVITY);
    let power = be_u16(d, 13);
    let battery = power >> 5;
    let tx = power & 0x1F;
    let mac = Mac([d[18], d[19], d[20], d[21], d[22], d[23]]);
    Ok(RawV2 {
        // 0.005 °C steps: divide by 200 for the correctly rounded decimal.
        temperature: i16_or_none(1).map(|t| f64::from(t) / 200.0),
        // 0.0025 % steps.
        humidity: u16_or_none(3).map(|h| f64::from(h) / 400.0),
        // Pa + 50 000, reported in hPa.
        pressure: u16_or_none(5).map(|p| (f64::from(p) + 50_000.0) / 100.0),
        acceleration: [acc(7), acc(9), acc(11)],
        voltage: (battery != 2047).then(|| (f64::from(battery) + 1600.0) / 1000.0),
        // 5 bits: 0 → −40 dBm in 2 dB steps; 31 is "not available".
        tx_power: (tx != 31).then(|| -40 + 2 * tx as i8),
        movement_counter: Some(d[15]).filter(|&m| m != u8::MAX),
        measurement_sequence: Some(be_u16(d, 16)).filter(|&s| s != u16::MAX),
        mac: (mac.0 != [0xFF; 6]).then_some(mac),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ble::advert::parse_hex;

    fn g(x: f64) -> Option<f64> {
        Some(x * STANDARD_GRAVITY)
    }

    /// The three official vectors, field by field (tests/data/vectors/
    /// ruuvi_rawv2.json carries the same, checked in `vectors_tests`).
    #[test]
    fn official_vectors() {
        let valid = decode(&parse_hex("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F").unwrap())
            .unwrap();
        assert_eq!(
            valid,
            RawV2 {
                temperature: Some(24.3),
                humidity: Some(53.49),
                pressure: Some(1000.44),
                acceleration: [g(0.004), g(-0.004), g(1.036)],
                voltage: Some(2.977),
                tx_power: Some(4),
                movement_counter: Some(66),
                measurement_sequence: Some(205),
                mac: Some(Mac([0xCB, 0xB8, 0x33, 0x4C, 0x88, 0x4F])),
            }
        );
        let max = decode(&parse_hex("057FFFFFFEFFFE7FFF7FFF7FFFFFDEFEFFFECBB8334C884F").unwrap())
            .unwrap();
        assert_eq!(max.temperature, Some(163.835));
        assert_eq!(max.humidity, Some(163.835));
        assert_eq!(max.pressure, Some(1155.34));
        assert_eq!(max.acceleration, [g(32.767), g(32.767), g(32.767)]);
        assert_eq!(max.voltage, Some(3.646));
        assert_eq!(max.tx_power, Some(20));
        assert_eq!(max.movement_counter, Some(254));
        assert_eq!(max.measurement_sequence, Some(65534));
        let invalid =
            decode(&parse_hex("058000FFFFFFFF800080008000FFFFFFFFFFFFFFFFFFFFFF").unwrap())
                .unwrap();
        assert_eq!(invalid, RawV2::default());
        assert!(invalid.values().is_empty());
    }

    #[test]
    fn values_use_bthome_names() {
        let v = decode(&parse_hex("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F").unwrap())
            .unwrap()
            .values();
        let names: Vec<_> = v.iter().map(|m| m.name).collect();
        assert_eq!(
            names,
            [
                "temperature",
                "humidity",
                "pressure",
                "acceleration_x",
                "acceleration_y",
                "acceleration_z",
                "voltage",
                "tx_power",
                "movement_counter"
            ]
        );
    }

    #[test]
    fn wrong_format_or_length_is_refused() {
        assert_eq!(decode(&[]), Err(DecodeError::Empty { format: "Ruuvi" }));
        assert_eq!(
            decode(&[3, 0, 0]),
            Err(DecodeError::UnsupportedFormat { format: 3 })
        );
        let valid = parse_hex("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F").unwrap();
        for len in [1, 23, 25] {
            let mut d = valid.clone();
            d.resize(len, 0);
            assert_eq!(decode(&d).unwrap_err().kind(), "wrong_length", "{len}");
        }
    }

    #[test]
    fn each_sentinel_alone() {
        let base = parse_hex("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F").unwrap();
        let with = |at: usize, bytes: &[u8]| {
            let mut d = base.clone();
            d[at..at + bytes.len()].copy_from_slice(bytes);
            decode(&d).unwrap()
        };
        assert_eq!(with(1, &[0x80, 0x00]).temperature, None);
        assert_eq!(with(1, &[0x80, 0x01]).temperature, Some(-163.835));
        assert_eq!(with(3, &[0xFF, 0xFF]).humidity, None);
        assert_eq!(with(5, &[0xFF, 0xFF]).pressure, None);
        assert_eq!(with(5, &[0x00, 0x00]).pressure, Some(500.0));
        assert_eq!(with(9, &[0x80, 0x00]).acceleration[1], None);
        // Battery 2047 with TX power kept: 0xFFE0 | 0x16.
        let b = with(13, &[0xFF, 0xF6]);
        assert_eq!((b.voltage, b.tx_power), (None, Some(4)));
        let t = with(13, &[0xAC, 0x3F]);
        assert_eq!((t.voltage, t.tx_power), (Some(2.977), None));
        assert_eq!(with(13, &[0x00, 0x00]).tx_power, Some(-40));
        assert_eq!(with(15, &[0xFF]).movement_counter, None);
        assert_eq!(with(16, &[0xFF, 0xFF]).measurement_sequence, None);
        assert_eq!(with(18, &[0xFF; 6]).mac, None);
    }
}
