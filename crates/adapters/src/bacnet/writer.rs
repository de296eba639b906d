//! The bacnet adapter's write side: commands from the cloud for objects
//! declared in `writable` on `[[bacnet.device]]`, written as WriteProperty
//! of present-value at the device's `priority`; `null` writes NULL there,
//! which relinquishes the gateway's slot of the priority array (§19.2).
//!
//! A command names its object by id (`analog-value:3`) or by the metric
//! the adapter gives it from its object-name (`room_setpoint`), which is
//! known once the device task has read the names. The value is checked
//! here against the object's type: analog takes a number (sent as REAL),
//! binary 0/1 or true/false (enumerated inactive/active), multi-state a
//! state number from 1.
//!
//! `done` means the device answered the WriteProperty with a SimpleACK;
//! an Error (class and code in the result's detail), Reject, Abort or no
//! answer is `failed`. Writes go out on the adapter's client socket with
//! their own invoke id, beside the polls: BACnet/IP matches each answer to
//! its request, so nothing needs serialising here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use gateway_core::command::{
    Command, CommandTarget, CommandValue, Refusal, WriteFuture, WriteOutcome,
};
use gateway_core::DeviceId;

use super::client::{Client, ClientError};
use super::devices::BacnetDevice;
use super::tags::{object_type as ot, ObjectId, Value};

/// Whether present-value of objects of this type can be written from a
/// command: the analog, binary and multi-state outputs and values. Not an
/// input: its present value is its sensor's, not commandable (§12: no
/// priority array; a device takes a write only while it is out of
/// service, which would hide the sensor from every reader).
pub fn is_writable_kind(kind: u16) -> bool {
    super::reader::is_point(kind) && !is_input(kind)
}

/// The analog, binary and multi-state inputs.
pub fn is_input(kind: u16) -> bool {
    matches!(
        kind,
        ot::ANALOG_INPUT | ot::BINARY_INPUT | ot::MULTI_STATE_INPUT
    )
}

/// What a device's task learnt and the writes need: the address it
/// answers at, and the metric name of each object it reads.
#[derive(Debug, Default)]
pub struct DeviceLink {
    inner: Mutex<Learnt>,
}

#[derive(Debug, Default)]
struct Learnt {
    peer: Option<SocketAddr>,
    names: HashMap<String, ObjectId>,
    /// The addresses answering for the device's instance while more than
    /// one does (`binding`): nothing is written to either.
    conflict: Vec<SocketAddr>,
}

impl DeviceLink {
    /// The device answers at `peer`; its objects are named `names`.
    pub fn found(&self, peer: SocketAddr, names: impl IntoIterator<Item = (String, ObjectId)>) {
        let mut l = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        l.peer = Some(peer);
        l.names = names.into_iter().collect();
    }

    /// The device stopped answering. Its names are kept: they come from
    /// its configuration, which a restart does not change.
    pub fn lost(&self) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).peer = None;
    }

    /// Several addresses answer for the device's instance (`addresses`),
    /// or no longer (empty).
    pub fn conflict(&self, addresses: Vec<SocketAddr>) {
        let mut l = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if !addresses.is_empty() {
            l.peer = None;
        }
        l.conflict = addresses;
    }

    #[cfg(test)]
    pub fn conflicting(&self) -> Vec<SocketAddr> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .conflict
            .clone()
    }

    /// Where a write goes, or why it goes nowhere.
    fn target(&self) -> Result<SocketAddr, Refusal> {
        let l = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if !l.conflict.is_empty() {
            let all: Vec<String> = l.conflict.iter().map(ToString::to_string).collect();
            return Err(Refusal::new(
                "ambiguous",
                format!(
                    "{} all answer for this device's instance (a duplicate device instance, \
                     or a forger): written to none; give the device's `address` in its \
                     [[bacnet.device]]",
                    all.join(", ")
                ),
            ));
        }
        l.peer.ok_or_else(|| {
            Refusal::new(
                "offline",
                "the device is not answering (no I-Am, or it stopped answering polls)",
            )
        })
    }

    fn named(&self, metric: &str) -> Option<ObjectId> {
        let l = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        l.names.get(metric).copied()
    }
}

