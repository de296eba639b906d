//! `[[x.device]]` (`[[knx.group]]`): the section every family that lists
//! its devices in `gateway.toml` reads the same way — Modbus units on a
//! bus, BACnet devices behind a client, LoRaWAN devices by DevAddr or
//! DevEUI, BLE advertisers by MAC, KNX group addresses on an interface.
//! Read once here ([`DeviceSection`]): the section's shape, the keys no
//! family owns ([`DeviceCommon`]: which adapter, name, room, floor,
//! tags), which adapter reads each device, ids listed once, addresses
//! unique (on their adapter, or in the section), the `[[device]]`
//! registry entries and the notes `validate` prints; so that a family
//! writes only what its devices have of their own ([`SectionDevice`]).

use gateway_core::config::{load, DeviceConfig, Problems, TagValue, Tags};
use gateway_core::DeviceId;
use serde::Deserialize;
use std::collections::hash_map::Entry as Slot;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;

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

/// [`RawCommon`]'s keys, for a family whose devices sit on one of its
/// adapters: taken out of a device's table before its family reads the
/// rest, and named in the family's unknown-key hints.
pub const COMMON_KEYS: [&str; 5] = ["adapter", "name", "room", "floor", "tags"];

/// The common keys of a family whose devices name no adapter: every
/// LoRaWAN forwarder hears every device, every BLE radio every advertiser.
#[cfg(any(feature = "ble", feature = "lorawan"))]
pub const DESCRIPTION_KEYS: [&str; 4] = ["name", "room", "floor", "tags"];

impl DeviceCommon {
    /// Takes the family's common `keys` out of `item` (a device's table),
    /// checked.
    fn take(item: &mut toml::Value, keys: &[&str], path: &str, problems: &mut Problems) -> Self {
        let Some(table) = item.as_table_mut() else {
            return Self::default();
        };
        let common: toml::Table = keys
            .iter()
            .filter_map(|k| table.remove(*k).map(|v| (k.to_string(), v)))
            .collect();
        let Some(raw) = load::section::<RawCommon>(toml::Value::Table(common), path, problems)
        else {
            return Self::default();
        };
        Self {
            adapter: raw.adapter,
            name: raw.name,
            room: raw.room,
            floor: raw.floor,
            tags: raw.tags.unwrap_or_default(),
        }
    }

    /// An empty name or room, after the family's own problems (so those
    /// come in the order of a device's table).
    fn check_texts(&self, empty_name: &str, path: &str, problems: &mut Problems) {
        for (key, value, problem) in [
            ("name", &self.name, empty_name),
            ("room", &self.room, "expected a non-empty text"),
        ] {
            if value.as_deref() == Some("") {
                problems.push(format!("{path}.{key}"), problem);
            }
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

    /// [`Self::registry_entry`] only for a device described here (a
    /// name, room, floor or tags): a family whose devices are known by an
    /// address (a MAC, a DevEUI) leaves the rest to `[[device]]`.
    pub fn described_entry(&self, id: &DeviceId) -> Option<DeviceConfig> {
        let tagged = match &self.tags {
            Tags::Labels(labels) => !labels.is_empty(),
            Tags::Map(map) => !map.is_empty(),
        };
        let described =
            self.name.is_some() || self.room.is_some() || self.floor.is_some() || tagged;
        described.then(|| self.registry_entry(id, BTreeMap::new()))
    }
}

/// What parsing a device has besides its table.
pub struct Context<'a, S> {
    /// Resolves `env:VAR` secrets (the process environment but in tests).
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// What the family read from its section's own keys first.
    pub shared: S,
}

/// One entry being read: where it is, its common keys, what it is read
/// with, and where its notes and problems go.
pub struct Entry<'a, S> {
    pub path: &'a str,
    pub common: DeviceCommon,
    pub context: &'a Context<'a, S>,
    pub notes: &'a mut Vec<String>,
    pub problems: &'a mut Problems,
}

