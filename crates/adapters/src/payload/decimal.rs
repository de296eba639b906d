//! Numbers as sensors print them (`21.30`, `-4`, `1013.2`), read without
//! the general parser: it was a twentieth of the CPU of an acknowledged
//! CSV line, four numbers a line. Anything else (exponents, a `+`, `inf`,
//! more digits than a double holds exactly) goes to `str::parse`, which
//! gives the same value for these too: both are correctly rounded.

/// The powers of ten a double holds exactly.
const EXACT_POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Integers up to this are exact in a double.
const EXACT_INTEGERS: u64 = 1 << 53;

/// `text` as a number, as `text.parse::<f64>().ok()` gives it.
pub(crate) fn parse(text: &str) -> Option<f64> {
    plain(text).or_else(|| text.parse().ok())
}

/// An optional `-`, digits and at most one `.`: the digits as an integer
/// and the point's place, divided. With both exact, the one rounding of
/// the division is the correctly rounded value (Clinger's fast path).
fn plain(text: &str) -> Option<f64> {
    plain_bytes(text.as_bytes())
}

/// [`plain`] of bytes, for a reader that has not made them a `str`: what
/// it accepts is ASCII.
pub(crate) fn plain_bytes(text: &[u8]) -> Option<f64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        all => (false, all),
    };
    // Up to 19 digits and a point: 19 digits cannot overflow a u64.
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let mut mantissa = 0u64;
    let mut point = None;
    for (i, &b) in digits.iter().enumerate() {
        match b {
            // Wrapping only with 20 digits, refused below: no check per
            // digit.
            b'0'..=b'9' => {
                mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
            }
            b'.' if point.is_none() => point = Some(i),
            _ => return None,
        }
    }
    let decimals = match point {
        // "." alone, or with a sign only: not a number.
        Some(_) if digits.len() == 1 => return None,
        Some(at) => digits.len() - at - 1,
        None => 0,
    };
    exact(
        negative,
        mantissa,
        digits.len() - usize::from(point.is_some()),
        decimals,
    )
}

/// The value of `digits` decimal digits read as the integer `mantissa`
/// (wrapped if they overflowed), `decimals` of them after the point,
/// when the one division gives it correctly rounded: up to 19 digits, an
/// integer a double holds exactly and an exact power of ten. `None`
/// otherwise, for `str::parse` to read.
#[inline]
pub(crate) fn exact(negative: bool, mantissa: u64, digits: usize, decimals: usize) -> Option<f64> {
    if digits > 19 || mantissa > EXACT_INTEGERS {
        return None;
    }
    let magnitude = mantissa as f64 / EXACT_POWERS_OF_TEN.get(decimals)?;
    Some(if negative { -magnitude } else { magnitude })
}

/// The bytes that end a plain JSON string's scan in the hand-written
/// readers: its closing quote, an escape, a control character. One table
/// lookup a byte: three comparisons a byte, inlined into a reader's loop,
/// cost up to 23 instructions a byte (callgrind, issue 69).
pub(crate) const ENDS_PLAIN_STRING: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// The end of a JSON number `-?(0|[1-9][0-9]*)(\.[0-9]+)?` (no exponent)
/// starting at `at` in `s`, and whether it has a fraction; `None` for
/// anything else. The hand-written JSON readers on the hot paths (a flat
/// object, a PUSH_DATA) share it, so they agree on what a plain number is
/// and decline the rest to serde.
#[cfg(any(test, feature = "lorawan"))]
#[inline]
pub(crate) fn json_number_end(s: &[u8], mut at: usize) -> Option<(usize, bool)> {
    let digits = |at: &mut usize| {
        let from = *at;
        while let Some(b'0'..=b'9') = s.get(*at) {
            *at += 1;
        }
        *at - from
    };
    if s.get(at) == Some(&b'-') {
        at += 1;
    }
    let first = *s.get(at)?;
    let int_digits = digits(&mut at);
    if int_digits == 0 || (first == b'0' && int_digits > 1) {
        return None;
    }
    let fraction = s.get(at) == Some(&b'.');
    if fraction {
        at += 1;
        if digits(&mut at) == 0 {
            return None;
        }
    }
    if let Some(b'e' | b'E') = s.get(at) {
        return None;
    }
    Some((at, fraction))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(text: &str) {
        let want = text.parse::<f64>().ok();
        let got = parse(text);
        assert_eq!(
            got.map(f64::to_bits),
            want.map(f64::to_bits),
            "{text:?}: {got:?} against {want:?}"
        );
    }

    #[test]
    fn what_sensors_print_and_its_edges_read_as_the_general_parser_reads_them() {
        for text in [
            "21.30",
            "-4",
            "1013.2",
            "12000.00",
            "0",
            "-0",
            "-0.0",
            "0.1",
            ".5",
            "5.",
            "-.5",
            ".",
            "-",
            "-.",
            "",
            "1..2",
            "1.2.3",
            "+5",
            "1e3",
            "1E-3",
            "inf",
            "-inf",
            "nan",
            "NaN",
            " 1",
            "1 ",
            "0x10",
            "12a",
            "9007199254740992",
            "9007199254740993",
            "9007199254740993.0",
            "0.9007199254740993",
            "1234567890123456789",
            "12345678901234567890",
            "123456789012345678901",
            "0.0000000000000000000001",
            "0.00000000000000000000001",
            "00000000000000000000001",
            "999999999999999999.9",
            "1.7976931348623157",
            "-273.15",
            "٣",
        ] {
            same(text);
        }
    }

    #[test]
    fn random_decimals_read_as_the_general_parser_reads_them() {
        // A fixed generator: digits, a point anywhere, a sign sometimes.
        let mut next = crate::test_rng::xorshift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..200_000 {
            let len = 1 + (next() % 20) as usize;
            let mut text: String = (0..len)
                .map(|_| char::from(b'0' + (next() % 10) as u8))
                .collect();
            if !next().is_multiple_of(4) {
                let at = (next() as usize) % (len + 1);
                text.insert(at, '.');
            }
            if next().is_multiple_of(3) {
                text.insert(0, '-');
            }
            same(&text);
        }
    }
}
