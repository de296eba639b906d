//! The outbox: every upstream message on disk until the broker acknowledges it.
//!
//! An append-only log cut into segment files (`seg-<id>.log`). Messages,
//! acknowledgements and drops are records (see [`super::record`]); a message
//! is live until an ACK or DROP record for its sequence number follows it.
//! Appends are batched and fsynced once per batch, so a message handed to
//! MQTT is already durable. Segments are deleted from the oldest end once
//! every message in them is acknowledged, which keeps an ACK record from
//! ever outliving the message it refers to.
//!
//! Recovery reads every segment in order and rebuilds the index of live
//! messages. A torn or scribbled record is reported, skipped, and reading
//! resumes at the next intact record; new writes always go to a fresh
//! segment, never after damage. Nothing on disk can stop the gateway from
//! starting.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::fresh::Fresh;
use super::record::{self, Decoded, Record};
use gateway_core::config::FullPolicy;
use gateway_core::state_file::FileError;
use gateway_core::OutboundMessage;

#[path = "recovery.rs"]
mod recovery;
#[path = "segments.rs"]
mod segments;
pub use recovery::{Damage, Recovery};

#[derive(Debug, Clone)]
pub struct OutboxSettings {
    pub max_bytes: u64,
    pub policy: FullPolicy,
    pub max_age: Option<Duration>,
}

impl OutboxSettings {
    /// Small enough that dropping one segment loses little, large enough
    /// that files stay few.
    pub fn segment_bytes(&self) -> u64 {
        (self.max_bytes / 8).clamp(4 * 1024, 4 * 1024 * 1024)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Io(#[from] FileError),
    #[error("another process holds the outbox lock in {0}")]
    Locked(PathBuf),
}

impl OutboxError {
    /// The disk (or its quota) is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Self::Io(f) if f.is_disk_full())
    }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> OutboxError {
    let at = FileError::at(action, path);
    move |source| OutboxError::Io(at(source))
}

/// What one `append` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Appended {
    /// Sequence numbers given to the accepted messages, in order.
    pub seqs: Vec<u64>,
    /// Older messages deleted to make room (`drop_oldest`).
    pub evicted: u64,
    /// New messages refused (`reject_new`, or larger than the whole outbox).
    pub rejected: u64,
}

/// An append that stopped partway (see [`Outbox::append`]).
#[derive(Debug)]
pub struct AppendFailed {
    pub error: OutboxError,
    /// What was stored (and evicted or refused) before it stopped.
    pub done: Appended,
    /// The messages not stored, in their order.
    pub rest: Vec<OutboundMessage>,
}

/// Messages numbered and encoded for one write, not yet on disk.
#[derive(Default)]
struct Run {
    buf: Vec<u8>,
    /// (seq, offset in the segment, record length) of each message in `buf`.
    pending: Vec<(u64, u64, usize)>,
    /// The messages themselves, to hand back if the write fails.
    msgs: Vec<OutboundMessage>,
}

struct Segment {
    id: u64,
    path: PathBuf,
    file: File,
    bytes: u64,
    live: u64,
}

enum Loc {
    Disk { segment: u64, offset: u64, len: u32 },
    Memory(OutboundMessage),
}

struct Entry {
    loc: Loc,
    created_ms: i64,
    bytes: u64,
}

pub struct Outbox {
    dir: Option<PathBuf>,
    settings: OutboxSettings,
    _lock: Option<File>,
    segments: VecDeque<Segment>,
    index: BTreeMap<u64, Entry>,
    next_seq: u64,
    /// The id the next segment file gets: kept apart from `segments`,
    /// which an eviction on a disk with no room left can empty.
    next_segment_id: u64,
    /// Bytes on disk (all segments), or of live messages in memory.
    bytes: u64,
    /// What was just written, for its first read.
    fresh: Fresh,
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("seg-{id:020}.log"))
}

fn sync_dir(dir: &Path) -> Result<(), OutboxError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing directory", dir))
}

impl Outbox {
    /// An outbox that keeps messages in memory only: the fallback when the
    /// state directory cannot be written, so the gateway degrades instead of
    /// refusing to run.
    pub fn in_memory(settings: OutboxSettings) -> Self {
        Self {
            dir: None,
            settings,
            _lock: None,
            segments: VecDeque::new(),
            index: BTreeMap::new(),
            next_seq: 1,
            next_segment_id: 1,
            bytes: 0,
            fresh: Fresh::default(),
        }
    }

