//! SenML packs in CBOR (RFC 8428 §6): the same records as SenML JSON, with
//! integer labels in place of the short names.
//!
//! The CBOR is rewritten into the JSON shape [`super::senml`] resolves, so
//! base fields, relative times and device naming behave identically in both
//! encodings. Non-finite floats (CBOR can carry NaN and infinities, JSON
//! cannot) become the same marker the JSON salvage uses, so they are
//! reported as [`FieldReason::NotFinite`](super::FieldReason::NotFinite).

use ciborium::Value as Cbor;
use serde_json::{Map, Number, Value};

use super::json_text::NON_FINITE_MARKER;
use super::{senml, Context, DecodeError, Decoded};

/// Deepest nesting copied from CBOR; a SenML record is two levels deep, so
/// anything below this is not SenML and becomes `null`.
const MAX_DEPTH: usize = 8;

/// RFC 8428 Table 4 / §6: CBOR label → JSON label.
fn label(n: i128) -> Option<&'static str> {
    Some(match n {
        -1 => "bver",
        -2 => "bn",
        -3 => "bt",
        -4 => "bu",
        -5 => "bv",
        // Base Sum is -6 (RFC 8428 Table 4; RIOT's senml_cbor_label_t
        // agrees), not -16 as some summaries have it.
        -6 => "bs",
        0 => "n",
        1 => "u",
        2 => "v",
        3 => "vs",
        4 => "vb",
        5 => "s",
        6 => "t",
        7 => "ut",
        8 => "vd",
        _ => return None,
    })
}

/// Decodes a SenML CBOR pack.
///
/// # Errors
/// [`DecodeError::InvalidCbor`] when the bytes are not one CBOR item,
/// [`DecodeError::WrongShape`] when it is not an array, and the errors of
/// SenML JSON for the records.
pub(super) fn decode(payload: &[u8], ctx: &Context) -> Result<Decoded, DecodeError> {
    if payload.is_empty() {
        return Err(DecodeError::Empty);
    }
    let item: Cbor = ciborium::de::from_reader(payload).map_err(|e| DecodeError::InvalidCbor {
        reason: super::clip(&e.to_string()),
    })?;
    let records = match untag(&item) {
        Cbor::Array(items) => items.iter().map(record).collect::<Vec<_>>(),
        other => {
            return Err(DecodeError::WrongShape {
                expected: "a SenML array",
                found: shape(other),
            })
        }
    };
    senml::decode_records(&records, ctx)
}

fn untag(v: &Cbor) -> &Cbor {
    match v {
        Cbor::Tag(_, inner) => untag(inner),
        other => other,
    }
}

/// One record: a map with integer labels becomes a JSON object with names.
/// Anything else is kept as a non-object, which the resolver reports.
fn record(v: &Cbor) -> Value {
    let Cbor::Map(entries) = untag(v) else {
        return json(v, 1);
    };
    let mut out = Map::new();
    for (k, v) in entries {
        let key = match untag(k) {
            Cbor::Integer(i) => match label(i128::from(*i)) {
                Some(name) => name.to_string(),
                // Unknown labels are kept under a name the resolver ignores
                // (it never ends in `_`, so it is not must-understand).
                None => format!("label{}", i128::from(*i)),
            },
            Cbor::Text(t) => t.clone(),
            _ => continue,
        };
        out.insert(key, json(v, 2));
    }
    Value::Object(out)
}

fn json(v: &Cbor, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    match v {
        Cbor::Integer(i) => {
            let i = i128::from(*i);
            match i64::try_from(i) {
                Ok(i) => Value::Number(i.into()),
                // Beyond i64: as a float, like serde_json reads big numbers.
                Err(_) => Number::from_f64(i as f64).map_or(Value::Null, Value::Number),
            }
        }
        Cbor::Float(f) => match Number::from_f64(*f) {
            Some(n) => Value::Number(n),
            None => Value::String(NON_FINITE_MARKER.to_string()),
        },
        Cbor::Text(t) => Value::String(t.clone()),
        Cbor::Bool(b) => Value::Bool(*b),
        // `vd` (data) is a byte string; only its presence matters.
        Cbor::Bytes(_) => Value::String(String::new()),
        Cbor::Null => Value::Null,
        Cbor::Tag(_, inner) => json(inner, depth + 1),
        Cbor::Array(items) => Value::Array(items.iter().map(|i| json(i, depth + 1)).collect()),
        Cbor::Map(_) => record(v),
        _ => Value::Null,
    }
}

