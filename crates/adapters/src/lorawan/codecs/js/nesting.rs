//! A codec's result as JSON text, its nesting cut where the JSON reader
//! would refuse the whole text.

use std::borrow::Cow;

/// Objects and arrays inside one another kept at most. serde_json refuses
/// a text nested past 128 and the readings follow 8 levels, so anything
/// deeper than this is cut, never read.
pub(super) const MAX_NESTING: usize = 64;

/// `text` (well-formed JSON, as `JSON.stringify` writes it) with each
/// object or array nested deeper than [`MAX_NESTING`] written as an empty
/// one of its kind: the readings count it as cut, where the reader's
/// recursion limit failed the whole decode and its shallow values with it.
pub(super) fn cut(text: &str) -> Cow<'_, str> {
    let b = text.as_bytes();
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut out: Option<String> = None;
    let (mut at, mut copied) = (0, 0);
    while at < b.len() {
        let c = b[at];
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
            at += 1;
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'{' | b'[' if depth == MAX_NESTING => {
                let end = closing(b, at);
                let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
                o.push_str(&text[copied..at]);
                o.push_str(if c == b'{' { "{}" } else { "[]" });
                at = end;
                copied = at;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at += 1;
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut o) => {
            o.push_str(&text[copied..]);
            Cow::Owned(o)
        }
    }
}

/// The index just past the object or array opening at `start`, strings
/// skipped; the text's end if it is not closed.
fn closing(b: &[u8], start: usize) -> usize {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &c) in b.iter().enumerate().skip(start) {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    b.len()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn nested(levels: usize, inner: &str) -> String {
        let mut s = inner.to_string();
        for _ in 0..levels {
            s = format!("{{\"a\":{s},\"s\":\"}}]{{\\\"\"}}");
        }
        s
    }

    #[test]
    fn only_what_lies_past_the_limit_is_cut() {
        let shallow = nested(MAX_NESTING - 1, "[1]");
        assert!(matches!(cut(&shallow), Cow::Borrowed(_)));
        let deep = nested(MAX_NESTING, "[[1,{\"x\":\"]\"}],2]");
        let got: serde_json::Value = serde_json::from_str(&cut(&deep)).unwrap();
        let mut inner = &got;
        for _ in 0..MAX_NESTING {
            assert_eq!(inner["s"], "}]{\"");
            inner = &inner["a"];
        }
        assert_eq!(inner, &serde_json::json!([]));
        let far = nested(500, "1");
        assert!(serde_json::from_str::<serde_json::Value>(&far).is_err());
        assert!(serde_json::from_str::<serde_json::Value>(&cut(&far)).is_ok());
    }
}
