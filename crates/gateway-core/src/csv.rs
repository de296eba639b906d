//! Cells of the CSV files the gateway writes (`history export`, the
//! dashboard's `format=csv`), safe to open in a spreadsheet.
//!
//! Text in a cell comes from devices and configs (a device id, a rule name,
//! a metric sent over MQTT), so it may start with `=`, `+`, `-` or `@`,
//! which a spreadsheet runs as a formula (CSV injection). Every text cell
//! goes through [`csv_cell`], which follows the OWASP rule: such a cell is
//! prefixed with a single quote, and a cell holding a separator (a comma,
//! or the `;` or tab other locales split by), a quote or a line break is
//! quoted. Numbers are written as numbers and never pass
//! through it: `-3.5` in a value column must stay a number.

use std::borrow::Cow;

/// Characters that make a spreadsheet read a cell as a formula when they
/// come first (OWASP "CSV Injection").
const FORMULA_START: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// One text cell, neutralised and quoted as needed.
///
/// ```
/// use gateway_core::csv::csv_cell;
/// assert_eq!(csv_cell("meter-01"), "meter-01");
/// assert_eq!(csv_cell("=HYPERLINK(\"http://x\")"), "\"'=HYPERLINK(\"\"http://x\"\")\"");
/// assert_eq!(csv_cell("-3.5"), "'-3.5");
/// assert_eq!(csv_cell("a,b"), "\"a,b\"");
/// ```
pub fn csv_cell(text: &str) -> Cow<'_, str> {
    let cell: Cow<'_, str> = if text.starts_with(FORMULA_START) {
        Cow::Owned(format!("'{text}"))
    } else {
        Cow::Borrowed(text)
    };
    // `;` and tab too: a spreadsheet in a locale that separates by `;`
    // (German, French, Dutch, Italian) split `c;=cmd|…` unquoted, and its
    // second cell ran as a formula.
    if cell.contains([',', ';', '\t', '"', '\n', '\r']) {
        Cow::Owned(format!("\"{}\"", cell.replace('"', "\"\"")))
    } else {
        cell
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_starts_are_neutralised_and_plain_text_is_kept() {
        for (text, want) in [
            ("fridge-2", "fridge-2"),
            ("", ""),
            ("=1+1", "'=1+1"),
            ("+41 79 000", "'+41 79 000"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tcmd", "\"'\tcmd\""),
            ("\rcmd", "\"'\rcmd\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("two\nlines", "\"two\nlines\""),
            ("=cmd|' /C calc'!A0,x", "\"'=cmd|' /C calc'!A0,x\""),
            // Split by `;` in some locales: quoted, one cell.
            ("c;=cmd|' -C calc'!A0", "\"c;=cmd|' -C calc'!A0\""),
            ("a\t=1", "\"a\t=1\""),
        ] {
            assert_eq!(csv_cell(text), want, "{text:?}");
        }
    }

    #[test]
    fn no_cell_ever_starts_with_a_formula_character() {
        // Every prefix a spreadsheet may act on, alone and followed by
        // separators, quotes and line breaks.
        let tails = ["", "1", ",", "\"", "\n", "=1", "a\"b,c"];
        for head in ["=", "+", "-", "@", "\t", "\r", "\"=", " ="] {
            for tail in tails {
                let text = format!("{head}{tail}");
                let cell = csv_cell(&text);
                let unquoted = cell.strip_prefix('"').unwrap_or(&cell);
                assert!(
                    !unquoted.starts_with(['=', '+', '-', '@', '\t', '\r']),
                    "{text:?} -> {cell:?}"
                );
            }
        }
    }
}