    pub fn is_durable(&self) -> bool {
        self.dir.is_some()
    }

    /// A message now on disk: live in the index and in its segment's count.
    fn index_on_disk(&mut self, seq: u64, segment: u64, offset: u64, len: usize, created_ms: i64) {
        if let Some(s) = self.segments.iter_mut().rev().find(|s| s.id == segment) {
            s.live += 1;
        }
        let loc = Loc::Disk {
            segment,
            offset,
            len: u32::try_from(len).unwrap_or(u32::MAX),
        };
        self.index.insert(
            seq,
            Entry {
                loc,
                created_ms,
                bytes: len as u64,
            },
        );
    }

    /// Removes `seq` from the index; true if it was live.
    fn forget(&mut self, seq: u64) -> bool {
        let Some(entry) = self.index.remove(&seq) else {
            return false;
        };
        match entry.loc {
            Loc::Disk { segment, .. } => {
                if let Some(s) = self.segments.iter_mut().find(|s| s.id == segment) {
                    s.live = s.live.saturating_sub(1);
                }
            }
            Loc::Memory(_) => self.bytes = self.bytes.saturating_sub(entry.bytes),
        }
        true
    }

    fn write_active(&mut self, buf: &[u8], sync: bool) -> Result<(), OutboxError> {
        let Some(seg) = self.segments.back_mut() else {
            return match &self.dir {
                // Indexed as stored while nothing was written would lose it.
                Some(dir) => Err(OutboxError::Io(FileError {
                    action: "writing",
                    path: dir.clone(),
                    source: std::io::Error::other("no segment to write to"),
                })),
                None => Ok(()),
            };
        };
        if let Err(source) = seg.file.write_all_at(buf, seg.bytes) {
            // Never leave a torn record where the next write would follow it.
            let _ = seg.file.set_len(seg.bytes);
            return Err(OutboxError::Io(FileError {
                action: "writing",
                path: seg.path.clone(),
                source,
            }));
        }
        if sync {
            if let Err(source) = seg.file.sync_data() {
                let _ = seg.file.set_len(seg.bytes);
                return Err(OutboxError::Io(FileError {
                    action: "syncing",
                    path: seg.path.clone(),
                    source,
                }));
            }
        }
        seg.bytes += buf.len() as u64;
        self.bytes += buf.len() as u64;
        Ok(())
    }

    /// Stores `msgs` durably (one fsync per written run, usually the whole
    /// batch) and numbers them.
    ///
    /// # Errors
    /// A write, fsync, segment rotation or eviction that failed (disk full,
    /// I/O error). A batch that spans a segment rotation is written in two
    /// runs, so the first may be on disk when the second fails:
    /// [`AppendFailed`] says which messages were stored and hands back the
    /// rest, in order, so no message is stored twice or lost unseen.
    pub fn append(
        &mut self,
        msgs: Vec<OutboundMessage>,
        now_ms: i64,
    ) -> Result<Appended, AppendFailed> {
        let mut out = Appended::default();
        let mut run = Run::default();
        let mut msgs = msgs.into_iter();
        if self.dir.is_some() && self.segments.is_empty() {
            // A previous eviction freed the disk by deleting the only
            // segment and could not start the next: start it now.
            let next = self.next_segment_id;
            if let Err(error) = self.start_segment(next, self.last_seq()) {
                return Err(AppendFailed {
                    error,
                    done: out,
                    rest: msgs.collect(),
                });
            }
        }
        while let Some(msg) = msgs.next() {
            if let Err((error, msg)) = self.place(msg, &mut run, &mut out, now_ms) {
                // Nothing of the run reached the disk, nor did `msg`: their
                // numbers are given out again.
                let mut rest = std::mem::take(&mut run.msgs);
                self.next_seq = run.pending.first().map_or(self.next_seq, |p| p.0);
                run.pending.clear();
                run.buf.clear();
                rest.extend(msg);
                rest.extend(msgs);
                return Err(AppendFailed {
                    error,
                    done: out,
                    rest,
                });
            }
        }
        if let Err(error) = self.flush_run(&mut run, &mut out, now_ms) {
            return Err(AppendFailed {
                error,
                done: out,
                rest: run.msgs,
            });
        }
        Ok(out)
    }

