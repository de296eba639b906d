//! `[[adapter]] type = "mqtt"`: readings from a local MQTT broker.

use std::time::Duration;

use gateway_core::config::values::duration;
use gateway_core::config::{broker, load, BrokerSection, Problems, Qos};
use gateway_core::Adapter;
use gateway_core::MetricName;
use serde::Deserialize;

use super::topic::TopicPattern;
use crate::payload::PayloadFormat;
use crate::registry::{AdapterKind, BuildContext, Declaration};

/// The config as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: String,
    #[serde(default = "default_topics")]
    topics: Vec<toml::Value>,
    #[serde(default = "default_status_topics")]
    status_topics: Vec<String>,
    #[serde(default)]
    columns: Vec<MetricName>,
    #[serde(default)]
    qos: Qos,
    #[serde(default = "default_max_payload")]
    max_payload_bytes: usize,
    #[serde(default = "default_persistent_session")]
    persistent_session: bool,
    #[serde(default = "default_max_readings")]
    max_readings_per_message: usize,
    #[serde(default)]
    retained: Retained,
    #[serde(default)]
    command_topic: Option<String>,
}

/// What a retained message on a data topic is to the adapter: the broker
/// delivers it again on every subscription (each start, each reconnect),
/// flagged retained, and it is then no new reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Retained {
    /// Dropped and counted in `edge_gateway_adapter_retained_ignored_total`:
    /// a reading the gateway was subscribed for reached it live (unflagged)
    /// already, or queued in its session.
    #[default]
    Ignore,
    /// Taken as a reading each time the broker delivers it (once per
    /// subscription: at every start and reconnect), for a device that
    /// publishes rarely and only retained.
    Take,
}

