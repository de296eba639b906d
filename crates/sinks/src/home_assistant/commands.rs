//! `commands = true`: which controls exist (the adapters' writable
//! points, as the gateway hands them over at start and after a reload)
//! and what a message on a control's command topic does: it becomes a
//! [`CommandRequest`] for the command runner, or is refused and counted.
//! Only the topics of announced controls are taken; the device and
//! metric come from the control, never from the topic's text.

use std::collections::{BTreeMap, HashMap};

use gateway_core::command::{CommandRequest, WritablePoint};
use gateway_core::telemetry::{Counter, LogThrottle};
use gateway_core::{DeviceId, Telemetry};
use tokio::sync::{mpsc, watch};

use super::announced::EntityKey;
use super::announcer::Announcer;
use super::controls;
use super::{HaCommands, HA_COMMANDS};

/// The writable points as the gateway hands them over.
pub(super) type Writable = watch::Receiver<Option<Vec<WritablePoint>>>;

/// The controls and where their commands go.
pub(super) struct Controls {
    requests: mpsc::Sender<CommandRequest>,
    /// Taken by the task's loop, which waits on it.
    pub(super) writable: Option<Writable>,
    /// Each announced control's point.
    pub(super) points: BTreeMap<EntityKey, WritablePoint>,
    /// Command topic → its control.
    set_topics: HashMap<String, EntityKey>,
    queued: Counter,
    refusals: Refusals,
    log: LogThrottle,
}

/// `edge_gateway_home_assistant_commands_total{outcome}` for
/// `gateway_core::refuse!`.
struct Refusals(Telemetry);

impl Refusals {
    fn refuse(&self, throttle: &LogThrottle, reason: &str) -> Option<u64> {
        self.0.counter(HA_COMMANDS, &[("outcome", reason)]).inc();
        throttle.allow(reason)
    }
}

impl Controls {
    pub(super) fn new(setup: HaCommands, telemetry: &Telemetry) -> Self {
        Self {
            requests: setup.requests,
            writable: Some(setup.writable),
            points: BTreeMap::new(),
            set_topics: HashMap::new(),
            queued: telemetry.counter(HA_COMMANDS, &[("outcome", "queued")]),
            refusals: Refusals(telemetry.clone()),
            log: LogThrottle::default(),
        }
    }
}

/// The next set of writable points; `None` once the gateway stopped
/// handing them over. Never resolves without a receiver.
pub(super) async fn next_writable(rx: &mut Option<Writable>) -> Option<Option<Vec<WritablePoint>>> {
    match rx {
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(rx.borrow_and_update().clone()),
            Err(_) => None,
        },
        None => std::future::pending().await,
    }
}

impl Announcer {
    /// The writable points now: new controls are announced, changed ones
    /// again, and those no longer writable (or not of that kind) have
    /// their configs cleared. `None`: not known yet, nothing changes.
    pub(super) fn set_writable(&mut self, points: Option<Vec<WritablePoint>>) {
        let Some(points) = points else { return };
        if self.controls.is_none() {
            return;
        }
        let mut now = BTreeMap::new();
        for p in points {
            if let Some(component) = controls::component_of(&p) {
                let key = EntityKey {
                    component,
                    device: p.device.to_string(),
                    key: p.metric.clone(),
                };
                now.insert(key, p);
            }
        }
        let gone: Vec<EntityKey> = self
            .entities
            .keys()
            .filter(|k| k.component.is_control() && !now.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            // Only its config: the device's availability serves its sensors.
            self.clears
                .push(self.topics.config(k.component, &k.device, &k.key));
            self.entities.remove(&k);
            self.due.remove(&k);
            self.unsaved = true;
        }
        self.clears.sort_unstable();
        self.clears.dedup();
        let mut set_topics = HashMap::new();
        for key in now.keys() {
            // A changed point has another config digest: sent again.
            if let Some(k) = self.know(key.component, &key.device, &key.key) {
                set_topics.insert(self.topics.command_of(&k.device, &k.key), k.clone());
                self.due.insert(k);
            }
        }
        if let Some(c) = self.controls.as_mut() {
            c.points = now;
            c.set_topics = set_topics;
        }
        self.flush();
    }

    /// A message on a command topic: a request for the command runner
    /// when it is a control's, else refused and counted.
    pub(super) fn command(&mut self, p: &rumqttc::Publish) {
        let arrived_ms = self.clock.now().as_millis();
        let Some(c) = self.controls.as_ref() else {
            return;
        };
        if p.retain {
            gateway_core::refuse!(c.refusals, c.log, "retained"; topic = %p.topic,
                "Home Assistant: ignoring a retained command; it would run again at every reconnect.");
            return;
        }
        let Some(key) = c.set_topics.get(p.topic.as_str()) else {
            gateway_core::refuse!(c.refusals, c.log, "unknown"; topic = %p.topic,
                "Home Assistant: ignoring a message on a command topic no control has.");
            return;
        };
        let Ok(device) = DeviceId::new(key.device.as_str()) else {
            return;
        };
        let command = controls::command_of(&device, &key.key, &p.topic, &p.payload, arrived_ms);
        let request = CommandRequest {
            command,
            at: tokio::time::Instant::now(),
            origin: "home_assistant",
            reply: None,
        };
        if c.requests.try_send(request).is_ok() {
            c.queued.inc();
        } else {
            gateway_core::refuse!(c.refusals, c.log, "dropped"; device = %key.device, metric = %key.key,
                "Home Assistant: dropping a command, too many are waiting to run.");
        }
    }
}
