//! One line of InfluxDB line protocol:
//! `bme680,device=lab temperature=21.5,gas=12000i 1795255200000000000`.
//!
//! The `device` tag names the device, else the measurement does (a
//! Telegraf-style `bme680 temperature=21.5` is device `bme680`); other tags
//! are ignored. Fields become metrics: floats, integers (`12i`, `12u`) and
//! booleans (`t`, `false`, … as 1/0); a string field is dropped as not
//! numeric. The optional timestamp is in nanoseconds (the protocol's
//! default precision) and is the event time; one that is no such number
//! refuses the line, as InfluxDB refuses it (taken at arrival time, it was
//! acknowledged as if good). A field named twice keeps its last value, as
//! InfluxDB keeps it, the earlier one reported as a `duplicate` problem
//! (both were readings: two values of one metric at one time).
//!
//! Escapes follow the reference: `\,` `\ ` `\=` in names and tags, `\"`
//! and `\\` inside string values. The parser is total: any byte sequence
//! ends in readings or a [`DecodeError::InvalidLineProtocol`].

use std::collections::HashSet;

use gateway_core::Timestamp;

use super::{text, Context, DecodeError, Decoded, FieldReason, When};

/// The tag naming the device.
const DEVICE_TAG: &str = "device";

/// Nanoseconds per millisecond: line protocol stamps are in ns.
const NANOS_PER_MILLI: i64 = 1_000_000;

fn invalid(reason: &str) -> DecodeError {
    DecodeError::InvalidLineProtocol {
        reason: reason.to_string(),
    }
}

/// Splits `s` at each unescaped `sep` outside double quotes (quotes count
/// only where `quotes` is set: in the field set).
fn split_unescaped(s: &str, sep: char, quotes: bool) -> Result<Vec<&str>, DecodeError> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' if quotes => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    if quoted {
        return Err(invalid("unterminated string field"));
    }
    parts.push(&s[start..]);
    Ok(parts)
}

/// `key=value` at the first unescaped `=`.
fn key_value(s: &str) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '=' {
            return Some((&s[..i], &s[i + 1..]));
        }
    }
    None
}

