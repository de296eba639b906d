//! The command journal, `{state_dir}/commands/journal`: one JSON line per
//! step, fsynced before the step it records happens.
//!
//! A command's id is written (`started`) before its write reaches the
//! device, and its result (`status`, `reason`, …) once it is known. After
//! a restart or a kill -9 an id found `started` without a result is never
//! written again: its outcome is unknown, so it gets `failed`
//! (`interrupted`); an id found with a result gets that result again.
//! A torn last line (power cut mid-write) is skipped.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Ids remembered: far more than any sender re-delivers within
/// `max_age`, and a journal of about a megabyte at most.
pub const KEEP: usize = 10_000;

/// A result as journaled (and sent again for a repeated id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    pub device: String,
    pub metric: String,
    pub value: serde_json::Value,
    pub status: String,
    pub reason: String,
    /// What the reason means here, for people (absent in lines journaled
    /// before it was kept).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// RFC 3339, when the result was decided.
    pub ts: String,
}

/// What the journal knows of an id.
#[derive(Debug, Clone, PartialEq)]
pub enum Known {
    /// Written (or being written) when the gateway stopped: outcome
    /// unknown. Holds the command (`status` is `started`).
    Started(Recorded),
    Finished(Recorded),
}

/// The `status` of a journaled start.
const STARTED: &str = "started";

#[derive(Debug, Serialize, Deserialize)]
struct Line {
    id: String,
    #[serde(flatten)]
    record: Recorded,
}

/// Why the journal cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("command journal {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The journal, open for appending, with what it holds in memory.
pub struct Journal {
    path: PathBuf,
    file: File,
    known: HashMap<String, Known>,
    /// Ids in the order first seen, to forget the oldest.
    order: VecDeque<String>,
    lines: usize,
    /// Ids remembered ([`KEEP`]; fewer in tests).
    keep: usize,
}

impl Journal {
    /// Opens (or creates) the journal in `dir`.
    ///
    /// # Errors
    /// The directory or the file cannot be created, read or written.
    pub fn open(dir: &Path) -> Result<Self, JournalError> {
        Self::open_keeping(dir, KEEP)
    }

