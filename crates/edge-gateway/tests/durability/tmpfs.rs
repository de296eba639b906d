//! A small tmpfs mounted for one test as a state directory that fills up
//! (an SD card with no space left), unmounted when dropped. Mounting needs
//! root; without it `mount` answers `None` and the test says what it left
//! out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};

pub struct Tmpfs {
    at: PathBuf,
}

impl Tmpfs {
    /// `size` as mount(8) takes it: "2m", "32m".
    pub fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self {
            at: at.to_path_buf(),
        })
    }

    /// Writes a filler file until the filesystem refuses.
    pub fn fill(&self) {
        let mut f = std::fs::File::create(self.at.join("filler")).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
    }

    /// Removes the filler (nothing when it is gone already).
    pub fn free(&self) {
        let _ = std::fs::remove_file(self.at.join("filler"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.at)
            .status();
    }
}
