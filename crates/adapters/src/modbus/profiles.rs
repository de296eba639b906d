//! Register maps shipped with the gateway, so `profile = "eastron_sdm120"`
//! is all a common device needs. Each cites the vendor document its
//! addresses come from; addresses here are 0-based protocol addresses
//! (the documents' "30001" is address 0 of the input registers).
//!
//! A device's own `registers` add to its profile's, and replace one of the
//! same `metric`.
//!
//! A metric renamed to say what it is keeps its old name as an alias: the
//! same register read under both names (one request: the plan merges
//! them), so a dashboard made with the old name goes on working.

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
    /// The document's number for protocol address 0 (Eastron: 30001,
    /// Systemair: 1).
    pub first_number: u32,
    pub registers: &'static [Entry],
}

/// A register of a profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry {
    pub metric: &'static str,
    /// Older names of the same value, still published.
    pub aliases: &'static [&'static str],
    /// What it is, for the docs.
    pub meaning: &'static str,
    pub table: Table,
    pub address: u16,
    pub ty: ValueType,
    pub scale: f64,
    pub unit: &'static str,
}

const fn f32_input(
    metric: &'static str,
    address: u16,
    unit: &'static str,
    meaning: &'static str,
) -> Entry {
    Entry {
        metric,
        aliases: &[],
        meaning,
        table: Table::Input,
        address,
        ty: ValueType::F32,
        scale: 1.0,
        unit,
    }
}

const fn aliased(entry: Entry, aliases: &'static [&'static str]) -> Entry {
    Entry { aliases, ..entry }
}

/// Total active energy, import plus export: what an Eastron meter's
/// display shows as "total kWh", not what a supplier bills on a site
/// that exports (that is `import_energy`). Called `energy` before.
const TOTAL_ENERGY: Entry = aliased(
    f32_input(
        "total_energy",
        0x0156,
        "kWh",
        "total active energy, import + export",
    ),
    &["energy"],
);

/// Eastron SDM120-Modbus, single-phase DIN-rail meter. Source: Eastron,
/// "SDM120 Modbus Protocol" (input registers, function 04, IEEE 754
/// float, two registers each, high word first), parameter numbers 1 to 172:
/// 30001 voltage, 30007 current, 30013 active power, 30019 apparent power,
/// 30025 reactive power, 30031 power factor, 30071 frequency, 30073/30075
/// import/export active energy, 30343 total active energy.
const SDM120: &[Entry] = &[
    f32_input("voltage", 0x0000, "V", "voltage, line to neutral"),
    f32_input("current", 0x0006, "A", "current"),
    f32_input("power", 0x000C, "W", "active power (negative: exporting)"),
    f32_input("apparent_power", 0x0012, "VA", "apparent power"),
    f32_input("reactive_power", 0x0018, "var", "reactive power"),
    f32_input("power_factor", 0x001E, "", "power factor"),
    f32_input("frequency", 0x0046, "Hz", "frequency"),
    f32_input("import_energy", 0x0048, "kWh", "imported active energy"),
    f32_input("export_energy", 0x004A, "kWh", "exported active energy"),
    TOTAL_ENERGY,
];

/// Eastron SDM630-Modbus (V2), three-phase meter. Source: Eastron,
/// "SDM630 Modbus Protocol" (input registers, function 04, IEEE 754
/// float, high word first): 30001–30005 phase voltages L-N, 30007–30011
/// phase currents, 30013–30017 phase active powers, 30043 average
/// voltage L-N, 30049 sum of line currents, 30053 total system power,
/// 30063 total system power factor, 30071 frequency, 30073/30075 total
/// import/export active energy, 30343 total active energy.
const SDM630: &[Entry] = &[
    f32_input(
        "voltage_l1",
        0x0000,
        "V",
        "phase 1 voltage, line to neutral",
    ),
    f32_input(
        "voltage_l2",
        0x0002,
        "V",
        "phase 2 voltage, line to neutral",
    ),
    f32_input(
        "voltage_l3",
        0x0004,
        "V",
        "phase 3 voltage, line to neutral",
    ),
    f32_input("current_l1", 0x0006, "A", "phase 1 current"),
    f32_input("current_l2", 0x0008, "A", "phase 2 current"),
    f32_input("current_l3", 0x000A, "A", "phase 3 current"),
    f32_input("power_l1", 0x000C, "W", "phase 1 active power"),
    f32_input("power_l2", 0x000E, "W", "phase 2 active power"),
    f32_input("power_l3", 0x0010, "W", "phase 3 active power"),
    aliased(
        f32_input(
            "average_voltage",
            0x002A,
            "V",
            "average of the three line-to-neutral voltages",
        ),
        &["voltage"],
    ),
    aliased(
        f32_input("current_sum", 0x0030, "A", "sum of the three line currents"),
        &["current"],
    ),
    f32_input(
        "power",
        0x0034,
        "W",
        "total system active power (negative: exporting)",
    ),
    f32_input("power_factor", 0x003E, "", "total system power factor"),
    f32_input("frequency", 0x0046, "Hz", "frequency of the supply"),
    f32_input(
        "import_energy",
        0x0048,
        "kWh",
        "total imported active energy",
    ),
    f32_input(
        "export_energy",
        0x004A,
        "kWh",
        "total exported active energy",
    ),
    TOTAL_ENERGY,
];

