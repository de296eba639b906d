//! How much one message may hold, judged before it is parsed.
//!
//! A decoder materialises what it reads: serde_json builds a `Value` per
//! JSON value (a SenML record is a map of six), ciborium a `Value` per CBOR
//! item, and every record becomes a reading. A 16 MiB SenML pack of
//! 10^6 records took a Pi from 6 to 757 MB for one message. So before
//! a payload of any size is parsed, one walk of its bytes (no allocation)
//! counts:
//!
//! - its *entries*: the records of a SenML pack (JSON or CBOR), the keys
//!   of a JSON object, the `=` pairs of a `kv` or line-protocol line:
//!   each may become a reading, so more than `max_readings_per_message`
//!   refuse the message whole ([`DecodeError::TooManyReadings`]);
//! - its *values* at any depth (nested arrays and objects a decoder would
//!   build and then ignore): at most [`VALUES_PER_READING`] per reading
//!   allowed, plus [`VALUES_SLACK`] for the metadata of a network
//!   server's event ([`DecodeError::TooManyValues`]).
//!
//! After the decode, one device may have at most [`MAX_METRICS_PER_DEVICE`]
//! distinct metrics in one message (`too_many_metrics`).
//!
//! What a decode holds is then bounded by the limit, not by the payload:
//! about `max_readings_per_message` × (a reading, 56 bytes, and one
//! record's parse) plus the payload's own text. The number and CSV formats
//! yield one reading and one line's columns: nothing to count. After the
//! decode, readings beyond the limit (a network server's nested `object`)
//! are refused the same way by [`super::decode_bounded`].
//!
//! Messages too short to exceed either bound (every value takes a byte,
//! every entry two) are not walked at all: the bound costs nothing on the
//! path every normal message takes.

use gateway_core::Reading;

use super::{clip, json_text, DecodeError, PayloadFormat, BOM};

/// Values at any depth allowed per reading a message may yield: a SenML
/// record is up to about ten (`bn`, `bt`, `bu`, `n`, `u`, `v`, `t`, …).
pub const VALUES_PER_READING: usize = 16;
/// Values allowed besides: the gateway list and radio metadata of a
/// network server's uplink event, whatever the reading limit.
pub const VALUES_SLACK: usize = 4096;
/// CBOR nesting walked at most; ciborium itself stops at 256, and SenML
/// is two levels deep.
const MAX_CBOR_DEPTH: usize = 64;

/// The values a message of `max_readings` readings may hold.
pub fn max_values(max_readings: usize) -> usize {
    max_readings
        .saturating_mul(VALUES_PER_READING)
        .saturating_add(VALUES_SLACK)
}

/// Refuses a payload that holds more entries or values than a message of
/// `max_readings` readings may, before it is parsed.
///
/// # Errors
/// [`DecodeError::TooManyReadings`], [`DecodeError::TooManyValues`];
/// [`DecodeError::InvalidCbor`] for CBOR whose structure is broken
/// (a length beyond the payload, nesting deeper than a decoder goes).
pub(super) fn check(
    format: &PayloadFormat,
    payload: &[u8],
    max_readings: usize,
) -> Result<(), DecodeError> {
    let values_max = max_values(max_readings);
    if too_short_to_exceed(payload.len(), max_readings) {
        return Ok(());
    }
    let shape = match format {
        PayloadFormat::Number | PayloadFormat::Csv { .. } => return Ok(()),
        PayloadFormat::Auto { .. } => {
            let body = payload.strip_prefix(BOM).unwrap_or(payload);
            match body.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b'[' | b'{') => json(payload, max_readings, values_max),
                // CSV (one line of configured columns) or a number.
                _ => return Ok(()),
            }
        }
        PayloadFormat::Json
        | PayloadFormat::Senml
        | PayloadFormat::Zigbee2mqtt
        | PayloadFormat::Tasmota
        | PayloadFormat::JsonNested => json(payload, max_readings, values_max),
        #[cfg(feature = "lorawan")]
        PayloadFormat::LorawanEvent { .. } => json(payload, max_readings, values_max),
        PayloadFormat::SenmlCbor => cbor(payload, max_readings, values_max)?,
        PayloadFormat::Influx | PayloadFormat::Kv => Shape {
            entries: memchr::memchr_iter(b'=', payload).count(),
            values: 0,
        },
    };
    if shape.entries > max_readings {
        return Err(DecodeError::TooManyReadings {
            found: shape.entries,
            max: max_readings,
        });
    }
    if shape.values > values_max {
        return Err(DecodeError::TooManyValues {
            found: shape.values,
            max: values_max,
        });
    }
    Ok(())
}

/// Whether a message of `len` bytes is too short to hold more entries or
/// values than `max_readings` allow (every value takes a byte, every
/// entry two), so that [`check`] has nothing to walk.
pub(super) fn too_short_to_exceed(len: usize, max_readings: usize) -> bool {
    len < max_readings.saturating_mul(2) && len < max_values(max_readings)
}

