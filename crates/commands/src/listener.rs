//! The subscription on the upstream (cloud) broker, and the loop that runs
//! its commands and other components' requests one at a time. The
//! subscription has its own connection
//! (client id `…-commands`, a persistent session so QoS 1 commands sent
//! while the gateway restarts are delivered, and judged by their age,
//! when it is back), apart from the forwarder's, so neither a command
//! flood nor a slow write holds up the readings going out.
//!
//! A command is acknowledged (PUBACK) only once its result is journaled
//! and handed to the outbox: killed before that, the broker delivers it
//! again and the journal answers with its result instead of writing twice.

use std::time::Duration;

use gateway_core::backoff::Backoff;
use gateway_core::command::CommandRequest;
use gateway_core::telemetry::LogThrottle;
use mqtt_connect::{ConnectionSettings, SetupError};
use rumqttc::{AsyncClient, Event, EventLoop, Packet, Publish, QoS};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::exec::{Arrived, Executor};
use crate::parse::{command_filter, device_of_topic};
use crate::COMMANDS_SUBSCRIBED;

/// Commands read from the broker and not yet run. The broker sends no
/// more QoS 1 messages than its in-flight window before they are
/// acknowledged, so only QoS 0 floods can fill it; those are dropped.
const QUEUE: usize = 64;

/// Builds the connection's options.
///
/// # Errors
/// A missing password variable or unreadable TLS files.
pub fn options(upstream: &ConnectionSettings) -> Result<rumqttc::MqttOptions, SetupError> {
    let mut settings = upstream.clone();
    settings.broker.client_id = format!("{}-commands", settings.broker.client_id);
    settings.persistent_session = true;
    settings.max_packet_bytes = 64 * 1024;
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
    max_backoff: Duration,
    stop: CancellationToken,
) {
    exec.settle_interrupted().await;
    let subscribed = exec.telemetry.gauge(COMMANDS_SUBSCRIBED, &[]);
    subscribed.set(0.0);
    let mut connection = None;
    let mut published = None;
    if let Some(opts) = cloud {
        let (client, eventloop) = AsyncClient::new(opts, 16);
        let (tx, rx) = mpsc::channel(QUEUE);
        let poller = tokio::spawn(poll(
            eventloop,
            client.clone(),
            command_filter(&prefix),
            tx,
            subscribed,
            Backoff::new(Duration::from_millis(200), max_backoff),
            stop.clone(),
        ));
        connection = Some((client, poller));
        published = Some(rx);
    }
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            p = next(&mut published) => {
                // The connection's task ended: the gateway is stopping.
                let Some(publish) = p else { break };
                let arrived = Arrived {
                    device: device_of_topic(&prefix, &publish.topic),
                    payload: publish.payload.to_vec(),
                    at: Instant::now(),
                };
                exec.handle(arrived).await;
                if let Some((client, _)) = &connection {
                    if publish.qos != QoS::AtMostOnce {
                        // After a reconnect the packet id may be stale; the
                        // broker then delivers it again and the journal answers.
                        let _ = client.try_ack(&publish);
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

/// The next message of a receiver; never, without one.
async fn next<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn poll(
    mut eventloop: EventLoop,
    client: AsyncClient,
    filter: String,
    tx: mpsc::Sender<Publish>,
    subscribed: gateway_core::telemetry::Gauge,
    mut backoff: Backoff,
    stop: CancellationToken,
) {
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
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if p.qos == QoS::AtMostOnce {
                    if tx.try_send(p).is_err() {
                        if let Some(suppressed) = log.allow("full") {
                            warn!(
                                suppressed,
                                "Dropping a QoS 0 command: too many are waiting."
                            );
                        }
                    }
                } else if tx.send(p).await.is_err() {
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
