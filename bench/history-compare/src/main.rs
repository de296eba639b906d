//! The dashboard history's workload on both stores: a window close of
//! every series per batch (one durable commit each), then the reads the
//! pages make. Prints one line per figure and store.

use std::path::Path;
use std::time::{Duration, Instant};

use dashboard::history::{Aggregate, Batch, History, WindowRow};

mod redb_store;
use redb_store::RedbHistory;

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const METRICS: [&str; 3] = ["temperature", "humidity", "co2"];

fn env(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Bytes this process sent towards the disk: what an SD card wears on.
fn written_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn dir_bytes(p: &Path) -> u64 {
    if p.is_file() {
        return std::fs::metadata(p).unwrap().len();
    }
    std::fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn batch(devices: i64, t: i64, minute: i64) -> Batch {
    Batch {
        windows: (0..devices)
            .flat_map(|d| {
                METRICS.iter().map(move |m| WindowRow {
                    device: format!("sensor-{d:04}"),
                    metric: (*m).to_string(),
                    agg: Aggregate {
                        start: t,
                        end: t + MIN,
                        count: 12,
                        avg: 20.0 + (minute % 60) as f64 / 10.0 + d as f64 / 100.0,
                        min: 19.0,
                        max: 23.0,
                        std: 0.4,
                    },
                })
            })
            .collect(),
        alerts: vec![],
        commands: vec![],
    }
}

trait Store {
    fn name(&self) -> &'static str;
    fn write(&self, b: &Batch);
    /// Called once an hour, as the gateway's writer does.
    fn hourly(&self);
    fn series(&self, device: &str, metric: &str, from: i64, to: i64) -> Vec<Aggregate>;
}

impl Store for RedbHistory {
    fn name(&self) -> &'static str {
        "redb 4 (first dashboard)"
    }
    fn write(&self, b: &Batch) {
        RedbHistory::write(self, b);
    }
    fn hourly(&self) {}
    fn series(&self, device: &str, metric: &str, from: i64, to: i64) -> Vec<Aggregate> {
        RedbHistory::series(self, device, metric, from, to)
    }
}

impl Store for History {
    fn name(&self) -> &'static str {
        "gateway log"
    }
    fn write(&self, b: &Batch) {
        History::write(self, b, 0).unwrap();
    }
    fn hourly(&self) {
        self.prune(i64::MIN, u64::MAX).unwrap();
    }
    fn series(&self, device: &str, metric: &str, from: i64, to: i64) -> Vec<Aggregate> {
        History::series(self, device, metric, from, to, 0).unwrap()
    }
}

fn run(store: &dyn Store, path: &Path, devices: i64, hours: i64, t0: i64) {
    let name = store.name();
    let series = devices as u64 * METRICS.len() as u64;
    let mut spent = Duration::ZERO;
    let before = written_bytes();
    let mut rows = 0u64;
    for minute in 0..hours * 60 {
        let b = batch(devices, t0 + minute * MIN, minute);
        rows += b.windows.len() as u64;
        let t = Instant::now();
        store.write(&b);
        if (minute + 1) % 60 == 0 {
            store.hourly();
        }
        spent += t.elapsed();
    }
    let written = written_bytes() - before;
    let on_disk = dir_bytes(path);
    println!(
        "{name:26} insert {:6.2} µs/aggregate | written {:6.0} B/aggregate ({:5.1} MB per hour) | on disk {:5.0} B/aggregate ({:.0} MB)",
        spent.as_secs_f64() * 1e6 / rows as f64,
        written as f64 / rows as f64,
        written as f64 / 1e6 / hours as f64,
        on_disk as f64 / rows as f64,
        on_disk as f64 / 1e6
    );
    let end = t0 + hours * HOUR;
    // The device page: each metric of one device over the whole range.
    let t = Instant::now();
    let mut points = 0;
    for d in 0..20 {
        for m in METRICS {
            points += store.series(&format!("sensor-{d:04}"), m, t0, end).len();
        }
    }
    let device_page = t.elapsed() / 20;
    assert_eq!(points as i64, 20 * 3 * hours * 60, "{name}: every window read back");
    // The overview: every series over the last 24 h.
    let t = Instant::now();
    for d in 0..devices {
        for m in METRICS {
            store.series(&format!("sensor-{d:04}"), m, end - 24 * HOUR, end);
        }
    }
    let overview = t.elapsed();
    println!(
        "{name:26} read: one device's 3 series over {hours} h {:7.2} ms | all {series} series over 24 h {:7.0} ms",
        device_page.as_secs_f64() * 1e3,
        overview.as_secs_f64() * 1e3
    );
}

fn main() {
    let devices = env("DEVICES", 500);
    let hours = env("HOURS", 24);
    let t0 = 490_000 * HOUR;
    println!(
        "workload: {devices} devices x {} metrics, one window a minute for {hours} h, one durable batch per minute",
        METRICS.len()
    );
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();

    let log_dir = dir.path().join("history");
    {
        let h = History::open(&log_dir).unwrap();
        run(&h, &log_dir, devices, hours, t0);
    }
    let t = Instant::now();
    let h = History::open(&log_dir).unwrap();
    println!("gateway log                reopen {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    drop(h);

    let redb_path = dir.path().join("history.redb");
    {
        let r = RedbHistory::open(&redb_path);
        run(&r, &redb_path, devices, hours, t0);
    }
    let t = Instant::now();
    let r = RedbHistory::open(&redb_path);
    println!("redb 4 (first dashboard)   reopen {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    drop(r);
}
