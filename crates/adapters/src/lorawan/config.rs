//! `[[lorawan.device]]`: devices activated by personalisation (ABP).
//!
//! ```toml
//! [[lorawan.device]]
//! dev_addr = "260B1234"                 # 8 hex digits, MSB first, as consoles print it
//! nwk_s_key = "env:LORA_260B1234_NWK"   # 32 hex digits, or env:VAR
//! app_s_key = "env:LORA_260B1234_APP"
//! codec = "seed_compact"                # or "struct" with `fields = [...]`
//! name = "Meeting room CO2"             # optional
//! id = "meeting-co2"                    # optional; default the DevAddr, "260B1234"
//! ```
//!
//! The `[lorawan]` section is owned by the adapters crate through
//! `AdapterSpec::sections`, so gateway-core stays protocol-free. Also here:
//! `[[adapter]] type = "semtech_udp"`. Problems name the TOML path and never
//! repeat a key: a key with a typo is still mostly a key.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use gateway_core::config::values::duration;
use gateway_core::config::{load, secret, DeviceConfig, Problems, Tags};
use gateway_core::Adapter;
use gateway_core::DeviceId;
use serde::Deserialize;

use super::codecs::{Codec, CodecError, DecodedValue, FieldSpec, StructLayout};
use super::frame::Key;
use super::semtech::GatewayEui;
use crate::registry::{AdapterKind, BuildContext, OwnedSection};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    dev_addr: String,
    nwk_s_key: String,
    app_s_key: String,
    codec: String,
    fields: Option<Vec<FieldSpec>>,
    name: Option<String>,
    id: Option<String>,
    #[serde(default)]
    fcnt_reset: FcntReset,
}

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
}

