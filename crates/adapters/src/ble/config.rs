//! `[[adapter]] type = "ble"` and the `[[ble.device]]` section.
//!
//! ```toml
//! [[adapter]]
//! type = "ble"
//! name = "ble"
//! source = "radio"            # or "replay" with replay_file
//! accept = "any"              # or "registered": [[ble.device]] and [[device]] MACs
//! silence = "90s"             # radio watchdog
//!
//! [[ble.device]]
//! mac = "54:48:E6:8F:80:A5"
//! bindkey = "env:BTHOME_KITCHEN"   # or 32 hex digits; never logged
//! name = "Kitchen"                 # optional, like [[device]]
//! room = "kitchen"                 # optional
//! ```
//!
//! Names and rooms of BLE devices usually come from the shared
//! `[[device]] id = "a4:c1:38:8d:18:b2"` registry (the device id is the MAC
//! in lower case); `[[ble.device]]` is where keys live, and a name, room,
//! floor or tags given there make a registry entry too (`[[device]]` wins
//! for the same id).

use std::path::PathBuf;
use std::time::Duration;

use gateway_core::config::values::duration;
use gateway_core::config::{load, secret, DeviceConfig, Problems};
use gateway_core::{Adapter, DeviceId};
use serde::Deserialize;

use super::advert::Mac;
use super::bthome_crypto::BindKey;
use crate::device_section::{DeviceCommon, DeviceSection, Entry, SectionDevice, DESCRIPTION_KEYS};
use crate::registry::{AdapterKind, BuildContext, Declaration};

/// Home Assistant's Bluetooth stack waits about this long before it calls
/// a scanner stalled; sensors advertise every few seconds, so 90 s of
/// nothing at all from any device is a radio fault, not a quiet room.
const DEFAULT_SILENCE: Duration = Duration::from_secs(90);
/// Below this, a building with one sensor advertising every minute would
/// restart the scan all the time.
const MIN_SILENCE: Duration = Duration::from_secs(10);

/// Which MACs may become readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accept {
    /// Every device whose advertisement a decoder understands.
    #[default]
    Any,
    /// Only devices listed in `[[ble.device]]`.
    Registered,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum SourceKind {
    #[default]
    Radio,
    Replay,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBle {
    name: String,
    #[serde(default)]
    source: SourceKind,
    replay_file: Option<PathBuf>,
    replay_speed: Option<f64>,
    #[serde(default)]
    accept: Accept,
    #[serde(default = "default_silence", with = "duration")]
    silence: Duration,
    /// BlueZ adapter name (`hci0`); default the first one.
    bluetooth_adapter: Option<String>,
}

fn default_silence() -> Duration {
    DEFAULT_SILENCE
}

/// Where advertisements come from.
#[derive(Debug, Clone, PartialEq)]
pub enum BleSource {
    /// The radio through BlueZ, `adapter` or the first one.
    Radio { adapter: Option<String> },
    /// A recorded JSONL file, played once at start-up. `speed` 1.0 keeps
    /// the recorded spacing, 0 plays as fast as possible.
    Replay { file: PathBuf, speed: f64 },
}

/// A checked `type = "ble"` adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct BleConfig {
    pub name: String,
    pub source: BleSource,
    pub accept: Accept,
    /// No advertisement at all for this long: the radio watchdog acts.
    pub silence: Duration,
}

impl AdapterKind for BleConfig {
    const DECLARATION: Declaration = super::kind::BLE;

