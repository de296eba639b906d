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
//!   contract), and `feed`: which event becomes which message on which
//!   lane (alerts and command results before the backlog), with `changes`
//!   (the metrics of `[upstream] report` sent when they change);
//! - this module: the upstream's `Deliver` side, run by the crate's
//!   `durable` framework (which opens its spool): it renders what it is
//!   handed as it stores it, publishes what the scheduler picks and
//!   settles on a PUBACK or a lost connection, with `poller` polling the
//!   client's event loop in its own task and moving to the next node of
//!   `urls` when a connection is lost or refused. A reading's window goes
//!   from the pipeline's channel straight into the outbox: no relay task
//!   and no second queue in between.
//!
//! When the connection drops, the poller waits until the forwarder has
//! forgotten its in-flight set, then empties the client's own queues, so
//! nothing stale is sent on the next connection and the id mapping stays
//! exact. Consumers deduplicate on the payload's `id`.

mod changes;
mod failover;
mod feed;
pub mod kind;
mod poller;
pub mod render;
pub mod scheduler;
mod seq;
mod settings;
mod text;

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

use crate::durable::{self, OutboxPlace};
use crate::outbox::{Outbox, OutboxError};
use crate::outbox_loop::{Deliver, End, LoopSettings};
use crate::registry::SinkContext;
use crate::spool::{Spool, SpoolSettings};
use crate::OutputLink;
use failover::{Failover, Loss};
pub use feed::{
    Feed, Lane, Passthrough, Render, Rendered, MAX_STATUS_DEVICES, UPSTREAM_CHANGES,
    UPSTREAM_CHANGES_COALESCED, UPSTREAM_STATUSES_REFUSED,
};
use gateway_core::event::SinkEvent;
use poller::{poll_loop, FaultKind, PollEvent};
pub use render::Renderer;
use scheduler::{Completed, Pick, Scheduler, Sequence};
use seq::with_seq;
pub use settings::{template, UpstreamSettings};

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
        Outbox::first_after(self, seq)
    }
    fn last(&self) -> u64 {
        self.last_seq()
    }
}

/// Fault hook for the crash tests: milliseconds to hold each batch of
/// closed windows before its outbox append, so a kill can land between a
/// window's emission and its storage. Unset (the default), nothing waits.
const HOLD_OUTBOX_ENV: &str = "EDGE_GATEWAY_FAULT_HOLD_OUTBOX_MS";

/// Most events taken from the pipeline into one append (one fsync).
const BATCH: usize = 256;
/// Events waiting for the upstream: the pipeline's queue and the
/// forwarder's behind it, as deep together as they were when a relay task
/// rendered between them.
const QUEUE: usize = 2048;

/// Starts the upstream output: the forwarder renders the pipeline's
/// events (`link`) as it stores them. The task ends once `link` has
/// closed and it has delivered what it can.
pub fn start(
    settings: UpstreamSettings,
    ctx: &SinkContext,
    link: OutputLink<SinkEvent>,
) -> tokio::task::JoinHandle<Result<(), UpstreamError>> {
    let feed = Feed::new(
        Renderer {
            gateway_id: ctx.gateway_id.clone(),
            prefix: settings.topic_prefix.clone(),
            registry: ctx.registry.clone(),
        },
        ctx.units.clone(),
    )
    .with_changes(settings.report.clone(), &ctx.telemetry)
    .with_status_devices(MAX_STATUS_DEVICES, &ctx.telemetry);
    let feed = if ctx.units.by_adapter() {
        let kept = gateway_core::state_file::provenance::ProvenanceFile::in_dir(&ctx.state_dir)
            .load(ctx.units.sources());
        feed.with_kept_adapters(kept)
    } else {
        feed
    };
    tokio::spawn(forward(settings, feed, link, ctx.telemetry.clone()))
}

/// The upstream starts like every other output, with an urgent lane for
/// alerts and command results.
impl gateway_core::output::StartOutput for UpstreamSettings {
    fn lanes(&self) -> gateway_core::output::Lanes {
        gateway_core::output::Lanes {
            urgent: true,
            flush: true,
            readings: self.takes_readings(),
        }
    }

    fn queue(&self) -> Option<usize> {
        Some(QUEUE)
    }

    fn start(
        self,
        link: OutputLink<SinkEvent>,
        ctx: &SinkContext,
    ) -> Result<gateway_core::output::StartedOutput, gateway_core::output::OutputError> {
        let task = start(self, ctx, link);
        Ok(gateway_core::output::StartedOutput {
            task: Box::pin(async move { Ok(task.await??) }),
        })
    }
}

/// Runs the forwarder on messages rendered elsewhere (alerts and command
/// results told by their lane and topic) until the link's messages close
/// and everything is delivered (or `drain_timeout` has passed), then
/// publishes the retained `offline` status and disconnects.
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
    forward(settings, Passthrough, link, telemetry).await
}