    /// Numbers one message and adds it to the run being written (or, in
    /// memory, stores it). On an error the message comes back with it,
    /// unless it was refused by the policy.
    fn place(
        &mut self,
        msg: OutboundMessage,
        run: &mut Run,
        out: &mut Appended,
        now_ms: i64,
    ) -> Result<(), (OutboxError, Option<OutboundMessage>)> {
        let seq = self.next_seq;
        // Sized first and encoded straight into the run once it has room
        // (was encoded into a buffer of its own, then copied into the run).
        let len = record::message_len(&msg);
        let Some(len) = len.filter(|l| *l as u64 <= self.settings.max_bytes) else {
            out.rejected += 1;
            return Ok(());
        };
        let size = len as u64;
        while self.bytes + run.buf.len() as u64 + size > self.settings.max_bytes {
            if self.settings.policy == FullPolicy::RejectNew {
                break;
            }
            // Earlier messages of this batch must be on disk before an
            // eviction can rotate the segment under them.
            let flushed = self.flush_run(run, out, now_ms);
            let evicted = flushed.and_then(|()| {
                let before = self.bytes;
                self.evict_oldest().map(|n| (n, self.bytes == before))
            });
            match evicted {
                Ok((n, stuck)) => {
                    out.evicted += n;
                    if stuck {
                        break;
                    }
                }
                Err(e) => return Err((e, Some(msg))),
            }
        }
        if self.bytes + run.buf.len() as u64 + size > self.settings.max_bytes {
            out.rejected += 1;
            return Ok(());
        }
        if self.dir.is_none() {
            self.next_seq += 1;
            self.bytes += size;
            self.index.insert(
                seq,
                Entry {
                    loc: Loc::Memory(msg),
                    created_ms: now_ms,
                    bytes: size,
                },
            );
            out.seqs.push(seq);
            return Ok(());
        }
        let active = self.segments.back().map_or(0, |s| s.bytes);
        let segment_bytes = self.settings.segment_bytes();
        if active + run.buf.len() as u64 > 0 && active + run.buf.len() as u64 + size > segment_bytes
        {
            let next = self.next_segment_id;
            // `seq` itself is not stored yet.
            if let Err(e) = self
                .flush_run(run, out, now_ms)
                .and_then(|()| self.start_segment(next, seq - 1))
            {
                return Err((e, Some(msg)));
            }
        }
        let offset = self.segments.back().map_or(0, |s| s.bytes) + run.buf.len() as u64;
        let rec = Record::Message {
            seq,
            created_ms: now_ms,
            msg,
        };
        let _ = record::encode(&rec, &mut run.buf);
        let Record::Message { msg, .. } = rec else {
            return Ok(());
        };
        run.pending.push((seq, offset, len));
        run.msgs.push(msg);
        self.next_seq += 1;
        Ok(())
    }

    /// Writes the run to the active segment; on success its messages are
    /// stored and numbered, on failure it is left as it was (and its
    /// numbers are not given out).
    fn flush_run(
        &mut self,
        run: &mut Run,
        out: &mut Appended,
        created_ms: i64,
    ) -> Result<(), OutboxError> {
        if run.buf.is_empty() {
            return Ok(());
        }
        self.write_active(&run.buf, true)?;
        let segment = self.segments.back().map_or(0, |s| s.id);
        for ((seq, offset, len), msg) in run.pending.drain(..).zip(run.msgs.drain(..)) {
            self.index_on_disk(seq, segment, offset, len, created_ms);
            self.fresh.keep(seq, msg);
            out.seqs.push(seq);
        }
        run.buf.clear();
        run.msgs.clear();
        Ok(())
    }

    fn mark(&mut self, rec: Record) -> Result<bool, OutboxError> {
        let (Record::Ack { seq } | Record::Drop { seq }) = rec else {
            return Ok(false);
        };
        if !self.index.contains_key(&seq) {
            return Ok(false);
        }
        let written = match self.dir {
            Some(_) => {
                let mut buf = Vec::new();
                let _ = record::encode(&rec, &mut buf);
                // Not fsynced: an acknowledgement lost in a crash only means the
                // message is sent again, and consumers deduplicate on its id.
                self.write_active(&buf, false)
            }
            None => Ok(()),
        };
        // Settled in memory even when its record could not be written (a
        // full disk): kept live, it was sent again and again, and its
        // segment, the space the disk needed, was never freed. Lost at a
        // restart only means it is sent once more.
        self.forget(seq);
        let collected = self.collect_garbage();
        written?;
        collected?;
        Ok(true)
    }

