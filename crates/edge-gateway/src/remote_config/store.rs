//! The files of `state_dir/remote-config/`: the apply journal
//! (`journal.json`, replaced atomically at every step), the replay mark
//! alone (`mark.json`, replaced atomically before the journal whenever the
//! mark rises) and the pushed layers the journal names (`<sha256>.toml`,
//! written atomically before the journal names them, checked against
//! their digest when read).
//!
//! The mark is kept twice because a damaged journal is moved aside and
//! forgotten: with it went the highest serial processed, and every older
//! signed push recorded off the broker could be replayed. A start takes
//! the highest mark either file proves ([`Store::recover`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
    #[error("keeping the replay mark apart from the journal: {0}")]
    Mark(#[source] JsonStateError),
}

impl StoreError {
    /// `mark.json` could not be written.
    pub fn is_mark(&self) -> bool {
        matches!(self, Self::Mark(_))
    }
}

/// The journal as a state document.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
struct Document(Journal);

impl StateDocument for Document {
    const FILE_NAME: &'static str = inventory::REMOTE_CONFIG_JOURNAL;
}

/// The replay mark as a state document of its own, with the push that
/// set it (so its retained copy is recognised after the journal is lost).
#[derive(Debug, Serialize, Deserialize)]
struct Mark {
    highest_serial: u64,
    #[serde(default)]
    processed: Option<Pushed>,
}

impl StateDocument for Mark {
    const FILE_NAME: &'static str = inventory::REMOTE_CONFIG_MARK;
}

/// What a start found in `state_dir/remote-config/`.
#[derive(Debug)]
pub struct Recovered {
    /// The journal as read (an empty one when it was damaged or missing).
    pub read: Journal,
    /// The same, with the mark the mark file proves, and, when the journal
    /// was damaged, the report saying so ([`Journal::recovered`]).
    pub journal: Journal,
    /// Why the journal was left out, when it was.
    pub dropped: Option<String>,
    /// Why the mark file could not be read (damaged, then moved aside,
    /// or unreadable): the start writes it again ([`Store::keep_mark`]).
    pub mark_unreadable: Option<String>,
}

/// `state_dir/remote-config/`.
#[derive(Debug, Clone)]
pub struct Store {
    state_dir: PathBuf,
    /// The mark `mark.json` holds, as far as this process knows: it is
    /// written again only when the journal's mark rises above it.
    persisted: Arc<AtomicU64>,
}

