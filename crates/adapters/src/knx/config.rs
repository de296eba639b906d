//! `[[adapter]] type = "knx"`: one KNXnet/IP interface or router, and the
//! group addresses read through it (`[[knx.group]]`, `groups`, and the
//! ETS export named by `group_addresses`, `ets`).
//!
//! ```toml
//! [[adapter]]
//! type = "knx"
//! name = "rooms"
//! url = "udp://192.168.1.30:3671"
//! group_addresses = "/etc/edge-gateway/knx-ga.csv"
//! ```

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use gateway_core::config::values::duration;
use gateway_core::config::{load, Problems};
use gateway_core::Adapter;
use serde::Deserialize;

use super::address::IndividualAddress;
use super::frame::{DEFAULT_PORT, ROUTING_GROUP};
use super::tunnel::CONNECTION_ALIVE_TIME;
use crate::device_section::some_duration;
use crate::registry::{AdapterKind, BuildContext, Declaration};

pub const KIND: &str = super::kind::KNX.info.kind;
/// KNX TP carries 20 to 50 telegrams a second; the gateway's own reads
/// and writes take at most a fifth of the slowest, so a room's own
/// traffic is never crowded out.
pub const DEFAULT_PACE: f64 = 10.0;
/// KNX 3.8.2 §5.4: CONNECTIONSTATE_REQUEST every 60 s.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(60);
/// KNX 3.8.2 §5.4: CONNECT_REQUEST_TIMEOUT and CONNECTIONSTATE_REQUEST_TIMEOUT.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A bus quiet this long is rare by day; at night the cost is a new
/// tunnel (and the `read_on_start` reads) every 10 minutes.
pub const DEFAULT_REFRESH_AFTER_SILENCE: Duration = Duration::from_secs(600);
/// The source of what a router sends, when `individual_address` is not
/// set: the address xknx and Home Assistant use for routing (a free one
/// in the installation should be set instead).
const DEFAULT_INDIVIDUAL_ADDRESS: &str = "15.15.250";
const MIN_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKnx {
    name: String,
    url: String,
    interface: Option<String>,
    local_ip: Option<String>,
    #[serde(default)]
    nat: bool,
    individual_address: Option<String>,
    #[serde(default = "default_pace")]
    pace: f64,
    #[serde(default = "default_heartbeat", with = "duration")]
    heartbeat: Duration,
    #[serde(default = "default_timeout", with = "duration")]
    timeout: Duration,
    #[serde(default = "default_max_backoff", with = "duration")]
    max_backoff: Duration,
    // Optional, so that one given for routing is named.
    #[serde(default, deserialize_with = "some_duration")]
    refresh_after_silence: Option<Duration>,
    group_addresses: Option<PathBuf>,
    #[serde(default)]
    ets_device: super::ets::DeviceRule,
}

/// When the heartbeat's third try comes (two `timeout`s after the first),
/// if that is past [`CONNECTION_ALIVE_TIME`]: a `heartbeat` the validation
/// accepts (at most 120 s) can still lose the tunnel whenever one try goes
/// unanswered, and the telegrams of the reconnection's gap with it.
pub(super) fn heartbeat_outlives_tunnel(heartbeat: Duration, timeout: Duration) -> Option<Duration> {
    let last_try = heartbeat.saturating_add(timeout.saturating_mul(2));
    (last_try >= CONNECTION_ALIVE_TIME).then_some(last_try)
}

/// A note for each tunnel (`[[adapter]]` of this type, not routing) whose
/// heartbeat outlives the interface's patience: valid, so the gateway
/// starts, but said where an installer looks first (`validate` prints the
/// notes, `run` logs them at start).
pub(super) fn heartbeat_notes(root: &toml::Table) -> Vec<String> {
    let Some(toml::Value::Array(list)) = root.get("adapter") else {
        return Vec::new();
    };
    let mut notes = Vec::new();
    for (index, a) in list.iter().enumerate() {
        let Some(a) = a.as_table() else { continue };
        let url = a.get("url").and_then(toml::Value::as_str);
        if a.get("type").and_then(toml::Value::as_str) != Some(KIND)
            || url.is_some_and(|u| u.starts_with("multicast://"))
        {
            continue;
        }
        // A value that does not parse is the validation's problem, said there.
        let read = |key: &str, default: Duration| match a.get(key) {
            None => Some(default),
            Some(v) => duration::deserialize(v.clone()).ok(),
        };
        let (Some(heartbeat), Some(timeout)) = (
            read("heartbeat", DEFAULT_HEARTBEAT),
            read("timeout", DEFAULT_TIMEOUT),
        ) else {
            continue;
        };
        if let Some(last_try) = heartbeat_outlives_tunnel(heartbeat, timeout) {
            notes.push(format!(
                "adapter[{index}].heartbeat: with timeout = {} its last try comes {} after the one before, and the interface drops a tunnel silent for 120 s: one unanswered try loses it (and the telegrams until it is back); keep heartbeat + 2 x timeout under 120 s (the default heartbeat is {})",
                duration::render(timeout),
                duration::render(last_try),
                duration::render(DEFAULT_HEARTBEAT),
            ));
        }
    }
    notes
}

