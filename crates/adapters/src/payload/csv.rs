//! One line of comma-separated values: `21.3,1013.2,45.1,12000`.
//!
//! The columns come from the config, not the payload, so a line with a
//! missing or extra field is refused whole: every value after the gap would
//! land in the wrong metric. No quoting: sensor firmwares that send CSV do
//! not quote numbers, and a quoted field is reported as not numeric.
//!
//! A column named `device` or `mac` names the device when the context does
//! not (a relay board printing one line per client it hears); it is never a
//! metric. A `mac` column holds a MAC in any notation, and nothing else: a
//! boot banner glued to the first line (`rl~lxA2:B2:…`) is refused
//! `invalid_device`, never a new device.
//!
//! A line whose every field is a word (`mac,temperature,humidity`, printed
//! by a logger when it starts) is a header: refused once as `csv_header`.
//! One with a time in its time column (`1732000000,ERR`) is data, its
//! words bad values.

use gateway_core::{DeviceId, MetricName, Reading, TimeSource};

use super::{
    text, text_time, Context, DecodeError, Decoded, FieldProblem, FieldReason, IdKind, When,
    TIME_KEYS,
};

/// Columns naming the device, in order of preference.
pub(crate) const DEVICE_COLUMNS: [&str; 2] = ["device", "mac"];

/// The kind of id each of [`DEVICE_COLUMNS`] holds.
const DEVICE_KINDS: [IdKind; 2] = [IdKind::Any, IdKind::Mac];

/// What a configured column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Value,
    Time,
    /// Its place in [`DEVICE_COLUMNS`]: `device` is preferred to `mac`.
    Device(usize),
}

/// The roles of a column list, worked out once per adapter: comparing
/// every column's name with the time and device names on every line was
/// a tenth of the CPU of an acknowledged CSV line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    roles: Vec<Role>,
    /// Columns before the first value column.
    first_value: usize,
    /// Every device and time column comes before the first value column,
    /// as nodes print them (`device,ts,t,h`): device and time are known
    /// when the first value is read, and one walk of the fields does.
    leading: bool,
    /// The shape [`decode_plain`] reads, if the columns have it.
    plain: Option<Plain>,
}

/// The column lists whose lines [`decode_plain`] tries first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plain {
    /// One device column, then only values (`device,t,p,h,gas`).
    DeviceFirst,
    /// Only values: the connection or topic names the device.
    ValuesOnly,
}

impl Layout {
    pub(crate) fn new(columns: &[MetricName]) -> Self {
        let roles: Vec<Role> = columns
            .iter()
            .map(|c| {
                let name = c.as_str();
                match DEVICE_COLUMNS.iter().position(|d| *d == name) {
                    Some(rank) => Role::Device(rank),
                    None if TIME_KEYS.contains(&name) => Role::Time,
                    None => Role::Value,
                }
            })
            .collect();
        let first_value = roles
            .iter()
            .position(|r| *r == Role::Value)
            .unwrap_or(roles.len());
        let leading = roles[first_value..].iter().all(|r| *r == Role::Value);
        let plain = match roles.split_first() {
            Some((Role::Device(_), rest)) if rest.iter().all(|r| *r == Role::Value) => {
                Some(Plain::DeviceFirst)
            }
            Some(_) if roles.iter().all(|r| *r == Role::Value) => Some(Plain::ValuesOnly),
            _ => None,
        };
        Self {
            roles,
            first_value,
            leading,
            plain,
        }
    }
}

/// Decodes one CSV line. An empty field is a sensor saying "no value this
/// time" and is skipped silently; a line of only empty fields is
/// [`DecodeError::NoValues`]. A column named `ts`, `time` or `timestamp` is
/// the event time, parsed like a JSON time (RFC 3339 or epoch s/ms).
pub(super) fn decode(
    payload: &[u8],
    columns: &[MetricName],
    ctx: &Context,
) -> Result<Decoded, DecodeError> {
    let mut readings = Vec::with_capacity(columns.len());
    let problems = decode_into(
        payload,
        columns,
        &Layout::new(columns),
        ctx,
        &mut |_, _| None,
        &mut readings,
    )?;
    Ok(Decoded {
        readings,
        problems,
        ignored: Vec::new(),
    })
}

