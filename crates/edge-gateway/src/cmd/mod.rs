//! The subcommands; `main.rs` only parses the command line and picks one.
//!
//! - [`run`]: the gateway as a service (signals, reload, status line);
//! - [`validate`]: `validate` and `configfile`;
//! - [`decode`]: a LoRaWAN payload or PHYPayload, decoded;
//! - [`replay`]: alert rules over a CSV of past readings;
//! - [`simulate`]: a fleet of sensors against a running gateway;
//! - the `demo` lives in the library (`edge_gateway::demo`), started from
//!   [`run::runtime`].

pub mod decode;
pub mod replay;
pub mod run;
pub mod simulate;
pub mod validate;
