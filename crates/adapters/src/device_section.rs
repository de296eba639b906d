//! The shape `[ble]`, `[lorawan]`, `[modbus]` and `[bacnet]` share: a
//! table whose `device` key is an array of tables (`[[ble.device]]`),
//! beside a family's own keys. Read here once, so all refuse a misshapen
//! section with the same words, and their named devices join the
//! `[[device]]` registry the same way. The families whose devices sit on
//! one of their adapters (Modbus, BACnet) share the whole section:
//! [`DeviceSection`].

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
pub(crate) fn read<'a>(
    root: &'a toml::Table,
    name: &str,
    own_keys: &[&str],
    problems: &mut Problems,
) -> Option<SectionTable<'a>> {
    let Some(table) = root.get(name)?.as_table() else {
        problems.push(
            name,
            format!("expected a table, write it as [[{name}.device]]"),
        );
        return None;
    };
    let unknown = table
        .keys()
        .filter(|k| *k != "device" && !own_keys.contains(&k.as_str()));
    for key in unknown {
        problems.push(
            format!("{name}.{key}"),
            format!("unknown key, expected {}", accepted_keys(own_keys)),
        );
    }
    let devices = match table.get("device") {
        None => Vec::new(),
        Some(toml::Value::Array(items)) => items.clone(),
        Some(_) => {
            problems.push(
                format!("{name}.device"),
                format!("expected an array of tables, write it as [[{name}.device]]"),
            );
            Vec::new()
        }
    };
    Some(SectionTable { table, devices })
}

/// "device", "device, net_id or region": the keys a section takes, as a
/// problem lists them.
fn accepted_keys(own_keys: &[&str]) -> String {
    match own_keys.split_last() {
        None => "device".to_string(),
        Some((last, rest)) => {
            let listed: Vec<&str> = std::iter::once("device")
                .chain(rest.iter().copied())
                .collect();
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
        assert_eq!(accepted_keys(&[]), "device");
        assert_eq!(accepted_keys(&["region"]), "device or region");
        assert_eq!(
            accepted_keys(&["net_id", "region"]),
            "device, net_id or region"
        );
    }
}
