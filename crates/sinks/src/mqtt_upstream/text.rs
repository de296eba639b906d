//! The pieces of the upstream payloads written without a detour: the
//! RFC 3339 time and the message id, each into a buffer on the stack, and
//! a JSON object written field by field. They are written once per window,
//! so what `chrono`'s formatter, `Uuid::to_string` and a `serde_json::Value`
//! tree allocate and dispatch was most of a window's cost (issue 69). The
//! text is the same, byte for byte, as [`Timestamp::to_rfc3339`], the
//! hyphenated id and `Value::to_string`: numbers and any string that needs
//! escaping still go through serde_json's own serializer.

use gateway_core::Timestamp;
use serde::Serializer;
use uuid::Uuid;

/// The last millisecond of year 9999: the last time written as
/// `YYYY-MM-DDThh:mm:ss.sssZ` (later ones carry a sign and more digits).
const LAST_SHORT_MILLIS: i64 = 253_402_300_799_999;

/// A time as [`Timestamp::to_rfc3339`] writes it: whole seconds without
/// a fraction, else milliseconds, `Z` for UTC.
pub(crate) enum TimeText {
    /// The common case, written here: at most 24 ASCII bytes.
    Short([u8; 24], usize),
    /// Outside years 1970–9999 (which a [`Timestamp`] never is): as
    /// `chrono` writes it.
    Other(String),
}

impl TimeText {
    pub(crate) fn new(ts: Timestamp) -> Self {
        let ms = ts.as_millis();
        if !(0..=LAST_SHORT_MILLIS).contains(&ms) {
            return Self::Other(ts.to_rfc3339());
        }
        let (secs, milli) = (ms / 1000, ms % 1000);
        let (days, in_day) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = civil_from_days(days);
        let mut b = [0u8; 24];
        put_digits(&mut b[0..4], year);
        b[4] = b'-';
        put_digits(&mut b[5..7], month);
        b[7] = b'-';
        put_digits(&mut b[8..10], day);
        b[10] = b'T';
        put_digits(&mut b[11..13], in_day / 3600);
        b[13] = b':';
        put_digits(&mut b[14..16], in_day % 3600 / 60);
        b[16] = b':';
        put_digits(&mut b[17..19], in_day % 60);
        let len = if milli == 0 {
            b[19] = b'Z';
            20
        } else {
            b[19] = b'.';
            put_digits(&mut b[20..23], milli);
            b[23] = b'Z';
            24
        };
        Self::Short(b, len)
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            // Only ASCII digits and separators were written.
            Self::Short(b, len) => std::str::from_utf8(&b[..*len]).unwrap_or_default(),
            Self::Other(s) => s,
        }
    }
}

