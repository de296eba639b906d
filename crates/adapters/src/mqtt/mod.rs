//! MQTT: the ingress adapter (local broker → readings). The upstream
//! forwarder is an output, in the `sinks` crate.
//!
//! - `config`: the `[[adapter]] type = "mqtt"` table;
//! - `topic`: topic patterns with `{device}`/`{metric}` placeholders (pure);
//! - `dispatch`: one received message → readings or a status change (pure);
//! - `source`: the ingress connection's loop, acknowledging what is safe;
//! - `session`: what that loop keeps across connections, per event;
//! - `writer`: commands for `[[device]] writable` metrics, published on
//!   `command_topic` (the adapter's write side, on its own connection).
//!
//! The connection itself (address, credentials, TLS) is `mqtt-connect`'s,
//! shared with the upstream output and rule actions.

pub mod config;
pub mod dispatch;
pub mod kind;
mod session;
pub mod source;
pub mod topic;
pub mod writer;

pub use config::MqttAdapterConfig;
pub use session::RETAINED_IGNORED;
pub use source::MqttSource;
