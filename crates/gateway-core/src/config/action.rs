//! `[[rule]] action`: what a rule writes when its alert is raised (and,
//! with `clear_payload`, when it clears). An action is a command: it sets
//! a point declared writable on an adapter's device (`device` and
//! `point`), through the same journal, rate, checks and result as a
//! command from the cloud.
//!
//! The older forms name the actuator by how it is reached instead: an
//! MQTT topic on a broker (`publish`, `broker`) or a CoAP resource
//! (`coap_put`). They are aliases: each distinct actuator they name
//! becomes a device of its own ([`action_points`]), written by the mqtt or
//! coap adapter's writer, and commanded through the same path.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::broker::BrokerSection;
use super::load::Problems;
use super::values::duration;
use super::RuleConfig;
use crate::command::CommandValue;
use crate::model::DeviceId;

/// What an action writes: text (an MQTT payload, a Zigbee2MQTT `"ON"`),
/// a number (a set point) or true/false.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ActionValue {
    Bool(bool),
    Number(f64),
    Text(String),
}

impl ActionValue {
    /// As a command's value.
    pub fn to_command(&self) -> CommandValue {
        match self {
            Self::Bool(b) => CommandValue::Bool(*b),
            Self::Number(v) => CommandValue::Number(*v),
            Self::Text(s) => CommandValue::Text(s.clone()),
        }
    }
}

impl fmt::Display for ActionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool(b) => write!(f, "{b}"),
            Self::Number(_) => write!(f, "{}", self.to_command().to_json()),
            Self::Text(s) => f.write_str(s),
        }
    }
}

/// A local action run when a rule's alert is raised (and optionally when
/// it clears).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// The device whose writable `point` is set.
    #[serde(default)]
    pub device: Option<DeviceId>,
    /// The point to set, as a cloud command's `metric` names it (a
    /// `[[device]] writable` metric, a Modbus register's metric, …).
    #[serde(default)]
    pub point: Option<String>,
    /// Older form: an MQTT topic to publish to on `broker`.
    #[serde(default)]
    pub publish: Option<String>,
    /// The local broker of `publish`: a URL, or a table with `url` and the
    /// credentials, TLS and backoff keys of `[upstream]`.
    #[serde(default, deserialize_with = "super::broker::url_or_table")]
    pub broker: BrokerSection,
    /// Older form: `coap://host:port/path` to PUT to.
    #[serde(default)]
    pub coap_put: Option<String>,
    /// Written when the alert is raised.
    pub payload: ActionValue,
    /// Written when the alert clears; nothing is written when absent.
    #[serde(default)]
    pub clear_payload: Option<ActionValue>,
    /// The action runs at most once per this interval per device.
    #[serde(default = "default_action_cooldown", with = "duration")]
    pub cooldown: Duration,
}

fn default_action_cooldown() -> Duration {
    Duration::from_secs(60)
}

/// How an action's actuator is reached, as its config names it.
#[derive(Debug, Clone, PartialEq)]
pub enum Actuator<'a> {
    /// A point declared writable on an adapter's device.
    Point {
        device: &'a DeviceId,
        point: &'a str,
    },
    /// Older form: a publish on an MQTT broker.
    Publish {
        broker: &'a BrokerSection,
        topic: &'a str,
    },
    /// Older form: a CoAP PUT.
    CoapPut { uri: &'a str },
}

