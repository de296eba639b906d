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
use gateway_core::component::{AdapterFuture, ADAPTER_CONNECTED};
use gateway_core::telemetry::LogThrottle;
use gateway_core::{
    Adapter, AdapterContext, AdapterError, DeliveryKey, Ingress, Receipt, ReceiptWaiter,
};
use rumqttc::{AsyncClient, Event, EventLoop, Packet, Publish, QoS, SubscribeFilter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::config::MqttAdapterConfig;
use super::dispatch::dispatch;
use mqtt_connect::ConnectionSettings;

/// A runnable MQTT ingress adapter.
pub struct MqttSource {
    config: MqttAdapterConfig,
    connection: ConnectionSettings,
}

impl MqttSource {
    pub fn new(config: MqttAdapterConfig, gateway_id: &str) -> Self {
        let connection = ConnectionSettings {
            // Room for the MQTT header around the largest payload we accept;
            // anything larger is refused by the client before it is buffered.
            max_packet_bytes: config.max_payload_bytes.saturating_add(1024),
            persistent_session: config.persistent_session,
            ..ConnectionSettings::new(
                &config.broker,
                format!("edge-gateway-{gateway_id}-{}", config.name),
            )
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
    /// A connection; `resumed` when the broker kept our session (MQTT
    /// session present): only then can it resend what came before.
    Connected {
        resumed: bool,
    },
    Subscribed {
        refused: usize,
    },
    Message(Publish),
    Lost {
        error: String,
        /// The connection failed on a packet larger than we read: its size.
        oversized: Option<usize>,
    },
}

/// The largest packet read after one failed as oversized, so the broker's
/// resend can be read, counted and acknowledged instead of failing every
/// connection (rumqttc cannot skip a packet it will not buffer). Beyond
/// this only the broker's `message_size_limit` protects the gateway.
const MAX_OVERSIZED_PACKET: usize = 64 * 1024 * 1024;

/// The MQTT remaining length of a PUBLISH, which is what rumqttc compares
/// with its packet size limit.
fn packet_bytes(p: &Publish) -> usize {
    let packet_id = if p.qos == QoS::AtMostOnce { 0 } else { 2 };
    2 + p.topic.len() + packet_id + p.payload.len()
}

/// The size of the packet a connection failed on, when that is why.
fn oversized_packet(e: &rumqttc::ConnectionError) -> Option<usize> {
    match e {
        rumqttc::ConnectionError::MqttState(rumqttc::StateError::Deserialization(
            rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(n),
        )) => Some(*n),
        _ => None,
    }
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
        Backoff::new(Duration::from_millis(200), config.broker.max_backoff),
        stop_poller.clone(),
        connection.max_packet_bytes,
    ));
    let source: Arc<str> = Arc::from(ctx.name.as_str());
    // Received QoS 1/2 messages in arrival order, each with the receipt
    // that says it may be acknowledged.
    let mut unacked: VecDeque<(Publish, ReceiptWaiter)> = VecDeque::new();
    // Safe to acknowledge, waiting for room in the client's queue.
    let mut ready: VecDeque<Publish> = VecDeque::new();
    let mut connected = false;
    // The size of the message that broke the last connection: its resend
    // is already counted.
    let mut oversized_resend: Option<usize> = None;
    // Readings flow only once subscribed: until then `/health` says so.
    let subscribed = ctx
        .telemetry
        .gauge(ADAPTER_CONNECTED, &[("adapter", &ctx.name)]);
    subscribed.set(0.0);

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
                Some(SourceEvent::Connected { resumed }) => {
                    // The INFO lines of a (re)connection stay one per
                    // connection: they mark recovery, and tests and
                    // operators wait for them. The warnings a broker that
                    // drops the gateway after each CONNACK (a client-id
                    // clash, an ACL) repeats per reconnect are throttled.
                    info!(adapter = %ctx.name, broker = %config.broker.url, resumed, "Connected to the local broker.");
                    connected = true;
                    if !resumed {
                        // Nothing the broker sends from now on is a resend
                        // of what it sent before: its packet ids start
                        // over, and an equal payload is a new reading.
                        ctx.ingress
                            .send(Ingress::NewSession { source: source.clone() })
                            .await
                            .map_err(|_| AdapterError::PipelineClosed)?;
                    }
                    if let Err(e) = client.try_subscribe_many(filters.clone()) {
                        if let Some(suppressed) = throttle.allow("subscribe") {
                            warn!(adapter = %ctx.name, error = %e, suppressed, "Could not queue the subscriptions.");
                        }
                    }
                }
                Some(SourceEvent::Subscribed { refused }) => {
                    if refused > 0 {
                        stats.error("subscription_refused");
                        subscribed.set(0.0);
                        if let Some(suppressed) = throttle.allow("refused") {
                            warn!(adapter = %ctx.name, refused, suppressed, "The broker refused some subscriptions.");
                        }
                    } else {
                        info!(adapter = %ctx.name, filters = filters.len(), "Subscribed.");
                        subscribed.set(1.0);
                    }
                }
                Some(SourceEvent::Message(publish)) if packet_bytes(&publish) > connection.max_packet_bytes => {
                    // Read only thanks to the raised limit: acknowledged in
                    // its turn and dropped. The resend of the message that
                    // broke the last connection was counted then.
                    stats.received.inc();
                    if oversized_resend == Some(packet_bytes(&publish)) {
                        oversized_resend = None;
                    } else {
                        stats.error("payload_too_large");
                    }
                    let (receipt, waiter) = Receipt::new(None);
                    receipt.complete();
                    if publish.qos != QoS::AtMostOnce {
                        unacked.push_back((publish, waiter));
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
                Some(SourceEvent::Lost { error, oversized }) => {
                    if let Some(bytes) = oversized {
                        stats.error("payload_too_large");
                        oversized_resend = Some(bytes);
                        if let Some(suppressed) = throttle.allow("oversized") {
                            if bytes <= MAX_OVERSIZED_PACKET {
                                warn!(adapter = %ctx.name, broker = %config.broker.url, bytes, max_payload_bytes = config.max_payload_bytes, suppressed, "A message larger than max_payload_bytes broke the connection; reading it once more to acknowledge and drop it.");
                            } else {
                                error!(adapter = %ctx.name, broker = %config.broker.url, bytes, limit = MAX_OVERSIZED_PACKET, suppressed, "A message too large to read even once blocks this adapter's session: set message_size_limit on the broker below that, or clear the gateway's session there.");
                            }
                        }
                    }
                    if connected {
                        reconnects.inc();
                        if let Some(suppressed) = throttle.allow("lost") {
                            warn!(adapter = %ctx.name, broker = %config.broker.url, %error, unacknowledged = unacked.len() + ready.len(), suppressed, "Lost the local broker; reconnecting (it resends what was not acknowledged).");
                        }
                    } else if let Some(suppressed) = throttle.allow("connect") {
                        warn!(adapter = %ctx.name, broker = %config.broker.url, %error, suppressed, "Cannot reach the local broker; retrying.");
                    }
                    connected = false;
                    subscribed.set(0.0);
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
    max_packet_bytes: usize,
) {
    loop {
        let polled = tokio::select! {
            _ = stop.cancelled() => return,
            e = eventloop.poll() => e,
        };
        let event = match polled {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff.reset();
                SourceEvent::Connected {
                    resumed: ack.session_present,
                }
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
                let oversized = oversized_packet(&e);
                let lost = SourceEvent::Lost {
                    error: e.to_string(),
                    oversized,
                };
                if events.send(lost).await.is_err() {
                    return;
                }
                // Once the adapter has dropped its pending acks, drop any
                // it queued meanwhile (clean() discards queued PubAcks).
                tokio::select! {
                    _ = stop.cancelled() => return,
                    r = resume.recv() => if r.is_none() { return },
                }
                eventloop.clean();
                // Packets read in the same batch as the failure are still
                // buffered as events; yielded on the next connection they
                // would be acknowledged by packet ids that now belong to
                // other messages. The broker resends them anyway.
                eventloop.state.events.clear();
                // The oversized packet comes first again: read it this
                // time (bounded), so it can be acknowledged and dropped;
                // the next connection goes back to the configured limit.
                let limit = match oversized {
                    Some(n) if n <= MAX_OVERSIZED_PACKET => n.saturating_add(1024),
                    _ => max_packet_bytes,
                };
                eventloop
                    .mqtt_options
                    .set_max_packet_size(limit, max_packet_bytes);
                let delay = match oversized {
                    Some(n) if n <= MAX_OVERSIZED_PACKET => Duration::ZERO,
                    // Nothing we can do but wait for someone to clear it;
                    // the ConnAck resets the backoff, so do not hammer.
                    Some(_) => backoff.max(),
                    None => backoff.next_delay(),
                };
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
