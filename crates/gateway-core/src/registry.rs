//! The device registry: what an id means to the people reading the cloud topics.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::config::DeviceConfig;
use crate::model::DeviceId;

/// A registered device as it is described upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub name: String,
    pub tags: BTreeMap<String, String>,
    /// Of `tags`, those written as a list of labels (`["fridge"]`).
    pub labels: Vec<String>,
    /// The metric that stands for the device on the overview.
    pub primary: Option<String>,
    /// Metric → unit where the usual one is wrong for this device.
    pub units: BTreeMap<String, String>,
}

/// Lookup from device id to [`DeviceInfo`].
///
/// A MAC or EUI is one id in any notation and case already ([`DeviceId`]
/// keeps one text for it, on the registry's side and the adapters'); other
/// ids match exactly first, then ignoring ASCII case.
#[derive(Debug, Clone, Default)]
pub struct DeviceRegistry {
    exact: HashMap<String, Arc<DeviceInfo>>,
    folded: HashMap<String, Arc<DeviceInfo>>,
}

impl DeviceRegistry {
    pub fn from_config(devices: &[DeviceConfig]) -> Self {
        let mut reg = Self::default();
        for d in devices {
            let info = Arc::new(DeviceInfo {
                name: d.name.clone(),
                tags: d.tag_map(),
                labels: d.labels(),
                primary: d.primary.as_ref().map(|m| m.as_str().to_string()),
                units: d.units.clone(),
            });
            reg.folded
                .entry(d.id.as_str().to_ascii_lowercase())
                .or_insert_with(|| info.clone());
            reg.exact.insert(d.id.as_str().to_string(), info);
        }
        reg
    }

    pub fn get(&self, id: &DeviceId) -> Option<&DeviceInfo> {
        self.exact
            .get(id.as_str())
            .or_else(|| self.folded.get(&id.as_str().to_ascii_lowercase()))
            .map(|a| a.as_ref())
    }

    /// The device of exactly this id: what decides whether a device is
    /// in `[[device]]` where a spelling is an identity (Home Assistant's
    /// entities), so that `KITCHEN`, `kItchen`, … are not each taken for
    /// the registered `kitchen`.
    pub fn get_exact(&self, id: &DeviceId) -> Option<&DeviceInfo> {
        self.exact.get(id.as_str()).map(|a| a.as_ref())
    }

    /// The name to forward: the registered name, or the id itself.
    pub fn name_of<'a>(&'a self, id: &'a DeviceId) -> &'a str {
        self.get(id).map_or(id.as_str(), |d| d.name.as_str())
    }

    /// Every tag key any device has (`room`, `floor`, …).
    pub fn tag_keys(&self) -> std::collections::BTreeSet<&str> {
        self.exact
            .values()
            .flat_map(|d| d.tags.keys().map(String::as_str))
            .collect()
    }

    /// Every registered id, as configured.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.exact.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.exact.len()
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
    }
}
