//! `[home_assistant]`: Home Assistant's MQTT discovery.
//!
//! - `discovery`: topics, ids and the config of each entity (pure);
//! - `announced`: what was announced, on disk, so a restart sends no
//!   unchanged config again and can clear a removed device's;
//! - this file: the one task, fed [`SinkEvent`]s like a `[[sink]]`.
//!
//! Home Assistant is told, never waited for: nothing here can hold up the
//! pipeline. Configs that do not fit the client's queue stay due and go
//! on the next tick; states that do not fit are dropped and counted (the
//! next reading replaces them anyway). Configs are retained QoS 1;
//! sensor states are QoS 0 and not retained (a restarted Home Assistant
//! announces itself, and gets configs and last states again); alert
//! states and availability are retained.

mod announced;
pub mod discovery;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use gateway_core::backoff::Backoff;
use gateway_core::component::Sources;
use gateway_core::config::{HaState, HomeAssistantConfig};
use gateway_core::registry::DeviceInfo;
use gateway_core::telemetry::{Counter, Gauge, LogThrottle};
use gateway_core::units::Units;
use gateway_core::{DeviceId, DeviceModel, DeviceRegistry, Telemetry};
use mqtt_connect::{ConnectionSettings, SetupError};
use rumqttc::{AsyncClient, ConnectionError, Event, LastWill, Packet, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use announced::{Announced, EntityKey};
use discovery::{Common, Component, DeviceBlock, Topics};
use gateway_core::event::{AlertEvent, SinkEvent};

/// Events waiting for the task.
pub const QUEUE: usize = 1024;
/// Requests waiting in the MQTT client: a fleet's configs at start come in
/// bursts of thousands, sent over the next ticks.
const CLIENT_QUEUE: usize = 2048;
/// Due configs go out, and states of just-announced entities follow, on
/// this tick: Home Assistant subscribes to an entity's state topic only
/// after it has read its config.
const TICK: Duration = Duration::from_secs(1);
/// Longest wait before what was announced is written down.
const SAVE_EVERY: Duration = Duration::from_secs(10);
/// How long a stop waits for `offline` to reach the broker.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Messages handed to the broker, by `kind` (`config`, `clear`, `state`,
/// `availability`).
pub const HA_PUBLISHED: &str = "edge_gateway_home_assistant_published_total";
/// States dropped because the client's queue was full or the broker away.
pub const HA_DROPPED: &str = "edge_gateway_home_assistant_dropped_total";
/// `1` while connected to Home Assistant's broker.
pub const HA_CONNECTED: &str = "edge_gateway_home_assistant_connected";

/// What the task needs to know.
pub struct HaSetup {
    pub config: HomeAssistantConfig,
    pub gateway_id: String,
    pub state_dir: PathBuf,
    pub registry: DeviceRegistry,
    pub units: Units,
    /// Which adapter kind heard a reading: a device's model.
    pub sources: Sources,
    pub telemetry: Telemetry,
    /// The gateway's version, in each config's `origin`.
    pub sw_version: String,
}

/// Starts the task; it ends once the sender is dropped, after telling the
/// broker the gateway is offline.
///
/// # Errors
/// A password variable that is not set, unreadable TLS files.
pub fn start(setup: HaSetup) -> Result<(JoinHandle<()>, mpsc::Sender<SinkEvent>), SetupError> {
    let topics = Topics {
        discovery: setup.config.discovery_prefix.clone(),
        state: setup.config.state_prefix_for(&setup.gateway_id),
        gateway: discovery::slug(&setup.gateway_id),
    };
    let settings = ConnectionSettings::new(
        &setup.config.broker,
        format!("edge-gateway-{}-home-assistant", setup.gateway_id),
    );
    let will = LastWill::new(topics.status(), "offline", QoS::AtLeastOnce, true);
    let options = settings.mqtt_options(Some(will))?;
    let (client, eventloop) = AsyncClient::new(options, CLIENT_QUEUE);
    let (net_tx, net_rx) = mpsc::channel(16);
    let poller = tokio::spawn(poll(
        eventloop,
        topics.ha_status(),
        setup.config.broker.max_backoff,
        net_tx,
        setup.telemetry.gauge(HA_CONNECTED, &[]),
    ));
    let (tx, rx) = mpsc::channel(QUEUE);
    let mut announcer = Announcer::new(setup, topics, client);
    announcer.load();
    let mut poller = poller;
    let task = tokio::spawn(async move {
        announcer.run(rx, net_rx).await;
        if tokio::time::timeout(STOP_GRACE, &mut poller).await.is_err() {
            poller.abort();
            warn!("Home Assistant: the broker did not take the disconnect in time.");
        }
    });
    Ok((task, tx))
}

/// What the connection tells the task.
#[derive(Debug)]
enum Net {
    Connected,
    Disconnected,
    /// Home Assistant's birth (`true`) or last will on its status topic.
    HaOnline(bool),
}

/// Drives the MQTT connection (rumqttc sends nothing unless polled).
async fn poll(
    mut eventloop: rumqttc::EventLoop,
    ha_status: String,
    max_backoff: Duration,
    net: mpsc::Sender<Net>,
    connected: Gauge,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), max_backoff);
    let log = LogThrottle::default();
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                connected.set(1.0);
                info!("Home Assistant: connected to the broker.");
                let _ = net.send(Net::Connected).await;
            }
            // A retained birth is an old one, not Home Assistant starting
            // now: answering it would resend every config at each connect.
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == ha_status && !p.retain => {
                let online = p.payload.as_ref() == b"online";
                let _ = net.send(Net::HaOnline(online)).await;
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                connected.set(0.0);
                break;
            }
            Ok(_) => {}
            Err(ConnectionError::RequestsDone) => break,
            Err(e) => {
                connected.set(0.0);
                let _ = net.send(Net::Disconnected).await;
                if let Some(suppressed) = log.allow("connect") {
                    warn!(error = %e, suppressed, "Home Assistant: broker connection failed; retrying.");
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

struct Announcer {
    topics: Topics,
    expire_after: u64,
    state_mode: HaState,
    sw_version: String,
    registry: DeviceRegistry,
    units: Units,
    sources: Sources,
    client: AsyncClient,
    file: gateway_core::state_file::json::JsonStateFile<announced::OnDisk>,
    /// Every entity known, with the digest of the config the broker holds.
    entities: BTreeMap<EntityKey, Announced>,
    /// The adapter kind each device was heard by.
    adapters: HashMap<String, String>,
    /// What the adapters told of each device's make.
    models: HashMap<String, DeviceModel>,
    /// The adapter each device was heard through in this run, for its
    /// adapter's `units`.
    source_of: HashMap<String, gateway_core::SourceId>,
    /// Entities whose config may differ from what the broker holds.
    due: BTreeSet<EntityKey>,
    /// Configs to clear (devices removed from the registry).
    clears: Vec<EntityKey>,
    /// The last state of each entity, for Home Assistant's restarts.
    latest: HashMap<EntityKey, String>,
    /// States held until Home Assistant has read their entity's config.
    held: BTreeSet<EntityKey>,
    /// Device availability: online, and whether the broker has it.
    availability: HashMap<String, (bool, bool)>,
    connected: bool,
    unsaved: bool,
    last_save: tokio::time::Instant,
    log: LogThrottle,
    published: [Counter; 4],
    dropped: Counter,
}

impl Announcer {
    fn new(setup: HaSetup, topics: Topics, client: AsyncClient) -> Self {
        let t = &setup.telemetry;
        let kind = |k: &str| t.counter(HA_PUBLISHED, &[("kind", k)]);
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
            held: BTreeSet::new(),
            availability: HashMap::new(),
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
            dropped: t.counter(HA_DROPPED, &[]),
        }
    }

    fn info(&self, device: &str) -> Option<&DeviceInfo> {
        DeviceId::new(device)
            .ok()
            .and_then(|id| self.registry.get(&id))
    }

    /// What was announced before, the registry's devices, and what to
    /// clear: a registered device no longer in the registry.
    fn load(&mut self) {
        let (entities, problem) = announced::load(&self.file);
        if let Some(p) = problem {
            warn!(problem = %p, "Home Assistant: what was announced before is unknown; every config is sent again.");
        }
        for (key, mut a) in entities {
            let registered = self.info(&key.device).is_some();
            if a.registered && !registered {
                self.clears.push(key.clone());
                self.entities.insert(key, a);
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
        if !self.clears.is_empty() {
            info!(
                entities = self.clears.len(),
                "Home Assistant: clearing the entities of devices removed from the registry."
            );
        }
    }

    /// Makes an entity known; a new one is due for announcing.
    fn know(&mut self, component: Component, device: &str, key: &str) -> EntityKey {
        let k = EntityKey {
            component,
            device: device.to_string(),
            key: key.to_string(),
        };
        if !self.entities.contains_key(&k) {
            let registered = self.info(device).is_some();
            self.entities.insert(
                k.clone(),
                Announced {
                    digest: None,
                    registered,
                    adapter: None,
                    manufacturer: None,
                    model: None,
                },
            );
            self.due.insert(k.clone());
            self.unsaved = true;
        }
        k
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

    async fn run(&mut self, mut events: mpsc::Receiver<SinkEvent>, mut net: mpsc::Receiver<Net>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(e) => self.event(e),
                    None => break,
                },
                Some(n) = net.recv() => self.net(n),
                _ = tick.tick() => self.tick(),
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
                    self.heard_by(device, r.source());
                    let key = self.know(Component::Sensor, device, r.metric().as_str());
                    self.device_online(device, true);
                    self.state(key, r.value().to_string());
                }
            }
            SinkEvent::Window(w) if self.state_mode == HaState::Avg => {
                let device = w.device.as_str().to_string();
                for (metric, stats) in &w.metrics {
                    let key = self.know(Component::Sensor, &device, metric);
                    self.state(key, stats.avg.to_string());
                }
                self.device_online(&device, true);
            }
            SinkEvent::Alert(a) => self.alert(&a),
            SinkEvent::Status(s) => self.device_online(s.device.as_str(), s.online),
            SinkEvent::Readings(_) | SinkEvent::Window(_) | SinkEvent::JournalEpoch(_) => {}
        }
    }

    fn alert(&mut self, a: &AlertEvent) {
        let device = a.device.as_str().to_string();
        let key = self.know(Component::BinarySensor, &device, &a.rule);
        let raised = a.state == "raised";
        self.state(key, if raised { "ON" } else { "OFF" }.to_string());
        // A silent device is unavailable, not at its last value.
        if a.kind == "silence" {
            self.device_online(&device, !raised);
        }
    }

    /// Publishes a state now, or once its entity's config is out.
    fn state(&mut self, key: EntityKey, payload: String) {
        let ready = self.connected && !self.due.contains(&key) && !self.held.contains(&key);
        if ready {
            self.publish_state(&key, payload.clone());
        } else {
            self.held.insert(key.clone());
        }
        self.latest.insert(key, payload);
    }

    fn publish_state(&self, key: &EntityKey, payload: String) {
        let topic = self.topics.state_of(key.component, &key.device, &key.key);
        // Alert states are states of affairs: retained, so a restarted
        // Home Assistant reads them at once. Sensor values go stale.
        let (qos, retain) = match key.component {
            Component::Sensor => (QoS::AtMostOnce, false),
            Component::BinarySensor => (QoS::AtLeastOnce, true),
        };
        match self.client.try_publish(topic, qos, retain, payload) {
            Ok(()) => self.published[2].inc(),
            Err(_) => self.dropped.inc(),
        }
    }

    fn device_online(&mut self, device: &str, online: bool) {
        match self.availability.get(device) {
            Some(&(now, _)) if now == online => {}
            _ => {
                let sent = self.connected && self.publish_availability(device, online);
                self.availability.insert(device.to_string(), (online, sent));
            }
        }
    }

    fn publish_availability(&self, device: &str, online: bool) -> bool {
        let payload = if online { "online" } else { "offline" };
        let sent = self
            .client
            .try_publish(
                self.topics.device_availability(device),
                QoS::AtLeastOnce,
                true,
                payload,
            )
            .is_ok();
        if sent {
            self.published[3].inc();
        }
        sent
    }

    fn net(&mut self, n: Net) {
        match n {
            Net::Connected => {
                self.connected = true;
                if self
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
                info!("Home Assistant started: sending every config and last state again.");
                for a in self.entities.values_mut() {
                    a.digest = None;
                }
                let keys: Vec<EntityKey> = self.entities.keys().cloned().collect();
                self.due.extend(keys);
                let latest: Vec<EntityKey> = self.latest.keys().cloned().collect();
                self.held.extend(latest);
                for v in self.availability.values_mut() {
                    v.1 = false;
                }
                self.flush();
            }
            Net::HaOnline(false) => {}
        }
    }

    fn tick(&mut self) {
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
            self.held.remove(&key);
            if let Some(p) = self.latest.get(&key) {
                self.publish_state(&key, p.clone());
            }
        }
        self.flush();
        if self.unsaved && self.last_save.elapsed() >= SAVE_EVERY {
            self.save();
        }
    }

    /// Sends the due clears, configs and availabilities that fit in the
    /// client's queue; the rest stay due for the next tick.
    fn flush(&mut self) {
        if !self.connected {
            return;
        }
        while let Some(key) = self.clears.last() {
            let topic = self.topics.config(key.component, &key.device, &key.key);
            if self
                .client
                .try_publish(topic, QoS::AtLeastOnce, true, Vec::<u8>::new())
                .is_err()
            {
                return;
            }
            self.published[1].inc();
            if let Some(k) = self.clears.pop() {
                self.entities.remove(&k);
                self.latest.remove(&k);
                self.unsaved = true;
            }
        }
        let due: Vec<EntityKey> = self.due.iter().cloned().collect();
        for key in due {
            let Some((topic, payload)) = self.config_of(&key) else {
                self.due.remove(&key);
                continue;
            };
            let digest = discovery::digest(payload.as_bytes());
            let adapter = self.adapters.get(&key.device).cloned();
            let made = self.models.get(&key.device).cloned();
            let unchanged = self
                .entities
                .get(&key)
                .is_some_and(|a| a.digest == Some(digest));
            if !unchanged {
                if self
                    .client
                    .try_publish(topic, QoS::AtLeastOnce, true, payload)
                    .is_err()
                {
                    if let Some(suppressed) = self.log.allow("full") {
                        warn!(
                            waiting = self.due.len(),
                            suppressed,
                            "Home Assistant: configs wait for room in the client's queue."
                        );
                    }
                    return;
                }
                self.published[0].inc();
                self.unsaved = true;
            }
            if let Some(a) = self.entities.get_mut(&key) {
                a.digest = Some(digest);
                a.adapter = adapter;
                a.manufacturer = made.as_ref().and_then(|m| m.manufacturer.clone());
                a.model = made.map(|m| m.model);
            }
            self.due.remove(&key);
        }
        let unsent: Vec<(String, bool)> = self
            .availability
            .iter()
            .filter(|(_, (_, sent))| !sent)
            .map(|(d, (online, _))| (d.clone(), *online))
            .collect();
        for (device, online) in unsent {
            if self.publish_availability(&device, online) {
                self.availability.insert(device, (online, true));
            }
        }
    }

    fn config_of(&self, key: &EntityKey) -> Option<(String, String)> {
        let info = self.info(&key.device);
        let made = self.models.get(&key.device);
        let device = DeviceBlock {
            id: &key.device,
            name: info.map_or(key.device.as_str(), |i| i.name.as_str()),
            model: made.map(|m| m.model.as_str()).or_else(|| {
                self.adapters
                    .get(&key.device)
                    .and_then(|k| discovery::model_of_adapter(k))
            }),
            manufacturer: made.and_then(|m| m.manufacturer.as_deref()),
        };
        let common = Common {
            topics: &self.topics,
            expire_after: self.expire_after,
            sw_version: &self.sw_version,
        };
        let config = match key.component {
            Component::Sensor => {
                let source = self
                    .source_of
                    .get(&key.device)
                    .copied()
                    .unwrap_or(gateway_core::SourceId::UNKNOWN);
                let metric = self.units.of(info.map(|i| &i.units), source, &key.key);
                discovery::sensor_config(&common, &device, &key.key, &metric)
            }
            Component::BinarySensor => discovery::alert_config(&common, &device, &key.key),
        };
        let topic = self.topics.config(key.component, &key.device, &key.key);
        Some((topic, config.to_string()))
    }

    fn save(&mut self) {
        // Only what the broker holds is remembered as announced.
        let mut on_disk = self.entities.clone();
        for k in &self.clears {
            on_disk.remove(k);
        }
        for (k, a) in &mut on_disk {
            if a.adapter.is_none() {
                a.adapter = self.adapters.get(&k.device).cloned();
            }
            if a.model.is_none() {
                if let Some(m) = self.models.get(&k.device) {
                    a.manufacturer = m.manufacturer.clone();
                    a.model = Some(m.model.clone());
                }
            }
        }
        match announced::save(&self.file, &on_disk) {
            Ok(()) => self.unsaved = false,
            Err(e) => {
                if let Some(suppressed) = self.log.allow("save") {
                    warn!(error = %e, suppressed, "Home Assistant: cannot write what was announced; a restart will send the configs again.");
                }
            }
        }
        self.last_save = tokio::time::Instant::now();
    }

    /// Last configs that fit, the record of them, then `offline` (a clean
    /// disconnect sends no last will) and the disconnect.
    async fn stop(&mut self) {
        self.flush();
        if self.unsaved {
            self.save();
        }
        if self.connected {
            let _ = self
                .client
                .publish(self.topics.status(), QoS::AtLeastOnce, true, "offline")
                .await;
        }
        let _ = self.client.disconnect().await;
    }
}
