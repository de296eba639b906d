//! `[[knx.group]]`: the group addresses each knx adapter reads (and
//! writes), each a metric of a device.
//!
//! ```toml
//! [[knx.group]]
//! address = "1/2/3"          # 3-level, 2-level ("1/515") or free ("2563")
//! dpt = "9.001"
//! device = "room-101"
//! metric = "temperature"
//! unit = "°C"                # optional: the DPT's by default
//! read_on_start = true       # GroupValueRead once connected
//! poll = "5m"                # optional: GroupValueRead this often
//! writable = false           # [commands] may write it (GroupValueWrite)
//! min = 16.0                 # optional bounds of a written number
//! max = 28.0
//! state_address = "1/2/4"    # optional: where the actuator reports it
//! ```

use std::collections::HashSet;
use std::time::Duration;

use gateway_core::config::{load, DeviceConfig, Problems};
use gateway_core::{DeviceId, MetricName};
use serde::Deserialize;

use super::address::GroupAddress;
use super::config::{check_poll, KIND};
use super::dpt::Dpt;
use super::ets::AdapterExport;
use crate::device_section::{some_duration, DeviceSection, Entry, SectionDevice};
use crate::registry::OwnedSection;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    address: String,
    state_address: Option<String>,
    dpt: String,
    device: String,
    metric: String,
    unit: Option<String>,
    #[serde(default)]
    read_on_start: bool,
    #[serde(default, deserialize_with = "some_duration")]
    poll: Option<Duration>,
    #[serde(default)]
    writable: bool,
    min: Option<f64>,
    max: Option<f64>,
}

/// One group address and what it is.
#[derive(Debug, Clone, PartialEq)]
pub struct KnxGroup {
    /// The adapter it is on (always set once the section is read).
    pub adapter: Option<String>,
    pub address: GroupAddress,
    /// Where the device reports the value, when it is not `address`
    /// (an actuator's status object): read there, written to `address`.
    pub state_address: Option<GroupAddress>,
    pub dpt: Dpt,
    pub device: DeviceId,
    pub metric: MetricName,
    /// `unit`, else the DPT's.
    pub unit: Option<String>,
    pub read_on_start: bool,
    pub poll: Option<Duration>,
    pub writable: bool,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl KnxGroup {
    /// Where GroupValueRead goes: the state address if there is one.
    pub fn read_address(&self) -> GroupAddress {
        self.state_address.unwrap_or(self.address)
    }
}

/// The `[knx]` section, and the ETS exports its adapters name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KnxSection {
    /// `[[knx.group]]`.
    pub groups: Vec<KnxGroup>,
    pub exports: Vec<AdapterExport>,
    notes: Vec<String>,
}

impl KnxSection {
    /// Every group `adapter` reads: its export's, with its
    /// `[[knx.group]]`s taking the place of the rows they replace.
    pub fn groups_of(&self, adapter: &str) -> Vec<KnxGroup> {
        let configured: Vec<KnxGroup> = self
            .groups
            .iter()
            .filter(|g| g.adapter.as_deref() == Some(adapter))
            .cloned()
            .collect();
        match self.exports.iter().find(|e| e.adapter == adapter) {
            Some(e) => merge(&e.export.groups, &configured),
            None => configured,
        }
    }

    /// The adapters any group is on.
    fn adapters(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.exports.iter().map(|e| e.adapter.as_str()).collect();
        for g in &self.groups {
            if let Some(a) = g.adapter.as_deref().filter(|a| !names.contains(a)) {
                names.push(a);
            }
        }
        names
    }
}

impl OwnedSection for KnxSection {
    const NAME: &'static str = "knx";

