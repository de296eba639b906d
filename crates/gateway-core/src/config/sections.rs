//! The sections of `gateway.toml` other than the adapters. Doc comments here
//! and the `configfile` template are the two places each key is documented.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::broker::BrokerSection;
use super::load::{self, join, Problems};
use super::values::{byte_size, duration, BrokerUrl, Qos};
use crate::model::{DeviceId, MetricName};

/// `[gateway]`: who this gateway is.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// This gateway's id, in upstream payloads and the status topic.
    pub id: String,
    /// The building or site, used by the default topic prefix.
    pub site: String,
    /// Where durable state lives (outbox, checkpoints, counters).
    pub state_dir: PathBuf,
    /// `disk`: `run` refuses to start when `state_dir` cannot be created
    /// and written (exit 73), and `validate` says so. `none`: it starts
    /// anyway, keeping in memory whatever cannot be written there (the
    /// journal, open windows, outboxes, history, counters): readings are
    /// then lost on every restart.
    pub durability: Durability,
    /// The zone whose wall clock the anomaly rules' daily and weekly
    /// profiles follow ([`crate::clock::Zone::named`]).
    pub timezone: String,
}

/// Whether the gateway may run without a writable `state_dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// State on disk, or no start.
    #[default]
    Disk,
    /// Start even without it; readings are lost on every restart.
    None,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disk => "disk",
            Self::None => "none",
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            id: "gw-01".into(),
            site: "hq".into(),
            state_dir: "/var/lib/edge-gateway".into(),
            durability: Durability::Disk,
            timezone: crate::clock::zone::LOCAL.into(),
        }
    }
}

impl GatewayConfig {
    /// The zone `timezone` names, read from this machine's tzdata.
    pub fn zone(&self) -> Result<crate::clock::Zone, crate::clock::UnknownZone> {
        crate::clock::Zone::named(&self.timezone)
    }

    pub(crate) fn validate(&self, problems: &mut Problems) {
        if let Err(e) = self.zone() {
            problems.push("gateway.timezone", e.to_string());
        }
        // An empty path is the working directory: the journal and outbox
        // would land wherever the process was started from.
        if self.state_dir.as_os_str().is_empty() {
            problems.push(
                "gateway.state_dir",
                "expected a directory (like \"/var/lib/edge-gateway\"), got an empty path",
            );
        }
        for (key, value) in [("id", &self.id), ("site", &self.site)] {
            if let Err(e) = DeviceId::new(value.as_str()) {
                problems.push(
                    join("gateway", key),
                    format!(
                        "{} (it is an MQTT topic level)",
                        e.to_string().replace("device id", "value")
                    ),
                );
            }
        }
    }
}

/// `[upstream]`: the cloud broker aggregates and alerts are forwarded to.
///
/// Optional: a building that only writes InfluxDB and shows the dashboard
/// has no cloud broker. Without the section, or with `enabled = false`, no
/// connection is tried, no upstream outbox is kept and `/health` does not
/// wait for a broker. `Default` is the section as the template writes it
/// (enabled); a config without the section has `enabled = false`.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// Forward to the broker: the section is present and does not say
    /// `enabled = false`.
    pub enabled: bool,
    /// `url`, credentials, TLS files, `keep_alive`, `max_backoff`, written
    /// flat in the section. An empty `client_id` means
    /// `edge-gateway-{gateway.id}`.
    pub broker: BrokerSection,
    /// The rest of the section.
    pub forwarding: Forwarding,
}

