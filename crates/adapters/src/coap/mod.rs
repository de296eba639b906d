//! CoAP (RFC 7252): a server that sensors send readings to, and an Observe
//! (RFC 7641) client that follows resources on devices.
//!
//! - `config`: the `[[adapter]] type = "coap"` and `"coap_observe"` tables;
//! - `message`: strict message checks in front of coap-lite's codec (pure);
//! - `handler`: requests in, replies and readings out, with the duplicate
//!   cache, Block1 reassembly and latest values (pure, time passed in);
//! - `codec`: binary bodies through a LoRaWAN or vendor `js:` codec;
//! - `names`: the device ids and metric names heard lately, found by
//!   their bytes;
//! - `dedup`: the bounded duplicate table the server keeps (its per-peer
//!   rate limit is `gateway_core::rate_limit`, keyed by IP address, not
//!   port: a sender changes ports for free);
//! - `server`: the UDP socket loop;
//! - `psk`, `dtls`: `[[coap.psk]]` identities and the coaps (DTLS-PSK)
//!   socket loop over OpenSSL (`dtls_openssl`: its context and datagram
//!   pipe; `dtls_cookie`: the stateless cookie exchange in front of it);
//! - `observe`: the Observe client (`observe_exchange`: its
//!   retransmissions, and the device's CONs it answered);
//! - `writer`: a command PUT to an actuator's resource (a rule's
//!   `coap_put` action), confirmable and retransmitted.

#[cfg(feature = "lorawan")]
mod codec;
pub mod config;
pub mod dedup;
pub mod dtls;
mod dtls_cookie;
mod dtls_openssl;
pub mod handler;
pub mod kind;
pub mod message;
mod names;
pub mod observe;
mod observe_blocks;
mod observe_exchange;
pub mod psk;
pub mod server;
pub mod writer;

pub use config::{CoapObserveConfig, CoapServerConfig};

/// Retransmissions an adapter recognised (same peer and Message ID within
/// the exchange's lifetime) and answered again without taking them in
/// again: a device whose answer was lost, not an error.
pub const ADAPTER_DUPLICATES: &str = "edge_gateway_adapter_duplicates_total";
pub use observe::CoapObserver;
pub use server::CoapSource;