    fn parse(root: &toml::Table, problems: &mut Problems) -> Self {
        section(root, problems)
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    fn registry_devices(&self) -> Vec<DeviceConfig> {
        let mut devices: Vec<DeviceConfig> = Vec::new();
        let groups: Vec<KnxGroup> = self
            .adapters()
            .into_iter()
            .flat_map(|a| self.groups_of(a))
            .collect();
        for g in &groups {
            let at = match devices.iter().position(|d| d.id == g.device) {
                Some(i) => i,
                None => {
                    devices.push(DeviceConfig {
                        id: g.device.clone(),
                        name: g.device.as_str().to_string(),
                        room: None,
                        floor: None,
                        tags: Default::default(),
                        primary: None,
                        units: Default::default(),
                        writable: Vec::new(),
                    });
                    devices.len() - 1
                }
            };
            // Only a unit a person wrote: the DPT's is what the device
            // states, reported at run time, and a `[[device]] units`
            // still wins over it.
            if let Some(unit) = g.unit.as_ref().filter(|u| Some(u.as_str()) != g.dpt.unit()) {
                devices[at]
                    .units
                    .insert(g.metric.as_str().to_string(), unit.clone());
            }
        }
        devices
    }
}

/// Reads `[knx]` from the file's root table, and the ETS exports of its
/// adapters.
pub fn section(root: &toml::Table, problems: &mut Problems) -> KnxSection {
    let exports = super::ets::of_adapters(root, problems);
    let mut notes: Vec<String> = exports.iter().filter_map(skipped_note).collect();
    notes.extend(super::config::heartbeat_notes(root));
    for e in &exports {
        for note in &e.export.notes {
            notes.push(format!(
                "adapter[{}].group_addresses: {}, {note}",
                e.index,
                e.file.display()
            ));
        }
    }
    let groups = DeviceSection::<KnxGroup>::read(root, problems).devices;
    let section = KnxSection {
        groups,
        exports,
        notes: Vec::new(),
    };
    for (i, name) in knx_adapters(root) {
        if section.groups_of(name).is_empty() {
            notes.push(format!("adapter[{i}]: no [[knx.group]] and no group_addresses: every telegram counts as an unknown address and none is stored (`edge-gateway knx monitor` shows what the bus carries)"));
        }
    }
    KnxSection { notes, ..section }
}

/// The knx adapters of `root`'s `[[adapter]]` list: place and name.
fn knx_adapters(root: &toml::Table) -> Vec<(usize, &str)> {
    let Some(toml::Value::Array(list)) = root.get("adapter") else {
        return Vec::new();
    };
    list.iter()
        .enumerate()
        .filter_map(|(i, a)| {
            let a = a.as_table()?;
            (a.get("type")?.as_str()? == KIND).then_some((i, a.get("name")?.as_str()?))
        })
        .collect()
}

/// What `validate` says of an export's rows left out.
fn skipped_note(e: &AdapterExport) -> Option<String> {
    const SHOWN: usize = 5;
    let skipped = &e.export.skipped;
    if skipped.is_empty() {
        return None;
    }
    let more = if skipped.len() > SHOWN { "; …" } else { "" };
    Some(format!(
        "adapter[{}].group_addresses: {} of the group addresses in {} left out, without a DPT the gateway reads or a valid address (fix it in ETS, or add a [[knx.group]] with a dpt): {}{more}",
        e.index,
        skipped.len(),
        e.file.display(),
        skipped[..skipped.len().min(SHOWN)].join("; ")
    ))
}

impl SectionDevice for KnxGroup {
    const FAMILY: &'static str = KIND;
    const LIST: &'static str = "group";
    const COMMON: &'static [&'static str] = &["adapter"];
    const THIS: &'static str = "this";
    type Shared = ();
    type Address = GroupAddress;

    fn parse(item: toml::Value, e: Entry<'_, ()>) -> Option<Self> {
        let group = group(item, e.path, e.problems)?;
        Some(Self {
            adapter: e.common.adapter,
            ..group
        })
    }

    fn adapter(&self) -> Option<&str> {
        self.adapter.as_deref()
    }

    /// Always set once the section is read.
    fn placed(&mut self, adapter: &str) {
        self.adapter = Some(adapter.to_string());
    }

    fn id(&self) -> &DeviceId {
        &self.device
    }

    /// A device has many groups, each its own metric.
    fn key(&self) -> (String, String) {
        let (device, metric) = (self.device.as_str(), self.metric.as_str());
        (device.to_string(), metric.to_string())
    }

    fn key_taken(&self) -> (&'static str, String) {
        let problem = format!(
            "{} of {} is already another group's: give each its own metric",
            self.metric, self.device
        );
        ("metric", problem)
    }

    fn addresses(&self) -> Vec<(&'static str, GroupAddress)> {
        let state = self.state_address.map(|a| ("state_address", a));
        std::iter::once(("address", self.address))
            .chain(state)
            .collect()
    }

