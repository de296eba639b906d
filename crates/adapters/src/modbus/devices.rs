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

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use gateway_core::config::{load, Problems};
use gateway_core::{DeviceId, MetricName};
use serde::Deserialize;

use super::config::KIND;
use super::profiles::{self, Profile};
use super::registers::{Order, Register, Table, ValueType};
use crate::device_section::{
    check_poll, some_duration, DeviceCommon, DeviceSection, Entry, SectionDevice, COMMON_KEYS,
};
use gateway_core::config::DeviceConfig;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegister {
    /// Optional with `bits` (each bit is then a metric of its own).
    metric: Option<String>,
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
    /// `type = "string"`: how many registers the text spans.
    length: Option<u16>,
    /// One metric per named bit (0 the least significant), read as 0/1.
    bits: Option<BTreeMap<String, u8>>,
}

fn holding() -> Table {
    Table::Holding
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    id: String,
    unit: u8,
    profile: Option<String>,
    #[serde(default)]
    registers: Vec<toml::Value>,
    #[serde(default, deserialize_with = "some_duration")]
    poll: Option<Duration>,
    max_gap: Option<u16>,
}

/// A checked `[[modbus.device]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModbusDevice {
    /// The bus it is on (`adapter`), its name, room and tags.
    pub common: DeviceCommon,
    pub id: DeviceId,
    /// Its unit id (slave address) on the bus.
    pub unit: u8,
    pub profile: Option<&'static Profile>,
    /// Its profile's registers with its own added or replacing them, in
    /// that order.
    pub registers: Vec<Register>,
    /// Its own poll period, over the adapter's.
    pub poll: Option<Duration>,
    pub max_gap: Option<u16>,
}

/// The `[modbus]` section.
pub type ModbusSection = DeviceSection<ModbusDevice>;

/// Reads `[modbus]` from the file's root table.
pub fn section(root: &toml::Table, problems: &mut Problems) -> ModbusSection {
    ModbusSection::read(root, problems)
}

impl SectionDevice for ModbusDevice {
    const FAMILY: &'static str = KIND;
    const ADD_ADAPTER_HINT: &'static str = " (url or path)";
    type Shared = ();
    type Address = u8;

    fn parse(item: toml::Value, e: Entry<'_, ()>) -> Option<Self> {
        device(item, e.path, e.common, e.problems, e.notes)
    }

    fn adapter(&self) -> Option<&str> {
        self.common.adapter.as_deref()
    }

    fn id(&self) -> &DeviceId {
        &self.id
    }

    fn addresses(&self) -> Vec<(&'static str, u8)> {
        vec![("unit", self.unit)]
    }

    fn address_taken(&self, unit: &u8, adapter: &str, first: usize) -> String {
        format!("unit {unit} on \"{adapter}\" is already modbus.device[{first}]")
    }

    fn suits(&self, adapter: &toml::Table, path: &str, problems: &mut Problems) -> bool {
        let serial = adapter.contains_key("path");
        if serial && !(1..=247).contains(&self.unit) {
            problems.push(
                format!("{path}.unit"),
                format!(
                    "expected 1 to 247 on a serial line (0 is broadcast, which no device answers), got {}",
                    self.unit
                ),
            );
            return false;
        }
        true
    }

    /// With the unit of each register that says one.
    fn registry_entry(&self) -> Option<DeviceConfig> {
        let units = self
            .registers
            .iter()
            .filter_map(|r| Some((r.metric.clone(), r.unit.clone()?)))
            .collect();
        Some(self.common.registry_entry(&self.id, units))
    }
}

