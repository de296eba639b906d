//! What the pipeline does under hostile or broken input: a flood of made-up
//! series against `aggregation.max_series`, under tokio's paused clock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use aggregator::{Aggregator, WindowSpec};
use edge_gateway::durability::Durability;
use edge_gateway::messages::Renderer;
use edge_gateway::pipeline::{Pipeline, DROPPED_READINGS};
use gateway_core::{
    Clock, DeviceId, DeviceRegistry, Ingress, MetricName, OutboundMessage, Reading, Telemetry,
    TimeSource, Timestamp, TokioClock,
};
use tokio::sync::mpsc;

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
    let pipeline = Pipeline {
        aggregator,
        renderer: Renderer {
            gateway_id: "gw-01".into(),
            prefix: "building/hq".into(),
            registry: DeviceRegistry::default(),
        },
        clock,
        telemetry: telemetry.clone(),
        durability: Durability::in_memory(&telemetry),
        outbox_flush: None,
        alerts: None,
        urgent: None,
    };
    let (tx, rx) = mpsc::channel(16);
    let (out_tx, out) = mpsc::channel(1024);
    tokio::spawn(pipeline.run(rx, out_tx));
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
    Reading::new(
        DeviceId::new(device).unwrap(),
        MetricName::new("temperature").unwrap(),
        value,
        at,
        TimeSource::Event,
    )
    .unwrap()
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
