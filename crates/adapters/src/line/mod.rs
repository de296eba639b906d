//! Line ingress: one set of readings per text line, from TCP clients
//! (`tcp_line`, an ESP32 + BME680) or a serial port (`serial_line`, an
//! ESP-NOW relay board).
//!
//! ```text
//! socket / port ──► framer ──► decode ──► Ingress ──► pipeline
//!   (I/O)           (lines,    (payload     │  Durable + receipt (ack)
//!                   limits)    decoders)    ▼
//!                                        acks ──► "ok N" / "err N reason"
//! ```
//!
//! - `config`: what both kinds share (format, columns, line limit);
//! - `tcp_config`, `serial_config`: their `[[adapter]]` tables;
//! - `framer`: bytes → lines, LF/CRLF (a C string's NULs around them
//!   ignored), `max_line_bytes` (pure);
//! - `decode`: a line → readings or a refusal, counted like MQTT
//!   payloads, with the device rule (pure apart from counters);
//! - `acks`: line numbers and the `ok`/`err` answers (pure);
//! - `connection`: one TCP client (I/O);
//! - `tcp`: the listener (I/O);
//! - `seats`: who holds the listener's connection slots, and which gives
//!   one up when all are taken.
//! - `serial`: the port, reopened when it vanishes (I/O).

pub mod config;
pub mod decode;
pub mod framer;
pub mod kind;

#[cfg(feature = "tcp_line")]
pub mod acks;
#[cfg(feature = "tcp_line")]
mod connection;
#[cfg(feature = "tcp_line")]
mod seats;
#[cfg(all(test, feature = "tcp_line"))]
#[allow(clippy::unwrap_used)]
mod connection_tests;
#[cfg(feature = "tcp_line")]
pub mod tcp;
#[cfg(feature = "tcp_line")]
pub mod tcp_config;
#[cfg(feature = "tcp_line")]
mod unanswered;

#[cfg(feature = "serial")]
pub mod serial;
#[cfg(feature = "serial")]
pub mod serial_config;

#[cfg(feature = "serial")]
pub use serial_config::SerialLineConfig;
#[cfg(feature = "tcp_line")]
pub use tcp_config::TcpLineConfig;
