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

use std::net::SocketAddr;
use std::time::Duration;

use gateway_core::config::{load, Problems};
use gateway_core::DeviceId;
use serde::Deserialize;

use super::config::{parse_address, KIND};
use super::tags::{ObjectId, MAX_INSTANCE};
use crate::device_section::{
    check_poll, some_duration, DeviceCommon, DeviceSection, Entry, SectionDevice, COMMON_KEYS,
};
use gateway_core::config::DeviceConfig;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    instance: u32,
    address: Option<String>,
    id: Option<String>,
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

/// A checked `[[bacnet.device]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct BacnetDevice {
    /// The client it is behind (`adapter`), its name, room and tags.
    pub common: DeviceCommon,
    pub instance: u32,
    pub address: Option<SocketAddr>,
    pub id: DeviceId,
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
pub type BacnetSection = DeviceSection<BacnetDevice>;

/// Reads `[bacnet]` from the file's root table.
pub fn section(root: &toml::Table, problems: &mut Problems) -> BacnetSection {
    BacnetSection::read(root, problems)
}

impl SectionDevice for BacnetDevice {
    const FAMILY: &'static str = KIND;
    type Shared = ();
    type Address = u32;

    fn parse(item: toml::Value, e: Entry<'_, ()>) -> Option<Self> {
        device(item, e.path, e.common, e.problems)
    }

    fn adapter(&self) -> Option<&str> {
        self.common.adapter.as_deref()
    }

    fn id(&self) -> &DeviceId {
        &self.id
    }

    fn addresses(&self) -> Vec<(&'static str, u32)> {
        vec![("instance", self.instance)]
    }

    fn address_taken(&self, instance: &u32, adapter: &str, _first: usize) -> String {
        format!("device {instance} is already listed on \"{adapter}\"")
    }

    fn registry_entry(&self) -> Option<DeviceConfig> {
        Some(self.common.registry_entry(&self.id, Default::default()))
    }
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

fn device(
    table: toml::Value,
    path: &str,
    common: DeviceCommon,
    problems: &mut Problems,
) -> Option<BacnetDevice> {
    let before = problems.len();
    let raw: RawDevice = load::section_accepting(table, path, &COMMON_KEYS, problems)?;
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
        common,
        instance: raw.instance,
        address,
        id: id?,
        objects,
        exclude,
        poll: raw.poll,
        cov: raw.cov,
        writable,
        priority: raw.priority,
    })
}
