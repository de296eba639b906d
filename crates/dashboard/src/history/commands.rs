//! Command results in the history: `c-<day>.log`, one COMMAND frame per
//! result, appended and made durable with the batch that carries it, like
//! the alert transitions. Two reads, the ones the dashboard and
//! `history export --commands` need: a device's last results, and every
//! result of a time range.
//!
//! The days present are found by listing the directory at each read: a
//! site sends a handful of commands a day, so the files are few, and no
//! state is kept in memory for them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gateway_core::event::CommandEvent;
use tracing::warn;

use super::codec::{self, Record};
use super::store::{append_durable, io_err, History, DAY_MS};
use super::{CommandRow, HistoryError};

/// Most results one [`History::last_commands`] answer holds.
pub const MAX_LAST_COMMANDS: usize = 1000;

pub(super) fn command_log(dir: &Path, day: i64) -> PathBuf {
    dir.join(format!("c-{day}.log"))
}

impl From<&CommandEvent> for CommandRow {
    fn from(c: &CommandEvent) -> Self {
        Self {
            id: c.id.clone(),
            device: c.device.as_str().to_string(),
            metric: c.metric.clone(),
            value: c.value.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            detail: c.detail.clone(),
            at: c.at.as_millis(),
        }
    }
}

impl History {
    /// Appends results, durable when it returns; the bytes written.
    pub(super) fn append_commands(&self, rows: &[CommandRow]) -> Result<u64, HistoryError> {
        let mut by_day: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
        for row in rows {
            codec::command(row, by_day.entry(row.at.div_euclid(DAY_MS)).or_default());
        }
        let mut written = 0;
        for (day, bytes) in &by_day {
            append_durable(&command_log(&self.dir, *day), bytes)?;
            written += bytes.len() as u64;
        }
        Ok(written)
    }

    /// Every command result in `[from, to)`, oldest first, unbounded (for
    /// `history export --commands`, which writes them out).
    ///
    /// # Errors
    /// The directory or a day's file cannot be read.
    pub fn command_log(&self, from: i64, to: i64) -> Result<Vec<CommandRow>, HistoryError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let (first, last) = (from.div_euclid(DAY_MS), (to - 1).div_euclid(DAY_MS));
        let mut out = Vec::new();
        for day in command_days(&self.dir)?
            .into_iter()
            .filter(|d| (first..=last).contains(d))
        {
            let mut rows: Vec<CommandRow> = read_commands(&command_log(&self.dir, day))?
                .into_iter()
                .filter(|r| r.at >= from && r.at < to)
                .collect();
            // Stable: results of the same millisecond keep their order.
            rows.sort_by_key(|r| r.at);
            out.extend(rows);
        }
        Ok(out)
    }

    /// The newest `n` results for `device` (at most
    /// [`MAX_LAST_COMMANDS`]), newest first.
    ///
    /// # Errors
    /// The directory or a day's file cannot be read.
    pub fn last_commands(&self, device: &str, n: usize) -> Result<Vec<CommandRow>, HistoryError> {
        let n = n.min(MAX_LAST_COMMANDS);
        let mut out = Vec::new();
        if n == 0 {
            return Ok(out);
        }
        for day in command_days(&self.dir)?.into_iter().rev() {
            let mut rows: Vec<CommandRow> = read_commands(&command_log(&self.dir, day))?
                .into_iter()
                .filter(|r| r.device == device)
                .collect();
            rows.sort_by_key(|r| r.at);
            out.extend(rows.into_iter().rev());
            if out.len() >= n {
                break;
            }
        }
        out.truncate(n);
        Ok(out)
    }

    /// Deletes the days that end at or before `keep_from` (ms): command
    /// results go with the windows and alerts of their time.
    pub(super) fn prune_commands(&self, keep_from: i64) -> Result<(), HistoryError> {
        for day in command_days(&self.dir)? {
            if (day + 1) * DAY_MS > keep_from {
                break;
            }
            let path = command_log(&self.dir, day);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path, e)),
            }
        }
        Ok(())
    }
}

/// The days with a command file, oldest first.
fn command_days(dir: &Path) -> Result<Vec<i64>, HistoryError> {
    let mut days = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name();
        let day = name
            .to_str()
            .and_then(|n| n.strip_prefix("c-")?.strip_suffix(".log")?.parse().ok());
        if let Some(day) = day {
            days.push(day);
        }
    }
    days.sort_unstable();
    Ok(days)
}

/// A day's results in the order they were written; a file that is gone
/// (pruned meanwhile) holds none.
fn read_commands(path: &Path) -> Result<Vec<CommandRow>, HistoryError> {
    let buf = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(path, e)),
    };
    let (records, skipped) = codec::decode_all(&buf);
    if skipped > 0 {
        warn!(path = %path.display(), skipped, "Damaged bytes in the command history skipped.");
    }
    Ok(records
        .into_iter()
        .filter_map(|r| match r {
            Record::Command(row) => Some(*row),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::history::Batch;

    fn row(id: &str, device: &str, at: i64) -> CommandRow {
        CommandRow {
            id: id.into(),
            device: device.into(),
            metric: "setpoint".into(),
            value: serde_json::json!(21.5),
            status: "done".into(),
            reason: String::new(),
            detail: String::new(),
            at,
        }
    }

    #[test]
    fn results_by_range_and_a_devices_last_ones_across_days_and_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let day = DAY_MS;
        {
            let h = History::open(dir.path()).unwrap();
            let batch = Batch {
                commands: vec![
                    row("a", "ahu-1", day - 10),
                    row("b", "ahu-2", day + 5),
                    row("c", "ahu-1", day + 7),
                ],
                ..Batch::default()
            };
            h.write(&batch, 0).unwrap();
            let batch = Batch {
                commands: vec![CommandRow {
                    status: "failed".into(),
                    reason: "error".into(),
                    detail: "object/unknown-object".into(),
                    ..row("d", "ahu-1", 3 * day)
                }],
                ..Batch::default()
            };
            h.write(&batch, 0).unwrap();
        }
        // A reader beside (or after) the writer.
        let h = History::open_read_only(dir.path()).unwrap();
        let ids = |rows: Vec<CommandRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(
            ids(h.command_log(0, i64::MAX).unwrap()),
            ["a", "b", "c", "d"]
        );
        assert_eq!(ids(h.command_log(day, 3 * day).unwrap()), ["b", "c"]);
        assert_eq!(
            ids(h.command_log(day + 6, day + 6).unwrap()),
            Vec::<String>::new()
        );
        assert_eq!(ids(h.last_commands("ahu-1", 2).unwrap()), ["d", "c"]);
        assert_eq!(ids(h.last_commands("ahu-1", 10).unwrap()), ["d", "c", "a"]);
        assert_eq!(
            ids(h.last_commands("ahu-9", 10).unwrap()),
            Vec::<String>::new()
        );
        let d = &h.last_commands("ahu-1", 1).unwrap()[0];
        assert_eq!(
            (d.reason.as_str(), d.detail.as_str()),
            ("error", "object/unknown-object")
        );

        // Pruning to the start of day 2 drops days 0 and 1.
        let w = History::open(dir.path()).unwrap();
        w.prune_commands(2 * day).unwrap();
        assert_eq!(ids(w.command_log(0, i64::MAX).unwrap()), ["d"]);
    }
}
