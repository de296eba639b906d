//! The shared model of the edge gateway.
//!
//! Data flows `adapters → pipeline (aggregator, anomaly) → upstream`. This crate
//! holds what every stage agrees on and nothing protocol-specific:
//!
//! - [`model`]: readings, device ids, metric names, timestamps;
//! - [`config`]: typed `gateway.toml` sections, their defaults, the merge of
//!   the file with its `conf.d/` drop-ins and `EDGE_GATEWAY__` variables, the
//!   loader that reports every problem with its key path and source, and the
//!   `configfile` template;
//! - [`component`]: the adapter interface every protocol implements;
//! - [`event`]: the output interface: what the pipeline hands every output
//!   (the upstream, `[[sink]]`s, the dashboard, Home Assistant), so the
//!   pipeline knows no output by name;
//! - [`net`]: accepting TCP connections alike in every HTTP endpoint;
//! - [`telemetry`]: counters with explicit handles, rendered as Prometheus text;
//! - [`refusal`]: refusing an adapter's input alike everywhere: counted by
//!   reason, warned at most once per interval;
//! - [`rate_limit`]: token buckets per key (CoAP peers, commands per device);
//! - [`registry`]: the device registry (id → human name and tags);
//! - [`hardware_address`]: MACs and EUIs as one device id in any notation;
//! - [`csv`]: text cells of the CSV files the gateway writes, safe to open
//!   in a spreadsheet.

pub mod backoff;
pub mod cache_release;
pub mod clock;
pub mod command;
pub mod component;
pub mod config;
pub mod csv;
pub mod deadline;
pub mod event;
pub mod hardware_address;
pub mod hash;
pub mod id_text;
pub mod link_status;
pub mod model;
pub mod net;
pub mod output;
pub mod rate_limit;
pub mod refusal;
pub mod registry;
pub mod state_file;
pub mod stdout;
pub mod telemetry;
pub mod units;

pub use clock::{Clock, SystemClock, TokioClock};
pub use component::{
    Adapter, AdapterContext, AdapterError, AdapterStats, DeliveryKey, DeviceModel, Ingress,
    KindInfo, OutboundMessage, Receipt, ReceiptWaiter, SourceInfo, Sources,
};
pub use model::{
    DeviceId, DeviceState, MetricName, ModelError, Reading, SourceId, StatusChange, Subject,
    TimeSource, Timestamp,
};
pub use registry::DeviceRegistry;
pub use telemetry::Telemetry;
