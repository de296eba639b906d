//! The tag keys of a point: the device's registry tags and the gateway's
//! own, written so that no two meet.

use std::borrow::Cow;
use std::collections::BTreeMap;

use gateway_core::{DeviceId, DeviceRegistry};

/// A registry tag's key as written. `time` is InfluxDB's own column: a
/// tag key of that name has every point refused ("invalid tag key"), so
/// it is written `time_tag`.
///
/// A key that is `time` followed by `_tag`s (`time_tag`, `time_tag_tag`)
/// takes one `_tag` more, so no two keys meet: a device tagged both `time`
/// and `time_tag` had both written as `time_tag`, one value lost. Decided
/// by the key alone, not by which keys the registry holds now (a pushed
/// configuration changes it under a running gateway): a key is always
/// written the same, and every other key as it always was.
pub(super) fn tag_key(k: &str) -> Cow<'_, str> {
    let mut stem = k;
    while let Some(shorter) = stem.strip_suffix("_tag") {
        stem = shorter;
    }
    if stem == "time" {
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
    // The gateway's own tags win over a registry tag of the same key.
    tags.insert("device".into(), device.as_str());
    tags.insert("name".into(), registry.name_of(device));
    tags
}
