//! A small simulated building, publishing like the ESP32 nodes do.
//!
//! [`Building`] is the pure model: each [`Building::tick`] is one second of
//! readings as MQTT messages, fully determined by the seed. [`Simulator`]
//! publishes them to the embedded broker once a second. Each room uses a
//! different payload form the gateway reads, so the demo exercises them all.

use std::f64::consts::TAU;
use std::time::Duration;

use rumqttc::{AsyncClient, QoS};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Living room node: one plain number per topic, `sensors/data/{device}/{metric}`.
pub const LIVING_ROOM: &str = "a2:b2:c2:d2:e2:f2";
/// Kitchen node: one JSON object per second on `sensors/{device}`.
pub const KITCHEN: &str = "kitchen-1";
/// Office node: a BME680 line as CSV on `esp32/{device}/csv`.
pub const OFFICE: &str = "office-2";
/// A fridge whose compressor has failed: its temperature climbs steadily.
pub const FRIDGE: &str = "fridge-2";
/// Every simulated device, in the order they are announced.
pub const DEVICES: [&str; 4] = [LIVING_ROOM, KITCHEN, OFFICE, FRIDGE];

/// Fridge warming rate once its compressor has failed, °C per second:
/// fast enough to see within a few windows.
const FRIDGE_WARMING: f64 = 0.05;
/// The fridge cannot get warmer than the kitchen around it, °C.
const FRIDGE_CEILING: f64 = 21.0;
/// Length of one simulated "occupancy cycle" (people come in, then leave),
/// in seconds: a day compressed into a few minutes.
const OCCUPANCY_PERIOD: u64 = 180;

/// One MQTT message the building sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: String,
    /// Text, as the nodes send it: a number, a JSON object or a CSV line.
    pub payload: String,
    /// Only device announcements are retained, as with a real node's
    /// birth message, so a subscriber that comes later still sees them.
    pub retain: bool,
}

/// xorshift64: tiny, seedable and the same on every platform, so a demo run
/// is reproducible without the `rand` crate.
#[derive(Debug, Clone)]
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        // Zero is xorshift's one fixed point.
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in [0, 1): the top 53 bits fill an f64 mantissa exactly.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Roughly normal noise with standard deviation `sd` (Irwin–Hall of 3).
    fn noise(&mut self, sd: f64) -> f64 {
        (self.unit() + self.unit() + self.unit() - 1.5) * 2.0 * sd
    }
}

/// One room's climate: temperature, humidity and CO2 driven by occupancy.
#[derive(Debug, Clone)]
struct Room {
    base_temp: f64,
    base_humidity: f64,
    max_people: f64,
    /// Offset into the occupancy cycle, so rooms fill at different times.
    phase: u64,
    co2: f64,
    warmth: f64,
}

/// A room's readings for one second.
struct Climate {
    temperature: f64,
    humidity: f64,
    co2: f64,
    people: f64,
}

impl Room {
    fn new(base_temp: f64, base_humidity: f64, max_people: f64, phase: u64) -> Self {
        Self {
            base_temp,
            base_humidity,
            max_people,
            phase,
            co2: 450.0,
            warmth: 0.0,
        }
    }

    fn step(&mut self, t: u64, rng: &mut XorShift) -> Climate {
        let in_cycle = (t + self.phase) % OCCUPANCY_PERIOD;
        let people = if in_cycle < OCCUPANCY_PERIOD / 2 {
            self.max_people
        } else {
            0.0
        };
        // CO2 relaxes towards what the people in the room exhale into it
        // (time constant ~30 s): from ~420 ppm empty up to ~1150 ppm full.
        let target = 420.0 + 250.0 * people;
        self.co2 += (target - self.co2) * 0.03 + rng.noise(4.0);
        self.warmth += (0.15 * people - self.warmth) * 0.01;
        let drift = 0.6 * (TAU * (t as f64 + self.phase as f64) / 600.0).sin();
        Climate {
            temperature: self.base_temp + drift + self.warmth + rng.noise(0.05),
            humidity: self.base_humidity
                + 2.0 * (TAU * t as f64 / 900.0).cos()
                + 0.8 * people
                + rng.noise(0.3),
            co2: self.co2.max(400.0),
            people,
        }
    }
}

/// The simulated building: three rooms and a failing fridge.
#[derive(Debug, Clone)]
pub struct Building {
    rng: XorShift,
    living: Room,
    kitchen: Room,
    office: Room,
    fridge: f64,
    t: u64,
    pressure: f64,
}

