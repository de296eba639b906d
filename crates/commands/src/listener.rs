//! The subscription on the upstream (cloud) broker, and the loop that runs
//! its commands and other components' requests one at a time. The
//! subscription has its own connection
//! (client id `…-commands`, a persistent session so QoS 1 commands sent
//! while the gateway restarts are delivered, and judged by their age,
//! when it is back), apart from the forwarder's, so neither a command
//! flood nor a slow write holds up the readings going out.
//!
//! A command is acknowledged (PUBACK) only once its result is journaled
//! and stored in the outbox: killed before that, the broker delivers it
//! again and the journal answers with its result instead of writing twice.
//! The acknowledgement waits for room in the client's queue rather than
//! being dropped: the poller never stops polling (its channel to the loop
//! is unbounded, bounded in practice by the broker's in-flight window), so
//! the room always comes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gateway_core::backoff::Backoff;
use gateway_core::command::CommandRequest;
use gateway_core::telemetry::LogThrottle;
use gateway_core::{Clock, Timestamp};
use mqtt_connect::{ConnectionSettings, SetupError};
use rumqttc::{AsyncClient, Event, EventLoop, Packet, Publish, QoS};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::exec::{Arrived, Executor};
use crate::parse::{command_filter, device_level, device_of_topic, Payload};
use crate::ResultsStored;
use crate::COMMANDS_SUBSCRIBED;

/// QoS 0 commands read from the broker and not yet run; beyond, they are
/// dropped (and logged). QoS 1 ones are never dropped: the broker
/// sends no more of them than its in-flight window before they are
/// acknowledged, which bounds them.
const QOS0_QUEUE: usize = 64;

/// The largest packet MQTT has (its remaining length's limit): a command
/// the broker delivers is read whatever its size, so one too large for
/// the gateway is refused (`too_large`) and acknowledged instead of
/// breaking the connection, and being delivered again, forever. The
/// broker's own limit (Mosquitto's `message_size_limit`) bounds it.
const MAX_PACKET: usize = 268_435_455;

/// Builds the connection's options.
///
/// # Errors
/// A missing password variable or unreadable TLS files.
pub fn options(upstream: &ConnectionSettings) -> Result<rumqttc::MqttOptions, SetupError> {
    let mut settings = upstream.clone();
    settings.broker.client_id = format!("{}-commands", settings.broker.client_id);
    settings.persistent_session = true;
    settings.max_packet_bytes = MAX_PACKET;
    let mut opts = settings.mqtt_options(None)?;
    opts.set_manual_acks(true);
    Ok(opts)
}

/// Subscribes to the cloud's commands (when `cloud` is set), and runs
/// them and the `requests` of other components (Home Assistant's) through
/// `exec`, one at a time, until `stop`.
pub async fn run(
    cloud: Option<rumqttc::MqttOptions>,
    prefix: String,
    mut exec: Executor,
    mut requests: Option<mpsc::Receiver<CommandRequest>>,
    results_stored: Option<ResultsStored>,
    max_backoff: Duration,
    stop: CancellationToken,
) {
    exec.settle_interrupted().await;
    let qos0_waiting = Arc::new(AtomicUsize::new(0));
    let mut connection = None;
    let mut published = None;
    if let Some(opts) = cloud {
        let subscribed = exec.telemetry.gauge(COMMANDS_SUBSCRIBED, &[]);
        subscribed.set(0.0);
        let (client, eventloop) = AsyncClient::new(opts, 16);
        // Unbounded, so the poller never stops polling while a PUBACK
        // waits for room in the client's queue (see `poll`).
        let (tx, rx) = mpsc::unbounded_channel();
        let poller = tokio::spawn(poll(
            eventloop,
            Poller {
                client: client.clone(),
                filter: command_filter(&prefix),
                tx,
                qos0_waiting: qos0_waiting.clone(),
                clock: exec.clock.clone(),
                subscribed,
            },
            Backoff::new(Duration::from_millis(200), max_backoff),
            stop.clone(),
        ));
        connection = Some((client, poller));
        published = Some(rx);
    }
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            p = next_delivered(&mut published) => {
                // The connection's task ended: the gateway is stopping.
                let Some(Delivered { publish, payload, at, wall }) = p else { break };
                if publish.qos == QoS::AtMostOnce {
                    qos0_waiting.fetch_sub(1, Ordering::Relaxed);
                }
                let arrived = Arrived {
                    device: device_of_topic(&prefix, &publish.topic),
                    topic_level: device_level(&prefix, &publish.topic).map(str::to_string),
                    payload,
                    at,
                    wall,
                    retained: publish.retain,
                };
                exec.handle(arrived).await;
                if let Some((client, _)) = &connection {
                    if publish.qos != QoS::AtMostOnce {
                        // Its result in the outbox first: once acknowledged,
                        // the broker never delivers the command again, and
                        // a result lost from the outbox's queue (a kill -9)
                        // would be lost for good. Killed before, the
                        // re-delivery finds the result in the journal.
                        // Answered when the store is done, on disk or not
                        // (a full disk keeps it in memory, as every output
                        // does): not acknowledging then would stop the
                        // broker's deliveries once its window filled.
                        if let Some(stored) = &results_stored {
                            tokio::select! {
                                _ = stop.cancelled() => break,
                                () = outbox_stored(stored) => {}
                            }
                        }
                        // Waits for room in the client's queue: a PUBACK
                        // dropped there left its message in the broker's
                        // in-flight window for good, and once the window
                        // was full the broker delivered nothing more (a
                        // flood of 10 010 stopped at 8 013). After a
                        // reconnect the packet id may be stale; the broker
                        // then delivers it again and the journal answers.
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = client.ack(&publish) => {}
                        }
                    }
                }
            }
            r = next(&mut requests) => match r {
                Some(request) => exec.handle_request(request).await,
                None => requests = None,
            },
        }
    }
    if let Some((client, poller)) = connection {
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(2), poller).await;
    }
    info!("Command listener stopped.");
}

