//! `[[lorawan.device]]`: devices activated by personalisation (ABP).
//!
//! ```toml
//! [[lorawan.device]]
//! dev_addr = "260B1234"                 # 8 hex digits, MSB first, as consoles print it
//! nwk_s_key = "env:LORA_260B1234_NWK"   # 32 hex digits, or env:VAR
//! app_s_key = "env:LORA_260B1234_APP"
//! codec = "compact_i16"                # or "struct" with `fields = [...]`
//! name = "Meeting room CO2"             # optional
//! id = "meeting-co2"                    # optional; default the DevAddr, "260B1234"
//! ```
//!
//! The `[lorawan]` section is owned by the adapters crate through
//! `AdapterSpec::sections`, so gateway-core stays protocol-free; its
//! devices are read by the shared `DeviceSection` (one device:
//! `config_device.rs`, `js:` codecs: `config_script.rs`). Also here:
//! `[[adapter]] type = "semtech_udp"`. Problems name the TOML path and never
//! repeat a key: a key with a typo is still mostly a key.

use std::net::SocketAddr;
use std::time::Duration;

use gateway_core::config::broker::{self, BrokerSection};
use gateway_core::config::values::duration;
use gateway_core::config::{load, DeviceConfig, Problems};
use gateway_core::Adapter;
use gateway_core::DeviceId;
use serde::Deserialize;

use super::codecs::js::ScriptCodec;
use super::codecs::{Codec, CodecError, DecodedValue, StructLayout};
use super::downlink_feed::FeedConfig;
use super::fcnt::Session;
use super::frame::Key;
use super::join::Eui;
use super::region::Region;
use super::semtech::GatewayEui;
use crate::device_section::DeviceSection;
use crate::registry::{AdapterKind, BuildContext, Declaration, OwnedSection};

/// RX1 delay of an ABP device unless configured: the spec's default
/// (RECEIVE_DELAY1), what a device that was never told otherwise uses.
pub const ABP_RX1_DELAY: Duration = Duration::from_secs(1);

/// What to do with an uplink whose MIC only verifies with a counter below
/// the last accepted one: a replay, or a device that restarted at 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FcntReset {
    /// Refuse it (and count it). The device must be re-provisioned, or its
    /// counter file entry removed, after a real reset.
    #[default]
    Reject,
    /// Accept it as a restart and continue from its counter. Insecure: any
    /// recorded frame can then be replayed once the counter is reset; every
    /// such acceptance is logged as a warning and counted.
    Accept,
}

/// How a device's FRMPayload is decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceCodec {
    /// A built-in codec by name.
    Named(Codec),
    /// `codec = "struct"` with its `fields`.
    Struct(StructLayout),
    /// `codec = "js:FILE"`: a vendor's JavaScript codec, run on the codec
    /// workers (so not decoded here: see [`DeviceCodec::decode`]).
    Script(ScriptCodec),
}

impl DeviceCodec {
    /// Decodes one application payload with a built-in codec; `None` for
    /// a script, which runs on its workers instead.
    ///
    /// # Errors
    /// The codec's [`CodecError`].
    pub fn decode(&self, bytes: &[u8]) -> Option<Result<Vec<DecodedValue>, CodecError>> {
        let mut out = Vec::new();
        Some(self.decode_into(bytes, &mut out)?.map(|()| out))
    }

    /// [`DeviceCodec::decode`] into `out`, as [`Codec::decode_into`].
    ///
    /// # Errors
    /// The codec's [`CodecError`].
    #[inline]
    pub fn decode_into(
        &self,
        bytes: &[u8],
        out: &mut Vec<DecodedValue>,
    ) -> Option<Result<(), CodecError>> {
        match self {
            Self::Named(c) => Some(c.decode_into(bytes, out)),
            Self::Struct(l) => {
                out.clear();
                Some(l.decode(bytes).map(|v| *out = v))
            }
            Self::Script(_) => None,
        }
    }

    /// The script, for a `js:` codec.
    pub fn script(&self) -> Option<&ScriptCodec> {
        match self {
            Self::Script(s) => Some(s),
            _ => None,
        }
    }
}

/// A checked ABP device.
#[derive(Debug, Clone, PartialEq)]
pub struct LorawanDevice {
    /// MSB first, as printed (`0x260B1234`).
    pub dev_addr: u32,
    pub nwk_s_key: Key,
    pub app_s_key: Key,
    pub codec: DeviceCodec,
    /// Display name, when given.
    pub name: Option<String>,
    /// Device id upstream: `id`, or the DevAddr as 8 upper-case hex digits.
    pub id: DeviceId,
    pub fcnt_reset: FcntReset,
    /// When its RX1 window opens after the end of an uplink.
    pub rx1_delay: Duration,
}

