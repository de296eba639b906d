//! `[[modbus.device]]`: the units on each modbus bus and their register
//! maps (a shipped profile, the device's own registers, or both).
//!
//! ```toml
//! [[modbus.device]]
//! adapter = "meters"        # optional with one modbus adapter
//! id = "meter-kitchen"
//! unit = 1
//! profile = "eastron_sdm120"
//! registers = [{ metric = "temperature", address = 0, type = "i16", scale = 0.1, unit = "°C" }]
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use gateway_core::config::values::duration;
use gateway_core::config::{load, DeviceConfig, Problems, TagValue, Tags};
use gateway_core::{DeviceId, MetricName};
use serde::Deserialize;

use super::config::{check_poll, KIND};
use super::profiles::{self, Profile};
use super::registers::{Order, Register, Table, ValueType};
use crate::device_section;
use crate::registry::OwnedSection;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegister {
    metric: String,
    #[serde(default = "holding")]
    table: Table,
    address: u16,
    #[serde(rename = "type")]
    ty: Option<ValueType>,
    #[serde(default)]
    order: Order,
    scale: Option<f64>,
    offset: Option<f64>,
    unit: Option<String>,
    #[serde(default)]
    writable: bool,
    min: Option<f64>,
    max: Option<f64>,
}

fn holding() -> Table {
    Table::Holding
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    adapter: Option<String>,
    id: String,
    unit: u8,
    name: Option<String>,
    room: Option<String>,
    floor: Option<TagValue>,
    tags: Option<Tags>,
    profile: Option<String>,
    #[serde(default)]
    registers: Vec<toml::Value>,
    #[serde(default, deserialize_with = "some_duration")]
    poll: Option<Duration>,
    max_gap: Option<u16>,
}

fn some_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration::deserialize(d).map(Some)
}

/// A checked `[[modbus.device]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModbusDevice {
    /// The adapter (bus) it is on; `None`: the only one.
    pub adapter: Option<String>,
    pub id: DeviceId,
    /// Its unit id (slave address) on the bus.
    pub unit: u8,
    pub name: Option<String>,
    pub room: Option<String>,
    pub floor: Option<TagValue>,
    pub tags: Tags,
    pub profile: Option<&'static Profile>,
    /// Its profile's registers with its own added or replacing them, in
    /// that order.
    pub registers: Vec<Register>,
    /// Its own poll period, over the adapter's.
    pub poll: Option<Duration>,
    pub max_gap: Option<u16>,
}

impl ModbusDevice {
    /// Metric → unit of its registers that say one.
    pub fn units(&self) -> BTreeMap<String, String> {
        self.registers
            .iter()
            .filter_map(|r| Some((r.metric.clone(), r.unit.clone()?)))
            .collect()
    }
}

/// The `[modbus]` section.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModbusSection {
    pub devices: Vec<ModbusDevice>,
}

impl ModbusSection {
    /// The devices on the adapter called `adapter`: those naming it, and
    /// those naming none (parsing allowed that only with one adapter).
    pub fn devices_of(&self, adapter: &str) -> Vec<ModbusDevice> {
        self.devices
            .iter()
            .filter(|d| d.adapter.as_deref().is_none_or(|a| a == adapter))
            .cloned()
            .collect()
    }
}

impl OwnedSection for ModbusSection {
    const NAME: &'static str = "modbus";

    fn parse(root: &toml::Table, problems: &mut Problems) -> Self {
        section(root, problems)
    }

    /// Every device, named or not: its units must reach the outputs, and
    /// a configured meter belongs on the dashboard before it first answers.
    fn registry_devices(&self) -> Vec<DeviceConfig> {
        self.devices
            .iter()
            .map(|d| DeviceConfig {
                id: d.id.clone(),
                name: d.name.clone().unwrap_or_else(|| d.id.as_str().to_string()),
                room: d.room.clone(),
                floor: d.floor.clone(),
                tags: d.tags.clone(),
                primary: None,
                units: d.units(),
                writable: Vec::new(),
            })
            .collect()
    }
}

