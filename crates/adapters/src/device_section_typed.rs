//! `[[x.device]]` of a family whose devices sit on one of its adapters
//! (Modbus units on a bus, BACnet devices behind a client): the keys
//! every such device takes ([`DeviceCommon`]), and the section read once
//! for all of them ([`DeviceSection`]) — which adapter reads each device,
//! ids listed once, addresses unique on their adapter — so that a new
//! family writes only what its devices have of their own
//! ([`SectionDevice`]).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;
use std::time::Duration;

use gateway_core::config::values::duration;
use gateway_core::config::{load, DeviceConfig, Problems, TagValue, Tags};
use gateway_core::DeviceId;
use serde::Deserialize;

use crate::registry::OwnedSection;

/// The keys of a `[[x.device]]` that are no family's own: which adapter
/// reads it, and what the `[[device]]` registry shows of it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeviceCommon {
    /// The adapter it is on, as written; `None`: the family's only one.
    pub adapter: Option<String>,
    pub name: Option<String>,
    pub room: Option<String>,
    pub floor: Option<TagValue>,
    pub tags: Tags,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommon {
    adapter: Option<String>,
    name: Option<String>,
    room: Option<String>,
    floor: Option<TagValue>,
    tags: Option<Tags>,
}

/// [`RawCommon`]'s keys: taken out of a device's table before its
/// family reads the rest, and named in the family's unknown-key hints.
pub const COMMON_KEYS: [&str; 5] = ["adapter", "name", "room", "floor", "tags"];

impl DeviceCommon {
    /// Takes the common keys out of `item` (a device's table), checked.
    fn take(item: &mut toml::Value, path: &str, problems: &mut Problems) -> Self {
        let Some(table) = item.as_table_mut() else {
            return Self::default();
        };
        let common: toml::Table = COMMON_KEYS
            .iter()
            .filter_map(|k| table.remove(*k).map(|v| (k.to_string(), v)))
            .collect();
        let Some(raw) = load::section::<RawCommon>(toml::Value::Table(common), path, problems)
        else {
            return Self::default();
        };
        for (key, value) in [("name", &raw.name), ("room", &raw.room)] {
            if value.as_deref() == Some("") {
                problems.push(format!("{path}.{key}"), "expected a non-empty text");
            }
        }
        Self {
            adapter: raw.adapter,
            name: raw.name,
            room: raw.room,
            floor: raw.floor,
            tags: raw.tags.unwrap_or_default(),
        }
    }

    /// The registry entry of device `id`: every configured device has one
    /// (named by its id where it has no name), so its units reach the
    /// outputs and it is on the dashboard before it first answers.
    pub fn registry_entry(&self, id: &DeviceId, units: BTreeMap<String, String>) -> DeviceConfig {
        DeviceConfig {
            id: id.clone(),
            name: self.name.clone().unwrap_or_else(|| id.as_str().to_string()),
            room: self.room.clone(),
            floor: self.floor.clone(),
            tags: self.tags.clone(),
            primary: None,
            units,
            writable: Vec::new(),
        }
    }
}

/// One `[[x.device]]` of a family: what it has of its own.
pub trait SectionDevice: Sized + Clone + std::fmt::Debug + PartialEq {
    /// The section's name (`[[modbus.device]]`), also the `type` of the
    /// family's adapters.
    const FAMILY: &'static str;
    /// What "no [[adapter]] … reads it: add one" adds: which keys make one.
    const ADD_ADAPTER_HINT: &'static str = "";
    /// Where a device sits on its adapter (a Modbus unit, a BACnet
    /// instance): two devices on one adapter never share it.
    type Address: Eq + Hash;

    /// Reads the family's own keys from `item` (the common ones already
    /// taken out: [`COMMON_KEYS`]), recording problems under `path`;
    /// `notes` takes what a valid device probably gets wrong.
    fn parse(
        item: toml::Value,
        path: &str,
        common: DeviceCommon,
        notes: &mut Vec<String>,
        problems: &mut Problems,
    ) -> Option<Self>;

    fn id(&self) -> &DeviceId;
    fn common(&self) -> &DeviceCommon;
    fn address(&self) -> Self::Address;

    /// The problem of a device whose address on `adapter` is already
    /// `[[x.device]]` number `first`: its key (under the device's path)
    /// and what is wrong.
    fn address_taken(&self, adapter: &str, first: usize) -> (&'static str, String);

    /// Whether the device suits the adapter's table (a serial line takes
    /// fewer Modbus units than TCP); problems under `path`.
    fn suits(&self, _adapter: &toml::Table, _path: &str, _problems: &mut Problems) -> bool {
        true
    }

    /// Metric → unit, for its registry entry.
    fn units(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
}

/// A `[x]` section of [`SectionDevice`]s, every one checked.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSection<D> {
    pub devices: Vec<D>,
    /// What a valid section probably gets wrong (a manual's 30001/40001
    /// as an address): `validate` prints them, `run` logs them.
    pub notes: Vec<String>,
}

impl<D> Default for DeviceSection<D> {
    fn default() -> Self {
        Self {
            devices: Vec::new(),
            notes: Vec::new(),
        }
    }
}

impl<D: SectionDevice> DeviceSection<D> {
    /// The devices on the adapter called `adapter`: those naming it, and
    /// those naming none (parsing allowed that only with one adapter).
    pub fn devices_of(&self, adapter: &str) -> Vec<D> {
        self.devices
            .iter()
            .filter(|d| d.common().adapter.as_deref().is_none_or(|a| a == adapter))
            .cloned()
            .collect()
    }

