//! Payload decoders: the bytes of one message in, [`Reading`]s out.
//!
//! Shared by every adapter whose messages carry sensor values (MQTT and
//! CoAP). The decoders are pure: no I/O, no clock (the arrival time
//! comes in through [`Context::now`]), and total: they never panic, whatever
//! the bytes.
//!
//! Two levels of failure keep good data flowing:
//!
//! - a [`DecodeError`] means the whole payload is unusable (not UTF-8, not
//!   JSON, wrong shape, no device); the caller counts it by
//!   [`DecodeError::kind`] and dead-letters the message;
//! - a [`FieldProblem`] means one field was dropped and the others kept, so a
//!   sensor with one broken channel still reports the rest.
//!
//! Formats, one module each: [`PayloadFormat::Number`] (`number.rs`),
//! [`PayloadFormat::Json`] (`json.rs`), [`PayloadFormat::Csv`] (`csv.rs`),
//! [`PayloadFormat::Senml`] (`senml.rs`, RFC 8428),
//! [`PayloadFormat::SenmlCbor`] (`senml_cbor.rs`, the same records in CBOR) and
//! [`PayloadFormat::Zigbee2mqtt`] (`zigbee2mqtt.rs`), [`PayloadFormat::Tasmota`]
//! (`tasmota.rs`) and [`PayloadFormat::JsonNested`] (`nested.rs`, the walk
//! they share), and the line formats
//! [`PayloadFormat::Influx`] (`influx.rs`, InfluxDB line protocol) and
//! [`PayloadFormat::Kv`] (`kv.rs`, `key=value` pairs). `json_text.rs` holds
//! the JSON parsing they share, including the salvage of `NaN`, `Infinity`
//! and out-of-range numbers that Python senders emit.
//!
//! Non-finite values never leave this module: [`Reading::new`] refuses them,
//! and every place that builds a reading turns that refusal into a
//! [`FieldReason::NotFinite`] problem.

#[cfg(feature = "lorawan")]
pub mod binary;
mod bounds;
mod csv;
pub(crate) mod decimal;
mod device_id;
mod error;
mod influx;
mod json;
mod json_plain;
mod json_text;
mod kv;
#[cfg(feature = "lorawan")]
mod lns;
mod nested;
mod number;
mod senml;
mod senml_cbor;
mod tasmota;
mod zigbee2mqtt;

use std::cell::RefCell;
use std::collections::HashMap;

#[cfg(any(feature = "tcp_line", feature = "serial"))]
pub(crate) use csv::{Layout as CsvLayout, DEVICE_COLUMNS as CSV_DEVICE_COLUMNS};
#[cfg(feature = "lorawan")]
pub use lns::{NetworkServer, RouteCodec};

use bounds::check_metric_count;
pub use bounds::{max_values, MAX_METRICS_PER_DEVICE, VALUES_PER_READING};
pub(crate) use device_id::device_id_of_kind;
use device_id::named_device_id;
pub use device_id::IdKind;
pub use error::{DecodeError, FieldProblem, FieldReason};

use gateway_core::hash::SeededState;
use gateway_core::{DeviceId, MetricName, ModelError, Reading, TimeSource, Timestamp};

/// How a payload is laid out. Chosen per topic or resource in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadFormat {
    /// Detect from the payload: trimmed, it starts with `[` → SenML; `{` →
    /// JSON object; otherwise, if `columns` is set → CSV; otherwise a plain
    /// number.
    Auto {
        /// The CSV columns to use when the payload is neither JSON nor SenML.
        columns: Option<Vec<MetricName>>,
    },
    /// One number as text (`21.5`, `"21.5"`, `true`).
    Number,
    /// A flat JSON object of metric → value, with optional time and device keys.
    Json,
    /// One line of comma-separated values in a fixed column order.
    Csv {
        /// The metric of each column; a column named `ts`, `time` or
        /// `timestamp` holds the event time instead.
        columns: Vec<MetricName>,
    },
    /// A SenML pack in JSON (RFC 8428).
    Senml,
    /// A SenML pack in CBOR (RFC 8428 §6, integer labels).
    SenmlCbor,
    /// A Zigbee2MQTT device state message.
    Zigbee2mqtt,
    /// A JSON object whose values nest (Shelly's Gen2 status): keys
    /// joined with `_`, array items by index.
    JsonNested,
    /// Tasmota's telemetry (`tele/<topic>/SENSOR`, `…/STATE`): nested
    /// sensor objects flattened with `_`.
    Tasmota,
    /// One line of InfluxDB line protocol; the `device` tag or the
    /// measurement names the device.
    Influx,
    /// `key=value` pairs separated by spaces or commas.
    Kv,
    /// A LoRaWAN network server's uplink event (ChirpStack v4, The Things
    /// Stack v3); `codec` decodes FRMPayload when the server did not.
    #[cfg(feature = "lorawan")]
    LorawanEvent {
        server: NetworkServer,
        codec: Option<lns::RouteCodec>,
    },
}

