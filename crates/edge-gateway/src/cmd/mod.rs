//! The subcommands that run or check the gateway itself; `main.rs` only
//! parses the command line and picks one (the tools are
//! `edge_gateway_tools`').
//!
//! - [`run`]: the gateway as a service (signals, reload, status line), and
//!   the gateway the demo runs;
//! - [`validate`]: `validate` and `configfile`.

pub mod run;
pub mod validate;
