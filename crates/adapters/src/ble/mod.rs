//! BLE: from one advertisement to verified readings.
//!
//! ```text
//! Advertisement (MAC, RSSI, time, service data by UUID, manufacturer data
//! by company id; from the radio, or a recorded JSONL line: advert)
//!   ──► dispatch (which decoder; downgrade; state across advertisements)
//!         ├─ 0xFCD2 ──► bthome (device info, objects: bthome_objects)
//!         │               └─ encrypted ──► bthome_crypto (AES-CCM) ──► replay (counters)
//!         ├─ 0x181A ──► xiaomi (PVVX custom, ATC1441)
//!         └─ 0x0499 ──► ruuvi (RAWv2)
//!   ──► dedup (packet id, sequence) ──► Outcome: values (values) | duplicate
//!       | refused (error) | not understood (ids to count)
//! ```
//!
//! The decoding modules are pure: bytes and a monotonic time in, typed
//! values or a typed error out, never a panic, never a clock read, no I/O.
//! The adapter wraps [`dispatch::BleDecoder`] from outside:
//!
//! ```text
//! radio (btleplug, under watchdog) ─┐
//!                                   ├─► source (decode, counters file, metrics) ─► pipeline
//! replay_source (JSONL capture) ────┘
//! ```
//!
//! - `advert`: [`Advertisement`], [`Mac`], [`ServiceUuid`], the JSONL line.
//! - `bthome`: BTHome v2 header and object parsing, decryption, downgrade.
//! - `bthome_objects`: the object id table (name, size, sign, factor).
//! - `bthome_crypto`: [`BindKey`], nonce, AES-CCM open and seal.
//! - `replay`: [`CounterTable`], last encryption counter per device.
//! - `dedup`: packet-id window and sequence repeats, bounded.
//! - `ruuvi`: RuuviTag data format 5.
//! - `xiaomi`: PVVX custom and ATC1441 thermometer frames.
//! - `values`: [`Measurement`] names and the `_2` postfix.
//! - `error`: [`DecodeError`], one `kind()` label per refusal.
//! - `dispatch`: [`BleDecoder`], [`Outcome`].
//! - `config`: `[[adapter]] type = "ble"` and `[[ble.device]]` (bindkeys).
//! - `counter_file`: the counters in `{state_dir}/ble-counters.json`.
//! - `replay_source`: a recorded capture played as advertisements.
//! - `watchdog`: the [`watchdog::Radio`] interface and the silence ladder.
//! - `radio`: BlueZ through btleplug (the only module touching D-Bus).
//! - `source`: the adapter's loop, from advertisements to readings.

pub mod advert;
pub mod bthome;
pub mod bthome_crypto;
pub mod bthome_objects;
pub mod config;
pub mod counter_file;
pub mod dedup;
pub mod dispatch;
pub mod error;
pub mod kind;
pub mod radio;
pub mod replay;
pub mod replay_source;
pub mod ruuvi;
pub mod source;
// The `edge-gateway ble …` subcommand, built into the binary's tools.
#[cfg(feature = "tools")]
pub mod tool;
pub mod values;
pub mod watchdog;
pub mod xiaomi;

pub use advert::{AdvertError, Advertisement, Mac, ServiceUuid};
pub use bthome_crypto::BindKey;
pub use dispatch::{BleDecoder, Decoded, Format, Outcome, Unrecognised};
pub use error::DecodeError;
pub use replay::CounterTable;
pub use values::{Measurement, Measurements};

#[cfg(test)]
mod vectors_tests;
