//! Tasmota's telemetry on `tele/<topic>/SENSOR` and `tele/<topic>/STATE`:
//! `{"Time":"2026-11-30T18:00:00","AM2301":{"Temperature":21.5,"Humidity":45.2},"TempUnit":"C"}`,
//! `{"Time":…,"ENERGY":{"Total":12.3,"Power":45,"Voltage":[230,231,229]}}`,
//! `{"Time":…,"UptimeSec":3600,"POWER":"ON","Wifi":{"RSSI":100,"Signal":-42}}`.
//!
//! Tasmota nests every sensor's values under the sensor's name, so the
//! plain JSON format (flat objects) finds no value in them. Nested keys
//! are joined with `_` and array items named by their index
//! (`AM2301_Temperature`, `ENERGY_Voltage_0`, `Wifi_RSSI`), as Telegraf's
//! JSON parser and the LoRaWAN codecs' results name them, so the names
//! are the ones a Tasmota user reads in its console.

use std::collections::HashSet;

use serde_json::Value;

use super::json_text;
use super::{text, Context, DecodeError, Decoded, FieldReason, When};

/// Tasmota's time of the reading. It is the device's local time without
/// an offset unless `SetOption52 1` adds one: only a time with its offset
/// says when the reading was taken, so a bare one leaves the arrival time
/// (Tasmota publishes as it reads; it never buffers telemetry).
const TIME: &str = "Time";

/// Nesting followed at most: Tasmota's deepest is three levels (a sensor
/// bus's device, its values, a multi-phase array).
const MAX_DEPTH: usize = 4;

/// Decodes a Tasmota telemetry message. The device comes from the topic
/// (`ctx.device`), which is Tasmota's `%topic%`.
///
/// Numbers are readings and booleans 1/0; `ON`/`OFF` (any case) are 1/0
/// under `POWER…` and `Switch…` keys (relays and switch inputs), where
/// Tasmota writes them, and nowhere else. Other strings (`TempUnit`,
/// a DS18B20's `Id`, `SSId`) are text beside the values; `null` (a
/// sensor that failed to read) is a problem of that field, the other
/// fields kept.
pub(super) fn decode(payload: &[u8], ctx: &Context) -> Result<Decoded, DecodeError> {
    let fields = json_text::object(text(payload)?)?;
    let device = ctx.device.ok_or(DecodeError::NoDevice)?;
    let when = match json_text::field(&fields, TIME) {
        Some(Value::String(s)) => match gateway_core::Timestamp::parse_rfc3339(s) {
            Ok(t) => When::event(t),
            Err(_) => When::arrival(ctx.now),
        },
        _ => When::arrival(ctx.now),
    };
    let mut walk = Walk {
        device,
        when,
        out: Decoded::default(),
        taken: HashSet::new(),
        name: String::new(),
    };
    for (key, value) in &fields {
        if key != TIME {
            walk.value(key, value, 0, is_switch_key(key));
        }
    }
    if walk.out.readings.is_empty() && walk.out.problems.is_empty() {
        return Err(DecodeError::NoValues);
    }
    Ok(walk.out)
}

struct Walk<'a> {
    device: &'a gateway_core::DeviceId,
    when: When,
    out: Decoded,
    /// Flattened names already read: `{"a_b":1,"a":{"b":2}}` gives one
    /// reading and a problem, never two readings of one metric at once.
    taken: HashSet<String>,
    /// The name being built, reused across the walk.
    name: String,
}

impl Walk<'_> {
    fn value(&mut self, key: &str, value: &Value, depth: usize, switch: bool) {
        let start = self.name.len();
        if start > 0 {
            self.name.push('_');
        }
        self.name.push_str(key);
        match value {
            Value::Object(map) if depth < MAX_DEPTH => {
                for (k, v) in map {
                    self.value(k, v, depth + 1, switch || is_switch_key(k));
                }
            }
            Value::Array(items) if depth < MAX_DEPTH => {
                for (i, v) in items.iter().enumerate() {
                    self.value(&i.to_string(), v, depth + 1, switch);
                }
            }
            Value::Object(_) | Value::Array(_) => {
                let field = self.name.clone();
                self.out.problem(
                    &field,
                    FieldReason::LeftOut(format!("nested deeper than {MAX_DEPTH} levels")),
                );
            }
            Value::Number(n) => self.reading(n.as_f64()),
            Value::Bool(b) => self.reading(Some(f64::from(u8::from(*b)))),
            Value::Null => {
                let field = self.name.clone();
                self.out.problem(&field, FieldReason::Null);
            }
            Value::String(s) if json_text::is_non_finite(s) => {
                let field = self.name.clone();
                self.out.problem(&field, FieldReason::NotFinite);
            }
            Value::String(s) => match on_off(s).filter(|_| switch) {
                Some(v) => self.reading(Some(v)),
                None => {
                    let field = self.name.clone();
                    self.out.ignore(self.device, &field);
                }
            },
        }
        self.name.truncate(start);
    }

    fn reading(&mut self, value: Option<f64>) {
        let field = self.name.clone();
        let Some(value) = value else {
            return self.out.problem(&field, FieldReason::NotFinite);
        };
        if !self.taken.insert(field.clone()) {
            return self.out.problem(
                &field,
                FieldReason::LeftOut("the same name as an earlier value".into()),
            );
        }
        self.out.push(self.device, &field, &field, value, self.when);
    }
}

/// Relays (`POWER`, `POWER1`…) and switch inputs (`Switch1`…): the keys
/// Tasmota writes `ON`/`OFF` under as a state.
fn is_switch_key(key: &str) -> bool {
    key.get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("POWER"))
        || key
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case("Switch"))
}

fn on_off(s: &str) -> Option<f64> {
    if s.eq_ignore_ascii_case("ON") {
        Some(1.0)
    } else if s.eq_ignore_ascii_case("OFF") {
        Some(0.0)
    } else {
        None
    }
}

#[cfg(test)]
#[path = "tasmota_tests.rs"]
mod tests;