/// One `[[x.device]]` of a family: what it has of its own.
pub trait SectionDevice: Sized + Clone + std::fmt::Debug + PartialEq {
    /// The section's name (`[modbus]`), also the `type` of the family's
    /// adapters where its devices name one.
    const FAMILY: &'static str;
    /// The section's array of tables: `[[modbus.device]]`, `[[knx.group]]`.
    const LIST: &'static str = "device";
    /// The section's keys beside [`Self::LIST`] (`[lorawan] region`).
    const OWN_KEYS: &'static [&'static str] = &[];
    /// Which of [`COMMON_KEYS`] its devices take; with `adapter`, each is
    /// on one of the family's adapters and unique on it, without it each
    /// is unique in the section.
    const COMMON: &'static [&'static str] = &COMMON_KEYS;
    /// What "no [[adapter]] … reads it: add one" adds: which keys make one.
    const ADD_ADAPTER_HINT: &'static str = "";
    /// What "name the one … is on" calls a device.
    const THIS: &'static str = "this device";
    /// The problem of an empty `name`.
    const EMPTY_NAME: &'static str = "expected a non-empty text";
    /// What the family reads from [`Self::OWN_KEYS`] before its devices.
    type Shared: Default;
    /// Where a device is reached (a Modbus unit, a DevEUI): two devices
    /// never share one on an adapter (or in the section).
    type Address: Eq + Hash;

    /// Reads [`Self::Shared`] from the section's table.
    fn shared(_section: &toml::Table, _problems: &mut Problems) -> Self::Shared {
        Self::Shared::default()
    }

    /// Reads the family's own keys from `item` (the common ones already
    /// taken out: [`Self::COMMON`]), recording problems under the entry's
    /// path; its notes take what a valid device probably gets wrong.
    fn parse(item: toml::Value, entry: Entry<'_, Self::Shared>) -> Option<Self>;

    /// The adapter it names, if any.
    fn adapter(&self) -> Option<&str>;

    /// Told the adapter it is on, once found.
    fn placed(&mut self, _adapter: &str) {}

    /// The device it reads (a KNX group's device has other groups).
    fn id(&self) -> &DeviceId;

    /// What no two entries of the section share: their id (and what
    /// else tells entries of one device apart, a KNX group's metric).
    fn key(&self) -> (String, String) {
        (self.id().as_str().to_string(), String::new())
    }

    /// The problem of an entry whose key another has: its key (under the
    /// entry's path) and what is wrong.
    fn key_taken(&self) -> (&'static str, String) {
        ("id", format!("{} is listed twice", self.id().as_str()))
    }

    /// Its addresses, each with its key.
    fn addresses(&self) -> Vec<(&'static str, Self::Address)>;

    /// The problem of a device whose `address` (on `adapter`; empty where
    /// its family names none) is already `[[x.device]]` number `first`'s.
    fn address_taken(&self, address: &Self::Address, adapter: &str, first: usize) -> String;

    /// Whether the device suits the adapter's table (a serial line takes
    /// fewer Modbus units than TCP); problems under `path`.
    fn suits(&self, _adapter: &toml::Table, _path: &str, _problems: &mut Problems) -> bool {
        true
    }

    /// Its `[[device]]` registry entry, if it makes one.
    fn registry_entry(&self) -> Option<DeviceConfig>;
}

/// A section of [`SectionDevice`]s, every one checked.
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

/// The process environment, for `env:VAR`.
fn process_env(var: &str) -> Option<String> {
    std::env::var(var).ok()
}

impl<D: SectionDevice> DeviceSection<D> {
    /// The devices on the adapter called `adapter`: those naming it, and
    /// those naming none (parsing allowed that only with one adapter).
    pub fn devices_of(&self, adapter: &str) -> Vec<D> {
        self.devices
            .iter()
            .filter(|d| d.adapter().is_none_or(|a| a == adapter))
            .cloned()
            .collect()
    }

    /// Reads `[FAMILY]` from the file's root table. A device naming an
    /// adapter that does not exist (or none, when there are several) is a
    /// problem at `validate`, not a silent device that never reads.
    pub fn read(root: &toml::Table, problems: &mut Problems) -> Self {
        Self::read_with_env(root, &process_env, problems)
    }

    /// [`Self::read`], with `env` resolving `env:VAR`.
    pub fn read_with_env(
        root: &toml::Table,
        env: &dyn Fn(&str) -> Option<String>,
        problems: &mut Problems,
    ) -> Self {
        let Some(section) = shape(root, D::FAMILY, D::LIST, D::OWN_KEYS, problems) else {
            return Self::default();
        };
        let context = Context {
            env,
            shared: D::shared(section.table, problems),
        };
        Self::from_items(
            &adapters_of(root, D::FAMILY),
            section.items,
            &context,
            problems,
        )
    }

    /// Checks every `[[FAMILY.LIST]]` table, on `adapters` (the
    /// family's), collecting all problems.
    pub(crate) fn from_items(
        adapters: &[(&str, &toml::Table)],
        items: Vec<toml::Value>,
        context: &Context<'_, D::Shared>,
        problems: &mut Problems,
    ) -> Self {
        let on_adapters = D::COMMON.contains(&"adapter");
        let mut out = Self::default();
        let mut keys = HashSet::new();
        let mut addresses: HashMap<(Option<&str>, D::Address), usize> = HashMap::new();
        for (i, mut item) in items.into_iter().enumerate() {
            let path = format!("{}.{}[{i}]", D::FAMILY, D::LIST);
            let before = problems.len();
            let common = DeviceCommon::take(&mut item, D::COMMON, &path, problems);
            let texts = common.clone();
            let entry = Entry {
                path: &path,
                common,
                context,
                notes: &mut out.notes,
                problems: &mut *problems,
            };
            let device = D::parse(item, entry);
            texts.check_texts(D::EMPTY_NAME, &path, problems);
            let Some(mut device) = device.filter(|_| problems.len() == before) else {
                continue;
            };
            let adapter = if on_adapters {
                let Some((name, table)) = find_adapter(&device, adapters, &path, problems) else {
                    continue;
                };
                if !device.suits(table, &path, problems) {
                    continue;
                }
                device.placed(name);
                Some(name)
            } else {
                None
            };
            if !keys.insert(device.key()) {
                let (key, problem) = device.key_taken();
                problems.push(format!("{path}.{key}"), problem);
                continue;
            }
            let mut clash = false;
            for (key, address) in device.addresses() {
                match addresses.entry((adapter, address)) {
                    Slot::Occupied(first) if *first.get() != i => {
                        let problem = device.address_taken(
                            &first.key().1,
                            adapter.unwrap_or_default(),
                            *first.get(),
                        );
                        problems.push(format!("{path}.{key}"), problem);
                        clash = true;
                    }
                    Slot::Occupied(_) => {}
                    Slot::Vacant(slot) => {
                        slot.insert(i);
                    }
                }
            }
            if !clash {
                out.devices.push(device);
            }
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
            .filter_map(SectionDevice::registry_entry)
            .collect()
    }
}

/// A family's `[name]` table, checked for shape.
struct SectionTable<'a> {
    /// The whole table, for the family's own keys (`net_id`, ...).
    table: &'a toml::Table,
    /// The `[[name.list]]` tables, not yet checked; empty when there are
    /// none or `list` is not an array.
    items: Vec<toml::Value>,
}

/// Reads `[name]` from the file's root table: `None` when it is absent, or
/// not a table (a problem then). Keys other than `list` and `own_keys`
/// are problems, and so is a `list` that is not an array of tables; the
/// rest of the section is still read, so every mistake is reported at once.
fn shape<'a>(
    root: &'a toml::Table,
    name: &str,
    list: &str,
    own_keys: &[&str],
    problems: &mut Problems,
) -> Option<SectionTable<'a>> {
    let Some(table) = root.get(name)?.as_table() else {
        problems.push(
            name,
            format!("expected a table, write it as [[{name}.{list}]]"),
        );
        return None;
    };
    let unknown = table
        .keys()
        .filter(|k| *k != list && !own_keys.contains(&k.as_str()));
    for key in unknown {
        problems.push(
            format!("{name}.{key}"),
            format!("unknown key, expected {}", accepted_keys(list, own_keys)),
        );
    }
    let items = match table.get(list) {
        None => Vec::new(),
        Some(toml::Value::Array(items)) => items.clone(),
        Some(_) => {
            problems.push(
                format!("{name}.{list}"),
                format!("expected an array of tables, write it as [[{name}.{list}]]"),
            );
            Vec::new()
        }
    };
    Some(SectionTable { table, items })
}

