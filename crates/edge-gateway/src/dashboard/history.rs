//! The on-device history: closed window aggregates and alert transitions in
//! one redb file (`{state_dir}/history.redb`).
//!
//! Windows are keyed by (UTC hour, device, metric, window start): a series
//! over a range is one B-tree range per hour, and retention or `max_bytes`
//! drops whole hours from the front without scanning the rest. (Days were
//! too coarse: a store that outgrew `max_bytes` on its first day lost all
//! of it at once.) Writing the
//! same window again (a restart that replays the journal re-emits windows
//! the last checkpoint still held) overwrites it: history is idempotent.
//!
//! Each commit fsyncs (~2 ms here), so the writer hands whole batches (a
//! window close of every device, or what `write_interval` gathered).

use std::path::{Path, PathBuf};

use redb::{
    Database, ReadOnlyDatabase, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};
use serde::Serialize;

/// (hour since epoch, device, metric, window start ms).
type WindowKey = (i64, &'static str, &'static str, i64);
/// (window end ms, count, avg, min, max, std).
type WindowValue = (i64, u64, f64, f64, f64, f64);
const WINDOWS: TableDefinition<WindowKey, WindowValue> = TableDefinition::new("windows");
/// (at ms, sequence) → alert transition as JSON.
const ALERTS: TableDefinition<(i64, u64), &str> = TableDefinition::new("alerts");
/// device → (last window end ms, metrics seen, comma separated).
const DEVICES: TableDefinition<&str, (i64, &str)> = TableDefinition::new("devices");

/// The unit of the windows' key, and of what pruning drops.
const BUCKET_MS: i64 = 3_600_000;
/// Pruning for `max_bytes` brings the store down to this share of it, so
/// that it is not over the limit again an hour later.
const PRUNE_TO: f64 = 0.9;
/// Most points a series answer holds: `step` grows to stay under it, so a
/// `from=1970` request cannot load 30 days of every window into memory.
pub const MAX_POINTS: usize = 2000;
/// Most alerts one answer holds (the newest).
pub const MAX_ALERTS: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history store {path}: {source}")]
    Store {
        path: PathBuf,
        #[source]
        source: Box<redb::Error>,
    },
    /// Another process (the running gateway) holds the file.
    #[error("history store {0} is open in another process (the gateway is running)")]
    Busy(PathBuf),
}

/// One closed window of one metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Aggregate {
    pub start: i64,
    pub end: i64,
    pub count: u64,
    pub avg: f64,
    pub min: f64,
    pub max: f64,
    pub std: f64,
}

/// One window of one device, as the pipeline closed it.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRow {
    pub device: String,
    pub metric: String,
    pub agg: Aggregate,
}

/// One alert transition as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct AlertRow {
    pub device: String,
    pub rule: String,
    pub metric: String,
    pub kind: String,
    /// `raised` or `cleared`.
    pub state: String,
    pub value: f64,
    pub limit: f64,
    /// Milliseconds since the epoch.
    pub at: i64,
    /// The anomaly model's reason for a raise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What one batch holds.
#[derive(Debug, Default)]
pub struct Batch {
    pub windows: Vec<WindowRow>,
    pub alerts: Vec<AlertRow>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty() && self.alerts.is_empty()
    }
    /// Key and value bytes, the figure `/metrics` reports as written.
    pub fn payload_bytes(&self) -> u64 {
        let w: usize = self
            .windows
            .iter()
            .map(|r| 16 + r.device.len() + r.metric.len() + 48)
            .sum();
        let a: usize = self.alerts.iter().map(|a| 16 + 120 + a.device.len()).sum();
        (w + a) as u64
    }
}

/// A known device: when history last heard of it and its metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct KnownDevice {
    pub id: String,
    pub last_end: i64,
    pub metrics: Vec<String>,
}

/// The history file, writable (the gateway) or read-only (`history export`
/// while the gateway is stopped).
pub enum History {
    Writable(Database, PathBuf),
    ReadOnly(ReadOnlyDatabase, PathBuf),
}

