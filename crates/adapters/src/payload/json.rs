//! A flat JSON object: `{"temperature":21.5,"humidity":40,"ts":"2026-11-21T10:00:00Z"}`.
//!
//! Every key is a metric except the time keys (`ts`, `time`, `timestamp`) and
//! the device keys (`device`, `id`). The device keys are never metrics, even
//! when the topic names the device: a numeric `id` is an identifier, and
//! averaging it would be nonsense.

use gateway_core::DeviceId;
use serde_json::Value;

use super::{
    epoch_time, text, text_time, Context, DecodeError, Decoded, FieldReason, When, TIME_KEYS,
};
use super::{json_plain, json_text};

/// Keys naming the device when the topic does not, in order of preference.
pub(super) const DEVICE_KEYS: [&str; 2] = ["device", "id"];

/// Decodes a JSON object.
///
/// Values: numbers; booleans as 1/0; strings holding a number (`"21.5"`).
/// Other strings, arrays and objects are text a sensor sends beside its
/// values (`"sensor_id": "meter-01"`, `"fw": "1.2.0"`): ignored, not errors
/// ([`Decoded::ignored`]). `null` and non-finite values (`"NaN"`) are
/// [`FieldProblem`]s (a sensor that failed to read), and the other fields
/// are kept.
///
/// An object without a single value (`{}`, only time and device keys, or
/// only text) is [`DecodeError::NoValues`]: there is nothing to use. An
/// object whose value fields all fail is `Ok` with no readings, so that each
/// field's reason reaches the caller.
///
/// [`FieldProblem`]: super::FieldProblem
///
/// `device_field` (a config's) names the device before [`DEVICE_KEYS`],
/// and is never a metric either.
pub(super) fn decode(
    payload: &[u8],
    ctx: &Context,
    device_field: Option<&str>,
) -> Result<Decoded, DecodeError> {
    let mut out = Decoded::default();
    decode_into(payload, ctx, device_field, &mut out)?;
    Ok(out)
}

/// [`decode`] onto the end of `out`; on an error nothing is added.
pub(super) fn decode_into(
    payload: &[u8],
    ctx: &Context,
    device_field: Option<&str>,
    out: &mut Decoded,
) -> Result<(), DecodeError> {
    let text = text(payload)?;
    if !plain_into(text, ctx, device_field, out) {
        out.absorb(not_plain(text, ctx, device_field)?);
    }
    Ok(())
}

/// [`decode`] of what [`plain_into`] declines, through serde.
fn not_plain(
    text: &str,
    ctx: &Context,
    device_field: Option<&str>,
) -> Result<Decoded, DecodeError> {
    let fields = json_text::object(text)?;
    let device = match ctx.device {
        Some(d) => d.clone(),
        None => payload_device(&fields, device_field)?,
    };
    let mut out = Decoded::default();
    let when = event_time(&fields, ctx, &mut out);
    let mut candidates = 0;
    for (key, value) in &fields {
        if TIME_KEYS.contains(&key.as_str())
            || DEVICE_KEYS.contains(&key.as_str())
            || device_field == Some(key.as_str())
        {
            continue;
        }
        candidates += 1;
        match value {
            Value::Number(n) => match n.as_f64() {
                Some(v) => out.push(&device, key, key, v, when),
                None => out.problem(key, FieldReason::NotNumeric),
            },
            Value::Bool(b) => out.push(&device, key, key, f64::from(u8::from(*b)), when),
            Value::String(s) if json_text::is_non_finite(s) => {
                out.problem(key, FieldReason::NotFinite);
            }
            // Non-finite strings ("NaN", "inf") fail in `push` as NotFinite.
            Value::String(s) => match s.trim().parse::<f64>() {
                Ok(v) => out.push(&device, key, key, v, when),
                Err(_) => out.ignore(&device, key),
            },
            Value::Null => out.problem(key, FieldReason::Null),
            Value::Array(_) | Value::Object(_) => out.ignore(&device, key),
        }
    }
    if candidates == 0 || (out.readings.is_empty() && out.problems.is_empty()) {
        return Err(DecodeError::NoValues);
    }
    Ok(out)
}

