//! `[home_assistant]`: MQTT discovery, so every device the gateway knows
//! appears in Home Assistant with its name, units and availability.

use std::time::Duration;

use serde::Deserialize;

use super::broker::{url_or_table, BrokerSection};
use super::load::Problems;
use super::values::duration;

/// What Home Assistant is given as a sensor's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HaState {
    /// Every accepted reading, as it arrives: Home Assistant keeps its own
    /// 5-minute and hourly statistics of a `measurement` sensor, and shows
    /// the value a person just saw change on the device.
    #[default]
    Reading,
    /// Each closed window's average: for chatty devices (several readings
    /// a second), one message per metric and window instead of every one.
    Avg,
}

impl HaState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reading => "reading",
            Self::Avg => "avg",
        }
    }
}

/// `[home_assistant]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HomeAssistantConfig {
    /// Publish discovery configs and states; `false` publishes nothing.
    pub enabled: bool,
    /// The broker Home Assistant's MQTT integration uses: a URL or a table
    /// of the same keys as `[upstream]`'s connection.
    #[serde(deserialize_with = "url_or_table")]
    pub broker: BrokerSection,
    /// Home Assistant's `discovery_prefix` (its MQTT integration's setting).
    pub discovery_prefix: String,
    /// Where states and the gateway's availability are published;
    /// `{gateway}` is replaced by `gateway.id`.
    pub state_prefix: String,
    /// A sensor with no new state for this long shows as unavailable in
    /// Home Assistant; `0s` leaves it at its last value.
    #[serde(with = "duration")]
    pub expire_after: Duration,
    /// `reading` (every accepted reading) or `avg` (each window's average).
    pub state: HaState,
    /// At most one full announcement (every config and last state) per
    /// this interval when Home Assistant says it is `online`: anyone on its
    /// broker can send that, and a burst of them is answered once, then
    /// once more at the interval's end.
    #[serde(with = "duration")]
    pub announce_interval: Duration,
    /// A device not in `[[device]]` and not heard for this long has its
    /// retained configs, alert states and availability cleared from Home
    /// Assistant's broker; `0s` keeps them forever. `[[device]]` devices
    /// stay (a silent one shows as unavailable).
    #[serde(with = "duration")]
    pub forget_after: Duration,
    /// Most entities announced for devices not in `[[device]]`: a flood of
    /// made-up ids or metrics is refused beyond it (counted in
    /// `edge_gateway_home_assistant_refused_total`, logged), as
    /// `aggregation.max_series` bounds the windows. `[[device]]` devices
    /// always appear; forgotten devices make room.
    pub max_entities: usize,
    /// Announce writable points as `number` and `switch` entities and
    /// execute what Home Assistant publishes on their command topics
    /// (under `[commands]`' `max_age`, `rate` and journal). `false` (the
    /// default) subscribes to nothing and writes nothing from this broker.
    pub commands: bool,
}

impl Default for HomeAssistantConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            broker: BrokerSection::default(),
            discovery_prefix: "homeassistant".into(),
            state_prefix: "edge-gateway/{gateway}".into(),
            expire_after: Duration::ZERO,
            state: HaState::Reading,
            announce_interval: Duration::from_secs(60),
            forget_after: Duration::from_secs(7 * 86_400),
            max_entities: 5000,
            commands: false,
        }
    }
}

/// An MQTT topic level that is not empty and has no wildcard or separator
/// at its ends.
fn valid_prefix(p: &str) -> bool {
    !p.is_empty()
        && !p.contains(['+', '#'])
        && !p.starts_with('/')
        && !p.ends_with('/')
        && !p.contains("//")
        && super::values::topic_control_char(p).is_none()
}

impl HomeAssistantConfig {
    /// Cross-key checks, recorded under `home_assistant` (only when enabled:
    /// a disabled section's password variable need not be set).
    pub fn validate(&self, problems: &mut Problems) {
        if !self.enabled {
            return;
        }
        for (key, value) in [
            ("discovery_prefix", &self.discovery_prefix),
            ("state_prefix", &self.state_prefix),
        ] {
            if !valid_prefix(value) {
                problems.push(
                    format!("home_assistant.{key}"),
                    format!("{value:?} is not a topic prefix: expected levels without +, #, an empty level or a control character"),
                );
            }
        }
        if self.announce_interval < Duration::from_secs(1) {
            problems.push(
                "home_assistant.announce_interval",
                "expected at least 1s: it bounds what one `online` can make the gateway send",
            );
        }
        if self.max_entities == 0 {
            problems.push("home_assistant.max_entities", "expected at least 1");
        }
        if self.expire_after.subsec_nanos() != 0 {
            problems.push(
                "home_assistant.expire_after",
                "Home Assistant counts whole seconds: expected e.g. \"15m\"",
            );
        }
        self.broker.validate(
            "home_assistant.broker",
            &super::broker::env_is_set,
            problems,
        );
    }

    /// `state_prefix` with `{gateway}` filled in.
    pub fn state_prefix_for(&self, gateway_id: &str) -> String {
        self.state_prefix.replace("{gateway}", gateway_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Option<HomeAssistantConfig>, Vec<String>) {
        let mut problems = Problems::default();
        let value: toml::Value = match toml::from_str(text) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        let c = super::super::load::section::<HomeAssistantConfig>(
            value,
            "home_assistant",
            &mut problems,
        );
        if let Some(c) = &c {
            c.validate(&mut problems);
        }
        (c, problems.iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn defaults_are_off_and_local() {
        let (c, p) = parse("");
        assert!(p.is_empty(), "{p:?}");
        let c = c.unwrap_or_default();
        assert!(!c.enabled);
        assert_eq!(c.discovery_prefix, "homeassistant");
        assert_eq!(c.broker.url.to_string(), "mqtt://127.0.0.1:1883");
        assert_eq!(c.state_prefix_for("gw-7"), "edge-gateway/gw-7");
    }

    #[test]
    fn a_broker_is_a_url_or_a_table_and_bad_prefixes_are_named() {
        let (c, p) = parse(
            "enabled = true\nbroker = { url = \"mqtt://ha.local:1884\", username = \"gw\" }\nstate = \"avg\"\nexpire_after = \"45m\"",
        );
        assert!(p.is_empty(), "{p:?}");
        let c = c.unwrap_or_default();
        assert_eq!(c.broker.url.port, 1884);
        assert_eq!(c.state, HaState::Avg);
        assert_eq!(c.expire_after, Duration::from_secs(2700));

        let (_, p) =
            parse("enabled = true\ndiscovery_prefix = \"ha/#\"\nexpire_after = \"1500ms\"");
        assert!(
            p.iter()
                .any(|m| m.contains("home_assistant.discovery_prefix")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|m| m.contains("home_assistant.expire_after")),
            "{p:?}"
        );
        let (_, p) = parse("enabled = true\nstate = \"median\"");
        assert!(
            p.iter().any(|m| m.contains("home_assistant.state")),
            "{p:?}"
        );
    }
}
