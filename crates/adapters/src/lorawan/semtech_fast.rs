//! The PUSH_DATA body most forwarders send, read without serde:
//! `{"rxpk":[{...},...]}` whose entries hold only the flat fields
//! lora_pkt_fwd writes, each once, numbers in plain decimal, strings
//! without escapes. Anything else (a `stat` object, `rsig`, an unknown
//! field, an escape, an exponent, a duplicate, a value serde would refuse)
//! returns `None` and the caller reads the body with serde as before, so a
//! body read here reads exactly as serde reads it.
//!
//! Why: serde_json's typed read was still the processor's largest cost
//! (18 % of the adapter's CPU), most of it matching field names and
//! validating strings that this shape does not need.

use super::{DataRate, EntryError, PushData, Rxpk};

/// `body` as [`super::push_data`] reads it, or `None` when it is not of
/// the plain shape above.
pub(super) fn push_data(body: &[u8]) -> Option<PushData> {
    let mut r = Reader { s: body, at: 0 };
    r.byte(b'{')?;
    if r.key()? != *b"rxpk" {
        return None;
    }
    r.byte(b':')?;
    r.byte(b'[')?;
    // Each entry converted as it is read, into a list sized for the one
    // most PUSH_DATA carry: a list of raw entries converted afterwards was
    // a second allocation and a copy of each entry.
    let mut entries = Vec::with_capacity(1);
    if r.peek()? == b']' {
        r.at += 1;
    } else {
        loop {
            // Read into its place in the list: made on the stack and moved
            // in, an entry (about 200 bytes) was copied three times.
            entries.push(Ok(EMPTY));
            r.entry(entries.last_mut()?)?;
            match r.next()? {
                b',' => continue,
                b']' => break,
                _ => return None,
            }
        }
    }
    r.byte(b'}')?;
    r.skip_ws();
    if r.at != body.len() {
        return None;
    }
    Some(PushData {
        rxpk: entries,
        stat: None,
    })
}

/// The bytes that end a string of plain ASCII: [`ENDS_PLAIN_STRING`]'s,
/// and every byte of 0x80 and above (the string's UTF-8 is then checked).
///
/// [`ENDS_PLAIN_STRING`]: crate::payload::decimal::ENDS_PLAIN_STRING
const ENDS_ASCII_STRING: [bool; 256] = {
    let mut table = crate::payload::decimal::ENDS_PLAIN_STRING;
    let mut b = 0x80;
    while b < 256 {
        table[b] = true;
        b += 1;
    }
    table
};

/// The length of the string that begins `rest`, up to its closing quote,
/// when no escape or control character comes first and it is UTF-8: its
/// UTF-8 is checked only when a byte is not ASCII, as is rare (checking
/// every string was about 320 instructions an uplink, callgrind, issue 69).
/// Eight bytes a step until one of them may end the scan (the table read
/// a byte at a time was about ten instructions a byte, most of them in
/// `data`'s base64), then the table from there.
fn plain_string_len(rest: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Nonzero when a byte of `v` is below `n` (n ≤ 0x80); the lowest such
    // byte is always flagged, so a word without one is never passed over.
    let below = |v: u64, n: u64| v.wrapping_sub(ONES * n) & !v & HIGH;
    let mut at = 0;
    while let Some(word) = rest.get(at..).and_then(<[u8]>::first_chunk::<8>) {
        let x = u64::from_le_bytes(*word);
        let stop = below(x ^ (ONES * u64::from(b'"')), 1)
            | below(x ^ (ONES * u64::from(b'\\')), 1)
            | below(x, 0x20)
            | (x & HIGH);
        if stop != 0 {
            break;
        }
        at += 8;
    }
    let mut len = at
        + rest
            .get(at..)?
            .iter()
            .position(|&b| ENDS_ASCII_STRING[usize::from(b)])?;
    let ascii = rest[len] < 0x80;
    if !ascii {
        len += rest.get(len..)?.iter().position(|&b| {
            crate::payload::decimal::ENDS_PLAIN_STRING[usize::from(b)]
        })?;
    }
    if rest[len] != b'"' {
        return None;
    }
    if !ascii {
        std::str::from_utf8(rest.get(..len)?).ok()?;
    }
    Some(len)
}

