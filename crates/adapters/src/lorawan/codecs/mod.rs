//! LoRaWAN payload codecs: the decrypted FRMPayload of one uplink in, named
//! values out.
//!
//! Each codec is a pure, total function `fn decode(&[u8]) -> Result<Vec<DecodedValue>, CodecError>`:
//! no I/O, no clock, never a panic whatever the bytes (a device with a wrong
//! AppSKey produces random plaintext that still passes the MIC, FAULTS §3.4).
//! A frame whose length does not match its format is refused whole: a
//! shifted field is worse than no data. The same functions back the
//! `edge-gateway decode` CLI, so what a user debugs is what the gateway runs.
//!
//! Formats, one module each: three small fixed-point frames (`seed.rs`:
//! [`Codec::CompactI16`], [`Codec::Bitpacked`], [`Codec::Batch`]),
//! Cayenne LPP (`cayenne.rs`, [`Codec::CayenneLpp`]) and the vendor formats
//! of the sensors buildings buy (`milesight.rs`, `elsys.rs`, `dragino.rs`,
//! `browan.rs`), selected by name; and the `struct` codec (`layout.rs`,
//! [`StructLayout`]), a layout declared in the config, which therefore is a
//! value rather than a [`Codec`] name.
//!
//! The vendor codecs are tables in Rust rather than the vendors' JavaScript
//! run in an engine: a table is total by construction, costs no runtime,
//! and each is tested against the vendor's own published example frames.

mod browan;
mod cayenne;
mod dragino;
mod elsys;
pub mod js;
mod layout;
mod milesight;
mod seed;

pub use layout::{Endian, FieldSpec, FieldType, LayoutError, StructLayout};

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

/// One value a codec found in a payload.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedValue {
    /// Metric name, snake_case (`temperature`, `temperature_3`): the
    /// codecs' own names are static, not a `String` made for each value
    /// (three allocations an uplink of a typical sensor, issue 69).
    pub metric: Cow<'static, str>,
    /// Always finite: every codec scales integers, so there is no NaN path.
    pub value: f64,
    /// Event time in milliseconds since the Unix epoch, when the payload
    /// carries one (`batch`); otherwise the caller stamps arrival time.
    pub time_ms: Option<i64>,
}

impl DecodedValue {
    fn new(metric: impl Into<Cow<'static, str>>, value: f64) -> Self {
        Self {
            metric: metric.into(),
            value,
            time_ms: None,
        }
    }
}

/// Why a payload could not be decoded. Count it by [`CodecError::kind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The payload is empty.
    #[error("payload is empty")]
    Empty,
    /// A fixed-size frame of the wrong length.
    #[error("expected {expected} bytes, got {found}")]
    Length { expected: usize, found: usize },
    /// A field runs past the end of the payload.
    #[error("{field} needs {needed} bytes at offset {offset}, payload has {len}")]
    Truncated {
        field: &'static str,
        offset: usize,
        needed: usize,
        len: usize,
    },
    /// Bytes left over after the last item the header announced.
    #[error("{extra} bytes after the last reading")]
    TrailingBytes { extra: usize },
    /// A `struct` float field that is NaN or infinite.
    #[error("field {field} is not a finite number")]
    NotFinite { field: String },
    /// A Cayenne LPP type this decoder does not know: its size is unknown,
    /// so nothing after it can be read.
    #[error("unknown Cayenne LPP type 0x{type_id:02x} on channel {channel}")]
    UnknownType { channel: u8, type_id: u8 },
    /// A channel of a vendor's type-length stream (Milesight, Elsys) this
    /// decoder does not know: its size is unknown, so nothing after it can
    /// be read either.
    #[error("unknown {format} {what} at offset {offset}")]
    UnknownChannel {
        format: &'static str,
        /// The identifying bytes, as the vendor's document prints them
        /// (`channel 0x03 type 0x67`, `type 0x3f`).
        what: String,
        offset: usize,
    },
}

impl CodecError {
    /// A stable snake_case label, for the `error_type` of a counter.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Length { .. } => "wrong_length",
            Self::Truncated { .. } => "truncated",
            Self::TrailingBytes { .. } => "trailing_bytes",
            Self::UnknownType { .. } | Self::UnknownChannel { .. } => "unknown_type",
            Self::NotFinite { .. } => "not_finite",
        }
    }
}

