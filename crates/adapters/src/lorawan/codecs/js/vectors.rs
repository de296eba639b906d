//! ChirpStack's device-profile test vectors: beside each codec `X.js`,
//! `test_decode_X.json` and `test_encode_X.json`, arrays of `{name,
//! input, expected}` (or, for a codec from The Things Network's device
//! repository, the examples of the `*-codec.yaml` naming it:
//! `vectors_ttn`). The files are JavaScript object literals (comments,
//! hex numbers, unquoted keys), so QuickJS reads them, not a JSON parser.
//!
//! A decode vector passes when `data` is equal (and `errors`/`warnings`
//! too, where the vector gives them); an encode vector when `bytes` are
//! (and `fPort`, where given). Numbers compare as numbers (`1` is `1.0`).
//!
//! Some codecs date what they decode from the machine's clock (`new
//! Date()`, not `input.recvTime`), or put the time in a downlink (a clock
//! sync), so their vectors hold the day they were written on and fail on
//! any other, under any engine. A vector that does not match is run again
//! at fixed clocks a day and three years apart: the fields that differ
//! between those follow the clock, and when everything else matches the
//! vector is counted apart, not failed, with a note naming them. A run
//! given a clock (`codec test --now`) judges every field at it instead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::engine::{Engine, UplinkInput};
use super::{Limits, ScriptError};

/// The outcome of a run: counts and one line per failure.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    pub decode_passed: usize,
    pub decode_total: usize,
    pub encode_passed: usize,
    pub encode_total: usize,
    /// One line per failing vector (or unreadable file).
    pub failures: Vec<String>,
    /// Codec files run (those with at least one vector file).
    pub codecs: usize,
    /// Codec files without vectors: not failures, said once each.
    pub without_vectors: Vec<String>,
    /// Decode vectors that matched but for fields following the clock.
    pub decode_clock_bound: usize,
    /// Encode vectors that matched but for bytes following the clock.
    pub encode_clock_bound: usize,
    /// One line per such vector, naming the fields.
    pub clock_notes: Vec<String>,
}

impl Summary {
    /// `decode: P of N passed; encode: P of M passed`, each with `(K more
    /// but for fields that follow the machine's clock)` when there are.
    pub fn last_line(&self) -> String {
        let clock_bound = |n: usize| match n {
            0 => String::new(),
            n => format!(" ({n} more but for fields that follow the machine's clock)"),
        };
        format!(
            "decode: {} of {} passed{}; encode: {} of {} passed{}",
            self.decode_passed,
            self.decode_total,
            clock_bound(self.decode_clock_bound),
            self.encode_passed,
            self.encode_total,
            clock_bound(self.encode_clock_bound)
        )
    }

