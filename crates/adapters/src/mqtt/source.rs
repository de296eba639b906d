//! The MQTT ingress adapter: subscribe, decode, hand readings to the pipeline.
//!
//! QoS 1/2 messages are acknowledged by hand, only once the pipeline says
//! their readings are on disk (a [`Receipt`]), and in the order they came
//! (MQTT requires it): after a crash the broker's persistent session
//! redelivers exactly what was not yet safe. Messages that carry nothing to
//! keep (bad input, status) are acknowledged in their turn.
//!
//! As in the upstream forwarder, one task only polls the event loop (its
//! `poll()` is not documented as cancel-safe, so it is never raced against
//! anything but the final stop) and the adapter task does the rest. When
//! the connection drops, the adapter forgets its pending acknowledgements
//! before the poller reconnects: the broker resends those messages (DUP)
//! and the pipeline recognises copies it already took by their
//! [`DeliveryKey`]. Subscriptions are renewed on every ConnAck: a broker
//! restarted without persistence has forgotten them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use gateway_core::backoff::Backoff;
use gateway_core::component::{AdapterFuture, AdapterStats};
use gateway_core::telemetry::LogThrottle;
use gateway_core::{
    Adapter, AdapterContext, AdapterError, DeliveryKey, DeviceId, DeviceState, Ingress, MetricName,
    Receipt, ReceiptWaiter, StatusChange, Timestamp,
};
use rumqttc::{AsyncClient, Event, EventLoop, Packet, Publish, QoS, SubscribeFilter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::config::MqttAdapterConfig;
use super::connect::ConnectionSettings;
use crate::payload::{self, Context};

/// A runnable MQTT ingress adapter.
pub struct MqttSource {
    config: MqttAdapterConfig,
    connection: ConnectionSettings,
}

impl MqttSource {
    pub fn new(config: MqttAdapterConfig, gateway_id: &str) -> Self {
        let client_id = if config.client_id.is_empty() {
            format!("edge-gateway-{gateway_id}-{}", config.name)
        } else {
            config.client_id.clone()
        };
        let connection = ConnectionSettings {
            url: config.url.clone(),
            client_id,
            username: config.username.clone(),
            password_env: config.password_env.clone(),
            ca_file: config.ca_file.clone(),
            client_cert: config.client_cert.clone(),
            client_key: config.client_key.clone(),
            keep_alive: config.keep_alive,
            // Room for the MQTT header around the largest payload we accept;
            // anything larger is refused by the client before it is buffered.
            max_packet_bytes: config.max_payload_bytes.saturating_add(1024),
            persistent_session: config.persistent_session,
        };
        Self { config, connection }
    }
}

impl Adapter for MqttSource {
    fn run(self: Box<Self>, ctx: AdapterContext) -> AdapterFuture {
        Box::pin(run(self.config, self.connection, ctx))
    }
}

/// QoS 2 is subscribed as 1: a broker that resends a PUBREL after a
/// crash finds rumqttc without the packet's state and the connection fails
/// on every retry, while QoS 1 with the journal and DUP-aware dedup is
/// already exactly-once.
fn subscription_qos(q: gateway_core::config::Qos) -> QoS {
    match q.as_u8() {
        0 => QoS::AtMostOnce,
        _ => QoS::AtLeastOnce,
    }
}

/// What the poller reports.
enum SourceEvent {
    Connected,
    Subscribed { refused: usize },
    Message(Publish),
    Lost(String),
}

/// Requests (subscriptions, acknowledgements) queued for the event loop;
/// above any broker's default in-flight window so acks rarely wait.
const REQUEST_QUEUE: usize = 1024;

async fn run(
    config: MqttAdapterConfig,
    connection: ConnectionSettings,
    ctx: AdapterContext,
) -> Result<(), AdapterError> {
    let mut options = connection
        .mqtt_options(None)
        .map_err(|e| AdapterError::Setup(format!("adapter {}: {e}", config.name)))?;
    options.set_manual_acks(true);
    let (client, mut eventloop) = AsyncClient::new(options, REQUEST_QUEUE);
    eventloop.network_options.set_connection_timeout(10);
    let filters: Vec<SubscribeFilter> = config
        .status_topics
        .iter()
        .chain(config.routes.iter().map(|r| &r.pattern))
        .map(|p| SubscribeFilter::new(p.filter(), subscription_qos(config.qos)))
        .collect();
    let stats = ctx.stats();
    let reconnects = ctx.telemetry.counter(
        "edge_gateway_adapter_reconnects_total",
        &[("adapter", &ctx.name)],
    );
    let throttle = LogThrottle::default();
    let (events_tx, mut events) = mpsc::channel(256);
    let (resume_tx, resume_rx) = mpsc::channel(1);
    let stop_poller = CancellationToken::new();
    let poller = tokio::spawn(poll_loop(
        eventloop,
        events_tx,
        resume_rx,
        Backoff::new(Duration::from_millis(200), config.max_backoff),
        stop_poller.clone(),
    ));
    let source: Arc<str> = Arc::from(ctx.name.as_str());
    // Received QoS 1/2 messages in arrival order, each with the receipt
    // that says it may be acknowledged.
    let mut unacked: VecDeque<(Publish, ReceiptWaiter)> = VecDeque::new();
    // Safe to acknowledge, waiting for room in the client's queue.
    let mut ready: VecDeque<Publish> = VecDeque::new();
    let mut connected = false;

    loop {
        while let Some(p) = ready.front() {
            if client.try_ack(p).is_err() {
                break;
            }
            ready.pop_front();
        }
        tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break,
            done = async {
                match unacked.front_mut() {
                    Some((_, waiter)) => waiter.await,
                    None => std::future::pending().await,
                }
            }, if !unacked.is_empty() => {
                if done.is_err() {
                    // The pipeline stopped before the readings were safe;
                    // the broker keeps them for the next start.
                    unacked.clear();
                    continue;
                }
                // The front is safe, and so may be those right behind it.
                if let Some((publish, _)) = unacked.pop_front() {
                    ready.push_back(publish);
                }
                while let Some((_, next)) = unacked.front_mut() {
                    if next.try_recv().is_err() {
                        break;
                    }
                    if let Some((publish, _)) = unacked.pop_front() {
                        ready.push_back(publish);
                    }
                }
            }
            event = events.recv() => match event {
                None => break,
                Some(SourceEvent::Connected) => {
                    info!(adapter = %ctx.name, broker = %config.url, "Connected to the local broker.");
                    connected = true;
                    if let Err(e) = client.try_subscribe_many(filters.clone()) {
                        warn!(adapter = %ctx.name, error = %e, "Could not queue the subscriptions.");
                    }
                }
                Some(SourceEvent::Subscribed { refused }) => {
                    if refused > 0 {
                        stats.error("subscription_refused");
                        warn!(adapter = %ctx.name, refused, "The broker refused some subscriptions.");
                    } else {
                        info!(adapter = %ctx.name, filters = filters.len(), "Subscribed.");
                    }
                }
                Some(SourceEvent::Message(publish)) => {
                    stats.received.inc();
                    let ingress = dispatch(
                        &config,
                        &publish.topic,
                        &publish.payload,
                        ctx.clock.now(),
                        &stats,
                        &throttle,
                        &ctx.name,
                    );
                    let (ingress, waiter) = match (publish.qos, ingress) {
                        (QoS::AtMostOnce, ingress) => (ingress, None),
                        (_, Some(Ingress::Readings(readings))) => {
                            let (receipt, waiter) = Receipt::new(Some(delivery_key(&source, &publish)));
                            (Some(Ingress::Durable { readings, receipt }), Some(waiter))
                        }
                        (_, other) => {
                            // Nothing to keep: acknowledge it in its turn.
                            let (receipt, waiter) = Receipt::new(None);
                            receipt.complete();
                            (other, Some(waiter))
                        }
                    };
                    if let Some(ingress) = ingress {
                        ctx.ingress
                            .send(ingress)
                            .await
                            .map_err(|_| AdapterError::PipelineClosed)?;
                    }
                    if let Some(waiter) = waiter {
                        unacked.push_back((publish, waiter));
                    }
                }
                Some(SourceEvent::Lost(error)) => {
                    if connected {
                        reconnects.inc();
                        warn!(adapter = %ctx.name, broker = %config.url, %error, unacknowledged = unacked.len() + ready.len(), "Lost the local broker; reconnecting (it resends what was not acknowledged).");
                    } else if let Some(suppressed) = throttle.allow("connect") {
                        warn!(adapter = %ctx.name, broker = %config.url, %error, suppressed, "Cannot reach the local broker; retrying.");
                    }
                    connected = false;
                    // Acks for the old connection must not reach the new
                    // one: the broker may have reused their packet ids.
                    unacked.clear();
                    ready.clear();
                    let _ = resume_tx.send(()).await;
                }
            },
        }
    }
    if connected {
        // Acknowledge what is already safe, then leave; the rest is
        // resent by the broker at the next start.
        while let Some((publish, mut waiter)) = unacked.pop_front() {
            if waiter.try_recv().is_err() {
                break;
            }
            ready.push_back(publish);
        }
        for p in &ready {
            let _ = client.try_ack(p);
        }
        let _ = client.try_disconnect();
    }
    // The poller ends on the Disconnect; never wait on a dead network.
    let stopped = tokio::time::timeout(Duration::from_secs(1), async {
        while events.recv().await.is_some() {}
    })
    .await;
    if stopped.is_err() {
        stop_poller.cancel();
    }
    let _ = poller.await;
    info!(adapter = %ctx.name, "Stopped.");
    Ok(())
}

