//! `[[adapter]] type = "bacnet"`: one BACnet/IP client (a UDP port), the
//! devices it reads in `[[bacnet.device]]` (`devices`).
//!
//! ```toml
//! [[adapter]]
//! type = "bacnet"
//! name = "bms"
//! bind = "0.0.0.0:47808"
//! poll = "1m"
//!
//! [[bacnet.device]]
//! instance = 1001
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use gateway_core::config::values::duration;
use gateway_core::config::{load, Problems};
use gateway_core::Adapter;
use serde::Deserialize;

use crate::device_section::check_poll;
use crate::registry::{AdapterKind, BuildContext, Declaration};

pub const KIND: &str = super::kind::BACNET.info.kind;
/// BACnet/IP's registered port (0xBAC0).
pub const DEFAULT_PORT: u16 = 47808;
const DEFAULT_BIND: &str = "0.0.0.0:47808";
/// A building's values move slowly; a minute is what BMS trend logs use.
const DEFAULT_POLL: Duration = Duration::from_secs(60);
/// bacpypes3 and most controllers' own APDU timeout (3 s, §12.11.27).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
const DEFAULT_RETRIES: u32 = 1;
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(300);
/// BTL §7.6: a finite lifetime, renewed at half (FAULTS.md).
const DEFAULT_COV_LIFETIME: Duration = Duration::from_secs(300);
const DEFAULT_TTL: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBacnet {
    name: String,
    #[serde(default = "default_bind")]
    bind: String,
    #[serde(default = "default_poll", with = "duration")]
    poll: Duration,
    #[serde(default = "default_timeout", with = "duration")]
    timeout: Duration,
    #[serde(default = "default_retries")]
    retries: u32,
    #[serde(default = "default_max_backoff", with = "duration")]
    max_backoff: Duration,
    #[serde(default)]
    broadcast: Vec<String>,
    bbmd: Option<String>,
    #[serde(default = "default_ttl", with = "duration")]
    ttl: Duration,
    #[serde(default = "default_cov_lifetime", with = "duration")]
    cov_lifetime: Duration,
}

fn default_bind() -> String {
    DEFAULT_BIND.to_string()
}
fn default_poll() -> Duration {
    DEFAULT_POLL
}
fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}
fn default_retries() -> u32 {
    DEFAULT_RETRIES
}
fn default_max_backoff() -> Duration {
    DEFAULT_MAX_BACKOFF
}
fn default_ttl() -> Duration {
    DEFAULT_TTL
}
fn default_cov_lifetime() -> Duration {
    DEFAULT_COV_LIFETIME
}

/// A checked `type = "bacnet"` adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct BacnetConfig {
    pub name: String,
    pub bind: SocketAddr,
    pub poll: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub max_backoff: Duration,
    /// Where Who-Is goes; empty: the limited broadcast 255.255.255.255.
    pub broadcast: Vec<SocketAddr>,
    /// A BBMD to register with as a foreign device, and for how long.
    pub bbmd: Option<SocketAddr>,
    pub ttl: Duration,
    pub cov_lifetime: Duration,
}

/// "host:port" or "host" (port 47808) as a socket address; names are
/// resolved once, when the config is read.
pub fn parse_address(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let with_port = if s.parse::<SocketAddr>().is_ok()
        || s.rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        s.to_string()
    } else {
        format!("{s}:{DEFAULT_PORT}")
    };
    with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.find(SocketAddr::is_ipv4))
        .ok_or_else(|| {
            format!(
                "expected an IPv4 \"host:port\" or \"host\" (port {DEFAULT_PORT}) such as \
                 \"192.168.1.20:47808\", got \"{s}\""
            )
        })
}

impl AdapterKind for BacnetConfig {
    const DECLARATION: Declaration = super::kind::BACNET;

    fn from_table(table: toml::Value, path: &str, problems: &mut Problems) -> Option<Self> {
        let raw: RawBacnet = load::section(table, path, problems)?;
        let before = problems.len();
        let bind = raw
            .bind
            .parse::<SocketAddr>()
            .map_err(|_| {
                problems.push(
                    format!("{path}.bind"),
                    format!(
                        "expected \"address:port\" such as \"{DEFAULT_BIND}\", got \"{}\"",
                        raw.bind
                    ),
                )
            })
            .ok();
        let mut broadcast = Vec::new();
        for (i, b) in raw.broadcast.iter().enumerate() {
            match parse_address(b) {
                Ok(a) => broadcast.push(a),
                Err(e) => problems.push(format!("{path}.broadcast[{i}]"), e),
            }
        }
        let bbmd = raw.bbmd.as_deref().and_then(|b| {
            parse_address(b)
                .map_err(|e| problems.push(format!("{path}.bbmd"), e))
                .ok()
        });
        check_poll(raw.poll, &format!("{path}.poll"), problems);
        for (key, d) in [("timeout", raw.timeout), ("max_backoff", raw.max_backoff)] {
            if d.is_zero() {
                problems.push(format!("{path}.{key}"), "expected more than 0s");
            }
        }
        if raw.ttl < Duration::from_secs(30) || raw.ttl.as_secs() > u64::from(u16::MAX) {
            problems.push(format!("{path}.ttl"), "expected from 30s to 18h");
        }
        if raw.cov_lifetime < Duration::from_secs(10) {
            problems.push(
                format!("{path}.cov_lifetime"),
                "expected at least 10s (a lifetime of 0 never ends: BTL §7.6)",
            );
        }
        if raw.retries > 10 {
            problems.push(format!("{path}.retries"), "expected at most 10");
        }
        if problems.len() > before {
            return None;
        }
        Some(Self {
            name: raw.name,
            bind: bind?,
            poll: raw.poll,
            timeout: raw.timeout,
            retries: raw.retries,
            max_backoff: raw.max_backoff,
            broadcast,
            bbmd,
            ttl: raw.ttl,
            cov_lifetime: raw.cov_lifetime,
        })
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn listens_on(&self) -> Option<(gateway_core::config::Transport, std::net::SocketAddr)> {
        Some((gateway_core::config::Transport::Udp, self.bind))
    }

    fn build(&self, ctx: &BuildContext) -> Box<dyn Adapter> {
        let devices = ctx.sections.bacnet.devices_of(&self.name);
        Box::new(super::source::BacnetSource::new(self.clone(), devices))
    }

    fn template() -> String {
        template()
    }
}

/// The bacnet part of the `configfile` template.
pub fn template() -> String {
    crate::registry::render_template(
        include_str!("template.toml"),
        &[
            ("bind", DEFAULT_BIND.to_string()),
            ("poll", duration::render(DEFAULT_POLL).to_string()),
            ("timeout", duration::render(DEFAULT_TIMEOUT).to_string()),
            ("retries", DEFAULT_RETRIES.to_string()),
            ("backoff", duration::render(DEFAULT_MAX_BACKOFF).to_string()),
            ("ttl", duration::render(DEFAULT_TTL).to_string()),
            ("cov", duration::render(DEFAULT_COV_LIFETIME).to_string()),
            ("priority", super::devices::DEFAULT_PRIORITY.to_string()),
        ],
    )
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
