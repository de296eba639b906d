//! The entities Home Assistant writes through (`[home_assistant]
//! commands = true`): a writable point's `number` or `switch` config, and
//! what a message on its command topic becomes. Pure.
//!
//! A control shows its metric's state topic (the gateway's readings of
//! the point) and publishes on its own command topic,
//! `{state_prefix}/<device>/<metric>/set`; the task hands what arrives
//! there to the command runner, which checks and writes it like a command
//! from the cloud.

use gateway_core::command::{Command, CommandValue, WritableKind, WritablePoint};
use gateway_core::units::MetricInfo;
use serde_json::{json, Value};

use super::discovery::{base, digest, title, Common, Component, DeviceBlock};

/// The entity a writable point is in Home Assistant; `None` for a point
/// whose type and bounds are not declared (an MQTT device's): a number
/// entity would have to guess its range, and Zigbee2MQTT announces its
/// own devices' controls anyway.
pub fn component_of(point: &WritablePoint) -> Option<Component> {
    match point.kind {
        WritableKind::Number { .. } => Some(Component::Number),
        WritableKind::Switch { .. } => Some(Component::Switch),
        WritableKind::Any => None,
    }
}

/// `1`, `0`, `23.5`: a number as the gateway writes it in a state, so a
/// switch's payloads match the states of its metric.
fn number_text(v: f64) -> String {
    v.to_string()
}

/// A writable point's config; `None` for a point that is no control.
/// `info` gives the unit when the declaration names none.
pub fn control_config(
    common: &Common<'_>,
    device: &DeviceBlock<'_>,
    point: &WritablePoint,
    info: &MetricInfo,
) -> Option<Value> {
    let t = common.topics;
    let component = component_of(point)?;
    let mut c = base(
        common,
        component,
        device,
        &point.metric,
        format!("Set {}", title(&point.metric)),
    );
    c.insert(
        "command_topic".into(),
        json!(t.command_of(device.id, &point.metric)),
    );
    // Home Assistant publishes the command once, and the broker keeps it
    // for the gateway across a reconnect of either.
    c.insert("qos".into(), json!(1));
    c.insert("retain".into(), json!(false));
    match point.kind {
        WritableKind::Number { min, max, step } => {
            c.insert("min".into(), json!(min));
            c.insert("max".into(), json!(max));
            c.insert("step".into(), json!(step));
            let unit = point.unit.as_deref().unwrap_or(info.unit.as_str());
            if !unit.is_empty() {
                c.insert("unit_of_measurement".into(), json!(unit));
            }
        }
        WritableKind::Switch { off, on } => {
            c.insert("payload_on".into(), json!(number_text(on)));
            c.insert("payload_off".into(), json!(number_text(off)));
        }
        WritableKind::Any => return None,
    }
    c.insert(
        "availability".into(),
        json!([
            { "topic": t.status() },
            { "topic": t.device_availability(device.id) },
        ]),
    );
    c.insert("availability_mode".into(), json!("all"));
    Some(Value::Object(c))
}

/// Longest command payload read; a number or `1`/`0` is a few bytes.
const MAX_PAYLOAD: usize = 64;

/// The command a message on a control's command topic stands for.
///
/// Home Assistant's message has no id, and the command journal runs each
/// id once. The id is `ha-` and a digest of the topic, the payload and the
/// arrival time in ms: without the time, setting the same value twice
/// (a switch on, off, on) would be a repeat, answered with the first
/// result and not executed; with it, each message is its own command,
/// and the digest keeps the id short and free of whatever the payload
/// holds. The same message twice within one millisecond is one command.
pub fn command_of(
    device: &gateway_core::DeviceId,
    metric: &str,
    topic: &str,
    payload: &[u8],
    arrived_ms: i64,
) -> Command {
    let mut keyed = Vec::with_capacity(topic.len() + payload.len() + 24);
    keyed.extend_from_slice(topic.as_bytes());
    keyed.push(0);
    keyed.extend_from_slice(payload);
    keyed.push(0);
    keyed.extend_from_slice(arrived_ms.to_string().as_bytes());
    Command {
        id: format!(
            "{}{:016x}",
            gateway_core::command::GATEWAY_ID_PREFIXES[0],
            digest(&keyed)
        ),
        device: device.clone(),
        metric: metric.to_string(),
        value: value_of(payload),
        // Set by the command runner from its max_age.
        deadline: None,
    }
}

