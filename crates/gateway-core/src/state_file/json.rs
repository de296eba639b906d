//! Small JSON state files (alert state, BLE and LoRaWAN counters): one
//! way to load, version, quarantine and replace them.
//!
//! Each file is `{"version": N, …the document's fields…}`. Every such file
//! had written its own load-or-quarantine and atomic save, each a chance to
//! forget a step (the directory fsync, moving a damaged file aside before
//! the next save overwrites the evidence). A file written before a
//! document carried a version reads as version 1: those are the files the
//! first releases left behind.
//!
//! Policy, the same for every document:
//! - no file: no state (a first start);
//! - unreadable (permissions, I/O): an error, the file is left alone (it
//!   may read next time);
//! - damaged (not JSON, wrong shape, a version this build does not know):
//!   moved aside to `….damaged` and the caller starts afresh: refusing to
//!   start would stop every device, not just the state's one purpose;
//! - saves are atomic ([`super::replace_atomically`]): a power cut leaves
//!   the old file or the new one.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{quarantine, read_if_exists, replace_atomically, FileError};

/// A document kept in a [`JsonStateFile`].
pub trait StateDocument: Serialize + DeserializeOwned {
    /// Its file name inside `state_dir`; listed in [`super::inventory`].
    const FILE_NAME: &'static str;
    /// The format version this build writes and reads.
    const VERSION: u32 = 1;
    /// Written on one line, without indentation: for a document saved
    /// often (the LoRaWAN counters, once per batch of uplinks), where
    /// pretty-printing was most of the cost of a save. Any build reads
    /// both forms.
    const COMPACT: bool = false;

    /// The document as compact JSON (an object), for a [`Self::COMPACT`]
    /// one: serde's encoding, unless the document writes itself faster,
    /// byte for byte the same.
    ///
    /// # Errors
    /// The document does not encode.
    fn write_compact(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        serde_json::to_writer(out, self)
    }
}

/// Why a state file could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum JsonStateError {
    #[error(transparent)]
    Io(#[from] FileError),
    #[error("{path} is damaged ({reason}); it was moved aside to {aside}")]
    Damaged {
        path: PathBuf,
        aside: PathBuf,
        reason: String,
    },
    #[error("encoding {path}: {source}")]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl JsonStateError {
    /// The disk (or its quota) is full: freeing space cures it.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, JsonStateError::Io(f) if f.is_disk_full())
    }
}

#[derive(Serialize)]
struct Written<'a, T> {
    version: u32,
    #[serde(flatten)]
    document: &'a T,
}

#[derive(Deserialize)]
struct Read<T> {
    #[serde(default)]
    version: Option<u32>,
    #[serde(flatten)]
    document: T,
}

/// Where a [`StateDocument`] lives; in memory only (tests, `decode`,
/// `replay`) when there is no state directory.
pub struct JsonStateFile<T> {
    path: Option<PathBuf>,
    document: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for JsonStateFile<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonStateFile")
            .field("path", &self.path)
            .finish()
    }
}

/// In memory: what a store without a state directory starts as.
impl<T> Default for JsonStateFile<T> {
    fn default() -> Self {
        Self {
            path: None,
            document: PhantomData,
        }
    }
}

impl<T> Clone for JsonStateFile<T> {
    fn clone(&self) -> Self {
        Self {
            path: self.path.clone(),
            document: PhantomData,
        }
    }
}

impl<T: StateDocument> JsonStateFile<T> {
    pub fn in_state_dir(state_dir: &Path) -> Self {
        Self {
            path: Some(state_dir.join(T::FILE_NAME)),
            document: PhantomData,
        }
    }

    pub fn in_memory() -> Self {
        Self {
            path: None,
            document: PhantomData,
        }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The saved document, `None` when there is none (or no file at all).
    ///
    /// # Errors
    /// [`JsonStateError::Io`]: the file exists and cannot be read (left in
    /// place); [`JsonStateError::Damaged`]: it was moved aside. Either way
    /// the caller starts afresh and says so.
    pub fn load(&self) -> Result<Option<T>, JsonStateError> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let bytes = match read_if_exists(path) {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(None),
            Err(e) => return Err(FileError::at("reading", path)(e).into()),
        };
        let reason = match serde_json::from_slice::<Read<T>>(&bytes) {
            Ok(r) if r.version.unwrap_or(1) == T::VERSION => return Ok(Some(r.document)),
            Ok(r) => format!(
                "version {} where this build reads {}",
                r.version.unwrap_or(1),
                T::VERSION
            ),
            Err(e) => e.to_string(),
        };
        let aside = quarantine(path);
        Err(JsonStateError::Damaged {
            path: path.clone(),
            aside,
            reason,
        })
    }

    /// Replaces the file with `document`, atomically.
    ///
    /// # Errors
    /// A write, fsync or rename failed (the previous file stays), or the
    /// document does not encode.
    pub fn save(&self, document: &T) -> Result<(), JsonStateError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let encoded = if T::COMPACT {
            compact(T::VERSION, document)
        } else {
            serde_json::to_vec_pretty(&Written {
                version: T::VERSION,
                document,
            })
        };
        let bytes = encoded.map_err(|source| JsonStateError::Encode {
            path: path.clone(),
            source,
        })?;
        replace_atomically(path, &bytes)?;
        Ok(())
    }
}

