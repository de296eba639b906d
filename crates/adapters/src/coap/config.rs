//! `[[adapter]] type = "coap"`: a CoAP server (RFC 7252) that sensors POST
//! or PUT readings to, and `type = "coap_observe"`: a client that observes
//! (RFC 7641) resources on devices.

use std::net::SocketAddr;
use std::time::Duration;

use gateway_core::config::values::duration;
use gateway_core::config::{load, Problems};
use gateway_core::Adapter;
use gateway_core::{DeviceId, MetricName};
use serde::Deserialize;

use super::handler::Limits;
use crate::registry::{AdapterKind, BuildContext, Declaration};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    name: String,
    #[serde(default)]
    bind: Option<SocketAddr>,
    #[serde(default)]
    dtls: Option<DtlsMode>,
    #[serde(default = "default_session_timeout", with = "duration")]
    session_timeout: Duration,
    #[serde(default = "default_handshake_rate")]
    handshake_rate: u32,
    #[serde(default = "default_handshake_burst")]
    handshake_burst: u32,
    #[serde(default = "default_max_payload")]
    max_payload_bytes: usize,
    #[serde(default = "default_max_body")]
    max_body_bytes: usize,
    #[serde(default = "default_rate_limit")]
    rate_limit: u32,
    #[serde(default = "default_rate_burst")]
    rate_burst: u32,
    #[serde(default = "default_max_peers")]
    max_peers: usize,
    #[serde(default = "default_dedup_capacity")]
    dedup_capacity: usize,
    #[serde(default = "default_max_devices")]
    max_devices: usize,
    #[serde(default = "default_max_readings")]
    max_readings_per_message: usize,
    /// A codec for binary bodies (Content-Format 42 or none): a built-in
    /// LoRaWAN codec's name or `js:FILE`.
    #[cfg(feature = "lorawan")]
    #[serde(default)]
    codec: Option<String>,
    #[cfg(feature = "lorawan")]
    #[serde(default)]
    codec_variables: Option<std::collections::BTreeMap<String, String>>,
    /// The `fPort` a codec is given unless the request says `?fport=N`.
    #[cfg(feature = "lorawan")]
    #[serde(default = "default_codec_fport")]
    codec_fport: u8,
}

/// Application payloads are on FPorts 1 to 223 (0 is MAC commands, which a
/// vendor's decoder never sees); 1 is what a codec that ignores the port
/// and most single-frame devices use.
pub(crate) const DEFAULT_CODEC_FPORT: u8 = 1;
#[cfg(feature = "lorawan")]
fn default_codec_fport() -> u8 {
    DEFAULT_CODEC_FPORT
}

pub(crate) fn default_bind() -> SocketAddr {
    SocketAddr::from(([0u16; 8], 5683))
}
/// coaps' port (RFC 7252 §6.2).
pub(crate) fn default_dtls_bind() -> SocketAddr {
    SocketAddr::from(([0u16; 8], 5684))
}
pub(crate) fn default_session_timeout() -> Duration {
    Duration::from_secs(600)
}
pub(crate) const DEFAULT_HANDSHAKE_RATE: u32 = 2;
fn default_handshake_rate() -> u32 {
    DEFAULT_HANDSHAKE_RATE
}
pub(crate) const DEFAULT_HANDSHAKE_BURST: u32 = 5;
fn default_handshake_burst() -> u32 {
    DEFAULT_HANDSHAKE_BURST
}

/// `dtls`: how the server secures its datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DtlsMode {
    /// DTLS 1.2 with pre-shared keys from `[[coap.psk]]`.
    Psk,
}

