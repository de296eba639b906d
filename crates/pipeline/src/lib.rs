//! The pipeline: the one task between the adapters and the outputs, and
//! what makes an accepted reading survive a crash. It builds and is tested
//! without the dashboard, HTTP, the command line or any output: outputs
//! reach it only as receivers of `gateway_core::event::SinkEvent`s.
//!
//! - [`Pipeline`] (`task.rs`, with `task/ingest.rs` and
//!   `task/journaled.rs`): owns the aggregator; admits messages, adds their
//!   readings to windows, runs the alert rules (`rules::alerts`), closes
//!   windows on time and checkpoints them;
//! - [`clock_guard`]: readings held while the wall clock is implausible
//!   (a Pi before NTP), re-stamped once it is set, and clock steps counted;
//! - [`durability`]: what survives a crash: the checkpoint of open windows,
//!   the journal of acknowledged readings since (group commit on a blocking
//!   thread, `durability::committer`), and the copies already taken
//!   (`docs/durability.md`);
//! - [`fanout`]: the one stream of typed events to every output (one event
//!   per reading batch, window, alert transition and status) and the one
//!   flush handshake over every durable output.

pub mod clock_guard;
pub mod durability;
pub mod fanout;
mod task;

pub use task::Pipeline;

/// Readings too late for their window when they came: placed by their
/// own time, in a late amendment when the window was sent already (none
/// is dropped: `task/ingest.rs`, `place_own_time`).
pub const LATE_READINGS: &str = "edge_gateway_aggregator_late_readings_total";
/// Readings stamped further ahead of the gateway clock than `max_future`:
/// placed by their own time up to a day ahead (the gateway clock may be
/// the one that is wrong); beyond that they are refused, before the
/// acknowledgement where the input acknowledges.
pub const FUTURE_READINGS: &str = "edge_gateway_aggregator_future_readings_total";
/// Window statistics forwarded (one per device and window).
pub const WINDOWS_EMITTED: &str = "edge_gateway_aggregator_windows_emitted_total";
/// Readings the aggregator refused for a reason other than time, labelled
/// `reason` (`max_series`).
pub const DROPPED_READINGS: &str = "edge_gateway_aggregator_dropped_readings_total";
