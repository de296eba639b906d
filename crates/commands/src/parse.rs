//! The command payload, `{"id", "metric", "value", "ts"}` (or, for a
//! LoRaWAN device, `{"id", "port", "data"}` with data in hex or base64),
//! and the topic it came on.
//! Pure: bytes in, a command or the reason it is refused out. Whatever
//! the bytes, this never panics (fuzzed: `fuzz/fuzz_targets/command_payload.rs`).

use gateway_core::command::{CommandValue, GATEWAY_ID_PREFIXES};
use gateway_core::{DeviceId, Timestamp};
use serde_json::Value;

/// Largest command payload read; a set point is a few dozen bytes.
pub const MAX_PAYLOAD: usize = 4096;
/// Longest accepted `id` (characters): room for a UUID or a ULID with a
/// prefix, not for a document.
pub const MAX_ID: usize = 128;
/// Longest `metric` (characters).
const MAX_METRIC: usize = 128;
/// Largest LoRaWAN downlink payload (bytes): LoRaWAN's largest FRMPayload.
const MAX_DOWNLINK: usize = 242;
/// Deepest nesting of a `data` object for a codec (the object is level 1).
/// The journal and the outbox wrap it in two more levels and read it back
/// with serde_json's limit of 128: one accepted up to that limit was
/// written, then lost from the journal at the next start, and written
/// again on its re-delivery. A codec's settings are a level or two.
const MAX_DATA_DEPTH: usize = 32;

/// A command as it arrived, well-formed.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub id: String,
    pub metric: String,
    pub value: CommandValue,
    /// When the sender made it, if it said.
    pub ts: Option<Timestamp>,
}

/// A command that cannot be read. `id` is its id when that much could
/// be read, so the result can still name it.
#[derive(Debug, Clone, PartialEq)]
pub struct Malformed {
    pub id: Option<String>,
    /// The result's reason: `malformed`, `too_large`, or `out_of_range`
    /// (an integer no double holds exactly).
    pub reason: &'static str,
    pub detail: String,
}

impl Malformed {
    fn new(id: Option<&str>, detail: impl Into<String>) -> Self {
        Self {
            id: id.map(str::to_string),
            reason: "malformed",
            detail: detail.into(),
        }
    }
}

/// The device of a command topic `{prefix}/{device}/command`; `None` for
/// any other topic, or a device level that is no device id.
pub fn device_of_topic(prefix: &str, topic: &str) -> Option<DeviceId> {
    DeviceId::new(device_level(prefix, topic)?).ok()
}

/// The device level of a command topic as the sender spelt it
/// (`70B3D57ED0001234`, where the device id is `70b3d57ed0001234`): its
/// result goes back on that spelling's topic.
pub fn device_level<'a>(prefix: &str, topic: &'a str) -> Option<&'a str> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix('/')?;
    let device = rest.strip_suffix("/command")?;
    if device.is_empty() || device.contains('/') {
        return None;
    }
    Some(device)
}

/// The subscription of a gateway's commands.
pub fn command_filter(prefix: &str) -> String {
    format!("{prefix}/+/command")
}

/// Where a device's results go.
pub fn result_topic(prefix: &str, device: &str) -> String {
    format!("{prefix}/{device}/command/result")
}

/// A payload as it waits for its turn: whole when it may be read, else
/// only its refusal. A command may be as large as MQTT allows (256 MiB)
/// and dozens wait at once (the broker's in-flight window, the QoS 0
/// queue): kept whole, a flood of large ones held gigabytes to refuse
/// them all as `too_large`.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Whole(Vec<u8>),
    TooLarge { bytes: usize, refusal: Malformed },
}

impl Payload {
    pub fn of(payload: &[u8]) -> Self {
        if payload.len() > MAX_PAYLOAD {
            Self::TooLarge {
                bytes: payload.len(),
                refusal: too_large(payload),
            }
        } else {
            Self::Whole(payload.to_vec())
        }
    }

