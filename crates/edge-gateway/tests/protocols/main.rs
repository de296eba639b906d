//! Each protocol end to end: the real gateway binary against real peers (Mosquitto, libcoap's clients, a LoRa packet forwarder's datagrams, BLE captures and a mock BlueZ, serial ptys, TCP nodes), and the `decode` tools.
//!
//! One test binary per theme (not one per file): each binary links the
//! whole gateway, and the tests of a theme share one pool of test threads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

mod bacnet;
mod bacnet_attacks;
mod bacnet_duplicate;
mod bacnet_faults;
mod bacnet_outputs;
mod ble;
mod ble_radio;
mod coap;
mod coaps;
mod decode;
mod decode_ble;
mod end_to_end;
mod firmware_codec;
mod ingress_session;
mod input_abuse;
mod knx;
mod knx_attacks;
mod lorawan;
mod lorawan_codecs;
mod lorawan_otaa;
mod modbus;
mod modbus_faults;
mod mqtt_tls;
mod oversized;
mod payload_codecs;
mod serial_dropin;
mod serial_line;
mod tcp_line;
