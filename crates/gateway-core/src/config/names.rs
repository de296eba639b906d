//! The names the config gives to adapters, rules, sinks and dashboard
//! users. They become label values in `/metrics`, fields of upstream
//! payloads, log fields and parts of file names, so they are kept to a
//! small, documented set of characters: 1 to 64 of the letters `A`–`Z`
//! and `a`–`z`, the digits, `_`, `-` and `.`, starting with a letter or a
//! digit (a dashboard user's name may also hold `@`, for an e-mail
//! address). A name like `k"v} 1\n…` used to pass and forge samples in
//! `/metrics`; the exposition escapes every label value anyway, but a name
//! nobody can read back in a dashboard or a query is a mistake to report.

/// The longest name.
pub const MAX_NAME_LEN: usize = 64;

/// What [`check`] accepts, as a problem says it.
pub const NAME_RULE: &str = "1 to 64 of A-Z a-z 0-9 _ - . starting with a letter or a digit";

/// `Err` with the reason when `name` is not a name; `extra` are further
/// characters allowed after the first (`@` for a user).
///
/// # Errors
/// What is wrong, with the offending character shown escaped.
pub fn check(name: &str, extra: &[char]) -> Result<(), String> {
    let Some(first) = name.chars().next() else {
        return Err(format!("expected {NAME_RULE}, got an empty name"));
    };
    if name.len() > MAX_NAME_LEN {
        return Err(format!("expected {NAME_RULE}, got {} bytes", name.len()));
    }
    if !first.is_ascii_alphanumeric() {
        return Err(format!(
            "expected {NAME_RULE}, got {:?} first",
            first.to_string()
        ));
    }
    let allowed =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') || extra.contains(&c);
    match name.chars().find(|c| !allowed(*c)) {
        // Debug-escaped: a newline or a quote in the name is shown as such,
        // not acted on by the terminal or the journal.
        Some(c) => Err(format!(
            "expected {NAME_RULE}, got {:?} in {:?}",
            c.to_string(),
            name
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_a_documented_charset() {
        for good in ["local-sensors", "co2_high", "influx.2", "A", "9"] {
            assert_eq!(check(good, &[]), Ok(()), "{good}");
        }
        assert_eq!(check("ops@example.org", &['@']), Ok(()));
        for bad in [
            "",
            "k\\\"v} 1\nedge_gateway_injected_total 43\n",
            "two words",
            "-lead",
            "a\u{0}b",
            "ü",
            "a:b",
            &"x".repeat(65),
        ] {
            assert!(check(bad, &[]).is_err(), "{bad:?}");
        }
        let said = check("k\"v}\n", &[]).err().unwrap_or_default();
        assert!(!said.contains('\n'), "{said}");
    }
}
