//! Byte compatibility of the sensor nodes' encoders (`firmware/codec`, the
//! `no_std` crate Rust nodes link) with the gateway's LoRaWAN payload
//! decoders, both ways:
//! - what the firmware encodes, the gateway decodes to the same values
//!   within each format's resolution (random readings, fixed seed);
//! - the published frames (`tests/data/vectors`: Cayenne LPP and BTHome
//!   v2, and the seed frames the gateway's docs print) are what the
//!   firmware encodes for their values.
//!
//! The MicroPython library (`firmware/micropython/lib/wire.py`) is held to
//! the same frames by its own tests, through `edge-gateway decode`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use adapters::lorawan::codecs::{Codec, DecodedValue};
use firmware_codec::{batch, bitpacked, compact_i16, CompactI16, Lpp, LppType};

/// xorshift64: a fixed seed, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `[lo, hi)`, with arbitrary decimals (not on the grid).
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn value(values: &[DecodedValue], metric: &str) -> f64 {
    values
        .iter()
        .find(|v| v.metric == metric)
        .unwrap_or_else(|| panic!("no {metric} in {values:?}"))
        .value
}

/// Within half a step of the resolution (plus float noise).
fn assert_within(got: f64, sent: f64, step: f64, what: &str) {
    assert!(
        (got - sent).abs() <= step / 2.0 + 1e-9,
        "{what}: sent {sent}, decoded {got} (resolution {step})"
    );
}

#[test]
fn compact_i16_random_readings_decode_to_the_sent_values() {
    let mut rng = Rng(0x5EED_0001);
    for _ in 0..10_000 {
        let (t, h, b) = (
            rng.uniform(-40.0, 85.0),
            rng.uniform(0.0, 100.0),
            rng.uniform(2.5, 4.2),
        );
        let frame = compact_i16(t, h, b).unwrap();
        let got = Codec::CompactI16.decode(&frame).unwrap();
        assert_within(value(&got, "temperature"), t, 0.1, "temperature");
        assert_within(value(&got, "humidity"), h, 1.0, "humidity");
        assert_within(value(&got, "battery"), b, 0.01, "battery");
        // Exactly the raw field the struct holds, not merely close.
        let raw = CompactI16::new(t, h, b).unwrap();
        assert_eq!(
            value(&got, "temperature"),
            f64::from(raw.temperature_decidegrees) / 10.0
        );
    }
}

#[test]
fn bitpacked_random_readings_decode_to_the_sent_values() {
    let mut rng = Rng(0x5EED_0002);
    for _ in 0..10_000 {
        let (t, h, b) = (
            rng.uniform(-20.0, 107.5),
            rng.uniform(0.0, 100.0),
            rng.uniform(0.0, 100.0),
        );
        let frame = bitpacked(t, h, b).unwrap();
        let got = Codec::Bitpacked.decode(&frame).unwrap();
        assert_within(value(&got, "temperature"), t, 0.5, "temperature");
        assert_within(value(&got, "humidity"), h, 1.0, "humidity");
        assert_within(value(&got, "battery"), b, 1.0, "battery");
    }
}

#[test]
fn batch_random_batches_decode_with_their_times() {
    let mut rng = Rng(0x5EED_0003);
    let mut buf = [0u8; 5 + 6 * 255];
    for _ in 0..500 {
        let n = (rng.next() % 256) as usize;
        let base = (rng.next() % u64::from(u32::MAX - 65_535)) as u32;
        let readings: Vec<(u16, f64)> = (0..n)
            .map(|_| (rng.next() as u16, rng.uniform(-1.0e6, 1.0e6)))
            .collect();
        let len = batch(base, &readings, &mut buf).unwrap();
        assert_eq!(len, 5 + 6 * n);
        let got = Codec::Batch.decode(&buf[..len]).unwrap();
        assert_eq!(got.len(), n);
        for ((delta, sent), v) in readings.iter().zip(&got) {
            assert_eq!(v.metric, "value");
            assert_eq!(
                v.time_ms,
                Some((i64::from(base) + i64::from(*delta)) * 1000)
            );
            assert_within(v.value, *sent, 0.1, "value");
        }
    }
}

/// The decoder's names for a type's components.
fn component_names(ty: LppType, channel: u8) -> Vec<String> {
    let parts: &[&str] = match ty {
        LppType::Accelerometer | LppType::Gyrometer => &["x", "y", "z"],
        LppType::Gps => &["latitude", "longitude", "altitude"],
        LppType::Colour => &["r", "g", "b"],
        _ => &[],
    };
    if parts.is_empty() {
        vec![format!("{}_{channel}", ty.name())]
    } else {
        parts
            .iter()
            .map(|p| format!("{}_{channel}_{p}", ty.name()))
            .collect()
    }
}