/// [`decode`] onto the end of `readings` (a whole read's batch, rather than
/// a vector per line), with the `layout` of `columns` worked out before,
/// and a device column's text turned into an id by `known` first (a
/// per-connection cache of the ids lines named lately): only text it does
/// not know is checked and allocated here. On an error nothing is added.
pub(crate) fn decode_into(
    payload: &[u8],
    columns: &[MetricName],
    layout: &Layout,
    ctx: &Context,
    known: &mut dyn FnMut(&[u8], IdKind) -> Option<DeviceId>,
    readings: &mut Vec<Reading>,
) -> Result<Vec<FieldProblem>, DecodeError> {
    if decode_plain(payload, columns, layout, ctx, known, readings).is_some() {
        return Ok(Vec::new());
    }
    decode_general(payload, columns, layout, ctx, known, readings)
}

/// [`decode_into`] for any line: the device and time columns wherever
/// they are, fields trimmed, every problem reported.
fn decode_general(
    payload: &[u8],
    columns: &[MetricName],
    layout: &Layout,
    ctx: &Context,
    known: &mut dyn FnMut(&[u8], IdKind) -> Option<DeviceId>,
    readings: &mut Vec<Reading>,
) -> Result<Vec<FieldProblem>, DecodeError> {
    let text = text(payload)?;
    // Two scans the compiler vectorises (one that did both, byte by
    // byte, was a twelfth of an acknowledged line's instructions).
    let bytes = text.as_bytes();
    if bytes.contains(&b'\n') {
        return Err(DecodeError::CsvMultipleLines {
            lines: text.lines().count(),
        });
    }
    let found = bytes.iter().filter(|&&b| b == b',').count() + 1;
    if found != columns.len() {
        return Err(DecodeError::CsvColumnCount {
            expected: columns.len(),
            found,
        });
    }
    let mut line = Line {
        when: When::arrival(ctx.now),
        named: [None; DEVICE_COLUMNS.len()],
        problems: Vec::new(),
    };
    // Device and time first, whatever their place: every reading of the
    // line carries them. Only their columns are walked when they lead.
    let ahead = if layout.leading {
        layout.first_value
    } else {
        layout.roles.len()
    };
    let mut fields = Fields(Some(text));
    let leading = layout.roles[..ahead].iter().zip(&columns[..ahead]);
    for ((&role, column), field) in leading.zip(fields.by_ref()) {
        line.note(role, column, field);
    }
    let named;
    let device = match ctx.device {
        Some(d) => d,
        None => {
            let found = line
                .named
                .iter()
                .zip(DEVICE_KINDS)
                .find_map(|(id, kind)| Some(((*id)?, kind)))
                .ok_or(DecodeError::NoDevice);
            let id = found.and_then(|(id, kind)| match known(id.as_bytes(), kind) {
                Some(d) => Ok(d),
                None => super::device_id_of_kind(id, kind),
            });
            named = match id {
                Ok(d) => d,
                // A header's device column holds its name (`mac`).
                Err(_) if is_header(text, layout) => return Err(DecodeError::CsvHeader),
                Err(e) => return Err(e),
            };
            &named
        }
    };
    let (from, mut fields) = if layout.leading {
        (ahead, fields)
    } else {
        (0, Fields(Some(text)))
    };
    let start = readings.len();
    let mut candidates = 0;
    for (i, &role) in layout.roles.iter().enumerate().skip(from) {
        let Some(field) = fields.next() else { break };
        if role != Role::Value || field.is_empty() {
            continue;
        }
        candidates += 1;
        let column = &columns[i];
        match super::decimal::parse(field) {
            // The only refusal of `Reading::new` is a non-finite value
            // ("nan", "1e400").
            Some(v) => match Reading::new(
                device.clone(),
                column.clone(),
                v,
                line.when.time,
                line.when.source,
            ) {
                Ok(r) => readings.push(r),
                Err(_) => line.problem(column, FieldReason::NotFinite),
            },
            None => line.problem(column, FieldReason::NotNumeric),
        }
    }
    if candidates == 0 {
        readings.truncate(start);
        return Err(DecodeError::NoValues);
    }
    if readings.len() == start && is_header(text, layout) {
        return Err(DecodeError::CsvHeader);
    }
    Ok(line.problems)
}

