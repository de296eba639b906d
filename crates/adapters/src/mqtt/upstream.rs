//! The upstream forwarder: every message is kept until the broker's PUBACK.
//!
//! rumqttc drops unacknowledged and queued publishes when it reconnects
//! without a session (measured: 10 of 10 lost), so durability cannot come
//! from the client. Two tasks share the work:
//!
//! - the *poller* only polls the event loop (its `poll()` is not documented
//!   as cancel-safe, rumqtt#601, so it is never raced in a `select!`) and
//!   reports connection events;
//! - the *forwarder* owns the queue, submits at most `max_inflight`
//!   publishes, maps each to its packet id from the client's
//!   `Outgoing::Publish` events (they come in submission order), and
//!   removes a message only on its PUBACK (PUBCOMP for QoS 2).
//!
//! When the connection drops, the poller waits until the forwarder has put
//! every unacknowledged message back at the head of its queue, then empties
//! the client's own queues, so nothing stale is sent on the next connection
//! and the id mapping stays exact. Messages are re-sent on the new
//! connection: consumers deduplicate on the payload's `id`.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use gateway_core::backoff::Backoff;
use gateway_core::config::Qos;
use gateway_core::telemetry::{Counter, Gauge, LogThrottle};
use gateway_core::{OutboundMessage, Telemetry};
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, Outgoing, Packet, QoS};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::connect::{ConnectionSettings, SetupError};

/// How the forwarder connects and behaves.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub connection: ConnectionSettings,
    pub qos: Qos,
    /// Retained `online`/`offline` topic; also the Last Will.
    pub status_topic: String,
    pub max_queued: usize,
    pub max_inflight: u16,
    pub max_backoff: Duration,
    /// How long to keep trying to deliver what is queued once the pipeline
    /// has closed (shutdown).
    pub drain_timeout: Duration,
}

enum PollEvent {
    Connected,
    Sent(u16),
    Acked(u16),
    Lost { error: String, kind: FaultKind },
}

/// Why a connection failed, because the remedies differ: a refused login or
/// a certificate problem does not fix itself by waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FaultKind {
    Network,
    Refused,
    Tls,
}

impl FaultKind {
    fn of(e: &rumqttc::ConnectionError) -> Self {
        match e {
            rumqttc::ConnectionError::ConnectionRefused(_) => Self::Refused,
            rumqttc::ConnectionError::Tls(_) => Self::Tls,
            _ => Self::Network,
        }
    }
}

struct Entry {
    seq: u64,
    msg: OutboundMessage,
    qos: QoS,
}

struct Metrics {
    sent: Counter,
    dropped_full: Counter,
    reconnects: Counter,
    connect_failures: Counter,
    queued: Gauge,
    connected: Gauge,
}

