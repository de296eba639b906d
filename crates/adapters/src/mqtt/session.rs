//! What the MQTT adapter keeps across its connections: the messages
//! waiting for their receipts, the acknowledgements due, the QoS 0
//! readings of one turn, and what each kind of event does to them.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use gateway_core::component::AdapterStats;
use gateway_core::telemetry::{Counter, Gauge, LogThrottle};
use gateway_core::{
    AdapterContext, AdapterError, DeliveryKey, Ingress, Reading, Receipt, ReceiptWaiter,
    Timestamp,
};
use tracing::{info, warn};

use super::config::{MqttAdapterConfig, Retained};
use super::dispatch::{dispatch_cached, dispatch_into, is_status_topic, TopicCache};
use super::subscriptions::{self, Memory, MemoryError};
use super::wire::{Ack, Publish};

/// Counter `{adapter}`: retained messages on data topics dropped as
/// copies (`retained = "ignore"`).
pub const RETAINED_IGNORED: &str = "edge_gateway_adapter_retained_ignored_total";

/// Connections lost with an UNSUBSCRIBE unanswered before the adapter
/// stops asking, until its next start: MQTT 3.1.1 gives a broker that
/// will not unsubscribe no answer but closing the connection, and asking
/// at every reconnect would then cost the kept topics their readings.
const UNSUBSCRIBE_TRIES: u32 = 3;

/// Readings a new QoS 0 batch has room for at most: about what one 32 KiB
/// read of a burst of small messages brings (growing a batch of 256 to it
/// cost 60 instructions a reading), and let go of once the burst has
/// passed ([`Session::let_go_of_caches`]).
const BATCH_ROOM: usize = 1024;

/// The acknowledgement a QoS 1/2 message is owed (the broker should send
/// no QoS 2, it is subscribed as 1; its PUBREL is answered either way).
fn ack_of(p: &Publish<'_>) -> Ack {
    if p.qos == 2 {
        Ack::PubRec(p.pkid)
    } else {
        Ack::PubAck(p.pkid)
    }
}

/// One adapter's state across its connections.
pub(super) struct Session<'a> {
    pub(super) config: &'a MqttAdapterConfig,
    pub(super) ctx: &'a AdapterContext,
    /// The subscriptions, each with its QoS, renewed on every connection.
    pub(super) filters: Vec<(String, u8)>,
    pub(super) stats: AdapterStats,
    pub(super) reconnects: Counter,
    /// Retained copies dropped ([`RETAINED_IGNORED`]).
    pub(super) retained_ignored: Counter,
    pub(super) subscribed: Gauge,
    pub(super) throttle: LogThrottle,
    pub(super) source: Arc<str>,
    /// Received QoS 1/2 messages in arrival order, each with the receipt
    /// that says it may be acknowledged.
    pub(super) unacked: VecDeque<(Ack, ReceiptWaiter)>,
    /// Safe to acknowledge, to be written.
    pub(super) ready: Vec<Ack>,
    pub(super) connected: bool,
    /// QoS 0 readings of the messages taken this turn, sent together.
    pub(super) batch: Vec<Reading>,
    pub(super) topics: TopicCache,
    /// What the broker's session was subscribed to, on disk.
    pub(super) memory: Memory,
    /// Sent in an UNSUBSCRIBE not yet acknowledged.
    pub(super) unsubscribing: Vec<String>,
    pub(super) unsubscribe_failures: u32,
    /// A clean session's old record is forgotten once per run.
    pub(super) forgotten: bool,
}

