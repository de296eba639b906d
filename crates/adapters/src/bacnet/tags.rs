//! Application and context tags (ASHRAE 135-2020 §20.2): the encoding
//! every BACnet service parameter is made of. Pure and total: a reader
//! over untrusted bytes returns [`CodecError`] on anything short or odd,
//! never panics.

use super::CodecError;

/// Application tag numbers (§20.2.1.4).
pub mod app {
    pub const NULL: u8 = 0;
    pub const BOOLEAN: u8 = 1;
    pub const UNSIGNED: u8 = 2;
    pub const SIGNED: u8 = 3;
    pub const REAL: u8 = 4;
    pub const DOUBLE: u8 = 5;
    pub const OCTET_STRING: u8 = 6;
    pub const CHARACTER_STRING: u8 = 7;
    pub const BIT_STRING: u8 = 8;
    pub const ENUMERATED: u8 = 9;
    pub const DATE: u8 = 10;
    pub const TIME: u8 = 11;
    pub const OBJECT_ID: u8 = 12;
}

/// Object types the gateway reads or names (§21, BACnetObjectType).
pub mod object_type {
    pub const ANALOG_INPUT: u16 = 0;
    pub const ANALOG_OUTPUT: u16 = 1;
    pub const ANALOG_VALUE: u16 = 2;
    pub const BINARY_INPUT: u16 = 3;
    pub const BINARY_OUTPUT: u16 = 4;
    pub const BINARY_VALUE: u16 = 5;
    pub const DEVICE: u16 = 8;
    pub const MULTI_STATE_INPUT: u16 = 13;
    pub const MULTI_STATE_OUTPUT: u16 = 14;
    pub const MULTI_STATE_VALUE: u16 = 19;
}

/// Property identifiers the gateway reads (§21, BACnetPropertyIdentifier).
pub mod property {
    pub const MAX_APDU_LENGTH_ACCEPTED: u32 = 62;
    pub const NUMBER_OF_STATES: u32 = 74;
    pub const OBJECT_IDENTIFIER: u32 = 75;
    pub const OBJECT_LIST: u32 = 76;
    pub const OBJECT_NAME: u32 = 77;
    pub const OUT_OF_SERVICE: u32 = 81;
    pub const PRESENT_VALUE: u32 = 85;
    pub const SEGMENTATION_SUPPORTED: u32 = 107;
    pub const STATUS_FLAGS: u32 = 111;
    pub const UNITS: u32 = 117;
}

/// A BACnetObjectIdentifier: 10 bits of type, 22 of instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId {
    pub kind: u16,
    pub instance: u32,
}

/// The largest instance number; 4194303 itself means "unspecified".
pub const MAX_INSTANCE: u32 = 0x3F_FFFF;

impl ObjectId {
    pub const fn new(kind: u16, instance: u32) -> Self {
        Self { kind, instance }
    }

    pub fn device(instance: u32) -> Self {
        Self::new(object_type::DEVICE, instance)
    }

    pub fn to_u32(self) -> u32 {
        (u32::from(self.kind & 0x3FF) << 22) | (self.instance & MAX_INSTANCE)
    }

    pub fn from_u32(v: u32) -> Self {
        Self::new((v >> 22) as u16, v & MAX_INSTANCE)
    }
}

/// Names as the standard's ASN.1 spells them ("analog-input"), the form
/// the config's `objects` and `edge-gateway bacnet discover` use.
const TYPE_NAMES: [(u16, &str, &str); 10] = [
    (object_type::ANALOG_INPUT, "analog-input", "ai"),
    (object_type::ANALOG_OUTPUT, "analog-output", "ao"),
    (object_type::ANALOG_VALUE, "analog-value", "av"),
    (object_type::BINARY_INPUT, "binary-input", "bi"),
    (object_type::BINARY_OUTPUT, "binary-output", "bo"),
    (object_type::BINARY_VALUE, "binary-value", "bv"),
    (object_type::DEVICE, "device", "dev"),
    (object_type::MULTI_STATE_INPUT, "multi-state-input", "msi"),
    (object_type::MULTI_STATE_OUTPUT, "multi-state-output", "mso"),
    (object_type::MULTI_STATE_VALUE, "multi-state-value", "msv"),
];

