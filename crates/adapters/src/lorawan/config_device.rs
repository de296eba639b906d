//! `[[lorawan.device]]`: one device checked, ABP or OTAA, with its codec;
//! the section around it is the shared [`DeviceSection`].

use std::collections::BTreeMap;
use std::time::Duration;

use gateway_core::config::values::duration;
use gateway_core::config::{load, secret, DeviceConfig, Problems};
use gateway_core::DeviceId;
use serde::Deserialize;

use super::super::codecs::js::{self, Limits};
use super::super::codecs::{FieldSpec, StructLayout};
use super::super::join::Eui;
use super::{
    script_codec, script_limits, DeviceCodec, FcntReset, LorawanDevice, LorawanSection, OtaaDevice,
    ABP_RX1_DELAY, SECTION_KEYS,
};
use crate::device_section::{
    some_duration, Context, DeviceCommon, DeviceSection, Entry, SectionDevice, DESCRIPTION_KEYS,
};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    // ABP: a fixed session.
    dev_addr: Option<String>,
    nwk_s_key: Option<secret::Secret>,
    app_s_key: Option<secret::Secret>,
    // OTAA: the root key; sessions come from joins.
    dev_eui: Option<String>,
    #[serde(alias = "app_eui")]
    join_eui: Option<String>,
    app_key: Option<secret::Secret>,
    codec: String,
    /// `js:` codecs only: the script's `input.variables`.
    codec_variables: Option<BTreeMap<String, String>>,
    fields: Option<Vec<FieldSpec>>,
    /// `struct` only: the payload's length when bytes after the last
    /// field are padding.
    frame_bytes: Option<usize>,
    id: Option<String>,
    #[serde(default)]
    fcnt_reset: FcntReset,
    /// ABP only: OTAA devices are told theirs in the join-accept.
    #[serde(default, deserialize_with = "some_duration")]
    rx1_delay: Option<Duration>,
}

/// A checked `[[lorawan.device]]`: how it is activated, and its name,
/// room, floor and tags.
#[derive(Debug, Clone, PartialEq)]
pub struct LorawanEntry {
    pub(super) common: DeviceCommon,
    pub(super) activation: Activation,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Activation {
    Abp(LorawanDevice),
    Otaa(OtaaDevice),
}

/// Where a device is told apart from the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Address {
    /// An OTAA device's DevEUI.
    DevEui(Eui),
    /// An ABP device's DevAddr with its NwkSKey: two devices may share a
    /// DevAddr (the MIC tells them apart), but not both, as then nothing
    /// can.
    Session(u32, [u8; 16]),
}

impl SectionDevice for LorawanEntry {
    const FAMILY: &'static str = "lorawan";
    const OWN_KEYS: &'static [&'static str] = &SECTION_KEYS;
    const COMMON: &'static [&'static str] = &DESCRIPTION_KEYS;
    const EMPTY_NAME: &'static str = "expected a non-empty name";
    /// The limits of `js:` codecs' calls.
    type Shared = Limits;
    type Address = Address;

    fn shared(section: &toml::Table, problems: &mut Problems) -> Limits {
        script_limits(section, problems)
    }

    fn parse(item: toml::Value, e: Entry<'_, Limits>) -> Option<Self> {
        let activation = device(item, e.path, &e.common, e.context, e.problems)?;
        Some(Self {
            common: e.common,
            activation,
        })
    }

    fn adapter(&self) -> Option<&str> {
        None
    }

    fn id(&self) -> &DeviceId {
        match &self.activation {
            Activation::Abp(d) => &d.id,
            Activation::Otaa(d) => &d.id,
        }
    }

    fn key_taken(&self) -> (&'static str, String) {
        let id = self.id().as_str();
        ("id", format!("id {id:?} is used by another device"))
    }

    fn addresses(&self) -> Vec<(&'static str, Address)> {
        match &self.activation {
            Activation::Abp(d) => vec![("nwk_s_key", Address::Session(d.dev_addr, d.nwk_s_key.0))],
            Activation::Otaa(d) => vec![("dev_eui", Address::DevEui(d.dev_eui))],
        }
    }

    fn address_taken(&self, address: &Address, _: &str, _: usize) -> String {
        match address {
            Address::DevEui(eui) => format!("DevEUI {eui} is used by another device"),
            Address::Session(dev_addr, _) => {
                format!("another device has DevAddr {dev_addr:08X} with the same NwkSKey")
            }
        }
    }

    fn registry_entry(&self) -> Option<DeviceConfig> {
        self.common.described_entry(self.id())
    }
}

