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

use std::hash::{BuildHasher as _, RandomState};
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use gateway_core::backoff::Backoff;
use gateway_core::telemetry::{Counter, LogThrottle};
use gateway_core::Telemetry;
use mqtt_connect::SetupError;
use remote_config::DesiredMessage;
use rumqttc::{AsyncClient, ConnectionError, Event, Packet, QoS, StateError};
use sinks::mqtt_upstream::UpstreamSettings;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::settings::GatewayConfig;

/// Packets up to this size are read, so a message over the journal's
/// limit is refused by it (`format`, reported) rather than breaking the
/// connection at every retained redelivery.
const MAX_PACKET_BYTES: usize = 16 * 1024 * 1024;

/// A connection that stayed up this long worked: the next loss starts the
/// backoff over. One lost sooner (a broker closing it at once, a retained
/// message over [`MAX_PACKET_BYTES`] handed over at every connection)
/// makes the wait grow to `max_backoff`, not loop at the first step.
const STABLE: Duration = Duration::from_secs(10);

/// Messages on the configuration topic that are not a push validly signed
/// for this gateway (unsigned, forged, damaged), identical repeats
/// included.
pub const UNTRUSTED_MESSAGES: &str = "edge_gateway_remote_config_untrusted_messages_total";

/// Messages on the configuration topic over [`MAX_PACKET_BYTES`]: the
/// connection is dropped on each, unread.
pub const OVERSIZED_MESSAGES: &str = "edge_gateway_remote_config_oversized_messages_total";

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
    /// The last message refused as untrusted (its length and a hash keyed
    /// at random, so no sender can aim at a collision): the same bytes
    /// again, a flood of one forgery, are not verified again, which would
    /// hold a valid push behind them.
    refused: Option<(usize, u64)>,
    hasher: RandomState,
    untrusted: Counter,
    oversized: Counter,
    /// Signatures checked (the tests' view of the work done).
    verified: u64,
}

impl Lanes {
    pub fn new(
        trusted: watch::Sender<Option<(u64, Vec<u8>)>>,
        other: watch::Sender<Option<Vec<u8>>>,
        keys: Vec<VerifyingKey>,
        gateway_id: String,
        telemetry: &Telemetry,
    ) -> Self {
        Self {
            trusted,
            other,
            keys,
            gateway_id,
            offered: false,
            refused: None,
            hasher: RandomState::new(),
            untrusted: telemetry.counter(UNTRUSTED_MESSAGES, &[]),
            oversized: telemetry.counter(OVERSIZED_MESSAGES, &[]),
            verified: 0,
        }
    }

