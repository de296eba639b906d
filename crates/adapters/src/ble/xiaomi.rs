//! The flashed Xiaomi thermometers (LYWSD03MMC and kin): service data of the
//! Environmental Sensing UUID 0x181A, in one of two layouts told apart by
//! length (pvvx/ATC_MiThermometer README, "Custom format" and "atc1441
//! format"):
//!
//! ```text
//! PVVX custom, 15 bytes, little-endian:
//!   MAC[6] (reversed) | temperature i16 0.01 °C | humidity u16 0.01 %
//!   | battery u16 mV | battery u8 % | counter u8 | flags u8
//! ATC1441, 13 bytes, big-endian:
//!   MAC[6] | temperature i16 0.1 °C | humidity u8 % | battery u8 %
//!   | battery u16 mV | counter u8
//! ```
//!
//! Firmwares that append bytes to the custom format are accepted (15 or
//! more, issue #14); 14 bytes and fewer than 13 are neither. The frame
//! counter changes with each measurement, so equal counters are repeats
//! (`dedup`). Names and units as BTHome's: `temperature` °C, `humidity` %,
//! `battery` %, `voltage` V.

use super::advert::Mac;
use super::error::DecodeError;
use super::values::Measurements;

/// Length of the ATC1441 layout.
pub const ATC_LEN: usize = 13;
/// Length of the PVVX custom layout (at least).
pub const PVVX_LEN: usize = 15;

/// Which firmware layout a frame used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Pvvx,
    Atc1441,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Self::Pvvx => "pvvx",
            Self::Atc1441 => "atc1441",
        }
    }
}

/// One thermometer frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Thermometer {
    pub layout: Layout,
    /// The MAC the firmware put in the frame (printed order).
    pub mac: Mac,
    /// °C.
    pub temperature: f64,
    /// %.
    pub humidity: f64,
    /// %.
    pub battery: u8,
    /// V.
    pub voltage: f64,
    /// Measurement counter, for de-duplication.
    pub counter: u8,
    /// PVVX flags byte (reed switch, GPIO, trigger); `None` for ATC1441.
    pub flags: Option<u8>,
}

impl Thermometer {
    /// `temperature`, `humidity`, `battery`, `voltage`.
    pub fn values(&self) -> Measurements {
        let mut m = Measurements::default();
        m.push("temperature", self.temperature);
        m.push("humidity", self.humidity);
        m.push("battery", f64::from(self.battery));
        m.push("voltage", self.voltage);
        m
    }
}

/// Decodes 0x181A service data.
///
/// # Errors
/// [`DecodeError::Empty`], or [`DecodeError::Length`] for a length that is
/// neither layout.
pub fn decode(data: &[u8]) -> Result<Thermometer, DecodeError> {
    match data.len() {
        0 => Err(DecodeError::Empty {
            format: "PVVX/ATC1441",
        }),
        ATC_LEN => Ok(atc1441(data)),
        n if n >= PVVX_LEN => Ok(pvvx(data)),
        found => Err(DecodeError::Length {
            format: "PVVX/ATC1441",
            expected: "13 (ATC1441) or at least 15 (PVVX)",
            found,
        }),
    }
}

/// `d` is exactly 13 bytes (checked by the caller).
fn atc1441(d: &[u8]) -> Thermometer {
    Thermometer {
        layout: Layout::Atc1441,
        mac: Mac([d[0], d[1], d[2], d[3], d[4], d[5]]),
        temperature: f64::from(i16::from_be_bytes([d[6], d[7]])) / 10.0,
        humidity: f64::from(d[8]),
        battery: d[9],
        voltage: f64::from(u16::from_be_bytes([d[10], d[11]])) / 1000.0,
        counter: d[12],
        flags: None,
    }
}

/// `d` is at least 15 bytes (checked by the caller).
fn pvvx(d: &[u8]) -> Thermometer {
    Thermometer {
        layout: Layout::Pvvx,
        mac: Mac([d[5], d[4], d[3], d[2], d[1], d[0]]),
        temperature: f64::from(i16::from_le_bytes([d[6], d[7]])) / 100.0,
        humidity: f64::from(u16::from_le_bytes([d[8], d[9]])) / 100.0,
        voltage: f64::from(u16::from_le_bytes([d[10], d[11]])) / 1000.0,
        battery: d[12],
        counter: d[13],
        flags: Some(d[14]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ble::advert::parse_hex;

    #[test]
    fn pvvx_custom_frame() {
        // MAC a4:c1:38:8d:18:b2 reversed | 0x0924 = 23.40 °C | 0x1518 = 54.00 %
        // | 0x0B8B = 2955 mV | 87 % | counter 0x2A | flags 0x05
        let d = parse_hex("b2188d38c1a4240918158b0b572a05").unwrap();
        let t = decode(&d).unwrap();
        assert_eq!(
            t,
            Thermometer {
                layout: Layout::Pvvx,
                mac: Mac([0xA4, 0xC1, 0x38, 0x8D, 0x18, 0xB2]),
                temperature: 23.4,
                humidity: 54.0,
                battery: 87,
                voltage: 2.955,
                counter: 0x2A,
                flags: Some(0x05),
            }
        );
        // Below zero: 0xFF38 = −200 → −2.00 °C.
        let mut cold = d.clone();
        cold[6..8].copy_from_slice(&[0x38, 0xFF]);
        assert_eq!(decode(&cold).unwrap().temperature, -2.0);
        // A longer firmware variant keeps the same fields.
        let mut longer = d.clone();
        longer.extend([0, 0]);
        assert_eq!(decode(&longer).unwrap().temperature, 23.4);
    }

    #[test]
    fn atc1441_frame() {
        // MAC a4:c1:38:8d:18:b2 | 0x00EA = 23.4 °C | 54 % | 87 % | 0x0B8B mV | 0x2A
        let d = parse_hex("a4c1388d18b200ea36570b8b2a").unwrap();
        let t = decode(&d).unwrap();
        assert_eq!(t.layout, Layout::Atc1441);
        assert_eq!(t.mac, Mac([0xA4, 0xC1, 0x38, 0x8D, 0x18, 0xB2]));
        assert_eq!(
            (t.temperature, t.humidity, t.battery, t.voltage, t.counter),
            (23.4, 54.0, 87, 2.955, 0x2A)
        );
        let names: Vec<_> = t.values().iter().map(|m| m.name).collect();
        assert_eq!(names, ["temperature", "humidity", "battery", "voltage"]);
        let mut cold = d.clone();
        cold[6..8].copy_from_slice(&[0xFF, 0xEC]);
        assert_eq!(decode(&cold).unwrap().temperature, -2.0);
    }

    #[test]
    fn other_lengths_are_refused() {
        assert_eq!(decode(&[]).unwrap_err().kind(), "empty");
        for len in [1, 12, 14] {
            assert_eq!(
                decode(&vec![0; len]).unwrap_err().kind(),
                "wrong_length",
                "{len}"
            );
        }
    }
}
