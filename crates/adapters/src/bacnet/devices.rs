//! `[[bacnet.device]]`: the devices each bacnet adapter reads.
//!
//! ```toml
//! [[bacnet.device]]
//! instance = 1001
//! address = "192.168.1.40:47808"   # optional: skips Who-Is (port 47808 if left out)
//! objects = ["analog-input:1"]     # optional: default every point
//! cov = true
//! writable = ["analog-value:3"]    # optional: what [commands] may write
//! priority = 16                    # the priority-array slot written
//! ```

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use gateway_core::config::values::duration;
use gateway_core::config::{load, DeviceConfig, Problems, TagValue, Tags};
use gateway_core::DeviceId;
use serde::Deserialize;

use super::config::{check_poll, parse_address, KIND};
use super::tags::{ObjectId, MAX_INSTANCE};
use crate::device_section;
use crate::registry::OwnedSection;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    adapter: Option<String>,
    instance: u32,
    address: Option<String>,
    id: Option<String>,
    name: Option<String>,
    room: Option<String>,
    floor: Option<TagValue>,
    tags: Option<Tags>,
    objects: Option<Vec<String>>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default, deserialize_with = "some_duration")]
    poll: Option<Duration>,
    #[serde(default)]
    cov: bool,
    #[serde(default)]
    writable: Vec<String>,
    #[serde(default = "default_priority")]
    priority: u8,
}

/// §19.2: 16 is the lowest priority, the one operators' workstations and
/// the relinquish default sit just above; a gateway's commands should
/// lose to every local program and life-safety override unless a site
/// decides otherwise.
pub const DEFAULT_PRIORITY: u8 = 16;

fn default_priority() -> u8 {
    DEFAULT_PRIORITY
}

fn some_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration::deserialize(d).map(Some)
}

/// A checked `[[bacnet.device]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct BacnetDevice {
    pub adapter: Option<String>,
    pub instance: u32,
    pub address: Option<SocketAddr>,
    pub id: DeviceId,
    pub name: Option<String>,
    pub room: Option<String>,
    pub floor: Option<TagValue>,
    pub tags: Tags,
    /// `None`: every point in the object list.
    pub objects: Option<Vec<ObjectId>>,
    pub exclude: Vec<ObjectId>,
    pub poll: Option<Duration>,
    pub cov: bool,
    /// Objects `[commands]` may write (present-value); empty: none.
    pub writable: Vec<ObjectId>,
    /// The priority-array slot the gateway's writes take (1..=16).
    pub priority: u8,
}

/// The `[bacnet]` section.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BacnetSection {
    pub devices: Vec<BacnetDevice>,
}

impl BacnetSection {
    pub fn devices_of(&self, adapter: &str) -> Vec<BacnetDevice> {
        self.devices
            .iter()
            .filter(|d| d.adapter.as_deref().is_none_or(|a| a == adapter))
            .cloned()
            .collect()
    }
}

impl OwnedSection for BacnetSection {
    const NAME: &'static str = "bacnet";

    fn parse(root: &toml::Table, problems: &mut Problems) -> Self {
        section(root, problems)
    }

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
                units: Default::default(),
                writable: Vec::new(),
            })
            .collect()
    }
}

fn adapters(root: &toml::Table) -> Vec<String> {
    let Some(toml::Value::Array(list)) = root.get("adapter") else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|a| a.as_table())
        .filter(|a| a.get("type").and_then(toml::Value::as_str) == Some(KIND))
        .filter_map(|a| Some(a.get("name")?.as_str()?.to_string()))
        .collect()
}

