//! Zigbee2MQTT device messages on `zigbee2mqtt/<friendly name>`:
//! `{"battery":100,"temperature":21.7,"contact":true,"state":"ON","update":{"state":"idle"},…}`.
//!
//! Zigbee2MQTT always mixes measurements with descriptive fields (`update`,
//! `action`, `power_on_behavior`, `color`), so anything that is not a
//! measurement is skipped silently rather than reported as a problem; a
//! message with no measurement at all (a button's `{"action":"single"}`) is
//! `Ok` with no readings, not an error.

use serde_json::Value;

use super::json_text;
use super::nested::on_off;
use super::{text, Context, DecodeError, Decoded, FieldReason, When};

/// The key holding the time Zigbee2MQTT last heard from the device.
const LAST_SEEN: &str = "last_seen";

/// Decodes a Zigbee2MQTT device message. The device must come from the
/// topic (`ctx.device`); the payload does not name it.
///
/// Numbers are readings and booleans 1/0. `ON`/`OFF` (any case) count as 1/0
/// under `state` and `state_*` keys (multi-gang switches use `state_l1`…),
/// and nowhere else, because settings such as `power_on_behavior` use the
/// same words. `OPEN`/`CLOSE` are not mapped: their polarity would clash with
/// `contact`, where `true` means closed, and covers report a numeric
/// `position` anyway. `last_seen` (RFC 3339, or epoch milliseconds as
/// Zigbee2MQTT's `epoch` setting writes it) is the event time.
///
/// Problems are reported only for what is genuinely broken: salvaged
/// non-finite numbers, metric names that cannot be names, an unusable
/// `last_seen`.
pub(super) fn decode(payload: &[u8], ctx: &Context) -> Result<Decoded, DecodeError> {
    let fields = json_text::object(text(payload)?)?;
    let device = ctx.device.ok_or(DecodeError::NoDevice)?;
    let mut out = Decoded::default();
    let when = match json_text::field(&fields, LAST_SEEN) {
        None => When::arrival(ctx.now),
        Some(value) => {
            let time = match value {
                Value::String(s) => gateway_core::Timestamp::parse_rfc3339(s).ok(),
                // Saturating cast; out-of-range values fail in `from_millis`.
                Value::Number(n) => n
                    .as_f64()
                    .and_then(|ms| gateway_core::Timestamp::from_millis(ms.round() as i64).ok()),
                _ => None,
            };
            match time {
                Some(t) => When::event(t),
                None => {
                    out.problem(LAST_SEEN, FieldReason::BadTimestamp);
                    When::arrival(ctx.now)
                }
            }
        }
    };
    for (key, value) in &fields {
        if key == LAST_SEEN {
            continue;
        }
        let value = match value {
            Value::Number(n) => n.as_f64(),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            Value::String(s) if json_text::is_non_finite(s) => {
                out.problem(key, FieldReason::NotFinite);
                None
            }
            Value::String(s) if is_state_key(key) => on_off(s),
            _ => None,
        };
        if let Some(v) = value {
            out.push(device, key, key, v, when);
        }
    }
    Ok(out)
}

