//! What Home Assistant is told about one entity: its discovery topic and
//! config, built from the units table. Pure, so every key can be checked
//! without a broker.
//!
//! Home Assistant refuses (or warns about and ignores the class of) a
//! sensor whose `unit_of_measurement` is not one its `device_class`
//! accepts, and a `device_class: energy` with `state_class: measurement`:
//! [`classify`] gives a class only where the unit fits it.

use gateway_core::units::MetricInfo;
use serde_json::{json, Map, Value};

use super::ids::Ids;

/// The kinds of entity the gateway announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Component {
    /// A device's metric.
    Sensor,
    /// An alert rule on a device (`device_class: problem`).
    BinarySensor,
    /// A writable number (`[home_assistant] commands`).
    Number,
    /// A writable 0/1 point (`[home_assistant] commands`).
    Switch,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sensor => "sensor",
            Self::BinarySensor => "binary_sensor",
            Self::Number => "number",
            Self::Switch => "switch",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sensor" => Some(Self::Sensor),
            "binary_sensor" => Some(Self::BinarySensor),
            "number" => Some(Self::Number),
            "switch" => Some(Self::Switch),
            _ => None,
        }
    }

    /// A control Home Assistant writes through (a command topic).
    pub fn is_control(self) -> bool {
        matches!(self, Self::Number | Self::Switch)
    }
}

/// A topic level and id part made of what Home Assistant accepts in a
/// discovery `object_id` (`[a-z0-9_-]`): a MAC's colons and a topic's
/// slashes become `_`. Lossy, so only for the gateway's own id (from the
/// config) and the ids written before [`super::ids`].
pub fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Device class, state class and whether the entity is the device's
/// upkeep (signal, link quality) rather than what it measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Class {
    pub device_class: Option<&'static str>,
    pub state_class: &'static str,
    pub diagnostic: bool,
}

/// Home Assistant's device class for a metric, only where its unit is one
/// that class accepts.
pub fn classify(metric: &str, info: &MetricInfo) -> Class {
    let unit = info.unit.as_str();
    let m = metric.to_ascii_lowercase();
    let fits = |units: &[&str]| units.contains(&unit);
    let device_class = match info.quantity {
        "temperature" if fits(&["°C", "°F", "K"]) => Some("temperature"),
        "humidity" if fits(&["%"]) => Some("humidity"),
        "CO₂" if fits(&["ppm"]) => Some("carbon_dioxide"),
        "TVOC" if fits(&["ppb", "ppm"]) => Some("volatile_organic_compounds_parts"),
        "TVOC" if fits(&["µg/m³", "mg/m³"]) => Some("volatile_organic_compounds"),
        "particulates" if fits(&["µg/m³"]) => match m.as_str() {
            "pm1" | "pm1_0" => Some("pm1"),
            "pm10" => Some("pm10"),
            _ => Some("pm25"),
        },
        "pressure"
            if fits(&[
                "Pa", "hPa", "kPa", "bar", "cbar", "mbar", "mmHg", "inHg", "psi",
            ]) =>
        {
            Some("pressure")
        }
        "illuminance" if fits(&["lx"]) => Some("illuminance"),
        "energy" if fits(&["Wh", "kWh", "MWh", "mWh"]) => Some("energy"),
        "power" if fits(&["W", "kW", "mW", "MW"]) => Some("power"),
        "current" if fits(&["A", "mA"]) => Some("current"),
        "voltage" if fits(&["V", "mV", "µV", "kV"]) => Some("voltage"),
        "battery" if fits(&["%"]) => Some("battery"),
        "battery" if fits(&["V", "mV"]) => Some("voltage"),
        "signal" if fits(&["dBm", "dB"]) => Some("signal_strength"),
        _ => None,
    };
    Class {
        device_class,
        // A meter's reading only grows; Home Assistant refuses
        // `measurement` for energy.
        state_class: if device_class == Some("energy") {
            "total_increasing"
        } else {
            "measurement"
        },
        diagnostic: matches!(info.quantity, "signal" | "signal-to-noise" | "acknowledged"),
    }
}