/// `[upstream]` keys beyond the broker connection.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Forwarding {
    /// QoS of forwarded messages: 0, 1 or 2.
    pub qos: Qos,
    /// Prefix of every upstream topic; `{site}` and `{gateway}` are filled in.
    pub topic_prefix: String,
    /// Messages held in memory while the broker is unreachable; the oldest
    /// are dropped (and counted) beyond this.
    pub max_queued: usize,
    /// Messages sent but not yet acknowledged at any time.
    pub max_inflight: u16,
    /// The nodes of a clustered broker, instead of `url` (one of the two):
    /// the first that answers is used, the next on loss or refusal. They
    /// share every other connection key (credentials, TLS, timings).
    pub urls: Vec<BrokerUrl>,
    /// Keep the MQTT session on the broker across connections (clean
    /// session off) with the fixed client id. Only with `qos` 0 or 1: at
    /// QoS 2 a resumed session could mistake a resent message's new packet
    /// id for one it already holds, so QoS 2 always starts clean.
    pub persistent_session: bool,
    /// `"device/metric"` (or a pattern with `*`) → `change`: sent upstream
    /// at once when it changes, besides its windows (see
    /// [`super::report`]).
    pub report: std::collections::BTreeMap<String, super::report::ReportMode>,
}

impl Default for Forwarding {
    fn default() -> Self {
        Self {
            qos: Qos::AtLeastOnce,
            topic_prefix: "building/{site}".into(),
            max_queued: 100_000,
            max_inflight: 100,
            urls: Vec::new(),
            persistent_session: true,
            report: std::collections::BTreeMap::new(),
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            broker: BrokerSection::default(),
            forwarding: Forwarding::default(),
        }
    }
}

impl UpstreamConfig {
    /// Parses `[upstream]`: its broker keys and the rest, each strictly.
    pub(crate) fn load(table: Option<toml::Value>, problems: &mut Problems) -> Option<Self> {
        let present = table.is_some();
        let mut table = table.unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
        let enabled = match table.as_table_mut().and_then(|t| t.remove("enabled")) {
            None => present,
            Some(toml::Value::Boolean(b)) => b,
            Some(other) => {
                problems.push(
                    join("upstream", "enabled"),
                    format!("expected true or false, got {other}"),
                );
                present
            }
        };
        let (broker, rest) = super::broker::split(table);
        let both = broker.get("url").is_some() && rest.get("urls").is_some();
        let empty = rest
            .get("urls")
            .and_then(toml::Value::as_array)
            .is_some_and(Vec::is_empty);
        let mut broker = load::section::<BrokerSection>(broker, "upstream", problems);
        let also: Vec<&str> = super::broker::BROKER_KEYS
            .iter()
            .copied()
            .chain(["enabled"])
            .collect();
        let forwarding = load::section_accepting::<Forwarding>(rest, "upstream", &also, problems);
        if both {
            problems.push(
                join("upstream", "urls"),
                "set either url (one broker) or urls (the nodes of a cluster), not both",
            );
        }
        if empty {
            problems.push(join("upstream", "urls"), "expected at least one node URL");
        }
        if let (Some(b), Some(first)) = (
            broker.as_mut(),
            forwarding.as_ref().and_then(|f| f.urls.first()),
        ) {
            // Everything that asks for "the" broker (TLS checks, logs,
            // actions) sees the first node.
            b.url = first.clone();
        }
        Some(Self {
            enabled,
            broker: broker?,
            forwarding: forwarding?,
        })
    }

    /// The nodes to connect to, in order: `urls`, or `url` alone.
    pub fn nodes(&self) -> Vec<BrokerUrl> {
        if self.forwarding.urls.is_empty() {
            vec![self.broker.url.clone()]
        } else {
            self.forwarding.urls.clone()
        }
    }

