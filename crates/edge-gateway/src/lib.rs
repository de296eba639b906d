//! The `edge-gateway` binary's library: wiring only.
//!
//! - [`settings`]: the whole `gateway.toml` (with its `conf.d/` drop-ins and
//!   `EDGE_GATEWAY__` overrides) and the `configfile` template, from the
//!   `gateway_settings` crate, which the tools read too;
//! - [`runtime`]: starting and stopping adapters, the pipeline (the
//!   `pipeline` crate, with its journal and checkpoint), the alert rules'
//!   actions (`rules`) and the outputs (the upstream and `[[sink]]`s in
//!   `sinks`, the `dashboard` crate, Home Assistant);
//! - [`command_runner`]: which ways commands come in, where results go;
//! - [`fault_clock`]: the soak's clock-step fault hook;
//! - [`hangup`]: SIGHUP held from the start of `run`, across a restart in
//!   place, until the reload handler takes it;
//! - [`logging`]: the tracing subscriber chosen by `[log]`;
//! - [`metrics`], [`health`], [`process`]: the `/metrics` and `/health`
//!   endpoint; [`status`]: the periodic status log line;
//! - [`remote_config`]: configuration pushed from the cloud (applied by a
//!   restart in place, health-gated, rolled back, reported);
//! - [`memory`]: the allocator's free pages back to the system after a
//!   burst.
//!
//! The tool subcommands (demo, simulate, decode, replay, history, ble
//! record, modbus scan, bacnet discover) are the `edge_gateway_tools`
//! crate's; no crate depends on this one.

// Without an adapter the gateway has no input at all: say so at build time
// rather than build a binary that only warns about unreachable code. The
// adapters built in are those the `adapters` crate declares, so no list of
// features here can drift from them.
const _: () = assert!(
    !adapters::DECLARATIONS.is_empty(),
    "edge-gateway needs at least one adapter: --features all-protocols, or one adapter's feature (mqtt, coap, ...: see docs/architecture.md)"
);

pub mod command_runner;
pub mod fault_clock;
pub mod hangup;
pub mod health;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod process;
pub mod remote_config;
pub mod runtime;
pub use gateway_settings as settings;
pub mod status;