impl Store {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            state_dir: state_dir.to_path_buf(),
            persisted: Arc::new(AtomicU64::new(0)),
        }
    }

    fn mark_file(&self) -> JsonStateFile<Mark> {
        JsonStateFile::in_state_dir(&self.state_dir)
    }

    /// A damaged `name` was moved aside: evidence that there was a mark
    /// once, when no file holds one any more.
    fn set_aside(&self, name: &str) -> bool {
        let mut aside = self.state_dir.join(name).into_os_string();
        aside.push(".damaged");
        Path::new(&aside).exists()
    }

    /// The journal and the mark at a start: the journal (none yet is an
    /// empty one; a damaged one is moved aside), its mark raised to what
    /// `mark.json` proves. A journal lost (damaged or unreadable now, or
    /// set aside before and not written since), or a damaged mark file
    /// with no journal, with nothing left to prove the mark, leaves the
    /// mark lost: every push is refused ([`Journal::mark_lost`]).
    pub fn recover(&self, ts: &str) -> Recovered {
        let (file_mark, file_processed, mark_unreadable) = match self.mark_file().load() {
            Ok(Some(m)) => (Some(m.highest_serial), m.processed, None),
            Ok(None) => (None, None, None),
            Err(e) => (None, None, Some(e.to_string())),
        };
        let mark_was_set_aside =
            mark_unreadable.is_some() || self.set_aside(inventory::REMOTE_CONFIG_MARK);
        let (read, lost) = match self.journal_file().load() {
            Ok(Some(d)) => (d.0, None),
            Ok(None) if self.set_aside(inventory::REMOTE_CONFIG_JOURNAL) => (
                Journal::default(),
                Some("the apply journal was set aside as damaged and not written since".into()),
            ),
            Ok(None) if file_mark.is_none() && mark_was_set_aside => (
                Journal::default(),
                Some(format!(
                    "{} was damaged or unreadable and there is no journal",
                    inventory::REMOTE_CONFIG_MARK
                )),
            ),
            Ok(None) => (Journal::default(), None),
            Err(e) => (Journal::default(), Some(e.to_string())),
        };
        self.persisted
            .store(file_mark.unwrap_or(0), Ordering::Relaxed);
        let mut journal = read.clone();
        match &lost {
            Some(why) => journal.recovered(file_mark, file_processed, why, ts),
            None => {
                journal.mark_floor = journal.mark_floor.max(file_mark.unwrap_or(0));
                journal.unjournaled = file_processed.filter(|p| p.serial > read.mark());
            }
        }
        Recovered {
            read,
            journal,
            dropped: lost,
            mark_unreadable,
        }
    }

    /// Writes `mark.json` when the journal's mark is above what it holds.
    ///
    /// # Errors
    /// The directory cannot be made or the file written.
    pub fn keep_mark(&self, journal: &Journal) -> Result<(), StoreError> {
        let mark = journal.mark();
        if mark <= self.persisted.load(Ordering::Relaxed) {
            return Ok(());
        }
        let dir = self.dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| StoreError::Mark(FileError::at("creating", &dir)(e).into()))?;
        self.mark_file()
            .save(&Mark {
                highest_serial: mark,
                processed: journal.processed.clone(),
            })
            .map_err(StoreError::Mark)?;
        self.persisted.fetch_max(mark, Ordering::Relaxed);
        Ok(())
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

    /// Replaces the journal, atomically, after `mark.json` when the mark
    /// rose: a power cut between the two leaves the mark file ahead, never
    /// behind, and the push it names (the one being staged or refused) is
    /// judged again when the broker hands it over
    /// ([`Journal::unjournaled`]).
    ///
    /// # Errors
    /// The directory cannot be made or a file written (the previous
    /// journal stays): a mark that cannot be kept apart is no mark a
    /// damaged journal could be recovered from, so nothing is journaled.
    pub fn save(&self, journal: &Journal) -> Result<(), StoreError> {
        let rises = journal.mark() > self.persisted.load(Ordering::Relaxed);
        self.keep_mark(journal)?;
        if rises {
            super::hold_blocking("marked");
        }
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

    fn pushed(serial: u64) -> Pushed {
        Pushed {
            version: format!("v{serial}"),
            serial,
            sha256: format!("{serial:064x}"),
        }
    }

    fn journal_path(dir: &Path) -> PathBuf {
        dir.join(inventory::REMOTE_CONFIG_JOURNAL)
    }

    /// A power cut after `mark.json` and before the journal: the journal
    /// is intact and behind, and the push the mark file names is known as
    /// unjournaled (to be judged again), at each start until the journal
    /// names it.
    #[test]
    fn a_mark_file_ahead_of_an_intact_journal_names_the_unjournaled_push() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let mut j = Journal::default();
        j.stage(pushed(3), "t");
        store.save(&j).unwrap();
        let mut cut = j.clone();
        cut.stage(pushed(5), "t");
        store.keep_mark(&cut).unwrap();
        for _ in 0..2 {
            let r = Store::new(dir.path()).recover("t");
            assert_eq!(r.dropped, None);
            assert_eq!(r.journal.mark(), 5);
            assert_eq!(r.journal.unjournaled, Some(pushed(5)));
        }
        let store = Store::new(dir.path());
        let mut r = store.recover("t").journal;
        r.stage(pushed(5), "t");
        store.save(&r).unwrap();
        assert_eq!(
            Store::new(dir.path()).recover("t").journal.unjournaled,
            None
        );
    }

    /// A torn write or a bad sector in the journal: it is set aside, and
    /// the mark comes back from `mark.json`, at this start and the next.
    #[test]
    fn a_damaged_journal_keeps_its_mark_through_the_mark_file() {
        for damage in [
            &b"{\"processed\":{\"version\":\"v7\",\"ser"[..],
            b"\x00\xff garbage",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::new(dir.path());
            let mut j = Journal::default();
            j.stage(pushed(7), "t");
            store.save(&j).unwrap();
            std::fs::write(journal_path(dir.path()), damage).unwrap();
            let r = Store::new(dir.path()).recover("t");
            assert!(r.dropped.is_some());
            assert_eq!(r.read, Journal::default());
            assert_eq!((r.journal.mark(), r.journal.mark_lost), (7, false));
            assert_eq!(r.journal.applied, None);
            let report = r.journal.report.clone().unwrap();
            assert!(report.detail.contains("recovered"), "{}", report.detail);
            // Not written since (a read-only directory): still recovered.
            let again = Store::new(dir.path()).recover("t");
            assert_eq!(again.journal.mark(), 7);
            // Written since: the journal carries the mark itself.
            store.save(&r.journal).unwrap();
            std::fs::remove_file(dir.path().join(inventory::REMOTE_CONFIG_MARK)).unwrap();
            assert_eq!(Store::new(dir.path()).recover("t").journal.mark(), 7);
        }
    }

    #[test]
    fn with_the_journal_and_the_mark_file_damaged_the_mark_is_lost_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let mut j = Journal::default();
        j.stage(pushed(7), "t");
        store.save(&j).unwrap();
        std::fs::write(journal_path(dir.path()), "{").unwrap();
        std::fs::write(dir.path().join(inventory::REMOTE_CONFIG_MARK), "").unwrap();
        let r = Store::new(dir.path()).recover("t");
        assert!(r.journal.mark_lost);
        assert!(r.mark_unreadable.is_some());
        // Both damaged files are now set aside: the next start must not
        // take the empty directory for a first start.
        assert!(Store::new(dir.path()).recover("t").journal.mark_lost);
        // Nor once the journal saying so is written.
        store.save(&r.journal).unwrap();
        assert!(Store::new(dir.path()).recover("t").journal.mark_lost);
        // The documented reset: the directory deleted.
        std::fs::remove_dir_all(dir.path().join(inventory::REMOTE_CONFIG)).unwrap();
        let fresh = Store::new(dir.path()).recover("t");
        assert_eq!((fresh.journal.mark(), fresh.journal.mark_lost), (0, false));
        assert_eq!(fresh.dropped, None);
    }

    /// A journal written before `mark.json` existed (an upgrade): the
    /// start writes the mark file from it.
    #[test]
    fn the_mark_file_is_written_from_a_journal_that_predates_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::default();
        j.stage(pushed(4), "t");
        let dir_rc = dir.path().join(inventory::REMOTE_CONFIG);
        std::fs::create_dir_all(&dir_rc).unwrap();
        std::fs::write(journal_path(dir.path()), serde_json::to_vec(&j).unwrap()).unwrap();
        let store = Store::new(dir.path());
        let r = store.recover("t");
        assert_eq!(r.journal.mark(), 4);
        store.keep_mark(&r.journal).unwrap();
        std::fs::write(journal_path(dir.path()), "garbage").unwrap();
        assert_eq!(Store::new(dir.path()).recover("t").journal.mark(), 4);
    }

    /// A full or read-only state directory: the mark cannot be kept
    /// apart, so the journal is not written either (the caller refuses
    /// the push as `state_dir`, to be taken again later).
    #[test]
    fn a_mark_that_cannot_be_written_journals_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let mut j = Journal::default();
        j.stage(pushed(1), "t");
        store.save(&j).unwrap();
        let tmp = dir
            .path()
            .join(format!("{}.tmp", inventory::REMOTE_CONFIG_MARK));
        std::fs::create_dir(&tmp).unwrap();
        let mut next = j.clone();
        next.stage(pushed(2), "t");
        let e = store.save(&next).unwrap_err();
        assert!(e.is_mark(), "{e}");
        assert_eq!(store.load().unwrap(), j);
        std::fs::remove_dir(&tmp).unwrap();
        store.save(&next).unwrap();
        assert_eq!(Store::new(dir.path()).recover("t").journal.mark(), 2);
    }
}
