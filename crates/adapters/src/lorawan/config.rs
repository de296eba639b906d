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
//! Only the types and their validation: wiring into the gateway config comes
//! with the socket adapter. Problems name the TOML path and never repeat a
//! key: a key with a typo is still mostly a key.

use std::collections::HashSet;

use gateway_core::config::{load, Problems};
use gateway_core::DeviceId;
use serde::Deserialize;

use super::codecs::{Codec, CodecError, DecodedValue, FieldSpec, StructLayout};
use super::frame::Key;

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
    let (value, source) = match text.strip_prefix("env:") {
        Some(var) => match env(var) {
            Some(v) => (v, format!("environment variable {var}")),
            None => {
                problems.push(path, format!("environment variable {var} is not set"));
                return None;
            }
        },
        None => (text.to_string(), "the value".to_string()),
    };
    value
        .trim()
        .parse::<Key>()
        .map_err(|e| problems.push(path, format!("{source}: {e}")))
        .ok()
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
