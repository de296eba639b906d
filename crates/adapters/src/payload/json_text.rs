//! JSON parsing shared by the JSON, SenML and Zigbee2MQTT decoders.
//!
//! Python's `json.dumps` writes `NaN`, `Infinity` and `-Infinity`, and C
//! senders overflow f64 with `1e400`; serde_json refuses all of them, which
//! would lose every other field of the message. When a first parse fails, a
//! small tokenizer replaces those tokens (outside strings) with a marker
//! string and the text is parsed again; decoders then report each marked
//! field as [`FieldReason::NotFinite`](super::FieldReason::NotFinite).
//!
//! The marker is a string rather than the `null` one might expect so that a
//! salvaged `NaN` stays distinguishable from a genuine `null`: they are
//! different problems, and Zigbee2MQTT ignores `null` silently.

use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::DecodeError;

/// The string that stands in for a non-finite token after salvage. It starts
/// with NUL, which no sensor puts in a real string value; a payload that does
/// only gets that field reported as not finite.
pub(super) const NON_FINITE_MARKER: &str = "\u{0}non-finite";
/// [`NON_FINITE_MARKER`] as JSON text.
const NON_FINITE_JSON: &str = "\"\\u0000non-finite\"";

/// Parses `text`, salvaging non-finite tokens if the first attempt fails.
///
/// serde_json's recursion limit (128) stays on, so deeply nested input is an
/// error rather than a stack overflow; the tokenizer itself does not recurse.
pub(super) fn parse<T: DeserializeOwned>(text: &str) -> Result<T, DecodeError> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(first) => match salvage(text) {
            Some(fixed) => serde_json::from_str(&fixed).map_err(invalid),
            None => Err(invalid(first)),
        },
    }
}

fn invalid(e: serde_json::Error) -> DecodeError {
    DecodeError::InvalidJson {
        reason: e.to_string(),
    }
}

/// Whether a string value is the salvage marker.
pub(super) fn is_non_finite(s: &str) -> bool {
    s == NON_FINITE_MARKER
}

/// The text with every non-finite token outside strings replaced by the
/// marker, or `None` if there was nothing to replace.
fn salvage(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = String::new();
    // `text[copied..]` has not been written to `out` yet.
    let mut copied = 0;
    let mut replaced = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'"' {
            i = string_end(bytes, i);
        } else if is_token_byte(b) {
            // A whole bare word, so `NaNx` or `1e400abc` are left alone.
            let end = bytes[i..]
                .iter()
                .position(|&b| !is_token_byte(b))
                .map_or(bytes.len(), |n| i + n);
            // Token bytes are ASCII, so `i` and `end` are char boundaries.
            if is_non_finite_token(&text[i..end]) {
                out.push_str(&text[copied..i]);
                out.push_str(NON_FINITE_JSON);
                copied = end;
                replaced = true;
            }
            i = end;
        } else {
            i += 1;
        }
    }
    if !replaced {
        return None;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-')
}

/// The index just past the string starting at `start` (a `"`), or the end of
/// the text when the string is unterminated.
pub(super) fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

fn is_non_finite_token(token: &str) -> bool {
    if matches!(token, "NaN" | "Infinity" | "-Infinity") {
        return true;
    }
    // Only JSON number syntax: Rust's parser would also take `inf` and `nan`.
    let json_number = token.starts_with(|c: char| c == '-' || c.is_ascii_digit())
        && token
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    json_number && token.parse::<f64>().is_ok_and(f64::is_infinite)
}

/// A JSON document whose top-level object keeps the payload's key order (and
/// any repeated keys), independent of serde_json's `preserve_order` feature,
/// so readings come out in the order the sensor wrote them.
pub(super) enum Document {
    Object(Vec<(String, Value)>),
    /// Anything else, described for [`DecodeError::WrongShape`].
    NotObject(&'static str),
}

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DocumentVisitor)
    }
}

struct DocumentVisitor;