fn err(path: &Path, e: impl Into<redb::Error>) -> HistoryError {
    HistoryError::Store {
        path: path.to_path_buf(),
        source: Box::new(e.into()),
    }
}

impl History {
    /// Opens or creates the file for writing.
    ///
    /// # Errors
    /// A file that cannot be created, is not a redb file or is held by
    /// another process.
    pub fn open(path: &Path) -> Result<Self, HistoryError> {
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => HistoryError::Busy(path.to_path_buf()),
            e => err(path, e),
        })?;
        // Create the tables so readers find them on an empty store.
        let tx = db.begin_write().map_err(|e| err(path, e))?;
        {
            tx.open_table(WINDOWS).map_err(|e| err(path, e))?;
            tx.open_table(ALERTS).map_err(|e| err(path, e))?;
            tx.open_table(DEVICES).map_err(|e| err(path, e))?;
        }
        tx.commit().map_err(|e| err(path, e))?;
        Ok(Self::Writable(db, path.to_path_buf()))
    }

    /// Opens an existing file for reading while no gateway holds it.
    ///
    /// # Errors
    /// [`HistoryError::Busy`] while the gateway runs.
    pub fn open_read_only(path: &Path) -> Result<Self, HistoryError> {
        let db = ReadOnlyDatabase::open(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => HistoryError::Busy(path.to_path_buf()),
            e => err(path, e),
        })?;
        Ok(Self::ReadOnly(db, path.to_path_buf()))
    }

    fn path(&self) -> &Path {
        match self {
            Self::Writable(_, p) | Self::ReadOnly(_, p) => p,
        }
    }

    fn read(&self) -> Result<redb::ReadTransaction, HistoryError> {
        match self {
            Self::Writable(db, p) => db.begin_read().map_err(|e| err(p, e)),
            Self::ReadOnly(db, p) => db.begin_read().map_err(|e| err(p, e)),
        }
    }

    /// Writes a batch in one durable commit.
    ///
    /// # Errors
    /// A read-only store, a full disk, an I/O error.
    pub fn write(&self, batch: &Batch, first_seq: u64) -> Result<(), HistoryError> {
        let Self::Writable(db, path) = self else {
            return Ok(());
        };
        let tx = db.begin_write().map_err(|e| err(path, e))?;
        {
            let mut windows = tx.open_table(WINDOWS).map_err(|e| err(path, e))?;
            let mut devices = tx.open_table(DEVICES).map_err(|e| err(path, e))?;
            for w in &batch.windows {
                let a = &w.agg;
                windows
                    .insert(
                        (
                            a.start.div_euclid(BUCKET_MS),
                            w.device.as_str(),
                            w.metric.as_str(),
                            a.start,
                        ),
                        (a.end, a.count, a.avg, a.min, a.max, a.std),
                    )
                    .map_err(|e| err(path, e))?;
            }
            // One device row per device in the batch, merged with the
            // metrics it had.
            let mut seen: std::collections::BTreeMap<&str, (i64, Vec<&str>)> = Default::default();
            for w in &batch.windows {
                let e = seen
                    .entry(w.device.as_str())
                    .or_insert((i64::MIN, Vec::new()));
                e.0 = e.0.max(w.agg.end);
                if !e.1.contains(&w.metric.as_str()) {
                    e.1.push(w.metric.as_str());
                }
            }
            for (device, (end, metrics)) in seen {
                let (old_end, mut all) = match devices.get(device).map_err(|e| err(path, e))? {
                    Some(v) => {
                        let (end, m) = v.value();
                        (
                            end,
                            m.split(',')
                                .filter(|s| !s.is_empty())
                                .map(str::to_string)
                                .collect::<Vec<_>>(),
                        )
                    }
                    None => (i64::MIN, Vec::new()),
                };
                for m in metrics {
                    if !all.iter().any(|a| a == m) {
                        all.push(m.to_string());
                    }
                }
                all.sort();
                let joined = all.join(",");
                devices
                    .insert(device, (old_end.max(end), joined.as_str()))
                    .map_err(|e| err(path, e))?;
            }
            let mut alerts = tx.open_table(ALERTS).map_err(|e| err(path, e))?;
            for (i, a) in batch.alerts.iter().enumerate() {
                let json = serde_json::to_string(a).unwrap_or_default();
                alerts
                    .insert((a.at, first_seq + i as u64), json.as_str())
                    .map_err(|e| err(path, e))?;
            }
        }
        tx.commit().map_err(|e| err(path, e))
    }

    /// The next alert sequence number (one past the highest stored).
    ///
    /// # Errors
    /// An unreadable store.
    pub fn next_alert_seq(&self) -> Result<u64, HistoryError> {
        let tx = self.read()?;
        let t = tx.open_table(ALERTS).map_err(|e| err(self.path(), e))?;
        let last = t.last().map_err(|e| err(self.path(), e))?;
        Ok(last.map(|(k, _)| k.value().1 + 1).unwrap_or(0))
    }

    /// Deletes hours that end before `cutoff_ms`, then, while the store
    /// uses more than `max_bytes`, the oldest hours in proportion to the
    /// excess (down to [`PRUNE_TO`] of it). Space is measured as the pages
    /// in use, not the file's length: redb reuses freed pages, so the file
    /// stops growing rather than shrinks, and its length would keep
    /// pruning forever. Returns the windows deleted.
    ///
    /// # Errors
    /// An I/O error.
    pub fn prune(&self, cutoff_ms: i64, max_bytes: u64) -> Result<u64, HistoryError> {
        let Self::Writable(db, path) = self else {
            return Ok(0);
        };
        let cutoff = cutoff_ms.div_euclid(BUCKET_MS);
        let tx = db.begin_write().map_err(|e| err(path, e))?;
        let used = used_bytes(&tx).map_err(|e| err(path, e))?;
        let deleted = {
            let mut windows = tx.open_table(WINDOWS).map_err(|e| err(path, e))?;
            let first = windows
                .first()
                .map_err(|e| err(path, e))?
                .map(|(k, _)| k.value().0);
            let last = windows
                .last()
                .map_err(|e| err(path, e))?
                .map(|(k, _)| k.value().0);
            let drop_below = match (first, last) {
                (Some(first), Some(last)) if used > max_bytes => {
                    let hours = (last - first + 1) as f64;
                    let share = 1.0 - PRUNE_TO * max_bytes as f64 / used as f64;
                    let drop = ((hours * share).ceil() as i64).max(1);
                    cutoff.max(first + drop)
                }
                _ => cutoff,
            };
            let before = windows.len().map_err(|e| err(path, e))?;
            windows
                .retain_in(
                    (i64::MIN, "", "", i64::MIN)..(drop_below, "", "", i64::MIN),
                    |_, _| false,
                )
                .map_err(|e| err(path, e))?;
            let deleted = before.saturating_sub(windows.len().map_err(|e| err(path, e))?);
            let mut alerts = tx.open_table(ALERTS).map_err(|e| err(path, e))?;
            alerts
                .retain_in(
                    (i64::MIN, 0)..(drop_below.saturating_mul(BUCKET_MS), 0),
                    |_, _| false,
                )
                .map_err(|e| err(path, e))?;
            deleted
        };
        tx.commit().map_err(|e| err(path, e))?;
        Ok(deleted)
    }

    /// Devices history knows, with their metrics.
    ///
    /// # Errors
    /// An unreadable store.
    pub fn devices(&self) -> Result<Vec<KnownDevice>, HistoryError> {
        let tx = self.read()?;
        let t = tx.open_table(DEVICES).map_err(|e| err(self.path(), e))?;
        let mut out = Vec::new();
        for row in t.iter().map_err(|e| err(self.path(), e))? {
            let (k, v) = row.map_err(|e| err(self.path(), e))?;
            let (last_end, metrics) = v.value();
            out.push(KnownDevice {
                id: k.value().to_string(),
                last_end,
                metrics: metrics
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            });
        }
        Ok(out)
    }

    /// The windows of one series in `[from, to)`, merged into buckets of
    /// `step` ms (0: as stored), at most [`MAX_POINTS`] of them.
    ///
    /// # Errors
    /// An unreadable store.
    pub fn series(
        &self,
        device: &str,
        metric: &str,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<Vec<Aggregate>, HistoryError> {
        let tx = self.read()?;
        let t = tx.open_table(WINDOWS).map_err(|e| err(self.path(), e))?;
        let span = to.saturating_sub(from).max(1);
        let min_step = span / MAX_POINTS as i64 + 1;
        let step = if step > 0 { step.max(min_step) } else { 0 };
        let mut out: std::collections::VecDeque<Aggregate> = Default::default();
        let mut bucket = from.div_euclid(BUCKET_MS);
        let last_bucket = to.div_euclid(BUCKET_MS);
        while bucket <= last_bucket {
            let range = t
                .range((bucket, device, metric, from)..(bucket, device, metric, to))
                .map_err(|e| err(self.path(), e))?;
            for row in range {
                let (k, v) = row.map_err(|e| err(self.path(), e))?;
                let start = k.value().3;
                let (end, count, avg, min, max, std) = v.value();
                let a = Aggregate {
                    start,
                    end,
                    count,
                    avg,
                    min,
                    max,
                    std,
                };
                if step == 0 {
                    if out.len() >= MAX_POINTS {
                        out.pop_front();
                    }
                    out.push_back(a);
                    continue;
                }
                let slot = from + (start - from).div_euclid(step) * step;
                match out.back_mut() {
                    Some(b) if b.start == slot => merge(b, &a),
                    _ => out.push_back(Aggregate {
                        start: slot,
                        end: slot + step,
                        ..a
                    }),
                }
            }
            bucket += 1;
        }
        Ok(out.into())
    }

    /// Alert transitions in `[from, to)`, newest first, at most
    /// [`MAX_ALERTS`].
    ///
    /// # Errors
    /// An unreadable store.
    pub fn alerts(&self, from: i64, to: i64) -> Result<Vec<AlertRow>, HistoryError> {
        let tx = self.read()?;
        let t = tx.open_table(ALERTS).map_err(|e| err(self.path(), e))?;
        let mut out = Vec::new();
        for row in t
            .range((from, 0)..(to, 0))
            .map_err(|e| err(self.path(), e))?
            .rev()
        {
            let (_, v) = row.map_err(|e| err(self.path(), e))?;
            if let Ok(a) = serde_json::from_str::<AlertRow>(v.value()) {
                out.push(a);
            }
            if out.len() >= MAX_ALERTS {
                break;
            }
        }
        Ok(out)
    }
}

