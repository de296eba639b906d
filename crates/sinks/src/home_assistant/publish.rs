//! What the task hands the broker: states, availability, the due
//! configs and clears (a bounded number per tick), and the record of them.

use rumqttc::QoS;
use tracing::warn;

use super::announced::{self, EntityKey};
use super::announcer::Announcer;
use super::controls;
use super::discovery::{self, Common, Component, DeviceBlock};
use super::CONFIGS_PER_TICK;

impl Announcer {
    /// Hands a state to the client; `false` when its queue is full (the
    /// caller holds the state for the next tick: the latest value of an
    /// entity is never dropped, only replaced by a newer one).
    pub(super) fn publish_state(&self, key: &EntityKey, payload: String) -> bool {
        let topic = self.topics.state_of(key.component, &key.device, &key.key);
        // Alert states are states of affairs: retained, so a restarted
        // Home Assistant reads them at once. Sensor values go stale.
        let (qos, retain) = match key.component {
            Component::Sensor | Component::Number | Component::Switch => (QoS::AtMostOnce, false),
            Component::BinarySensor => (QoS::AtLeastOnce, true),
        };
        match self.client.try_publish(topic, qos, retain, payload) {
            Ok(()) => {
                self.published[2].inc();
                true
            }
            Err(_) => {
                self.deferred.inc();
                false
            }
        }
    }

    pub(super) fn publish_availability(&self, device: &str, online: bool) -> bool {
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

    pub(super) fn flush(&mut self) {
        self.flush_until(Some(tokio::time::Instant::now()));
    }

    /// As [`Self::flush`], with the availabilities owed until `now`
    /// (`None`: every one, at stop, so the broker keeps the last state).
    fn flush_until(&mut self, now: Option<tokio::time::Instant>) {
        if !self.connected {
            return;
        }
        // An empty retained message removes what the broker kept there.
        let mut budget = CONFIGS_PER_TICK;
        while let Some(topic) = self.clears.last() {
            if budget == 0
                || self
                    .client
                    .try_publish(topic.clone(), QoS::AtLeastOnce, true, Vec::<u8>::new())
                    .is_err()
            {
                return;
            }
            budget -= 1;
            self.published[1].inc();
            self.clears.pop();
            self.unsaved = true;
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
                if budget == 0 {
                    // The rest go on the next ticks.
                    return;
                }
                if self
                    .client
                    .try_publish(topic.clone(), QoS::AtLeastOnce, true, payload)
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
                budget -= 1;
                self.published[0].inc();
                self.unsaved = true;
            }
            if let Some(a) = self.entities.get_mut(&key) {
                a.digest = Some(digest);
                a.topic = Some(topic);
                a.adapter = adapter;
                a.manufacturer = made.as_ref().and_then(|m| m.manufacturer.clone());
                a.model = made.map(|m| m.model);
            }
            self.due.remove(&key);
        }
        // Availability shares the budget: a re-announcement marks every
        // device's unsent at once.
        let at = tokio::time::Instant::now();
        for (device, online) in self.availability.due(now, budget) {
            if self.publish_availability(&device, online) {
                self.availability.sent(&device, online, at);
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
                    .and_then(|k| self.sources.kind_info(k))
                    .map(|k| k.model)
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
                let metric =
                    self.units
                        .of_device(&key.device, info.map(|i| &i.units), source, &key.key);
                discovery::sensor_config(&common, &device, &key.key, &metric)
            }
            Component::BinarySensor => discovery::alert_config(&common, &device, &key.key),
            // Known only once the adapters said what is writable.
            Component::Number | Component::Switch => {
                let point = self.controls.as_ref()?.points.get(key)?;
                let source = self
                    .source_of
                    .get(&key.device)
                    .copied()
                    .unwrap_or(gateway_core::SourceId::UNKNOWN);
                let metric = self.units.of(info.map(|i| &i.units), source, &key.key);
                controls::control_config(&common, &device, point, &metric)?
            }
        };
        let topic = self.topics.config(key.component, &key.device, &key.key);
        Some((topic, config.to_string()))
    }

    pub(super) fn save(&mut self) {
        let mut on_disk = self.entities.clone();
        for (k, a) in &mut on_disk {
            a.heard = self.devices.heard_at(&k.device);
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
        match announced::save(&self.file, &on_disk, &self.clears) {
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
    pub(super) async fn stop(&mut self) {
        self.flush_until(None);
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