/// What the adapter knows about a message besides its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The device, when the topic or resource already names it. It takes
    /// precedence over any device the payload names.
    pub device: Option<&'a DeviceId>,
    /// The metric of a bare value: a [`PayloadFormat::Number`] payload, or a
    /// SenML record without a name on a device's topic. `value` when `None`.
    pub metric: Option<&'a MetricName>,
    /// Arrival time: stamps readings whose payload carries no time, and is the
    /// reference for SenML relative times.
    pub now: Timestamp,
}

/// What a payload yielded: the readings, and the fields dropped on the way.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decoded {
    /// Readings in payload order. Every value is finite.
    pub readings: Vec<Reading>,
    /// One entry per dropped field: a bad time field first, then the others
    /// in payload order.
    pub problems: Vec<FieldProblem>,
    /// Text fields kept out of the readings on purpose, as (device, key):
    /// a label beside the values (`"sensor_id": "meter-01"`, `"fw": "1.2"`).
    /// Not errors; adapters count them once per device and key
    /// ([`gateway_core::AdapterStats::ignored_field`]).
    pub ignored: Vec<(DeviceId, String)>,
}

/// Decodes one message.
///
/// # Errors
/// A [`DecodeError`] when the payload as a whole is unusable. Problems with
/// single fields are reported in [`Decoded::problems`] instead.
pub fn decode(
    format: &PayloadFormat,
    payload: &[u8],
    ctx: &Context,
) -> Result<Decoded, DecodeError> {
    decode_naming_device(format, payload, ctx, None)
}

/// [`decode`], where a JSON object's `device_field` key (a config's
/// `device_field`) names the device before `device` and `id`, and is never
/// a metric. Other formats ignore it.
///
/// # Errors
/// As [`decode`].
pub fn decode_naming_device(
    format: &PayloadFormat,
    payload: &[u8],
    ctx: &Context,
    device_field: Option<&str>,
) -> Result<Decoded, DecodeError> {
    decode_bounded(
        format,
        payload,
        ctx,
        device_field,
        DEFAULT_MAX_READINGS_PER_MESSAGE,
    )
}

/// [`decode_naming_device`] of a message that may yield at most
/// `max_readings` readings (an adapter's `max_readings_per_message`).
/// Beyond it the message is refused whole: where the format allows, from
/// a count of its records, keys or fields before it is parsed, so the
/// memory of one decode stays bounded whatever the payload ([`bounds`]).
///
/// # Errors
/// As [`decode`], and [`DecodeError::TooManyReadings`] /
/// [`DecodeError::TooManyValues`] beyond the bound.
pub fn decode_bounded(
    format: &PayloadFormat,
    payload: &[u8],
    ctx: &Context,
    device_field: Option<&str>,
    max_readings: usize,
) -> Result<Decoded, DecodeError> {
    bounds::check(format, payload, max_readings)?;
    let decoded = decode_format(format, payload, ctx, device_field)?;
    check_metric_count(&decoded.readings)?;
    if decoded.readings.len() > max_readings {
        return Err(DecodeError::TooManyReadings {
            found: decoded.readings.len(),
            max: max_readings,
        });
    }
    Ok(decoded)
}

