//! When the next journal sync may start.
//!
//! Group commit starts the next batch the moment the one in flight is
//! durable. Under light load (an MQTT QoS 1 session's 20 messages in
//! flight, a node that waits for each `ok`) that is right: the batch is
//! what waits, and every millisecond of waiting is a millisecond of
//! latency the source feels, and for QoS 1 a millisecond of throughput.
//!
//! Under a sustained flood (acknowledged TCP lines streaming in) it syncs
//! far more often than it has to. An fdatasync costs about the same CPU
//! whether it holds ten lines or a thousand (on a 2-core VM, 80–170 µs of
//! the gateway's CPU each, virtio notifications and the inode write), and
//! the disk's completion interrupts land on whichever process runs, the
//! sender's included. Measured on `tcp_line` with `ack` beside a busy
//! core: about 1 000 syncs per million lines, and the gateway's CPU per
//! line 0.78 µs against 0.60 µs with the syncs left out.
//!
//! So while batches are large (at least [`BUSY_BATCH_BYTES`]: records
//! arrive faster than the disk syncs them), a batch starts no sooner than
//! [`MIN_INTERVAL`] after the one before it started, unless [`MAX_BATCH`]
//! messages wait by then: at most 200 syncs a second under a flood, each
//! `ok` up to 5 ms later. Alternating ten runs each of a million lines
//! beside a busy core: 207 syncs instead of 957, 4 500 context switches
//! instead of 11 100, and 0.66 µs of gateway CPU a line instead of 0.84
//! (medians). A disk whose syncs take longer than that (an SD card) never
//! waits. Small batches never wait, so a QoS 1 session or a node that
//! sends a line at a time is answered as before, unless a flood shares
//! the journal with it. Commits that something waits on (a window about
//! to close, a checkpoint, a stop) do not wait either.

use std::time::Duration;

use tokio::time::Instant;

use super::journal::MAX_BATCH;

/// A batch this large (about 750 BME680 lines) means records are
/// streaming in faster than the disk syncs them.
pub const BUSY_BATCH_BYTES: u64 = 32 * 1024;
/// The shortest time from one batch's start to the next one's under a
/// flood (Kafka's producers linger 5 ms by default, for the same reason).
pub const MIN_INTERVAL: Duration = Duration::from_millis(5);

#[derive(Debug, Default)]
pub struct SyncPacing {
    /// The next batch does not start before this, unless it fills.
    hold_until: Option<Instant>,
}

impl SyncPacing {
    /// A batch of `bytes` was synced in `took`, at `now`.
    pub fn synced(&mut self, bytes: u64, took: Duration, now: Instant) {
        self.hold_until =
            (bytes >= BUSY_BATCH_BYTES).then(|| now + MIN_INTERVAL.saturating_sub(took));
    }

    /// A write failed: its retry follows its own rule, not this one.
    pub fn clear(&mut self) {
        self.hold_until = None;
    }

    /// Until when a batch of `waiting` messages is held back at `now`:
    /// none when it may start.
    pub fn held_until(&self, waiting: usize, now: Instant) -> Option<Instant> {
        self.hold_until
            .filter(|until| *until > now && waiting < MAX_BATCH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_flood_waits_and_never_past_the_interval_from_its_last_start() {
        let now = Instant::now();
        let mut p = SyncPacing::default();
        assert_eq!(p.held_until(1, now), None, "nothing synced yet");

        p.synced(BUSY_BATCH_BYTES - 1, Duration::from_millis(1), now);
        assert_eq!(p.held_until(1, now), None, "a small batch: answer at once");

        let fast = Duration::from_millis(1);
        p.synced(BUSY_BATCH_BYTES, fast, now);
        let until = now + MIN_INTERVAL - fast;
        assert_eq!(p.held_until(1, now), Some(until));
        assert_eq!(p.held_until(1, until), None, "the wait is over");
        assert_eq!(p.held_until(MAX_BATCH, now), None, "a full batch goes");

        p.synced(BUSY_BATCH_BYTES, Duration::from_millis(30), now);
        assert_eq!(p.held_until(1, now), None, "an SD card's slow sync");

        p.synced(BUSY_BATCH_BYTES, fast, now);
        p.clear();
        assert_eq!(
            p.held_until(1, now),
            None,
            "a failed write retries as before"
        );
    }
}