    pub fn all_passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs the vectors of `path` (a codec file, or a directory searched
/// recursively for codec files) on a thread of its own; `clock_ms`, when
/// given, is the instant every codec's `new Date()` reads.
pub fn run(path: &Path, limits: Limits, clock_ms: Option<i64>) -> Summary {
    let path = path.to_path_buf();
    std::thread::Builder::new()
        .name("js-codec-test".into())
        .stack_size(super::pool::WORKER_STACK)
        .spawn(move || run_here(&path, limits, clock_ms))
        .ok()
        .and_then(|t| t.join().ok())
        .unwrap_or_else(|| Summary {
            failures: vec!["the test thread failed".into()],
            ..Summary::default()
        })
}

fn run_here(path: &Path, limits: Limits, clock_ms: Option<i64>) -> Summary {
    let mut summary = Summary::default();
    let mut files = Vec::new();
    if path.is_dir() {
        collect(path, &mut files);
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    for file in files {
        run_file(&file, limits, clock_ms, &mut summary);
    }
    summary
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "js") {
            out.push(path);
        }
    }
}

fn run_file(file: &Path, limits: Limits, clock_ms: Option<i64>, summary: &mut Summary) {
    let shown = file.display().to_string();
    let (Some(dir), Some(stem)) = (file.parent(), file.file_stem().and_then(|s| s.to_str())) else {
        return;
    };
    let decode_file = dir.join(format!("test_decode_{stem}.json"));
    let encode_file = dir.join(format!("test_encode_{stem}.json"));
    let ttn = if decode_file.exists() || encode_file.exists() {
        None
    } else {
        match super::vectors_ttn::vectors(file) {
            None => {
                summary.without_vectors.push(shown);
                return;
            }
            Some(Err(e)) => {
                summary.codecs += 1;
                summary.decode_total += 1;
                summary.failures.push(format!("FAIL {e}"));
                return;
            }
            Some(Ok(found)) => Some(found),
        }
    };
    summary.codecs += 1;
    let source: Arc<str> = match std::fs::read_to_string(file) {
        Ok(s) => s.into(),
        Err(e) => {
            summary.failures.push(format!("{shown}: {e}"));
            return;
        }
    };
    let mut reader = match Engine::new(Arc::from(""), "vectors", limits) {
        Ok(e) => e,
        Err(e) => {
            summary.failures.push(format!("{shown}: {e}"));
            return;
        }
    };
    let (decodes, encodes) = match ttn {
        Some(found) => found,
        None => (
            vectors(&mut reader, &decode_file, summary, true),
            vectors(&mut reader, &encode_file, summary, false),
        ),
    };
    let mut engine = match Engine::new(source, &shown, limits) {
        Ok(e) => Some(e),
        Err(e) => {
            summary.failures.push(format!("{shown}: {e}"));
            None
        }
    };
    for v in &decodes {
        summary.decode_total += 1;
        let verdict = match engine.as_mut() {
            Some(engine) => decode_vector(engine, v, clock_ms),
            None => Err("the codec did not load".into()),
        };
        match verdict {
            Ok(Matched::Fully) => summary.decode_passed += 1,
            Ok(Matched::ButForTheClock(fields)) => {
                summary.decode_clock_bound += 1;
                summary.clock_notes.push(clock_note(&shown, "decode", v, &fields));
            }
            Err(why) => summary
                .failures
                .push(format!("FAIL {shown} decode {:?}: {why}", name(v))),
        }
    }
    for v in &encodes {
        summary.encode_total += 1;
        let verdict = match engine.as_mut() {
            Some(engine) => encode_vector(engine, v, clock_ms),
            None => Err("the codec did not load".into()),
        };
        match verdict {
            Ok(Matched::Fully) => summary.encode_passed += 1,
            Ok(Matched::ButForTheClock(fields)) => {
                summary.encode_clock_bound += 1;
                summary.clock_notes.push(clock_note(&shown, "encode", v, &fields));
            }
            Err(why) => summary
                .failures
                .push(format!("FAIL {shown} encode {:?}: {why}", name(v))),
        }
    }
}

fn clock_note(codec: &str, which: &str, v: &Value, fields: &[String]) -> String {
    format!(
        "note: {codec} {which} {:?}: not compared, as the codec dates them from the machine's clock (`new Date()`): {}; `--now` judges them at a given instant",
        name(v),
        fields.join(", ")
    )
}

/// The vectors of one file; an unreadable file counts as one failed
/// vector, so it cannot pass unnoticed.
fn vectors(reader: &mut Engine, file: &Path, summary: &mut Summary, decode: bool) -> Vec<Value> {
    if !file.exists() {
        return Vec::new();
    }
    let shown = file.display().to_string();
    let parsed = std::fs::read_to_string(file)
        .map_err(|e| e.to_string())
        .and_then(|text| reader.literal(&text, &shown).map_err(|e| e.to_string()));
    let failed = |summary: &mut Summary, why: String| {
        if decode {
            summary.decode_total += 1;
        } else {
            summary.encode_total += 1;
        }
        summary.failures.push(format!("FAIL {shown}: {why}"));
    };
    match parsed {
        Ok(Value::Array(items)) => items,
        Ok(other) => {
            failed(
                summary,
                format!("expected an array of vectors, got {}", kind(&other)),
            );
            Vec::new()
        }
        Err(e) => {
            failed(summary, e);
            Vec::new()
        }
    }
}

fn name(v: &Value) -> String {
    v.get("name")
        .and_then(Value::as_str)
        .unwrap_or("(no name)")
        .to_string()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn variables(input: &Value) -> BTreeMap<String, String> {
    match input.get("variables") {
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// How a vector that passed matched.
enum Matched {
    Fully,
    /// All but these fields (JSON pointers into `data`, or `bytes`),
    /// which follow the clock the codec reads.
    ButForTheClock(Vec<String>),
}

/// The clocks a vector is run again at, from now: this far apart they
/// move any part of a time a codec writes, a date's text or each byte of
/// a count of seconds (its highest only every half year or so): a day and
/// an hour and a minute and a second and a bit, and three years less as
/// much, multiples of no period a codec is likely to wrap a time in.
const CLOCK_SHIFTS_MS: [i64; 3] = [0, 90_061_001, -94_608_000_000 - 90_061_001];

fn decode_vector(engine: &mut Engine, v: &Value, clock_ms: Option<i64>) -> Result<Matched, String> {
    let input = v.get("input").ok_or("no `input`")?;
    let bytes: Vec<u8> = match input.get("bytes") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|b| b.as_f64().map(|f| f as u8))
            .collect::<Option<_>>()
            .ok_or("`input.bytes` is not an array of numbers")?,
        _ => return Err("no `input.bytes`".into()),
    };
    let fport = input.get("fPort").and_then(Value::as_f64).map(|p| p as u8);
    // recvTime as the vector gives it; a Date of now without one.
    let recv_text = input.get("recvTime").and_then(Value::as_str);
    let vars = variables(input);
    let mut decode_at = |clock_ms: Option<i64>| {
        engine
            .decode(&UplinkInput {
                bytes: &bytes,
                fport,
                recv_ms: clock_ms.unwrap_or_else(now_ms),
                recv_text,
                variables: &vars,
                clock_ms,
            })
            .map_err(|e| describe(&e))
    };
    let got = decode_at(clock_ms)?;
    let expected = v.get("expected").ok_or("no `expected`")?;
    for key in ["errors", "warnings"] {
        if let Some(want) = expected.get(key) {
            let have = got.get(key).unwrap_or(&Value::Null);
            if !same_list(want, have) {
                return Err(difference(key, want, have));
            }
        }
    }
    let want = expected.get("data").unwrap_or(&Value::Null);
    let have = got.get("data").unwrap_or(&Value::Null);
    if same(want, have) {
        return Ok(Matched::Fully);
    }
    if clock_ms.is_some() {
        return Err(difference("data", want, have));
    }
    but_for_the_clock("data", want, have, decode_at)
}

/// Judges `have` (the result's `key`, at the machine's clock), which is
/// not `want`, by the results `run_at` gives at the clocks of
/// [`CLOCK_SHIFTS_MS`]: a match but for what differs between those, or
/// the difference.
fn but_for_the_clock(
    key: &str,
    want: &Value,
    have: &Value,
    mut run_at: impl FnMut(Option<i64>) -> Result<Value, String>,
) -> Result<Matched, String> {
    let now = now_ms();
    // A codec that fails at another clock cannot show what follows it:
    // the vector's own difference is the verdict.
    let Ok(runs) = CLOCK_SHIFTS_MS
        .iter()
        .map(|shift| run_at(Some(now.saturating_add(*shift))))
        .collect::<Result<Vec<_>, _>>()
    else {
        return Err(difference(key, want, have));
    };
    let mut moving = Vec::new();
    if let Some((first, rest)) = runs.split_first() {
        for other in rest {
            differing(
                first.get(key).unwrap_or(&Value::Null),
                other.get(key).unwrap_or(&Value::Null),
                &mut String::new(),
                &mut moving,
            );
        }
    }
    moving.sort();
    moving.dedup();
    if moving.is_empty() {
        return Err(difference(key, want, have));
    }
    let (want, have) = (without(want, &moving), without(have, &moving));
    if same(&want, &have) {
        Ok(Matched::ButForTheClock(moving))
    } else {
        Err(difference(key, &want, &have))
    }
}

/// The JSON pointers under which `a` and `b` differ, as deep as both
/// have the same shape.
fn differing(a: &Value, b: &Value, at: &mut String, out: &mut Vec<String>) {
    let len = at.len();
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                at.push('/');
                at.push_str(&key.replace('~', "~0").replace('/', "~1"));
                differing(
                    x.get(key).unwrap_or(&Value::Null),
                    y.get(key).unwrap_or(&Value::Null),
                    at,
                    out,
                );
                at.truncate(len);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                at.push('/');
                at.push_str(&i.to_string());
                differing(x, y, at, out);
                at.truncate(len);
            }
        }
        _ if same(a, b) => {}
        _ => out.push(if at.is_empty() { "/".into() } else { at.clone() }),
    }
}

