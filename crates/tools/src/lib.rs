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
//! The config a tool reads (`replay`, `history`) is the binary's own,
//! from `gateway_settings`.

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

use anyhow::Context as _;

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
