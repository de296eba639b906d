//! One line → what becomes of it: readings, a refusal with its error type,
//! or nothing (a blank line). Counted exactly as MQTT payloads are: the
//! same decoders (`crate::payload`), the same `errors_total{error_type}`
//! labels, `field_<reason>` for a dropped field.
//!
//! The device rule: a column, key or tag in the line names the device;
//! else the adapter's fallback (its `device`, the peer's name in `peers`,
//! or the peer's address).

use std::collections::HashMap;
use std::fmt;

use gateway_core::telemetry::LogThrottle;
use gateway_core::{AdapterStats, DeviceId, MetricName, Reading, TimeSource, Timestamp};

use crate::payload::{self, Context, CsvLayout, DecodeError, Decoded, IdKind, PayloadFormat};

/// A line format and whether its lines can name their own device.
#[derive(Debug, Clone, PartialEq)]
pub struct LineDecoder {
    format: PayloadFormat,
    names_device: bool,
    /// A CSV format's column roles, worked out once.
    csv: Option<CsvLayout>,
}

/// What a line came to.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Nothing but white space: a keep-alive, or the blank line of a
    /// doubled line ending. Neither a message nor an error.
    Blank,
    /// Nothing to keep; the `error_type` it was counted under.
    Refused(String),
    /// Readings to hand on: the last `count` of the batch [`LineDecoder::judge`]
    /// added them to. `digest` identifies the line when every reading
    /// carries the sensor's own time: a resent copy of it is then the same
    /// reading, and can be recognised after a crash.
    Readings { count: usize, digest: Option<u64> },
}

/// Lines and readings judged since the last [`Tally::flush`], added to the
/// adapter's counters once per read rather than per line: those two
/// shared atomic adds, contended by connections on different workers,
/// were half the time of [`LineDecoder::judge`] (`perf annotate`).
#[derive(Debug, Default)]
pub struct Tally {
    received: u64,
    readings: u64,
}

impl Tally {
    pub fn flush(&mut self, stats: &AdapterStats) {
        if self.received > 0 {
            stats.received.add(self.received);
        }
        if self.readings > 0 {
            stats.readings.add(self.readings);
        }
        *self = Self::default();
    }
}

/// The devices lines named lately, by their text, per connection or port:
/// a node names the same device on every line, and its id is then neither
/// checked nor allocated again (that was a sixth of the CPU of CSV ingest).
/// The device of the previous line is compared first: hashing its text
/// for every line was still a twentieth of acknowledged CSV ingest, and a
/// node's connection names one device line after line.
#[derive(Debug, Default)]
pub struct DeviceCache {
    /// By the kind of id the column declares ([`IdKind`]): a `mac`
    /// column's text must be a MAC, a `device` column's any id.
    by_text: [HashMap<Box<str>, DeviceId>; 2],
    last: Option<(IdKind, DeviceId)>,
}

/// Devices one cache holds before it starts over (a relay board hears a
/// few dozen nodes; a hostile client naming a new one per line must not
/// grow it without bound).
const DEVICE_CACHE: usize = 1024;

impl DeviceCache {
    /// The id for `text` as an id of `kind`, or `None` if it is not one.
    /// Taken as bytes: the previous line's device is recognised before any
    /// UTF-8 check.
    fn get(&mut self, text: &[u8], kind: IdKind) -> Option<DeviceId> {
        if let Some((_, last)) = self
            .last
            .as_ref()
            .filter(|(k, d)| *k == kind && d.as_str().as_bytes() == text)
        {
            return Some(last.clone());
        }
        let id = self.lookup(std::str::from_utf8(text).ok()?, kind)?;
        self.last = Some((kind, id.clone()));
        Some(id)
    }

    fn lookup(&mut self, text: &str, kind: IdKind) -> Option<DeviceId> {
        let by_text = &mut self.by_text[kind as usize];
        if let Some(d) = by_text.get(text) {
            return Some(d.clone());
        }
        // Interned: its readings' clones of it then cost no reference
        // count, on this worker or where the pipeline drops them.
        let id = payload::device_id_of_kind(text, kind).ok()?.interned();
        if by_text.len() >= DEVICE_CACHE {
            by_text.clear();
        }
        by_text.insert(text.into(), id.clone());
        Some(id)
    }
}

