//! The outbox's segment files as a whole: one started, the acknowledged
//! ones deleted, the oldest evicted when the outbox or the disk is full.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use super::record::{self, Record};
use super::{io, segment_path, sync_dir, Loc, Outbox, OutboxError, Segment};

/// A segment's FLOOR record, all a new segment holds.
const FLOOR_BYTES: u64 = (record::HEADER + record::MARK_BODY) as u64;

impl Outbox {
    /// Opens segment `id` for writing. Its first record carries `floor`,
    /// the highest sequence number already given out: once the older
    /// segments are deleted it is the only trace of the numbering, which
    /// consumers rely on (upstream `seq`) to be monotonic across restarts.
    pub(super) fn start_segment(&mut self, id: u64, floor: u64) -> Result<(), OutboxError> {
        let Some(dir) = self.dir.clone() else {
            return Ok(());
        };
        let path = segment_path(&dir, id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io("creating", &path))?;
        let mut bytes = 0;
        if floor > 0 {
            let mut buf = Vec::new();
            let _ = record::encode(&Record::Floor { seq: floor }, &mut buf);
            // Written before the segment is adopted: a segment without its
            // floor (the disk refused it) must not become the active one,
            // or a restart after the older ones are gone would number
            // messages again from below what consumers already saw.
            if let Err(e) = file
                .write_all_at(&buf, 0)
                .and_then(|()| file.sync_data())
                .map_err(io("writing", &path))
                .and_then(|()| sync_dir(&dir))
            {
                drop(file);
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
            bytes = buf.len() as u64;
        } else {
            sync_dir(&dir)?;
        }
        self.bytes += bytes;
        self.next_segment_id = self.next_segment_id.max(id + 1);
        self.segments.push_back(Segment {
            id,
            path,
            file,
            bytes,
            live: 0,
        });
        Ok(())
    }

    /// Deletes fully acknowledged segments from the oldest end, and the
    /// active one too once it is settled and large enough to be worth a
    /// new file ([`Self::reclaim`]).
    pub(super) fn collect_garbage(&mut self) -> Result<(), OutboxError> {
        self.delete_settled_front()?;
        // A quarter of a segment: a drained outbox keeps little on disk,
        // and a busy one that drains often does not start a file (three
        // fsyncs) every few writes. A full disk reclaims the rest.
        let worth = self.settings.segment_bytes() / 4;
        if self.active_settled_bytes() >= worth {
            self.reclaim()?;
        }
        Ok(())
    }

    /// Bytes of the active segment beyond its floor when it is the only
    /// one and holds no live message; 0 otherwise.
    fn active_settled_bytes(&self) -> u64 {
        match (
            self.dir.is_some(),
            self.segments.len(),
            self.segments.back(),
        ) {
            (true, 1, Some(s)) if s.live == 0 => s.bytes.saturating_sub(FLOOR_BYTES),
            _ => 0,
        }
    }

    /// Frees the space of the active segment once every message in it is
    /// acknowledged or dropped: a new segment starts (its floor keeps the
    /// numbering) and the old one is deleted. The last segment was never
    /// deleted, so delivered messages kept filling a small disk until
    /// nothing could be stored and the outputs stopped for good. Returns
    /// the bytes freed.
    ///
    /// # Errors
    /// A segment could not be created or deleted.
    pub fn reclaim(&mut self) -> Result<u64, OutboxError> {
        self.delete_settled_front()?;
        if self.active_settled_bytes() == 0 {
            return Ok(0);
        }
        let before = self.bytes;
        let next = self.next_segment_id;
        let floor = self.last_seq();
        match self.start_segment(next, floor) {
            Ok(()) => self.delete_settled_front()?,
            Err(e) if e.is_disk_full() => {
                // No room even for the new segment's floor: the settled
                // one goes first (as `evict_oldest` does), then the new
                // one starts in its room, or at the next append.
                self.drop_front_segment()?;
                if let Some(dir) = &self.dir {
                    sync_dir(dir)?;
                }
                let _ = self.start_segment(next, floor);
            }
            Err(e) => return Err(e),
        }
        Ok(before.saturating_sub(self.bytes))
    }

    fn delete_settled_front(&mut self) -> Result<(), OutboxError> {
        let mut deleted = false;
        while self.segments.len() > 1 && self.segments.front().is_some_and(|s| s.live == 0) {
            if let Some(s) = self.segments.pop_front() {
                self.bytes = self.bytes.saturating_sub(s.bytes);
                std::fs::remove_file(&s.path).map_err(io("deleting", &s.path))?;
                deleted = true;
            }
        }
        if deleted {
            if let Some(dir) = &self.dir {
                sync_dir(dir)?;
            }
        }
        Ok(())
    }

    /// Frees disk space when the disk itself is full (before `max_bytes`
    /// is reached): drops the oldest segment, as `drop_oldest` does when the
    /// outbox is full. Returns how many messages went with it; 0 when the
    /// outbox holds nothing to drop.
    ///
    /// # Errors
    /// The segment file could not be deleted.
    pub fn make_room(&mut self) -> Result<u64, OutboxError> {
        if self.index.is_empty() {
            return Ok(0);
        }
        self.evict_oldest()
    }

    /// Deletes the oldest segment (rotating first if it is the active one);
    /// returns how many live messages went with it.
    pub(super) fn evict_oldest(&mut self) -> Result<u64, OutboxError> {
        if self.dir.is_none() {
            let Some((&seq, _)) = self.index.iter().next() else {
                return Ok(0);
            };
            self.forget(seq);
            return Ok(1);
        }
        if self.segments.len() == 1 {
            let next = self.next_segment_id;
            let floor = self.last_seq();
            match self.start_segment(next, floor) {
                Ok(()) => {}
                Err(e) if e.is_disk_full() => {
                    // No room even for the next segment's first record:
                    // the only segment goes first, then the next starts in
                    // the room it left (or, if that fails too, at the next
                    // append).
                    let n = self.drop_front_segment()?;
                    let _ = self.start_segment(next, floor);
                    return Ok(n);
                }
                Err(e) => return Err(e),
            }
        }
        self.drop_front_segment()
    }

    /// Deletes the oldest segment file with the messages still in it;
    /// returns how many live messages went.
    pub(super) fn drop_front_segment(&mut self) -> Result<u64, OutboxError> {
        let Some(oldest) = self.segments.pop_front() else {
            return Ok(0);
        };
        let doomed: Vec<u64> = self
            .index
            .iter()
            .filter(|(_, e)| matches!(e.loc, Loc::Disk { segment, .. } if segment == oldest.id))
            .map(|(s, _)| *s)
            .collect();
        for seq in &doomed {
            self.index.remove(seq);
        }
        self.bytes = self.bytes.saturating_sub(oldest.bytes);
        std::fs::remove_file(&oldest.path).map_err(io("deleting", &oldest.path))?;
        Ok(doomed.len() as u64)
    }
}
