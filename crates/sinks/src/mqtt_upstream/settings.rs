//! `[upstream]` and `[outbox]` as the forwarder uses them: the one place
//! that turns the validated config into connection and storage settings.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway_core::config::report::ReportRules;
use gateway_core::config::{BrokerUrl, OutboxConfig, Qos, UpstreamConfig};
use mqtt_connect::ConnectionSettings;

use crate::outbox::OutboxSettings;

/// How the forwarder connects and behaves.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// Credentials, TLS and timings; its `broker.url` is the first node.
    pub connection: ConnectionSettings,
    /// The broker's nodes in the order they are tried (at least one).
    pub nodes: Vec<BrokerUrl>,
    pub qos: Qos,
    /// `{prefix}` of every upstream topic, `{site}`/`{gateway}` filled in.
    pub topic_prefix: String,
    /// Retained `online`/`offline` topic; also the Last Will.
    pub status_topic: String,
    /// Where the durable outbox lives; `None` keeps messages in memory.
    pub outbox_dir: Option<PathBuf>,
    pub outbox: OutboxSettings,
    /// Backlog messages per second after (re)connecting.
    pub drain_rate: u32,
    /// Messages held in memory while the outbox cannot take them (disk full).
    pub max_queued: usize,
    pub max_inflight: u16,
    pub max_backoff: Duration,
    /// How long to keep delivering once the pipeline has closed (shutdown);
    /// what is left stays in the outbox for the next start.
    pub drain_timeout: Duration,
    /// `[upstream] report`: the metrics sent at once when they change.
    pub report: ReportRules,
    /// Some `[[adapter]]` sets a unit: the windows' units then need to
    /// know each device's adapter, which only its readings tell.
    pub adapter_units: bool,
}

impl UpstreamSettings {
    /// Whether the upstream needs the readings: for the metrics reported
    /// on change, and to learn each device's adapter for its units. Else
    /// no reading is copied for it.
    pub fn takes_readings(&self) -> bool {
        !self.report.is_empty() || self.adapter_units
    }

    /// Units set per adapter exist (`Config::adapter_units` is not empty).
    #[must_use]
    pub fn with_adapter_units(mut self, any: bool) -> Self {
        self.adapter_units = any;
        self
    }
}

impl UpstreamSettings {
    /// The forwarder of gateway `gateway_id`, its outbox in
    /// `state_dir/outbox`, its topics under `topic_prefix`.
    pub fn from_config(
        up: &UpstreamConfig,
        outbox: &OutboxConfig,
        gateway_id: &str,
        state_dir: &Path,
        topic_prefix: String,
    ) -> Self {
        let mut connection =
            ConnectionSettings::new(&up.broker, format!("edge-gateway-{gateway_id}"));
        // Every message is resent from the outbox on each connection with
        // fresh packet ids whatever the session; at QoS 2 a resumed session
        // could take a fresh id for one still awaiting PUBREL and drop the
        // message as a duplicate.
        connection.persistent_session =
            up.forwarding.persistent_session && up.forwarding.qos.as_u8() < 2;
        Self {
            connection,
            nodes: up.nodes(),
            qos: up.forwarding.qos,
            status_topic: super::render::status_topic(&topic_prefix, gateway_id),
            topic_prefix,
            outbox_dir: Some(state_dir.join(gateway_core::state_file::inventory::UPSTREAM_OUTBOX)),
            outbox: OutboxSettings {
                max_bytes: outbox.max_bytes,
                policy: outbox.policy,
                max_age: (!outbox.max_age.is_zero()).then_some(outbox.max_age),
            },
            drain_rate: outbox.drain_rate,
            max_queued: up.forwarding.max_queued,
            max_inflight: up.forwarding.max_inflight,
            max_backoff: up.broker.max_backoff,
            drain_timeout: Duration::from_secs(5),
            report: ReportRules::new(&up.forwarding.report),
            adapter_units: false,
        }
    }
}

/// `[upstream]` and `[outbox]` of the `configfile` template: this
/// folder's `template.toml` with the defaults filled in.
pub fn template() -> String {
    use gateway_core::config::template::{fill, quoted as q};
    use gateway_core::config::values::{byte_size, duration::render as dur};
    use gateway_core::config::FullPolicy;

    let u = UpstreamConfig::default();
    let o = OutboxConfig::default();
    fill(
        include_str!("template.toml"),
        &[
            ("url", q(&u.broker.url.to_string())),
            ("qos", u.forwarding.qos.as_u8().to_string()),
            (
                "persistent_session",
                u.forwarding.persistent_session.to_string(),
            ),
            ("prefix", q(&u.forwarding.topic_prefix)),
            ("client_id", q(&u.broker.client_id)),
            ("username", q(&u.broker.username)),
            ("password_env", q(&u.broker.password_env)),
            ("keep_alive", q(&dur(u.broker.keep_alive))),
            ("max_backoff", q(&dur(u.broker.max_backoff))),
            ("max_queued", u.forwarding.max_queued.to_string()),
            ("max_inflight", u.forwarding.max_inflight.to_string()),
            ("max_bytes", q(&byte_size::render(o.max_bytes))),
            (
                "policy",
                q(match o.policy {
                    FullPolicy::DropOldest => "drop_oldest",
                    FullPolicy::RejectNew => "reject_new",
                }),
            ),
            ("max_age", q(&dur(o.max_age))),
            ("drain_rate", o.drain_rate.to_string()),
        ],
    )
}
