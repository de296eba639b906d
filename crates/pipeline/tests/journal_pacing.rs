//! When the journal's next sync starts, with a real journal on disk and
//! tokio's paused clock: time moves only when a timer is due, so a
//! receipt that completes at the same instant never waited for one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use aggregator::{Aggregator, WindowSpec};
use gateway_core::{
    DeviceId, DeviceRegistry, Ingress, MetricName, Reading, Receipt, Telemetry, TimeSource,
    Timestamp, TokioClock,
};
use pipeline::durability::pacing::{BUSY_BATCH_BYTES, MIN_INTERVAL};
use pipeline::durability::Durability;
use pipeline::Pipeline;
use tokio::sync::mpsc;
use tokio::time::Instant;

mod in_process;

const START: &str = "2026-11-25T10:00:00Z";

struct Harness {
    tx: mpsc::Sender<Ingress>,
    _out: mpsc::Receiver<gateway_core::OutboundMessage>,
    _state: tempfile::TempDir,
}

fn start() -> Harness {
    let state = tempfile::tempdir().unwrap();
    let telemetry = Telemetry::default();
    let mut aggregator = Aggregator::new(WindowSpec {
        window_ms: 60_000,
        grace_ms: 5_000,
        max_future_ms: 60_000,
    })
    .unwrap();
    let durability = Durability::open(
        state.path(),
        Duration::from_secs(60),
        &mut aggregator,
        &telemetry,
    );
    let (out_tx, out) = mpsc::channel(1024);
    let pipeline = Pipeline {
        aggregator,
        clock: Arc::new(TokioClock::starting_at(
            Timestamp::parse_rfc3339(START).unwrap(),
        )),
        telemetry,
        durability,
        outbox_flush: None,
        alerts: None,
        outputs: in_process::upstream_into(DeviceRegistry::default(), out_tx),
    };
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(pipeline.run(rx));
    Harness {
        tx,
        _out: out,
        _state: state,
    }
}

/// `lines` BME680 lines of one node, as a `tcp_line` read hands them on.
fn lines(lines: usize) -> Vec<Reading> {
    let at = Timestamp::parse_rfc3339(START).unwrap();
    let device = DeviceId::new("esp32-bme680").unwrap();
    let metrics =
        ["temperature", "pressure", "humidity", "gas"].map(|m| MetricName::new(m).unwrap());
    (0..lines)
        .flat_map(|i| {
            let device = device.clone();
            metrics.clone().into_iter().map(move |metric| {
                Reading::new(device.clone(), metric, i as f64, at, TimeSource::Arrival).unwrap()
            })
        })
        .collect()
}

/// Sends `readings` as one acknowledged message; resolves once durable.
async fn durable(h: &Harness, readings: Vec<Reading>) {
    let (receipt, waiter) = Receipt::new(None);
    h.tx.send(Ingress::Durable { readings, receipt })
        .await
        .unwrap();
    waiter.await.expect("the pipeline completes the receipt");
}

/// What the next message waits for (paused time) after one of
/// `first_lines` lines, and how long that first one took in real time.
async fn wait_after(first_lines: usize) -> (Duration, std::time::Duration) {
    let h = start();
    let real = std::time::Instant::now();
    durable(&h, lines(first_lines)).await;
    let first_took = real.elapsed();
    let synced = Instant::now();
    durable(&h, lines(1)).await;
    (synced.elapsed(), first_took)
}

#[tokio::test(start_paused = true)]
async fn after_a_flood_the_next_sync_waits_but_never_past_the_interval() {
    // A sync that itself took MIN_INTERVAL (an SD card, or this machine
    // under load) rightly holds nothing back. Only a flood made durable in
    // less real time than that proves the rule; on a loaded machine that
    // takes a few tries.
    for _ in 0..50 {
        let (waited, first_took) = wait_after(flood()).await;
        assert!(waited <= MIN_INTERVAL, "waited {waited:?}");
        if waited > Duration::ZERO {
            return;
        }
        assert!(
            first_took >= MIN_INTERVAL,
            "the line after a flood synced in {first_took:?} was synced at once"
        );
    }
    panic!("every flood's sync took {MIN_INTERVAL:?} or more: the rule was never exercised");
}

/// Over 11 bytes a reading: well past a busy batch.
fn flood() -> usize {
    usize::try_from(BUSY_BATCH_BYTES).unwrap() / 4
}

#[tokio::test(start_paused = true)]
async fn a_stop_syncs_a_held_batch_without_waiting() {
    let h = start();
    durable(&h, lines(flood())).await;
    let synced = Instant::now();
    let (receipt, waiter) = Receipt::new(None);
    let readings = lines(1);
    h.tx.send(Ingress::Durable { readings, receipt })
        .await
        .unwrap();
    let Harness { tx, _out, _state } = h;
    drop(tx);
    waiter.await.expect("synced before the pipeline stops");
    assert_eq!(synced.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn after_a_few_lines_the_next_sync_starts_at_once() {
    assert_eq!(wait_after(4).await.0, Duration::ZERO);
}
