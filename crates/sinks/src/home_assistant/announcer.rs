//! The task's state and what each event, each word from the connection
//! and each tick does to it. What goes to the broker is in `publish.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use gateway_core::component::Sources;
use gateway_core::config::HaState;
use gateway_core::event::{AlertEvent, SinkEvent};
use gateway_core::registry::DeviceInfo;
use gateway_core::telemetry::{Counter, LogThrottle};
use gateway_core::units::Units;
use gateway_core::{Clock, DeviceId, DeviceModel, DeviceRegistry};
use rumqttc::{AsyncClient, QoS};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::announced::{self, Announced, EntityKey};
use super::availability::Availability;
use super::commands::{next_writable, Controls};
use super::discovery::{Component, Topics};
use super::lifecycle::{Devices, Rediscovery};
use super::{
    HaSetup, Net, HA_BIRTHS, HA_DEFERRED, HA_DROPPED, HA_PUBLISHED, HA_REFUSED, SAVE_EVERY, TICK,
};

/// How far ahead of the gateway clock a kept reading's time may be and
/// still hold back older ones: `max_future`'s default.
const NEWEST_AHEAD_MS: i64 = 60_000;

pub(super) struct Announcer {
    pub(super) topics: Topics,
    pub(super) expire_after: u64,
    state_mode: HaState,
    pub(super) sw_version: String,
    registry: DeviceRegistry,
    pub(super) units: Units,
    pub(super) sources: Sources,
    pub(super) client: AsyncClient,
    pub(super) file: gateway_core::state_file::json::JsonStateFile<announced::OnDisk>,
    /// Every entity known, with the digest of the config the broker holds.
    pub(super) entities: BTreeMap<EntityKey, Announced>,
    /// The adapter kind each device was heard by.
    pub(super) adapters: HashMap<String, String>,
    /// What the adapters told of each device's make.
    pub(super) models: HashMap<String, DeviceModel>,
    /// The adapter each device was heard through in this run, for its
    /// adapter's `units`.
    pub(super) source_of: HashMap<String, gateway_core::SourceId>,
    /// Entities whose config may differ from what the broker holds.
    pub(super) due: BTreeSet<EntityKey>,
    /// Retained topics to empty: the configs, alert states and
    /// availability of devices removed from the registry or forgotten,
    /// and configs left at the ids of an earlier release.
    pub(super) clears: Vec<String>,
    /// The last state of each entity, for Home Assistant's restarts.
    pub(super) latest: HashMap<EntityKey, String>,
    /// The time of the reading each sensor's state is (`state =
    /// "reading"`): a reading older than it, a node's buffered backlog or
    /// a late one within the grace, does not take the state back. For a
    /// `total_increasing` meter Home Assistant reads a step back as a
    /// reset and counts the whole meter again.
    pub(super) reading_at: HashMap<EntityKey, gateway_core::Timestamp>,
    /// States held until Home Assistant has read their entity's config.
    pub(super) held: BTreeSet<EntityKey>,
    /// Device availability, and what the broker was handed of it.
    pub(super) availability: Availability,
    pub(super) connected: bool,
    pub(super) unsaved: bool,
    pub(super) last_save: tokio::time::Instant,
    pub(super) log: LogThrottle,
    pub(super) published: [Counter; 4],
    /// Registered so the series stays on `/metrics` (at 0) for the
    /// dashboards that read it; no state is dropped any more.
    _dropped: Counter,
    /// States the client's queue had no room for, held for the next tick.
    pub(super) deferred: Counter,
    refused: Counter,
    births: Counter,
    rediscovery: Rediscovery,
    pub(super) devices: Devices,
    pub(super) clock: Arc<dyn Clock>,
    /// `commands = true`: the controls and where their commands go.
    pub(super) controls: Option<Controls>,
    /// When this run began: devices with no time on record count from it.
    started_ms: i64,
}

