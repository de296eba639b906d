//! Protocol adapters: one module per protocol, each behind a Cargo feature.
//!
//! Every adapter turns its protocol's messages into [`gateway_core::Reading`]s
//! and sends them into the pipeline through the
//! [`gateway_core::Adapter`] interface. Payload formats shared by several
//! protocols (JSON objects, SenML, CSV, plain numbers) live in [`payload`].
//!
//! Adding a protocol: a folder with `kind.rs` (its [`Declaration`]),
//! `config.rs` (its `[[adapter]]` table, implementing [`AdapterKind`]),
//! `template.toml`, `README.md`, a pure codec, and a source implementing
//! `Adapter`; one line in the list below; a feature. docs/architecture.md
//! ("Adding an adapter") has the whole recipe.

pub mod actuators;
pub mod payload;

#[cfg(feature = "mqtt")]
pub mod mqtt;

#[cfg(feature = "coap")]
pub mod coap;

#[cfg(feature = "lorawan")]
pub mod lorawan;

#[cfg(feature = "ble")]
pub mod ble;

#[cfg(any(feature = "tcp_line", feature = "serial"))]
pub mod line;

#[cfg(feature = "modbus")]
pub mod modbus;

#[cfg(feature = "bacnet")]
pub mod bacnet;

#[cfg(feature = "knx")]
pub mod knx;

pub mod registry;

#[cfg(any(
    feature = "ble",
    feature = "lorawan",
    feature = "modbus",
    feature = "bacnet",
    feature = "knx"
))]
pub mod device_section;

#[cfg(any(feature = "coap", feature = "lorawan"))]
mod udp;

pub use registry::{AdapterKind, BuildContext, Declaration, OwnedSection};

// The one list of adapter kinds and of the top-level sections their
// families own. A new adapter: its folder, a line here, a feature.
registry::adapter_registry! {
    kinds {
        #[cfg(feature = "mqtt")]
        Mqtt => mqtt::MqttAdapterConfig,
        #[cfg(feature = "coap")]
        Coap => coap::CoapServerConfig,
        #[cfg(feature = "coap")]
        CoapObserve => coap::CoapObserveConfig,
        #[cfg(feature = "lorawan")]
        SemtechUdp => lorawan::config::SemtechUdpConfig,
        #[cfg(feature = "ble")]
        Ble => ble::config::BleConfig,
        #[cfg(feature = "tcp_line")]
        TcpLine => line::TcpLineConfig,
        #[cfg(feature = "serial")]
        SerialLine => line::SerialLineConfig,
        #[cfg(feature = "modbus")]
        Modbus => modbus::ModbusConfig,
        #[cfg(feature = "bacnet")]
        Bacnet => bacnet::BacnetConfig,
        #[cfg(feature = "knx")]
        Knx => knx::KnxConfig,
    }
    sections {
        #[cfg(feature = "coap")]
        coap => coap::psk::CoapSection,
        #[cfg(feature = "lorawan")]
        lorawan => lorawan::config::LorawanSection,
        #[cfg(feature = "ble")]
        ble => ble::config::BleSection,
        #[cfg(feature = "modbus")]
        modbus => modbus::ModbusSection,
        #[cfg(feature = "bacnet")]
        bacnet => bacnet::BacnetSection,
        #[cfg(feature = "knx")]
        knx => knx::KnxSection,
    }
}
