//! The journal's lines as text: each kind read back, and the whole
//! records found in a damaged line.

use std::io;

use gateway_core::Timestamp;

use super::{HorizonLine, Line};
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