/// Waits until the outbox has stored what it was handed before this call
/// (or has stopped: then there is nothing to wait for).
async fn outbox_stored(stored: &ResultsStored) {
    let (reply, answer) = oneshot::channel();
    if stored.send(reply).await.is_ok() {
        let _ = answer.await;
    }
}
/// A command as the poller read it.
struct Delivered {
    /// Its topic, flags and packet id (for its PUBACK), without its
    /// payload: that is in `payload`, only as much of it as is read.
    publish: Publish,
    payload: Payload,
    /// When it arrived: its wait in the gateway counts from here.
    at: Instant,
    /// The wall clock then: its age by its `ts` is judged on it.
    wall: Timestamp,
}

impl Delivered {
    /// What waits for its turn of a message just read: an oversized
    /// payload is refused here, and its bytes (up to 256 MiB, maybe
    /// sharing the connection's read buffer) are freed now, not once the
    /// commands before it have run.
    fn of(mut publish: Publish, clock: &dyn Clock) -> Self {
        // Its arrival before the look for an oversized one's id, which
        // may read through 256 MiB.
        let (at, wall) = (Instant::now(), clock.now());
        let payload = Payload::of(&std::mem::take(&mut publish.payload));
        Self {
            publish,
            payload,
            at,
            wall,
        }
    }

    /// Bytes it holds while it waits.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.publish.payload.len() + self.payload.held()
    }
}

async fn next_delivered(rx: &mut Option<mpsc::UnboundedReceiver<Delivered>>) -> Option<Delivered> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The next message of a receiver; never, without one.
async fn next<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// What the poller needs besides its event loop.
struct Poller {
    client: AsyncClient,
    filter: String,
    tx: mpsc::UnboundedSender<Delivered>,
    qos0_waiting: Arc<AtomicUsize>,
    clock: Arc<dyn Clock>,
    subscribed: gateway_core::telemetry::Gauge,
}

async fn poll(mut eventloop: EventLoop, p: Poller, mut backoff: Backoff, stop: CancellationToken) {
    let Poller {
        client,
        filter,
        tx,
        qos0_waiting,
        clock,
        subscribed,
    } = p;
    let log = LogThrottle::default();
    loop {
        let polled = tokio::select! {
            _ = stop.cancelled() => return,
            e = eventloop.poll() => e,
        };
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                if let Err(e) = client.try_subscribe(filter.as_str(), QoS::AtLeastOnce) {
                    warn!(error = %e, "Cannot subscribe to the command topics.");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let ok = ack
                    .return_codes
                    .iter()
                    .all(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_)));
                subscribed.set(if ok { 1.0 } else { 0.0 });
                if ok {
                    info!(topic = %filter, "Subscribed to commands on the upstream broker.");
                } else {
                    warn!(topic = %filter, "The upstream broker refused the command subscription (its ACL?): no command will arrive.");
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                if publish.qos == QoS::AtMostOnce {
                    if qos0_waiting.load(Ordering::Relaxed) >= QOS0_QUEUE {
                        if let Some(suppressed) = log.allow("full") {
                            warn!(
                                suppressed,
                                "Dropping a QoS 0 command: too many are waiting."
                            );
                        }
                        continue;
                    }
                    qos0_waiting.fetch_add(1, Ordering::Relaxed);
                }
                let delivered = Delivered::of(publish, &*clock);
                if tx.send(delivered).is_err() {
                    return;
                }
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(e) => {
                subscribed.set(0.0);
                if let Some(suppressed) = log.allow("lost") {
                    warn!(error = %e, suppressed, "Command connection to the upstream broker lost; retrying.");
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::parse::MAX_PAYLOAD;
    use gateway_core::TokioClock;

    /// The attack: commands of the largest size MQTT allows, QoS 0 (64 may
    /// wait) and QoS 1 (the broker's in-flight window), each waited whole
    /// in memory for its turn only to be refused as `too_large`: 84 of
    /// 256 MiB are 21 GiB on a gateway with 1 GiB. What waits now is the
    /// refusal, its id still named.
    #[tokio::test(start_paused = true)]
    async fn an_oversized_command_waits_without_its_payload() {
        let clock = TokioClock::starting_at(Timestamp::from_millis(1_795_000_000_000).unwrap());
        let mut body = br#"{"id":"big-1","metric":"x","value":""#.to_vec();
        body.extend(std::iter::repeat_n(b'a', 4 << 20));
        body.extend(br#""}"#);
        let publish = Publish::new("b/ahu-1/command", QoS::AtLeastOnce, body.clone());
        let delivered = Delivered::of(publish, &clock);
        assert!(
            delivered.held() <= 2 * MAX_PAYLOAD,
            "{} bytes held",
            delivered.held()
        );
        let refused = delivered.payload.parse().unwrap_err();
        assert_eq!(refused, crate::parse::parse(&body).unwrap_err());
        assert_eq!(
            (refused.id.as_deref(), refused.reason),
            (Some("big-1"), "too_large")
        );
        assert_eq!(delivered.payload.len(), body.len());
        // A command of a readable size is kept whole.
        let small = br#"{"id":"s","metric":"x","value":1}"#;
        let delivered = Delivered::of(
            Publish::new("b/ahu-1/command", QoS::AtLeastOnce, &small[..]),
            &clock,
        );
        assert_eq!(delivered.payload, Payload::Whole(small.to_vec()));
    }
}
