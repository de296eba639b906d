//! The durable outbox between the pipeline and the upstream broker.
//!
//! Why our own log rather than an embedded database: the outbox must
//! deliver every intact message after a power cut *even when the file's tail
//! is damaged*, and must never refuse to start. A length- and CRC-framed
//! append-only log gives exactly that (skip the bad bytes, resume at the
//! next good record), writes only sequentially (kind to SD cards), costs one
//! fsync per batch, and frees space by deleting whole files. B-tree stores
//! recover from torn commits, but a damaged page makes redb refuse to open
//! (or panic on read) and SQLite stop reading or, in its WAL, silently drop
//! every later commit. Measured against both in `docs/outbox.md`
//! (`bench/outbox-compare/`).

mod fresh;
pub mod record;
mod store;

pub use gateway_core::config::FullPolicy;
pub use store::{AppendFailed, Appended, Damage, Outbox, OutboxError, OutboxSettings, Recovery};

#[cfg(test)]
mod tests;
