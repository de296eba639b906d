//! The pipeline's time-driven behaviour under tokio's paused clock: when
//! windows are forwarded, what is late, and what happens at shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use aggregator::{Aggregator, WindowSpec};
use gateway_core::{
    DeviceId, DeviceRegistry, DeviceState, Ingress, MetricName, OutboundMessage, Reading,
    StatusChange, Telemetry, TimeSource, Timestamp, TokioClock,
};
use pipeline::durability::Durability;
use pipeline::Pipeline;
use tokio::sync::mpsc;

mod in_process;

const START: &str = "2026-11-21T10:00:00Z";

struct Harness {
    tx: mpsc::Sender<Ingress>,
    out: mpsc::Receiver<OutboundMessage>,
    telemetry: Telemetry,
    task: tokio::task::JoinHandle<()>,
}

fn ts(rfc3339: &str) -> Timestamp {
    Timestamp::parse_rfc3339(rfc3339).unwrap()
}

fn start(window_s: i64, grace_s: i64) -> Harness {
    let telemetry = Telemetry::default();
    let (out_tx, out) = mpsc::channel(16);
    let outputs = in_process::upstream_into(DeviceRegistry::default(), out_tx);
    let pipeline = Pipeline {
        aggregator: Aggregator::new(WindowSpec {
            window_ms: window_s * 1000,
            grace_ms: grace_s * 1000,
            max_future_ms: 60_000,
        })
        .unwrap(),
        clock: Arc::new(TokioClock::starting_at(ts(START))),
        telemetry: telemetry.clone(),
        durability: Durability::in_memory(&telemetry),
        outbox_flush: None,
        alerts: None,
        outputs,
    };
    let (tx, rx) = mpsc::channel(16);
    let task = tokio::spawn(pipeline.run(rx));
    Harness {
        tx,
        out,
        telemetry,
        task,
    }
}

fn reading(device: &str, metric: &str, value: f64, at: &str) -> Reading {
    Reading::new(
        DeviceId::new(device).unwrap(),
        MetricName::new(metric).unwrap(),
        value,
        ts(at),
        TimeSource::Event,
    )
    .unwrap()
}

/// Lets the pipeline task run until it waits again.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