fn default_pace() -> f64 {
    DEFAULT_PACE
}
fn default_heartbeat() -> Duration {
    DEFAULT_HEARTBEAT
}
fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}
fn default_max_backoff() -> Duration {
    DEFAULT_MAX_BACKOFF
}

/// How the adapter reaches the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Tunnelling over UDP (KNXnet/IP 1.0): the interface's control endpoint.
    Udp(SocketAddrV4),
    /// Tunnelling over TCP (KNXnet/IP 2.0).
    Tcp(SocketAddrV4),
    /// Routing: the multicast group and port.
    Routing(SocketAddrV4),
}

impl Transport {
    /// `udp://host[:port]`, `tcp://host[:port]`, `multicast://group[:port]`.
    ///
    /// # Errors
    /// A message for people.
    pub fn parse(url: &str) -> Result<Self, String> {
        let expected = || {
            format!(
                "expected \"udp://192.168.1.30:3671\" (tunnelling), \"tcp://192.168.1.30:3671\" \
                 (tunnelling over TCP) or \"multicast://224.0.23.12:3671\" (routing), got \"{url}\""
            )
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(expected)?;
        let rest = rest.trim_end_matches('/');
        let with_port = if rest
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            rest.to_string()
        } else {
            format!("{rest}:{DEFAULT_PORT}")
        };
        let addr = resolve(&with_port).ok_or_else(expected)?;
        match scheme.to_ascii_lowercase().as_str() {
            "udp" => Ok(Self::Udp(addr)),
            "tcp" => Ok(Self::Tcp(addr)),
            "multicast" if addr.ip().is_multicast() => Ok(Self::Routing(addr)),
            "multicast" => Err(format!(
                "expected a multicast group such as {ROUTING_GROUP} (KNX routing's), got {}",
                addr.ip()
            )),
            _ => Err(expected()),
        }
    }
}

fn resolve(host_port: &str) -> Option<SocketAddrV4> {
    use std::net::{SocketAddr, ToSocketAddrs};
    host_port.to_socket_addrs().ok()?.find_map(|a| match a {
        SocketAddr::V4(v4) => Some(v4),
        SocketAddr::V6(_) => None,
    })
}

/// A checked `type = "knx"` adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct KnxConfig {
    pub name: String,
    pub transport: Transport,
    /// Routing: the interface (name or IPv4 address) the multicast is
    /// joined and sent on; none: the system's choice.
    pub interface: Option<String>,
    /// Tunnelling: the local address told to the interface (and bound);
    /// none: the one the system routes to the interface through.
    pub local_ip: Option<Ipv4Addr>,
    /// Tunnelling through a NAT router: the interface answers wherever
    /// requests come from (HPAI 0.0.0.0:0).
    pub nat: bool,
    /// Routing: the source address of the telegrams the gateway sends.
    pub individual_address: IndividualAddress,
    /// Telegrams per second the gateway sends at most (reads and writes).
    pub pace: f64,
    pub heartbeat: Duration,
    pub timeout: Duration,
    pub max_backoff: Duration,
    /// Tunnelling: a tunnel that hears no telegram this long is connected
    /// again (its channel may be another client's since the interface
    /// restarted); zero: never.
    pub refresh_after_silence: Duration,
    /// The ETS export (beside the config file when relative), read into
    /// `[knx]`'s groups.
    pub group_addresses: Option<PathBuf>,
    pub ets_device: super::ets::DeviceRule,
}

impl AdapterKind for KnxConfig {
    const DECLARATION: Declaration = super::kind::KNX;

