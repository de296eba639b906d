//! How a payload fails: wholly ([`DecodeError`]: counted by its kind,
//! dead-lettered) or one field at a time ([`FieldProblem`]: the field
//! dropped, the others kept).

use std::fmt;

use gateway_core::ModelError;

use super::clip;

/// The whole payload is unusable. Count it by [`DecodeError::kind`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The payload is not UTF-8 text.
    #[error("payload is not UTF-8 (valid up to byte {valid_up_to})")]
    NotUtf8 { valid_up_to: usize },
    /// Nothing but white space.
    #[error("payload is empty")]
    Empty,
    /// A [`PayloadFormat::Number`] payload that is not a number.
    #[error("expected a number, `true` or `false`, got {text:?}")]
    NotANumber { text: String },
    /// A [`PayloadFormat::Number`] payload that is NaN, infinite, or beyond
    /// the range of f64 (`1e400`).
    #[error("expected a finite number, got {text:?}")]
    NotFinite { text: String },
    /// Not JSON, even after replacing `NaN`/`Infinity`/overflowing numbers.
    /// Also nesting deeper than serde_json's recursion limit (128).
    #[error("invalid JSON: {reason}")]
    InvalidJson { reason: String },
    /// Valid JSON of the wrong type at the top level.
    #[error("expected {expected}, got {found}")]
    WrongShape {
        expected: &'static str,
        found: &'static str,
    },
    /// A CSV line whose field count differs from the configured columns:
    /// refused whole, because a shifted column is worse than no data.
    #[error("expected {expected} CSV fields, got {found}")]
    CsvColumnCount { expected: usize, found: usize },
    /// More than one CSV line in one message.
    #[error("expected one CSV line, got {lines}")]
    CsvMultipleLines { lines: usize },
    /// Neither the context nor the payload names the device.
    #[error("no device: the topic does not name one and the payload has no usable device field")]
    NoDevice,
    /// The payload's device field is not a usable device id.
    #[error("device {id:?} in the payload is unusable: {source}")]
    InvalidDevice { id: String, source: ModelError },
    /// Valid, but not a single value field (`{}`, `[]`, only a time key).
    #[error("payload holds no value fields")]
    NoValues,
    /// Not CBOR, or CBOR nested deeper than the decoder allows.
    #[error("invalid CBOR: {reason}")]
    InvalidCbor { reason: String },
    /// A JSON object naming the same key twice: refused whole rather than
    /// guessing which one the sender meant.
    #[error("JSON object names key {key:?} more than once")]
    DuplicateKey { key: String },
    /// More distinct metrics for one device in one message than
    /// [`MAX_METRICS_PER_DEVICE`]: refused whole, since no sensor reports
    /// that many and each would be a series held open for a window.
    #[error("device {device:?} has {found} metrics in one message, at most {max} are accepted")]
    TooManyMetrics {
        device: String,
        found: usize,
        max: usize,
    },
    /// A SenML field whose name ends in `_`: RFC 8428 §4.4 requires refusing
    /// a pack with a must-understand extension the receiver does not know.
    #[error("SenML field {field:?} must be understood, and is not supported")]
    SenmlMandatoryField { field: String },
    /// Not InfluxDB line protocol (`measurement[,tag=v] field=v[,…] [ns]`).
    #[error("invalid line protocol: {reason}")]
    InvalidLineProtocol { reason: String },
    /// A `key=value` line with a token that is not a pair.
    #[error("expected key=value pairs, got {token:?}")]
    NotKeyValue { token: String },
    /// More readings (or records, keys, fields that could each be one)
    /// in one message than `max_readings_per_message`: refused whole, and
    /// found before the message is parsed where the format allows it, so
    /// a hostile pack costs no memory ([`bounds`]).
    #[error("the message holds {found} readings or more, at most {max} are accepted (max_readings_per_message)")]
    TooManyReadings { found: usize, max: usize },
    /// More values at any depth (nested arrays and objects included) than
    /// a message of `max_readings_per_message` readings can need: each
    /// would be memory held while the message is decoded.
    #[error("the message holds {found} values or more, at most {max} are read (max_readings_per_message)")]
    TooManyValues { found: usize, max: usize },
    /// A CSV line whose every value field is a word (`temperature,humidity`):
    /// a header a logger prints when it starts, one refusal rather than a
    /// `not_numeric` per column.
    #[error("a CSV header line, not values")]
    CsvHeader,
}

