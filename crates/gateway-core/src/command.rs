//! The write side of the adapter contract: a command for one device, and
//! what an adapter that can carry it out implements ([`CommandTarget`]).
//!
//! Commands reach an adapter only through the `commands` crate, which has
//! already checked who sent them (the cloud broker), their age, their rate
//! and that their id was never executed. A target then decides what its
//! devices accept (declared writable, type, bounds) and performs the write,
//! answering only once the device confirmed it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use crate::DeviceId;

/// The value a command asks for. Numbers cover set points and 0/1
/// switches; `Null` relinquishes (BACnet); `Text` and `Bool` are passed
/// on as they are by targets that carry JSON (MQTT `/set`).
#[derive(Debug, Clone, PartialEq)]
pub enum CommandValue {
    Number(f64),
    Bool(bool),
    Text(String),
    Null,
    /// A LoRaWAN downlink: application port and payload bytes.
    Downlink {
        port: u8,
        data: Vec<u8>,
    },
    /// A LoRaWAN downlink for the device's payload codec to encode
    /// (`encodeDownlink`): the command's `data` object, and its `port`
    /// when it gave one (the codec may choose its own).
    Encode {
        port: Option<u8>,
        data: serde_json::Map<String, serde_json::Value>,
    },
}

impl CommandValue {
    /// As JSON, the way a sender wrote it: a whole number stays an
    /// integer (`120`, not `120.0`: a firmware's `/set` may want one).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Number(v) => number_json(*v),
            Self::Bool(b) => serde_json::Value::Bool(*b),
            Self::Text(s) => serde_json::Value::String(s.clone()),
            Self::Null => serde_json::Value::Null,
            Self::Downlink { port, data } => {
                let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
                serde_json::json!({ "port": port, "data": hex })
            }
            Self::Encode {
                port: Some(port),
                data,
            } => serde_json::json!({ "port": port, "data": data }),
            Self::Encode { port: None, data } => serde_json::json!({ "data": data }),
        }
    }

    /// The value as a number where one is meant: a bool is 0 or 1.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Self::Number(v) => Some(*v),
            Self::Bool(b) => Some(f64::from(u8::from(*b))),
            _ => None,
        }
    }
}

/// Whole numbers within ±2^53 as integers, the rest as floats.
fn number_json(v: f64) -> serde_json::Value {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if v.fract() == 0.0 && v.abs() <= EXACT {
        serde_json::json!(v as i64)
    } else {
        serde_json::json!(v)
    }
}

/// One command, checked for form, age, rate and id.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// The sender's id: executed at most once.
    pub id: String,
    pub device: DeviceId,
    /// The point to write (a metric name, or a target's own point name
    /// such as BACnet's `analog-value:3`); empty for a LoRaWAN downlink.
    pub metric: String,
    pub value: CommandValue,
    /// After this instant (monotonic) the command must not reach the
    /// device: its `max_age`. A target that waits (for a connection, a
    /// bus's busy signal) checks it just before sending and answers
    /// [`Refusal::expired`] instead. `None`: no limit.
    pub deadline: Option<tokio::time::Instant>,
}

impl Command {
    /// Whether the command may still be sent now.
    pub fn in_time(&self) -> bool {
        self.deadline
            .is_none_or(|deadline| tokio::time::Instant::now() <= deadline)
    }
}

/// Why a target will not write (checked before anything reaches a
/// device). `reason` is a short label for metrics and results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `not_writable`, `out_of_range`, `type`, …
    pub reason: &'static str,
    /// For people: what was expected.
    pub detail: String,
}

impl Refusal {
    pub fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }

    /// The command's `max_age` passed while it waited in the target:
    /// nothing was sent, and the result is `expired`.
    pub fn expired(waited_for: &str) -> Self {
        Self::new(
            Self::EXPIRED,
            format!("waited for {waited_for} past its max_age; not sent"),
        )
    }

    /// The reason of [`Refusal::expired`].
    pub const EXPIRED: &'static str = "max_age";
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

/// How a write ended once it was attempted.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    /// The device confirmed (Modbus: the write's response and a read-back
    /// giving the value; MQTT: the local broker's PUBACK). `value` is what
    /// the device holds now, when it was read back.
    Done { value: Option<f64> },
    /// Checked just before the write (the device's own limits).
    Refused(Refusal),
    /// Attempted and not confirmed: the device may or may not have it.
    Failed(Refusal),
}

/// A write in progress.
pub type WriteFuture = Pin<Box<dyn Future<Output = WriteOutcome> + Send>>;

/// An adapter's ability to write to its devices. Optional: an adapter
/// that has one returns it from [`crate::Adapter::command_target`].
pub trait CommandTarget: Send + Sync {
    /// Whether it carries commands for `device` at all.
    fn serves(&self, device: &DeviceId) -> bool;

    /// Checks a command without writing: the point is declared writable
    /// and the value has the right type and is within bounds.
    ///
    /// # Errors
    /// A [`Refusal`] saying why nothing will be written.
    fn check(&self, command: &Command) -> Result<(), Refusal>;

    /// Writes, resolving once the device confirmed or the attempt failed.
    /// Called only after [`Self::check`] accepted the command.
    fn write(&self, command: Command) -> WriteFuture;

    /// The points it writes, as declared, for a user interface to offer
    /// them (Home Assistant's entities). Nothing by default: a target that
    /// cannot say what its points take is still written to by commands.
    fn writable(&self) -> Vec<WritablePoint> {
        Vec::new()
    }
}