/// [`decode`] of an object [`json_plain`] reads, when the context names
/// the device and no key is a time or device key: each field a reading at
/// arrival time, added to the end of `out`. False (nothing added) for
/// anything else, which serde then reads.
fn plain_into(text: &str, ctx: &Context, device_field: Option<&str>, out: &mut Decoded) -> bool {
    let Some(device) = ctx.device else {
        return false;
    };
    let mut fields = json_plain::Fields::default();
    if !json_plain::fields_into(text, &mut fields) {
        return false;
    }
    let special = |key: &str| {
        TIME_KEYS.contains(&key) || DEVICE_KEYS.contains(&key) || device_field == Some(key)
    };
    if fields.iter().any(|(key, _)| special(key)) {
        return false;
    }
    let when = When::arrival(ctx.now);
    for (key, value) in fields.iter() {
        out.push(device, key, key, value, when);
    }
    true
}

/// [`plain_into`] of bytes not yet known to be text, for a device named
/// by its resource (CoAP's `/s/{device}`) and no `device_field`: an
/// object [`json_plain::ascii_fields_each`] reads, without a time or
/// device key, each field a reading at `now` whose metric `metric` names
/// by the key's bytes. False, with nothing added, for anything else and
/// for a key `metric` does not name, which [`decode_into`] then reads.
#[cfg(feature = "coap")]
pub(super) fn ascii_plain_into(
    payload: &[u8],
    device: &DeviceId,
    now: gateway_core::Timestamp,
    max_readings: usize,
    metric: &mut dyn FnMut(&[u8]) -> Option<gateway_core::MetricName>,
    readings: &mut Vec<gateway_core::Reading>,
) -> bool {
    let start = readings.len();
    let most = max_readings.min(json_plain::MAX_FIELDS);
    let read = json_plain::ascii_fields_each(payload, |key, value| {
        if readings.len() - start >= most || special_key(key) {
            return None;
        }
        let metric = metric(key)?;
        // A key read before names a metric taken before: declined as
        // [`json_plain::fields_into`] declines it (as would two keys
        // `metric` gave one name, which the general decode reads then).
        if readings[start..].iter().any(|r| *r.metric() == metric) {
            return None;
        }
        let source = gateway_core::TimeSource::Arrival;
        let reading = gateway_core::Reading::new(device.clone(), metric, value, now, source);
        readings.push(reading.ok()?);
        Some(())
    });
    if !read {
        readings.truncate(start);
    }
    read
}

/// Whether `key` is one of [`TIME_KEYS`] or [`DEVICE_KEYS`], told by its
/// length first: the lists' scan by comparison was a tenth of the fast
/// path's instructions. A test keeps the two in step.
#[cfg(feature = "coap")]
fn special_key(key: &[u8]) -> bool {
    matches!(key, b"ts" | b"time" | b"timestamp" | b"device" | b"id")
}

/// The device named by the payload: the first of `device_field` and
/// [`DEVICE_KEYS`] holding a string or an integer (some firmwares number
/// their nodes).
pub(super) fn payload_device(
    fields: &[(String, Value)],
    device_field: Option<&str>,
) -> Result<DeviceId, DecodeError> {
    let id = device_field
        .iter()
        .chain(DEVICE_KEYS.iter())
        .find_map(|key| match json_text::field(fields, key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
            _ => None,
        })
        .ok_or(DecodeError::NoDevice)?;
    super::named_device_id(&id)
}

