//! What one configured register means: its table, its type, the order of
//! its bytes and words, and the `raw × scale + offset` that makes it a
//! reading. Pure: words in, a number out (and back, for writes).
//!
//! Modbus itself only moves 16-bit registers (big-endian on the wire) and
//! single bits; everything wider is a vendor's convention, which is why
//! `order` exists. The four orders are named by where the bytes of a
//! 32-bit value `ABCD` (A most significant) land in the registers read:
//! `abcd` = `[AB, CD]` (big-endian, most meters), `cdab` = `[CD, AB]`
//! (word-swapped, many PLCs), `badc` = `[BA, DC]`, `dcba` = `[DC, BA]`
//! (little-endian). 64-bit values extend the same rule to four words.

use serde::Deserialize;

/// The four Modbus data tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Table {
    /// Read/write bits, function 1.
    Coil,
    /// Read-only bits, function 2.
    Discrete,
    /// Read/write registers, function 3 (the "4xxxx" of vendor manuals).
    Holding,
    /// Read-only registers, function 4 (the "3xxxx").
    Input,
}

/// Most registers one read may ask for (Modbus Application Protocol
/// V1.1b3 §6.3: quantity 1 to 125).
pub const MAX_REGISTERS_PER_READ: u16 = 125;
/// Most bits one read may ask for (§6.1: 1 to 2000).
pub const MAX_BITS_PER_READ: u16 = 2000;

impl Table {
    pub fn is_bits(self) -> bool {
        matches!(self, Self::Coil | Self::Discrete)
    }

    /// The most items one read of this table may ask for.
    pub fn max_per_read(self) -> u16 {
        if self.is_bits() {
            MAX_BITS_PER_READ
        } else {
            MAX_REGISTERS_PER_READ
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Coil => "coil",
            Self::Discrete => "discrete",
            Self::Holding => "holding",
            Self::Input => "input",
        }
    }
}

/// How many registers a value spans and how they read as a number. Also
/// taken by the names Home Assistant's `data_type` and Telegraf's
/// `data_type` use (`uint16`, `int32`, `float32`, `INT16`, `FLOAT32`):
/// a register map copied from either reads as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    #[serde(alias = "uint16", alias = "U16", alias = "UINT16")]
    U16,
    #[serde(alias = "int16", alias = "I16", alias = "INT16")]
    I16,
    #[serde(alias = "uint32", alias = "U32", alias = "UINT32")]
    U32,
    #[serde(alias = "int32", alias = "I32", alias = "INT32")]
    I32,
    #[serde(alias = "uint64", alias = "U64", alias = "UINT64")]
    U64,
    #[serde(alias = "int64", alias = "I64", alias = "INT64")]
    I64,
    #[serde(alias = "float32", alias = "F32", alias = "FLOAT32")]
    F32,
    #[serde(alias = "float64", alias = "F64", alias = "FLOAT64")]
    F64,
    /// Text, two characters per register (`length` registers): a serial
    /// number, a model name, a status word spelt out.
    #[serde(alias = "STRING")]
    String,
}

impl ValueType {
    /// The numeric types (a string is not read as a number).
    pub const ALL: [Self; 8] = [
        Self::U16,
        Self::I16,
        Self::U32,
        Self::I32,
        Self::U64,
        Self::I64,
        Self::F32,
        Self::F64,
    ];

    /// Registers (16-bit words) the value spans (a string: per
    /// register, its own `length`).
    pub fn words(self) -> u16 {
        match self {
            Self::U16 | Self::I16 | Self::String => 1,
            Self::U32 | Self::I32 | Self::F32 => 2,
            Self::U64 | Self::I64 | Self::F64 => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::U16 => "u16",
            Self::I16 => "i16",
            Self::U32 => "u32",
            Self::I32 => "i32",
            Self::U64 => "u64",
            Self::I64 => "i64",
            Self::F32 => "f32",
            Self::F64 => "f64",
            Self::String => "string",
        }
    }
}

/// Byte and word order of a value, named by where `ABCD` lands, in
/// either case (manuals and Telegraf write `CDAB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Big-endian: the Modbus convention and most meters (Eastron, Carlo
    /// Gavazzi).
    #[default]
    #[serde(alias = "ABCD")]
    Abcd,
    /// Little-endian.
    #[serde(alias = "DCBA")]
    Dcba,
    /// Bytes swapped in each word, words in order.
    #[serde(alias = "BADC")]
    Badc,
    /// Words swapped, bytes in each word big-endian (many PLCs).
    #[serde(alias = "CDAB")]
    Cdab,
}

