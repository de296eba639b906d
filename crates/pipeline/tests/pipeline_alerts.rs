//! Alerts inside the pipeline under tokio's paused clock: they bypass the
//! windows, silence follows the clock, status changes count.

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
use rules::alerts::Alerts;
use tokio::sync::mpsc;

mod in_process;

const START: &str = "2026-11-21T10:00:00Z";

const RULES: &str = r#"
[[device]]
id = "fridge-2"
name = "Fridge 2"

[[rule]]
name = "fridge-max"
kind = "threshold"
metric = "temperature"
device = "fridge-2"
max = 8.0

[[rule]]
name = "silent"
kind = "silence"
device = "fridge-2"
after = "5m"
cooldown = "0s"
"#;

/// The `[[device]]` and `[[rule]]` tables as `gateway.toml` holds them.
#[derive(serde::Deserialize)]
struct RulesAndDevices {
    #[serde(rename = "device")]
    devices: Vec<gateway_core::config::DeviceConfig>,
    #[serde(rename = "rule")]
    rules: Vec<gateway_core::config::RuleConfig>,
}

fn ts(rfc3339: &str) -> Timestamp {
    Timestamp::parse_rfc3339(rfc3339).unwrap()
}

struct Harness {
    tx: mpsc::Sender<Ingress>,
    out: mpsc::Receiver<OutboundMessage>,
}

fn start() -> Harness {
    start_on(Arc::new(TokioClock::starting_at(ts(START))))
}

/// Tokio's paused time plus a step the test sets, as NTP would.
struct SteppedClock {
    inner: TokioClock,
    step_ms: std::sync::atomic::AtomicI64,
}

impl gateway_core::Clock for SteppedClock {
    fn now(&self) -> Timestamp {
        self.inner
            .now()
            .saturating_add_millis(self.step_ms.load(std::sync::atomic::Ordering::Relaxed))
    }
}

fn start_on(clock: Arc<dyn gateway_core::Clock>) -> Harness {
    let telemetry = Telemetry::default();
    let cfg: RulesAndDevices = toml::from_str(RULES).unwrap();
    let alerts = Alerts::new(
        &cfg.rules,
        &cfg.devices,
        gateway_core::clock::Zone::utc(),
        None,
        None,
        &telemetry,
    );
    let (out_tx, out) = mpsc::channel(16);
    let outputs = in_process::upstream_into(DeviceRegistry::from_config(&cfg.devices), out_tx);
    let pipeline = Pipeline {
        aggregator: Aggregator::new(WindowSpec {
            window_ms: 3_600_000,
            grace_ms: 0,
            max_future_ms: 60_000,
        })
        .unwrap(),
        clock,
        durability: Durability::in_memory(&telemetry),
        telemetry,
        outbox_flush: None,
        alerts: Some(alerts),
        outputs,
    };
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(pipeline.run(rx));
    Harness { tx, out }
}

fn reading(value: f64, at: &str) -> Reading {
    Reading::new(
        DeviceId::new("fridge-2").unwrap(),
        MetricName::new("temperature").unwrap(),
        value,
        ts(at),
        TimeSource::Event,
    )
    .unwrap()
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

fn alerts(out: &mut mpsc::Receiver<OutboundMessage>) -> Vec<serde_json::Value> {
    let mut got = Vec::new();
    while let Ok(m) = out.try_recv() {
        assert_eq!(
            m.topic, "building/hq/fridge-2/alerts",
            "only alerts expected"
        );
        assert!(!m.retain);
        got.push(serde_json::from_slice(&m.payload).unwrap());
    }
    got
}

#[tokio::test(start_paused = true)]
async fn a_threshold_alert_is_sent_at_once_not_with_the_window() {
    let mut h = start();
    h.tx.send(Ingress::Readings(vec![reading(
        9.4,
        "2026-11-21T10:00:00Z",
    )]))
    .await
    .unwrap();
    settle().await;
    let got = alerts(&mut h.out);
    assert_eq!(got.len(), 1, "{got:?}");
    let a = &got[0];
    assert_eq!(
        (
            &a["rule"],
            &a["state"],
            &a["value"],
            &a["limit"],
            &a["name"],
            &a["ts"]
        ),
        (
            &"fridge-max".into(),
            &"raised".into(),
            &9.4.into(),
            &8.0.into(),
            &"Fridge 2".into(),
            &"2026-11-21T10:00:00Z".into()
        )
    );
}

#[tokio::test(start_paused = true)]
async fn silence_is_raised_by_the_clock_and_cleared_by_the_next_reading() {
    let mut h = start();
    h.tx.send(Ingress::Readings(vec![reading(
        4.0,
        "2026-11-21T10:00:00Z",
    )]))
    .await
    .unwrap();
    settle().await;
    tokio::time::advance(Duration::from_secs(299)).await;
    settle().await;
    assert!(alerts(&mut h.out).is_empty(), "raised before `after`");
    tokio::time::advance(Duration::from_secs(2)).await;
    settle().await;
    let got = alerts(&mut h.out);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["rule"], "silent");
    assert_eq!(got[0]["kind"], "silence");
    assert_eq!(got[0]["state"], "raised");
    assert_eq!(got[0]["ts"], "2026-11-21T10:05:00Z");
    assert_eq!(got[0]["limit"], 300.0);

    h.tx.send(Ingress::Readings(vec![reading(
        4.0,
        "2026-11-21T10:06:00Z",
    )]))
    .await
    .unwrap();
    settle().await;
    let got = alerts(&mut h.out);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["state"], "cleared");
    assert_eq!(got[0]["ts"], "2026-11-21T10:06:00Z");
}

