//! The tag keys of a point: the device's registry tags and the gateway's
//! own, written so that no two meet.

use std::borrow::Cow;
use std::collections::BTreeMap;

use gateway_core::{DeviceId, DeviceRegistry};

/// Tag keys a `[[device]]` tag cannot be written under as it is: InfluxDB's
/// own column, and every key the gateway writes itself (a reading's
/// `device`, `name`, `unit`; an alert's `rule`, `metric`, `kind`, `state`).
const TAKEN: [&str; 8] = [
    "time", "device", "name", "unit", "rule", "metric", "kind", "state",
];

/// A registry tag's key as written. `time` is InfluxDB's own column: a
/// tag key of that name has every point refused ("invalid tag key"), so
/// it is written `time_tag`. A key the gateway writes itself is written
/// the same way (`device_tag`, `unit_tag`): a point holds one value per
/// tag key, so a device tagged `device = "x"` or `unit = "y"` had that
/// value dropped for the gateway's. The gateway's tags are the contract
/// dashboards query by, so the device's is the one renamed.
///
/// A key that is one of these followed by `_tag`s (`time_tag`,
/// `device_tag_tag`) takes one `_tag` more, so no two keys meet: a device
/// tagged both `time` and `time_tag` had both written as `time_tag`, one
/// value lost. Decided by the key alone, not by which keys the registry
/// holds now (a pushed configuration changes it under a running gateway)
/// nor by which of the gateway's tags a point carries (`unit` only with
/// `unit_tag`, `rule` only on alerts): a key is written the same in every
/// measurement, and every other key as it always was.
pub(super) fn tag_key(k: &str) -> Cow<'_, str> {
    let mut stem = k;
    while let Some(shorter) = stem.strip_suffix("_tag") {
        stem = shorter;
    }
    if TAKEN.contains(&stem) {
        format!("{k}_tag").into()
    } else {
        k.into()
    }
}

pub(super) fn device_tags<'a>(
    registry: &'a DeviceRegistry,
    device: &'a DeviceId,
) -> BTreeMap<Cow<'a, str>, &'a str> {
    let mut tags = BTreeMap::new();
    if let Some(info) = registry.get(device) {
        for (k, v) in &info.tags {
            tags.insert(tag_key(k), v.as_str());
        }
    }
    // No registry tag is written under these keys (`tag_key`).
    tags.insert("device".into(), device.as_str());
    tags.insert("name".into(), registry.name_of(device));
    tags
}