/// A device activated over the air (OTAA, LoRaWAN 1.0.x): its session
/// comes from its last join.
#[derive(Debug, Clone, PartialEq)]
pub struct OtaaDevice {
    pub dev_eui: Eui,
    /// JoinEUI (AppEUI before 1.0.4): checked against the join-request.
    pub join_eui: Eui,
    /// Never logged: `Key`'s `Debug` is redacted.
    pub app_key: Key,
    pub codec: DeviceCodec,
    pub name: Option<String>,
    /// `id`, or the DevEUI as 16 upper-case hex digits.
    pub id: DeviceId,
    pub fcnt_reset: FcntReset,
}

impl OtaaDevice {
    /// The device as the uplink path sees it, under `session`'s keys.
    pub fn with_session(&self, session: &Session) -> LorawanDevice {
        LorawanDevice {
            dev_addr: session.dev_addr,
            nwk_s_key: session.nwk_s_key,
            app_s_key: session.app_s_key,
            codec: self.codec.clone(),
            name: self.name.clone(),
            id: self.id.clone(),
            fcnt_reset: self.fcnt_reset,
            rx1_delay: super::downlink::RX1_DELAY,
        }
    }
}

/// `[lorawan]`'s own keys.
const SECTION_KEYS: [&str; 5] = [
    "net_id",
    "region",
    "js_time_limit",
    "js_memory_limit",
    "js_stack_limit",
];

/// The `[lorawan]` section.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LorawanSection {
    /// `[[lorawan.device]]` activated by personalisation, every one checked.
    pub devices: Vec<LorawanDevice>,
    /// `[[lorawan.device]]` activated over the air.
    pub otaa: Vec<OtaaDevice>,
    /// What the network server side needs: NetID, region.
    pub network: Network,
    /// The devices' `[[device]]` entries.
    registry: Vec<DeviceConfig>,
}

/// `[lorawan]`'s own keys: what OTAA joins and downlinks need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Network {
    /// 24-bit NetID; its type-0 NwkID prefixes every allocated DevAddr.
    /// Default 000000: a private network (DevAddrs 00000000–01FFFFFF).
    pub net_id: u32,
    /// Frequency plan of RX1/RX2 and of ADR.
    pub region: Region,
}

impl From<DeviceSection<LorawanEntry>> for LorawanSection {
    fn from(entries: DeviceSection<LorawanEntry>) -> Self {
        let mut section = Self {
            registry: entries.registry_devices(),
            ..Self::default()
        };
        for entry in entries.devices {
            match entry.activation {
                Activation::Abp(d) => section.devices.push(d),
                Activation::Otaa(d) => section.otaa.push(d),
            }
        }
        section
    }
}

impl OwnedSection for LorawanSection {
    const NAME: &'static str = "lorawan";

    fn parse(root: &toml::Table, problems: &mut Problems) -> Self {
        section(root, &|var| std::env::var(var).ok(), problems)
    }

    fn registry_devices(&self) -> Vec<DeviceConfig> {
        self.registry.clone()
    }
}

/// Reads `[lorawan]` from the file's root table; `env` resolves `env:VAR`.
pub fn section(
    root: &toml::Table,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> LorawanSection {
    let entries = DeviceSection::<LorawanEntry>::read_with_env(root, env, problems);
    let network = match root.get("lorawan").and_then(toml::Value::as_table) {
        Some(table) => network(table, problems),
        None => Network::default(),
    };
    LorawanSection {
        network,
        ..entries.into()
    }
}

/// `net_id` and `region`.
fn network(table: &toml::Table, problems: &mut Problems) -> Network {
    let mut network = Network::default();
    match table.get("net_id") {
        None => {}
        Some(toml::Value::String(text))
            if text.len() == 6 && text.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            let net_id = u32::from_str_radix(text, 16).unwrap_or(0);
            if net_id >> 21 != 0 {
                problems.push(
                    "lorawan.net_id",
                    format!("NetID {text} is not of type 0 (its 3 top bits must be 0): only type-0 NetIDs are supported"),
                );
            }
            network.net_id = net_id;
        }
        Some(other) => problems.push(
            "lorawan.net_id",
            format!("expected 6 hex digits (\"000000\"), got {other}"),
        ),
    }
    match table
        .get("region")
        .map(|v| v.as_str().map(str::parse::<Region>))
    {
        None => {}
        Some(Some(Ok(region))) => network.region = region,
        Some(Some(Err(e))) => problems.push("lorawan.region", e.to_string()),
        Some(None) => problems.push(
            "lorawan.region",
            "expected a string: EU868, US915, AS923, AU915, IN865 or KR920",
        ),
    }
    network
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSemtechUdp {
    name: String,
    #[serde(default = "default_bind")]
    bind: SocketAddr,
    #[serde(default = "default_dedup_window", with = "duration")]
    dedup_window: Duration,
    #[serde(default)]
    gateways: Vec<String>,
    #[serde(default, deserialize_with = "some_broker")]
    downlink_broker: Option<BrokerSection>,
    #[serde(default = "default_downlink_topic")]
    downlink_topic: String,
    #[serde(default = "default_command_wait", with = "duration")]
    command_wait: Duration,
}

/// A sensor reporting every few minutes uplinks within this; meanwhile
/// the commands behind it wait (they run one at a time), so it stays
/// below `[commands] max_age`'s default.
const DEFAULT_COMMAND_WAIT: Duration = Duration::from_secs(30);
fn default_command_wait() -> Duration {
    DEFAULT_COMMAND_WAIT
}

/// `downlink_broker`: a URL, as it first was, or a table with url,
/// username, password_env, ca_file... like every other broker.
fn some_broker<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<BrokerSection>, D::Error> {
    broker::url_or_table(d).map(Some)
}

fn default_downlink_topic() -> String {
    "lorawan/{device}/down".to_string()
}

fn default_bind() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 1700))
}
/// ChirpStack's de-duplication delay (FAULTS §3.3).
const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_millis(200);
fn default_dedup_window() -> Duration {
    DEFAULT_DEDUP_WINDOW
}

