//! The `edge-gateway` binary's library: wiring only.
//!
//! - [`settings`]: the whole `gateway.toml` (with its `conf.d/` drop-ins and
//!   `EDGE_GATEWAY__` overrides) and the `configfile` template;
//! - [`pipeline`]: the task that owns the aggregator;
//! - [`clock_guard`]: readings held while the wall clock is implausible
//!   (a Pi before NTP), re-stamped once it is set;
//! - [`durability`]: what survives a crash: the checkpoint of open windows,
//!   the journal of acknowledged readings since, and the copies already
//!   taken (`docs/durability.md`);
//! - [`alerts`] and [`actions`]: the alert rules' state on disk and their
//!   local actions (an MQTT publish or a CoAP PUT to an actuator);
//! - [`fanout`]: the pipeline's one stream of typed events to every output
//!   (the upstream, which renders its topics and JSON payloads in
//!   `sinks::mqtt_upstream`, the `[[sink]]`s, the dashboard, Home
//!   Assistant) and one flush handshake over every durable output;
//! - [`runtime`]: starting and stopping adapters, pipeline and outputs;
//! - [`logging`]: the tracing subscriber chosen by `[log]`;
//! - [`metrics`], [`health`], [`process`]: the `/metrics` and `/health`
//!   endpoint; [`status`]: the periodic status log line;
//! - `demo`: an embedded broker and a simulated building.

// Without an adapter the gateway has no input at all: say so at build time
// rather than build a binary that only warns about unreachable code.
#[cfg(not(any(
    feature = "mqtt",
    feature = "coap",
    feature = "lorawan",
    feature = "ble",
    feature = "tcp_line",
    feature = "serial"
)))]
compile_error!(
    "edge-gateway needs at least one adapter: --features mqtt (or coap, lorawan, ble, tcp_line, serial, all-protocols)"
);

pub mod actions;
pub mod alerts;
pub mod clock_guard;
#[cfg(feature = "demo")]
pub mod demo;
pub mod durability;
pub mod fanout;
pub mod fault_clock;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod process;
pub mod runtime;
pub mod settings;
pub mod status;