/// The names of the `type = "modbus"` adapters, and whether each is a
/// serial line, from the root's `[[adapter]]` list.
fn modbus_adapters(root: &toml::Table) -> Vec<(String, bool)> {
    let Some(toml::Value::Array(list)) = root.get("adapter") else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|a| a.as_table())
        .filter(|a| a.get("type").and_then(toml::Value::as_str) == Some(KIND))
        .filter_map(|a| {
            let name = a.get("name")?.as_str()?.to_string();
            Some((name, a.contains_key("path")))
        })
        .collect()
}

/// Reads `[modbus]` from the file's root table.
pub fn section(root: &toml::Table, problems: &mut Problems) -> ModbusSection {
    let Some(section) = device_section::read(root, "modbus", &[], problems) else {
        return ModbusSection::default();
    };
    let adapters = modbus_adapters(root);
    let mut devices = Vec::new();
    let mut ids = HashSet::new();
    let mut units: HashMap<(String, u8), usize> = HashMap::new();
    for (i, item) in section.devices.into_iter().enumerate() {
        let path = format!("modbus.device[{i}]");
        let Some(device) = device(item, &path, problems) else {
            continue;
        };
        let bus = match (&device.adapter, adapters.as_slice()) {
            (Some(name), _) => match adapters.iter().find(|(n, _)| n == name) {
                Some(found) => found.clone(),
                None => {
                    problems.push(
                        format!("{path}.adapter"),
                        format!("no [[adapter]] type = \"modbus\" is named \"{name}\""),
                    );
                    continue;
                }
            },
            (None, [only]) => only.clone(),
            (None, []) => {
                problems.push(
                    &path,
                    "no [[adapter]] type = \"modbus\" reads it: add one (url or path)",
                );
                continue;
            }
            (None, _) => {
                problems.push(
                    format!("{path}.adapter"),
                    "there are several modbus adapters: name the one this device is on",
                );
                continue;
            }
        };
        if bus.1 && !(1..=247).contains(&device.unit) {
            problems.push(
                format!("{path}.unit"),
                format!(
                    "expected 1 to 247 on a serial line (0 is broadcast, which no device answers), got {}",
                    device.unit
                ),
            );
            continue;
        }
        if !ids.insert(device.id.clone()) {
            problems.push(
                format!("{path}.id"),
                format!("{} is listed twice", device.id.as_str()),
            );
            continue;
        }
        if let Some(first) = units.insert((bus.0.clone(), device.unit), i) {
            problems.push(
                format!("{path}.unit"),
                format!(
                    "unit {} on \"{}\" is already modbus.device[{first}]",
                    device.unit, bus.0
                ),
            );
            continue;
        }
        devices.push(device);
    }
    ModbusSection { devices }
}

