//! Every vector of `tests/data/vectors/bthome_v2.json` and
//! `ruuvi_rawv2.json` (the repository's copies of the published vectors)
//! through the decoders and the dispatcher. Every entry must be understood:
//! an unknown expectation key fails the test rather than being skipped.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::advert::{parse_hex, Advertisement, Mac, ServiceUuid};
use super::bthome::{self, Frame};
use super::bthome_crypto::{nonce, BindKey};
use super::dispatch::{BleDecoder, Outcome};
use super::error::DecodeError;
use super::ruuvi;
use gateway_core::Timestamp;

fn load(name: &str) -> Value {
    let path = format!(
        "{}/../../tests/data/vectors/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} in {v}"))
}

fn mac_of(v: &Value) -> Mac {
    v["mac"]
        .as_str()
        .unwrap_or("A4:C1:38:8D:18:B2")
        .parse()
        .unwrap()
}

fn key_of(v: &Value) -> Option<BindKey> {
    v["bindkey"].as_str().map(|k| k.parse().unwrap())
}

fn bthome_adv(mac: Mac, hex: &str) -> Advertisement {
    let mut adv = Advertisement::new(mac, Some(-60), Timestamp::from_millis(0).unwrap());
    adv.service_data
        .push((ServiceUuid::BTHOME, parse_hex(hex).unwrap()));
    adv
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

/// Our metric for a vector's `expected` key (`temperature_c` → `temperature`).
fn metric_for(key: &str) -> Option<&'static str> {
    Some(match key {
        "temperature_c" => "temperature",
        "humidity_pct" => "humidity",
        "battery_pct" => "battery",
        "pressure_hpa" => "pressure",
        "co2_ppm" => "co2",
        "window_open" => "window",
        _ => return None,
    })
}

fn number(v: &Value) -> f64 {
    match v {
        Value::Bool(b) => f64::from(u8::from(*b)),
        _ => v.as_f64().unwrap(),
    }
}

/// Checks `frame` against a vector's `expected` object.
fn check_expected(id: &str, frame: &Frame, expected: &Value) {
    let mut want = 0;
    for (key, value) in expected.as_object().unwrap() {
        if let Some(metric) = metric_for(key) {
            let values: Vec<&Value> = match value {
                Value::Array(a) => a.iter().collect(),
                v => vec![v],
            };
            for (i, v) in values.iter().enumerate() {
                let name = if i == 0 {
                    metric.to_string()
                } else {
                    format!("{metric}_{}", i + 1)
                };
                let got = frame
                    .values
                    .get(&name)
                    .unwrap_or_else(|| panic!("{id}: no {name}"));
                assert!(close(got, number(v)), "{id}: {name} = {got}, want {v}");
                want += 1;
            }
            continue;
        }
        match key.as_str() {
            "packet_id" => assert_eq!(frame.packet_id.map(u64::from), value.as_u64(), "{id}"),
            "counter" => assert_eq!(frame.counter.map(u64::from), value.as_u64(), "{id}"),
            "plaintext_hex" | "ciphertext_hex" | "mic_hex" | "nonce_hex" | "local_name" => {}
            "mac_in_payload" => {
                assert_eq!(
                    frame.mac_in_payload,
                    Some(s(expected, key).parse().unwrap()),
                    "{id}"
                )
            }
            "bindkey_verified" => assert_eq!(value, &Value::Bool(frame.encrypted()), "{id}"),
            k if k.starts_with("accepted_after") => {}
            other => panic!("{id}: expectation {other} not understood by this test"),
        }
    }
    assert_eq!(
        frame.values.len(),
        want,
        "{id}: extra values {:?}",
        frame.values
    );
}

