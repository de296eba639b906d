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

use serde_json::Value;

use super::json_text;
use super::nested::Walk;
use super::{text, Context, DecodeError, Decoded, When};

/// Tasmota's time of the reading. It is the device's local time without
/// an offset unless `SetOption52 1` adds one: only a time with its offset
/// says when the reading was taken, so a bare one leaves the arrival time
/// (Tasmota publishes as it reads; it never buffers telemetry).
const TIME: &str = "Time";

/// 2000-01-01T00:00:00Z. Before NTP has answered, Tasmota's clock counts
/// from 1970: a time before this is a device that does not know the time
/// yet, and its readings take their arrival time rather than being
/// refused as decades late.
const CLOCK_SET_MS: i64 = 946_684_800_000;

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
            Ok(t) if t.as_millis() >= CLOCK_SET_MS => When::event(t),
            _ => When::arrival(ctx.now),
        },
        _ => When::arrival(ctx.now),
    };
    let mut walk = Walk::new(device, when, is_switch_key);
    for (key, value) in &fields {
        if key != TIME {
            walk.field(key, value);
        }
    }
    walk.finish()
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

#[cfg(test)]
#[path = "tasmota_tests.rs"]
mod tests;
