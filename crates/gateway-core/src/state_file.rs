//! Small state files (checkpoint, alert state, LoRaWAN frame counters)
//! replaced whole and atomically: written to a temporary file beside the
//! target, fsynced, renamed over it, and the directory fsynced, so a power
//! cut leaves the old file or the new one, never half of each.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Which step failed, on which file.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct WriteFailure {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Replaces `path` with `bytes`.
///
/// # Errors
/// A create, write, fsync or rename that failed; the previous file stays.
pub fn replace_atomically(path: &Path, bytes: &[u8]) -> Result<(), WriteFailure> {
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
) -> Result<(), WriteFailure> {
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

fn failed(action: &'static str, at: &Path) -> impl FnOnce(std::io::Error) -> WriteFailure {
    let path = at.to_path_buf();
    move |source| WriteFailure {
        action,
        path,
        source,
    }
}

/// Writes the replacement of `path` into a temporary file beside it.
///
/// # Errors
/// The temporary file could not be created or written.
pub fn stage(
    path: &Path,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<Staged, WriteFailure> {
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
    pub fn commit(self) -> Result<(), WriteFailure> {
        self.commit_keeping(None)
    }

    /// Like [`commit`](Self::commit), first moving the file it replaces to
    /// `previous`: one damaged generation then still leaves the one before.
    /// A crash between the two renames leaves `previous` and no target;
    /// the reader falls back to `previous`.
    ///
    /// # Errors
    /// A sync or a rename failed; the previous file stays.
    pub fn commit_keeping(self, previous: Option<&Path>) -> Result<(), WriteFailure> {
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
