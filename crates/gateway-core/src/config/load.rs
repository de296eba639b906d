//! Turning TOML text into typed sections while collecting *every* problem.
//!
//! serde stops at the first error of a struct, but an operator editing
//! `/etc/edge-gateway/gateway.toml` on a Pi wants the whole list at once. So
//! each section (and each element of an array of tables) is deserialised on
//! its own; when one fails, the offending key is recorded with its full path,
//! removed, and the section is tried again until it parses or nothing more
//! can be removed.

use std::fmt;

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

/// One thing wrong with the config, named by its TOML key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where the offending value was written when that is not the `-c`
    /// file itself: a drop-in (`conf.d/20-site.toml`) or an environment
    /// variable (`EDGE_GATEWAY__UPSTREAM__URL`). `None` for the main file,
    /// which the caller names once, so existing one-file output is unchanged.
    pub source: Option<String>,
    /// Dotted key path, `upstream.qos` or `adapter[0].topics[1]`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(source) = &self.source {
            write!(f, "{source}: ")?;
        }
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(Vec<Problem>);

impl Problems {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            source: None,
            path: path.into(),
            message: message.into(),
        });
    }
    /// Records a problem whose source is already known (a drop-in that is
    /// not valid TOML, a malformed environment variable).
    pub fn push_from(
        &mut self,
        source: impl Into<String>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.0.push(Problem {
            source: Some(source.into()),
            path: path.into(),
            message: message.into(),
        });
    }
    /// Fills in the source of every problem that has none, from its path.
    pub fn attribute(&mut self, source_of: impl Fn(&str) -> Option<String>) {
        for p in self.0.iter_mut().filter(|p| p.source.is_none()) {
            p.source = source_of(&p.path);
        }
    }
    /// Appends every problem of `other`.
    pub fn extend(&mut self, other: Problems) {
        self.0.extend(other.0);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter()
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Joins a parent path and a key into a dotted path.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Deserialises `value` as `T`, recording each problem under `path` and
/// retrying without the offending key. Returns `None` when it cannot be
/// made to parse.
pub fn section<T: DeserializeOwned>(
    value: toml::Value,
    path: &str,
    problems: &mut Problems,
) -> Option<T> {
    section_accepting(value, path, &[], problems)
}

/// Like [`section`], for a table whose other keys were taken out before
/// (`[upstream]`'s broker keys and `enabled`, an adapter's `type`): `also`
/// names them, so an unknown key's hint lists every key the table takes,
/// not only `T`'s (a misspelt `passwd_env` must be pointed at
/// `password_env`, which `T` never sees).
pub fn section_accepting<T: DeserializeOwned>(
    mut value: toml::Value,
    path: &str,
    also: &[&str],
    problems: &mut Problems,
) -> Option<T> {
    // Keys removed for a bad value: serde then finds them missing, which
    // is not a second problem.
    let mut refused: Vec<Vec<String>> = Vec::new();
    // Each round removes one key, so this bounds the work on hostile input.
    for _ in 0..64 {
        let err = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(parsed) => return Some(parsed),
            Err(e) => e,
        };
        let segments: Vec<String> = err
            .path()
            .iter()
            .filter_map(|s| match s {
                Segment::Map { key } => Some(key.clone()),
                Segment::Seq { index } => Some(format!("[{index}]")),
                Segment::Enum { .. } | Segment::Unknown => None,
            })
            .collect();
        // toml appends "\nin `key`" to its messages; the path already says it.
        let message = err
            .inner()
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();

        if let Some(field) = backticked(&message, "unknown field `") {
            // Depending on the struct's `default` attribute serde reports
            // the unknown key's parent or the key itself.
            let mut full = segments.clone();
            if full.last() != Some(&field) {
                full.push(field.clone());
            }
            let accepted = accepted_keys(&message, &field, also);
            problems.push(render(path, &full), unknown_key(&field, accepted));
            if !remove(&mut value, &full) {
                return None;
            }
            continue;
        }
        if let Some(field) = backticked(&message, "missing field `") {
            let mut full = segments.clone();
            full.push(field);
            if !refused.contains(&full) {
                problems.push(render(path, &full), "missing required key");
            }
            return None;
        }
        // serde quotes the value it refused (`invalid type: string "…"`):
        // not for a key that holds a secret.
        let message = match segments.last() {
            Some(key) if super::layers::is_secret_key(key) => without_quoted(&message),
            _ => in_words(&message),
        };
        problems.push(render(path, &segments), message);
        // A bad array element: drop the whole array so its index numbering
        // in later messages stays that of the file.
        let mut target = segments;
        if let Some(first_seq) = target.iter().position(|s| s.starts_with('[')) {
            target.truncate(first_seq);
        }
        if target.is_empty() || !remove(&mut value, &target) {
            return None;
        }
        refused.push(target);
    }
    None
}