fn shape(v: &Cbor) -> &'static str {
    match v {
        Cbor::Integer(_) | Cbor::Float(_) => "a number",
        Cbor::Text(_) => "a string",
        Cbor::Bool(_) => "a boolean",
        Cbor::Bytes(_) => "a byte string",
        Cbor::Null => "null",
        Cbor::Map(_) => "an object",
        _ => "another CBOR item",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use gateway_core::{DeviceId, TimeSource, Timestamp};

    fn now() -> Timestamp {
        Timestamp::from_millis(1_763_719_200_000).unwrap()
    }

    #[test]
    fn rfc8428_cbor_example_matches_its_json_twin() {
        // RFC 8428 §6 example, hand-assembled:
        // [{-2: "urn:dev:ow:10e2073a01080063", -3: 1.276020076001e9,
        //   -4: "A", -1: 5, 0: "voltage", 1: "V", 2: 120.1},
        //  {0: "current", 6: -5, 2: 1.2}]
        let bytes = hex(concat!(
            "82", // array(2)
            "a7", // map(7)
            "21",
            "781c",
            "75726e3a6465763a6f773a313065323037336130313038303036333a",
            "22",
            "fb41d303a15b001062", // -3: 1276020076.001 (float64)
            "23",
            "6141", // -4: "A"
            "20",
            "05", // -1: 5
            "00",
            "67",
            "766f6c74616765", // 0: "voltage"
            "01",
            "6156", // 1: "V"
            "02",
            "fb405e066666666666", // 2: 120.1
            "a3",
            "00",
            "6763757272656e74", // 0: "current"
            "06",
            "24", // 6: -5
            "02",
            "fb3ff3333333333333", // 2: 1.2
        ));
        let ctx = Context {
            device: None,
            metric: None,
            now: now(),
        };
        let cbor = decode(&bytes, &ctx).unwrap();
        let json = super::super::decode(
            &super::super::PayloadFormat::Senml,
            br#"[{"bn":"urn:dev:ow:10e2073a01080063:","bt":1.276020076001e9,"bu":"A","bver":5,"n":"voltage","u":"V","v":120.1},{"n":"current","t":-5,"v":1.2}]"#,
            &ctx,
        )
        .unwrap();
        assert_eq!(cbor, json);
        assert_eq!(cbor.readings.len(), 2);
        assert_eq!(cbor.readings[1].time_source(), TimeSource::Event);
    }

    #[test]
    fn device_context_and_relative_time() {
        // [{-3: 0, 0: "temp", 2: 21.5, 6: -10}]
        let bytes = hex(concat!(
            "81a4",         // array(1), map(4)
            "2200",         // -3 (bt): 0
            "006474656d70", // 0 (n): "temp"
            "02f94d60",     // 2 (v): 21.5 as float16
            "0629",         // 6 (t): -10
        ));
        let dev = DeviceId::new("d1").unwrap();
        let ctx = Context {
            device: Some(&dev),
            metric: None,
            now: now(),
        };
        let d = decode(&bytes, &ctx).unwrap();
        assert_eq!(d.readings.len(), 1);
        let r = &d.readings[0];
        assert_eq!(
            (r.device().as_str(), r.metric().as_str(), r.value()),
            ("d1", "temp", 21.5)
        );
        assert_eq!(r.time().as_millis(), now().as_millis() - 10_000);
    }

    #[test]
    fn non_finite_and_garbage() {
        let dev = DeviceId::new("d1").unwrap();
        let ctx = Context {
            device: Some(&dev),
            metric: None,
            now: now(),
        };
        // [{0: "t", 2: NaN (f16 7e00)}, {0: "h", 2: 40}]
        let bytes = hex(concat!(
            "82a2",           // array(2), map(2)
            "006174",         // 0 (n): "t"
            "02f97e00",       // 2 (v): NaN as float16
            "a2006168021828", // {0: "h", 2: 40}
        ));
        let d = decode(&bytes, &ctx).unwrap();
        assert_eq!(d.readings.len(), 1);
        assert_eq!(d.problems[0].reason, super::super::FieldReason::NotFinite);
        for (bad, kind) in [
            (&b""[..], "empty"),
            (&b"\xff\xff"[..], "invalid_cbor"),
            (&b"\x9f"[..], "invalid_cbor"),
            (&b"\xa0"[..], "wrong_shape"),
            (&b"\x80"[..], "no_values"),
        ] {
            assert_eq!(decode(bad, &ctx).unwrap_err().kind(), kind, "{bad:?}");
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
