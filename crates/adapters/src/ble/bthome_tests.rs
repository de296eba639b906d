//! Focused BTHome tests: one per rule of the format page, byte literals
//! with a comment per field. The published vectors run in `vectors_tests`.

use super::*;
use crate::ble::advert::parse_hex;
use crate::ble::bthome_crypto::seal;

const MAC: Mac = Mac([0xA4, 0xC1, 0x38, 0x8D, 0x18, 0xB2]);

fn plain(hex: &str) -> Frame {
    decode(&parse_hex(hex).unwrap(), MAC, None).unwrap()
}

fn names(f: &Frame) -> Vec<String> {
    f.values.iter().map(|m| m.metric().into_owned()).collect()
}

#[test]
fn format_page_examples_one_per_object() {
    // (payload after 0x40, metric, value) from bthome.io's tables.
    let rows: &[(&str, &str, f64)] = &[
        ("518756", "acceleration", 22.151),
        ("0161", "battery", 97.0),
        ("12e204", "co2", 1250.0),
        ("56e803", "conductivity", 1000.0),
        ("0960", "count", 96.0),
        ("3d0960", "count", 24585.0),
        ("3e2a2c0960", "count", 1_611_213_866.0),
        ("59ea", "count", -22.0),
        ("5aeaea", "count", -5398.0),
        ("5bea0234ea", "count", -365_690_134.0),
        ("434e34", "current", 13.39),
        ("5d02ea", "current", -5.63),
        ("08ca06", "dewpoint", 17.38),
        ("400c00", "distance_mm", 12.0),
        ("414e00", "distance_m", 7.8),
        ("424e3400", "duration", 13.39),
        ("4d12138a14", "energy", 344_593.17),
        ("0a138a14", "energy", 1346.067),
        ("4b138a14", "gas", 1346.067),
        ("4c41018a01", "gas", 25_821.505),
        ("528756", "gyroscope", 22.151),
        ("03bf13", "humidity", 50.55),
        ("2e23", "humidity", 35.0),
        ("05138a14", "illuminance", 13_460.67),
        ("065e1f", "mass_kg", 80.3),
        ("073e1d", "mass_lb", 74.86),
        ("14020c", "moisture", 30.74),
        ("2f23", "moisture", 35.0),
        ("0d120c", "pm2_5", 3090.0),
        ("0e021c", "pm10", 7170.0),
        ("0b021b00", "power", 69.14),
        ("5c02fbffff", "power", -12.78),
        ("04138a01", "pressure", 1008.83),
        ("3f020c", "rotation", 307.4),
        ("444e34", "speed", 133.9),
        ("57ea", "temperature", -22.0),
        ("451101", "temperature", 27.3),
        ("02ca09", "temperature", 25.06),
        ("133301", "tvoc", 307.0),
        ("0c020c", "voltage", 3.074),
        ("4a020c", "voltage", 307.4),
        ("4e87562a01", "volume", 19_551.879),
        ("478756", "volume", 2215.1),
        ("48dc87", "volume_ml", 34_780.0),
        ("5587562a01", "volume_storage", 19_551.879),
        ("49dc87", "volume_flow_rate", 34.78),
        ("4632", "uv_index", 5.0),
        ("4f87562a01", "water", 19_551.879),
        ("5e9f8c", "direction", 359.99),
        ("5fa00f", "precipitation", 400.0),
        ("6005", "channel", 5.0),
        ("61e803", "rotational_speed", 1000.0),
        ("62feffffff", "speed", -0.000002),
        ("63a0860100", "acceleration", 0.1),
        ("1501", "battery_low", 1.0),
        ("1600", "battery_charging", 0.0),
        ("2d01", "window", 1.0),
        ("1001", "power_on", 1.0),
    ];
    for (hex, metric, value) in rows {
        let f = plain(&format!("40{hex}"));
        assert_eq!(f.stop, None, "{hex}");
        assert_eq!(f.values.len(), 1, "{hex}");
        assert_eq!(f.values.get(metric), Some(*value), "{hex}");
    }
    // 0x58: sint8 × 0.35, the one factor that is not a power of ten.
    let t = plain("4058ea").values.get("temperature").unwrap();
    assert!((t - -7.7).abs() < 1e-9, "{t}");
}