#[tokio::test(start_paused = true)]
async fn an_offline_status_raises_silence_at_once() {
    let mut h = start();
    h.tx.send(Ingress::Status(StatusChange {
        device: DeviceId::new("fridge-2").unwrap(),
        state: DeviceState::Offline,
        time: ts("2026-11-21T10:00:10Z"),
    }))
    .await
    .unwrap();
    settle().await;
    let mut got = Vec::new();
    while let Ok(m) = h.out.try_recv() {
        got.push((
            m.topic.clone(),
            serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap(),
        ));
    }
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0, "building/hq/fridge-2/status");
    assert_eq!(got[1].0, "building/hq/fridge-2/alerts");
    assert_eq!(got[1].1["state"], "raised");
    assert_eq!(got[1].1["ts"], "2026-11-21T10:00:10Z");
}

/// NTP steps the clock while the gateway runs: silence is how long a
/// device has not spoken. A step forward raised every device "silent for
/// the step" at once; a step back hid every silence for as long as the
/// step.
#[tokio::test(start_paused = true)]
async fn silence_is_judged_on_the_time_that_passed_across_clock_steps() {
    for step_ms in [3_600_000_i64, -3_600_000] {
        let clock = Arc::new(SteppedClock {
            inner: TokioClock::starting_at(ts(START)),
            step_ms: std::sync::atomic::AtomicI64::new(0),
        });
        let mut h = start_on(clock.clone());
        h.tx.send(Ingress::Readings(vec![reading(
            4.0,
            "2026-11-21T10:00:00Z",
        )]))
        .await
        .unwrap();
        settle().await;
        for _ in 0..60 {
            tokio::time::advance(Duration::from_secs(1)).await;
            settle().await;
        }
        clock
            .step_ms
            .store(step_ms, std::sync::atomic::Ordering::Relaxed);
        for _ in 0..238 {
            tokio::time::advance(Duration::from_secs(1)).await;
            settle().await;
        }
        assert!(
            alerts_among_windows(&mut h.out).is_empty(),
            "step {step_ms}: raised before `after` passed"
        );
        for _ in 0..4 {
            tokio::time::advance(Duration::from_secs(1)).await;
            settle().await;
        }
        let got = alerts_among_windows(&mut h.out);
        assert_eq!(got.len(), 1, "step {step_ms}: {got:?}");
        assert_eq!(got[0]["rule"], "silent");
        assert_eq!(got[0]["state"], "raised");
        // Five minutes after it spoke, on the corrected clock.
        let expected = Timestamp::from_millis(ts("2026-11-21T10:05:00Z").as_millis() + step_ms)
            .unwrap()
            .to_rfc3339();
        assert_eq!(got[0]["ts"], expected.as_str(), "step {step_ms}");
    }
}

/// The alerts sent, past the windows a step forward closes.
fn alerts_among_windows(out: &mut mpsc::Receiver<OutboundMessage>) -> Vec<serde_json::Value> {
    let mut got = Vec::new();
    while let Ok(m) = out.try_recv() {
        if m.topic.ends_with("/alerts") {
            got.push(serde_json::from_slice(&m.payload).unwrap());
        }
    }
    got
}
