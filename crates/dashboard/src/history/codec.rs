//! The history's on-disk records: a pure codec.
//!
//! Every record is a [`frame`] (length, CRC-32, body); the body starts with
//! a kind byte.
//!
//! ```text
//! series.log   SERIES  = 1 id:u32 dev_len:u16 device metric_len:u16 metric
//! h-<hour>.log WINDOWS = 2 (series:u32 start:i64 end:i64 count:u64 avg min max std:f64)*
//! a-<day>.log  ALERT   = 3 seq:u64 json
//! c-<day>.log  COMMAND = 6 json
//! h-<hour>.dat INDEX   = 4 (series:u32 offset:u64 len:u32 last_end:i64)*   sorted by series
//!              RUN     = 5 series:u32 (start:i64 end:i64 count:u64 avg min max std:f64)*
//! ```
//!
//! A `.log` is appended to as windows close, one frame per batch, so a
//! torn or scribbled frame costs one batch, not the file. A `.dat` is an
//! hour sealed once it is over: one INDEX frame first, then one RUN per
//! series, sorted by start, so a chart reads one index and one run per
//! hour.

use gateway_core::state_file::fields::{put_text, Reader};
use gateway_core::state_file::frame::{self, Frame};

use super::{Aggregate, AlertRow, CommandRow};

const KIND_SERIES: u8 = 1;
const KIND_WINDOWS: u8 = 2;
const KIND_ALERT: u8 = 3;
const KIND_INDEX: u8 = 4;
const KIND_RUN: u8 = 5;
const KIND_COMMAND: u8 = 6;

/// Bytes of one aggregate in a RUN (the series is the run's).
pub const AGG_LEN: usize = 56;
/// Bytes of one window in a WINDOWS frame.
pub const WINDOW_LEN: usize = 4 + AGG_LEN;
/// Bytes of one INDEX entry.
pub const ENTRY_LEN: usize = 24;
/// Largest body written or accepted: a scribbled length must not make a
/// reader allocate gigabytes.
pub const MAX_BODY: usize = 64 * 1024 * 1024;
/// Windows per WINDOWS frame: a damaged frame costs at most this many.
pub const WINDOWS_PER_FRAME: usize = 1024;

/// One entry of a sealed hour's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub series: u32,
    /// Where the series' RUN frame starts, and its whole length.
    pub offset: u64,
    pub len: u32,
    pub last_end: i64,
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Series {
        id: u32,
        device: String,
        metric: String,
    },
    Windows(Vec<(u32, Aggregate)>),
    Alert {
        seq: u64,
        // Boxed: rare beside windows, and the largest record by far.
        row: Box<AlertRow>,
    },
    Index(Vec<IndexEntry>),
    Command(Box<CommandRow>),
    Run {
        series: u32,
        aggs: Vec<Aggregate>,
    },
}

/// What the bytes at an offset hold.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    Record(Record, usize),
    /// The buffer ends inside a frame: a torn tail.
    Incomplete,
    /// Not a record.
    Damaged,
}

pub fn series(id: u32, device: &str, metric: &str, out: &mut Vec<u8>) {
    let start = frame::begin(out);
    out.push(KIND_SERIES);
    out.extend_from_slice(&id.to_le_bytes());
    // Ids and metric names are short (the model bounds them).
    put_text(out, device);
    put_text(out, metric);
    frame::end(out, start);
}

pub fn windows(rows: &[(u32, Aggregate)], out: &mut Vec<u8>) {
    for chunk in rows.chunks(WINDOWS_PER_FRAME) {
        let start = frame::begin(out);
        out.push(KIND_WINDOWS);
        for (series, a) in chunk {
            out.extend_from_slice(&series.to_le_bytes());
            agg(a, out);
        }
        frame::end(out, start);
    }
}

pub fn alert(seq: u64, row: &AlertRow, out: &mut Vec<u8>) {
    let start = frame::begin(out);
    out.push(KIND_ALERT);
    out.extend_from_slice(&seq.to_le_bytes());
    // An AlertRow of strings and numbers always serialises.
    let _ = serde_json::to_writer(&mut *out, row);
    frame::end(out, start);
}