const fn tenths(metric: &'static str, address: u16, meaning: &'static str) -> Entry {
    Entry {
        metric,
        aliases: &[],
        meaning,
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
    tenths(
        "outdoor_temperature",
        12101,
        "outdoor air temperature (REG_SENSOR_OAT)",
    ),
    tenths(
        "supply_temperature",
        12102,
        "supply air temperature (REG_SENSOR_SAT)",
    ),
    tenths(
        "room_temperature",
        12103,
        "room air temperature (REG_SENSOR_RAT)",
    ),
    tenths(
        "extract_temperature",
        12104,
        "extract air temperature (REG_SENSOR_EAT)",
    ),
    Entry {
        metric: "humidity",
        aliases: &[],
        meaning: "relative humidity (REG_SENSOR_RHS_PDM)",
        table: Table::Input,
        address: 12135,
        ty: ValueType::U16,
        scale: 1.0,
        unit: "%",
    },
    Entry {
        metric: "user_mode",
        aliases: &[],
        meaning: "user mode (REG_USERMODE_MODE): 0 auto, 1 manual, 2 crowded, 3 refresh, 4 fireplace, 5 away, 6 holiday",
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
        first_number: 30_001,
        registers: SDM120,
    },
    Profile {
        name: "eastron_sdm630",
        manufacturer: "Eastron",
        model: "SDM630",
        source: "Eastron SDM630 Modbus Protocol, input registers",
        first_number: 30_001,
        registers: SDM630,
    },
    Profile {
        name: "systemair_save",
        manufacturer: "Systemair",
        model: "SAVE air handling unit",
        source: "Systemair Modbus variable list SAVE Touch (40903)",
        first_number: 1,
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
    /// Its registers, checked like a device's own; an alias is one more
    /// register at the same address.
    pub fn registers(&self) -> Vec<Register> {
        self.registers
            .iter()
            .flat_map(|e| {
                std::iter::once(e.metric)
                    .chain(e.aliases.iter().copied())
                    .map(|metric| Register {
                        metric: metric.to_string(),
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
                        bit: None,
                        length: 0,
                    })
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
        assert_eq!(at("total_energy"), Some(0x0156));
        assert_eq!(at("import_energy"), Some(0x0048));
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
                for m in std::iter::once(&e.metric).chain(e.aliases) {
                    assert!(MetricName::new(*m).is_ok(), "{} {m}", p.name);
                    assert!(seen.insert(*m), "{} lists {m} twice", p.name);
                }
                assert!(!e.meaning.is_empty(), "{} {}", p.name, e.metric);
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
                    find(name).is_some_and(|p| p.registers().iter().any(|r| r.metric == m)),
                    "{name} has no {m}"
                );
            }
        }
    }

    /// The adapter's README lists every metric of every profile with its
    /// register, in hex and as the vendor's 3xxxx number, and its aliases.
    #[test]
    fn the_readme_lists_every_metric_of_every_profile() {
        let readme = include_str!("README.md");
        for p in PROFILES {
            let section = readme
                .split(&format!("`{}`", p.name))
                .nth(1)
                .unwrap_or_else(|| panic!("README has no table for {}", p.name));
            for e in p.registers {
                let row = section
                    .lines()
                    .find(|l| l.starts_with(&format!("| `{}`", e.metric)))
                    .unwrap_or_else(|| panic!("{}: no row for {}", p.name, e.metric));
                let number = u32::from(e.address) + p.first_number;
                assert!(
                    row.contains(&format!("0x{:04X}", e.address))
                        && row.contains(&number.to_string()),
                    "{}: {row}",
                    p.name
                );
                for alias in e.aliases {
                    assert!(row.contains(&format!("`{alias}`")), "{}: {row}", p.name);
                }
            }
        }
    }
}
