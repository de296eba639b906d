//! The open windows on disk: `{state_dir}/windows.ckpt`.
//!
//! Written every `aggregation.checkpoint_interval` and at SIGTERM, to a
//! temporary file that is fsynced and then renamed over the old one (and the
//! directory fsynced), so a power cut leaves either the old checkpoint or
//! the new one, never half of each. A checksum guards against the rest.
//!
//! ```text
//! file  = magic "EGWCK003" body_len:u64le crc32(body):u32le body
//! body  = watermark:i64 n:u32 n × series session steps
//! series = dev_len:u16 dev metric_len:u16 metric start:i64 count:u64
//!          shift:f64 mean:f64 m2:f64 min:f64 max:f64 scale_exp:i32
//! session = journal_epoch:u64 k:u32 k × (source:text slot:u16 digest:u64)
//! steps = steps_back:u32 rerun_until:i64     (aggregator::Aggregator::step_back)
//!         [amendments:u32]                    (aggregator::DeviceWindow::amendment)
//!         [ahead]
//! ahead = k:u32 k × (start:i64 close_at:i64) m:u32 m × (start:i64 device:text)
//!                                             (aggregator::Aggregator::ahead_state)
//! ```
//!
//! The amendment count, then the windows ahead of the gateway clock, were
//! added at the end of `EGWCK003` bodies: a file without them reads as
//! none emitted yet and none ahead, and a gateway that predates them reads
//! the rest of a newer file and ignores the end.
//!
//! `EGWCK001` files (no session part) and `EGWCK002` (no steps) are still
//! read. The session part
//! names the ingress journal that continues after this checkpoint and the
//! redelivery slots already taken (see `journal` and `deliveries`).

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use aggregator::{AheadState, OpenSeries, Snapshot, StatsState};
use gateway_core::state_file::{inventory, quarantine, read_if_exists, stage, FileError};
use gateway_core::{DeviceId, MetricName};

use super::deliveries::Taken;
use gateway_core::state_file::fields::{put_text, Reader};

const MAGIC: &[u8; 8] = b"EGWCK003";
const MAGIC_V2: &[u8; 8] = b"EGWCK002";
const MAGIC_V1: &[u8; 8] = b"EGWCK001";

/// Everything a checkpoint holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Saved {
    pub snapshot: Snapshot,
    /// The journal to replay on top of this checkpoint.
    pub journal_epoch: u64,
    pub deliveries: Vec<Taken>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Io(#[from] FileError),
    #[error("{path} is damaged ({why})")]
    Damaged { path: PathBuf, why: &'static str },
    #[error("the outbox has not stored the closed windows yet")]
    NotStored,
    #[error("cannot start the next ingress journal: {0}")]
    Journal(String),
    #[error("the background checkpoint task ended early")]
    Interrupted,
}

/// The checkpoint file and the generation before it (`windows.prev.ckpt`),
/// kept with the journals since it so one damaged file never costs
/// acknowledged readings.
pub struct Checkpoint {
    path: PathBuf,
    previous: PathBuf,
}

/// A checkpoint written to its temporary file, not yet in place.
pub struct Staged {
    staged: gateway_core::state_file::Staged,
    previous: PathBuf,
}

impl Staged {
    /// Syncs it, renames it over the old checkpoint and syncs the directory.
    ///
    /// # Errors
    /// A sync or the rename failed; the previous checkpoint stays.
    pub fn commit(self) -> Result<(), CheckpointError> {
        Ok(self.staged.commit_keeping(Some(&self.previous))?)
    }
}

impl Checkpoint {
    pub fn in_dir(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join(inventory::CHECKPOINT),
            previous: state_dir.join(inventory::CHECKPOINT_PREVIOUS),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last checkpoint, `None` if there is none.
    ///
    /// # Errors
    /// Unreadable or damaged (the caller starts empty and says so).
    pub fn load(&self) -> Result<Option<Saved>, CheckpointError> {
        load_file(&self.path)
    }

    /// The generation before the last checkpoint, `None` if there is none.
    ///
    /// # Errors
    /// Unreadable or damaged.
    pub fn load_previous(&self) -> Result<Option<Saved>, CheckpointError> {
        load_file(&self.previous)
    }

    /// Replaces the checkpoint atomically with what `write` writes
    /// ([`write_with`]).
    ///
    /// # Errors
    /// A write, fsync or rename that failed; the previous checkpoint stays.
    pub fn save(
        &self,
        write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
    ) -> Result<(), CheckpointError> {
        self.stage(write)?.commit()
    }

    /// Writes a new checkpoint beside the current one without syncing it;
    /// [`Staged::commit`] puts it in place.
    ///
    /// # Errors
    /// The temporary file could not be created or written.
    pub fn stage(
        &self,
        write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
    ) -> Result<Staged, CheckpointError> {
        Ok(Staged {
            staged: stage(&self.path, write)?,
            previous: self.previous.clone(),
        })
    }

    /// Moves a damaged checkpoint aside so it is kept for inspection but not
    /// read again.
    pub fn quarantine(&self) {
        quarantine(&self.path);
    }

    /// The same for a damaged previous generation.
    pub fn quarantine_previous(&self) {
        quarantine(&self.previous);
    }
}

fn load_file(path: &Path) -> Result<Option<Saved>, CheckpointError> {
    let bytes = match read_if_exists(path) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(None),
        Err(source) => {
            return Err(CheckpointError::Io(FileError {
                action: "reading",
                path: path.to_path_buf(),
                source,
            }))
        }
    };
    decode(&bytes)
        .map(Some)
        .map_err(|why| CheckpointError::Damaged {
            path: path.to_path_buf(),
            why,
        })
}

/// Where the series start in the file: after the header (magic, body
/// length, checksum) and the body's watermark and series count.
const SERIES_AT: u64 = 8 + 8 + 4 + 8 + 4;

/// The body is encoded into a buffer of about this size and written out
/// each time it fills, so a checkpoint of many series never needs its
/// whole size in memory (50 000 series are 4 MB).
const CHUNK: usize = 64 * 1024;

/// The body on its way to the file: checksummed and counted as it goes.
struct Body<'w, W: Write> {
    out: &'w mut W,
    buf: Vec<u8>,
    crc: crc32fast::Hasher,
    len: u64,
    /// The first write that failed; later ones are skipped.
    error: Option<std::io::Error>,
}