/// `[[adapter]] type = "semtech_udp"`: the packet forwarder's server.
#[derive(Debug, Clone, PartialEq)]
pub struct SemtechUdpConfig {
    pub name: String,
    /// UDP address the forwarders send to.
    pub bind: SocketAddr,
    /// How long copies of one uplink from other forwarders are awaited.
    pub dedup_window: Duration,
    /// Forwarders accepted, by gateway EUI; empty accepts any (the protocol
    /// has no authentication, PROTOCOL.TXT §1).
    pub gateways: Vec<GatewayEui>,
    /// Where application downlinks for joined devices come from, if set.
    pub downlinks: Option<FeedConfig>,
    /// How long a command from the cloud waits for its device's uplink.
    pub command_wait: Duration,
}

impl AdapterKind for SemtechUdpConfig {
    const DECLARATION: Declaration = super::kind::SEMTECH_UDP;

    fn from_table(table: toml::Value, path: &str, problems: &mut Problems) -> Option<Self> {
        let raw: RawSemtechUdp = load::section(table, path, problems)?;
        let before = problems.len();
        if raw.dedup_window > Duration::from_secs(5) {
            problems.push(
                format!("{path}.dedup_window"),
                format!(
                    "expected at most 5s, got {}",
                    duration::render(raw.dedup_window)
                ),
            );
        }
        if raw.command_wait.is_zero() {
            problems.push(format!("{path}.command_wait"), "expected more than 0s");
        }
        let mut gateways = Vec::new();
        for (i, text) in raw.gateways.iter().enumerate() {
            match text.parse::<GatewayEui>() {
                Ok(eui) => gateways.push(eui),
                Err(e) => problems.push(format!("{path}.gateways[{i}]"), e.to_string()),
            }
        }
        let levels = raw.downlink_topic.split('/');
        if let Some(e) = gateway_core::config::values::topic_control_char(&raw.downlink_topic) {
            problems.push(format!("{path}.downlink_topic"), e);
        } else if levels.filter(|l| *l == "{device}").count() != 1
            || raw.downlink_topic.contains(['+', '#'])
        {
            problems.push(
                format!("{path}.downlink_topic"),
                format!(
                    "expected a topic with one {{device}} level and no wildcard, got {:?}",
                    raw.downlink_topic
                ),
            );
        }
        if let Some(b) = &raw.downlink_broker {
            b.validate(
                &format!("{path}.downlink_broker"),
                &broker::env_is_set,
                problems,
            );
        }
        let downlinks = raw.downlink_broker.map(|broker| FeedConfig {
            broker,
            topic: raw.downlink_topic,
        });
        (problems.len() == before).then_some(Self {
            name: raw.name,
            bind: raw.bind,
            dedup_window: raw.dedup_window,
            gateways,
            downlinks,
            command_wait: raw.command_wait,
        })
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn listens_on(&self) -> Option<(gateway_core::config::Transport, std::net::SocketAddr)> {
        Some((gateway_core::config::Transport::Udp, self.bind))
    }

    fn build(&self, ctx: &BuildContext) -> Box<dyn Adapter> {
        Box::new(
            super::source::SemtechUdpSource::new(
                self.clone(),
                ctx.sections.lorawan.devices.clone(),
                &ctx.state_dir,
            )
            .with_otaa(
                ctx.sections.lorawan.otaa.clone(),
                ctx.sections.lorawan.network,
            ),
        )
    }

    fn template() -> String {
        template()
    }
}

/// The LoRaWAN part of the `configfile` template.
pub fn template() -> String {
    crate::registry::render_template(
        include_str!("template.toml"),
        &[
            ("bind", default_bind().to_string()),
            ("dedup", duration::render(DEFAULT_DEDUP_WINDOW).to_string()),
            ("downlink_topic", default_downlink_topic().to_string()),
            ("command_wait", duration::render(DEFAULT_COMMAND_WAIT)),
        ],
    )
}

#[path = "config_script.rs"]
mod script;
use script::{script_codec, script_limits};

#[path = "config_device.rs"]
mod device;
use device::Activation;
pub use device::{devices, Address, LorawanEntry};

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
