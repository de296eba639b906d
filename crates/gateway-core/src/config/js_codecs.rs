//! `[js_codecs]`: vendors' JavaScript codecs written into the config
//! itself, by name (`em300-th = """function decodeUplink(input) {…}"""`),
//! which `codec = "js:em300-th"` then names wherever `js:FILE` is taken.
//!
//! A codec file must be put on each Pi by hand, and a configuration pushed
//! from the cloud carries TOML only: a fleet could not add a vendor's
//! sensor without SSH. A codec in the config travels with the push, under
//! its signature, like every other key.
//!
//! Sections are parsed from the merged table alone, so the reader sets the
//! codecs around the parse, per thread as the parse is ([`scope`]), as
//! [`super::base_dir`] does for the files' directory.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::Problems;

/// The largest codec text taken (the vendors' largest are tens of KB).
pub const MAX_SOURCE_BYTES: usize = 1 << 20;
/// The longest codec name.
const MAX_NAME: usize = 64;

thread_local! {
    static CODECS: RefCell<BTreeMap<String, Arc<str>>> = const { RefCell::new(BTreeMap::new()) };
}

/// While alive, [`get`] answers from the codecs it was made with; the
/// ones before come back when it is dropped.
pub struct Scope {
    before: BTreeMap<String, Arc<str>>,
}

/// Makes `codecs` the config's codecs on this thread until the returned
/// guard is dropped.
pub fn scope(codecs: BTreeMap<String, Arc<str>>) -> Scope {
    Scope {
        before: CODECS.with(|c| c.replace(codecs)),
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let before = std::mem::take(&mut self.before);
        CODECS.with(|c| *c.borrow_mut() = before);
    }
}

/// The text of the codec `name` in the config being parsed, if it has one.
pub fn get(name: &str) -> Option<Arc<str>> {
    CODECS.with(|c| c.borrow().get(name).cloned())
}

/// A name `js:` can tell from a file's path: letters, digits, `-` and
/// `_`, so never a path with a directory or an extension.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Reads `[js_codecs]`: each key a codec's name, each value its text.
pub fn parse(value: Option<&toml::Value>, problems: &mut Problems) -> BTreeMap<String, Arc<str>> {
    let mut codecs = BTreeMap::new();
    let Some(value) = value else {
        return codecs;
    };
    let Some(table) = value.as_table() else {
        problems.push(
            "js_codecs",
            "expected a table of codec names to their JavaScript text",
        );
        return codecs;
    };
    for (name, text) in table {
        let path = format!("js_codecs.{name}");
        if !is_name(name) {
            problems.push(
                path,
                format!("a codec's name is 1 to {MAX_NAME} letters, digits, '-' or '_' (so `js:` tells it from a file)"),
            );
            continue;
        }
        match text.as_str() {
            Some(t) if t.len() > MAX_SOURCE_BYTES => problems.push(
                path,
                format!(
                    "{} bytes of codec text, more than the {MAX_SOURCE_BYTES} taken",
                    t.len()
                ),
            ),
            Some(t) if t.trim().is_empty() => problems.push(path, "the codec's text is empty"),
            Some(t) => {
                codecs.insert(name.clone(), Arc::from(t));
            }
            None => problems.push(
                path,
                "expected the codec's JavaScript as a string (\"\"\"…\"\"\")",
            ),
        }
    }
    codecs
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Value {
        toml::Value::Table(toml::from_str(text).unwrap())
    }

    #[test]
    fn codecs_are_named_text_and_the_rest_is_named_as_a_problem() {
        let mut problems = Problems::default();
        let codecs = parse(
            Some(&table(
                "em300-th = \"function decodeUplink(i) { return {data: {}}; }\"\n\
                 \"codecs/x.js\" = \"x\"\nempty = \"  \"\nnumber = 5\n",
            )),
            &mut problems,
        );
        assert_eq!(codecs.keys().collect::<Vec<_>>(), ["em300-th"]);
        let text = problems.to_string();
        assert!(text.contains("js_codecs.codecs/x.js"), "{text}");
        assert!(text.contains("js_codecs.empty"), "{text}");
        assert!(text.contains("js_codecs.number"), "{text}");
        let mut problems = Problems::default();
        let big = format!("big = \"{}\"", "a".repeat(MAX_SOURCE_BYTES + 1));
        assert!(parse(Some(&table(&big)), &mut problems).is_empty());
        assert!(problems.to_string().contains("more than"), "{problems}");
    }

    #[test]
    fn the_codecs_are_known_only_inside_their_scope() {
        assert!(get("a").is_none());
        {
            let _outer = scope(BTreeMap::from([("a".to_string(), Arc::from("1"))]));
            assert_eq!(get("a").as_deref(), Some("1"));
            {
                let _inner = scope(BTreeMap::new());
                assert!(get("a").is_none());
            }
            assert_eq!(get("a").as_deref(), Some("1"));
        }
        assert!(get("a").is_none());
    }
}