impl<W: Write> Body<'_, W> {
    fn spill(&mut self) {
        if self.error.is_none() {
            self.crc.update(&self.buf);
            self.len += self.buf.len() as u64;
            if let Err(e) = self.out.write_all(&self.buf) {
                self.error = Some(e);
            }
        }
        self.buf.clear();
    }

    fn spill_if_full(&mut self) {
        if self.buf.len() >= CHUNK {
            self.spill();
        }
    }
}

/// Writes a checkpoint whose open series `each_open` passes to its argument
/// one by one, straight from where they live: no owned snapshot of them
/// and no whole-file buffer.
pub fn write_with<W: Write + Seek>(
    out: &mut W,
    watermark_ms: i64,
    each_open: impl FnOnce(&mut dyn FnMut(&str, &str, i64, StatsState)),
    journal_epoch: u64,
    deliveries: &[Taken],
    (steps_back, rerun_until, amendments): (u32, i64, u32),
    ahead: &AheadState,
) -> std::io::Result<()> {
    // Header, watermark and series count are known only at the end (the
    // count after the series are streamed): zeros now, patched in then.
    out.write_all(&[0; SERIES_AT as usize])?;
    let mut body = Body {
        out,
        buf: Vec::with_capacity(CHUNK + 1024),
        crc: crc32fast::Hasher::new(),
        len: 0,
        error: None,
    };
    let mut n: u32 = 0;
    each_open(&mut |device, metric, window_start_ms, st| {
        // A u32 count of series would need 4 billion open windows first.
        n = n.saturating_add(1);
        let b = &mut body.buf;
        for text in [device, metric] {
            // Ids are at most 128 bytes (DeviceId, MetricName).
            b.extend_from_slice(&(text.len() as u16).to_le_bytes());
            b.extend_from_slice(text.as_bytes());
        }
        b.extend_from_slice(&window_start_ms.to_le_bytes());
        b.extend_from_slice(&st.count.to_le_bytes());
        for f in [st.shift, st.mean, st.m2, st.min, st.max] {
            b.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        b.extend_from_slice(&st.scale_exp.to_le_bytes());
        body.spill_if_full();
    });
    body.buf.extend_from_slice(&journal_epoch.to_le_bytes());
    let k = u32::try_from(deliveries.len()).unwrap_or(u32::MAX);
    body.buf.extend_from_slice(&k.to_le_bytes());
    for t in deliveries.iter().take(k as usize) {
        put_text(&mut body.buf, &t.source);
        body.buf.extend_from_slice(&t.slot.to_le_bytes());
        body.buf.extend_from_slice(&t.digest.to_le_bytes());
        body.spill_if_full();
    }
    body.buf.extend_from_slice(&steps_back.to_le_bytes());
    body.buf.extend_from_slice(&rerun_until.to_le_bytes());
    body.buf.extend_from_slice(&amendments.to_le_bytes());
    // Both lists exist only while a node's clock and the gateway's
    // disagree by more than a window: a handful of entries.
    let k = u32::try_from(ahead.close_at.len()).unwrap_or(u32::MAX);
    body.buf.extend_from_slice(&k.to_le_bytes());
    for (start, at) in ahead.close_at.iter().take(k as usize) {
        body.buf.extend_from_slice(&start.to_le_bytes());
        body.buf.extend_from_slice(&at.to_le_bytes());
    }
    let m = u32::try_from(ahead.sent.len()).unwrap_or(u32::MAX);
    body.buf.extend_from_slice(&m.to_le_bytes());
    for (start, device) in ahead.sent.iter().take(m as usize) {
        body.buf.extend_from_slice(&start.to_le_bytes());
        put_text(&mut body.buf, device.as_str());
        body.spill_if_full();
    }
    body.spill();
    if let Some(e) = body.error {
        return Err(e);
    }
    let mut head = Vec::with_capacity(SERIES_AT as usize);
    head.extend_from_slice(&watermark_ms.to_le_bytes());
    head.extend_from_slice(&n.to_le_bytes());
    // CRC-32 of the whole body from the CRC of its head and of the rest.
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head);
    crc.combine(&body.crc);
    let body_len = head.len() as u64 + body.len;
    let mut header = MAGIC.to_vec();
    header.extend_from_slice(&body_len.to_le_bytes());
    header.extend_from_slice(&crc.finalize().to_le_bytes());
    header.extend_from_slice(&head);
    out.seek(SeekFrom::Start(0))?;
    out.write_all(&header)?;
    out.seek(SeekFrom::End(0))?;
    Ok(())
}

