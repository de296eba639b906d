//! MQTT: the ingress adapter (local broker → readings) and the upstream
//! forwarder (pipeline → cloud broker).
//!
//! - `config`: the `[[adapter]] type = "mqtt"` table;
//! - `topic`: topic patterns with `{device}`/`{metric}` placeholders (pure);
//! - `connect`: connection options and TLS shared by both directions;
//! - `dispatch`: one received message → readings or a status change (pure);
//! - `source`: the ingress session, acknowledging what is safe;
//! - `upstream`: the forwarder that tracks every message to its PUBACK.

pub mod config;
pub mod connect;
pub mod dispatch;
pub mod source;
pub mod topic;
pub mod upstream;

pub use config::MqttAdapterConfig;
pub use source::MqttSource;