/// Checks every `[[lorawan.device]]` table, collecting all problems.
/// `env` reads `env:VAR` keys (the process environment in production, a
/// map in tests). Returns the ABP devices that passed.
pub fn devices(
    tables: Vec<toml::Value>,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Vec<LorawanDevice> {
    let context = Context {
        env,
        shared: Limits::default(),
    };
    let entries = DeviceSection::<LorawanEntry>::from_items(&[], tables, &context, problems);
    LorawanSection::from(entries).devices
}

fn device(
    table: toml::Value,
    path: &str,
    common: &DeviceCommon,
    context: &Context<'_, Limits>,
    problems: &mut Problems,
) -> Option<Activation> {
    // Counted before parsing: `section` drops an unknown key and carries
    // on, and a device with any problem is refused whole.
    let before = problems.len();
    let env = context.env;
    let raw: RawDevice = load::section_accepting(table, path, &DESCRIPTION_KEYS, problems)?;
    let codec_of = |problems: &mut Problems| codec(&raw, path, context.shared, problems);
    let id = |default: Option<String>, problems: &mut Problems| {
        raw.id.clone().or(default).and_then(|text| {
            DeviceId::new(text)
                .map_err(|e| problems.push(format!("{path}.id"), e.to_string()))
                .ok()
        })
    };
    if let Some(dev_eui_text) = &raw.dev_eui {
        for (key, given) in [
            ("dev_addr", raw.dev_addr.is_some()),
            ("nwk_s_key", raw.nwk_s_key.is_some()),
            ("app_s_key", raw.app_s_key.is_some()),
            ("rx1_delay", raw.rx1_delay.is_some()),
        ] {
            if given {
                problems.push(
                    format!("{path}.{key}"),
                    "an OTAA device (dev_eui) gets its session from its join: remove it",
                );
            }
        }
        let eui = |text: Option<&String>, key: &str, problems: &mut Problems| match text {
            None => {
                problems.push(format!("{path}.{key}"), "an OTAA device needs it");
                None
            }
            Some(t) => t
                .parse::<Eui>()
                .map_err(|e| problems.push(format!("{path}.{key}"), e.to_string()))
                .ok(),
        };
        let dev_eui = eui(Some(dev_eui_text), "dev_eui", problems);
        let join_eui = eui(raw.join_eui.as_ref(), "join_eui", problems);
        let app_key = match &raw.app_key {
            Some(k) => secret::parse(k.expose(), &format!("{path}.app_key"), env, problems),
            None => {
                problems.push(format!("{path}.app_key"), "an OTAA device needs it");
                None
            }
        };
        let codec = codec_of(problems);
        let id = id(dev_eui.map(|e| e.to_string()), problems);
        if problems.len() > before {
            return None;
        }
        return Some(Activation::Otaa(OtaaDevice {
            dev_eui: dev_eui?,
            join_eui: join_eui?,
            app_key: app_key?,
            codec: codec?,
            name: common.name.clone(),
            id: id?,
            fcnt_reset: raw.fcnt_reset,
        }));
    }
    for (key, given) in [
        ("join_eui", raw.join_eui.is_some()),
        ("app_key", raw.app_key.is_some()),
    ] {
        if given {
            problems.push(
                format!("{path}.{key}"),
                "only an OTAA device (with dev_eui) takes it",
            );
        }
    }
    let dev_addr_text = raw.dev_addr.clone().unwrap_or_default();
    let dev_addr = parse_dev_addr(&dev_addr_text);
    if dev_addr.is_none() {
        problems.push(
            format!("{path}.dev_addr"),
            format!(
                "expected 8 hex digits, MSB first (\"260B1234\"), got {:?}; or dev_eui, join_eui and app_key for OTAA",
                dev_addr_text
            ),
        );
    }
    let session_key = |k: &Option<secret::Secret>, name: &str, problems: &mut Problems| match k {
        Some(k) => secret::parse(k.expose(), &format!("{path}.{name}"), env, problems),
        None => {
            problems.push(format!("{path}.{name}"), "an ABP device needs it");
            None
        }
    };
    // RxDelay (spec §5.7) counts whole seconds, 1 to 15.
    let rx1_delay = raw.rx1_delay.unwrap_or(ABP_RX1_DELAY);
    if rx1_delay.subsec_nanos() != 0 || !(1..=15).contains(&rx1_delay.as_secs()) {
        problems.push(
            format!("{path}.rx1_delay"),
            format!(
                "expected whole seconds from 1s to 15s, as the device is set, got {}",
                duration::render(rx1_delay)
            ),
        );
    }
    let nwk_s_key = session_key(&raw.nwk_s_key, "nwk_s_key", problems);
    let app_s_key = session_key(&raw.app_s_key, "app_s_key", problems);
    let codec = codec_of(problems);
    let id = id(dev_addr.map(|addr| format!("{addr:08X}")), problems);
    if problems.len() > before {
        return None;
    }
    Some(Activation::Abp(LorawanDevice {
        dev_addr: dev_addr?,
        nwk_s_key: nwk_s_key?,
        app_s_key: app_s_key?,
        codec: codec?,
        name: common.name.clone(),
        id: id?,
        fcnt_reset: raw.fcnt_reset,
        rx1_delay,
    }))
}

fn codec(
    raw: &RawDevice,
    path: &str,
    limits: Limits,
    problems: &mut Problems,
) -> Option<DeviceCodec> {
    if raw.frame_bytes.is_some() && raw.codec != "struct" {
        problems.push(
            format!("{path}.frame_bytes"),
            "only codec \"struct\" takes `frame_bytes`",
        );
    }
    let script = js::script_path(&raw.codec);
    if raw.codec_variables.is_some() && script.is_none() {
        problems.push(
            format!("{path}.codec_variables"),
            "only a JavaScript codec (codec = \"js:FILE\") takes `codec_variables`",
        );
    }
    if let Some(file) = script {
        if raw.fields.is_some() {
            problems.push(
                format!("{path}.fields"),
                "only codec \"struct\" takes `fields`",
            );
        }
        return script_codec(file, raw.codec_variables.clone(), limits, path, problems);
    }
    match (raw.codec.as_str(), raw.fields.clone()) {
        ("struct", Some(fields)) => StructLayout::with_frame(fields, raw.frame_bytes)
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
                .map_err(|e| {
                    problems.push(
                        format!("{path}.codec"),
                        format!("{e}, or struct, or js:FILE (a JavaScript codec)"),
                    )
                })
                .ok()
        }
    }
}

fn parse_dev_addr(given: &str) -> Option<u32> {
    let text = crate::lorawan::hex_text::compact_hex(given);
    (text.len() == 8 && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(&text, 16).ok())
        .flatten()
}