impl Announcer {
    pub(super) fn new(setup: HaSetup, topics: Topics, client: AsyncClient) -> Self {
        let t = &setup.telemetry;
        let kind = |k: &str| t.counter(HA_PUBLISHED, &[("kind", k)]);
        let started_ms = setup.clock.now().as_millis();
        let controls = setup.commands.map(|c| Controls::new(c, t));
        Self {
            topics,
            expire_after: setup.config.expire_after.as_secs(),
            state_mode: setup.config.state,
            sw_version: setup.sw_version,
            registry: setup.registry,
            units: setup.units,
            sources: setup.sources,
            client,
            file: announced::file(&setup.state_dir),
            entities: BTreeMap::new(),
            adapters: HashMap::new(),
            models: HashMap::new(),
            source_of: HashMap::new(),
            due: BTreeSet::new(),
            clears: Vec::new(),
            latest: HashMap::new(),
            reading_at: HashMap::new(),
            held: BTreeSet::new(),
            availability: Availability::default(),
            connected: false,
            unsaved: false,
            last_save: tokio::time::Instant::now(),
            log: LogThrottle::default(),
            published: [
                kind("config"),
                kind("clear"),
                kind("state"),
                kind("availability"),
            ],
            _dropped: t.counter(HA_DROPPED, &[]),
            deferred: t.counter(HA_DEFERRED, &[]),
            refused: t.counter(HA_REFUSED, &[]),
            births: t.counter(HA_BIRTHS, &[]),
            rediscovery: Rediscovery::new(setup.config.announce_interval),
            devices: Devices::new(setup.config.forget_after, setup.config.max_entities),
            clock: setup.clock,
            controls,
            started_ms,
        }
    }

    /// The `[[device]]` entry of exactly this id: a case variant of a
    /// registered id (127 of a 7-letter one) is a stranger here, capped
    /// by `max_entities` and forgotten when silent, not another device
    /// named after the registered one.
    pub(super) fn info(&self, device: &str) -> Option<&DeviceInfo> {
        DeviceId::new(device)
            .ok()
            .and_then(|id| self.registry.get_exact(&id))
    }

    /// What was announced before, the registry's devices, and what to
    /// clear: a registered device no longer in the registry (its configs,
    /// alert states and availability), and configs at the ids of an
    /// earlier release.
    pub(super) fn load(&mut self) {
        let (loaded, problem) = announced::load(&self.file);
        if let Some(p) = problem {
            warn!(problem = %p, "Home Assistant: what was announced before is unknown; every config is sent again.");
        }
        self.clears = loaded.clears;
        let mut previous: Vec<String> = Vec::new();
        let mut removed = 0;
        for (key, mut a) in loaded.entities {
            previous.extend(self.retained_before(&key, &a));
            let registered = self.info(&key.device).is_some();
            // Controls announced while `commands` was on: cleared below
            // with what else is retained where no entity is now.
            let unwanted = key.component.is_control() && self.controls.is_none();
            if (a.registered && !registered) || unwanted {
                removed += 1;
                continue;
            }
            a.registered = registered;
            if let Some(kind) = &a.adapter {
                self.adapters.insert(key.device.clone(), kind.clone());
            }
            if let Some(model) = &a.model {
                self.models.insert(
                    key.device.clone(),
                    DeviceModel {
                        manufacturer: a.manufacturer.clone(),
                        model: model.clone(),
                    },
                );
            }
            self.devices.add(&key.device, registered, a.heard);
            self.due.insert(key.clone());
            self.entities.insert(key, a);
        }
        // A registered device's metrics the config names (its primary
        // metric, its units), so it appears before it first speaks.
        let mut named = Vec::new();
        for id in self.registry.ids() {
            let Some(info) = self.info(id) else { continue };
            for metric in info.primary.iter().chain(info.units.keys()) {
                named.push((id.to_string(), metric.clone()));
            }
        }
        for (device, metric) in named {
            self.know(Component::Sensor, &device, &metric);
        }
        // What is retained where no entity is now: a removed device's, or
        // an id of an earlier release (a look-alike's now has its own).
        let now: BTreeSet<String> = self
            .entities
            .keys()
            .flat_map(|k| self.retained_topics(k))
            .collect();
        let mut stale: Vec<String> = previous.into_iter().filter(|t| !now.contains(t)).collect();
        stale.sort();
        stale.dedup();
        if removed > 0 || !stale.is_empty() {
            info!(
                removed_entities = removed,
                topics = stale.len(),
                "Home Assistant: clearing what devices removed from the registry, and ids of an earlier release, left on the broker."
            );
        }
        self.clears.extend(stale);
        self.clears.sort_unstable();
        self.clears.dedup();
    }