/// A point a target writes, with what the config declares it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct WritablePoint {
    pub device: DeviceId,
    pub metric: String,
    pub kind: WritableKind,
    /// The reading's unit, where the declaration names one.
    pub unit: Option<String>,
}

/// What a writable point takes, in the reading's unit.
#[derive(Debug, Clone, PartialEq)]
pub enum WritableKind {
    /// A number from `min` to `max`, in steps of `step`.
    Number { min: f64, max: f64, step: f64 },
    /// One of two values (a coil, a register declared with two values).
    Switch { off: f64, on: f64 },
    /// Whatever the device accepts: no type or bounds are declared (an
    /// MQTT device's `writable` metric).
    Any,
}

/// A command a gateway component made (from a message on Home
/// Assistant's command topics, from a rule's alert), to run through the
/// same checks, journal and results as one from the cloud.
#[derive(Debug)]
pub struct CommandRequest {
    pub command: Command,
    /// When it arrived: `max_age` counts from here.
    pub at: tokio::time::Instant,
    /// Who made it, for the logs (`home_assistant`, [`ORIGIN_RULE`]).
    pub origin: &'static str,
    /// Where its result goes too, for a maker that waits for it.
    pub reply: Option<tokio::sync::oneshot::Sender<crate::event::CommandEvent>>,
}

/// [`CommandRequest::origin`] of a rule's local action: besides the
/// adapters' targets, it may write to the actuators the older forms of
/// `[[rule]] action` name (which no other origin reaches).
pub const ORIGIN_RULE: &str = "rule";

/// How the ids the gateway makes begin: Home Assistant's commands', then
/// rules' actions'. The journal knows an id per device whoever sent it, and
/// these ids are read off the result topic: a cloud command under one was
/// answered with that command's result (`done`, nothing written), or,
/// sent first, took the id from the action it named. So the cloud's
/// commands may not use them (`commands::parse`).
pub const GATEWAY_ID_PREFIXES: [&str; 2] = ["ha-", "rule-"];

/// FNV-1a: the same bytes give the same number in every build (std's
/// hasher promises no such thing), for ids that must outlive a restart.
pub fn stable_digest(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// An actuator with one point that takes its payload as it is (a rule
/// action's MQTT topic or CoAP resource): what its targets share.
#[derive(Debug, Clone, PartialEq)]
pub struct RawPoint {
    pub device: DeviceId,
    pub point: String,
}

impl RawPoint {
    /// The bytes to send for `command`: a text as it is, a number or
    /// true/false as JSON.
    ///
    /// # Errors
    /// Not this point, or a value with no such form.
    pub fn payload(&self, command: &Command) -> Result<Vec<u8>, Refusal> {
        if command.device != self.device || command.metric != self.point {
            return Err(Refusal::new(
                "not_writable",
                format!(
                    "{} is not this actuator's point ({})",
                    command.metric, self.point
                ),
            ));
        }
        match &command.value {
            CommandValue::Text(s) => Ok(s.as_bytes().to_vec()),
            CommandValue::Number(_) | CommandValue::Bool(_) => {
                Ok(command.value.to_json().to_string().into_bytes())
            }
            CommandValue::Null | CommandValue::Downlink { .. } | CommandValue::Encode { .. } => {
                Err(Refusal::new(
                    "type",
                    "expected a text, a number or true/false",
                ))
            }
        }
    }

    /// Its one point, taking anything.
    pub fn writable(&self) -> Vec<WritablePoint> {
        vec![WritablePoint {
            device: self.device.clone(),
            metric: self.point.clone(),
            kind: WritableKind::Any,
            unit: None,
        }]
    }
}

/// The targets of the running adapters, by adapter name: the command
/// runner asks them in turn which one serves a device.
#[derive(Clone, Default)]
pub struct CommandTargets {
    inner: Arc<Mutex<Vec<NamedTarget>>>,
}

/// An adapter's name and its target.
type NamedTarget = (String, Arc<dyn CommandTarget>);

impl fmt::Debug for CommandTargets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .inner
            .lock()
            .map(|t| t.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default();
        f.debug_struct("CommandTargets")
            .field("adapters", &names)
            .finish()
    }
}

impl CommandTargets {
    /// Adds (or replaces, after a reload) the target of adapter `name`.
    pub fn register(&self, name: &str, target: Arc<dyn CommandTarget>) {
        if let Ok(mut t) = self.inner.lock() {
            t.retain(|(n, _)| n != name);
            t.push((name.to_string(), target));
        }
    }

    /// Forgets the target of an adapter that stopped.
    pub fn remove(&self, name: &str) {
        if let Ok(mut t) = self.inner.lock() {
            t.retain(|(n, _)| n != name);
        }
    }

    /// The target that serves `device`, if any.
    pub fn find(&self, device: &DeviceId) -> Option<Arc<dyn CommandTarget>> {
        let t = self.inner.lock().ok()?;
        t.iter()
            .find(|(_, target)| target.serves(device))
            .map(|(_, target)| target.clone())
    }

    /// Every target's writable points.
    pub fn writable(&self) -> Vec<WritablePoint> {
        let targets: Vec<Arc<dyn CommandTarget>> = match self.inner.lock() {
            Ok(t) => t.iter().map(|(_, target)| target.clone()).collect(),
            Err(_) => return Vec::new(),
        };
        targets.iter().flat_map(|t| t.writable()).collect()
    }

    /// Adapter names with a target (for logs).
    pub fn names(&self) -> Vec<String> {
        self.inner
            .lock()
            .map(|t| t.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default()
    }
}
