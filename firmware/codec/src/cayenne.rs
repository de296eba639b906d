//! Cayenne Low Power Payload: repeated `[channel:1][type:1][value:N]`,
//! big-endian, type = IPSO object id − 3200. The types, sizes and
//! resolutions are those the gateway decodes (the myDevices table plus
//! ElectronicCats' extended types), and it names each value
//! `<type>_<channel>` as The Things Stack does.

use crate::{scale, EncodeError};

/// A Cayenne LPP data type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)] // The names are the types'; sizes are in `layout`.
pub enum LppType {
    DigitalIn,
    DigitalOut,
    AnalogIn,
    AnalogOut,
    GenericSensor,
    Luminosity,
    Presence,
    Temperature,
    RelativeHumidity,
    Accelerometer,
    BarometricPressure,
    Voltage,
    Current,
    Frequency,
    Percentage,
    Altitude,
    Power,
    Distance,
    Energy,
    Direction,
    UnixTime,
    Gyrometer,
    Gps,
    Switch,
    Concentration,
    Colour,
}

/// How one type is laid out: type byte, bytes per component, signedness,
/// units per LSB inverted (10 for 0.1), component count.
struct Layout {
    id: u8,
    name: &'static str,
    width: usize,
    signed: bool,
    per_unit: f64,
    parts: usize,
}

const fn l(id: u8, name: &'static str, width: usize, signed: bool, per_unit: f64) -> Layout {
    Layout {
        id,
        name,
        width,
        signed,
        per_unit,
        parts: 1,
    }
}

const fn three(layout: Layout) -> Layout {
    Layout { parts: 3, ..layout }
}

/// GPS altitude, the one component with its own resolution. 0.01 m.
const GPS_ALTITUDE_PER_UNIT: f64 = 100.0;

impl LppType {
    /// Every type, in type-byte order.
    pub const ALL: [LppType; 26] = [
        Self::DigitalIn,
        Self::DigitalOut,
        Self::AnalogIn,
        Self::AnalogOut,
        Self::GenericSensor,
        Self::Luminosity,
        Self::Presence,
        Self::Temperature,
        Self::RelativeHumidity,
        Self::Accelerometer,
        Self::BarometricPressure,
        Self::Voltage,
        Self::Current,
        Self::Frequency,
        Self::Percentage,
        Self::Altitude,
        Self::Power,
        Self::Distance,
        Self::Energy,
        Self::Direction,
        Self::UnixTime,
        Self::Gyrometer,
        Self::Gps,
        Self::Switch,
        Self::Concentration,
        Self::Colour,
    ];

    fn layout(self) -> Layout {
        match self {
            Self::DigitalIn => l(0x00, "digital_in", 1, false, 1.0), // 1 byte
            Self::DigitalOut => l(0x01, "digital_out", 1, false, 1.0), // 1 byte
            Self::AnalogIn => l(0x02, "analog_in", 2, true, 100.0),  // 2 bytes, 0.01 signed
            Self::AnalogOut => l(0x03, "analog_out", 2, true, 100.0), // 2 bytes, 0.01 signed
            Self::GenericSensor => l(0x64, "generic_sensor", 4, false, 1.0), // 4 bytes
            Self::Luminosity => l(0x65, "luminosity", 2, false, 1.0), // 2 bytes, 1 lux
            Self::Presence => l(0x66, "presence", 1, false, 1.0),    // 1 byte
            Self::Temperature => l(0x67, "temperature", 2, true, 10.0), // 2 bytes, 0.1 °C signed
            Self::RelativeHumidity => l(0x68, "relative_humidity", 1, false, 2.0), // 1 byte, 0.5 %
            Self::Accelerometer => three(l(0x71, "accelerometer", 2, true, 1000.0)), // 3 × 2 bytes, 0.001 G
            Self::BarometricPressure => l(0x73, "barometric_pressure", 2, false, 10.0), // 2 bytes, 0.1 hPa
            Self::Voltage => l(0x74, "voltage", 2, false, 100.0), // 2 bytes, 0.01 V
            Self::Current => l(0x75, "current", 2, false, 1000.0), // 2 bytes, 0.001 A
            Self::Frequency => l(0x76, "frequency", 4, false, 1.0), // 4 bytes, 1 Hz
            Self::Percentage => l(0x78, "percentage", 1, false, 1.0), // 1 byte, 1 %
            Self::Altitude => l(0x79, "altitude", 2, true, 1.0),  // 2 bytes, 1 m signed
            Self::Power => l(0x80, "power", 2, false, 1.0),       // 2 bytes, 1 W
            Self::Distance => l(0x82, "distance", 4, false, 1000.0), // 4 bytes, 0.001 m
            Self::Energy => l(0x83, "energy", 4, false, 1000.0),  // 4 bytes, 0.001 kWh
            Self::Direction => l(0x84, "direction", 2, false, 1.0), // 2 bytes, 1°
            Self::UnixTime => l(0x85, "unix_time", 4, false, 1.0), // 4 bytes, 1 s
            Self::Gyrometer => three(l(0x86, "gyrometer", 2, true, 100.0)), // 3 × 2 bytes, 0.01 °/s
            Self::Gps => three(l(0x88, "gps", 3, true, 10000.0)), // 3 × 3 bytes, 0.0001° (alt 0.01 m)
            Self::Switch => l(0x8E, "switch", 1, false, 1.0),     // 1 byte
            Self::Concentration => l(0x8F, "concentration", 2, false, 1.0), // 2 bytes, 1 ppm
            Self::Colour => three(l(0x90, "colour", 1, false, 1.0)), // 3 × 1 byte
        }
    }

    /// The type byte on the wire.
    pub fn id(self) -> u8 {
        self.layout().id
    }

