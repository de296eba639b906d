//! The MQTT ingress adapter: subscribe, decode, hand readings to the pipeline.
//!
//! QoS 1/2 messages are acknowledged by hand, only once the pipeline says
//! their readings are on disk (a [`Receipt`](gateway_core::component::Receipt)), and in the order they came
//! (MQTT requires it): after a crash the broker's persistent session
//! redelivers exactly what was not yet safe. Messages that carry nothing to
//! keep (bad input, status) are acknowledged in their turn.
//!
//! The adapter's task reads its connection itself ([`Link`]), beside the
//! receipts it waits for, and writes the acknowledgements that became due
//! together (one flush, not one request and one write each). When the
//! connection drops, the adapter forgets its pending acknowledgements
//! before it reconnects: the broker resends those messages (DUP) and the
//! pipeline recognises copies it already took by their [`DeliveryKey`](gateway_core::component::DeliveryKey).
//! Subscriptions are renewed on every ConnAck: a broker restarted without
//! persistence has forgotten them. Those a persistent session kept and the
//! config no longer has are unsubscribed first ([`super::subscriptions`]).
//!
//! The messages one read of the socket brought are taken together, and
//! their QoS 0 readings go to the pipeline as one batch.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gateway_core::backoff::Backoff;
use gateway_core::component::{AdapterFuture, ADAPTER_CONNECTED, ADAPTER_LINK, LINK_BROKER};
use gateway_core::telemetry::LogThrottle;
use gateway_core::{Adapter, AdapterContext, AdapterError, Timestamp};
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::config::MqttAdapterConfig;
use super::dispatch::TopicCache;
use super::link::{Dial, Link, LinkError, Next};
use super::session::Session;
use super::subscriptions::Memory;
use super::wire::{Ack, Frame};
use mqtt_connect::ConnectionSettings;

/// A runnable MQTT ingress adapter.
pub struct MqttSource {
    config: MqttAdapterConfig,
    connection: ConnectionSettings,
    /// `[[device]] writable`: what `command_topic` may carry.
    writable: Vec<(String, Vec<String>)>,
    /// The command target's queue, once it was asked for.
    sets: Option<mpsc::Receiver<super::writer::SetJob>>,
    /// `gateway.state_dir`, where the session's subscriptions are kept.
    state_dir: Option<PathBuf>,
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
            state_dir: None,
        }
    }

    /// Where to remember what the broker's session is subscribed to;
    /// without it, filters removed from `topics` stay subscribed in a
    /// persistent session.
    pub fn with_state_dir(mut self, state_dir: PathBuf) -> Self {
        self.state_dir = Some(state_dir);
        self
    }

    /// The `[[device]]`s' writable metrics, for `command_topic`.
    pub fn with_writable(mut self, writable: Vec<(String, Vec<String>)>) -> Self {
        self.writable = writable;
        self
    }
}

impl Adapter for MqttSource {
    fn holds_a_link(&self) -> bool {
        true
    }

