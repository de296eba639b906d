//! The mqtt adapter's write side: a command for one of a `[[device]]`'s
//! `writable` metrics becomes `{"<metric>": <value>}` published at QoS 1
//! on the adapter's `command_topic` (Zigbee2MQTT's `/set`), and is done
//! when the building's broker acknowledges it (PUBACK).
//!
//! It has its own connection (client id `…-set`): the ingress session
//! acknowledges readings by hand and must not wait behind a write.
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
use rumqttc::{AsyncClient, Event, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, oneshot};
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
        Box::pin(publish(self.jobs.clone(), topic, payload, "mqtt adapter"))
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
    let (client, mut eventloop) = AsyncClient::new(options, QUEUE);
    // Polled in its own task (rumqttc's poll is not cancel-safe); it
    // reports which packet id each publish got and each PUBACK.
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let poll_stop = stop.clone();
    let poller = tokio::spawn(async move {
        loop {
            let polled = tokio::select! {
                _ = poll_stop.cancelled() => return,
                e = eventloop.poll() => e,
            };
            let event = match polled {
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Some(Ok(pkid)),
                Ok(Event::Incoming(Packet::PubAck(ack))) => Some(Err(ack.pkid)),
                Ok(_) => None,
                Err(_) => {
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
    loop {
        let job = tokio::select! {
            _ = stop.cancelled() => break,
            j = jobs.recv() => match j {
                Some(j) => j,
                None => break,
            },
        };
        // Events of an earlier, timed-out publish are not this one's.
        while events.try_recv().is_ok() {}
        if let Err(e) = client.try_publish(job.topic, QoS::AtLeastOnce, false, job.payload) {
            let _ = job.reply.send(WriteOutcome::Failed(Refusal::new(
                "connection",
                e.to_string(),
            )));
            continue;
        }
        let acked = tokio::time::timeout(ACK_TIMEOUT, async {
            let mut ours = None;
            while let Some(e) = events.recv().await {
                match e {
                    Ok(pkid) if ours.is_none() => ours = Some(pkid),
                    Err(pkid) if Some(pkid) == ours => return true,
                    _ => {}
                }
            }
            false
        })
        .await;
        let outcome = match acked {
            Ok(true) => WriteOutcome::Done { value: None },
            Ok(false) => WriteOutcome::Failed(Refusal::new("stopped", "the connection task ended")),
            Err(_) => WriteOutcome::Failed(Refusal::new(
                "timeout",
                "the building's broker did not acknowledge the publish",
            )),
        };
        let _ = job.reply.send(outcome);
    }
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(2), poller).await;
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