/// One device's writable objects.
struct Writable {
    objects: Vec<ObjectId>,
    priority: u8,
    link: Arc<DeviceLink>,
}

/// The writable objects of one adapter's devices.
pub struct BacnetTarget {
    devices: HashMap<DeviceId, Writable>,
    /// The adapter's client, once `run` has bound its socket.
    client: Arc<OnceLock<Client>>,
}

/// A command resolved to what goes on the wire.
struct Resolved {
    object: ObjectId,
    value: Value,
    priority: u8,
    link: Arc<DeviceLink>,
}

impl BacnetTarget {
    /// The target of `devices` (their links by id, as their tasks fill
    /// them in); `None` when no device declares a writable object.
    pub fn new(
        devices: &[BacnetDevice],
        links: &HashMap<DeviceId, Arc<DeviceLink>>,
        client: Arc<OnceLock<Client>>,
    ) -> Option<Arc<Self>> {
        let devices: HashMap<DeviceId, Writable> = devices
            .iter()
            .filter(|d| !d.writable.is_empty())
            .filter_map(|d| {
                let link = links.get(&d.id)?.clone();
                Some((
                    d.id.clone(),
                    Writable {
                        objects: d.writable.clone(),
                        priority: d.priority,
                        link,
                    },
                ))
            })
            .collect();
        if devices.is_empty() {
            return None;
        }
        Some(Arc::new(Self { devices, client }))
    }

    fn resolve(&self, command: &Command) -> Result<Resolved, Refusal> {
        let device = self
            .devices
            .get(&command.device)
            .ok_or_else(|| Refusal::new("not_writable", "no writable object on this device"))?;
        let object = command
            .metric
            .parse::<ObjectId>()
            .ok()
            .or_else(|| device.link.named(&command.metric))
            .ok_or_else(|| {
                Refusal::new(
                    "not_writable",
                    format!(
                        "{} is neither an object id (\"analog-value:3\") nor the metric of a \
                         writable object of this device",
                        command.metric
                    ),
                )
            })?;
        if !device.objects.contains(&object) {
            return Err(Refusal::new(
                "not_writable",
                format!("{object} is not declared writable"),
            ));
        }
        Ok(Resolved {
            object,
            value: encode(object.kind, &command.value)?,
            priority: device.priority,
            link: device.link.clone(),
        })
    }
}

/// The present-value an object of type `kind` is written with.
///
/// # Errors
/// A [`Refusal`]: `type` for a value of the wrong kind, `out_of_range` for
/// one the type cannot hold.
pub fn encode(kind: u16, value: &CommandValue) -> Result<Value, Refusal> {
    let number = match value {
        CommandValue::Null => return Ok(Value::Null),
        CommandValue::Number(v) => Some(*v),
        CommandValue::Bool(_) => None,
        CommandValue::Text(_) | CommandValue::Downlink { .. } | CommandValue::Encode { .. } => {
            return Err(Refusal::new(
                "type",
                "expected a number, true/false (binary objects) or null (relinquish)",
            ))
        }
    };
    match kind {
        ot::ANALOG_INPUT | ot::ANALOG_OUTPUT | ot::ANALOG_VALUE => {
            let v =
                number.ok_or_else(|| Refusal::new("type", "an analog object takes a number"))?;
            if !v.is_finite() || v.abs() > f64::from(f32::MAX) {
                return Err(Refusal::new(
                    "out_of_range",
                    format!("{v} does not fit a REAL (32-bit float)"),
                ));
            }
            Ok(Value::Real(v as f32))
        }
        ot::BINARY_INPUT | ot::BINARY_OUTPUT | ot::BINARY_VALUE => {
            let on = match (value, number) {
                (CommandValue::Bool(b), _) => *b,
                (_, Some(0.0)) => false,
                (_, Some(1.0)) => true,
                _ => {
                    return Err(Refusal::new(
                        "out_of_range",
                        "a binary object takes 0/1 or false/true",
                    ))
                }
            };
            // BACnetBinaryPV: inactive (0), active (1).
            Ok(Value::Enumerated(u32::from(on)))
        }
        ot::MULTI_STATE_INPUT | ot::MULTI_STATE_OUTPUT | ot::MULTI_STATE_VALUE => {
            let v = number
                .ok_or_else(|| Refusal::new("type", "a multi-state object takes a state number"))?;
            if v.fract() != 0.0 || v < 1.0 || v > f64::from(u32::MAX) {
                return Err(Refusal::new(
                    "out_of_range",
                    format!("{v}: a multi-state object takes a state number from 1"),
                ));
            }
            Ok(Value::Unsigned(v as u64))
        }
        _ => Err(Refusal::new(
            "not_writable",
            "only analog, binary and multi-state objects are written",
        )),
    }
}