impl DeviceCodec {
    /// Decodes one application payload.
    ///
    /// # Errors
    /// The codec's [`CodecError`].
    pub fn decode(&self, bytes: &[u8]) -> Result<Vec<DecodedValue>, CodecError> {
        match self {
            Self::Named(c) => c.decode(bytes),
            Self::Struct(l) => l.decode(bytes),
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
}

/// Checks every `[[lorawan.device]]` table, collecting all problems.
/// `env` reads `env:VAR` keys (the process environment in production, a
/// map in tests). Returns the devices that passed.
pub fn devices(
    tables: Vec<toml::Value>,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Vec<LorawanDevice> {
    let mut out: Vec<LorawanDevice> = Vec::new();
    let mut ids = HashSet::new();
    let mut sessions = HashSet::new();
    for (i, table) in tables.into_iter().enumerate() {
        let path = format!("{path}[{i}]");
        let Some(device) = device(table, &path, env, problems) else {
            continue;
        };
        if !ids.insert(device.id.clone()) {
            problems.push(
                format!("{path}.id"),
                format!("id {:?} is used by another device", device.id.as_str()),
            );
            continue;
        }
        // Two devices may share a DevAddr (the MIC tells them apart), but
        // not a DevAddr and a NwkSKey: then nothing can.
        if !sessions.insert((device.dev_addr, device.nwk_s_key.0)) {
            problems.push(
                format!("{path}.nwk_s_key"),
                format!(
                    "another device has DevAddr {:08X} with the same NwkSKey",
                    device.dev_addr
                ),
            );
            continue;
        }
        out.push(device);
    }
    out
}

fn device(
    table: toml::Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Option<LorawanDevice> {
    // Counted before parsing: `section` drops an unknown key and carries
    // on, and a device with any problem is refused whole.
    let before = problems.len();
    let raw: RawDevice = load::section(table, path, problems)?;
    let dev_addr = parse_dev_addr(&raw.dev_addr);
    if dev_addr.is_none() {
        problems.push(
            format!("{path}.dev_addr"),
            format!(
                "expected 8 hex digits, MSB first (\"260B1234\"), got {:?}",
                raw.dev_addr
            ),
        );
    }
    let nwk_s_key = key(&raw.nwk_s_key, &format!("{path}.nwk_s_key"), env, problems);
    let app_s_key = key(&raw.app_s_key, &format!("{path}.app_s_key"), env, problems);
    let codec = match (raw.codec.as_str(), raw.fields) {
        ("struct", Some(fields)) => StructLayout::new(fields)
            .map(DeviceCodec::Struct)
            .map_err(|e| problems.push(format!("{path}.fields"), e.to_string()))
            .ok(),
        ("struct", None) => {
            problems.push(format!("{path}.fields"), "codec \"struct\" needs `fields`");
            None
        }
        (name, fields) => {
            if fields.is_some() {
                problems.push(
                    format!("{path}.fields"),
                    "only codec \"struct\" takes `fields`",
                );
            }
            name.parse()
                .map(DeviceCodec::Named)
                .map_err(|e| problems.push(format!("{path}.codec"), format!("{e}, or struct")))
                .ok()
        }
    };
    if raw.name.as_deref() == Some("") {
        problems.push(format!("{path}.name"), "expected a non-empty name");
    }
    let id_text = match (&raw.id, dev_addr) {
        (Some(id), _) => Some(id.clone()),
        (None, Some(addr)) => Some(format!("{addr:08X}")),
        (None, None) => None,
    };
    let id = id_text.and_then(|text| {
        DeviceId::new(text)
            .map_err(|e| problems.push(format!("{path}.id"), e.to_string()))
            .ok()
    });
    if problems.len() > before {
        return None;
    }
    Some(LorawanDevice {
        dev_addr: dev_addr?,
        nwk_s_key: nwk_s_key?,
        app_s_key: app_s_key?,
        codec: codec?,
        name: raw.name,
        id: id?,
        fcnt_reset: raw.fcnt_reset,
    })
}

fn parse_dev_addr(text: &str) -> Option<u32> {
    (text.len() == 8 && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(text, 16).ok())
        .flatten()
}

/// A key from hex, or from the environment with `env:VAR`.
fn key(
    text: &str,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Option<Key> {
    secret::parse(text, path, env, problems)
}

/// The `[lorawan]` section.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LorawanSection {
    /// `[[lorawan.device]]`, every one checked.
    pub devices: Vec<LorawanDevice>,
}

impl OwnedSection for LorawanSection {
    const NAME: &'static str = "lorawan";

    fn parse(root: &toml::Table, problems: &mut Problems) -> Self {
        section(root, &|var| std::env::var(var).ok(), problems)
    }

    fn registry_devices(&self) -> Vec<DeviceConfig> {
        self.devices
            .iter()
            .filter_map(|d| {
                Some(DeviceConfig {
                    id: d.id.clone(),
                    name: d.name.clone()?,
                    room: None,
                    floor: None,
                    tags: Tags::default(),
                })
            })
            .collect()
    }
}

/// Reads `[lorawan]` from the file's root table; `env` resolves `env:VAR`.
pub fn section(
    root: &toml::Table,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> LorawanSection {
    let Some(value) = root.get("lorawan") else {
        return LorawanSection::default();
    };
    let Some(table) = value.as_table() else {
        problems.push(
            "lorawan",
            "expected a table, write it as [[lorawan.device]]",
        );
        return LorawanSection::default();
    };
    for key in table.keys().filter(|k| *k != "device") {
        problems.push(format!("lorawan.{key}"), "unknown key, expected device");
    }
    let devices = match table.get("device") {
        None => Vec::new(),
        Some(toml::Value::Array(items)) => devices(items.clone(), "lorawan.device", env, problems),
        Some(_) => {
            problems.push(
                "lorawan.device",
                "expected an array of tables, write it as [[lorawan.device]]",
            );
            Vec::new()
        }
    };
    LorawanSection { devices }
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
}

impl AdapterKind for SemtechUdpConfig {
    const KIND: &'static str = "semtech_udp";

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
        let mut gateways = Vec::new();
        for (i, text) in raw.gateways.iter().enumerate() {
            match text.parse::<GatewayEui>() {
                Ok(eui) => gateways.push(eui),
                Err(e) => problems.push(format!("{path}.gateways[{i}]"), e.to_string()),
            }
        }
        (problems.len() == before).then_some(Self {
            name: raw.name,
            bind: raw.bind,
            dedup_window: raw.dedup_window,
            gateways,
        })
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn build(&self, ctx: &BuildContext) -> Box<dyn Adapter> {
        Box::new(super::source::SemtechUdpSource::new(
            self.clone(),
            ctx.sections.lorawan.devices.clone(),
            &ctx.state_dir,
        ))
    }

    fn template() -> String {
        template()
    }
}

/// The LoRaWAN part of the `configfile` template.
pub fn template() -> String {
    format!(
        r##"
# type = "semtech_udp": the server LoRa packet forwarders (Semtech UDP
# protocol v2, lora_pkt_fwd) send their uplinks to. Frames are checked (MIC,
# frame counter) and decrypted with the keys of [[lorawan.device]], then
# decoded by the device's codec: its values plus rssi, snr and gateways
# (forwarders that heard it) become readings. A forwarder's statistics are
# readings of a device named by its gateway EUI. Uncomment to use; it
# listens on every interface by default, and the protocol has no
# authentication: bind it to a trusted network, or list the forwarders in
# `gateways`.
# [[adapter]]
# type = "semtech_udp"
# name = "lora"
# bind = "{bind}"
# Copies of one uplink heard by several forwarders within this window are
# one uplink (best RSSI/SNR kept).
# dedup_window = "{dedup}"
# Gateway EUIs (16 hex digits) accepted; empty accepts every forwarder.
# gateways = []

# LoRaWAN devices activated by personalisation (ABP), one table each. Keys
# are 32 hex digits, or "env:VAR" to read them from the environment; they
# are never logged. The last frame counter of each device is kept in
# {{state_dir}}/lorawan-fcnt.json so a restart does not accept replays.
# [[lorawan.device]]
# DevAddr, 8 hex digits MSB first, as network consoles print it.
# dev_addr = "260B1234"
# nwk_s_key = "env:LORA_260B1234_NWK_S_KEY"
# app_s_key = "env:LORA_260B1234_APP_S_KEY"
# seed_compact, seed_bitpacked, seed_batch, cayenne_lpp, or struct with
# fields = [{{ name = "co2", type = "u16", endian = "be", scale = 1.0, offset = 0 }}]
# codec = "seed_compact"
# Optional: the name forwarded upstream, and the device id (default: the
# DevAddr, "260B1234").
# name = "Meeting room"
# id = "meeting-room"
# A counter below the last accepted one is a replay: "reject" (default), or
# "accept" it as a device restart (insecure; logged and counted).
# fcnt_reset = "reject"
"##,
        bind = default_bind(),
        dedup = duration::render(DEFAULT_DEDUP_WINDOW),
    )
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