    fn address_taken(&self, address: &GroupAddress, adapter: &str, first: usize) -> String {
        format!("{address} on \"{adapter}\" is already knx.group[{first}]")
    }

    /// [`KnxSection`]'s, with its export's groups.
    fn registry_entry(&self) -> Option<DeviceConfig> {
        None
    }
}

fn group(table: toml::Value, path: &str, problems: &mut Problems) -> Option<KnxGroup> {
    let before = problems.len();
    let raw: RawGroup = load::section_accepting(table, path, &["adapter"], problems)?;
    let address = raw
        .address
        .parse::<GroupAddress>()
        .map_err(|e| problems.push(format!("{path}.address"), e))
        .ok();
    let state_address = raw.state_address.as_deref().and_then(|a| {
        a.parse::<GroupAddress>()
            .map_err(|e| problems.push(format!("{path}.state_address"), e))
            .ok()
    });
    let dpt = raw
        .dpt
        .parse::<Dpt>()
        .map_err(|e| problems.push(format!("{path}.dpt"), e))
        .ok();
    let device = DeviceId::new(raw.device.as_str())
        .map_err(|e| problems.push(format!("{path}.device"), e.to_string()))
        .ok();
    let metric = MetricName::new(raw.metric.as_str())
        .map_err(|e| problems.push(format!("{path}.metric"), e.to_string()))
        .ok();
    if raw.unit.as_deref() == Some("") {
        problems.push(
            format!("{path}.unit"),
            "expected a non-empty text, or leave it out for the DPT's",
        );
    }
    if let Some(poll) = raw.poll {
        check_poll(poll, &format!("{path}.poll"), problems);
    }
    if let Some(dpt) = dpt {
        check_bounds(dpt, &raw, path, problems);
    }
    if problems.len() > before {
        return None;
    }
    let dpt = dpt?;
    Some(KnxGroup {
        adapter: None,
        address: address?,
        state_address,
        dpt,
        device: device?,
        metric: metric?,
        unit: raw.unit.or_else(|| dpt.unit().map(str::to_string)),
        read_on_start: raw.read_on_start,
        poll: raw.poll,
        writable: raw.writable,
        min: raw.min,
        max: raw.max,
    })
}

fn check_bounds(dpt: Dpt, raw: &RawGroup, path: &str, problems: &mut Problems) {
    if (raw.min.is_some() || raw.max.is_some()) && !raw.writable {
        problems.push(
            format!("{path}.min"),
            "min and max bound what [commands] write: set writable = true, or leave them out",
        );
        return;
    }
    if (raw.min.is_some() || raw.max.is_some()) && (dpt.is_text() || dpt.is_switch()) {
        problems.push(
            format!("{path}.min"),
            format!("DPT {dpt} takes no min or max"),
        );
        return;
    }
    let (lo, hi) = dpt.bounds().unwrap_or((f64::MIN, f64::MAX));
    for (key, v) in [("min", raw.min), ("max", raw.max)] {
        if let Some(v) = v {
            if !v.is_finite() || v < lo || v > hi {
                problems.push(
                    format!("{path}.{key}"),
                    format!("DPT {dpt} takes {lo} to {hi}, got {v}"),
                );
            }
        }
    }
    if let (Some(min), Some(max)) = (raw.min, raw.max) {
        if min > max {
            problems.push(
                format!("{path}.max"),
                format!("expected at least min ({min}), got {max}"),
            );
        }
    }
}

/// The groups an adapter reads: its ETS export's, with a `[[knx.group]]`
/// of the same address (or state address) taking that address's place.
pub fn merge(ets: &[KnxGroup], configured: &[KnxGroup]) -> Vec<KnxGroup> {
    let taken: HashSet<GroupAddress> = configured
        .iter()
        .flat_map(|g| std::iter::once(g.address).chain(g.state_address))
        .collect();
    let named: HashSet<(&DeviceId, &MetricName)> =
        configured.iter().map(|g| (&g.device, &g.metric)).collect();
    ets.iter()
        .filter(|g| !taken.contains(&g.address) && !named.contains(&(&g.device, &g.metric)))
        .chain(configured)
        .cloned()
        .collect()
}

#[cfg(test)]
#[path = "groups_tests.rs"]
mod tests;
