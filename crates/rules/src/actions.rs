//! Local actions of alert rules: an MQTT publish on a local broker (an
//! actuator topic) or a CoAP PUT to an actuator, run on the gateway without
//! waiting for the cloud. Each runs at most once per its `cooldown` per
//! rule, device and state; the outcome is logged and counted.
//!
//! The runner is its own task so a slow actuator never stalls the
//! pipeline; it ends when the pipeline (the only sender) is gone.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::{Alert, AlertState};
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use gateway_core::backoff::Backoff;
use gateway_core::config::ActionConfig;
use gateway_core::telemetry::Counter;
use gateway_core::telemetry::LogThrottle;
use gateway_core::Telemetry;
use mqtt_connect::{ConnectionSettings, SetupError};
use rumqttc::{AsyncClient, Event, QoS};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

/// Actions waiting for the runner; beyond this they are dropped and counted.
pub const ACTION_QUEUE: usize = 256;
/// CoAP: first wait for the ACK, doubled on each of the retries (RFC 7252
/// ACK_TIMEOUT 2 s, MAX_RETRANSMIT 4; fewer here so a dead actuator is
/// reported within about 15 s).
const COAP_ACK_TIMEOUT: Duration = Duration::from_secs(1);
const COAP_TRIES: u32 = 4;

/// One action to run for one alert.
#[derive(Debug)]
pub struct ActionJob {
    pub action: ActionConfig,
    pub alert: Alert,
}

