//! The command journal, `{state_dir}/commands/journal`: one JSON line per
//! step, fsynced before the step it records happens.
//!
//! A command's id is written (`started`) before its write reaches the
//! device, and its result (`status`, `reason`, …) once it is known. After
//! a restart or a kill -9 an id found `started` without a result is never
//! written again: its outcome is unknown, so it gets `failed`
//! (`interrupted`); an id found with a result gets that result again.
//!
//! An id is a device's: the same id on another device's topic is another
//! command. It is remembered for as long as a replay of it could still
//! run: until its `ts` (when its sender made it; its arrival for a command
//! without one) is older than `max_age` plus the clock tolerance, judged
//! on the wall clock, and at least that long after its last line (the
//! broker's re-delivery of a command whose result was journaled at a late
//! restart gets that result). Never by count: a flood of other commands
//! cannot push an id out; and never before its result is journaled. The
//! one exception: refusals of commands made further ahead of the clock
//! than that (`clock`), which would be kept until their own far-off `ts`,
//! are kept only as the [`FAR_AHEAD_REMEMBERED`] nearest ahead, a bound of
//! their own, so neither they nor any other id push each other out. The newest `ts` of a forgotten id is kept (the
//! *horizon*, the file's first line once rewritten): a command made no
//! later than it may be the replay of one forgotten, and is refused
//! whatever the clock says, so a clock stepped back cannot revive it.
//!
//! A line that cannot be read (a torn last line after a power cut, a
//! damaged byte) costs that line only: it is logged and counted, the lines
//! after it are read, and the journal is rewritten clean, so the next
//! append does not land on the damage. A command executed has two lines,
//! so one damaged line still leaves its id known.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway_core::Timestamp;
use serde::{Deserialize, Serialize};

use crate::flood_marks::{Cover, FloodMarks};

#[path = "journal_lines.rs"]
mod lines;
use lines::mark_line;

/// Lines beyond three times the ids remembered (plus this) trigger a rewrite,
/// so the file stays the size of what is remembered.
#[cfg(not(test))]
const REWRITE_SLACK: usize = 1024;
#[cfg(test)]
const REWRITE_SLACK: usize = 16;

/// Refusals of commands made further ahead of the clock than an id is
/// kept (`clock`) that are remembered, the nearest ahead first. Such an
/// id is remembered until its own `ts` is old, which a forged `ts` puts
/// years away: unbounded, a flood of them held the journal full (10 000
/// ids, each up to a payload's size) until then, and every refusal after
/// it went unjournaled. One made that far ahead can run only once the
/// gateway's clock has come that far (a clock far behind, then set): the
/// nearest are what a clock far behind meets first, and a cloud sends a
/// few a minute, not hundreds.
#[cfg(not(test))]
pub const FAR_AHEAD_REMEMBERED: usize = 256;
#[cfg(test)]
pub const FAR_AHEAD_REMEMBERED: usize = 4;

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
    /// What the device holds now, when the write was read back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<f64>,
    /// RFC 3339, when the result was decided.
    pub ts: String,
    /// The device level of the command's topic as its sender spelt it,
    /// when not the device's id (`AA-BB-CC-DD-EE-FF`): kept with its start,
    /// so that a result given after a restart (`interrupted`) goes on the
    /// topic the command came on, as every other result does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_device: Option<String>,
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
    /// The command's own `ts` (RFC 3339), when it had one: how long the
    /// id is remembered, and the horizon once it is forgotten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    made: Option<String>,
    #[serde(flatten)]
    record: Recorded,
}

/// The first line of a rewritten journal.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HorizonLine {
    horizon: String,
}

/// An id is its device's.
type Key = (String, String);

struct Entry {
    known: Known,
    /// Wall ms the id's age counts from: its `ts`, else its result's time.
    made: i64,
    /// Wall ms after which it may be forgotten.
    until: i64,
    /// `made` is the sender's `ts`, so it can raise the horizon.
    timed: bool,
    made_text: Option<String>,
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
    known: HashMap<Key, Entry>,
    /// Ids in the order first seen (forgotten ones are dropped at rewrite).
    order: VecDeque<Key>,
    /// Ids by when they may be forgotten (stale rows are skipped).
    expiry: BinaryHeap<Reverse<(i64, Key)>>,
    /// The ids refused as made more than `keep` after their result (far
    /// ahead of the clock), by that `ts`: at most
    /// [`FAR_AHEAD_REMEMBERED`], the nearest.
    far_ahead: BTreeSet<(i64, Key)>,
    /// How long after its `made` an id is remembered.
    keep_ms: i64,
    /// The newest `ts` forgotten (ms); `i64::MIN` when none.
    horizon: i64,
    /// Per device, the newest `ts` refused without a line of its own.
    marks: FloodMarks,
    lines: usize,
    damaged: usize,
    /// Opened empty where a journal had been.
    recreated: bool,
}

