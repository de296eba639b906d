//! Everything a `[[rule]]` does, in one place: the engine (threshold, rate,
//! silence and anomaly rules), the raise/clear/cooldown state machine they
//! share, and the alerts as the running gateway keeps them (state on disk,
//! counters, local actions).
//!
//! The engine is pure logic in event time, like the aggregator: no sockets,
//! no clock of its own (every call takes the time), deterministic results,
//! so the live gateway and `replay` get the same alerts. Only the last two
//! modules touch the world, so the engine's tests need no runtime. The rules themselves
//! (`RuleConfig`) are parsed and validated with the rest of `gateway.toml`
//! in `gateway_core::config::rule`; the learned detector an anomaly rule
//! runs is the `anomaly` crate.
//!
//! - [`engine`]: readings, status changes and ticks in, alerts out; finds
//!   the rules and the state (per rule × device × metric, or per device)
//!   each input concerns, and persists that state by rule name.
//! - `kinds`: what each of the four kinds judges: a threshold its
//!   bounds, a rate its change within the span, a silence the time since
//!   its device spoke, an anomaly rule the detector's (or the device
//!   model's) verdict.
//! - [`rate`]: what a rate rule compares (each reading against the lowest
//!   and highest of its span, in bounded memory).
//! - [`trigger`]: the raise/clear state machine the kinds share (minimum
//!   duration, hysteresis-widened clear, one clear per raise, cooldown, and
//!   `suppressed` for a raise the cooldown held back).
//! - [`alerts`]: the engine as the pipeline runs it: its learned state kept
//!   in `{state_dir}/alerts.json`, the device models refitted on a blocking
//!   thread, transitions counted, logged and handed to their actions.
//! - [`actions`]: the local actions, an output of their own: each alert
//!   acted on becomes a command for the command runner (journal, rate,
//!   result), written by an adapter, so a slow actuator never stalls the
//!   pipeline and the rules hold no connection.

pub mod actions;
pub mod alerts;
pub mod engine;
mod kinds;
pub mod rate;
pub mod trigger;

pub use engine::{Alert, Engine, EngineState, Evidence, FitJob};
pub use trigger::AlertState;

/// The alert kinds the rules produce, as they appear upstream in the
/// `kind` field of an alert.
pub const ALERT_KINDS: [&str; 4] = ["threshold", "rate", "silence", "anomaly"];
