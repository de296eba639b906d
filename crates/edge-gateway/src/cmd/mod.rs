//! The subcommands; `main.rs` only parses the command line and picks one.
//!
//! - [`run`]: the gateway as a service (signals, reload, status line);
//! - [`validate`]: `validate` and `configfile`;
//! - [`decode`]: a LoRaWAN payload or PHYPayload, decoded (with `lorawan`),
//!   or a BLE advertisement (with `ble`, in `decode_ble`);
//! - [`ble`]: `ble record`, advertisements from the radio as a capture
//!   (with `ble`);
//! - [`modbus`]: `modbus scan`, a range of a device's registers in every
//!   type and order (with `modbus`);
//! - [`bacnet`]: `bacnet discover`, the devices answering Who-Is and
//!   their points (with `bacnet`);
//! - [`history`]: `history export` and `passwd` (the dashboard's);
//! - [`replay`]: alert rules over a CSV of past readings;
//! - [`simulate`]: a fleet of sensors against a running gateway;
//! - [`demo`]: the embedded broker and simulated building of the library's
//!   `edge_gateway::demo`, on built-in defaults.

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
pub mod history;
#[cfg(feature = "modbus")]
pub mod modbus;
pub mod replay;
pub mod run;
pub mod simulate;
pub mod validate;
