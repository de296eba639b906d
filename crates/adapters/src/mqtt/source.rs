//! The MQTT ingress adapter: subscribe, decode, hand readings to the pipeline.
//!
//! QoS 1/2 messages are acknowledged by hand, only once the pipeline says
//! their readings are on disk (a [`Receipt`]), and in the order they came
//! (MQTT requires it): after a crash the broker's persistent session
//! redelivers exactly what was not yet safe. Messages that carry nothing to
//! keep (bad input, status) are acknowledged in their turn.
//!
//! The adapter's task polls the event loop itself, beside the receipts it
//! waits for, and writes the acknowledgements that became due together
//! (one flush, not one request and one write each). When the connection
//! drops, the adapter forgets its pending acknowledgements before the
//! event loop reconnects: the broker resends those messages (DUP) and the
//! pipeline recognises copies it already took by their [`DeliveryKey`].
//! Subscriptions are renewed on every ConnAck: a broker restarted without
//! persistence has forgotten them.
//!
//! The messages one read of the socket brought are taken together, and
//! their QoS 0 readings go to the pipeline as one batch.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use gateway_core::backoff::Backoff;
use gateway_core::component::{AdapterFuture, AdapterStats, ADAPTER_CONNECTED};
use gateway_core::telemetry::{Counter, Gauge, LogThrottle};
use gateway_core::{
    Adapter, AdapterContext, AdapterError, DeliveryKey, Ingress, Reading, Receipt, ReceiptWaiter,
};
use rumqttc::{
    AsyncClient, Event, EventLoop, Packet, PubAck, PubRec, Publish, QoS, SubscribeFilter,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::config::MqttAdapterConfig;
use super::dispatch::{dispatch_cached, TopicCache};
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

/// Requests queued for the event loop: only the subscriptions and the
/// final disconnect go this way (acknowledgements are written directly).
const REQUEST_QUEUE: usize = 16;

/// How long writing acknowledgements may take before the connection
/// counts as lost (rumqttc's own flushes wait as long).
const ACK_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the socket is left to gather messages once a burst has been
/// read to its end.
const COALESCE: Duration = Duration::from_millis(1);

/// Reads taken one after the other before the receipts and the stop are
/// looked at again.
const MAX_TURNS: usize = 64;

/// An acknowledgement owed to the broker.
#[derive(Debug, Clone, Copy)]
struct Ack {
    pkid: u16,
    qos: QoS,
}

impl Ack {
    fn of(p: &Publish) -> Self {
        Self {
            pkid: p.pkid,
            qos: p.qos,
        }
    }

    /// What `AsyncClient::ack` would queue (the broker should send no QoS 2,
    /// it is subscribed as 1; rumqttc's state answers a PUBREL either way).
    fn packet(self) -> Packet {
        match self.qos {
            QoS::ExactlyOnce => Packet::PubRec(PubRec::new(self.pkid)),
            _ => Packet::PubAck(PubAck::new(self.pkid)),
        }
    }
}

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
    // Readings flow only once subscribed: until then `/health` says so.
    let subscribed = ctx
        .telemetry
        .gauge(ADAPTER_CONNECTED, &[("adapter", &ctx.name)]);
    subscribed.set(0.0);
    let mut s = Session {
        stats: ctx.stats(),
        reconnects: ctx.telemetry.counter(
            "edge_gateway_adapter_reconnects_total",
            &[("adapter", &ctx.name)],
        ),
        throttle: LogThrottle::default(),
        source: Arc::from(ctx.name.as_str()),
        subscribed,
        config: &config,
        max_packet_bytes: connection.max_packet_bytes,
        ctx: &ctx,
        client: &client,
        filters,
        unacked: VecDeque::new(),
        ready: Vec::new(),
        connected: false,
        oversized_resend: None,
        batch: Vec::new(),
        topics: TopicCache::default(),
    };
    let mut backoff = Backoff::new(Duration::from_millis(200), config.broker.max_backoff);
    // One wait for the stop for the adapter's whole life: a fresh one per
    // turn registered and unregistered with the token every message.
    let stop = ctx.shutdown.cancelled();
    tokio::pin!(stop);
    let nap = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(nap);
    let mut napping = false;
    'run: loop {
        if !s.ready.is_empty() {
            let written = tokio::select! {
                biased;
                _ = &mut stop => break,
                w = write_acks(&mut eventloop, &mut s.ready) => w,
            };
            if let Err(error) = written {
                s.lost(&error, None);
                if !reconnect(
                    &mut eventloop,
                    None,
                    &mut backoff,
                    s.max_packet_bytes,
                    &ctx.shutdown,
                )
                .await
                {
                    break;
                }
                continue;
            }
        }
        // The event loop is polled here, beside the receipts, rather than
        // in a task of its own: one task less to wake per message, and the
        // acknowledgements can be written in one go. Dropping `poll()` when
        // a receipt completes first is safe for this use: its waits are
        // the socket read (buffered), the flush of what was already
        // written, the keep-alive timer and the request channel, which
        // carries only the subscriptions (taken and written without an
        // await) and the final disconnect.
        tokio::select! {
            biased;
            _ = &mut stop => break,
            done = async {
                match s.unacked.front_mut() {
                    Some((_, waiter)) => waiter.await,
                    None => std::future::pending().await,
                }
            }, if !s.unacked.is_empty() => {
                if done.is_err() {
                    // The pipeline stopped before the readings were safe;
                    // the broker keeps them for the next start.
                    s.unacked.clear();
                    continue;
                }
                // The front is safe, and so may be those right behind it.
                if let Some((ack, _)) = s.unacked.pop_front() {
                    s.ready.push(ack);
                }
                s.take_safe();
            }
            _ = &mut nap, if napping => napping = false,
            polled = eventloop.poll(), if !napping => {
                let mut polled = polled;
                let mut turns = 0;
                loop {
                    let took = match polled {
                        Ok(event) => {
                            if matches!(event, Event::Incoming(Packet::ConnAck(_))) {
                                backoff.reset();
                            }
                            let mut took = s.on_event(event).await?;
                            // The rest of what one read brought is buffered
                            // already: taken now, its readings go to the
                            // pipeline together.
                            while let Some(event) = eventloop.state.events.pop_front() {
                                took += s.on_event(event).await?;
                            }
                            s.flush_batch().await?;
                            took
                        }
                        Err(e) => {
                            let oversized = oversized_packet(&e);
                            s.lost(&e.to_string(), oversized);
                            if !reconnect(&mut eventloop, oversized, &mut backoff, s.max_packet_bytes, &ctx.shutdown).await {
                                break 'run;
                            }
                            0
                        }
                    };
                    turns += 1;
                    if took == 0 || turns == MAX_TURNS {
                        break;
                    }
                    // Messages are coming: take what else has arrived, and
                    // once the socket is drained, let more gather for a
                    // moment before reading it again (receipts are still
                    // answered meanwhile). Woken for each message as it
                    // came, the gateway spent a third of its CPU per
                    // reading in epoll_wait and recv on a burst; a
                    // millisecond is nothing to readings that go into
                    // windows of a second or more.
                    let next = tokio::select! {
                        biased;
                        next = eventloop.poll() => Some(next),
                        () = std::future::ready(()) => None,
                    };
                    match next {
                        Some(next) => polled = next,
                        None => {
                            nap.as_mut().reset(tokio::time::Instant::now() + COALESCE);
                            napping = true;
                            break;
                        }
                    }
                }
            }
        }
    }
    if s.connected {
        // Acknowledge what is already safe, then leave; the rest is
        // resent by the broker at the next start.
        s.take_safe();
        let _ = write_acks(&mut eventloop, &mut s.ready).await;
        let _ = client.try_disconnect();
        // The event loop sends the Disconnect; never wait on a dead network.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
    info!(adapter = %ctx.name, "Stopped.");
    Ok(())
}