/// Identifies a message within the broker's session for this adapter.
fn delivery_key(source: &Arc<str>, publish: &Publish) -> DeliveryKey {
    let topic = crc32fast::hash(publish.topic.as_bytes());
    let payload = crc32fast::hash(&publish.payload);
    DeliveryKey {
        source: source.clone(),
        slot: publish.pkid,
        digest: (u64::from(topic) << 32) | u64::from(payload),
        resent: publish.dup,
    }
}

async fn poll_loop(
    mut eventloop: EventLoop,
    events: mpsc::Sender<SourceEvent>,
    mut resume: mpsc::Receiver<()>,
    mut backoff: Backoff,
    stop: CancellationToken,
) {
    loop {
        let polled = tokio::select! {
            _ = stop.cancelled() => return,
            e = eventloop.poll() => e,
        };
        let event = match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                SourceEvent::Connected
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => SourceEvent::Subscribed {
                refused: ack
                    .return_codes
                    .iter()
                    .filter(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                    .count(),
            },
            Ok(Event::Incoming(Packet::Publish(publish))) => SourceEvent::Message(publish),
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
            Ok(_) => continue,
            Err(e) => {
                if events.send(SourceEvent::Lost(e.to_string())).await.is_err() {
                    return;
                }
                // Once the adapter has dropped its pending acks, drop any
                // it queued meanwhile (clean() discards queued PubAcks).
                tokio::select! {
                    _ = stop.cancelled() => return,
                    r = resume.recv() => if r.is_none() { return },
                }
                eventloop.clean();
                let delay = backoff.next_delay();
                debug!(?delay, "Local broker reconnect backoff.");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                continue;
            }
        };
        if events.send(event).await.is_err() {
            return;
        }
    }
}