#[test]
fn bthome_plain_vectors() {
    let doc = load("bthome_v2.json");
    let vectors = doc["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 8);
    for v in vectors {
        let id = s(v, "id");
        let data = parse_hex(s(v, "service_data_hex")).unwrap();
        if let Some(adv) = v["adv_payload_hex"].as_str() {
            // The full AD structure ends with the service data after d2fc.
            assert!(adv
                .to_lowercase()
                .ends_with(&format!("d2fc{}", s(v, "service_data_hex"))));
        }
        let frame = bthome::decode(&data, mac_of(v), None).unwrap_or_else(|e| panic!("{id}: {e}"));
        check_expected(id, &frame, &v["expected"]);
        // And through the dispatcher, as readings with rssi.
        let out = BleDecoder::default().decode(
            &bthome_adv(mac_of(v), s(v, "service_data_hex")),
            None,
            Instant::now(),
        );
        let Outcome::Decoded(d) = out else {
            panic!("{id}: {out:?}")
        };
        let readings = d.readings(Timestamp::from_millis(1).unwrap());
        assert_eq!(readings.len(), frame.values.len() + 1, "{id}");
        assert_eq!(readings.last().unwrap().metric().as_str(), "rssi");
        assert_eq!(readings[0].device().as_str(), mac_of(v).to_string());
    }
}

#[test]
fn bthome_encrypted_vectors() {
    let doc = load("bthome_v2.json");
    let vectors = doc["encrypted_vectors"].as_array().unwrap();
    assert!(vectors.len() >= 8);
    let by_id: BTreeMap<&str, &Value> = vectors.iter().map(|v| (s(v, "id"), v)).collect();
    for v in vectors {
        let id = s(v, "id");
        let data = parse_hex(s(v, "service_data_hex")).unwrap();
        let key = key_of(v).unwrap();
        let expected = &v["expected"];
        if expected["decryption_failed"] == Value::Bool(true) {
            assert_eq!(
                bthome::decode(&data, mac_of(v), Some(&key)),
                Err(DecodeError::Decryption),
                "{id}"
            );
            let out = BleDecoder::default().decode(
                &bthome_adv(mac_of(v), s(v, "service_data_hex")),
                Some(&key),
                Instant::now(),
            );
            assert!(
                matches!(
                    out,
                    Outcome::Refused {
                        error: DecodeError::Decryption,
                        ..
                    }
                ),
                "{id}: {out:?}"
            );
            continue;
        }
        let frame =
            bthome::decode(&data, mac_of(v), Some(&key)).unwrap_or_else(|e| panic!("{id}: {e}"));
        let mut checked = expected.clone();
        if let Some(own) = v["verification"]["own_from_spec"].as_object() {
            // The independent decoder's values where the source gives none.
            for (k, val) in own {
                checked
                    .as_object_mut()
                    .unwrap()
                    .entry(k.clone())
                    .or_insert(val.clone());
            }
        }
        check_expected(id, &frame, &checked);
        if let Some(n) = checked["nonce_hex"].as_str() {
            let h = bthome::header(&data).unwrap();
            let n_mac = h.mac_in_payload.unwrap_or(mac_of(v));
            assert_eq!(
                nonce(n_mac, h.info, frame.counter.unwrap())[..],
                parse_hex(n).unwrap()[..],
                "{id}"
            );
        }
        // Sequences: this frame after the one named (or with the counter given).
        for field in [
            "accepted_after",
            "accepted_after_1122867",
            "accepted_after_4294967295",
        ] {
            let Some(prev) = expected.get(field) else {
                continue;
            };
            let prev_counter: u32 = match prev {
                Value::String(name) => {
                    let prev_id = name.split(' ').next().unwrap();
                    by_id[prev_id]["expected"]["counter"].as_u64().unwrap() as u32
                }
                _ => field.rsplit('_').next().unwrap().parse().unwrap(),
            };
            // A name means "accepted after that one"; a bool says whether.
            let want = prev.as_bool().unwrap_or(true);
            let first = vectors
                .iter()
                .find(|p| {
                    p["expected"]["counter"].as_u64() == Some(u64::from(prev_counter))
                        && s(p, "mac") == s(v, "mac")
                })
                .unwrap();
            let mut dec = BleDecoder::default();
            let t = Instant::now();
            let o1 = dec.decode(
                &bthome_adv(mac_of(v), s(first, "service_data_hex")),
                Some(&key),
                t,
            );
            assert!(matches!(o1, Outcome::Decoded(_)), "{id}: {o1:?}");
            let o2 = dec.decode(
                &bthome_adv(mac_of(v), s(v, "service_data_hex")),
                Some(&key),
                t,
            );
            assert_eq!(
                matches!(o2, Outcome::Decoded(_)),
                want,
                "{id} after {prev_counter}: {o2:?}"
            );
            if !want {
                assert!(matches!(
                    o2,
                    Outcome::Refused {
                        error: DecodeError::Replay { .. },
                        ..
                    }
                ));
            }
        }
    }
}

/// bthome-ble's names in `verification` → ours.
fn our_name(theirs: &str) -> String {
    let base = theirs.strip_suffix("_1").unwrap_or(theirs);
    match base {
        "carbon_dioxide" => "co2".into(),
        other => other.into(),
    }
}

#[test]
fn bthome_bad_inputs() {
    let doc = load("bthome_v2.json");
    let bad = doc["bad_inputs"].as_array().unwrap();
    assert!(bad.len() >= 9);
    for v in bad {
        let id = s(v, "id");
        let reference = &v["verification"]["bthome_ble_3_25_0"];
        let out = BleDecoder::default().decode(
            &bthome_adv(mac_of(v), s(v, "service_data_hex")),
            key_of(v).as_ref(),
            Instant::now(),
        );
        let got: BTreeMap<String, f64> = match &out {
            Outcome::Decoded(d) => d
                .values
                .iter()
                .map(|m| (m.metric().into_owned(), m.value))
                .collect(),
            _ => BTreeMap::new(),
        };
        let want: BTreeMap<String, f64> = reference["values"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, x)| (our_name(k), number(x)))
            .collect();
        assert_eq!(got, want, "{id}: {out:?}");
        if reference["supported"] == Value::Bool(false) {
            assert!(matches!(out, Outcome::Refused { .. }), "{id}: {out:?}");
        }
        let kind = match &out {
            Outcome::Refused { error, .. } => error.kind(),
            _ => "",
        };
        let expected_kind = match id {
            "invalid-version-bits-7" | "version-0" => "unsupported_version",
            "encrypted-too-short" => "encrypted_too_short",
            "downgrade-plain-when-key-set" => "downgrade_detected",
            _ => "",
        };
        assert_eq!(kind, expected_kind, "{id}");
    }
}