impl Retained {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ignore => "ignore",
            Self::Take => "take",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopic {
    pattern: String,
    #[serde(default)]
    format: FormatName,
    #[serde(default)]
    columns: Vec<MetricName>,
    /// A JSON key naming the device (`json` and `auto` formats).
    #[serde(default)]
    device_field: Option<String>,
    /// LoRaWAN payload codec for `chirpstack_v4` / `tts_v3` events.
    #[cfg(feature = "lorawan")]
    #[serde(default)]
    codec: Option<String>,
    /// `js:` codecs only: the script's `input.variables`.
    #[cfg(feature = "lorawan")]
    #[serde(default)]
    codec_variables: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
enum FormatName {
    #[default]
    Auto,
    Number,
    Json,
    Csv,
    Senml,
    Zigbee2mqtt,
    Tasmota,
    JsonNested,
    #[cfg(feature = "lorawan")]
    ChirpstackV4,
    #[cfg(feature = "lorawan")]
    TtsV3,
}

/// The format a topic's base says, when the config leaves it to `auto`:
/// these ecosystems' topics always carry their own kind of payload.
fn format_by_topic(pattern: &str) -> Option<FormatName> {
    if pattern.starts_with("zigbee2mqtt/") {
        return Some(FormatName::Zigbee2mqtt);
    }
    // Tasmota's default full topic, `%prefix%/%topic%/`: its telemetry.
    // Only with the device in the topic (Tasmota's payloads never name
    // it): a `tele/+/SENSOR` that validated as JSON keeps doing so.
    if pattern.starts_with("tele/")
        && pattern.contains("{device}")
        && (pattern.ends_with("/SENSOR") || pattern.ends_with("/STATE"))
    {
        return Some(FormatName::Tasmota);
    }
    #[cfg(feature = "lorawan")]
    {
        if pattern.starts_with("application/") && pattern.ends_with("/event/up") {
            return Some(FormatName::ChirpstackV4);
        }
        if pattern.starts_with("v3/") && pattern.ends_with("/up") {
            return Some(FormatName::TtsV3);
        }
    }
    None
}

pub(crate) const DEFAULT_TOPICS: [&str; 2] = ["sensors/data/{device}/{metric}", "sensors/{device}"];
pub(crate) const DEFAULT_STATUS_TOPIC: &str = "sensors/status/{device}";
fn default_topics() -> Vec<toml::Value> {
    DEFAULT_TOPICS
        .iter()
        .map(|t| toml::Value::String((*t).into()))
        .collect()
}
fn default_status_topics() -> Vec<String> {
    vec![DEFAULT_STATUS_TOPIC.into()]
}
pub(crate) const DEFAULT_MAX_PAYLOAD: usize = 64 * 1024;
fn default_max_payload() -> usize {
    DEFAULT_MAX_PAYLOAD
}
fn default_persistent_session() -> bool {
    true
}
fn default_max_readings() -> usize {
    crate::payload::DEFAULT_MAX_READINGS_PER_MESSAGE
}
/// `max_readings_per_message` may not exceed this: a million readings are
/// 56 MB held at once.
pub(crate) const MAX_MAX_READINGS: usize = 1_000_000;

/// LoRaWAN events name their device in the payload (DevEUI, device id).
fn is_lorawan_event(format: FormatName) -> bool {
    #[cfg(feature = "lorawan")]
    {
        matches!(format, FormatName::ChirpstackV4 | FormatName::TtsV3)
    }
    #[cfg(not(feature = "lorawan"))]
    {
        let _ = format;
        false
    }
}

/// One subscription: which topics, and how their payloads read.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub pattern: TopicPattern,
    pub format: PayloadFormat,
    /// A JSON object's key naming the device, before `device` and `id`
    /// (`"sensor_id": "meter-01"`); never a metric.
    pub device_field: Option<String>,
}

/// A checked MQTT ingress config.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttAdapterConfig {
    pub name: String,
    /// `url`, credentials, TLS, `keep_alive`, `max_backoff`: written flat in
    /// the table, as in `[upstream]`. An empty `client_id` means
    /// `edge-gateway-{gateway.id}-{name}`.
    pub broker: BrokerSection,
    pub routes: Vec<Route>,
    pub status_topics: Vec<TopicPattern>,
    pub qos: Qos,
    pub max_payload_bytes: usize,
    /// See the template: the broker queues QoS 1 readings while we are away.
    pub persistent_session: bool,
    /// A message that yields more readings (or holds more records, keys,
    /// pairs) is refused whole, before it is parsed where the format
    /// allows: the memory of one decode is bounded by this, not by the
    /// payload (`crate::payload::decode_bounded`).
    pub max_readings_per_message: usize,
    /// What a retained message on a data topic is (status topics keep
    /// their retained meaning: a device's last known state).
    pub retained: Retained,
    /// Where a command for a `[[device]] writable` metric is published
    /// (`{device}` filled in), as `{"<metric>": value}` at QoS 1.
    pub command_topic: Option<String>,
}

impl AdapterKind for MqttAdapterConfig {
    const DECLARATION: Declaration = super::kind::MQTT;

