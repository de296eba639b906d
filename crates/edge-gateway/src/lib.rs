//! The `edge-gateway` binary's library: wiring only.
//!
//! - [`settings`]: the whole `gateway.toml` (with its `conf.d/` drop-ins and
//!   `EDGE_GATEWAY__` overrides) and the `configfile` template;
//! - [`runtime`]: starting and stopping adapters, the pipeline (the
//!   `pipeline` crate, with its journal and checkpoint), the alert rules'
//!   actions (`rules`) and the outputs (the upstream and `[[sink]]`s in
//!   `sinks`, the `dashboard` crate, Home Assistant);
//! - [`fault_clock`]: the soak's clock-step fault hook;
//! - [`logging`]: the tracing subscriber chosen by `[log]`;
//! - [`metrics`], [`health`], [`process`]: the `/metrics` and `/health`
//!   endpoint; [`status`]: the periodic status log line;
//! - [`memory`]: the allocator's free pages back to the system after a
//!   burst;
//! - `demo`: an embedded broker and a simulated building.

// Without an adapter the gateway has no input at all: say so at build time
// rather than build a binary that only warns about unreachable code.
#[cfg(not(any(
    feature = "mqtt",
    feature = "coap",
    feature = "lorawan",
    feature = "ble",
    feature = "tcp_line",
    feature = "serial",
    feature = "modbus",
    feature = "bacnet"
)))]
compile_error!(
    "edge-gateway needs at least one adapter: --features mqtt (or coap, lorawan, ble, tcp_line, serial, modbus, bacnet, all-protocols)"
);

#[cfg(feature = "demo")]
pub mod demo;
pub mod fault_clock;
pub mod health;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod process;
pub mod runtime;
pub mod settings;
pub mod status;
