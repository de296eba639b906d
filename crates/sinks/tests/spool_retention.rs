//! `outbox.max_age` against a wall clock that jumps (issue 51): a restart
//! with the clock 40 days ahead expires nothing until the clock has stayed
//! there past the settling time, and then never more than `max_age` past
//! the newest message; a jump mid-run expires nothing it would not have.
//! Under tokio's paused clock, with the wall clock following it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gateway_core::clock::retention::{RETENTION_DEFERRED, SETTLE};
use gateway_core::clock::EARLIEST_PLAUSIBLE_MS;
use gateway_core::config::FullPolicy;
use gateway_core::{Clock, OutboundMessage, Telemetry, Timestamp, TokioClock};
use sinks::outbox::OutboxSettings;
use sinks::spool::{Spool, SpoolSettings};

const MIN: i64 = 60_000;
const DAY: i64 = 24 * 60 * MIN;
const EXPIRED: &str = "edge_gateway_outbox_dropped_messages_total";

/// Tokio's clock from a start, plus a step the test sets.
struct SteppedClock {
    base: TokioClock,
    step_ms: AtomicI64,
}

impl Clock for SteppedClock {
    fn now(&self) -> Timestamp {
        self.base
            .now()
            .saturating_add_millis(self.step_ms.load(Ordering::Relaxed))
    }
}

fn clock(start_ms: i64) -> Arc<SteppedClock> {
    Arc::new(SteppedClock {
        base: TokioClock::starting_at(Timestamp::from_millis(start_ms).unwrap()),
        step_ms: AtomicI64::new(0),
    })
}

fn message(i: u32) -> OutboundMessage {
    OutboundMessage {
        topic: format!("building/hq/dev{i}/aggregated"),
        payload: format!(r#"{{"id":"{i}"}}"#).into_bytes(),
        retain: false,
    }
}

fn settings() -> SpoolSettings {
    SpoolSettings {
        outbox: OutboxSettings {
            max_bytes: 1 << 20,
            policy: FullPolicy::DropOldest,
            max_age: Some(Duration::from_secs(600)),
        },
        max_queued: 1000,
    }
}

fn expired(t: &Telemetry) -> u64 {
    t.counter_value(EXPIRED, &[("reason", "expired")])
        .unwrap_or(0)
}

/// One housekeeping tick a second, for `secs` seconds of tokio's clock.
async fn run_for(spool: &mut Spool, ticks: &mut u64, secs: u64) {
    for _ in 0..secs {
        spool.housekeeping(*ticks);
        *ticks += 1;
        tokio::time::advance(Duration::from_secs(1)).await;
    }
}

const T: i64 = EARLIEST_PLAUSIBLE_MS + 10 * DAY;

#[tokio::test(start_paused = true)]
async fn a_restart_forty_days_ahead_expires_nothing_until_the_clock_has_settled() {
    let dir = tempfile::tempdir().unwrap();
    let t = Telemetry::default();
    let mut ticks = 0;
    {
        let mut spool = Spool::open(Some(dir.path()), settings(), &t, &[])
            .unwrap()
            .with_clock(clock(T));
        spool.store(vec![message(0)]);
        run_for(&mut spool, &mut ticks, 120).await;
        spool.store(vec![message(1), message(2)]);
        spool.close();
    }
    let t = Telemetry::default();
    let mut spool = Spool::open(Some(dir.path()), settings(), &t, &[])
        .unwrap()
        .with_clock(clock(T + 2 * MIN + 40 * DAY));
    let settle = SETTLE.as_secs();
    run_for(&mut spool, &mut ticks, settle - 10).await;
    assert_eq!(
        spool.outbox().len(),
        3,
        "expired by a clock not yet believed"
    );
    assert_eq!(expired(&t), 0);
    let deferred = t
        .counter_value(RETENTION_DEFERRED, &[("store", "outbox")])
        .unwrap_or(0);
    assert!(deferred > 0, "the skipped expiries are counted");

    run_for(&mut spool, &mut ticks, 20).await;
    assert_eq!(
        expired(&t),
        1,
        "once believed, only what is older than max_age before the newest message goes"
    );
    assert_eq!(spool.outbox().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_jump_of_days_mid_run_expires_nothing_until_the_clock_has_stayed_there() {
    let dir = tempfile::tempdir().unwrap();
    let t = Telemetry::default();
    let c = clock(T);
    let mut spool = Spool::open(Some(dir.path()), settings(), &t, &[])
        .unwrap()
        .with_clock(c.clone());
    let mut ticks = 0;
    // The clock is believed after an hour without a step.
    run_for(&mut spool, &mut ticks, SETTLE.as_secs() + 10).await;
    spool.store(vec![message(0)]);
    run_for(&mut spool, &mut ticks, 60).await;
    spool.store(vec![message(1)]);
    // Five days ahead: nothing is ten minutes old by the monotonic clock.
    c.step_ms.store(5 * DAY, Ordering::Relaxed);
    run_for(&mut spool, &mut ticks, 300).await;
    assert_eq!(expired(&t), 0, "expired by a clock that just jumped");
    assert_eq!(spool.outbox().len(), 2);
    // Back again (NTP): the monotonic clock keeps the pace, and message 0
    // is ten minutes old after ten minutes.
    c.step_ms.store(0, Ordering::Relaxed);
    run_for(&mut spool, &mut ticks, 300).await;
    assert_eq!(expired(&t), 1);
    assert_eq!(spool.outbox().len(), 1);
}
