//! `[upstream]` and `[outbox]` as the forwarder uses them: the one place
//! that turns the validated config into connection and storage settings.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway_core::config::{OutboxConfig, Qos, UpstreamConfig};
use mqtt_connect::ConnectionSettings;

use crate::outbox::OutboxSettings;

/// How the forwarder connects and behaves.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub connection: ConnectionSettings,
    pub qos: Qos,
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
}

impl UpstreamSettings {
    /// The forwarder of gateway `gateway_id`, its outbox in
    /// `state_dir/outbox`.
    pub fn from_config(
        up: &UpstreamConfig,
        outbox: &OutboxConfig,
        gateway_id: &str,
        state_dir: &Path,
        status_topic: String,
    ) -> Self {
        Self {
            // A clean session: every message is resent from the outbox on
            // each connection; a broker-side session would only add stale
            // duplicates.
            connection: ConnectionSettings::new(&up.broker, format!("edge-gateway-{gateway_id}")),
            qos: up.forwarding.qos,
            status_topic,
            outbox_dir: Some(state_dir.join("outbox")),
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
        }
    }
}