    /// The name the gateway gives it (`temperature` → `temperature_3`).
    pub fn name(self) -> &'static str {
        self.layout().name
    }

    /// Values it takes: 3 for accelerometer, gyrometer, GPS and colour, else 1.
    pub fn components(self) -> usize {
        self.layout().parts
    }

    /// Bytes of one item: channel, type and value.
    pub fn item_len(self) -> usize {
        let l = self.layout();
        2 + l.width * l.parts
    }

    /// The type with this name, as the gateway names it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// A Cayenne LPP payload built in a caller's buffer (51 bytes is the
/// LoRaWAN EU868 DR0 limit, a typical size).
///
/// ```
/// use firmware_codec::{Lpp, LppType};
/// let mut buf = [0u8; 51];
/// let mut lpp = Lpp::new(&mut buf);
/// lpp.add(3, LppType::Temperature, &[27.2]).unwrap();
/// lpp.add(5, LppType::Temperature, &[25.5]).unwrap();
/// assert_eq!(lpp.as_bytes(), [0x03, 0x67, 0x01, 0x10, 0x05, 0x67, 0x00, 0xFF]);
/// ```
pub struct Lpp<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Lpp<'a> {
    /// An empty payload writing into `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, len: 0 }
    }

    /// Appends one item. On error nothing is appended.
    ///
    /// # Errors
    /// [`EncodeError::WrongValueCount`], [`EncodeError::BufferTooSmall`],
    /// or a value error naming the type.
    pub fn add(&mut self, channel: u8, ty: LppType, values: &[f64]) -> Result<(), EncodeError> {
        let layout = ty.layout();
        if values.len() != layout.parts {
            return Err(EncodeError::WrongValueCount {
                field: layout.name,
                expected: layout.parts,
                found: values.len(),
            });
        }
        let needed = self.len + ty.item_len();
        let len = self.buf.len();
        let item = self
            .buf
            .get_mut(self.len..needed)
            .ok_or(EncodeError::BufferTooSmall { needed, len })?;
        let bits = 8 * layout.width as u32;
        let (min, max) = if layout.signed {
            (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1)
        } else {
            (0, (1i64 << bits) - 1)
        };
        // Scaled into a scratch array first, so that a bad third component
        // leaves the buffer as it was.
        let mut raws = [0i64; 3];
        for (i, (raw, value)) in raws.iter_mut().zip(values).enumerate() {
            let per_unit = if ty == LppType::Gps && i == 2 {
                GPS_ALTITUDE_PER_UNIT
            } else {
                layout.per_unit
            };
            *raw = scale(*value, per_unit, min, max, layout.name)?;
        }
        item[0] = channel;
        item[1] = layout.id;
        for (raw, out) in raws.iter().zip(item[2..].chunks_exact_mut(layout.width)) {
            // Two's complement, big-endian, the low `width` bytes.
            let be = raw.to_be_bytes();
            out.copy_from_slice(&be[8 - layout.width..]);
        }
        self.len = needed;
        Ok(())
    }

    /// The payload so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first item.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_and_errors() {
        let mut buf = [0u8; 16];
        let mut lpp = Lpp::new(&mut buf);
        lpp.add(1, LppType::Temperature, &[-4.1]).unwrap();
        lpp.add(6, LppType::Accelerometer, &[1.234, -1.234, 0.0])
            .unwrap();
        assert_eq!(
            lpp.as_bytes(),
            [
                0x01, 0x67, 0xFF, 0xD7, // ch1 temperature −41
                0x06, 0x71, 0x04, 0xD2, 0xFB, 0x2E, 0x00, 0x00, // ch6 1234, −1234, 0
            ]
        );
        assert_eq!(
            lpp.add(2, LppType::Accelerometer, &[1.0]),
            Err(EncodeError::WrongValueCount {
                field: "accelerometer",
                expected: 3,
                found: 1
            })
        );
        // Exactly fills the buffer: 12 + 4 bytes.
        assert_eq!(lpp.add(2, LppType::Voltage, &[1.0]), Ok(()));
        assert_eq!(
            lpp.add(3, LppType::Presence, &[1.0]),
            Err(EncodeError::BufferTooSmall {
                needed: 19,
                len: 16
            })
        );
        assert_eq!(lpp.len(), 16);
        let mut buf = [0u8; 3];
        assert_eq!(
            Lpp::new(&mut buf).add(2, LppType::RelativeHumidity, &[128.0]),
            Err(EncodeError::OutOfRange {
                field: "relative_humidity"
            })
        );
    }

    #[test]
    fn failed_component_leaves_the_payload_unchanged() {
        let mut buf = [0u8; 16];
        let mut lpp = Lpp::new(&mut buf);
        assert_eq!(
            lpp.add(1, LppType::Gyrometer, &[1.0, 2.0, 400.0]),
            Err(EncodeError::OutOfRange { field: "gyrometer" })
        );
        assert!(lpp.is_empty());
        assert_eq!(buf, [0u8; 16]);
    }

    #[test]
    fn gps_altitude_has_its_own_resolution_and_names_round_trip() {
        let mut buf = [0u8; 11];
        let mut lpp = Lpp::new(&mut buf);
        lpp.add(12, LppType::Gps, &[52.3655, 4.8885, 21.54])
            .unwrap();
        assert_eq!(
            lpp.as_bytes(),
            [0x0C, 0x88, 0x07, 0xFD, 0x87, 0x00, 0xBE, 0xF5, 0x00, 0x08, 0x6A]
        );
        for t in LppType::ALL {
            assert_eq!(LppType::from_name(t.name()), Some(t));
        }
        assert_eq!(LppType::from_name("temp"), None);
    }
}