#[derive(Debug, thiserror::Error)]
enum ActionError {
    #[error("MQTT publish: {0}")]
    Mqtt(#[from] rumqttc::ClientError),
    #[error("MQTT broker: {0}")]
    Setup(#[from] SetupError),
    #[error("CoAP: {0}")]
    Io(#[from] std::io::Error),
    #[error("CoAP: bad URI {0}")]
    Uri(String),
    #[error("CoAP: no answer after {0} tries")]
    NoAnswer(u32),
    #[error("CoAP: actuator answered {0}")]
    Refused(String),
}

struct Runner {
    gateway_id: String,
    clients: HashMap<String, (AsyncClient, JoinHandle<()>)>,
    last_run: HashMap<(String, String, AlertState), Instant>,
    ok: Counter,
    failed: Counter,
    mid: u16,
}

/// Runs actions until `jobs` closes.
pub async fn run_actions(
    gateway_id: String,
    mut jobs: mpsc::Receiver<ActionJob>,
    telemetry: Telemetry,
) {
    let mut r = Runner {
        gateway_id,
        clients: HashMap::new(),
        last_run: HashMap::new(),
        ok: telemetry.counter("edge_gateway_actions_total", &[("outcome", "ok")]),
        failed: telemetry.counter("edge_gateway_actions_total", &[("outcome", "failed")]),
        mid: (std::process::id() & 0xffff) as u16,
    };
    while let Some(job) = jobs.recv().await {
        r.run(job).await;
    }
    for (_, (client, task)) in r.clients.drain() {
        let _ = client.disconnect().await;
        task.abort();
    }
}

impl Runner {
    async fn run(&mut self, job: ActionJob) {
        let ActionJob { action, alert } = job;
        let payload = match alert.state {
            AlertState::Raised => action.payload.clone(),
            AlertState::Cleared => match &action.clear_payload {
                Some(p) => p.clone(),
                None => return,
            },
            // The cooldown held the raise back: nothing to act on.
            AlertState::Suppressed => return,
        };
        let key = (alert.rule.clone(), alert.device.to_string(), alert.state);
        let now = Instant::now();
        if let Some(at) = self.last_run.get(&key) {
            if now.duration_since(*at) < action.cooldown {
                info!(rule = %alert.rule, device = %alert.device, state = alert.state.as_str(), "Action skipped: within its cooldown.");
                return;
            }
        }
        self.last_run.insert(key, now);
        let (target, outcome) = match (&action.publish, &action.coap_put) {
            (Some(topic), _) => (topic.clone(), self.publish(&action, topic, payload).await),
            (None, Some(uri)) => (uri.clone(), self.coap_put(uri, payload).await),
            (None, None) => return,
        };
        match outcome {
            Ok(detail) => {
                self.ok.inc();
                info!(rule = %alert.rule, device = %alert.device, state = alert.state.as_str(), target = %target, outcome = %detail, "Action done.");
            }
            Err(e) => {
                self.failed.inc();
                warn!(rule = %alert.rule, device = %alert.device, state = alert.state.as_str(), target = %target, error = %e, "Action failed.");
            }
        }
    }

    async fn publish(
        &mut self,
        action: &ActionConfig,
        topic: &str,
        payload: String,
    ) -> Result<String, ActionError> {
        let broker = action.broker.url.to_string();
        let client = match self.clients.get(&broker) {
            Some((c, _)) => c.clone(),
            None => {
                let settings = ConnectionSettings::new(
                    &action.broker,
                    format!("edge-gateway-{}-actions", self.gateway_id),
                );
                let (client, mut events) = AsyncClient::new(settings.mqtt_options(None)?, 64);
                let label = broker.clone();
                let mut backoff =
                    Backoff::new(Duration::from_millis(200), action.broker.max_backoff);
                // Poll all the time (rumqttc sends nothing otherwise), backing
                // off after an error since poll() itself never does.
                let task = tokio::spawn(async move {
                    let log = LogThrottle::default();
                    loop {
                        match events.poll().await {
                            Ok(Event::Incoming(rumqttc::Packet::ConnAck(_))) => backoff.reset(),
                            Ok(_) => {}
                            Err(e) => {
                                if let Some(suppressed) = log.allow("connect") {
                                    warn!(broker = %label, error = %e, suppressed, "Action broker connection failed; retrying.");
                                }
                                tokio::time::sleep(backoff.next_delay()).await;
                            }
                        }
                    }
                });
                self.clients.insert(broker.clone(), (client.clone(), task));
                client
            }
        };
        client
            .publish(topic, QoS::AtLeastOnce, false, payload.into_bytes())
            .await?;
        Ok(format!("published to {broker}"))
    }

    async fn coap_put(&mut self, uri: &str, payload: String) -> Result<String, ActionError> {
        let url = url::Url::parse(uri).map_err(|_| ActionError::Uri(uri.to_string()))?;
        let host = url
            .host_str()
            .ok_or_else(|| ActionError::Uri(uri.to_string()))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = url.port().unwrap_or(5683);
        let target: SocketAddr = tokio::net::lookup_host((host, port))
            .await?
            .next()
            .ok_or_else(|| ActionError::Uri(uri.to_string()))?;
        let local: SocketAddr = if target.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let socket = UdpSocket::bind(local).await?;
        socket.connect(target).await?;

        self.mid = self.mid.wrapping_add(1);
        let mid = self.mid;
        let token = mid.to_be_bytes().to_vec();
        let mut p = Packet::new();
        p.header.set_version(1);
        p.header.set_type(MessageType::Confirmable);
        p.header.code = MessageClass::Request(RequestType::Put);
        p.header.message_id = mid;
        p.set_token(token.clone());
        for segment in url
            .path_segments()
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
        {
            p.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
        }
        p.payload = payload.into_bytes();
        let bytes = p
            .to_bytes()
            .map_err(|e| ActionError::Uri(format!("{uri}: {e}")))?;

        let mut wait = COAP_ACK_TIMEOUT;
        let mut buf = [0u8; 1500];
        for _ in 0..COAP_TRIES {
            socket.send(&bytes).await?;
            let deadline = gateway_core::deadline::from_now(wait);
            loop {
                let n = match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                    Ok(r) => r?,
                    Err(_) => break,
                };
                let Ok(reply) = Packet::from_bytes(&buf[..n]) else {
                    continue;
                };
                if reply.header.message_id != mid && reply.get_token() != token.as_slice() {
                    continue;
                }
                let class = u8::from(reply.header.code) >> 5;
                return match reply.header.code {
                    MessageClass::Response(code) if class == 2 => Ok(format!("{code:?}")),
                    MessageClass::Empty
                        if reply.header.get_type() == MessageType::Acknowledgement =>
                    {
                        // A separate response follows; the actuator has the request.
                        Ok("accepted".into())
                    }
                    other => Err(ActionError::Refused(format!("{other:?}"))),
                };
            }
            wait *= 2;
        }
        Err(ActionError::NoAnswer(COAP_TRIES))
    }
}
