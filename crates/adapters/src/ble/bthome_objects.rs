//! The BTHome v2 object table: id → name, size, sign and factor.
//!
//! From bthome.io's format page ("Sensor data", "Binary Sensor data",
//! "Events", "Device information", "Misc data"), completed with the ids
//! 0x60–0x64 that bthome-ble (the reference receiver, `const.py`
//! `MEAS_TYPES`) knows. An id missing here stops parsing, as the format
//! page requires, so a wrong size would be worse than a missing entry.
//!
//! Names are the page's property names in snake_case. Where one name has
//! two units in the table, the second unit is in the name (`mass_kg` /
//! `mass_lb`, `distance_mm` / `distance_m`, `volume` in L / `volume_ml`),
//! and a binary sensor whose name is also a sensor's says its state
//! (`battery_low`, `power_on`, `moisture_wet`, `gas_detected`), so no
//! series ever mixes two units or a flag with a number.

/// How the integer becomes a value in the object's unit. Division by a
/// power of ten gives the correctly rounded decimal (2506 / 100 = 25.06,
/// where 2506 × 0.01 = 25.060000000000002).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    One,
    Div(f64),
    Mul(f64),
}

impl Scale {
    pub fn apply(self, raw: i64) -> f64 {
        // |raw| < 2^32: exact in an f64.
        let v = raw as f64;
        match self {
            Self::One => v,
            Self::Div(d) => v / d,
            Self::Mul(m) => v * m,
        }
    }
}

/// What an object id carries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// A number: `len` bytes little-endian, signed or not, then scaled.
    Number { len: u8, signed: bool, scale: Scale },
    /// A binary sensor: one byte, 0 off, 1 on ("Binary sensor data should
    /// always be an uint8 of a single byte").
    Binary,
    /// 0x00: packet id, uint8, for de-duplication ("Misc data").
    PacketId,
    /// 0x50: seconds since 1970 UTC, uint32.
    Timestamp,
    /// 0xF0: device type id, uint16.
    DeviceTypeId,
    /// 0xF1 (4 bytes) / 0xF2 (3 bytes): firmware version.
    Firmware { len: u8 },
    /// 0x3A: button event, one byte.
    Button,
    /// 0x3C: dimmer event, event byte and steps byte.
    Dimmer,
    /// 0x53: UTF-8 text, a length byte then the bytes.
    Text,
    /// 0x54: raw bytes, a length byte then the bytes.
    Raw,
}