/// [`decode_bounded`] with the readings added to the end of `readings`
/// (the returned [`Decoded`] holds none): an adapter gathering a batch of
/// messages for the pipeline decodes the common payloads (a number, a flat
/// JSON object) straight into the batch, with no vector of their own to
/// allocate, copy and free per message (CoAP, issue 69). On an error
/// nothing is added.
///
/// # Errors
/// As [`decode_bounded`].
#[cfg(any(feature = "coap", feature = "mqtt"))]
pub(crate) fn decode_bounded_into(
    format: &PayloadFormat,
    payload: &[u8],
    ctx: &Context,
    device_field: Option<&str>,
    max_readings: usize,
    readings: &mut Vec<Reading>,
) -> Result<Decoded, DecodeError> {
    bounds::check(format, payload, max_readings)?;
    let start = readings.len();
    let mut decoded = Decoded {
        readings: std::mem::take(readings),
        ..Decoded::default()
    };
    let result = decode_format_into(format, payload, ctx, device_field, &mut decoded);
    *readings = std::mem::take(&mut decoded.readings);
    let added = readings.len() - start;
    let checked = result
        .and_then(|()| check_metric_count(&readings[start..]))
        .and_then(|()| {
            if added > max_readings {
                return Err(DecodeError::TooManyReadings {
                    found: added,
                    max: max_readings,
                });
            }
            Ok(())
        });
    if let Err(e) = checked {
        readings.truncate(start);
        return Err(e);
    }
    Ok(decoded)
}

/// [`decode_bounded_into`] of the body nearly every CoAP datagram
/// carries, read from its bytes: a flat JSON object of ASCII keys and
/// plain numbers (`{"value":21.53}`) in a [`PayloadFormat::Json`] or
/// [`PayloadFormat::Auto`] body short enough that the bound needs no walk,
/// for `device` (named by the resource). Its metrics are named by `metric`
/// from the keys' bytes (the server's memory of the names it heard).
/// `true` when read: its readings added, as [`decode_bounded_into`] adds
/// them, with no problem and no text field to report. `false`, nothing
/// added, for anything else, which [`decode_bounded_into`] then decodes:
/// the UTF-8 check of the payload, its trim and the metric names' checks
/// are not needed for this one (issue 69).
#[cfg(feature = "coap")]
pub(crate) fn decode_plain_json_into(
    format: &PayloadFormat,
    payload: &[u8],
    device: &DeviceId,
    now: Timestamp,
    max_readings: usize,
    metric: &mut dyn FnMut(&[u8]) -> Option<MetricName>,
    readings: &mut Vec<Reading>,
) -> bool {
    matches!(format, PayloadFormat::Json | PayloadFormat::Auto { .. })
        && bounds::too_short_to_exceed(payload.len(), max_readings)
        && json::ascii_plain_into(payload, device, now, max_readings, metric, readings)
}

/// [`decode_format`] onto the end of `out.readings`; the two shapes read
/// without serde push there directly, every other format decodes as
/// before and its readings are moved over.
#[cfg(any(feature = "coap", feature = "mqtt"))]
fn decode_format_into(
    format: &PayloadFormat,
    payload: &[u8],
    ctx: &Context,
    device_field: Option<&str>,
    out: &mut Decoded,
) -> Result<(), DecodeError> {
    let first = || {
        let body = payload.strip_prefix(BOM).unwrap_or(payload);
        body.iter().find(|b| !b.is_ascii_whitespace()).copied()
    };
    match format {
        PayloadFormat::Number | PayloadFormat::Auto { columns: None }
            if !matches!(format, PayloadFormat::Auto { .. })
                || !matches!(first(), Some(b'[' | b'{')) =>
        {
            number::decode_into(payload, ctx, out)
        }
        PayloadFormat::Json | PayloadFormat::Auto { .. }
            if matches!(format, PayloadFormat::Json) || first() == Some(b'{') =>
        {
            json::decode_into(payload, ctx, device_field, out)
        }
        _ => {
            let decoded = decode_format(format, payload, ctx, device_field)?;
            out.absorb(decoded);
            Ok(())
        }
    }
}

/// Readings one message may yield unless an adapter says otherwise
/// (`max_readings_per_message`): a day of minutely SenML records is 1 440,
/// and ten thousand readings are about 0.6 MB held at once.
pub const DEFAULT_MAX_READINGS_PER_MESSAGE: usize = 10_000;

