//! The command line and config as a user meets them: subcommands, layered config and drop-ins, the demo, logs, reload, replay, secrets, simulate, and the map in docs/architecture.md.
//!
//! One test binary per theme (not one per file): each binary links the
//! whole gateway, and the tests of a theme share one pool of test threads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

mod architecture;
mod cli;
mod config_layers;
mod config_safety;
mod demo;
mod history_commands;
mod hot_first_link;
mod log_throttle;
mod logging;
mod reload;
mod reload_many_sources;
mod reload_slow_broker;
mod reload_traffic;
mod reload_unsubscribe;
mod replay;
mod secrets;
mod simulate;
mod timezone;
