//! Sealed hours: writing them once an hour is over, reading one series
//! from them, and deleting them for retention and `max_bytes`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use tracing::warn;

use super::codec::{self, Decoded, IndexEntry, Record};
use super::store::{alert_log, hour_dat, hour_log, io_err, sync_dir, upsert, DAY_MS};
use super::{Aggregate, History, HistoryError, Pruned, HOUR_MS};

/// A sealed hour being written; renamed to `.dat` once synced.
pub(super) const TMP_EXTENSION: &str = "dat.tmp";
/// Pruning for `max_bytes` brings the store down to this share of it, so
/// that it is not over the limit again an hour later.
const PRUNE_TO: f64 = 0.9;
/// Index entries kept in memory across sealed hours (24 bytes each): a
/// day of 1500 series' indexes, or a month of a small building's.
const INDEX_CACHE_ENTRIES: usize = 48 * 1500;
/// Sealed hours kept open at once: well under a service's file limit.
const INDEX_CACHE_HOURS: usize = 128;

/// A sealed hour's file, open, with its index.
type SealedHour = (Arc<File>, Arc<Vec<IndexEntry>>);

/// Recently read sealed hours, open, with their parsed indexes: the
/// overview reads every series over the same 24 hours, and opening and
/// parsing each hour once instead of once per series is most of its cost.
/// The writer forgets an hour when it seals or deletes it; a reader that
/// still holds the old file reads the old, complete hour.
#[derive(Default)]
pub(super) struct IndexCache {
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    map: HashMap<i64, SealedHour>,
    order: VecDeque<i64>,
    entries: usize,
}

impl IndexCache {
    fn get(&self, hour: i64) -> Option<SealedHour> {
        let c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        c.map.get(&hour).cloned()
    }

    fn put(&self, hour: i64, sealed: SealedHour) {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        c.entries += sealed.1.len();
        match c.map.insert(hour, sealed) {
            Some(old) => c.entries -= old.1.len(),
            None => c.order.push_back(hour),
        }
        while (c.entries > INDEX_CACHE_ENTRIES || c.order.len() > INDEX_CACHE_HOURS)
            && c.order.len() > 1
        {
            let Some(old) = c.order.pop_front() else {
                break;
            };
            if let Some(i) = c.map.remove(&old) {
                c.entries -= i.1.len();
            }
        }
    }

    pub(super) fn forget(&self, hour: i64) {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = c.map.remove(&hour) {
            c.entries -= old.1.len();
            c.order.retain(|h| *h != hour);
        }
    }
}

/// The runs of a sealed file, with where each starts: its index, or a
/// scan of the whole file when the index is damaged.
fn scan_runs(buf: &[u8]) -> Vec<(IndexEntry, Vec<Aggregate>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        match codec::decode(&buf[at..]) {
            Decoded::Record(Record::Run { series, aggs }, len) => {
                let entry = IndexEntry {
                    series,
                    offset: at as u64,
                    len: len as u32,
                    last_end: aggs.iter().map(|a| a.end).max().unwrap_or(i64::MIN),
                };
                out.push((entry, aggs));
                at += len;
            }
            Decoded::Record(_, len) => at += len,
            Decoded::Incomplete | Decoded::Damaged => {
                at = gateway_core::state_file::frame::resync(buf, at, |b| {
                    matches!(codec::decode(b), Decoded::Record(..))
                });
            }
        }
    }
    out
}

