//! A payload that is one number: `21.5`, `"21.5"`, `true`, `ON`.
//!
//! The usual shape on `home/<device>/<metric>` topics, where the topic names
//! everything but the value.

use super::{text, Context, DecodeError, Decoded, When, DEFAULT_METRIC};

/// Decodes a plain number. `true`/`false` and `ON`/`OFF` (any case) count
/// as 1 and 0, because switches and contacts publish them on the same
/// topics as values (ESPHome's binary sensors and switches, Shelly's
/// relays, Tasmota's `stat/<topic>/POWER`).
pub(super) fn decode(payload: &[u8], ctx: &Context) -> Result<Decoded, DecodeError> {
    let mut out = Decoded::default();
    decode_into(payload, ctx, &mut out)?;
    Ok(out)
}

/// [`decode`] onto the end of `out`; on an error nothing is added.
pub(super) fn decode_into(
    payload: &[u8],
    ctx: &Context,
    out: &mut Decoded,
) -> Result<(), DecodeError> {
    let text = text(payload)?;
    // Some senders JSON-encode everything, so the value arrives quoted.
    let inner = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) => inner.trim(),
        None => text,
    };
    let value = if inner.eq_ignore_ascii_case("true") || inner.eq_ignore_ascii_case("on") {
        1.0
    } else if inner.eq_ignore_ascii_case("false") || inner.eq_ignore_ascii_case("off") {
        0.0
    } else {
        // `str::parse`'s value, by Clinger's fast path for plain decimals.
        super::decimal::parse(inner).ok_or_else(|| DecodeError::NotANumber {
            text: super::clip(inner),
        })?
    };
    // Rust parses `NaN`, `inf` and, as infinity, `1e400`; none may pass.
    if !value.is_finite() {
        return Err(DecodeError::NotFinite {
            text: super::clip(inner),
        });
    }
    let device = ctx.device.ok_or(DecodeError::NoDevice)?;
    match ctx.metric {
        // Already checked: no validation, no allocation.
        Some(m) => out.push_metric(device, m.as_str(), m.clone(), value, When::arrival(ctx.now)),
        None => out.push(
            device,
            DEFAULT_METRIC,
            DEFAULT_METRIC,
            value,
            When::arrival(ctx.now),
        ),
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::*;
    use super::super::{decode, DecodeError, PayloadFormat};
    use gateway_core::TimeSource::Arrival;

    #[test]
    fn numbers() {
        let d = dev("boiler");
        let m = metric("temperature");
        let named = ctx(Some(&d), Some(&m));
        let unnamed = ctx(Some(&d), None);
        let no_device = ctx(None, Some(&m));
        let one =
            |metric: &str, value: f64| ok(vec![r("boiler", metric, value, NOW, Arrival)], vec![]);
        let cases: Vec<(&str, &[u8], _, Want)> = vec![
            ("plain", b"23.4", named, one("temperature", 23.4)),
            (
                "metric defaults to `value`",
                b"23.4",
                unnamed,
                one("value", 23.4),
            ),
            (
                "white space and CRLF",
                b" \t-7.25\r\n",
                named,
                one("temperature", -7.25),
            ),
            ("exponent", b"2.34e1", named, one("temperature", 23.4)),
            ("integer", b"42", named, one("temperature", 42.0)),
            ("JSON-quoted", b"\"23.4\"", named, one("temperature", 23.4)),
            (
                "JSON-quoted with spaces",
                b"\" 23.4 \"",
                named,
                one("temperature", 23.4),
            ),
            ("true", b"true", named, one("temperature", 1.0)),
            (
                "Python's str(False)",
                b"False",
                named,
                one("temperature", 0.0),
            ),
            (
                "byte order mark",
                b"\xef\xbb\xbf5",
                named,
                one("temperature", 5.0),
            ),
            (
                "ESPHome's binary sensor",
                b"ON",
                named,
                one("temperature", 1.0),
            ),
            ("Shelly's relay", b"off", named, one("temperature", 0.0)),
            ("empty", b"", named, Err(DecodeError::Empty)),
            ("only white space", b" \r\n", named, Err(DecodeError::Empty)),
            (
                "invalid UTF-8",
                b"2\xff3",
                named,
                Err(DecodeError::NotUtf8 { valid_up_to: 1 }),
            ),
            ("NaN", b"NaN", named, Err(not_finite("NaN"))),
            ("inf", b"-inf", named, Err(not_finite("-inf"))),
            (
                "quoted Infinity",
                b"\"Infinity\"",
                named,
                Err(not_finite("Infinity")),
            ),
            ("overflows f64", b"1e400", named, Err(not_finite("1e400"))),
            ("word", b"hot", named, Err(not_a_number("hot"))),
            ("unit suffix", b"23.4 C", named, Err(not_a_number("23.4 C"))),
            ("comma decimal", b"23,4", named, Err(not_a_number("23,4"))),
            ("lone quote", b"\"", named, Err(not_a_number("\""))),
            ("empty quotes", b"\"\"", named, Err(not_a_number(""))),
            (
                "JSON object",
                b"{\"v\":1}",
                named,
                Err(not_a_number("{\"v\":1}")),
            ),
            ("no device", b"23.4", no_device, Err(DecodeError::NoDevice)),
        ];
        for (label, payload, ctx, want) in cases {
            assert_decoded(label, decode(&PayloadFormat::Number, payload, &ctx), want);
        }
    }

    #[test]
    fn long_junk_is_echoed_clipped() {
        let d = dev("boiler");
        let junk = "x".repeat(1 << 20);
        let err = decode(
            &PayloadFormat::Number,
            junk.as_bytes(),
            &ctx(Some(&d), None),
        )
        .unwrap_err();
        let DecodeError::NotANumber { text } = err else {
            panic!("{err:?}")
        };
        assert!(text.len() < 200, "{}", text.len());
    }

    fn not_finite(text: &str) -> DecodeError {
        DecodeError::NotFinite { text: text.into() }
    }

    fn not_a_number(text: &str) -> DecodeError {
        DecodeError::NotANumber { text: text.into() }
    }
}