/// `data` with the fields at `pointers` emptied.
fn without(data: &Value, pointers: &[String]) -> Value {
    let mut data = data.clone();
    for p in pointers {
        if p == "/" {
            return Value::Null;
        }
        if let Some(v) = data.pointer_mut(p) {
            *v = Value::Null;
        }
    }
    data
}

fn encode_vector(engine: &mut Engine, v: &Value, clock_ms: Option<i64>) -> Result<Matched, String> {
    let input = v.get("input").ok_or("no `input`")?;
    let data = input.get("data").cloned().unwrap_or(Value::Null);
    let fport = input.get("fPort").and_then(Value::as_f64).map(|p| p as u8);
    let vars = variables(input);
    let mut encode_at = |clock_ms: Option<i64>| {
        engine
            .encode(&data, fport, &vars, clock_ms)
            .map_err(|e| describe(&e))
    };
    let got = encode_at(clock_ms)?;
    let expected = v.get("expected").ok_or("no `expected`")?;
    let null = Value::Null;
    if let Some(want) = expected.get("errors") {
        let have = got.get("errors").unwrap_or(&null);
        if !same_list(want, have) {
            return Err(difference("errors", want, have));
        }
    }
    if let Some(want) = expected.get("fPort") {
        // Without a codec's own, ChirpStack sends on the given port.
        let given = input.get("fPort").unwrap_or(&null);
        let have = got.get("fPort").filter(|p| !p.is_null()).unwrap_or(given);
        if !same(want, have) {
            return Err(difference("fPort", want, have));
        }
    }
    let Some(want) = expected.get("bytes") else {
        return Ok(Matched::Fully);
    };
    let have = got.get("bytes").unwrap_or(&null);
    if same(want, have) {
        return Ok(Matched::Fully);
    }
    if clock_ms.is_some() {
        return Err(difference("bytes", want, have));
    }
    but_for_the_clock("bytes", want, have, encode_at)
}

