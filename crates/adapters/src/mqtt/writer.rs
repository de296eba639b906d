//! The mqtt adapter's write side: a command for one of a `[[device]]`'s
//! `writable` metrics becomes `{"<metric>": <value>}` published at QoS 1
//! on the adapter's `command_topic` (Zigbee2MQTT's `/set`), and is done
//! when the building's broker acknowledges it (PUBACK).
//!
//! It has its own connection (client id `…-set`): the ingress session
//! acknowledges readings by hand and must not wait behind a write.
//!
//! A publish is handed to the client only while it is connected, and a
//! publish that was not acknowledged in time ends that connection with
//! everything queued in it: otherwise the client would send it when the
//! broker came back, long after the command was reported `failed` and
//! past its `max_age` (a lamp switched a minute late, twice if the
//! operator retried).
//!
//! The same writer publishes for the actuators a rule's `publish` action
//! names ([`TopicTarget`], started by `crate::actuators`): their payload
//! as it is, on their own topic.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gateway_core::command::{
    Command, CommandTarget, CommandValue, RawPoint, Refusal, WritableKind, WritablePoint,
    WriteFuture, WriteOutcome,
};
use gateway_core::DeviceId;
use mqtt_connect::ConnectionSettings;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Publishes waiting for the connection.
pub const QUEUE: usize = 8;
/// Longest wait for the broker's PUBACK before the command is `failed`.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// One publish for the writer task.
#[derive(Debug)]
pub struct SetJob {
    pub topic: String,
    pub payload: Vec<u8>,
    /// The command's `max_age`: not published after it.
    pub deadline: Option<Instant>,
    pub reply: oneshot::Sender<WriteOutcome>,
}

/// The writable metrics of `[[device]]`s, published on `topic`.
pub struct MqttTarget {
    devices: HashMap<DeviceId, Vec<String>>,
    topic: String,
    jobs: mpsc::Sender<SetJob>,
}

impl MqttTarget {
    /// The target and its job queue; `None` without a topic or with no
    /// writable metric.
    pub fn new(
        topic: Option<&str>,
        writable: &[(String, Vec<String>)],
    ) -> Option<(Arc<Self>, mpsc::Receiver<SetJob>)> {
        let topic = topic?.to_string();
        let devices: HashMap<_, _> = writable
            .iter()
            .filter(|(_, m)| !m.is_empty())
            .filter_map(|(id, m)| Some((DeviceId::new(id.as_str()).ok()?, m.clone())))
            .collect();
        if devices.is_empty() {
            return None;
        }
        let (jobs, rx) = mpsc::channel(QUEUE);
        Some((
            Arc::new(Self {
                devices,
                topic,
                jobs,
            }),
            rx,
        ))
    }

    fn payload(&self, command: &Command) -> Result<Vec<u8>, Refusal> {
        let metrics = self
            .devices
            .get(&command.device)
            .ok_or_else(|| Refusal::new("not_writable", "no writable metric on this device"))?;
        if !metrics.contains(&command.metric) {
            return Err(Refusal::new(
                "not_writable",
                format!("{} is not in this device's writable list", command.metric),
            ));
        }
        let value = match &command.value {
            CommandValue::Number(_) | CommandValue::Bool(_) | CommandValue::Text(_) => {
                command.value.to_json()
            }
            CommandValue::Null | CommandValue::Downlink { .. } | CommandValue::Encode { .. } => {
                return Err(Refusal::new(
                    "type",
                    "expected a number, true/false or a text",
                ))
            }
        };
        let mut obj = serde_json::Map::new();
        obj.insert(command.metric.clone(), value);
        serde_json::to_vec(&obj).map_err(|e| Refusal::new("type", e.to_string()))
    }
}

impl CommandTarget for MqttTarget {
    fn serves(&self, device: &DeviceId) -> bool {
        self.devices.contains_key(device)
    }

    /// `writable = [...]` names metrics only: what each takes (`"ON"`, a
    /// brightness of 0..254) is the firmware's, so they are `Any`.
    fn writable(&self) -> Vec<WritablePoint> {
        let mut points: Vec<WritablePoint> = self
            .devices
            .iter()
            .flat_map(|(id, metrics)| {
                metrics.iter().map(move |m| WritablePoint {
                    device: id.clone(),
                    metric: m.clone(),
                    kind: WritableKind::Any,
                    unit: None,
                })
            })
            .collect();
        points.sort_by(|a, b| (&a.device, &a.metric).cmp(&(&b.device, &b.metric)));
        points
    }