    fn oversized_counter(&self) -> Counter {
        self.oversized.clone()
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
        let print = (payload.len(), self.hasher.hash_one(&payload));
        if self.refused == Some(print) {
            self.untrusted.inc();
            self.other.send_replace(Some(payload));
            return;
        }
        self.verified += 1;
        let serial = DesiredMessage::parse(&payload)
            .ok()
            .filter(|m| m.verify(&self.keys, &self.gateway_id).is_ok())
            .map(|m| m.serial);
        if serial.is_none() {
            self.refused = Some(print);
            self.untrusted.inc();
        }
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

/// The wait before each reconnection.
struct Reconnects {
    backoff: Backoff,
    up_since: Option<Instant>,
}

impl Reconnects {
    fn new(max_backoff: Duration) -> Self {
        Self {
            backoff: Backoff::new(Duration::from_millis(200), max_backoff),
            up_since: None,
        }
    }

    /// A CONNACK: not yet proof the connection works.
    fn connected(&mut self) {
        self.up_since = Some(Instant::now());
    }

    /// The connection (or the attempt) is lost: how long to wait.
    fn lost(&mut self) -> Duration {
        if self
            .up_since
            .take()
            .is_some_and(|since| since.elapsed() >= STABLE)
        {
            self.backoff.reset();
        }
        self.backoff.next_delay()
    }
}

/// The size of a packet too large to read, when that is why the
/// connection was lost.
fn oversized(e: &ConnectionError) -> Option<usize> {
    match e {
        ConnectionError::MqttState(StateError::Deserialization(
            rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(size),
        )) => Some(*size),
        _ => None,
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
    let mut reconnects = Reconnects::new(max_backoff);
    let log = LogThrottle::default();
    // An oversized retained message comes back at every connection: said
    // at once, then seldom.
    let log_oversized = LogThrottle::new(Duration::from_secs(600));
    let oversized_count = lanes.oversized_counter();
    loop {
        let polled = tokio::select! {
            () = stop.cancelled() => break,
            e = eventloop.poll() => e,
        };
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                reconnects.connected();
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
                let wait = reconnects.lost();
                if let Some(size) = oversized(&e) {
                    oversized_count.inc();
                    if let Some(suppressed) = log_oversized.allow("oversized") {
                        error!(%topic, size, limit = MAX_PACKET_BYTES, suppressed, next_attempt_in = ?wait, "A message on the configuration topic is larger than the gateway reads: the connection is dropped each time the broker hands it over (a retained one, at every connection), and reconnections back off up to max_backoff. Clear the retained message (publish an empty retained message on the topic) or push a smaller configuration.");
                    }
                } else if let Some(suppressed) = log.allow("lost") {
                    warn!(error = %e, suppressed, "Configuration connection to the upstream broker lost; retrying.");
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(wait) => {}
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
            &Telemetry::default(),
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
        let mut lanes = Lanes::new(
            trusted,
            other,
            vec![fleet.verifying_key()],
            "gw-1".into(),
            &Telemetry::default(),
        );
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

    /// A flood of one forged message, repeated: verified once, every copy
    /// counted, and a valid push behind it sorted at once.
    #[test]
    fn identical_forged_messages_are_verified_once_and_still_counted() {
        let fleet = SigningKey::from_bytes(&[1; 32]);
        let other_key = SigningKey::from_bytes(&[2; 32]);
        let telemetry = Telemetry::default();
        let (trusted, trusted_rx) = watch::channel(None);
        let (other, other_rx) = watch::channel(None);
        let mut lanes = Lanes::new(
            trusted,
            other,
            vec![fleet.verifying_key()],
            "gw-1".into(),
            &telemetry,
        );
        let forged = DesiredMessage::signed(&other_key, 999_999, "forged", "", Some("gw-1"))
            .to_json()
            .into_bytes();
        for _ in 0..500 {
            lanes.sort(forged.clone());
        }
        assert_eq!(lanes.verified, 1);
        assert_eq!(telemetry.counter_value(UNTRUSTED_MESSAGES, &[]), Some(500));
        assert_eq!(other_rx.borrow().as_deref(), Some(&forged[..]));
        let push = DesiredMessage::signed(&fleet, 3, "v3", "", Some("gw-1"))
            .to_json()
            .into_bytes();
        lanes.sort(push);
        assert_eq!(trusted_rx.borrow().as_ref().map(|(s, _)| *s), Some(3));
        // Another forgery is another message: verified.
        let forged2 = DesiredMessage::signed(&other_key, 1_000_000, "forged", "", Some("gw-1"))
            .to_json()
            .into_bytes();
        lanes.sort(forged2);
        lanes.sort(forged);
        assert_eq!(lanes.verified, 4);
        assert_eq!(telemetry.counter_value(UNTRUSTED_MESSAGES, &[]), Some(502));
    }

    /// Connections the broker drops right after the CONNACK (a retained
    /// message too large to read, handed over at each) back off up to the
    /// cap instead of looping at the first step; one that lasted starts
    /// the backoff over.
    #[tokio::test(start_paused = true)]
    async fn connections_lost_at_once_back_off_to_the_cap_and_a_lasting_one_starts_over() {
        let max = Duration::from_secs(30);
        let mut r = Reconnects::new(max);
        let mut wait = Duration::ZERO;
        for _ in 0..12 {
            r.connected();
            wait = r.lost();
            tokio::time::advance(wait).await;
        }
        assert!(wait >= max / 2, "{wait:?}");
        r.connected();
        tokio::time::advance(STABLE).await;
        assert!(r.lost() <= Duration::from_millis(200));
    }

    #[test]
    fn a_packet_too_large_is_told_apart() {
        let e = ConnectionError::MqttState(StateError::Deserialization(
            rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(17 << 20),
        ));
        assert_eq!(oversized(&e), Some(17 << 20));
        assert_eq!(oversized(&ConnectionError::NetworkTimeout), None);
    }
}