/// Writes the acknowledgements owed, in order, with one flush.
async fn write_acks(eventloop: &mut EventLoop, ready: &mut Vec<Ack>) -> Result<(), String> {
    let Some(network) = eventloop.network.as_mut() else {
        // No connection: the broker resends them anyway.
        ready.clear();
        return Ok(());
    };
    for ack in ready.drain(..) {
        network
            .write(ack.packet())
            .await
            .map_err(|e| e.to_string())?;
    }
    match tokio::time::timeout(ACK_WRITE_TIMEOUT, network.flush()).await {
        Ok(flushed) => flushed.map_err(|e| e.to_string()),
        Err(_) => Err("timed out writing acknowledgements".into()),
    }
}

/// Gets the event loop ready to connect again after a failure; false when
/// the adapter is stopping.
async fn reconnect(
    eventloop: &mut EventLoop,
    oversized: Option<usize>,
    backoff: &mut Backoff,
    max_packet_bytes: usize,
    shutdown: &CancellationToken,
) -> bool {
    eventloop.clean();
    // Packets read in the same batch as the failure are still buffered as
    // events; yielded on the next connection they would be acknowledged by
    // packet ids that now belong to other messages. The broker resends
    // them anyway.
    eventloop.state.events.clear();
    // The oversized packet comes first again: read it this time (bounded),
    // so it can be acknowledged and dropped; the next connection goes back
    // to the configured limit.
    let limit = match oversized {
        Some(n) if n <= MAX_OVERSIZED_PACKET => n.saturating_add(1024),
        _ => max_packet_bytes,
    };
    eventloop
        .mqtt_options
        .set_max_packet_size(limit, max_packet_bytes);
    let delay = match oversized {
        Some(n) if n <= MAX_OVERSIZED_PACKET => Duration::ZERO,
        // Nothing we can do but wait for someone to clear it; the ConnAck
        // resets the backoff, so do not hammer.
        Some(_) => backoff.max(),
        None => backoff.next_delay(),
    };
    debug!(?delay, "Local broker reconnect backoff.");
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

/// One adapter's state across its connections.
struct Session<'a> {
    config: &'a MqttAdapterConfig,
    ctx: &'a AdapterContext,
    client: &'a AsyncClient,
    filters: Vec<SubscribeFilter>,
    max_packet_bytes: usize,
    stats: AdapterStats,
    reconnects: Counter,
    subscribed: Gauge,
    throttle: LogThrottle,
    source: Arc<str>,
    /// Received QoS 1/2 messages in arrival order, each with the receipt
    /// that says it may be acknowledged.
    unacked: VecDeque<(Ack, ReceiptWaiter)>,
    /// Safe to acknowledge, to be written.
    ready: Vec<Ack>,
    connected: bool,
    /// The size of the message that broke the last connection: its resend
    /// is already counted.
    oversized_resend: Option<usize>,
    /// QoS 0 readings of the messages taken this turn, sent together.
    batch: Vec<Reading>,
    topics: TopicCache,
}