    /// The retained topics an entity has now: its config, its alert state,
    /// its device's availability.
    pub(super) fn retained_topics(&self, key: &EntityKey) -> Vec<String> {
        let t = &self.topics;
        let mut topics = vec![
            t.config(key.component, &key.device, &key.key),
            t.device_availability(&key.device),
        ];
        if key.component == Component::BinarySensor {
            topics.push(t.state_of(key.component, &key.device, &key.key));
        }
        topics
    }

    /// Where an entity on record may have left retained messages: where
    /// this release puts them, and where the one that wrote the record
    /// did.
    fn retained_before(&self, key: &EntityKey, a: &Announced) -> Vec<String> {
        let mut topics = self.retained_topics(key);
        match &a.topic {
            Some(config) => topics.push(config.clone()),
            None if a.digest.is_some() => {
                let [config, state, availability] =
                    self.topics.legacy(key.component, &key.device, &key.key);
                topics.push(config);
                topics.push(availability);
                if key.component == Component::BinarySensor {
                    topics.push(state);
                }
            }
            None => {}
        }
        topics
    }

    /// Makes an entity known; a new one is due for announcing. `None`: a
    /// device not in the registry, with `max_entities` reached.
    pub(super) fn know(
        &mut self,
        component: Component,
        device: &str,
        key: &str,
    ) -> Option<EntityKey> {
        let k = EntityKey {
            component,
            device: device.to_string(),
            key: key.to_string(),
        };
        if !self.entities.contains_key(&k) {
            let registered = self.info(device).is_some();
            if !self.devices.admits(device, registered) {
                self.refused.inc();
                if let Some(suppressed) = self.log.allow("max_entities") {
                    warn!(%device, key, suppressed, per_device = super::lifecycle::MAX_ENTITIES_PER_DEVICE, "Home Assistant: max_entities reached for devices not in [[device]], or this device has as many entities as one may: the entity is not announced.");
                }
                return None;
            }
            self.devices.add(device, registered, None);
            self.entities.insert(
                k.clone(),
                Announced {
                    digest: None,
                    registered,
                    adapter: None,
                    manufacturer: None,
                    model: None,
                    topic: None,
                    heard: None,
                },
            );
            self.due.insert(k.clone());
            self.unsaved = true;
        }
        Some(k)
    }

    /// The device spoke: when, for `forget_after`.
    fn heard(&mut self, device: &str) {
        let now = self.clock.now().as_millis();
        if self.devices.heard(device, now) {
            self.unsaved = true;
        }
    }

    /// The first adapter a device is heard by gives its model, and the
    /// make it tells of, if any: every entity of the device is due again.
    fn heard_by(&mut self, device: &str, source: gateway_core::SourceId) {
        let first_this_run = self.source_of.insert(device.to_string(), source).is_none();
        let mut changed = false;
        // Adapters tell a device's make before its first reading.
        if let Some(model) = first_this_run
            .then(|| self.sources.model_of(device))
            .flatten()
        {
            if self.models.get(device) != Some(&model) {
                self.models.insert(device.to_string(), model);
                changed = true;
            }
        }
        if !self.adapters.contains_key(device) || (first_this_run && self.units.by_adapter()) {
            if let Some(kind) = self.sources.get(source).map(|s| s.kind) {
                self.adapters.insert(device.to_string(), kind);
                changed = true;
            }
        }
        if !changed {
            return;
        }
        let of_device: Vec<EntityKey> = self
            .entities
            .keys()
            .filter(|k| k.device == device)
            .cloned()
            .collect();
        self.due.extend(of_device);
    }