impl Order {
    pub const ALL: [Self; 4] = [Self::Abcd, Self::Dcba, Self::Badc, Self::Cdab];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Abcd => "abcd",
            Self::Dcba => "dcba",
            Self::Badc => "badc",
            Self::Cdab => "cdab",
        }
    }

    fn reverses_words(self) -> bool {
        matches!(self, Self::Dcba | Self::Cdab)
    }

    fn swaps_bytes(self) -> bool {
        matches!(self, Self::Dcba | Self::Badc)
    }
}

/// `words` (as read, at most 4) in big-endian byte order of the value.
/// The same permutation turns a value's big-endian bytes back into words.
fn to_big_endian(words: &[u16], order: Order) -> ([u8; 8], usize) {
    let mut out = [0u8; 8];
    let n = words.len().min(4);
    for i in 0..n {
        let w = if order.reverses_words() {
            words[n - 1 - i]
        } else {
            words[i]
        };
        let w = if order.swaps_bytes() {
            w.swap_bytes()
        } else {
            w
        };
        out[2 * i..2 * i + 2].copy_from_slice(&w.to_be_bytes());
    }
    (out, 2 * n)
}

/// The raw number in `words` (exactly `ty.words()` of them, as read from
/// the device) read as `ty` in `order`; `None` when there are too few.
pub fn decode_raw(words: &[u16], ty: ValueType, order: Order) -> Option<f64> {
    let n = usize::from(ty.words());
    let words = words.get(..n)?;
    let (be, _) = to_big_endian(words, order);
    let b2 = [be[0], be[1]];
    let b4 = [be[0], be[1], be[2], be[3]];
    Some(match ty {
        ValueType::U16 => f64::from(u16::from_be_bytes(b2)),
        ValueType::I16 => f64::from(i16::from_be_bytes(b2)),
        ValueType::U32 => f64::from(u32::from_be_bytes(b4)),
        ValueType::I32 => f64::from(i32::from_be_bytes(b4)),
        ValueType::F32 => f64::from(f32::from_be_bytes(b4)),
        // Above 2^53 an f64 rounds: an energy counter in Wh reaches that
        // after a million years of a megawatt.
        ValueType::U64 => u64::from_be_bytes(be) as f64,
        ValueType::I64 => i64::from_be_bytes(be) as f64,
        ValueType::F64 => f64::from_be_bytes(be),
        ValueType::String => return None,
    })
}

/// The bits of `words` (exactly `ty.words()` of them) in `order`, as one
/// unsigned integer: what a `bits` status word is read from. Never through
/// an `f64`: a 64-bit word loses its low bits above 2^53, and a signed
/// one's set top bit made it negative.
pub fn decode_bits(words: &[u16], ty: ValueType, order: Order) -> Option<u64> {
    let words = words.get(..usize::from(ty.words()))?;
    let (be, len) = to_big_endian(words, order);
    Some(
        be[..len]
            .iter()
            .fold(0u64, |v, b| (v << 8) | u64::from(*b)),
    )
}

/// The text in `words`: two characters per register, the first in the
/// high byte (`abcd`) or, for devices that store them the other way
/// round, in the low byte (`badc`); it ends at the first NUL, trailing
/// spaces (a fixed-width field's padding) dropped, bytes that are not
/// UTF-8 or are control characters shown as U+FFFD.
pub fn decode_text(words: &[u16], order: Order) -> String {
    let bytes: Vec<u8> = words
        .iter()
        .flat_map(|w| {
            let w = if order.swaps_bytes() {
                w.swap_bytes()
            } else {
                *w
            };
            w.to_be_bytes()
        })
        .take_while(|b| *b != 0)
        .collect();
    String::from_utf8_lossy(&bytes)
        .chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect::<String>()
        .trim_end()
        .to_string()
}

/// One register of a device's map, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Register {
    pub metric: String,
    pub table: Table,
    /// 0-based protocol address.
    pub address: u16,
    /// Ignored for coils and discrete inputs (a bit reads as 0 or 1).
    pub ty: ValueType,
    pub order: Order,
    pub scale: f64,
    pub offset: f64,
    /// Shown after the value (dashboard, InfluxDB, Home Assistant).
    pub unit: Option<String>,
    /// A command from the cloud may write it (`writable = true`; coils
    /// and holding registers only).
    pub writable: bool,
    /// Bounds of a written value, in the reading's unit.
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// `bits`: the reading is this bit of the value (0 the least
    /// significant), 0 or 1.
    pub bit: Option<u8>,
    /// A string's registers (0 for anything else).
    pub length: u16,
}

