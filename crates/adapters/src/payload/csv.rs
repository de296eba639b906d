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
    let text = text(payload)?;
    if text.contains('\n') {
        return Err(DecodeError::CsvMultipleLines {
            lines: text.lines().count(),
        });
    }
    // The fields are walked again where needed rather than collected: a
    // vector per line was one more allocation on the hottest path.
    let fields = || text.split(',').map(str::trim);
    let found = text.bytes().filter(|&b| b == b',').count() + 1;
    if found != columns.len() {
        return Err(DecodeError::CsvColumnCount {
            expected: columns.len(),
            found,
        });
    }
    let is_device = |c: &MetricName| DEVICE_COLUMNS.contains(&c.as_str());
    let named;
    let device = match ctx.device {
        Some(d) => d,
        None => {
            named = column_device(columns, fields())?;
            &named
        }
    };
    let mut out = Decoded::default();
    out.readings.reserve(columns.len());
    let is_time = |c: &MetricName| TIME_KEYS.contains(&c.as_str());
    let mut when = When::arrival(ctx.now);
    for (column, field) in columns.iter().zip(fields()) {
        if is_time(column) && !field.is_empty() {
            match text_time(field) {
                Some(t) => when = When::event(t),
                None => out.problem(column.as_str(), FieldReason::BadTimestamp),
            }
        }
    }
    let mut candidates = 0;
    for (column, field) in columns.iter().zip(fields()) {
        if is_time(column) || is_device(column) || field.is_empty() {
            continue;
        }
        candidates += 1;
        match field.parse::<f64>() {
            // Non-finite values ("nan", "1e400") fail in `push` as NotFinite.
            Ok(v) => out.push_metric(device, column.as_str(), column.clone(), v, when),
            Err(_) => out.problem(column.as_str(), FieldReason::NotNumeric),
        }
    }
    if candidates == 0 {
        return Err(DecodeError::NoValues);
    }
    Ok(out)
}

/// The text of the `device` or `mac` field that names the line's device
/// (the first non-empty one, in that order), if the line has the right
/// number of fields; what [`decode`] would take as the device.
#[cfg(any(feature = "tcp_line", feature = "serial"))]
pub(crate) fn device_field<'a>(payload: &'a [u8], columns: &[MetricName]) -> Option<&'a str> {
    let text = text(payload).ok()?;
    let found = text.bytes().filter(|&b| b == b',').count() + 1;
    if text.contains('\n') || found != columns.len() {
        return None;
    }
    named_device(columns, text.split(',').map(str::trim))
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

/// The device a `device` or `mac` column names (the first non-empty one).
fn column_device<'a>(
    columns: &[MetricName],
    fields: impl Iterator<Item = &'a str> + Clone,
) -> Result<DeviceId, DecodeError> {
    let id = named_device(columns, fields).ok_or(DecodeError::NoDevice)?;
    super::named_device_id(id)
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