/// [`decode`] of a [`PayloadFormat::Csv`] line onto the end of
/// `readings`, its columns' `layout` worked out before and its device
/// column's text turned into an id by `known` when it can
/// (`csv::decode_into`). On an error nothing is added.
///
/// # Errors
/// As [`decode`].
#[cfg(any(feature = "tcp_line", feature = "serial"))]
pub(crate) fn decode_csv_into(
    payload: &[u8],
    columns: &[MetricName],
    layout: &CsvLayout,
    ctx: &Context,
    known: &mut dyn FnMut(&[u8], IdKind) -> Option<DeviceId>,
    readings: &mut Vec<Reading>,
) -> Result<Vec<FieldProblem>, DecodeError> {
    let start = readings.len();
    let problems = csv::decode_into(payload, columns, layout, ctx, known, readings)?;
    if let Err(e) = check_metric_count(&readings[start..]) {
        readings.truncate(start);
        return Err(e);
    }
    Ok(problems)
}

fn decode_format(
    format: &PayloadFormat,
    payload: &[u8],
    ctx: &Context,
    device_field: Option<&str>,
) -> Result<Decoded, DecodeError> {
    match format {
        PayloadFormat::Auto { columns } => {
            let body = payload.strip_prefix(BOM).unwrap_or(payload);
            let start = body.iter().find(|b| !b.is_ascii_whitespace());
            match (start, columns) {
                (Some(b'['), _) => senml::decode(payload, ctx),
                (Some(b'{'), _) => json::decode(payload, ctx, device_field),
                (_, Some(columns)) => csv::decode(payload, columns, ctx),
                (_, None) => number::decode(payload, ctx),
            }
        }
        PayloadFormat::Number => number::decode(payload, ctx),
        PayloadFormat::Json => json::decode(payload, ctx, device_field),
        PayloadFormat::Csv { columns } => csv::decode(payload, columns, ctx),
        PayloadFormat::Senml => senml::decode(payload, ctx),
        PayloadFormat::SenmlCbor => senml_cbor::decode(payload, ctx),
        PayloadFormat::Zigbee2mqtt => zigbee2mqtt::decode(payload, ctx),
        PayloadFormat::Tasmota => tasmota::decode(payload, ctx),
        PayloadFormat::JsonNested => nested::decode(payload, ctx, device_field),
        PayloadFormat::Influx => influx::decode(payload, ctx),
        PayloadFormat::Kv => kv::decode(payload, ctx),
        #[cfg(feature = "lorawan")]
        PayloadFormat::LorawanEvent { server, codec } => {
            lns::decode(*server, codec.as_ref(), payload, ctx)
        }
    }
}

/// [`gateway_core::clock::own_time_refusal`] of a reading with its own
/// time; a time the gateway stamped is never refused.
pub fn own_time_refusal_of(
    r: &gateway_core::Reading,
    now: gateway_core::Timestamp,
) -> Option<&'static str> {
    match r.time_source() {
        gateway_core::TimeSource::Event => gateway_core::clock::own_time_refusal(r.time(), now),
        gateway_core::TimeSource::Arrival => None,
    }
}

/// Metric of a bare value when the context names none.
const DEFAULT_METRIC: &str = "value";

/// Keys holding the event time in JSON objects and CSV columns.
pub(crate) const TIME_KEYS: [&str; 3] = ["ts", "time", "timestamp"];

/// Epoch numbers above this are milliseconds, below seconds: 1e11 s is the
/// year 5138, 1e11 ms is 1973, so no plausible time is ambiguous.
const MILLIS_THRESHOLD: f64 = 1e11;

/// Longest field name or offending text copied into an error.
const MAX_ECHO: usize = 128;

/// The time of a reading and where it came from.
#[derive(Debug, Clone, Copy)]
struct When {
    time: Timestamp,
    source: TimeSource,
}

impl When {
    fn arrival(now: Timestamp) -> Self {
        Self {
            time: now,
            source: TimeSource::Arrival,
        }
    }

    fn event(time: Timestamp) -> Self {
        Self {
            time,
            source: TimeSource::Event,
        }
    }
}

impl Decoded {
    /// Takes `other`'s readings, problems and text fields after its own.
    fn absorb(&mut self, mut other: Decoded) {
        self.readings.append(&mut other.readings);
        self.problems.append(&mut other.problems);
        self.ignored.append(&mut other.ignored);
    }

