//! `[dashboard]`: the local web pages and the on-device history behind them.

use std::fmt::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::load::Problems;
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
}

/// One `[[dashboard.user]]`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardUser {
    pub name: String,
    /// A PHC string from `edge-gateway passwd` (argon2id).
    pub password_hash: String,
}

impl std::fmt::Debug for DashboardUser {
    // A hash is not the password, but it can be attacked offline: keep it
    // out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardUser")
            .field("name", &self.name)
            .field("password_hash", &"<redacted>")
            .finish()
    }
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            bind: SocketAddr::from(([127, 0, 0, 1], 8088)),
            retention: Duration::from_secs(30 * 24 * 3600),
            max_bytes: 256 * 1024 * 1024,
            write_interval: Duration::from_secs(30),
            cert_file: None,
            key_file: None,
            user: Vec::new(),
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
            if u.name.is_empty() || u.name.contains(':') {
                problems.push(
                    format!("dashboard.user[{i}].name"),
                    "must be non-empty and without ':' (HTTP Basic)",
                );
            }
            if !u.password_hash.starts_with("$argon2") {
                problems.push(
                    format!("dashboard.user[{i}].password_hash"),
                    "expected an argon2 PHC string ($argon2id$…) from `edge-gateway passwd`",
                );
            }
        }
        if self.retention.is_zero() {
            problems.push("dashboard.retention", "must be more than 0s");
        }
        if self.write_interval.is_zero() {
            problems.push("dashboard.write_interval", "must be more than 0s");
        }
    }
}

/// The `[dashboard]` part of the `configfile` template.
pub fn template() -> String {
    let d = DashboardConfig::default();
    let mut out = String::new();
    let _ = write!(
        out,
        r#"
[dashboard]
# Local web pages (overview, device, alerts, gateway), a JSON/CSV API under
# /api/ and live updates at /events, with a history of closed windows and
# alert transitions in {{state_dir}}/history/.
enabled = {enabled}
# Anything but loopback needs at least one [[dashboard.user]]: `validate`
# refuses an open dashboard on the network.
bind = "{bind}"
retention = "{retention}"
max_bytes = "{max_bytes}"
# Longest wait before closed windows and alerts are written (one fsync per
# batch); a checkpoint writes them sooner.
write_interval = "{write_interval}"
# HTTPS: both or neither (PEM files). Or keep the loopback bind and put a
# reverse proxy in front (see README).
# cert_file = "/etc/edge-gateway/dashboard.crt"
# key_file = "/etc/edge-gateway/dashboard.key"

# [[dashboard.user]]
# name = "facilities"
# password_hash = "$argon2id$v=19$..."   # from `edge-gateway passwd`
"#,
        enabled = d.enabled,
        bind = d.bind,
        retention = humantime::format_duration(d.retention),
        max_bytes = byte_size::render(d.max_bytes),
        write_interval = humantime::format_duration(d.write_interval),
    );
    out
}
