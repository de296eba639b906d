//! Protocol adapters: one module per protocol, each behind a Cargo feature.
//!
//! Every adapter turns its protocol's messages into [`gateway_core::Reading`]s
//! and sends them into the pipeline through the
//! [`gateway_core::Adapter`] interface. Payload formats shared by several
//! protocols (JSON objects, SenML, CSV, plain numbers) live in [`payload`].
//!
//! Adding a protocol: a folder with `kind.rs` (its [`Declaration`]),
//! `config.rs` (its `[[adapter]]` table, implementing [`AdapterKind`]),
//! `template.toml`, `README.md`, a pure codec, a source implementing
//! `Adapter`, and its tool subcommand in `tool.rs` if it has one; one entry
//! in the list below; a feature. docs/architecture.md
//! ("Adding an adapter") has the whole recipe.

pub mod actuators;
pub mod payload;

pub mod registry;

// Code some families share, behind a feature those families' features
// enable (adapters/Cargo.toml), so this file names none of them.
#[cfg(feature = "device-section")]
pub mod device_section;

#[cfg(test)]
mod test_rng;
#[cfg(feature = "udp")]
mod udp;

pub use registry::{AdapterKind, BuildContext, Declaration, OwnedSection};

// The one list of adapter families: each one's folder (its module), the
// feature that builds it in, its `[[adapter]]` kinds and the top-level
// section it owns (and the function that tells the deprecated names its
// config accepts, if any, and its tool subcommand, in its folder's
// `tool.rs`, if it has one). A new adapter: its folder, an entry here, its
// feature.
registry::adapter_registry! {
    #[cfg(feature = "mqtt")]
    mqtt { Mqtt => mqtt::MqttAdapterConfig }
    #[cfg(feature = "coap")]
    coap {
        Coap => coap::CoapServerConfig,
        CoapObserve => coap::CoapObserveConfig;
        section coap::psk::CoapSection
    }
    #[cfg(feature = "lorawan")]
    lorawan {
        SemtechUdp => lorawan::config::SemtechUdpConfig;
        section lorawan::config::LorawanSection;
        deprecated lorawan::codecs::deprecated_names_in_use
    }
    #[cfg(feature = "ble")]
    ble {
        Ble => ble::config::BleConfig;
        section ble::config::BleSection;
        tool
        /// Bluetooth LE tools: `ble record` writes the radio's advertisements
        /// as a capture for `source = "replay"`.
        Ble(ble::tool::BleArgs) => ble::tool::main
    }
    #[cfg(any(feature = "tcp_line", feature = "serial"))]
    line {
        #[cfg(feature = "tcp_line")]
        TcpLine => line::TcpLineConfig,
        #[cfg(feature = "serial")]
        SerialLine => line::SerialLineConfig
    }
    #[cfg(feature = "modbus")]
    modbus {
        Modbus => modbus::ModbusConfig;
        section modbus::ModbusSection;
        tool
        /// Modbus tools: `modbus scan` reads a range of a device's registers
        /// and prints each in every type and byte/word order.
        Modbus(modbus::tool::ModbusArgs) => modbus::tool::main
    }
    #[cfg(feature = "bacnet")]
    bacnet {
        Bacnet => bacnet::BacnetConfig;
        section bacnet::BacnetSection;
        tool
        /// BACnet tools: `bacnet discover` lists the devices answering Who-Is
        /// and their objects (name, type, instance, units, present value).
        Bacnet(bacnet::tool::BacnetArgs) => bacnet::tool::main
    }
    #[cfg(feature = "knx")]
    knx {
        Knx => knx::KnxConfig;
        section knx::KnxSection;
        tool
        /// KNX tools: `knx discover` lists the KNXnet/IP interfaces and
        /// routers answering a search; `knx monitor` prints every group
        /// telegram on the bus.
        Knx(knx::tool::KnxArgs) => knx::tool::main
    }
}
