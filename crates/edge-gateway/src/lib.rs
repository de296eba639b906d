//! The `edge-gateway` binary's library: wiring only.
//!
//! - [`settings`]: the whole `gateway.toml` (with its `conf.d/` drop-ins and
//!   `EDGE_GATEWAY__` overrides) and the `configfile` template;
//! - [`pipeline`]: the task that owns the aggregator;
//! - [`checkpoint`]: its open windows on disk across restarts;
//! - [`journal`] and [`deliveries`]: readings from redelivering sources on
//!   disk before they are acknowledged, and the copies already taken;
//! - [`messages`]: upstream topics and JSON payloads (the public contract);
//! - [`runtime`]: starting and stopping adapters, pipeline and forwarder;
//! - [`logging`]: the tracing subscriber chosen by `[log]`;
//! - [`metrics`], [`health`], [`process`]: the `/metrics` and `/health` endpoint;
//! - `demo`: an embedded broker and a simulated building.

pub mod actions;
pub mod alerts;
mod binary;
pub mod checkpoint;
pub mod deliveries;
#[cfg(feature = "demo")]
pub mod demo;
pub mod durability;
pub mod health;
pub mod journal;
pub mod logging;
pub mod messages;
pub mod metrics;
pub mod pipeline;
pub mod process;
pub mod runtime;
pub mod settings;
pub mod status;