/// Distinct metrics one device may report in one message. The richest real
/// sensors (a Zigbee2MQTT multi-sensor, a ChirpStack decoded object) report
/// a few dozen; a 10 000-key object is an attack or a bug, and would be
/// 10 000 windows and a 700 KB upstream message. Across messages a device
/// is bounded by `aggregation.max_series`.
pub const MAX_METRICS_PER_DEVICE: usize = 256;

pub(super) fn check_metric_count(readings: &[Reading]) -> Result<(), DecodeError> {
    // Cheap for every normal message: fewer readings than the cap cannot
    // exceed it (SenML batches of one metric at many times are also fine).
    if readings.len() <= MAX_METRICS_PER_DEVICE {
        return Ok(());
    }
    let pairs: std::collections::BTreeSet<(&str, &str)> = readings
        .iter()
        .map(|r| (r.device().as_str(), r.metric().as_str()))
        .collect();
    let mut count = 0;
    let mut last: Option<&str> = None;
    for (device, _) in &pairs {
        count = if last == Some(device) { count + 1 } else { 1 };
        last = Some(device);
        if count > MAX_METRICS_PER_DEVICE {
            let found = pairs.iter().filter(|(d, _)| d == device).count();
            return Err(DecodeError::TooManyMetrics {
                device: clip(device),
                found,
                max: MAX_METRICS_PER_DEVICE,
            });
        }
    }
    Ok(())
}

/// What one walk of a payload found; a walk stops early once either count
/// is over its bound, so a count may be a lower bound of the truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Shape {
    /// Elements of the top-level array, or keys of the top-level object.
    entries: usize,
    /// Values at every depth, containers included.
    values: usize,
}

/// JSON text: entries of the top-level container and values at any
/// depth, by its brackets and commas outside strings. Not a validation:
/// the parser that follows refuses what is not JSON.
fn json(payload: &[u8], max_entries: usize, max_values: usize) -> Shape {
    let mut shape = Shape {
        entries: 0,
        values: 1,
    };
    let mut depth = 0usize;
    // Just inside a bracket: the next byte that is not white space is the
    // container's first element, unless it closes it (`[]`).
    let mut opened = false;
    let mut i = 0;
    while i < payload.len() {
        let b = payload[i];
        if opened && !b.is_ascii_whitespace() {
            opened = false;
            if b != b']' && b != b'}' {
                shape.values += 1;
                if depth == 1 {
                    shape.entries += 1;
                }
            }
        }
        match b {
            b'"' => {
                i = json_text::string_end(payload, i);
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                opened = true;
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' => {
                shape.values += 1;
                if depth == 1 {
                    shape.entries += 1;
                }
            }
            _ => {}
        }
        if shape.entries > max_entries || shape.values > max_values {
            break;
        }
        i += 1;
    }
    shape
}

/// A frame of the CBOR walk: items still to read in an array, map or
/// tag, or an indefinite-length one that ends at a break byte.
#[derive(Debug, Clone, Copy)]
enum Frame {
    Items(u64),
    UntilBreak,
}