/// serde's message with Rust's type names in words: "expected u8" means
/// nothing to whoever edits gateway.toml.
fn in_words(message: &str) -> String {
    let words = |ty: &str| -> Option<&'static str> {
        Some(match ty {
            "u8" => "a whole number from 0 to 255",
            "u16" => "a whole number from 0 to 65535",
            "u32" => "a whole number from 0 to 4294967295",
            "u64" | "usize" => "a whole number, 0 or more",
            "i8" => "a whole number from -128 to 127",
            "i16" => "a whole number from -32768 to 32767",
            "i32" => "a whole number from -2147483648 to 2147483647",
            "i64" | "isize" => "a whole number",
            "f32" | "f64" => "a number",
            _ => return None,
        })
    };
    if let Some((number, ty)) = message
        .strip_prefix("invalid value: integer `")
        .and_then(|rest| rest.split_once("`, expected "))
    {
        if let Some(w) = words(ty.trim()) {
            return format!("expected {w}, got {number}");
        }
    }
    match message.rsplit_once("expected ") {
        Some((head, ty)) => match words(ty.trim()) {
            Some(w) => format!("{head}expected {w}"),
            None => message.to_string(),
        },
        None => message.to_string(),
    }
}

/// The keys a table takes, from serde's "unknown field `x`, expected one
/// of `a`, `b`" (or "expected `a` or `b`", or "there are no fields"), and
/// `also`.
fn accepted_keys(message: &str, field: &str, also: &[&str]) -> Vec<String> {
    let after = message
        .split_once(&format!("`{field}`"))
        .map_or("", |(_, rest)| rest);
    let mut keys: Vec<String> = after
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    for key in also {
        if !keys.iter().any(|k| k == key) {
            keys.push((*key).to_string());
        }
    }
    keys
}

/// "unknown key, expected one of `password_env`, `username`, …": every key
/// the table takes, the closest to `field` first, so the one meant is the
/// first one read.
pub fn unknown_key(field: &str, mut accepted: Vec<String>) -> String {
    if accepted.is_empty() {
        return "unknown key: this table takes no keys".to_string();
    }
    // Equally close keys: the longer shared start first (`passwd` is
    // `password_env` more than `name`), then the struct's order (stable).
    accepted.sort_by_key(|known| {
        let shared = normalised(field)
            .chars()
            .zip(normalised(known).chars())
            .take_while(|(a, b)| a == b)
            .count();
        (closeness(field, known), std::cmp::Reverse(shared))
    });
    let listed: Vec<String> = accepted.iter().map(|k| format!("`{k}`")).collect();
    let mut out = format!("unknown key, expected one of {}", listed.join(", "));
    let plain = normalised(field);
    if plain.starts_with("pass")
        && !plain.ends_with("env")
        && accepted.iter().any(|k| k == "password_env")
    {
        out.push_str(
            " (a password is never written in the file: password_env names the environment variable that holds it)",
        );
    }
    out
}

/// How far `known` is from what was written: edits between the two, with
/// `_`, `-` and case ignored (`keepalive` is `keep_alive`), and one key of
/// four letters or more inside the other (`password` in `password_env`)
/// counted as one edit.
fn closeness(written: &str, known: &str) -> usize {
    let (w, k) = (normalised(written), normalised(known));
    let edits =
        strsim::damerau_levenshtein(written, known).min(strsim::damerau_levenshtein(&w, &k));
    let (short, long) = if w.len() <= k.len() {
        (&w, &k)
    } else {
        (&k, &w)
    };
    if short.len() >= 4 && long.contains(short.as_str()) {
        edits.min(1)
    } else {
        edits
    }
}

