//! Secrets written in the config either as their value or as `env:VAR`,
//! read from the environment (`/etc/default/edge-gateway` for the packaged
//! service) so the file itself can be shared. Problems name the key and
//! where the value came from, never the value.

use std::fmt::Display;
use std::str::FromStr;

use super::load::Problems;

/// The text of a secret, and where it came from ("the value" or
/// "environment variable VAR"); an unset variable is a problem at `path`.
pub fn resolve(
    text: &str,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Option<(String, String)> {
    match text.strip_prefix("env:") {
        Some(var) => match env(var) {
            Some(v) => Some((v, format!("environment variable {var}"))),
            None => {
                problems.push(
                    path,
                    format!("environment variable {var} is not set (for the packaged service: /etc/default/edge-gateway)"),
                );
                None
            }
        },
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
        (var == "SET").then(|| " 42 ".to_string())
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