/// Whether a line is a header: every field is a word (it has a letter and
/// is no number), none empty, no two values alike (a sensor printing
/// `err` in every column is broken, not starting), and a time column holds
/// no time. A line whose time or device field is data (`1732000000,ERR`:
/// a device reporting an error token in place of its value) is data with
/// a bad value, counted as such, not a header. Only asked of a line that
/// yielded nothing, so it costs the good lines nothing.
fn is_header(text: &str, layout: &Layout) -> bool {
    let word =
        |f: &str| f.bytes().any(|b| b.is_ascii_alphabetic()) && super::decimal::parse(f).is_none();
    let mut names: Vec<&str> = Vec::with_capacity(layout.roles.len());
    for (field, role) in Fields(Some(text)).zip(&layout.roles) {
        // An RFC 3339 time has letters (`T`, `Z`): a word, and still data.
        if !word(field) || (*role == Role::Time && text_time(field).is_some()) {
            return false;
        }
        if *role == Role::Value {
            names.push(field);
        }
    }
    let distinct = names
        .iter()
        .enumerate()
        .all(|(i, a)| !names[..i].iter().any(|b| a.eq_ignore_ascii_case(b)));
    !names.is_empty() && distinct
}

/// The line nearly every node prints, read in one walk of its bytes: a
/// device field (or none) and then numbers as [`super::decimal`] reads
/// them without the general parser, every field printable ASCII, as many
/// fields as columns, at least one value and not one problem. For such a
/// line it adds what the general path below would add; anything else (a
/// space, a quote, an exponent, a missing field or device, a BOM) it
/// leaves to that path, adding nothing (`None`). The general path's UTF-8
/// check, trims and counting scans were about a quarter of the
/// instructions of a BME680 line's decode (callgrind).
fn decode_plain(
    payload: &[u8],
    columns: &[MetricName],
    layout: &Layout,
    ctx: &Context,
    known: &mut dyn FnMut(&[u8], IdKind) -> Option<DeviceId>,
    readings: &mut Vec<Reading>,
) -> Option<()> {
    let shape = layout.plain?;
    // A line ending in CRLF: the general path trims the CR too.
    let line = payload.strip_suffix(b"\r").unwrap_or(payload);
    let mut fields = line.split(|&b| b == b',');
    let named;
    let device = match shape {
        Plain::DeviceFirst => {
            let text = fields.next()?;
            if !text.iter().all(|b| (b'!'..=b'~').contains(b)) {
                return None;
            }
            match ctx.device {
                Some(given) => given,
                None if text.is_empty() => return None,
                None => {
                    let kind = match layout.roles.first() {
                        Some(Role::Device(rank)) => DEVICE_KINDS.get(*rank).copied()?,
                        _ => return None,
                    };
                    // By its bytes: a node's device is found without the
                    // UTF-8 check, which was 80 of a line's instructions.
                    // One that is not an id of its column's kind is left
                    // to the general path, which says why.
                    named = match known(text, kind) {
                        Some(d) => d,
                        None => {
                            super::device_id_of_kind(std::str::from_utf8(text).ok()?, kind).ok()?
                        }
                    };
                    &named
                }
            }
        }
        Plain::ValuesOnly => ctx.device?,
    };
    let values = match shape {
        Plain::DeviceFirst => columns.get(1..)?,
        Plain::ValuesOnly => columns,
    };
    let start = readings.len();
    let taken = values.iter().try_for_each(|column| {
        let field = fields.next()?;
        // An empty field: no value this time, as on the general path.
        if field.is_empty() {
            return Some(());
        }
        let value = super::decimal::plain_bytes(field)?;
        let reading = Reading::new(
            device.clone(),
            column.clone(),
            value,
            ctx.now,
            TimeSource::Arrival,
        );
        readings.push(reading.ok()?);
        Some(())
    });
    if taken.is_none() || fields.next().is_some() || readings.len() == start {
        readings.truncate(start);
        return None;
    }
    Some(())
}

/// What the device and time columns of one line said, and its problems.
struct Line<'a> {
    when: When,
    /// The first non-empty field of each [`DEVICE_COLUMNS`] name.
    named: [Option<&'a str>; DEVICE_COLUMNS.len()],
    /// A bad time field first (device and time are read first), then the
    /// values' in column order.
    problems: Vec<FieldProblem>,
}