/// A payload format, selected per device with `codec = "..."`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// `compact_i16`, 5 bytes `>hBH`: temperature ×10, humidity %, battery ×100 V.
    CompactI16,
    /// `bitpacked`, 3 bytes: temperature in 0.5 °C steps from −20, humidity %, battery %.
    Bitpacked,
    /// `batch`: a count, a base time, then (delta, value ×10) per reading.
    Batch,
    /// Cayenne Low Power Payload, any number of channels.
    CayenneLpp,
    /// Milesight AM100/AM300 (AM307, AM308, AM319) channel-id + channel-type
    /// stream, little-endian.
    Milesight,
    /// Elsys ERS family type-value stream, big-endian.
    Elsys,
    /// Dragino LHT65: 11 bytes, battery with status bits, SHT temperature
    /// and humidity, an external sensor by type.
    DraginoLht65,
    /// Browan Tabs TBHH100 temperature and humidity: status, battery,
    /// temperature, humidity bytes.
    BrowanTbhh100,
}

impl Codec {
    /// Every codec, in the order the CLI lists them.
    pub const ALL: [Codec; 8] = [
        Codec::CompactI16,
        Codec::Bitpacked,
        Codec::Batch,
        Codec::CayenneLpp,
        Codec::Milesight,
        Codec::Elsys,
        Codec::DraginoLht65,
        Codec::BrowanTbhh100,
    ];