impl ActionConfig {
    /// Its actuator; `None` only for a config `validate` refused.
    pub fn actuator(&self) -> Option<Actuator<'_>> {
        match (&self.device, &self.point, &self.publish, &self.coap_put) {
            (Some(device), Some(point), None, None) => Some(Actuator::Point { device, point }),
            (None, None, Some(topic), None) => Some(Actuator::Publish {
                broker: &self.broker,
                topic,
            }),
            (None, None, None, Some(uri)) => Some(Actuator::CoapPut { uri }),
            _ => None,
        }
    }

    /// Whether `other` drives the same actuator the same way: the same
    /// point (or broker and topic, or CoAP resource) and the same payloads.
    /// Alerts of such actions share the actuator: one alert's clear must
    /// not switch it back while another still holds it on.
    pub fn same_actuator(&self, other: &Self) -> bool {
        same_place(self.actuator(), other.actuator())
            && self.payload == other.payload
            && self.clear_payload == other.clear_payload
    }

    /// Where it goes, for people: `state of lamp-1`,
    /// `actuators/hvac/command on mqtt://127.0.0.1:1883` or the CoAP URI.
    pub fn target(&self) -> String {
        match self.actuator() {
            Some(Actuator::Point { device, point }) => format!("{point} of {device}"),
            Some(Actuator::Publish { broker, topic }) => format!("{topic} on {}", broker.url),
            Some(Actuator::CoapPut { uri }) => super::secret::redact_url(uri).into_owned(),
            None => String::new(),
        }
    }

    /// Checks what serde cannot, recorded under `{path}.action`.
    pub(crate) fn validate(&self, path: &str, problems: &mut Problems) {
        let mut bad = |key: &str, message: String| {
            problems.push(format!("{path}.{key}"), message);
        };
        let forms = [
            self.device.is_some() || self.point.is_some(),
            self.publish.is_some(),
            self.coap_put.is_some(),
        ];
        match forms {
            // The older forms' words, as before `device` and `point` came.
            [false, false, false] => {
                return bad(
                    "action",
                    "expected publish = \"topic\" or coap_put = \"coap://...\"".into(),
                )
            }
            [false, true, true] => {
                return bad("action", "give either publish or coap_put, not both".into())
            }
            [true, true, _] | [true, _, true] => {
                return bad(
                    "action",
                    "give either device and point (a writable point), publish or coap_put".into(),
                )
            }
            _ => {}
        }
        match (&self.device, &self.point) {
            (Some(_), None) => bad(
                "action.point",
                "missing: the writable point of the device to set".into(),
            ),
            (None, Some(_)) => bad(
                "action.device",
                "missing: the device whose point to set".into(),
            ),
            (_, Some(p)) if p.is_empty() || p.chars().any(char::is_control) => bad(
                "action.point",
                format!("expected a point name, got \"{}\"", p.escape_debug()),
            ),
            _ => {}
        }
        if let Some(t) = &self.publish {
            if let Some(e) = super::values::topic_control_char(t) {
                bad("action.publish", e);
            } else if t.is_empty() || t.contains(['+', '#']) {
                bad(
                    "action.publish",
                    format!("expected a topic without wildcards, got \"{t}\""),
                );
            }
        }
        if let Some(u) = &self.coap_put {
            match url::Url::parse(u) {
                Ok(_) if super::secret::url_has_credentials(u) => bad(
                    "action.coap_put",
                    "credentials in the url are not used (CoAP has none): write coap://host[:port]/path".into(),
                ),
                Ok(url) if url.scheme() == "coap" && url.host().is_some() => {}
                _ => bad(
                    "action.coap_put",
                    format!(
                        "expected coap://host[:port]/path, got \"{}\"",
                        super::secret::redact_url(u)
                    ),
                ),
            }
        }
        if self.publish.is_some() {
            self.broker.validate(
                &format!("{path}.action.broker"),
                &super::broker::env_is_set,
                problems,
            );
        }
    }
}

fn same_place(a: Option<Actuator<'_>>, b: Option<Actuator<'_>>) -> bool {
    match (a, b) {
        (
            Some(Actuator::Publish {
                broker: b1,
                topic: t1,
            }),
            Some(Actuator::Publish {
                broker: b2,
                topic: t2,
            }),
        ) => t1 == t2 && b1.url == b2.url,
        (a, b) => a == b,
    }
}

/// The device and point each rule's action sets, and the actuators the
/// older forms name, each a device of its own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActionPoints {
    /// By rule index: the command's device and point (`None`: no action).
    pub by_rule: Vec<Option<(DeviceId, String)>>,
    /// One per distinct actuator of the older forms.
    pub implicit: Vec<ImplicitActuator>,
}

/// An actuator an older-form action names, as the device its commands
/// are for.
#[derive(Debug, Clone, PartialEq)]
pub struct ImplicitActuator {
    pub device: DeviceId,
    pub reach: Reach,
}

/// How an [`ImplicitActuator`] is written: its payload, as it is.
#[derive(Debug, Clone, PartialEq)]
pub enum Reach {
    /// Published at QoS 1 on `topic`; done on the broker's PUBACK.
    Publish {
        broker: Box<BrokerSection>,
        topic: String,
    },
    /// PUT as a confirmable request; done on a 2.xx answer.
    CoapPut { uri: String },
}

impl Reach {
    /// The point a command names: `publish` or `put`.
    pub fn point(&self) -> &'static str {
        match self {
            Self::Publish { .. } => "publish",
            Self::CoapPut { .. } => "put",
        }
    }
}

