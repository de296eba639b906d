//! `[metrics]`: the HTTP endpoint for Prometheus and for health checks.

use std::fmt::Write;
use std::net::SocketAddr;

use serde::Deserialize;

/// `[metrics]`: Prometheus text at `/metrics`, a health verdict at `/health`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve the endpoint at all; `false` opens no port.
    pub enabled: bool,
    /// Address and port to listen on. Loopback by default: the numbers say
    /// nothing secret, but the endpoint has no authentication.
    pub bind: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bind: SocketAddr::from(([127, 0, 0, 1], 9898)),
        }
    }
}

/// The `[metrics]` part of the `configfile` template.
pub fn template() -> String {
    let m = MetricsConfig::default();
    let mut out = String::new();
    let _ = write!(
        out,
        r#"
[metrics]
# HTTP endpoint: Prometheus text format at /metrics; /health answers 200
# when the upstream broker is connected and every adapter is running (an
# MQTT adapter: connected and subscribed), else 503 with a JSON reason. It has no authentication: keep it on loopback or
# a trusted network.
enabled = {enabled}
bind = "{bind}"
"#,
        enabled = m.enabled,
        bind = m.bind,
    );
    out
}