/// Turns one received message into what the pipeline gets, counting and
/// logging everything that is dropped. Never fails: bad input is data.
pub(crate) fn dispatch(
    config: &MqttAdapterConfig,
    topic: &str,
    payload: &[u8],
    now: Timestamp,
    stats: &AdapterStats,
    throttle: &LogThrottle,
    adapter: &str,
) -> Option<Ingress> {
    let reject = |kind: &str, detail: &str| {
        stats.error(kind);
        if let Some(suppressed) = throttle.allow(kind) {
            warn!(
                adapter,
                topic,
                error_type = kind,
                detail,
                bytes = payload.len(),
                suppressed,
                "Dropping message."
            );
        }
    };
    if payload.len() > config.max_payload_bytes {
        reject("payload_too_large", "payload larger than max_payload_bytes");
        return None;
    }
    for pattern in &config.status_topics {
        if let Some(caps) = pattern.matches(topic) {
            let text = String::from_utf8_lossy(payload);
            let state = match DeviceState::parse(&text).or_else(|| status_from_json(payload)) {
                Some(s) => s,
                None => {
                    reject("invalid_status", "expected online or offline");
                    return None;
                }
            };
            let device = match caps.device.map(DeviceId::new) {
                Some(Ok(d)) => d,
                _ => {
                    reject("invalid_device_id", "device level is not a valid id");
                    return None;
                }
            };
            return Some(Ingress::Status(StatusChange {
                device,
                state,
                time: now,
            }));
        }
    }
    let Some((route, caps)) = config
        .routes
        .iter()
        .find_map(|r| r.pattern.matches(topic).map(|c| (r, c)))
    else {
        reject("unmatched_topic", "no topic pattern matches");
        return None;
    };
    let device = match caps.device.map(DeviceId::new) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => {
            reject("invalid_device_id", &e.to_string());
            return None;
        }
    };
    let metric = match caps.metric.map(MetricName::new) {
        None => None,
        Some(Ok(m)) => Some(m),
        Some(Err(e)) => {
            reject("invalid_metric_name", &e.to_string());
            return None;
        }
    };
    let context = Context {
        device: device.as_ref(),
        metric: metric.as_ref(),
        now,
    };
    match payload::decode(&route.format, payload, &context) {
        Ok(decoded) => {
            for problem in &decoded.problems {
                let kind = format!("field_{}", problem.reason.kind());
                reject(&kind, &problem.field);
            }
            if decoded.readings.is_empty() {
                return None;
            }
            stats.readings.add(decoded.readings.len() as u64);
            Some(Ingress::Readings(decoded.readings))
        }
        Err(e) => {
            reject(e.kind(), &e.to_string());
            None
        }
    }
}