/// When a journal line reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// Before the call returns: a cloud command is never written twice,
    /// even across a power cut.
    Now,
    /// With the next line synced (any command from the cloud) or by the
    /// kernel's own write-back within seconds: a process killed at any
    /// point loses nothing (the kernel holds the line), a power cut can. For a rule's action: it
    /// sets an actuator to a value, so a repeat after a power cut sets
    /// the same value again, while a sync per action capped actions at a
    /// few hundred a second behind two fsyncs each (docs/commands.md).
    WithTheNext,
}

impl Journal {
    /// Opens (or creates) the journal in `dir`, remembering each id for
    /// `keep` (`max_age` plus the clock tolerance) after it was made;
    /// `now` is the wall clock's time.
    ///
    /// # Errors
    /// The directory or the file cannot be created, read or written.
    pub fn open(dir: &Path, keep: Duration, now: Timestamp) -> Result<Self, JournalError> {
        let path = dir.join("journal");
        let io_err = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        // The directory is made with the journal's first line's file: one
        // without the file lost it since (deleted by hand, a restore that
        // left it out), and with it what it would refuse to run twice.
        let used_before = dir.is_dir();
        fs::create_dir_all(dir).map_err(io_err)?;
        let mut recreated = false;
        let text = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                recreated = used_before;
                Vec::new()
            }
            Err(e) => return Err(io_err(e)),
        };
        if recreated {
            tracing::warn!(path = %path.display(), "The command journal is missing from a directory that had one: it is started empty, so a command replayed within its max_age, or a rule's action repeated, may run again once. Was the state directory restored or edited?");
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err)?;
        let mut journal = Self {
            path,
            file,
            known: HashMap::new(),
            order: VecDeque::new(),
            expiry: BinaryHeap::new(),
            far_ahead: BTreeSet::new(),
            keep_ms: i64::try_from(keep.as_millis()).unwrap_or(i64::MAX),
            horizon: i64::MIN,
            marks: FloodMarks::default(),
            lines: 0,
            damaged: 0,
            recreated,
        };
        journal.read(&text);
        journal.clamp_read_back(now);
        journal.forget(now);
        if journal.damaged > 0 || journal.lines > journal.rewrite_at() {
            journal.rewrite()?;
        }
        Ok(journal)
    }

    /// A horizon or a mark read back further ahead than the journal ever
    /// writes one is damage that still reads (a changed digit), or a clock
    /// far behind (a Pi booted without its time): kept, a damaged one would
    /// refuse every command for good. Each is brought back to `keep` past
    /// the clock, which loses nothing: a command made later than that is
    /// refused as ahead of the clock until it is too old to run.
    fn clamp_read_back(&mut self, now: Timestamp) {
        let now = now.as_millis();
        let limit = now.saturating_add(self.keep_ms);
        if self.horizon > limit {
            tracing::warn!(path = %self.path.display(), horizon = self.horizon, "The command journal's horizon lies ahead of the clock by more than any command is kept (a damaged digit, or a clock far behind?): brought back to the clock plus max_age and clock_tolerance.");
            self.horizon = limit;
        }
        for device in self.marks.clamp(now, self.keep_ms) {
            tracing::warn!(path = %self.path.display(), device, "A flood mark of the command journal lies ahead of the clock by more than any command is kept (a damaged digit, or a clock far behind?): brought back to the clock plus max_age and clock_tolerance.");
        }
    }

    /// Whether the file was missing from a directory that had held it:
    /// what it remembered is gone.
    pub fn recreated(&self) -> bool {
        self.recreated
    }

    /// Lines skipped when it was opened (torn or damaged).
    pub fn damaged(&self) -> usize {
        self.damaged
    }

    /// Ids remembered now.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// Ids remembered now, but those made far ahead of the clock (which
    /// have a bound of their own, [`FAR_AHEAD_REMEMBERED`]).
    pub fn len_within_keep(&self) -> usize {
        self.known.len().saturating_sub(self.far_ahead.len())
    }

    /// Whether a command made at `ts` is further ahead of `now` than an id
    /// is kept: its refusal is remembered only among the
    /// [`FAR_AHEAD_REMEMBERED`] nearest.
    pub fn is_far_ahead(&self, ts: Timestamp, now: Timestamp) -> bool {
        ts.as_millis() > now.as_millis().saturating_add(self.keep_ms)
    }

    /// Whether the refusal of a command made far ahead at `ts` would be
    /// remembered: there is room, or it is nearer than the farthest
    /// remembered (which then makes room for it).
    pub fn has_room_ahead(&self, ts: Timestamp) -> bool {
        self.far_ahead.len() < FAR_AHEAD_REMEMBERED
            || self
                .far_ahead
                .last()
                .is_some_and(|(farthest, _)| ts.as_millis() < *farthest)
    }

    /// The newest `ts` of an id forgotten: a command made then or before
    /// may be a replay of it.
    pub fn horizon(&self) -> Option<Timestamp> {
        (self.horizon != i64::MIN)
            .then(|| Timestamp::from_millis(self.horizon).ok())
            .flatten()
    }

    /// The newest `ts` of `device`'s commands refused without a line of
    /// their own (the journal full): a command made then or before may be
    /// a replay of one of them.
    pub fn refused_upto(&self, device: &str) -> Option<Timestamp> {
        self.marks
            .get(device)
            .and_then(|ms| Timestamp::from_millis(ms).ok())
    }

    /// Records that `device`'s command made at `ts` was refused without a
    /// line of its own: one line (twice) when its mark must rise, not
    /// synced on its own, as such refusals' lines. `false`: no mark may
    /// cover it (made more than `keep` ahead), so the refusal is not final.
    ///
    /// # Errors
    /// The line could not be written: the refusal is not final.
    pub fn refused_unremembered(
        &mut self,
        device: &str,
        ts: Timestamp,
        now: Timestamp,
    ) -> Result<bool, JournalError> {
        let (ts, now) = (ts.as_millis(), now.as_millis());
        let mark = match self.marks.cover(device, ts, now, self.keep_ms) {
            Cover::Covered => return Ok(true),
            Cover::TooFarAhead => return Ok(false),
            Cover::Write(mark) => mark,
        };
        let io_err = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        let line = mark_line(device, mark).map_err(io_err)?;
        self.file
            .write_all(format!("{line}\n{line}\n").as_bytes())
            .map_err(io_err)?;
        // Only now: a mark that is not on disk must not cover the next
        // refusals as final.
        self.marks.written_up_to(device, ts, mark);
        self.lines += 2;
        if self.lines > self.rewrite_at() {
            self.rewrite()?;
        }
        Ok(true)
    }

    /// What is known of `device`'s `id`.
    pub fn get(&self, device: &str, id: &str) -> Option<&Known> {
        self.known
            .get(&(device.to_string(), id.to_string()))
            .map(|e| &e.known)
    }

    /// Ids started and never finished (the gateway stopped during their
    /// write), oldest first.
    pub fn interrupted(&self) -> Vec<(String, Recorded)> {
        self.order
            .iter()
            .filter_map(|key| match self.known.get(key).map(|e| &e.known) {
                Some(Known::Started(r)) => Some((key.1.clone(), r.clone())),
                _ => None,
            })
            .collect()
    }

    /// Records that `id` is about to be written; on disk before it returns
    /// when `sync` is [`Sync::Now`].
    /// `made`: the command's `ts`, when it had one.
    ///
    /// # Errors
    /// The line could not be written and synced: the write must not happen.
    pub fn start(
        &mut self,
        id: &str,
        made: Option<Timestamp>,
        mut command: Recorded,
        now: Timestamp,
        sync: Sync,
    ) -> Result<(), JournalError> {
        command.status = STARTED.to_string();
        self.append(id, made, command, now, sync, 1)
    }

    /// Records `id`'s result.
    ///
    /// # Errors
    /// The line could not be written and synced.
    pub fn finish(
        &mut self,
        id: &str,
        made: Option<Timestamp>,
        result: Recorded,
        now: Timestamp,
        sync: Sync,
    ) -> Result<(), JournalError> {
        // A result without a start line (a refusal) is written twice, so
        // that one damaged line still leaves the id known.
        let key = (result.device.clone(), id.to_string());
        let copies = match self.known.get(&key).map(|e| &e.known) {
            Some(Known::Started(_)) => 1,
            _ => 2,
        };
        self.append(id, made, result, now, sync, copies)
    }

    fn append(
        &mut self,
        id: &str,
        made: Option<Timestamp>,
        record: Recorded,
        now: Timestamp,
        sync: Sync,
        copies: usize,
    ) -> Result<(), JournalError> {
        let line = Line {
            id: id.to_string(),
            made: made.map(Timestamp::to_rfc3339),
            record,
        };
        let mut one = serde_json::to_string(&line).map_err(|e| JournalError::Io {
            path: self.path.clone(),
            source: io::Error::other(e),
        })?;
        one.push('\n');
        let text = one.repeat(copies);
        let written = self
            .file
            .write_all(text.as_bytes())
            .and_then(|()| match sync {
                Sync::Now => self.file.sync_data(),
                Sync::WithTheNext => Ok(()),
            });
        written.map_err(|source| JournalError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.lines += copies;
        self.remember(line);
        self.forget(now);
        if self.lines > self.rewrite_at() {
            self.rewrite()?;
        }
        Ok(())
    }

    /// A rewrite copies every id, so the slack grows with them: a flood
    /// raising many devices' marks at once (lines without ids) costs a
    /// rewrite per few seconds otherwise.
    fn rewrite_at(&self) -> usize {
        3 * self.known.len() + 2 * self.marks.len() + REWRITE_SLACK
    }

    fn remember(&mut self, line: Line) {
        let key = (line.record.device.clone(), line.id);
        let sent_ts = line
            .made
            .as_deref()
            .and_then(|t| Timestamp::parse_rfc3339(t).ok());
        let decided = Timestamp::parse_rfc3339(&line.record.ts).map_or(0, Timestamp::as_millis);
        let known = if line.record.status == STARTED {
            Known::Started(line.record)
        } else {
            Known::Finished(line.record)
        };
        let previous = self.known.remove(&key);
        if let Some(p) = &previous {
            self.far_ahead.remove(&(p.made, key.clone()));
        }
        let (made, timed, made_text) = match (sent_ts, &previous) {
            (Some(ts), _) => (ts.as_millis(), true, line.made),
            (None, Some(p)) if p.timed => (p.made, true, p.made_text.clone()),
            // Without a ts the id's age counts from its latest line.
            (None, Some(p)) => (p.made.max(decided), false, None),
            (None, None) => (decided, false, None),
        };
        let until = made
            .max(decided)
            .saturating_add(self.keep_ms)
            .max(previous.as_ref().map_or(i64::MIN, |p| p.until));
        if previous.is_none() {
            self.order.push_back(key.clone());
        }
        self.expiry.push(Reverse((until, key.clone())));
        // Judged against its result's time, not the clock now, so that it
        // is judged the same when read back.
        let far_ahead = timed && made > decided.saturating_add(self.keep_ms);
        if far_ahead {
            self.far_ahead.insert((made, key.clone()));
        }
        self.known.insert(
            key,
            Entry {
                known,
                made,
                until,
                timed,
                made_text,
            },
        );
        if self.far_ahead.len() > FAR_AHEAD_REMEMBERED {
            // The farthest ahead goes, without raising the horizon (that
            // would refuse every command until its far-off `ts`): sent
            // again, it is judged again, and refused while still ahead.
            if let Some((_, farthest)) = self.far_ahead.pop_last() {
                self.known.remove(&farthest);
            }
            // Its expiry row stays until its far-off time: commands each
            // nearer than the farthest would pile such rows up for years.
            if self.expiry.len() > 2 * self.known.len() + REWRITE_SLACK {
                self.expiry = self
                    .known
                    .iter()
                    .map(|(key, e)| Reverse((e.until, key.clone())))
                    .collect();
            }
        }
    }

    /// Forgets the ids no replay could run any more: made (and last
    /// journaled) longer than `keep` before `now`.
    fn forget(&mut self, now: Timestamp) {
        let now = now.as_millis();
        if let Some(mark) = self.marks.forget(now, self.keep_ms) {
            self.horizon = self.horizon.max(mark);
        }
        while let Some(Reverse((at, _))) = self.expiry.peek() {
            if *at >= now {
                break;
            }
            let Some(Reverse((at, key))) = self.expiry.pop() else {
                break;
            };
            // A row of an entry since remembered again is stale. One
            // started and never finished stays until its result is
            // journaled (at the next start): the gateway stopped during its
            // write, and it must be reported `interrupted`, not judged anew.
            let current = self
                .known
                .get(&key)
                .is_some_and(|e| e.until == at && !matches!(e.known, Known::Started(_)));
            if current {
                if let Some(entry) = self.known.remove(&key) {
                    self.far_ahead.remove(&(entry.made, key.clone()));
                    if entry.timed {
                        self.horizon = self.horizon.max(entry.made);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
