//! The upstream forwarder: every message goes through the durable outbox
//! and leaves it only on the broker's PUBACK.
//!
//! rumqttc drops unacknowledged and queued publishes when it reconnects
//! without a session (measured: 10 of 10 lost), so durability cannot come
//! from the client. Two tasks share the work:
//!
//! - the *poller* only polls the event loop (its `poll()` is not documented
//!   as cancel-safe, rumqtt#601, so it is never raced in a `select!`) and
//!   reports connection events;
//! - the *forwarder* writes arriving messages to the outbox (one fsync per
//!   batch), submits at most `max_inflight` of them, maps each to its packet
//!   id from the client's `Outgoing::Publish` events (they come in
//!   submission order), and acknowledges it in the outbox on its PUBACK
//!   (PUBCOMP for QoS 2).
//!
//! When the connection drops, the poller waits until the forwarder has
//! forgotten its in-flight set, then empties the client's own queues, so
//! nothing stale is sent on the next connection and the id mapping stays
//! exact. On every connection the outbox is sent again from its oldest
//! unacknowledged message: what was there before (the backlog) at
//! `drain_rate`, what arrives after at once. Consumers deduplicate on the
//! payload's `id`.
//!
//! Messages on the `urgent` channel (alerts) overtake the rest: they are
//! taken in first, stored in their own append, and submitted before any
//! waiting message. Behind a window close of a thousand devices and
//! `max_inflight` 100, an alert otherwise waited for ten broker round trips
//! (half a second to a cloud broker 50 ms away). A skipped-ahead message is
//! remembered so the in-order cursor does not send it twice.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use gateway_core::backoff::Backoff;
use gateway_core::config::Qos;
use gateway_core::outbox::{FullPolicy, Outbox, OutboxError, OutboxSettings};
use gateway_core::telemetry::{Counter, Gauge, LogThrottle};
use gateway_core::{OutboundMessage, Telemetry};
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, oneshot};
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
    /// Where the durable outbox lives; `None` keeps messages in memory.
    pub outbox_dir: Option<PathBuf>,
    pub outbox: OutboxSettings,
    /// Backlog messages per second after (re)connecting.
    pub drain_rate: u32,
    /// Messages held in memory while the outbox cannot take them (disk full).
    pub max_queued: usize,
    pub max_inflight: u16,
    pub max_backoff: Duration,
    /// How long to keep delivering once the pipeline has closed (shutdown);
    /// what is left stays in the outbox for the next start.
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

/// Messages the upstream broker acknowledged.
pub const UPSTREAM_SENT: &str = "edge_gateway_upstream_sent_messages_total";
/// Connections to the upstream broker lost after being established.
pub const UPSTREAM_RECONNECTS: &str = "edge_gateway_upstream_reconnects_total";
/// `1` while the forwarder holds a connection upstream.
pub const UPSTREAM_CONNECTED: &str = "edge_gateway_upstream_connected";
/// Outbox messages dropped, by `reason`.
pub const OUTBOX_DROPPED: &str = "edge_gateway_outbox_dropped_messages_total";
/// Messages waiting in the outbox (and in memory while the disk refuses).
pub const OUTBOX_MESSAGES: &str = "edge_gateway_outbox_messages";
/// Bytes the outbox holds.
pub const OUTBOX_BYTES: &str = "edge_gateway_outbox_bytes";
/// Age of the oldest waiting message.
pub const OUTBOX_OLDEST_AGE: &str = "edge_gateway_outbox_oldest_age_seconds";
/// Outbox reads and writes that failed.
pub const OUTBOX_STORAGE_ERRORS: &str = "edge_gateway_outbox_storage_errors_total";

struct Metrics {
    sent: Counter,
    evicted: Counter,
    rejected: Counter,
    overflow: Counter,
    expired: Counter,
    unstored: Counter,
    storage_errors: Counter,
    reconnects: Counter,
    connect_failures: Counter,
    queued: Gauge,
    bytes: Gauge,
    oldest_age: Gauge,
    connected: Gauge,
}

