//! The `edge-gateway` binary's tool subcommands: everything it offers
//! besides running the gateway. The binary parses the command line and
//! hands each tool its arguments; a tool returns the process's exit code.
//!
//! - [`decode`]: a LoRaWAN payload or PHYPayload, decoded (with
//!   `lorawan`, the join messages in `decode_join`), or a BLE advertisement
//!   (with `ble`, in `decode_ble`);
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
//! An adapter family's own subcommand (`ble record`, `modbus scan`,
//! `bacnet discover`, `knx discover|monitor`) lives in its folder
//! (`adapters/src/<family>/tool.rs`) and is listed with the family in
//! `adapters`' registry: [`adapters::AdapterTool`]. The tools here that
//! span protocols or are not an adapter's (`decode`, `encode`, `codec`)
//! are [`ProtocolTool`], which flattens the adapters' list into itself;
//! the binary flattens [`ProtocolTool`] into its subcommands.
//!
//! The config a tool reads (`replay`, `history`) is the binary's own, from
//! `gateway_settings`.

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
pub mod replay;
#[cfg(feature = "lorawan")]
pub mod script;
pub mod simulate;

use std::process::ExitCode;

use anyhow::Context as _;

/// The tool subcommands the binary flattens into its own, so that it
/// names no protocol: this crate's, each built with its protocol's
/// feature, then the adapter families' own, in `--help`'s order.
// Parsed once per process and moved once: the size of its biggest variant
// costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(clap::Subcommand)]
pub enum ProtocolTool {
    #[cfg(any(feature = "lorawan", feature = "ble"))]
    /// Decode a LoRaWAN payload with a codec, verify and decrypt a
    /// PHYPayload, or decode a BLE advertisement (--ble, --ble-line).
    Decode(decode::DecodeArgs),
    #[cfg(feature = "lorawan")]
    /// Encode a downlink with a vendor's JavaScript codec (encodeDownlink):
    /// prints {"fPort":…,"bytes":[…]}.
    Encode(script::EncodeArgs),
    #[cfg(feature = "lorawan")]
    /// JavaScript codec tools: `codec test PATH` runs ChirpStack's test
    /// vectors beside each codec.
    Codec(script::CodecArgs),
    // `ble record`, `modbus scan`, `bacnet discover`, `knx discover|monitor`:
    // each in its family's folder, listed with the family.
    #[command(flatten)]
    Adapter(adapters::AdapterTool),
}

impl ProtocolTool {
    /// Runs the tool: its exit code.
    #[must_use]
    pub fn run(self) -> ExitCode {
        match self {
            #[cfg(any(feature = "lorawan", feature = "ble"))]
            Self::Decode(args) => decode::run(&args),
            #[cfg(feature = "lorawan")]
            Self::Encode(args) => script::encode(&args),
            #[cfg(feature = "lorawan")]
            Self::Codec(args) => script::codec(&args),
            Self::Adapter(tool) => tool.run(),
        }
    }
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
