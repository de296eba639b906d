//! What the gateway has announced to Home Assistant, on disk
//! (`{state_dir}/home-assistant.json`).
//!
//! A restart must neither send 5 000 unchanged retained configs again nor
//! forget the ones it must clear: a device removed from the registry gets
//! an empty retained config, which needs its metrics and rules, and only
//! this file still knows them. Each entity's digest says whether the
//! config Home Assistant holds is the one the gateway would send now.

use std::collections::BTreeMap;
use std::path::Path;

use gateway_core::state_file::inventory;
use gateway_core::state_file::json::{JsonStateError, JsonStateFile, StateDocument};
use serde::{Deserialize, Serialize};

use super::discovery::Component;

/// The file name inside `state_dir`.
pub const FILE_NAME: &str = inventory::HOME_ASSISTANT;

/// One announced entity: a device's metric or an alert rule on a device.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntityKey {
    pub component: Component,
    /// The device id as the gateway knows it.
    pub device: String,
    /// The metric (sensor) or the rule (binary sensor).
    pub key: String,
}

/// What is remembered of an entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announced {
    /// Digest of the config last handed to the broker; `None` for an
    /// entity known but not announced yet.
    pub digest: Option<u64>,
    /// The device was in the registry: removing it from there clears it.
    pub registered: bool,
    /// The adapter kind that heard the device, for its model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    /// What the adapter told of the device's make, so a restart announces
    /// the same device block before the device speaks again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    component: String,
    device: String,
    key: String,
    #[serde(flatten)]
    announced: Announced,
}

#[derive(Serialize, Deserialize)]
pub struct OnDisk {
    entities: Vec<Entry>,
}

impl StateDocument for OnDisk {
    const FILE_NAME: &'static str = FILE_NAME;
}

/// The file in `state_dir`.
pub fn file(state_dir: &Path) -> JsonStateFile<OnDisk> {
    JsonStateFile::in_state_dir(state_dir)
}

/// Reads the file: a missing one is empty; a damaged one is moved aside
/// and the error returned for the caller to log (Home Assistant then gets
/// every config once more, which it takes as an update).
pub fn load(file: &JsonStateFile<OnDisk>) -> (BTreeMap<EntityKey, Announced>, Option<String>) {
    match file.load() {
        Ok(Some(on_disk)) => (
            on_disk
                .entities
                .into_iter()
                .filter_map(|e| {
                    Some((
                        EntityKey {
                            component: Component::parse(&e.component)?,
                            device: e.device,
                            key: e.key,
                        },
                        e.announced,
                    ))
                })
                .collect(),
            None,
        ),
        Ok(None) => (BTreeMap::new(), None),
        Err(e) => (BTreeMap::new(), Some(e.to_string())),
    }
}

/// Writes the file atomically.
///
/// # Errors
/// The write failed; the previous file stays.
pub fn save(
    file: &JsonStateFile<OnDisk>,
    entities: &BTreeMap<EntityKey, Announced>,
) -> Result<(), JsonStateError> {
    file.save(&OnDisk {
        entities: entities
            .iter()
            .map(|(k, a)| Entry {
                component: k.component.as_str().to_string(),
                device: k.device.clone(),
                key: k.key.clone(),
                announced: a.clone(),
            })
            .collect(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn entities_survive_a_reopen_and_a_damaged_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = BTreeMap::new();
        m.insert(
            EntityKey {
                component: Component::Sensor,
                device: "aa:bb".into(),
                key: "temperature".into(),
            },
            Announced {
                digest: Some(42),
                registered: true,
                adapter: Some("ble".into()),
                manufacturer: Some("Ruuvi Innovations".into()),
                model: Some("RuuviTag".into()),
            },
        );
        save(&file(dir.path()), &m).unwrap();
        let (back, err) = load(&file(dir.path()));
        assert!(err.is_none());
        assert_eq!(back, m);

        std::fs::write(dir.path().join(FILE_NAME), b"{not json").unwrap();
        let (back, err) = load(&file(dir.path()));
        assert!(back.is_empty());
        assert!(err.unwrap().contains("damaged"));
        assert!(!dir.path().join(FILE_NAME).exists());
    }
}