/// Zigbee2MQTT's availability payload is `{"state":"online"}`.
fn status_from_json(payload: &[u8]) -> Option<DeviceState> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    DeviceState::parse(v.get("state")?.as_str()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::config::MqttAdapterConfig;
    use gateway_core::config::Problems;
    use gateway_core::{Reading, Telemetry};

    fn adapter(extra: &str) -> MqttAdapterConfig {
        let text = format!("name = \"local\"\n{extra}");
        let mut p = Problems::default();
        let c = MqttAdapterConfig::from_table(toml::from_str(&text).unwrap(), "adapter[0]", &mut p);
        assert!(p.is_empty(), "{p}");
        c.unwrap()
    }

    fn run(config: &MqttAdapterConfig, topic: &str, payload: &str) -> (Option<Ingress>, Telemetry) {
        let t = Telemetry::default();
        let stats = AdapterStats::new(&t, "local");
        let out = dispatch(
            config,
            topic,
            payload.as_bytes(),
            Timestamp::from_millis(1_763_719_200_000).unwrap(),
            &stats,
            &LogThrottle::default(),
            "local",
        );
        (out, t)
    }

    fn readings(i: Option<Ingress>) -> Vec<(String, String, f64)> {
        match i {
            Some(Ingress::Readings(r)) => r
                .iter()
                .map(|r: &Reading| (r.device().to_string(), r.metric().to_string(), r.value()))
                .collect(),
            other => panic!("expected readings, got {other:?}"),
        }
    }

    fn errors(t: &Telemetry, kind: &str) -> u64 {
        t.counter_value(
            "edge_gateway_adapter_errors_total",
            &[("adapter", "local"), ("error_type", kind)],
        )
        .unwrap_or(0)
    }

    #[test]
    fn default_topics_read_the_seed_layouts() {
        let c = adapter("");
        let (out, _) = run(&c, "sensors/data/esp32-1/temperature", "23.4");
        assert_eq!(
            readings(out),
            [("esp32-1".into(), "temperature".into(), 23.4)]
        );
        let (out, _) = run(
            &c,
            "sensors/a2:b2:c2:d2:e2:f2",
            r#"{"temperature":21.5,"humidity":40,"ts":"2026-11-21T10:00:00Z"}"#,
        );
        let mut got = readings(out);
        got.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(
            got,
            [
                ("a2:b2:c2:d2:e2:f2".into(), "humidity".into(), 40.0),
                ("a2:b2:c2:d2:e2:f2".into(), "temperature".into(), 21.5),
            ]
        );
    }

    #[test]
    fn status_topics_update_device_state() {
        let c = adapter("");
        for (payload, state) in [
            ("online", DeviceState::Online),
            ("offline", DeviceState::Offline),
            (r#"{"state":"offline"}"#, DeviceState::Offline),
        ] {
            match run(&c, "sensors/status/dev1", payload).0 {
                Some(Ingress::Status(s)) => {
                    assert_eq!((s.device.as_str(), s.state), ("dev1", state));
                }
                other => panic!("{payload}: {other:?}"),
            }
        }
        let (out, t) = run(&c, "sensors/status/dev1", "sleepy");
        assert!(out.is_none());
        assert_eq!(errors(&t, "invalid_status"), 1);
    }

    #[test]
    fn zigbee2mqtt_topics_need_no_format_and_bring_availability() {
        let c = adapter(r#"topics = ["zigbee2mqtt/{device}"]"#);
        let (out, t) = run(
            &c,
            "zigbee2mqtt/hall",
            r#"{"temperature":19.5,"state":"ON","last_seen":1795255200000,"update":{"state":"idle"}}"#,
        );
        let mut got = readings(out);
        got.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(
            got,
            [
                ("hall".into(), "state".into(), 1.0),
                ("hall".into(), "temperature".into(), 19.5)
            ]
        );
        assert_eq!(
            t.counter_total("edge_gateway_adapter_errors_total"),
            0,
            "bookkeeping fields are not errors"
        );
        match run(
            &c,
            "zigbee2mqtt/hall/availability",
            r#"{"state":"offline"}"#,
        )
        .0
        {
            Some(Ingress::Status(s)) => {
                assert_eq!((s.device.as_str(), s.state), ("hall", DeviceState::Offline))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn explicit_formats_by_topic() {
        let c = adapter(
            r#"topics = [
            { pattern = "esp32/{device}/csv", format = "csv", columns = ["temperature", "pressure", "humidity", "gas"] },
            { pattern = "zigbee2mqtt/{device}", format = "zigbee2mqtt" },
            { pattern = "senml", format = "senml" },
        ]"#,
        );
        let (out, _) = run(&c, "esp32/node7/csv", "21.3,1013.2,45.1,12000");
        assert_eq!(readings(out).len(), 4);
        let (out, _) = run(
            &c,
            "zigbee2mqtt/hall",
            r#"{"temperature":19.5,"linkquality":80,"update":{"state":"idle"}}"#,
        );
        assert_eq!(readings(out).len(), 2);
        let (out, _) = run(&c, "senml", r#"[{"bn":"dev9:","n":"t","v":1.5}]"#);
        assert_eq!(readings(out), [("dev9".into(), "t".into(), 1.5)]);
    }

    #[test]
    fn network_server_events_are_recognised_by_their_topics() {
        let c = adapter(
            r#"topics = [
            { pattern = "application/+/device/+/event/up", codec = "seed_compact" },
            "v3/+/devices/{device}/up",
        ]"#,
        );
        // seed_compact 00d72d0172: 21.5 °C, 45 %, 3.7 V; no decoded object.
        let chirpstack = r#"{"deviceInfo":{"devEui":"0101010101010101"},"fPort":2,"data":"ANctAXI=","rxInfo":[{"rssi":-70,"snr":3.0}]}"#;
        let (out, _) = run(
            &c,
            "application/app-1/device/0101010101010101/event/up",
            chirpstack,
        );
        let got = readings(out);
        assert_eq!(
            got[0],
            ("0101010101010101".into(), "temperature".into(), 21.5)
        );
        assert_eq!(got.len(), 6);
        let tts = r#"{"end_device_ids":{"device_id":"ignored"},"uplink_message":{"f_port":1,"decoded_payload":{"co2":650}}}"#;
        let (out, _) = run(&c, "v3/app@tenant/devices/co2-7/up", tts);
        assert_eq!(readings(out), [("co2-7".into(), "co2".into(), 650.0)]);
    }

    #[test]
    fn bad_input_is_counted_by_type_and_never_forwarded() {
        let c = adapter("max_payload_bytes = 64");
        let cases = [
            ("other/topic", "1", "unmatched_topic"),
            ("sensors/data/d/t", "NaN", "not_finite"),
            ("sensors/data/d/t", "hot", "not_a_number"),
            ("sensors/d", "{broken", "invalid_json"),
            ("sensors/d", &"9".repeat(65), "payload_too_large"),
        ];
        for (topic, payload, kind) in cases {
            let (out, t) = run(&c, topic, payload);
            assert!(out.is_none(), "{topic} {payload} forwarded");
            assert_eq!(
                t.counter_total("edge_gateway_adapter_errors_total"),
                1,
                "{topic} {payload}"
            );
            assert!(
                errors(&t, kind) == 1,
                "{topic} {payload}: expected error_type {kind}, got {}",
                t.render_prometheus()
            );
        }
    }

    #[test]
    fn a_dropped_field_is_counted_and_the_rest_kept() {
        let c = adapter("");
        let (out, t) = run(&c, "sensors/d", r#"{"temperature":"warm","humidity":40}"#);
        assert_eq!(readings(out), [("d".into(), "humidity".into(), 40.0)]);
        assert_eq!(t.counter_total("edge_gateway_adapter_errors_total"), 1);
        assert_eq!(t.counter_total("edge_gateway_adapter_readings_total"), 1);
    }

    #[test]
    fn config_mistakes_name_the_topic_entry() {
        for (extra, expected) in [
            ("topics = [\"a/{dev}\"]", "adapter[0].topics[0]"),
            (
                "topics = [{ pattern = \"x/{device}\", format = \"csv\" }]",
                "adapter[0].topics[0]: format \"csv\" needs a columns list",
            ),
            (
                "topics = [{ pattern = \"x/+\", format = \"number\" }]",
                "adapter[0].topics[0]: \"x/+\" needs a {device} level",
            ),
            (
                "topics = [{ pattern = \"x/{device}\", format = \"xml\" }]",
                "adapter[0].topics[0].format: unknown variant `xml`",
            ),
            (
                "status_topics = [\"status/+\"]",
                "adapter[0].status_topics[0]",
            ),
            (
                "url = \"mqtt://h\"\nca_file = \"/x\"",
                "adapter[0].ca_file: only used with an mqtts:// url",
            ),
            (
                "topics = [{ pattern = \"v3/+/devices/+/up\", codec = \"lpp\" }]",
                "adapter[0].topics[0].codec: unknown codec \"lpp\"",
            ),
            (
                "topics = [{ pattern = \"x/{device}\", format = \"json\", codec = \"cayenne_lpp\" }]",
                "adapter[0].topics[0].codec: only formats chirpstack_v4 and tts_v3",
            ),
        ] {
            let text = format!("name = \"local\"\n{extra}");
            let mut p = Problems::default();
            let c =
                MqttAdapterConfig::from_table(toml::from_str(&text).unwrap(), "adapter[0]", &mut p);
            assert!(c.is_none());
            assert!(
                p.iter().any(|x| x.to_string().starts_with(expected)),
                "{extra}: expected {expected:?}, got {p}"
            );
        }
    }
}
