//! Register maps shipped with the gateway, so `profile = "eastron_sdm120"`
//! is all a common device needs. Each cites the vendor document its
//! addresses come from; addresses here are 0-based protocol addresses
//! (the documents' "30001" is address 0 of the input registers).
//!
//! A device's own `registers` add to its profile's, and replace one of the
//! same `metric`.

use super::registers::{Order, Register, Table, ValueType};

/// One shipped map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// The `profile = "…"` value.
    pub name: &'static str,
    pub manufacturer: &'static str,
    pub model: &'static str,
    /// The vendor document the addresses come from.
    pub source: &'static str,
    pub registers: &'static [Entry],
}

/// A register of a profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry {
    pub metric: &'static str,
    pub table: Table,
    pub address: u16,
    pub ty: ValueType,
    pub scale: f64,
    pub unit: &'static str,
}

const fn f32_input(metric: &'static str, address: u16, unit: &'static str) -> Entry {
    Entry {
        metric,
        table: Table::Input,
        address,
        ty: ValueType::F32,
        scale: 1.0,
        unit,
    }
}

/// Eastron SDM120-Modbus, single-phase DIN-rail meter. Source: Eastron,
/// "SDM120 Modbus Protocol" (input registers, function 04, IEEE 754
/// float, two registers each, high word first), parameter numbers 1 to 172:
/// 30001 voltage, 30007 current, 30013 active power, 30019 apparent power,
/// 30025 reactive power, 30031 power factor, 30071 frequency, 30073/30075
/// import/export active energy, 30343 total active energy.
const SDM120: &[Entry] = &[
    f32_input("voltage", 0x0000, "V"),
    f32_input("current", 0x0006, "A"),
    f32_input("power", 0x000C, "W"),
    f32_input("apparent_power", 0x0012, "VA"),
    f32_input("reactive_power", 0x0018, "var"),
    f32_input("power_factor", 0x001E, ""),
    f32_input("frequency", 0x0046, "Hz"),
    f32_input("import_energy", 0x0048, "kWh"),
    f32_input("export_energy", 0x004A, "kWh"),
    f32_input("energy", 0x0156, "kWh"),
];

/// Eastron SDM630-Modbus (V2), three-phase meter. Source: Eastron,
/// "SDM630 Modbus Protocol" (input registers, function 04, IEEE 754
/// float, high word first): 30001–30005 phase voltages L-N, 30007–30011
/// phase currents, 30013–30017 phase active powers, 30043 average
/// voltage L-N, 30049 sum of line currents, 30053 total system power,
/// 30063 total system power factor, 30071 frequency, 30073/30075 total
/// import/export active energy, 30343 total active energy.
const SDM630: &[Entry] = &[
    f32_input("voltage_l1", 0x0000, "V"),
    f32_input("voltage_l2", 0x0002, "V"),
    f32_input("voltage_l3", 0x0004, "V"),
    f32_input("current_l1", 0x0006, "A"),
    f32_input("current_l2", 0x0008, "A"),
    f32_input("current_l3", 0x000A, "A"),
    f32_input("power_l1", 0x000C, "W"),
    f32_input("power_l2", 0x000E, "W"),
    f32_input("power_l3", 0x0010, "W"),
    f32_input("voltage", 0x002A, "V"),
    f32_input("current", 0x0030, "A"),
    f32_input("power", 0x0034, "W"),
    f32_input("power_factor", 0x003E, ""),
    f32_input("frequency", 0x0046, "Hz"),
    f32_input("import_energy", 0x0048, "kWh"),
    f32_input("export_energy", 0x004A, "kWh"),
    f32_input("energy", 0x0156, "kWh"),
];

const fn tenths(metric: &'static str, address: u16) -> Entry {
    Entry {
        metric,
        table: Table::Input,
        address,
        ty: ValueType::I16,
        scale: 0.1,
        unit: "°C",
    }
}