/// [`run`] with what it is handed rendered by `render`.
async fn forward<R: Render>(
    settings: UpstreamSettings,
    render: R,
    link: OutputLink<R::Item>,
    telemetry: Telemetry,
) -> Result<(), UpstreamError> {
    let node_names: Vec<String> = settings.nodes.iter().map(ToString::to_string).collect();
    let m = Metrics::new(&telemetry, &node_names);
    let place = OutboxPlace {
        dir: settings.outbox_dir.clone(),
        settings: SpoolSettings {
            outbox: settings.outbox.clone(),
            max_queued: settings.max_queued,
        },
        // The unlabelled `edge_gateway_outbox_*` series it always had.
        labels: Vec::new(),
    };
    let spool = place.open(&telemetry)?;
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

    let (events_tx, events) = mpsc::unbounded_channel();
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
    let loop_settings = LoopSettings {
        batch: BATCH,
        hold_env: HOLD_OUTBOX_ENV,
        drain_timeout: settings.drain_timeout,
    };
    let forwarder = Forwarder {
        render,
        plan: Scheduler::new(settings.max_inflight, settings.drain_rate, Instant::now()),
        data_qos: qos(settings.qos),
        client_id: settings.connection.broker.client_id.clone(),
        status_topic: settings.status_topic,
        spool,
        client,
        events,
        resume: resume_tx,
        failover: Failover::default(),
        node_names,
        m,
        log: LogThrottle::default(),
        poller: Some(poller),
        stop_poller,
        connected_before: false,
    };
    durable::run(forwarder, link, &loop_settings).await;
    Ok(())
}

/// The upstream's side of the outbox loop: publishes what the scheduler
/// picks and settles on the poller's reports (written, acknowledged,
/// connected, lost).
struct Forwarder<R> {
    /// What the pipeline hands over becomes messages here, as it is stored.
    render: R,
    spool: Spool,
    plan: Scheduler,
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<PollEvent>,
    /// Tells the poller it may reconnect once the in-flight set is forgotten.
    resume: mpsc::Sender<()>,
    failover: Failover,
    node_names: Vec<String>,
    client_id: String,
    status_topic: String,
    data_qos: QoS,
    m: Metrics,
    log: LogThrottle,
    /// Polls the client's event loop; awaited at stop.
    poller: Option<tokio::task::JoinHandle<()>>,
    stop_poller: CancellationToken,
    /// Whether a connection was made before this one: the first carries
    /// everything stored already, a later one may face a broker that
    /// restarted empty.
    connected_before: bool,
}

impl<R: Render> Forwarder<R> {
    /// Stores rendered messages: alerts and results first, on their lanes
    /// (to be sent before the backlog), then the rest in order.
    fn store_rendered(&mut self, rendered: Rendered) {
        let mut messages = Vec::with_capacity(rendered.len());
        let mut first = Vec::new();
        let mut lanes = Vec::new();
        for (msg, lane) in rendered {
            if lane == Lane::Messages {
                messages.push(msg);
            } else {
                first.push(msg);
                lanes.push(lane);
            }
        }
        if !first.is_empty() {
            let seqs = self.spool.store(first);
            // Stored whole (the common case): alerts overtake everything,
            // results take their own lane; else they go in order.
            let (results, alerts): (Vec<_>, Vec<_>) = seqs
                .into_iter()
                .zip(lanes)
                .partition(|(_, lane)| *lane == Lane::Results);
            self.plan
                .push_urgent(alerts.into_iter().map(|(seq, _)| seq));
            self.plan
                .push_results(results.into_iter().map(|(seq, _)| seq));
        }
        if !messages.is_empty() {
            self.spool.store(messages);
        }
    }

    /// Publishes what the scheduler picks, until it picks nothing or the
    /// client's queue is full.
    fn publish(&mut self) {
        while let Some(pick) = self.plan.next(self.spool.outbox(), Instant::now()) {
            let (topic, payload, retain, q) = match pick {
                Pick::Status => (
                    self.status_topic.clone(),
                    b"online".to_vec(),
                    true,
                    QoS::AtLeastOnce,
                ),
                Pick::Message { seq, .. } | Pick::Result { seq } => match self.spool.read(seq) {
                    Ok(Some(msg)) => (
                        msg.topic,
                        with_seq(msg.payload, seq),
                        msg.retain,
                        self.data_qos,
                    ),
                    Ok(None) => {
                        self.plan.skip(pick);
                        continue;
                    }
                    Err(e) => {
                        error!(seq, error = %e, "Outbox: cannot read a message; skipping it until the next connection.");
                        self.plan.skip(pick);
                        continue;
                    }
                },
            };
            if let Err(e) = self.client.try_publish(topic, q, retain, payload) {
                debug!(error = %e, "Client queue full; will retry.");
                self.plan.unpick(pick);
                break;
            }
            self.plan.submitted(pick);
        }
        self.spool.update_waiting();
    }
}

impl<R: Render> Deliver for Forwarder<R> {
    type Item = R::Item;
    type Event = PollEvent;

