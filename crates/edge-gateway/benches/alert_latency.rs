//! Alert latency through the real binary:
//! `cargo bench -p edge-gateway --bench alert_latency`.
//!
//! A publisher sends readings at a steady rate (`EDGE_BENCH_ALERT_RATE`,
//! default 100 000/s: half the sustained QoS 0 ingest in docs/PERFORMANCE.md)
//! to a local Mosquitto, round-robin over 1 000 devices; one reading in 100
//! crosses a threshold rule's `max`, the next one of that device clears it.
//! A subscriber on a second Mosquitto (the upstream) takes the alerts off
//! `{prefix}/+/alerts`. Each crossing reading carries a unique value, so its
//! alert is matched to the moment it was handed to the publisher's socket
//! queue: latency = alert received upstream − reading sent, both clocks in
//! this process. Reported: p50, p99, max, and how many alerts arrived.
//!
//! `EDGE_BENCH_ALERT_ACTION=1` gives the rule a local action (a publish
//! on the local broker, `actions/bench`) and measures it too: reading
//! published -> action received on the local broker. The action's payload
//! is fixed, so the n-th action is matched to the n-th crossing reading:
//! the figure holds only when every one arrives (printed as `n of m`).
//! `[commands]` allows them all (its default rate is per actuator, for
//! people's commands, not for a thousand alerts a second).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

#[path = "support/mod.rs"]
mod support;

use support::{Broker, Gateway};

const DEVICES: u64 = 1000;
/// One reading in this many crosses the threshold.
const EVERY: u64 = 100;
const MAX: f64 = 50.0;
/// Crossing readings carry BASE + their number.
const BASE: f64 = 1000.0;
/// Seconds of readings at the full rate before any is marked: the first
/// ~150 ms after connecting ran 30-45 ms late for the plain broker as much
/// as for the gateway (fresh connections, first allocations), which is not
/// what a running gateway's alerts see.
const WARM_UP: f64 = 1.0;
/// Where the local action publishes (`EDGE_BENCH_ALERT_ACTION=1`).
const ACTION_TOPIC: &str = "actions/bench";

/// The gateway: an MQTT adapter on `local`, one threshold rule, upstream
/// to `upstream`. `state_in`: where the state directory (journal, outbox)
/// goes; a tmpfs there shows what the fsyncs on the alert path cost. The
/// directory lives as long as the returned handle.
fn start_gateway(
    local: &Broker,
    upstream: &Broker,
    window: &str,
    state_in: Option<&str>,
    action: bool,
) -> (Gateway, tempfile::TempDir) {
    let dir = state_in
        .map_or_else(tempfile::tempdir, tempfile::tempdir_in)
        .unwrap();
    let cfg = format!(
        r#"
[gateway]
id = "gw-bench"
state_dir = "{state}"
[upstream]
url = "mqtt://127.0.0.1:{up}"
topic_prefix = "bench"
[aggregation]
window = "{window}"
grace = "1s"
{checkpoint}
[metrics]
enabled = false
[[adapter]]
type = "mqtt"
name = "bench"
url = "mqtt://127.0.0.1:{local}"
qos = 0
persistent_session = false
topics = ["sensors/{{device}}"]
[[rule]]
name = "too-hot"
kind = "threshold"
metric = "temperature"
max = {MAX}
cooldown = "0s"
{action}
"#,
        action = if action {
            format!(
                r#"action = {{ publish = "{ACTION_TOPIC}", payload = "on", cooldown = "0s", broker = "mqtt://127.0.0.1:{}" }}
[commands]
rate = 1000000.0
burst = 1000000"#,
                local.port
            )
        } else {
            String::new()
        },
        state = dir.path().join("state").display(),
        // EDGE_BENCH_CHECKPOINT=0s takes checkpoints out.
        checkpoint = std::env::var("EDGE_BENCH_CHECKPOINT")
            .map(|c| format!("checkpoint_interval = \"{c}\""))
            .unwrap_or_default(),
        up = upstream.port,
        local = local.port,
    );
    (Gateway::start(&cfg, None, &["Subscribed"]), dir)
}

