//! Giving memory the gateway no longer needs back to the system.
//!
//! - [`heap`]: the C allocator's free pages: kept for the next batch
//!   during a burst, given back once it has passed.
//! - [`code`]: the pages of code only start-up ran (parsing the command
//!   line and gateway.toml, building every component), once running.
//!
//! Both need a C call that Rust has no safe wrapper for, so both live here,
//! in the one crate of the gateway's that allows `unsafe`, and only on the
//! functions that make those calls.

pub mod code;
pub mod heap;