/// `battery_v` → `Battery v`: the entity's name beside the device's.
pub(super) fn title(metric: &str) -> String {
    let spaced = metric.replace(['_', '-', '.'], " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => spaced,
    }
}

/// Where everything of one gateway goes.
#[derive(Debug, Clone)]
pub struct Topics {
    /// `discovery_prefix`.
    pub discovery: String,
    /// `state_prefix` with the gateway filled in.
    pub state: String,
    /// The gateway's id, as a slug.
    pub gateway: String,
    /// How device ids, metrics and rules are written in topics and ids.
    pub ids: Ids,
}

impl Topics {
    /// The gateway's retained `online`/`offline` (birth and last will).
    pub fn status(&self) -> String {
        format!("{}/status", self.state)
    }

    /// Home Assistant's own birth and last will.
    pub fn ha_status(&self) -> String {
        format!("{}/status", self.discovery)
    }

    /// A device's retained `online`/`offline` (its silence rule, its own
    /// MQTT last will).
    pub fn device_availability(&self, device: &str) -> String {
        format!(
            "{}/{}/availability",
            self.state,
            self.ids.device_level(device)
        )
    }

    /// The device's `identifiers` entry: one Home Assistant device per id.
    pub fn device_identifier(&self, device: &str) -> String {
        format!("{}_{}", self.gateway, self.ids.device_level(device))
    }

    pub fn object_id(&self, component: Component, device: &str, key: &str) -> String {
        // A control has its metric's object id: Home Assistant keys
        // unique ids per platform, and its entity id differs by domain.
        let sep = match component {
            Component::Sensor | Component::Number | Component::Switch => "_",
            Component::BinarySensor => "_alert_",
        };
        format!("{}_{}", self.gateway, self.ids.object_id(device, sep, key))
    }

    pub fn config(&self, component: Component, device: &str, key: &str) -> String {
        self.config_at(component, &self.object_id(component, device, key))
    }

    fn config_at(&self, component: Component, object_id: &str) -> String {
        format!(
            "{}/{}/{object_id}/config",
            self.discovery,
            component.as_str()
        )
    }

    pub fn state_of(&self, component: Component, device: &str, key: &str) -> String {
        let (device, key) = (self.ids.device_level(device), Ids::key_level(key));
        match component {
            // A control shows its metric's state.
            Component::Sensor | Component::Number | Component::Switch => {
                format!("{}/{device}/{key}", self.state)
            }
            Component::BinarySensor => format!("{}/{device}/alert/{key}", self.state),
        }
    }

    /// Where Home Assistant publishes what a control is set to.
    pub fn command_of(&self, device: &str, key: &str) -> String {
        format!(
            "{}/{}/{}/set",
            self.state,
            self.ids.device_level(device),
            Ids::key_level(key)
        )
    }

    /// The subscription that takes every control's command topic.
    pub fn commands_filter(&self) -> String {
        format!("{}/+/+/set", self.state)
    }

    /// The topics this gateway used for an entity before ids were made
    /// injective: (config, state, device availability).
    pub fn legacy(&self, component: Component, device: &str, key: &str) -> [String; 3] {
        let (d, k) = (slug(device), slug(key));
        let (object_id, state) = match component {
            Component::Sensor | Component::Number | Component::Switch => (
                format!("{}_{d}_{k}", self.gateway),
                format!("{}/{d}/{k}", self.state),
            ),
            Component::BinarySensor => (
                format!("{}_{d}_alert_{k}", self.gateway),
                format!("{}/{d}/alert/{k}", self.state),
            ),
        };
        [
            self.config_at(component, &object_id),
            state,
            format!("{}/{d}/availability", self.state),
        ]
    }
}