/// "device", "device, net_id or region": the keys a section takes, as a
/// problem lists them.
fn accepted_keys(list: &str, own_keys: &[&str]) -> String {
    match own_keys.split_last() {
        None => list.to_string(),
        Some((last, rest)) => {
            let listed: Vec<&str> = std::iter::once(list).chain(rest.iter().copied()).collect();
            format!("{} or {last}", listed.join(", "))
        }
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
    match (device.adapter(), adapters) {
        (Some(name), _) => {
            let found = adapters.iter().find(|(n, _)| *n == name).copied();
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
                format!(
                    "there are several {family} adapters: name the one {} is on",
                    D::THIS
                ),
            );
            None
        }
    }
}

/// Below this a poll cannot finish before the next: a few Modbus
/// registers at 9600 baud, a large BACnet device's objects.
#[cfg(any(feature = "modbus", feature = "bacnet"))]
const MIN_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// An adapter's or a device's `poll`: at least [`MIN_POLL`].
#[cfg(any(feature = "modbus", feature = "bacnet"))]
pub fn check_poll(poll: std::time::Duration, path: &str, problems: &mut Problems) {
    use gateway_core::config::values::duration;
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
#[cfg(any(
    feature = "lorawan",
    feature = "modbus",
    feature = "bacnet",
    feature = "knx"
))]
pub fn some_duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<std::time::Duration>, D::Error> {
    gateway_core::config::values::duration::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::accepted_keys;

    #[test]
    fn accepted_keys_read_as_a_list() {
        assert_eq!(accepted_keys("device", &[]), "device");
        assert_eq!(accepted_keys("group", &[]), "group");
        assert_eq!(accepted_keys("device", &["region"]), "device or region");
        assert_eq!(
            accepted_keys("device", &["net_id", "region"]),
            "device, net_id or region"
        );
    }
}