/// Folds `a` into bucket `b`: count-weighted mean, outer min and max; the
/// spread is the larger of the two (a bound, not a pooled deviation).
/// The bytes of the pages the store's trees occupy.
fn used_bytes(tx: &redb::WriteTransaction) -> Result<u64, redb::StorageError> {
    tx.stats()
        .map(|s| s.allocated_pages().saturating_mul(s.page_size() as u64))
}

fn merge(b: &mut Aggregate, a: &Aggregate) {
    let n = b.count + a.count;
    if n > 0 {
        b.avg = (b.avg * b.count as f64 + a.avg * a.count as f64) / n as f64;
    }
    b.count = n;
    b.min = b.min.min(a.min);
    b.max = b.max.max(a.max);
    b.std = b.std.max(a.std);
}

#[cfg(test)]
mod tests {
    const DAY_MS: i64 = 86_400_000;

    use super::*;

    fn w(device: &str, metric: &str, start: i64, avg: f64) -> WindowRow {
        WindowRow {
            device: device.into(),
            metric: metric.into(),
            agg: Aggregate {
                start,
                end: start + 60_000,
                count: 2,
                avg,
                min: avg - 1.0,
                max: avg + 1.0,
                std: 0.5,
            },
        }
    }

    #[test]
    fn series_spans_days_merges_steps_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.redb");
        let h = History::open(&path).unwrap();
        let t0 = 5 * DAY_MS - 120_000;
        let batch = Batch {
            windows: (0..4)
                .map(|i| w("d1", "temperature", t0 + i * 60_000, i as f64))
                .chain([w("d2", "temperature", t0, 100.0)])
                .collect(),
            alerts: vec![],
        };
        h.write(&batch, 0).unwrap();
        let all = h.series("d1", "temperature", t0, t0 + DAY_MS, 0).unwrap();
        assert_eq!(
            all.iter().map(|a| a.avg).collect::<Vec<_>>(),
            [0.0, 1.0, 2.0, 3.0]
        );
        let merged = h
            .series("d1", "temperature", t0, t0 + 240_000, 120_000)
            .unwrap();
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].avg, 0.5);
        assert_eq!((merged[1].min, merged[1].max), (1.0, 4.0));
        drop(h);
        let ro = History::open_read_only(&path).unwrap();
        assert_eq!(
            ro.series("d1", "temperature", t0, t0 + DAY_MS, 0)
                .unwrap()
                .len(),
            4
        );
        let devices = ro.devices().unwrap();
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[0].metrics, ["temperature"]);
    }

    #[test]
    fn a_held_store_is_busy_and_retention_drops_whole_days() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.redb");
        let h = History::open(&path).unwrap();
        assert!(matches!(
            History::open_read_only(&path),
            Err(HistoryError::Busy(_))
        ));
        let batch = Batch {
            windows: vec![w("d", "t", DAY_MS, 1.0), w("d", "t", 3 * DAY_MS, 3.0)],
            alerts: vec![AlertRow {
                device: "d".into(),
                rule: "hot".into(),
                metric: "t".into(),
                kind: "threshold".into(),
                state: "raised".into(),
                value: 3.0,
                limit: 2.0,
                at: DAY_MS + 5,
                reason: None,
            }],
        };
        h.write(&batch, 0).unwrap();
        assert_eq!(h.next_alert_seq().unwrap(), 1);
        assert_eq!(h.prune(2 * DAY_MS, u64::MAX).unwrap(), 1);
        assert_eq!(h.series("d", "t", 0, 4 * DAY_MS, 0).unwrap().len(), 1);
        assert!(h.alerts(0, 4 * DAY_MS).unwrap().is_empty());
    }

    fn used(h: &History) -> u64 {
        let History::Writable(db, _) = h else {
            panic!("writable")
        };
        let tx = db.begin_write().unwrap();
        let n = used_bytes(&tx).unwrap();
        tx.abort().unwrap();
        n
    }

    #[test]
    fn over_max_bytes_the_oldest_hours_go_in_proportion_not_everything() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(&dir.path().join("h.redb")).unwrap();
        let t0 = 10 * DAY_MS;
        // 48 hours of 1-minute windows for 10 devices.
        for hour in 0..48 {
            let mut windows = Vec::new();
            for device in 0..10 {
                for minute in 0..60 {
                    let start = t0 + hour * BUCKET_MS + minute * 60_000;
                    windows.push(w(&format!("d{device}"), "t", start, 1.0));
                }
            }
            h.write(
                &Batch {
                    windows,
                    alerts: vec![],
                },
                0,
            )
            .unwrap();
        }
        let full = used(&h);
        let deleted = h.prune(i64::MIN, full / 2).unwrap();
        let all = 48 * 10 * 60;
        assert!(deleted > 0 && deleted < all, "deleted {deleted} of {all}");
        let left = h.series("d0", "t", t0, t0 + 2 * DAY_MS, 0).unwrap();
        assert_eq!(
            left.len() as u64 * 10,
            all - deleted,
            "whole hours, every device"
        );
        assert!(left[0].start > t0, "the oldest hours went first");
        assert_eq!(
            left.last().unwrap().start,
            t0 + 48 * BUCKET_MS - 60_000,
            "the newest stayed"
        );
        // The file keeps its length (redb reuses freed pages): what is in
        // use, now under the limit, is what counts.
        assert!(used(&h) < full);
        assert_eq!(h.prune(i64::MIN, full / 2).unwrap(), 0);
    }
}
