//! What the pipeline does under hostile or broken input, under tokio's
//! paused clock: a flood of made-up series against
//! `aggregation.max_series`, and a wall clock that is wrong (a Pi booting
//! in 1970 without a real-time clock) or steps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aggregator::{Aggregator, WindowSpec};
use gateway_core::{
    Clock, DeviceId, DeviceRegistry, Ingress, MetricName, OutboundMessage, Reading, Telemetry,
    TimeSource, Timestamp, TokioClock,
};
use pipeline::clock_guard::{CLOCK_STEPS, HELD_READINGS, MAX_HELD_READINGS};
use pipeline::durability::Durability;
use pipeline::{Pipeline, DROPPED_READINGS};
use tokio::sync::mpsc;

mod in_process;

const START: &str = "2026-11-21T10:00:00Z";

struct Harness {
    tx: mpsc::Sender<Ingress>,
    out: mpsc::Receiver<OutboundMessage>,
    telemetry: Telemetry,
}

fn ts(rfc3339: &str) -> Timestamp {
    Timestamp::parse_rfc3339(rfc3339).unwrap()
}

fn start(aggregator: Aggregator, clock: Arc<dyn Clock>) -> Harness {
    let telemetry = Telemetry::default();
    let (out_tx, out) = mpsc::channel(1024);
    let outputs = in_process::upstream_into(DeviceRegistry::default(), out_tx);
    let pipeline = Pipeline {
        aggregator,
        clock,
        telemetry: telemetry.clone(),
        durability: Durability::in_memory(&telemetry),
        outbox_flush: None,
        alerts: None,
        outputs,
    };
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(pipeline.run(rx));
    Harness { tx, out, telemetry }
}

fn spec() -> WindowSpec {
    WindowSpec {
        window_ms: 60_000,
        grace_ms: 5_000,
        max_future_ms: 60_000,
    }
}

fn reading(device: &str, value: f64, at: Timestamp) -> Reading {
    stamped(device, value, at, TimeSource::Event)
}

fn stamped(device: &str, value: f64, at: Timestamp, source: TimeSource) -> Reading {
    Reading::new(
        DeviceId::new(device).unwrap(),
        MetricName::new("temperature").unwrap(),
        value,
        at,
        source,
    )
    .unwrap()
}

/// Wall time that follows tokio's paused clock plus an offset the test
/// steps, as NTP steps a Pi's clock.
struct SteppingClock {
    base: TokioClock,
    offset_ms: AtomicI64,
}

impl SteppingClock {
    fn starting_at(start: Timestamp) -> Arc<Self> {
        Arc::new(Self {
            base: TokioClock::starting_at(start),
            offset_ms: AtomicI64::new(0),
        })
    }

    /// Moves the wall clock so that it reads `to` now.
    fn step_to(&self, to: Timestamp) {
        let off = to.as_millis() - self.base.now().as_millis();
        self.offset_ms.store(off, Ordering::SeqCst);
    }
}

impl Clock for SteppingClock {
    fn now(&self) -> Timestamp {
        self.base
            .now()
            .saturating_add_millis(self.offset_ms.load(Ordering::SeqCst))
    }
}

