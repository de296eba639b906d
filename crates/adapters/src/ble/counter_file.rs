//! The BTHome encryption counters on disk: `{state_dir}/ble-counters.json`.
//!
//! Replay protection must survive a restart, or every recorded frame would
//! be accepted again after one. So, like the LoRaWAN frame counters, the
//! table is written (temporary file, fsync, rename, directory fsync) before
//! the readings of the frame that moved it leave the adapter (FAULTS §3.4).
//! A damaged file is moved aside and the table starts empty: refusing to
//! start would stop every sensor, not just replays.

use std::collections::BTreeMap;
use std::path::Path;

use gateway_core::state_file::inventory;
use gateway_core::state_file::json::{JsonStateFile, StateDocument};
use serde::{Deserialize, Serialize};

use super::advert::Mac;
use super::replay::CounterTable;

/// The file name inside `state_dir`.
pub const FILE_NAME: &str = inventory::BLE_COUNTERS;

/// Why the counters could not be read or written.
pub type CounterFileError = gateway_core::state_file::json::JsonStateError;

#[derive(Serialize, Deserialize)]
struct Counters {
    /// MAC → last accepted encryption counter.
    last_counter: BTreeMap<Mac, u32>,
}

impl StateDocument for Counters {
    const FILE_NAME: &'static str = FILE_NAME;
}

/// Where the table lives; in memory only for tests and `decode`.
#[derive(Debug, Clone)]
pub struct CounterFile {
    file: JsonStateFile<Counters>,
}

impl CounterFile {
    pub fn in_state_dir(state_dir: &Path) -> Self {
        Self {
            file: JsonStateFile::in_state_dir(state_dir),
        }
    }

    pub fn in_memory() -> Self {
        Self {
            file: JsonStateFile::in_memory(),
        }
    }

    /// The table of the last run; empty, with the error to log, when the
    /// file cannot be read or is damaged (then moved aside).
    pub fn load(&self) -> (CounterTable, Option<CounterFileError>) {
        match self.file.load() {
            Ok(Some(c)) => (CounterTable::from_map(c.last_counter), None),
            Ok(None) => (CounterTable::default(), None),
            Err(e) => (CounterTable::default(), Some(e)),
        }
    }

    /// Replaces the file with `table`.
    ///
    /// # Errors
    /// The write failed; the file keeps its previous content, and the
    /// caller must not let the frame's readings out.
    pub fn save(&self, table: &CounterTable) -> Result<(), CounterFileError> {
        self.file.save(&Counters {
            last_counter: table.as_map().clone(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const A: Mac = Mac([0x54, 0x48, 0xE6, 0x8F, 0x80, 0xA5]);

    #[test]
    fn the_table_survives_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let file = CounterFile::in_state_dir(dir.path());
        let (mut t, err) = file.load();
        assert!(err.is_none());
        t.accept(A, 41);
        file.save(&t).unwrap();
        let (t, err) = file.load();
        assert!(err.is_none());
        assert_eq!(t.last(A), Some(41));
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(text.contains("\"54:48:e6:8f:80:a5\": 41"), "{text}");
    }

    #[test]
    fn a_damaged_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"{\"version\":1,\"last").unwrap();
        let (t, err) = CounterFile::in_state_dir(dir.path()).load();
        assert!(
            matches!(err, Some(CounterFileError::Damaged { .. })),
            "{err:?}"
        );
        assert_eq!(t.last(A), None);
        assert!(dir.path().join("ble-counters.json.damaged").exists());
    }

    #[test]
    fn a_failed_write_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let file = CounterFile::in_state_dir(&gone);
        assert!(file.save(&CounterTable::default()).is_err());
    }
}
