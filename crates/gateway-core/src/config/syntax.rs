//! A TOML syntax error as a config problem: the key of the line it is on,
//! its line and column, and the parser's reason, but never the line itself.
//!
//! toml's own rendering quotes the source line under a caret, and the line
//! of a secret holds it: `app_key = "A1B2…8F90` with its quote left open
//! went verbatim to `validate`'s output and the journal of `run`. A line
//! that is not a secret's could still be one: the rest of a multi-line
//! string, or a key the secret list does not know. So no line is quoted:
//! its key path and position find it as quickly in an editor.

use super::layers::is_secret_key;

/// Where a syntax error is and what the parser says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// The key of the line (`lorawan.device[0].app_key`), the table of a
    /// header line, or empty when the line has neither.
    pub path: String,
    /// `not valid TOML (line 3, column 11): invalid basic string`.
    pub message: String,
}

/// Describes `error`, found in `text`.
pub fn describe(text: &str, error: &toml::de::Error) -> SyntaxError {
    let reason = reason(error.message());
    let Some(at) = error.span().map(|s| s.start.min(text.len())) else {
        return SyntaxError {
            path: String::new(),
            message: format!("not valid TOML: {reason}"),
        };
    };
    let before = text.get(..at).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text
        .get(line_start..at)
        .map_or(1, |s| s.chars().count() + 1);
    let path = key_path(text, line_start);
    let secret = path.rsplit('.').next().is_some_and(is_secret_key);
    // The parser's words name tokens, not the text: still, for a secret's
    // line nothing but the position is said.
    let message = if secret {
        format!("not valid TOML (line {line}, column {column}); the value is not shown (a secret)")
    } else {
        format!("not valid TOML (line {line}, column {column}): {reason}")
    };
    SyntaxError { path, message }
}

/// The parser's message on one line.
fn reason(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        "syntax error".to_string()
    } else {
        lines.join("; ")
    }
}

/// The dotted path of the key assigned on the line starting at
/// `line_start`, inside the table the headers above it opened
/// (`[[lorawan.device]]` counted, so the second is `lorawan.device[1]`).
fn key_path(text: &str, line_start: usize) -> String {
    let mut table = String::new();
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let above = text.get(..line_start).unwrap_or_default();
    for l in above.lines() {
        if let Some(name) = header(l, "[[", "]]") {
            let n = counts.entry(name.clone()).or_insert(0);
            table = format!("{name}[{n}]");
            *n += 1;
        } else if let Some(name) = header(l, "[", "]") {
            table = name;
        }
    }
    let own = text.get(line_start..).unwrap_or_default();
    let own = own.lines().next().unwrap_or_default();
    if let Some(name) = header(own, "[[", "]]").or_else(|| header(own, "[", "]")) {
        return name;
    }
    let Some((key, _)) = own.split_once('=') else {
        return table;
    };
    let key: Vec<String> = key
        .split('.')
        .map(|k| k.trim().trim_matches(['"', '\'']).to_string())
        .collect();
    if key
        .iter()
        .any(|k| k.is_empty() || k.contains(char::is_whitespace))
    {
        return table;
    }
    super::load::join(&table, &key.join("."))
}

/// `name` of a `[name]` (or `[[name]]`) line, spaces and a comment allowed.
fn header(line: &str, open: &str, close: &str) -> Option<String> {
    let line = line.trim();
    let inner = line.strip_prefix(open)?;
    let (name, rest) = inner.split_once(close)?;
    let rest = rest.trim();
    if !(rest.is_empty() || rest.starts_with('#')) || name.starts_with('[') {
        return None;
    }
    let name: Vec<&str> = name
        .split('.')
        .map(|k| k.trim().trim_matches(['"', '\'']))
        .collect();
    Some(name.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(text: &str) -> SyntaxError {
        match toml::from_str::<toml::Table>(text) {
            Ok(_) => panic!("parsed: {text}"),
            Err(e) => describe(text, &e),
        }
    }

    #[test]
    fn a_secret_on_the_line_is_never_shown() {
        let key = "A1B2C3D4E5F60718293A4B5C6D7E8F90";
        for (text, path) in [
            (
                format!("[lorawan]\nregion = \"EU868\"\n\n[[lorawan.device]]\ndev_eui = \"0004A30B001C0530\"\napp_key = \"{key}\n"),
                "lorawan.device[0].app_key",
            ),
            (
                format!("[[coap.psk]]\nidentity = \"a\"\nkey = \"x\"\n[[coap.psk]]\nidentity = \"node-7\"\nkey = \"{key}\n"),
                "coap.psk[1].key",
            ),
            (
                format!("[[lorawan.device]]\nnwk_s_key = {key}\n"),
                "lorawan.device[0].nwk_s_key",
            ),
        ] {
            let p = problem(&text);
            assert_eq!(p.path, path, "{text}");
            assert!(p.message.starts_with("not valid TOML (line "), "{p:?}");
            assert!(!p.message.contains("A1B2"), "{p:?}");
            assert!(!p.path.contains("A1B2"), "{p:?}");
        }
    }

    #[test]
    fn other_errors_name_their_key_position_and_reason() {
        let p = problem("[aggregation]\nwindow = \"5m\"\nmax_series = 18446744073709551616\n");
        assert_eq!(p.path, "aggregation.max_series");
        assert!(
            p.message
                .starts_with("not valid TOML (line 3, column 14): "),
            "{p:?}"
        );
        assert!(!p.message.contains('\n'), "{p:?}");
        let p = problem("[gateway\nid = \"x\"\n");
        assert!(p.message.starts_with("not valid TOML (line 1, "), "{p:?}");
        let p = problem("this is = not toml =");
        assert!(p.message.starts_with("not valid TOML (line 1, "), "{p:?}");
    }
}