    pub(crate) fn validate(&self, problems: &mut Problems) {
        let p = |k: &str| join("upstream", k);
        let prefix = &self.forwarding.topic_prefix;
        if let Some(e) = super::values::topic_control_char(prefix) {
            problems.push(p("topic_prefix"), e);
        } else if prefix.is_empty()
            || prefix.starts_with('/')
            || prefix.ends_with('/')
            || prefix.contains(['+', '#'])
            || prefix.contains("//")
        {
            problems.push(
                p("topic_prefix"),
                format!("expected topic levels without wildcards or empty levels, like \"building/{{site}}\", got \"{prefix}\""),
            );
        }
        self.broker
            .validate("upstream", &super::broker::env_is_set, problems);
        let urls = &self.forwarding.urls;
        if urls.is_empty() {
            // `url` (or its default) is used.
        } else if urls.iter().any(|u| u.scheme != self.broker.url.scheme) {
            problems.push(
                p("urls"),
                "expected every node with the same scheme (all mqtt:// or all mqtts://): they share the TLS settings",
            );
        } else if let Some((i, dup)) = urls
            .iter()
            .enumerate()
            .find(|(i, u)| urls[..*i].contains(u))
        {
            problems.push(
                format!("upstream.urls[{i}]"),
                format!("{dup} is listed twice"),
            );
        }
        if self.forwarding.max_queued == 0 {
            problems.push(p("max_queued"), "expected at least 1");
        }
        for key in self.forwarding.report.keys() {
            if let Err(e) = super::report::check_key(key) {
                problems.push(format!("upstream.report.\"{key}\""), e);
            }
        }
        if self.forwarding.max_inflight == 0 || self.forwarding.max_inflight > 1000 {
            problems.push(
                p("max_inflight"),
                format!("expected 1 to 1000, got {}", self.forwarding.max_inflight),
            );
        }
    }
}

/// `[aggregation]`: the tumbling windows.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AggregationConfig {
    /// Window length; windows are aligned to multiples of it (UTC).
    #[serde(with = "duration")]
    pub window: Duration,
    /// How long after its end a window waits for late readings.
    #[serde(with = "duration")]
    pub grace: Duration,
    /// Readings stamped further than this ahead of the gateway's clock are
    /// refused (a device with a wrong clock must not open windows years ahead).
    #[serde(with = "duration")]
    pub max_future: Duration,
    /// How often open windows are saved to `{state_dir}/windows.ckpt` (and
    /// always at SIGTERM), so a restart continues them. `0s` disables it:
    /// open windows are then forwarded early, marked partial, at shutdown.
    #[serde(with = "duration")]
    pub checkpoint_interval: Duration,
    /// Most series (device × metric) open at once. A reading of a new
    /// series beyond it is refused and counted
    /// (`edge_gateway_aggregator_dropped_readings_total{reason="max_series"}`);
    /// series already open keep flowing. Bounds memory (about 150 bytes per
    /// series with its checkpoint share) against a flood of made-up ids.
    pub max_series: usize,
}

impl Default for AggregationConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(300),
            grace: Duration::from_secs(30),
            max_future: Duration::from_secs(60),
            checkpoint_interval: Duration::from_secs(5),
            // 10 000 devices × 5 metrics, the load a Pi is sized for
            // (docs/PERFORMANCE.md): about 8 MB of windows and checkpoint.
            max_series: 50_000,
        }
    }
}

/// The shortest `checkpoint_interval` but `0s`: "1ns" was accepted and
/// kept a core three quarters busy writing checkpoints back to back.
pub const MIN_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