impl Metrics {
    fn new(t: &Telemetry) -> Self {
        let dropped = |reason| t.counter(OUTBOX_DROPPED, &[("reason", reason)]);
        Self {
            sent: t.counter(UPSTREAM_SENT, &[]),
            evicted: dropped("full_drop_oldest"),
            rejected: dropped("full_reject_new"),
            overflow: dropped("memory_overflow"),
            expired: dropped("expired"),
            unstored: dropped("unstored_at_exit"),
            storage_errors: t.counter(OUTBOX_STORAGE_ERRORS, &[]),
            reconnects: t.counter(UPSTREAM_RECONNECTS, &[]),
            connect_failures: t.counter("edge_gateway_upstream_connection_failures_total", &[]),
            queued: t.gauge(OUTBOX_MESSAGES, &[]),
            bytes: t.gauge(OUTBOX_BYTES, &[]),
            oldest_age: t.gauge(OUTBOX_OLDEST_AGE, &[]),
            connected: t.gauge(UPSTREAM_CONNECTED, &[]),
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

/// Sequence number of the retained `online` status: not an outbox message.
const STATUS: u64 = 0;

/// Fault hook for the crash tests: milliseconds to hold each batch of
/// closed windows before its outbox append, so a kill can land between a
/// window's emission and its storage. Unset (the default), nothing waits.
const HOLD_OUTBOX_ENV: &str = "EDGE_GATEWAY_FAULT_HOLD_OUTBOX_MS";

/// Opens the outbox, degrading to memory when the directory is unusable.
fn open_outbox(settings: &UpstreamSettings, m: &Metrics) -> Result<Outbox, SetupError> {
    let Some(dir) = &settings.outbox_dir else {
        return Ok(Outbox::in_memory(settings.outbox.clone()));
    };
    match Outbox::open(dir, settings.outbox.clone()) {
        Ok((outbox, recovery)) => {
            for d in &recovery.damage {
                m.storage_errors.inc();
                warn!(segment = %d.segment.display(), offset = d.offset, bytes = d.bytes, "Outbox: skipped damaged bytes (torn write or corruption); the intact messages around them are kept.");
            }
            info!(dir = %dir.display(), messages = recovery.messages, bytes = outbox.bytes(), "Outbox opened.");
            Ok(outbox)
        }
        Err(e @ OutboxError::Locked(_)) => Err(SetupError::Outbox(e.to_string())),
        Err(e) => {
            m.storage_errors.inc();
            error!(error = %e, "Outbox directory unusable: keeping messages in memory only; a restart will lose them.");
            Ok(Outbox::in_memory(settings.outbox.clone()))
        }
    }
}

/// Runs the forwarder until `rx` is closed and everything is delivered (or
/// `drain_timeout` has passed), then publishes the retained `offline`
/// status and disconnects.
///
/// # Errors
/// Only a connection or outbox that cannot be set up (missing password
/// variable, unreadable TLS files, an outbox locked by another gateway);
/// network and disk faults are retried.
///
/// A request on `flush` is answered once every message sent on `rx` and
/// `urgent` before it was made has been handed to the outbox: `true` when
/// the outbox holds them on disk.
pub async fn run_upstream(
    settings: UpstreamSettings,
    mut rx: mpsc::Receiver<OutboundMessage>,
    mut urgent: Option<mpsc::Receiver<OutboundMessage>>,
    mut flush: Option<mpsc::Receiver<oneshot::Sender<bool>>>,
    telemetry: Telemetry,
) -> Result<(), SetupError> {
    let m = Metrics::new(&telemetry);
    let mut outbox = open_outbox(&settings, &m)?;
    let will = LastWill::new(&settings.status_topic, "offline", QoS::AtLeastOnce, true);
    let mut options = settings.connection.mqtt_options(Some(will))?;
    options.set_inflight(settings.max_inflight.saturating_add(1));
    let (client, mut eventloop) =
        AsyncClient::new(options, usize::from(settings.max_inflight) + 16);
    eventloop.network_options.set_connection_timeout(10);

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
    let rate = f64::from(settings.drain_rate.max(1));
    let burst = (rate / 10.0).max(1.0);
    let mut submitted: VecDeque<u64> = VecDeque::new();
    // Urgent messages stored and not yet submitted, and those submitted
    // ahead of the cursor and not yet acknowledged.
    let mut urgent_queue: VecDeque<u64> = VecDeque::new();
    let mut ahead: HashSet<u64> = HashSet::new();
    let mut inflight: HashMap<u16, u64> = HashMap::new();
    let mut overflow: VecDeque<OutboundMessage> = VecDeque::new();
    let (mut backlog_end, mut backlog_cursor, mut live_cursor) = (0u64, 0u64, 0u64);
    let mut tokens = burst;
    let mut refilled = Instant::now();
    let mut status_pending = false;
    let mut connected = false;
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
        let now = Instant::now();
        tokens = (tokens + now.duration_since(refilled).as_secs_f64() * rate).min(burst);
        refilled = now;
        while connected && submitted.len() + inflight.len() < cap {
            let (seq, topic, payload, retain, q) = if status_pending {
                status_pending = false;
                (
                    STATUS,
                    settings.status_topic.clone(),
                    b"online".to_vec(),
                    true,
                    QoS::AtLeastOnce,
                )
            } else if let Some(seq) = urgent_queue.pop_front() {
                ahead.insert(seq);
                match outbox.read(seq) {
                    Ok(Some(msg)) => (seq, msg.topic, msg.payload, msg.retain, data_qos),
                    _ => {
                        ahead.remove(&seq);
                        continue;
                    }
                }
            } else {
                // New data first; the backlog follows at the drain rate.
                let next_live = outbox
                    .seqs_after(live_cursor.max(backlog_end), 1)
                    .first()
                    .copied();
                let seq = match next_live {
                    Some(seq) => {
                        live_cursor = seq;
                        seq
                    }
                    None if backlog_cursor < backlog_end && tokens >= 1.0 => {
                        match outbox
                            .seqs_after(backlog_cursor, 1)
                            .first()
                            .copied()
                            .filter(|s| *s <= backlog_end)
                        {
                            Some(seq) => {
                                backlog_cursor = seq;
                                tokens -= 1.0;
                                seq
                            }
                            None => {
                                backlog_cursor = backlog_end;
                                continue;
                            }
                        }
                    }
                    None => break,
                };
                if ahead.contains(&seq) {
                    continue;
                }
                match outbox.read(seq) {
                    Ok(Some(msg)) => (seq, msg.topic, msg.payload, msg.retain, data_qos),
                    Ok(None) => continue,
                    Err(e) => {
                        m.storage_errors.inc();
                        error!(seq, error = %e, "Outbox: cannot read a message; skipping it until the next connection.");
                        continue;
                    }
                }
            };
            if let Err(e) = client.try_publish(topic, q, retain, payload) {
                debug!(error = %e, "Client queue full; will retry.");
                break;
            }
            submitted.push_back(seq);
        }
        m.queued.set((outbox.len() + overflow.len()) as f64);
        if !rx_open
            && outbox.is_empty()
            && overflow.is_empty()
            && submitted.is_empty()
            && inflight.is_empty()
        {
            break;
        }
        let backlog_waiting = connected && backlog_cursor < backlog_end && tokens < 1.0;
        let token_at = refilled + Duration::from_secs_f64(((1.0 - tokens) / rate).max(0.0));
        tokio::select! {
            biased;
            event = events.recv() => {
                let Some(event) = event else { break };
                match event {
                    PollEvent::Connected => {
                        connected = true;
                        m.connected.set(1.0);
                        backlog_end = outbox.last_seq();
                        backlog_cursor = 0;
                        live_cursor = backlog_end;
                        status_pending = true;
                        info!(broker = %settings.connection.url, backlog = outbox.len(), "Connected upstream.");
                    }
                    PollEvent::Sent(pkid) => {
                        if let Some(seq) = submitted.pop_front() {
                            if pkid == 0 {
                                ahead.remove(&seq);
                                if seq != STATUS {
                                    m.sent.inc();
                                    if let Err(e) = outbox.ack(seq) {
                                        m.storage_errors.inc();
                                        warn!(error = %e, "Outbox: cannot record a delivery; the message may be sent again.");
                                    }
                                }
                            } else {
                                inflight.insert(pkid, seq);
                            }
                        }
                    }
                    PollEvent::Acked(pkid) => {
                        if let Some(seq) = inflight.remove(&pkid) {
                            ahead.remove(&seq);
                            if seq != STATUS {
                                m.sent.inc();
                                if let Err(e) = outbox.ack(seq) {
                                    m.storage_errors.inc();
                                    warn!(error = %e, "Outbox: cannot record a delivery; the message may be sent again.");
                                }
                            }
                        }
                    }
                    PollEvent::Lost { error, kind } => {
                        let url = &settings.connection.url;
                        if connected {
                            m.reconnects.inc();
                            warn!(broker = %url, %error, unacknowledged = submitted.len() + inflight.len(), "Lost the upstream broker; what it did not acknowledge will be sent again.");
                        } else if let Some(suppressed) = log.allow("connect") {
                            match kind {
                                FaultKind::Refused => error!(broker = %url, %error, suppressed, "The upstream broker refused the connection: check username, password_env and client_id. Buffering and retrying."),
                                FaultKind::Tls => error!(broker = %url, %error, suppressed, "TLS with the upstream broker failed: check ca_file, the certificate's name and dates, and the clock. Buffering and retrying."),
                                FaultKind::Network => warn!(broker = %url, %error, suppressed, "Cannot reach the upstream broker; buffering."),
                            }
                        }
                        m.connect_failures.inc();
                        connected = false;
                        status_pending = false;
                        m.connected.set(0.0);
                        submitted.clear();
                        inflight.clear();
                        // Alerts sent ahead but not acknowledged go first
                        // again on the next connection.
                        let mut again: Vec<u64> = ahead.drain().collect();
                        again.sort_unstable();
                        for seq in again.into_iter().rev() {
                            urgent_queue.push_front(seq);
                        }
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
                    urgent_queue.extend(store(&mut outbox, &mut overflow, batch, &settings, &m, &log));
                }
                None => urgent = None,
            },
            msg = rx.recv(), if rx_open => match msg {
                Some(msg) => {
                    let mut batch = vec![msg];
                    while batch.len() < 256 {
                        match rx.try_recv() {
                            Ok(more) => batch.push(more),
                            Err(_) => break,
                        }
                    }
                    if let Some(hold) = hold_outbox {
                        tokio::time::sleep(hold).await;
                    }
                    store(&mut outbox, &mut overflow, batch, &settings, &m, &log);
                }
                None => {
                    rx_open = false;
                    drain_deadline = Instant::now() + settings.drain_timeout;
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
                    urgent_queue.extend(store(&mut outbox, &mut overflow, batch, &settings, &m, &log));
                    let mut batch = Vec::new();
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                    }
                    store(&mut outbox, &mut overflow, batch, &settings, &m, &log);
                    let _ = reply.send(overflow.is_empty() && outbox.is_durable());
                }
                None => flush = None,
            },
            _ = tokio::time::sleep_until(token_at), if backlog_waiting => {}
            _ = housekeeping.tick() => {
                ticks += 1;
                if !overflow.is_empty() {
                    store(&mut outbox, &mut overflow, Vec::new(), &settings, &m, &log);
                }
                let now_ms = gateway_core::Timestamp::now().as_millis();
                if ticks.is_multiple_of(10) {
                    match outbox.expire(now_ms) {
                        Ok(n) => m.expired.add(n),
                        Err(e) => { m.storage_errors.inc(); warn!(error = %e, "Outbox: cannot expire old messages."); }
                    }
                }
                m.bytes.set(outbox.bytes() as f64);
                m.oldest_age.set(outbox.oldest_created_ms().map_or(0.0, |c| (now_ms - c).max(0) as f64 / 1000.0));
            }
            _ = tokio::time::sleep_until(drain_deadline), if !rx_open => {
                if !overflow.is_empty() {
                    store(&mut outbox, &mut overflow, Vec::new(), &settings, &m, &log);
                }
                let unstored = overflow.len() + if outbox.is_durable() { 0 } else { outbox.len() };
                if unstored > 0 {
                    m.unstored.add(unstored as u64);
                    error!(lost = unstored, "Stopping with messages the disk would not take: they are lost (counted as dropped, reason unstored_at_exit).");
                }
                info!(left = outbox.len(), durable = outbox.is_durable(), "Stopping; undelivered messages stay in the outbox for the next start.");
                break;
            }
        }
    }

    if connected {
        if client
            .try_publish(
                &settings.status_topic,
                QoS::AtLeastOnce,
                true,
                b"offline".to_vec(),
            )
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

/// Puts a batch (after anything waiting in memory) into the outbox. When
/// the disk refuses, the messages wait in memory, bounded by `max_queued`,
/// and are retried every second.
///
/// Returns the sequence numbers of `batch` itself when it went in whole
/// and in one append (the common case), for urgent messages to be sent
/// first; otherwise none, and they go in order with the rest.
fn store(
    outbox: &mut Outbox,
    overflow: &mut VecDeque<OutboundMessage>,
    batch: Vec<OutboundMessage>,
    settings: &UpstreamSettings,
    m: &Metrics,
    log: &LogThrottle,
) -> Vec<u64> {
    let n = batch.len();
    let was_waiting = overflow.len();
    overflow.extend(batch);
    let pending: Vec<OutboundMessage> = overflow.drain(..).collect();
    let now_ms = gateway_core::Timestamp::now().as_millis();
    match outbox.append(pending.clone(), now_ms) {
        Ok(a) => {
            appended(&a, outbox, settings, m, log);
            if a.seqs.len() == was_waiting + n {
                return a.seqs[was_waiting..].to_vec();
            }
        }
        Err(e) if e.is_disk_full() => {
            store_on_full_disk(outbox, overflow, pending, settings, m, log);
        }
        Err(e) => hold(overflow, pending, &e, settings, m, log),
    }
    Vec::new()
}

/// The disk filled before `max_bytes` did: store message by message, and
/// with `drop_oldest` free room the way a full budget would.
fn store_on_full_disk(
    outbox: &mut Outbox,
    overflow: &mut VecDeque<OutboundMessage>,
    pending: Vec<OutboundMessage>,
    settings: &UpstreamSettings,
    m: &Metrics,
    log: &LogThrottle,
) {
    let now_ms = gateway_core::Timestamp::now().as_millis();
    let mut freed = 0u64;
    let mut left = pending.into_iter();
    let mut failed = None;
    'messages: for msg in left.by_ref() {
        loop {
            match outbox.append(vec![msg.clone()], now_ms) {
                Ok(a) => {
                    appended(&a, outbox, settings, m, log);
                    continue 'messages;
                }
                Err(e) if e.is_disk_full() && settings.outbox.policy == FullPolicy::DropOldest => {
                    match outbox.make_room() {
                        Ok(n) if n > 0 => {
                            freed += n;
                            m.evicted.add(n);
                        }
                        _ => {
                            failed = Some((e, msg));
                            break 'messages;
                        }
                    }
                }
                Err(e) => {
                    failed = Some((e, msg));
                    break 'messages;
                }
            }
        }
    }
    if freed > 0 {
        if let Some(suppressed) = log.allow("disk_full_evict") {
            warn!(
                evicted_oldest = freed,
                suppressed, "Disk full: dropped the oldest outbox messages to make room."
            );
        }
    }
    if let Some((e, msg)) = failed {
        let mut rest = vec![msg];
        rest.extend(left);
        hold(overflow, rest, &e, settings, m, log);
    }
}

fn appended(
    a: &gateway_core::outbox::Appended,
    outbox: &Outbox,
    settings: &UpstreamSettings,
    m: &Metrics,
    log: &LogThrottle,
) {
    debug!(
        stored = a.seqs.len(),
        last_seq = outbox.last_seq(),
        evicted = a.evicted,
        rejected = a.rejected,
        "Stored in the outbox."
    );
    m.evicted.add(a.evicted);
    m.rejected.add(a.rejected);
    if a.evicted + a.rejected > 0 {
        if let Some(suppressed) = log.allow("full") {
            warn!(
                evicted_oldest = a.evicted,
                rejected_new = a.rejected,
                max_bytes = settings.outbox.max_bytes,
                suppressed,
                "Outbox full: dropped messages by policy."
            );
        }
    }
}

/// Keeps what the disk refused in memory, bounded by `max_queued`; the
/// policy says which end gives.
fn hold(
    overflow: &mut VecDeque<OutboundMessage>,
    pending: Vec<OutboundMessage>,
    e: &OutboxError,
    settings: &UpstreamSettings,
    m: &Metrics,
    log: &LogThrottle,
) {
    m.storage_errors.inc();
    if let Some(suppressed) = log.allow("storage") {
        error!(error = %e, disk_full = e.is_disk_full(), waiting = pending.len(), suppressed, "Outbox: cannot write; holding messages in memory and retrying.");
    }
    overflow.extend(pending);
    while overflow.len() > settings.max_queued {
        match settings.outbox.policy {
            FullPolicy::DropOldest => overflow.pop_front(),
            FullPolicy::RejectNew => overflow.pop_back(),
        };
        m.overflow.inc();
    }
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
                // Events of the failed batch still buffered (a Publish
                // whose write failed, PubAcks read before the error) would
                // be yielded on the next connection and pair packet ids
                // with the wrong outbox messages.
                eventloop.state.events.clear();
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
