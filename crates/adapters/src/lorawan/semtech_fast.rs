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

use super::{rxpk, DataRate, PushData, RawRxpk};

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
            entries.push(rxpk(r.entry()?));
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
    Str(&'a str),
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

    /// A string's bytes, without escapes or control characters, in one
    /// pass. Only values need UTF-8.
    fn raw_string(&mut self) -> Option<&'a [u8]> {
        self.byte(b'"')?;
        let start = self.at;
        let rest = self.s.get(start..)?;
        let len = rest
            .iter()
            .position(|&b| crate::payload::decimal::ENDS_PLAIN_STRING[usize::from(b)])?;
        if rest[len] != b'"' {
            return None;
        }
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

    /// A string value: [`Self::raw_string`], valid UTF-8.
    fn string(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.raw_string()?).ok()
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

    /// One `rxpk` object of the known flat fields.
    fn entry(&mut self) -> Option<RawRxpk<&'a str>> {
        self.byte(b'{')?;
        let mut e = Fields::default();
        if self.peek()? == b'}' {
            self.at += 1;
        } else {
            loop {
                let key = self.key()?;
                self.byte(b':')?;
                let value = self.value()?;
                e.set(key, value)?;
                match self.next()? {
                    b',' => continue,
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        e.finish()
    }
}

/// An entry's fields as read so far: `Some(None)` is a `null`.
#[derive(Default)]
struct Fields<'a> {
    time: Option<Option<&'a str>>,
    tmst: Option<Option<u32>>,
    chan: Option<Option<u8>>,
    rfch: Option<Option<u8>>,
    freq: Option<Option<f64>>,
    stat: Option<i8>,
    modu: Option<Option<&'a str>>,
    datr: Option<Option<DataRate>>,
    codr: Option<Option<&'a str>>,
    rssi: Option<Option<i16>>,
    lsnr: Option<Option<f64>>,
    size: Option<u16>,
    data: Option<&'a str>,
}

/// Sets `slot` once: a second value for a field is serde's error.
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value);
    Some(())
}

/// An optional string field: a string or `null`.
fn opt_str(v: Value<'_>) -> Option<Option<&str>> {
    match v {
        Value::Null => Some(None),
        Value::Str(s) => Some(Some(s)),
        Value::Num(_) => None,
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

impl<'a> Fields<'a> {
    fn set(&mut self, key: [u8; 4], v: Value<'a>) -> Option<()> {
        match &key {
            b"time" => once(&mut self.time, opt_str(v)?),
            b"tmst" => once(&mut self.tmst, opt_int(&v)?),
            b"chan" => once(&mut self.chan, opt_int(&v)?),
            b"rfch" => once(&mut self.rfch, opt_int(&v)?),
            b"freq" => once(&mut self.freq, opt_float(&v)?),
            b"stat" => once(&mut self.stat, int(&v)?),
            b"modu" => once(&mut self.modu, opt_str(v)?),
            b"datr" => {
                let datr = match v {
                    Value::Null => None,
                    Value::Str(s) => Some(DataRate::Lora(super::text(s))),
                    Value::Num(_) => Some(DataRate::Fsk(int(&v)?)),
                };
                once(&mut self.datr, datr)
            }
            b"codr" => once(&mut self.codr, opt_str(v)?),
            b"rssi" => once(&mut self.rssi, opt_int(&v)?),
            b"lsnr" => once(&mut self.lsnr, opt_float(&v)?),
            b"size" => once(&mut self.size, int(&v)?),
            b"data" => match v {
                Value::Str(s) => once(&mut self.data, s),
                _ => None,
            },
            // `rsig`, `jver` and the rest: serde's business.
            _ => None,
        }
    }

    /// The entry, when every field serde requires is there.
    fn finish(self) -> Option<RawRxpk<&'a str>> {
        Some(RawRxpk {
            time: self.time.flatten(),
            tmst: self.tmst.flatten(),
            chan: self.chan.flatten(),
            rfch: self.rfch.flatten(),
            freq: self.freq.flatten(),
            stat: self.stat?,
            modu: self.modu.flatten(),
            datr: self.datr.flatten(),
            codr: self.codr.flatten(),
            rssi: self.rssi.flatten(),
            lsnr: self.lsnr.flatten(),
            rsig: Vec::new(),
            size: self.size?,
            data: self.data?,
        })
    }
}