impl LineDecoder {
    pub fn new(format: PayloadFormat) -> Self {
        // Every value a line yields carries its column's name: interned,
        // its clones cost no reference count.
        let format = match format {
            PayloadFormat::Csv { columns } => PayloadFormat::Csv {
                columns: columns.iter().map(MetricName::interned).collect(),
            },
            other => other,
        };
        let (names_device, csv) = match &format {
            PayloadFormat::Csv { columns } => (
                columns
                    .iter()
                    .any(|c| payload::CSV_DEVICE_COLUMNS.contains(&c.as_str())),
                Some(CsvLayout::new(columns)),
            ),
            _ => (true, None),
        };
        Self {
            format,
            names_device,
            csv,
        }
    }

    /// Decodes one line (without its line ending), its readings added to
    /// the end of `readings`; what is returned holds the rest (problems,
    /// ignored fields). On an error nothing is added.
    ///
    /// # Errors
    /// The payload decoders' [`DecodeError`] for a line that yields nothing.
    pub fn decode(
        &self,
        line: &[u8],
        fallback: Option<&DeviceId>,
        now: Timestamp,
        devices: &mut DeviceCache,
        readings: &mut Vec<Reading>,
    ) -> Result<Decoded, DecodeError> {
        let ctx = |device| Context {
            device,
            metric: None,
            now,
        };
        if let (PayloadFormat::Csv { columns }, Some(layout)) = (&self.format, &self.csv) {
            // Straight onto the read's batch: a vector per line was an
            // allocation and a copy per line. A device column's text is
            // looked up rather than checked and allocated again; the
            // fallback only for a line that names none.
            let mut into = |device, readings: &mut Vec<Reading>| {
                payload::decode_csv_into(
                    line,
                    columns,
                    layout,
                    &ctx(device),
                    &mut |text, kind| devices.get(text, kind),
                    readings,
                )
            };
            let own = if self.names_device {
                match into(None, readings) {
                    Err(DecodeError::NoDevice) if fallback.is_some() => into(fallback, readings),
                    other => other,
                }
            } else {
                into(fallback, readings)
            };
            return own.map(|problems| Decoded {
                readings: Vec::new(),
                problems,
                ignored: Vec::new(),
            });
        }
        let mut decoded = if self.names_device {
            // The line's own device first. The decoders let a given device
            // win over the payload's, so the fallback is a second pass,
            // paid only by lines that name none.
            match payload::decode(&self.format, line, &ctx(None)) {
                Err(DecodeError::NoDevice) if fallback.is_some() => {
                    payload::decode(&self.format, line, &ctx(fallback))
                }
                other => other,
            }
        } else {
            payload::decode(&self.format, line, &ctx(fallback))
        }?;
        readings.append(&mut decoded.readings);
        Ok(decoded)
    }

    /// Decodes a line onto the end of `batch` and counts what happened:
    /// errors under the adapter's stats at once, lines and readings in
    /// `tally` (flushed to them by the caller once per read); refusals are
    /// logged (rate-limited) with `origin` (peer or port).
    #[allow(clippy::too_many_arguments)]
    pub fn judge(
        &self,
        line: &[u8],
        fallback: Option<&DeviceId>,
        devices: &mut DeviceCache,
        now: Timestamp,
        stats: &AdapterStats,
        throttle: &LogThrottle,
        adapter: &str,
        origin: &dyn fmt::Display,
        batch: &mut Vec<Reading>,
        tally: &mut Tally,
    ) -> Outcome {
        self.judge_after_pause(
            line, None, fallback, devices, now, stats, throttle, adapter, origin, batch, tally,
        )
    }

