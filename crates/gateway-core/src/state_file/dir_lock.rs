//! One gateway per `state_dir`.
//!
//! The outbox, the history and the journals each lock their own files, but
//! they are opened one after another while the gateway starts: a second
//! process found the first one's outbox lock only once its adapters were
//! already running, and then lingered without taking data. This lock is
//! taken before anything starts, so a second process can leave at once and
//! say who holds the directory. It is an advisory `flock` on
//! `{state_dir}/gateway.lock`, released by the kernel when its holder exits
//! however it exits, so a stale file never blocks a restart; the holder
//! writes its pid into it for the message of the next one.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock's file name inside `state_dir`.
pub const LOCK_FILE: &str = "gateway.lock";

/// Why the state directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum DirLockError {
    /// Another process holds it.
    #[error("state directory {dir} is in use by another gateway (lock {lock} held by {})", holder(*pid))]
    Held {
        dir: PathBuf,
        lock: PathBuf,
        /// The holder's pid as it wrote it, when it could be read.
        pid: Option<u32>,
    },
    /// The directory or its lock file cannot be used at all.
    #[error("cannot lock state directory {dir}: {source}")]
    Io {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn holder(pid: Option<u32>) -> String {
    pid.map_or_else(
        || "a process whose pid is unknown".into(),
        |p| format!("pid {p}"),
    )
}

/// The held lock: the directory is this process's until it is dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Creates `dir` if needed and locks it for this process.
    ///
    /// # Errors
    /// [`DirLockError::Held`] when another process holds it, with that
    /// process's pid where it could be read; [`DirLockError::Io`] when the
    /// directory or lock file cannot be created or opened.
    pub fn acquire(dir: &Path) -> Result<Self, DirLockError> {
        let io = |source| DirLockError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let path = dir.join(LOCK_FILE);
        // Not truncated on open: the holder's pid must stay readable.
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let pid = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse().ok());
                return Err(DirLockError::Held {
                    dir: dir.to_path_buf(),
                    lock: path,
                    pid,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        // Only informative: a failure to write the pid does not make the
        // lock any less held.
        let _ = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .and_then(|()| file.sync_data());
        Ok(Self { _file: file, path })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = DirLock::acquire(&state).unwrap();
        let text = std::fs::read_to_string(first.path()).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());

        // flock is per open file description: a second open in this
        // process conflicts just as another process would.
        match DirLock::acquire(&state) {
            Err(e @ DirLockError::Held { .. }) => {
                let DirLockError::Held { pid, lock, .. } = &e else {
                    unreachable!()
                };
                assert_eq!(*pid, Some(std::process::id()));
                assert_eq!(lock, &state.join(LOCK_FILE));
                let msg = e.to_string();
                assert!(msg.contains(&state.display().to_string()), "{msg}");
                assert!(
                    msg.contains(&format!("pid {}", std::process::id())),
                    "{msg}"
                );
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        let again = DirLock::acquire(&state).unwrap();
        assert_eq!(
            std::fs::read_to_string(again.path()).unwrap().trim(),
            std::process::id().to_string()
        );
    }
}
