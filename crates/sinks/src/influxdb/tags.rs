//! The tag keys of a point: the device's registry tags and the gateway's
//! own, written so that no two meet.

use std::borrow::Cow;
use std::collections::BTreeMap;

use gateway_core::{DeviceId, DeviceRegistry};

/// The tag keys the gateway writes on a point, besides InfluxDB's own
/// column `time`: every point's `device` and `name`, `unit` with
/// `unit_tag`, and an alert's `rule`, `metric`, `kind` and `state`.
#[derive(Debug, Clone, Copy)]
pub(super) struct GatewayKeys {
    pub unit: bool,
    pub alert: bool,
}

impl GatewayKeys {
    fn take(self, stem: &str) -> bool {
        match stem {
            "time" | "device" | "name" => true,
            "unit" => self.unit,
            "rule" | "metric" | "kind" | "state" => self.alert,
            _ => false,
        }
    }
}

/// A registry tag's key as written on a point the gateway writes `keys`
/// on. `time` is InfluxDB's own column: a tag key of that name has every
/// point refused ("invalid tag key"), so it is written `time_tag`. A key
/// the gateway writes on the point itself is written the same way
/// (`device_tag`, `unit_tag`): a point holds one value per tag key, so a
/// device tagged `device = "x"` or `unit = "y"` had that value dropped
/// for the gateway's. The gateway's tags are the contract dashboards
/// query by, so the device's is the one renamed.
///
/// A key that is one of these followed by `_tag`s (`time_tag`,
/// `device_tag_tag`) takes one `_tag` more, so no two keys meet: a device
/// tagged both `time` and `time_tag` had both written as `time_tag`, one
/// value lost. Only where the gateway's key is on the point: a device's
/// `kind` or `unit` tag on its readings (no `unit_tag`) kept its value
/// and is queried by that name, so it stays as it was there.
pub(super) fn tag_key(k: &str, keys: GatewayKeys) -> Cow<'_, str> {
    let mut stem = k;
    while let Some(shorter) = stem.strip_suffix("_tag") {
        stem = shorter;
    }
    if keys.take(stem) {
        format!("{k}_tag").into()
    } else {
        k.into()
    }
}

pub(super) fn device_tags<'a>(
    registry: &'a DeviceRegistry,
    device: &'a DeviceId,
    keys: GatewayKeys,
) -> BTreeMap<Cow<'a, str>, &'a str> {
    let mut tags = BTreeMap::new();
    if let Some(info) = registry.get(device) {
        for (k, v) in &info.tags {
            tags.insert(tag_key(k, keys), v.as_str());
        }
    }
    // No registry tag is written under these keys (`tag_key`).
    tags.insert("device".into(), device.as_str());
    tags.insert("name".into(), registry.name_of(device));
    tags
}
