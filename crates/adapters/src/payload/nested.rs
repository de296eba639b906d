//! JSON objects whose values nest (`{"aenergy":{"total":6.53},"temperature":{"tC":23.5}}`,
//! Shelly's Gen2 status, Tasmota's sensors): every number and boolean a
//! reading under its keys joined with `_`, array items named by index
//! (`aenergy_total`, `ENERGY_Voltage_0`), the names Telegraf's JSON parser
//! and the LoRaWAN codecs' results give them.
//!
//! `format = "json_nested"` is the plain JSON object's reading with this
//! walk: time and device keys as [`super::json`] takes them, the rest
//! flattened; Tasmota's format (`tasmota.rs`) walks the same way.

use std::collections::HashSet;

use gateway_core::DeviceId;
use serde_json::Value;

use super::json::{event_time, payload_device, DEVICE_KEYS};
use super::json_text;
use super::{text, Context, DecodeError, Decoded, FieldReason, When, TIME_KEYS};

/// Nesting followed at most below the top: Tasmota's deepest is three
/// levels (a sensor bus's device, its values, a multi-phase array), a
/// Shelly's two.
const MAX_DEPTH: usize = 4;

/// Decodes a JSON object whose values may nest: the device from the topic,
/// else `device_field`, `device` or `id`; the time from `ts`, `time` or
/// `timestamp` at the top, as a flat object's.
pub(super) fn decode(
    payload: &[u8],
    ctx: &Context,
    device_field: Option<&str>,
) -> Result<Decoded, DecodeError> {
    let fields = json_text::object(text(payload)?)?;
    let device = match ctx.device {
        Some(d) => d.clone(),
        None => payload_device(&fields, device_field)?,
    };
    let mut times = Decoded::default();
    let when = event_time(&fields, ctx, &mut times);
    let mut walk = Walk::new(&device, when, |_| false);
    walk.out = times;
    for (key, value) in &fields {
        let key = key.as_str();
        if !(TIME_KEYS.contains(&key) || DEVICE_KEYS.contains(&key) || device_field == Some(key)) {
            walk.field(key, value);
        }
    }
    walk.finish()
}

/// One object's walk: its readings, problems and text fields.
pub(super) struct Walk<'a> {
    device: &'a DeviceId,
    when: When,
    out: Decoded,
    /// Keys under which `ON`/`OFF` is a state (1/0) and not text.
    switch: fn(&str) -> bool,
    /// Flattened names already read: `{"a_b":1,"a":{"b":2}}` gives one
    /// reading and a problem, never two readings of one metric at once.
    taken: HashSet<String>,
    /// The name being built, reused across the walk.
    name: String,
}

impl<'a> Walk<'a> {
    pub(super) fn new(device: &'a DeviceId, when: When, switch: fn(&str) -> bool) -> Self {
        Self {
            device,
            when,
            out: Decoded::default(),
            switch,
            taken: HashSet::new(),
            name: String::new(),
        }
    }

    /// One top-level field and everything under it.
    pub(super) fn field(&mut self, key: &str, value: &Value) {
        let switch = (self.switch)(key);
        self.value(key, value, 0, switch);
    }

    /// What was read; nothing at all is [`DecodeError::NoValues`].
    pub(super) fn finish(self) -> Result<Decoded, DecodeError> {
        if self.out.readings.is_empty() && self.out.problems.is_empty() {
            return Err(DecodeError::NoValues);
        }
        Ok(self.out)
    }