fn qos(q: Qos) -> QoS {
    match q.as_u8() {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// Runs the forwarder until `rx` is closed and the queue is delivered (or
/// `drain_timeout` has passed), then publishes the retained `offline` status
/// and disconnects.
///
/// # Errors
/// Only a connection that cannot be configured (missing password variable,
/// unreadable TLS files); network faults are retried forever.
pub async fn run_upstream(
    settings: UpstreamSettings,
    mut rx: mpsc::Receiver<OutboundMessage>,
    telemetry: Telemetry,
) -> Result<(), SetupError> {
    let will = LastWill::new(&settings.status_topic, "offline", QoS::AtLeastOnce, true);
    let mut options = settings.connection.mqtt_options(Some(will))?;
    options.set_inflight(settings.max_inflight.saturating_add(1));
    let (client, mut eventloop) =
        AsyncClient::new(options, usize::from(settings.max_inflight) + 16);
    eventloop.network_options.set_connection_timeout(10);

    let m = Metrics {
        sent: telemetry.counter("edge_gateway_upstream_sent_messages_total", &[]),
        dropped_full: telemetry.counter(
            "edge_gateway_upstream_dropped_messages_total",
            &[("reason", "queue_full")],
        ),
        reconnects: telemetry.counter("edge_gateway_upstream_reconnects_total", &[]),
        connect_failures: telemetry.counter("edge_gateway_upstream_connection_failures_total", &[]),
        queued: telemetry.gauge("edge_gateway_upstream_queued_messages", &[]),
        connected: telemetry.gauge("edge_gateway_upstream_connected", &[]),
    };

    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (resume_tx, resume_rx) = mpsc::channel(1);
    let stop_poller = CancellationToken::new();
    let poller = tokio::spawn(poll_loop(
        eventloop,
        events_tx,
        resume_rx,
        Backoff::new(Duration::from_millis(200), settings.max_backoff),
        stop_poller.clone(),
        settings.connection.url.to_string(),
    ));

    let data_qos = qos(settings.qos);
    let cap = usize::from(settings.max_inflight);
    let mut queue: VecDeque<Entry> = VecDeque::new();
    let mut submitted: VecDeque<Entry> = VecDeque::new();
    let mut inflight: HashMap<u16, Entry> = HashMap::new();
    let mut next_seq: u64 = 0;
    let mut connected = false;
    let mut rx_open = true;
    let mut drain_deadline = Instant::now();
    let drop_log = LogThrottle::default();
    // Sequence 0 is reserved for the retained status, which must not count
    // as a delivered data message.
    let status_online = |seq| Entry {
        seq,
        msg: OutboundMessage {
            topic: settings.status_topic.clone(),
            payload: b"online".to_vec(),
            retain: true,
        },
        qos: QoS::AtLeastOnce,
    };

    loop {
        while connected && submitted.len() + inflight.len() < cap {
            let Some(entry) = queue.pop_front() else {
                break;
            };
            let m2 = &entry.msg;
            match client.try_publish(&m2.topic, entry.qos, m2.retain, m2.payload.clone()) {
                Ok(()) => submitted.push_back(entry),
                Err(e) => {
                    debug!(error = %e, "Client queue full; will retry.");
                    queue.push_front(entry);
                    break;
                }
            }
        }
        m.queued
            .set((queue.len() + submitted.len() + inflight.len()) as f64);
        if !rx_open && queue.is_empty() && submitted.is_empty() && inflight.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            event = events.recv() => {
                let Some(event) = event else { break };
                match event {
                    PollEvent::Connected => {
                        connected = true;
                        m.connected.set(1.0);
                        info!(broker = %settings.connection.url, "Connected upstream.");
                        queue.push_front(status_online(0));
                    }
                    PollEvent::Sent(pkid) => {
                        if let Some(entry) = submitted.pop_front() {
                            if pkid == 0 || entry.qos == QoS::AtMostOnce {
                                if entry.seq != 0 {
                                    m.sent.inc();
                                }
                            } else {
                                inflight.insert(pkid, entry);
                            }
                        }
                    }
                    PollEvent::Acked(pkid) => {
                        if let Some(entry) = inflight.remove(&pkid) {
                            if entry.seq != 0 {
                                m.sent.inc();
                            }
                        }
                    }
                    PollEvent::Lost { error, kind } => {
                        let url = &settings.connection.url;
                        if connected {
                            m.reconnects.inc();
                            warn!(broker = %url, %error, unacknowledged = submitted.len() + inflight.len(), "Lost the upstream broker; will resend what it did not acknowledge.");
                        } else if let Some(suppressed) = drop_log.allow("connect") {
                            match kind {
                                FaultKind::Refused => error!(broker = %url, %error, suppressed, "The upstream broker refused the connection: check username, password_env and client_id. Buffering and retrying."),
                                FaultKind::Tls => error!(broker = %url, %error, suppressed, "TLS with the upstream broker failed: check ca_file, the certificate's name and dates, and the clock. Buffering and retrying."),
                                FaultKind::Network => warn!(broker = %url, %error, suppressed, "Cannot reach the upstream broker; buffering."),
                            }
                        }
                        m.connect_failures.inc();
                        connected = false;
                        m.connected.set(0.0);
                        let mut back: Vec<Entry> = submitted.drain(..).chain(inflight.drain().map(|(_, e)| e)).filter(|e| e.seq != 0).collect();
                        back.sort_by_key(|e| e.seq);
                        queue.retain(|e| e.seq != 0);
                        for e in back.into_iter().rev() {
                            queue.push_front(e);
                        }
                        let _ = resume_tx.send(()).await;
                    }
                }
            }
            msg = rx.recv(), if rx_open => match msg {
                Some(msg) => {
                    next_seq += 1;
                    queue.push_back(Entry { seq: next_seq, msg, qos: data_qos });
                    if queue.len() > settings.max_queued {
                        // Oldest first: the newest data is what operators act on.
                        if let Some(pos) = queue.iter().position(|e| e.seq != 0) {
                            if let Some(dropped) = queue.remove(pos) {
                                m.dropped_full.inc();
                                if let Some(suppressed) = drop_log.allow("full") {
                                    warn!(topic = %dropped.msg.topic, suppressed, max_queued = settings.max_queued, "Upstream queue full; dropped the oldest message.");
                                }
                            }
                        }
                    }
                }
                None => {
                    rx_open = false;
                    drain_deadline = Instant::now() + settings.drain_timeout;
                }
            },
            _ = tokio::time::sleep_until(drain_deadline), if !rx_open => {
                warn!(undelivered = queue.len() + submitted.len() + inflight.len(), "Stopping with messages the upstream broker has not acknowledged.");
                break;
            }
        }
    }

    if connected {
        let offline = OutboundMessage {
            topic: settings.status_topic.clone(),
            payload: b"offline".to_vec(),
            retain: true,
        };
        if client
            .try_publish(&offline.topic, QoS::AtLeastOnce, true, offline.payload)
            .is_ok()
        {
            let deadline = Instant::now() + Duration::from_secs(2);
            let mut offline_pkid = None;
            while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
                match event {
                    PollEvent::Sent(pkid) if submitted.is_empty() => offline_pkid = Some(pkid),
                    PollEvent::Sent(_) => {
                        submitted.pop_front();
                    }
                    PollEvent::Acked(pkid) if Some(pkid) == offline_pkid => break,
                    PollEvent::Lost { .. } => break,
                    _ => {}
                }
            }
        }
        let _ = client.try_disconnect();
    }
    m.connected.set(0.0);
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

async fn poll_loop(
    mut eventloop: EventLoop,
    events: mpsc::UnboundedSender<PollEvent>,
    mut resume: mpsc::Receiver<()>,
    mut backoff: Backoff,
    stop: CancellationToken,
    broker: String,
) {
    loop {
        let polled = tokio::select! {
            _ = stop.cancelled() => return,
            e = eventloop.poll() => e,
        };
        let event = match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                PollEvent::Connected
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => PollEvent::Sent(pkid),
            Ok(Event::Incoming(Packet::PubAck(ack))) => PollEvent::Acked(ack.pkid),
            Ok(Event::Incoming(Packet::PubComp(comp))) => PollEvent::Acked(comp.pkid),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => continue,
            Err(e) => {
                let lost = PollEvent::Lost {
                    error: e.to_string(),
                    kind: FaultKind::of(&e),
                };
                if events.send(lost).is_err() {
                    return;
                }
                // Wait until the forwarder has taken its messages back, then
                // empty the client's queues so nothing stale is resent.
                tokio::select! {
                    _ = stop.cancelled() => return,
                    r = resume.recv() => if r.is_none() { return },
                }
                eventloop.clean();
                eventloop.pending.clear();
                let delay = backoff.next_delay();
                debug!(%broker, ?delay, "Upstream reconnect backoff.");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                continue;
            }
        };
        if events.send(event).is_err() {
            return;
        }
    }
}