/// `n` in decimal, zero-padded to fill `out` (`n` is never negative and
/// always fits).
fn put_digits(out: &mut [u8], mut n: i64) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Year, month and day of the `days`-th day after 1970-01-01 (not
/// negative), by Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `n` in decimal, as `{}` writes it, in `buf`.
pub(crate) fn decimal(n: u64, buf: &mut [u8; 20]) -> &str {
    let mut at = buf.len();
    let mut rest = n;
    loop {
        at -= 1;
        buf[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&buf[at..]).unwrap_or_default()
}

/// A message id as its hyphenated lower-case text, on the stack.
pub(crate) struct IdText([u8; uuid::fmt::Hyphenated::LENGTH]);

impl IdText {
    pub(crate) fn new(id: Uuid) -> Self {
        let mut b = [0u8; uuid::fmt::Hyphenated::LENGTH];
        id.hyphenated().encode_lower(&mut b);
        Self(b)
    }

    pub(crate) fn as_str(&self) -> &str {
        // `encode_lower` writes hex digits and hyphens only.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Compact JSON written in place: the caller gives the keys in the
/// order a sorted map would (the order `Value` objects print in).
pub(crate) struct JsonOut {
    buf: Vec<u8>,
    /// No key written yet in the innermost object.
    first: bool,
}

impl JsonOut {
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        Self {
            buf: Vec::with_capacity(bytes),
            first: true,
        }
    }

    pub(crate) fn open(&mut self) {
        self.buf.push(b'{');
        self.first = true;
    }

    /// Ends the innermost object, itself the value of a key in the one
    /// around it (if any).
    pub(crate) fn close(&mut self) {
        self.buf.push(b'}');
        self.first = false;
    }

    /// A key of the contract's own: letters and `_`, nothing to escape.
    pub(crate) fn key(&mut self, key: &'static str) {
        debug_assert!(key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        self.comma();
        self.buf.push(b'"');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    /// Bytes of the contract's own, written as they are (a run of keys
    /// and punctuation whose text is fixed, such as `,"count":`), after
    /// which the innermost object has a key. Inlined so that each piece's
    /// length is a constant: a few stores instead of a call per key.
    #[inline(always)]
    pub(crate) fn raw(&mut self, bytes: &'static [u8]) {
        self.buf.extend_from_slice(bytes);
        self.first = false;
    }

    /// A key from the data (a metric's name, a tag's).
    pub(crate) fn key_text(&mut self, key: &str) {
        self.comma();
        self.str(key);
        self.buf.push(b':');
    }

    fn comma(&mut self) {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
    }

    /// A text known to need no escaping: an id, a time.
    pub(crate) fn plain_str(&mut self, s: &str) {
        debug_assert!(s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\'));
        self.buf.push(b'"');
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(b'"');
    }

    pub(crate) fn str(&mut self, s: &str) {
        // What JSON escapes (and serde_json with it): control characters,
        // the quote and the backslash. Most texts have none.
        let plain = s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
        if plain {
            self.buf.reserve(s.len() + 2);
            self.buf.push(b'"');
            self.buf.extend_from_slice(s.as_bytes());
            self.buf.push(b'"');
        } else {
            self.serde(|j| j.serialize_str(s));
        }
    }

    /// A number as serde_json writes it: `null` when it is not finite.
    pub(crate) fn f64(&mut self, v: f64) {
        self.serde(|j| j.serialize_f64(v));
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.serde(|j| j.serialize_u64(v));
    }

    pub(crate) fn bool(&mut self, v: bool) {
        self.buf
            .extend_from_slice(if v { b"true" } else { b"false" });
    }

    fn serde(
        &mut self,
        write: impl FnOnce(&mut serde_json::Serializer<&mut Vec<u8>>) -> serde_json::Result<()>,
    ) {
        // Writing to memory cannot fail, nor can a string or a number.
        let _ = write(&mut serde_json::Serializer::new(&mut self.buf));
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn same_as_chrono(ms: i64) {
        let ts = Timestamp::from_millis(ms).unwrap();
        assert_eq!(TimeText::new(ts).as_str(), ts.to_rfc3339(), "{ms}");
    }

    #[test]
    fn times_read_as_chrono_writes_them() {
        for ms in [
            0,
            1,
            999,
            1000,
            59_999,
            86_399_999,
            86_400_000,
            951_782_400_000, // 2000-02-29
            951_868_800_000, // 2000-03-01
            4_107_542_400_000,
            1_767_225_600_123,
            LAST_SHORT_MILLIS,
            LAST_SHORT_MILLIS - 999,
        ] {
            same_as_chrono(ms);
        }
        // Every day around the century rules (2000 leaps, 2100 does not,
        // 2400 does), then a month and a bit apart over the whole range.
        for first in [946_684_800_000, 4_102_444_800_000, 13_569_465_600_000] {
            for day in -400..400 {
                same_as_chrono(first + day * 86_400_000 + day * 3_601_007);
            }
        }
        let mut ms = 0;
        while ms <= LAST_SHORT_MILLIS {
            same_as_chrono(ms);
            ms += 3_000_000_007;
        }
    }

    #[test]
    fn texts_and_numbers_read_as_serde_json_writes_them() {
        let mut texts: Vec<String> = (0u8..0x80).map(|b| format!("a{}b", b as char)).collect();
        texts.extend(["", "é€😀", "\u{7f}\u{80}\u{2028}", "plain text"].map(String::from));
        for t in texts {
            let mut j = JsonOut::with_capacity(8);
            j.str(&t);
            assert_eq!(j.into_bytes(), serde_json::to_vec(&t).unwrap(), "{t:?}");
        }
        for v in [f64::NAN, f64::INFINITY, -0.0, 1e-7, 1e21, 0.1 + 0.2, 5e-324] {
            let mut j = JsonOut::with_capacity(8);
            j.f64(v);
            assert_eq!(j.into_bytes(), serde_json::to_vec(&v).unwrap(), "{v}");
        }
    }

    #[test]
    fn decimals_read_as_display_writes_them() {
        let mut buf = [0; 20];
        for n in [
            0,
            1,
            9,
            10,
            99,
            1_767_225_600_123,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            assert_eq!(decimal(n, &mut buf), n.to_string());
        }
    }

    #[test]
    fn ids_read_as_uuid_writes_them() {
        for n in [
            0u128,
            1,
            u128::MAX,
            0x6f1c_2b9e_8d4a_4e57_9a0b_3c5d_7e1f_2a40,
        ] {
            let id = Uuid::from_u128(n);
            assert_eq!(IdText::new(id).as_str(), id.to_string());
        }
    }
}
