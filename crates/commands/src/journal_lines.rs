//! The journal's lines as text: each kind read back, the whole records
//! found in a damaged line, and the rewrite of the file from memory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};

use gateway_core::Timestamp;

use super::{HorizonLine, Journal, JournalError, Known, Line};
use crate::flood_marks::MarkLine;

pub(super) enum Parsed {
    Line(Box<Line>),
    Horizon(i64),
    /// A device's flood mark (`flood_marks`).
    Mark(String, i64),
}

pub(super) fn mark_line(device: &str, mark: i64) -> io::Result<String> {
    let at = Timestamp::from_millis(mark).map_err(io::Error::other)?;
    let line = MarkLine {
        refused_upto: at.to_rfc3339(),
        device: device.to_string(),
    };
    serde_json::to_string(&line).map_err(io::Error::other)
}

fn mark_from(line: MarkLine) -> Result<Parsed, String> {
    let at = Timestamp::parse_rfc3339(&line.refused_upto).map_err(|e| e.to_string())?;
    Ok(Parsed::Mark(line.device, at.as_millis()))
}

pub(super) fn parse_line(raw: &[u8]) -> Result<Parsed, String> {
    let text = std::str::from_utf8(raw).map_err(|e| format!("not UTF-8: {e}"))?;
    if let Ok(h) = serde_json::from_str::<HorizonLine>(text) {
        let at = Timestamp::parse_rfc3339(&h.horizon).map_err(|e| e.to_string())?;
        return Ok(Parsed::Horizon(at.as_millis()));
    }
    if let Ok(mark) = serde_json::from_str::<MarkLine>(text) {
        return mark_from(mark);
    }
    serde_json::from_str::<Line>(text)
        .map(|line| Parsed::Line(Box::new(line)))
        .map_err(|e| e.to_string())
}

/// Whether an object opening at `at` is a value in another record: the
/// journal writes its lines compact, so such an object follows a `:` (an
/// object's value) or a `[` or `,` (an array's element). A command's value
/// (a codec's `data` object) is the sender's JSON, and may hold text that
/// reads as a record; a record of the journal begins a line, or follows
/// the `}` of the record before it (their newline lost) or a damaged byte.
fn inside_a_value(raw: &[u8], at: usize) -> bool {
    at.checked_sub(1)
        .and_then(|before| raw.get(before))
        .is_some_and(|b| matches!(b, b':' | b',' | b'['))
}

/// The whole records in a damaged line: each `{"id":`, `{"horizon":` or
/// `{"refused_upto":` starts one, read up to its end whatever follows it.
pub(super) fn recover(raw: &[u8]) -> Vec<Parsed> {
    const ID: &[u8] = b"{\"id\":";
    const HORIZON: &[u8] = b"{\"horizon\":";
    const MARK: &[u8] = b"{\"refused_upto\":";
    let mut found = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let Some(begin) = (at..raw.len()).find(|&i| {
            let rest = &raw[i..];
            (rest.starts_with(ID) || rest.starts_with(HORIZON) || rest.starts_with(MARK))
                && !inside_a_value(raw, i)
        }) else {
            break;
        };
        let rest = &raw[begin..];
        let (record, used) = if rest.starts_with(MARK) {
            let mut it = serde_json::Deserializer::from_slice(rest).into_iter::<MarkLine>();
            let record = it
                .next()
                .and_then(Result::ok)
                .and_then(|m| mark_from(m).ok());
            (record, it.byte_offset())
        } else if rest.starts_with(HORIZON) {
            let mut it = serde_json::Deserializer::from_slice(rest).into_iter::<HorizonLine>();
            let record = it.next().and_then(Result::ok).and_then(|h| {
                Timestamp::parse_rfc3339(&h.horizon)
                    .ok()
                    .map(|at| Parsed::Horizon(at.as_millis()))
            });
            (record, it.byte_offset())
        } else {
            let mut it = serde_json::Deserializer::from_slice(rest).into_iter::<Line>();
            let record = it
                .next()
                .and_then(Result::ok)
                .map(|l| Parsed::Line(Box::new(l)));
            (record, it.byte_offset())
        };
        match record {
            Some(r) => {
                found.push(r);
                at = begin + used.max(1);
            }
            None => at = begin + 1,
        }
    }
    found
}