    fn run(self: Box<Self>, ctx: AdapterContext) -> AdapterFuture {
        let Self {
            config,
            connection,
            sets,
            state_dir,
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
            let ran = run(config, connection, state_dir, ctx).await;
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

/// QoS 2 is subscribed as 1: exactly-once is already had from QoS 1 with
/// the journal and the DUP-aware de-duplication, and a broker resending a
/// PUBREL after a crash has nothing for it to refer to.
fn subscription_qos(q: gateway_core::config::Qos) -> u8 {
    match q.as_u8() {
        0 => 0,
        _ => 1,
    }
}

/// How long connecting, TLS and the CONNACK may take together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The SUBSCRIBE's and UNSUBSCRIBE's packet ids (the only ones the
/// adapter chooses; one of each is in flight at a time).
const SUBSCRIBE_ID: u16 = 1;
const UNSUBSCRIBE_ID: u16 = 2;

/// How long the socket is left to gather messages once a burst has been
/// read to its end.
const COALESCE: Duration = Duration::from_millis(1);

/// QoS 0 messages taken within one [`COALESCE`] period, read after read
/// and wake-up after wake-up, that make a flood (64 000 messages a second
/// and more): the socket is then left to gather more for a moment before
/// it is read again. Fewer, and the next message is read as soon as it
/// comes. Napping after every drained read took the QoS 0 alert latency of
/// `alert_latency` at 20 000 readings/s from 1.3 to 5 ms at p50; with this
/// bound it is 1.2–1.6 ms. Counted per wake-up only, a gateway that kept
/// pace with its broker woke for every 30 messages and never napped: a run
/// of the same burst took 9 100 reads instead of 1 400 and twice the CPU
/// a reading. QoS 1 messages always let the socket gather: they are
/// acknowledged only once their batch is on disk, which takes
/// milliseconds anyway, and without the nap a QoS 1 burst cost 0.5–0.7x
/// Mosquitto's CPU instead of 0.35x.
const FLOOD: usize = 64;

/// Reads taken one after the other before the receipts and the stop are
/// looked at again.
const MAX_TURNS: usize = 64;

/// QoS 1/2 messages taken and not yet acknowledged past which the rest
/// of the socket is left unread until receipts come back: the broker waits
/// (TCP's window), and what was read stays within what the pipeline
/// remembers to tell a resent copy by (`pipeline::durability::deliveries`
/// keeps 8 192 keys per source and 16 384 in all, so eight adapters at
/// this bound at once each keep theirs). Unbounded, a reload storm during a burst
/// let 9 000 messages be read ahead of their receipts; after the next
/// reconnect the broker resent them all, the oldest already forgotten, and
/// they were counted twice.
const MAX_UNACKED: usize = 2048;

/// How long a stopping adapter waits for the broker to close the
/// connection after its last acknowledgements and DISCONNECT: the close
/// says every acknowledgement before it was read. A broker busy sending a
/// burst reads the receipts behind it late, and they queue on its side;
/// closed before they are read (a socket closed with messages unread is
/// reset), they are lost and the broker resends those messages to the next
/// connection, past what the pipeline remembers of a source in a storm of
/// reloads. Eight adapters each stopped during a QoS 1 burst took up to
/// 0.6 s idle and 3.2 s on a loaded machine, where 1 s counted 2 571
/// readings twice. Adapters stop together, so a reload waits this once;
/// under the forwarder's drain and systemd's 30 s stop.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// Why the connection's loop stopped reading.
enum Failure {
    Link(LinkError),
    Adapter(AdapterError),
}

impl From<LinkError> for Failure {
    fn from(e: LinkError) -> Self {
        Self::Link(e)
    }
}

impl From<AdapterError> for Failure {
    fn from(e: AdapterError) -> Self {
        Self::Adapter(e)
    }
}

fn dial(config: &MqttAdapterConfig, connection: &ConnectionSettings) -> Result<Dial, AdapterError> {
    let setup = |e: mqtt_connect::SetupError| AdapterError::Setup(format!("adapter {}: {e}", config.name));
    let b = &connection.broker;
    Ok(Dial {
        host: b.url.host.clone(),
        port: b.url.port,
        tls: connection.tls().map_err(setup)?,
        client_id: b.client_id.clone(),
        credentials: connection.credentials().map_err(setup)?,
        keep_alive: b.keep_alive,
        clean_session: !connection.persistent_session,
        max_packet_bytes: connection.max_packet_bytes,
        timeout: CONNECT_TIMEOUT,
    })
}

async fn run(
    config: MqttAdapterConfig,
    connection: ConnectionSettings,
    state_dir: Option<PathBuf>,
    ctx: AdapterContext,
) -> Result<(), AdapterError> {
    let dial = dial(&config, &connection)?;
    let memory = Memory::new(
        state_dir.as_deref(),
        format!("{}:{}", dial.host, dial.port),
        dial.client_id.clone(),
    );
    let filters: Vec<(String, u8)> = config
        .status_topics
        .iter()
        .chain(config.routes.iter().map(|r| &r.pattern))
        .map(|p| (p.filter(), subscription_qos(config.qos)))
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
        source: session_source(&config, &ctx.name),
        subscribed,
        config: &config,
        ctx: &ctx,
        filters,
        unacked: VecDeque::new(),
        ready: Vec::new(),
        connected: false,
        batch: Vec::new(),
        topics: TopicCache::default(),
        memory,
        unsubscribing: Vec::new(),
        unsubscribe_failures: 0,
        forgotten: false,
    };
    let mut backoff = Backoff::new(Duration::from_millis(200), config.broker.max_backoff);
    // One wait for the stop for the adapter's whole life: a fresh one per
    // turn registered and unregistered with the token every message.
    let stop = ctx.shutdown.cancelled();
    tokio::pin!(stop);
    let nap = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(nap);
    let mut napping = false;
    let keep_alive = tokio::time::sleep(dial.keep_alive);
    tokio::pin!(keep_alive);
    // Woken when the gateway's heap check finds a burst has passed.
    let mut caches = gateway_core::cache_release::Listener::default();
    let flood = if config.qos == gateway_core::config::Qos::AtMostOnce {
        FLOOD
    } else {
        1
    };
    // The messages taken since `flood_since`, to tell a flood ([`FLOOD`]).
    let mut flood_since = tokio::time::Instant::now();
    let mut flood_taken = 0;
    let mut link: Option<Link> = None;
    // Whole packets wait in the link's buffer, unread for [`MAX_UNACKED`]:
    // taken, without waiting for the socket, once receipts make room.
    let mut held_back = false;
    'run: loop {
        let Some(conn) = link.as_mut() else {
            let dialed = tokio::select! {
                biased;
                _ = &mut stop => break,
                d = Link::connect(&dial) => d,
            };
            match dialed {
                Ok((mut conn, resumed)) => {
                    backoff.reset();
                    held_back = false;
                    s.connected(resumed).await?;
                    let stale = s.stale_filters(resumed).await;
                    let sent = async {
                        if !stale.is_empty() {
                            conn.unsubscribe(UNSUBSCRIBE_ID, &stale).await?;
                        }
                        conn.subscribe(SUBSCRIBE_ID, &s.filters).await
                    }
                    .await;
                    match sent {
                        Ok(()) => {
                            keep_alive
                                .as_mut()
                                .reset(tokio::time::Instant::now() + dial.keep_alive);
                            link = Some(conn);
                        }
                        Err(e) => {
                            s.lost(&e.to_string());
                            if !pause(&mut backoff, &mut stop).await {
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    s.lost(&e.to_string());
                    if !pause(&mut backoff, &mut stop).await {
                        break;
                    }
                }
            }
            continue;
        };
        let served: Result<(), Failure> = async {
            if !s.ready.is_empty() {
                conn.acknowledge(&mut s.ready).await?;
            }
            // The socket is read here, beside the receipts, rather than
            // in a task of its own: one task less to wake per message, and
            // the acknowledgements can be written in one go. Dropping a
            // read when something else is ready first loses nothing.
            tokio::select! {
                biased;
                _ = &mut stop => return Ok(()),
                done = async {
                    match s.unacked.front_mut() {
                        Some((_, waiter)) => waiter.await,
                        None => std::future::pending().await,
                    }
                }, if !s.unacked.is_empty() => {
                    if done.is_err() {
                        // The pipeline stopped before the readings were
                        // safe; the broker keeps them for the next start.
                        s.unacked.clear();
                        return Ok(());
                    }
                    // The front is safe, and so may be those right behind it.
                    if let Some((ack, _)) = s.unacked.pop_front() {
                        s.ready.push(ack);
                    }
                    s.take_safe();
                }
                _ = &mut nap, if napping => napping = false,
                () = caches.asked() => {
                    s.let_go_of_caches();
                    conn.let_go();
                }
                () = &mut keep_alive => {
                    keep_alive
                        .as_mut()
                        .reset(tokio::time::Instant::now() + dial.keep_alive);
                    if held_back {
                        // The last ping's answer may wait behind the
                        // messages left unread: the broker is sending, so
                        // the link is alive. Judged as unanswered, a
                        // pipeline holding its receipts for longer than a
                        // keep-alive (a clock not yet set at boot holds
                        // every reading) dropped the connection each time.
                        conn.ping_answer_unread();
                    }
                    conn.ping().await?;
                }
                read = async {
                    if held_back { Ok(()) } else { conn.fill().await }
                }, if !napping && (!held_back || s.unacked.len() < MAX_UNACKED) => {
                    read?;
                    held_back = false;
                    let mut turns = 0;
                    let woke = tokio::time::Instant::now();
                    if woke.duration_since(flood_since) > COALESCE {
                        flood_since = woke;
                        flood_taken = 0;
                    }
                    loop {
                        // One arrival time for what one read brought.
                        let took = take(&mut s, conn, ctx.clock.now()).await?;
                        s.flush_batch().await?;
                        turns += 1;
                        flood_taken += took;
                        held_back = s.unacked.len() >= MAX_UNACKED;
                        if took == 0 || turns == MAX_TURNS || held_back {
                            break;
                        }
                        // Messages are coming: take what else has arrived,
                        // and once the socket is drained in a flood
                        // ([`FLOOD`] at QoS 0, any burst at QoS 1), let
                        // more gather for a moment before reading it again
                        // (receipts are still answered meanwhile). Woken
                        // for each message as it came, the gateway spent a
                        // third of its CPU per reading in epoll_wait and
                        // recv on a burst; in a flood, readings already
                        // wait their turn for longer than the millisecond.
                        let more = tokio::select! {
                            biased;
                            more = conn.fill() => Some(more),
                            () = std::future::ready(()) => None,
                        };
                        match more {
                            Some(more) => more?,
                            None => {
                                if flood_taken >= flood {
                                    nap.as_mut().reset(tokio::time::Instant::now() + COALESCE);
                                    napping = true;
                                    flood_taken = 0;
                                }
                                break;
                            }
                        }
                    }
                }
            }
            Ok(())
        }
        .await;
        match served {
            Ok(()) if ctx.shutdown.is_cancelled() => break,
            Ok(()) => {}
            Err(Failure::Adapter(e)) => return Err(e),
            Err(Failure::Link(e)) => {
                s.lost(&e.to_string());
                link = None;
                napping = false;
                if !pause(&mut backoff, &mut stop).await {
                    break 'run;
                }
            }
        }
    }
    if let Some(conn) = link.as_mut().filter(|_| s.connected) {
        // Acknowledge what is already safe, then leave; the rest is
        // resent by the broker at the next start. A dead network is waited
        // on no longer than [`CLOSE_WAIT`].
        s.take_safe();
        let closed = tokio::time::timeout(CLOSE_WAIT, async {
            conn.acknowledge(&mut s.ready).await?;
            conn.disconnect().await
        })
        .await;
        let unconfirmed = match closed {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no close within {CLOSE_WAIT:?}")),
        };
        if let Some(error) = unconfirmed {
            gateway_core::refuse!(s.stats, s.throttle, "close_unconfirmed";
                adapter = %ctx.name, broker = %config.broker.url, %error, "The local broker did not close the connection after reading our last acknowledgements; it resends what it did not read, and a copy older than the messages remembered per source would be counted a second time.");
        }
    }
    info!(adapter = %ctx.name, "Stopped.");
    Ok(())
}

/// What the pipeline knows this adapter's broker session by, to tell a
/// resent copy: the session is the client id's, not the adapter's name. A
/// `client_id` set in the config keeps its session across a rename, and
/// the broker resends what the old name took but had not acknowledged;
/// keyed by the name, those copies were counted a second time. The default
/// client id is made from the name (a rename is a new session), so its key
/// stays the name, as the journals of earlier versions hold it.
fn session_source(config: &MqttAdapterConfig, name: &str) -> Arc<str> {
    if config.broker.client_id.is_empty() {
        Arc::from(name)
    } else {
        Arc::from(format!("client_id:{}", config.broker.client_id))
    }
}

/// Takes the whole packets the buffer holds, stopping at [`MAX_UNACKED`]
/// unacknowledged messages; how many were messages.
async fn take(s: &mut Session<'_>, link: &mut Link, now: Timestamp) -> Result<usize, Failure> {
    let mut took = 0;
    while s.unacked.len() < MAX_UNACKED {
        let Some(next) = link.next()? else { break };
        match next {
            Next::Frame(Frame::Publish(publish)) => {
                s.message(publish, now).await?;
                took += 1;
            }
            Next::Oversized { qos, pkid, bytes } => {
                s.oversized(qos, pkid, bytes);
                took += 1;
            }
            Next::Frame(Frame::SubAck { codes }) => s.on_subscribed(codes),
            Next::Frame(Frame::UnsubAck { pkid }) => {
                if pkid == UNSUBSCRIBE_ID {
                    s.on_unsubscribed().await;
                }
            }
            // Answered at once: the message was taken at its PUBLISH.
            Next::Frame(Frame::PubRel { pkid }) => s.ready.push(Ack::PubComp(pkid)),
            Next::Frame(Frame::ConnAck { .. }) => return Err(LinkError::NoConnAck.into()),
            Next::Frame(Frame::PingResp | Frame::Ignored) => {}
        }
    }
    Ok(took)
}

/// Waits before connecting again; false when the adapter is stopping.
async fn pause(
    backoff: &mut Backoff,
    stop: &mut std::pin::Pin<&mut tokio_util::sync::WaitForCancellationFuture<'_>>,
) -> bool {
    let delay = backoff.next_delay();
    debug!(?delay, "Local broker reconnect backoff.");
    tokio::select! {
        _ = stop.as_mut() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::AdapterKind;
    use gateway_core::config::Problems;

    fn adapter(name: &str, extra: &str) -> MqttAdapterConfig {
        let text = format!(
            "name = \"{name}\"\nurl = \"mqtt://127.0.0.1:1883\"\ntopics = [\"s/{{device}}/{{metric}}\"]\n{extra}"
        );
        let mut p = Problems::default();
        let c = MqttAdapterConfig::from_table(toml::from_str(&text).unwrap(), "adapter[0]", &mut p);
        assert!(p.is_empty(), "{p}");
        c.unwrap()
    }

    /// A rename that keeps `client_id` keeps the broker's session, which
    /// resends what the old name had not acknowledged: the copies must
    /// carry the key the originals were taken under.
    #[test]
    fn a_renamed_adapter_with_its_own_client_id_keeps_its_session_key() {
        let (old, new) = (
            adapter("sensors", "client_id = \"kept\""),
            adapter("renamed", "client_id = \"kept\""),
        );
        assert_eq!(
            session_source(&old, "sensors"),
            session_source(&new, "renamed")
        );
        // The default client id is made from the name: a rename is a new
        // session, and the key stays the name earlier journals hold.
        let (old, new) = (adapter("sensors", ""), adapter("renamed", ""));
        assert_eq!(&*session_source(&old, "sensors"), "sensors");
        assert_eq!(&*session_source(&new, "renamed"), "renamed");
    }
}
