//! Five journeys of real users, end to end: each starts the peers its
//! system had (Mosquitto, InfluxDB 1.x, headless Chromium, a serial port,
//! libcoap clients, a LoRa packet forwarder, a BLE capture) on loopback,
//! plays the traffic its devices send the way they send it, and checks with
//! exact counts and sums what that system's user looks at.
//!
//! One module per journey under `tests/journeys/`, one test binary, so CI
//! runs them together. A journey reports every broken promise at once
//! (`support::Checks`) rather than stopping at the first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod journeys {
    mod bme680_tcp;
    mod energy_meter;
    mod espnow_serial;
    mod fridge;
    mod smart_building;
    pub mod support;
}