    fn spool(&mut self) -> &mut Spool {
        &mut self.spool
    }

    fn store(&mut self, batch: Vec<Self::Item>, urgent: bool) {
        if batch.is_empty() {
            // A flush: what the disk refused before is tried again.
            self.spool.store(Vec::new());
            return;
        }
        let mut rendered = Vec::with_capacity(batch.len());
        for item in batch {
            self.render.render(item, urgent, &mut rendered);
        }
        self.store_rendered(rendered);
    }

    async fn send(&mut self, draining: bool) {
        // Changes held back within their second; all of them at stop.
        if let Some(due) = self.render.due() {
            if draining || due <= Instant::now() {
                let mut rendered = Vec::new();
                self.render
                    .held((!draining).then(Instant::now), &mut rendered);
                self.store_rendered(rendered);
            }
        }
        self.publish();
    }

    fn wakeup(&self, _draining: bool) -> Option<Instant> {
        match (self.plan.backlog_wakeup(), self.render.due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    async fn event(&mut self) -> Option<PollEvent> {
        self.events.recv().await
    }

    async fn settle(&mut self, event: PollEvent) {
        let m = &self.m;
        match event {
            PollEvent::Connected { node } => {
                self.plan.connected(self.spool.outbox());
                let url = node_name(&self.node_names, node);
                let backlog = self.spool.outbox().len();
                if self.failover.connected(node, Instant::now()) {
                    m.failovers.inc();
                    info!(broker = %url, backlog, "Failed over to another broker node; what the previous one did not acknowledge is sent again.");
                } else {
                    info!(broker = %url, backlog, "Connected upstream.");
                }
                m.in_use(Some(node));
                if std::mem::replace(&mut self.connected_before, true) {
                    let mut again = Vec::new();
                    self.render.reconnected(&mut again);
                    if !again.is_empty() {
                        self.store_rendered(again);
                    }
                }
            }
            PollEvent::Sent(pkid) => {
                if let Some(done) = self.plan.sent(pkid) {
                    delivered(done, &mut self.spool, m);
                }
            }
            PollEvent::Acked(pkid) => {
                if let Some(done) = self.plan.acked(pkid) {
                    delivered(done, &mut self.spool, m);
                }
            }
            PollEvent::Lost { node, error, kind } => {
                let url = node_name(&self.node_names, node);
                let was_connected = self.plan.is_connected();
                let unacknowledged = self.plan.lost();
                let log = &self.log;
                if let Loss::LikelyConflict { short_sessions } = self.failover.lost(Instant::now())
                {
                    m.conflicts.inc();
                    if let Some(suppressed) = log.allow("conflict") {
                        error!(broker = %url, client_id = %self.client_id, short_sessions, suppressed, "The upstream broker keeps closing the connection right after accepting it: another client very likely uses the same client id. Check that gateway.id is unique in the fleet (or set a unique upstream.client_id).");
                    }
                }
                if was_connected {
                    m.reconnects.inc();
                    if let Some(suppressed) = log.allow("lost") {
                        warn!(broker = %url, %error, unacknowledged, suppressed, "Lost the upstream broker; what it did not acknowledge will be sent again.");
                    }
                } else if let Some(suppressed) = log.allow("connect") {
                    match kind {
                        FaultKind::Refused => {
                            error!(broker = %url, %error, suppressed, "The upstream broker refused the connection: check username, password_env and client_id. Buffering and retrying.")
                        }
                        FaultKind::Tls => {
                            error!(broker = %url, %error, suppressed, "TLS with the upstream broker failed: check ca_file, the certificate's name and dates, and the clock. Buffering and retrying.")
                        }
                        FaultKind::Network => {
                            warn!(broker = %url, %error, suppressed, "Cannot reach the upstream broker; buffering.")
                        }
                    }
                }
                m.connect_failures.inc();
                m.in_use(None);
                let _ = self.resume.send(()).await;
            }
        }
    }

    fn idle(&self) -> bool {
        self.plan.unacknowledged() == 0
    }

    async fn finish(&mut self, end: End) {
        if end == End::Deadline {
            self.spool.close();
        }
        if self.plan.is_connected() {
            say_offline(
                &self.client,
                &self.status_topic,
                &mut self.plan,
                &mut self.events,
            )
            .await;
            let _ = self.client.try_disconnect();
        }
        self.m.in_use(None);
        // The poller ends on the Disconnect; never wait on a dead network for it.
        let events = &mut self.events;
        if tokio::time::timeout(Duration::from_secs(2), async {
            while events.recv().await.is_some() {}
        })
        .await
        .is_err()
        {
            self.stop_poller.cancel();
        }
        if let Some(poller) = self.poller.take() {
            let _ = poller.await;
        }
        info!("Upstream forwarder stopped.");
    }
}

fn node_name(names: &[String], node: usize) -> &str {
    names.get(node).map_or("?", String::as_str)
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