    /// Its size as delivered.
    pub fn len(&self) -> usize {
        match self {
            Self::Whole(p) => p.len(),
            Self::TooLarge { bytes, .. } => *bytes,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What it holds in memory while it waits.
    pub fn held(&self) -> usize {
        match self {
            Self::Whole(p) => p.capacity(),
            Self::TooLarge { refusal, .. } => {
                refusal.detail.len() + refusal.id.as_ref().map_or(0, String::len)
            }
        }
    }

    /// [`parse`] of it.
    ///
    /// # Errors
    /// As [`parse`].
    pub fn parse(&self) -> Result<Parsed, Malformed> {
        match self {
            Self::Whole(p) => parse(p),
            Self::TooLarge { refusal, .. } => Err(refusal.clone()),
        }
    }
}

fn too_large(payload: &[u8]) -> Malformed {
    Malformed {
        reason: "too_large",
        ..Malformed::new(
            readable_id(payload).as_deref(),
            format!(
                "payload of {} bytes, more than {MAX_PAYLOAD}",
                payload.len()
            ),
        )
    }
}

/// Reads one command payload.
///
/// # Errors
/// [`Malformed`]: not a JSON object, a missing or ill-typed key, an
/// unknown key, or a value out of its range.
pub fn parse(payload: &[u8]) -> Result<Parsed, Malformed> {
    if payload.len() > MAX_PAYLOAD {
        return Err(too_large(payload));
    }
    let value: Value = serde_json::from_slice(payload).map_err(|e| {
        let id = readable_id(payload);
        let text = e.to_string();
        let not_finite = text.contains("number out of range")
            || [&b"NaN"[..], b"Infinity"]
                .iter()
                .any(|w| payload.windows(w.len()).any(|p| p == *w));
        if not_finite {
            Malformed::new(
                id.as_deref(),
                format!("value: not a finite number (NaN, Infinity and numbers beyond 1.8e308 are no JSON numbers): {text}"),
            )
        } else {
            Malformed::new(id.as_deref(), format!("not JSON: {text}"))
        }
    })?;
    let Value::Object(obj) = value else {
        return Err(Malformed::new(None, "expected a JSON object"));
    };
    let id = match obj.get("id") {
        Some(Value::String(s)) if is_id(s) => s.clone(),
        Some(Value::String(_)) => {
            return Err(Malformed::new(
                None,
                format!("id: expected 1 to {MAX_ID} printable characters"),
            ))
        }
        Some(_) => return Err(Malformed::new(None, "id: expected a string")),
        None => return Err(Malformed::new(None, "id: missing")),
    };
    let id_ref = Some(id.as_str());
    if let Some(prefix) = GATEWAY_ID_PREFIXES.iter().find(|p| id.starts_with(*p)) {
        return Err(Malformed::new(
            id_ref,
            format!("id: {prefix}… is how the ids the gateway makes for Home Assistant's commands (ha-) and rules' actions (rule-) begin; use another id"),
        ));
    }
    for key in obj.keys() {
        if !["id", "metric", "value", "ts", "port", "data"].contains(&key.as_str()) {
            let key: String = key.chars().take(32).collect();
            return Err(Malformed::new(
                id_ref,
                format!("unknown key {key:?}: expected id, metric, value, ts (or port, data)"),
            ));
        }
    }
    let ts = match obj.get("ts") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(Timestamp::parse_rfc3339(s).map_err(|_| {
            Malformed::new(
                id_ref,
                "ts: expected an RFC 3339 time (2026-11-25T20:00:00Z)",
            )
        })?),
        Some(_) => return Err(Malformed::new(id_ref, "ts: expected an RFC 3339 string")),
    };
    if obj.contains_key("port") || obj.contains_key("data") {
        if obj.contains_key("value") || obj.contains_key("metric") {
            return Err(Malformed::new(
                id_ref,
                "a downlink has port and data, not metric or value",
            ));
        }
        let value =
            downlink(obj.get("port"), obj.get("data")).map_err(|d| Malformed::new(id_ref, d))?;
        return Ok(Parsed {
            id,
            metric: String::new(),
            value,
            ts,
        });
    }
    let metric = match obj.get("metric") {
        Some(Value::String(s)) if is_metric(s) => s.clone(),
        Some(_) => {
            return Err(Malformed::new(
                id_ref,
                format!("metric: expected 1 to {MAX_METRIC} characters of A-Z a-z 0-9 _ - . :"),
            ))
        }
        None => return Err(Malformed::new(id_ref, "metric: missing")),
    };
    let value = match obj.get("value") {
        Some(Value::Number(n)) => {
            match n.as_f64() {
                // An integer past 2^53 has no exact double: written, it would
                // be another number than the one sent, and reported `done`.
                Some(_) if !exact_integer(n) => {
                    return Err(Malformed {
                        reason: "out_of_range",
                        ..Malformed::new(
                            id_ref,
                            format!(
                            "value: {n} is an integer beyond 2^53, which cannot be written exactly"
                        ),
                        )
                    })
                }
                Some(v) if v.is_finite() => CommandValue::Number(v),
                _ => return Err(Malformed::new(id_ref, "value: not a finite number")),
            }
        }
        Some(Value::Bool(b)) => CommandValue::Bool(*b),
        Some(Value::String(s)) if s.chars().count() <= MAX_METRIC => CommandValue::Text(s.clone()),
        Some(Value::String(_)) => {
            return Err(Malformed::new(
                id_ref,
                format!("value: a text of more than {MAX_METRIC} characters"),
            ))
        }
        Some(Value::Null) => CommandValue::Null,
        Some(_) => {
            return Err(Malformed::new(
                id_ref,
                "value: expected a number, true/false, a short text or null",
            ))
        }
        None => return Err(Malformed::new(id_ref, "value: missing")),
    };
    Ok(Parsed {
        id,
        metric,
        value,
        ts,
    })
}

/// Whether a JSON number read as an integer has the same value as a
/// double; a number written with a fraction or an exponent was a double
/// in the sender's text already.
fn exact_integer(n: &serde_json::Number) -> bool {
    const EXACT: u64 = 1 << 53;
    match (n.as_u64(), n.as_i64()) {
        (Some(u), _) => u <= EXACT,
        (None, Some(i)) => i.unsigned_abs() <= EXACT,
        (None, None) => true,
    }
}

/// The top-level `"id"` of a payload that is no command (a `NaN`, a
/// `1e309`, too large), so that its refusal still names it. A scan, not
/// a parse: strings are skipped with their escapes, nesting is counted,
/// and only a key of the outermost object is taken.
pub fn readable_id(payload: &[u8]) -> Option<String> {
    let mut at = skip_space(payload, 0);
    if payload.get(at) != Some(&b'{') {
        return None;
    }
    at += 1;
    let mut depth = 1usize;
    let mut key_next = true;
    while let Some(&b) = payload.get(at) {
        match b {
            b'"' => {
                let end = string_end(payload, at)?;
                if depth == 1 && key_next {
                    let colon = skip_space(payload, end);
                    if payload.get(colon) != Some(&b':') {
                        return None;
                    }
                    let value = skip_space(payload, colon + 1);
                    if &payload[at..end] == b"\"id\"" {
                        if payload.get(value) != Some(&b'"') {
                            return None;
                        }
                        let value_end = string_end(payload, value)?;
                        let id: String = serde_json::from_slice(&payload[value..value_end]).ok()?;
                        return is_id(&id).then_some(id);
                    }
                    key_next = false;
                    at = value;
                    continue;
                }
                at = end;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return None;
                }
            }
            b',' if depth == 1 => key_next = true,
            _ => {}
        }
        at += 1;
    }
    None
}

fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(u8::is_ascii_whitespace) {
        at += 1;
    }
    at
}

/// The index after the closing quote of the string opening at `start`.
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut at = start + 1;
    loop {
        match bytes.get(at)? {
            b'\\' => at += 2,
            b'"' => return Some(at + 1),
            _ => at += 1,
        }
    }
}

fn is_id(s: &str) -> bool {
    let n = s.chars().count();
    (1..=MAX_ID).contains(&n) && s.chars().all(|c| !c.is_control())
}

fn is_metric(s: &str) -> bool {
    (1..=MAX_METRIC).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// `data` as the LoRaWAN downlink topic reads it: hex when it is an even
/// number of hex digits, else standard base64 (what network servers'
/// APIs send).
///
/// `data` as an object is for the device's payload codec to encode
/// (`encodeDownlink`); `port` is then optional.
fn downlink(port: Option<&Value>, data: Option<&Value>) -> Result<CommandValue, String> {
    use base64::Engine as _;
    let port_number = |p: &Value| match p.as_u64() {
        Some(p @ 1..=223) => Ok(p as u8),
        _ => Err("port: expected an application port, 1 to 223".to_string()),
    };
    if let Some(Value::Object(data)) = data {
        if depth(data.values()) >= MAX_DATA_DEPTH {
            return Err(format!(
                "data: nested more than {MAX_DATA_DEPTH} levels deep"
            ));
        }
        return Ok(CommandValue::Encode {
            port: port.map(port_number).transpose()?,
            data: data.clone(),
        });
    }
    let port = port_number(port.unwrap_or(&Value::Null))?;
    let Some(Value::String(text)) = data else {
        return Err(
            "data: expected the payload as a hex or base64 string, or an object for the device's codec"
                .into(),
        );
    };
    let text = text.trim();
    // Base64 is 4 characters for 3 bytes: anything longer is too long either way.
    if text.len() > 2 * MAX_DOWNLINK {
        return Err(format!("data: more than {MAX_DOWNLINK} bytes"));
    }
    let bytes = if text.len() % 2 == 0 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut bytes = Vec::with_capacity(text.len() / 2);
        for pair in text.as_bytes().chunks(2) {
            let digits = std::str::from_utf8(pair).map_err(|_| "data: not hex".to_string())?;
            bytes.push(u8::from_str_radix(digits, 16).map_err(|_| "data: not hex".to_string())?);
        }
        bytes
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| "data: neither hex nor base64".to_string())?
    };
    if bytes.len() > MAX_DOWNLINK {
        return Err(format!("data: more than {MAX_DOWNLINK} bytes"));
    }
    Ok(CommandValue::Downlink { port, data: bytes })
}

