//! The MQTT upstream: every message goes through the durable outbox and
//! leaves it only on the broker's PUBACK.
//!
//! rumqttc drops unacknowledged and queued publishes when it reconnects
//! without a session (measured: 10 of 10 lost), so durability cannot come
//! from the client. The work is split three ways:
//!
//! - `scheduler`: what to send next and which packet id acknowledges
//!   which message (pure, tested with a paused clock);
//! - the crate's `Spool`: storing, holding in memory while the disk
//!   refuses, making room when it is full;
//! - `failover`: which node of a clustered broker is in use, failovers,
//!   and connections taken away by a client with the same id (pure);
//! - `seq`: the per-gateway sequence number added to each payload;
//! - `render`: the upstream topics and JSON payloads (the public
//!   contract), and `feed`: the task that renders the pipeline's events
//!   into the forwarder's queues, making the upstream one more output;
//! - this module: the I/O loop around them, with `poller` polling the
//!   client's event loop in its own task and moving to the next node of
//!   `urls` when a connection is lost or refused.
//!
//! When the connection drops, the poller waits until the forwarder has
//! forgotten its in-flight set, then empties the client's own queues, so
//! nothing stale is sent on the next connection and the id mapping stays
//! exact. Consumers deduplicate on the payload's `id`.

mod failover;
mod feed;
mod poller;
pub mod render;
pub mod scheduler;
mod seq;
mod settings;

use std::time::Duration;

use gateway_core::backoff::Backoff;
use gateway_core::config::Qos;
use gateway_core::telemetry::{Counter, Gauge, LogThrottle};
use gateway_core::Telemetry;
use mqtt_connect::SetupError;
use rumqttc::{AsyncClient, LastWill, QoS};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::outbox::{Outbox, OutboxError};
use crate::registry::SinkContext;
use crate::spool::{Spool, SpoolSettings};
use crate::OutputLink;
use failover::{Failover, Loss};
pub use feed::{Feed, ForwarderQueues};
use gateway_core::event::SinkEvent;
use poller::{poll_loop, FaultKind, PollEvent};
pub use render::Renderer;
use scheduler::{Completed, Pick, Scheduler, Sequence};
use seq::with_seq;
pub use settings::UpstreamSettings;

/// Messages the upstream broker acknowledged.
pub const UPSTREAM_SENT: &str = "edge_gateway_upstream_sent_messages_total";
/// Connections to the upstream broker lost after being established.
pub const UPSTREAM_RECONNECTS: &str = "edge_gateway_upstream_reconnects_total";
/// Connection attempts that failed (and established connections lost).
pub const UPSTREAM_CONNECTION_FAILURES: &str = "edge_gateway_upstream_connection_failures_total";
pub use gateway_core::event::metrics::UPSTREAM_CONNECTED;
/// One series per broker node (`url` label): `1` for the node in use.
pub const UPSTREAM_NODE: &str = "edge_gateway_upstream_node";
/// Connections made to another node than the previous connection's.
pub const UPSTREAM_FAILOVERS: &str = "edge_gateway_upstream_failovers_total";
/// Runs of connections taken away right after they were made: another
/// client (gateway) very likely uses the same client id.
pub const UPSTREAM_CLIENT_ID_CONFLICTS: &str = "edge_gateway_upstream_client_id_conflicts_total";