    fn check(&self, command: &Command) -> Result<(), Refusal> {
        self.payload(command).map(|_| ())
    }

    fn write(&self, command: Command) -> WriteFuture {
        let payload = self.payload(&command);
        let topic = self.topic.replace("{device}", command.device.as_str());
        Box::pin(publish(
            self.jobs.clone(),
            topic,
            payload,
            command.deadline,
            "mqtt adapter",
        ))
    }
}

/// An actuator a rule's `publish` action names: one device whose one
/// point (`publish`) takes the payload as it is, published at QoS 1 on
/// `topic` by its broker's writer, and done on the PUBACK.
pub struct TopicTarget {
    point: RawPoint,
    topic: String,
    jobs: mpsc::Sender<SetJob>,
}

impl TopicTarget {
    /// A target whose publishes go to the writer of `jobs` (see [`run`]).
    pub fn new(point: RawPoint, topic: &str, jobs: mpsc::Sender<SetJob>) -> Arc<Self> {
        Arc::new(Self {
            point,
            topic: topic.to_string(),
            jobs,
        })
    }
}

impl CommandTarget for TopicTarget {
    fn serves(&self, device: &DeviceId) -> bool {
        *device == self.point.device
    }

    fn check(&self, command: &Command) -> Result<(), Refusal> {
        self.point.payload(command).map(|_| ())
    }

    fn write(&self, command: Command) -> WriteFuture {
        let payload = self.point.payload(&command);
        Box::pin(publish(
            self.jobs.clone(),
            self.topic.clone(),
            payload,
            command.deadline,
            "mqtt writer",
        ))
    }

    fn writable(&self) -> Vec<WritablePoint> {
        self.point.writable()
    }
}

/// Hands one publish to the writer and waits for its outcome; `who`
/// names the writer in a failure.
async fn publish(
    jobs: mpsc::Sender<SetJob>,
    topic: String,
    payload: Result<Vec<u8>, Refusal>,
    deadline: Option<Instant>,
    who: &str,
) -> WriteOutcome {
    let payload = match payload {
        Ok(p) => p,
        Err(r) => return WriteOutcome::Refused(r),
    };
    let (reply, answer) = oneshot::channel();
    if jobs
        .send(SetJob {
            topic,
            payload,
            deadline,
            reply,
        })
        .await
        .is_err()
    {
        return WriteOutcome::Failed(Refusal::new("stopped", format!("the {who} has stopped")));
    }
    answer.await.unwrap_or_else(|_| {
        WriteOutcome::Failed(Refusal::new(
            "stopped",
            format!("the {who} stopped during the write"),
        ))
    })
}

/// Publishes jobs one at a time, each answered on its PUBACK, until `stop`.
pub async fn run(
    connection: ConnectionSettings,
    mut jobs: mpsc::Receiver<SetJob>,
    stop: CancellationToken,
) {
    let mut settings = connection;
    settings.broker.client_id = format!("{}-set", settings.broker.client_id);
    settings.persistent_session = false;
    let options = match settings.mqtt_options(None) {
        Ok(o) => o,
        Err(e) => {
            warn!(error = %e, "Cannot set up the command connection to the building's broker.");
            return;
        }
    };
    loop {
        let mut session = Session::start(options.clone(), &stop);
        loop {
            let job = tokio::select! {
                _ = stop.cancelled() => {
                    session.close().await;
                    return;
                }
                j = jobs.recv() => match j {
                    Some(j) => j,
                    None => {
                        session.close().await;
                        return;
                    }
                },
            };
            let (outcome, keep) = session.publish(job.topic, job.payload, job.deadline).await;
            let _ = job.reply.send(outcome);
            if !keep {
                // What it still holds (the unacknowledged publish) must
                // never be sent: a new connection starts empty.
                session.abandon();
                break;
            }
        }
    }
}

/// Whether a session may carry the next publish.
type Keep = bool;

/// One connection to the building's broker and its polling task.
struct Session {
    client: AsyncClient,
    /// Which packet id each publish got (`Ok`) and each PUBACK (`Err`).
    events: mpsc::UnboundedReceiver<Result<u16, u16>>,
    connected: watch::Receiver<bool>,
    poller: tokio::task::JoinHandle<()>,
}

