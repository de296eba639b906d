//! Which adapter each device was last heard through, kept across restarts
//! in `{state_dir}/device-adapters.json` (by the dashboard, which shows
//! it), so the overview names a device's protocol, and the windows and
//! pages their adapter's `units`, right after a start, before the device
//! speaks again.
//!
//! Stored by adapter name and type, not by `SourceId`: ids are handed out
//! in the order adapters register, which a reordered config changes. The
//! file is small (a line per device), replaced atomically and only when a
//! device's adapter changed; a damaged one is moved aside and the pages
//! learn the adapters again from the next readings.

use std::collections::BTreeMap;
use std::path::Path;

use super::inventory;
use super::json::{JsonStateError, JsonStateFile, StateDocument};
use crate::{SourceId, Sources};
use serde::{Deserialize, Serialize};
use tracing::warn;

/// One device's adapter as the file keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Heard {
    adapter: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Serialize, Deserialize)]
struct DeviceAdapters {
    devices: BTreeMap<String, Heard>,
}

impl StateDocument for DeviceAdapters {
    const FILE_NAME: &'static str = inventory::DEVICE_ADAPTERS;
}

/// `{state_dir}/device-adapters.json`.
#[derive(Debug, Clone)]
pub struct ProvenanceFile {
    file: JsonStateFile<DeviceAdapters>,
}

impl ProvenanceFile {
    pub fn in_dir(state_dir: &Path) -> Self {
        Self {
            file: JsonStateFile::in_state_dir(state_dir),
        }
    }

    /// device → its adapter's id in `sources` (registered there by name and
    /// type, so the adapter starting later gets the same id). Nothing when
    /// the file is missing; a damaged file is set aside with a warning.
    pub fn load(&self, sources: &Sources) -> BTreeMap<String, SourceId> {
        match self.file.load() {
            Ok(Some(saved)) => saved
                .devices
                .into_iter()
                .map(|(device, h)| (device, sources.register(&h.adapter, &h.kind)))
                .collect(),
            Ok(None) => BTreeMap::new(),
            Err(e) => {
                warn!(error = %e, "Cannot read which adapter each device came through; the pages learn it from the next readings.");
                BTreeMap::new()
            }
        }
    }

    /// Replaces the file with `devices` (device → adapter id in `sources`).
    ///
    /// # Errors
    /// A write, fsync or rename that failed; the previous file stays.
    pub fn save(
        &self,
        devices: &BTreeMap<String, SourceId>,
        sources: &Sources,
    ) -> Result<(), JsonStateError> {
        let devices = devices
            .iter()
            .filter_map(|(device, id)| {
                let s = sources.get(*id)?;
                Some((
                    device.clone(),
                    Heard {
                        adapter: s.name,
                        kind: s.kind,
                    },
                ))
            })
            .collect();
        self.file.save(&DeviceAdapters { devices })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn adapters_come_back_by_name_whatever_order_they_register_in() {
        let dir = tempfile::tempdir().unwrap();
        let file = ProvenanceFile::in_dir(dir.path());
        let before = Sources::default();
        let mqtt = before.register("local", "mqtt");
        let serial = before.register("relay", "serial_line");
        let devices = BTreeMap::from([("a".to_string(), mqtt), ("b".to_string(), serial)]);
        file.save(&devices, &before).unwrap();

        // The config lists the serial relay first now.
        let after = Sources::default();
        let relay = after.register("relay", "serial_line");
        let back = file.load(&after);
        assert_eq!(back["b"], relay);
        assert_eq!(after.get(back["a"]).unwrap().kind, "mqtt");
        // The MQTT adapter starting later finds the id the file gave it.
        assert_eq!(after.register("local", "mqtt"), back["a"]);
    }

    #[test]
    fn a_damaged_file_is_set_aside_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = ProvenanceFile::in_dir(dir.path());
        std::fs::write(dir.path().join("device-adapters.json"), b"{\"a\": 3").unwrap();
        assert!(file.load(&Sources::default()).is_empty());
        assert!(!dir.path().join("device-adapters.json").exists());
        assert!(dir.path().join("device-adapters.json.damaged").exists());
    }
}