impl History {
    /// The index of a sealed hour, `None` if it is not sealed (or was
    /// deleted meanwhile).
    pub(super) fn sealed_index(&self, hour: i64) -> Result<Option<SealedHour>, HistoryError> {
        if let Some(sealed) = self.index_cache.get(hour) {
            return Ok(Some(sealed));
        }
        let path = hour_dat(&self.dir, hour);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path, e)),
        };
        let meta = file.metadata().map_err(|e| io_err(&path, e))?;
        let mut header = [0u8; gateway_core::state_file::frame::HEADER];
        let index = match file.read_exact_at(&mut header, 0) {
            Ok(()) => {
                let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
                let mut buf = vec![0u8; (header.len() + len).min(meta.len() as usize)];
                file.read_exact_at(&mut buf, 0)
                    .map_err(|e| io_err(&path, e))?;
                match codec::decode(&buf) {
                    Decoded::Record(Record::Index(entries), _) => Some(entries),
                    _ => None,
                }
            }
            Err(_) => None,
        };
        let index = match index {
            Some(i) => i,
            None => {
                warn!(path = %path.display(), "A sealed history hour has a damaged index; reading its runs one by one.");
                let buf = std::fs::read(&path).map_err(|e| io_err(&path, e))?;
                let mut entries: Vec<IndexEntry> =
                    scan_runs(&buf).into_iter().map(|(e, _)| e).collect();
                entries.sort_by_key(|e| e.series);
                entries
            }
        };
        let sealed = (Arc::new(file), Arc::new(index));
        self.index_cache.put(hour, sealed.clone());
        Ok(Some(sealed))
    }

    /// One series' windows in a sealed hour.
    pub(super) fn sealed_run(
        &self,
        hour: i64,
        series: u32,
    ) -> Result<Vec<Aggregate>, HistoryError> {
        let Some((file, index)) = self.sealed_index(hour)? else {
            return Ok(Vec::new());
        };
        let Ok(i) = index.binary_search_by_key(&series, |e| e.series) else {
            return Ok(Vec::new());
        };
        let e = index[i];
        let mut buf = vec![0u8; e.len as usize];
        let path = hour_dat(&self.dir, hour);
        if file.read_exact_at(&mut buf, e.offset).is_err() {
            warn!(path = %path.display(), series, "A sealed history hour is shorter than its index says.");
            return Ok(Vec::new());
        }
        match codec::decode(&buf) {
            Decoded::Record(Record::Run { series: s, aggs }, _) if s == series => Ok(aggs),
            _ => {
                warn!(path = %path.display(), series, "Damaged run in a sealed history hour skipped.");
                Ok(Vec::new())
            }
        }
    }

    /// Seals every open hour but the newest two (a window that started in
    /// one of them may still close). Returns the bytes written.
    pub(super) fn seal_finished(&self) -> Result<u64, HistoryError> {
        if !self.writable() {
            return Ok(0);
        }
        let due: Vec<i64> = {
            let s = self.lock_state();
            let newest = s
                .open
                .keys()
                .next_back()
                .copied()
                .max(s.sealed.iter().next_back().copied());
            match newest {
                Some(newest) => s.open.range(..newest - 1).map(|(h, _)| *h).collect(),
                None => Vec::new(),
            }
        };
        let mut written = 0;
        for hour in due {
            written += self.seal(hour)?;
        }
        Ok(written)
    }

    /// Rewrites an hour as one sorted file: what a sealed file already held,
    /// then what was appended since (the later copy of a window wins).
    fn seal(&self, hour: i64) -> Result<u64, HistoryError> {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let dat = hour_dat(&self.dir, hour);
        let mut runs: BTreeMap<u32, Vec<Aggregate>> = BTreeMap::new();
        match std::fs::read(&dat) {
            Ok(buf) => {
                for (e, aggs) in scan_runs(&buf) {
                    runs.insert(e.series, aggs);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&dat, e)),
        }
        let appended = self
            .lock_state()
            .open
            .get(&hour)
            .cloned()
            .unwrap_or_default();
        for (series, aggs) in appended {
            let run = runs.entry(series).or_default();
            for a in aggs {
                upsert(run, a);
            }
        }
        let mut body = Vec::new();
        let mut entries = Vec::with_capacity(runs.len());
        let base = codec::index_len(runs.len()) as u64;
        for (series, aggs) in &runs {
            let at = body.len();
            codec::run(*series, aggs, &mut body);
            entries.push(IndexEntry {
                series: *series,
                offset: base + at as u64,
                len: (body.len() - at) as u32,
                last_end: aggs.iter().map(|a| a.end).max().unwrap_or(i64::MIN),
            });
        }
        let mut file_bytes = Vec::with_capacity(base as usize + body.len());
        codec::index(&entries, &mut file_bytes);
        file_bytes.extend_from_slice(&body);
        let tmp = dat.with_extension(TMP_EXTENSION);
        let written = File::create(&tmp).and_then(|mut f| {
            f.write_all(&file_bytes)?;
            f.sync_all()
        });
        if let Err(e) = written {
            // A full disk: the half-written file would only take more of it.
            let _ = std::fs::remove_file(&tmp);
            return Err(io_err(&tmp, e));
        }
        std::fs::rename(&tmp, &dat).map_err(|e| io_err(&dat, e))?;
        sync_dir(&dat)?;
        self.index_cache.forget(hour);
        {
            let mut s = self.lock_state();
            s.open.remove(&hour);
            s.sealed.insert(hour);
        }
        let log = hour_log(&self.dir, hour);
        match std::fs::remove_file(&log) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&log, e)),
        }
        Ok(file_bytes.len() as u64)
    }

    /// The start of the newest hour holding windows: no window in the
    /// store is newer than an hour past it, and retention keeps that hour
    /// whatever the clock says (see `gateway_core::clock::retention`).
    pub fn newest_hour_ms(&self) -> Option<i64> {
        let s = self.lock_state();
        let open = s.open.keys().next_back().copied();
        let sealed = s.sealed.iter().next_back().copied();
        open.max(sealed).map(|h| h.saturating_mul(HOUR_MS))
    }

    /// Seals the hours that are over, deletes hours that end before
    /// `cutoff_ms`, then, while the files take more than `max_bytes`, the
    /// oldest hours (never the newest) down to `PRUNE_TO` of it.
    ///
    /// # Errors
    /// An I/O error.
    pub fn prune(&self, cutoff_ms: i64, max_bytes: u64) -> Result<Pruned, HistoryError> {
        if !self.writable() {
            return Ok(Pruned::default());
        }
        let bytes_written = self.seal_finished()?;
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let cutoff = cutoff_ms.div_euclid(HOUR_MS);
        let hours: Vec<i64> = {
            let s = self.lock_state();
            let mut h: Vec<i64> = s.open.keys().chain(s.sealed.iter()).copied().collect();
            h.sort_unstable();
            h.dedup();
            h
        };
        let size = |path: &std::path::Path| std::fs::metadata(path).map_or(0, |m| m.len());
        let mut total: u64 = self.dir_bytes()?;
        let target = (max_bytes as f64 * PRUNE_TO) as u64;
        let mut doomed = Vec::new();
        // Once over the limit, keep going down to the target, so that the
        // next hourly check finds room rather than pruning again.
        let mut freeing = false;
        for (i, &hour) in hours.iter().enumerate() {
            let newest = i + 1 == hours.len();
            if hour >= cutoff {
                freeing = !newest && (total > max_bytes || (freeing && total > target));
                if !freeing {
                    break;
                }
            }
            total = total.saturating_sub(
                size(&hour_dat(&self.dir, hour)) + size(&hour_log(&self.dir, hour)),
            );
            doomed.push(hour);
        }
        let mut windows = 0u64;
        for hour in &doomed {
            windows += self.windows_in(*hour);
            self.index_cache.forget(*hour);
            for path in [hour_dat(&self.dir, *hour), hour_log(&self.dir, *hour)] {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&path, e)),
                }
            }
            let mut s = self.lock_state();
            s.open.remove(hour);
            s.sealed.remove(hour);
        }
        // Alerts go with the hours: a day whose end is before the cutoff or
        // before the oldest hour kept.
        let keep_from = doomed
            .last()
            .map_or(cutoff_ms, |h| cutoff_ms.max((h + 1) * HOUR_MS));
        let days: Vec<i64> = {
            let s = self.lock_state();
            s.alert_days
                .iter()
                .filter(|d| (*d + 1) * DAY_MS <= keep_from)
                .copied()
                .collect()
        };
        for day in days {
            let path = alert_log(&self.dir, day);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path, e)),
            }
            self.lock_state().alert_days.remove(&day);
        }
        self.prune_commands(keep_from)?;
        Ok(Pruned {
            windows,
            bytes_written,
        })
    }

    /// The bytes the history's files take.
    ///
    /// # Errors
    /// A directory that cannot be read.
    pub fn dir_bytes(&self) -> Result<u64, HistoryError> {
        let mut total = 0;
        for entry in std::fs::read_dir(&self.dir).map_err(|e| io_err(&self.dir, e))? {
            let entry = entry.map_err(|e| io_err(&self.dir, e))?;
            total += entry.metadata().map_or(0, |m| m.len());
        }
        Ok(total)
    }

    fn windows_in(&self, hour: i64) -> u64 {
        let open: u64 = self
            .lock_state()
            .open
            .get(&hour)
            .map_or(0, |s| s.values().map(|v| v.len() as u64).sum());
        let sealed: u64 = match self.sealed_index(hour) {
            Ok(Some((_, index))) => index
                .iter()
                .map(|e| {
                    (e.len as usize).saturating_sub(codec::index_len(0) + 4) as u64
                        / codec::AGG_LEN as u64
                })
                .sum(),
            _ => 0,
        };
        open + sealed
    }
}