/// How a WriteProperty that got no SimpleACK is reported.
fn failure(e: &ClientError) -> Refusal {
    match e {
        ClientError::Timeout => Refusal::new("timeout", "the device did not answer"),
        ClientError::Error(code) => Refusal::new("error", code.describe()),
        ClientError::Reject(r) => Refusal::new("reject", format!("reject reason {r}")),
        ClientError::Abort(r) => Refusal::new("abort", format!("abort reason {r}")),
        ClientError::Segmentation(_)
        | ClientError::Malformed(_)
        | ClientError::Mismatch(_)
        | ClientError::TooManyObjects(_) => Refusal::new("protocol", e.to_string()),
        ClientError::Io(_) | ClientError::Busy => Refusal::new("connection", e.to_string()),
        ClientError::Expired => Refusal::expired("its turn to be sent to the BACnet device"),
    }
}

impl CommandTarget for BacnetTarget {
    fn serves(&self, device: &DeviceId) -> bool {
        self.devices.contains_key(device)
    }

    fn check(&self, command: &Command) -> Result<(), Refusal> {
        self.resolve(command).map(|_| ())
    }

    fn write(&self, command: Command) -> WriteFuture {
        let resolved = self.resolve(&command);
        let client = self.client.get().cloned();
        Box::pin(async move {
            let r = match resolved {
                Ok(r) => r,
                Err(refusal) => return WriteOutcome::Refused(refusal),
            };
            let Some(client) = client else {
                return WriteOutcome::Refused(Refusal::new(
                    "offline",
                    "the bacnet adapter is not running",
                ));
            };
            let peer = match r.link.target() {
                Ok(peer) => peer,
                Err(refusal) => return WriteOutcome::Refused(refusal),
            };
            match client
                .write_property_until(peer, r.object, &r.value, Some(r.priority), command.deadline)
                .await
            {
                Ok(()) => WriteOutcome::Done { value: None },
                Err(ClientError::Expired) => {
                    WriteOutcome::Refused(Refusal::expired("its turn to be sent to the BACnet device"))
                }
                Err(e) => WriteOutcome::Failed(failure(&e)),
            }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::bacnet::services::ErrorCode;
    use std::time::Duration;

    #[test]
    fn values_take_each_object_types_encoding() {
        let n = CommandValue::Number;
        assert_eq!(
            encode(ot::ANALOG_VALUE, &n(21.5)).unwrap(),
            Value::Real(21.5)
        );
        assert_eq!(
            encode(ot::ANALOG_OUTPUT, &CommandValue::Null).unwrap(),
            Value::Null
        );
        assert_eq!(
            encode(ot::BINARY_VALUE, &n(1.0)).unwrap(),
            Value::Enumerated(1)
        );
        assert_eq!(
            encode(ot::BINARY_OUTPUT, &CommandValue::Bool(false)).unwrap(),
            Value::Enumerated(0)
        );
        assert_eq!(
            encode(ot::MULTI_STATE_VALUE, &n(3.0)).unwrap(),
            Value::Unsigned(3)
        );
        for (kind, value, reason) in [
            (ot::ANALOG_VALUE, CommandValue::Bool(true), "type"),
            (ot::ANALOG_VALUE, n(1e39), "out_of_range"),
            (ot::ANALOG_VALUE, CommandValue::Text("hot".into()), "type"),
            (ot::BINARY_VALUE, n(2.0), "out_of_range"),
            (ot::BINARY_VALUE, n(0.5), "out_of_range"),
            (ot::MULTI_STATE_VALUE, n(0.0), "out_of_range"),
            (ot::MULTI_STATE_VALUE, n(2.5), "out_of_range"),
            (ot::MULTI_STATE_VALUE, CommandValue::Bool(true), "type"),
            (ot::DEVICE, n(1.0), "not_writable"),
        ] {
            assert_eq!(
                encode(kind, &value).unwrap_err().reason,
                reason,
                "{kind} {value:?}"
            );
        }
    }

    fn target() -> (Arc<BacnetTarget>, Arc<DeviceLink>) {
        let mut p = gateway_core::config::Problems::default();
        let root: toml::Table = toml::from_str(
            r#"
[[adapter]]
type = "bacnet"
name = "bms"

[[bacnet.device]]
instance = 7
id = "ahu-1"
writable = ["analog-value:3", "binary-value:1"]
priority = 9
"#,
        )
        .unwrap();
        let section = crate::bacnet::devices::section(&root, &mut p);
        assert!(p.is_empty(), "{p}");
        let link = Arc::new(DeviceLink::default());
        let links = HashMap::from([(DeviceId::new("ahu-1").unwrap(), link.clone())]);
        let t = BacnetTarget::new(&section.devices, &links, Arc::default()).unwrap();
        (t, link)
    }

    fn command(metric: &str, value: CommandValue) -> Command {
        Command {
            id: "c".into(),
            device: DeviceId::new("ahu-1").unwrap(),
            metric: metric.into(),
            value,
            deadline: None,
        }
    }

    #[test]
    fn objects_by_id_or_by_their_metric_and_only_the_declared_ones() {
        let (t, link) = target();
        assert!(t.serves(&DeviceId::new("ahu-1").unwrap()));
        assert!(!t.serves(&DeviceId::new("ahu-2").unwrap()));
        let ok = t.resolve(&command("analog-value:3", CommandValue::Number(20.0)));
        let ok = ok.unwrap_or_else(|r| panic!("{r}"));
        assert_eq!(
            (ok.object, ok.priority),
            (ObjectId::new(ot::ANALOG_VALUE, 3), 9)
        );
        // By name only once the device task has read the names.
        let named = command("room_setpoint", CommandValue::Number(20.0));
        assert_eq!(t.check(&named).unwrap_err().reason, "not_writable");
        link.found(
            "127.0.0.1:47808".parse().unwrap(),
            [
                (
                    "room_setpoint".to_string(),
                    ObjectId::new(ot::ANALOG_VALUE, 3),
                ),
                ("zone_temp".to_string(), ObjectId::new(ot::ANALOG_INPUT, 1)),
            ],
        );
        assert!(t.check(&named).is_ok());
        for metric in ["zone_temp", "analog-value:4", "analog-input:1"] {
            let r = t.check(&command(metric, CommandValue::Number(1.0)));
            assert_eq!(r.unwrap_err().reason, "not_writable", "{metric}");
        }
        let r = t.check(&command("binary-value:1", CommandValue::Number(2.0)));
        assert_eq!(r.unwrap_err().reason, "out_of_range");
        assert!(t
            .check(&command("binary-value:1", CommandValue::Null))
            .is_ok());
    }

    #[tokio::test]
    async fn no_client_or_no_device_address_is_refused_offline() {
        let (t, _link) = target();
        let out = t
            .write(command("analog-value:3", CommandValue::Number(20.0)))
            .await;
        assert!(
            matches!(&out, WriteOutcome::Refused(r) if r.reason == "offline"),
            "{out:?}"
        );
    }

    #[test]
    fn an_error_pdu_reports_its_class_and_code() {
        let e = ClientError::Error(ErrorCode { class: 2, code: 40 });
        let r = failure(&e);
        assert_eq!(
            (r.reason, r.detail.as_str()),
            ("error", "property/write-access-denied")
        );
        assert_eq!(failure(&ClientError::Timeout).reason, "timeout");
        assert_eq!(failure(&ClientError::Reject(9)).reason, "reject");
        assert_eq!(failure(&ClientError::Abort(4)).reason, "abort");
    }

    /// A device at the returned address that drops the first `drop`
    /// WriteProperty requests and acknowledges the others; each request it
    /// receives is told on the receiver (its invoke id).
    async fn lossy_device(drop: usize) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<u8>) {
        use crate::bacnet::apdu::{self, confirmed, Apdu};
        use crate::bacnet::frame::{self, Frame};
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            let mut seen = 0;
            loop {
                let (n, from) = socket.recv_from(&mut buf).await.unwrap();
                let Ok(Frame::Apdu {
                    apdu: Apdu::ConfirmedRequest { invoke_id, .. },
                    ..
                }) = frame::decode(&buf[..n])
                else {
                    continue;
                };
                seen += 1;
                let _ = tx.send(invoke_id);
                if seen > drop {
                    let ack = apdu::simple_ack(invoke_id, confirmed::WRITE_PROPERTY);
                    let d = frame::unicast(&ack, false, None);
                    socket.send_to(&d, from).await.unwrap();
                }
            }
        });
        (addr, rx)
    }

