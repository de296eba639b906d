//! The JSON object most sensors send, read without serde:
//! `{"temperature": 21.5, "humidity": 40}`, a flat object of up to
//! [`MAX_FIELDS`] keys without escapes, each once, every value a number in
//! plain decimal (no exponent). Anything else (a string, a boolean, a
//! `null`, a nested value, an escape, an exponent, a duplicate key, more
//! fields) returns `None` and the caller reads the text with serde as
//! before, so an object read here reads exactly as serde reads it.
//!
//! Why: for a CoAP datagram or an MQTT message of one or two values,
//! serde_json's parse into a `Value` per field (and the map of them) was
//! a fifth of the instructions the gateway spent on it (callgrind, issue
//! 69).

/// Fields read here, at most; a larger object goes to serde.
pub(super) const MAX_FIELDS: usize = 16;

/// The object's fields in order, keys borrowed from `text`; `None` when
/// it is not of the plain shape above.
#[cfg(test)]
pub(super) fn fields(text: &str) -> Option<Fields<&str>> {
    let mut out = Fields::default();
    fields_into(text, &mut out).then_some(out)
}

/// [`fields`] into the caller's `out` (empty), `false` when declined: the
/// 400 bytes of a [`Fields`] were copied out of the call and into its
/// `Option` (a memcpy a datagram, 128 of a CoAP datagram's instructions).
pub(super) fn fields_into<'a>(text: &'a str, out: &mut Fields<&'a str>) -> bool {
    // The text is UTF-8 already and a key ends at an ASCII quote, so its
    // slice is text too: the pieces are sliced, not checked again (a
    // check per key and number was a twentieth of a CoAP datagram's
    // instructions).
    let key = |start: usize, end: usize| text.get(start..end);
    read_fields(
        text.as_bytes(),
        &super::decimal::ENDS_PLAIN_STRING,
        key,
        |key, value| out.push(key, value),
    )
    .is_some()
}

/// The fields [`fields_into`] reads, of bytes not known to be text, for a
/// caller that has not checked them: only an object whose keys are ASCII
/// is read, so what is read is ASCII throughout (its punctuation,
/// whitespace and numbers are), hence UTF-8, and reads as [`fields_into`]
/// reads its text. The UTF-8 check of the whole payload, one call into
/// `core` of about 70 instructions for a few bytes, is not needed for it
/// (issue 69).
///
/// Each field goes to `field` as it is read, which declines the object
/// with `None`; `false` when it did or the object is not of the plain
/// shape. The count and the duplicate keys are `field`'s to refuse: a
/// caller that keeps what it took has them at hand, and a [`Fields`] to
/// collect them in (its 400 bytes set up, then walked twice) was a
/// seventh of the fast path's instructions (issue 69).
#[cfg(feature = "coap")]
pub(super) fn ascii_fields_each<'a>(
    bytes: &'a [u8],
    field: impl FnMut(&'a [u8], f64) -> Option<()>,
) -> bool {
    let key = |start: usize, end: usize| bytes.get(start..end);
    read_fields(bytes, &ENDS_ASCII_STRING, key, field).is_some()
}

/// [`super::decimal::ENDS_PLAIN_STRING`], also ending at any byte that is
/// not ASCII: [`ascii_fields_each`] declines such a key.
#[cfg(feature = "coap")]
const ENDS_ASCII_STRING: [bool; 256] = {
    let mut table = super::decimal::ENDS_PLAIN_STRING;
    let mut b = 0x80;
    while b < 0x100 {
        table[b] = true;
        b += 1;
    }
    table
};

/// Reads `s`, each field to `field`: a key's scan stops at the first byte
/// `ends` marks, which must be its closing quote; `key` makes the key of
/// its bytes `start..end`.
fn read_fields<K>(
    s: &[u8],
    ends: &[bool; 256],
    key: impl Fn(usize, usize) -> Option<K>,
    mut field: impl FnMut(K, f64) -> Option<()>,
) -> Option<()> {
    let mut r = Reader { s, at: 0 };
    r.byte(b'{')?;
    loop {
        let (start, end) = r.key(ends)?;
        let key = key(start, end)?;
        r.byte(b':')?;
        r.skip_ws();
        let value = r.number()?;
        field(key, value)?;
        match r.next()? {
            b',' => continue,
            b'}' => break,
            _ => return None,
        }
    }
    r.skip_ws();
    (r.at == r.s.len()).then_some(())
}