fn decode(bytes: &[u8]) -> Result<Saved, &'static str> {
    let mut r = Reader::new(bytes);
    let (has_session, has_steps) = match r.take(8) {
        Some(m) if m == MAGIC.as_slice() => (true, true),
        Some(m) if m == MAGIC_V2.as_slice() => (true, false),
        Some(m) if m == MAGIC_V1.as_slice() => (false, false),
        _ => return Err("not a checkpoint"),
    };
    let len = r.u64().ok_or("truncated header")?;
    let crc = r.u32().ok_or("truncated header")?;
    let body = r
        .take(usize::try_from(len).map_err(|_| "bad length")?)
        .ok_or("truncated")?;
    if crc32fast::hash(body) != crc {
        return Err("checksum mismatch");
    }
    let mut r = Reader::new(body);
    let bad = "malformed series";
    let watermark_ms = r.i64().ok_or(bad)?;
    let n = r.u32().ok_or(bad)?;
    let mut open = Vec::with_capacity(n.min(1 << 20) as usize);
    for _ in 0..n {
        let device = DeviceId::new(r.text().ok_or(bad)?).map_err(|_| bad)?;
        let metric = MetricName::new(r.text().ok_or(bad)?).map_err(|_| bad)?;
        let window_start_ms = r.i64().ok_or(bad)?;
        let count = r.u64().ok_or(bad)?;
        let mut f = [0.0; 5];
        for v in &mut f {
            *v = r.f64().ok_or(bad)?;
        }
        let scale_exp = r.i32().ok_or(bad)?;
        open.push(OpenSeries {
            device,
            metric,
            window_start_ms,
            stats: StatsState {
                count,
                shift: f[0],
                mean: f[1],
                m2: f[2],
                min: f[3],
                max: f[4],
                scale_exp,
            },
        });
    }
    let mut snapshot = Snapshot {
        watermark_ms,
        open,
        ..Snapshot::default()
    };
    if !has_session {
        return Ok(Saved {
            snapshot,
            ..Saved::default()
        });
    }
    let bad = "malformed session";
    let journal_epoch = r.u64().ok_or(bad)?;
    let k = r.u32().ok_or(bad)?;
    let mut deliveries = Vec::with_capacity(k.min(1 << 16) as usize);
    for _ in 0..k {
        deliveries.push(Taken {
            source: r.text().ok_or(bad)?.into(),
            slot: r.u16().ok_or(bad)?,
            digest: r.u64().ok_or(bad)?,
        });
    }
    if has_steps {
        let bad = "malformed clock steps";
        snapshot.steps_back = r.u32().ok_or(bad)?;
        snapshot.rerun_until = r.i64().ok_or(bad)?;
        if !r.is_empty() {
            snapshot.amendments = r.u32().ok_or(bad)?;
        }
        if !r.is_empty() {
            let bad = "malformed windows ahead";
            let k = r.u32().ok_or(bad)?;
            for _ in 0..k {
                let start = r.i64().ok_or(bad)?;
                let at = r.i64().ok_or(bad)?;
                snapshot.ahead.close_at.push((start, at));
            }
            let m = r.u32().ok_or(bad)?;
            for _ in 0..m {
                let start = r.i64().ok_or(bad)?;
                let device = DeviceId::new(r.text().ok_or(bad)?).map_err(|_| bad)?;
                snapshot.ahead.sent.push((start, device));
            }
        }
    }
    Ok(Saved {
        snapshot,
        journal_epoch,
        deliveries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write<W: Write + Seek>(out: &mut W, saved: &Saved) -> std::io::Result<()> {
        let s = &saved.snapshot;
        write_with(
            out,
            s.watermark_ms,
            |put| {
                for o in &s.open {
                    put(
                        o.device.as_str(),
                        o.metric.as_str(),
                        o.window_start_ms,
                        o.stats,
                    );
                }
            },
            saved.journal_epoch,
            &saved.deliveries,
            (s.steps_back, s.rerun_until, s.amendments),
            &s.ahead,
        )
    }

    fn encode(saved: &Saved) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        write(&mut out, saved).unwrap();
        out.into_inner()
    }

    fn save(c: &Checkpoint, saved: &Saved) {
        c.save(|out| write(out, saved)).unwrap();
    }

    fn saved() -> Saved {
        Saved {
            snapshot: snapshot(),
            journal_epoch: 7,
            deliveries: vec![Taken {
                source: "local".into(),
                slot: 65_535,
                digest: u64::MAX - 1,
            }],
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            watermark_ms: 1_795_255_200_000,
            open: (0..3)
                .map(|i| OpenSeries {
                    device: DeviceId::new(format!("a2:b2:c2:d2:e2:f{i}")).unwrap(),
                    metric: MetricName::new("temperature").unwrap(),
                    window_start_ms: 1_795_255_200_000 + i * 1000,
                    stats: StatsState {
                        count: 3,
                        shift: 1.5,
                        mean: -0.25,
                        m2: 1e-30,
                        min: f64::MIN_POSITIVE,
                        max: 1e300,
                        scale_exp: -1022 + i as i32,
                    },
                })
                .collect(),
            steps_back: 2,
            rerun_until: 1_795_255_800_000,
            amendments: 7,
            ahead: AheadState {
                close_at: vec![(1_795_256_400_000, 1_795_255_300_000)],
                sent: vec![
                    (1_795_256_100_000, DeviceId::new("own-time-node").unwrap()),
                    (1_795_256_100_000, DeviceId::new("Node-2").unwrap()),
                ],
            },
        }
    }

    #[test]
    fn checkpoints_round_trip_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoint::in_dir(dir.path());
        assert_eq!(c.load().unwrap(), None);
        save(&c, &saved());
        assert_eq!(c.load().unwrap(), Some(saved()));
        save(&c, &Saved::default());
        assert_eq!(c.load().unwrap(), Some(Saved::default()), "a save replaces");
    }

    #[test]
    fn any_damage_is_detected_never_misread() {
        let good = encode(&saved());
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "truncated at {cut}");
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad).is_err(), "bit flipped at {i}");
        }
    }

    #[test]
    fn first_format_checkpoints_are_still_read() {
        let v2 = encode(&Saved {
            snapshot: snapshot(),
            ..Saved::default()
        });
        // Drop the session part (epoch 0, no deliveries: 12 bytes).
        let body = &v2[20..v2.len() - 12];
        let mut v1 = MAGIC_V1.to_vec();
        v1.extend_from_slice(&(body.len() as u64).to_le_bytes());
        v1.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        v1.extend_from_slice(body);
        let read = decode(&v1).unwrap();
        let without_steps = Snapshot {
            steps_back: 0,
            rerun_until: 0,
            amendments: 0,
            ahead: AheadState::default(),
            ..snapshot()
        };
        assert_eq!(read.snapshot, without_steps);
        assert_eq!((read.journal_epoch, read.deliveries.len()), (0, 0));
    }
}