/// A number when the payload is one (`23.5`, a switch's `1`); anything
/// else is passed on as text, which a register refuses (`type`) with a
/// result, as a cloud command's text would be.
fn value_of(payload: &[u8]) -> CommandValue {
    let head = &payload[..payload.len().min(MAX_PAYLOAD)];
    let text = String::from_utf8_lossy(head);
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && payload.len() <= MAX_PAYLOAD => CommandValue::Number(v),
        _ => CommandValue::Text(text.into_owned()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::discovery::{slug, Topics};
    use super::super::ids::Ids;
    use super::*;
    use gateway_core::units::known;
    use gateway_core::DeviceId;

    fn topics() -> Topics {
        Topics {
            discovery: "homeassistant".into(),
            state: "edge-gateway/gw-1".into(),
            gateway: slug("gw-1"),
            ids: Ids::default(),
        }
    }

    fn point(kind: WritableKind, unit: Option<&str>) -> WritablePoint {
        WritablePoint {
            device: DeviceId::new("ahu-1").unwrap(),
            metric: "setpoint".into(),
            kind,
            unit: unit.map(str::to_string),
        }
    }

    #[test]
    fn a_number_has_its_bounds_step_unit_and_command_topic() {
        let t = topics();
        let common = Common {
            topics: &t,
            expire_after: 0,
            sw_version: "0.1.0",
        };
        let dev = DeviceBlock {
            id: "ahu-1",
            name: "AHU",
            model: None,
            manufacturer: None,
        };
        let p = point(
            WritableKind::Number {
                min: 15.0,
                max: 28.0,
                step: 0.1,
            },
            Some("°C"),
        );
        let c = control_config(&common, &dev, &p, &known("setpoint")).unwrap();
        assert_eq!(c["min"], 15.0);
        assert_eq!(c["max"], 28.0);
        assert_eq!(c["step"], 0.1);
        assert_eq!(c["unit_of_measurement"], "°C");
        assert_eq!(c["command_topic"], "edge-gateway/gw-1/ahu-1/setpoint/set");
        assert_eq!(c["state_topic"], "edge-gateway/gw-1/ahu-1/setpoint");
        assert_eq!(c["unique_id"], "gw-1_ahu-1_setpoint");
        assert_eq!(c["default_entity_id"], "number.gw-1_ahu-1_setpoint");
        assert_eq!(
            t.config(Component::Number, "ahu-1", "setpoint"),
            "homeassistant/number/gw-1_ahu-1_setpoint/config"
        );

        let s = point(WritableKind::Switch { off: 0.0, on: 1.0 }, None);
        let c = control_config(&common, &dev, &s, &known("fan")).unwrap();
        assert_eq!(
            (c["payload_on"].clone(), c["payload_off"].clone()),
            (json!("1"), json!("0"))
        );
        assert!(c.get("min").is_none());
        // The states a switch reads are the gateway's readings of it.
        assert_eq!(number_text(1.0), 1.0_f64.to_string());

        assert!(
            control_config(&common, &dev, &point(WritableKind::Any, None), &known("x")).is_none()
        );
    }

    #[test]
    fn a_message_is_a_command_with_an_id_of_its_own() {
        let d = DeviceId::new("ahu-1").unwrap();
        let topic = "edge-gateway/gw-1/ahu-1/setpoint/set";
        let a = command_of(&d, "setpoint", topic, b"23.5", 1000);
        assert_eq!(a.value, CommandValue::Number(23.5));
        assert!(a.id.starts_with("ha-") && a.id.len() == 19, "{}", a.id);
        // The same value again, later: another command.
        assert_ne!(a.id, command_of(&d, "setpoint", topic, b"23.5", 1001).id);
        assert_eq!(a.id, command_of(&d, "setpoint", topic, b"23.5", 1000).id);
        assert_eq!(
            command_of(&d, "fan", topic, b" 1\n", 5).value,
            CommandValue::Number(1.0)
        );
        for odd in [&b"warm"[..], b"NaN", b"inf", b"", &[0xff_u8, 0xfe][..]] {
            assert!(matches!(
                command_of(&d, "setpoint", topic, odd, 5).value,
                CommandValue::Text(_)
            ));
        }
        let long = vec![b'1'; 1000];
        match command_of(&d, "setpoint", topic, &long, 5).value {
            CommandValue::Text(t) => assert!(t.len() <= MAX_PAYLOAD),
            v => panic!("{v:?}"),
        }
    }
}
