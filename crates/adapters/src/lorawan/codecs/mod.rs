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
//! Formats, one module each: the seed course's frames (`seed.rs`:
//! [`Codec::SeedCompact`], [`Codec::SeedBitpacked`], [`Codec::SeedBatch`])
//! and Cayenne LPP (`cayenne.rs`, [`Codec::CayenneLpp`]), selected by name;
//! and the `struct` codec (`layout.rs`, [`StructLayout`]), a layout declared
//! in the config, which therefore is a value rather than a [`Codec`] name.

mod cayenne;
mod layout;
mod seed;

pub use layout::{Endian, FieldSpec, FieldType, LayoutError, StructLayout};

use std::fmt;
use std::str::FromStr;

/// One value a codec found in a payload.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedValue {
    /// Metric name, snake_case (`temperature`, `temperature_3`).
    pub metric: String,
    /// Always finite: every codec scales integers, so there is no NaN path.
    pub value: f64,
    /// Event time in milliseconds since the Unix epoch, when the payload
    /// carries one (`seed_batch`); otherwise the caller stamps arrival time.
    pub time_ms: Option<i64>,
}

impl DecodedValue {
    fn new(metric: impl Into<String>, value: f64) -> Self {
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
}

impl CodecError {
    /// A stable snake_case label, for the `error_type` of a counter.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Length { .. } => "wrong_length",
            Self::Truncated { .. } => "truncated",
            Self::TrailingBytes { .. } => "trailing_bytes",
            Self::UnknownType { .. } => "unknown_type",
            Self::NotFinite { .. } => "not_finite",
        }
    }
}

/// A payload format, selected per device with `codec = "..."`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// 5 bytes `>hBH`: temperature ×10, humidity %, battery ×100 V.
    SeedCompact,
    /// 3 bytes: temperature in 0.5 °C steps from −20, humidity %, battery %.
    SeedBitpacked,
    /// A count, a base time, then (delta, value ×10) per reading.
    SeedBatch,
    /// Cayenne Low Power Payload, any number of channels.
    CayenneLpp,
}

impl Codec {
    /// Every codec, in the order the CLI lists them.
    pub const ALL: [Codec; 4] = [
        Codec::SeedCompact,
        Codec::SeedBitpacked,
        Codec::SeedBatch,
        Codec::CayenneLpp,
    ];

    /// The name used in `gateway.toml` and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::SeedCompact => "seed_compact",
            Self::SeedBitpacked => "seed_bitpacked",
            Self::SeedBatch => "seed_batch",
            Self::CayenneLpp => "cayenne_lpp",
        }
    }

    /// Decodes one payload.
    ///
    /// # Errors
    /// A [`CodecError`] when the bytes do not fit the format; never panics.
    pub fn decode(self, bytes: &[u8]) -> Result<Vec<DecodedValue>, CodecError> {
        match self {
            Self::SeedCompact => seed::decode_compact(bytes),
            Self::SeedBitpacked => seed::decode_bitpacked(bytes),
            Self::SeedBatch => seed::decode_batch(bytes),
            Self::CayenneLpp => cayenne::decode(bytes),
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A codec name that is not one of [`Codec::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown codec {0:?}, expected one of seed_compact, seed_bitpacked, seed_batch, cayenne_lpp"
)]
pub struct UnknownCodec(pub String);

impl FromStr for Codec {
    type Err = UnknownCodec;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| UnknownCodec(s.to_string()))
    }
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
        let err = "Seed_Compact".parse::<Codec>().unwrap_err();
        assert!(err.to_string().contains("seed_compact"), "{err}");
        assert!("".parse::<Codec>().is_err());
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

    #[test]
    fn random_bytes_never_panic_and_values_are_finite() {
        let mut state = 0x5EED_C0DE_u64;
        let mut decoded = [0usize; 4];
        for _ in 0..20_000 {
            let len = (rng(&mut state) % 40) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| rng(&mut state) as u8).collect();
            for (i, codec) in Codec::ALL.into_iter().enumerate() {
                if let Ok(values) = codec.decode(&bytes) {
                    decoded[i] += 1;
                    assert!(
                        values.iter().all(|v| v.value.is_finite()),
                        "{codec} {bytes:02x?}"
                    );
                }
            }
        }
        // Fixed-length codecs accept exactly their length; the rest only
        // sometimes: each must have both accepted and refused something.
        assert!(decoded.iter().all(|n| *n > 0 && *n < 20_000), "{decoded:?}");
    }
}