/// The action points of `rules`. An older-form actuator's device id is
/// its topic (or CoAP host and path) with `/` as `.`
/// (`actuators.hvac_zone_1.command`), made unique against `taken` (the
/// `[[device]]`s) and the others with `~2`, `~3`, …, in the rules' order.
pub fn action_points(rules: &[RuleConfig], taken: &[DeviceId]) -> ActionPoints {
    let mut points = ActionPoints::default();
    for rule in rules {
        let Some(actuator) = rule.action.as_ref().and_then(ActionConfig::actuator) else {
            points.by_rule.push(None);
            continue;
        };
        let reach = match actuator {
            Actuator::Point { device, point } => {
                points
                    .by_rule
                    .push(Some((device.clone(), point.to_string())));
                continue;
            }
            Actuator::Publish { broker, topic } => Reach::Publish {
                broker: Box::new(broker.clone()),
                topic: topic.to_string(),
            },
            Actuator::CoapPut { uri } => Reach::CoapPut {
                uri: uri.to_string(),
            },
        };
        let found = points
            .implicit
            .iter()
            .find(|i| same_reach(&i.reach, &reach));
        let device = match found {
            Some(i) => i.device.clone(),
            None => {
                let device = unique_id(&reach, taken, &points.implicit);
                points.implicit.push(ImplicitActuator {
                    device: device.clone(),
                    reach: reach.clone(),
                });
                device
            }
        };
        points
            .by_rule
            .push(Some((device, reach.point().to_string())));
    }
    points
}

/// One actuator: the same topic on the same broker, or the same URI.
fn same_reach(a: &Reach, b: &Reach) -> bool {
    match (a, b) {
        (
            Reach::Publish {
                broker: b1,
                topic: t1,
            },
            Reach::Publish {
                broker: b2,
                topic: t2,
            },
        ) => t1 == t2 && b1.url == b2.url,
        (Reach::CoapPut { uri: u1 }, Reach::CoapPut { uri: u2 }) => u1 == u2,
        _ => false,
    }
}

fn unique_id(reach: &Reach, taken: &[DeviceId], others: &[ImplicitActuator]) -> DeviceId {
    let base = match reach {
        Reach::Publish { topic, .. } => topic.replace('/', "."),
        Reach::CoapPut { uri } => match url::Url::parse(uri) {
            Ok(u) => {
                let host = u.host_str().unwrap_or_default();
                let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
                format!("{host}{port}{}", u.path()).replace('/', ".")
            }
            Err(_) => String::new(),
        },
    };
    let base = base.trim_matches('.');
    let base: String = base.chars().filter(|c| !c.is_control()).take(100).collect();
    let base = if base.is_empty() {
        "action".into()
    } else {
        base
    };
    let free = |id: &DeviceId| !taken.contains(id) && !others.iter().any(|o| &o.device == id);
    (1u32..)
        .filter_map(|n| {
            let text = if n == 1 {
                base.clone()
            } else {
                format!("{base}~{n}")
            };
            DeviceId::new(text).ok()
        })
        .find(free)
        .unwrap_or_else(|| unreachable!("an endless range always has a free id"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Vec<RuleConfig> {
        #[derive(Deserialize)]
        struct File {
            rule: Vec<RuleConfig>,
        }
        toml::from_str::<File>(text).unwrap().rule
    }

    #[test]
    fn older_forms_become_devices_of_their_own_and_new_ones_name_theirs() {
        let rules = rules(
            r#"
[[rule]]
name = "a"
kind = "silence"
after = "1m"
action = { publish = "actuators/hvac_zone_1/command", payload = "on" }
[[rule]]
name = "b"
kind = "silence"
after = "1m"
action = { publish = "actuators/hvac_zone_1/command", payload = "other" }
[[rule]]
name = "c"
kind = "silence"
after = "1m"
action = { publish = "actuators/hvac_zone_1/command", broker = "mqtt://10.0.0.2", payload = "on" }
[[rule]]
name = "d"
kind = "silence"
after = "1m"
action = { coap_put = "coap://127.0.0.1:5690/vent/1", payload = 1 }
[[rule]]
name = "e"
kind = "silence"
after = "1m"
action = { device = "lamp-1", point = "state", payload = "ON", clear_payload = "OFF" }
[[rule]]
name = "f"
kind = "silence"
after = "1m"
"#,
        );
        let taken = [DeviceId::new("actuators.hvac_zone_1.command~2").unwrap()];
        let points = action_points(&rules, &taken);
        let named: Vec<Option<String>> = points
            .by_rule
            .iter()
            .map(|p| p.as_ref().map(|(d, p)| format!("{d} {p}")))
            .collect();
        assert_eq!(
            named,
            [
                Some("actuators.hvac_zone_1.command publish".into()),
                // The same topic on the same broker is the same actuator.
                Some("actuators.hvac_zone_1.command publish".into()),
                // Another broker's is another, apart from a [[device]].
                Some("actuators.hvac_zone_1.command~3 publish".into()),
                Some("127.0.0.1:5690.vent.1 put".into()),
                Some("lamp-1 state".into()),
                None,
            ]
        );
        assert_eq!(points.implicit.len(), 3);
        assert_eq!(rules[3].action.as_ref().unwrap().payload.to_string(), "1");
    }
}
