//! Protocol adapters: one module per protocol, each behind a Cargo feature.
//!
//! Every adapter turns its protocol's messages into [`gateway_core::Reading`]s
//! and sends them into the pipeline through the
//! [`gateway_core::Adapter`] interface. Payload formats shared by several
//! protocols (JSON objects, SenML, CSV, plain numbers) live in [`payload`].
//!
//! Adding a protocol: a module with `config.rs` (its `[[adapter]]` table), a
//! pure codec, and a source implementing `Adapter`; a variant in
//! [`AdapterConfig`]; its part of the config template.

pub mod payload;

#[cfg(feature = "mqtt")]
pub mod mqtt;

#[cfg(feature = "coap")]
pub mod coap;

#[cfg(feature = "lorawan")]
pub mod lorawan;

#[cfg(feature = "ble")]
pub mod ble;

use std::path::PathBuf;

use gateway_core::config::{AdapterSpec, DeviceConfig, Problems};
use gateway_core::Adapter;

/// One `[[adapter]]` table, by its `type`.
#[derive(Debug, Clone, PartialEq)]
pub enum AdapterConfig {
    #[cfg(feature = "mqtt")]
    Mqtt(mqtt::MqttAdapterConfig),
    #[cfg(feature = "coap")]
    Coap(coap::CoapServerConfig),
    #[cfg(feature = "coap")]
    CoapObserve(coap::CoapObserveConfig),
    #[cfg(feature = "lorawan")]
    SemtechUdp(lorawan::config::SemtechUdpConfig),
}

/// The top-level sections owned by adapter families (`[lorawan]`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sections {
    #[cfg(feature = "lorawan")]
    pub lorawan: lorawan::config::LorawanSection,
}

impl Sections {
    /// Devices these sections name, as registry entries, so their names
    /// go upstream like those of `[[device]]` (which wins for the same id).
    pub fn registry_devices(&self) -> Vec<DeviceConfig> {
        #[cfg_attr(not(feature = "lorawan"), allow(unused_mut))]
        let mut out = Vec::new();
        #[cfg(feature = "lorawan")]
        for d in &self.lorawan.devices {
            if let Some(name) = &d.name {
                out.push(DeviceConfig {
                    id: d.id.clone(),
                    name: name.clone(),
                    room: None,
                    floor: None,
                    tags: gateway_core::config::Tags::default(),
                });
            }
        }
        out
    }
}

/// What adapters need to know about the gateway they run in.
#[derive(Debug, Clone)]
pub struct BuildContext {
    pub gateway_id: String,
    /// `gateway.state_dir`: where adapters keep durable state (LoRaWAN
    /// frame counters).
    pub state_dir: PathBuf,
    pub sections: Sections,
}

impl AdapterSpec for AdapterConfig {
    const KINDS: &'static [&'static str] = &[
        #[cfg(feature = "mqtt")]
        "mqtt",
        #[cfg(feature = "coap")]
        "coap",
        #[cfg(feature = "coap")]
        "coap_observe",
        #[cfg(feature = "lorawan")]
        "semtech_udp",
    ];

    const SECTIONS: &'static [&'static str] = &[
        #[cfg(feature = "lorawan")]
        "lorawan",
    ];

    type Sections = Sections;

    #[cfg_attr(not(feature = "lorawan"), allow(unused_variables))]
    fn sections(root: &toml::Table, problems: &mut Problems) -> Sections {
        Sections {
            #[cfg(feature = "lorawan")]
            lorawan: lorawan::config::section(root, &|var| std::env::var(var).ok(), problems),
        }
    }

    fn from_table(
        kind: &str,
        table: toml::Value,
        path: &str,
        problems: &mut Problems,
    ) -> Option<Self> {
        match kind {
            #[cfg(feature = "mqtt")]
            "mqtt" => mqtt::MqttAdapterConfig::from_table(table, path, problems).map(Self::Mqtt),
            #[cfg(feature = "coap")]
            "coap" => coap::CoapServerConfig::from_table(table, path, problems).map(Self::Coap),
            #[cfg(feature = "coap")]
            "coap_observe" => {
                coap::CoapObserveConfig::from_table(table, path, problems).map(Self::CoapObserve)
            }
            #[cfg(feature = "lorawan")]
            "semtech_udp" => lorawan::config::SemtechUdpConfig::from_table(table, path, problems)
                .map(Self::SemtechUdp),
            _ => {
                let _ = (table, path, problems);
                None
            }
        }
    }

    fn name(&self) -> &str {
        match self {
            #[cfg(feature = "mqtt")]
            Self::Mqtt(c) => &c.name,
            #[cfg(feature = "coap")]
            Self::Coap(c) => &c.name,
            #[cfg(feature = "coap")]
            Self::CoapObserve(c) => &c.name,
            #[cfg(feature = "lorawan")]
            Self::SemtechUdp(c) => &c.name,
        }
    }
}

impl AdapterConfig {
    /// The adapter's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            #[cfg(feature = "mqtt")]
            Self::Mqtt(_) => "mqtt",
            #[cfg(feature = "coap")]
            Self::Coap(_) => "coap",
            #[cfg(feature = "coap")]
            Self::CoapObserve(_) => "coap_observe",
            #[cfg(feature = "lorawan")]
            Self::SemtechUdp(_) => "semtech_udp",
        }
    }

    /// A runnable adapter for this config.
    #[cfg_attr(
        not(any(feature = "mqtt", feature = "lorawan")),
        allow(unused_variables)
    )]
    pub fn build(&self, ctx: &BuildContext) -> Box<dyn Adapter> {
        match self {
            #[cfg(feature = "mqtt")]
            Self::Mqtt(c) => Box::new(mqtt::MqttSource::new(c.clone(), &ctx.gateway_id)),
            #[cfg(feature = "coap")]
            Self::Coap(c) => Box::new(coap::CoapSource::new(c.clone())),
            #[cfg(feature = "coap")]
            Self::CoapObserve(c) => Box::new(coap::CoapObserver::new(c.clone())),
            #[cfg(feature = "lorawan")]
            Self::SemtechUdp(c) => Box::new(lorawan::source::SemtechUdpSource::new(
                c.clone(),
                ctx.sections.lorawan.devices.clone(),
                &ctx.state_dir,
            )),
        }
    }
}

/// The adapters' part of the `configfile` template.
pub fn template() -> String {
    let mut out = String::new();
    #[cfg(feature = "mqtt")]
    out.push_str(&mqtt::config::template());
    #[cfg(feature = "coap")]
    out.push_str(&coap::config::template());
    #[cfg(feature = "lorawan")]
    out.push_str(&lorawan::config::template());
    out
}