    fn from_table(table: toml::Value, path: &str, problems: &mut Problems) -> Option<Self> {
        let raw: RawKnx = load::section(table, path, problems)?;
        let before = problems.len();
        let transport = Transport::parse(&raw.url)
            .map_err(|e| problems.push(format!("{path}.url"), e))
            .ok();
        let local_ip = raw.local_ip.as_deref().and_then(|ip| {
            ip.parse::<Ipv4Addr>()
                .map_err(|_| {
                    problems.push(
                        format!("{path}.local_ip"),
                        format!("expected an IPv4 address such as \"192.168.1.5\", got \"{ip}\""),
                    )
                })
                .ok()
        });
        let individual_address = raw
            .individual_address
            .as_deref()
            .unwrap_or(DEFAULT_INDIVIDUAL_ADDRESS)
            .parse::<IndividualAddress>()
            .map_err(|e| problems.push(format!("{path}.individual_address"), e))
            .ok();
        if !(raw.pace > 0.0 && raw.pace <= 50.0) {
            problems.push(
                format!("{path}.pace"),
                format!(
                    "expected more than 0 and at most 50 telegrams per second (a KNX TP line carries 20 to 50), got {}",
                    raw.pace
                ),
            );
        }
        for (key, d) in [
            ("heartbeat", raw.heartbeat),
            ("timeout", raw.timeout),
            ("max_backoff", raw.max_backoff),
        ] {
            if d.is_zero() {
                problems.push(format!("{path}.{key}"), "expected more than 0s");
            }
        }
        if raw.heartbeat > Duration::from_secs(120) {
            // KNX 3.8.2 §5.4: a server drops a connection silent for 120 s.
            problems.push(
                format!("{path}.heartbeat"),
                "expected at most 120s: the interface drops a tunnel it has not heard from in 120 s",
            );
        }
        let is_routing = matches!(transport, Some(Transport::Routing(_)));
        if raw.interface.is_some() && !is_routing && transport.is_some() {
            problems.push(
                format!("{path}.interface"),
                "only a multicast:// (routing) url takes an interface; a tunnel uses local_ip",
            );
        }
        if is_routing && raw.refresh_after_silence.is_some() {
            problems.push(
                format!("{path}.refresh_after_silence"),
                "only a tunnel (udp:// or tcp://) is refreshed after silence; routing has no channel to lose",
            );
        }
        if is_routing && (raw.nat || raw.local_ip.is_some()) {
            problems.push(
                format!("{path}.nat"),
                "nat and local_ip are for tunnelling (udp://); routing uses interface",
            );
        }
        // The export itself is read with `[knx]` (`ets::of_adapters`),
        // where validate's notes and the device registry see it too.
        let group_addresses = raw.group_addresses.map(super::ets::beside_config);
        if problems.len() > before {
            return None;
        }
        Some(Self {
            name: raw.name,
            transport: transport?,
            interface: raw.interface,
            local_ip,
            nat: raw.nat,
            individual_address: individual_address?,
            pace: raw.pace,
            heartbeat: raw.heartbeat,
            timeout: raw.timeout,
            max_backoff: raw.max_backoff,
            refresh_after_silence: raw
                .refresh_after_silence
                .unwrap_or(DEFAULT_REFRESH_AFTER_SILENCE),
            group_addresses,
            ets_device: raw.ets_device,
        })
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn build(&self, ctx: &BuildContext) -> Box<dyn Adapter> {
        let groups = ctx.sections.knx.groups_of(&self.name);
        Box::new(super::source::KnxSource::new(self.clone(), groups))
    }

    fn template() -> String {
        template()
    }
}

pub(super) fn check_poll(poll: Duration, path: &str, problems: &mut Problems) {
    if poll < MIN_POLL {
        problems.push(
            path,
            format!(
                "expected at least {} (every read is a telegram on the bus)",
                duration::render(MIN_POLL)
            ),
        );
    }
}

/// The knx part of the `configfile` template.
pub fn template() -> String {
    crate::registry::render_template(
        include_str!("template.toml"),
        &[
            ("pace", DEFAULT_PACE.to_string()),
            ("heartbeat", duration::render(DEFAULT_HEARTBEAT).to_string()),
            ("timeout", duration::render(DEFAULT_TIMEOUT).to_string()),
            ("backoff", duration::render(DEFAULT_MAX_BACKOFF).to_string()),
            (
                "refresh_after_silence",
                duration::render(DEFAULT_REFRESH_AFTER_SILENCE).to_string(),
            ),
            ("individual_address", DEFAULT_INDIVIDUAL_ADDRESS.to_string()),
        ],
    )
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
