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
    /// The config topic its config was handed to; absent in files of
    /// releases before ids were made injective (then it is the one
    /// `Topics::legacy` names), so a restart can empty the old one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Wall-clock ms its device was last heard, for `forget_after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heard: Option<i64>,
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
    /// Retained topics still to be emptied when the gateway stopped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    clears: Vec<String>,
}

/// What the file holds.
#[derive(Debug, Default, PartialEq)]
pub struct Loaded {
    pub entities: BTreeMap<EntityKey, Announced>,
    pub clears: Vec<String>,
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
pub fn load(file: &JsonStateFile<OnDisk>) -> (Loaded, Option<String>) {
    match file.load() {
        Ok(Some(on_disk)) => (
            Loaded {
                entities: on_disk
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
                clears: on_disk.clears,
            },
            None,
        ),
        Ok(None) => (Loaded::default(), None),
        Err(e) => (Loaded::default(), Some(e.to_string())),
    }
}

/// Writes the file atomically.
///
/// # Errors
/// The write failed; the previous file stays.
pub fn save(
    file: &JsonStateFile<OnDisk>,
    entities: &BTreeMap<EntityKey, Announced>,
    clears: &[String],
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
        clears: clears.to_vec(),
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
                topic: Some("homeassistant/sensor/gw_aa_bb_temperature/config".into()),
                heard: Some(1_700_000_000_000),
            },
        );
        let clears = vec!["edge-gateway/gw/x/availability".to_string()];
        save(&file(dir.path()), &m, &clears).unwrap();
        let (back, err) = load(&file(dir.path()));
        assert!(err.is_none());
        assert_eq!(back.entities, m);
        assert_eq!(back.clears, clears);

        // A file of the release before: no topic, no heard, no clears.
        std::fs::write(
            dir.path().join(FILE_NAME),
            br#"{"version":1,"entities":[{"component":"sensor","device":"aa:bb","key":"t","digest":7,"registered":false}]}"#,
        )
        .unwrap();
        let (back, err) = load(&file(dir.path()));
        if let Some(e) = err {
            panic!("{e}");
        }
        let a = back.entities.values().next().unwrap();
        assert_eq!(
            (a.digest, a.topic.as_deref(), a.heard),
            (Some(7), None, None)
        );

        std::fs::write(dir.path().join(FILE_NAME), b"{not json").unwrap();
        let (back, err) = load(&file(dir.path()));
        assert!(back.entities.is_empty());
        assert!(err.unwrap().contains("damaged"));
        assert!(!dir.path().join(FILE_NAME).exists());
    }
}
