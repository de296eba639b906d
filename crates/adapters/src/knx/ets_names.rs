//! How ETS's names become device and metric names ([`fold`]), and the
//! length limits they are cut to.

use gateway_core::model::MAX_METRIC_LEN;

/// The Latin letters with diacritics of European projects' names (Latin-1
/// and Latin Extended-A, Romanian's comma-below letters), and how each is
/// spelt in ASCII: the letter without its marks, German's umlauts as
/// German spells them without (`ä` → `ae`), ligatures and letters of
/// their own by their usual transcription (`æ` → `ae`, `ø` → `o`, `þ` →
/// `th`). Otherwise "Température" would be `temp_rature`.
const SPELT: [(&str, &str); 25] = [
    ("ÀÁÂÃÅàáâãåĀāĂăĄą", "a"),
    ("ÄÆäæ", "ae"),
    ("ÇçĆćĈĉĊċČč", "c"),
    ("ÐðĎďĐđ", "d"),
    ("ÈÉÊËèéêëĒēĔĕĖėĘęĚě", "e"),
    ("ĜĝĞğĠġĢģ", "g"),
    ("ĤĥĦħ", "h"),
    ("ÌÍÎÏìíîïĨĩĪīĬĭĮįİı", "i"),
    ("Ĳĳ", "ij"),
    ("Ĵĵ", "j"),
    ("Ķķĸ", "k"),
    ("ĹĺĻļĽľĿŀŁł", "l"),
    ("ÑñŃńŅņŇňŉŊŋ", "n"),
    ("ÒÓÔÕØòóôõøŌōŎŏŐő", "o"),
    ("ÖöŒœ", "oe"),
    ("ŔŕŖŗŘř", "r"),
    ("ŚśŜŝŞşŠšſȘș", "s"),
    ("ßẞ", "ss"),
    ("ŢţŤťŦŧȚț", "t"),
    ("Þþ", "th"),
    ("ÙÚÛùúûŨũŪūŬŭŮůŰűŲų", "u"),
    ("Üü", "ue"),
    ("Ŵŵ", "w"),
    ("ÝýÿŶŷŸ", "y"),
    ("ŹźŻżŽž", "z"),
];

/// `name` folded for an id: ASCII letters and digits in lower case,
/// accented Latin letters spelt in ASCII ([`SPELT`]), every other run
/// one `sep`.
pub fn fold(name: &str, sep: char) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
            continue;
        }
        if let Some((_, spelt)) = SPELT.iter().find(|(letters, _)| letters.contains(c)) {
            out.push_str(spelt);
        } else if ('\u{300}'..='\u{36F}').contains(&c) {
            // A mark apart from its letter (as macOS writes names): the
            // letter stands, and an umlaut's is spelt as `ä` is.
            if c == '\u{308}' && (out.ends_with('a') || out.ends_with('o') || out.ends_with('u')) {
                out.push('e');
            }
        } else if !out.is_empty() && !out.ends_with(sep) {
            out.push(sep);
        }
    }
    cut(&mut out, FOLDED_LEN, sep);
    out
}

/// Folded names are cut at this length (the longest metric name).
const FOLDED_LEN: usize = MAX_METRIC_LEN;

/// Cuts the ASCII `name` to `max` bytes, without a `sep` at its end.
pub(super) fn cut(name: &mut String, max: usize, sep: char) {
    name.truncate(max);
    while name.ends_with(sep) {
        name.pop();
    }
}

/// `base` told apart by `suffix` (an address, `1_1_8`), `base` shortened
/// so that both fit in `max`: two long names that fold alike (their first
/// 64 characters the same) still both make a valid name.
pub(super) fn suffixed(base: &str, suffix: &str, max: usize) -> String {
    let mut out = base.to_string();
    cut(&mut out, max.saturating_sub(suffix.len() + 1), '_');
    out.push('_');
    out.push_str(suffix);
    out
}
