//! `edge-gateway modbus scan`: a range of registers printed in every type
//! and order, the way an installer finds a register map on site ("is the
//! voltage at 0 a float, and which way round?"). Pure: words in, text out.

use std::fmt::Write as _;

use super::registers::{decode_bits, decode_raw, Order, ValueType};

/// One value for people: integers whole, floats in their shortest exact
/// form, NaN and infinities by name.
fn show(ty: ValueType, raw: f64) -> String {
    let tiny_or_huge = raw != 0.0 && !(1e-4..1e9).contains(&raw.abs());
    match ty {
        ValueType::F32 if tiny_or_huge => format!("{:e}", raw as f32),
        ValueType::F32 => format!("{}", raw as f32),
        ValueType::F64 if tiny_or_huge => format!("{raw:e}"),
        ValueType::F64 => format!("{raw}"),
        _ => format!("{raw:.0}"),
    }
}

/// The rows for registers `words` read from `start`: per address its
/// hex word, u16 and i16, then per order the wider types starting there
/// (those that would run past the range are left out).
pub fn render_registers(start: u16, words: &[u16]) -> String {
    let mut out = String::new();
    for (i, w) in words.iter().enumerate() {
        let address = u32::from(start) + i as u32;
        let _ = writeln!(
            out,
            "{address:>5} 0x{address:04X}  {w:04X}  u16 {}  i16 {}",
            w, *w as i16
        );
        for order in Order::ALL {
            let mut line = String::new();
            for ty in ValueType::ALL.iter().filter(|t| t.words() > 1) {
                // A 64-bit integer from its bits: through an f64 its low
                // digits were wrong above 2^53 (u64 max read ...616).
                let exact = match ty {
                    ValueType::U64 => decode_bits(&words[i..], *ty, order).map(|u| u.to_string()),
                    ValueType::I64 => {
                        decode_bits(&words[i..], *ty, order).map(|u| (u as i64).to_string())
                    }
                    _ => decode_raw(&words[i..], *ty, order).map(|v| show(*ty, v)),
                };
                if let Some(text) = exact {
                    let _ = write!(line, "  {} {text}", ty.as_str());
                }
            }
            if !line.is_empty() {
                let _ = writeln!(out, "       {}{line}", order.as_str());
            }
        }
    }
    out
}

/// The rows for bits read from `start`.
pub fn render_bits(start: u16, bits: &[bool]) -> String {
    let mut out = String::new();
    for (i, b) in bits.iter().enumerate() {
        let address = u32::from(start) + i as u32;
        let _ = writeln!(out, "{address:>5} 0x{address:04X}  {}", u8::from(*b));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_float_shows_in_the_order_that_makes_it_and_the_last_word_alone() {
        let text = render_registers(12, &[0x41C8, 0x0000, 0xFFFE]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "   12 0x000C  41C8  u16 16840  i16 16840");
        assert!(
            lines[1].starts_with("       abcd  u32 1103626240  i32 1103626240  f32 25"),
            "{text}"
        );
        assert!(
            lines.iter().any(|l| l.contains("cdab  u32 16840 ")),
            "{text}"
        );
        assert!(
            text.contains("f32 7.1838e-41"),
            "denormals in scientific notation: {text}"
        );
        // The last word has no wider type after it, only its own line.
        assert_eq!(
            lines.last().copied(),
            Some("   14 0x000E  FFFE  u16 65534  i16 -2")
        );
        assert!(!text.contains("u64"), "three words make no 64-bit value");
        let four = render_registers(0, &[0x4009, 0x21FB, 0x5444, 0x2D18]);
        assert!(four.contains("f64 3.141592653589793"), "{four}");
    }

    /// Found against pymodbus: through an f64, u64 0xFFFF_FFFF_FFFF_FFFF
    /// showed as 18446744073709551616 and i64 max as ...808.
    #[test]
    fn a_64_bit_integer_shows_every_digit() {
        let text = render_registers(0, &[0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF]);
        assert!(text.contains("u64 18446744073709551615"), "{text}");
        assert!(text.contains("i64 -1"), "{text}");
        let text = render_registers(0, &[0x7FFF, 0xFFFF, 0xFFFF, 0xFFFF]);
        assert!(text.contains("abcd") && text.contains("i64 9223372036854775807"), "{text}");
        let text = render_registers(0, &[0x7FFF, 0x0001, 0x0001, 0x0001]);
        assert!(text.contains("u64 9223090566173097985"), "{text}");
    }

    #[test]
    fn bits_are_zero_or_one() {
        assert_eq!(
            render_bits(0, &[true, false]),
            "    0 0x0000  1\n    1 0x0001  0\n"
        );
    }
}
