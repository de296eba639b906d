//! BACnet/IP: the building management system itself (air handlers, VAV
//! boxes, chillers, room controllers), read as a client over UDP.
//!
//! ```text
//!  [[bacnet.device]]s ──► source (one task per device: discover, object
//!                          list, names and units, poll or COV)
//!                               │ ▲
//!                  client (one UDP socket, invoke ids, retries,
//!                          segment reassembly, I-Am and COV dispatch)
//!                               │ ▲
//!  frame = bvlc + npdu + apdu + services, on tags (the codec, pure)
//! ```
//!
//! The codec is our own (docs/bacnet.md says why): `tags` (application
//! and context tags, object ids, values), `bvlc` (Annex J), `npdu` (§6),
//! `apdu` (the eight PDU types), `services` (Who-Is/I-Am, ReadProperty,
//! ReadPropertyMultiple, WriteProperty, SubscribeCOV, COV notifications),
//! `segment` (segmented ComplexACK reassembly) and `frame` (a whole
//! datagram, the fuzzed boundary), all pure.
//! Around it: `units` (BACnet units onto the gateway's table), `names`
//! (metric names from object names), `cov` (which notifications are
//! ours), `client` (the I/O), `config` and
//! `devices` (`[[adapter]] type = "bacnet"`, `[[bacnet.device]]`),
//! `binding` (which address a device is read at when several answer for
//! its instance), `values` (samples and notifications as readings),
//! `source` (the adapter), `writer` (commands from the cloud:
//! WriteProperty of declared objects) and `discover` (`edge-gateway
//! bacnet discover`).

pub mod apdu;
pub mod binding;
pub mod bvlc;
pub mod client;
pub mod config;
pub mod cov;
pub mod device;
pub mod devices;
pub mod discover;
pub mod error_codes;
pub mod frame;
pub mod kind;
pub mod names;
pub mod npdu;
pub mod point;
pub mod poll;
pub mod reader;
mod requests;
pub mod segment;
pub mod services;
pub mod source;
pub mod tags;
// The `edge-gateway bacnet …` subcommand, built into the binary's tools.
#[cfg(feature = "tools")]
pub mod tool;
pub mod units;
mod values;
pub mod writer;

pub use config::BacnetConfig;
pub use devices::{BacnetDevice, BacnetSection};
pub use frame::CodecError;

#[cfg(test)]
mod codec_tests;
