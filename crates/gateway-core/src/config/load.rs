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
    mut value: toml::Value,
    path: &str,
    problems: &mut Problems,
) -> Option<T> {
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
            problems.push(
                render(path, &full),
                message.replace(&format!("unknown field `{field}`"), "unknown key"),
            );
            if !remove(&mut value, &full) {
                return None;
            }
            continue;
        }
        if let Some(field) = backticked(&message, "missing field `") {
            let mut full = segments.clone();
            full.push(field);
            problems.push(render(path, &full), "missing required key");
            return None;
        }
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
    }
    None
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
    fn good_input_has_no_problems() {
        let (s, problems) = run("a = 3\nlist = ['x']");
        assert_eq!(problems, Vec::<String>::new());
        assert_eq!(s.unwrap().a, 3);
    }
}