    /// Adds a reading, or the problem that prevents it.
    fn push(&mut self, device: &DeviceId, field: &str, metric: &str, value: f64, when: When) {
        let metric = match metric_name(metric) {
            Ok(m) => m,
            Err(e) => return self.problem(field, FieldReason::InvalidName(e)),
        };
        self.push_metric(device, field, metric, value, when);
    }

    /// [`Self::push`] with a name already checked (a configured CSV
    /// column): no validation and no allocation per reading.
    fn push_metric(
        &mut self,
        device: &DeviceId,
        field: &str,
        metric: MetricName,
        value: f64,
        when: When,
    ) {
        match Reading::new(device.clone(), metric, value, when.time, when.source) {
            Ok(r) => self.readings.push(r),
            // The only refusal of `Reading::new` is a non-finite value.
            Err(_) => self.problem(field, FieldReason::NotFinite),
        }
    }

    fn problem(&mut self, field: &str, reason: FieldReason) {
        self.problems.push(FieldProblem::new(field, reason));
    }

    /// A text field of `device`, not a value and not an error.
    fn ignore(&mut self, device: &DeviceId, field: &str) {
        self.ignored.push((device.clone(), clip(field)));
    }
}

thread_local! {
    /// The metric names payloads named lately on this thread: a sensor
    /// names the same few keys in every message, and checking and
    /// allocating each name again was a twentieth of the gateway's CPU per
    /// QoS 1 JSON reading. Bounded; only valid names are kept. The seeded
    /// hasher, not SipHash: its hash of the key was most of a lookup
    /// (issue 69).
    static METRICS: RefCell<HashMap<Box<str>, MetricName, SeededState>> =
        RefCell::new(HashMap::default());
}

/// Names [`METRICS`] holds before it starts over.
const METRIC_CACHE: usize = 256;

/// [`MetricName::new`], remembered per thread.
fn metric_name(name: &str) -> Result<MetricName, ModelError> {
    METRICS.with(|cache| {
        // Not re-entered; if it ever were, the name is simply not cached.
        let Ok(mut cache) = cache.try_borrow_mut() else {
            return MetricName::new(name);
        };
        if let Some(m) = cache.get(name) {
            return Ok(m.clone());
        }
        let m = MetricName::new(name)?;
        if cache.len() >= METRIC_CACHE {
            cache.clear();
        }
        cache.insert(name.into(), m.clone());
        Ok(m)
    })
}

/// The UTF-8 byte order mark. Windows tools prepend it and serde_json
/// refuses it, so it is dropped.
const BOM: &[u8] = b"\xef\xbb\xbf";

/// The payload as trimmed text, without a byte order mark.
fn text(payload: &[u8]) -> Result<&str, DecodeError> {
    let text = std::str::from_utf8(payload).map_err(|e| DecodeError::NotUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Both ends printable ASCII, as nearly every payload: nothing to trim,
    // and the Unicode-aware trim need not run (it cost as much as the
    // UTF-8 check on a CSV line).
    let plain = |b: Option<&u8>| b.is_some_and(|b| (b'!'..=b'~').contains(b));
    let bytes = text.as_bytes();
    let text = if plain(bytes.first()) && plain(bytes.last()) {
        text
    } else {
        text.trim()
    };
    if text.is_empty() {
        return Err(DecodeError::Empty);
    }
    Ok(text)
}

/// Epoch seconds or milliseconds, told apart by [`MILLIS_THRESHOLD`].
fn epoch_time(n: f64) -> Option<Timestamp> {
    if n > MILLIS_THRESHOLD {
        // Saturating cast; out-of-range values fail in `from_millis`.
        Timestamp::from_millis(n.round() as i64).ok()
    } else {
        Timestamp::from_secs_f64(n).ok()
    }
}

/// An RFC 3339 time or an epoch number written as text.
fn text_time(s: &str) -> Option<Timestamp> {
    Timestamp::parse_rfc3339(s)
        .ok()
        .or_else(|| s.trim().parse::<f64>().ok().and_then(epoch_time))
}

/// At most [`MAX_ECHO`] bytes of `s`, cut at a character boundary, so a
/// hostile megabyte-long key cannot flood logs.
fn clip(s: &str) -> String {
    if s.len() <= MAX_ECHO {
        return s.to_string();
    }
    let mut end = MAX_ECHO;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod test_support;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