/// What is known of a device for its `device` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceBlock<'a> {
    pub id: &'a str,
    /// The registry's name, else the id.
    pub name: &'a str,
    /// What the adapter that heard it knows: its make (`RuuviTag`), else
    /// its kind (`LoRaWAN device`).
    pub model: Option<&'a str>,
    pub manufacturer: Option<&'a str>,
}

/// Settings shared by every config.
#[derive(Debug, Clone)]
pub struct Common<'a> {
    pub topics: &'a Topics,
    /// Whole seconds; 0 leaves `expire_after` out.
    pub expire_after: u64,
    pub sw_version: &'a str,
}

pub(super) fn base(
    common: &Common<'_>,
    component: Component,
    device: &DeviceBlock<'_>,
    key: &str,
    name: String,
) -> Map<String, Value> {
    let t = common.topics;
    let object_id = t.object_id(component, device.id, key);
    let mut dev = Map::new();
    dev.insert(
        "identifiers".into(),
        json!([t.device_identifier(device.id)]),
    );
    dev.insert("name".into(), json!(device.name));
    if let Some(model) = device.model {
        dev.insert("model".into(), json!(model));
    }
    if let Some(manufacturer) = device.manufacturer {
        dev.insert("manufacturer".into(), json!(manufacturer));
    }
    let mut c = Map::new();
    c.insert("name".into(), json!(name));
    c.insert("unique_id".into(), json!(object_id));
    c.insert("object_id".into(), json!(object_id));
    c.insert(
        "default_entity_id".into(),
        json!(format!("{}.{object_id}", component.as_str())),
    );
    c.insert("device".into(), Value::Object(dev));
    c.insert(
        "origin".into(),
        json!({ "name": "edge-gateway", "sw_version": common.sw_version }),
    );
    c.insert(
        "state_topic".into(),
        json!(t.state_of(component, device.id, key)),
    );
    c
}

/// A metric's sensor config.
pub fn sensor_config(
    common: &Common<'_>,
    device: &DeviceBlock<'_>,
    metric: &str,
    info: &MetricInfo,
) -> Value {
    let t = common.topics;
    let class = classify(metric, info);
    let mut c = base(common, Component::Sensor, device, metric, title(metric));
    if let Some(dc) = class.device_class {
        c.insert("device_class".into(), json!(dc));
    }
    c.insert("state_class".into(), json!(class.state_class));
    if !info.unit.is_empty() {
        c.insert("unit_of_measurement".into(), json!(info.unit));
    }
    if let Some(p) = info.precision {
        c.insert("suggested_display_precision".into(), json!(p));
    }
    if class.diagnostic {
        c.insert("entity_category".into(), json!("diagnostic"));
    }
    c.insert("value_template".into(), json!("{{ value }}"));
    // Both: the gateway is running, and the device is not silent.
    c.insert(
        "availability".into(),
        json!([
            { "topic": t.status() },
            { "topic": t.device_availability(device.id) },
        ]),
    );
    c.insert("availability_mode".into(), json!("all"));
    if common.expire_after > 0 {
        c.insert("expire_after".into(), json!(common.expire_after));
    }
    Value::Object(c)
}

/// An alert rule's problem sensor on one device. Available while the
/// gateway runs, also when the device is silent: that may be the problem.
pub fn alert_config(common: &Common<'_>, device: &DeviceBlock<'_>, rule: &str) -> Value {
    let t = common.topics;
    let mut c = base(
        common,
        Component::BinarySensor,
        device,
        rule,
        format!("Alert {rule}"),
    );
    c.insert("device_class".into(), json!("problem"));
    c.insert("payload_on".into(), json!("ON"));
    c.insert("payload_off".into(), json!("OFF"));
    c.insert("value_template".into(), json!("{{ value }}"));
    c.insert("availability".into(), json!([{ "topic": t.status() }]));
    Value::Object(c)
}