#[test]
fn bthome_packet_id_sequence() {
    let doc = load("bthome_v2.json");
    let seq = &doc["dedup_and_replay_sequences"]["packet_id"]["sequence"];
    let mac: Mac = "A4:C1:38:8D:18:B2".parse().unwrap();
    let mut dec = BleDecoder::default();
    let t0 = Instant::now();
    for (i, step) in seq.as_array().unwrap().iter().enumerate() {
        let at = t0 + Duration::from_secs(step["t"].as_u64().unwrap());
        let out = dec.decode(&bthome_adv(mac, s(step, "service_data_hex")), None, at);
        let accepted = matches!(out, Outcome::Decoded(_));
        assert_eq!(Value::Bool(accepted), step["accept"], "step {i}: {out:?}");
        if !accepted {
            assert!(
                matches!(out, Outcome::Duplicate { .. }),
                "step {i}: {out:?}"
            );
        }
    }
}

#[test]
fn bthome_counter_runs() {
    let doc = load("bthome_v2.json");
    let runs = doc["dedup_and_replay_sequences"]["encryption_counter"]["runs"]
        .as_object()
        .unwrap();
    let enc = doc["encrypted_vectors"].as_array().unwrap();
    let frame = |counter: u64| {
        enc.iter()
            .find(|v| {
                v["expected"]["counter"].as_u64() == Some(counter)
                    && s(v, "mac") == "54:48:E6:8F:80:A5"
                    && v["id"] != "encrypted-with-mac-in-payload"
            })
            .unwrap()
    };
    // (run, second frame's counter, what we do with it). bthome-ble 3.25.0
    // accepts the equal counter; the issue's rule ("not above the last
    // accepted one is refused") makes it a repeat, with no values.
    let table: &[(&str, u64, &str)] = &[
        ("seq_replay_increase", 1_122_868, "decoded"),
        ("seq_replay_decrease", 1_122_866, "replay"),
        ("seq_replay_same", 1_122_867, "duplicate"),
        ("seq_replay_same_after_5s", 1_122_867, "duplicate"),
        ("seq_replay_reset", 0, "decoded"),
    ];
    assert_eq!(runs.len(), table.len(), "a run this test does not know");
    for (name, second, what) in table {
        let run = runs[*name].as_array().unwrap();
        let first = run[0]["counter"].as_f64().unwrap() as u64;
        let key: BindKey = s(frame(first), "bindkey").parse().unwrap();
        let mac: Mac = "54:48:E6:8F:80:A5".parse().unwrap();
        let mut dec = BleDecoder::default();
        let t = Instant::now();
        let o1 = dec.decode(
            &bthome_adv(mac, s(frame(first), "service_data_hex")),
            Some(&key),
            t,
        );
        assert!(matches!(o1, Outcome::Decoded(_)), "{name}: {o1:?}");
        let later = t + Duration::from_secs(if name.ends_with("5s") { 5 } else { 0 });
        let o2 = dec.decode(
            &bthome_adv(mac, s(frame(*second), "service_data_hex")),
            Some(&key),
            later,
        );
        let got = match &o2 {
            Outcome::Decoded(_) => "decoded",
            Outcome::Duplicate { .. } => "duplicate",
            Outcome::Refused {
                error: DecodeError::Replay { .. },
                ..
            } => "replay",
            _ => "other",
        };
        assert_eq!(got, *what, "{name}: {o2:?}");
    }
}