#[test]
fn every_binary_sensor_is_zero_or_one() {
    for id in 0..=255u8 {
        let Some(s) = spec(id) else { continue };
        if s.kind != Kind::Binary {
            continue;
        }
        for (byte, want) in [(0u8, 0.0), (1, 1.0), (0xFF, 1.0)] {
            let f = decode(&[0x40, id, byte], MAC, None).unwrap();
            assert_eq!(f.values.get(s.name), Some(want), "0x{id:02x} {byte}");
        }
    }
}

#[test]
fn metadata_and_events_are_not_values() {
    // packet id 9 | timestamp 0x6461395d | device type 1 | fw 4.2.1.0
    // | button press | dimmer right 10 | text "Hi" | raw 0xabcd | temperature
    let f = plain("400009505d396164f00100f100010204f20001063a013c020a53024869");
    assert_eq!(f.packet_id, Some(9));
    assert_eq!(f.timestamp, Some(1_684_093_277));
    assert_eq!(f.device_type_id, Some(1));
    assert_eq!(f.firmware_version, Some(vec![6, 1, 0]), "0xF2 came last");
    assert_eq!(
        f.events,
        [
            Event::Button { event: 1 },
            Event::Dimmer {
                event: 2,
                steps: 10
            }
        ]
    );
    assert!(f.values.is_empty());
    let g = plain("405402abcd02ca09");
    assert_eq!(names(&g), ["temperature"], "raw skipped by its length");
}

#[test]
fn repeated_types_are_numbered_across_ids() {
    // temperature 0x02 | temperature 0x45 | humidity | temperature 0x57
    let f = plain("4002ca0945110103bf1357ea");
    assert_eq!(
        names(&f),
        ["temperature", "temperature_2", "humidity", "temperature_3"]
    );
    assert!(f.out_of_order, "0x03 after 0x45");
    assert_eq!(f.values.get("temperature_2"), Some(27.3));
}

#[test]
fn unknown_id_stops_and_keeps_what_came_before() {
    // battery 93 | 0x3B (unassigned) | temperature
    let f = plain("40015d3b02ca09");
    assert_eq!(names(&f), ["battery"]);
    assert_eq!(f.stop, Some(Stop::UnknownObject { id: 0x3B }));
}

#[test]
fn truncated_objects_keep_the_complete_ones() {
    for (hex, kept, id) in [
        ("4002ca0903bf", 1, 0x03),     // humidity 1 byte short
        ("4002ca", 0, 0x02),           // temperature 1 byte short
        ("4002", 0, 0x02),             // id alone
        ("40015d53", 1, 0x53),         // text without its length byte
        ("40015d5305616263", 1, 0x53), // text of 5 with 3 bytes
    ] {
        let f = plain(hex);
        assert_eq!(f.values.len(), kept, "{hex}");
        assert_eq!(f.stop, Some(Stop::Truncated { id }), "{hex}");
    }
    // No objects at all is a frame with no values, not an error.
    assert!(plain("40").values.is_empty());
}

#[test]
fn device_info_flags_and_versions() {
    let f = plain("4402ca09");
    assert!(f.trigger_based() && !f.encrypted());
    for (info, version) in [(0x00u8, 0u8), (0x20, 1), (0x60, 3), (0xE1, 7)] {
        assert_eq!(
            decode(&[info, 0x02, 0xca, 0x09], MAC, None),
            Err(DecodeError::UnsupportedVersion { version }),
            "0x{info:02x}"
        );
    }
    assert_eq!(
        decode(&[], MAC, None),
        Err(DecodeError::Empty { format: "BTHome" })
    );
}

#[test]
fn legacy_mac_in_payload() {
    // info 0x42 | MAC b2:18:8d:38:c1:a4 reversed | temperature
    let f = plain("42b2188d38c1a402ca09");
    assert_eq!(
        f.mac_in_payload,
        Some(Mac([0xA4, 0xC1, 0x38, 0x8D, 0x18, 0xB2]))
    );
    assert_eq!(names(&f), ["temperature"]);
    assert_eq!(
        decode(&parse_hex("42b2188d38").unwrap(), MAC, None),
        Err(DecodeError::MacTruncated { found: 4 })
    );
}