impl Session<'_> {
    /// Lets go of what the last burst left in the adapter's caches and
    /// buffers, once it has passed ([`gateway_core::cache_release`]): the
    /// topics it routed (each with its device's id) and the batch sized for
    /// it (the receive buffer is the link's to let go of). Their small
    /// chunks, allocated among the burst's freed buffers, kept the heap's
    /// free memory in holes too small to give back. Nothing waiting is
    /// dropped: only empty buffers are replaced.
    pub(super) fn let_go_of_caches(&mut self) {
        self.topics.let_go();
        if self.batch.is_empty() {
            self.batch = Vec::new();
        }
        if self.ready.is_empty() {
            self.ready = Vec::new();
        }
        if self.unacked.is_empty() {
            self.unacked = VecDeque::new();
        }
    }

    /// Moves the receipts already complete at the front to `ready`.
    pub(super) fn take_safe(&mut self) {
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

    pub(super) async fn flush_batch(&mut self) -> Result<(), AdapterError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        // The next read's batch sized like this one's (up to a bound), so
        // a burst's batch is not grown message by message again.
        let room = self.batch.len().min(BATCH_ROOM);
        let readings = std::mem::replace(&mut self.batch, Vec::with_capacity(room));
        self.ctx
            .ingress
            .send(Ingress::Readings(readings))
            .await
            .map_err(|_| AdapterError::PipelineClosed)
    }

    /// A connection; `resumed` when the broker kept our session (MQTT
    /// session present): only then can it resend what came before.
    /// The subscriptions are the caller's to send.
    pub(super) async fn connected(&mut self, resumed: bool) -> Result<(), AdapterError> {
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
        Ok(())
    }

    /// The filters of this connection's session that the config no longer
    /// asks for, to be unsubscribed before the SUBSCRIBE is sent (the
    /// SUBACK then also says they are gone: a broker answers a client's
    /// packets in order). What will be subscribed is written down first.
    pub(super) async fn stale_filters(&mut self, resumed: bool) -> Vec<String> {
        if !self.config.persistent_session {
            // A clean session is discarded by the broker at each connect
            // and disconnect: a persistent one before it is gone with its
            // subscriptions, and so is the point of its record.
            if !self.forgotten {
                self.forgotten = true;
                if let Err(e) = self.memory.remember(None).await {
                    self.memory_failed(&e);
                }
            }
            return Vec::new();
        }
        let remembered = match self.memory.recall().await {
            Ok(remembered) => remembered,
            Err(e) => {
                self.memory_failed(&e);
                None
            }
        };
        if resumed && remembered.is_none() {
            info!(adapter = %self.ctx.name, "The broker kept this session, and what it was subscribed to before is not known (a first start, or the first since an upgrade): topics removed from the config earlier stay subscribed until the session is cleared (persistent_session = false for one start).");
        }
        let wanted: BTreeSet<String> = self.filters.iter().map(|(f, _)| f.clone()).collect();
        let plan = subscriptions::plan(remembered.as_ref(), &wanted, resumed);
        if let Some(record) = plan.write {
            if let Err(e) = self.memory.remember(Some(record)).await {
                self.memory_failed(&e);
            }
        }
        if plan.unsubscribe.is_empty() || self.unsubscribe_failures >= UNSUBSCRIBE_TRIES {
            return Vec::new();
        }
        self.unsubscribing.clone_from(&plan.unsubscribe);
        plan.unsubscribe
    }

    /// The broker's UNSUBACK: the stale filters are gone from its session.
    pub(super) async fn on_unsubscribed(&mut self) {
        if self.unsubscribing.is_empty() {
            return;
        }
        let gone = std::mem::take(&mut self.unsubscribing);
        self.unsubscribe_failures = 0;
        info!(adapter = %self.ctx.name, filters = ?gone, "Unsubscribed from filters no longer in topics, which the broker's session had kept.");
        let wanted = self.filters.iter().map(|(f, _)| f.clone()).collect();
        if let Err(e) = self.memory.remember(Some(wanted)).await {
            self.memory_failed(&e);
        }
    }

    /// The record of the session's subscriptions could not be read or
    /// written: the adapter goes on, unable to unsubscribe what it does
    /// not know of.
    fn memory_failed(&mut self, error: &MemoryError) {
        let name = &self.ctx.name;
        gateway_core::refuse!(self.stats, self.throttle, "subscriptions_file";
            adapter = %name, %error, "Cannot keep what the broker's session is subscribed to: topics removed from the config may go on arriving.");
    }

    /// The SUBACK's return codes, one per filter.
    pub(super) fn on_subscribed(&mut self, codes: &[u8]) {
        let refused = codes.iter().filter(|&&c| c == 0x80).count();
        let name = &self.ctx.name;
        if refused > 0 {
            self.subscribed.set(0.0);
            gateway_core::refuse!(self.stats, self.throttle, "subscription_refused", per "refused";
                adapter = %name, refused, "The broker refused some subscriptions.");
        } else {
            info!(adapter = %name, filters = self.filters.len(), "Subscribed.");
            self.subscribed.set(1.0);
        }
    }

    /// A message the broker delivered, which arrived at `now`.
    pub(super) async fn message(
        &mut self,
        publish: Publish<'_>,
        now: Timestamp,
    ) -> Result<(), AdapterError> {
        self.stats.received.inc();
        if publish.retain && self.config.retained == Retained::Ignore {
            let topic = String::from_utf8_lossy(publish.topic);
            if !is_status_topic(self.config, &topic) {
                self.retained_copy(&topic, &publish);
                return Ok(());
            }
        }
        // The topic is checked as UTF-8 by the dispatch, only when it is
        // not one it has routed before (a check per message was a tenth of
        // a QoS 0 reading's instructions).
        let topic = publish.topic;
        let payload = publish.payload;
        let (stats, throttle, name) = (&self.stats, &self.throttle, &self.ctx.name);
        let ingress = if publish.qos == 0 {
            // Straight into the batch the pipeline gets after this read.
            let batch = &mut self.batch;
            dispatch_into(
                self.config,
                topic,
                payload,
                now,
                stats,
                throttle,
                name,
                &mut self.topics,
                batch,
            )
        } else {
            dispatch_cached(
                self.config,
                topic,
                payload,
                now,
                stats,
                throttle,
                name,
                &mut self.topics,
            )
        };
        match (publish.qos, ingress) {
            (0, Some(Ingress::Readings(mut readings))) => {
                self.batch.append(&mut readings);
            }
            (0, Some(other)) => self.send(other).await?,
            (0, None) => {}
            (_, Some(Ingress::Readings(readings))) => {
                let (receipt, waiter) = Receipt::new(Some(delivery_key(&self.source, &publish)));
                self.send(Ingress::Durable { readings, receipt }).await?;
                self.unacked.push_back((ack_of(&publish), waiter));
            }
            (_, other) => {
                if let Some(other) = other {
                    self.send(other).await?;
                }
                self.nothing_to_keep(ack_of(&publish));
            }
        }
        Ok(())
    }

    /// A message over the size limit, skipped unread: counted, and
    /// acknowledged in its turn so the broker does not send it again.
    pub(super) fn oversized(&mut self, qos: u8, pkid: u16, bytes: usize) {
        self.stats.received.inc();
        let (ctx, config) = (self.ctx, self.config);
        gateway_core::refuse!(self.stats, self.throttle, "payload_too_large", per "oversized";
            adapter = %ctx.name, broker = %config.broker.url, bytes, max_payload_bytes = config.max_payload_bytes, "Dropping a message larger than max_payload_bytes unread.");
        match qos {
            0 => {}
            2 => self.nothing_to_keep(Ack::PubRec(pkid)),
            _ => self.nothing_to_keep(Ack::PubAck(pkid)),
        }
    }

    /// A retained message on a data topic, delivered because the gateway
    /// subscribed: the broker sends it again at every subscription, and
    /// counting it each time made one reading four after a restart, a
    /// kill and a broker restart. Acknowledged in its turn and dropped.
    fn retained_copy(&mut self, topic: &str, publish: &Publish<'_>) {
        self.retained_ignored.inc();
        if let Some(suppressed) = self.throttle.allow("retained") {
            let topic = super::dispatch::topic_for_log(topic.as_bytes());
            info!(adapter = %self.ctx.name, topic, suppressed, "Ignoring a retained reading delivered on subscribing: it is no new reading (retained = \"take\" takes them).");
        }
        if publish.qos != 0 {
            self.nothing_to_keep(ack_of(publish));
        }
    }

    /// A QoS 1/2 message that carries nothing to keep (bad input, status):
    /// acknowledged in its turn.
    fn nothing_to_keep(&mut self, ack: Ack) {
        let (receipt, waiter) = Receipt::new(None);
        receipt.complete();
        self.unacked.push_back((ack, waiter));
    }

    /// The connection failed: forget what it owed.
    pub(super) fn lost(&mut self, error: &str) {
        let (ctx, config) = (self.ctx, self.config);
        if self.connected {
            self.reconnects.inc();
            if let Some(suppressed) = self.throttle.allow("lost") {
                warn!(adapter = %ctx.name, broker = %config.broker.url, %error, unacknowledged = self.unacked.len() + self.ready.len(), suppressed, "Lost the local broker; reconnecting (it resends what was not acknowledged).");
            }
        } else if let Some(suppressed) = self.throttle.allow("connect") {
            warn!(adapter = %ctx.name, broker = %config.broker.url, %error, suppressed, "Cannot reach the local broker; retrying.");
        }
        if !self.unsubscribing.is_empty() {
            self.unsubscribe_failures += 1;
            let (name, tries) = (&self.ctx.name, self.unsubscribe_failures);
            let filters = std::mem::take(&mut self.unsubscribing);
            let again = tries < UNSUBSCRIBE_TRIES;
            gateway_core::refuse!(self.stats, self.throttle, "unsubscribe_unanswered";
                adapter = %name, filters = ?filters, tries, again, "The connection ended before the broker acknowledged the UNSUBSCRIBE of filters no longer in topics (a broker refusing it closes the connection); they stay subscribed.");
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
fn delivery_key(source: &Arc<str>, publish: &Publish<'_>) -> DeliveryKey {
    let topic = crc32fast::hash(publish.topic);
    let payload = crc32fast::hash(publish.payload);
    DeliveryKey {
        source: source.clone(),
        slot: publish.pkid,
        digest: (u64::from(topic) << 32) | u64::from(payload),
        resent: publish.dup,
    }
}
