//! The ingress journal: readings from redelivering sources (MQTT QoS 1), on
//! disk before their source is acknowledged.
//!
//! A checkpoint every few seconds is too slow to acknowledge by: a broker
//! lets only a few messages be unacknowledged at once (Mosquitto: 20), so
//! ingest would stall. Instead each accepted message is appended here and
//! the file is fdatasynced once per batch (group commit); receipts complete
//! after that sync. A checkpoint then contains everything in the journal
//! before it, so taking one starts a new journal file (the epoch the
//! checkpoint names); the older files are deleted once the checkpoint is on
//! disk, which happens in the background. On start, the checkpoint is
//! restored and every journal from its epoch on replayed on top, oldest
//! first: state as of the crash, whether or not the last checkpoint landed.
//!
//! ```text
//! file   = record*
//! record = len:u32le crc32(body):u32le body    (gateway_core::state_file::frame)
//! body   = 4:u8 n:u32 n × reading                   a message
//!        | 5:u8 source:text slot:u16 digest:u64 n:u32 n × reading
//!                                  a message with its delivery key
//!        | 2:u8 source:text n:u32(0)      the source's session started afresh
//!        | 3:u8 at_ms:i64 steps:u32 n:u32(0)
//!                                  the window clock stepped back to at_ms
//!                                  (its `steps`th backward step)
//!        | 0:u8 … | 1:u8 …         a message (with its key) as written
//!                                  before 2026-11-25: still read
//! reading: see `record_readings` (names once per record, by slot)
//! ```
//!
//! A journal written by this version is not read by an earlier one (its
//! records look damaged there): a downgrade should follow a clean stop,
//! which leaves no journal to replay.
//!
//! A half-written tail (power cut mid-append) is cut off at the last intact
//! record; damaged bytes between intact records are skipped, as the outbox
//! does, so one scribbled record costs only itself. Both are reported.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gateway_core::state_file::inventory::{JOURNAL_PREFIX, JOURNAL_SUFFIX};
use gateway_core::state_file::{frame, frame::Frame, FileError};
use gateway_core::{DeliveryKey, Reading, Receipt};
use tracing::{info, warn};

use gateway_core::state_file::fields::{put_text, Reader};

use super::record_readings;

/// Receipts waiting beyond this many force a commit even while more
/// messages are queued, bounding acknowledgement latency under load.
pub const MAX_BATCH: usize = 512;

/// Bytes a reading usually takes in a record (its names by slot, the
/// time of the reading before); a guess for [`Journal::reserve`], not a
/// limit.
const RESERVE_PER_READING: usize = 12;

/// The largest write buffer kept for the next commit: reusing it saves
/// growing a fresh one (and the page faults) per batch, and beyond this a
/// rare large batch should not hold its memory for good.
const KEEP_BUFFER: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(transparent)]
    Io(#[from] FileError),
    /// The blocking task writing a batch panicked or was cancelled.
    #[error("the journal write ended early: {0}")]
    Stopped(String),
}

impl JournalError {
    pub fn is_disk_full(&self) -> bool {
        matches!(self, JournalError::Io(f) if f.is_disk_full())
    }
}

/// One replayed message.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: Option<(Arc<str>, u16, u64)>,
    pub readings: Vec<Reading>,
    /// A marker, not a message: this source's session started afresh here.
    pub new_session: Option<Arc<str>>,
    /// A marker: the window clock followed a wall clock that stepped back
    /// to this instant (ms), here in the order of the messages.
    pub step_back: Option<(i64, u32)>,
}

/// A message, its readings spelled out (as written before 2026-11-25).
const SPELLED_OUT: u8 = 0;
const SPELLED_OUT_KEY: u8 = 1;
const NEW_SESSION: u8 = 2;
const STEP_BACK: u8 = 3;
/// A message, its names by slot (`record_readings`).
const MESSAGE: u8 = 4;
const MESSAGE_KEY: u8 = 5;