#[test]
fn encryption_rules() {
    let key: BindKey = "231d39c1d7cc1ab1aee224cd096db932".parse().unwrap();
    let sealed = seal(&key, MAC, 0x41, 7, &parse_hex("02ca0903bf13").unwrap());
    let f = decode(&sealed, MAC, Some(&key)).unwrap();
    assert_eq!(f.counter, Some(7));
    assert!(f.encrypted());
    assert_eq!(names(&f), ["temperature", "humidity"]);
    // No key for an encrypted frame; a key for a plaintext one.
    assert_eq!(decode(&sealed, MAC, None), Err(DecodeError::NoBindkey));
    assert_eq!(
        decode(&[0x40, 0x02, 0xca, 0x09], MAC, Some(&key)),
        Err(DecodeError::Downgrade)
    );
    // With MAC in payload, the nonce uses that MAC, not the advertiser's.
    let other = Mac([0x11, 0x22, 0x33, 0x44, 0x55, 0x66]);
    let with_mac = seal(&key, MAC, 0x43, 8, &parse_hex("02ca09").unwrap());
    let f = decode(&with_mac, other, Some(&key)).unwrap();
    assert_eq!(f.mac_in_payload, Some(MAC));
    assert_eq!(f.values.get("temperature"), Some(25.06));
    // Any change to the encrypted bytes is a MIC failure, never values.
    for i in 1..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 0x10;
        assert_eq!(
            decode(&bad, MAC, Some(&key)),
            Err(DecodeError::Decryption),
            "byte {i}"
        );
    }
}

#[test]
fn decoding_never_panics_on_short_or_random_input() {
    let key: BindKey = "231d39c1d7cc1ab1aee224cd096db932".parse().unwrap();
    let mut x: u32 = 0x1234_5678;
    for len in 0..64 {
        for _ in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    // xorshift32, seeded: deterministic.
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let mut data = bytes.clone();
            if let Some(b) = data.first_mut() {
                *b = 0x40 | (*b & 0x07);
            }
            let _ = decode(&data, MAC, None);
            let _ = decode(&data, MAC, Some(&key));
            let _ = decode(&bytes, MAC, None);
        }
    }
}

/// (bthome-ble test name, service data, expected metric values).
type PublishedFrame = (&'static str, &'static str, &'static [(&'static str, f64)]);

/// Published frames from bthome-ble's tests/test_parser_v2.py (the test
/// named on each row), with the values it asserts.
#[test]
fn bthome_ble_published_frames() {
    let rows: &[PublishedFrame] = &[
        (
            "test_bthome_direction_precipitation",
            "405e3f755f11d5",
            &[("direction", 300.15), ("precipitation", 5454.5)],
        ),
        (
            "test_bthome_double_voltage_different_object_id",
            // packet id 1 | power 0 W | voltage 0.1 V | battery | voltage 1 mV
            "4000010b0000004a0d0901330ce90c",
            &[
                ("power", 0.0),
                ("voltage", 231.7),
                ("battery", 51.0),
                ("voltage_2", 3.305),
            ],
        ),
        (
            "test_bthome_acceleration_signed",
            "40630057d0ff",
            &[("acceleration", -3.123456)],
        ),
        (
            "test_bthome_test",
            // packet id 167 | voltage | binary power off
            "4000a70c780b1000",
            &[("voltage", 2.936), ("power_on", 0.0)],
        ),
        ("test_bthome_channel", "406001", &[("channel", 1.0)]),
        (
            "test_bthome_revolutions_per_minute",
            "4061ac0d",
            &[("rotational_speed", 3500.0)],
        ),
        (
            "test_shelly_blu_ht_display_zb",
            // packet id 46 | battery | binary light | humidity 1 % | temperature 0.1 °C
            "40002e01641e012e34451601",
            &[
                ("battery", 100.0),
                ("light", 1.0),
                ("humidity", 52.0),
                ("temperature", 27.8),
            ],
        ),
    ];
    for (test, hex, want) in rows {
        let f = plain(hex);
        let got: Vec<(String, f64)> = f
            .values
            .iter()
            .map(|m| (m.metric().into_owned(), m.value))
            .collect();
        let want: Vec<(String, f64)> = want.iter().map(|(n, v)| (n.to_string(), *v)).collect();
        assert_eq!(got, want, "{test}");
        assert_eq!(f.stop, None, "{test}");
    }
    // test_bthome_shelly_button_no_press: a press, then the empty event.
    let press = plain("440021015e3a01");
    assert_eq!(
        (press.packet_id, press.events.as_slice()),
        (Some(0x21), &[Event::Button { event: 1 }][..])
    );
    assert_eq!(press.values.get("battery"), Some(94.0));
    let none = plain("440023015e3a00");
    assert_eq!(none.events, [Event::Button { event: 0 }]);
}
