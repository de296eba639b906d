//! A CoAP server's `codec`: binary bodies (Content-Format 42
//! application/octet-stream, or none) decoded by a built-in LoRaWAN codec
//! or a vendor's `js:` codec into readings of the device `/s/{device}`
//! names. The FPort a codec sees is the server's `codec_fport`, or the
//! request's `?fport=N`.

use coap_lite::ResponseType;
use gateway_core::{DeviceId, Timestamp};

use super::config::BodyCodec;
use super::handler::Outcome;
use crate::payload::binary;

/// application/octet-stream (RFC 7252 §12.3).
pub(super) const CF_OCTET_STREAM: u32 = 42;

/// Whether a body of this Content-Format is the codec's: octet-stream,
/// or none at all; text, JSON and SenML keep their own readers.
pub(super) fn takes(cf: Option<u32>) -> bool {
    matches!(cf, None | Some(CF_OCTET_STREAM))
}

/// The FPort for a request with these Uri-Query values: `?fport=N` (0 to
/// 255), else the server's.
///
/// # Errors
/// A `fport` query that is not a number from 0 to 255.
pub(super) fn fport<'a>(
    queries: impl IntoIterator<Item = &'a [u8]>,
    default: u8,
) -> Result<u8, String> {
    for q in queries {
        if let Some(v) = q.strip_prefix(b"fport=") {
            return std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.parse::<u8>().ok())
                .ok_or_else(|| {
                    format!(
                        "expected ?fport=0 to 255, got {:?}",
                        String::from_utf8_lossy(v)
                    )
                });
        }
    }
    Ok(default)
}

/// Decodes `body` onto `out` (readings, text fields, warnings, units).
///
/// # Errors
/// The response code and diagnostic for a body that gave no readings; its
/// error is counted in `out` already.
pub(super) fn decode(
    codec: &BodyCodec,
    fport: u8,
    body: Vec<u8>,
    device: &DeviceId,
    arrival: Timestamp,
    max_readings: usize,
    out: &mut Outcome,
) -> Result<(), (ResponseType, String)> {
    let mut decoded = binary::decode(&codec.codec, body, fport, device, arrival);
    for p in &decoded.decoded.problems {
        out.errors
            .push((format!("field_{}", p.reason.kind()), p.to_string()));
    }
    if !decoded.warnings.is_empty() {
        out.codec_warnings = Some((device.clone(), std::mem::take(&mut decoded.warnings)));
    }
    if let Some((kind, detail)) = decoded.failure {
        out.errors
            .push((kind, format!("device {device}: {detail}")));
        return Err((ResponseType::BadRequest, detail));
    }
    let readings = decoded.decoded.readings;
    if readings.len() > max_readings {
        let detail = format!(
            "{} readings in one message, at most {max_readings} are accepted",
            readings.len()
        );
        out.errors
            .push(("too_many_readings".into(), detail.clone()));
        return Err((ResponseType::RequestEntityTooLarge, detail));
    }
    out.ignored = decoded.decoded.ignored;
    if !decoded.units.is_empty() {
        out.units = Some((device.clone(), decoded.units));
    }
    out.readings = readings;
    Ok(())
}
