//! The MQTT ingress adapter: subscribe, decode, hand readings to the pipeline.
//!
//! QoS 1/2 messages are acknowledged by hand, only once the pipeline says
//! their readings are on disk (a [`Receipt`](gateway_core::component::Receipt)), and in the order they came
//! (MQTT requires it): after a crash the broker's persistent session
//! redelivers exactly what was not yet safe. Messages that carry nothing to
//! keep (bad input, status) are acknowledged in their turn.
//!
//! The adapter's task polls the event loop itself, beside the receipts it
//! waits for, and writes the acknowledgements that became due together
//! (one flush, not one request and one write each). When the connection
//! drops, the adapter forgets its pending acknowledgements before the
//! event loop reconnects: the broker resends those messages (DUP) and the
//! pipeline recognises copies it already took by their [`DeliveryKey`](gateway_core::component::DeliveryKey).
//! Subscriptions are renewed on every ConnAck: a broker restarted without
//! persistence has forgotten them.
//!
//! The messages one read of the socket brought are taken together, and
//! their QoS 0 readings go to the pipeline as one batch.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use gateway_core::backoff::Backoff;
use gateway_core::component::{AdapterFuture, ADAPTER_CONNECTED, ADAPTER_LINK, LINK_BROKER};
use gateway_core::telemetry::LogThrottle;
use gateway_core::{Adapter, AdapterContext, AdapterError};
use rumqttc::{AsyncClient, Event, EventLoop, Packet, QoS, SubscribeFilter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::config::MqttAdapterConfig;
use super::dispatch::TopicCache;
use super::session::{Ack, Session};
use mqtt_connect::ConnectionSettings;

/// A runnable MQTT ingress adapter.
pub struct MqttSource {
    config: MqttAdapterConfig,
    connection: ConnectionSettings,
    /// `[[device]] writable`: what `command_topic` may carry.
    writable: Vec<(String, Vec<String>)>,
    /// The command target's queue, once it was asked for.
    sets: Option<mpsc::Receiver<super::writer::SetJob>>,
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
        Self {
            config,
            connection,
            writable: Vec::new(),
            sets: None,
        }
    }

    /// The `[[device]]`s' writable metrics, for `command_topic`.
    pub fn with_writable(mut self, writable: Vec<(String, Vec<String>)>) -> Self {
        self.writable = writable;
        self
    }
}

impl Adapter for MqttSource {
    fn run(self: Box<Self>, ctx: AdapterContext) -> AdapterFuture {
        let Self {
            config,
            connection,
            sets,
            ..
        } = *self;
        let writer = sets.map(|jobs| {
            tokio::spawn(super::writer::run(
                connection.clone(),
                jobs,
                ctx.shutdown.clone(),
            ))
        });
        Box::pin(async move {
            let ran = run(config, connection, ctx).await;
            if let Some(w) = writer {
                let _ = w.await;
            }
            ran
        })
    }

    fn command_target(&mut self) -> Option<Arc<dyn gateway_core::command::CommandTarget>> {
        let (target, jobs) =
            super::writer::MqttTarget::new(self.config.command_topic.as_deref(), &self.writable)?;
        self.sets = Some(jobs);
        Some(target)
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
pub(super) const MAX_OVERSIZED_PACKET: usize = 64 * 1024 * 1024;

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

/// QoS 0 messages one wake-up must have taken, read after read, before
/// the socket is left to gather more: a flood. Fewer, and the next message
/// is read as soon as it comes. Napping after every drained read took the
/// QoS 0 alert latency of `alert_latency` at 20 000 readings/s from 1.3 to
/// 5 ms at p50; with this bound it is 1.2–1.6 ms and QoS 0 still costs a
/// fifth of Mosquitto's CPU. QoS 1 messages always let the socket gather:
/// they are acknowledged only once their batch is on disk, which takes
/// milliseconds anyway, and without the nap a QoS 1 burst cost 0.5–0.7x
/// Mosquitto's CPU instead of 0.35x.
const FLOOD: usize = 64;

/// Reads taken one after the other before the receipts and the stop are
/// looked at again.
const MAX_TURNS: usize = 64;

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
    ctx.telemetry
        .gauge(
            ADAPTER_LINK,
            &[("adapter", &ctx.name), ("link", LINK_BROKER)],
        )
        .set(1.0);
    let mut s = Session {
        stats: ctx.stats(),
        reconnects: ctx.telemetry.counter(
            "edge_gateway_adapter_reconnects_total",
            &[("adapter", &ctx.name)],
        ),
        retained_ignored: ctx
            .telemetry
            .counter(super::session::RETAINED_IGNORED, &[("adapter", &ctx.name)]),
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
    // Woken when the gateway's heap check finds a burst has passed.
    let mut caches = gateway_core::cache_release::Listener::default();
    let flood = if config.qos == gateway_core::config::Qos::AtMostOnce {
        FLOOD
    } else {
        1
    };
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
            () = caches.asked() => s.let_go_of_caches(&mut eventloop.state.events),
            polled = eventloop.poll(), if !napping => {
                let mut polled = polled;
                let mut turns = 0;
                let mut taken = 0;
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
                    taken += took;
                    if took == 0 || turns == MAX_TURNS {
                        break;
                    }
                    // Messages are coming: take what else has arrived, and
                    // once the socket is drained in a flood ([`FLOOD`] at
                    // QoS 0, any burst at QoS 1), let
                    // more gather for a moment before reading it again
                    // (receipts are still answered meanwhile). Woken for
                    // each message as it came, the gateway spent a third
                    // of its CPU per reading in epoll_wait and recv on a
                    // burst; in a flood, readings already wait their turn
                    // for longer than the millisecond.
                    let next = tokio::select! {
                        biased;
                        next = eventloop.poll() => Some(next),
                        () = std::future::ready(()) => None,
                    };
                    match next {
                        Some(next) => polled = next,
                        None => {
                            if taken >= flood {
                                nap.as_mut().reset(tokio::time::Instant::now() + COALESCE);
                                napping = true;
                            }
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
