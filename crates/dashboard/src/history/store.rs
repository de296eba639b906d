//! Opening the history directory, appending batches and answering reads.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::warn;

use super::codec::{self, Record};
use super::seal::IndexCache;
use super::{
    downsample, Aggregate, AlertRow, Batch, HistoryError, KnownDevice, HOUR_MS, MAX_ALERTS,
};

pub(super) const DAY_MS: i64 = 24 * HOUR_MS;
const SERIES_FILE: &str = "series.log";
const LOCK_FILE: &str = "LOCK";
/// How far back, in sealed hours, opening looks for each series' newest
/// window: a device silent longer than two days is offline either way.
const LAST_END_LOOKBACK: usize = 48;

/// The windows of the hours not sealed yet: hour → series → windows sorted
/// by start.
/// A series' (device, metric).
pub(super) type SeriesKey = (Arc<str>, Arc<str>);

pub(super) type OpenHours = BTreeMap<i64, HashMap<u32, Vec<Aggregate>>>;

/// What the store knows in memory; files hold the rest.
#[derive(Default)]
pub(super) struct State {
    pub(super) ids: HashMap<SeriesKey, u32>,
    pub(super) names: HashMap<u32, SeriesKey>,
    pub(super) next_id: u32,
    pub(super) last_end: HashMap<u32, i64>,
    pub(super) open: OpenHours,
    pub(super) sealed: BTreeSet<i64>,
    pub(super) alert_days: BTreeSet<i64>,
    pub(super) next_alert_seq: u64,
}

/// The history directory, writable (the gateway) or read-only
/// (`history export`, which needs no lock and can run beside it).
pub struct History {
    pub(super) dir: PathBuf,
    pub(super) state: Mutex<State>,
    /// One writer at a time: batches and sealing.
    pub(super) writing: Mutex<()>,
    pub(super) index_cache: IndexCache,
    /// Held for the writer's lifetime: a second gateway on the same state
    /// directory is refused rather than interleaving its appends.
    lock: Option<File>,
}

