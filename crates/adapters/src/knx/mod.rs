//! KNX: the rooms (room controllers, presence and CO2 sensors, lighting
//! and blind actuators, weather stations), reached through a KNXnet/IP
//! interface (tunnelling, over UDP or TCP) or router (multicast routing).
//!
//! ```text
//!  [[knx.group]]s / ETS export ──► source (group address → device and
//!                                   metric, DPT decode, reads on start
//!                                   and by poll, paced)
//!                                       │ ▲
//!                   link (tunnel: connect, heartbeat, sequence and ack,
//!                         one resend, reconnect; or routing multicast)
//!                                       │ ▲
//!  frame (KNXnet/IP) + cemi (L_Data, group services) + dpt (the codec, pure)
//! ```
//!
//! The codec is our own (docs/knx.md says why): `address` (group and
//! individual addresses in every notation), `frame` (KNXnet/IP header,
//! HPAI, connection, tunnelling, routing and search services: the fuzzed
//! boundary), `cemi` (L_Data and the group services inside), `dpt`
//! (datapoint types to numbers with units and back), all pure. Around it:
//! `config` (`[[adapter]] type = "knx"`), `groups` (`[[knx.group]]`),
//! `ets` (ETS's group-address CSV export), `link` (what the source and
//! the writer ask of a connection), `tunnel` (UDP and TCP tunnelling;
//! `tunnel_connect`, its connection and socket),
//! `routing` (multicast), `source` (the adapter), `writer` (commands from
//! the cloud as GroupValueWrite) and `discover` (`edge-gateway knx
//! discover`; `knx monitor` is in `crates/tools`).

pub mod address;
pub mod cemi;
pub mod config;
pub mod discover;
pub mod dpt;
mod dpt_float;
pub mod ets;
pub mod frame;
pub mod groups;
pub mod kind;
pub mod link;
pub mod routing;
pub mod source;
// The `edge-gateway knx …` subcommand, built into the binary's tools.
#[cfg(feature = "tools")]
pub mod tool;
pub mod tunnel;
mod tunnel_connect;
pub mod writer;

pub use config::KnxConfig;
pub use frame::CodecError;
pub use groups::{KnxGroup, KnxSection};