impl Journal {
    /// Reads every line it can; the others are logged and counted.
    pub(super) fn read(&mut self, text: &[u8]) {
        let mut lines = text.split(|b| *b == b'\n').enumerate().peekable();
        while let Some((n, raw)) = lines.next() {
            let last = lines.peek().is_none();
            if raw.is_empty() {
                continue;
            }
            match parse_line(raw) {
                Ok(parsed) => self.take(parsed),
                Err(why) => {
                    self.damaged += 1;
                    // A byte lost between two lines (their newline) joins
                    // them: each whole record in it is still read.
                    for found in recover(raw) {
                        self.take(found);
                    }
                    if last {
                        tracing::warn!(path = %self.path.display(), line = n + 1, "Skipping the command journal's last line, cut short (a power loss mid-write?); the journal is rewritten without it.");
                    } else {
                        tracing::error!(path = %self.path.display(), line = n + 1, error = %why, "Skipping a damaged line of the command journal (the disk?); the lines after it are kept and the journal is rewritten without it. The command of that line, if it has no other line, is forgotten.");
                    }
                }
            }
        }
    }

    fn take(&mut self, parsed: Parsed) {
        match parsed {
            Parsed::Horizon(ms) => self.horizon = self.horizon.max(ms),
            Parsed::Line(line) => {
                self.lines += 1;
                self.remember(*line);
            }
            Parsed::Mark(device, ms) => {
                self.lines += 1;
                self.marks.merge(device, ms);
            }
        }
    }

    /// Writes what is remembered (after the horizon) to a new file and
    /// puts it in place: the journal keeps the size of what is remembered,
    /// and damage read past is gone.
    pub(super) fn rewrite(&mut self) -> Result<(), JournalError> {
        let tmp = self.path.with_extension("new");
        let io_err = |source| JournalError::Io {
            path: tmp.clone(),
            source,
        };
        let known = &self.known;
        self.order.retain(|key| known.contains_key(key));
        let mut out = io::BufWriter::new(File::create(&tmp).map_err(io_err)?);
        if let Some(horizon) = self.horizon() {
            let line = HorizonLine {
                horizon: horizon.to_rfc3339(),
            };
            let text = serde_json::to_string(&line).map_err(|e| io_err(io::Error::other(e)))?;
            // Twice, as every id: one damaged byte must not lose what keeps
            // a forgotten command from running again after a clock step.
            writeln!(out, "{text}\n{text}").map_err(io_err)?;
        }
        let mut lines = 0;
        for (device, mark) in self.marks.written() {
            let text = mark_line(device, mark).map_err(io_err)?;
            writeln!(out, "{text}\n{text}").map_err(io_err)?;
            lines += 2;
        }
        for key in &self.order {
            let Some(entry) = self.known.get(key) else {
                continue;
            };
            let (Known::Finished(record) | Known::Started(record)) = &entry.known;
            let line = Line {
                id: key.1.clone(),
                made: entry.made_text.clone(),
                record: record.clone(),
            };
            let text = serde_json::to_string(&line).map_err(|e| io_err(io::Error::other(e)))?;
            // Twice: one damaged line of a rewritten journal must not
            // forget a command that ran (the appended form has its start
            // and its result).
            writeln!(out, "{text}\n{text}").map_err(io_err)?;
            lines += 2;
        }
        let file = out.into_inner().map_err(|e| io_err(e.into_error()))?;
        file.sync_all().map_err(io_err)?;
        fs::rename(&tmp, &self.path).map_err(io_err)?;
        if let Some(dir) = self.path.parent() {
            // The rename itself must survive a power cut.
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.lines = lines;
        Ok(())
    }
}