impl<'a> Line<'a> {
    fn note(&mut self, role: Role, column: &MetricName, field: &'a str) {
        match role {
            Role::Value => {}
            _ if field.is_empty() => {}
            Role::Device(rank) => {
                self.named[rank].get_or_insert(field);
            }
            Role::Time => match text_time(field) {
                Some(t) => self.when = When::event(t),
                None => self.problem(column, FieldReason::BadTimestamp),
            },
        }
    }

    fn problem(&mut self, column: &MetricName, reason: FieldReason) {
        self.problems
            .push(FieldProblem::new(column.as_str(), reason));
    }
}

/// The fields of a line, each trimmed: what `text.split(',').map(str::trim)`
/// gives, found by a plain byte loop (the fields are a few bytes long, and
/// the searcher `split` sets up per field cost more than the search) and
/// trimmed only when an end is not plainly printable ASCII.
#[derive(Clone)]
struct Fields<'a>(Option<&'a str>);

impl<'a> Iterator for Fields<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.0?;
        let (field, next) = match rest.bytes().position(|b| b == b',') {
            // A comma is ASCII: both cuts are character boundaries.
            Some(i) => (rest.get(..i), rest.get(i + 1..)),
            None => (Some(rest), None),
        };
        self.0 = next;
        let field = field.unwrap_or_default();
        let plain = |b: Option<&u8>| b.is_some_and(|b| (b'!'..=b'~').contains(b));
        let bytes = field.as_bytes();
        if plain(bytes.first()) && plain(bytes.last()) {
            Some(field)
        } else {
            Some(field.trim())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::*;
    use super::super::{decode, DecodeError, FieldReason, IdKind, PayloadFormat};
    use gateway_core::TimeSource::{Arrival, Event};

    fn csv(columns: &[&str]) -> PayloadFormat {
        PayloadFormat::Csv {
            columns: columns.iter().map(|c| metric(c)).collect(),
        }
    }

    #[test]
    fn lines() {
        let d = dev("bme680");
        let c = ctx(Some(&d), None);
        let bme = csv(&["temperature", "pressure", "humidity", "gas"]);
        let stamped = csv(&["ts", "temperature", "humidity"]);
        let stamped_ms = csv(&["timestamp", "t"]);
        let all = |t: i64, s| {
            ok(
                vec![
                    r("bme680", "temperature", 21.3, t, s),
                    r("bme680", "pressure", 1013.2, t, s),
                    r("bme680", "humidity", 45.1, t, s),
                    r("bme680", "gas", 12000.0, t, s),
                ],
                vec![],
            )
        };
        let cases: Vec<(&str, &PayloadFormat, &[u8], Want)> = vec![
            (
                "the example",
                &bme,
                b"21.3,1013.2,45.1,12000",
                all(NOW, Arrival),
            ),
            (
                "trailing LF",
                &bme,
                b"21.3,1013.2,45.1,12000\n",
                all(NOW, Arrival),
            ),
            (
                "trailing CRLF",
                &bme,
                b"21.3,1013.2,45.1,12000\r\n",
                all(NOW, Arrival),
            ),
            (
                "spaces around fields",
                &bme,
                b" 21.3 , 1013.2,45.1 ,12000",
                all(NOW, Arrival),
            ),
            (
                "empty field skipped silently",
                &bme,
                b"21.3,,45.1,",
                ok(
                    vec![
                        r("bme680", "temperature", 21.3, NOW, Arrival),
                        r("bme680", "humidity", 45.1, NOW, Arrival),
                    ],
                    vec![],
                ),
            ),
            (
                "non-numeric and non-finite fields dropped, others kept",
                &bme,
                b"21.3,err,nan,1e400",
                ok(
                    vec![r("bme680", "temperature", 21.3, NOW, Arrival)],
                    vec![
                        p("pressure", FieldReason::NotNumeric),
                        p("humidity", FieldReason::NotFinite),
                        p("gas", FieldReason::NotFinite),
                    ],
                ),
            ),
            (
                "ts column, RFC 3339",
                &stamped,
                b"2026-11-21T10:00:00Z,21.5,40",
                ok(
                    vec![
                        r("bme680", "temperature", 21.5, T0, Event),
                        r("bme680", "humidity", 40.0, T0, Event),
                    ],
                    vec![],
                ),
            ),
            (
                "ts column, epoch seconds",
                &stamped,
                b"1795255200,21.5,40",
                ok(
                    vec![
                        r("bme680", "temperature", 21.5, T0, Event),
                        r("bme680", "humidity", 40.0, T0, Event),
                    ],
                    vec![],
                ),
            ),
            (
                "ts column, epoch milliseconds",
                &stamped_ms,
                b"1795255200250,1",
                ok(vec![r("bme680", "t", 1.0, T0 + 250, Event)], vec![]),
            ),
            (
                "empty ts: arrival time, no problem",
                &stamped,
                b",21.5,40",
                ok(
                    vec![
                        r("bme680", "temperature", 21.5, NOW, Arrival),
                        r("bme680", "humidity", 40.0, NOW, Arrival),
                    ],
                    vec![],
                ),
            ),
            (
                "bad ts: problem and arrival time",
                &stamped,
                b"soon,21.5,",
                ok(
                    vec![r("bme680", "temperature", 21.5, NOW, Arrival)],
                    vec![p("ts", FieldReason::BadTimestamp)],
                ),
            ),
            (
                "one field missing: refused whole",
                &bme,
                b"21.3,1013.2,45.1",
                Err(DecodeError::CsvColumnCount {
                    expected: 4,
                    found: 3,
                }),
            ),
            (
                "one field too many: refused whole",
                &bme,
                b"21.3,1013.2,45.1,12000,7",
                Err(DecodeError::CsvColumnCount {
                    expected: 4,
                    found: 5,
                }),
            ),
            (
                "two lines",
                &bme,
                b"21.3,1013.2,45.1,12000\n21.4,1013.1,45.0,12001\n",
                Err(DecodeError::CsvMultipleLines { lines: 2 }),
            ),
            (
                "only empty fields",
                &bme,
                b",,,",
                Err(DecodeError::NoValues),
            ),
            (
                "only a time",
                &stamped,
                b"1795255200,,",
                Err(DecodeError::NoValues),
            ),
            ("empty", &bme, b"\r\n", Err(DecodeError::Empty)),
            (
                "invalid UTF-8",
                &bme,
                b"1,2,\xfe,4",
                Err(DecodeError::NotUtf8 { valid_up_to: 4 }),
            ),
        ];
        for (label, format, payload, want) in cases {
            assert_decoded(label, decode(format, payload, &c), want);
        }
        assert_decoded(
            "no device",
            decode(&bme, b"1,2,3,4", &ctx(None, None)),
            Err(DecodeError::NoDevice),
        );
    }

    #[test]
    fn a_mac_or_device_column_names_the_device_when_the_context_does_not() {
        let relay = csv(&["mac", "temperature", "humidity"]);
        assert_decoded(
            "mac column",
            decode(&relay, b"24:6f:28:aa:bb:01,21.5,40", &ctx(None, None)),
            ok(
                vec![
                    r("24:6f:28:aa:bb:01", "temperature", 21.5, NOW, Arrival),
                    r("24:6f:28:aa:bb:01", "humidity", 40.0, NOW, Arrival),
                ],
                vec![],
            ),
        );
        let d = dev("topic-device");
        assert_decoded(
            "the context wins, and the column is still no metric",
            decode(&relay, b"24:6f:28:aa:bb:01,21.5,", &ctx(Some(&d), None)),
            ok(
                vec![r("topic-device", "temperature", 21.5, NOW, Arrival)],
                vec![],
            ),
        );
        assert_decoded(
            "empty mac",
            decode(&relay, b",21.5,40", &ctx(None, None)),
            Err(DecodeError::NoDevice),
        );
        assert!(matches!(
            decode(&relay, b"a/b,21.5,40", &ctx(None, None)),
            Err(DecodeError::InvalidDevice { .. })
        ));
    }

    /// A `mac` column holds a MAC in any notation and nothing else: the
    /// ESP32's boot noise glued to the first line makes no device, on the
    /// one-walk path and the general one (a space, a CR) alike.
    #[test]
    fn a_mac_column_takes_only_macs() {
        let relay = csv(&["mac", "temperature", "humidity"]);
        let kitchen = |t| {
            ok(
                vec![
                    r("a2:b2:c2:d2:e2:f2", "temperature", t, NOW, Arrival),
                    r("a2:b2:c2:d2:e2:f2", "humidity", 40.0, NOW, Arrival),
                ],
                vec![],
            )
        };
        for line in [
            &b"A2:B2:C2:D2:E2:F2,21.5,40.0"[..],
            b"a2-b2-c2-d2-e2-f2,21.5,40.0",
            b"A2B2C2D2E2F2,21.5,40.0",
            b" a2:b2:c2:d2:e2:f2 ,21.5, 40.0\r",
        ] {
            let label = String::from_utf8_lossy(line);
            assert_decoded(
                &label,
                decode(&relay, line, &ctx(None, None)),
                kitchen(21.5),
            );
        }
        for noise in [
            &b"rl~lxA2:B2:C2:D2:E2:F2,21.5,40.0"[..],
            b"rl~lxA2:B2:C2:D2:E2:F2,21.5,40.0\r",
            b"\x00A2:B2:C2:D2:E2:F2,21.5,40.0",
            b"A2:B2:C2:D2:E2,21.5,40.0",
        ] {
            let got = decode(&relay, noise, &ctx(None, None));
            assert!(
                matches!(&got, Err(DecodeError::InvalidDevice { .. })),
                "{:?}: {got:?}",
                String::from_utf8_lossy(noise)
            );
        }
        // A `device` column takes any id.
        let named = csv(&["device", "temperature"]);
        assert_decoded(
            "device column",
            decode(&named, b"hall-2,21.5", &ctx(None, None)),
            ok(vec![r("hall-2", "temperature", 21.5, NOW, Arrival)], vec![]),
        );
    }

    #[test]
    fn a_header_line_is_refused_once_as_a_header() {
        let d = dev("bme680");
        let bme = csv(&["temperature", "pressure", "humidity", "gas"]);
        let relay = csv(&["mac", "temperature", "humidity"]);
        let stamped = csv(&["ts", "temperature", "humidity"]);
        for (format, line, context) in [
            (
                &bme,
                &b"temperature,pressure,humidity,gas"[..],
                ctx(Some(&d), None),
            ),
            (
                &bme,
                b"Temp (C), Pressure (hPa), RH, Gas\r",
                ctx(Some(&d), None),
            ),
            (&relay, b"mac,temperature,humidity", ctx(None, None)),
            (&stamped, b"ts,temperature,humidity", ctx(Some(&d), None)),
        ] {
            let label = String::from_utf8_lossy(line);
            assert_decoded(
                &label,
                decode(format, line, &context),
                Err(DecodeError::CsvHeader),
            );
        }
        // Not headers: a value among the words, an empty field, or values.
        assert_decoded(
            "one broken channel",
            decode(&bme, b"21.3,err,45.1,12000", &ctx(Some(&d), None)),
            ok(
                vec![
                    r("bme680", "temperature", 21.3, NOW, Arrival),
                    r("bme680", "humidity", 45.1, NOW, Arrival),
                    r("bme680", "gas", 12000.0, NOW, Arrival),
                ],
                vec![p("pressure", FieldReason::NotNumeric)],
            ),
        );
        assert_decoded(
            "every channel broken alike",
            decode(&bme, b"err,err,err,err", &ctx(Some(&d), None)),
            ok(
                vec![],
                ["temperature", "pressure", "humidity", "gas"]
                    .map(|c| p(c, FieldReason::NotNumeric))
                    .to_vec(),
            ),
        );
        // A device reporting an error token in place of its value, after a
        // time that is one: data with a bad value, not a header (it was
        // refused as `csv_header`, and not counted as a bad value).
        let logged = csv(&["ts", "temperature"]);
        for line in [&b"1732000000,ERR"[..], b"2024-11-19T07:06:40Z,ERR"] {
            assert_decoded(
                &String::from_utf8_lossy(line),
                decode(&logged, line, &ctx(Some(&d), None)),
                ok(vec![], vec![p("temperature", FieldReason::NotNumeric)]),
            );
        }
        assert_decoded(
            "a stamped line of error tokens",
            decode(&stamped, b"1732000000,ERR,FAIL", &ctx(Some(&d), None)),
            ok(
                vec![],
                vec![
                    p("temperature", FieldReason::NotNumeric),
                    p("humidity", FieldReason::NotNumeric),
                ],
            ),
        );
        assert_decoded(
            "every channel broken but one empty",
            decode(&bme, b"err,err,,err", &ctx(Some(&d), None)),
            ok(
                vec![],
                vec![
                    p("temperature", FieldReason::NotNumeric),
                    p("pressure", FieldReason::NotNumeric),
                    p("gas", FieldReason::NotNumeric),
                ],
            ),
        );
    }

    /// Device and time columns after the values (the relay's own order)
    /// decode as they do in front: read before any value, `device`
    /// preferred to `mac`, a bad time reported first.
    #[test]
    fn device_and_time_columns_anywhere_decode_as_in_front() {
        let at = 1_795_255_200_000;
        let readings = |device: &str, source| {
            vec![
                r(
                    device,
                    "t",
                    21.5,
                    if source == Event { at } else { NOW },
                    source,
                ),
                r(
                    device,
                    "h",
                    40.0,
                    if source == Event { at } else { NOW },
                    source,
                ),
            ]
        };
        let cases: [(&[&str], &[u8], Want); 7] = [
            (
                &["device", "ts", "t", "h"],
                b"n1,1795255200000,21.5,40",
                ok(readings("n1", Event), vec![]),
            ),
            (
                &["t", "h", "ts", "device"],
                b"21.5,40,1795255200000,n1",
                ok(readings("n1", Event), vec![]),
            ),
            (
                &["t", "ts", "h", "device"],
                b"21.5,1795255200000,40,n1",
                ok(readings("n1", Event), vec![]),
            ),
            (
                &["mac", "t", "h", "device"],
                b"m1,21.5,40,n1",
                ok(readings("n1", Arrival), vec![]),
            ),
            (
                &["mac", "t", "h", "device"],
                b"AA-BB-CC-DD-EE-01,21.5,40,",
                ok(readings("aa:bb:cc:dd:ee:01", Arrival), vec![]),
            ),
            (
                &["t", "h", "ts"],
                b"21.5,x,yesterday",
                ok(
                    vec![r("d", "t", 21.5, NOW, Arrival)],
                    vec![
                        p("ts", FieldReason::BadTimestamp),
                        p("h", FieldReason::NotNumeric),
                    ],
                ),
            ),
            (
                &["t", "h", "device"],
                b"21.5,40,",
                Err(DecodeError::NoDevice),
            ),
        ];
        let d = dev("d");
        for (columns, line, want) in cases {
            let names_device = columns.iter().any(|c| super::DEVICE_COLUMNS.contains(c));
            let context = ctx((!names_device).then_some(&d), None);
            assert_decoded(
                &format!("{columns:?}"),
                decode(&csv(columns), line, &context),
                want,
            );
        }
    }

    #[test]
    fn fields_are_split_and_trimmed_as_split_and_trim_would() {
        for line in [
            "a,b,c",
            " 21.5 , 40,\t1013 ",
            ",,",
            "",
            "x",
            "\u{a0}21.5\u{a0},é, ü ,\u{2003}",
            "1,2,",
            ",1",
        ] {
            let ours: Vec<&str> = super::Fields(Some(line)).collect();
            let std: Vec<&str> = line.split(',').map(str::trim).collect();
            assert_eq!(ours, std, "{line:?}");
        }
    }

    /// Pieces that tell the one-walk reader's lines from the others: signs,
    /// points, exponents, spaces, CR, LF, quotes, a BOM, non-ASCII, too
    /// many digits, empty and missing fields.
    const PIECES: [&str; 28] = [
        "21.30",
        "-4",
        "1013.2",
        "0",
        "12000.00",
        "-",
        ".",
        "-.5",
        "5.",
        "1.2.3",
        "1e3",
        "+5",
        "nan",
        " ",
        "\r",
        "\n",
        "\"7\"",
        "\u{feff}",
        "é",
        "",
        ",",
        ",",
        ",",
        "sensor-1",
        "AA:BB",
        "bad id!",
        "12345678901234567890",
        "9007199254740993",
    ];

    /// Fields as nodes print them, empty ones included.
    const FIELDS: [&str; 12] = [
        "21.30",
        "-4",
        "1013.2",
        "0",
        "12000.00",
        "-.5",
        "5.",
        "",
        "sensor-1",
        "AA:BB",
        "A2:B2:C2:D2:E2:F2",
        "a2-b2-c2-d2-e2-f2",
    ];

    /// The one-walk reader adds what the general path adds and returns
    /// what it returns, on lines made of [`PIECES`], for every shape it
    /// reads and one it leaves alone, with and without a given device.
    #[test]
    fn the_one_walk_reader_agrees_with_the_general_path() {
        let layouts: [&[&str]; 4] = [
            &["device", "temperature", "pressure", "humidity"],
            &["temperature", "pressure"],
            &["mac", "temperature"],
            &["device", "ts", "temperature"],
        ];
        let given = dev("given");
        let before = r("earlier", "t", 1.0, NOW, Arrival);
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |below: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % below as u64) as usize
        };
        let mut plain_lines = 0;
        for _ in 0..30_000 {
            let names = layouts[next(layouts.len())];
            let columns: Vec<_> = names.iter().map(|c| metric(c)).collect();
            let layout = super::Layout::new(&columns);
            // Mostly fields of the right count and kind, each sometimes
            // any piece; otherwise pieces run together.
            let mut line: String = if next(4) == 0 {
                (0..1 + next(9))
                    .map(|_| PIECES[next(PIECES.len())])
                    .collect()
            } else {
                let count = columns.len() + next(5) / 4 - usize::from(next(9) == 0);
                let fields: Vec<&str> = (0..count)
                    .map(|_| match next(10) {
                        0 => PIECES[next(PIECES.len())],
                        _ => FIELDS[next(FIELDS.len())],
                    })
                    .collect();
                fields.join(",")
            };
            if next(8) == 0 {
                line.push('\r');
            }
            for device in [None, Some(&given)] {
                let context = ctx(device, None);
                // A connection's cache, which knows one id of each kind.
                let mut known = |t: &[u8], kind| match kind {
                    IdKind::Any => (t == b"sensor-1").then(|| dev("sensor-1")),
                    IdKind::Mac => (t == b"A2:B2:C2:D2:E2:F2").then(|| dev("a2:b2:c2:d2:e2:f2")),
                };
                let (mut fast, mut general) = (vec![before.clone()], vec![before.clone()]);
                let bytes = line.as_bytes();
                let got =
                    super::decode_into(bytes, &columns, &layout, &context, &mut known, &mut fast);
                let want = super::decode_general(
                    bytes,
                    &columns,
                    &layout,
                    &context,
                    &mut known,
                    &mut general,
                );
                assert_eq!(got, want, "{names:?} {line:?} given {device:?}");
                assert_eq!(fast, general, "{names:?} {line:?} given {device:?}");
                let mut probe = Vec::new();
                if super::decode_plain(bytes, &columns, &layout, &context, &mut known, &mut probe)
                    .is_some()
                {
                    plain_lines += 1;
                }
            }
        }
        // Both readers were exercised, not one alone.
        assert!(plain_lines > 1_000, "{plain_lines} lines read in one walk");
        assert!(plain_lines < 50_000, "{plain_lines} lines read in one walk");
    }

    /// What nodes print goes the one-walk way: if it stopped, nothing would
    /// fail but the cost.
    #[test]
    fn node_lines_are_read_in_one_walk() {
        let columns: Vec<_> = ["device", "temperature", "pressure", "humidity", "gas"]
            .iter()
            .map(|c| metric(c))
            .collect();
        let layout = super::Layout::new(&columns);
        let context = ctx(None, None);
        for line in [
            &b"sim-00001,21.30,1013.20,45.10,12000.00"[..],
            b"sim-00001,-4,1013,45.1,\r",
            b"AA:BB:CC:DD:EE:FF,21.3,,45.1,12000",
        ] {
            let mut readings = Vec::new();
            let read = super::decode_plain(
                line,
                &columns,
                &layout,
                &context,
                &mut |_, _| None,
                &mut readings,
            );
            assert!(read.is_some(), "{:?}", String::from_utf8_lossy(line));
            assert!(!readings.is_empty());
        }
    }

    #[test]
    fn a_megabyte_of_commas_is_a_count_error() {
        let d = dev("bme680");
        let junk = ",".repeat(1 << 20);
        let bme = csv(&["a", "b"]);
        let err = decode(&bme, junk.as_bytes(), &ctx(Some(&d), None)).unwrap_err();
        assert_eq!(
            err,
            DecodeError::CsvColumnCount {
                expected: 2,
                found: (1 << 20) + 1
            }
        );
    }
}
