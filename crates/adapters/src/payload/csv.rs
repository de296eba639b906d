//! One line of comma-separated values: `21.3,1013.2,45.1,12000`.
//!
//! The columns come from the config, not the payload, so a line with a
//! missing or extra field is refused whole: every value after the gap would
//! land in the wrong metric. No quoting: sensor firmwares that send CSV do
//! not quote numbers, and a quoted field is reported as not numeric.

use gateway_core::MetricName;

use super::{text, text_time, Context, DecodeError, Decoded, FieldReason, When, TIME_KEYS};

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
    let lines = text.lines().count();
    if lines > 1 {
        return Err(DecodeError::CsvMultipleLines { lines });
    }
    let fields: Vec<&str> = text.split(',').map(str::trim).collect();
    if fields.len() != columns.len() {
        return Err(DecodeError::CsvColumnCount {
            expected: columns.len(),
            found: fields.len(),
        });
    }
    let device = ctx.device.ok_or(DecodeError::NoDevice)?;
    let mut out = Decoded::default();
    let is_time = |c: &MetricName| TIME_KEYS.contains(&c.as_str());
    let mut when = When::arrival(ctx.now);
    for (column, field) in columns.iter().zip(&fields) {
        if is_time(column) && !field.is_empty() {
            match text_time(field) {
                Some(t) => when = When::event(t),
                None => out.problem(column.as_str(), FieldReason::BadTimestamp),
            }
        }
    }
    let mut candidates = 0;
    for (column, field) in columns.iter().zip(&fields) {
        if is_time(column) || field.is_empty() {
            continue;
        }
        candidates += 1;
        match field.parse::<f64>() {
            // Non-finite values ("nan", "1e400") fail in `push` as NotFinite.
            Ok(v) => out.push(device, column.as_str(), column.as_str(), v, when),
            Err(_) => out.problem(column.as_str(), FieldReason::NotNumeric),
        }
    }
    if candidates == 0 {
        return Err(DecodeError::NoValues);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::*;
    use super::super::{decode, DecodeError, FieldReason, PayloadFormat};
    use gateway_core::TimeSource::{Arrival, Event};

    /// 2026-11-21T10:00:00Z.
    const T0: i64 = 1_795_255_200_000;

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
