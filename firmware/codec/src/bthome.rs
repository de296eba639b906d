//! BTHome v2 service data (bthome.io): a device-information byte, then
//! objects of `[object id][little-endian value]`. The bytes after the
//! 16-bit service UUID 0xFCD2 of an advertisement's Service Data AD
//! structure, unencrypted.

use crate::{scale, EncodeError};

/// Device information byte: BTHome version 2 in bits 5–7.
const VERSION_2: u8 = 0x40;
/// Device information bit 2: a trigger-based ("sleepy") device that
/// advertises on events rather than regularly.
const TRIGGER_BASED: u8 = 0x04;

/// The BTHome objects the nodes send (bthome.io's format table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BtHomeObject {
    /// 0x00, u8: changes with every new reading, for de-duplication.
    PacketId,
    /// 0x01, u8, 1 %.
    Battery,
    /// 0x02, i16, 0.01 °C.
    Temperature,
    /// 0x03, u16, 0.01 %.
    Humidity,
    /// 0x04, u24, 0.01 hPa.
    Pressure,
    /// 0x05, u24, 0.01 lux.
    Illuminance,
    /// 0x0C, u16, 0.001 V.
    Voltage,
    /// 0x12, u16, 1 ppm.
    Co2,
    /// 0x2D, u8: 1 open, 0 closed.
    Window,
    /// 0x2E, u8, 1 %.
    HumidityCoarse,
    /// 0x57, i8, 1 °C.
    TemperatureCoarse,
}

impl BtHomeObject {
    /// (object id, bytes, signed, units per LSB inverted, name).
    fn layout(self) -> (u8, usize, bool, f64, &'static str) {
        match self {
            Self::PacketId => (0x00, 1, false, 1.0, "packet_id"),
            Self::Battery => (0x01, 1, false, 1.0, "battery"),
            Self::Temperature => (0x02, 2, true, 100.0, "temperature"),
            Self::Humidity => (0x03, 2, false, 100.0, "humidity"),
            Self::Pressure => (0x04, 3, false, 100.0, "pressure"),
            Self::Illuminance => (0x05, 3, false, 100.0, "illuminance"),
            Self::Voltage => (0x0C, 2, false, 1000.0, "voltage"),
            Self::Co2 => (0x12, 2, false, 1.0, "co2"),
            Self::Window => (0x2D, 1, false, 1.0, "window"),
            Self::HumidityCoarse => (0x2E, 1, false, 1.0, "humidity_coarse"),
            Self::TemperatureCoarse => (0x57, 1, true, 1.0, "temperature_coarse"),
        }
    }
}

/// BTHome v2 service data built in a caller's buffer; objects go in the
/// order added (bthome.io asks for ascending object ids).
///
/// ```
/// use firmware_codec::{BtHome, BtHomeObject};
/// let mut buf = [0u8; 16];
/// let mut frame = BtHome::new(&mut buf, false).unwrap();
/// frame.add(BtHomeObject::Temperature, 25.0).unwrap();
/// frame.add(BtHomeObject::Humidity, 50.55).unwrap();
/// assert_eq!(frame.as_bytes(), [0x40, 0x02, 0xC4, 0x09, 0x03, 0xBF, 0x13]);
/// ```
pub struct BtHome<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> BtHome<'a> {
    /// Writes the device-information byte.
    ///
    /// # Errors
    /// [`EncodeError::BufferTooSmall`] for an empty buffer.
    pub fn new(buf: &'a mut [u8], trigger_based: bool) -> Result<Self, EncodeError> {
        let len = buf.len();
        let first = buf
            .first_mut()
            .ok_or(EncodeError::BufferTooSmall { needed: 1, len })?;
        *first = VERSION_2 | if trigger_based { TRIGGER_BASED } else { 0 };
        Ok(Self { buf, len: 1 })
    }

    /// Appends one object. On error nothing is appended.
    ///
    /// # Errors
    /// [`EncodeError::BufferTooSmall`], or a value error naming the object.
    pub fn add(&mut self, object: BtHomeObject, value: f64) -> Result<(), EncodeError> {
        let (id, width, signed, per_unit, name) = object.layout();
        let bits = 8 * width as u32;
        let (min, max) = if signed {
            (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1)
        } else {
            (0, (1i64 << bits) - 1)
        };
        let raw = scale(value, per_unit, min, max, name)?;
        let needed = self.len + 1 + width;
        let len = self.buf.len();
        let item = self
            .buf
            .get_mut(self.len..needed)
            .ok_or(EncodeError::BufferTooSmall { needed, len })?;
        item[0] = id;
        // Two's complement, little-endian, the low `width` bytes.
        item[1..].copy_from_slice(&raw.to_le_bytes()[..width]);
        self.len = needed;
        Ok(())
    }

    /// The service data so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_and_errors() {
        let mut buf = [0u8; 6];
        let mut f = BtHome::new(&mut buf, true).unwrap();
        f.add(BtHomeObject::TemperatureCoarse, -22.0).unwrap();
        assert_eq!(f.as_bytes(), [0x44, 0x57, 0xEA]);
        assert_eq!(
            f.add(BtHomeObject::Battery, 256.0),
            Err(EncodeError::OutOfRange { field: "battery" })
        );
        assert_eq!(
            f.add(BtHomeObject::Pressure, 1008.83),
            Err(EncodeError::BufferTooSmall { needed: 7, len: 6 })
        );
        assert_eq!(f.as_bytes().len(), 3);
        assert!(BtHome::new(&mut [], false).is_err());
    }
}