/// What [`Written`] encodes, on one line: `{"version":N,` and then the
/// document's own fields, spliced after them rather than passed through
/// serde's `flatten` (which takes a struct apart field by field).
fn compact<T: StateDocument>(version: u32, document: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut bytes = format!("{{\"version\":{version}").into_bytes();
    let at = bytes.len();
    document.write_compact(&mut bytes)?;
    match bytes.get(at..) {
        Some(b"{}") => {
            bytes.truncate(at);
            bytes.push(b'}');
        }
        Some([b'{', ..]) => bytes[at] = b',',
        _ => {
            return Err(serde::ser::Error::custom(
                "a state document must encode as a JSON object",
            ))
        }
    }
    Ok(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Counters {
        last: BTreeMap<String, u32>,
    }

    impl StateDocument for Counters {
        const FILE_NAME: &'static str = "counters.json";
    }

    fn counters(n: u32) -> Counters {
        Counters {
            last: BTreeMap::from([("00:11:22:33:44:55".to_string(), n)]),
        }
    }

    #[test]
    fn a_document_survives_a_save_and_a_load_with_its_version_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = JsonStateFile::<Counters>::in_state_dir(dir.path());
        assert_eq!(file.load().unwrap(), None, "no file is no state");
        file.save(&counters(41)).unwrap();
        assert_eq!(file.load().unwrap(), Some(counters(41)));
        let text = std::fs::read_to_string(dir.path().join("counters.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["last"]["00:11:22:33:44:55"], 41);
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Compact {
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        last: BTreeMap<String, u32>,
    }

    impl StateDocument for Compact {
        const FILE_NAME: &'static str = "counters.json";
        const COMPACT: bool = true;
    }

    /// The compact form is what the pretty one says, on one line; each
    /// form reads back with either setting, so neither an upgrade nor a
    /// downgrade loses a counter.
    #[test]
    fn a_compact_document_is_the_pretty_one_on_one_line_and_both_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counters.json");
        let pretty = JsonStateFile::<Counters>::in_state_dir(dir.path());
        let compact = JsonStateFile::<Compact>::in_state_dir(dir.path());
        let last = BTreeMap::from([("a\"b".to_string(), 7), ("c".to_string(), u32::MAX)]);
        pretty.save(&Counters { last: last.clone() }).unwrap();
        let pretty_text = std::fs::read(&path).unwrap();
        assert_eq!(
            compact.load().unwrap(),
            Some(Compact { last: last.clone() })
        );

        compact.save(&Compact { last: last.clone() }).unwrap();
        let text = std::fs::read(&path).unwrap();
        assert_eq!(text, br#"{"version":1,"last":{"a\"b":7,"c":4294967295}}"#);
        let a: serde_json::Value = serde_json::from_slice(&text).unwrap();
        let b: serde_json::Value = serde_json::from_slice(&pretty_text).unwrap();
        assert_eq!(a, b);
        assert_eq!(pretty.load().unwrap(), Some(Counters { last }));

        compact
            .save(&Compact {
                last: BTreeMap::new(),
            })
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), br#"{"version":1}"#);
        assert_eq!(
            compact.load().unwrap(),
            Some(Compact {
                last: BTreeMap::new()
            })
        );
    }

    #[test]
    fn a_file_from_before_versions_reads_as_version_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("counters.json"),
            br#"{"last":{"00:11:22:33:44:55":7}}"#,
        )
        .unwrap();
        let file = JsonStateFile::<Counters>::in_state_dir(dir.path());
        assert_eq!(file.load().unwrap(), Some(counters(7)));
    }

    #[test]
    fn damage_or_an_unknown_version_moves_the_file_aside() {
        for bytes in [
            &br#"{"version":1,"la"#[..],
            br#"{"version":9,"last":{}}"#,
            b"[1,2]",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("counters.json");
            std::fs::write(&path, bytes).unwrap();
            let file = JsonStateFile::<Counters>::in_state_dir(dir.path());
            let e = file.load().unwrap_err();
            assert!(matches!(e, JsonStateError::Damaged { .. }), "{e}");
            assert!(!path.exists());
            assert_eq!(
                std::fs::read(dir.path().join("counters.json.damaged")).unwrap(),
                bytes
            );
            assert_eq!(file.load().unwrap(), None, "afresh after that");
        }
    }

    #[test]
    fn a_failed_save_is_an_error_and_in_memory_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = JsonStateFile::<Counters>::in_state_dir(&dir.path().join("gone"));
        assert!(matches!(
            file.save(&counters(1)),
            Err(JsonStateError::Io(_))
        ));
        let memory = JsonStateFile::<Counters>::in_memory();
        memory.save(&counters(1)).unwrap();
        assert_eq!(memory.load().unwrap(), None);
    }
}
