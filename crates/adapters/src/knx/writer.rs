//! The knx adapter's write side: commands from the cloud for groups
//! declared `writable = true`, encoded with the group's DPT and sent as a
//! GroupValueWrite to its address.
//!
//! A command names the group by the metric it is read as (`setpoint`).
//! The value is checked here against the DPT
//! (a number in its range, 0/1 or true/false for 1.x, a text for 16.x)
//! and the group's `min`/`max`. `done` means the interface confirmed the
//! telegram went on the bus (L_Data.con; on a routing multicast, that it
//! was sent, routing having no confirmation); a negative confirmation,
//! none within 3 s, a missing TUNNELLING_ACK or no connection is
//! `failed` (or refused `offline` when the tunnel is down before the
//! write).

use std::collections::HashMap;
use std::sync::Arc;

use gateway_core::command::{
    Command, CommandTarget, Refusal, WritableKind, WritablePoint, WriteFuture, WriteOutcome,
};
use gateway_core::DeviceId;
use tokio::sync::{mpsc, oneshot};

use super::address::GroupAddress;
use super::cemi::{GroupService, Payload};
use super::groups::KnxGroup;
use super::link::{Outgoing, SendFailure};

/// The writable groups of one adapter.
pub struct KnxTarget {
    devices: HashMap<DeviceId, Vec<KnxGroup>>,
    link: mpsc::Sender<Outgoing>,
}

impl KnxTarget {
    /// The target of `groups`' writable ones; `None` when there are none.
    pub fn new(groups: &[KnxGroup], link: mpsc::Sender<Outgoing>) -> Option<Arc<Self>> {
        let mut devices: HashMap<DeviceId, Vec<KnxGroup>> = HashMap::new();
        for g in groups.iter().filter(|g| g.writable) {
            devices.entry(g.device.clone()).or_default().push(g.clone());
        }
        if devices.is_empty() {
            return None;
        }
        Some(Arc::new(Self { devices, link }))
    }

    fn resolve(&self, command: &Command) -> Result<(GroupAddress, Payload), Refusal> {
        let groups = self.devices.get(&command.device).ok_or_else(|| {
            Refusal::new("not_writable", "no writable group address on this device")
        })?;
        let group = groups
            .iter()
            .find(|g| g.metric.as_str() == command.metric)
            .ok_or_else(|| {
                Refusal::new(
                    "not_writable",
                    format!(
                        "{} is not the metric of a writable group of this device",
                        command.metric
                    ),
                )
            })?;
        if let Some(v) = command.value.as_number() {
            if group.min.is_some_and(|min| v < min) || group.max.is_some_and(|max| v > max) {
                return Err(Refusal::new(
                    "out_of_range",
                    format!(
                        "{} takes {} to {}, got {v}",
                        group.metric,
                        group.min.map_or("any".to_string(), |m| m.to_string()),
                        group.max.map_or("any".to_string(), |m| m.to_string()),
                    ),
                ));
            }
        }
        Ok((group.address, group.dpt.encode(&command.value)?))
    }
}

impl CommandTarget for KnxTarget {
    fn serves(&self, device: &DeviceId) -> bool {
        self.devices.contains_key(device)
    }

    fn check(&self, command: &Command) -> Result<(), Refusal> {
        self.resolve(command).map(|_| ())
    }

    fn write(&self, command: Command) -> WriteFuture {
        let resolved = self.resolve(&command);
        let link = self.link.clone();
        Box::pin(async move {
            let (destination, payload) = match resolved {
                Ok(r) => r,
                Err(refusal) => return WriteOutcome::Refused(refusal),
            };
            let (done, confirmed) = oneshot::channel();
            let outgoing = Outgoing {
                destination,
                service: GroupService::Write,
                payload: Some(payload),
                done: Some(done),
                deadline: command.deadline,
            };
            if let Err(e) = link.try_send(outgoing) {
                let why = match e {
                    mpsc::error::TrySendError::Full(_) => {
                        "the bus is behind: too many telegrams waiting"
                    }
                    mpsc::error::TrySendError::Closed(_) => "the knx adapter is not running",
                };
                return WriteOutcome::Refused(Refusal::new("offline", why));
            }
            match confirmed.await {
                Ok(Ok(())) => WriteOutcome::Done { value: None },
                Ok(Err(SendFailure::Expired)) => {
                    WriteOutcome::Refused(Refusal::expired("the KNX bus"))
                }
                Ok(Err(SendFailure::NotConnected)) => WriteOutcome::Refused(Refusal::new(
                    "offline",
                    SendFailure::NotConnected.to_string(),
                )),
                Ok(Err(e)) => WriteOutcome::Failed(Refusal::new(e.reason(), e.to_string())),
                Err(_) => WriteOutcome::Failed(Refusal::new("offline", "the knx adapter stopped")),
            }
        })
    }