/// What opening found.
#[derive(Debug, Default)]
pub struct Replay {
    pub entries: Vec<Entry>,
    /// Where each journal file's entries start in `entries`, with its
    /// epoch, oldest first.
    pub epochs: Vec<(usize, u64)>,
    /// Bytes cut off a damaged tail.
    pub damaged_bytes: u64,
}

pub struct Journal {
    dir: PathBuf,
    epoch: u64,
    path: PathBuf,
    /// Shared with the one [`PendingWrite`] in flight, which appends and syncs it
    /// off the pipeline's task.
    file: Arc<File>,
    committed_len: u64,
    /// Encoded records not yet on disk; kept until a write succeeds so a
    /// full disk only delays them.
    buffer: Vec<u8>,
    waiting: Vec<Receipt>,
    /// Whether this file's directory entry is known to be on disk. A new
    /// file's first commit syncs the directory before completing receipts,
    /// unless a checkpoint's directory sync already covered it.
    dir_synced: bool,
}

fn file_name(epoch: u64) -> String {
    format!("{JOURNAL_PREFIX}{epoch:020}{JOURNAL_SUFFIX}")
}

fn epoch_of(name: &str) -> Option<u64> {
    name.strip_prefix(JOURNAL_PREFIX)?
        .strip_suffix(JOURNAL_SUFFIX)?
        .parse()
        .ok()
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> JournalError {
    let at = FileError::at(action, path);
    move |source| JournalError::Io(at(source))
}

/// The journal epochs in `dir`, oldest first.
fn epochs(dir: &Path) -> Vec<u64> {
    let mut all: Vec<u64> = std::fs::read_dir(dir)
        .map(|listing| {
            listing
                .flatten()
                .filter_map(|e| epoch_of(e.file_name().to_str()?))
                .collect()
        })
        .unwrap_or_default();
    all.sort_unstable();
    all
}

/// The oldest journal epoch in `dir`, for a start without a usable
/// checkpoint: every journal there holds acknowledged readings.
pub fn oldest_epoch(dir: &Path) -> Option<u64> {
    epochs(dir).first().copied()
}

impl Journal {
    /// Replays every journal from `epoch` on, oldest first, deletes older
    /// ones (already in a checkpoint) and opens the newest for appending.
    ///
    /// # Errors
    /// The directory or a file cannot be used.
    ///
    /// Journals from `keep_from` up to `epoch` are not replayed but kept:
    /// they rebuild the previous checkpoint's successor should the newer
    /// checkpoint turn out damaged.
    pub fn open(dir: &Path, epoch: u64, keep_from: u64) -> Result<(Self, Replay), JournalError> {
        let mut replay = Replay::default();
        let mut newest = epoch;
        for e in epochs(dir) {
            let older = dir.join(file_name(e));
            if e < epoch.min(keep_from) {
                let _ = std::fs::remove_file(&older);
            } else if e > epoch {
                // Started by a checkpoint that did not land: read only, its
                // successor is where appending goes on.
                let bytes = std::fs::read(&older).map_err(io("reading", &older))?;
                let scan = decode_records(&bytes);
                replay.damaged_bytes += scan.damaged;
                replay.epochs.push((replay.entries.len(), e));
                replay.entries.extend(scan.entries);
                newest = e;
            }
        }
        // The named epoch first, then the later ones read above.
        let (mut j, first) = Self::open_one(dir, epoch)?;
        let later = std::mem::take(&mut replay.entries);
        let shift = first.entries.len();
        replay.epochs = std::iter::once((0, epoch))
            .chain(replay.epochs.iter().map(|(at, e)| (at + shift, *e)))
            .collect();
        replay.entries = first.entries;
        replay.entries.extend(later);
        replay.damaged_bytes += first.damaged_bytes;
        if newest != epoch {
            let (next, _) = Self::open_one(dir, newest)?;
            j = next;
        }
        sync_dir(dir);
        Ok((j, replay))
    }

    fn open_one(dir: &Path, epoch: u64) -> Result<(Self, Replay), JournalError> {
        let path = dir.join(file_name(epoch));
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io("opening", &path))?;
        let bytes = std::fs::read(&path).map_err(io("reading", &path))?;
        let scan = decode_records(&bytes);
        // A torn tail is cut so appending follows the last intact record;
        // damage between intact records stays, to be skipped again.
        if scan.end < bytes.len() {
            file.set_len(scan.end as u64)
                .map_err(io("cutting the damaged tail of", &path))?;
            file.sync_all().map_err(io("syncing", &path))?;
        }
        let (entries, damaged_bytes, intact) = (scan.entries, scan.damaged, scan.end);
        file.seek(SeekFrom::End(0)).map_err(io("seeking", &path))?;
        Ok((
            Self {
                dir: dir.to_path_buf(),
                epoch,
                path,
                file: Arc::new(file),
                committed_len: intact as u64,
                buffer: Vec::new(),
                waiting: Vec::new(),
                dir_synced: true,
            },
            Replay {
                entries,
                epochs: vec![(0, epoch)],
                damaged_bytes,
            },
        ))
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Records, in order with the messages, that `source`'s session
    /// started afresh: a replay must forget its slots at the same point.
    pub fn append_new_session(&mut self, source: &str) {
        let start = frame::begin(&mut self.buffer);
        self.buffer.push(NEW_SESSION);
        put_text(&mut self.buffer, source);
        self.buffer.extend_from_slice(&0u32.to_le_bytes());
        frame::end(&mut self.buffer, start);
    }

    /// Records, in order with the messages, that the window clock stepped
    /// back to `at_ms`: a replay must step back at the same point, or the
    /// readings taken after it would be refused as late.
    pub fn append_step_back(&mut self, at_ms: i64, steps: u32) {
        let start = frame::begin(&mut self.buffer);
        self.buffer.push(STEP_BACK);
        self.buffer.extend_from_slice(&at_ms.to_le_bytes());
        self.buffer.extend_from_slice(&steps.to_le_bytes());
        self.buffer.extend_from_slice(&0u32.to_le_bytes());
        frame::end(&mut self.buffer, start);
    }

    /// Makes room for about `readings` more readings in the next commit at
    /// once, rather than growing (and copying) the buffer as they come.
    pub fn reserve(&mut self, readings: usize) {
        self.buffer
            .reserve(readings.saturating_mul(RESERVE_PER_READING));
    }

    /// Adds a message to the next commit.
    pub fn append(&mut self, key: Option<&DeliveryKey>, readings: &[Reading]) {
        let start = frame::begin(&mut self.buffer);
        match key {
            Some(k) => {
                self.buffer.push(MESSAGE_KEY);
                put_text(&mut self.buffer, &k.source);
                self.buffer.extend_from_slice(&k.slot.to_le_bytes());
                self.buffer.extend_from_slice(&k.digest.to_le_bytes());
            }
            None => self.buffer.push(MESSAGE),
        }
        let n = u32::try_from(readings.len()).unwrap_or(u32::MAX);
        self.buffer.extend_from_slice(&n.to_le_bytes());
        record_readings::encode(&readings[..n as usize], &mut self.buffer);
        frame::end(&mut self.buffer, start);
    }

    /// Completes `receipt` at the next successful commit.
    pub fn wait(&mut self, receipt: Receipt) {
        self.waiting.push(receipt);
    }

    /// Receipts (or records) waiting for a commit.
    pub fn uncommitted(&self) -> usize {
        self.waiting.len().max(usize::from(!self.buffer.is_empty()))
    }

    /// Writes and syncs what was appended, then completes the receipts.
    ///
    /// # Errors
    /// The write or sync failed (a full disk): nothing is acknowledged, the
    /// file is cut back to its last good length and the records are
    /// dropped: the caller appends them again, as they are then, for the
    /// next try.
    pub fn commit(&mut self) -> Result<usize, JournalError> {
        let written = self.take_write().run()?;
        self.written(written);
        let n = self.waiting.len();
        for r in self.waiting.drain(..) {
            r.complete();
        }
        Ok(n)
    }

    /// Hands what was appended to a [`PendingWrite`], to run where blocking is
    /// fine. Until its outcome is given to [`written`](Self::written),
    /// nothing else may be written, nor may the journal move to another
    /// file: the write's length and cut-back point are this file's.
    pub fn take_write(&mut self) -> PendingWrite {
        PendingWrite {
            file: Arc::clone(&self.file),
            path: self.path.clone(),
            dir: (!self.dir_synced).then(|| self.dir.clone()),
            bytes: std::mem::take(&mut self.buffer),
            committed_len: self.committed_len,
        }
    }

    /// Test hook: appends go to `file` from now on (`/dev/full` makes them
    /// fail as a full disk does); gives back the one replaced.
    #[cfg(test)]
    pub(crate) fn replace_file(&mut self, file: Arc<File>) -> Arc<File> {
        std::mem::replace(&mut self.file, file)
    }

    /// A [`PendingWrite`] taken from this journal succeeded.
    pub fn written(&mut self, done: Written) {
        self.committed_len += done.bytes;
        if done.dir_synced {
            self.dir_synced = true;
        }
        if self.buffer.is_empty() && done.spare.capacity() <= KEEP_BUFFER {
            self.buffer = done.spare;
        }
    }

    /// Gives back the record buffer a burst grew (up to [`KEEP_BUFFER`]),
    /// once the burst has passed ([`gateway_core::cache_release`]); only
    /// when it holds nothing: records not yet on disk stay.
    pub fn let_go_of_buffers(&mut self) {
        if self.buffer.is_empty() {
            self.buffer = Vec::new();
        }
        if self.waiting.is_empty() {
            self.waiting = Vec::new();
        }
    }

    /// Starts the journal of `epoch` once a checkpoint naming it is saved.
    /// That checkpoint holds everything appended so far, committed or not,
    /// so waiting receipts complete and unwritten records are dropped.
    ///
    /// # Errors
    /// The new file cannot be created.
    pub fn rotate(&mut self, epoch: u64) -> Result<(), JournalError> {
        self.buffer.clear();
        for r in self.waiting.drain(..) {
            r.complete();
        }
        self.start_next(epoch)?;
        sync_dir(&self.dir);
        self.dir_synced = true;
        Ok(())
    }

    /// Appends go to the journal of `epoch` from now on, for a checkpoint
    /// naming it that is being written; the older files stay until it is
    /// on disk ([`retire_before`](Self::retire_before)). Call with nothing
    /// uncommitted: what was appended is in that checkpoint.
    ///
    /// # Errors
    /// The new file cannot be created; appending goes on in the old one.
    pub fn start_next(&mut self, epoch: u64) -> Result<(), JournalError> {
        let path = self.dir.join(file_name(epoch));
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io("creating", &path))?;
        self.path = path;
        self.file = Arc::new(file);
        self.epoch = epoch;
        self.committed_len = 0;
        self.dir_synced = false;
        Ok(())
    }

    /// Deletes the journals before `epoch`: a checkpoint naming `epoch` is
    /// on disk and holds them.
    pub fn retire_before(&mut self, epoch: u64) {
        for e in epochs(&self.dir).into_iter().filter(|e| *e < epoch) {
            let old = self.dir.join(file_name(e));
            if let Err(err) = std::fs::remove_file(&old) {
                warn!(path = %old.display(), error = %err, "Cannot delete a journal already in the checkpoint; it will be deleted at the next start.");
            }
        }
    }

    /// The directory was synced after this file was created (by the
    /// checkpoint that named it).
    pub fn mark_dir_synced(&mut self) {
        self.dir_synced = true;
    }
}

