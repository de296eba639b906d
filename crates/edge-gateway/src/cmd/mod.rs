//! The subcommands; `main.rs` only parses the command line and picks one.
//!
//! - [`run`]: the gateway as a service (signals, reload, status line);
//! - [`validate`]: `validate` and `configfile`;
//! - [`decode`]: a LoRaWAN payload or PHYPayload, decoded (with `lorawan`);
//! - [`replay`]: alert rules over a CSV of past readings;
//! - [`simulate`]: a fleet of sensors against a running gateway;
//! - [`demo`]: the embedded broker and simulated building of the library's
//!   `edge_gateway::demo`, on built-in defaults.

#[cfg(feature = "lorawan")]
pub mod decode;
#[cfg(feature = "demo")]
pub mod demo;
pub mod replay;
pub mod run;
pub mod simulate;
pub mod validate;
