//! The on-device history of the dashboard: closed window aggregates and
//! alert transitions, in a directory of small logs of our own
//! (`{state_dir}/history/`). Why not redb: docs/dashboard.md, "The store",
//! measured by `bench/history-compare`.
//!
//! ```text
//! LOCK           held by the gateway that writes
//! series.log     (device, metric) → a 4-byte series id, appended once per series
//! h-<hour>.log   windows starting in that UTC hour, appended one batch per fsync
//! h-<hour>.dat   the same hour sealed once it is over: an index, then one run per series
//! a-<day>.log    alert transitions of that UTC day
//! c-<day>.log    command results of that UTC day (`commands`)
//! ```
//!
//! - **Writes** append (one `write` and one `fdatasync` per file a batch
//!   touches, usually one): bytes written are close to the data, which is
//!   what an SD card wears on. The open hours are also kept in memory
//!   (about 60 bytes per window), so charts of the last hours read no file.
//! - **Sealing** rewrites an hour once it is over, sorted by series: a
//!   chart over 30 days reads one index and one run per hour. Sealing
//!   writes a temporary file, syncs it and renames it over the old one, so
//!   a reader sees the old hour or the new, never half of one.
//! - **Rewriting a window** (a restart that replays its journal closes
//!   again the windows its last checkpoint still held) appends it again;
//!   the later copy wins when reading and when sealing: history is
//!   idempotent.
//! - **Space** is freed by deleting whole hours (retention, `max_bytes`),
//!   never by rewriting, and measured as the files' lengths.
//! - **Damage** (a torn tail after a power cut, scribbled bytes) costs the
//!   frames it hits, never the rest: every frame has a length and a CRC,
//!   and reading resumes at the next intact one.
//! - **Readers** (`history export`) need no lock: files are only appended
//!   to or replaced by rename, so they can be read while the gateway runs.

mod codec;
mod commands;
pub mod kind;
mod seal;
mod store;

use std::path::PathBuf;

/// `[dashboard]` of the `configfile` template (the section that keeps
/// this history and serves the pages over it): this folder's
/// `template.toml` with the defaults filled in.
pub fn template() -> String {
    let d = gateway_core::config::DashboardConfig::default();
    let dur = |t| humantime::format_duration(t).to_string();
    gateway_core::config::template::fill(
        include_str!("template.toml"),
        &[
            ("enabled", d.enabled.to_string()),
            ("bind", d.bind.to_string()),
            ("retention", dur(d.retention)),
            (
                "max_bytes",
                gateway_core::config::values::byte_size::render(d.max_bytes),
            ),
            ("write_interval", dur(d.write_interval)),
            (
                "metric_order",
                format!(
                    "[{}]",
                    d.metric_order
                        .iter()
                        .map(|m| gateway_core::config::template::quoted(m))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        ],
    )
}

use serde::Serialize;

pub use commands::MAX_LAST_COMMANDS;
pub use store::History;

/// The unit of the window files, and of what pruning drops.
pub const HOUR_MS: i64 = 3_600_000;
/// Most points a series answer holds: `step` grows to stay under it, so a
/// `from=1970` request cannot load 30 days of every window into memory.
pub const MAX_POINTS: usize = 2000;
/// Most alerts one answer holds (the newest).
pub const MAX_ALERTS: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Another process (a second gateway on the same state directory)
    /// writes this history.
    #[error("history store {0} is held by another gateway process")]
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
    /// The anomaly model's expected range (low, high) for a raise, in the
    /// metric's unit; `limit` is then its score. Absent in rows written
    /// before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<[f64; 2]>,
}

/// One command from the cloud and its result, as stored and exported.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct CommandRow {
    pub id: String,
    pub device: String,
    pub metric: String,
    /// The value asked for (`null` relinquishes, a downlink is
    /// `{"port", "data"}`).
    pub value: serde_json::Value,
    /// `done`, `refused`, `failed` or `expired`.
    pub status: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// When the result was decided, milliseconds since the epoch.
    pub at: i64,
}

/// What one batch holds.
#[derive(Debug, Default)]
pub struct Batch {
    pub windows: Vec<WindowRow>,
    pub alerts: Vec<AlertRow>,
    pub commands: Vec<CommandRow>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty() && self.alerts.is_empty() && self.commands.is_empty()
    }
}

/// A known device: when history last heard of it and its metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct KnownDevice {
    pub id: String,
    /// The end of its newest window history holds (`i64::MIN`: none in
    /// the hours read at start).
    pub last_end: i64,
    pub metrics: Vec<String>,
}

/// What one prune did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Windows deleted (retention or `max_bytes`).
    pub windows: u64,
    /// Bytes written sealing the hours that were over.
    pub bytes_written: u64,
}

/// Folds `a` into bucket `b` as if both had been one window: the count
/// adds up, the mean is weighted by count, min and max are the outer ones,
/// and the spread is the pooled population deviation of every reading
/// (Chan, Golub and LeVeque's parallel combination of the squared
/// deviations), not either window's own.
pub(crate) fn merge(b: &mut Aggregate, a: &Aggregate) {
    if a.count == 0 {
        return;
    }
    if b.count == 0 {
        *b = Aggregate {
            start: b.start,
            end: b.end,
            ..*a
        };
        return;
    }
    let (nb, na) = (b.count as f64, a.count as f64);
    let n = nb + na;
    let delta = a.avg - b.avg;
    let m2 = squared_deviations(b) + squared_deviations(a) + delta * delta * nb * na / n;
    b.avg += delta * na / n;
    b.count += a.count;
    b.min = b.min.min(a.min);
    b.max = b.max.max(a.max);
    b.std = (m2 / n).max(0.0).sqrt();
}

/// The sum of squared deviations from the mean a window's population
/// deviation stands for; a window of one reading (or a spread that was
/// never finite) adds none.
fn squared_deviations(a: &Aggregate) -> f64 {
    if a.std.is_finite() {
        a.std * a.std * a.count as f64
    } else {
        0.0
    }
}

/// `aggs` (sorted by start, in `[from, to)`) merged into buckets of `step`
/// ms (0: as stored), at most [`MAX_POINTS`] of them (the newest, when
/// stored windows are asked for). Buckets start on multiples of the step
/// since the epoch (`1h` on the hour, `1d` at midnight UTC), whatever
/// `from` is, so the same hour is the same bucket in every query; a step
/// too fine for the range grows to a whole multiple of itself.
pub(crate) fn downsample(aggs: Vec<Aggregate>, from: i64, to: i64, step: i64) -> Vec<Aggregate> {
    if step <= 0 {
        let skip = aggs.len().saturating_sub(MAX_POINTS);
        return aggs.into_iter().skip(skip).collect();
    }
    // `from`, `to` and `step` come from a query: in i128 none of them
    // overflows.
    let span = (i128::from(to) - i128::from(from)).max(1);
    // A range not on the step's boundaries touches one bucket more.
    let min_step = span / (MAX_POINTS as i128 - 1) + 1;
    let step_w = i128::from(step);
    let step_w = ((min_step + step_w - 1) / step_w).max(1) * step_w;
    let step = i64::try_from(step_w).unwrap_or(i64::MAX);
    let mut out: Vec<Aggregate> = Vec::new();
    for a in aggs {
        let slot = i128::from(a.start).div_euclid(step_w) * step_w;
        let slot = i64::try_from(slot).unwrap_or(a.start);
        match out.last_mut() {
            Some(b) if b.start == slot => merge(b, &a),
            _ => out.push(Aggregate {
                start: slot,
                end: slot.saturating_add(step),
                ..a
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests;
