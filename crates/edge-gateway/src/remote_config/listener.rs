//! The subscription to `{prefix}/gateway/{gateway_id}/config` on the
//! upstream (cloud) broker, and only there: the same trust boundary as
//! commands, never the building's broker. Its own connection (client id
//! `…-config`, clean session): the desired state is a retained message,
//! which the broker hands over at every (re)connect, so a push made while
//! the gateway was offline arrives once it is back, and the same push
//! again is recognised by the journal and changes nothing.
//!
//! On a cluster (`[upstream] urls`) a lost or refused connection moves on
//! to the next node, as the forwarder does.
//!
//! Only the latest payload matters (a newer push supersedes an older one,
//! whose serial would be refused anyway), so it is handed on through a
//! `watch` that keeps the last one.

use std::time::Duration;

use gateway_core::backoff::Backoff;
use gateway_core::telemetry::LogThrottle;
use mqtt_connect::SetupError;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use sinks::mqtt_upstream::UpstreamSettings;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::settings::GatewayConfig;

/// Packets up to this size are read, so a message over the journal's
/// limit is refused by it (`format`, reported) rather than breaking the
/// connection at every retained redelivery.
const MAX_PACKET_BYTES: usize = 16 * 1024 * 1024;

/// The connection's options for each node of the upstream (one, or the
/// cluster's `urls`): its broker and credentials.
///
/// # Errors
/// A missing password variable or unreadable TLS files.
pub fn options(config: &GatewayConfig) -> Result<Vec<rumqttc::MqttOptions>, SetupError> {
    let settings = UpstreamSettings::from_config(
        &config.upstream,
        &config.outbox,
        &config.gateway.id,
        &config.gateway.state_dir,
        config.topic_prefix(),
    );
    let mut connection = settings.connection;
    connection.broker.client_id = format!("{}-config", connection.broker.client_id);
    connection.persistent_session = false;
    connection.max_packet_bytes = MAX_PACKET_BYTES;
    settings
        .nodes
        .iter()
        .map(|node| {
            let mut c = connection.clone();
            c.broker.url = node.clone();
            c.mqtt_options(None)
        })
        .collect()
}

/// Subscribes to `topic` and hands each payload to `latest` until `stop`.
pub async fn run(
    nodes: Vec<rumqttc::MqttOptions>,
    topic: String,
    latest: watch::Sender<Option<Vec<u8>>>,
    max_backoff: Duration,
    stop: CancellationToken,
) {
    let Some(first) = nodes.first() else { return };
    let mut node = 0;
    let (mut client, mut eventloop) = AsyncClient::new(first.clone(), 8);
    let mut backoff = Backoff::new(Duration::from_millis(200), max_backoff);
    let log = LogThrottle::default();
    loop {
        let polled = tokio::select! {
            () = stop.cancelled() => break,
            e = eventloop.poll() => e,
        };
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                if let Err(e) = client.try_subscribe(topic.as_str(), QoS::AtLeastOnce) {
                    warn!(error = %e, "Cannot subscribe to the configuration topic.");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let ok = ack
                    .return_codes
                    .iter()
                    .all(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_)));
                if ok {
                    info!(%topic, "Subscribed to the configuration topic on the upstream broker.");
                } else {
                    warn!(%topic, "The upstream broker refused the configuration subscription (its ACL?): no push will arrive.");
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == topic => {
                latest.send_replace(Some(p.payload.to_vec()));
            }
            Ok(_) => {}
            Err(e) => {
                if let Some(suppressed) = log.allow("lost") {
                    warn!(error = %e, suppressed, "Configuration connection to the upstream broker lost; retrying.");
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                }
                if nodes.len() > 1 {
                    node = (node + 1) % nodes.len();
                    (client, eventloop) = AsyncClient::new(nodes[node].clone(), 8);
                }
            }
        }
    }
    let _ = client.try_disconnect();
}
