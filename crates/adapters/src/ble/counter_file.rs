//! The BTHome encryption counters on disk: `{state_dir}/ble-counters.json`.
//!
//! Replay protection must survive a restart, or every recorded frame would
//! be accepted again after one. So, like the LoRaWAN frame counters, the
//! table is written (temporary file, fsync, rename, directory fsync) before
//! the readings of the frame that moved it leave the adapter (FAULTS §3.4).
//! A damaged file is moved aside and the table starts empty: refusing to
//! start would stop every sensor, not just replays.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gateway_core::state_file::{quarantine, read_if_exists, replace_atomically};
use serde::{Deserialize, Serialize};

use super::advert::Mac;
use super::replay::CounterTable;

/// The file name inside `state_dir`.
pub const FILE_NAME: &str = "ble-counters.json";

/// Why the counters could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CounterFileError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is damaged ({reason}); it was moved aside")]
    Damaged { path: PathBuf, reason: String },
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    /// MAC → last accepted encryption counter.
    last_counter: BTreeMap<Mac, u32>,
}

/// Where the table lives; `None` keeps it in memory (tests, `decode`).
#[derive(Debug, Clone)]
pub struct CounterFile {
    path: Option<PathBuf>,
}

impl CounterFile {
    pub fn in_state_dir(state_dir: &Path) -> Self {
        Self {
            path: Some(state_dir.join(FILE_NAME)),
        }
    }

    pub fn in_memory() -> Self {
        Self { path: None }
    }

    /// The table of the last run; empty, with the error to log, when the
    /// file cannot be read or is damaged (then moved aside).
    pub fn load(&self) -> (CounterTable, Option<CounterFileError>) {
        let Some(path) = &self.path else {
            return (CounterTable::default(), None);
        };
        let bytes = match read_if_exists(path) {
            Ok(Some(b)) => b,
            Ok(None) => return (CounterTable::default(), None),
            Err(source) => {
                let path = path.clone();
                let e = CounterFileError::Io {
                    action: "reading",
                    path,
                    source,
                };
                return (CounterTable::default(), Some(e));
            }
        };
        match serde_json::from_slice::<OnDisk>(&bytes) {
            Ok(d) if d.version == 1 => (CounterTable::from_map(d.last_counter), None),
            other => {
                let reason = match other {
                    Ok(d) => format!("unknown version {}", d.version),
                    Err(e) => e.to_string(),
                };
                quarantine(path);
                let path = path.clone();
                (
                    CounterTable::default(),
                    Some(CounterFileError::Damaged { path, reason }),
                )
            }
        }
    }

    /// Replaces the file with `table`.
    ///
    /// # Errors
    /// The write failed; the file keeps its previous content, and the
    /// caller must not let the frame's readings out.
    pub fn save(&self, table: &CounterTable) -> Result<(), CounterFileError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let body = OnDisk {
            version: 1,
            last_counter: table.as_map().clone(),
        };
        // A map of MACs and integers always serialises.
        let bytes = serde_json::to_vec_pretty(&body).unwrap_or_default();
        replace_atomically(path, &bytes).map_err(|f| CounterFileError::Io {
            action: f.action,
            path: f.path,
            source: f.source,
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