/// How deep the deepest of `values` nests (a number is 0, `{}` 1).
/// Recursive, but on a value serde_json has read, so at most 128 deep.
fn depth<'a>(values: impl Iterator<Item = &'a Value>) -> usize {
    values
        .map(|v| match v {
            Value::Object(o) => 1 + depth(o.values()),
            Value::Array(a) => 1 + depth(a.iter()),
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

/// The value as the result payload repeats it.
pub fn value_json(value: &CommandValue) -> Value {
    value.to_json()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_set_point_with_its_time() {
        let p =
            parse(br#"{"id":"c-1","metric":"setpoint","value":23.5,"ts":"2026-11-25T20:00:00Z"}"#)
                .unwrap();
        assert_eq!(p.id, "c-1");
        assert_eq!(p.metric, "setpoint");
        assert_eq!(p.value, CommandValue::Number(23.5));
        assert_eq!(
            p.ts,
            Some(Timestamp::parse_rfc3339("2026-11-25T20:00:00Z").unwrap())
        );
    }

    #[test]
    fn the_gateways_own_id_prefixes_are_refused_with_the_id() {
        for id in ["ha-0123456789abcdef", "rule-0123456789abcdef", "ha-"] {
            let payload = format!(r#"{{"id":"{id}","metric":"setpoint","value":1}}"#);
            let refused = parse(payload.as_bytes()).unwrap_err();
            assert_eq!(refused.reason, "malformed", "{id}");
            assert_eq!(refused.id.as_deref(), Some(id));
            assert!(refused.detail.starts_with("id: "), "{}", refused.detail);
        }
        for id in ["HA-1", "hab-1", "rules-1", "my-ha-1", "rule"] {
            let payload = format!(r#"{{"id":"{id}","metric":"setpoint","value":1}}"#);
            assert!(parse(payload.as_bytes()).is_ok(), "{id}");
        }
    }

    #[test]
    fn an_integer_no_double_holds_is_refused_not_rounded() {
        for big in [
            "9007199254740993",
            "12345678901234567890",
            "-9007199254740993",
        ] {
            let payload = format!(r#"{{"id":"big","metric":"brightness","value":{big}}}"#);
            let refused = parse(payload.as_bytes()).unwrap_err();
            assert_eq!(refused.reason, "out_of_range", "{big}");
            assert_eq!(refused.id.as_deref(), Some("big"));
            assert!(refused.detail.contains(big), "{}", refused.detail);
        }
        for fits in ["9007199254740992", "-9007199254740992", "1e300", "0.1"] {
            let payload = format!(r#"{{"id":"ok","metric":"brightness","value":{fits}}}"#);
            assert!(parse(payload.as_bytes()).is_ok(), "{fits}");
        }
    }

    #[test]
    fn switches_texts_and_relinquish() {
        assert_eq!(
            parse(br#"{"id":"a","metric":"state","value":true}"#)
                .unwrap()
                .value,
            CommandValue::Bool(true)
        );
        assert_eq!(
            parse(br#"{"id":"a","metric":"state","value":"ON"}"#)
                .unwrap()
                .value,
            CommandValue::Text("ON".into())
        );
        assert_eq!(
            parse(br#"{"id":"a","metric":"analog-value:3","value":null}"#)
                .unwrap()
                .value,
            CommandValue::Null
        );
    }

    #[test]
    fn a_downlink_for_the_codec_to_encode() {
        let p = parse(br#"{"id":"e","data":{"interval":600}}"#).unwrap();
        let data = serde_json::json!({"interval": 600});
        assert_eq!(
            p.value,
            CommandValue::Encode {
                port: None,
                data: data.as_object().unwrap().clone()
            }
        );
        assert_eq!(value_json(&p.value), serde_json::json!({"data": data}));
        let p = parse(br#"{"id":"e","port":3,"data":{"on":true}}"#).unwrap();
        assert!(matches!(
            p.value,
            CommandValue::Encode { port: Some(3), .. }
        ));
        assert!(parse(br#"{"id":"e","port":0,"data":{"on":true}}"#).is_err());
        assert!(parse(br#"{"id":"e","data":[1,2]}"#).is_err());
    }

    #[test]
    fn a_codec_object_nested_past_what_the_journal_reads_back_is_malformed() {
        let nested = |levels: usize| {
            let mut data = serde_json::json!(1);
            for _ in 0..levels {
                data = serde_json::json!({ "a": [data] });
            }
            serde_json::json!({"id": "n", "data": data}).to_string()
        };
        // {"a":[…]} is two levels: 16 of them are the deepest taken.
        assert!(parse(nested(MAX_DATA_DEPTH / 2).as_bytes()).is_ok());
        let e = parse(nested(MAX_DATA_DEPTH / 2 + 1).as_bytes()).unwrap_err();
        assert_eq!((e.id.as_deref(), e.reason), (Some("n"), "malformed"));
        assert!(e.detail.contains("nested"), "{}", e.detail);
    }

    #[test]
    fn a_downlink() {
        let p = parse(br#"{"id":"d","port":10,"data":"01ff"}"#).unwrap();
        assert_eq!(
            p.value,
            CommandValue::Downlink {
                port: 10,
                data: vec![1, 255]
            }
        );
        assert_eq!(
            value_json(&p.value),
            serde_json::json!({"port": 10, "data": "01ff"})
        );
        // Base64, as the downlink topic also takes it.
        let p = parse(br#"{"id":"d","port":2,"data":"AQID"}"#).unwrap();
        assert_eq!(
            p.value,
            CommandValue::Downlink {
                port: 2,
                data: vec![1, 2, 3]
            }
        );
    }

    #[test]
    fn malformed_commands_say_why_and_keep_their_id_when_they_can() {
        for (payload, id, says) in [
            (&b"not json"[..], None, "not JSON"),
            (b"[1]", None, "object"),
            (br#"{"metric":"x","value":1}"#, None, "id: missing"),
            (
                br#"{"id":5,"metric":"x","value":1}"#,
                None,
                "id: expected a string",
            ),
            (br#"{"id":"","metric":"x","value":1}"#, None, "id: expected"),
            (br#"{"id":"a","value":1}"#, Some("a"), "metric: missing"),
            (br#"{"id":"a","metric":"x"}"#, Some("a"), "value: missing"),
            (
                br#"{"id":"a","metric":"x","value":[1]}"#,
                Some("a"),
                "value: expected",
            ),
            (
                br#"{"id":"a","metric":"x/y","value":1}"#,
                Some("a"),
                "metric: expected",
            ),
            (
                br#"{"id":"a","metric":"x","value":1,"ts":"yesterday"}"#,
                Some("a"),
                "ts:",
            ),
            (
                br#"{"id":"a","metric":"x","value":1,"extra":2}"#,
                Some("a"),
                "unknown key",
            ),
            (br#"{"id":"a","port":0,"data":"00"}"#, Some("a"), "port:"),
            (br#"{"id":"a","port":1,"data":"0"}"#, Some("a"), "data:"),
            (
                br#"{"id":"a","port":1,"data":"zz"}"#,
                Some("a"),
                "neither hex nor base64",
            ),
            // Not JSON numbers, but the id is readable: the refusal names it.
            (
                br#"{"id":"a","metric":"x","value":1e999}"#,
                Some("a"),
                "value: not a finite number",
            ),
            (
                br#"{"metric":"x","value":NaN,"id":"n-1"}"#,
                Some("n-1"),
                "value: not a finite number",
            ),
            (
                br#"{"id":"i\"2","metric":"x","value":-Infinity}"#,
                Some("i\"2"),
                "value: not a finite number",
            ),
            (
                br#"{"x":{"id":"inner"},"value":NaN}"#,
                None,
                "value: not a finite number",
            ),
            (
                br#"{"id":"a","metric":"x","value":1,}"#,
                Some("a"),
                "not JSON",
            ),
        ] {
            let e = parse(payload).unwrap_err();
            assert_eq!(e.id.as_deref(), id, "{}", String::from_utf8_lossy(payload));
            assert!(
                e.detail.contains(says),
                "{} -> {}",
                String::from_utf8_lossy(payload),
                e.detail
            );
        }
        let big = vec![b' '; MAX_PAYLOAD + 1];
        assert!(parse(&big).unwrap_err().detail.contains("more than"));
        let mut big = br#"{"id":"big-1","metric":"x","value":""#.to_vec();
        big.extend(std::iter::repeat_n(b'a', 70_000));
        big.extend(br#""}"#);
        let e = parse(&big).unwrap_err();
        assert_eq!(
            (e.id.as_deref(), e.reason),
            (Some("big-1"), "too_large"),
            "{}",
            e.detail
        );
    }

    /// Until the fuzz target runs in CI: every truncation of the seeds, and
    /// every byte of them replaced by each of a few troublesome bytes, is
    /// a command or a reason, never a panic.
    #[test]
    fn mutated_seeds_never_panic() {
        let seeds: [&[u8]; 3] = [
            br#"{"id":"c-1","metric":"setpoint","value":23.5,"ts":"2026-11-25T20:00:00Z"}"#,
            br#"{"id":"d","port":10,"data":"01ff"}"#,
            br#"{"id":"a","metric":"x","value":null}"#,
        ];
        let mut tried = 0;
        for seed in seeds {
            for cut in 0..=seed.len() {
                let _ = parse(&seed[..cut]);
                tried += 1;
            }
            for at in 0..seed.len() {
                for b in [0u8, b'"', b'\\', b'{', b'}', b'9', b'-', b'e', 0xff, 0xc3] {
                    let mut m = seed.to_vec();
                    m[at] = b;
                    if let Some(id) = readable_id(&m) {
                        assert!(is_id(&id));
                    }
                    if let Ok(c) = parse(&m) {
                        assert!(!c.id.is_empty());
                        if let CommandValue::Number(v) = c.value {
                            assert!(v.is_finite());
                        }
                    }
                    tried += 1;
                }
            }
        }
        assert!(tried > 1000);
    }

    #[test]
    fn only_a_device_level_between_prefix_and_command() {
        let p = "building/hq";
        assert_eq!(
            device_of_topic(p, "building/hq/ahu-1/command")
                .unwrap()
                .as_str(),
            "ahu-1"
        );
        assert!(device_of_topic(p, "building/hq/ahu-1/command/result").is_none());
        assert!(device_of_topic(p, "building/hq/a/b/command").is_none());
        assert!(device_of_topic(p, "building/hqx/a/command").is_none());
        assert!(device_of_topic(p, "building/hq//command").is_none());
    }
}
