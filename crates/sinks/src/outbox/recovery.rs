//! Opening the outbox: its lock, then every segment read in order to
//! rebuild the index of live messages. A torn or scribbled record is
//! reported and skipped; reading resumes at the next intact record.

use std::collections::{BTreeMap, VecDeque};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use super::{io, segment_path, Outbox, OutboxError, OutboxSettings, Segment};
use crate::outbox::record::{self, Decoded, Record};

/// A run of bytes recovery could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub segment: PathBuf,
    pub offset: u64,
    pub bytes: u64,
}

/// What `open` found.
#[derive(Debug, Default)]
pub struct Recovery {
    pub messages: usize,
    pub damage: Vec<Damage>,
}

impl Outbox {
    /// Opens (or creates) the outbox in `dir` and recovers what it holds.
    ///
    /// # Errors
    /// Only when the directory cannot be used at all (permissions, another
    /// gateway holding its lock); damaged contents are reported, not errors.
    pub fn open(dir: &Path, settings: OutboxSettings) -> Result<(Self, Recovery), OutboxError> {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("opening", &lock_path))?;
        if lock.try_lock().is_err() {
            return Err(OutboxError::Locked(dir.to_path_buf()));
        }
        let mut ids: Vec<u64> = std::fs::read_dir(dir)
            .map_err(io("listing", dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_prefix("seg-")?
                    .strip_suffix(".log")?
                    .parse()
                    .ok()
            })
            .collect();
        ids.sort_unstable();
        let mut outbox = Self {
            dir: Some(dir.to_path_buf()),
            settings,
            _lock: Some(lock),
            segments: VecDeque::new(),
            index: BTreeMap::new(),
            next_seq: 1,
            next_segment_id: 1,
            bytes: 0,
            fresh: Default::default(),
        };
        let mut recovery = Recovery::default();
        for id in &ids {
            outbox.recover_segment(*id, &mut recovery)?;
        }
        recovery.messages = outbox.index.len();
        let next_id = ids.last().map_or(1, |l| l + 1);
        let floor = outbox.last_seq();
        outbox.start_segment(next_id, floor)?;
        outbox.collect_garbage()?;
        Ok((outbox, recovery))
    }

    fn recover_segment(&mut self, id: u64, recovery: &mut Recovery) -> Result<(), OutboxError> {
        let path = segment_path(self.dir.as_deref().unwrap_or(Path::new(".")), id);
        let buf = std::fs::read(&path).map_err(io("reading", &path))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io("opening", &path))?;
        self.bytes += buf.len() as u64;
        self.segments.push_back(Segment {
            id,
            path: path.clone(),
            file,
            bytes: buf.len() as u64,
            live: 0,
        });
        let mut at = 0usize;
        while at < buf.len() {
            match record::decode(&buf[at..]) {
                Decoded::Record(r, n) => {
                    self.apply(r, id, at as u64, n);
                    at += n;
                }
                Decoded::Incomplete => {
                    recovery.damage.push(Damage {
                        segment: path.clone(),
                        offset: at as u64,
                        bytes: (buf.len() - at) as u64,
                    });
                    break;
                }
                Decoded::Damaged => {
                    // Resynchronise on the next record whose frame and
                    // checksum hold; a random match is a 1-in-4-billion event.
                    let next = gateway_core::state_file::frame::resync(&buf, at, |b| {
                        matches!(record::decode(b), Decoded::Record(..))
                    });
                    recovery.damage.push(Damage {
                        segment: path.clone(),
                        offset: at as u64,
                        bytes: (next - at) as u64,
                    });
                    at = next;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, r: Record, segment: u64, offset: u64, len: usize) {
        match r {
            Record::Message {
                seq, created_ms, ..
            } => {
                self.next_seq = self.next_seq.max(seq + 1);
                self.index_on_disk(seq, segment, offset, len, created_ms);
            }
            Record::Ack { seq } | Record::Drop { seq } => {
                self.next_seq = self.next_seq.max(seq + 1);
                self.forget(seq);
            }
            Record::Floor { seq } => self.next_seq = self.next_seq.max(seq + 1),
        }
    }
}