/// Drops the backslash of `\,`, `\ `, `\=`, `\"` and `\\`.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(&next) = chars.peek() {
                if matches!(next, ',' | ' ' | '=' | '"' | '\\') {
                    out.push(next);
                    chars.next();
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

/// A field value as a number, `None` for a string (or anything else).
fn field_value(v: &str) -> Option<f64> {
    match v {
        "t" | "T" | "true" | "True" | "TRUE" => return Some(1.0),
        "f" | "F" | "false" | "False" | "FALSE" => return Some(0.0),
        _ => {}
    }
    if let Some(int) = v.strip_suffix('i') {
        return int.parse::<i64>().ok().map(|n| n as f64);
    }
    if let Some(uint) = v.strip_suffix('u') {
        return uint.parse::<u64>().ok().map(|n| n as f64);
    }
    if v.starts_with('"') {
        return None;
    }
    v.parse::<f64>().ok()
}

/// Decodes one line. A comment line (`# …`) holds no values.
pub(super) fn decode(payload: &[u8], ctx: &Context) -> Result<Decoded, DecodeError> {
    let text = text(payload)?;
    if text.starts_with('#') {
        return Err(DecodeError::NoValues);
    }
    // Series key, field set, optional timestamp: separated by unescaped
    // spaces outside quoted strings.
    let sections: Vec<&str> = split_unescaped(text, ' ', true)?
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    let (series, fields, stamp) = match sections.as_slice() {
        [series, fields] => (*series, *fields, None),
        [series, fields, stamp] => (*series, *fields, Some(*stamp)),
        [_] => return Err(invalid("expected a field set after the measurement")),
        _ => return Err(invalid("expected measurement, fields and a timestamp")),
    };
    let mut key = split_unescaped(series, ',', false)?.into_iter();
    let measurement = key.next().unwrap_or_default();
    if measurement.is_empty() {
        return Err(invalid("empty measurement"));
    }
    let mut device_tag = None;
    for tag in key {
        let (k, v) = key_value(tag).ok_or_else(|| invalid("a tag without '='"))?;
        if unescape(k) == DEVICE_TAG && !v.is_empty() {
            device_tag = Some(unescape(v));
        }
    }
    let id = device_tag.unwrap_or_else(|| unescape(measurement));
    let device = match ctx.device {
        Some(d) => d.clone(),
        None => super::named_device_id(&id)?,
    };
    let mut out = Decoded::default();
    let when = match stamp {
        None => When::arrival(ctx.now),
        Some(s) => match s
            .parse::<i64>()
            .ok()
            .and_then(|ns| Timestamp::from_millis(ns.div_euclid(NANOS_PER_MILLI)).ok())
        {
            Some(t) => When::event(t),
            None => {
                return Err(invalid(
                    "the timestamp is no integer of nanoseconds in range",
                ))
            }
        },
    };
    let mut named = Vec::new();
    for field in split_unescaped(fields, ',', true)? {
        let (k, v) = key_value(field).ok_or_else(|| invalid("a field without '='"))?;
        let name = unescape(k);
        if name.is_empty() {
            return Err(invalid("a field without a name"));
        }
        named.push((name, v));
    }
    if named.is_empty() {
        return Err(DecodeError::NoValues);
    }
    // The last of each name wins: marked walking back from the end.
    let mut seen = HashSet::with_capacity(named.len());
    let last: Vec<bool> = named
        .iter()
        .rev()
        .map(|(name, _)| seen.insert(name.as_str()))
        .collect();
    for ((name, v), is_last) in named.iter().zip(last.iter().rev()) {
        if !is_last {
            out.problem(name, FieldReason::Duplicate);
            continue;
        }
        match field_value(v) {
            Some(x) => out.push(&device, name, name, x, when),
            None => out.problem(name, FieldReason::NotNumeric),
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::*;
    use super::super::{decode, DecodeError, FieldReason, PayloadFormat};
    use gateway_core::TimeSource::{Arrival, Event};

    fn same_kind(got: Result<super::Decoded, DecodeError>, label: &str) {
        match got {
            Err(DecodeError::InvalidLineProtocol { reason }) => assert!(!reason.is_empty()),
            other => panic!("{label}: expected invalid line protocol, got {other:?}"),
        }
    }

    #[test]
    fn lines() {
        let c = ctx(None, None);
        let f = PayloadFormat::Influx;
        let cases: Vec<(&str, &[u8], Want)> = vec![
            (
                "measurement names the device, ns timestamp is the event time",
                b"bme680 temperature=21.5,gas=12000i 1795255200000000000",
                ok(
                    vec![
                        r("bme680", "temperature", 21.5, T0, Event),
                        r("bme680", "gas", 12000.0, T0, Event),
                    ],
                    vec![],
                ),
            ),
            (
                "device tag wins; other tags ignored; no timestamp",
                b"env,site=hq,device=lab-1 humidity=40u\r\n",
                ok(vec![r("lab-1", "humidity", 40.0, NOW, Arrival)], vec![]),
            ),
            (
                "booleans, a string dropped",
                b"door open=t,closed=FALSE,label=\"a b,c\"",
                ok(
                    vec![
                        r("door", "open", 1.0, NOW, Arrival),
                        r("door", "closed", 0.0, NOW, Arrival),
                    ],
                    vec![p("label", FieldReason::NotNumeric)],
                ),
            ),
            (
                "escaped space and comma in names",
                b"my\\ room,device=a\\,b t\\=1=2",
                ok(vec![r("a,b", "t=1", 2.0, NOW, Arrival)], vec![]),
            ),
            (
                "a field named twice: the last value, as InfluxDB keeps",
                b"m,device=a t=1,u=5,t=2",
                ok(
                    vec![
                        r("a", "u", 5.0, NOW, Arrival),
                        r("a", "t", 2.0, NOW, Arrival),
                    ],
                    vec![p("t", FieldReason::Duplicate)],
                ),
            ),
            (
                "NaN is not finite",
                b"m t=NaN,u=1",
                ok(
                    vec![r("m", "u", 1.0, NOW, Arrival)],
                    vec![p("t", FieldReason::NotFinite)],
                ),
            ),
            ("comment", b"# a comment", Err(DecodeError::NoValues)),
            ("empty", b"  \r\n", Err(DecodeError::Empty)),
        ];
        for (label, payload, want) in cases {
            assert_decoded(label, decode(&f, payload, &c), want);
        }
        for bad in [
            &b"bme680"[..],
            b"bme680,device temperature=1",
            b"bme680 temperature",
            b",x=1 t=1",
            b"m t=\"open",
            b"m t=1 2 3",
            b"m =1",
            // A timestamp that is none: refused, as InfluxDB refuses it.
            b"m t=1 soon",
            b"m,device=a t=1 notanumber",
            b"m t=1 1.5e18",
            b"m t=1 99999999999999999999",
        ] {
            same_kind(decode(&f, bad, &c), &String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_context_device_wins() {
        let d = dev("given");
        assert_decoded(
            "context",
            decode(
                &PayloadFormat::Influx,
                b"m,device=x t=1",
                &ctx(Some(&d), None),
            ),
            ok(vec![r("given", "t", 1.0, NOW, Arrival)], vec![]),
        );
    }
}