    /// As [`LineDecoder::judge`], for a line inside which the port went
    /// quiet long enough for the board to have reset, `pause` bytes from
    /// its start. Such a line may be a cut line's start glued to the first
    /// line the board printed after its boot (`21.5,4` + `22.0,45.1`). A
    /// line that decodes whole is taken whole: a sketch may pause inside
    /// every line (a field printed, then a 750 ms DS18B20 conversion),
    /// and a reset is rare. One refused (any error, a field's included) is
    /// read again from the pause: taken if that part decodes cleanly, the
    /// start dropped and counted `incomplete_line` (as a line the port
    /// cut); else the whole line is refused as it would have been, once.
    #[allow(clippy::too_many_arguments)]
    pub fn judge_after_pause(
        &self,
        line: &[u8],
        pause: Option<usize>,
        fallback: Option<&DeviceId>,
        devices: &mut DeviceCache,
        now: Timestamp,
        stats: &AdapterStats,
        throttle: &LogThrottle,
        adapter: &str,
        origin: &dyn fmt::Display,
        batch: &mut Vec<Reading>,
        tally: &mut Tally,
    ) -> Outcome {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Outcome::Blank;
        }
        tally.received += 1;
        let reject = |kind: &str, detail: &str| {
            gateway_core::refuse!(stats, throttle, kind;
                adapter = %adapter, origin = %origin, detail = %detail, "Dropping a bad line.");
        };
        let start = batch.len();
        let mut line = line;
        let mut decoded = self.decode(line, fallback, now, devices, batch);
        // Nothing after the pause but the line's end: no line of its own.
        let after = pause
            .filter(|&at| at > 0)
            .and_then(|at| Some((at, line.get(at..)?)))
            .filter(|(_, rest)| !rest.iter().all(u8::is_ascii_whitespace));
        if let Some((at, rest)) = after {
            if !clean(&decoded, &batch[start..], now) {
                // Apart from the batch: the whole line's outcome stands
                // unless this one is clean.
                let mut again = Vec::new();
                let retry = self.decode(rest, fallback, now, devices, &mut again);
                if clean(&retry, &again, now) {
                    batch.truncate(start);
                    batch.append(&mut again);
                    // The start was a line of its own, cut.
                    tally.received += 1;
                    let fragment = String::from_utf8_lossy(&line[..at]);
                    gateway_core::refuse!(stats, throttle, "incomplete_line";
                        adapter = %adapter, origin = %origin, fragment = %fragment, "Dropping the start of a line the port went quiet in, and reading the rest on its own: the board most likely reset mid-line.");
                    line = rest;
                    decoded = retry;
                }
            }
        }
        match decoded {
            Ok(decoded) => {
                let mut first = None;
                for problem in &decoded.problems {
                    let kind = format!("field_{}", problem.reason.kind());
                    reject(&kind, &problem.field);
                    first.get_or_insert(kind);
                }
                for (device, key) in &decoded.ignored {
                    stats.ignored_field(device.as_str(), key);
                }
                let readings = &batch[start..];
                if readings.is_empty() {
                    return Outcome::Refused(first.unwrap_or_else(|| "no_values".into()));
                }
                // A time no error of the gateway's clock explains refuses
                // the line before its `ok`: once acknowledged, nothing is
                // dropped for its time.
                if let Some((kind, time)) = readings.iter().find_map(|r| {
                    crate::payload::own_time_refusal_of(r, now).map(|k| (k, r.time()))
                }) {
                    batch.truncate(start);
                    reject(kind, &time.to_string());
                    return Outcome::Refused(kind.into());
                }
                tally.readings += readings.len() as u64;
                let stamped = readings
                    .iter()
                    .all(|r| r.time_source() == TimeSource::Event);
                Outcome::Readings {
                    count: readings.len(),
                    digest: stamped.then(|| digest(fallback, line)),
                }
            }
            Err(e) => {
                reject(e.kind(), &e.to_string());
                Outcome::Refused(e.kind().to_string())
            }
        }
    }
}

/// Whether a decoded line yields readings and nothing [`LineDecoder::judge`]
/// would refuse: no field dropped, no own time out of bounds.
fn clean(decoded: &Result<Decoded, DecodeError>, readings: &[Reading], now: Timestamp) -> bool {
    matches!(decoded, Ok(d) if d.problems.is_empty())
        && !readings.is_empty()
        && readings
            .iter()
            .all(|r| crate::payload::own_time_refusal_of(r, now).is_none())
}