/// DTLS settings of a `coap` server with `dtls = "psk"`.
#[derive(Debug, Clone, PartialEq)]
pub struct DtlsSettings {
    /// A session with no record for this long is dropped (the client
    /// handshakes again).
    pub session_timeout: Duration,
    /// Handshakes per second allowed per peer address, and the burst: a
    /// spoofed flood of ClientHellos costs little state.
    pub handshake_rate: u32,
    pub handshake_burst: u32,
}
/// RFC 7252 §4.6: the payload bound when the path MTU is unknown.
pub(crate) const DEFAULT_MAX_PAYLOAD: usize = 1024;
fn default_max_payload() -> usize {
    DEFAULT_MAX_PAYLOAD
}
pub(crate) const DEFAULT_MAX_BODY: usize = 64 * 1024;
fn default_max_body() -> usize {
    DEFAULT_MAX_BODY
}
pub(crate) const DEFAULT_RATE_LIMIT: u32 = 100;
fn default_rate_limit() -> u32 {
    DEFAULT_RATE_LIMIT
}
pub(crate) const DEFAULT_RATE_BURST: u32 = 200;
fn default_rate_burst() -> u32 {
    DEFAULT_RATE_BURST
}
pub(crate) const DEFAULT_MAX_PEERS: usize = 4096;
fn default_max_peers() -> usize {
    DEFAULT_MAX_PEERS
}
pub(crate) const DEFAULT_DEDUP: usize = 16_384;
fn default_dedup_capacity() -> usize {
    DEFAULT_DEDUP
}
fn default_max_readings() -> usize {
    crate::payload::DEFAULT_MAX_READINGS_PER_MESSAGE
}
pub(crate) const DEFAULT_MAX_DEVICES: usize = 1024;
fn default_max_devices() -> usize {
    DEFAULT_MAX_DEVICES
}

/// A checked CoAP server config.
#[derive(Debug, Clone, PartialEq)]
pub struct CoapServerConfig {
    pub name: String,
    /// UDP address to listen on (5683, or 5684 with DTLS).
    pub bind: SocketAddr,
    /// `Some` with `dtls = "psk"`: coaps, identities from `[[coap.psk]]`.
    pub dtls: Option<DtlsSettings>,
    /// Requests per second allowed per peer address (0: no limit).
    pub rate_limit: u32,
    /// Requests a peer may send at once before the rate applies.
    pub rate_burst: u32,
    /// Peers tracked by the rate limiter.
    pub max_peers: usize,
    pub limits: Limits,
    /// Decodes binary bodies (Content-Format 42, or none) into readings of
    /// the device the path names.
    #[cfg(feature = "lorawan")]
    pub codec: Option<BodyCodec>,
}

/// `codec` of a CoAP server, with the FPort its calls are given.
#[cfg(feature = "lorawan")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyCodec {
    pub codec: crate::payload::RouteCodec,
    /// Unless the request names one (`?fport=N`).
    pub fport: u8,
}

#[cfg(feature = "lorawan")]
fn body_codec(raw: &RawServer, path: &str, problems: &mut Problems) -> Option<BodyCodec> {
    let Some(name) = &raw.codec else {
        if raw.codec_variables.is_some() {
            problems.push(
                format!("{path}.codec_variables"),
                "only a JavaScript codec (codec = \"js:FILE\") takes `codec_variables`",
            );
        }
        return None;
    };
    match crate::payload::binary::route_codec(name, raw.codec_variables.clone()) {
        Ok(codec) => Some(BodyCodec {
            codec,
            fport: raw.codec_fport,
        }),
        Err(e) => {
            problems.push(format!("{path}.{}", e.key()), e.to_string());
            None
        }
    }
}

impl AdapterKind for CoapServerConfig {
    const DECLARATION: Declaration = super::kind::COAP;