/// A random in-range value for component `i` of `ty`, and its resolution.
fn lpp_value(rng: &mut Rng, ty: LppType, i: usize) -> (f64, f64) {
    use LppType::*;
    match ty {
        DigitalIn | DigitalOut | Presence | Switch | Percentage => (rng.uniform(0.0, 255.0), 1.0),
        AnalogIn | AnalogOut => (rng.uniform(-327.0, 327.0), 0.01),
        GenericSensor | Frequency | UnixTime => (rng.uniform(0.0, 4.0e9), 1.0),
        Luminosity | Power | Direction | Concentration => (rng.uniform(0.0, 65_535.0), 1.0),
        Temperature => (rng.uniform(-3276.0, 3276.0), 0.1),
        RelativeHumidity => (rng.uniform(0.0, 127.5), 0.5),
        Accelerometer => (rng.uniform(-32.0, 32.0), 0.001),
        BarometricPressure => (rng.uniform(0.0, 6553.0), 0.1),
        Voltage => (rng.uniform(0.0, 655.0), 0.01),
        Current => (rng.uniform(0.0, 65.0), 0.001),
        Altitude => (rng.uniform(-32_768.0, 32_767.0), 1.0),
        Distance | Energy => (rng.uniform(0.0, 4.0e6), 0.001),
        Gyrometer => (rng.uniform(-327.0, 327.0), 0.01),
        Gps if i == 2 => (rng.uniform(-83_000.0, 83_000.0), 0.01),
        Gps => (rng.uniform(-90.0, 90.0), 0.0001),
        Colour => (rng.uniform(0.0, 255.0), 1.0),
    }
}

#[test]
fn cayenne_lpp_random_payloads_decode_to_the_sent_values() {
    let mut rng = Rng(0x5EED_0004);
    let mut buf = [0u8; 242]; // the largest LoRaWAN payload (EU868 DR7)
    for _ in 0..2_000 {
        let mut lpp = Lpp::new(&mut buf);
        let mut sent: Vec<(String, f64, f64)> = Vec::new();
        // Distinct channels, so every decoded name is unique.
        for channel in 0..(rng.next() % 12 + 1) as u8 {
            let ty = LppType::ALL[(rng.next() % LppType::ALL.len() as u64) as usize];
            let values: Vec<(f64, f64)> = (0..ty.components())
                .map(|i| lpp_value(&mut rng, ty, i))
                .collect();
            let raw: Vec<f64> = values.iter().map(|(v, _)| *v).collect();
            lpp.add(channel, ty, &raw).unwrap();
            for (name, (v, step)) in component_names(ty, channel).into_iter().zip(values) {
                sent.push((name, v, step));
            }
        }
        let got = Codec::CayenneLpp.decode(lpp.as_bytes()).unwrap();
        assert_eq!(got.len(), sent.len(), "{:02x?}", lpp.as_bytes());
        for ((name, v, step), d) in sent.iter().zip(&got) {
            assert_eq!(&d.metric, name);
            assert_within(d.value, *v, *step, name);
        }
    }
}