/// Reads `[bacnet]` from the file's root table.
pub fn section(root: &toml::Table, problems: &mut Problems) -> BacnetSection {
    let Some(section) = device_section::read(root, "bacnet", &[], problems) else {
        return BacnetSection::default();
    };
    let names = adapters(root);
    let mut devices = Vec::new();
    let mut ids = HashSet::new();
    let mut instances = HashSet::new();
    for (i, item) in section.devices.into_iter().enumerate() {
        let path = format!("bacnet.device[{i}]");
        let Some(mut device) = device(item, &path, problems) else {
            continue;
        };
        let adapter = match (&device.adapter, names.as_slice()) {
            (Some(name), _) if names.contains(name) => name.clone(),
            (Some(name), _) => {
                problems.push(
                    format!("{path}.adapter"),
                    format!("no [[adapter]] type = \"bacnet\" is named \"{name}\""),
                );
                continue;
            }
            (None, [only]) => only.clone(),
            (None, []) => {
                problems.push(&path, "no [[adapter]] type = \"bacnet\" reads it: add one");
                continue;
            }
            (None, _) => {
                problems.push(
                    format!("{path}.adapter"),
                    "there are several bacnet adapters: name the one this device is on",
                );
                continue;
            }
        };
        if !ids.insert(device.id.clone()) {
            problems.push(
                format!("{path}.id"),
                format!("{} is listed twice", device.id.as_str()),
            );
            continue;
        }
        if !instances.insert((adapter.clone(), device.instance)) {
            problems.push(
                format!("{path}.instance"),
                format!(
                    "device {} is already listed on \"{adapter}\"",
                    device.instance
                ),
            );
            continue;
        }
        device.adapter = Some(adapter);
        devices.push(device);
    }
    BacnetSection { devices }
}

fn object_list(list: &[String], path: &str, problems: &mut Problems) -> Vec<ObjectId> {
    let mut out = Vec::new();
    for (j, s) in list.iter().enumerate() {
        match s.parse::<ObjectId>() {
            Ok(id) if out.contains(&id) => {
                problems.push(format!("{path}[{j}]"), format!("{s} is listed twice"))
            }
            Ok(id) => out.push(id),
            Err(e) => problems.push(format!("{path}[{j}]"), e),
        }
    }
    out
}

fn device(table: toml::Value, path: &str, problems: &mut Problems) -> Option<BacnetDevice> {
    let before = problems.len();
    let raw: RawDevice = load::section(table, path, problems)?;
    if raw.instance >= MAX_INSTANCE {
        problems.push(
            format!("{path}.instance"),
            format!("expected 0 to {}, got {}", MAX_INSTANCE - 1, raw.instance),
        );
    }
    let id_text = raw
        .id
        .clone()
        .unwrap_or_else(|| format!("bacnet-{}", raw.instance));
    let id = DeviceId::new(id_text.as_str())
        .map_err(|e| problems.push(format!("{path}.id"), e.to_string()))
        .ok();
    for (key, value) in [("name", &raw.name), ("room", &raw.room)] {
        if value.as_deref() == Some("") {
            problems.push(format!("{path}.{key}"), "expected a non-empty text");
        }
    }
    let address = raw.address.as_deref().and_then(|a| {
        parse_address(a)
            .map_err(|e| problems.push(format!("{path}.address"), e))
            .ok()
    });
    if let Some(poll) = raw.poll {
        check_poll(poll, &format!("{path}.poll"), problems);
    }
    let objects = raw
        .objects
        .as_ref()
        .map(|o| object_list(o, &format!("{path}.objects"), problems));
    if objects.as_ref().is_some_and(Vec::is_empty) && problems.len() == before {
        problems.push(
            format!("{path}.objects"),
            "expected at least one object, or leave it out for every point",
        );
    }
    let exclude = object_list(&raw.exclude, &format!("{path}.exclude"), problems);
    let writable = object_list(&raw.writable, &format!("{path}.writable"), problems);
    for (j, w) in writable.iter().enumerate() {
        if super::writer::is_input(w.kind) {
            problems.push(
                format!("{path}.writable[{j}]"),
                format!(
                    "{w} is an input: its present value is what its sensor measures and \
                     is not commandable; write the output or value object that drives it"
                ),
            );
        } else if !super::writer::is_writable_kind(w.kind) {
            problems.push(
                format!("{path}.writable[{j}]"),
                format!("{w}: expected an analog, binary or multi-state output or value object"),
            );
        }
    }
    if !(1..=16).contains(&raw.priority) {
        problems.push(
            format!("{path}.priority"),
            format!("expected 1 to 16, got {}", raw.priority),
        );
    }
    if problems.len() > before {
        return None;
    }
    Some(BacnetDevice {
        adapter: raw.adapter,
        instance: raw.instance,
        address,
        id: id?,
        name: raw.name,
        room: raw.room,
        floor: raw.floor,
        tags: raw.tags.unwrap_or_default(),
        objects,
        exclude,
        poll: raw.poll,
        cov: raw.cov,
        writable,
        priority: raw.priority,
    })
}