fn client(id: &str, port: u16) -> (AsyncClient, rumqttc::EventLoop) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(64 * 1024, 64 * 1024);
    AsyncClient::new(o, 10_000)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let rate: f64 = std::env::var("EDGE_BENCH_ALERT_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000.0);
    let seconds: f64 = std::env::var("EDGE_BENCH_ALERT_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5.0);
    let nodelay = std::env::var("EDGE_BENCH_NODELAY").is_ok_and(|v| v == "1");
    let local = Broker::start(&format!("set_tcp_nodelay {nodelay}"));
    let upstream = Broker::start(&format!("set_tcp_nodelay {nodelay}"));
    // Windows of 1 s close while alerts flow, as in production; "1h" shows
    // the alert path alone.
    let window = std::env::var("EDGE_BENCH_ALERT_WINDOW").unwrap_or_else(|_| "1s".into());
    let state_in = std::env::var("EDGE_BENCH_STATE_IN")
        .ok()
        .filter(|d| !d.is_empty());
    let action = std::env::var("EDGE_BENCH_ALERT_ACTION").is_ok_and(|v| v == "1");
    let limit = Phase::run(
        &local,
        &local,
        "sensors/+",
        Marker::Value(|j| j["temperature"].as_f64().filter(|v| *v >= BASE)),
        rate,
        seconds,
    )
    .await;
    let gw = start_gateway(&local, &upstream, &window, state_in.as_deref(), false);
    let cpu = support::CpuMeter::start(gw.0.pid());
    let gateway = Phase::run(
        &local,
        &upstream,
        "bench/+/alerts",
        Marker::Value(|j| {
            (j["state"] == "raised")
                .then(|| j["value"].as_f64())
                .flatten()
        }),
        rate,
        seconds,
    )
    .await;
    let alert_cpu = cpu.micros_per(gateway.readings);
    drop(gw);
    let actions = if action {
        let gw = start_gateway(&local, &upstream, &window, state_in.as_deref(), true);
        let cpu = support::CpuMeter::start(gw.0.pid());
        let phase = Phase::run(&local, &local, ACTION_TOPIC, Marker::Arrival, rate, seconds).await;
        Some((cpu.micros_per(phase.readings), phase))
    } else {
        None
    };
    println!(
        "windows: {window}; broker set_tcp_nodelay: {nodelay}; state dir in {}; readings: {} in {:.2} s ({:.0}/s), {} crossing the threshold",
        state_in.as_deref().unwrap_or("the default temp dir"),
        gateway.readings,
        gateway.seconds,
        gateway.readings as f64 / gateway.seconds,
        gateway.crossing,
    );
    limit.print(
        "the limit: reading published -> same reading received from the broker (no gateway)",
    );
    gateway.print("alert latency: reading published -> alert received upstream");
    println!("  gateway CPU: {alert_cpu:.2} µs per reading");
    if let Some((action_cpu, actions)) = actions {
        actions.print("local action latency: reading published -> action received on the local broker (n-th action matched to n-th crossing)");
        println!("  gateway CPU: {action_cpu:.2} µs per reading");
    }
}

/// How a received message is matched to the reading that caused it.
#[derive(Clone, Copy)]
enum Marker {
    /// By the marked value in its JSON payload (`BASE` + its number).
    Value(fn(&serde_json::Value) -> Option<f64>),
    /// By its place: the n-th message answers the n-th marked reading.
    Arrival,
}

/// One flood of readings and the latencies of the marked ones.
struct Phase {
    readings: u64,
    seconds: f64,
    crossing: u64,
    latencies: Vec<Duration>,
    /// (latency, when the reading was sent after the start), worst first.
    worst: Vec<(Duration, Duration)>,
}

impl Phase {
    /// Publishes the flood to `to`; a subscriber on `from` takes `filter`
    /// and `marked` picks the marked value out of each message.
    async fn run(
        to: &Broker,
        from: &Broker,
        filter: &str,
        marked: Marker,
        rate: f64,
        seconds: f64,
    ) -> Self {
        let sent: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
        let latencies: Arc<Mutex<Vec<(Duration, Instant)>>> = Arc::default();
        let (sub, mut sub_loop) = client(&format!("bench-sub-{}", from.port), from.port);
        sub.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        loop {
            if let Event::Incoming(Packet::SubAck(_)) = sub_loop.poll().await.unwrap() {
                break;
            }
        }
        let receiver = {
            let (sent, latencies) = (Arc::clone(&sent), Arc::clone(&latencies));
            tokio::spawn(async move {
                let mut arrived = 0u64;
                while let Ok(e) = sub_loop.poll().await {
                    let Event::Incoming(Packet::Publish(p)) = e else {
                        continue;
                    };
                    let at = Instant::now();
                    let k = match marked {
                        Marker::Value(marked) => {
                            let j: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
                            let Some(v) = marked(&j) else { continue };
                            (v - BASE) as u64
                        }
                        Marker::Arrival => {
                            arrived += 1;
                            arrived
                        }
                    };
                    if let Some(t) = sent.lock().unwrap().get(&k) {
                        latencies.lock().unwrap().push((at - *t, *t));
                    }
                }
            })
        };
        let (publisher, mut pub_loop) = client(&format!("bench-pub-{}", from.port), to.port);
        tokio::spawn(async move { while pub_loop.poll().await.is_ok() {} });
        let topics: Vec<String> = (0..DEVICES)
            .map(|d| format!("sensors/dev-{d:04}"))
            .collect();
        let started = Instant::now();
        let total = (rate * (WARM_UP + seconds)) as u64;
        let warm = (rate * WARM_UP) as u64;
        let mut step = 0u64;
        let mut crossing = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        while step < total {
            tick.tick().await;
            let due = ((started.elapsed().as_secs_f64() * rate) as u64 + 1).min(total);
            while step < due {
                let device = step % DEVICES;
                let round = step / DEVICES;
                let value = if step >= warm && round % EVERY == device % EVERY {
                    crossing += 1;
                    sent.lock().unwrap().insert(crossing, Instant::now());
                    BASE + crossing as f64
                } else {
                    20.0
                };
                publisher
                    .publish(
                        topics[device as usize].clone(),
                        QoS::AtMostOnce,
                        false,
                        format!("{{\"temperature\":{value}}}"),
                    )
                    .await
                    .unwrap();
                step += 1;
            }
        }
        let sent_secs = started.elapsed().as_secs_f64();
        // The last ones: done when none arrived for a second.
        let mut seen = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = latencies.lock().unwrap().len();
            if now == seen {
                break;
            }
            seen = now;
        }
        receiver.abort();
        let _ = publisher.disconnect().await;
        let _ = sub.disconnect().await;
        let measuring = started + Duration::from_secs_f64(WARM_UP);
        let mut measured = latencies.lock().unwrap().clone();
        measured.sort();
        let worst = measured
            .iter()
            .rev()
            .take(8)
            .map(|(l, t)| (*l, t.saturating_duration_since(measuring)))
            .collect();
        Self {
            readings: step - warm,
            seconds: sent_secs - WARM_UP,
            crossing,
            latencies: measured.into_iter().map(|(l, _)| l).collect(),
            worst,
        }
    }

    fn print(&self, what: &str) {
        let l = &self.latencies;
        if l.is_empty() {
            println!("{what}: none arrived");
            return;
        }
        println!(
            "{what}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} of {})",
            percentile(l, 0.5).as_secs_f64() * 1e3,
            percentile(l, 0.99).as_secs_f64() * 1e3,
            l[l.len() - 1].as_secs_f64() * 1e3,
            l.len(),
            self.crossing,
        );
        // When the worst ones were sent tells a warm-up from a periodic stall.
        let worst: Vec<String> = self
            .worst
            .iter()
            .map(|(l, at)| {
                format!(
                    "{:.1} ms at {:.2} s",
                    l.as_secs_f64() * 1e3,
                    at.as_secs_f64()
                )
            })
            .collect();
        println!("  worst: {}", worst.join(", "));
    }
}