fn vectors(file: &str) -> serde_json::Value {
    let path = format!(
        "{}/../../tests/data/vectors/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// Every published Cayenne LPP example, encoded from its decoded values,
/// gives the published bytes.
#[test]
fn cayenne_lpp_published_vectors_are_what_the_firmware_encodes() {
    let doc = vectors("cayenne_lpp.json");
    let list = doc["vectors"].as_array().unwrap();
    assert!(list.len() >= 3, "vectors file lost its examples");
    for vector in list {
        let id = vector["id"].as_str().unwrap();
        let mut buf = [0u8; 242];
        let mut lpp = Lpp::new(&mut buf);
        for item in vector["expected"].as_array().unwrap() {
            let ty = item["type"].as_str().unwrap();
            let ty = LppType::from_name(ty).unwrap_or_else(|| panic!("{id}: type {ty}"));
            let channel = item["channel"].as_u64().unwrap() as u8;
            let values: Vec<f64> = match &item["value"] {
                serde_json::Value::Array(parts) => {
                    parts.iter().map(|p| p.as_f64().unwrap()).collect()
                }
                v => vec![v.as_f64().unwrap()],
            };
            lpp.add(channel, ty, &values).unwrap();
        }
        assert_eq!(
            lpp.as_bytes(),
            hex(vector["payload_hex"].as_str().unwrap()),
            "{id}"
        );
    }
}

/// The seed frames have no outside publication; these are the examples
/// the gateway's docs (docs/lorawan.md, `edge-gateway decode`) print.
#[test]
fn seed_frames_documented_by_the_gateway_are_what_the_firmware_encodes() {
    assert_eq!(
        compact_i16(21.5, 40.0, 3.3).unwrap().to_vec(),
        hex("00D728014A")
    );
    assert_eq!(bitpacked(21.5, 40.0, 85.0).unwrap().to_vec(), hex("535154"));
    let mut buf = [0u8; 17];
    let n = batch(1_795_146_752, &[(0, 21.5), (60, -1.0)], &mut buf).unwrap();
    assert_eq!(buf[..n].to_vec(), hex("026affc4000000000000d7003cfffffff6"));
}

/// The published BTHome v2 examples are what the firmware encodes for
/// their values, objects in their on-air order. (The other direction, the
/// gateway's BLE decoder reading them, is in its own vector tests.)
#[test]
fn bthome_published_vectors_are_what_the_firmware_encodes() {
    use firmware_codec::{BtHome, BtHomeObject as O};
    let doc = vectors("bthome_v2.json");
    let by_id = |id: &str| {
        doc["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["id"] == id)
            .unwrap_or_else(|| panic!("vector {id}"))["service_data_hex"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let rows: [(&str, &[(O, f64)]); 7] = [
        (
            "temp-humidity",
            &[(O::Temperature, 25.06), (O::Humidity, 50.55)],
        ),
        (
            "packetid-temp-hum-battery",
            &[
                (O::PacketId, 9.0),
                (O::Battery, 93.0),
                (O::Temperature, 23.97),
                (O::Humidity, 63.27),
            ],
        ),
        (
            "triple-temp-double-hum-battery",
            &[
                (O::Temperature, 25.06),
                (O::Temperature, 25.11),
                (O::Temperature, 22.55),
                (O::Humidity, 63.27),
                (O::Humidity, 60.71),
                (O::Battery, 93.0),
            ],
        ),
        ("pressure", &[(O::Pressure, 1008.83)]),
        ("co2", &[(O::Co2, 1250.0)]),
        ("temperature-sint8", &[(O::TemperatureCoarse, -22.0)]),
        ("binary-window-open", &[(O::Window, 1.0)]),
    ];
    for (id, objects) in rows {
        let mut buf = [0u8; 31];
        let mut frame = BtHome::new(&mut buf, false).unwrap();
        for (object, value) in objects {
            frame.add(*object, *value).unwrap();
        }
        assert_eq!(frame.as_bytes(), hex(&by_id(id)), "{id}");
    }
}

/// Random readings in BTHome v2 frames from the firmware's encoder come
/// back from the gateway's BLE decoder with the values sent, each within
/// its object's resolution, under the gateway's names for them.
#[test]
fn bthome_random_frames_decode_to_the_sent_values() {
    use adapters::ble::bthome;
    use adapters::ble::Mac;
    use firmware_codec::{BtHome, BtHomeObject as O};
    let mut rng = Rng(0x5EED_0005);
    let mac: Mac = "54:48:E6:8F:80:A5".parse().unwrap();
    // (object, lowest, highest, resolution, the gateway's name)
    let objects = [
        (O::Battery, 0.0, 100.0, 1.0, "battery"),
        (O::Temperature, -40.0, 85.0, 0.01, "temperature"),
        (O::Humidity, 0.0, 100.0, 0.01, "humidity"),
        (O::Pressure, 300.0, 1100.0, 0.01, "pressure"),
        (O::Illuminance, 0.0, 100_000.0, 0.01, "illuminance"),
        (O::Voltage, 0.0, 3.6, 0.001, "voltage"),
        (O::Co2, 400.0, 5000.0, 1.0, "co2"),
    ];
    for round in 0..200u32 {
        let mut buf = [0u8; 31];
        let mut frame = BtHome::new(&mut buf, round % 2 == 1).unwrap();
        frame.add(O::PacketId, f64::from(round % 256)).unwrap();
        let mut sent = Vec::new();
        for (object, lo, hi, step, name) in objects {
            let v = rng.uniform(lo, hi);
            frame.add(object, v).unwrap();
            sent.push((name, v, step));
        }
        let got = bthome::decode(frame.as_bytes(), mac, None).unwrap();
        assert_eq!(got.packet_id, Some((round % 256) as u8));
        assert_eq!(got.trigger_based(), round % 2 == 1);
        assert_eq!(got.stop, None, "parsed to the end");
        assert_eq!(got.values.0.len(), sent.len());
        for ((name, v, step), m) in sent.iter().zip(&got.values.0) {
            assert_eq!(m.name, *name);
            assert_within(m.value, *v, *step, name);
        }
    }
}