/// CBOR (RFC 8949): entries of the top-level array (under any tags) and
/// items at any depth, walked from the headers without building a value.
fn cbor(payload: &[u8], max_entries: usize, max_values: usize) -> Result<Shape, DecodeError> {
    let broken = |why: &str| DecodeError::InvalidCbor {
        reason: why.to_string(),
    };
    let mut shape = Shape::default();
    let mut stack = vec![Frame::Items(1)];
    // The stack depth of the top-level array's items, once it is known.
    let mut entries_at: Option<usize> = None;
    // Only tags so far: the next array is the top-level one.
    let mut top = true;
    let mut pos = 0usize;
    while let Some(frame) = stack.last_mut() {
        match frame {
            Frame::Items(0) => {
                stack.pop();
                continue;
            }
            Frame::Items(n) => *n -= 1,
            Frame::UntilBreak => {
                if payload.get(pos) == Some(&0xff) {
                    pos += 1;
                    stack.pop();
                    continue;
                }
            }
        }
        if entries_at == Some(stack.len()) {
            shape.entries += 1;
        }
        shape.values += 1;
        if shape.entries > max_entries || shape.values > max_values {
            return Ok(shape);
        }
        let head = *payload.get(pos).ok_or_else(|| broken("truncated"))?;
        pos += 1;
        let (major, info) = (head >> 5, head & 0x1f);
        let arg = match info {
            0..=23 => Some(u64::from(info)),
            24..=27 => {
                let len = 1usize << (info - 24);
                let bytes = payload
                    .get(pos..pos + len)
                    .ok_or_else(|| broken("truncated"))?;
                pos += len;
                Some(bytes.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b)))
            }
            31 => None,
            _ => return Err(broken("reserved additional information")),
        };
        let pushed = match (major, arg) {
            (0 | 1 | 7, _) => None,
            (2 | 3, Some(len)) => {
                let end = usize::try_from(len)
                    .ok()
                    .and_then(|len| pos.checked_add(len))
                    .filter(|end| *end <= payload.len())
                    .ok_or_else(|| broken("a string longer than the message"))?;
                pos = end;
                None
            }
            // Chunks of an indefinite string, up to its break.
            (2 | 3, None) => Some(Frame::UntilBreak),
            (4, Some(n)) => Some(Frame::Items(n)),
            (5, Some(n)) => Some(Frame::Items(n.saturating_mul(2))),
            (4 | 5, None) => Some(Frame::UntilBreak),
            (6, _) => Some(Frame::Items(1)),
            _ => return Err(broken("unknown major type")),
        };
        if let Some(frame) = pushed {
            if stack.len() >= MAX_CBOR_DEPTH {
                return Err(broken("nested too deep"));
            }
            stack.push(frame);
            if top && major == 4 {
                entries_at = Some(stack.len());
            }
            top &= major == 6;
        } else {
            top = false;
        }
    }
    Ok(shape)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use gateway_core::MetricName;

    fn json_shape(text: &str) -> (usize, usize) {
        let s = json(text.as_bytes(), usize::MAX, usize::MAX);
        (s.entries, s.values)
    }

    #[test]
    fn json_entries_are_the_top_level_and_values_every_depth() {
        assert_eq!(json_shape("[]"), (0, 1));
        assert_eq!(json_shape(" { } "), (0, 1));
        assert_eq!(json_shape(r#"[{"v":1},{"v":2}]"#), (2, 5));
        assert_eq!(json_shape(r#"{"t":1,"tags":[1,2,3]}"#), (2, 6));
        // Brackets and commas inside strings, escaped quotes: not counted.
        assert_eq!(json_shape(r#"{"a,[{":"x\",]}","b":2}"#), (2, 3));
    }

    fn cbor_shape(bytes: &[u8]) -> Result<(usize, usize), DecodeError> {
        cbor(bytes, usize::MAX, usize::MAX).map(|s| (s.entries, s.values))
    }

    #[test]
    fn cbor_is_walked_from_its_headers() {
        // [{2: 1.5}, {2: 2}]: array(2), map(1) {2: f64}, map(1) {2: 2}.
        let pack = [
            0x82, 0xa1, 0x02, 0xfb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0xa1, 0x02, 0x02,
        ];
        assert_eq!(cbor_shape(&pack).unwrap(), (2, 7));
        // Tagged, and indefinite length: [_ 1, "ab"] under tag 55799.
        let tagged = [0xd9, 0xd9, 0xf7, 0x9f, 0x01, 0x62, b'a', b'b', 0xff];
        assert_eq!(cbor_shape(&tagged).unwrap(), (2, 4));
        // A claimed length beyond the message, nesting without end.
        assert!(cbor_shape(&[0x5a, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(cbor_shape(&[0x81; 100]).is_err());
        assert!(cbor_shape(&[0x82, 0x01]).is_err(), "truncated");
    }

    #[test]
    fn a_worst_case_of_each_format_is_refused_before_it_is_parsed() {
        let max = 100;
        let records = "{\"n\":\"t\",\"v\":1},".repeat(1_000);
        let senml = format!("[{}]", records.trim_end_matches(','));
        let mut cbor_pack = vec![0x99, 0x03, 0xe8]; // array(1000)
        for _ in 0..1_000 {
            cbor_pack.extend([0xa1, 0x02, 0x01]); // {2: 1}
        }
        let keys: Vec<String> = (0..1_000).map(|i| format!("\"k{i}\":1")).collect();
        let object = format!("{{{}}}", keys.join(","));
        let nested = format!("{{\"t\":1,\"x\":[{}0]}}", "0,".repeat(10_000));
        let pairs: Vec<String> = (0..1_000).map(|i| format!("k{i}=1")).collect();
        let kv = pairs.join(" ");
        let influx = format!("m {}", pairs.join(","));
        let cases: Vec<(PayloadFormat, &[u8], &str)> = vec![
            (PayloadFormat::Senml, senml.as_bytes(), "too_many_readings"),
            (PayloadFormat::SenmlCbor, &cbor_pack, "too_many_readings"),
            (PayloadFormat::Json, object.as_bytes(), "too_many_readings"),
            (
                PayloadFormat::Zigbee2mqtt,
                object.as_bytes(),
                "too_many_readings",
            ),
            (PayloadFormat::Json, nested.as_bytes(), "too_many_values"),
            (PayloadFormat::Kv, kv.as_bytes(), "too_many_readings"),
            (
                PayloadFormat::Influx,
                influx.as_bytes(),
                "too_many_readings",
            ),
            (
                PayloadFormat::Auto { columns: None },
                senml.as_bytes(),
                "too_many_readings",
            ),
        ];
        for (format, payload, kind) in cases {
            let e = check(&format, payload, max).unwrap_err();
            assert_eq!(e.kind(), kind, "{format:?}");
        }
        // Within the bound, and the formats with nothing to count.
        assert!(check(&PayloadFormat::Senml, senml.as_bytes(), 1_000).is_ok());
        let csv = PayloadFormat::Csv {
            columns: vec![MetricName::new("t").unwrap()],
        };
        assert!(check(&csv, &[b'1'; 10_000], max).is_ok());
        assert!(check(&PayloadFormat::Number, &[b'1'; 10_000], max).is_ok());
    }
}
