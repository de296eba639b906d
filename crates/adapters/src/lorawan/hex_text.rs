//! EUIs, DevAddrs and keys as people copy them: network servers' consoles,
//! devices' labels and data sheets print them grouped ("70 B3 D5 7E…",
//! "70:B3:D5:…", "70-B3-D5-…", "24E1 2413 6B32 4001") or with a leading
//! `0x`, where the config's own form is the bare hex digits, MSB first.

use std::borrow::Cow;

/// `text`'s hex digits, MSB first as written, once an optional `0x` and
/// any spaces, `:`, `-` or `_` between them are taken out; `text` itself
/// when anything else is in it, so the caller's error shows what was
/// given.
pub fn compact_hex(text: &str) -> Cow<'_, str> {
    let trimmed = text.trim();
    let digits = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
        .unwrap_or(trimmed);
    if digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Cow::Borrowed(digits);
    }
    let separator = |b: u8| matches!(b, b' ' | b':' | b'-' | b'_');
    if !digits
        .bytes()
        .all(|b| b.is_ascii_hexdigit() || separator(b))
    {
        return Cow::Borrowed(text);
    }
    Cow::Owned(digits.chars().filter(char::is_ascii_hexdigit).collect())
}

#[cfg(test)]
mod tests {
    use super::compact_hex;

    #[test]
    fn grouped_and_prefixed_forms_are_their_digits_and_anything_else_is_left() {
        for given in [
            "70B3D57ED0012345",
            "70 B3 D5 7E D0 01 23 45",
            "70:b3:d5:7e:d0:01:23:45",
            "70-B3-D5-7E-D0-01-23-45",
            "70B3 D57E D001 2345",
            "0x70B3D57ED0012345",
            "  70_B3_D5_7E_D0_01_23_45 ",
        ] {
            assert_eq!(
                compact_hex(given).to_ascii_uppercase(),
                "70B3D57ED0012345",
                "{given:?}"
            );
        }
        for left in ["70B3D57ED001234G", "{ 0x70, 0xB3 }", "70.B3.D5", ""] {
            assert_eq!(compact_hex(left), left, "{left:?}");
        }
    }
}