fn normalised(key: &str) -> String {
    key.chars()
        .filter(|c| !matches!(c, '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// `message` without what it quotes (`…` and "…"), for a secret's key.
fn without_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut inside: Option<char> = None;
    for c in message.chars() {
        match inside {
            Some(close) if c == close => {
                inside = None;
                out.push_str("<redacted>");
                out.push(c);
            }
            Some(_) => {}
            None if c == '`' || c == '"' => {
                inside = Some(c);
                out.push(c);
            }
            None => out.push(c),
        }
    }
    out
}

fn backticked(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    Some(rest.split('`').next()?.to_string())
}

fn render(parent: &str, segments: &[String]) -> String {
    let mut out = parent.to_string();
    for s in segments {
        if s.starts_with('[') {
            out.push_str(s);
        } else {
            out = join(&out, s);
        }
    }
    out
}

fn remove(value: &mut toml::Value, segments: &[String]) -> bool {
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut cur = value;
    for seg in parents {
        let next = match seg.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            Some(index) => index
                .parse::<usize>()
                .ok()
                .and_then(|i| cur.as_array_mut()?.get_mut(i)),
            None => cur.as_table_mut().and_then(|t| t.get_mut(seg)),
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    cur.as_table_mut().is_some_and(|t| t.remove(last).is_some())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct S {
        #[serde(default)]
        a: u8,
        #[serde(default)]
        list: Vec<String>,
        #[serde(default)]
        inner: Inner,
    }
    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[serde(default)]
        b: bool,
    }

    fn run(text: &str) -> (Option<S>, Vec<String>) {
        let v: toml::Value = toml::from_str(text).unwrap();
        let mut p = Problems::default();
        let s = section::<S>(v, "sec", &mut p);
        (s, p.iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn collects_every_problem_with_its_path() {
        let (s, problems) = run("a = 'x'\nbogus = 1\nlist = [1]\ninner = { b = 3, c = 1 }");
        assert!(
            s.is_some(),
            "falls back to defaults once the bad keys are gone"
        );
        assert_eq!(problems.len(), 5, "{problems:#?}");
        assert!(problems
            .iter()
            .any(|p| p.starts_with("sec.a: invalid type")));
        assert!(problems
            .iter()
            .any(|p| p.starts_with("sec.bogus: unknown key")));
        assert!(problems
            .iter()
            .any(|p| p.starts_with("sec.list[0]: invalid type")));
        assert!(problems
            .iter()
            .any(|p| p.starts_with("sec.inner.b: invalid type")));
        assert!(problems
            .iter()
            .any(|p| p.starts_with("sec.inner.c: unknown key")));
    }

    #[test]
    fn an_unknown_key_lists_every_accepted_key_the_closest_first() {
        let v: toml::Value = toml::from_str("passwd_env = 'X'\nkeepalive = '1s'").unwrap();
        let mut p = Problems::default();
        let _ = section_accepting::<S>(v, "upstream", &["password_env", "keep_alive"], &mut p);
        let got: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            got,
            [
                "upstream.keepalive: unknown key, expected one of `keep_alive`, `list`, `a`, `inner`, `password_env`",
                "upstream.passwd_env: unknown key, expected one of `password_env`, `a`, `list`, `inner`, `keep_alive`",
            ]
        );
        assert_eq!(
            unknown_key("password", vec!["url".into(), "username".into(), "password_env".into()]),
            "unknown key, expected one of `password_env`, `url`, `username` (a password is never written in the file: password_env names the environment variable that holds it)"
        );
    }

    #[test]
    fn a_refused_secret_is_not_quoted_back() {
        #[derive(Debug, Deserialize)]
        struct K {
            #[allow(dead_code)]
            app_key: u8,
        }
        let v: toml::Value = toml::from_str("app_key = 'A1B2C3'").unwrap();
        let mut p = Problems::default();
        assert!(section::<K>(v, "d", &mut p).is_none());
        let got = p.to_string();
        assert!(got.starts_with("d.app_key: invalid type"), "{got}");
        assert!(!got.contains("A1B2C3"), "{got}");
    }

    #[test]
    fn a_number_out_of_range_is_one_problem_in_words() {
        #[derive(Debug, Deserialize)]
        struct D {
            #[allow(dead_code)]
            unit: u8,
            #[allow(dead_code)]
            #[serde(default)]
            port: u16,
        }
        let v: toml::Value = toml::from_str("unit = 300\nport = 'x'").unwrap();
        let mut p = Problems::default();
        assert!(section::<D>(v, "modbus.device[0]", &mut p).is_none());
        let got: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            got,
            [
                "modbus.device[0].port: invalid type: string \"x\", expected a whole number from 0 to 65535",
                "modbus.device[0].unit: expected a whole number from 0 to 255, got 300",
            ],
            "no \"missing required key\" for the key just refused, and no Rust type names"
        );
    }

    #[test]
    fn good_input_has_no_problems() {
        let (s, problems) = run("a = 3\nlist = ['x']");
        assert_eq!(problems, Vec::<String>::new());
        assert_eq!(s.unwrap().a, 3);
    }
}
