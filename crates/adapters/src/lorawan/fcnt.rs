//! The last accepted frame counter of each device, on disk.
//!
//! Replay protection is only as good as its memory: a gateway that forgot
//! the counters at restart would accept every recorded frame again. So each
//! accepted uplink's counter is written to `{state_dir}/lorawan-fcnt.json`
//! *before* its readings leave the adapter (FAULTS §3.4: persist, then act),
//! atomically: a temporary file, fsync, rename, directory fsync, as the
//! window checkpoint does. A power cut leaves the old file or the new one.
//! Uplinks that come due together are staged and written once (the fsyncs
//! cost ~10 ms here, the rest of an uplink ~2 µs).
//!
//! If the file cannot be written, the uplink is refused: a frame whose
//! counter cannot be remembered could be replayed after a restart (FAULTS
//! §3.8, ENOSPC on the state store).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gateway_core::state_file::{quarantine, read_if_exists, replace_atomically, FileError};
use serde::{Deserialize, Serialize};

/// The file name inside `state_dir`.
pub const FILE_NAME: &str = "lorawan-fcnt.json";

/// Why the counters could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Io(#[from] FileError),
    #[error("{path} is damaged ({reason}); it was moved aside")]
    Damaged { path: PathBuf, reason: String },
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    /// Device id → last accepted 32-bit FCnt.
    last_fcnt: BTreeMap<String, u32>,
}

/// Last accepted FCnt per device id.
#[derive(Debug, Default)]
pub struct FcntStore {
    /// `None`: memory only (tests, benches).
    path: Option<PathBuf>,
    last: BTreeMap<String, u32>,
}

impl FcntStore {
    /// A store that never touches the disk.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Opens the store in `state_dir`. A missing file is an empty store; a
    /// damaged one is moved aside (`.damaged`) and the store starts empty,
    /// with the error returned for the caller to log: refusing to start
    /// would stop every device, not just replays.
    pub fn open(state_dir: &Path) -> (Self, Option<StoreError>) {
        let path = state_dir.join(FILE_NAME);
        let mut store = Self {
            path: Some(path.clone()),
            last: BTreeMap::new(),
        };
        let bytes = match read_if_exists(&path) {
            Ok(Some(b)) => b,
            Ok(None) => return (store, None),
            Err(source) => {
                let err = StoreError::Io(FileError {
                    action: "reading",
                    path,
                    source,
                });
                return (store, Some(err));
            }
        };
        match serde_json::from_slice::<OnDisk>(&bytes) {
            Ok(d) if d.version == 1 => {
                store.last = d.last_fcnt;
                (store, None)
            }
            other => {
                let reason = match other {
                    Ok(d) => format!("unknown version {}", d.version),
                    Err(e) => e.to_string(),
                };
                quarantine(&path);
                (store, Some(StoreError::Damaged { path, reason }))
            }
        }
    }

    /// The last accepted counter of `device`, if any.
    pub fn last(&self, device: &str) -> Option<u32> {
        self.last.get(device).copied()
    }

    /// Records `fcnt` as `device`'s last accepted counter, on disk first.
    ///
    /// # Errors
    /// The write failed; memory is unchanged, so the uplink must be refused.
    pub fn commit(&mut self, device: &str, fcnt: u32) -> Result<(), StoreError> {
        let previous = self.stage(device, fcnt);
        let result = self.flush();
        if result.is_err() {
            self.restore(device, previous);
        }
        result
    }

    /// Records `fcnt` in memory only, returning the previous counter for
    /// [`Self::restore`]; [`Self::flush`] makes every staged counter durable
    /// in one write, so a burst of uplinks costs one fsync, not one each.
    pub fn stage(&mut self, device: &str, fcnt: u32) -> Option<u32> {
        self.last.insert(device.to_string(), fcnt)
    }

    /// Undoes a [`Self::stage`] whose flush failed (in reverse order of
    /// staging when a device was staged twice).
    pub fn restore(&mut self, device: &str, previous: Option<u32>) {
        match previous {
            Some(p) => self.last.insert(device.to_string(), p),
            None => self.last.remove(device),
        };
    }

    /// Writes every counter atomically.
    ///
    /// # Errors
    /// The write failed; the file keeps its previous content.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.save()
    }

    fn save(&self) -> Result<(), StoreError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let body = OnDisk {
            version: 1,
            last_fcnt: self.last.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&body).unwrap_or_default();
        replace_atomically(path, &bytes).map_err(|f| {
            StoreError::Io(FileError {
                action: f.action,
                path: f.path,
                source: f.source,
            })
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn counters_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, err) = FcntStore::open(dir.path());
        assert!(err.is_none());
        assert_eq!(s.last("a"), None);
        s.commit("a", 7).unwrap();
        s.commit("b", 70_000).unwrap();
        s.commit("a", 8).unwrap();
        let (s, err) = FcntStore::open(dir.path());
        assert!(err.is_none());
        assert_eq!((s.last("a"), s.last("b")), (Some(8), Some(70_000)));
        assert!(!dir.path().join("lorawan-fcnt.json.tmp").exists());
    }

    #[test]
    fn a_damaged_file_is_moved_aside_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"{\"version\":1,\"last_f").unwrap();
        let (s, err) = FcntStore::open(dir.path());
        assert!(matches!(err, Some(StoreError::Damaged { .. })), "{err:?}");
        assert_eq!(s.last("a"), None);
        assert!(dir.path().join("lorawan-fcnt.json.damaged").exists());
    }

    #[test]
    fn a_failed_write_leaves_the_counter_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let (mut s, _) = FcntStore::open(&state);
        s.commit("a", 1).unwrap();
        std::fs::remove_dir_all(&state).unwrap();
        assert!(s.commit("a", 2).is_err());
        assert!(s.commit("new", 2).is_err());
        assert_eq!((s.last("a"), s.last("new")), (Some(1), None));
    }
}