/// Records taken from a [`Journal`] to be appended and synced.
pub struct PendingWrite {
    file: Arc<File>,
    path: PathBuf,
    /// The directory, when the file's entry may not be on disk yet.
    dir: Option<PathBuf>,
    bytes: Vec<u8>,
    committed_len: u64,
}

/// What a successful [`PendingWrite`] put on disk.
#[derive(Debug)]
pub struct Written {
    bytes: u64,
    /// How long the write and its sync took.
    took: std::time::Duration,
    dir_synced: bool,
    /// The write's buffer, emptied, for the next one.
    spare: Vec<u8>,
}

impl Written {
    /// Bytes appended.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// How long the write and its sync took.
    pub fn took(&self) -> std::time::Duration {
        self.took
    }
}

impl PendingWrite {
    /// Appends the records and fdatasyncs the file (and, for a new file,
    /// its directory). Blocks for as long as the disk takes.
    ///
    /// # Errors
    /// The write or sync failed (a full disk): the file is cut back to its
    /// last good length, so the records can be appended again whole.
    pub fn run(self) -> Result<Written, JournalError> {
        if self.bytes.is_empty() {
            return Ok(Written {
                bytes: 0,
                took: std::time::Duration::ZERO,
                dir_synced: false,
                spare: self.bytes,
            });
        }
        let started = std::time::Instant::now();
        let mut file = &*self.file;
        let synced = file.write_all(&self.bytes).and_then(|()| file.sync_data());
        if let Err(e) = synced {
            let _ = file.set_len(self.committed_len);
            let _ = file.seek(SeekFrom::End(0));
            return Err(io("appending to", &self.path)(e));
        }
        if let Some(dir) = &self.dir {
            sync_dir(dir);
        }
        let mut spare = self.bytes;
        let bytes = spare.len() as u64;
        spare.clear();
        Ok(Written {
            bytes,
            took: started.elapsed(),
            dir_synced: self.dir.is_some(),
            spare,
        })
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// What a journal file holds: its intact records, the bytes between them
/// that are not records, and where the last intact record ends.
struct Scan {
    entries: Vec<Entry>,
    damaged: u64,
    end: usize,
}

/// Records larger than this are damage: one message's readings are a few
/// kilobytes, and a scribbled length must not make a valid-looking frame.
const MAX_RECORD: usize = 16 * 1024 * 1024;

/// Every intact record, skipping damage in between as the outbox does: a
/// few scribbled bytes cost the record they hit, not every acknowledged
/// reading after it. After damage the scan resynchronises on the next
/// offset whose length, checksum and body all hold (a false match needs a
/// 1-in-4-billion CRC collision that also parses).
fn decode_records(bytes: &[u8]) -> Scan {
    let mut scan = Scan {
        entries: Vec::new(),
        damaged: 0,
        end: 0,
    };
    let mut at = 0usize;
    while at < bytes.len() {
        if let Some((entry, n)) = record_at(&bytes[at..]) {
            scan.entries.push(entry);
            at += n;
            scan.end = at;
            continue;
        }
        let next = frame::resync(bytes, at, |b| record_at(b).is_some());
        scan.damaged += (next - at) as u64;
        at = next;
    }
    scan
}

/// The record at the start of `bytes` and its length, if it is intact.
fn record_at(bytes: &[u8]) -> Option<(Entry, usize)> {
    match frame::decode(bytes, 1..=MAX_RECORD) {
        Frame::Whole { body, len } => Some((decode_entry(body)?, len)),
        Frame::Incomplete | Frame::Damaged => None,
    }
}

fn decode_entry(body: &[u8]) -> Option<Entry> {
    let mut r = Reader::new(body);
    let (mut key, mut new_session, mut step_back) = (None, None, None);
    let kind = r.u8()?;
    match kind {
        SPELLED_OUT | MESSAGE => {}
        SPELLED_OUT_KEY | MESSAGE_KEY => key = Some((Arc::from(r.text()?), r.u16()?, r.u64()?)),
        NEW_SESSION => new_session = Some(Arc::from(r.text()?)),
        STEP_BACK => step_back = Some((r.i64()?, r.u32()?)),
        _ => return None,
    }
    let n = r.u32()?;
    let readings = match kind {
        SPELLED_OUT | SPELLED_OUT_KEY => record_readings::decode_spelled_out(&mut r, n)?,
        _ => record_readings::decode(&mut r, n)?,
    };
    Some(Entry {
        key,
        readings,
        new_session,
        step_back,
    })
}

/// Logs what a replay found.
pub fn report(replay: &Replay, epoch: u64) {
    if replay.damaged_bytes > 0 {
        warn!(
            epoch,
            damaged_bytes = replay.damaged_bytes,
            replayed = replay.entries.len(),
            "The ingress journal had damaged bytes (a torn tail after a power cut, or corruption); skipped them and kept every intact record."
        );
    }
    if !replay.entries.is_empty() {
        info!(
            messages = replay.entries.len(),
            readings = replay
                .entries
                .iter()
                .map(|e| e.readings.len())
                .sum::<usize>(),
            "Replayed the ingress journal of the last run."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_core::{DeviceId, MetricName, TimeSource, Timestamp};

    fn reading(device: &str, value: f64, ms: i64) -> Reading {
        Reading::new(
            DeviceId::new(device).unwrap(),
            MetricName::new("t").unwrap(),
            value,
            Timestamp::from_millis(ms).unwrap(),
            TimeSource::Event,
        )
        .unwrap()
    }

    fn key(slot: u16) -> DeliveryKey {
        DeliveryKey {
            source: "local".into(),
            slot,
            digest: 42,
            resent: false,
        }
    }

    #[test]
    fn receipts_complete_only_after_commit_and_records_replay() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, replay) = Journal::open(dir.path(), 3, 3).unwrap();
        assert!(replay.entries.is_empty());
        let (receipt, mut waiter) = Receipt::new(Some(key(1)));
        j.append(
            Some(&key(1)),
            &[reading("a", 1.5, 1000), reading("b", -2.0, 2000)],
        );
        j.wait(receipt);
        assert!(waiter.try_recv().is_err(), "not durable yet");
        assert_eq!(j.commit().unwrap(), 1);
        assert!(waiter.try_recv().is_ok());
        j.append(None, &[reading("c", 3.0, 3000)]);
        j.commit().unwrap();
        drop(j);
        let (_, replay) = Journal::open(dir.path(), 3, 3).unwrap();
        assert_eq!(replay.entries.len(), 2);
        assert_eq!(replay.entries[0].key, Some(("local".into(), 1, 42)));
        assert_eq!(
            replay.entries[0].readings,
            [reading("a", 1.5, 1000), reading("b", -2.0, 2000)]
        );
        assert_eq!(replay.entries[1].key, None);
    }

    /// A journal left by the version before (every name and time spelled
    /// out in each reading) replays after an upgrade, and appending goes
    /// on in the new layout behind it.
    #[test]
    fn a_journal_in_the_earlier_layout_replays() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        for (kind, with_key) in [(SPELLED_OUT_KEY, true), (SPELLED_OUT, false)] {
            let start = frame::begin(&mut bytes);
            bytes.push(kind);
            if with_key {
                put_text(&mut bytes, "local");
                bytes.extend_from_slice(&1u16.to_le_bytes());
                bytes.extend_from_slice(&42u64.to_le_bytes());
            }
            bytes.extend_from_slice(&2u32.to_le_bytes());
            for (device, value) in [("a", 1.5), ("b", -2.0)] {
                put_text(&mut bytes, device);
                put_text(&mut bytes, "t");
                bytes.extend_from_slice(&1000i64.to_le_bytes());
                bytes.extend_from_slice(&f64::to_bits(value).to_le_bytes());
                bytes.push(1);
            }
            frame::end(&mut bytes, start);
        }
        std::fs::write(dir.path().join(file_name(7)), &bytes).unwrap();
        let (mut j, replay) = Journal::open(dir.path(), 7, 7).unwrap();
        let earlier = [reading("a", 1.5, 1000), reading("b", -2.0, 1000)];
        assert_eq!(replay.damaged_bytes, 0);
        assert_eq!(replay.entries.len(), 2);
        assert_eq!(replay.entries[0].key, Some(("local".into(), 1, 42)));
        assert_eq!(replay.entries[0].readings, earlier);
        assert_eq!(replay.entries[1].key, None);
        assert_eq!(replay.entries[1].readings, earlier);
        j.append(None, &[reading("c", 3.0, 3000)]);
        j.commit().unwrap();
        drop(j);
        let (_, replay) = Journal::open(dir.path(), 7, 7).unwrap();
        assert_eq!(replay.entries.len(), 3);
        assert_eq!(replay.entries[2].readings, [reading("c", 3.0, 3000)]);
    }

    #[test]
    fn damage_in_the_middle_costs_only_the_records_it_hits() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), 0, 0).unwrap();
        for i in 0..100 {
            j.append(Some(&key(i)), &[reading("a", f64::from(i), 1000)]);
        }
        j.commit().unwrap();
        drop(j);
        let path = dir.path().join(file_name(0));
        let mut bytes = std::fs::read(&path).unwrap();
        // 50 scribbled bytes in the middle, as found from outside.
        let mid = bytes.len() / 2;
        for b in &mut bytes[mid..mid + 50] {
            *b = b'x';
        }
        std::fs::write(&path, &bytes).unwrap();
        let (mut j, replay) = Journal::open(dir.path(), 0, 0).unwrap();
        let values: Vec<f64> = replay
            .entries
            .iter()
            .map(|e| e.readings[0].value())
            .collect();
        assert!(
            values.len() >= 96 && values.len() < 100,
            "kept {} of 100",
            values.len()
        );
        assert_eq!(values.last(), Some(&99.0), "records after the damage");
        assert!(replay.damaged_bytes >= 50);
        // Appending goes on after the last record, the damage stays skipped.
        j.append(None, &[reading("a", 100.0, 1000)]);
        j.commit().unwrap();
        drop(j);
        let (_, again) = Journal::open(dir.path(), 0, 0).unwrap();
        assert_eq!(again.entries.len(), values.len() + 1);
    }

    #[test]
    fn journals_kept_for_the_previous_checkpoint_are_not_replayed_or_deleted() {
        let dir = tempfile::tempdir().unwrap();
        for epoch in [3, 4, 5] {
            let (mut j, _) = Journal::open(dir.path(), epoch, 3).unwrap();
            j.append(None, &[reading("a", epoch as f64, 1000)]);
            j.commit().unwrap();
        }
        let (_, replay) = Journal::open(dir.path(), 5, 4).unwrap();
        let values: Vec<f64> = replay
            .entries
            .iter()
            .map(|e| e.readings[0].value())
            .collect();
        assert_eq!(values, [5.0]);
        assert_eq!(
            epochs(dir.path()),
            [4, 5],
            "3 is older than both checkpoints"
        );
        let (_, replay) = Journal::open(dir.path(), 4, 4).unwrap();
        assert_eq!(
            replay.entries.len(),
            2,
            "the previous checkpoint's successors"
        );
    }

    #[test]
    fn a_clock_step_marker_replays_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), 0, 0).unwrap();
        j.append(None, &[reading("a", 1.0, 5000)]);
        j.append_step_back(1_000, 1);
        j.append(None, &[reading("a", 2.0, 1000)]);
        j.commit().unwrap();
        drop(j);
        let (_, replay) = Journal::open(dir.path(), 0, 0).unwrap();
        let marks: Vec<(Option<(i64, u32)>, usize)> = replay
            .entries
            .iter()
            .map(|e| (e.step_back, e.readings.len()))
            .collect();
        assert_eq!(marks, [(None, 1), (Some((1_000, 1)), 0), (None, 1)]);
    }

    #[test]
    fn a_new_session_marker_replays_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), 0, 0).unwrap();
        j.append(Some(&key(1)), &[reading("a", 1.0, 1000)]);
        j.append_new_session("local");
        j.append(Some(&key(1)), &[reading("a", 2.0, 1000)]);
        j.commit().unwrap();
        drop(j);
        let (_, replay) = Journal::open(dir.path(), 0, 0).unwrap();
        let marks: Vec<Option<&str>> = replay
            .entries
            .iter()
            .map(|e| e.new_session.as_deref())
            .collect();
        assert_eq!(marks, [None, Some("local"), None]);
    }

    #[test]
    fn a_damaged_tail_is_cut_and_appending_continues() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), 0, 0).unwrap();
        for i in 0..3 {
            j.append(None, &[reading("a", f64::from(i), 1000)]);
            j.commit().unwrap();
        }
        drop(j);
        let path = dir.path().join(file_name(0));
        let mut bytes = std::fs::read(&path).unwrap();
        let len = bytes.len();
        bytes[len - 3] ^= 0xff;
        bytes.extend_from_slice(&[1, 2, 3]);
        std::fs::write(&path, &bytes).unwrap();
        let (mut j, replay) = Journal::open(dir.path(), 0, 0).unwrap();
        assert_eq!(replay.entries.len(), 2);
        assert!(replay.damaged_bytes > 3);
        j.append(None, &[reading("a", 9.0, 1000)]);
        j.commit().unwrap();
        drop(j);
        let (_, replay) = Journal::open(dir.path(), 0, 0).unwrap();
        let values: Vec<f64> = replay
            .entries
            .iter()
            .map(|e| e.readings[0].value())
            .collect();
        assert_eq!(values, [0.0, 1.0, 9.0]);
    }

    #[test]
    fn journals_of_a_checkpoint_that_did_not_land_are_replayed_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), 5, 5).unwrap();
        j.append(None, &[reading("a", 1.0, 1000)]);
        j.commit().unwrap();
        // A checkpoint naming 6 starts; appends move on before it lands.
        j.start_next(6).unwrap();
        j.append(None, &[reading("b", 2.0, 2000)]);
        j.commit().unwrap();
        assert_eq!(
            epochs(dir.path()),
            [5, 6],
            "5 stays until the checkpoint lands"
        );
        drop(j);
        // Crash: the last checkpoint on disk still names 5.
        let (mut j, replay) = Journal::open(dir.path(), 5, 5).unwrap();
        let values: Vec<f64> = replay
            .entries
            .iter()
            .flat_map(|e| e.readings.iter().map(Reading::value))
            .collect();
        assert_eq!(values, [1.0, 2.0], "both journals, oldest first");
        assert_eq!(j.epoch(), 6, "appending goes on in the newest");
        // The checkpoint naming 7 lands: everything before it goes.
        j.start_next(7).unwrap();
        j.retire_before(7);
        assert_eq!(epochs(dir.path()), [7]);
        drop(j);
        let (_, replay) = Journal::open(dir.path(), 7, 7).unwrap();
        assert!(replay.entries.is_empty());
    }

    #[test]
    fn rotation_starts_empty_and_leaves_retiring_to_the_checkpoint_generations() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), 5, 5).unwrap();
        j.append(None, &[reading("a", 1.0, 1000)]);
        j.commit().unwrap();
        j.rotate(6).unwrap();
        // Epoch 5 rebuilds the previous checkpoint's successor.
        assert_eq!(epochs(dir.path()), [5, 6]);
        j.retire_before(6);
        assert!(!dir.path().join(file_name(5)).exists());
        drop(j);
        let (_, replay) = Journal::open(dir.path(), 6, 6).unwrap();
        assert!(replay.entries.is_empty());
    }
}