impl Kind {
    /// Bytes after the id, when fixed (`None` for text and raw).
    pub fn fixed_len(self) -> Option<usize> {
        Some(match self {
            Self::Number { len, .. } | Self::Firmware { len } => usize::from(len),
            Self::Binary | Self::PacketId | Self::Button => 1,
            Self::DeviceTypeId | Self::Dimmer => 2,
            Self::Timestamp => 4,
            Self::Text | Self::Raw => return None,
        })
    }
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spec {
    pub name: &'static str,
    pub kind: Kind,
}

const fn num(name: &'static str, len: u8, signed: bool, scale: Scale) -> Option<Spec> {
    Some(Spec {
        name,
        kind: Kind::Number { len, signed, scale },
    })
}

const fn bin(name: &'static str) -> Option<Spec> {
    Some(Spec {
        name,
        kind: Kind::Binary,
    })
}

const fn meta(name: &'static str, kind: Kind) -> Option<Spec> {
    Some(Spec { name, kind })
}

const U: bool = false;
const S: bool = true;
const ONE: Scale = Scale::One;
const D10: Scale = Scale::Div(10.0);
const D100: Scale = Scale::Div(100.0);
const D1000: Scale = Scale::Div(1000.0);
const D1E6: Scale = Scale::Div(1_000_000.0);

/// The row for `id`, or `None` for an id this receiver does not know.
#[rustfmt::skip]
pub fn spec(id: u8) -> Option<Spec> {
    match id {
        0x00 => meta("packet_id", Kind::PacketId),
        0x01 => num("battery", 1, U, ONE),              // %
        0x02 => num("temperature", 2, S, D100),         // °C
        0x03 => num("humidity", 2, U, D100),            // %
        0x04 => num("pressure", 3, U, D100),            // hPa
        0x05 => num("illuminance", 3, U, D100),         // lx
        0x06 => num("mass_kg", 2, U, D100),             // kg
        0x07 => num("mass_lb", 2, U, D100),             // lb
        0x08 => num("dewpoint", 2, S, D100),            // °C
        0x09 => num("count", 1, U, ONE),
        0x0A => num("energy", 3, U, D1000),             // kWh
        0x0B => num("power", 3, U, D100),               // W
        0x0C => num("voltage", 2, U, D1000),            // V
        0x0D => num("pm2_5", 2, U, ONE),                // µg/m³
        0x0E => num("pm10", 2, U, ONE),                 // µg/m³
        0x0F => bin("generic_boolean"),
        0x10 => bin("power_on"),
        0x11 => bin("opening"),
        0x12 => num("co2", 2, U, ONE),                  // ppm
        0x13 => num("tvoc", 2, U, ONE),                 // µg/m³
        0x14 => num("moisture", 2, U, D100),            // %
        0x15 => bin("battery_low"),
        0x16 => bin("battery_charging"),
        0x17 => bin("carbon_monoxide"),
        0x18 => bin("cold"),
        0x19 => bin("connectivity"),
        0x1A => bin("door"),
        0x1B => bin("garage_door"),
        0x1C => bin("gas_detected"),
        0x1D => bin("heat"),
        0x1E => bin("light"),
        0x1F => bin("lock"),
        0x20 => bin("moisture_wet"),
        0x21 => bin("motion"),
        0x22 => bin("moving"),
        0x23 => bin("occupancy"),
        0x24 => bin("plug"),
        0x25 => bin("presence"),
        0x26 => bin("problem"),
        0x27 => bin("running"),
        0x28 => bin("safety"),
        0x29 => bin("smoke"),
        0x2A => bin("sound"),
        0x2B => bin("tamper"),
        0x2C => bin("vibration"),
        0x2D => bin("window"),
        0x2E => num("humidity", 1, U, ONE),             // %
        0x2F => num("moisture", 1, U, ONE),             // %
        0x3A => meta("button", Kind::Button),
        0x3C => meta("dimmer", Kind::Dimmer),
        0x3D => num("count", 2, U, ONE),
        0x3E => num("count", 4, U, ONE),
        0x3F => num("rotation", 2, S, D10),             // °
        0x40 => num("distance_mm", 2, U, ONE),          // mm
        0x41 => num("distance_m", 2, U, D10),           // m
        0x42 => num("duration", 3, U, D1000),           // s
        0x43 => num("current", 2, U, D1000),            // A
        0x44 => num("speed", 2, U, D100),               // m/s
        0x45 => num("temperature", 2, S, D10),          // °C
        0x46 => num("uv_index", 1, U, D10),
        0x47 => num("volume", 2, U, D10),               // L
        0x48 => num("volume_ml", 2, U, ONE),            // mL
        0x49 => num("volume_flow_rate", 2, U, D1000),   // m³/h
        0x4A => num("voltage", 2, U, D10),              // V
        0x4B => num("gas", 3, U, D1000),                // m³
        0x4C => num("gas", 4, U, D1000),                // m³
        0x4D => num("energy", 4, U, D1000),             // kWh
        0x4E => num("volume", 4, U, D1000),             // L
        0x4F => num("water", 4, U, D1000),              // L
        0x50 => meta("timestamp", Kind::Timestamp),
        0x51 => num("acceleration", 2, U, D1000),       // m/s²
        0x52 => num("gyroscope", 2, U, D1000),          // °/s
        0x53 => meta("text", Kind::Text),
        0x54 => meta("raw", Kind::Raw),
        0x55 => num("volume_storage", 4, U, D1000),     // L
        0x56 => num("conductivity", 2, U, ONE),         // µS/cm
        0x57 => num("temperature", 1, S, ONE),          // °C
        0x58 => num("temperature", 1, S, Scale::Mul(0.35)), // °C
        0x59 => num("count", 1, S, ONE),
        0x5A => num("count", 2, S, ONE),
        0x5B => num("count", 4, S, ONE),
        0x5C => num("power", 4, S, D100),               // W
        0x5D => num("current", 2, S, D1000),            // A
        0x5E => num("direction", 2, U, D100),           // °
        0x5F => num("precipitation", 2, U, D10),        // mm (bthome-ble: factor 0.1)
        0x60 => num("channel", 1, U, ONE),
        0x61 => num("rotational_speed", 2, U, ONE),     // rpm
        0x62 => num("speed", 4, S, D1E6),               // m/s
        0x63 => num("acceleration", 4, S, D1E6),        // m/s²
        0x64 => num("light_level", 1, U, ONE),
        0xF0 => meta("device_type_id", Kind::DeviceTypeId),
        0xF1 => meta("firmware_version", Kind::Firmware { len: 4 }),
        0xF2 => meta("firmware_version", Kind::Firmware { len: 3 }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_number_fits_an_i64_and_scales_to_a_finite_value() {
        for id in 0..=255u8 {
            if let Some(Spec {
                kind: Kind::Number { len, scale, .. },
                ..
            }) = spec(id)
            {
                assert!((1..=4).contains(&len), "0x{id:02x}");
                assert!(scale.apply(i64::from(u32::MAX)).is_finite());
            }
        }
    }

    #[test]
    fn the_table_has_every_documented_id() {
        let known = (0..=255u8).filter(|&id| spec(id).is_some()).count();
        // 0x00–0x2F minus the unassigned 0x30–0x39, 0x3B; 0x3A–0x64; 0xF0–0xF2.
        assert_eq!(known, 0x30 + 2 + (0x64 - 0x3D + 1) + 3);
        assert_eq!(spec(0x3B), None);
        assert_eq!(spec(0x65), None);
        assert_eq!(spec(0xFE), None);
    }
}
