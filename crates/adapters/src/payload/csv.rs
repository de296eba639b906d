//! One line of comma-separated values: `21.3,1013.2,45.1,12000`.
//!
//! The columns come from the config, not the payload, so a line with a
//! missing or extra field is refused whole: every value after the gap would
//! land in the wrong metric. No quoting: sensor firmwares that send CSV do
//! not quote numbers, and a quoted field is reported as not numeric.
//!
//! A column named `device` or `mac` names the device when the context does
//! not (a relay board printing one line per client it hears); it is never a
//! metric.

use gateway_core::{DeviceId, MetricName};

use super::{text, text_time, Context, DecodeError, Decoded, FieldReason, When, TIME_KEYS};

/// Columns naming the device, in order of preference.
pub(crate) const DEVICE_COLUMNS: [&str; 2] = ["device", "mac"];

/// Decodes one CSV line. An empty field is a sensor saying "no value this
/// time" and is skipped silently; a line of only empty fields is
/// [`DecodeError::NoValues`]. A column named `ts`, `time` or `timestamp` is
/// the event time, parsed like a JSON time (RFC 3339 or epoch s/ms).
pub(super) fn decode(
    payload: &[u8],
    columns: &[MetricName],
    ctx: &Context,
) -> Result<Decoded, DecodeError> {
    decode_with(payload, columns, ctx, &mut |_| None)
}

/// [`decode`], a device column's text turned into an id by `known` first
/// (a per-connection cache of the ids lines named lately), and only when
/// it does not know the text, checked and allocated here.
pub(crate) fn decode_with(
    payload: &[u8],
    columns: &[MetricName],
    ctx: &Context,
    known: &mut dyn FnMut(&str) -> Option<DeviceId>,
) -> Result<Decoded, DecodeError> {
    let text = text(payload)?;
    // One scan for both: a second line, and the field count.
    let (mut commas, mut newline) = (0usize, false);
    for &b in text.as_bytes() {
        commas += usize::from(b == b',');
        newline |= b == b'\n';
    }
    if newline {
        return Err(DecodeError::CsvMultipleLines {
            lines: text.lines().count(),
        });
    }
    let found = commas + 1;
    if found != columns.len() {
        return Err(DecodeError::CsvColumnCount {
            expected: columns.len(),
            found,
        });
    }
    // The fields are walked again where needed rather than collected: a
    // vector per line was one more allocation on the hottest path.
    let fields = || Fields(Some(text));
    let named;
    let device = match ctx.device {
        Some(d) => d,
        None => {
            let id = named_device(columns, fields()).ok_or(DecodeError::NoDevice)?;
            named = match known(id) {
                Some(d) => d,
                None => super::named_device_id(id)?,
            };
            &named
        }
    };
    let mut out = Decoded::default();
    out.readings.reserve(columns.len());
    let mut when = When::arrival(ctx.now);
    if columns.iter().any(|c| is_time(c.as_str())) {
        for (column, field) in columns.iter().zip(fields()) {
            if is_time(column.as_str()) && !field.is_empty() {
                match text_time(field) {
                    Some(t) => when = When::event(t),
                    None => out.problem(column.as_str(), FieldReason::BadTimestamp),
                }
            }
        }
    }
    let mut candidates = 0;
    for (column, field) in columns.iter().zip(fields()) {
        let name = column.as_str();
        if field.is_empty() || is_time(name) || is_device(name) {
            continue;
        }
        candidates += 1;
        match field.parse::<f64>() {
            // Non-finite values ("nan", "1e400") fail in `push` as NotFinite.
            Ok(v) => out.push_metric(device, name, column.clone(), v, when),
            Err(_) => out.problem(name, FieldReason::NotNumeric),
        }
    }
    if candidates == 0 {
        return Err(DecodeError::NoValues);
    }
    Ok(out)
}

fn is_time(column: &str) -> bool {
    TIME_KEYS.contains(&column)
}

fn is_device(column: &str) -> bool {
    DEVICE_COLUMNS.contains(&column)
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

fn named_device<'a>(
    columns: &[MetricName],
    fields: impl Iterator<Item = &'a str> + Clone,
) -> Option<&'a str> {
    DEVICE_COLUMNS.iter().find_map(|name| {
        columns
            .iter()
            .zip(fields.clone())
            .find(|(c, f)| c.as_str() == *name && !f.is_empty())
            .map(|(_, f)| f)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::*;
    use super::super::{decode, DecodeError, FieldReason, PayloadFormat};
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