/// FNV-1a over a config's text: the same bytes give the same number in
/// every build (std's hasher promises no such thing), so a restart can
/// tell an unchanged config from one it must send again.
pub fn digest(bytes: &[u8]) -> u64 {
    gateway_core::command::stable_digest(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_core::units::known;

    fn topics() -> Topics {
        Topics {
            discovery: "homeassistant".into(),
            state: "edge-gateway/gw-1".into(),
            gateway: slug("gw-1"),
            ids: Ids::default(),
        }
    }

    #[test]
    fn units_decide_the_class_only_where_home_assistant_accepts_them() {
        for (metric, class) in [
            ("temperature", Some("temperature")),
            ("humidity", Some("humidity")),
            ("co2", Some("carbon_dioxide")),
            ("tvoc", Some("volatile_organic_compounds_parts")),
            ("pm2_5", Some("pm25")),
            ("pm10", Some("pm10")),
            ("pressure", Some("pressure")),
            ("battery", Some("battery")),
            ("battery_v", Some("voltage")),
            ("battery_mv", Some("voltage")),
            ("rssi", Some("signal_strength")),
            ("snr", None),
            ("gas", None),
        ] {
            assert_eq!(
                classify(metric, &known(metric)).device_class,
                class,
                "{metric}"
            );
        }
        let mut odd = known("temperature");
        odd.unit = "degrees".into();
        assert_eq!(classify("temperature", &odd).device_class, None);
        let energy = classify("energy", &known("energy"));
        assert_eq!(energy.state_class, "total_increasing");
        assert!(classify("rssi", &known("rssi")).diagnostic);
    }

    #[test]
    fn a_sensor_config_has_stable_ids_and_both_availabilities() {
        let t = topics();
        let common = Common {
            topics: &t,
            expire_after: 2700,
            sw_version: "0.1.0",
        };
        let dev = DeviceBlock {
            // As the gateway stores a MAC: lower case.
            id: "a4:c1:38:00:11:22",
            name: "Kitchen",
            model: Some("LYWSD03MMC (PVVX firmware)"),
            manufacturer: Some("Xiaomi"),
        };
        let c = sensor_config(&common, &dev, "temperature", &known("temperature"));
        assert_eq!(c["unique_id"], "gw-1_a4_c1_38_00_11_22_temperature");
        assert_eq!(c["object_id"], c["unique_id"]);
        assert_eq!(
            t.config(Component::Sensor, dev.id, "temperature"),
            "homeassistant/sensor/gw-1_a4_c1_38_00_11_22_temperature/config"
        );
        assert_eq!(c["unit_of_measurement"], "°C");
        assert_eq!(c["expire_after"], 2700);
        assert_eq!(c["availability_mode"], "all");
        assert_eq!(c["availability"][0]["topic"], "edge-gateway/gw-1/status");
        assert_eq!(
            c["availability"][1]["topic"],
            "edge-gateway/gw-1/a4_c1_38_00_11_22/availability"
        );
        assert_eq!(c["device"]["name"], "Kitchen");
        assert_eq!(c["device"]["manufacturer"], "Xiaomi");
        assert_eq!(c["device"]["model"], "LYWSD03MMC (PVVX firmware)");
        let unknown_make = DeviceBlock {
            model: Some("MQTT sensor"),
            manufacturer: None,
            ..dev.clone()
        };
        let c2 = sensor_config(&common, &unknown_make, "temperature", &known("temperature"));
        assert_eq!(c2["device"]["model"], "MQTT sensor");
        assert!(c2["device"].get("manufacturer").is_none());
        let again = sensor_config(&common, &dev, "temperature", &known("temperature"));
        assert_eq!(
            digest(c.to_string().as_bytes()),
            digest(again.to_string().as_bytes())
        );
        let alert = alert_config(&common, &dev, "too-hot");
        assert_eq!(alert["device_class"], "problem");
        assert_eq!(alert["unique_id"], "gw-1_a4_c1_38_00_11_22_alert_too-hot");
    }
}