    fn from_table(table: toml::Value, path: &str, problems: &mut Problems) -> Option<Self> {
        let raw: RawBle = load::section(table, path, problems)?;
        let before = problems.len();
        if raw.silence < MIN_SILENCE {
            problems.push(
                format!("{path}.silence"),
                format!(
                    "expected at least {}, got {}",
                    duration::render(MIN_SILENCE),
                    duration::render(raw.silence)
                ),
            );
        }
        let source = match raw.source {
            SourceKind::Radio => {
                for key in [
                    ("replay_file", raw.replay_file.is_some()),
                    ("replay_speed", raw.replay_speed.is_some()),
                ] {
                    if key.1 {
                        problems.push(
                            format!("{path}.{}", key.0),
                            "only source = \"replay\" takes it",
                        );
                    }
                }
                BleSource::Radio {
                    adapter: raw.bluetooth_adapter,
                }
            }
            SourceKind::Replay => {
                let speed = raw.replay_speed.unwrap_or(1.0);
                if !speed.is_finite() || speed < 0.0 {
                    problems.push(
                        format!("{path}.replay_speed"),
                        format!(
                            "expected 0 (as fast as possible) or a positive factor, got {speed}"
                        ),
                    );
                }
                match raw.replay_file {
                    Some(file) => BleSource::Replay { file, speed },
                    None => {
                        problems.push(
                            format!("{path}.replay_file"),
                            "source = \"replay\" needs the recorded file (JSON lines)",
                        );
                        return None;
                    }
                }
            }
        };
        (problems.len() == before).then_some(Self {
            name: raw.name,
            source,
            accept: raw.accept,
            silence: raw.silence,
        })
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn build(&self, ctx: &BuildContext) -> Box<dyn Adapter> {
        let mut adapter = super::source::BleAdapter::new(
            self.clone(),
            ctx.sections.ble.devices.clone(),
            &ctx.state_dir,
        );
        adapter.also_registered(&ctx.registered);
        Box::new(adapter)
    }

    fn template() -> String {
        template()
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    mac: String,
    bindkey: Option<secret::Secret>,
}

/// A checked `[[ble.device]]`. `Debug` never shows the key ([`BindKey`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BleDevice {
    pub mac: Mac,
    /// The MAC in lower case, its id in readings and in `[[device]]`.
    pub id: DeviceId,
    pub bindkey: Option<BindKey>,
    /// Its name, room, floor and tags: a registry entry when given.
    pub common: DeviceCommon,
}

/// The `[ble]` section.
pub type BleSection = DeviceSection<BleDevice>;

impl BleSection {
    /// The key configured for `mac`, if any.
    pub fn bindkey(&self, mac: Mac) -> Option<&BindKey> {
        self.devices
            .iter()
            .find(|d| d.mac == mac)
            .and_then(|d| d.bindkey.as_ref())
    }
}

/// Reads `[ble]` from the file's root table; `env` resolves `env:VAR`.
pub fn section(
    root: &toml::Table,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> BleSection {
    BleSection::read_with_env(root, env, problems)
}

impl SectionDevice for BleDevice {
    const FAMILY: &'static str = "ble";
    const COMMON: &'static [&'static str] = &DESCRIPTION_KEYS;
    type Shared = ();
    /// The MAC is its id: [`SectionDevice::key`] keeps it unique.
    type Address = ();

    fn parse(item: toml::Value, e: Entry<'_, ()>) -> Option<Self> {
        let (path, problems) = (e.path, e.problems);
        let before = problems.len();
        let raw: RawDevice = load::section_accepting(item, path, Self::COMMON, problems)?;
        let mac = raw
            .mac
            .parse::<Mac>()
            .map_err(|e| problems.push(format!("{path}.mac"), e.to_string()))
            .ok();
        let bindkey = raw.bindkey.as_ref().map(|text| {
            secret::parse(
                text.expose(),
                &format!("{path}.bindkey"),
                e.context.env,
                problems,
            )
        });
        if problems.len() > before {
            return None;
        }
        let mac = mac?;
        Some(BleDevice {
            mac,
            id: mac.device_id(),
            bindkey: bindkey.flatten(),
            common: e.common,
        })
    }

    fn adapter(&self) -> Option<&str> {
        None
    }

    fn id(&self) -> &DeviceId {
        &self.id
    }

    /// Under `mac`, as written: mixed-case MACs are one device.
    fn key_taken(&self) -> (&'static str, String) {
        ("mac", format!("{} is listed twice", self.id.as_str()))
    }

    fn addresses(&self) -> Vec<(&'static str, ())> {
        Vec::new()
    }

    fn address_taken(&self, _: &(), _: &str, _: usize) -> String {
        String::new()
    }

    fn registry_entry(&self) -> Option<DeviceConfig> {
        self.common.described_entry(&self.id)
    }
}

/// The BLE part of the `configfile` template.
pub fn template() -> String {
    crate::registry::render_template(
        include_str!("template.toml"),
        &[("silence", duration::render(DEFAULT_SILENCE).to_string())],
    )
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
