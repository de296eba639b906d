//! Modbus TCP and RTU: the energy meters, heat pumps and air handlers a
//! building already has, polled by register map.
//!
//! ```text
//!  [[modbus.device]]s ──► plan (grouped reads) ──► poller (schedule, verdicts)
//!                                                     │ ▲
//!                                         one task per bus: source
//!                                                     ▼ │
//!              link (our MBAP framing over TCP; our RTU line: frames checked,
//!                    silence, draining, units kept in step)
//!                                                     │
//!                                TCP connection or RS-485 serial port
//! ```
//!
//! - `config`: `[[adapter]] type = "modbus"`, one per bus (TCP `url` or
//!   serial `path` with the line's settings), and the template;
//! - `devices`: `[[modbus.device]]`, register maps and profiles merged,
//!   checked against the adapters in the same file;
//! - `registers`: a register's type, byte/word order, scale and offset;
//!   decoding, and the encoding a write will use (pure);
//! - `plan`: a device's registers grouped into reads, split on refusal
//!   (pure);
//! - `profiles`: the shipped maps (Eastron SDM120, SDM630, Systemair SAVE),
//!   each with its vendor document;
//! - `poller`: when each device is read, backoff, online/offline, what an
//!   answer means (pure, time passed in);
//! - `frame`: requests, RTU frames and answers checked against their
//!   request (pure);
//! - `step`: keeping an RTU unit's answers in step with its requests
//!   after late or doubled answers (pure);
//! - `link`: one connection or serial line (I/O);
//! - `tcp`: a Modbus TCP connection: MBAP framing, transaction ids (I/O);
//! - `rtu`: an RTU line: framing, silence, draining, probes (I/O);
//! - `source`: the bus task that owns the link and queues its units (I/O),
//!   and in `source_notices.rs` what it says of them (counters, logs,
//!   device states);
//! - `writer`: commands for `writable = true` registers: checked, queued
//!   to the bus task, written and read back;
//! - `scan`: every register of a range in every type and order, for
//!   `edge-gateway modbus scan` (pure rendering).

pub mod config;
pub mod devices;
pub mod frame;
pub mod kind;
pub mod link;
pub mod plan;
pub mod poller;
pub mod profiles;
pub mod registers;
pub mod rtu;
pub mod scan;
pub mod source;
pub mod step;
mod tcp;
// The `edge-gateway modbus …` subcommand, built into the binary's tools.
#[cfg(feature = "tools")]
pub mod tool;
pub mod writer;

pub use config::ModbusConfig;
pub use devices::{ModbusDevice, ModbusSection};