impl DecodeError {
    /// A stable snake_case label, for the `error_type` of a counter.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotUtf8 { .. } => "not_utf8",
            Self::Empty => "empty",
            Self::NotANumber { .. } => "not_a_number",
            Self::NotFinite { .. } => "not_finite",
            Self::InvalidJson { .. } => "invalid_json",
            Self::InvalidCbor { .. } => "invalid_cbor",
            Self::WrongShape { .. } => "wrong_shape",
            Self::CsvColumnCount { .. } => "csv_column_count",
            Self::CsvMultipleLines { .. } => "csv_multiple_lines",
            Self::NoDevice => "no_device",
            Self::InvalidDevice { .. } => "invalid_device",
            Self::NoValues => "no_values",
            Self::SenmlMandatoryField { .. } => "senml_mandatory_field",
            Self::DuplicateKey { .. } => "duplicate_key",
            Self::TooManyMetrics { .. } => "too_many_metrics",
            Self::InvalidLineProtocol { .. } => "invalid_line_protocol",
            Self::NotKeyValue { .. } => "not_key_value",
            Self::TooManyReadings { .. } => "too_many_readings",
            Self::TooManyValues { .. } => "too_many_values",
            Self::CsvHeader => "csv_header",
        }
    }
}

/// One field dropped from an otherwise usable payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// The field as the payload names it: a JSON key, a CSV column, a SenML
    /// resolved name (`[index]` when empty). Cut to 128 bytes.
    pub field: String,
    /// Why it was dropped.
    pub reason: FieldReason,
}

impl FieldProblem {
    pub(super) fn new(field: &str, reason: FieldReason) -> Self {
        Self {
            field: clip(field),
            reason,
        }
    }
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.field, self.reason)
    }
}

/// Why a field was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldReason {
    /// NaN, ±infinity, or a number beyond the range of f64.
    NotFinite,
    /// A string, array or object where a number was expected.
    NotNumeric,
    /// JSON `null`.
    Null,
    /// The field's name is not a valid metric name or device id.
    InvalidName(ModelError),
    /// A time field that is neither RFC 3339 nor epoch seconds/milliseconds in
    /// range. The readings fall back to arrival time.
    BadTimestamp,
    /// A SenML record with no value, sum, or base-only fields.
    NoValue,
    /// A SenML record from which no device can be derived.
    NoDevice,
    /// A field of the wrong JSON type (`"n": 5`, a record that is not an object).
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    /// Encoded bytes (a LoRaWAN FRMPayload) with no codec configured.
    NoCodec,
    /// Encoded bytes that did not decode (bad base64, a codec's refusal).
    Undecodable(String),
    /// A decoded object's value that cannot be a reading of its own: its
    /// flattened name is taken by an earlier value, or is no metric name.
    LeftOut(String),
    /// A field the payload names again later (InfluxDB line protocol): the
    /// last value is kept, as InfluxDB keeps it.
    Duplicate,
}

impl FieldReason {
    /// A stable snake_case label, for the `error_type` of a counter.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotFinite => "not_finite",
            Self::NotNumeric => "not_numeric",
            Self::Null => "null",
            Self::InvalidName(_) => "invalid_name",
            Self::BadTimestamp => "bad_timestamp",
            Self::NoValue => "no_value",
            Self::NoDevice => "no_device",
            Self::WrongType { .. } => "wrong_type",
            Self::NoCodec => "no_codec",
            Self::Undecodable(_) => "undecodable",
            Self::LeftOut(_) => "left_out",
            Self::Duplicate => "duplicate",
        }
    }
}

impl fmt::Display for FieldReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFinite => f.write_str("value is not a finite number"),
            Self::NotNumeric => f.write_str("value is not numeric"),
            Self::Null => f.write_str("value is null"),
            Self::InvalidName(e) => write!(f, "invalid name: {e}"),
            Self::BadTimestamp => f.write_str(
                "expected an RFC 3339 time or epoch seconds/milliseconds; using arrival time",
            ),
            Self::NoValue => f.write_str("record has no value"),
            Self::NoDevice => f.write_str("no device can be derived from the name"),
            Self::WrongType { field, expected } => write!(f, "expected {field} to be {expected}"),
            Self::NoCodec => f.write_str("encoded payload and no `codec` for this topic"),
            Self::Undecodable(why) => write!(f, "cannot decode: {why}"),
            Self::LeftOut(why) => write!(f, "left out: {why}"),
            Self::Duplicate => f.write_str("named again later in the line: the last value is kept"),
        }
    }
}
