//! The redb history as the first dashboard shipped it (commit e6a4813,
//! `crates/edge-gateway/src/dashboard/history.rs`): windows keyed by (UTC
//! hour, device, metric, start), one durable commit per batch. Reads and
//! writes only; pruning is not part of the workload.

use std::path::Path;

use dashboard::history::{Aggregate, Batch};
use redb::{Database, ReadableDatabase, TableDefinition};

type WindowKey = (i64, &'static str, &'static str, i64);
type WindowValue = (i64, u64, f64, f64, f64, f64);
const WINDOWS: TableDefinition<WindowKey, WindowValue> = TableDefinition::new("windows");
const DEVICES: TableDefinition<&str, (i64, &str)> = TableDefinition::new("devices");
const HOUR: i64 = 3_600_000;

pub struct RedbHistory(Database);

impl RedbHistory {
    pub fn open(path: &Path) -> Self {
        let db = Database::create(path).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(WINDOWS).unwrap();
        tx.open_table(DEVICES).unwrap();
        tx.commit().unwrap();
        Self(db)
    }

    pub fn write(&self, batch: &Batch) {
        let tx = self.0.begin_write().unwrap();
        {
            let mut t = tx.open_table(WINDOWS).unwrap();
            let mut devices = tx.open_table(DEVICES).unwrap();
            for w in &batch.windows {
                let a = &w.agg;
                t.insert(
                    (a.start.div_euclid(HOUR), w.device.as_str(), w.metric.as_str(), a.start),
                    (a.end, a.count, a.avg, a.min, a.max, a.std),
                )
                .unwrap();
            }
            // The device table as the first version kept it: one row per
            // device in the batch.
            let mut seen = std::collections::BTreeMap::new();
            for w in &batch.windows {
                let e: &mut (i64, Vec<&str>) =
                    seen.entry(w.device.as_str()).or_insert((i64::MIN, Vec::new()));
                e.0 = e.0.max(w.agg.end);
                if !e.1.contains(&w.metric.as_str()) {
                    e.1.push(w.metric.as_str());
                }
            }
            for (device, (end, metrics)) in seen {
                let joined = metrics.join(",");
                devices.insert(device, (end, joined.as_str())).unwrap();
            }
        }
        tx.commit().unwrap();
    }

    /// Windows of one series in `[from, to)`, as stored (the merge into
    /// steps is the same code for both stores and is left out).
    pub fn series(&self, device: &str, metric: &str, from: i64, to: i64) -> Vec<Aggregate> {
        let tx = self.0.begin_read().unwrap();
        let t = tx.open_table(WINDOWS).unwrap();
        let mut out = Vec::new();
        for bucket in from.div_euclid(HOUR)..=(to - 1).div_euclid(HOUR) {
            for row in t
                .range((bucket, device, metric, from)..(bucket, device, metric, to))
                .unwrap()
            {
                let (k, v) = row.unwrap();
                let (end, count, avg, min, max, std) = v.value();
                out.push(Aggregate {
                    start: k.value().3,
                    end,
                    count,
                    avg,
                    min,
                    max,
                    std,
                });
            }
        }
        out
    }
}
