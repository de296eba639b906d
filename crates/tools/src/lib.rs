//! The `edge-gateway` binary's tool subcommands: everything it offers
//! besides running the gateway. The binary parses the command line and
//! hands each tool its arguments; a tool returns the process's exit code.
//!
//! - [`decode`]: a LoRaWAN payload or PHYPayload, decoded (with
//!   `lorawan`, the join messages in `decode_join`), or a BLE advertisement
//!   (with `ble`, in `decode_ble`);
//! - [`ble`]: `ble record`, advertisements from the radio as a capture
//!   (with `ble`);
//! - [`modbus`]: `modbus scan`, a range of a device's registers in every
//!   type and order (with `modbus`);
//! - [`bacnet`]: `bacnet discover`, the devices answering Who-Is and
//!   their points (with `bacnet`);
//! - [`knx`]: `knx discover`, the KNXnet/IP interfaces and routers
//!   answering a search, and `knx monitor`, every group telegram (with
//!   `knx`);
//! - [`fleet`]: `config keygen|sign|push`, configurations pushed to
//!   gateways (`[remote_config]`);
//! - [`script`]: `encode` and `codec test`, vendors' JavaScript codecs
//!   (with `lorawan`; `decode --codec js:FILE` too);
//! - [`history`]: `history export` and `passwd` (the dashboard's);
//! - [`replay`]: alert rules over a CSV of past readings;
//! - [`simulate`]: a fleet of sensors against a running gateway;
//! - [`demo`]: an embedded broker, a simulated building and the real
//!   gateway, which the binary starts for it (the tools never depend on
//!   the binary crate: [`demo::StartGateway`]).
//!
//! The protocols' tools are one list, [`ProtocolTool`], which the binary
//! flattens into its subcommands. The config a tool reads (`replay`,
//! `history`) is the binary's own, from `gateway_settings`.

#[cfg(feature = "bacnet")]
pub mod bacnet;
#[cfg(feature = "ble")]
pub mod ble;
#[cfg(any(feature = "lorawan", feature = "ble"))]
pub mod decode;
#[cfg(feature = "ble")]
mod decode_ble;
#[cfg(feature = "lorawan")]
mod decode_join;
#[cfg(feature = "demo")]
pub mod demo;
pub mod fleet;
pub mod history;
#[cfg(feature = "knx")]
pub mod knx;
#[cfg(feature = "modbus")]
pub mod modbus;
pub mod replay;
#[cfg(feature = "lorawan")]
pub mod script;
pub mod simulate;

use std::process::ExitCode;

use anyhow::Context as _;

/// Generates [`ProtocolTool`] and its dispatch from one list: each tool's
/// `cfg`, its help (the variant's doc comment), its arguments and the
/// function that runs it.
macro_rules! protocol_tools {
    (
        $(
            #[cfg($cfg:meta)]
            $(#[doc = $doc:literal])*
            $variant:ident($args:ty) => $run:path
        ),* $(,)?
    ) => {
        /// The protocols' tool subcommands, each built with its protocol's
        /// feature. The binary flattens them into its own subcommands, so
        /// it names no protocol.
        // Parsed once per process and moved once: the size of its biggest
        // variant costs nothing.
        #[allow(clippy::large_enum_variant)]
        #[derive(clap::Subcommand)]
        pub enum ProtocolTool {
            $( #[cfg($cfg)] $(#[doc = $doc])* $variant($args), )*
        }

        impl ProtocolTool {
            /// Runs the tool: its exit code.
            #[must_use]
            pub fn run(self) -> ExitCode {
                match self {
                    $( #[cfg($cfg)] Self::$variant(args) => $run(&args), )*
                }
            }
        }
    };
}

// The one list of the protocols' tool subcommands, in `--help`'s order.
protocol_tools! {
    #[cfg(any(feature = "lorawan", feature = "ble"))]
    /// Decode a LoRaWAN payload with a codec, verify and decrypt a
    /// PHYPayload, or decode a BLE advertisement (--ble, --ble-line).
    Decode(decode::DecodeArgs) => decode::run,
    #[cfg(feature = "lorawan")]
    /// Encode a downlink with a vendor's JavaScript codec (encodeDownlink):
    /// prints {"fPort":…,"bytes":[…]}.
    Encode(script::EncodeArgs) => script::encode,
    #[cfg(feature = "lorawan")]
    /// JavaScript codec tools: `codec test PATH` runs ChirpStack's test
    /// vectors beside each codec.
    Codec(script::CodecArgs) => script::codec,
    #[cfg(feature = "ble")]
    /// Bluetooth LE tools: `ble record` writes the radio's advertisements
    /// as a capture for `source = "replay"`.
    Ble(ble::BleArgs) => ble::main,
    #[cfg(feature = "modbus")]
    /// Modbus tools: `modbus scan` reads a range of a device's registers
    /// and prints each in every type and byte/word order.
    Modbus(modbus::ModbusArgs) => modbus::main,
    #[cfg(feature = "bacnet")]
    /// BACnet tools: `bacnet discover` lists the devices answering Who-Is
    /// and their objects (name, type, instance, units, present value).
    Bacnet(bacnet::BacnetArgs) => bacnet::main,
    #[cfg(feature = "knx")]
    /// KNX tools: `knx discover` lists the KNXnet/IP interfaces and
    /// routers answering a search; `knx monitor` prints every group
    /// telegram on the bus.
    Knx(knx::KnxArgs) => knx::main,
}

/// The multi-threaded runtime a tool that talks to the network runs on,
/// as the gateway's own.
///
/// # Errors
/// The runtime could not start (no threads or no epoll).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