/// "analog-input", or the number for a type the gateway does not name.
pub fn type_name(kind: u16) -> String {
    TYPE_NAMES
        .iter()
        .find(|t| t.0 == kind)
        .map_or_else(|| kind.to_string(), |t| t.1.to_string())
}

/// "ai", the short form a clashing metric name is suffixed with.
pub fn type_short(kind: u16) -> String {
    TYPE_NAMES
        .iter()
        .find(|t| t.0 == kind)
        .map_or_else(|| format!("t{kind}"), |t| t.2.to_string())
}

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", type_name(self.kind), self.instance)
    }
}

impl std::str::FromStr for ObjectId {
    type Err = String;

    /// "analog-input:1" (or "analogInput:1", bacpypes' spelling,
    /// "ANALOG_INPUT:1", "ai:1", "0:1", or with a comma: "analog-input,1"
    /// as many BACnet tools list them).
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, instance) = s.split_once([':', ',']).ok_or_else(|| {
            format!("expected type:instance such as \"analog-input:1\", got \"{s}\"")
        })?;
        let folded: String = kind
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let kind = TYPE_NAMES
            .iter()
            .find(|t| t.1.replace('-', "") == folded || t.2 == folded)
            .map(|t| t.0)
            .or_else(|| kind.parse::<u16>().ok().filter(|k| *k < 1024))
            .ok_or_else(|| {
                let names: Vec<String> = TYPE_NAMES
                    .iter()
                    .map(|t| format!("{} ({})", t.1, t.2))
                    .collect();
                format!(
                    "unknown object type \"{kind}\" in \"{s}\": expected one of {}, or a type number below 1024",
                    names.join(", ")
                )
            })?;
        let instance = instance
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|i| *i < MAX_INSTANCE)
            .ok_or_else(|| {
                format!(
                    "expected an instance from 0 to {}, got \"{instance}\"",
                    MAX_INSTANCE - 1
                )
            })?;
        Ok(Self::new(kind, instance))
    }
}

/// An application-tagged value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Boolean(bool),
    Unsigned(u64),
    Signed(i64),
    Real(f32),
    Double(f64),
    OctetString(Vec<u8>),
    CharacterString(String),
    /// Unused bits in the last octet, then the octets.
    BitString(u8, Vec<u8>),
    Enumerated(u32),
    Date([u8; 4]),
    Time([u8; 4]),
    ObjectId(ObjectId),
}

impl Value {
    /// The number a reading carries: analog as is, binary 0/1 (its
    /// enumerated active/inactive), multi-state its state number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::Boolean(b) => Some(f64::from(u8::from(b))),
            Self::Unsigned(u) => Some(u as f64),
            Self::Signed(i) => Some(i as f64),
            Self::Real(r) if r.is_finite() => Some(f64::from(r)),
            Self::Double(d) if d.is_finite() => Some(d),
            Self::Enumerated(e) => Some(f64::from(e)),
            _ => None,
        }
    }

    /// Bit `n` (0 = the first, most significant bit of the first octet).
    pub fn bit(&self, n: usize) -> Option<bool> {
        match self {
            Self::BitString(unused, bytes) => {
                let total = bytes.len() * 8 - usize::from(*unused).min(bytes.len() * 8);
                (n < total).then(|| bytes[n / 8] & (0x80 >> (n % 8)) != 0)
            }
            _ => None,
        }
    }
}

/// The class of a tag: application (its number says the type) or context
/// (its number is the field's position in a service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    App { number: u8, len: u32 },
    Context { number: u8, len: u32 },
    Open(u8),
    Close(u8),
}

