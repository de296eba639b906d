//! The on-device history the pages read: the store lives in
//! `gateway_core::history` (a log of our own, beside the outbox's), so its
//! comparison with redb (`bench/history-compare`) builds without the
//! gateway.

pub use gateway_core::history::*;
