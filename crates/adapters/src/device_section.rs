//! The shape `[ble]`, `[lorawan]`, `[modbus]`, `[bacnet]` and `[knx]` share: a table
//! whose `device` key (`group` for `[knx]`) is an array of tables
//! (`[[ble.device]]`, `[[knx.group]]`), beside a family's own keys. Read
//! here once, so all refuse a misshapen section with the same words, and
//! their named devices join the `[[device]]` registry the same way; the
//! families whose entries name their `[[adapter]]` resolve it here too
//! ([`adapter_of`]). The families whose devices sit on one of their
//! adapters (Modbus, BACnet) share the whole section: [`DeviceSection`].

#[cfg(any(feature = "modbus", feature = "bacnet"))]
#[path = "device_section_typed.rs"]
mod typed;
#[cfg(any(feature = "modbus", feature = "bacnet"))]
pub use typed::{
    check_poll, some_duration, DeviceCommon, DeviceSection, SectionDevice, COMMON_KEYS,
};

use gateway_core::config::Problems;
#[cfg(any(feature = "ble", feature = "lorawan"))]
use gateway_core::config::{DeviceConfig, Tags};
#[cfg(any(feature = "ble", feature = "lorawan"))]
use gateway_core::DeviceId;

/// A family's `[name]` table, checked for shape.
pub(crate) struct SectionTable<'a> {
    /// The whole table, for the family's own keys (`net_id`, ...). Only
    /// `[lorawan]` has any, so a build without it never reads this.
    #[cfg_attr(not(feature = "lorawan"), allow(dead_code))]
    pub table: &'a toml::Table,
    /// The `[[name.device]]` tables, not yet checked; empty when there are
    /// none or `device` is not an array.
    pub devices: Vec<toml::Value>,
}

/// Reads `[name]` from the file's root table: `None` when it is absent, or
/// not a table (a problem then). Keys other than `device` and `own_keys`
/// are problems, and so is a `device` that is not an array of tables; the
/// rest of the section is still read, so every mistake is reported at once.
#[cfg(any(
    feature = "ble",
    feature = "lorawan",
    feature = "modbus",
    feature = "bacnet"
))]
pub(crate) fn read<'a>(
    root: &'a toml::Table,
    name: &str,
    own_keys: &[&str],
    problems: &mut Problems,
) -> Option<SectionTable<'a>> {
    read_list(root, name, "device", own_keys, problems)
}

/// [`read`] for a section whose array of tables is called `list`
/// (`[[knx.group]]`).
pub(crate) fn read_list<'a>(
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
    let devices = match table.get(list) {
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
    Some(SectionTable { table, devices })
}

/// The `[[adapter]]` of `kind` an entry at `path` is on: the one it names
/// (`adapter = "…"`), or the only one there is. `None`, with the problem
/// recorded, when it names none of them, or names none among several.
#[cfg(feature = "knx")]
pub(crate) fn adapter_of(
    root: &toml::Table,
    kind: &str,
    named: Option<&str>,
    path: &str,
    problems: &mut Problems,
) -> Option<String> {
    let names: Vec<&str> = match root.get("adapter") {
        Some(toml::Value::Array(list)) => list
            .iter()
            .filter_map(|a| a.as_table())
            .filter(|a| a.get("type").and_then(toml::Value::as_str) == Some(kind))
            .filter_map(|a| a.get("name")?.as_str())
            .collect(),
        _ => Vec::new(),
    };
    match (named, names.as_slice()) {
        (Some(name), _) if names.contains(&name) => Some(name.to_string()),
        (Some(name), _) => {
            problems.push(
                format!("{path}.adapter"),
                format!("no [[adapter]] type = \"{kind}\" is named \"{name}\""),
            );
            None
        }
        (None, [only]) => Some((*only).to_string()),
        (None, []) => {
            problems.push(
                path,
                format!("no [[adapter]] type = \"{kind}\" reads it: add one"),
            );
            None
        }
        (None, _) => {
            problems.push(
                format!("{path}.adapter"),
                format!("there are several {kind} adapters: name the one this is on"),
            );
            None
        }
    }
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

/// The registry entry of a device a family's section names; one without a
/// name has none, so `[[device]]` alone names it.
#[cfg(any(feature = "ble", feature = "lorawan"))]
pub(crate) fn registry_entry(
    id: DeviceId,
    name: Option<&str>,
    room: Option<&str>,
) -> Option<DeviceConfig> {
    Some(DeviceConfig {
        id,
        name: name?.to_string(),
        room: room.map(str::to_string),
        floor: None,
        tags: Tags::default(),
        primary: None,
        units: Default::default(),
        writable: Vec::new(),
    })
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