pub(super) fn io_err(path: &Path, source: std::io::Error) -> HistoryError {
    HistoryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn hour_log(dir: &Path, hour: i64) -> PathBuf {
    dir.join(format!("h-{hour}.log"))
}

pub(super) fn hour_dat(dir: &Path, hour: i64) -> PathBuf {
    dir.join(format!("h-{hour}.dat"))
}

pub(super) fn alert_log(dir: &Path, day: i64) -> PathBuf {
    dir.join(format!("a-{day}.log"))
}

/// Appends `bytes` and makes them durable; a new file's directory entry
/// is synced too, or a power cut could lose the whole file.
pub(super) fn append_durable(path: &Path, bytes: &[u8]) -> Result<(), HistoryError> {
    let existed = path.exists();
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    f.write_all(bytes).map_err(|e| io_err(path, e))?;
    f.sync_data().map_err(|e| io_err(path, e))?;
    if !existed {
        sync_dir(path)?;
    }
    Ok(())
}

pub(super) fn sync_dir(path: &Path) -> Result<(), HistoryError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

/// Inserts `a` in `v` (sorted by start), replacing a window with the same
/// start: the later copy wins.
pub(super) fn upsert(v: &mut Vec<Aggregate>, a: Aggregate) {
    match v.last() {
        Some(last) if last.start < a.start => v.push(a),
        None => v.push(a),
        _ => match v.binary_search_by_key(&a.start, |x| x.start) {
            Ok(i) => v[i] = a,
            Err(i) => v.insert(i, a),
        },
    }
}

/// What a file name says it holds.
enum FileKind {
    HourLog(i64),
    HourDat(i64),
    AlertLog(i64),
}

fn classify(name: &str) -> Option<FileKind> {
    if let Some(h) = name.strip_prefix("h-") {
        if let Some(n) = h.strip_suffix(".log") {
            return n.parse().ok().map(FileKind::HourLog);
        }
        return h.strip_suffix(".dat")?.parse().ok().map(FileKind::HourDat);
    }
    let day = name.strip_prefix("a-")?.strip_suffix(".log")?;
    day.parse().ok().map(FileKind::AlertLog)
}

impl History {
    /// Opens or creates the directory for writing, and seals the hours
    /// that are over.
    ///
    /// # Errors
    /// A directory that cannot be created or read, or one another gateway
    /// holds ([`HistoryError::Busy`]).
    pub fn open(dir: &Path) -> Result<Self, HistoryError> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_err(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(HistoryError::Busy(dir.to_path_buf()))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&lock_path, e)),
        }
        let h = Self::load(dir, Some(lock))?;
        h.remove_unfinished_seals();
        h.seal_finished()?;
        Ok(h)
    }

    /// A sealed hour whose writing a crash cut short is still in its
    /// `.log` (the log goes only after the rename): its temporary file is
    /// only space.
    fn remove_unfinished_seals(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path
                .to_str()
                .is_some_and(|p| p.ends_with(super::seal::TMP_EXTENSION))
            {
                if let Err(e) = std::fs::remove_file(&path) {
                    warn!(path = %path.display(), error = %e, "Cannot remove an unfinished sealed history hour.");
                }
            }
        }
    }

    /// Opens an existing directory for reading, whether or not a gateway
    /// writes it.
    ///
    /// # Errors
    /// A directory that does not exist or cannot be read.
    pub fn open_read_only(dir: &Path) -> Result<Self, HistoryError> {
        Self::load(dir, None)
    }

    pub(super) fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn writable(&self) -> bool {
        self.lock.is_some()
    }

    fn load(dir: &Path, lock: Option<File>) -> Result<Self, HistoryError> {
        let mut state = State::default();
        let series_path = dir.join(SERIES_FILE);
        let mut series_damaged = false;
        match std::fs::read(&series_path) {
            Ok(buf) => {
                let (records, skipped) = codec::decode_all(&buf);
                if skipped > 0 {
                    series_damaged = true;
                    warn!(path = %series_path.display(), skipped, "Damaged bytes in the history's series list skipped; windows of the series they named are not shown.");
                }
                for r in records {
                    if let Record::Series { id, device, metric } = r {
                        let key: SeriesKey = (device.into(), metric.into());
                        state.ids.insert(key.clone(), id);
                        state.names.insert(id, key);
                        state.next_id = state.next_id.max(id.saturating_add(1));
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&series_path, e)),
        }
        let entries = std::fs::read_dir(dir).map_err(|e| io_err(dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_err(dir, e))?;
            let Some(kind) = entry.file_name().to_str().and_then(classify) else {
                continue;
            };
            match kind {
                FileKind::HourLog(hour) => load_hour_log(&entry.path(), hour, &mut state)?,
                FileKind::HourDat(hour) => {
                    state.sealed.insert(hour);
                }
                FileKind::AlertLog(day) => {
                    state.alert_days.insert(day);
                    for (seq, _) in read_alerts(&entry.path())? {
                        state.next_alert_seq = state.next_alert_seq.max(seq + 1);
                    }
                }
            }
        }
        // Ids the open hours use, named or not: a series whose name was
        // lost must never lend its id to a new one.
        let used = state.open.values().flat_map(|s| s.keys()).max().copied();
        if let Some(id) = used {
            state.next_id = state.next_id.max(id.saturating_add(1));
        }
        let h = Self {
            dir: dir.to_path_buf(),
            state: Mutex::new(state),
            writing: Mutex::new(()),
            index_cache: IndexCache::default(),
            lock,
        };
        if series_damaged {
            h.skip_ids_of_sealed_hours();
        }
        h.find_last_ends();
        Ok(h)
    }

    /// Raises the next series id above every id a sealed hour uses. Only
    /// needed when the series list lost records: otherwise every id used
    /// is named there (a series is on disk before any window names it).
    /// Without it, a new device would be given the id of a series whose
    /// name was lost, and show that series' windows as its own.
    fn skip_ids_of_sealed_hours(&self) {
        let hours: Vec<i64> = self.lock_state().sealed.iter().copied().collect();
        let mut highest: Option<u32> = None;
        for hour in hours {
            match self.sealed_index(hour) {
                Ok(Some((_, index))) => {
                    highest = highest.max(index.iter().map(|e| e.series).max());
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(hour, error = %e, "Cannot read a sealed history hour's index while looking for the series ids in use.");
                }
            }
        }
        if let Some(id) = highest {
            let mut s = self.lock_state();
            s.next_id = s.next_id.max(id.saturating_add(1));
        }
    }

    /// Fills in the newest window of each series the open hours did not
    /// hold, from the newest sealed hours' indexes.
    fn find_last_ends(&self) {
        let (hours, mut missing): (Vec<i64>, BTreeSet<u32>) = {
            let s = self.lock_state();
            let missing = s
                .names
                .keys()
                .filter(|id| !s.last_end.contains_key(id))
                .copied()
                .collect();
            let hours = s.sealed.iter().rev().take(LAST_END_LOOKBACK).copied();
            (hours.collect(), missing)
        };
        for hour in hours {
            if missing.is_empty() {
                break;
            }
            let Ok(Some((_, index))) = self.sealed_index(hour) else {
                continue;
            };
            let mut s = self.lock_state();
            for e in index.iter() {
                if missing.remove(&e.series) {
                    s.last_end.insert(e.series, e.last_end);
                }
            }
        }
    }

    /// Appends a batch; durable when it returns. Returns the bytes
    /// written (the SD card's wear, for `/metrics`).
    ///
    /// # Errors
    /// A read-only store, a full disk, an I/O error.
    pub fn write(&self, batch: &Batch, first_seq: u64) -> Result<u64, HistoryError> {
        if !self.writable() {
            return Ok(0);
        }
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        // New series first, made durable before any window names them. The
        // ids are taken only once they are on disk.
        let mut written = 0u64;
        let mut fresh: Vec<(SeriesKey, u32)> = Vec::new();
        let mut rows: BTreeMap<i64, Vec<(u32, Aggregate)>> = BTreeMap::new();
        {
            let s = self.lock_state();
            let mut next = s.next_id;
            let mut dict = Vec::new();
            for w in &batch.windows {
                let key = (Arc::from(w.device.as_str()), Arc::from(w.metric.as_str()));
                let id = match s.ids.get(&key) {
                    Some(&id) => id,
                    None => match fresh.iter().find(|(k, _)| *k == key) {
                        Some(&(_, id)) => id,
                        None => {
                            let id = next;
                            next = next.saturating_add(1);
                            codec::series(id, &w.device, &w.metric, &mut dict);
                            fresh.push((key, id));
                            id
                        }
                    },
                };
                rows.entry(w.agg.start.div_euclid(HOUR_MS))
                    .or_default()
                    .push((id, w.agg));
            }
            drop(s);
            if !dict.is_empty() {
                append_durable(&self.dir.join(SERIES_FILE), &dict)?;
                written += dict.len() as u64;
            }
            let mut s = self.lock_state();
            s.next_id = next;
            for (key, id) in fresh {
                s.names.insert(id, key.clone());
                s.ids.insert(key, id);
            }
        }
        let mut buf = Vec::new();
        for (hour, hour_rows) in &rows {
            buf.clear();
            codec::windows(hour_rows, &mut buf);
            append_durable(&hour_log(&self.dir, *hour), &buf)?;
            written += buf.len() as u64;
            let mut s = self.lock_state();
            for &(id, a) in hour_rows {
                upsert(s.open.entry(*hour).or_default().entry(id).or_default(), a);
                let last = s.last_end.entry(id).or_insert(i64::MIN);
                *last = (*last).max(a.end);
            }
        }
        let mut by_day: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
        for (i, a) in batch.alerts.iter().enumerate() {
            codec::alert(
                first_seq + i as u64,
                a,
                by_day.entry(a.at.div_euclid(DAY_MS)).or_default(),
            );
        }
        for (day, bytes) in &by_day {
            append_durable(&alert_log(&self.dir, *day), bytes)?;
            written += bytes.len() as u64;
            let mut s = self.lock_state();
            s.alert_days.insert(*day);
            s.next_alert_seq = s.next_alert_seq.max(first_seq + batch.alerts.len() as u64);
        }
        written += self.append_commands(&batch.commands)?;
        Ok(written)
    }

    /// The next alert sequence number (one past the highest stored).
    ///
    /// # Errors
    /// None today; kept for stores that must read to answer.
    pub fn next_alert_seq(&self) -> Result<u64, HistoryError> {
        Ok(self.lock_state().next_alert_seq)
    }

    /// Devices history knows, with their metrics, sorted by id.
    ///
    /// # Errors
    /// None today; kept for stores that must read to answer.
    pub fn devices(&self) -> Result<Vec<KnownDevice>, HistoryError> {
        let s = self.lock_state();
        let mut by_device: BTreeMap<&str, KnownDevice> = BTreeMap::new();
        for (id, (device, metric)) in &s.names {
            let d = by_device
                .entry(device.as_ref())
                .or_insert_with(|| KnownDevice {
                    id: device.to_string(),
                    last_end: i64::MIN,
                    metrics: Vec::new(),
                });
            d.metrics.push(metric.to_string());
            if let Some(&end) = s.last_end.get(id) {
                d.last_end = d.last_end.max(end);
            }
        }
        Ok(by_device
            .into_values()
            .map(|mut d| {
                d.metrics.sort();
                d
            })
            .collect())
    }

    /// The windows of one series in `[from, to)`, merged into buckets of
    /// `step` ms (0: as stored), at most [`super::MAX_POINTS`] of them.
    ///
    /// # Errors
    /// A sealed hour that cannot be read.
    pub fn series(
        &self,
        device: &str,
        metric: &str,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<Vec<Aggregate>, HistoryError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let (first, last) = (from.div_euclid(HOUR_MS), (to - 1).div_euclid(HOUR_MS));
        // The open hours are copied under the lock, the sealed ones read
        // after it; an hour sealed in between is read twice, and the copy
        // from memory wins, which is the same window.
        let (id, sealed, open) = {
            let s = self.lock_state();
            let key: SeriesKey = (device.into(), metric.into());
            let Some(&id) = s.ids.get(&key) else {
                return Ok(Vec::new());
            };
            let sealed: Vec<i64> = s.sealed.range(first..=last).copied().collect();
            let open: Vec<Aggregate> = s
                .open
                .range(first..=last)
                .filter_map(|(_, series)| series.get(&id))
                .flatten()
                .filter(|a| a.start >= from && a.start < to)
                .copied()
                .collect();
            (id, sealed, open)
        };
        let mut merged: Vec<Aggregate> = Vec::new();
        for hour in sealed {
            merged.extend(
                self.sealed_run(hour, id)?
                    .into_iter()
                    .filter(|a| a.start >= from && a.start < to),
            );
        }
        merged.extend(open);
        // Sealed hours come in order and each run is sorted, so this is
        // nearly sorted already; the sort is stable, so of two copies of a
        // window the later one (from memory) stays last and wins.
        merged.sort_by_key(|a| a.start);
        let mut deduped: Vec<Aggregate> = Vec::with_capacity(merged.len());
        for a in merged {
            match deduped.last_mut() {
                Some(last) if last.start == a.start => *last = a,
                _ => deduped.push(a),
            }
        }
        Ok(downsample(deduped, from, to, step))
    }

    /// Alert transitions in `[from, to)`, newest first, at most
    /// [`MAX_ALERTS`].
    ///
    /// # Errors
    /// A day's file that cannot be read.
    pub fn alerts(&self, from: i64, to: i64) -> Result<Vec<AlertRow>, HistoryError> {
        let days: Vec<i64> = {
            let s = self.lock_state();
            let (first, last) = (
                from.div_euclid(DAY_MS),
                to.saturating_sub(1).div_euclid(DAY_MS),
            );
            s.alert_days.range(first..=last).rev().copied().collect()
        };
        let mut out: Vec<(i64, u64, AlertRow)> = Vec::new();
        for day in days {
            let mut rows: Vec<(i64, u64, AlertRow)> = read_alerts(&alert_log(&self.dir, day))?
                .into_iter()
                .filter(|(_, a)| a.at >= from && a.at < to)
                .map(|(seq, a)| (a.at, seq, a))
                .collect();
            rows.sort_by_key(|r| std::cmp::Reverse((r.0, r.1)));
            out.extend(rows);
            if out.len() >= MAX_ALERTS {
                break;
            }
        }
        out.truncate(MAX_ALERTS);
        Ok(out.into_iter().map(|(_, _, a)| a).collect())
    }
}