impl Session<'_> {
    /// Moves the receipts already complete at the front to `ready`.
    fn take_safe(&mut self) {
        while let Some((_, next)) = self.unacked.front_mut() {
            if next.try_recv().is_err() {
                break;
            }
            if let Some((ack, _)) = self.unacked.pop_front() {
                self.ready.push(ack);
            }
        }
    }

    async fn send(&mut self, ingress: Ingress) -> Result<(), AdapterError> {
        // In the order the broker sent them.
        self.flush_batch().await?;
        self.ctx
            .ingress
            .send(ingress)
            .await
            .map_err(|_| AdapterError::PipelineClosed)
    }

    async fn flush_batch(&mut self) -> Result<(), AdapterError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let readings = std::mem::take(&mut self.batch);
        self.ctx
            .ingress
            .send(Ingress::Readings(readings))
            .await
            .map_err(|_| AdapterError::PipelineClosed)
    }

    /// Handles one event; 1 if it was a message, else 0.
    async fn on_event(&mut self, event: Event) -> Result<usize, AdapterError> {
        match event {
            Event::Incoming(Packet::ConnAck(ack)) => {
                self.connected(ack.session_present).await?;
            }
            Event::Incoming(Packet::SubAck(ack)) => {
                let refused = ack
                    .return_codes
                    .iter()
                    .filter(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                    .count();
                self.on_subscribed(refused);
            }
            Event::Incoming(Packet::Publish(publish)) => {
                self.message(publish).await?;
                return Ok(1);
            }
            _ => {}
        }
        Ok(0)
    }

    /// A connection; `resumed` when the broker kept our session (MQTT
    /// session present): only then can it resend what came before.
    async fn connected(&mut self, resumed: bool) -> Result<(), AdapterError> {
        let (ctx, config) = (self.ctx, self.config);
        // The INFO lines of a (re)connection stay one per connection: they
        // mark recovery, and tests and operators wait for them. The
        // warnings a broker that drops the gateway after each CONNACK (a
        // client-id clash, an ACL) repeats per reconnect are throttled.
        info!(adapter = %ctx.name, broker = %config.broker.url, resumed, "Connected to the local broker.");
        self.connected = true;
        if !resumed {
            // Nothing the broker sends from now on is a resend of what it
            // sent before: its packet ids start over, and an equal payload
            // is a new reading.
            let source = self.source.clone();
            self.send(Ingress::NewSession { source }).await?;
        }
        if let Err(e) = self.client.try_subscribe_many(self.filters.clone()) {
            if let Some(suppressed) = self.throttle.allow("subscribe") {
                warn!(adapter = %ctx.name, error = %e, suppressed, "Could not queue the subscriptions.");
            }
        }
        Ok(())
    }

    fn on_subscribed(&mut self, refused: usize) {
        let name = &self.ctx.name;
        if refused > 0 {
            self.stats.error("subscription_refused");
            self.subscribed.set(0.0);
            if let Some(suppressed) = self.throttle.allow("refused") {
                warn!(adapter = %name, refused, suppressed, "The broker refused some subscriptions.");
            }
        } else {
            info!(adapter = %name, filters = self.filters.len(), "Subscribed.");
            self.subscribed.set(1.0);
        }
    }

    async fn message(&mut self, publish: Publish) -> Result<(), AdapterError> {
        self.stats.received.inc();
        if packet_bytes(&publish) > self.max_packet_bytes {
            // Read only thanks to the raised limit: acknowledged in its
            // turn and dropped. The resend of the message that broke the
            // last connection was counted then.
            if self.oversized_resend == Some(packet_bytes(&publish)) {
                self.oversized_resend = None;
            } else {
                self.stats.error("payload_too_large");
            }
            if publish.qos != QoS::AtMostOnce {
                self.nothing_to_keep(Ack::of(&publish));
            }
            return Ok(());
        }
        let ingress = dispatch_cached(
            self.config,
            &publish.topic,
            &publish.payload,
            self.ctx.clock.now(),
            &self.stats,
            &self.throttle,
            &self.ctx.name,
            &mut self.topics,
        );
        match (publish.qos, ingress) {
            (QoS::AtMostOnce, Some(Ingress::Readings(mut readings))) => {
                self.batch.append(&mut readings);
            }
            (QoS::AtMostOnce, Some(other)) => self.send(other).await?,
            (QoS::AtMostOnce, None) => {}
            (_, Some(Ingress::Readings(readings))) => {
                let (receipt, waiter) = Receipt::new(Some(delivery_key(&self.source, &publish)));
                self.send(Ingress::Durable { readings, receipt }).await?;
                self.unacked.push_back((Ack::of(&publish), waiter));
            }
            (_, other) => {
                if let Some(other) = other {
                    self.send(other).await?;
                }
                self.nothing_to_keep(Ack::of(&publish));
            }
        }
        Ok(())
    }

    /// A QoS 1/2 message that carries nothing to keep (bad input, status):
    /// acknowledged in its turn.
    fn nothing_to_keep(&mut self, ack: Ack) {
        let (receipt, waiter) = Receipt::new(None);
        receipt.complete();
        self.unacked.push_back((ack, waiter));
    }

    /// The connection failed: forget what it owed.
    fn lost(&mut self, error: &str, oversized: Option<usize>) {
        let (ctx, config) = (self.ctx, self.config);
        if let Some(bytes) = oversized {
            self.stats.error("payload_too_large");
            self.oversized_resend = Some(bytes);
            if let Some(suppressed) = self.throttle.allow("oversized") {
                if bytes <= MAX_OVERSIZED_PACKET {
                    warn!(adapter = %ctx.name, broker = %config.broker.url, bytes, max_payload_bytes = config.max_payload_bytes, suppressed, "A message larger than max_payload_bytes broke the connection; reading it once more to acknowledge and drop it.");
                } else {
                    error!(adapter = %ctx.name, broker = %config.broker.url, bytes, limit = MAX_OVERSIZED_PACKET, suppressed, "A message too large to read even once blocks this adapter's session: set message_size_limit on the broker below that, or clear the gateway's session there.");
                }
            }
        }
        if self.connected {
            self.reconnects.inc();
            if let Some(suppressed) = self.throttle.allow("lost") {
                warn!(adapter = %ctx.name, broker = %config.broker.url, %error, unacknowledged = self.unacked.len() + self.ready.len(), suppressed, "Lost the local broker; reconnecting (it resends what was not acknowledged).");
            }
        } else if let Some(suppressed) = self.throttle.allow("connect") {
            warn!(adapter = %ctx.name, broker = %config.broker.url, %error, suppressed, "Cannot reach the local broker; retrying.");
        }
        self.connected = false;
        self.subscribed.set(0.0);
        // Acks for the old connection must not reach the new one: the
        // broker may have reused their packet ids.
        self.unacked.clear();
        self.ready.clear();
    }
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