impl Register {
    /// Items (registers or bits) this register spans.
    pub fn span(&self) -> u16 {
        if self.table.is_bits() {
            1
        } else if self.ty == ValueType::String {
            self.length.max(1)
        } else {
            self.ty.words()
        }
    }

    /// Whether it is read as text, not as a number.
    pub fn is_text(&self) -> bool {
        self.ty == ValueType::String && !self.table.is_bits()
    }

    /// The text of registers `words` (this register's, first at its
    /// address); `None` when there are too few.
    pub fn text_of_words(&self, words: &[u16]) -> Option<String> {
        let mine = words.get(..usize::from(self.span()))?;
        Some(decode_text(mine, self.order))
    }

    /// The address after the last item it spans (`u32`: a value may end
    /// at 65 536).
    pub fn end(&self) -> u32 {
        u32::from(self.address) + u32::from(self.span())
    }

    /// The reading of registers `words` (this register's, first at its
    /// address): `raw × scale + offset`; `None` when not finite (an f32
    /// NaN a meter sends for "no value") or too few words.
    pub fn value_of_words(&self, words: &[u16]) -> Option<f64> {
        if let Some(bit) = self.bit {
            // An integer type, the bit within its width: checked with the map.
            let word = decode_bits(words, self.ty, self.order)?;
            return Some(f64::from(u8::from((word >> bit) & 1 == 1)));
        }
        let v = self.scaled(decode_raw(words, self.ty, self.order)?);
        v.is_finite().then_some(v)
    }

    /// The reading of a bit: 0 or 1, scaled like a register.
    pub fn value_of_bit(&self, bit: bool) -> f64 {
        self.scaled(f64::from(u8::from(bit)))
    }

    /// `raw × scale + offset`, a zero keeping the register's own sign: a
    /// meter's -0.0 goes on as it sent it, and -0.0 + 0.0 is +0.0, so the
    /// default offset is not added; nor does a negative scale make an
    /// integer's 0 into -0.0.
    fn scaled(&self, raw: f64) -> f64 {
        let v = if raw == 0.0 { raw } else { raw * self.scale };
        if self.offset == 0.0 {
            v
        } else {
            v + self.offset
        }
    }

    /// `(min, max)` of a written value: unbounded ends are infinite.
    pub fn bounds(&self) -> Option<(f64, f64)> {
        match (self.min, self.max) {
            (None, None) => None,
            (min, max) => Some((
                min.unwrap_or(f64::NEG_INFINITY),
                max.unwrap_or(f64::INFINITY),
            )),
        }
    }
}

/// Why a value cannot be written to a register.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    #[error("{value} is not a finite number")]
    NotFinite { value: f64 },
    #[error("{} is outside the allowed range: {}", readable(*value), range_in_words(*min, *max))]
    OutOfBounds { value: f64, min: f64, max: f64 },
    #[error("{} does not fit a {ty}", readable(*raw))]
    OutOfRange { raw: f64, ty: &'static str },
    #[error("a coil takes 0 or 1, not {}", readable(*value))]
    NotABit { value: f64 },
    #[error("a discrete input or input register cannot be written")]
    ReadOnly,
    #[error("scale 0 cannot be inverted")]
    ZeroScale,
}

/// A write's bounds as people say them (a result's `detail` is read by
/// operators, not Rust programmers): "15 to 28", "at least 15",
/// "at most 28".
/// A number as a person reads it in a result or a log: 1.7e308, not its
/// 309 digits.
fn readable(v: f64) -> String {
    if v != 0.0 && !(1e-6..1e15).contains(&v.abs()) {
        format!("{v:e}")
    } else {
        v.to_string()
    }
}

fn range_in_words(min: f64, max: f64) -> String {
    let (lo, hi) = (readable(min), readable(max));
    match (min.is_finite(), max.is_finite()) {
        (true, true) => format!("{lo} to {hi}"),
        (true, false) => format!("at least {lo}"),
        (false, true) => format!("at most {hi}"),
        (false, false) => "any number".to_string(),
    }
}

