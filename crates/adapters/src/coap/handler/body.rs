//! A request's whole body (one datagram's, or a Block1 transfer's) read
//! into readings, and the answer to it.

use std::borrow::Cow;

use coap_lite::ResponseType;
use gateway_core::{DeviceId, MetricName, Reading, Timestamp};

use super::answer::Answer;
use super::{Handler, Outcome};
use crate::payload::{self, Context, PayloadFormat};

/// The body's codec and fPort, when the server's codec reads it.
#[cfg(feature = "lorawan")]
pub(super) type Codec = Option<(super::super::config::BodyCodec, u8)>;
#[cfg(not(feature = "lorawan"))]
pub(super) type Codec = Option<((), u8)>;

/// Whose body it is, and how to read it.
pub(super) struct Read {
    pub(super) device: DeviceId,
    pub(super) metric: Option<MetricName>,
    pub(super) format: PayloadFormat,
    pub(super) arrival: Timestamp,
}

impl Handler {
    /// Reads `body` into `readings`: 2.04 with readings, an error otherwise.
    pub(super) fn read_body(
        &mut self,
        read: Read,
        body: Cow<'_, [u8]>,
        codec: Codec,
        out: &mut Outcome,
        readings: &mut Vec<Reading>,
    ) -> Answer {
        let Read {
            device,
            metric,
            format,
            arrival,
        } = read;
        #[cfg(feature = "lorawan")]
        if let Some((codec, fport)) = codec {
            let max = self.limits.max_readings_per_message;
            let answer = match super::super::codec::decode(
                &codec,
                fport,
                body.into_owned(),
                &device,
                arrival,
                max,
                out,
            ) {
                Ok(()) => Answer::new(ResponseType::Changed),
                Err((code, detail)) => Answer::error(code, &detail),
            };
            readings.append(&mut out.readings);
            return answer;
        }
        #[cfg(not(feature = "lorawan"))]
        let _ = codec;
        let max = self.limits.max_readings_per_message;
        if self.fast() {
            let names = &mut self.metrics;
            let mut metric = |key: &[u8]| names.get(key);
            if payload::decode_plain_json_into(
                &format,
                &body,
                &device,
                arrival,
                max,
                &mut metric,
                readings,
            ) {
                return Answer::new(ResponseType::Changed);
            }
        }
        let ctx = Context {
            device: Some(&device),
            metric: metric.as_ref(),
            now: arrival,
        };
        let start = readings.len();
        match payload::decode_bounded_into(&format, &body, &ctx, None, max, readings) {
            Ok(decoded) => {
                for p in &decoded.problems {
                    out.error(format!("field_{}", p.reason.kind()), p.to_string());
                }
                out.ignored = decoded.ignored;
                if readings.len() == start {
                    let detail = decoded
                        .problems
                        .first()
                        .map_or_else(|| "no readings".to_string(), ToString::to_string);
                    Answer::error(ResponseType::BadRequest, &detail)
                } else {
                    Answer::new(ResponseType::Changed)
                }
            }
            Err(e) => {
                out.error(e.kind(), e.to_string());
                let code = match e {
                    payload::DecodeError::TooManyReadings { .. }
                    | payload::DecodeError::TooManyValues { .. } => {
                        ResponseType::RequestEntityTooLarge
                    }
                    _ => ResponseType::BadRequest,
                };
                Answer::error(code, &e.to_string())
            }
        }
    }
}