/// Reads tags from a service's parameters.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn byte(&mut self) -> Result<u8, CodecError> {
        let b = *self.buf.get(self.pos).ok_or(CodecError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self.pos.checked_add(n).ok_or(CodecError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(CodecError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    /// The next tag without consuming it.
    pub fn peek(&self) -> Result<Tag, CodecError> {
        self.clone().tag()
    }

    /// The next tag header (§20.2.1).
    pub fn tag(&mut self) -> Result<Tag, CodecError> {
        let first = self.byte()?;
        let mut number = first >> 4;
        if number == 0x0F {
            number = self.byte()?;
        }
        let context = first & 0x08 != 0;
        let lvt = first & 0x07;
        if context && lvt == 6 {
            return Ok(Tag::Open(number));
        }
        if context && lvt == 7 {
            return Ok(Tag::Close(number));
        }
        let len = if lvt == 5 {
            match self.byte()? {
                254 => u32::from(u16::from_be_bytes([self.byte()?, self.byte()?])),
                255 => u32::from_be_bytes([self.byte()?, self.byte()?, self.byte()?, self.byte()?]),
                n => u32::from(n),
            }
        } else {
            u32::from(lvt)
        };
        Ok(if context {
            Tag::Context { number, len }
        } else {
            Tag::App { number, len }
        })
    }

    /// An application-tagged value.
    pub fn value(&mut self) -> Result<Value, CodecError> {
        match self.tag()? {
            Tag::App { number, len } => self.app_body(number, len),
            _ => Err(CodecError::Unexpected("an application tag")),
        }
    }

    fn app_body(&mut self, number: u8, len: u32) -> Result<Value, CodecError> {
        let n = usize::try_from(len).map_err(|_| CodecError::Truncated)?;
        Ok(match number {
            // A Null has no content (§20.2.2): bytes there would be read
            // as further values (an object in an object list).
            app::NULL if n > 0 => return Err(CodecError::Length("null")),
            app::NULL => Value::Null,
            // The value is in the length field (§20.2.3).
            app::BOOLEAN => Value::Boolean(len != 0),
            app::UNSIGNED => Value::Unsigned(unsigned(self.take(n)?)?),
            app::SIGNED => Value::Signed(signed(self.take(n)?)?),
            app::REAL => {
                let b = self.take(n)?;
                let b: [u8; 4] = b.try_into().map_err(|_| CodecError::Length("real"))?;
                Value::Real(f32::from_be_bytes(b))
            }
            app::DOUBLE => {
                let b = self.take(n)?;
                let b: [u8; 8] = b.try_into().map_err(|_| CodecError::Length("double"))?;
                Value::Double(f64::from_be_bytes(b))
            }
            app::OCTET_STRING => Value::OctetString(self.take(n)?.to_vec()),
            app::CHARACTER_STRING => Value::CharacterString(character_string(self.take(n)?)?),
            app::BIT_STRING => {
                let b = self.take(n)?;
                let (&unused, rest) = b.split_first().ok_or(CodecError::Length("bit string"))?;
                if unused > 7 || (rest.is_empty() && unused != 0) {
                    return Err(CodecError::Length("bit string"));
                }
                Value::BitString(unused, rest.to_vec())
            }
            app::ENUMERATED => {
                let v = unsigned(self.take(n)?)?;
                Value::Enumerated(u32::try_from(v).map_err(|_| CodecError::Length("enumerated"))?)
            }
            app::DATE | app::TIME | app::OBJECT_ID => {
                let b: [u8; 4] = self
                    .take(n)?
                    .try_into()
                    .map_err(|_| CodecError::Length("date, time or object id"))?;
                match number {
                    app::DATE => Value::Date(b),
                    app::TIME => Value::Time(b),
                    _ => Value::ObjectId(ObjectId::from_u32(u32::from_be_bytes(b))),
                }
            }
            _ => return Err(CodecError::Unexpected("a known application tag")),
        })
    }

    /// Context tag `number`'s raw content.
    pub fn context(&mut self, number: u8) -> Result<&'a [u8], CodecError> {
        match self.tag()? {
            Tag::Context { number: n, len } if n == number => {
                self.take(usize::try_from(len).map_err(|_| CodecError::Truncated)?)
            }
            _ => Err(CodecError::Unexpected("a context tag")),
        }
    }

    pub fn context_unsigned(&mut self, number: u8) -> Result<u64, CodecError> {
        unsigned(self.context(number)?)
    }

    pub fn context_object(&mut self, number: u8) -> Result<ObjectId, CodecError> {
        let b: [u8; 4] = self
            .context(number)?
            .try_into()
            .map_err(|_| CodecError::Length("object id"))?;
        Ok(ObjectId::from_u32(u32::from_be_bytes(b)))
    }

    /// Context tag `number` if it comes next.
    pub fn optional_unsigned(&mut self, number: u8) -> Result<Option<u64>, CodecError> {
        match self.peek() {
            Ok(Tag::Context { number: n, .. }) if n == number => {
                self.context_unsigned(number).map(Some)
            }
            _ => Ok(None),
        }
    }

    pub fn open(&mut self, number: u8) -> Result<(), CodecError> {
        match self.tag()? {
            Tag::Open(n) if n == number => Ok(()),
            _ => Err(CodecError::Unexpected("an opening tag")),
        }
    }

    pub fn close(&mut self, number: u8) -> Result<(), CodecError> {
        match self.tag()? {
            Tag::Close(n) if n == number => Ok(()),
            _ => Err(CodecError::Unexpected("a closing tag")),
        }
    }

    /// Application values up to closing tag `number` (consumed). A
    /// constructed value the gateway does not read (a nested context
    /// tag) is skipped, its nesting kept.
    pub fn values_until_close(&mut self, number: u8) -> Result<Vec<Value>, CodecError> {
        let mut out = Vec::new();
        let mut depth = 0u32;
        loop {
            match self.tag()? {
                Tag::Close(n) if depth == 0 && n == number => return Ok(out),
                Tag::Close(_) => {
                    depth = depth
                        .checked_sub(1)
                        .ok_or(CodecError::Unexpected("a balanced closing tag"))?
                }
                Tag::Open(_) => depth += 1,
                Tag::Context { len, .. } => {
                    self.take(usize::try_from(len).map_err(|_| CodecError::Truncated)?)?;
                }
                Tag::App { number: t, len } => {
                    let v = self.app_body(t, len)?;
                    if depth == 0 {
                        out.push(v);
                    }
                }
            }
        }
    }
}

fn unsigned(b: &[u8]) -> Result<u64, CodecError> {
    if b.is_empty() || b.len() > 8 {
        return Err(CodecError::Length("unsigned"));
    }
    Ok(b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
}

fn signed(b: &[u8]) -> Result<i64, CodecError> {
    let u = unsigned(b)?;
    let bits = b.len() * 8;
    Ok(if bits < 64 && u & (1 << (bits - 1)) != 0 {
        (u | (!0u64 << bits)) as i64
    } else {
        u as i64
    })
}

/// Character sets (§20.2.9): UTF-8 (0; bytes that are not UTF-8 read as
/// ISO 8859-1, as older devices meant by "ANSI X3.4" and other tools
/// read them), UCS-4 (3) and UCS-2 (4), big-endian, ISO 8859-1 (5). The
/// two double-byte sets (1, DBCS; 2, JIS X 0208) need their code pages:
/// such a string reads as its bytes taken as UTF-8, lossily, so one name
/// does not cost the whole answer it came in (a device's every object).
fn character_string(b: &[u8]) -> Result<String, CodecError> {
    let (&set, text) = b
        .split_first()
        .ok_or(CodecError::Length("character string"))?;
    let latin1 = |t: &[u8]| t.iter().map(|&c| char::from(c)).collect::<String>();
    Ok(match set {
        0 => match std::str::from_utf8(text) {
            Ok(s) => s.to_string(),
            Err(_) => latin1(text),
        },
        3 => {
            let units = text.chunks_exact(4);
            if !units.remainder().is_empty() {
                return Err(CodecError::Length("UCS-4 string"));
            }
            units
                .map(|u| {
                    char::from_u32(u32::from_be_bytes([u[0], u[1], u[2], u[3]]))
                        .unwrap_or(char::REPLACEMENT_CHARACTER)
                })
                .collect()
        }
        4 => {
            let units = text.chunks_exact(2);
            if !units.remainder().is_empty() {
                return Err(CodecError::Length("UCS-2 string"));
            }
            char::decode_utf16(units.map(|u| u16::from_be_bytes([u[0], u[1]])))
                .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect()
        }
        5 => latin1(text),
        _ => String::from_utf8_lossy(text).into_owned(),
    })
}

/// The shortest big-endian octets of `v` (at least one).
fn minimal(v: u64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take(7).take_while(|b| **b == 0).count();
    bytes[skip..].to_vec()
}

fn minimal_signed(v: i64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        let redundant = (b == 0 && next & 0x80 == 0) || (b == 0xFF && next & 0x80 != 0);
        if !redundant {
            break;
        }
        start += 1;
    }
    bytes[start..].to_vec()
}

/// Appends a tag header.
fn header(out: &mut Vec<u8>, number: u8, context: bool, len: usize) {
    let class = if context { 0x08 } else { 0 };
    let lvt = if len < 5 { len as u8 } else { 5 };
    if number < 15 {
        out.push((number << 4) | class | lvt);
    } else {
        out.push(0xF0 | class | lvt);
        out.push(number);
    }
    if len >= 5 {
        if len < 254 {
            out.push(len as u8);
        } else if len <= 0xFFFF {
            out.push(254);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(255);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }
}

pub fn put_context(out: &mut Vec<u8>, number: u8, content: &[u8]) {
    header(out, number, true, content.len());
    out.extend_from_slice(content);
}

pub fn put_context_unsigned(out: &mut Vec<u8>, number: u8, v: u64) {
    put_context(out, number, &minimal(v));
}

pub fn put_context_object(out: &mut Vec<u8>, number: u8, id: ObjectId) {
    put_context(out, number, &id.to_u32().to_be_bytes());
}

pub fn put_open(out: &mut Vec<u8>, number: u8) {
    if number < 15 {
        out.push((number << 4) | 0x0E);
    } else {
        out.extend_from_slice(&[0xFE, number]);
    }
}

pub fn put_close(out: &mut Vec<u8>, number: u8) {
    if number < 15 {
        out.push((number << 4) | 0x0F);
    } else {
        out.extend_from_slice(&[0xFF, number]);
    }
}

/// Appends an application-tagged value.
pub fn put_value(out: &mut Vec<u8>, v: &Value) {
    let body = |out: &mut Vec<u8>, tag: u8, b: &[u8]| {
        header(out, tag, false, b.len());
        out.extend_from_slice(b);
    };
    match v {
        Value::Null => out.push(0x00),
        Value::Boolean(b) => out.push(0x10 | u8::from(*b)),
        Value::Unsigned(u) => body(out, app::UNSIGNED, &minimal(*u)),
        Value::Signed(i) => body(out, app::SIGNED, &minimal_signed(*i)),
        Value::Real(r) => body(out, app::REAL, &r.to_be_bytes()),
        Value::Double(d) => body(out, app::DOUBLE, &d.to_be_bytes()),
        Value::OctetString(b) => body(out, app::OCTET_STRING, b),
        Value::CharacterString(s) => {
            let mut b = Vec::with_capacity(s.len() + 1);
            b.push(0);
            b.extend_from_slice(s.as_bytes());
            body(out, app::CHARACTER_STRING, &b);
        }
        Value::BitString(unused, bytes) => {
            let mut b = Vec::with_capacity(bytes.len() + 1);
            b.push(*unused);
            b.extend_from_slice(bytes);
            body(out, app::BIT_STRING, &b);
        }
        Value::Enumerated(e) => body(out, app::ENUMERATED, &minimal(u64::from(*e))),
        Value::Date(d) => body(out, app::DATE, d),
        Value::Time(t) => body(out, app::TIME, t),
        Value::ObjectId(id) => body(out, app::OBJECT_ID, &id.to_u32().to_be_bytes()),
    }
}