/// FNV-1a (64 bit) of the fallback device and the line: stable across
/// builds and restarts (it is journaled), unlike `std`'s hasher.
pub fn digest(fallback: Option<&DeviceId>, line: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let device = fallback.map_or(&b""[..], |d| d.as_str().as_bytes());
    // 0xff never occurs in UTF-8: the two parts cannot run together.
    device
        .iter()
        .chain(&[0xff])
        .chain(line.trim_ascii())
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use gateway_core::{MetricName, Telemetry};

    const NOW: i64 = 1_795_255_500_000;

    fn csv(cols: &[&str]) -> LineDecoder {
        LineDecoder::new(PayloadFormat::Csv {
            columns: cols.iter().map(|c| MetricName::new(*c).unwrap()).collect(),
        })
    }

    /// A line's outcome, and the batch it was judged onto: one reading
    /// already there from the line before, which must stay first.
    type Judged = (Outcome, Vec<Reading>);

    fn before() -> Reading {
        let device = DeviceId::new("earlier").unwrap();
        let metric = MetricName::new("t").unwrap();
        let at = Timestamp::from_millis(NOW).unwrap();
        Reading::new(device, metric, 1.0, at, TimeSource::Arrival).unwrap()
    }

    fn judge(d: &LineDecoder, line: &[u8], fallback: Option<&str>, t: &Telemetry) -> Judged {
        let fallback = fallback.map(|f| DeviceId::new(f).unwrap());
        let mut batch = vec![before()];
        let stats = AdapterStats::new(t, "lines");
        let mut tally = Tally::default();
        let outcome = d.judge(
            line,
            fallback.as_ref(),
            &mut DeviceCache::default(),
            Timestamp::from_millis(NOW).unwrap(),
            &stats,
            &LogThrottle::default(),
            "lines",
            &"test",
            &mut batch,
            &mut tally,
        );
        tally.flush(&stats);
        (outcome, batch)
    }

    /// The devices of the line's readings, checking they are the batch's
    /// last `count`, after what was there before.
    fn devices((outcome, batch): &Judged) -> Vec<String> {
        assert_eq!(
            batch.first(),
            Some(&before()),
            "the batch's earlier reading first"
        );
        match outcome {
            Outcome::Readings { count, .. } => {
                assert_eq!(*count, batch.len() - 1, "{batch:?}");
                batch[1..].iter().map(|r| r.device().to_string()).collect()
            }
            other => panic!("expected readings, got {other:?}"),
        }
    }

    fn errors(t: &Telemetry, kind: &str) -> u64 {
        t.counter_value(
            "edge_gateway_adapter_errors_total",
            &[("adapter", "lines"), ("error_type", kind)],
        )
        .unwrap_or(0)
    }

    #[test]
    fn the_line_names_the_device_before_the_fallback() {
        let t = Telemetry::default();
        let relay = csv(&["mac", "temperature"]);
        let o = judge(&relay, b"24:6f:28:aa:bb:01,21.5", Some("port"), &t);
        assert_eq!(devices(&o), ["24:6f:28:aa:bb:01"]);
        let o = judge(&relay, b",21.5", Some("port"), &t);
        assert_eq!(devices(&o), ["port"], "empty mac: the fallback");
        let seed = csv(&["temperature", "pressure", "humidity", "gas"]);
        let o = judge(&seed, b"21.3,1013.2,45.1,12000", Some("192.0.2.7"), &t);
        assert_eq!(devices(&o), ["192.0.2.7"; 4]);
        let json = LineDecoder::new(PayloadFormat::Json);
        assert_eq!(
            devices(&judge(&json, br#"{"device":"a","t":1}"#, Some("f"), &t)),
            ["a"]
        );
        assert_eq!(devices(&judge(&json, br#"{"t":1}"#, Some("f"), &t)), ["f"]);
        let kv = LineDecoder::new(PayloadFormat::Kv);
        assert_eq!(devices(&judge(&kv, b"t=1", Some("f"), &t)), ["f"]);
        let (refused, batch) = judge(&kv, b"t=1", None, &t);
        assert_eq!(refused, Outcome::Refused("no_device".into()));
        assert_eq!(batch, [before()], "nothing added");
    }

    /// A line whose own time no error of the gateway's clock explains is
    /// refused before its `ok`, by reason; a time minutes or a day off is
    /// taken (the pipeline places it by that time).
    #[test]
    fn own_times_before_this_release_or_days_ahead_refuse_the_line() {
        let json = LineDecoder::new(PayloadFormat::Json);
        let t = Telemetry::default();
        let secs = NOW / 1000;
        for (ts, want) in [
            (1_000_000_000, Some("time_before_release")),
            (secs + 3 * 86_400, Some("time_too_far_ahead")),
            (secs + 600, None),
            (secs - 86_400, None),
        ] {
            let line = format!(r#"{{"t":1,"h":2,"ts":{ts}}}"#);
            let (outcome, batch) = judge(&json, line.as_bytes(), Some("f"), &t);
            match want {
                Some(kind) => {
                    assert_eq!(outcome, Outcome::Refused(kind.into()), "{line}");
                    assert_eq!(batch, [before()], "nothing added: {line}");
                }
                None => assert_eq!(devices(&(outcome, batch)), ["f", "f"], "{line}"),
            }
        }
        let refused = |kind| {
            t.counter_value(
                "edge_gateway_adapter_errors_total",
                &[("adapter", "lines"), ("error_type", kind)],
            )
        };
        assert_eq!(refused("time_before_release"), Some(1));
        assert_eq!(refused("time_too_far_ahead"), Some(1));
    }

    #[test]
    fn csv_readings_carry_ids_whose_clones_cost_no_count() {
        // A column list as the config parses it: counted ids.
        let relay = csv(&["device", "temperature", "humidity"]);
        let t = Telemetry::default();
        let mut batch = Vec::new();
        for line in [
            &b"hall,21.5,40"[..],
            b"hall,21.6,41",
            b"24:6F:28:AA:BB:01,3,4",
        ] {
            let (_, judged) = judge(&relay, line, None, &t);
            batch.extend_from_slice(&judged[1..]);
        }
        assert_eq!(batch.len(), 6);
        for r in &batch {
            assert!(r.device().is_interned(), "{r:?}");
            assert!(r.metric().is_interned(), "{r:?}");
        }
        assert_eq!(batch[5].device().as_str(), "24:6f:28:aa:bb:01");
        assert!(batch[0].device().same_text(batch[2].device()));
    }

    #[test]
    fn a_connection_s_device_cache_gives_what_parsing_each_line_gives() {
        let t = Telemetry::default();
        let relay = csv(&["device", "mac", "temperature"]);
        let mut cache = DeviceCache::default();
        let mut judge = |line: &[u8], fallback: Option<&str>| {
            let fallback = fallback.map(|f| DeviceId::new(f).unwrap());
            let mut batch = vec![before()];
            let outcome = relay.judge(
                line,
                fallback.as_ref(),
                &mut cache,
                Timestamp::from_millis(NOW).unwrap(),
                &AdapterStats::new(&t, "lines"),
                &LogThrottle::default(),
                "lines",
                &"test",
                &mut batch,
                &mut Tally::default(),
            );
            (outcome, batch)
        };
        // (line, fallback, the device or the refusal)
        type Case<'a> = (&'a [u8], Option<&'a str>, Result<&'a str, &'a str>);
        let cases: [Case; 13] = [
            (b"a,,21.5", None, Ok("a")),
            (b"a,,21.6", None, Ok("a")),
            (b",A2-B2-C2-D2-E2-01,21.7", None, Ok("a2:b2:c2:d2:e2:01")),
            (b"a,A2-B2-C2-D2-E2-01,21.8", None, Ok("a")),
            (b"bad/id,,1", None, Err("invalid_device")),
            // Not a MAC in the mac column: no device, the fallback or not.
            (b",rl~lxA2:B2:C2:D2:E2:F2,1", None, Err("invalid_device")),
            (b",a,1", Some("port"), Err("invalid_device")),
            (b",,1", Some("port"), Ok("port")),
            (b"a,,1,2", None, Err("csv_column_count")),
            // A MAC in capitals, twice: the id is the canonical one both
            // times, whether the text was met just before or not.
            (b",24:6F:28:AA:BB:01,1", None, Ok("24:6f:28:aa:bb:01")),
            (b",24:6F:28:AA:BB:01,2", None, Ok("24:6f:28:aa:bb:01")),
            (b",24:6f:28:aa:bb:01,3", None, Ok("24:6f:28:aa:bb:01")),
            (b"a,,4", None, Ok("a")),
        ];
        for (line, fallback, want) in cases {
            let o = judge(line, fallback);
            match want {
                Ok(d) => assert_eq!(devices(&o), [d], "{line:?}"),
                Err(kind) => {
                    assert_eq!(o.0, Outcome::Refused(kind.into()), "{line:?}");
                    assert_eq!(o.1, [before()], "nothing added: {line:?}");
                }
            }
        }
        // The MAC in capitals is kept by its text; in small letters it was
        // the device of the line before, and never looked up.
        let known: Vec<usize> = cache.by_text.iter().map(HashMap::len).collect();
        assert_eq!(known, [1, 2], "a; the dashed MAC and the MAC as sent");
    }

    #[test]
    fn bad_lines_are_counted_by_type_and_blank_lines_not_at_all() {
        let t = Telemetry::default();
        let seed = csv(&["temperature", "pressure", "humidity", "gas"]);
        let cases: [(&[u8], Option<&str>); 7] = [
            (b"21.3,1013.2,45.1", Some("csv_column_count")),
            (b"1,2,\xfe,4", Some("not_utf8")),
            (b"err,err,err,err", Some("field_not_numeric")),
            // A logger's header when it starts: one refusal, not four.
            (b"temperature,pressure,humidity,gas", Some("csv_header")),
            (b" \r", None),
            (b"", None),
            (b"21.3,1013.2,45.1,12000", None),
        ];
        for (line, refused) in cases {
            let (o, batch) = judge(&seed, line, Some("d"), &t);
            match refused {
                Some(kind) => assert_eq!(o, Outcome::Refused(kind.into())),
                None => assert!(!matches!(o, Outcome::Refused(_)), "{o:?}"),
            }
            let added = batch.len() - 1;
            let good = line == b"21.3,1013.2,45.1,12000";
            assert_eq!(added, if good { 4 } else { 0 }, "{line:?}");
        }
        assert_eq!(errors(&t, "csv_column_count"), 1);
        assert_eq!(errors(&t, "not_utf8"), 1);
        assert_eq!(errors(&t, "field_not_numeric"), 4);
        assert_eq!(errors(&t, "csv_header"), 1);
        let received = t
            .counter_value(
                "edge_gateway_adapter_received_messages_total",
                &[("adapter", "lines")],
            )
            .unwrap();
        assert_eq!(received, 5, "blank lines are not messages");
    }

    /// `1732000000,ERR`, a device's error token after its time, is a bad
    /// value: `err … field_not_numeric`, not a header (`csv_header`, as
    /// if a logger had started).
    #[test]
    fn an_error_token_after_a_time_is_a_bad_value_not_a_header() {
        let t = Telemetry::default();
        let stamped = csv(&["ts", "temperature"]);
        for line in [&b"1732000000,ERR"[..], b"2024-11-19T07:06:40Z,ERR"] {
            let (o, batch) = judge(&stamped, line, Some("n1"), &t);
            assert_eq!(o, Outcome::Refused("field_not_numeric".into()), "{line:?}");
            assert_eq!(batch, [before()]);
        }
        assert_eq!(errors(&t, "field_not_numeric"), 2);
        assert_eq!(errors(&t, "csv_header"), 0);
        // The logger's header is still one.
        let (o, _) = judge(&stamped, b"ts,temperature", Some("n1"), &t);
        assert_eq!(o, Outcome::Refused("csv_header".into()));
    }

    #[test]
    fn only_lines_with_their_own_time_get_a_digest() {
        let t = Telemetry::default();
        let stamped = csv(&["ts", "temperature"]);
        let a = judge(&stamped, b"1795255200000,21.5", Some("n1"), &t);
        let b = judge(&stamped, b"1795255200000,21.5\r", Some("n1"), &t);
        let c = judge(&stamped, b"1795255200000,21.5", Some("n2"), &t);
        let digest = |o: &Judged| match &o.0 {
            Outcome::Readings { digest, .. } => *digest,
            other => panic!("{other:?}"),
        };
        assert!(digest(&a).is_some());
        assert_eq!(digest(&a), digest(&b), "the same line");
        assert_ne!(digest(&a), digest(&c), "another node's");
        let arrival = judge(&stamped, b",21.5", Some("n1"), &t);
        assert_eq!(digest(&arrival), None);
    }

    /// A line the port went quiet in (`pause` bytes from its start) is
    /// read again from there only when it is refused whole, and taken from
    /// there only when that part is clean; else refused once, whole.
    #[test]
    fn a_line_refused_whole_is_read_again_from_the_pause_inside_it() {
        let pair = csv(&["temperature", "humidity"]);
        let t = Telemetry::default();
        let stats = AdapterStats::new(&t, "lines");
        let node = DeviceId::new("node").unwrap();
        let judge = |line: &[u8], pause| {
            let mut batch = vec![before()];
            let mut tally = Tally::default();
            let outcome = pair.judge_after_pause(
                line,
                pause,
                Some(&node),
                &mut DeviceCache::default(),
                Timestamp::from_millis(NOW).unwrap(),
                &stats,
                &LogThrottle::default(),
                "lines",
                &"test",
                &mut batch,
                &mut tally,
            );
            tally.flush(&stats);
            let values: Vec<f64> = batch[1..].iter().map(Reading::value).collect();
            (outcome, values)
        };
        // A DS18B20 sketch's pause: whole.
        let (o, v) = judge(b"21.5,45.1", Some(5));
        assert!(matches!(o, Outcome::Readings { count: 2, .. }), "{o:?}");
        assert_eq!(v, [21.5, 45.1]);
        assert_eq!(errors(&t, "incomplete_line"), 0);
        // A cut line's start glued to the next line.
        let (o, v) = judge(b"21.5,422.0,45.1", Some(6));
        assert!(matches!(o, Outcome::Readings { count: 2, .. }), "{o:?}");
        assert_eq!(v, [22.0, 45.1]);
        assert_eq!(errors(&t, "incomplete_line"), 1);
        assert_eq!(errors(&t, "csv_column_count"), 0);
        // A field dropped whole, none after the pause: the part after it.
        let (_, v) = judge(b"21.5,4x22.0,45.1", Some(7));
        assert_eq!(v, [22.0, 45.1]);
        assert_eq!(errors(&t, "incomplete_line"), 2);
        assert_eq!(errors(&t, "field_not_numeric"), 0);
        // Bad after the pause too: the whole line's refusal, once.
        let (o, v) = judge(b"21.5,4x2.0,45.1", Some(6));
        assert_eq!(o, Outcome::Refused("csv_column_count".into()));
        assert!(v.is_empty());
        assert_eq!(errors(&t, "csv_column_count"), 1);
        assert_eq!(errors(&t, "field_not_numeric"), 0);
        assert_eq!(errors(&t, "incomplete_line"), 2);
        // Without a pause, or one at the line's end: as `judge`.
        for pause in [None, Some(15)] {
            let (o, _) = judge(b"21.5,422.0,45.1", pause);
            assert_eq!(o, Outcome::Refused("csv_column_count".into()), "{pause:?}");
        }
        assert_eq!(errors(&t, "incomplete_line"), 2);
        let received = t.counter_value(
            "edge_gateway_adapter_received_messages_total",
            &[("adapter", "lines")],
        );
        assert_eq!(received, Some(8), "six lines, two cut lines' starts");
    }
}