/// What a write puts on the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum Encoded {
    Coil(bool),
    Registers(Vec<u16>),
}

/// A value in the reading's unit → what to write, the inverse of reading:
/// `(value - offset) / scale`, rounded to the nearest integer for integer
/// types, in the register's type and order. `bounds` (in the reading's
/// unit) refuse a value outside them before anything is computed.
///
/// # Errors
/// [`EncodeError`]: not finite, outside `bounds`, not representable in
/// the type, not 0/1 for a coil, or a read-only table.
pub fn encode(
    register: &Register,
    value: f64,
    bounds: Option<(f64, f64)>,
) -> Result<Encoded, EncodeError> {
    if !value.is_finite() {
        return Err(EncodeError::NotFinite { value });
    }
    if let Some((min, max)) = bounds {
        if value < min || value > max {
            return Err(EncodeError::OutOfBounds { value, min, max });
        }
    }
    if register.scale == 0.0 {
        return Err(EncodeError::ZeroScale);
    }
    let raw = (value - register.offset) / register.scale;
    match register.table {
        Table::Discrete | Table::Input => Err(EncodeError::ReadOnly),
        Table::Coil => {
            let r = raw.round();
            if (raw - r).abs() > 1e-9 || !(r == 0.0 || r == 1.0) {
                return Err(EncodeError::NotABit { value });
            }
            Ok(Encoded::Coil(r == 1.0))
        }
        Table::Holding => {
            let be = raw_to_be(raw, register.ty)?;
            let n = usize::from(register.ty.words());
            // The permutations are their own inverses for the word count
            // of one value: reading back what is written gives `be`.
            let be_words: Vec<u16> = be[..2 * n]
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            let mut words = vec![0u16; n];
            for (i, w) in be_words.iter().enumerate() {
                let at = if register.order.reverses_words() {
                    n - 1 - i
                } else {
                    i
                };
                words[at] = if register.order.swaps_bytes() {
                    w.swap_bytes()
                } else {
                    *w
                };
            }
            Ok(Encoded::Registers(words))
        }
    }
}

fn raw_to_be(raw: f64, ty: ValueType) -> Result<[u8; 8], EncodeError> {
    let mut be = [0u8; 8];
    let out_of_range = || EncodeError::OutOfRange {
        raw,
        ty: ty.as_str(),
    };
    let int = |lo: f64, hi: f64| {
        let r = raw.round();
        if r < lo || r > hi {
            Err(out_of_range())
        } else {
            Ok(r)
        }
    };
    match ty {
        ValueType::U16 => {
            be[..2].copy_from_slice(&(int(0.0, f64::from(u16::MAX))? as u16).to_be_bytes())
        }
        ValueType::I16 => be[..2].copy_from_slice(
            &(int(f64::from(i16::MIN), f64::from(i16::MAX))? as i16).to_be_bytes(),
        ),
        ValueType::U32 => {
            be[..4].copy_from_slice(&(int(0.0, f64::from(u32::MAX))? as u32).to_be_bytes())
        }
        ValueType::I32 => be[..4].copy_from_slice(
            &(int(f64::from(i32::MIN), f64::from(i32::MAX))? as i32).to_be_bytes(),
        ),
        // 2^64 and 2^63 are exact in f64; the casts saturate below them.
        ValueType::U64 => {
            let r = raw.round();
            if !(0.0..18_446_744_073_709_551_616.0).contains(&r) {
                return Err(out_of_range());
            }
            be.copy_from_slice(&(r as u64).to_be_bytes());
        }
        ValueType::I64 => {
            let r = raw.round();
            if !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&r) {
                return Err(out_of_range());
            }
            be.copy_from_slice(&(r as i64).to_be_bytes());
        }
        ValueType::F32 => {
            let f = raw as f32;
            if !f.is_finite() {
                return Err(out_of_range());
            }
            be[..4].copy_from_slice(&f.to_be_bytes());
        }
        // A value within ±1.8e308 divided by a scale below 1 (or moved by
        // a large offset) may overflow: an infinity is no set point.
        ValueType::F64 => {
            if !raw.is_finite() {
                return Err(out_of_range());
            }
            be.copy_from_slice(&raw.to_be_bytes());
        }
        ValueType::String => return Err(out_of_range()),
    }
    Ok(be)
}

#[cfg(test)]
#[path = "registers_tests.rs"]
mod tests;