impl Building {
    /// A building whose readings are fully determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: XorShift::new(seed),
            living: Room::new(21.4, 44.0, 3.0, 0),
            kitchen: Room::new(22.0, 48.0, 2.0, 60),
            office: Room::new(20.8, 40.0, 3.0, 120),
            fridge: 4.0,
            t: 0,
            pressure: 1013.2,
        }
    }

    /// The retained `online` each device announces when it connects.
    pub fn announcements() -> Vec<Message> {
        DEVICES
            .iter()
            .map(|d| Message {
                topic: format!("sensors/status/{d}"),
                payload: "online".into(),
                retain: true,
            })
            .collect()
    }

    /// One second of readings from every device.
    pub fn tick(&mut self) -> Vec<Message> {
        let t = self.t;
        self.t += 1;
        let rng = &mut self.rng;
        let mut out = Vec::with_capacity(8);
        let msg = |topic: String, payload: String| Message {
            topic,
            payload,
            retain: false,
        };

        let living = self.living.step(t, rng);
        for (metric, value) in [
            ("temperature", format!("{:.2}", living.temperature)),
            ("humidity", format!("{:.1}", living.humidity)),
            ("co2", format!("{:.0}", living.co2)),
        ] {
            out.push(msg(format!("sensors/data/{LIVING_ROOM}/{metric}"), value));
        }

        let kitchen = self.kitchen.step(t, rng);
        let body = json!({
            "temperature": round(kitchen.temperature, 2),
            "humidity": round(kitchen.humidity, 1),
            "co2": round(kitchen.co2, 0),
        });
        out.push(msg(format!("sensors/{KITCHEN}"), body.to_string()));

        // Columns: temperature (°C), pressure (hPa), humidity (%), gas
        // resistance (Ω, lower when the air is worse).
        let office = self.office.step(t, rng);
        self.pressure += rng.noise(0.02);
        let gas = 15_000.0 - 1_500.0 * office.people + rng.noise(150.0);
        out.push(msg(
            format!("esp32/{OFFICE}/csv"),
            format!(
                "{:.2},{:.1},{:.1},{:.0}",
                office.temperature, self.pressure, office.humidity, gas
            ),
        ));

        self.fridge = (self.fridge + FRIDGE_WARMING).min(FRIDGE_CEILING);
        out.push(msg(
            format!("sensors/data/{FRIDGE}/temperature"),
            format!("{:.2}", self.fridge + rng.noise(0.02)),
        ));
        out
    }
}

fn round(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

/// The simulator task, publishing to the embedded broker.
#[derive(Debug)]
pub struct Simulator {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Simulator {
    /// Connects to the broker on `port` and publishes a [`Building`] seeded
    /// with `seed` once a second until [`Simulator::stop`].
    pub fn spawn(port: u16, seed: u64) -> Self {
        let stop = CancellationToken::new();
        let (client, eventloop) =
            AsyncClient::new(super::mqtt_options(port, "edge-gateway-demo-simulator"), 64);
        let poller = super::spawn_poller(eventloop, |_| {});
        let task = tokio::spawn(publish_loop(
            client,
            Building::new(seed),
            stop.clone(),
            poller,
        ));
        Self { stop, task }
    }

    /// Stops publishing and disconnects.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await {
            warn!(error = %e, "Demo simulator task failed.");
        }
    }
}

async fn publish_loop(
    client: AsyncClient,
    mut building: Building,
    stop: CancellationToken,
    poller: super::Poller,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // After a stall, carry on at one message set per second rather than
    // catching up in a burst a real sensor would never send.
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pending = Building::announcements();
    loop {
        for m in pending.drain(..) {
            let sent = tokio::select! {
                _ = stop.cancelled() => break,
                r = client.publish(m.topic, QoS::AtLeastOnce, m.retain, m.payload) => r,
            };
            if let Err(e) = sent {
                warn!(error = %e, "Demo simulator cannot publish; stopping it.");
                stop.cancel();
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => pending = building.tick(),
        }
    }
    super::disconnect(&client, poller).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(msgs: &[Message], topic: &str) -> f64 {
        let m = msgs.iter().find(|m| m.topic == topic).unwrap();
        m.payload.parse().unwrap()
    }

    #[test]
    fn the_same_seed_gives_the_same_building() {
        let (mut a, mut b) = (Building::new(7), Building::new(7));
        for _ in 0..50 {
            assert_eq!(a.tick(), b.tick());
        }
        assert_ne!(Building::new(7).tick(), Building::new(8).tick());
    }

    #[test]
    fn readings_stay_in_plausible_ranges_and_the_fridge_warms_up() {
        let mut b = Building::new(1);
        let mut fridge = Vec::new();
        for _ in 0..600 {
            let msgs = b.tick();
            let temp = value(&msgs, "sensors/data/a2:b2:c2:d2:e2:f2/temperature");
            let co2 = value(&msgs, "sensors/data/a2:b2:c2:d2:e2:f2/co2");
            assert!((19.5..=23.5).contains(&temp), "temperature {temp}");
            assert!((400.0..=1200.0).contains(&co2), "co2 {co2}");
            let kitchen: serde_json::Value = serde_json::from_str(
                &msgs
                    .iter()
                    .find(|m| m.topic == "sensors/kitchen-1")
                    .unwrap()
                    .payload,
            )
            .unwrap();
            assert!(kitchen["humidity"].as_f64().unwrap() > 30.0);
            let csv = &msgs
                .iter()
                .find(|m| m.topic == "esp32/office-2/csv")
                .unwrap()
                .payload;
            assert_eq!(csv.split(',').count(), 4, "{csv}");
            fridge.push(value(&msgs, "sensors/data/fridge-2/temperature"));
        }
        assert!(fridge[0] < 4.5, "starts cold: {}", fridge[0]);
        assert!(
            fridge[100] > fridge[0] + 4.0,
            "warms ~0.05 °C/s: {}",
            fridge[100]
        );
        assert!(fridge[599] <= FRIDGE_CEILING + 0.1);
    }

    #[test]
    fn every_device_announces_itself_retained() {
        let a = Building::announcements();
        assert_eq!(a.len(), DEVICES.len());
        assert!(a.iter().all(|m| m.retain && m.payload == "online"));
        assert_eq!(a[3].topic, "sensors/status/fridge-2");
    }
}