pub fn command(row: &CommandRow, out: &mut Vec<u8>) {
    let start = frame::begin(out);
    out.push(KIND_COMMAND);
    // Strings, numbers and the JSON value the command carried: always
    // serialises.
    let _ = serde_json::to_writer(&mut *out, row);
    frame::end(out, start);
}

/// The INDEX frame's whole length for `n` series.
pub fn index_len(n: usize) -> usize {
    frame::HEADER + 1 + n * ENTRY_LEN
}

pub fn index(entries: &[IndexEntry], out: &mut Vec<u8>) {
    let start = frame::begin(out);
    out.push(KIND_INDEX);
    for e in entries {
        out.extend_from_slice(&e.series.to_le_bytes());
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.len.to_le_bytes());
        out.extend_from_slice(&e.last_end.to_le_bytes());
    }
    frame::end(out, start);
}

pub fn run(series: u32, aggs: &[Aggregate], out: &mut Vec<u8>) {
    let start = frame::begin(out);
    out.push(KIND_RUN);
    out.extend_from_slice(&series.to_le_bytes());
    for a in aggs {
        agg(a, out);
    }
    frame::end(out, start);
}

fn agg(a: &Aggregate, out: &mut Vec<u8>) {
    out.extend_from_slice(&a.start.to_le_bytes());
    out.extend_from_slice(&a.end.to_le_bytes());
    out.extend_from_slice(&a.count.to_le_bytes());
    for v in [a.avg, a.min, a.max, a.std] {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// The record at the start of `buf`.
pub fn decode(buf: &[u8]) -> Decoded {
    match frame::decode(buf, 1..=MAX_BODY) {
        Frame::Whole { body, len } => match parse(body) {
            Some(r) => Decoded::Record(r, len),
            None => Decoded::Damaged,
        },
        Frame::Incomplete => Decoded::Incomplete,
        Frame::Damaged => Decoded::Damaged,
    }
}

/// Every record in `buf`, skipping damage (resynchronising on the next
/// intact record); returns them with the bytes skipped.
pub fn decode_all(buf: &[u8]) -> (Vec<Record>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    let mut skipped = 0;
    while at < buf.len() {
        match decode(&buf[at..]) {
            Decoded::Record(r, len) => {
                out.push(r);
                at += len;
            }
            // A torn tail: the batch it held was never acknowledged.
            Decoded::Incomplete => {
                skipped += buf.len() - at;
                break;
            }
            Decoded::Damaged => {
                let next = frame::resync(buf, at, |b| matches!(decode(b), Decoded::Record(..)));
                skipped += next - at;
                at = next;
            }
        }
    }
    (out, skipped)
}

fn parse(body: &[u8]) -> Option<Record> {
    let mut r = Reader::new(body);
    let record = match r.u8()? {
        KIND_SERIES => Record::Series {
            id: r.u32()?,
            device: r.text()?.to_string(),
            metric: r.text()?.to_string(),
        },
        KIND_WINDOWS => {
            let rest = r.rest();
            if rest.is_empty() || !rest.len().is_multiple_of(WINDOW_LEN) {
                return None;
            }
            let rows = rest
                .chunks_exact(WINDOW_LEN)
                .map(|c| {
                    let mut r = Reader::new(c);
                    Some((r.u32()?, parse_agg(&mut r)?))
                })
                .collect::<Option<Vec<_>>>()?;
            Record::Windows(rows)
        }
        KIND_COMMAND => Record::Command(Box::new(serde_json::from_slice(r.rest()).ok()?)),
        KIND_ALERT => Record::Alert {
            seq: r.u64()?,
            row: Box::new(serde_json::from_slice(r.rest()).ok()?),
        },
        KIND_INDEX => {
            let rest = r.rest();
            if !rest.len().is_multiple_of(ENTRY_LEN) {
                return None;
            }
            let entries = rest
                .chunks_exact(ENTRY_LEN)
                .map(|c| {
                    let mut r = Reader::new(c);
                    Some(IndexEntry {
                        series: r.u32()?,
                        offset: r.u64()?,
                        len: r.u32()?,
                        last_end: r.i64()?,
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            Record::Index(entries)
        }
        KIND_RUN => {
            let series = r.u32()?;
            let aggs = r.rest();
            if !aggs.len().is_multiple_of(AGG_LEN) {
                return None;
            }
            let aggs = aggs
                .chunks_exact(AGG_LEN)
                .map(|c| parse_agg(&mut Reader::new(c)))
                .collect::<Option<Vec<_>>>()?;
            Record::Run { series, aggs }
        }
        _ => return None,
    };
    // A body longer than its record says is damage, not padding.
    r.is_empty().then_some(record)
}

fn parse_agg(r: &mut Reader<'_>) -> Option<Aggregate> {
    Some(Aggregate {
        start: r.i64()?,
        end: r.i64()?,
        count: r.u64()?,
        avg: r.f64()?,
        min: r.f64()?,
        max: r.f64()?,
        std: r.f64()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(start: i64) -> Aggregate {
        Aggregate {
            start,
            end: start + 60_000,
            count: 3,
            avg: 1.5,
            min: -2.0,
            max: f64::MAX,
            std: 0.25,
        }
    }

    #[test]
    fn every_record_round_trips() {
        let alert = AlertRow {
            device: "d".into(),
            rule: "hot".into(),
            metric: "t".into(),
            kind: "threshold".into(),
            state: "raised".into(),
            value: 9.0,
            limit: 8.0,
            at: 5,
            reason: Some("spike".into()),
            expected: Some([1.0, 2.5]),
        };
        let entries = vec![IndexEntry {
            series: 7,
            offset: 1 << 40,
            len: 99,
            last_end: -5,
        }];
        let mut buf = Vec::new();
        series(7, "fridge-1", "temperature", &mut buf);
        windows(&[(7, a(0)), (8, a(60_000))], &mut buf);
        super::alert(42, &alert, &mut buf);
        index(&entries, &mut buf);
        run(7, &[a(0), a(60_000)], &mut buf);
        let (records, skipped) = decode_all(&buf);
        assert_eq!(skipped, 0);
        assert_eq!(
            records,
            [
                Record::Series {
                    id: 7,
                    device: "fridge-1".into(),
                    metric: "temperature".into()
                },
                Record::Windows(vec![(7, a(0)), (8, a(60_000))]),
                Record::Alert {
                    seq: 42,
                    row: Box::new(alert)
                },
                Record::Index(entries),
                Record::Run {
                    series: 7,
                    aggs: vec![a(0), a(60_000)]
                },
            ]
        );
        let mut one = Vec::new();
        index(
            &[IndexEntry {
                series: 1,
                offset: 2,
                len: 3,
                last_end: 4,
            }],
            &mut one,
        );
        assert_eq!(one.len(), index_len(1));
    }

    #[test]
    fn a_batch_is_cut_into_frames_and_damage_costs_one_frame() {
        let rows: Vec<_> = (0..WINDOWS_PER_FRAME as i64 * 2 + 1)
            .map(|i| (1, a(i)))
            .collect();
        let mut buf = Vec::new();
        windows(&rows, &mut buf);
        let (records, _) = decode_all(&buf);
        assert_eq!(records.len(), 3);
        // Scribble inside the first frame and tear the last one.
        buf[100] ^= 0xff;
        buf.truncate(buf.len() - 3);
        let (records, skipped) = decode_all(&buf);
        assert_eq!(records.len(), 1, "only the middle frame is intact");
        assert!(skipped > 0);
        assert_eq!(
            records[0],
            Record::Windows(rows[WINDOWS_PER_FRAME..2 * WINDOWS_PER_FRAME].to_vec())
        );
    }
}