/// What [`fields_into`] read: at least one field when it said `true`.
/// Keys are text.
/// Keys beside their values: one slice to walk (two zipped were a
/// tenth of the CoAP fast path's instructions, issue 69).
pub(crate) struct Fields<K> {
    pairs: [(K, f64); MAX_FIELDS],
    len: usize,
}

impl<K: Copy + Default> Default for Fields<K> {
    fn default() -> Self {
        Self {
            pairs: [(K::default(), 0.0); MAX_FIELDS],
            len: 0,
        }
    }
}

impl<K: Copy + PartialEq> Fields<K> {
    pub(super) fn iter(&self) -> impl Iterator<Item = (K, f64)> + '_ {
        self.pairs[..self.len].iter().copied()
    }

    /// Adds a field; `None` past [`MAX_FIELDS`] or for a key read before.
    fn push(&mut self, key: K, value: f64) -> Option<()> {
        if self.len == MAX_FIELDS || self.pairs[..self.len].iter().any(|(k, _)| *k == key) {
            return None;
        }
        self.pairs[self.len] = (key, value);
        self.len += 1;
        Some(())
    }
}

struct Reader<'a> {
    s: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte that is not whitespace, consumed.
    fn next(&mut self) -> Option<u8> {
        self.skip_ws();
        let b = *self.s.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn byte(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// Where a key without escapes or control characters (nor any byte
    /// `ends` marks) starts and ends.
    fn key(&mut self, ends: &[bool; 256]) -> Option<(usize, usize)> {
        self.byte(b'"')?;
        let start = self.at;
        let rest = self.s.get(start..)?;
        let len = rest.iter().position(|&b| ends[usize::from(b)])?;
        if rest[len] != b'"' {
            return None;
        }
        self.at = start + len + 1;
        Some((start, start + len))
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`, finite. Rust's parse (which
    /// `decimal::parse` gives, faster for these) and
    /// serde_json's (`float_roundtrip`) both round correctly, and an
    /// integer serde reads as `u64`/`i64` converts to the same nearest
    /// f64, so the value is serde's. The number's bytes are ASCII.
    ///
    /// Read in one scan, the digits gathered as they are checked: a scan
    /// for the end and another for the value were half the reader's
    /// instructions (issue 69). The value is `decimal::plain_bytes`'s.
    fn number(&mut self) -> Option<f64> {
        let s = self.s;
        let start = self.at;
        let negative = s.get(start) == Some(&b'-');
        let mut at = start + usize::from(negative);
        // Wrapping past 19 digits, which `exact` then refuses.
        let mut mantissa = 0u64;
        let mut digits = |at: &mut usize| {
            let from = *at;
            while let Some(&b @ b'0'..=b'9') = s.get(*at) {
                mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
                *at += 1;
            }
            *at - from
        };
        let first = *s.get(at)?;
        let int_digits = digits(&mut at);
        if int_digits == 0 || (first == b'0' && int_digits > 1) {
            return None;
        }
        let mut decimals = 0;
        if s.get(at) == Some(&b'.') {
            at += 1;
            decimals = digits(&mut at);
            if decimals == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = s.get(at) {
            return None;
        }
        self.at = at;
        super::decimal::exact(negative, mantissa, int_digits + decimals, decimals)
            .or_else(|| std::str::from_utf8(s.get(start..at)?).ok()?.parse().ok())
            .filter(|v: &f64| v.is_finite())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn read(text: &str) -> Option<Vec<(String, f64)>> {
        fields(text).map(|f| f.iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    #[test]
    fn plain_objects_read_as_serde_reads_them() {
        for text in [
            r#"{"value": 21.5}"#,
            r#"{"temperature":21.5,"humidity":40}"#,
            " {\n\t\"a\" : -0 , \"b\":0.000001 ,\"c\":18446744073709551617}\r\n",
            r#"{"big": 9007199254740993, "neg": -9223372036854775809, "z": -0.0}"#,
            r#"{"é": 1}"#,
        ] {
            let ours = read(text).unwrap_or_else(|| panic!("{text}"));
            let theirs: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(text).unwrap();
            assert_eq!(ours.len(), theirs.len(), "{text}");
            for (k, v) in &ours {
                let tv = theirs[k].as_f64().unwrap();
                assert_eq!(v.to_bits(), tv.to_bits(), "{text}: {k} {v} {tv}");
            }
        }
    }

    /// The one-scan number reader against the two scans it replaced (the
    /// end by `json_number_end`, the value by `plain_bytes` or
    /// `str::parse`): the same end and the same bits, or both refuse.
    #[test]
    fn a_number_reads_as_its_end_and_value_scanned_apart() {
        let before = |b: &[u8]| {
            let (end, _) = super::super::decimal::json_number_end(b, 0)?;
            let digits = &b[..end];
            let v = super::super::decimal::plain_bytes(digits)
                .or_else(|| std::str::from_utf8(digits).ok()?.parse().ok())
                .filter(|v: &f64| v.is_finite())?;
            Some((end, v.to_bits()))
        };
        let now = |b: &[u8]| {
            let mut r = Reader { s: b, at: 0 };
            let v = r.number()?;
            Some((r.at, v.to_bits()))
        };
        let mut texts: Vec<String> = [
            "0",
            "-0",
            "1",
            "-1",
            "21.53",
            "-4.25",
            "0.000001",
            "01",
            "-",
            "-.5",
            ".5",
            "1.",
            "1e3",
            "1.5E-3",
            "+1",
            "9007199254740992",
            "9007199254740993",
            "-9007199254740993",
            "1234567890123456789",
            "12345678901234567890",
            "1234567890.123456789",
            "0.0000000000000000000001",
            "0.00000000000000000000001",
            "18446744073709551616",
            "99999999999999999999999",
            "1.7976931348623157",
            "4.9406564584124654",
            "1,",
            "2}",
            "3 ",
            "7.5x",
            "",
        ]
        .iter()
        .map(|t| t.to_string())
        .collect();
        texts.push(format!("1{}", "0".repeat(400)));
        texts.push(format!("0.{}1", "0".repeat(30)));
        // 20 digits that wrap a u64 to 0 and 1: refused by their count.
        texts.push("1844674407370955161.6".to_string());
        texts.push("-184467440737095516.17".to_string());
        let alphabet = b"-0123456789.eE+ ,}";
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = 1 + (seed % 24) as usize;
            let text: String = (0..len)
                .map(|i| {
                    let pick = (seed >> (i * 2 % 60)) as usize + i * 7;
                    // Mostly digits, so that long numbers come up.
                    if pick.is_multiple_of(4) {
                        alphabet[pick / 4 % alphabet.len()] as char
                    } else {
                        (b'0' + (pick % 10) as u8) as char
                    }
                })
                .collect();
            texts.push(text);
        }
        let mut read = 0;
        for t in &texts {
            let (b, n) = (before(t.as_bytes()), now(t.as_bytes()));
            assert_eq!(n, b, "{t:?}");
            read += usize::from(n.is_some());
        }
        assert!(read > 5_000, "{read}");
    }

    #[test]
    fn anything_else_goes_to_serde() {
        let many = format!(
            "{{{}}}",
            (0..=MAX_FIELDS)
                .map(|i| format!("\"k{i}\":1"))
                .collect::<Vec<_>>()
                .join(",")
        );
        for text in [
            "{}",
            "[1]",
            "21.5",
            r#"{"a": "21.5"}"#,
            r#"{"a": true}"#,
            r#"{"a": null}"#,
            r#"{"a": {"b": 1}}"#,
            r#"{"a": [1]}"#,
            r#"{"a": 1e3}"#,
            r#"{"a": 1E3}"#,
            r#"{"a": +1}"#,
            r#"{"a": 01}"#,
            r#"{"a": 1.}"#,
            r#"{"a": .5}"#,
            r#"{"a": -}"#,
            r#"{"a\u0062": 1}"#,
            r#"{"a": 1, "a": 2}"#,
            r#"{"a": 1,}"#,
            r#"{"a": 1} x"#,
            r#"{"a": 1"#,
            r#"{"a" 1}"#,
            "{\"a\x01\": 1}",
            many.as_str(),
        ] {
            assert!(read(text).is_none(), "{text}");
        }
        let overflow = format!("{{\"a\": 1{}}}", "0".repeat(400));
        assert!(
            read(&overflow).is_none(),
            "not finite: serde's salvage says so"
        );
    }
}