    fn open_keeping(dir: &Path, keep: usize) -> Result<Self, JournalError> {
        let path = dir.join("journal");
        let io_err = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(dir).map_err(io_err)?;
        let mut known = HashMap::new();
        let mut order = VecDeque::new();
        let mut lines = 0;
        match File::open(&path) {
            Ok(f) => {
                for line in BufReader::new(f).lines() {
                    let Ok(line) = line else { break };
                    let Ok(parsed) = serde_json::from_str::<Line>(&line) else {
                        tracing::warn!(path = %path.display(), "Skipping a damaged line of the command journal (cut by a power loss?).");
                        continue;
                    };
                    lines += 1;
                    remember(&mut known, &mut order, parsed);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err)?;
        let mut journal = Self {
            path,
            file,
            known,
            order,
            lines,
            keep,
        };
        journal.forget_oldest();
        if journal.lines > 2 * journal.keep {
            journal.rewrite()?;
        }
        Ok(journal)
    }

    /// What is known of `id`.
    pub fn get(&self, id: &str) -> Option<&Known> {
        self.known.get(id)
    }

    /// Ids started and never finished (the gateway stopped during their
    /// write), oldest first.
    pub fn interrupted(&self) -> Vec<(String, Recorded)> {
        self.order
            .iter()
            .filter_map(|id| match self.known.get(id) {
                Some(Known::Started(r)) => Some((id.clone(), r.clone())),
                _ => None,
            })
            .collect()
    }

    /// Records that `id` is about to be written; on disk before it returns.
    ///
    /// # Errors
    /// The line could not be written and synced: the write must not happen.
    pub fn start(&mut self, id: &str, mut command: Recorded) -> Result<(), JournalError> {
        command.status = STARTED.to_string();
        self.append(Line {
            id: id.to_string(),
            record: command,
        })
    }

    /// Records `id`'s result.
    ///
    /// # Errors
    /// The line could not be written and synced.
    pub fn finish(&mut self, id: &str, result: Recorded) -> Result<(), JournalError> {
        self.append(Line {
            id: id.to_string(),
            record: result,
        })
    }

    fn append(&mut self, line: Line) -> Result<(), JournalError> {
        let mut text = serde_json::to_string(&line).map_err(|e| JournalError::Io {
            path: self.path.clone(),
            source: io::Error::other(e),
        })?;
        text.push('\n');
        let written = self
            .file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.sync_data());
        written.map_err(|source| JournalError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.lines += 1;
        remember(&mut self.known, &mut self.order, line);
        self.forget_oldest();
        if self.lines > 2 * self.keep {
            self.rewrite()?;
        }
        Ok(())
    }

    fn forget_oldest(&mut self) {
        while self.order.len() > self.keep {
            if let Some(old) = self.order.pop_front() {
                self.known.remove(&old);
            }
        }
    }

    /// Writes what is remembered to a new file and puts it in place, so
    /// the journal does not grow without end.
    fn rewrite(&mut self) -> Result<(), JournalError> {
        let tmp = self.path.with_extension("new");
        let io_err = |source| JournalError::Io {
            path: tmp.clone(),
            source,
        };
        let mut out = io::BufWriter::new(File::create(&tmp).map_err(io_err)?);
        let mut lines = 0;
        for id in &self.order {
            let record = match self.known.get(id) {
                Some(Known::Finished(r) | Known::Started(r)) => r.clone(),
                None => continue,
            };
            let line = Line {
                id: id.clone(),
                record,
            };
            let text = serde_json::to_string(&line).map_err(|e| io_err(io::Error::other(e)))?;
            writeln!(out, "{text}").map_err(io_err)?;
            lines += 1;
        }
        let file = out.into_inner().map_err(|e| io_err(e.into_error()))?;
        file.sync_all().map_err(io_err)?;
        fs::rename(&tmp, &self.path).map_err(io_err)?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.lines = lines;
        Ok(())
    }
}

fn remember(known: &mut HashMap<String, Known>, order: &mut VecDeque<String>, line: Line) {
    let state = if line.record.status == STARTED {
        Known::Started(line.record)
    } else {
        Known::Finished(line.record)
    };
    if known.insert(line.id.clone(), state).is_none() {
        order.push_back(line.id);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn done() -> Recorded {
        Recorded {
            device: "ahu-1".into(),
            metric: "setpoint".into(),
            value: serde_json::json!(21.5),
            status: "done".into(),
            reason: String::new(),
            detail: String::new(),
            ts: "2026-11-25T20:00:00Z".into(),
        }
    }

    #[test]
    fn a_reopened_journal_knows_started_and_finished_ids() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        j.start("a", done()).unwrap();
        j.finish("a", done()).unwrap();
        j.start("b", done()).unwrap();
        drop(j);
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.get("a"), Some(&Known::Finished(done())));
        let started = Recorded {
            status: STARTED.into(),
            ..done()
        };
        assert_eq!(j.get("b"), Some(&Known::Started(started.clone())));
        assert_eq!(j.interrupted(), vec![("b".to_string(), started)]);
        assert_eq!(j.get("c"), None);
    }

    #[test]
    fn a_torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        j.start("a", done()).unwrap();
        drop(j);
        let path = dir.path().join("journal");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"id":"b","res"#).unwrap();
        let j = Journal::open(dir.path()).unwrap();
        assert!(matches!(j.get("a"), Some(Known::Started(_))));
        assert_eq!(j.get("b"), None);
    }

    #[test]
    fn the_oldest_ids_are_forgotten_and_the_file_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open_keeping(dir.path(), 20).unwrap();
        for i in 0..50 {
            j.finish(&format!("id-{i}"), done()).unwrap();
        }
        assert_eq!(j.get("id-29"), None);
        assert!(j.get("id-30").is_some());
        drop(j);
        let lines = fs::read_to_string(dir.path().join("journal"))
            .unwrap()
            .lines()
            .count();
        assert!(lines <= 40, "{lines} lines");
        let j = Journal::open_keeping(dir.path(), 20).unwrap();
        assert_eq!(j.get("id-5"), None);
        assert!(j.get("id-49").is_some());
    }
}
