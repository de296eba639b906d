//! MQTT: the ingress adapter (local broker → readings). The upstream
//! forwarder is an output, in the `sinks` crate.
//!
//! - `config`: the `[[adapter]] type = "mqtt"` table;
//! - `topic`: topic patterns with `{device}`/`{metric}` placeholders (pure);
//! - `dispatch`: one received message → readings or a status change (pure);
//! - `source`: the ingress connection's loop, acknowledging what is safe;
//! - `session`: what that loop keeps across connections, per event;
//! - `subscriptions`: what a persistent broker session is subscribed to,
//!   remembered in `state_dir`, to unsubscribe what the config dropped;
//! - `link`: one connection to the broker (socket, handshake, buffer);
//! - `wire`: the MQTT 3.1.1 packets a subscriber reads and writes (pure);
//! - `writer`: commands for `[[device]] writable` metrics, published on
//!   `command_topic` (the adapter's write side, on its own connection).
//!
//! What the connection is (address, credentials, TLS) is `mqtt-connect`'s,
//! shared with the upstream output and rule actions; the ingress reads its
//! connection itself (`link`, `wire`) rather than through rumqttc's event
//! loop, which cost half of a QoS 0 reading's instructions (issue 69).

pub mod config;
pub mod dispatch;
pub mod kind;
mod link;
mod session;
pub mod source;
mod subscriptions;
pub mod topic;
#[cfg(test)]
mod unsubscribe_tests;
pub mod wire;
pub mod writer;

pub use config::MqttAdapterConfig;
pub use session::RETAINED_IGNORED;
pub use source::MqttSource;