fn device(
    table: toml::Value,
    path: &str,
    common: DeviceCommon,
    problems: &mut Problems,
    notes: &mut Vec<String>,
) -> Option<ModbusDevice> {
    let before = problems.len();
    let raw: RawDevice = load::section_accepting(table, path, &COMMON_KEYS, problems)?;
    let id = DeviceId::new(raw.id.as_str())
        .map_err(|e| problems.push(format!("{path}.id"), e.to_string()))
        .ok();
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
        for r in register(item, &rpath, problems, notes) {
            if !metrics.insert(r.metric.clone()) {
                let key = if r.bit.is_some() { "bits" } else { "metric" };
                problems.push(
                    format!("{rpath}.{key}"),
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
        common,
        id: id?,
        unit: raw.unit,
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

/// A manual's register number (`30001`, `40001`: counted from 1, the
/// table in the first digit) where a 0-based protocol address belongs:
/// valid, but probably wrong. The address it probably means.
fn manual_number(table: Table, address: u16) -> Option<(u16, u16)> {
    let first = match table {
        Table::Input => 30_001,
        Table::Holding => 40_001,
        Table::Coil | Table::Discrete => return None,
    };
    (address >= first).then(|| (first, address - first))
}

/// `bits`, `length` and `type = "string"` of a register: a string is text
/// of `length` registers; named bits are 0/1 of an unsigned register.
fn check_shape(raw: &RawRegister, ty: ValueType, path: &str, problems: &mut Problems) {
    let text = ty == ValueType::String;
    if text {
        match raw.length {
            None => problems.push(
                format!("{path}.length"),
                "a string takes length = its registers (two characters each)",
            ),
            Some(n) if !(1..=125).contains(&n) => problems.push(
                format!("{path}.length"),
                format!("expected 1 to 125 registers (one read), got {n}"),
            ),
            Some(_) => {}
        }
        if !matches!(raw.order, Order::Abcd | Order::Badc) {
            problems.push(
                format!("{path}.order"),
                "a string's characters are in order abcd (first in the high byte, the default) or badc (first in the low byte)",
            );
        }
    } else if raw.length.is_some() {
        problems.push(format!("{path}.length"), "only type = \"string\" takes it");
    }
    if let Some(bits) = &raw.bits {
        if !matches!(ty, ValueType::U16 | ValueType::U32 | ValueType::U64) {
            problems.push(
                format!("{path}.type"),
                "bits are read from an unsigned register: u16 (the default), u32 or u64",
            );
        }
        if bits.is_empty() {
            problems.push(
                format!("{path}.bits"),
                "expected at least one name = bit, e.g. bits = { running = 0, alarm = 15 }",
            );
        }
        let width = 16 * u32::from(ty.words());
        for (name, bit) in bits {
            if u32::from(*bit) >= width {
                problems.push(
                    format!("{path}.bits.{name}"),
                    format!("a {} has bits 0 to {}, got {bit}", ty.as_str(), width - 1),
                );
            }
            if let Err(e) = MetricName::new(name.as_str()) {
                problems.push(format!("{path}.bits.{name}"), e.to_string());
            }
        }
    }
    if text || raw.bits.is_some() {
        let what = if text { "a string" } else { "bits" };
        for (key, set) in [
            ("scale", raw.scale.is_some()),
            ("offset", raw.offset.is_some()),
            ("writable", raw.writable),
        ] {
            if set {
                problems.push(format!("{path}.{key}"), format!("{what} take no {key}"));
            }
        }
        if raw.table.is_bits() {
            problems.push(
                format!("{path}.table"),
                format!("{what} are read from holding or input registers"),
            );
        }
    }
}

/// One `registers` entry: a register, or one register per named bit.
fn register(
    item: toml::Value,
    path: &str,
    problems: &mut Problems,
    notes: &mut Vec<String>,
) -> Vec<Register> {
    let before = problems.len();
    let Some(raw) = load::section::<RawRegister>(item, path, problems) else {
        return Vec::new();
    };
    if raw.metric.is_none() && raw.bits.is_none() {
        problems.push(
            format!("{path}.metric"),
            "missing required key (or bits = { name = bit, … })",
        );
    }
    if let Some(Err(e)) = raw.metric.as_deref().map(MetricName::new) {
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
    check_shape(&raw, ty, path, problems);
    let whole = Register {
        metric: raw.metric.clone().unwrap_or_default(),
        table: raw.table,
        address: raw.address,
        ty,
        order: raw.order,
        scale: raw.scale.unwrap_or(1.0),
        offset: raw.offset.unwrap_or(0.0),
        unit: raw.unit.clone(),
        writable: raw.writable,
        min: raw.min,
        max: raw.max,
        bit: None,
        length: if ty == ValueType::String {
            raw.length.unwrap_or(1)
        } else {
            0
        },
    };
    if whole.end() > 65_536 {
        problems.push(
            format!("{path}.address"),
            format!(
                "a {} at {} ends past the last address, 65535",
                whole.ty.as_str(),
                whole.address
            ),
        );
    }
    if problems.len() > before {
        return Vec::new();
    }
    if let Some((first, meant)) = manual_number(whole.table, whole.address) {
        notes.push(format!(
            "{path}.address: {} looks like a manual's register number ({first} is the first {} register, counted from 1); addresses here are 0-based protocol addresses, so it is probably address = {meant}",
            whole.address,
            whole.table.as_str()
        ));
    }
    let bits: Vec<Register> = raw
        .bits
        .unwrap_or_default()
        .into_iter()
        .map(|(name, bit)| Register {
            metric: name,
            bit: Some(bit),
            scale: 1.0,
            offset: 0.0,
            unit: None,
            ..whole.clone()
        })
        .collect();
    let mut out: Vec<Register> = raw.metric.is_some().then_some(whole).into_iter().collect();
    out.extend(bits);
    out
}