fn device(table: toml::Value, path: &str, problems: &mut Problems) -> Option<ModbusDevice> {
    let before = problems.len();
    let raw: RawDevice = load::section(table, path, problems)?;
    let id = DeviceId::new(raw.id.as_str())
        .map_err(|e| problems.push(format!("{path}.id"), e.to_string()))
        .ok();
    for (key, value) in [("name", &raw.name), ("room", &raw.room)] {
        if value.as_deref() == Some("") {
            problems.push(format!("{path}.{key}"), "expected a non-empty text");
        }
    }
    if let Some(poll) = raw.poll {
        check_poll(poll, &format!("{path}.poll"), problems);
    }
    let profile = match raw.profile.as_deref() {
        None => None,
        Some(name) => {
            let found = profiles::find(name);
            if found.is_none() {
                problems.push(
                    format!("{path}.profile"),
                    format!("expected one of {}, got \"{name}\"", profiles::names()),
                );
            }
            found
        }
    };
    let mut own = Vec::new();
    let mut metrics = HashSet::new();
    for (j, item) in raw.registers.into_iter().enumerate() {
        let rpath = format!("{path}.registers[{j}]");
        if let Some(r) = register(item, &rpath, problems) {
            if !metrics.insert(r.metric.clone()) {
                problems.push(
                    format!("{rpath}.metric"),
                    format!("\"{}\" is read twice", r.metric),
                );
                continue;
            }
            own.push(r);
        }
    }
    let mut registers: Vec<Register> = profile.map(|p| p.registers()).unwrap_or_default();
    for r in own {
        match registers.iter_mut().find(|p| p.metric == r.metric) {
            Some(slot) => *slot = r,
            None => registers.push(r),
        }
    }
    if registers.is_empty() && problems.len() == before {
        problems.push(
            path,
            format!(
                "expected registers = [...] or a profile ({})",
                profiles::names()
            ),
        );
    }
    if problems.len() > before {
        return None;
    }
    Some(ModbusDevice {
        adapter: raw.adapter,
        id: id?,
        unit: raw.unit,
        name: raw.name,
        room: raw.room,
        floor: raw.floor,
        tags: raw.tags.unwrap_or_default(),
        profile,
        registers,
        poll: raw.poll,
        max_gap: raw.max_gap,
    })
}

/// `writable`, `min` and `max` of a register: only coils and holding
/// registers take writes, and bounds mean nothing without `writable`.
fn check_writable(raw: &RawRegister, path: &str, problems: &mut Problems) {
    if raw.writable && !matches!(raw.table, Table::Coil | Table::Holding) {
        problems.push(
            format!("{path}.writable"),
            format!(
                "a {} cannot be written: only coil and holding",
                raw.table.as_str()
            ),
        );
    }
    for (key, v) in [("min", raw.min), ("max", raw.max)] {
        if v.is_some() && !raw.writable {
            problems.push(
                format!("{path}.{key}"),
                "bounds a write: set writable = true too",
            );
        }
        if v.is_some_and(|v| !v.is_finite()) {
            problems.push(format!("{path}.{key}"), "expected a finite number");
        }
    }
    if let (Some(min), Some(max)) = (raw.min, raw.max) {
        if min > max {
            problems.push(format!("{path}.min"), format!("{min} is above max {max}"));
        }
    }
    if raw.writable && raw.scale == Some(0.0) {
        problems.push(format!("{path}.scale"), "0 cannot be inverted for a write");
    }
}

fn register(item: toml::Value, path: &str, problems: &mut Problems) -> Option<Register> {
    let before = problems.len();
    let raw: RawRegister = load::section(item, path, problems)?;
    if let Err(e) = MetricName::new(raw.metric.as_str()) {
        problems.push(format!("{path}.metric"), e.to_string());
    }
    let ty = match (raw.table.is_bits(), raw.ty) {
        (true, Some(t)) if t != ValueType::U16 => {
            problems.push(
                format!("{path}.type"),
                "coils and discrete inputs read as 0 or 1: leave type out",
            );
            t
        }
        (_, t) => t.unwrap_or(ValueType::U16),
    };
    for (key, v) in [("scale", raw.scale), ("offset", raw.offset)] {
        if v.is_some_and(|v| !v.is_finite()) {
            problems.push(format!("{path}.{key}"), "expected a finite number");
        }
    }
    check_writable(&raw, path, problems);
    let r = Register {
        metric: raw.metric,
        table: raw.table,
        address: raw.address,
        ty,
        order: raw.order,
        scale: raw.scale.unwrap_or(1.0),
        offset: raw.offset.unwrap_or(0.0),
        unit: raw.unit,
        writable: raw.writable,
        min: raw.min,
        max: raw.max,
    };
    if r.end() > 65_536 {
        problems.push(
            format!("{path}.address"),
            format!(
                "a {} at {} ends past the last address, 65535",
                r.ty.as_str(),
                r.address
            ),
        );
    }
    (problems.len() == before).then_some(r)
}