impl AggregationConfig {
    pub(crate) fn validate(&self, problems: &mut Problems) {
        let w = self.window;
        if w < Duration::from_secs(1) || w > Duration::from_secs(7 * 86_400) {
            problems.push(
                "aggregation.window",
                format!("expected 1s to 7days, got {}", duration::render(w)),
            );
        }
        if self.grace > Duration::from_secs(86_400) {
            problems.push("aggregation.grace", "expected at most 1day");
        }
        let c = self.checkpoint_interval;
        if !c.is_zero() && c < MIN_CHECKPOINT_INTERVAL {
            problems.push(
                "aggregation.checkpoint_interval",
                format!(
                    "expected \"0s\" (off) or at least {}, got {}: each checkpoint writes and syncs every open window",
                    duration::render(MIN_CHECKPOINT_INTERVAL),
                    duration::render(c)
                ),
            );
        }
        if self.max_series == 0 {
            problems.push("aggregation.max_series", "expected at least 1");
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: LogLevel,
    /// `text` for people and journald, `json` for log shippers.
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[[device]]`: one entry of the device registry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// The id the sensor side uses: MAC, DevEUI or topic level.
    pub id: DeviceId,
    /// Human name forwarded with everything the device sends.
    pub name: String,
    /// Shorthand for `tags.room`.
    #[serde(default)]
    pub room: Option<String>,
    /// Shorthand for `tags.floor`.
    #[serde(default)]
    pub floor: Option<TagValue>,
    /// Free tags: a table (`{ zone = "north" }`) or a list of labels (`["fridge"]`).
    #[serde(default)]
    pub tags: Tags,
    /// The metric that stands for the device where only one fits (the
    /// overview's sparkline), e.g. `"co2"`.
    #[serde(default)]
    pub primary: Option<MetricName>,
    /// Units of this device's metrics where the usual one is wrong
    /// (`{ battery = "V" }`), over `[units]`.
    #[serde(default)]
    pub units: BTreeMap<String, String>,
    /// Metrics a command from the cloud may set on this device (an MQTT
    /// device: published on the mqtt adapter's `command_topic`); none by
    /// default.
    #[serde(default)]
    pub writable: Vec<MetricName>,
}

/// A tag value as written: `floor = 2` and `floor = "2"` mean the same.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum TagValue {
    Text(String),
    Integer(i64),
}

impl TagValue {
    pub fn render(&self) -> String {
        match self {
            Self::Text(s) => s.clone(),
            Self::Integer(i) => i.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Tags {
    Labels(Vec<String>),
    Map(BTreeMap<String, TagValue>),
}

impl Default for Tags {
    fn default() -> Self {
        Self::Map(BTreeMap::new())
    }
}

impl DeviceConfig {
    /// The labels of a list of tags (`["fridge"]`), which [`Self::tag_map`]
    /// stores as `fridge = "true"` for the upstream payloads.
    pub fn labels(&self) -> Vec<String> {
        match &self.tags {
            Tags::Labels(labels) => labels.clone(),
            Tags::Map(_) => Vec::new(),
        }
    }

    /// All tags as key → value; labels map to `"true"`.
    pub fn tag_map(&self) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = match &self.tags {
            Tags::Labels(labels) => labels.iter().map(|l| (l.clone(), "true".into())).collect(),
            Tags::Map(m) => m.iter().map(|(k, v)| (k.clone(), v.render())).collect(),
        };
        if let Some(room) = &self.room {
            out.insert("room".into(), room.clone());
        }
        if let Some(floor) = &self.floor {
            out.insert("floor".into(), floor.render());
        }
        out
    }
}

/// What to do when a new message does not fit in `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicy {
    /// Delete the oldest segment (its messages are counted as dropped).
    #[default]
    DropOldest,
    /// Refuse the new message (counted as dropped).
    RejectNew,
}

/// `[outbox]`: every upstream message waits on disk until the broker
/// acknowledges it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// Disk the outbox may use, in `{state_dir}/outbox`.
    #[serde(deserialize_with = "byte_size::deserialize")]
    pub max_bytes: u64,
    /// When full: `drop_oldest` (keep the newest data) or `reject_new`.
    pub policy: FullPolicy,
    /// Messages older than this are dropped (and counted); `0s` keeps them
    /// until `max_bytes` forces a choice.
    #[serde(with = "duration")]
    pub max_age: Duration,
    /// Backlog sent per second after the broker returns, so a returning link
    /// is not flooded; new messages are sent at once regardless.
    pub drain_rate: u32,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            max_bytes: 256 * 1024 * 1024,
            policy: FullPolicy::DropOldest,
            max_age: Duration::ZERO,
            drain_rate: 200,
        }
    }
}

impl OutboxConfig {
    pub(crate) fn validate(&self, problems: &mut Problems) {
        if self.max_bytes < 64 * 1024 {
            problems.push(
                "outbox.max_bytes",
                format!("expected at least 64KiB, got {}", self.max_bytes),
            );
        }
        if self.drain_rate == 0 {
            problems.push(
                "outbox.drain_rate",
                "expected at least 1 message per second",
            );
        }
    }
}