impl<'de> Visitor<'de> for DocumentVisitor {
    type Value = Document;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Document, A::Error> {
        let mut fields = Vec::new();
        while let Some(entry) = map.next_entry::<String, Value>()? {
            fields.push(entry);
        }
        Ok(Document::Object(fields))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Document, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Document::NotObject("an array"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Document, E> {
        Ok(Document::NotObject("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Document, E> {
        Ok(Document::NotObject("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Document, E> {
        Ok(Document::NotObject("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Document, E> {
        Ok(Document::NotObject("a number"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Document, E> {
        Ok(Document::NotObject("a string"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Document, E> {
        Ok(Document::NotObject("null"))
    }
}

/// A top-level JSON object's fields, in payload order.
///
/// # Errors
/// Anything but an object; and an object naming a key twice, which is
/// refused whole ([`DecodeError::DuplicateKey`]): RFC 8259 leaves its meaning
/// to each parser, so a sender (or an attacker) could make one reader see
/// 21.5 where another sees 99, and 10 000 copies of one key would be 10 000
/// readings.
pub(super) fn object(text: &str) -> Result<Vec<(String, Value)>, DecodeError> {
    match parse::<Document>(text)? {
        Document::Object(fields) => match duplicate(&fields) {
            Some(key) => Err(DecodeError::DuplicateKey {
                key: super::clip(key),
            }),
            None => Ok(fields),
        },
        Document::NotObject(found) => Err(DecodeError::WrongShape {
            expected: "a JSON object",
            found,
        }),
    }
}

/// The first key that occurs twice.
fn duplicate(fields: &[(String, Value)]) -> Option<&str> {
    // Pairwise is cheapest for the few keys of a real sensor; a set keeps
    // a hostile object of thousands of keys linear.
    if fields.len() <= 16 {
        return fields.iter().enumerate().find_map(|(i, (k, _))| {
            fields[..i]
                .iter()
                .any(|(o, _)| o == k)
                .then_some(k.as_str())
        });
    }
    let mut seen = std::collections::HashSet::with_capacity(fields.len());
    fields
        .iter()
        .find_map(|(k, _)| (!seen.insert(k.as_str())).then_some(k.as_str()))
}

/// A JSON value's type, for [`DecodeError::WrongShape`].
pub(super) fn shape(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The value of `key` (the last one, as serde_json's maps keep it; objects
/// from [`object`] hold each key once).
pub(super) fn field<'a>(fields: &'a [(String, Value)], key: &str) -> Option<&'a Value> {
    fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn salvage_replaces_only_bare_non_finite_tokens() {
        let m = NON_FINITE_JSON;
        let cases: &[(&str, Option<String>)] = &[
            // Python's json.dumps of nan, inf and -inf.
            (
                r#"{"t": NaN, "h": 40}"#,
                Some(format!(r#"{{"t": {m}, "h": 40}}"#)),
            ),
            (r#"[Infinity,-Infinity]"#, Some(format!("[{m},{m}]"))),
            // Overflows f64: serde_json says "number out of range".
            (
                r#"{"a":1e400,"b":-1E+999}"#,
                Some(format!(r#"{{"a":{m},"b":{m}}}"#)),
            ),
            // Inside strings, including after an escaped quote: untouched.
            (r#"{"NaN":"x\"NaN 1e400"}"#, None),
            // Part of a longer word: untouched (still invalid JSON).
            (r#"{"a":NaNa,"b":xInfinity}"#, None),
            // Rust would parse these, JSON has no such tokens: untouched.
            (r#"{"a":nan,"b":inf}"#, None),
            // Large but finite, and underflow to zero: untouched.
            (r#"{"a":1e308,"b":1e-400}"#, None),
            // Unterminated string: nothing to do, no panic.
            (r#"{"a":"NaN"#, None),
        ];
        for (input, want) in cases {
            assert_eq!(salvage(input), *want, "{input}");
        }
    }

    #[test]
    fn parse_salvages_then_gives_up_on_real_syntax_errors() {
        let v: Value = parse(r#"{"t": NaN, "h": 40}"#).unwrap();
        assert!(is_non_finite(v["t"].as_str().unwrap()));
        assert_eq!(v["h"], 40);
        // Salvageable token, but the text is broken elsewhere.
        let e = parse::<Value>(r#"{"t": NaN, "h": }"#).unwrap_err();
        assert_eq!(e.kind(), "invalid_json");
    }

    #[test]
    fn documents_keep_key_order_and_name_other_shapes() {
        let d: Document = parse(r#"{"z":1,"a":2,"z":3}"#).unwrap();
        let Document::Object(fields) = d else {
            panic!("not an object")
        };
        let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["z", "a", "z"]);
        assert_eq!(field(&fields, "z"), Some(&Value::from(3)));
        for (input, want) in [
            ("5", "a number"),
            ("-5", "a number"),
            ("5.5", "a number"),
            (r#""x""#, "a string"),
            ("null", "null"),
            ("true", "a boolean"),
            ("[1,[2]]", "an array"),
        ] {
            let d: Document = parse(input).unwrap();
            assert!(matches!(d, Document::NotObject(s) if s == want), "{input}");
        }
    }
}