fn json(m: &OutboundMessage) -> serde_json::Value {
    serde_json::from_slice(&m.payload).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_window_is_forwarded_once_its_end_plus_grace_has_passed() {
    let mut h = start(300, 30);
    h.tx.send(Ingress::Readings(vec![
        reading("d1", "temperature", 21.0, "2026-11-21T10:00:00Z"),
        reading("d1", "humidity", 40.0, "2026-11-21T10:00:30Z"),
    ]))
    .await
    .unwrap();
    settle().await;
    tokio::time::advance(Duration::from_secs(270)).await; // 10:04:30
    h.tx.send(Ingress::Readings(vec![
        reading("d1", "temperature", 23.0, "2026-11-21T10:04:59.999Z"),
        reading("d1", "temperature", 99.0, "2026-11-21T10:05:00Z"), // next window
    ]))
    .await
    .unwrap();
    settle().await;
    // 10:05:29.9: the first window's grace has not run out.
    tokio::time::advance(Duration::from_millis(59_900)).await;
    settle().await;
    assert!(h.out.try_recv().is_err(), "forwarded before end + grace");

    tokio::time::advance(Duration::from_millis(200)).await;
    settle().await;
    let m = h
        .out
        .try_recv()
        .expect("window forwarded after end + grace");
    assert_eq!(m.topic, "building/hq/d1/aggregated");
    assert!(!m.retain);
    let j = json(&m);
    assert_eq!(j["window_start"], "2026-11-21T10:00:00Z");
    assert_eq!(j["window_end"], "2026-11-21T10:05:00Z");
    assert_eq!(
        j["name"], "d1",
        "unregistered devices are named by their id"
    );
    assert_eq!(j["metrics"]["temperature"]["count"], 2);
    assert_eq!(j["metrics"]["temperature"]["avg"], 22.0);
    assert_eq!(j["metrics"]["temperature"]["std"], 1.0);
    assert_eq!(j["metrics"]["humidity"]["count"], 1);
    assert_eq!(j["metrics"]["humidity"]["std"], 0.0);
    assert!(j.get("partial").is_none());
    assert!(
        h.out.try_recv().is_err(),
        "one message per device and window"
    );

    // A reading for the forwarded window is late: it goes out as a late
    // amendment of that window, with an id of its own.
    h.tx.send(Ingress::Readings(vec![reading(
        "d1",
        "temperature",
        5.0,
        "2026-11-21T10:01:00Z",
    )]))
    .await
    .unwrap();
    settle().await;
    tokio::time::advance(Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(
        h.telemetry
            .counter_total("edge_gateway_aggregator_late_readings_total"),
        1
    );
    let amended = json(&h.out.try_recv().expect("a late amendment"));
    assert_eq!(amended["window_start"], "2026-11-21T10:00:00Z");
    assert_eq!(amended["amendment"], 1);
    assert_eq!(amended["metrics"]["temperature"]["count"], 1);
    assert_ne!(amended["id"], j["id"]);

    // At shutdown the open window (10:05) goes out early, marked partial.
    drop(h.tx);
    h.task.await.unwrap();
    let m = h.out.try_recv().expect("open window forwarded at shutdown");
    let j = json(&m);
    assert_eq!(j["window_start"], "2026-11-21T10:05:00Z");
    assert_eq!(j["metrics"]["temperature"]["count"], 1);
    assert_eq!(j["metrics"]["temperature"]["avg"], 99.0);
    assert_eq!(j["partial"], true);
}

#[tokio::test(start_paused = true)]
async fn one_second_windows_close_every_second() {
    let mut h = start(1, 0);
    for i in 0..3 {
        let at = format!("2026-11-21T10:00:0{i}.500Z");
        h.tx.send(Ingress::Readings(vec![reading(
            "d",
            "v",
            f64::from(i),
            &at,
        )]))
        .await
        .unwrap();
    }
    settle().await;
    let mut starts = Vec::new();
    for _ in 0..3 {
        tokio::time::advance(Duration::from_secs(1)).await;
        settle().await;
        while let Ok(m) = h.out.try_recv() {
            starts.push(json(&m)["window_start"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(
        starts,
        [
            "2026-11-21T10:00:00Z",
            "2026-11-21T10:00:01Z",
            "2026-11-21T10:00:02Z"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn status_changes_are_forwarded_retained() {
    let mut h = start(300, 30);
    h.tx.send(Ingress::Status(StatusChange {
        device: DeviceId::new("fridge-2").unwrap(),
        state: DeviceState::Offline,
        time: ts(START),
    }))
    .await
    .unwrap();
    settle().await;
    let m = h.out.try_recv().expect("status forwarded");
    assert_eq!(m.topic, "building/hq/fridge-2/status");
    assert!(m.retain);
    let j = json(&m);
    assert_eq!(
        (j["state"].as_str(), j["ts"].as_str()),
        (Some("offline"), Some(START))
    );
}

#[tokio::test(start_paused = true)]
async fn the_same_window_always_gets_the_same_id() {
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut h = start(60, 0);
        h.tx.send(Ingress::Readings(vec![reading("d", "v", 1.0, START)]))
            .await
            .unwrap();
        settle().await;
        tokio::time::advance(Duration::from_secs(61)).await;
        settle().await;
        ids.push(
            json(&h.out.try_recv().unwrap())["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(
        ids[0], ids[1],
        "a window re-sent after a restart keeps its id"
    );
}

#[tokio::test(start_paused = true)]
async fn a_gateway_stamp_made_stale_by_queueing_counts_now_a_sensor_time_keeps_its_window() {
    let mut h = start(60, 0);
    // 10:01:30: both readings claim 10:00:10, a window already past its end.
    tokio::time::advance(Duration::from_secs(90)).await;
    let mut stamped = reading("d1", "temperature", 7.0, "2026-11-21T10:00:10Z");
    stamped = stamped.restamped(ts("2026-11-21T10:00:10Z"));
    assert_eq!(stamped.time_source(), TimeSource::Arrival);
    h.tx.send(Ingress::Readings(vec![
        stamped,
        reading("d1", "humidity", 50.0, "2026-11-21T10:00:10Z"),
    ]))
    .await
    .unwrap();
    settle().await;
    tokio::time::advance(Duration::from_secs(31)).await; // 10:02:01
    settle().await;
    // The sensor's own time is kept: its window (10:00) was past its
    // grace but nothing had been sent for it, so it goes out as that
    // window, at once (had it been sent, as a late amendment of it).
    let a = json(&h.out.try_recv().expect("the sensor's window"));
    assert_eq!(a["window_start"], "2026-11-21T10:00:00Z");
    assert!(a.get("amendment").is_none());
    assert_eq!(a["metrics"]["humidity"]["count"], 1);
    assert!(a["metrics"].get("temperature").is_none());
    let j = json(&h.out.try_recv().expect("the current window"));
    assert_eq!(j["window_start"], "2026-11-21T10:01:00Z");
    assert_eq!(j["metrics"]["temperature"]["count"], 1);
    assert!(
        j["metrics"].get("humidity").is_none(),
        "a sensor's own time stays its own"
    );
    assert_eq!(
        h.telemetry
            .counter_value("edge_gateway_aggregator_late_readings_total", &[])
            .unwrap(),
        1
    );
}