/// Why the upstream could not start.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error(transparent)]
    Connection(#[from] SetupError),
    #[error("outbox: {0}")]
    Outbox(#[from] OutboxError),
    #[error("no broker node to connect to (upstream.url or upstream.urls)")]
    NoNodes,
    #[error("the forwarder task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

struct Metrics {
    sent: Counter,
    reconnects: Counter,
    connect_failures: Counter,
    connected: Gauge,
    failovers: Counter,
    conflicts: Counter,
    nodes: Vec<Gauge>,
}

impl Metrics {
    fn new(t: &Telemetry, nodes: &[String]) -> Self {
        Self {
            sent: t.counter(UPSTREAM_SENT, &[]),
            reconnects: t.counter(UPSTREAM_RECONNECTS, &[]),
            connect_failures: t.counter(UPSTREAM_CONNECTION_FAILURES, &[]),
            connected: t.gauge(UPSTREAM_CONNECTED, &[]),
            failovers: t.counter(UPSTREAM_FAILOVERS, &[]),
            conflicts: t.counter(UPSTREAM_CLIENT_ID_CONFLICTS, &[]),
            nodes: nodes
                .iter()
                .map(|url| t.gauge(UPSTREAM_NODE, &[("url", url.as_str())]))
                .collect(),
        }
    }

    /// Marks `node` as the one in use (`None`: disconnected).
    fn in_use(&self, node: Option<usize>) {
        self.connected.set(if node.is_some() { 1.0 } else { 0.0 });
        for (i, g) in self.nodes.iter().enumerate() {
            g.set(if Some(i) == node { 1.0 } else { 0.0 });
        }
    }
}

fn qos(q: Qos) -> QoS {
    match q.as_u8() {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

impl Sequence for Outbox {
    fn first_after(&self, seq: u64) -> Option<u64> {
        self.seqs_after(seq, 1).first().copied()
    }
    fn last(&self) -> u64 {
        self.last_seq()
    }
}

/// Fault hook for the crash tests: milliseconds to hold each batch of
/// closed windows before its outbox append, so a kill can land between a
/// window's emission and its storage. Unset (the default), nothing waits.
const HOLD_OUTBOX_ENV: &str = "EDGE_GATEWAY_FAULT_HOLD_OUTBOX_MS";

/// Most messages taken from the pipeline into one append (one fsync).
const BATCH: usize = 256;
/// Rendered messages waiting for the forwarder, on each of its queues.
const FORWARDER_QUEUE: usize = 1024;

/// Starts the upstream output: the forwarder, and in front of it the
/// [`Feed`] that renders the pipeline's events (`link`) for it. The task
/// ends with the forwarder, once `link` has closed and it has delivered
/// what it can; if the forwarder fails, the feed stops taking events.
pub fn start(
    settings: UpstreamSettings,
    ctx: &SinkContext,
    link: OutputLink<SinkEvent>,
) -> tokio::task::JoinHandle<Result<(), UpstreamError>> {
    let feed = Feed {
        renderer: Renderer {
            gateway_id: ctx.gateway_id.clone(),
            prefix: settings.topic_prefix.clone(),
            registry: ctx.registry.clone(),
        },
        units: ctx.units.clone(),
    };
    let (messages, messages_rx) = mpsc::channel(FORWARDER_QUEUE);
    let (urgent, urgent_rx) = mpsc::channel(FORWARDER_QUEUE);
    let (flush, flush_rx) = mpsc::channel(1);
    let forwarder = tokio::spawn(run(
        settings,
        OutputLink {
            messages: messages_rx,
            urgent: Some(urgent_rx),
            flush: Some(flush_rx),
        },
        ctx.telemetry.clone(),
    ));
    let queues = ForwarderQueues {
        messages,
        urgent,
        flush: Some(flush),
    };
    tokio::spawn(async move {
        feed.run(link, queues).await;
        forwarder.await?
    })
}

/// Runs the forwarder until the link's messages close and everything is
/// delivered (or `drain_timeout` has passed), then publishes the retained
/// `offline` status and disconnects.
///
/// # Errors
/// Only a connection or outbox that cannot be set up (missing password
/// variable, unreadable TLS files, an outbox locked by another gateway);
/// network and disk faults are retried.
pub async fn run(
    settings: UpstreamSettings,
    link: OutputLink,
    telemetry: Telemetry,
) -> Result<(), UpstreamError> {
    let OutputLink {
        messages: mut rx,
        mut urgent,
        mut flush,
    } = link;
    let node_names: Vec<String> = settings.nodes.iter().map(ToString::to_string).collect();
    let m = Metrics::new(&telemetry, &node_names);
    let spool_settings = SpoolSettings {
        outbox: settings.outbox.clone(),
        max_queued: settings.max_queued,
    };
    let mut spool = Spool::open(
        settings.outbox_dir.as_deref(),
        spool_settings,
        &telemetry,
        &[],
    )?;
    let will = LastWill::new(&settings.status_topic, "offline", QoS::AtLeastOnce, true);
    let mut nodes = Vec::with_capacity(settings.nodes.len());
    for url in &settings.nodes {
        let mut connection = settings.connection.clone();
        connection.broker.url = url.clone();
        let mut options = connection.mqtt_options(Some(will.clone()))?;
        options.set_inflight(settings.max_inflight.saturating_add(1));
        nodes.push(options);
    }
    let Some(first) = nodes.first().cloned() else {
        return Err(UpstreamError::NoNodes);
    };
    let (client, mut eventloop) = AsyncClient::new(first, usize::from(settings.max_inflight) + 16);
    eventloop.network_options.set_connection_timeout(10);

    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (resume_tx, resume_rx) = mpsc::channel(1);
    let stop_poller = CancellationToken::new();
    let poller = tokio::spawn(poll_loop(
        eventloop,
        nodes,
        events_tx,
        resume_rx,
        Backoff::new(Duration::from_millis(200), settings.max_backoff),
        stop_poller.clone(),
    ));
    let mut failover = Failover::default();
    let client_id = settings.connection.broker.client_id.clone();

    let data_qos = qos(settings.qos);
    let mut plan = Scheduler::new(settings.max_inflight, settings.drain_rate, Instant::now());
    let mut rx_open = true;
    let mut drain_deadline = Instant::now();
    let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
    housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    let log = LogThrottle::default();
    let hold_outbox = std::env::var(HOLD_OUTBOX_ENV)
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis);

    loop {
        while let Some(pick) = plan.next(spool.outbox(), Instant::now()) {
            let (topic, payload, retain, q) = match pick {
                Pick::Status => (
                    settings.status_topic.clone(),
                    b"online".to_vec(),
                    true,
                    QoS::AtLeastOnce,
                ),
                Pick::Message { seq, .. } => match spool.read(seq) {
                    Ok(Some(msg)) => (msg.topic, with_seq(msg.payload, seq), msg.retain, data_qos),
                    Ok(None) => {
                        plan.skip(pick);
                        continue;
                    }
                    Err(e) => {
                        error!(seq, error = %e, "Outbox: cannot read a message; skipping it until the next connection.");
                        plan.skip(pick);
                        continue;
                    }
                },
            };
            if let Err(e) = client.try_publish(topic, q, retain, payload) {
                debug!(error = %e, "Client queue full; will retry.");
                plan.unpick(pick);
                break;
            }
            plan.submitted(pick);
        }
        spool.update_waiting();
        if !rx_open && spool.waiting() == 0 && plan.unacknowledged() == 0 {
            break;
        }
        let backlog_wakeup = plan.backlog_wakeup();
        tokio::select! {
            biased;
            event = events.recv() => {
                let Some(event) = event else { break };
                match event {
                    PollEvent::Connected { node } => {
                        plan.connected(spool.outbox());
                        let url = node_name(&node_names, node);
                        if failover.connected(node, Instant::now()) {
                            m.failovers.inc();
                            info!(broker = %url, backlog = spool.outbox().len(), "Failed over to another broker node; what the previous one did not acknowledge is sent again.");
                        } else {
                            info!(broker = %url, backlog = spool.outbox().len(), "Connected upstream.");
                        }
                        m.in_use(Some(node));
                    }
                    PollEvent::Sent(pkid) => {
                        if let Some(done) = plan.sent(pkid) {
                            delivered(done, &mut spool, &m);
                        }
                    }
                    PollEvent::Acked(pkid) => {
                        if let Some(done) = plan.acked(pkid) {
                            delivered(done, &mut spool, &m);
                        }
                    }
                    PollEvent::Lost { node, error, kind } => {
                        let url = node_name(&node_names, node);
                        let was_connected = plan.is_connected();
                        let unacknowledged = plan.lost();
                        if let Loss::LikelyConflict { short_sessions } = failover.lost(Instant::now()) {
                            m.conflicts.inc();
                            if let Some(suppressed) = log.allow("conflict") {
                                error!(broker = %url, client_id = %client_id, short_sessions, suppressed, "The upstream broker keeps closing the connection right after accepting it: another client very likely uses the same client id. Check that gateway.id is unique in the fleet (or set a unique upstream.client_id).");
                            }
                        }
                        if was_connected {
                            m.reconnects.inc();
                            if let Some(suppressed) = log.allow("lost") {
                                warn!(broker = %url, %error, unacknowledged, suppressed, "Lost the upstream broker; what it did not acknowledge will be sent again.");
                            }
                        } else if let Some(suppressed) = log.allow("connect") {
                            match kind {
                                FaultKind::Refused => error!(broker = %url, %error, suppressed, "The upstream broker refused the connection: check username, password_env and client_id. Buffering and retrying."),
                                FaultKind::Tls => error!(broker = %url, %error, suppressed, "TLS with the upstream broker failed: check ca_file, the certificate's name and dates, and the clock. Buffering and retrying."),
                                FaultKind::Network => warn!(broker = %url, %error, suppressed, "Cannot reach the upstream broker; buffering."),
                            }
                        }
                        m.connect_failures.inc();
                        m.in_use(None);
                        let _ = resume_tx.send(()).await;
                    }
                }
            }
            msg = async { urgent.as_mut()?.recv().await }, if urgent.is_some() => match msg {
                Some(msg) => {
                    let mut batch = vec![msg];
                    if let Some(u) = urgent.as_mut() {
                        while let Ok(more) = u.try_recv() {
                            batch.push(more);
                        }
                    }
                    plan.push_urgent(spool.store(batch));
                }
                None => urgent = None,
            },
            msg = rx.recv(), if rx_open => match msg {
                Some(msg) => {
                    let mut batch = vec![msg];
                    while batch.len() < BATCH {
                        match rx.try_recv() {
                            Ok(more) => batch.push(more),
                            Err(_) => break,
                        }
                    }
                    if let Some(hold) = hold_outbox {
                        tokio::time::sleep(hold).await;
                    }
                    spool.store(batch);
                }
                None => {
                    rx_open = false;
                    drain_deadline = gateway_core::deadline::from_now(settings.drain_timeout);
                }
            },
            request = async { flush.as_mut()?.recv().await }, if flush.is_some() => match request {
                Some(reply) => {
                    let mut batch = Vec::new();
                    if let Some(u) = urgent.as_mut() {
                        while let Ok(more) = u.try_recv() {
                            batch.push(more);
                        }
                    }
                    plan.push_urgent(spool.store(batch));
                    let mut batch = Vec::new();
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                    }
                    spool.store(batch);
                    let _ = reply.send(spool.is_durable());
                }
                None => flush = None,
            },
            _ = sleep_until(backlog_wakeup), if backlog_wakeup.is_some() => {}
            _ = housekeeping.tick() => {
                ticks += 1;
                spool.housekeeping(ticks);
            }
            _ = tokio::time::sleep_until(drain_deadline), if !rx_open => {
                spool.close();
                break;
            }
        }
    }

    if plan.is_connected() {
        say_offline(&client, &settings.status_topic, &mut plan, &mut events).await;
        let _ = client.try_disconnect();
    }
    m.in_use(None);
    // The poller ends on the Disconnect; never wait on a dead network for it.
    if tokio::time::timeout(Duration::from_secs(2), async {
        while events.recv().await.is_some() {}
    })
    .await
    .is_err()
    {
        stop_poller.cancel();
    }
    let _ = poller.await;
    info!("Upstream forwarder stopped.");
    Ok(())
}

fn node_name(names: &[String], node: usize) -> &str {
    names.get(node).map_or("?", String::as_str)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn delivered(done: Completed, spool: &mut Spool, m: &Metrics) {
    if let Completed::Message(seq) = done {
        m.sent.inc();
        spool.ack(seq);
    }
}

/// Publishes the retained `offline` status and waits (2 s at most) for its
/// PUBACK, so operators see a clean stop rather than the Last Will's
/// "offline" after the keep-alive.
async fn say_offline(
    client: &AsyncClient,
    status_topic: &str,
    plan: &mut Scheduler,
    events: &mut mpsc::UnboundedReceiver<PollEvent>,
) {
    if client
        .try_publish(status_topic, QoS::AtLeastOnce, true, b"offline".to_vec())
        .is_err()
    {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut offline_pkid = None;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
        match event {
            // Earlier submissions are written first.
            PollEvent::Sent(pkid) if plan.unwritten() == 0 => offline_pkid = Some(pkid),
            PollEvent::Sent(pkid) => {
                plan.sent(pkid);
            }
            PollEvent::Acked(pkid) if Some(pkid) == offline_pkid => break,
            PollEvent::Lost { .. } => break,
            _ => {}
        }
    }
}