    /// Reads `[FAMILY]` from the file's root table. A device naming an
    /// adapter that does not exist (or none, when there are several) is a
    /// problem at `validate`, not a silent device that never reads.
    pub fn read(root: &toml::Table, problems: &mut Problems) -> Self {
        let family = D::FAMILY;
        let Some(section) = super::read(root, family, &[], problems) else {
            return Self::default();
        };
        let adapters = adapters_of(root, family);
        let mut out = Self::default();
        let mut ids = HashSet::new();
        let mut addresses: HashMap<(String, D::Address), usize> = HashMap::new();
        for (i, mut item) in section.devices.into_iter().enumerate() {
            let path = format!("{family}.device[{i}]");
            let before = problems.len();
            let common = DeviceCommon::take(&mut item, &path, problems);
            let device = D::parse(item, &path, common, &mut out.notes, problems);
            let Some(device) = device.filter(|_| problems.len() == before) else {
                continue;
            };
            let Some((adapter, table)) = find_adapter(&device, &adapters, &path, problems) else {
                continue;
            };
            if !device.suits(table, &path, problems) {
                continue;
            }
            if !ids.insert(device.id().clone()) {
                problems.push(
                    format!("{path}.id"),
                    format!("{} is listed twice", device.id().as_str()),
                );
                continue;
            }
            match addresses.entry((adapter.to_string(), device.address())) {
                Entry::Occupied(first) => {
                    let (key, problem) = device.address_taken(adapter, *first.get());
                    problems.push(format!("{path}.{key}"), problem);
                    continue;
                }
                Entry::Vacant(slot) => {
                    slot.insert(i);
                }
            }
            out.devices.push(device);
        }
        out
    }
}

impl<D: SectionDevice> OwnedSection for DeviceSection<D> {
    const NAME: &'static str = D::FAMILY;

    fn parse(root: &toml::Table, problems: &mut Problems) -> Self {
        Self::read(root, problems)
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    fn registry_devices(&self) -> Vec<DeviceConfig> {
        self.devices
            .iter()
            .map(|d| d.common().registry_entry(d.id(), d.units()))
            .collect()
    }
}

/// The `[[adapter]] type = family` tables by name, from the root table.
fn adapters_of<'a>(root: &'a toml::Table, family: &str) -> Vec<(&'a str, &'a toml::Table)> {
    let Some(toml::Value::Array(list)) = root.get("adapter") else {
        return Vec::new();
    };
    list.iter()
        .filter_map(toml::Value::as_table)
        .filter(|a| a.get("type").and_then(toml::Value::as_str) == Some(family))
        .filter_map(|a| Some((a.get("name")?.as_str()?, a)))
        .collect()
}

/// The adapter `device` is on: the one it names, or the family's only one.
fn find_adapter<'a, D: SectionDevice>(
    device: &D,
    adapters: &[(&'a str, &'a toml::Table)],
    path: &str,
    problems: &mut Problems,
) -> Option<(&'a str, &'a toml::Table)> {
    let family = D::FAMILY;
    match (&device.common().adapter, adapters) {
        (Some(name), _) => {
            let found = adapters.iter().find(|(n, _)| n == name).copied();
            if found.is_none() {
                problems.push(
                    format!("{path}.adapter"),
                    format!("no [[adapter]] type = \"{family}\" is named \"{name}\""),
                );
            }
            found
        }
        (None, [only]) => Some(*only),
        (None, []) => {
            problems.push(
                path,
                format!(
                    "no [[adapter]] type = \"{family}\" reads it: add one{}",
                    D::ADD_ADAPTER_HINT
                ),
            );
            None
        }
        (None, _) => {
            problems.push(
                format!("{path}.adapter"),
                format!("there are several {family} adapters: name the one this device is on"),
            );
            None
        }
    }
}

/// Below this a poll cannot finish before the next: a few Modbus
/// registers at 9600 baud, a large BACnet device's objects.
const MIN_POLL: Duration = Duration::from_millis(100);

/// An adapter's or a device's `poll`: at least [`MIN_POLL`].
pub fn check_poll(poll: Duration, path: &str, problems: &mut Problems) {
    if poll < MIN_POLL {
        problems.push(
            path,
            format!(
                "expected at least {}, got {}",
                duration::render(MIN_POLL),
                duration::render(poll)
            ),
        );
    }
}

/// `#[serde(default, deserialize_with = "some_duration")]`: an optional
/// duration such as a device's own `poll`.
pub fn some_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration::deserialize(d).map(Some)
}