impl History {
    /// Every alert transition in `[from, to)`, oldest first, unbounded
    /// (for `history export --alerts`, which writes them out; the
    /// dashboard's answers use the bounded [`History::alerts`]).
    ///
    /// # Errors
    /// A day's file that cannot be read.
    pub fn alert_log(&self, from: i64, to: i64) -> Result<Vec<AlertRow>, HistoryError> {
        let days: Vec<i64> = {
            let s = self.lock_state();
            let (first, last) = (
                from.div_euclid(DAY_MS),
                to.saturating_sub(1).div_euclid(DAY_MS),
            );
            s.alert_days.range(first..=last).copied().collect()
        };
        let mut out = Vec::new();
        for day in days {
            let mut rows: Vec<(u64, AlertRow)> = read_alerts(&alert_log(&self.dir, day))?
                .into_iter()
                .filter(|(_, a)| a.at >= from && a.at < to)
                .collect();
            rows.sort_by_key(|(seq, a)| (a.at, *seq));
            out.extend(rows.into_iter().map(|(_, a)| a));
        }
        Ok(out)
    }
}

fn load_hour_log(path: &Path, hour: i64, state: &mut State) -> Result<(), HistoryError> {
    let buf = match std::fs::read(path) {
        Ok(b) => b,
        // Sealed and deleted by the writer while a reader opened.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(path, e)),
    };
    let (records, skipped) = codec::decode_all(&buf);
    if skipped > 0 {
        warn!(path = %path.display(), skipped, "Damaged bytes in a history file skipped; the windows they held are lost, the rest is read.");
    }
    for r in records {
        if let Record::Windows(rows) = r {
            for (id, a) in rows {
                upsert(
                    state.open.entry(hour).or_default().entry(id).or_default(),
                    a,
                );
                let last = state.last_end.entry(id).or_insert(i64::MIN);
                *last = (*last).max(a.end);
            }
        }
    }
    Ok(())
}

/// A day's alert transitions with their sequence numbers; a file that is
/// gone (pruned meanwhile) holds none.
fn read_alerts(path: &Path) -> Result<Vec<(u64, AlertRow)>, HistoryError> {
    let buf = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(path, e)),
    };
    let (records, skipped) = codec::decode_all(&buf);
    if skipped > 0 {
        warn!(path = %path.display(), skipped, "Damaged bytes in the alert history skipped.");
    }
    Ok(records
        .into_iter()
        .filter_map(|r| match r {
            Record::Alert { seq, row } => Some((seq, *row)),
            _ => None,
        })
        .collect())
}
