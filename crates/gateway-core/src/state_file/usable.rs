//! Whether `state_dir` can hold the gateway's state, asked before anything
//! relies on it.
//!
//! A gateway that could not write its state directory used to run anyway:
//! it logged an error and went on acknowledging readings with no journal
//! and an outbox in memory, so a restart lost them while every sender had
//! been told they were safe. `run` now refuses to start (unless the config
//! says `durability = "none"`), and `validate`, which the packaged service
//! runs as its own user before `run`, says so first.
//!
//! The check writes, syncs and deletes a small file, as the user asking:
//! permission bits alone do not answer it (a read-only mount, an ACL,
//! systemd's `ProtectSystem=` all refuse writes the bits allow).
//!
//! A full disk is not a directory the gateway cannot keep state in: it is
//! one it can write again once space returns, and the journal holds
//! acknowledgements back meanwhile (nothing is acknowledged that is not
//! on disk). Refusing to start there would leave nothing draining the
//! outbox that fills it, so it is told apart ([`Space::Full`]).

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why `state_dir` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("cannot create the state directory {}: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write in the state directory {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the state directory {} is not a directory", path.display())]
    NotADirectory { path: PathBuf },
}

impl StateDirError {
    /// What to do about it, for people.
    pub fn fix(&self) -> &'static str {
        "make it writable by the user the gateway runs as (the packaged service runs as edge-gateway, and systemd creates /var/lib/edge-gateway for it), set gateway.state_dir to a directory that is, or set gateway.durability = \"none\" to run without it, losing readings on every restart"
    }
}

/// What the probe found in a usable directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    /// Written, synced and removed.
    Free,
    /// Writable, but the disk or the quota is full now.
    Full,
}

/// The probe's name: hidden, and the process id keeps two checks apart.
fn probe_name() -> String {
    format!(".edge-gateway-probe-{}", std::process::id())
}

/// Creates `dir` (and its parents) if needed, then writes, syncs and
/// removes a probe file in it: what `run` needs before it starts.
///
/// # Errors
/// The step that failed, with the directory (a full disk is not one).
pub fn ensure(dir: &Path) -> Result<Space, StateDirError> {
    std::fs::create_dir_all(dir).map_err(|source| StateDirError::Create {
        path: dir.to_path_buf(),
        source,
    })?;
    probe(dir)
}

/// Whether `run` could [`ensure`] `dir`, without leaving anything behind:
/// an existing directory is probed as `ensure` does; a missing one is
/// probed in its nearest existing ancestor, where `run` would create it.
/// For `validate`, which must not create the directory it checks.
///
/// # Errors
/// As [`ensure`] would fail.
pub fn check(dir: &Path) -> Result<Space, StateDirError> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => return probe(dir),
        Ok(_) => {
            return Err(StateDirError::NotADirectory {
                path: dir.to_path_buf(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(StateDirError::Create {
                path: dir.to_path_buf(),
                source,
            })
        }
    }
    // A relative path's last ancestor is "" (the working directory), which
    // `exists()` says is not: `state` was refused where `./state` passed.
    let Some(ancestor) = dir
        .ancestors()
        .skip(1)
        .map(|a| {
            if a.as_os_str().is_empty() {
                Path::new(".")
            } else {
                a
            }
        })
        .find(|a| a.exists())
    else {
        return Err(StateDirError::Create {
            path: dir.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    };
    if !ancestor.is_dir() {
        return Err(StateDirError::NotADirectory {
            path: ancestor.to_path_buf(),
        });
    }
    // Creating a directory is what `run` will do there: try exactly that.
    let trial = ancestor.join(probe_name());
    match std::fs::create_dir(&trial) {
        Ok(()) => {
            let _ = std::fs::remove_dir(&trial);
            Ok(Space::Free)
        }
        Err(e) if super::is_disk_full(&e) => Ok(Space::Full),
        Err(source) => Err(StateDirError::Create {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

fn probe(dir: &Path) -> Result<Space, StateDirError> {
    let path = dir.join(probe_name());
    let written = std::fs::File::create(&path).and_then(|mut f| {
        f.write_all(b"edge-gateway state directory probe\n")?;
        f.sync_all()
    });
    // A create that failed left nothing to remove.
    let removed = match std::fs::remove_file(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    };
    match written.and(removed) {
        Ok(()) => Ok(Space::Free),
        Err(e) if super::is_disk_full(&e) => Ok(Space::Full),
        Err(source) => Err(StateDirError::Write {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Root writes through permission bits: the unwritable cases only
    /// mean something to any other user.
    fn bits_are_enforced(dir: &Path) -> bool {
        let locked = dir.join("locked");
        std::fs::create_dir(&locked).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
        let enforced = std::fs::File::create(locked.join("x")).is_err();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
        let _ = std::fs::remove_file(locked.join("x"));
        std::fs::remove_dir(&locked).unwrap();
        enforced
    }

    #[test]
    fn a_writable_or_creatable_directory_passes_and_nothing_is_left() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("a/b/state");
        assert!(check(&missing).is_ok());
        assert!(!tmp.path().join("a").exists(), "check creates nothing");
        ensure(&missing).unwrap();
        assert!(missing.is_dir());
        assert_eq!(std::fs::read_dir(&missing).unwrap().count(), 0);
        assert!(check(&missing).is_ok());
    }

    #[test]
    fn a_file_is_not_a_state_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(
            check(&file),
            Err(StateDirError::NotADirectory { .. })
        ));
        assert!(ensure(&file).is_err());
        assert!(check(&file.join("below")).is_err());
    }

    #[test]
    fn an_unwritable_directory_is_refused_by_both() {
        let tmp = tempfile::tempdir().unwrap();
        if !bits_are_enforced(tmp.path()) {
            eprintln!("skipped: permission bits are not enforced for this user (root)");
            return;
        }
        let ro = tmp.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        let e = check(&ro).err().unwrap();
        assert!(matches!(e, StateDirError::Write { .. }), "{e}");
        assert!(ensure(&ro).is_err());
        let e = check(&ro.join("state")).err().unwrap();
        assert!(matches!(e, StateDirError::Create { .. }), "{e}");
        assert!(e.to_string().contains("ro/state"), "{e}");
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}