    /// The broker acknowledged `seq`: it will not be sent again.
    ///
    /// # Errors
    /// The ACK record could not be written (the message is settled in
    /// memory only: a restart sends it again).
    pub fn ack(&mut self, seq: u64) -> Result<bool, OutboxError> {
        self.mark(Record::Ack { seq })
    }

    /// Drops every message older than `max_age`; returns how many.
    ///
    /// # Errors
    /// A DROP record could not be written.
    pub fn expire(&mut self, now_ms: i64) -> Result<u64, OutboxError> {
        let Some(max_age) = self.settings.max_age else {
            return Ok(0);
        };
        let cutoff = now_ms.saturating_sub(i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX));
        let old: Vec<u64> = self
            .index
            .iter()
            .take_while(|(_, e)| e.created_ms < cutoff)
            .map(|(s, _)| *s)
            .collect();
        let mut n = 0;
        for seq in old {
            if self.mark(Record::Drop { seq })? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The first live sequence number after `after`: [`Self::seqs_after`]
    /// with a limit of one, without a vector (asked a few times a window).
    pub fn first_after(&self, after: u64) -> Option<u64> {
        self.index
            .range(after.saturating_add(1)..)
            .next()
            .map(|(s, _)| *s)
    }

    /// Live sequence numbers after `after`, oldest first, at most `limit`.
    pub fn seqs_after(&self, after: u64, limit: usize) -> Vec<u64> {
        self.index
            .range(after.saturating_add(1)..)
            .take(limit)
            .map(|(s, _)| *s)
            .collect()
    }

    /// The message stored under `seq`, if it is still live and readable.
    ///
    /// # Errors
    /// The segment could not be read.
    pub fn read(&self, seq: u64) -> Result<Option<OutboundMessage>, OutboxError> {
        let Some(entry) = self.index.get(&seq) else {
            return Ok(None);
        };
        let (segment, offset, len) = match &entry.loc {
            Loc::Memory(m) => return Ok(Some(m.clone())),
            Loc::Disk {
                segment,
                offset,
                len,
            } => (*segment, *offset, *len),
        };
        let Some(seg) = self.segments.iter().find(|s| s.id == segment) else {
            return Ok(None);
        };
        let mut buf = vec![0; len as usize];
        seg.file
            .read_exact_at(&mut buf, offset)
            .map_err(io("reading", &seg.path))?;
        Ok(match record::decode(&buf) {
            Decoded::Record(Record::Message { msg, .. }, _) => Some(msg),
            _ => None,
        })
    }

    /// [`Self::read`] for sending: a message just written comes from
    /// memory, once (the same bytes: it is kept only once on disk and
    /// synced); any other, or the same again, from its segment.
    ///
    /// # Errors
    /// The segment could not be read.
    pub fn take(&mut self, seq: u64) -> Result<Option<OutboundMessage>, OutboxError> {
        let kept = self.fresh.take(seq);
        if !self.index.contains_key(&seq) {
            return Ok(None);
        }
        match kept {
            Some(msg) => Ok(Some(msg)),
            None => self.read(seq),
        }
    }

    /// Lets go of the messages kept in memory after their write, once a
    /// burst has passed (`gateway_core::cache_release`): each is on disk,
    /// and [`Self::take`] reads it back from there, the same message.
    pub fn let_go_of_fresh(&mut self) {
        self.fresh = Fresh::default();
    }

    /// Messages kept in memory after their write, not yet taken.
    pub fn fresh_len(&self) -> usize {
        self.fresh.len()
    }

    /// Live messages.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Bytes held: segment files on disk, or live messages in memory.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The newest sequence number given out so far.
    pub fn last_seq(&self) -> u64 {
        self.next_seq.saturating_sub(1)
    }

    /// When the oldest live message was stored.
    pub fn oldest_created_ms(&self) -> Option<i64> {
        self.index.values().next().map(|e| e.created_ms)
    }

    /// When the newest live message was stored (retention never expires
    /// it by a clock that runs ahead of it: `gateway_core::clock::retention`).
    pub fn newest_created_ms(&self) -> Option<i64> {
        self.index.values().next_back().map(|e| e.created_ms)
    }
}