    pub(super) async fn run(
        &mut self,
        mut events: mpsc::Receiver<SinkEvent>,
        mut net: mpsc::Receiver<Net>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut writable = self.controls.as_mut().and_then(|c| c.writable.take());
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(e) => self.event(e),
                    None => break,
                },
                Some(n) = net.recv() => self.net(n),
                _ = tick.tick() => self.tick(),
                points = next_writable(&mut writable) => match points {
                    Some(points) => self.set_writable(points),
                    None => writable = None,
                },
            }
        }
        self.stop().await;
    }

    fn event(&mut self, event: SinkEvent) {
        match event {
            SinkEvent::Readings(readings) if self.state_mode == HaState::Reading => {
                for r in readings {
                    if r.subject() != gateway_core::model::Subject::Device {
                        continue;
                    }
                    let device = r.device().as_str();
                    let Some(key) = self.know(Component::Sensor, device, r.metric().as_str())
                    else {
                        continue;
                    };
                    self.heard_by(device, r.source());
                    self.heard(device);
                    self.device_online(device, true);
                    if !self.is_newest(&key, r.time()) {
                        continue;
                    }
                    self.state(key, r.value().to_string());
                }
            }
            // A late amendment is an old span's afterthought: the state
            // is the latest window's average, which it would overwrite
            // with a partial one.
            SinkEvent::Window(w) if self.state_mode == HaState::Avg && w.amendment == 0 => {
                let device = w.device.as_str().to_string();
                for (metric, stats) in &w.metrics {
                    if let Some(key) = self.know(Component::Sensor, &device, metric) {
                        self.state(key, stats.avg.to_string());
                    }
                }
                if self.devices.has(&device) {
                    self.heard(&device);
                    self.device_online(&device, true);
                }
            }
            SinkEvent::Alert(a) => self.alert(&a),
            SinkEvent::Status(s) => self.device_online(s.device.as_str(), s.online),
            // Command results go to the cloud broker and the dashboard; a
            // control shows the point's next reading.
            SinkEvent::Readings(_)
            | SinkEvent::Window(_)
            | SinkEvent::JournalEpoch(_)
            | SinkEvent::Command(_)
            | SinkEvent::ConfigState(_) => {}
        }
    }

    fn alert(&mut self, a: &AlertEvent) {
        let device = a.device.as_str().to_string();
        let Some(key) = self.know(Component::BinarySensor, &device, &a.rule) else {
            return;
        };
        let raised = a.state == "raised";
        self.state(key, if raised { "ON" } else { "OFF" }.to_string());
        // A silent device is unavailable, not at its last value.
        if a.kind == "silence" {
            self.device_online(&device, !raised);
        }
    }

    /// Whether a reading of `at` is the newest of `key`'s, and becomes
    /// it. One kept from a time ahead of the gateway clock (a node's clock
    /// ahead, a gateway clock NTP stepped back) does not hold the state:
    /// the next reading takes it, or the state froze for up to a day.
    fn is_newest(&mut self, key: &EntityKey, at: gateway_core::Timestamp) -> bool {
        let now = gateway_core::Timestamp::now();
        match self.reading_at.get(key) {
            Some(kept) if *kept > at && *kept <= now.saturating_add_millis(NEWEST_AHEAD_MS) => {
                false
            }
            _ => {
                self.reading_at.insert(key.clone(), at);
                true
            }
        }
    }

    /// Publishes a state now, or once its entity's config is out.
    fn state(&mut self, key: EntityKey, payload: String) {
        let ready = self.connected && !self.due.contains(&key) && !self.held.contains(&key);
        if !ready || !self.publish_state(&key, payload.clone()) {
            self.held.insert(key.clone());
        }
        self.latest.insert(key, payload);
    }

    /// A device's availability, for devices Home Assistant knows of (one
    /// refused by `max_entities` has no topic of its own to fill).
    fn device_online(&mut self, device: &str, online: bool) {
        if !self.devices.has(device) {
            return;
        }
        let now = tokio::time::Instant::now();
        // Not now: owed, and handed over by the flush of a later tick.
        if self.availability.set(device, online, now)
            && self.connected
            && self.publish_availability(device, online)
        {
            self.availability.sent(device, online, now);
        }
    }

    fn net(&mut self, n: Net) {
        match n {
            Net::Connected => {
                self.connected = true;
                // Subscribed on every connect: the session is not kept.
                let commands = self.controls.is_some()
                    && self
                        .client
                        .try_subscribe(self.topics.commands_filter(), QoS::AtLeastOnce)
                        .is_err();
                if commands
                    || self
                        .client
                        .try_subscribe(self.topics.ha_status(), QoS::AtLeastOnce)
                        .is_err()
                    || self
                        .client
                        .try_publish(self.topics.status(), QoS::AtLeastOnce, true, "online")
                        .is_err()
                {
                    warn!("Home Assistant: the client's queue is full; birth not sent.");
                }
                self.flush();
            }
            Net::Disconnected => self.connected = false,
            Net::HaOnline(true) => {
                self.births.inc();
                if self.rediscovery.online(tokio::time::Instant::now()) {
                    info!("Home Assistant started: sending every config and last state again.");
                    self.announce_all();
                } else {
                    debug!("Home Assistant said online again within announce_interval: answered once at its end.");
                }
            }
            Net::HaOnline(false) => {}
            Net::Set(p) => self.command(&p),
        }
    }

    /// Every config, last state and availability again.
    fn announce_all(&mut self) {
        for a in self.entities.values_mut() {
            a.digest = None;
        }
        let keys: Vec<EntityKey> = self.entities.keys().cloned().collect();
        self.due.extend(keys);
        let latest: Vec<EntityKey> = self.latest.keys().cloned().collect();
        self.held.extend(latest);
        self.availability.resend_all();
        self.flush();
    }

    fn tick(&mut self) {
        if self.rediscovery.owed(tokio::time::Instant::now()) {
            info!("Home Assistant said online during announce_interval: sending every config and last state again.");
            self.announce_all();
        }
        self.forget_silent();
        // States held for configs sent on an earlier tick go now.
        let ready: Vec<EntityKey> = if self.connected {
            self.held
                .iter()
                .filter(|k| !self.due.contains(*k))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        for key in ready {
            let sent = match self.latest.get(&key) {
                Some(p) => self.publish_state(&key, p.clone()),
                None => true,
            };
            if sent {
                self.held.remove(&key);
            }
        }
        self.flush();
        if self.unsaved && self.last_save.elapsed() >= SAVE_EVERY {
            self.save();
        }
    }

    /// Devices not in `[[device]]` and not heard for `forget_after`: their
    /// retained configs, alert states and availability are emptied.
    fn forget_silent(&mut self) {
        let now = self.clock.now().as_millis();
        let registry = &self.registry;
        let registered = |id: &str| {
            DeviceId::new(id)
                .ok()
                .is_some_and(|d| registry.get_exact(&d).is_some())
        };
        let gone = self.devices.expired(now, self.started_ms, &registered);
        if gone.is_empty() {
            return;
        }
        info!(
            devices = gone.len(),
            first = %gone[0],
            "Home Assistant: clearing devices not heard for forget_after."
        );
        let gone: BTreeSet<String> = gone.into_iter().collect();
        let keys: Vec<EntityKey> = self
            .entities
            .keys()
            .filter(|k| gone.contains(&k.device))
            .cloned()
            .collect();
        for k in keys {
            let topics = self.retained_topics(&k);
            self.clears.extend(topics);
            self.entities.remove(&k);
            self.latest.remove(&k);
            self.reading_at.remove(&k);
            self.held.remove(&k);
            self.due.remove(&k);
        }
        self.clears.sort_unstable();
        self.clears.dedup();
        for d in &gone {
            self.devices.remove(d, false);
            self.availability.remove(d);
            self.adapters.remove(d);
            self.models.remove(d);
            self.source_of.remove(d);
        }
        self.unsaved = true;
    }
}

#[cfg(test)]
#[path = "announcer_tests.rs"]
mod tests;
