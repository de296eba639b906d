//! What must survive: kill -9 at every step (of the pipeline, and of applying a pushed configuration), a restart with the clock 40 days ahead, damaged state files, a full disk, cloud outages with restarts, the outbox's policies, clean shutdown and the state directory's lock.
//!
//! One test binary per theme (not one per file): each binary links the
//! whole gateway, and the tests of a theme share one pool of test threads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

mod alerts_crash;
mod clock_ahead_restart;
mod crash;
mod damaged_state;
mod full_disk;
mod held_line_resent;
mod held_receipts;
mod held_timeless_line_resent;
mod influxdb_crash;
mod no_upstream;
mod outage_restarts;
mod outbox;
mod own_time_full_disk;
mod own_time_soak;
mod remote_config_crash;
mod remote_config_damaged;
mod shutdown;
mod state_dir_lock;
mod tmpfs;