/// Systemair SAVE air handling units with the SAVE Touch controller (VTR,
/// VSR, VTC). Source: Systemair, "Modbus variable list SAVE Touch"
/// (document 40903 on systemair.com), where registers are numbered from 1:
/// 12102 REG_SENSOR_OAT outdoor, 12103 REG_SENSOR_SAT supply, 12104
/// REG_SENSOR_RAT room, 12105 REG_SENSOR_EAT extract air temperature (°C
/// × 10, signed), 12136 REG_SENSOR_RHS_PDM relative humidity (%), 1161
/// REG_USERMODE_MODE (0 auto, 1 manual, 2 crowded, 3 refresh, 4
/// fireplace, 5 away, 6 holiday, …).
const SYSTEMAIR_SAVE: &[Entry] = &[
    tenths("outdoor_temperature", 12101),
    tenths("supply_temperature", 12102),
    tenths("room_temperature", 12103),
    tenths("extract_temperature", 12104),
    Entry {
        metric: "humidity",
        table: Table::Input,
        address: 12135,
        ty: ValueType::U16,
        scale: 1.0,
        unit: "%",
    },
    Entry {
        metric: "user_mode",
        table: Table::Input,
        address: 1160,
        ty: ValueType::U16,
        scale: 1.0,
        unit: "",
    },
];

/// Every shipped profile.
pub const PROFILES: &[Profile] = &[
    Profile {
        name: "eastron_sdm120",
        manufacturer: "Eastron",
        model: "SDM120",
        source: "Eastron SDM120 Modbus Protocol, input registers",
        registers: SDM120,
    },
    Profile {
        name: "eastron_sdm630",
        manufacturer: "Eastron",
        model: "SDM630",
        source: "Eastron SDM630 Modbus Protocol, input registers",
        registers: SDM630,
    },
    Profile {
        name: "systemair_save",
        manufacturer: "Systemair",
        model: "SAVE air handling unit",
        source: "Systemair Modbus variable list SAVE Touch (40903)",
        registers: SYSTEMAIR_SAVE,
    },
];

/// The profile named `name`.
pub fn find(name: &str) -> Option<&'static Profile> {
    PROFILES.iter().find(|p| p.name == name)
}

/// The names, for a problem that lists them.
pub fn names() -> String {
    PROFILES
        .iter()
        .map(|p| format!("\"{}\"", p.name))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Profile {
    /// Its registers, checked like a device's own.
    pub fn registers(&self) -> Vec<Register> {
        self.registers
            .iter()
            .map(|e| Register {
                metric: e.metric.to_string(),
                table: e.table,
                address: e.address,
                ty: e.ty,
                order: Order::Abcd,
                scale: e.scale,
                offset: 0.0,
                unit: Some(e.unit.to_string()),
                writable: false,
                min: None,
                max: None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_core::MetricName;

    #[test]
    fn the_sdm120_has_the_vendor_addresses_and_the_common_metric_names() {
        let p = find("eastron_sdm120");
        let regs = p.map(|p| p.registers()).unwrap_or_default();
        let at = |m: &str| regs.iter().find(|r| r.metric == m).map(|r| r.address);
        assert_eq!(at("voltage"), Some(0x0000));
        assert_eq!(at("current"), Some(0x0006));
        assert_eq!(at("power"), Some(0x000C));
        assert_eq!(at("energy"), Some(0x0156));
        assert_eq!(at("frequency"), Some(0x0046));
        assert_eq!(at("power_factor"), Some(0x001E));
        assert!(regs
            .iter()
            .all(|r| r.ty == ValueType::F32 && r.order == Order::Abcd && r.table == Table::Input));
    }

    #[test]
    fn every_profile_is_a_valid_map() {
        for p in PROFILES {
            let mut seen = std::collections::HashSet::new();
            for e in p.registers {
                assert!(MetricName::new(e.metric).is_ok(), "{} {}", p.name, e.metric);
                assert!(seen.insert(e.metric), "{} lists {} twice", p.name, e.metric);
            }
            assert!(!p.source.is_empty());
        }
        for m in [
            "voltage",
            "current",
            "power",
            "energy",
            "frequency",
            "power_factor",
        ] {
            for name in ["eastron_sdm120", "eastron_sdm630"] {
                assert!(
                    find(name).is_some_and(|p| p.registers.iter().any(|e| e.metric == m)),
                    "{name} has no {m}"
                );
            }
        }
    }
}
