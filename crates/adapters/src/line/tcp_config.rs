//! `[[adapter]] type = "tcp_line"`: a TCP listener, one set of readings
//! per line, with optional per-line acknowledgements.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use gateway_core::config::values::duration;
use gateway_core::config::{load, Problems};
use gateway_core::{DeviceId, MetricName};
use serde::Deserialize;

use super::config::{default_max_line, line_decoder, seed_columns, FormatName, DEFAULT_MAX_LINE};
use super::decode::LineDecoder;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTcp {
    name: String,
    #[serde(default = "default_bind")]
    bind: SocketAddr,
    #[serde(default)]
    format: FormatName,
    #[serde(default)]
    columns: Vec<MetricName>,
    #[serde(default)]
    device: Option<DeviceId>,
    #[serde(default)]
    peers: BTreeMap<String, DeviceId>,
    #[serde(default = "default_max_line")]
    max_line_bytes: usize,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    #[serde(default = "default_idle_timeout", with = "duration")]
    idle_timeout: Duration,
    #[serde(default)]
    ack: bool,
}

pub(crate) fn default_bind() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 64;
fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}
pub(crate) fn default_idle_timeout() -> Duration {
    Duration::from_secs(300)
}

/// A checked `tcp_line` config.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpLineConfig {
    pub name: String,
    /// TCP address to listen on.
    pub bind: SocketAddr,
    pub decoder: LineDecoder,
    /// The device of lines that name none, for every peer.
    pub device: Option<DeviceId>,
    /// The device of lines that name none, by peer address (before
    /// `device`; the peer's address itself when neither applies).
    pub peers: BTreeMap<IpAddr, DeviceId>,
    /// Longer lines are dropped up to their newline and counted.
    pub max_line_bytes: usize,
    /// Connections beyond this are closed at once and counted.
    pub max_connections: usize,
    /// A connection silent this long is closed (zero: never).
    pub idle_timeout: Duration,
    /// Answer `ok N` / `err N reason` per line, once durable.
    pub ack: bool,
}

impl TcpLineConfig {
    /// The device of a line from `peer` that names none. (An address
    /// always makes a valid id: it holds no '/', '+', '#'.)
    pub fn fallback_device(&self, peer: IpAddr) -> Option<DeviceId> {
        let peer = peer.to_canonical();
        if let Some(d) = self.peers.get(&peer) {
            return Some(d.clone());
        }
        if let Some(d) = &self.device {
            return Some(d.clone());
        }
        DeviceId::new(peer.to_string()).ok()
    }
}

impl crate::registry::AdapterKind for TcpLineConfig {
    const DECLARATION: crate::registry::Declaration = super::kind::TCP_LINE;

    fn from_table(table: toml::Value, path: &str, problems: &mut Problems) -> Option<Self> {
        let raw: RawTcp = load::section(table, path, problems)?;
        let before = problems.len();
        let decoder = line_decoder(raw.format, &raw.columns, raw.max_line_bytes, path, problems);
        if !(1..=65_536).contains(&raw.max_connections) {
            problems.push(
                format!("{path}.max_connections"),
                format!("expected 1 to 65536, got {}", raw.max_connections),
            );
        }
        let mut peers = BTreeMap::new();
        for (addr, device) in raw.peers {
            match addr.parse::<IpAddr>() {
                Ok(ip) => {
                    peers.insert(ip.to_canonical(), device);
                }
                Err(_) => problems.push(
                    format!("{path}.peers.\"{addr}\""),
                    "expected an IP address (\"192.168.1.50\", \"fd00::7\")",
                ),
            }
        }
        let decoder = decoder?;
        if problems.len() > before {
            return None;
        }
        Some(Self {
            name: raw.name,
            bind: raw.bind,
            decoder,
            device: raw.device,
            peers,
            max_line_bytes: raw.max_line_bytes,
            max_connections: raw.max_connections,
            idle_timeout: raw.idle_timeout,
            ack: raw.ack,
        })
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn listens_on(&self) -> Option<(gateway_core::config::Transport, std::net::SocketAddr)> {
        Some((gateway_core::config::Transport::Tcp, self.bind))
    }

    fn build(&self, _ctx: &crate::registry::BuildContext) -> Box<dyn gateway_core::Adapter> {
        Box::new(super::tcp::TcpLineSource::new(self.clone()))
    }

    fn template() -> String {
        tcp_template()
    }
}

/// The `type = "tcp_line"` part of the `configfile` template.
pub fn tcp_template() -> String {
    crate::registry::render_template(
        include_str!("template.toml"),
        &[
            ("bind", default_bind().to_string()),
            ("columns", seed_columns().to_string()),
            ("max_line", DEFAULT_MAX_LINE.to_string()),
            ("max_conn", DEFAULT_MAX_CONNECTIONS.to_string()),
            ("idle", duration::render(default_idle_timeout()).to_string()),
        ],
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::registry::AdapterKind;

    fn tcp(text: &str) -> Result<TcpLineConfig, String> {
        let mut p = Problems::default();
        let c = TcpLineConfig::from_table(toml::from_str(text).unwrap(), "adapter[0]", &mut p);
        c.ok_or_else(|| p.to_string())
    }

    #[test]
    fn a_bme680_node_with_defaults() {
        let c =
            tcp("name = \"bme\"\ncolumns = [\"temperature\", \"pressure\", \"humidity\", \"gas\"]")
                .unwrap();
        assert_eq!(c.bind, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.max_line_bytes, 4096);
        assert!(!c.ack);
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(c.fallback_device(ip).unwrap().as_str(), "192.0.2.9");
    }

    #[test]
    fn peers_then_device_then_address() {
        let c = tcp(
            "name = \"bme\"\nformat = \"kv\"\ndevice = \"lab\"\npeers = { \"192.168.1.50\" = \"bme680-lab\" }",
        )
        .unwrap();
        let peer: IpAddr = "192.168.1.50".parse().unwrap();
        assert_eq!(c.fallback_device(peer).unwrap().as_str(), "bme680-lab");
        let mapped: IpAddr = "::ffff:192.168.1.50".parse().unwrap();
        assert_eq!(c.fallback_device(mapped).unwrap().as_str(), "bme680-lab");
        assert_eq!(
            c.fallback_device("10.0.0.1".parse().unwrap())
                .unwrap()
                .as_str(),
            "lab"
        );
    }

    #[test]
    fn every_problem_with_its_path() {
        let err = tcp(
            "name = \"x\"\nmax_line_bytes = 1\nmax_connections = 0\npeers = { \"pi\" = \"a\" }",
        )
        .unwrap_err();
        for key in [
            "adapter[0].columns",
            "adapter[0].max_line_bytes",
            "adapter[0].max_connections",
            "adapter[0].peers.\"pi\"",
        ] {
            assert!(err.contains(key), "{key} in {err}");
        }
        assert!(tcp("name = \"x\"\nformat = \"json\"\ncolumns = [\"a\"]")
            .unwrap_err()
            .contains("only format"));
        assert!(tcp("name = \"x\"\nformat = \"xml\"").is_err());
    }

    #[test]
    fn the_template_parses_once_uncommented() {
        super::super::config::tests::assert_template_parses::<TcpLineConfig>();
    }
}