    fn from_table(table: toml::Value, path: &str, problems: &mut Problems) -> Option<Self> {
        let raw: RawServer = load::section(table, path, problems)?;
        let before = problems.len();
        let mut range = |key: &str, v: usize, lo: usize, hi: usize| {
            if v < lo || v > hi {
                problems.push(
                    format!("{path}.{key}"),
                    format!("expected {lo} to {hi}, got {v}"),
                );
            }
        };
        range("max_payload_bytes", raw.max_payload_bytes, 16, 60_000);
        range("max_body_bytes", raw.max_body_bytes, 16, 16 * 1024 * 1024);
        range("max_peers", raw.max_peers, 1, 1_000_000);
        range("dedup_capacity", raw.dedup_capacity, 1, 1_000_000);
        range("max_devices", raw.max_devices, 1, 1_000_000);
        range(
            "max_readings_per_message",
            raw.max_readings_per_message,
            1,
            1_000_000,
        );
        if raw.rate_limit > 0 && raw.rate_burst == 0 {
            problems.push(
                format!("{path}.rate_burst"),
                "expected at least 1 with a rate_limit",
            );
        }
        if raw.dtls.is_some() && raw.session_timeout < Duration::from_secs(1) {
            problems.push(format!("{path}.session_timeout"), "expected at least 1s");
        }
        if raw.dtls.is_some() && (raw.handshake_rate == 0 || raw.handshake_burst == 0) {
            problems.push(
                format!("{path}.handshake_rate"),
                "expected handshake_rate and handshake_burst of at least 1",
            );
        }
        #[cfg(feature = "lorawan")]
        let codec = body_codec(&raw, path, problems);
        if problems.len() > before {
            return None;
        }
        let dtls = raw.dtls.map(|DtlsMode::Psk| DtlsSettings {
            session_timeout: raw.session_timeout,
            handshake_rate: raw.handshake_rate,
            handshake_burst: raw.handshake_burst,
        });
        Some(Self {
            name: raw.name,
            bind: raw.bind.unwrap_or_else(|| {
                if dtls.is_some() {
                    default_dtls_bind()
                } else {
                    default_bind()
                }
            }),
            dtls,
            rate_limit: raw.rate_limit,
            rate_burst: raw.rate_burst,
            max_peers: raw.max_peers,
            limits: Limits {
                max_payload_bytes: raw.max_payload_bytes,
                max_body_bytes: raw.max_body_bytes.max(raw.max_payload_bytes),
                dedup_capacity: raw.dedup_capacity,
                max_devices: raw.max_devices,
                max_readings_per_message: raw.max_readings_per_message,
            },
            #[cfg(feature = "lorawan")]
            codec,
        })
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn listens_on(&self) -> Option<(gateway_core::config::Transport, std::net::SocketAddr)> {
        Some((gateway_core::config::Transport::Udp, self.bind))
    }

    fn build(&self, ctx: &BuildContext) -> Box<dyn Adapter> {
        match self.dtls {
            Some(_) => Box::new(super::dtls::CoapsSource::new(
                self.clone(),
                ctx.sections.coap.clone(),
            )),
            None => Box::new(super::CoapSource::new(self.clone())),
        }
    }

    fn template() -> String {
        template()
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObserve {
    name: String,
    resources: Vec<RawResource>,
    #[serde(default = "default_silence", with = "duration")]
    silence: Duration,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    addr: String,
    path: String,
    device: DeviceId,
    #[serde(default)]
    metric: Option<MetricName>,
}

pub(crate) fn default_silence() -> Duration {
    Duration::from_secs(300)
}

/// One observed resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedResource {
    /// `host:port` of the device (a name is resolved at each registration).
    pub addr: String,
    /// Uri-Path segments.
    pub path: Vec<String>,
    pub device: DeviceId,
    /// Metric of a bare number (`value` when unset).
    pub metric: Option<MetricName>,
}

/// A checked CoAP observe client config.
#[derive(Debug, Clone, PartialEq)]
pub struct CoapObserveConfig {
    pub name: String,
    pub resources: Vec<ObservedResource>,
    /// Re-register when a resource has sent nothing for this long.
    pub silence: Duration,
}

impl AdapterKind for CoapObserveConfig {
    const DECLARATION: Declaration = super::kind::COAP_OBSERVE;

    fn from_table(table: toml::Value, path: &str, problems: &mut Problems) -> Option<Self> {
        let raw: RawObserve = load::section(table, path, problems)?;
        let before = problems.len();
        if raw.resources.is_empty() {
            problems.push(
                format!("{path}.resources"),
                "expected at least one resource",
            );
        }
        if raw.silence < Duration::from_secs(1) {
            problems.push(format!("{path}.silence"), "expected at least 1s");
        }
        let mut resources = Vec::new();
        for (i, r) in raw.resources.into_iter().enumerate() {
            if !r.addr.contains(':') {
                problems.push(
                    format!("{path}.resources[{i}].addr"),
                    format!("expected host:port, got {:?}", r.addr),
                );
            }
            let segments: Vec<String> = r
                .path
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if segments.is_empty() {
                problems.push(
                    format!("{path}.resources[{i}].path"),
                    "expected a resource path",
                );
            }
            resources.push(ObservedResource {
                addr: r.addr,
                path: segments,
                device: r.device,
                metric: r.metric,
            });
        }
        if problems.len() > before {
            return None;
        }
        Some(Self {
            name: raw.name,
            resources,
            silence: raw.silence,
        })
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn build(&self, _ctx: &BuildContext) -> Box<dyn Adapter> {
        Box::new(super::CoapObserver::new(self.clone()))
    }
}

/// The CoAP parts of the `configfile` template.
pub fn template() -> String {
    crate::registry::render_template(
        include_str!("template.toml"),
        &[
            ("bind", default_bind().to_string()),
            ("max_payload", DEFAULT_MAX_PAYLOAD.to_string()),
            ("max_body", DEFAULT_MAX_BODY.to_string()),
            (
                "max_readings",
                crate::payload::DEFAULT_MAX_READINGS_PER_MESSAGE.to_string(),
            ),
            ("rate", DEFAULT_RATE_LIMIT.to_string()),
            ("burst", DEFAULT_RATE_BURST.to_string()),
            ("peers", DEFAULT_MAX_PEERS.to_string()),
            ("dedup", DEFAULT_DEDUP.to_string()),
            ("devices", DEFAULT_MAX_DEVICES.to_string()),
            ("dtls_bind", default_dtls_bind().to_string()),
            (
                "session_timeout",
                duration::render(default_session_timeout()).to_string(),
            ),
            ("handshake_rate", DEFAULT_HANDSHAKE_RATE.to_string()),
            ("handshake_burst", DEFAULT_HANDSHAKE_BURST.to_string()),
            ("silence", duration::render(default_silence()).to_string()),
            ("codec_fport", DEFAULT_CODEC_FPORT.to_string()),
        ],
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The commented template sections, uncommented, parse to the defaults.
    #[test]
    fn template_sections_parse() {
        // Key lines parse on their own; prose does not. The loader takes
        // `[[adapter]]` and `type` off before `from_table`.
        let text = template();
        let keys: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| toml::from_str::<toml::Table>(l).is_ok_and(|t| !t.is_empty()))
            .collect();
        let split = keys
            .iter()
            .position(|l| l.contains("coap_observe"))
            .unwrap();
        let section = |lines: &[&str]| {
            lines
                .iter()
                .filter(|l| !l.starts_with("type = ") && !l.starts_with('['))
                .copied()
                .collect::<Vec<_>>()
                .join("\n")
        };
        let coaps = keys
            .iter()
            .position(|l| l.contains("coaps-sensors"))
            .unwrap();
        let psk = keys.iter().position(|l| l.starts_with("identity")).unwrap();
        let (server, observe) = (section(&keys[..coaps]), section(&keys[split..]));
        let server = server.as_str();
        let mut p = Problems::default();
        let c = CoapServerConfig::from_table(
            toml::from_str(&section(&keys[coaps..psk])).unwrap(),
            "adapter[0]",
            &mut p,
        );
        assert!(p.is_empty(), "{p}");
        let c = c.unwrap();
        assert_eq!(c.bind, default_dtls_bind());
        assert_eq!(
            c.dtls.map(|d| d.session_timeout),
            Some(default_session_timeout())
        );
        let root: toml::Table =
            toml::from_str(&format!("[[coap.psk]]\n{}", section(&keys[psk..split]))).unwrap();
        let env = |_: &str| Some("from-the-environment".to_string());
        let keys_section = super::super::psk::section(&root, &env, &mut p);
        assert!(p.is_empty(), "{p}");
        assert_eq!(keys_section.psk[0].device.as_str(), "node-7");
        let observe = observe.as_str();
        let mut p = Problems::default();
        let s = CoapServerConfig::from_table(toml::from_str(server).unwrap(), "adapter[0]", &mut p);
        assert!(p.is_empty(), "{p}");
        let s = s.unwrap();
        assert_eq!(s.bind, default_bind());
        assert_eq!(s.limits.max_payload_bytes, DEFAULT_MAX_PAYLOAD);
        let o =
            CoapObserveConfig::from_table(toml::from_str(observe).unwrap(), "adapter[1]", &mut p);
        assert!(p.is_empty(), "{p}");
        let o = o.unwrap();
        assert_eq!(o.resources[0].path, ["temperature"]);
        assert_eq!(o.silence, default_silence());
    }

    /// `codec` is compiled when the config is read: a syntax error names
    /// its file and line; `codec_variables` need a `js:` codec.
    #[cfg(feature = "lorawan")]
    #[test]
    fn a_codec_is_checked_when_the_config_is_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("bad.js"),
            "function decodeUplink(input) {\n  return { data: ;\n}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("ok.js"),
            "function decodeUplink(input) { return { data: { v: input.bytes[0] } }; }",
        )
        .unwrap();
        let parse = |text: &str| {
            let mut p = Problems::default();
            let c = gateway_core::config::base_dir::with(dir.path(), || {
                CoapServerConfig::from_table(toml::from_str(text).unwrap(), "adapter[0]", &mut p)
            });
            (c, p.iter().map(ToString::to_string).collect::<Vec<_>>())
        };
        let (_, p) = parse("name = \"c\"\ncodec = \"js:bad.js\"");
        assert!(
            p[0].starts_with("adapter[0].codec: bad.js:2: SyntaxError"),
            "{p:?}"
        );
        let (_, p) = parse("name = \"c\"\ncodec_variables = { k = \"v\" }");
        assert!(
            p[0].starts_with("adapter[0].codec_variables: only a JavaScript codec"),
            "{p:?}"
        );
        let (_, p) =
            parse("name = \"c\"\ncodec = \"cayenne_lpp\"\ncodec_variables = { k = \"v\" }");
        assert!(
            p[0].starts_with("adapter[0].codec_variables: only a JavaScript codec"),
            "{p:?}"
        );
        let (c, p) = parse(
            "name = \"c\"\ncodec = \"js:ok.js\"\ncodec_fport = 9\ncodec_variables = { k = \"v\" }",
        );
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(c.unwrap().codec.unwrap().fport, 9);
        let (c, _) = parse("name = \"c\"");
        assert!(c.unwrap().codec.is_none());
    }

    #[test]
    fn mistakes_name_their_key() {
        for (text, want) in [
            (
                "name = \"c\"\nmax_payload_bytes = 4",
                "adapter[0].max_payload_bytes",
            ),
            ("name = \"c\"\nbind = \"nowhere\"", "adapter[0].bind"),
            ("name = \"c\"\nport = 5683", "adapter[0]"),
        ] {
            let mut p = Problems::default();
            CoapServerConfig::from_table(toml::from_str(text).unwrap(), "adapter[0]", &mut p);
            assert!(
                p.iter().any(|x| x.to_string().starts_with(want)),
                "{text}: {p}"
            );
        }
        let mut p = Problems::default();
        let text =
            "name = \"o\"\nresources = [{ addr = \"nohost\", path = \"/\", device = \"d\" }]";
        assert!(
            CoapObserveConfig::from_table(toml::from_str(text).unwrap(), "adapter[1]", &mut p)
                .is_none()
        );
        assert_eq!(p.len(), 2, "{p}");
    }
}