    fn value(&mut self, key: &str, value: &Value, depth: usize, switch: bool) {
        let start = self.name.len();
        if start > 0 {
            self.name.push('_');
        }
        self.name.push_str(key);
        match value {
            Value::Object(map) if depth < MAX_DEPTH => {
                for (k, v) in map {
                    let switch = switch || (self.switch)(k);
                    self.value(k, v, depth + 1, switch);
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

/// `ON`/`OFF`, any case, as 1/0: a state where the format knows it is one.
pub(super) fn on_off(s: &str) -> Option<f64> {
    if s.eq_ignore_ascii_case("ON") {
        Some(1.0)
    } else if s.eq_ignore_ascii_case("OFF") {
        Some(0.0)
    } else {
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::*;
    use super::super::{decode, DecodeError, FieldReason, PayloadFormat};
    use gateway_core::TimeSource::{Arrival, Event};

    /// A Shelly Plus 1PM's `status/switch:0`, as its firmware publishes it.
    const SHELLY: &str = r#"{"id":0,"source":"timer","output":true,"apower":8.9,"voltage":237.5,"current":0.068,"aenergy":{"total":6.532,"by_minute":[45.199,47.141,88.397],"minute_ts":1654511972},"temperature":{"tC":23.5,"tF":74.4}}"#;

    #[test]
    fn a_shelly_switch_status_is_read_whole() {
        let d = dev("shellyplus1pm-441793");
        let got = decode(
            &PayloadFormat::JsonNested,
            SHELLY.as_bytes(),
            &ctx(Some(&d), None),
        )
        .unwrap();
        let mut values: Vec<(String, f64)> = got
            .readings
            .iter()
            .map(|r| {
                assert_eq!((r.time().as_millis(), r.time_source()), (NOW, Arrival));
                (r.metric().as_str().to_string(), r.value())
            })
            .collect();
        values.sort_by(|a, b| a.0.cmp(&b.0));
        let want: Vec<(String, f64)> = [
            ("aenergy_by_minute_0", 45.199),
            ("aenergy_by_minute_1", 47.141),
            ("aenergy_by_minute_2", 88.397),
            ("aenergy_minute_ts", 1_654_511_972.0),
            ("aenergy_total", 6.532),
            ("apower", 8.9),
            ("current", 0.068),
            ("output", 1.0),
            ("temperature_tC", 23.5),
            ("temperature_tF", 74.4),
            ("voltage", 237.5),
        ]
        .iter()
        .map(|(m, v)| ((*m).to_string(), *v))
        .collect();
        // `id` names the component (the topic names the device): never a
        // reading, as in a flat object; `source` is text.
        assert_eq!(values, want);
        assert_eq!(
            got.ignored
                .iter()
                .map(|(_, k)| k.as_str())
                .collect::<Vec<_>>(),
            ["source"]
        );
    }

    #[test]
    fn device_and_time_come_from_the_object_as_in_a_flat_one() {
        let got = decode(
            &PayloadFormat::JsonNested,
            br#"{"device":"meter-3","ts":"2026-11-21T10:00:00Z","phases":{"l1":{"v":230.1}},"state":"ON"}"#,
            &ctx(None, None),
        )
        .unwrap();
        assert_eq!(
            got.readings,
            [r("meter-3", "phases_l1_v", 230.1, T0, Event)]
        );
        // ON/OFF are text here: only Tasmota's relays are known to mean 1/0.
        assert_eq!(got.ignored.len(), 1);
        assert_eq!(
            decode(
                &PayloadFormat::JsonNested,
                br#"{"phases":{"l1":{"v":230.1}}}"#,
                &ctx(None, None)
            ),
            Err(DecodeError::NoDevice)
        );
        let d = dev("x");
        let bad_time = decode(
            &PayloadFormat::JsonNested,
            br#"{"ts":"soon","a":{"b":1}}"#,
            &ctx(Some(&d), None),
        )
        .unwrap();
        assert_eq!(bad_time.readings, [r("x", "a_b", 1.0, NOW, Arrival)]);
        assert_eq!(bad_time.problems, [p("ts", FieldReason::BadTimestamp)]);
        assert_eq!(
            decode(
                &PayloadFormat::JsonNested,
                br#"{"a":{"b":"text"}}"#,
                &ctx(Some(&d), None)
            ),
            Err(DecodeError::NoValues)
        );
    }
}