impl Session {
    fn start(options: MqttOptions, stop: &CancellationToken) -> Self {
        let (client, mut eventloop) = AsyncClient::new(options, QUEUE);
        // Polled in its own task (rumqttc's poll is not cancel-safe).
        let (events_tx, events) = mpsc::unbounded_channel();
        let (connected_tx, connected) = watch::channel(false);
        let poll_stop = stop.clone();
        let poller = tokio::spawn(async move {
            loop {
                let polled = tokio::select! {
                    _ = poll_stop.cancelled() => return,
                    e = eventloop.poll() => e,
                };
                let event = match polled {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connected_tx.send_replace(true);
                        None
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Some(Ok(pkid)),
                    Ok(Event::Incoming(Packet::PubAck(ack))) => Some(Err(ack.pkid)),
                    Ok(_) => None,
                    Err(_) => {
                        connected_tx.send_replace(false);
                        tokio::select! {
                            _ = poll_stop.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_millis(500)) => None,
                        }
                    }
                };
                if let Some(e) = event {
                    if events_tx.send(e).is_err() {
                        return;
                    }
                }
            }
        });
        Self {
            client,
            events,
            connected,
            poller,
        }
    }

    /// Publishes once connected (waiting at most [`ACK_TIMEOUT`], never
    /// past `deadline`) and waits for the PUBACK.
    async fn publish(
        &mut self,
        topic: String,
        payload: Vec<u8>,
        deadline: Option<Instant>,
    ) -> (WriteOutcome, Keep) {
        let give_up = Instant::now() + ACK_TIMEOUT;
        let wait_until = deadline.map_or(give_up, |d| d.min(give_up));
        // A bool at once: the watch's guard must not be held across awaits.
        let up = matches!(
            tokio::time::timeout_at(wait_until, self.connected.wait_for(|up| *up)).await,
            Ok(Ok(_))
        );
        if !up {
            let outcome = if deadline.is_some_and(|d| Instant::now() >= d) {
                WriteOutcome::Refused(Refusal::expired("the building's broker"))
            } else {
                WriteOutcome::Refused(Refusal::new(
                    "offline",
                    "the building's broker is not connected; nothing was published",
                ))
            };
            return (outcome, true);
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            return (
                WriteOutcome::Refused(Refusal::expired("the building's broker")),
                true,
            );
        }
        // Events of an earlier, abandoned publish are not this one's.
        while self.events.try_recv().is_ok() {}
        if let Err(e) = self
            .client
            .try_publish(topic, QoS::AtLeastOnce, false, payload)
        {
            return (
                WriteOutcome::Failed(Refusal::new("connection", e.to_string())),
                false,
            );
        }
        let acked = tokio::time::timeout(ACK_TIMEOUT, async {
            let mut ours = None;
            while let Some(e) = self.events.recv().await {
                match e {
                    Ok(pkid) if ours.is_none() => ours = Some(pkid),
                    Err(pkid) if Some(pkid) == ours => return true,
                    _ => {}
                }
            }
            false
        })
        .await;
        match acked {
            Ok(true) => (WriteOutcome::Done { value: None }, true),
            Ok(false) => (
                WriteOutcome::Failed(Refusal::new("stopped", "the connection task ended")),
                false,
            ),
            Err(_) => (
                WriteOutcome::Failed(Refusal::new(
                    "timeout",
                    "the building's broker did not acknowledge the publish",
                )),
                false,
            ),
        }
    }

    /// Ends the connection at once, dropping whatever it still queues.
    fn abandon(self) {
        self.poller.abort();
    }

    /// Ends the connection politely (shutdown).
    async fn close(self) {
        let _ = self.client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.poller).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn writable_metrics_are_offered_without_a_type() {
        let writable = vec![(
            "lamp-1".to_string(),
            vec!["state".to_string(), "brightness".to_string()],
        )];
        let (target, _jobs) = MqttTarget::new(Some("z2m/{device}/set"), &writable).unwrap();
        let points = target.writable();
        let names: Vec<&str> = points.iter().map(|p| p.metric.as_str()).collect();
        assert_eq!(names, ["brightness", "state"]);
        assert!(points.iter().all(|p| p.kind == WritableKind::Any
            && p.device.as_str() == "lamp-1"
            && p.unit.is_none()));
    }
}