    fn from_table(table: toml::Value, path: &str, problems: &mut Problems) -> Option<Self> {
        let (broker, rest) = broker::split(table);
        let broker = load::section::<BrokerSection>(broker, path, problems);
        // `type` and `units` were taken out by the config's loader.
        let also: Vec<&str> = broker::BROKER_KEYS
            .iter()
            .copied()
            .chain(["type", "units"])
            .collect();
        let raw: Raw = load::section_accepting(rest, path, &also, problems)?;
        let broker = broker?;
        let before = problems.len();
        let mut routes = Vec::new();
        let mut availability = Vec::new();
        for (i, entry) in raw.topics.iter().enumerate() {
            let at = format!("{path}.topics[{i}]");
            let t = match entry {
                toml::Value::String(s) => RawTopic {
                    pattern: s.clone(),
                    format: FormatName::Auto,
                    columns: Vec::new(),
                    device_field: None,
                    #[cfg(feature = "lorawan")]
                    codec: None,
                    #[cfg(feature = "lorawan")]
                    codec_variables: None,
                },
                other => match load::section::<RawTopic>(other.clone(), &at, problems) {
                    Some(t) => t,
                    None => continue,
                },
            };
            let pattern = match TopicPattern::parse(&t.pattern) {
                Ok(p) => p,
                Err(e) => {
                    problems.push(at, e);
                    continue;
                }
            };
            let columns = if t.columns.is_empty() {
                raw.columns.clone()
            } else {
                t.columns.clone()
            };
            // Zigbee2MQTT payloads carry bookkeeping fields (a numeric
            // `last_seen`, `"state":"ON"`) that the generic JSON reading would
            // turn into metrics or drop, and network servers' events nest
            // theirs; the base topic says what it is.
            let format = match (t.format, format_by_topic(&t.pattern)) {
                (FormatName::Auto, Some(by_topic)) => by_topic,
                (f, _) => f,
            };
            let t = RawTopic { format, ..t };
            #[cfg(feature = "lorawan")]
            let codec = match (&t.codec, t.format) {
                (None, _) => {
                    if t.codec_variables.is_some() {
                        problems.push(
                            format!("{at}.codec_variables"),
                            "only a JavaScript codec (codec = \"js:FILE\") takes `codec_variables`",
                        );
                        continue;
                    }
                    None
                }
                (Some(name), FormatName::ChirpstackV4 | FormatName::TtsV3) => {
                    match crate::payload::binary::route_codec(name, t.codec_variables.clone()) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            problems.push(format!("{at}.{}", e.key()), e.to_string());
                            continue;
                        }
                    }
                }
                (Some(_), _) => {
                    problems.push(
                        format!("{at}.codec"),
                        "only formats chirpstack_v4 and tts_v3 take a codec",
                    );
                    continue;
                }
            };
            let device_field = match &t.device_field {
                Some(f)
                    if !matches!(
                        t.format,
                        FormatName::Auto | FormatName::Json | FormatName::JsonNested
                    ) =>
                {
                    problems.push(
                        format!("{at}.device_field"),
                        format!(
                            "only formats auto, json and json_nested take a device_field, got {f:?}"
                        ),
                    );
                    continue;
                }
                Some(f)
                    if f.trim().is_empty() || crate::payload::TIME_KEYS.contains(&f.as_str()) =>
                {
                    problems.push(
                        format!("{at}.device_field"),
                        format!("expected the JSON key naming the device, got {f:?}"),
                    );
                    continue;
                }
                other => other.clone(),
            };
            let needs_device = !matches!(
                t.format,
                FormatName::Auto | FormatName::Json | FormatName::JsonNested | FormatName::Senml
            ) && !is_lorawan_event(t.format);
            if needs_device && !pattern.has_device() {
                problems.push(
                    &at,
                    format!("\"{pattern}\" needs a {{device}} level for this format"),
                );
            }
            let format = match t.format {
                FormatName::Auto => PayloadFormat::Auto {
                    columns: (!columns.is_empty()).then_some(columns),
                },
                FormatName::Number => PayloadFormat::Number,
                FormatName::Json => PayloadFormat::Json,
                FormatName::Senml => PayloadFormat::Senml,
                FormatName::Zigbee2mqtt => {
                    // Zigbee2MQTT announces availability beside each device.
                    if let Ok(p) = TopicPattern::parse(&format!("{}/availability", t.pattern)) {
                        if p.has_device() {
                            availability.push(p);
                        }
                    }
                    PayloadFormat::Zigbee2mqtt
                }
                FormatName::JsonNested => PayloadFormat::JsonNested,
                FormatName::Tasmota => {
                    // Tasmota's Last Will, retained, beside its telemetry:
                    // `tele/<topic>/LWT`, `Online` / `Offline`.
                    let lwt = t.pattern.rsplit_once('/').map(|(base, _)| format!("{base}/LWT"));
                    if let Some(Ok(p)) = lwt.map(|l| TopicPattern::parse(&l)) {
                        if p.has_device() && !availability.contains(&p) {
                            availability.push(p);
                        }
                    }
                    PayloadFormat::Tasmota
                }
                FormatName::Csv if columns.is_empty() => {
                    problems.push(&at, "format \"csv\" needs a columns list");
                    continue;
                }
                FormatName::Csv => PayloadFormat::Csv { columns },
                #[cfg(feature = "lorawan")]
                FormatName::ChirpstackV4 => PayloadFormat::LorawanEvent {
                    server: crate::payload::NetworkServer::ChirpstackV4,
                    codec,
                },
                #[cfg(feature = "lorawan")]
                FormatName::TtsV3 => PayloadFormat::LorawanEvent {
                    server: crate::payload::NetworkServer::TtsV3,
                    codec,
                },
            };
            routes.push(Route {
                pattern,
                format,
                device_field,
            });
        }
        let mut status_topics = Vec::new();
        for (i, s) in raw.status_topics.iter().enumerate() {
            let at = format!("{path}.status_topics[{i}]");
            match TopicPattern::parse(s) {
                Ok(p) if p.has_device() => status_topics.push(p),
                Ok(_) => problems.push(at, format!("\"{s}\" needs a {{device}} level")),
                Err(e) => problems.push(at, e),
            }
        }
        status_topics.extend(availability);
        broker.validate(path, &broker::env_is_set, problems);
        if raw.max_payload_bytes < 16 || raw.max_payload_bytes > 16 * 1024 * 1024 {
            problems.push(
                format!("{path}.max_payload_bytes"),
                format!("expected 16 to 16777216, got {}", raw.max_payload_bytes),
            );
        }
        if !(1..=MAX_MAX_READINGS).contains(&raw.max_readings_per_message) {
            problems.push(
                format!("{path}.max_readings_per_message"),
                format!(
                    "expected 1 to {MAX_MAX_READINGS}, got {}",
                    raw.max_readings_per_message
                ),
            );
        }
        if let Some(t) = &raw.command_topic {
            if t.is_empty() || t.contains(['+', '#']) || t.split('/').any(str::is_empty) {
                problems.push(
                    format!("{path}.command_topic"),
                    format!(
                        "expected a topic (levels without + or #, {{device}} filled in), got {t:?}"
                    ),
                );
            }
        }
        if problems.len() > before {
            return None;
        }
        Some(Self {
            name: raw.name,
            command_topic: raw.command_topic,
            broker,
            routes,
            status_topics,
            qos: raw.qos,
            max_payload_bytes: raw.max_payload_bytes,
            persistent_session: raw.persistent_session,
            max_readings_per_message: raw.max_readings_per_message,
            retained: raw.retained,
        })
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn build(&self, ctx: &BuildContext) -> Box<dyn Adapter> {
        Box::new(
            super::MqttSource::new(self.clone(), &ctx.gateway_id)
                .with_writable(ctx.writable.clone())
                .with_state_dir(ctx.state_dir.clone()),
        )
    }

    fn template() -> String {
        template()
    }
}

/// The `[[adapter]] type = "mqtt"` part of the `configfile` template.
pub fn template() -> String {
    let d = |x: Duration| duration::render(x);
    crate::registry::render_template(
        include_str!("template.toml"),
        &[
            ("url", BrokerSection::default().url.to_string()),
            ("t0", DEFAULT_TOPICS[0].to_string()),
            ("t1", DEFAULT_TOPICS[1].to_string()),
            ("status", DEFAULT_STATUS_TOPIC.to_string()),
            (
                "keep_alive",
                d(BrokerSection::default().keep_alive).to_string(),
            ),
            (
                "max_backoff",
                d(BrokerSection::default().max_backoff).to_string(),
            ),
            ("max_payload", DEFAULT_MAX_PAYLOAD.to_string()),
            (
                "max_readings",
                crate::payload::DEFAULT_MAX_READINGS_PER_MESSAGE.to_string(),
            ),
            ("retained", Retained::default().as_str().to_string()),
        ],
    )
}