    fn writable(&self) -> Vec<WritablePoint> {
        let mut points: Vec<WritablePoint> = self
            .devices
            .values()
            .flatten()
            .filter(|g| !g.dpt.is_text())
            .map(|g| {
                let kind = if g.dpt.is_switch() {
                    WritableKind::Switch { off: 0.0, on: 1.0 }
                } else {
                    let (lo, hi) = g.dpt.bounds().unwrap_or((f64::MIN, f64::MAX));
                    let step = match (g.dpt.main, g.dpt.sub) {
                        (9, _) | (8, Some(10)) => 0.01,
                        (14, _) | (5, Some(1 | 3)) => 0.1,
                        _ => 1.0,
                    };
                    WritableKind::Number {
                        min: g.min.unwrap_or(lo),
                        max: g.max.unwrap_or(hi),
                        step,
                    }
                };
                WritablePoint {
                    device: g.device.clone(),
                    metric: g.metric.as_str().to_string(),
                    kind,
                    unit: g.unit.clone(),
                }
            })
            .collect();
        points.sort_by(|a, b| (a.device.as_str(), &a.metric).cmp(&(b.device.as_str(), &b.metric)));
        points
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use gateway_core::command::CommandValue;

    fn target() -> (Arc<KnxTarget>, mpsc::Receiver<Outgoing>) {
        let mut p = gateway_core::config::Problems::default();
        let root: toml::Table = toml::from_str(
            r#"
[[adapter]]
type = "knx"
name = "rooms"
url = "udp://127.0.0.1:3671"

[[knx.group]]
address = "1/2/3"
dpt = "9.001"
device = "room-1"
metric = "setpoint"
writable = true
min = 16.0
max = 28.0

[[knx.group]]
address = "1/2/4"
dpt = "9.001"
device = "room-1"
metric = "temperature"

[[knx.group]]
address = "1/2/5"
dpt = "1.001"
device = "room-1"
metric = "light"
writable = true
"#,
        )
        .unwrap();
        let section = crate::knx::groups::section(&root, &mut p);
        assert!(p.is_empty(), "{p}");
        let (tx, rx) = mpsc::channel(4);
        (KnxTarget::new(&section.groups, tx).unwrap(), rx)
    }

    fn command(metric: &str, value: CommandValue) -> Command {
        Command {
            id: "c".into(),
            device: DeviceId::new("room-1").unwrap(),
            metric: metric.into(),
            value,
            deadline: None,
        }
    }

    #[test]
    fn only_writable_groups_within_their_bounds_by_metric_or_address() {
        let (t, _rx) = target();
        assert!(t.serves(&DeviceId::new("room-1").unwrap()));
        assert!(!t.serves(&DeviceId::new("room-2").unwrap()));
        let n = CommandValue::Number;
        let (ga, payload) = t.resolve(&command("setpoint", n(21.5))).unwrap();
        assert_eq!(
            (ga.to_string(), payload),
            ("1/2/3".to_string(), Payload::Bytes(vec![0x0C, 0x33]))
        );
        for (metric, value, reason) in [
            ("setpoint", n(15.0), "out_of_range"),
            ("setpoint", n(29.0), "out_of_range"),
            ("temperature", n(20.0), "not_writable"),
            ("1/2/3", n(20.0), "not_writable"),
            ("light", n(2.0), "out_of_range"),
            ("setpoint", CommandValue::Text("warm".into()), "type"),
        ] {
            assert_eq!(
                t.check(&command(metric, value.clone())).unwrap_err().reason,
                reason,
                "{metric} {value:?}"
            );
        }
        assert_eq!(
            t.resolve(&command("light", CommandValue::Bool(true)))
                .unwrap()
                .1,
            Payload::Small(1)
        );
        let points = t.writable();
        assert_eq!(points.len(), 2);
        assert_eq!(points[0].kind, WritableKind::Switch { off: 0.0, on: 1.0 });
        assert_eq!(
            points[1].kind,
            WritableKind::Number {
                min: 16.0,
                max: 28.0,
                step: 0.01
            }
        );
        assert_eq!(points[1].unit.as_deref(), Some("°C"));
    }

    #[tokio::test]
    async fn done_on_the_confirmation_failed_on_a_negative_one_offline_when_down() {
        let (t, mut rx) = target();
        let write = tokio::spawn(t.write(command("setpoint", CommandValue::Number(21.5))));
        let o = rx.recv().await.unwrap();
        assert_eq!(o.service, GroupService::Write);
        o.succeed();
        assert_eq!(write.await.unwrap(), WriteOutcome::Done { value: None });

        let write = tokio::spawn(t.write(command("setpoint", CommandValue::Number(21.5))));
        rx.recv().await.unwrap().fail(SendFailure::NotConfirmed);
        let out = write.await.unwrap();
        assert!(
            matches!(&out, WriteOutcome::Failed(r) if r.reason == "not_confirmed"),
            "{out:?}"
        );

        let write = tokio::spawn(t.write(command("setpoint", CommandValue::Number(21.5))));
        rx.recv().await.unwrap().fail(SendFailure::NotConnected);
        let out = write.await.unwrap();
        assert!(
            matches!(&out, WriteOutcome::Refused(r) if r.reason == "offline"),
            "{out:?}"
        );
        drop(rx);
        let out = t
            .write(command("setpoint", CommandValue::Number(21.5)))
            .await;
        assert!(
            matches!(&out, WriteOutcome::Refused(r) if r.reason == "offline"),
            "{out:?}"
        );
    }
}