/// The payload's time (the first of [`TIME_KEYS`] present), or arrival time
/// with a problem when it is unusable.
pub(super) fn event_time(fields: &[(String, Value)], ctx: &Context, out: &mut Decoded) -> When {
    let Some((key, value)) = TIME_KEYS
        .iter()
        .find_map(|key| json_text::field(fields, key).map(|v| (*key, v)))
    else {
        return When::arrival(ctx.now);
    };
    let time = match value {
        Value::String(s) => text_time(s),
        Value::Number(n) => n.as_f64().and_then(epoch_time),
        _ => None,
    };
    match time {
        Some(t) => When::event(t),
        None => {
            out.problem(key, FieldReason::BadTimestamp);
            When::arrival(ctx.now)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[cfg(feature = "coap")]
    #[test]
    fn the_special_keys_are_the_lists() {
        let listed: Vec<&str> = super::TIME_KEYS
            .iter()
            .chain(&super::DEVICE_KEYS)
            .copied()
            .collect();
        for key in listed
            .iter()
            .chain(&["t", "tss", "Id", "devices", "", "times"])
        {
            assert_eq!(
                super::special_key(key.as_bytes()),
                listed.contains(key),
                "{key}"
            );
        }
    }

    use super::super::test_support::*;
    use super::super::{decode, DecodeError, Decoded, FieldReason, PayloadFormat};
    use gateway_core::ModelError;
    use gateway_core::TimeSource::{Arrival, Event};

    #[test]
    fn objects() {
        let d = dev("room1");
        let topic = ctx(Some(&d), None);
        let anon = ctx(None, None);
        let cases: Vec<(&str, &[u8], _, Want)> = vec![
            (
                "the example: RFC 3339 ts is the event time, key order kept",
                br#"{"temperature":21.5,"humidity":40,"ts":"2026-11-21T10:00:00Z"}"#,
                topic,
                ok(
                    vec![
                        r("room1", "temperature", 21.5, T0, Event),
                        r("room1", "humidity", 40.0, T0, Event),
                    ],
                    vec![],
                ),
            ),
            (
                "no time key: arrival time; booleans 1/0; numeric string parsed",
                br#"{"t":"21.5","open":true,"alarm":false}"#,
                topic,
                ok(
                    vec![
                        r("room1", "t", 21.5, NOW, Arrival),
                        r("room1", "open", 1.0, NOW, Arrival),
                        r("room1", "alarm", 0.0, NOW, Arrival),
                    ],
                    vec![],
                ),
            ),
            (
                "`time` in epoch seconds, fractional",
                br#"{"time":1795255200.5,"t":1}"#,
                topic,
                ok(vec![r("room1", "t", 1.0, T0 + 500, Event)], vec![]),
            ),
            (
                "`timestamp` in epoch milliseconds (> 1e11)",
                br#"{"timestamp":1795255200250,"t":1}"#,
                topic,
                ok(vec![r("room1", "t", 1.0, T0 + 250, Event)], vec![]),
            ),
            (
                "epoch seconds as a string",
                br#"{"ts":"1795255200","t":1}"#,
                topic,
                ok(vec![r("room1", "t", 1.0, T0, Event)], vec![]),
            ),
            (
                "unparsable time: problem, arrival time, values kept",
                br#"{"ts":"yesterday","t":1}"#,
                topic,
                ok(
                    vec![r("room1", "t", 1.0, NOW, Arrival)],
                    vec![p("ts", FieldReason::BadTimestamp)],
                ),
            ),
            (
                "negative epoch is before 1970: bad",
                br#"{"ts":-5,"t":1}"#,
                topic,
                ok(
                    vec![r("room1", "t", 1.0, NOW, Arrival)],
                    vec![p("ts", FieldReason::BadTimestamp)],
                ),
            ),
            (
                "null dropped as a problem; words, arrays, objects ignored as text; the rest kept",
                br#"{"a":null,"b":"hot","c":[1],"d":{"x":1},"e":2}"#,
                topic,
                Ok(Decoded {
                    readings: vec![r("room1", "e", 2.0, NOW, Arrival)],
                    problems: vec![p("a", FieldReason::Null)],
                    ignored: ["b", "c", "d"]
                        .iter()
                        .map(|k| (dev("room1"), k.to_string()))
                        .collect(),
                }),
            ),
            (
                "an energy meter naming itself: the number kept, the label ignored",
                br#"{"consumption_kwh": 8.1, "sensor_id": "meter-01"}"#,
                topic,
                Ok(Decoded {
                    readings: vec![r("room1", "consumption_kwh", 8.1, NOW, Arrival)],
                    problems: vec![],
                    ignored: vec![(dev("room1"), "sensor_id".into())],
                }),
            ),
            (
                "only text: no value to use",
                br#"{"sensor_id": "meter-01", "fw": "v1.2"}"#,
                topic,
                Err(DecodeError::NoValues),
            ),
            (
                "Python's NaN and Infinity salvaged; 1e400 too",
                br#"{"t": NaN, "h": 40, "p": -Infinity, "g": 1e400}"#,
                topic,
                ok(
                    vec![r("room1", "h", 40.0, NOW, Arrival)],
                    vec![
                        p("t", FieldReason::NotFinite),
                        p("p", FieldReason::NotFinite),
                        p("g", FieldReason::NotFinite),
                    ],
                ),
            ),
            (
                "non-finite numbers as strings",
                br#"{"t":"NaN","h":"inf","p":"1e400"}"#,
                topic,
                ok(
                    vec![],
                    vec![
                        p("t", FieldReason::NotFinite),
                        p("h", FieldReason::NotFinite),
                        p("p", FieldReason::NotFinite),
                    ],
                ),
            ),
            (
                "keys that cannot be metric names",
                br#"{"a/b":1,"":2,"ok":3}"#,
                topic,
                ok(
                    vec![r("room1", "ok", 3.0, NOW, Arrival)],
                    vec![
                        p(
                            "a/b",
                            FieldReason::InvalidName(ModelError::ForbiddenChar {
                                what: "metric name",
                                ch: '/',
                            }),
                        ),
                        p(
                            "",
                            FieldReason::InvalidName(ModelError::Empty {
                                what: "metric name",
                            }),
                        ),
                    ],
                ),
            ),
            (
                "device from the payload when the topic has none; not a metric",
                br#"{"device":"kitchen","t":20}"#,
                anon,
                ok(vec![r("kitchen", "t", 20.0, NOW, Arrival)], vec![]),
            ),
            (
                "`id` when there is no `device`; integers accepted",
                br#"{"id":17,"t":20}"#,
                anon,
                ok(vec![r("17", "t", 20.0, NOW, Arrival)], vec![]),
            ),
            (
                "the topic's device wins; device keys are still not metrics",
                br#"{"device":"kitchen","id":3,"t":20}"#,
                topic,
                ok(vec![r("room1", "t", 20.0, NOW, Arrival)], vec![]),
            ),
            (
                "no device anywhere",
                br#"{"t":20}"#,
                anon,
                Err(DecodeError::NoDevice),
            ),
            (
                "payload device that breaks topics",
                br#"{"device":"a/b","t":20}"#,
                anon,
                Err(DecodeError::InvalidDevice {
                    id: "a/b".into(),
                    source: ModelError::ForbiddenChar {
                        what: "device id",
                        ch: '/',
                    },
                }),
            ),
            ("empty object", b"{}", topic, Err(DecodeError::NoValues)),
            (
                "only a time key",
                br#"{"ts":"2026-11-21T10:00:00Z"}"#,
                topic,
                Err(DecodeError::NoValues),
            ),
            (
                "top-level number",
                b"5",
                topic,
                Err(DecodeError::WrongShape {
                    expected: "a JSON object",
                    found: "a number",
                }),
            ),
            (
                "top-level string",
                br#""x""#,
                topic,
                Err(DecodeError::WrongShape {
                    expected: "a JSON object",
                    found: "a string",
                }),
            ),
            (
                "top-level array",
                b"[1]",
                topic,
                Err(DecodeError::WrongShape {
                    expected: "a JSON object",
                    found: "an array",
                }),
            ),
            ("truncated", br#"{"t":2"#, topic, Err(invalid_json())),
            (
                "trailing garbage",
                br#"{"t":2}x"#,
                topic,
                Err(invalid_json()),
            ),
            ("single quotes", b"{'t':2}", topic, Err(invalid_json())),
            ("empty", b"  ", topic, Err(DecodeError::Empty)),
            (
                "invalid UTF-8 inside a string",
                b"{\"t\":\"\xc3\x28\"}",
                topic,
                Err(DecodeError::NotUtf8 { valid_up_to: 6 }),
            ),
        ];
        for (label, payload, ctx, want) in cases {
            assert_decoded(label, decode(&PayloadFormat::Json, payload, &ctx), want);
        }
    }

    #[test]
    fn hostile_input_is_an_error_not_a_crash() {
        let d = dev("room1");
        let c = ctx(Some(&d), None);
        // serde_json's recursion limit (128) turns this into an error.
        let deep = "[".repeat(10_000);
        let deep_objects = r#"{"a":"#.repeat(10_000);
        for payload in [deep, deep_objects] {
            let err = decode(&PayloadFormat::Json, payload.as_bytes(), &c).unwrap_err();
            assert_eq!(err.kind(), "invalid_json");
        }
        // A million-digit number overflows f64: salvaged as one problem.
        let huge = format!(r#"{{"a":{},"b":1}}"#, "9".repeat(1 << 20));
        let got = decode(&PayloadFormat::Json, huge.as_bytes(), &c);
        assert_eq!(
            got,
            ok(
                vec![r("room1", "b", 1.0, NOW, Arrival)],
                vec![p("a", FieldReason::NotFinite)]
            )
        );
        // A megabyte-long key is clipped in the problem.
        let long_key = format!(r#"{{"{}":1}}"#, "k".repeat(1 << 20));
        let got = decode(&PayloadFormat::Json, long_key.as_bytes(), &c).unwrap();
        assert!(got.problems[0].field.len() < 200);
    }
}