    /// The names these codecs had before they were named for their
    /// format; still accepted so no config breaks, with a warning.
    pub const DEPRECATED_NAMES: [(&'static str, Codec); 3] = [
        ("seed_compact", Codec::CompactI16),
        ("seed_bitpacked", Codec::Bitpacked),
        ("seed_batch", Codec::Batch),
    ];

    /// The name used in `gateway.toml` and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::CompactI16 => "compact_i16",
            Self::Bitpacked => "bitpacked",
            Self::Batch => "batch",
            Self::CayenneLpp => "cayenne_lpp",
            Self::Milesight => "milesight",
            Self::Elsys => "elsys",
            Self::DraginoLht65 => "dragino_lht65",
            Self::BrowanTbhh100 => "browan_tbhh100",
        }
    }

    /// Decodes one payload.
    ///
    /// # Errors
    /// A [`CodecError`] when the bytes do not fit the format; never panics.
    pub fn decode(self, bytes: &[u8]) -> Result<Vec<DecodedValue>, CodecError> {
        let mut out = Vec::new();
        self.decode_into(bytes, &mut out)?;
        Ok(out)
    }

    /// [`Codec::decode`] into `out`, cleared first, and empty again when
    /// the payload is refused. The uplink path hands every uplink the same
    /// list: a list of each payload's own was an allocation and a free an
    /// uplink (callgrind, issue 69).
    ///
    /// # Errors
    /// As [`Codec::decode`].
    #[inline]
    pub fn decode_into(self, bytes: &[u8], out: &mut Vec<DecodedValue>) -> Result<(), CodecError> {
        out.clear();
        let decoded = match self {
            Self::CompactI16 => seed::decode_compact(bytes, out),
            Self::Bitpacked => seed::decode_bitpacked(bytes, out),
            Self::Batch => seed::decode_batch(bytes, out),
            // The stream codecs still build a list of their own (they name
            // a repeated value from what they found before); it takes the
            // place of `out`.
            Self::CayenneLpp => cayenne::decode(bytes).map(|v| *out = v),
            Self::Milesight => milesight::decode(bytes).map(|v| *out = v),
            Self::Elsys => elsys::decode(bytes).map(|v| *out = v),
            Self::DraginoLht65 => dragino::decode_lht65(bytes).map(|v| *out = v),
            Self::BrowanTbhh100 => browan::decode_tbhh100(bytes).map(|v| *out = v),
        };
        if decoded.is_err() {
            out.clear();
        }
        decoded
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A codec name that is not one of [`Codec::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown codec {0:?}, expected one of {names}", names = Codec::names())]
pub struct UnknownCodec(pub String);

impl Codec {
    /// Manufacturer and model of the devices a vendor codec is for; the
    /// generic codecs say nothing of the device.
    pub fn make(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::Milesight => Some(("Milesight", "AM100/AM300 series")),
            Self::Elsys => Some(("Elsys", "ERS series")),
            Self::DraginoLht65 => Some(("Dragino", "LHT65")),
            Self::BrowanTbhh100 => Some(("Browan", "TBHH100")),
            Self::CompactI16 | Self::Bitpacked | Self::Batch | Self::CayenneLpp => None,
        }
    }

    /// The current names, comma-separated, for messages and `--help`.
    pub fn names() -> String {
        Self::ALL.map(Codec::name).join(", ")
    }
}

impl FromStr for Codec {
    type Err = UnknownCodec;

    /// A current name, or a deprecated one (remembered for
    /// [`deprecated_names_in_use`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(codec) = Self::ALL.into_iter().find(|c| c.name() == s) {
            return Ok(codec);
        }
        let (index, &(_, codec)) = Self::DEPRECATED_NAMES
            .iter()
            .enumerate()
            .find(|(_, (old, _))| *old == s)
            .ok_or_else(|| UnknownCodec(s.to_string()))?;
        DEPRECATED_SEEN[index].store(true, Ordering::Relaxed);
        Ok(codec)
    }
}

// Parsing happens before the log is set up (the log's own settings are in
// the config), so the warning is given later, by whoever logs.
static DEPRECATED_SEEN: [AtomicBool; 3] = [const { AtomicBool::new(false) }; 3];
static DEPRECATED_TOLD: [AtomicBool; 3] = [const { AtomicBool::new(false) }; 3];

/// One sentence per deprecated codec name parsed since the process started
/// and not yet returned: each name is reported once per process, however
/// often the config is reloaded.
pub fn deprecated_names_in_use() -> Vec<String> {
    Codec::DEPRECATED_NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            DEPRECATED_SEEN[*i].load(Ordering::Relaxed)
                && !DEPRECATED_TOLD[*i].swap(true, Ordering::Relaxed)
        })
        .map(|(_, (old, codec))| {
            format!(
                "Codec name {old:?} is deprecated; use {:?} (same format).",
                codec.name()
            )
        })
        .collect()
}

/// `base`, or `base_2`, `base_3`... when the payload already gave a value
/// of that name: a sensor may repeat a type (two external probes), and a
/// second value under the same name would overwrite the first downstream.
fn unique_metric(out: &[DecodedValue], base: &'static str) -> Cow<'static, str> {
    if !out.iter().any(|v| v.metric == base) {
        return Cow::Borrowed(base);
    }
    (2..)
        .map(|n| format!("{base}_{n}"))
        .find(|name| !out.iter().any(|v| v.metric == *name))
        .map_or(Cow::Borrowed(base), Cow::Owned)
}

/// `raw × scale` rounded to the scale's decimals (0.5 → 1, 0.01 → 2):
/// 0x0110 × 0.1 reads 27.2, not 27.200000000000003, so what a device sent
/// is what a user reads.
fn scaled(raw: f64, scale: f64) -> f64 {
    let decimals = if scale >= 1.0 {
        0
    } else {
        (-scale.log10() - 1e-9).ceil() as i32
    };
    let factor = 10f64.powi(decimals);
    (raw * scale * factor).round() / factor
}

/// Reads `N` bytes at `offset`, or says which field ran out.
fn take<const N: usize>(
    bytes: &[u8],
    offset: usize,
    field: &'static str,
) -> Result<[u8; N], CodecError> {
    offset
        .checked_add(N)
        .and_then(|end| bytes.get(offset..end))
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or(CodecError::Truncated {
            field,
            offset,
            needed: N,
            len: bytes.len(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_is_an_error() {
        for codec in Codec::ALL {
            assert_eq!(codec.name().parse::<Codec>(), Ok(codec));
            assert_eq!(codec.to_string(), codec.name());
        }
        let err = "Compact_I16".parse::<Codec>().unwrap_err();
        assert!(err.to_string().contains("compact_i16"), "{err}");
        assert!("".parse::<Codec>().is_err());
    }

    #[test]
    fn vendor_codecs_name_their_maker_and_generic_ones_nothing() {
        let make = |name: &str| name.parse::<Codec>().unwrap().make();
        assert_eq!(make("milesight").unwrap().0, "Milesight");
        assert_eq!(make("elsys").unwrap().0, "Elsys");
        assert_eq!(make("dragino_lht65"), Some(("Dragino", "LHT65")));
        assert_eq!(make("browan_tbhh100"), Some(("Browan", "TBHH100")));
        assert_eq!(make("compact_i16"), None);
        assert_eq!(make("cayenne_lpp"), None);
    }

    #[test]
    fn deprecated_names_still_parse_to_the_same_codecs() {
        for (old, codec) in Codec::DEPRECATED_NAMES {
            assert_eq!(old.parse::<Codec>(), Ok(codec), "{old}");
            // Twice: the warning is once, the parse is every time.
            assert_eq!(old.parse::<Codec>(), Ok(codec), "{old}");
            assert_ne!(codec.name(), old);
        }
        let told = deprecated_names_in_use();
        assert_eq!(told.len(), 3, "{told:?}");
        assert!(told[0].contains("\"seed_compact\"") && told[0].contains("\"compact_i16\""));
        // Once per process, however often the names are parsed again.
        assert_eq!("seed_batch".parse::<Codec>(), Ok(Codec::Batch));
        assert_eq!(deprecated_names_in_use(), Vec::<String>::new());
        assert_eq!("seed_compact".parse::<Codec>(), Ok(Codec::CompactI16));
        assert_eq!("seed_bitpacked".parse::<Codec>(), Ok(Codec::Bitpacked));
        assert_eq!("seed_batch".parse::<Codec>(), Ok(Codec::Batch));
        // The error lists only the current names.
        let err = "other".parse::<Codec>().unwrap_err().to_string();
        assert!(!err.contains("seed_"), "{err}");
    }

    #[test]
    fn take_reports_the_field_that_ran_out() {
        assert_eq!(take::<2>(&[1, 2, 3], 1, "x"), Ok([2, 3]));
        assert_eq!(
            take::<2>(&[1, 2, 3], 2, "x"),
            Err(CodecError::Truncated {
                field: "x",
                offset: 2,
                needed: 2,
                len: 3
            })
        );
        assert!(take::<1>(&[], usize::MAX, "x").is_err());
    }

    /// xorshift64: a fixed seed, so a failure reproduces.
    fn rng(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Hex digits to bytes; whitespace between fields is allowed so test
    /// frames can show their fields.
    pub(super) fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    pub(super) fn values(pairs: &[(&str, f64)]) -> Vec<DecodedValue> {
        pairs
            .iter()
            .map(|(m, v)| DecodedValue::new(m.to_string(), *v))
            .collect()
    }

    /// A valid frame per codec, for the mutations below: random bytes alone
    /// almost never form a valid type-length stream.
    fn valid_frame(codec: Codec) -> Vec<u8> {
        hex(match codec {
            Codec::CompactI16 => "00D728014A",
            Codec::Bitpacked => "535154",
            Codec::Batch => "026affc4000000000000d7003cfffffff6",
            Codec::CayenneLpp => "0167ffd7067104d2fb2e0000",
            Codec::Milesight => milesight::tests::AM319_EXAMPLE,
            Codec::Elsys => elsys::tests::ERS_CO2_EXAMPLE,
            Codec::DraginoLht65 => dragino::tests::LHT65_EXAMPLE,
            Codec::BrowanTbhh100 => browan::tests::TBHH100_EXAMPLE,
        })
    }

    #[test]
    fn random_and_mutated_bytes_never_panic_and_values_are_finite() {
        let mut state = 0x5EED_C0DE_u64;
        let mut decoded = [0usize; Codec::ALL.len()];
        let mut refused = [0usize; Codec::ALL.len()];
        for round in 0..20_000 {
            for (i, codec) in Codec::ALL.into_iter().enumerate() {
                let bytes: Vec<u8> = if round % 2 == 0 {
                    let len = (rng(&mut state) % 40) as usize;
                    (0..len).map(|_| rng(&mut state) as u8).collect()
                } else {
                    // A valid frame, cut, with one byte changed, or grown.
                    let mut frame = valid_frame(codec);
                    match rng(&mut state) % 4 {
                        0 => frame.truncate((rng(&mut state) as usize) % (frame.len() + 1)),
                        1 => {
                            let at = (rng(&mut state) as usize) % frame.len();
                            frame[at] = rng(&mut state) as u8;
                        }
                        2 => frame.push(rng(&mut state) as u8),
                        _ => {}
                    }
                    frame
                };
                match codec.decode(&bytes) {
                    Ok(values) => {
                        decoded[i] += 1;
                        assert!(
                            values.iter().all(|v| v.value.is_finite()),
                            "{codec} {bytes:02x?}"
                        );
                    }
                    Err(e) => {
                        refused[i] += 1;
                        assert!(!e.to_string().is_empty());
                    }
                }
            }
        }
        // Each codec must have both accepted and refused something.
        assert!(decoded.iter().all(|n| *n > 0), "{decoded:?}");
        assert!(refused.iter().all(|n| *n > 0), "{refused:?}");
    }

    #[test]
    fn the_unknown_codec_error_lists_every_name() {
        let err = "nope".parse::<Codec>().unwrap_err().to_string();
        for codec in Codec::ALL {
            assert!(err.contains(codec.name()), "{err}");
        }
    }
}
