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
//! Messages are sorted into two lanes, each a `watch` that keeps only the
//! last one (a newer push supersedes an older one, whose serial would be
//! refused anyway): [`Lanes::trusted`], validly signed with the content
//! they name, and only ever replaced by one with a higher serial (the same
//! message again on one connection is nothing new; at the next connection
//! the broker's retained copy is offered again, so a push that could not
//! be stored is retried); [`Lanes::other`], everything else (unsigned, forged, damaged, or
//! signed but older), which the controller only reports on, paced. So a
//! flood of forged or replayed messages cannot push a real push out of
//! the way before the controller has taken it.

use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use gateway_core::backoff::Backoff;
use gateway_core::telemetry::LogThrottle;
use mqtt_connect::SetupError;
use remote_config::DesiredMessage;
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

/// Where payloads go.
pub struct Lanes {
    /// Validly signed (by `keys`), with the content they name: serial and
    /// payload.
    trusted: watch::Sender<Option<(u64, Vec<u8>)>>,
    other: watch::Sender<Option<Vec<u8>>>,
    /// `[remote_config] public_keys` (none: the digest alone is checked).
    keys: Vec<VerifyingKey>,
    /// This gateway's id: a push signed for another is not trusted here.
    gateway_id: String,
    /// The trusted lane's payload has been offered on this connection.
    /// The broker's retained copy at the next connection is offered again:
    /// a push the controller could not store (`state_dir`) is retried
    /// then, and one it processed is recognised by the journal.
    offered: bool,
}

impl Lanes {
    pub fn new(
        trusted: watch::Sender<Option<(u64, Vec<u8>)>>,
        other: watch::Sender<Option<Vec<u8>>>,
        keys: Vec<VerifyingKey>,
        gateway_id: String,
    ) -> Self {
        Self {
            trusted,
            other,
            keys,
            gateway_id,
            offered: false,
        }
    }

    /// A new connection: the broker hands its retained message over again.
    fn connected(&mut self) {
        self.offered = false;
    }

    fn sort(&mut self, payload: Vec<u8>) {
        // An empty retained message is a retained message being cleared.
        if payload.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let serial = DesiredMessage::parse(&payload)
            .ok()
            .filter(|m| m.verify(&self.keys, &self.gateway_id).is_ok())
            .map(|m| m.serial);
        let (newest, same) = match self.trusted.borrow().as_ref() {
            Some((s, p)) => (Some(*s), *p == payload),
            None => (None, false),
        };
        match serial {
            // The same message again on this connection: nothing new.
            Some(_) if same && self.offered => {}
            Some(serial) if same || newest.is_none_or(|n| serial > n) => {
                self.trusted.send_replace(Some((serial, payload)));
                self.offered = true;
            }
            _ => {
                self.other.send_replace(Some(payload));
            }
        }
    }
}

/// Subscribes to `topic` and sorts each payload into `lanes` until `stop`.
pub async fn run(
    nodes: Vec<rumqttc::MqttOptions>,
    topic: String,
    mut lanes: Lanes,
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
                lanes.connected();
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
                lanes.sort(p.payload.to_vec());
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;

    #[test]
    fn a_flood_of_forged_or_older_pushes_cannot_displace_a_newer_signed_one() {
        let fleet = SigningKey::from_bytes(&[1; 32]);
        let other = SigningKey::from_bytes(&[2; 32]);
        let (trusted, trusted_rx) = watch::channel(None);
        let (other_lane, other_rx) = watch::channel(None);
        let mut lanes = Lanes::new(
            trusted,
            other_lane,
            vec![fleet.verifying_key()],
            "gw-1".into(),
        );
        let push = |k: &SigningKey, serial| {
            DesiredMessage::signed(k, serial, "v", "", None)
                .to_json()
                .into_bytes()
        };
        lanes.sort(push(&fleet, 5));
        lanes.sort(push(&other, 1 << 63));
        lanes.sort(push(&fleet, 3));
        // Signed by the fleet for another gateway, copied here.
        let elsewhere = DesiredMessage::signed(&fleet, 1 << 62, "v", "", Some("gw-2"))
            .to_json()
            .into_bytes();
        lanes.sort(elsewhere.clone());
        assert_eq!(other_rx.borrow().as_deref(), Some(&elsewhere[..]));
        lanes.sort(b"not json".to_vec());
        lanes.sort(Vec::new());
        assert_eq!(trusted_rx.borrow().as_ref().map(|(s, _)| *s), Some(5));
        assert_eq!(other_rx.borrow().as_deref(), Some(&b"not json"[..]));
        // The same message again changes nothing; another with serial 5
        // cannot be newer.
        let mut trusted_rx = trusted_rx;
        trusted_rx.borrow_and_update();
        lanes.sort(push(&fleet, 5));
        assert!(!trusted_rx.has_changed().unwrap());
        let other5 = DesiredMessage::signed(&fleet, 5, "v5b", "", None)
            .to_json()
            .into_bytes();
        lanes.sort(other5.clone());
        assert_eq!(other_rx.borrow().as_deref(), Some(&other5[..]));
        lanes.sort(push(&fleet, 6));
        assert_eq!(trusted_rx.borrow().as_ref().map(|(s, _)| *s), Some(6));
    }

    /// A push the controller could not store (`state_dir`) is still in the
    /// trusted lane: the broker's retained copy at the next connection must
    /// reach the controller again, which retries it.
    #[test]
    fn the_retained_push_is_offered_again_at_each_new_connection() {
        let fleet = SigningKey::from_bytes(&[1; 32]);
        let (trusted, mut trusted_rx) = watch::channel(None);
        let (other, _other_rx) = watch::channel(None);
        let mut lanes = Lanes::new(trusted, other, vec![fleet.verifying_key()], "gw-1".into());
        let push = DesiredMessage::signed(&fleet, 4, "v4", "", Some("gw-1"))
            .to_json()
            .into_bytes();
        lanes.connected();
        lanes.sort(push.clone());
        assert_eq!(
            trusted_rx.borrow_and_update().as_ref().map(|(s, _)| *s),
            Some(4)
        );
        lanes.sort(push.clone());
        assert!(!trusted_rx.has_changed().unwrap(), "once per connection");
        lanes.connected();
        lanes.sort(push.clone());
        assert!(trusted_rx.has_changed().unwrap(), "offered again");
        assert_eq!(
            trusted_rx
                .borrow_and_update()
                .as_ref()
                .map(|(_, p)| p.clone()),
            Some(push)
        );
    }
}
