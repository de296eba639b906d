//! The file itself: whole lines appended, one `fdatasync` per append,
//! rotated by size the way logrotate numbers files (`path.1` the newest
//! rotated one, `path.<keep>` the oldest, older ones deleted), so a
//! shipper tailing `path` (Vector, Fluent Bit, Filebeat, `tail -F`) sees a
//! rename and follows the new file. A line is never split between files,
//! and an append that fails is cut back off, so the file never holds half
//! a line the outbox will send again.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

pub struct RotatingFile {
    path: PathBuf,
    rotate_bytes: u64,
    keep: u32,
    /// Open for appending, with its length.
    open: Option<(File, u64)>,
}

impl RotatingFile {
    pub fn new(path: PathBuf, rotate_bytes: u64, keep: u32) -> Self {
        Self {
            path,
            rotate_bytes,
            keep,
            open: None,
        }
    }

    /// Appends `text` (whole lines) and syncs it; rotates first whenever
    /// the next line would take the file past `rotate_bytes`.
    ///
    /// # Errors
    /// The directory or file cannot be created, written or synced (full
    /// disk, permissions, a path that is not a file); what was appended
    /// of this call to the current file is cut back off.
    pub fn append(&mut self, text: &[u8]) -> io::Result<()> {
        let mut rest = text;
        while !rest.is_empty() {
            let size = self.current()?.1;
            let room = self.rotate_bytes.saturating_sub(size);
            let fits = fitting(rest, room);
            let take = match fits {
                0 if size > 0 => {
                    self.rotate()?;
                    continue;
                }
                // A line longer than rotate_bytes gets a file of its own.
                0 => line_end(rest),
                n => n,
            };
            let (chunk, after) = rest.split_at(take);
            let (file, len) = self.current()?;
            let start = *len;
            let written = file.write_all(chunk).and_then(|()| file.sync_data());
            if let Err(e) = written {
                let _ = file.set_len(start);
                self.open = None;
                return Err(e);
            }
            *len += chunk.len() as u64;
            rest = after;
        }
        Ok(())
    }

    fn current(&mut self) -> io::Result<&mut (File, u64)> {
        if self.open.is_none() {
            if let Some(dir) = parent(&self.path) {
                fs::create_dir_all(dir)?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            let len = file.metadata()?.len();
            self.open = Some((file, len));
        }
        self.open
            .as_mut()
            .ok_or_else(|| io::Error::other("the file was just opened"))
    }

    /// `path` → `path.1` → … → `path.<keep>`, the oldest deleted.
    fn rotate(&mut self) -> io::Result<()> {
        self.open = None;
        if self.keep == 0 {
            remove_if_there(&self.path)?;
        } else {
            remove_if_there(&self.numbered(self.keep))?;
            for n in (1..self.keep).rev() {
                rename_if_there(&self.numbered(n), &self.numbered(n + 1))?;
            }
            fs::rename(&self.path, self.numbered(1))?;
        }
        // The renames must be on disk before lines go to the new file.
        if let Some(dir) = parent(&self.path) {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    fn numbered(&self, n: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }
}

fn parent(path: &Path) -> Option<&Path> {
    path.parent().filter(|p| !p.as_os_str().is_empty())
}

/// Bytes of the whole lines at the start of `text` that fit in `room`.
fn fitting(text: &[u8], room: u64) -> usize {
    let room = usize::try_from(room).unwrap_or(usize::MAX).min(text.len());
    if room == text.len() {
        return room;
    }
    text[..room]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1)
}

/// Bytes of the first line of `text`, its newline included.
fn line_end(text: &[u8]) -> usize {
    text.iter()
        .position(|b| *b == b'\n')
        .map_or(text.len(), |i| i + 1)
}

fn remove_if_there(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_there(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn lines(n: usize, width: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| {
                let mut l = format!("{i:0width$}").into_bytes();
                l.push(b'\n');
                l
            })
            .collect()
    }

    #[test]
    fn files_rotate_at_whole_lines_and_only_keep_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.jsonl");
        let mut f = RotatingFile::new(path.clone(), 100, 2);
        // 10-byte lines: 10 per file.
        f.append(&lines(25, 9)).unwrap();
        f.append(&lines(20, 9)).unwrap();
        let read = |p: &Path| fs::read_to_string(p).unwrap();
        let all = [
            path.with_extension("jsonl.2"),
            path.with_extension("jsonl.1"),
            path.clone(),
        ];
        for p in &all {
            let text = read(p);
            assert!(text.len() <= 100, "{}", p.display());
            assert!(text.ends_with('\n'));
        }
        assert!(!path.with_extension("jsonl.3").exists(), "keep = 2");
        // The newest 25 lines of 45, in order, across the kept files.
        let kept: String = all.iter().map(|p| read(p)).collect();
        let want: Vec<u8> = lines(25, 9).into_iter().chain(lines(20, 9)).collect();
        let want = String::from_utf8(want).unwrap();
        let want: Vec<&str> = want.lines().collect();
        assert_eq!(kept.lines().collect::<Vec<_>>(), want[want.len() - 25..]);
    }

    #[test]
    fn a_line_longer_than_the_limit_gets_a_file_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut f = RotatingFile::new(path.clone(), 10, 0);
        f.append(b"short\n").unwrap();
        f.append(b"a line of twenty b\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "a line of twenty b\n");
        assert!(!path.with_extension("jsonl.1").exists(), "keep = 0");
    }

    #[test]
    fn an_unwritable_path_is_an_error_and_a_later_append_works() {
        let dir = tempfile::tempdir().unwrap();
        // Its directory is a file: no user, root included, can create it.
        fs::write(dir.path().join("logs"), b"").unwrap();
        let path = dir.path().join("logs/out.jsonl");
        let mut f = RotatingFile::new(path.clone(), 1000, 1);
        assert!(f.append(b"{}\n").is_err());
        fs::remove_file(dir.path().join("logs")).unwrap();
        f.append(b"{}\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{}\n");
    }
}