fn describe(e: &ScriptError) -> String {
    format!("the codec failed: {e}")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Equal as JavaScript test runners see decoded objects: numbers by
/// value, objects by keys and values, arrays item by item.
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => same_number(x, y),
            (x, y) => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Equal, or a few units in the last place apart: engines' `Math.pow`
/// differ in the last bit (V8's `Math.pow(10, -5)` is
/// 0.000009999999999999999, QuickJS's 0.00001, correctly rounded), so a
/// vector written under Node must not fail here on that bit alone.
fn same_number(x: f64, y: f64) -> bool {
    const ULPS: u64 = 4;
    if x == y {
        return true;
    }
    if !x.is_finite() || !y.is_finite() || x.is_sign_negative() != y.is_sign_negative() {
        return false;
    }
    x.to_bits().abs_diff(y.to_bits()) <= ULPS
}

/// `errors`/`warnings`: an absent list is an empty one.
fn same_list(want: &Value, have: &Value) -> bool {
    let empty = |v: &Value| v.is_null() || v.as_array().is_some_and(Vec::is_empty);
    (empty(want) && empty(have)) || same(want, have)
}

fn difference(key: &str, want: &Value, have: &Value) -> String {
    let clip = |v: &Value| {
        let text = v.to_string();
        if text.len() > 300 {
            let cut: String = text.chars().take(300).collect();
            format!("{cut}…")
        } else {
            text
        }
    };
    // The first differing key, for objects, says more than two long lines.
    let first = match (want, have) {
        (Value::Object(w), Value::Object(h)) => w
            .keys()
            .chain(h.keys())
            .find(|k| match (w.get(*k), h.get(*k)) {
                (Some(a), Some(b)) => !same(a, b),
                _ => true,
            })
            .map(|k| {
                format!(
                    " (first at {k:?}: expected {}, got {})",
                    w.get(k).map_or("nothing".into(), &clip),
                    h.get(k).map_or("nothing".into(), &clip)
                )
            })
            .unwrap_or_default(),
        _ => String::new(),
    };
    format!(
        "{key} differs{first}: expected {}, got {}",
        clip(want),
        clip(have)
    )
}