fn count(t: &Telemetry, name: &str, labels: &[(&str, &str)]) -> u64 {
    t.counter_value(name, labels).unwrap_or(0)
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

fn json(m: &OutboundMessage) -> serde_json::Value {
    serde_json::from_slice(&m.payload).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_new_series_is_capped_while_an_admitted_one_keeps_flowing() {
    let clock = Arc::new(TokioClock::starting_at(ts(START)));
    let agg = Aggregator::new(spec()).unwrap().with_max_series(10);
    let mut h = start(agg, clock.clone());
    h.tx.send(Ingress::Readings(vec![reading("keeper", 1.0, clock.now())]))
        .await
        .unwrap();
    // 5 000 made-up ids in batches of 100, the admitted device in between.
    for batch in 0..50 {
        let mut readings: Vec<Reading> = (0..100)
            .map(|i| reading(&format!("fake-{batch}-{i}"), 0.0, clock.now()))
            .collect();
        readings.push(reading("keeper", 3.0, clock.now()));
        h.tx.send(Ingress::Readings(readings)).await.unwrap();
    }
    settle().await;
    let refused = || {
        h.telemetry
            .counter_value(DROPPED_READINGS, &[("reason", "max_series")])
            .unwrap_or(0)
    };
    // The cap of 10: "keeper" and 9 fakes.
    assert_eq!(refused(), 5_000 - 9);
    tokio::time::advance(Duration::from_secs(65)).await;
    settle().await;
    let mut windows = Vec::new();
    while let Ok(m) = h.out.try_recv() {
        windows.push(json(&m));
    }
    assert_eq!(windows.len(), 10, "one window per admitted series");
    let keeper = windows
        .iter()
        .find(|w| w["device"] == "keeper")
        .expect("the admitted series is forwarded");
    assert_eq!(keeper["metrics"]["temperature"]["count"], 51);
    // The cap freed at window close: new series are taken again.
    h.tx.send(Ingress::Readings(vec![reading(
        "late-comer",
        1.0,
        clock.now(),
    )]))
    .await
    .unwrap();
    settle().await;
    assert_eq!(refused(), 5_000 - 9, "a freed place is taken again");
}

#[tokio::test(start_paused = true)]
async fn readings_on_a_1970_clock_are_held_and_stamped_once_ntp_sets_it() {
    // Booted without a real-time clock: one minute past the epoch.
    let clock = SteppingClock::starting_at(Timestamp::from_millis(60_000).unwrap());
    let five_minutes = WindowSpec {
        window_ms: 300_000,
        grace_ms: 30_000,
        max_future_ms: 60_000,
    };
    let mut h = start(Aggregator::new(five_minutes).unwrap(), clock.clone());
    let arrival = |v| stamped("d1", v, clock.now(), TimeSource::Arrival);
    h.tx.send(Ingress::Readings(vec![
        arrival(1.0),
        arrival(2.0),
        arrival(3.0),
    ]))
    .await
    .unwrap();
    tokio::time::advance(Duration::from_secs(10)).await;
    h.tx.send(Ingress::Readings(vec![arrival(4.0), arrival(5.0)]))
        .await
        .unwrap();
    // Long past the 1970 window's end and grace: nothing may leave.
    for _ in 0..120 {
        tokio::time::advance(Duration::from_secs(1)).await;
        settle().await;
    }
    assert!(
        h.out.try_recv().is_err(),
        "a window was forwarded on a 1970 clock"
    );
    assert_eq!(count(&h.telemetry, HELD_READINGS, &[]), 5);
    // NTP answers, 130 s after the first readings arrived.
    clock.step_to(ts("2026-11-21T10:05:20Z"));
    tokio::time::advance(Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(count(&h.telemetry, CLOCK_STEPS, &[]), 1);
    tokio::time::advance(Duration::from_secs(15)).await; // 10:05:36
    settle().await;
    let m = h.out.try_recv().expect("the held readings' window");
    let j = json(&m);
    // Stamped by their age on the monotonic clock, 10:03:10 and 10:03:20,
    // not at the sync (10:05:20, the next window).
    assert_eq!(j["window_start"], "2026-11-21T10:00:00Z");
    assert_eq!(j["metrics"]["temperature"]["count"], 5);
    assert_eq!(j["metrics"]["temperature"]["avg"], 3.0);
    assert!(h.out.try_recv().is_err(), "one window only");
}

#[tokio::test(start_paused = true)]
async fn what_is_held_for_the_clock_is_bounded_and_the_rest_counted() {
    let clock = SteppingClock::starting_at(Timestamp::from_millis(60_000).unwrap());
    let h = start(Aggregator::new(spec()).unwrap(), clock.clone());
    let batches = MAX_HELD_READINGS / 100 + 3;
    for b in 0..batches {
        let readings = (0..100)
            .map(|i| stamped(&format!("d{b}-{i}"), 1.0, clock.now(), TimeSource::Arrival))
            .collect();
        h.tx.send(Ingress::Readings(readings)).await.unwrap();
    }
    settle().await;
    let dropped = count(
        &h.telemetry,
        DROPPED_READINGS,
        &[("reason", "clock_unsynced")],
    );
    assert_eq!(
        count(&h.telemetry, HELD_READINGS, &[]),
        MAX_HELD_READINGS as u64
    );
    assert_eq!(dropped, 300);
}

#[tokio::test(start_paused = true)]
async fn a_wall_clock_step_is_counted_and_loses_no_open_window() {
    let clock = SteppingClock::starting_at(ts(START));
    let mut h = start(Aggregator::new(spec()).unwrap(), clock.clone());
    h.tx.send(Ingress::Readings(vec![
        reading("d1", 1.0, clock.now()),
        reading("d1", 3.0, clock.now()),
        reading("d1", 5.0, ts("2026-11-21T10:00:30Z")),
    ]))
    .await
    .unwrap();
    settle().await;
    // Back an hour: the open window waits for its own end, it is not lost.
    clock.step_to(ts("2026-11-21T09:00:10Z"));
    tokio::time::advance(Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(count(&h.telemetry, CLOCK_STEPS, &[]), 1);
    assert!(h.out.try_recv().is_err());
    // Forward a day: the window is due and forwarded whole.
    clock.step_to(ts("2026-11-22T10:00:00Z"));
    tokio::time::advance(Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(count(&h.telemetry, CLOCK_STEPS, &[]), 2);
    let j = json(&h.out.try_recv().expect("the open window, forwarded"));
    assert_eq!(j["window_start"], "2026-11-21T10:00:00Z");
    assert_eq!(j["metrics"]["temperature"]["count"], 3);
}

/// Issue 69: the caches asked to let go (as the heap check does once a
/// burst has passed) while readings flow: every reading is counted once,
/// in its own series' window.
#[tokio::test(start_paused = true)]
async fn caches_let_go_of_mid_stream_lose_and_double_no_reading() {
    let clock = Arc::new(TokioClock::starting_at(ts(START)));
    let mut h = start(Aggregator::new(spec()).unwrap(), clock.clone());
    for round in 0..6 {
        let readings: Vec<Reading> = (0..150)
            .map(|i| reading(&format!("dev-{i}"), f64::from(round), clock.now()))
            .collect();
        h.tx.send(Ingress::Readings(readings)).await.unwrap();
        if round % 2 == 1 {
            gateway_core::cache_release::ask();
        }
        settle().await;
    }
    tokio::time::advance(Duration::from_secs(65)).await;
    settle().await;
    let mut windows = Vec::new();
    while let Ok(m) = h.out.try_recv() {
        windows.push(json(&m));
    }
    assert_eq!(windows.len(), 150, "one window per device");
    for w in &windows {
        let t = &w["metrics"]["temperature"];
        assert_eq!(t["count"], 6, "{w}");
        assert_eq!(t["avg"], 2.5, "{w}");
    }
}