fn is_state_key(key: &str) -> bool {
    key == "state" || key.starts_with("state_")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::*;
    use super::super::{decode, DecodeError, FieldReason, PayloadFormat};
    use gateway_core::ModelError;
    use gateway_core::TimeSource::{Arrival, Event};

    #[test]
    fn messages() {
        let d = dev("kitchen_sensor");
        let c = ctx(Some(&d), None);
        let k = |metric: &str, value: f64, ms: i64, source| {
            r("kitchen_sensor", metric, value, ms, source)
        };
        let cases: Vec<(&str, &[u8], Want)> = vec![
            (
                "the example: numbers, booleans, ON; update and other strings skipped; last_seen",
                br#"{"battery":100,"humidity":52.3,"linkquality":94,"temperature":21.7,
                     "voltage":3000,"contact":true,"occupancy":false,"state":"ON",
                     "update":{"state":"idle"},"last_seen":"2026-11-21T10:00:00.000Z"}"#,
                ok(
                    vec![
                        k("battery", 100.0, T0, Event),
                        k("humidity", 52.3, T0, Event),
                        k("linkquality", 94.0, T0, Event),
                        k("temperature", 21.7, T0, Event),
                        k("voltage", 3000.0, T0, Event),
                        k("contact", 1.0, T0, Event),
                        k("occupancy", 0.0, T0, Event),
                        k("state", 1.0, T0, Event),
                    ],
                    vec![],
                ),
            ),
            (
                "last_seen in epoch ms (Zigbee2MQTT's `epoch` setting); state_l2 OFF",
                br#"{"state_l1":"on","state_l2":"OFF","last_seen":1795255200250}"#,
                ok(vec![k("state_l1", 1.0, T0 + 250, Event), k("state_l2", 0.0, T0 + 250, Event)], vec![]),
            ),
            (
                "last_seen with an offset (`ISO_8601_local`)",
                br#"{"temperature":20,"last_seen":"2026-11-21T11:00:00+01:00"}"#,
                ok(vec![k("temperature", 20.0, T0, Event)], vec![]),
            ),
            (
                "no last_seen: arrival time; ON/OFF only under state keys; null, arrays skipped",
                br#"{"power_on_behavior":"off","action":"single","state":"TOGGLE","color":{"x":0.3},
                     "scene":null,"list":[1],"co2":415}"#,
                ok(vec![k("co2", 415.0, NOW, Arrival)], vec![]),
            ),
            (
                "OPEN/CLOSE not mapped (polarity)",
                br#"{"state":"OPEN","position":40}"#,
                ok(vec![k("position", 40.0, NOW, Arrival)], vec![]),
            ),
            (
                "a button press: nothing to measure, not an error",
                br#"{"action":"single","linkquality":null}"#,
                ok(vec![], vec![]),
            ),
            (
                "NaN salvaged into a problem; other fields kept",
                br#"{"temperature":NaN,"humidity":52.3,"pressure":1e400}"#,
                ok(
                    vec![k("humidity", 52.3, NOW, Arrival)],
                    vec![p("temperature", FieldReason::NotFinite), p("pressure", FieldReason::NotFinite)],
                ),
            ),
            (
                "unusable last_seen: problem and arrival time",
                br#"{"temperature":20,"last_seen":"just now"}"#,
                ok(vec![k("temperature", 20.0, NOW, Arrival)], vec![p("last_seen", FieldReason::BadTimestamp)]),
            ),
            (
                "a key that cannot be a metric",
                br#"{"a/b":1,"c":2}"#,
                ok(
                    vec![k("c", 2.0, NOW, Arrival)],
                    vec![p(
                        "a/b",
                        FieldReason::InvalidName(ModelError::ForbiddenChar { what: "metric name", ch: '/' }),
                    )],
                ),
            ),
            (
                "a bridge log line, not a device message",
                br#""Zigbee2MQTT started""#,
                Err(DecodeError::WrongShape { expected: "a JSON object", found: "a string" }),
            ),
            ("an array", b"[]", Err(DecodeError::WrongShape { expected: "a JSON object", found: "an array" })),
            ("truncated", br#"{"temperature":2"#, Err(invalid_json())),
            ("empty", b"", Err(DecodeError::Empty)),
            ("invalid UTF-8", b"{\xc0}", Err(DecodeError::NotUtf8 { valid_up_to: 1 })),
        ];
        for (label, payload, want) in cases {
            assert_decoded(
                label,
                decode(&PayloadFormat::Zigbee2mqtt, payload, &c),
                want,
            );
        }
        assert_decoded(
            "the device must come from the topic",
            decode(
                &PayloadFormat::Zigbee2mqtt,
                br#"{"temperature":20}"#,
                &ctx(None, None),
            ),
            Err(DecodeError::NoDevice),
        );
    }

    #[test]
    fn deep_nesting_is_invalid_json() {
        let d = dev("x");
        let deep = r#"{"a":"#.repeat(10_000);
        let err = decode(
            &PayloadFormat::Zigbee2mqtt,
            deep.as_bytes(),
            &ctx(Some(&d), None),
        )
        .unwrap_err();
        assert_eq!(err.kind(), "invalid_json");
    }
}