#[test]
fn ruuvi_vectors() {
    let doc = load("ruuvi_rawv2.json");
    let vectors = doc["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 3);
    let g = 9.806_65;
    for v in vectors {
        let id = s(v, "id");
        let data = parse_hex(s(v, "payload_hex")).unwrap();
        let with_company = parse_hex(s(v, "manufacturer_data_with_company_id_hex")).unwrap();
        assert_eq!(with_company[..2], ruuvi::COMPANY_ID.to_le_bytes(), "{id}");
        let r = ruuvi::decode(&data).unwrap_or_else(|e| panic!("{id}: {e}"));
        let opt = |x: Option<f64>| x.map_or(Value::Null, Value::from);
        for (key, want) in v["expected"].as_object().unwrap() {
            let got = match key.as_str() {
                "data_format" => Value::from(5),
                "temperature_c" => opt(r.temperature),
                "humidity_pct" => opt(r.humidity),
                "pressure_pa" => opt(r.pressure.map(|p| p * 100.0)),
                "acc_x_g" => opt(r.acceleration[0].map(|a| a / g)),
                "acc_y_g" => opt(r.acceleration[1].map(|a| a / g)),
                "acc_z_g" => opt(r.acceleration[2].map(|a| a / g)),
                "tx_power_dbm" => opt(r.tx_power.map(f64::from)),
                "voltage_v" => opt(r.voltage),
                "movement_counter" => opt(r.movement_counter.map(f64::from)),
                "measurement_sequence" => opt(r.measurement_sequence.map(f64::from)),
                "mac" => r
                    .mac
                    .map_or(Value::Null, |m| Value::from(m.to_string().to_uppercase())),
                other => panic!("{id}: expectation {other} not understood by this test"),
            };
            match (got.as_f64(), want.as_f64()) {
                (Some(a), Some(b)) => assert!(close(a, b), "{id}: {key} = {a}, want {b}"),
                _ => assert_eq!(&got, want, "{id}: {key}"),
            }
        }
        // Through the dispatcher: the company id selects Ruuvi.
        let mut adv = Advertisement::new(
            "CB:B8:33:4C:88:4F".parse().unwrap(),
            Some(-70),
            Timestamp::from_millis(0).unwrap(),
        );
        adv.manufacturer_data.push((ruuvi::COMPANY_ID, data));
        let out = BleDecoder::default().decode(&adv, None, Instant::now());
        let Outcome::Decoded(d) = out else {
            panic!("{id}: {out:?}")
        };
        assert_eq!(d.values, r.values(), "{id}");
        assert_eq!(
            d.readings(Timestamp::from_millis(0).unwrap()).len(),
            r.values().len() + 1
        );
    }
}
