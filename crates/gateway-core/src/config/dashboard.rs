//! `[dashboard]`: the local web pages and the on-device history behind them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::load::Problems;
use super::secret::Secret;
use super::values::{byte_size, duration};

/// `[dashboard]`: pages, JSON/CSV API and live events over HTTP, fed by a
/// history of closed windows and alert transitions kept in `state_dir`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Serve the pages and keep the history; `false` opens no port and
    /// writes nothing.
    pub enabled: bool,
    /// Address and port to listen on. Anything but loopback needs at least
    /// one `[[dashboard.user]]`.
    pub bind: SocketAddr,
    /// Windows and alerts older than this are deleted.
    #[serde(with = "duration")]
    pub retention: Duration,
    /// Disk the history may use; the oldest hours go first when it is full.
    #[serde(deserialize_with = "byte_size::deserialize")]
    pub max_bytes: u64,
    /// Longest time a closed window or an alert waits in memory before it
    /// is written (one fsync per batch, to spare an SD card). A checkpoint
    /// writes it sooner: what the checkpoint calls emitted is in history.
    #[serde(with = "duration")]
    pub write_interval: Duration,
    /// TLS certificate chain (PEM); with `key_file`, the pages are served
    /// over HTTPS only.
    pub cert_file: Option<PathBuf>,
    /// The private key (PEM) of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// `[[dashboard.user]]`: who may log in (HTTP Basic). With none, the
    /// pages are open, which is only allowed on loopback.
    pub user: Vec<DashboardUser>,
    /// Metrics that stand for a device on the overview, in this order,
    /// unless its `[[device]] primary` says otherwise. Metrics not listed
    /// follow in the usual order, battery and radio last.
    pub metric_order: Vec<String>,
    /// Names besides this machine's, `localhost` and addresses a request
    /// over loopback may give as `Host`: a reverse proxy's public name
    /// when it forwards `Host`. Any other is refused (421): a web page
    /// whose name was pointed at 127.0.0.1 (DNS rebinding).
    pub allowed_hosts: Vec<String>,
}

/// Where the pages were served before: InfluxDB 1.x's default RPC
/// address (its backup/restore service) on a Pi running both. A config
/// naming it still works; when the port is taken the pages move to
/// [`DEFAULT_PORT`] and the log says so.
pub const OLD_DEFAULT_BIND: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8088);

/// The pages' default port. Chosen clear of what runs beside a gateway on
/// a Pi: InfluxDB 1.x (8086 HTTP, 8088 RPC, 8089 UDP), InfluxDB 2.x (8086),
/// Telegraf listeners (8092, 8094, 8125), Kapacitor (9092), Chronograf
/// (8888), Grafana (3000), Node-RED (1880), Home Assistant (8123),
/// ESPHome (6052), Zigbee2MQTT and ChirpStack (8080), ChirpStack's REST
/// API (8090), Z-Wave JS UI (8091), Mosquitto's websockets (9001, 8080,
/// 8081, 8083), Prometheus and its node exporter (9090, 9100).
pub const DEFAULT_PORT: u16 = 8077;

/// One `[[dashboard.user]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardUser {
    pub name: String,
    /// A PHC string from `edge-gateway passwd` (argon2id). A hash is not
    /// the password, but it can be attacked offline: a secret.
    pub password_hash: Secret,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            bind: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            retention: Duration::from_secs(30 * 24 * 3600),
            max_bytes: 256 * 1024 * 1024,
            write_interval: Duration::from_secs(30),
            cert_file: None,
            key_file: None,
            user: Vec::new(),
            metric_order: Vec::new(),
            allowed_hosts: Vec::new(),
        }
    }
}

impl DashboardConfig {
    /// Cross-key checks, recorded under `dashboard`.
    pub fn validate(&self, problems: &mut Problems) {
        if self.enabled && !self.bind.ip().is_loopback() && self.user.is_empty() {
            problems.push(
                "dashboard",
                format!(
                    "bind = \"{}\" is not loopback: add a [[dashboard.user]] (hash from `edge-gateway passwd`), or bind to 127.0.0.1",
                    self.bind
                ),
            );
        }
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => problems.push("dashboard.key_file", "cert_file needs key_file"),
            (None, Some(_)) => problems.push("dashboard.cert_file", "key_file needs cert_file"),
            _ => {}
        }
        for (i, u) in self.user.iter().enumerate() {
            // The charset has no ':', which HTTP Basic could not carry.
            if let Err(e) = super::names::check(&u.name, &['@']) {
                problems.push(format!("dashboard.user[{i}].name"), e);
            }
            if !u.password_hash.expose().starts_with("$argon2") {
                problems.push(
                    format!("dashboard.user[{i}].password_hash"),
                    "expected an argon2 PHC string ($argon2id$…) from `edge-gateway passwd`",
                );
            }
        }
        if self.retention.is_zero() {
            problems.push("dashboard.retention", "must be more than 0s");
        }
        // Shorter, its timer fires back to back: a core spun for nothing
        // (1ns took 80 % of one), and an fsync per batch that small.
        if self.write_interval < Duration::from_millis(100) {
            problems.push("dashboard.write_interval", "expected at least 100ms");
        }
    }
}
