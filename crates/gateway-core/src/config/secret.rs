//! Secrets written in the config either as their value or as `env:VAR`,
//! read from the environment (`/etc/default/edge-gateway` for the packaged
//! service) so the file itself can be shared. Problems name the key and
//! where the value came from, never the value.
//!
//! One rule for showing them, by type: a secret held as a [`Secret`]
//! prints as `<redacted>` whatever formats it (a log field, `{:?}` of a
//! config, an error), and the one place that needs the value asks for it
//! by name ([`Secret::expose`]). A password inside a URL is cut out by
//! [`redact_url`] wherever a URL is shown; the config refuses such URLs
//! anyway and names the key to use instead.

use std::borrow::Cow;
use std::fmt::{self, Display};
use std::str::FromStr;

use super::load::Problems;

/// What every secret prints as.
pub const REDACTED: &str = "<redacted>";

/// A secret's text: shown as `<redacted>` by `Display` and `Debug` alike.
#[derive(Clone, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that sends or checks it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// `text` with the user info of any `scheme://user:password@host` in it
/// replaced by `<redacted>`: for showing a URL (or a message that quotes
/// one) that may carry credentials. Works on text that is not a valid URL
/// too, since an error about a bad URL quotes it as written.
pub fn redact_url(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut rest = text;
    let mut changed = false;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(['/', '?', '#', '"', '\'', ' ', '\n'])
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str(REDACTED);
                out.push_str(&authority[at..]);
                changed = true;
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    if !changed {
        return Cow::Borrowed(text);
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Whether `text` is a URL that carries a user or a password.
pub fn url_has_credentials(text: &str) -> bool {
    matches!(redact_url(text), Cow::Owned(_))
}

/// The text of a secret, and where it came from ("the value" or
/// "environment variable VAR"); an unset variable is a problem at `path`.
pub fn resolve(
    text: &str,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Option<(String, String)> {
    match text.strip_prefix("env:") {
        // A variable set to nothing is a mistake (an unfilled line in
        // /etc/default/edge-gateway), never a key.
        Some(var) => match env(var) {
            Some(v) if v.is_empty() => {
                problems.push(path, format!("environment variable {var} is set but empty"));
                None
            }
            Some(v) => Some((v, format!("environment variable {var}"))),
            None => {
                problems.push(
                    path,
                    format!("environment variable {var} is not set (for the packaged service: /etc/default/edge-gateway)"),
                );
                None
            }
        },
        None if text.is_empty() => {
            problems.push(path, "empty: a secret must have a value");
            None
        }
        None => Some((text.to_string(), "the value".to_string())),
    }
}

/// A secret parsed as `T` (a hex key, say); a bad one is reported with its
/// source and the parser's reason.
pub fn parse<T>(
    text: &str,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Option<T>
where
    T: FromStr,
    T::Err: Display,
{
    let (value, source) = resolve(text, path, env, problems)?;
    value
        .trim()
        .parse::<T>()
        .map_err(|e| problems.push(path, format!("{source}: {e}")))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(var: &str) -> Option<String> {
        match var {
            "SET" => Some(" 42 ".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn an_empty_secret_is_refused() {
        let mut p = Problems::default();
        assert_eq!(parse::<u8>("env:EMPTY", "k", &env, &mut p), None);
        assert_eq!(resolve("", "j", &env, &mut p), None);
        let got: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            got,
            [
                "k: environment variable EMPTY is set but empty",
                "j: empty: a secret must have a value"
            ]
        );
    }

    #[test]
    fn a_secret_never_prints_and_urls_lose_their_credentials() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "<redacted> <redacted>");
        assert_eq!(s.expose(), "hunter2");
        for (text, shown) in [
            ("http://u:hunter2@h:8086/x", "http://<redacted>@h:8086/x"),
            ("mqtt://u@h", "mqtt://<redacted>@h"),
            (
                "mqtts://:hunter2@[::1]:8883",
                "mqtts://<redacted>@[::1]:8883",
            ),
            (
                "got \"mqtt://a:b@c:d@h/p\", and coap://h/x",
                "got \"mqtt://<redacted>@h/p\", and coap://h/x",
            ),
            ("http://h:8086/?u=x@y", "http://h:8086/?u=x@y"),
            ("no url at all: a@b", "no url at all: a@b"),
        ] {
            assert_eq!(redact_url(text), shown, "{text}");
            assert_eq!(url_has_credentials(text), text != shown, "{text}");
        }
    }

    #[test]
    fn a_secret_is_its_value_or_a_variable_and_problems_never_show_it() {
        let mut p = Problems::default();
        assert_eq!(parse::<u8>("7", "k", &env, &mut p), Some(7));
        assert_eq!(parse::<u8>("env:SET", "k", &env, &mut p), Some(42));
        assert!(p.is_empty());
        assert_eq!(parse::<u8>("env:UNSET", "a.key", &env, &mut p), None);
        assert_eq!(parse::<u8>("secret-xyz", "b.key", &env, &mut p), None);
        let got: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        assert!(
            got[0].starts_with("a.key: environment variable UNSET is not set"),
            "{got:?}"
        );
        assert!(got[1].starts_with("b.key: the value: "), "{got:?}");
        assert!(
            !got[1].contains("secret-xyz"),
            "the value is never echoed: {got:?}"
        );
    }
}
