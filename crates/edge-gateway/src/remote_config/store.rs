//! The files of `state_dir/remote-config/`: the apply journal
//! (`journal.json`, replaced atomically at every step) and the pushed
//! layers it names (`<sha256>.toml`, written atomically before the journal
//! names them, checked against their digest when read).

use std::path::{Path, PathBuf};

use gateway_core::state_file::inventory;
use gateway_core::state_file::json::{JsonStateError, JsonStateFile, StateDocument};
use gateway_core::state_file::{replace_atomically_with, FileError};
use remote_config::message::sha256_hex;
use remote_config::{Journal, Pushed};
use serde::{Deserialize, Serialize};

/// Why a remote-config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Journal(#[from] JsonStateError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("the pushed layer {path} is missing or damaged ({reason})")]
    Layer { path: PathBuf, reason: String },
}

/// The journal as a state document.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
struct Document(Journal);

impl StateDocument for Document {
    const FILE_NAME: &'static str = inventory::REMOTE_CONFIG_JOURNAL;
}

/// `state_dir/remote-config/`.
#[derive(Debug, Clone)]
pub struct Store {
    state_dir: PathBuf,
}

impl Store {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            state_dir: state_dir.to_path_buf(),
        }
    }

    fn dir(&self) -> PathBuf {
        self.state_dir.join(inventory::REMOTE_CONFIG)
    }

    fn journal_file(&self) -> JsonStateFile<Document> {
        JsonStateFile::in_state_dir(&self.state_dir)
    }

    /// The journal; none yet is an empty one.
    ///
    /// # Errors
    /// Unreadable, or damaged (then moved aside, and the caller starts
    /// from an empty journal: the local files alone).
    pub fn load(&self) -> Result<Journal, StoreError> {
        Ok(self.journal_file().load()?.map(|d| d.0).unwrap_or_default())
    }

    /// Replaces the journal, atomically.
    ///
    /// # Errors
    /// The directory cannot be made or the file written (the previous
    /// journal stays).
    pub fn save(&self, journal: &Journal) -> Result<(), StoreError> {
        let dir = self.dir();
        std::fs::create_dir_all(&dir).map_err(FileError::at("creating", &dir))?;
        self.journal_file().save(&Document(journal.clone()))?;
        Ok(())
    }

    pub(super) fn layer_file(&self, sha256: &str) -> PathBuf {
        self.dir().join(format!("{sha256}.toml"))
    }

    /// Writes a pushed layer under its digest, atomically.
    ///
    /// # Errors
    /// The directory cannot be made or the file written.
    pub fn write_layer(&self, pushed: &Pushed, text: &str) -> Result<(), StoreError> {
        let dir = self.dir();
        std::fs::create_dir_all(&dir).map_err(FileError::at("creating", &dir))?;
        // Not a JSON document: the TOML as pushed, byte for byte, so its
        // digest (its name) can be checked when it is read back.
        replace_atomically_with(&self.layer_file(&pushed.sha256), |f| {
            std::io::Write::write_all(f, text.as_bytes())
        })?;
        Ok(())
    }

    /// A pushed layer's text, checked against its digest.
    ///
    /// # Errors
    /// Missing, unreadable, or not the content the journal names.
    pub fn read_layer(&self, pushed: &Pushed) -> Result<String, StoreError> {
        let path = self.layer_file(&pushed.sha256);
        let text = std::fs::read_to_string(&path).map_err(|e| StoreError::Layer {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if sha256_hex(&text) != pushed.sha256 {
            return Err(StoreError::Layer {
                path,
                reason: "its SHA-256 is not the one the journal names".into(),
            });
        }
        Ok(text)
    }

    /// Removes the layers the journal no longer names (best effort: a
    /// leftover is only disk space).
    pub fn forget_other_layers(&self, journal: &Journal) {
        let keep: Vec<String> = [
            journal.applied.as_ref(),
            journal.candidate.as_ref().map(|c| &c.pushed),
        ]
        .into_iter()
        .flatten()
        .map(|p| format!("{}.toml", p.sha256))
        .collect();
        let Ok(entries) = std::fs::read_dir(self.dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.ends_with(".toml") && !keep.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// How logs and problems name a pushed layer.
pub fn label(pushed: &Pushed) -> String {
    format!(
        "pushed configuration {} (serial {})",
        pushed.version, pushed.serial
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_and_layers_round_trip_and_damage_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert_eq!(store.load().unwrap(), Journal::default());
        let text = "[aggregation]\nwindow = \"1m\"\n";
        let p = Pushed {
            version: "v1".into(),
            serial: 1,
            sha256: sha256_hex(text),
        };
        store.write_layer(&p, text).unwrap();
        let mut j = Journal::default();
        j.stage(p.clone(), "t");
        store.save(&j).unwrap();
        assert_eq!(store.load().unwrap(), j);
        assert_eq!(store.read_layer(&p).unwrap(), text);
        std::fs::write(store.layer_file(&p.sha256), "[aggregation]\n").unwrap();
        assert!(store.read_layer(&p).is_err());
        let old = Pushed {
            sha256: "00".into(),
            ..p.clone()
        };
        store.write_layer(&old, "").unwrap();
        store.forget_other_layers(&j);
        assert!(!store.layer_file("00").exists());
        assert!(store.layer_file(&p.sha256).exists());
    }
}
