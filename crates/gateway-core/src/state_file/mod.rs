//! The state files' common ground.
//!
//! - Small files (checkpoint, alert state, LoRaWAN frame counters) are
//!   replaced whole and atomically: written to a temporary file beside the
//!   target, fsynced, renamed over it, and the directory fsynced, so a power
//!   cut leaves the old file or the new one, never half of each.
//! - [`read_if_exists`] and [`quarantine`]: a missing file is no state; a
//!   damaged one is moved aside to `….damaged`, kept for inspection and
//!   never read again.
//! - [`is_disk_full`]: the one test for "the disk or its quota is full".
//! - [`frame`]: the length + CRC framing of the append-only logs (the
//!   ingress journal, the outbox and the history), and [`fields`]: the
//!   little-endian fields inside a frame.
//! - [`dir_lock`]: one gateway per state directory.
//! - [`json`]: the small JSON documents' load-or-quarantine and atomic save.
//! - [`inventory`]: every file under `state_dir`, named once.
//! - [`usable`]: whether `state_dir` can be created and written, asked
//!   before the gateway relies on it.

pub mod dir_lock;
pub mod fields;
pub mod frame;
pub mod inventory;
pub mod json;
pub mod provenance;
pub mod usable;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Which step failed, on which file: the one I/O error of every state
/// file (journal, checkpoint, outbox, alert and counter stores), so "is the
/// disk full?" has one answer.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct FileError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl FileError {
    /// A `map_err` for `action` ("reading", "syncing", …) on `path`.
    pub fn at(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self {
            action,
            path,
            source,
        }
    }

    /// The disk (or the user's quota) is full.
    pub fn is_disk_full(&self) -> bool {
        is_disk_full(&self.source)
    }
}

/// Replaces `path` with `bytes`.
///
/// # Errors
/// A create, write, fsync or rename that failed; the previous file stays.
pub fn replace_atomically(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    replace_atomically_with(path, |f| f.write_all(bytes))
}

/// Replaces `path` with what `write` writes into the (seekable) temporary
/// file: a large file is streamed rather than built in memory first.
///
/// # Errors
/// A create, write, fsync or rename that failed; the previous file stays.
pub fn replace_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<(), FileError> {
    stage(path, write)?.commit()
}

/// A replacement written to its temporary file and not yet synced: the
/// slow part, [`Staged::commit`], can run on another thread.
#[derive(Debug)]
pub struct Staged {
    tmp: PathBuf,
    path: PathBuf,
    file: File,
}

fn failed(action: &'static str, at: &Path) -> impl FnOnce(std::io::Error) -> FileError {
    FileError::at(action, at)
}

/// Writes the replacement of `path` into a temporary file beside it.
///
/// # Errors
/// The temporary file could not be created or written.
pub fn stage(
    path: &Path,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<Staged, FileError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = File::create(&tmp).map_err(failed("creating", &tmp))?;
    write(&mut file).map_err(failed("writing", &tmp))?;
    Ok(Staged {
        tmp,
        path: path.to_path_buf(),
        file,
    })
}

impl Staged {
    /// Syncs the temporary file, renames it over the target and syncs the
    /// directory, so a power cut leaves the old file or the new one.
    ///
    /// # Errors
    /// A sync or the rename failed; the previous file stays.
    pub fn commit(self) -> Result<(), FileError> {
        self.commit_keeping(None)
    }

    /// Like [`commit`](Self::commit), first moving the file it replaces to
    /// `previous`: one damaged generation then still leaves the one before.
    /// A crash between the two renames leaves `previous` and no target;
    /// the reader falls back to `previous`.
    ///
    /// # Errors
    /// A sync or a rename failed; the previous file stays.
    pub fn commit_keeping(self, previous: Option<&Path>) -> Result<(), FileError> {
        self.file.sync_all().map_err(failed("syncing", &self.tmp))?;
        drop(self.file);
        if let Some(previous) = previous {
            match std::fs::rename(&self.path, previous) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(failed("renaming", &self.path)(e)),
            }
        }
        std::fs::rename(&self.tmp, &self.path).map_err(failed("renaming", &self.tmp))?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(failed("syncing", dir))?;
        }
        Ok(())
    }
}

/// The file's bytes, `None` if it does not exist.
///
/// # Errors
/// It exists and cannot be read.
pub fn read_if_exists(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Moves a damaged state file aside (`windows.ckpt` → `windows.ckpt.damaged`)
/// so it is kept for inspection but not read again; returns where it went.
/// A failure to move it is ignored: the caller already treats the file as
/// lost, and the next save replaces it.
pub fn quarantine(path: &Path) -> PathBuf {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".damaged");
    let aside = PathBuf::from(aside);
    let _ = std::fs::rename(path, &aside);
    aside
}

/// The disk or the user's quota is full (ENOSPC, EDQUOT): a condition that
/// waiting or freeing space cures, unlike other I/O errors.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    matches!(e.raw_os_error(), Some(ENOSPC | EDQUOT)) || e.kind() == std::io::ErrorKind::StorageFull
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replace_leaves_only_the_new_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        replace_atomically(&path, b"old").unwrap();
        replace_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert!(!dir.path().join("state.json.tmp").exists());
        let e = replace_atomically(&dir.path().join("missing/state.json"), b"x").unwrap_err();
        assert_eq!(e.action, "creating");
    }

    #[test]
    fn a_missing_file_is_none_and_a_damaged_one_goes_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.json");
        assert_eq!(read_if_exists(&path).unwrap(), None);
        std::fs::write(&path, b"{").unwrap();
        assert_eq!(read_if_exists(&path).unwrap().as_deref(), Some(&b"{"[..]));
        let aside = quarantine(&path);
        assert_eq!(aside, dir.path().join("alerts.json.damaged"));
        assert!(!path.exists() && aside.exists());
    }

    #[test]
    fn disk_full_is_enospc_or_a_quota() {
        for code in [28, 122] {
            assert!(is_disk_full(&std::io::Error::from_raw_os_error(code)));
        }
        assert!(!is_disk_full(&std::io::Error::from_raw_os_error(13)));
    }

    #[test]
    fn a_commit_keeping_the_previous_generation_moves_the_old_file_aside() {
        let dir = tempfile::tempdir().unwrap();
        let (path, prev) = (dir.path().join("w.ckpt"), dir.path().join("w.prev.ckpt"));
        stage(&path, |f| f.write_all(b"one"))
            .unwrap()
            .commit_keeping(Some(&prev))
            .unwrap();
        assert!(!prev.exists(), "nothing to keep the first time");
        stage(&path, |f| f.write_all(b"two"))
            .unwrap()
            .commit_keeping(Some(&prev))
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read(&prev).unwrap(), b"one");
    }
}