    /// The target with a running client (`timeout` 3 s, one retry) and
    /// the device found at `device`.
    async fn target_at(device: SocketAddr) -> Arc<BacnetTarget> {
        let (t, link) = target();
        let (events, _) = tokio::sync::mpsc::channel(16);
        let client = Client::start(
            "127.0.0.1:0".parse().unwrap(),
            Duration::from_secs(3),
            1,
            events,
            tokio_util::sync::CancellationToken::new(),
        )
        .await
        .unwrap();
        assert!(t.client.set(client).is_ok());
        link.found(device, []);
        t
    }

    fn due_in(left: Duration) -> Command {
        Command {
            deadline: Some(tokio::time::Instant::now() + left),
            ..command("analog-value:3", CommandValue::Number(21.0))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_write_is_not_resent_after_the_deadline() {
        let (device, mut seen) = lossy_device(1).await;
        let t = target_at(device).await;
        // 2 s left, 3 s timeout: the retry would go out 1 s late.
        let start = tokio::time::Instant::now();
        let out = t.write(due_in(Duration::from_secs(2))).await;
        assert!(
            matches!(&out, WriteOutcome::Failed(r) if r.reason == "timeout"),
            "{out:?}"
        );
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(2) && waited < Duration::from_millis(2100),
            "waits until the deadline, no longer: {waited:?}"
        );
        assert!(seen.recv().await.is_some());
        assert!(seen.try_recv().is_err(), "sent once, never after the deadline");

        // With time for it, the retry goes out and is answered.
        let (device, mut seen) = lossy_device(1).await;
        let t = target_at(device).await;
        let out = t.write(due_in(Duration::from_secs(10))).await;
        assert_eq!(out, WriteOutcome::Done { value: None });
        assert!(seen.recv().await.is_some() && seen.recv().await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_device_two_addresses_answer_for_is_written_to_neither() {
        let (device, mut seen) = lossy_device(0).await;
        let t = target_at(device).await;
        let link = t.devices.values().next().unwrap().link.clone();
        let other: SocketAddr = "127.0.0.1:9".parse().unwrap();
        link.conflict(vec![device, other]);
        let out = t
            .write(command("analog-value:3", CommandValue::Number(21.0)))
            .await;
        match &out {
            WriteOutcome::Refused(r) => {
                assert_eq!(r.reason, "ambiguous");
                assert!(r.detail.contains(&device.to_string()), "{}", r.detail);
                assert!(r.detail.contains(&other.to_string()), "{}", r.detail);
            }
            _ => panic!("{out:?}"),
        }
        // Resolved and found again: written there.
        link.conflict(Vec::new());
        link.found(device, []);
        let out = t
            .write(command("analog-value:3", CommandValue::Number(21.0)))
            .await;
        assert_eq!(out, WriteOutcome::Done { value: None });
        assert!(seen.recv().await.is_some());
        assert!(seen.try_recv().is_err(), "the refused write was not sent");
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_due_now_is_expired_and_never_sent() {
        let (device, mut seen) = lossy_device(0).await;
        let t = target_at(device).await;
        let out = t.write(due_in(Duration::ZERO)).await;
        assert!(
            matches!(&out, WriteOutcome::Refused(r) if r.reason == Refusal::EXPIRED),
            "{out:?}"
        );
        // The next write's request is the first the device sees.
        let out = t
            .write(command("analog-value:3", CommandValue::Number(21.0)))
            .await;
        assert_eq!(out, WriteOutcome::Done { value: None });
        assert!(seen.recv().await.is_some());
        assert!(seen.try_recv().is_err(), "the expired write was not sent");
    }
}