struct Reader<'a> {
    s: &'a [u8],
    at: usize,
}

/// A JSON number as written, sign and digits checked.
struct Number<'a> {
    /// ASCII: a sign, digits and a point.
    text: &'a [u8],
    /// What serde_json reads as an integer: no fraction, and not `-0`
    /// (which it reads as the float -0.0).
    integer: bool,
}

enum Value<'a> {
    Null,
    /// A string's bytes, valid UTF-8.
    Str(&'a [u8]),
    Num(Number<'a>),
}

impl<'a> Reader<'a> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte that is not whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.at).copied()
    }

    /// The next byte that is not whitespace, consumed.
    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn byte(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// A string value's bytes, without escapes or control characters, and
    /// valid UTF-8 ([`plain_string_len`]).
    fn string(&mut self) -> Option<&'a [u8]> {
        self.byte(b'"')?;
        let start = self.at;
        let rest = self.s.get(start..)?;
        let len = plain_string_len(rest)?;
        self.at = start + len + 1;
        rest.get(..len)
    }

    /// A field name of four plain characters, as every field this reader
    /// knows has (`"tmst"`), as one word: a longer or shorter name, or one
    /// with an escape, is not one of them, and the body goes to serde.
    fn key(&mut self) -> Option<[u8; 4]> {
        self.byte(b'"')?;
        let at = self.at;
        let [a, b, c, d, b'"'] = *self.s.get(at..at + 5)? else {
            return None;
        };
        self.at = at + 5;
        Some([a, b, c, d])
    }

    /// [`Self::key`] and its colon: `"tmst":` taken in one step when
    /// written without spaces, as forwarders write it. Whitespace read a
    /// byte at a time around each of an entry's thirteen names was a
    /// fifth of the reader's instructions.
    fn key_colon(&mut self) -> Option<[u8; 4]> {
        if let Some(&[b'"', a, b, c, d, b'"', b':']) = self.s.get(self.at..self.at + 7) {
            self.at += 7;
            return Some([a, b, c, d]);
        }
        let key = self.key()?;
        self.byte(b':')?;
        Some(key)
    }

    /// [`Self::next`], at once when the byte is a `,` or a `}`.
    fn separator(&mut self) -> Option<u8> {
        match self.s.get(self.at) {
            Some(&b) if b == b',' || b == b'}' => {
                self.at += 1;
                Some(b)
            }
            _ => self.next(),
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`: no exponent.
    fn number(&mut self) -> Option<Number<'a>> {
        let start = self.at;
        let (end, fraction) = crate::payload::decimal::json_number_end(self.s, start)?;
        self.at = end;
        let text = self.s.get(start..self.at)?;
        Some(Number {
            text,
            integer: !fraction && text != b"-0",
        })
    }

    fn value(&mut self) -> Option<Value<'a>> {
        match self.peek()? {
            b'"' => self.string().map(Value::Str),
            b'n' => {
                let null = self.s.get(self.at..self.at + 4)? == b"null";
                self.at += 4;
                null.then_some(Value::Null)
            }
            b'-' | b'0'..=b'9' => self.number().map(Value::Num),
            _ => None,
        }
    }

    /// One `rxpk` object of the known flat fields, made into an [`Rxpk`]
    /// as [`super::rxpk`] makes one: straight into the fields of `slot`
    /// (an [`EMPTY`] one), with a bit per field seen, where a table of
    /// every field's `Option` was copied into a raw entry and that into
    /// the `Rxpk`. `slot` becomes the entry's error when it has one.
    fn entry(&mut self, slot: &mut Result<Rxpk, EntryError>) -> Option<()> {
        self.byte(b'{')?;
        let Ok(rx) = slot else {
            return None;
        };
        let mut e = Entry {
            rx,
            seen: 0,
            stat: None,
            size: None,
            data: None,
        };
        if self.peek()? == b'}' {
            self.at += 1;
        } else {
            loop {
                let key = self.key_colon()?;
                let value = self.value()?;
                e.set(key, value)?;
                match self.separator()? {
                    b',' => continue,
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        if let Err(error) = e.finish()? {
            *slot = Err(error);
        }
        Some(())
    }
}

/// An entry as read so far.
struct Entry<'a, 'r> {
    rx: &'r mut Rxpk,
    /// One bit per field read: a second value for one is serde's error.
    seen: u16,
    /// Required: serde refuses an entry without them.
    stat: Option<i8>,
    size: Option<u16>,
    data: Option<&'a [u8]>,
}

/// An entry before its fields are read.
const EMPTY: Rxpk = Rxpk {
    time: None,
    tmst: None,
    chan: None,
    rfch: None,
    freq: None,
    stat: 0,
    modu: None,
    datr: None,
    codr: None,
    rssi: None,
    lsnr: None,
    rsig: Vec::new(),
    data: Vec::new(),
};

/// An optional string field: a string or `null`.
fn opt_str<'a>(v: &Value<'a>) -> Option<Option<&'a [u8]>> {
    match *v {
        Value::Null => Some(None),
        Value::Str(s) => Some(Some(s)),
        Value::Num(_) => None,
    }
}

/// An optional short text (`modu`, `codr`): static when it is a known one.
fn opt_text(v: &Value<'_>) -> Option<Option<super::Text>> {
    match opt_str(v)? {
        None => Some(None),
        Some(s) => super::text_of_bytes(s).map(Some),
    }
}

/// An integer field: digits only, in range. Read from the bytes: the
/// UTF-8 check and `str::parse` of each of an entry's eight numbers were
/// a fiftieth of an uplink's instructions. More digits than an `i64`
/// surely holds decline, and serde then refuses the field as before.
fn int<T: TryFrom<i64>>(v: &Value<'_>) -> Option<T> {
    let Value::Num(n) = v else {
        return None;
    };
    if !n.integer {
        return None;
    }
    let (negative, digits) = match n.text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, n.text),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let magnitude = digits
        .iter()
        .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'));
    T::try_from(if negative { -magnitude } else { magnitude }).ok()
}

fn opt_int<T: TryFrom<i64>>(v: &Value<'_>) -> Option<Option<T>> {
    match v {
        Value::Null => Some(None),
        v => int(v).map(Some),
    }
}

/// A float field: any number, correctly rounded as serde_json's
/// `float_roundtrip` rounds it; or `null`.
fn opt_float(v: &Value<'_>) -> Option<Option<f64>> {
    match v {
        Value::Null => Some(None),
        // `str::parse`'s value, by Clinger's fast path for the short
        // decimals forwarders write (`868.5`, `9.5`).
        Value::Num(n) => crate::payload::decimal::plain_bytes(n.text)
            .or_else(|| std::str::from_utf8(n.text).ok()?.parse::<f64>().ok())
            .filter(|f| f.is_finite())
            .map(Some),
        Value::Str(_) => None,
    }
}

impl<'a> Entry<'a, '_> {
    fn set(&mut self, key: [u8; 4], v: Value<'a>) -> Option<()> {
        let rx = &mut *self.rx;
        let field = match &key {
            b"time" => {
                rx.time = match opt_str(&v)? {
                    None => None,
                    Some(s) => Some(std::str::from_utf8(s).ok()?.to_owned()),
                };
                0
            }
            b"tmst" => {
                rx.tmst = opt_int(&v)?;
                1
            }
            b"chan" => {
                rx.chan = opt_int(&v)?;
                2
            }
            b"rfch" => {
                rx.rfch = opt_int(&v)?;
                3
            }
            b"freq" => {
                rx.freq = opt_float(&v)?;
                4
            }
            b"stat" => {
                self.stat = Some(int(&v)?);
                5
            }
            b"modu" => {
                rx.modu = opt_text(&v)?;
                6
            }
            b"datr" => {
                rx.datr = match v {
                    Value::Null => None,
                    Value::Str(s) => Some(DataRate::Lora(super::text_of_bytes(s)?)),
                    Value::Num(_) => Some(DataRate::Fsk(int(&v)?)),
                };
                7
            }
            b"codr" => {
                rx.codr = opt_text(&v)?;
                8
            }
            b"rssi" => {
                rx.rssi = opt_int(&v)?;
                9
            }
            b"lsnr" => {
                rx.lsnr = opt_float(&v)?;
                10
            }
            b"size" => {
                self.size = Some(int(&v)?);
                11
            }
            b"data" => match v {
                Value::Str(s) => {
                    self.data = Some(s);
                    12
                }
                _ => return None,
            },
            // `rsig`, `jver` and the rest: serde's business.
            _ => return None,
        };
        let bit = 1u16 << field;
        if self.seen & bit != 0 {
            return None;
        }
        self.seen |= bit;
        Some(())
    }

    /// The entry, when every field serde requires is there; its `data`
    /// decoded and checked against `size` as [`super::rxpk`] does.
    fn finish(self) -> Option<Result<(), EntryError>> {
        let rx = self.rx;
        rx.stat = self.stat?;
        let size = self.size?;
        let data = self.data?;
        let Some(data) = super::base64_decode_bytes(data) else {
            return Some(Err(EntryError::Base64));
        };
        if data.len() != usize::from(size) {
            return Some(Err(EntryError::SizeMismatch {
                size,
                decoded: data.len(),
            }));
        }
        rx.data = data;
        Some(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scan as it was, a byte at a time.
    fn by_table(rest: &[u8]) -> Option<usize> {
        let len = rest
            .iter()
            .position(|&b| crate::payload::decimal::ENDS_PLAIN_STRING[usize::from(b)])?;
        (rest[len] == b'"' && std::str::from_utf8(&rest[..len]).is_ok()).then_some(len)
    }

    /// A 17-digit number (how Python, JavaScript or Go print a value a step
    /// off a round one) exactly halfway between two doubles: both readers
    /// take the nearest, also in a build of this crate alone, so a
    /// reading does not depend on which reader took its datagram.
    #[test]
    fn both_readers_round_a_long_number_alike() {
        for lsnr in [
            "1.00000000000000011102230246251565404236316680908203125",
            "-13.200000000000001",
            "1.1000000000000005",
        ] {
            let body = format!(r#"{{"rxpk":[{{"stat":1,"size":3,"data":"AQID","lsnr":{lsnr}}}]}}"#);
            let fast = push_data(body.as_bytes()).expect("the fast reader takes it");
            let full = super::super::push_data_serde(body.as_bytes()).unwrap();
            let want: f64 = lsnr.parse().unwrap();
            for read in [fast, full] {
                let entry = read.rxpk[0].as_ref().unwrap();
                assert_eq!(entry.lsnr.map(f64::to_bits), Some(want.to_bits()), "{lsnr}");
            }
        }
    }

    #[test]
    fn a_string_is_measured_eight_bytes_a_step_as_a_byte_at_a_time() {
        let mut next = crate::test_rng::xorshift(0x0DDB_1A5E_5BAD_5EED);
        // Mostly plain text, with everything that can end or spoil it.
        let odd = [b'"', b'\\', 0x00, 0x1F, 0x20, 0x7F, 0x80, 0xC3, 0xA9, 0xFF, 0xE2, 0x82, 0xAC];
        let mut ended = 0;
        for _ in 0..200_000 {
            let len = (next() % 40) as usize;
            let rest: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r.is_multiple_of(9) {
                        odd[(r >> 8) as usize % odd.len()]
                    } else {
                        b' ' + (r >> 8) as u8 % 95
                    }
                })
                .collect();
            let want = by_table(&rest);
            ended += usize::from(want.is_some());
            assert_eq!(plain_string_len(&rest), want, "{rest:?}");
        }
        assert!(ended > 10_000, "{ended}");
        let text = "QAEAACaAAQACtwbxmsdbFzMo\"";
        assert_eq!(plain_string_len(text.as_bytes()), Some(24));
        assert_eq!(plain_string_len("é€ and more of it\"".as_bytes()), Some(20));
        assert_eq!(plain_string_len(b"twelve bytes\\n\""), None);
    }
}
