//! The dispatcher: decoder choice, downgrade, replay and repeats, readings.

use std::time::{Duration, Instant};

use super::*;
use crate::ble::advert::parse_hex;
use crate::ble::bthome_crypto::seal;

const MAC: Mac = Mac([0x54, 0x48, 0xE6, 0x8F, 0x80, 0xA5]);
const RUUVI: &str = "0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F";
const PVVX: &str = "b2188d38c1a4240918158b0b572a05";
const ATC: &str = "a4c1388d18b200ea36570b8b2a";

fn key() -> BindKey {
    "231d39c1d7cc1ab1aee224cd096db932".parse().unwrap()
}

fn adv() -> Advertisement {
    Advertisement::new(
        MAC,
        Some(-67),
        Timestamp::from_millis(1_763_719_200_000).unwrap(),
    )
}

fn with_service(uuid: u16, hex: &str) -> Advertisement {
    let mut a = adv();
    a.service_data
        .push((ServiceUuid::from_u16(uuid), parse_hex(hex).unwrap()));
    a
}

fn with_company(company: u16, hex: &str) -> Advertisement {
    let mut a = adv();
    a.manufacturer_data.push((company, parse_hex(hex).unwrap()));
    a
}

fn sealed(counter: u32, objects: &str) -> Advertisement {
    let mut a = adv();
    let data = seal(&key(), MAC, 0x41, counter, &parse_hex(objects).unwrap());
    a.service_data.push((ServiceUuid::BTHOME, data));
    a
}

fn decoded(out: Outcome) -> Decoded {
    match out {
        Outcome::Decoded(d) => d,
        other => panic!("not decoded: {other:?}"),
    }
}

fn error_kind(out: &Outcome) -> &'static str {
    match out {
        Outcome::Refused { error, .. } => error.kind(),
        _ => "",
    }
}

#[test]
fn each_format_is_chosen_by_its_id() {
    let now = Instant::now();
    let mut dec = BleDecoder::default();
    let cases = [
        (
            with_service(0xFCD2, "4002ca09"),
            Format::Bthome,
            "temperature",
            25.06,
        ),
        (
            with_service(0x181A, PVVX),
            Format::Pvvx,
            "temperature",
            23.4,
        ),
        (with_service(0x181A, ATC), Format::Atc1441, "humidity", 54.0),
        (
            with_company(0x0499, RUUVI),
            Format::RuuviRawV2,
            "pressure",
            1000.44,
        ),
    ];
    for (a, format, metric, value) in cases {
        let d = decoded(dec.decode(&a, None, now));
        assert_eq!(d.format, format);
        assert_eq!(d.values.get(metric), Some(value), "{format:?}");
        assert_eq!(d.mac, MAC);
    }
}

#[test]
fn readings_carry_the_mac_the_values_and_rssi() {
    let a = with_service(0xFCD2, "4002ca0902cf0903bf13");
    let d = decoded(BleDecoder::default().decode(&a, None, Instant::now()));
    let t = Timestamp::from_millis(1_763_719_200_500).unwrap();
    let got: Vec<(String, String, f64)> = d
        .readings(t)
        .iter()
        .map(|r| {
            assert_eq!(r.time(), t);
            assert_eq!(r.time_source(), TimeSource::Arrival);
            (r.device().to_string(), r.metric().to_string(), r.value())
        })
        .collect();
    let dev = "54:48:e6:8f:80:a5".to_string();
    assert_eq!(
        got,
        [
            (dev.clone(), "temperature".into(), 25.06),
            (dev.clone(), "temperature_2".into(), 25.11),
            (dev.clone(), "humidity".into(), 50.55),
            (dev, "rssi".into(), -67.0),
        ]
    );
    // No RSSI (or HCI's 127, "not available"), no rssi reading.
    for rssi in [None, Some(127)] {
        let mut quiet = a.clone();
        quiet.rssi = rssi;
        let d = decoded(BleDecoder::default().decode(&quiet, None, Instant::now()));
        assert_eq!(d.readings(t).len(), 3, "{rssi:?}");
    }
}

#[test]
fn unrelated_advertisements_are_not_understood_with_their_ids() {
    let mut a = with_company(0x004C, "0215aabb"); // Apple iBeacon
    a.manufacturer_data.push((0x0006, "01".into())); // Microsoft
    a.service_data
        .push((ServiceUuid::from_u16(0xFE9F), vec![0])); // Google
    let out = BleDecoder::default().decode(&a, None, Instant::now());
    assert_eq!(
        out,
        Outcome::NotUnderstood(Unrecognised {
            company_ids: vec![0x004C, 0x0006],
            service_uuids: vec![ServiceUuid::from_u16(0xFE9F)],
        })
    );
    assert_eq!(
        BleDecoder::default().decode(&adv(), None, Instant::now()),
        Outcome::NotUnderstood(Unrecognised::default())
    );
}

#[test]
fn malformed_known_formats_are_refused_with_a_kind() {
    let now = Instant::now();
    let mut dec = BleDecoder::default();
    let cases = [
        (with_service(0xFCD2, ""), "empty"),
        (with_service(0xFCD2, "e102"), "unsupported_version"),
        (with_service(0x181A, "00"), "wrong_length"),
        (with_company(0x0499, "03aa"), "unsupported_format"),
        (with_company(0x0499, "0512"), "wrong_length"),
        (with_service(0xFCD2, "41e445"), "no_bindkey"),
    ];
    for (a, kind) in cases {
        let out = dec.decode(&a, None, now);
        assert_eq!(error_kind(&out), kind, "{out:?}");
    }
}

#[test]
fn a_device_with_a_bindkey_accepts_only_encrypted_bthome() {
    let now = Instant::now();
    let mut dec = BleDecoder::default();
    for a in [
        with_service(0xFCD2, "4004138a01"),
        with_service(0x181A, PVVX),
        with_company(0x0499, RUUVI),
    ] {
        let out = dec.decode(&a, Some(&key()), now);
        assert_eq!(error_kind(&out), "downgrade_detected", "{out:?}");
    }
    let d = decoded(dec.decode(&sealed(1, "02ca09"), Some(&key()), now));
    assert_eq!(d.format, Format::BthomeEncrypted);
    assert_eq!(d.values.get("temperature"), Some(25.06));
}

#[test]
fn wrong_key_is_a_mic_failure_and_does_not_move_the_counter() {
    let now = Instant::now();
    let mut dec = BleDecoder::default();
    assert!(matches!(
        dec.decode(&sealed(10, "02ca09"), Some(&key()), now),
        Outcome::Decoded(_)
    ));
    let wrong: BindKey = "814aac74c4f17b6c1581e1ab87816b99".parse().unwrap();
    let out = dec.decode(&sealed(1_000, "02ca09"), Some(&wrong), now);
    assert_eq!(error_kind(&out), "decryption_failed");
    assert_eq!(dec.counters.last(MAC), Some(10));
    assert!(matches!(
        dec.decode(&sealed(11, "02ca09"), Some(&key()), now),
        Outcome::Decoded(_)
    ));
}

#[test]
fn counters_repeat_replay_wrap_and_persist() {
    let now = Instant::now();
    let mut dec = BleDecoder::default();
    let run = |dec: &mut BleDecoder, counter: u32| {
        let out = dec.decode(&sealed(counter, "02ca09"), Some(&key()), now);
        match out {
            Outcome::Decoded(_) => "decoded",
            Outcome::Duplicate { .. } => "duplicate",
            ref o => error_kind(o),
        }
    };
    assert_eq!(run(&mut dec, u32::MAX - 1), "decoded");
    assert!(dec.counters.take_changed());
    // The same frame again (BlueZ passes every copy): a repeat.
    assert_eq!(run(&mut dec, u32::MAX - 1), "duplicate");
    assert!(
        !dec.counters.take_changed(),
        "a repeat changes nothing to persist"
    );
    assert_eq!(run(&mut dec, u32::MAX - 10), "replay");
    assert_eq!(run(&mut dec, u32::MAX), "decoded");
    // The wrap to a small value after 0xFFFFFFFF.
    assert_eq!(run(&mut dec, 3), "decoded");
    // After a restart with the persisted table, old frames stay refused,
    // those from before the wrap included.
    let saved = serde_json::to_string(&dec.counters).unwrap();
    let mut restarted = BleDecoder::new(serde_json::from_str(&saved).unwrap());
    assert_eq!(run(&mut restarted, 2), "replay");
    assert_eq!(run(&mut restarted, 3), "duplicate");
    assert_eq!(run(&mut restarted, u32::MAX - 1), "replay");
    assert_eq!(run(&mut restarted, 4), "decoded");
}

#[test]
fn encrypted_packet_ids_are_deduplicated_too() {
    let now = Instant::now();
    let mut dec = BleDecoder::default();
    assert!(matches!(
        dec.decode(&sealed(1, "000702ca09"), Some(&key()), now),
        Outcome::Decoded(_)
    ));
    // A new counter but the same packet id within 4 s: the same measurement.
    assert!(matches!(
        dec.decode(&sealed(2, "000702ca09"), Some(&key()), now),
        Outcome::Duplicate { .. }
    ));
    let later = now + Duration::from_secs(1);
    assert!(matches!(
        dec.decode(&sealed(3, "000802ca09"), Some(&key()), later),
        Outcome::Decoded(_)
    ));
}

#[test]
fn ruuvi_and_thermometer_repeats_are_duplicates() {
    let now = Instant::now();
    let mut dec = BleDecoder::default();
    for a in [
        with_company(0x0499, RUUVI),
        with_service(0x181A, PVVX),
        with_service(0x181A, ATC),
    ] {
        assert!(matches!(dec.decode(&a, None, now), Outcome::Decoded(_)));
        assert!(
            matches!(dec.decode(&a, None, now), Outcome::Duplicate { .. }),
            "{a:?}"
        );
    }
    // The next Ruuvi sequence (205 → 206) is a new measurement.
    let next = RUUVI.replace("00CDCBB8", "00CECBB8");
    assert!(matches!(
        dec.decode(&with_company(0x0499, &next), None, now),
        Outcome::Decoded(_)
    ));
    // Sequence "not available" (65535) never deduplicates.
    let na = RUUVI.replace("00CDCBB8", "FFFFCBB8");
    for _ in 0..2 {
        assert!(matches!(
            dec.decode(&with_company(0x0499, &na), None, now),
            Outcome::Decoded(_)
        ));
    }
}

#[test]
fn bthome_notes_reach_the_outcome() {
    let d = decoded(BleDecoder::default().decode(
        &with_service(0xFCD2, "4003bf1302ca093a01fe01"),
        None,
        Instant::now(),
    ));
    assert!(d.out_of_order);
    assert_eq!(d.stop, Some(bthome::Stop::UnknownObject { id: 0xFE }));
    assert_eq!(d.events, [Event::Button { event: 1 }]);
    assert_eq!(d.values.len(), 2);
}

#[test]
fn a_recorded_line_end_to_end() {
    // The issue's example line: encrypted BTHome (bthome.io encryption page
    // example) and a Ruuvi frame from the same MAC. BTHome is tried first.
    let line = r#"{"ts":"2026-11-21T10:00:00.000Z","mac":"54:48:E6:8F:80:A5","rssi":-67,"service_data":{"0000fcd2-0000-1000-8000-00805f9b34fb":"41e445f3c9962b332211006c7c4519"},"manufacturer_data":{"0499":"0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F"}}"#;
    let a = Advertisement::parse_line(line).unwrap();
    let mut dec = BleDecoder::default();
    let d = decoded(dec.decode(&a, Some(&key()), Instant::now()));
    let got: Vec<(String, f64)> = d
        .readings(a.time)
        .iter()
        .map(|r| (r.metric().to_string(), r.value()))
        .collect();
    assert_eq!(
        got,
        [
            ("temperature".to_string(), 25.06),
            ("humidity".to_string(), 50.55),
            ("rssi".to_string(), -67.0)
        ]
    );
    assert_eq!(dec.counters.last(MAC), Some(1_122_867));
    // Without the key the encrypted frame is refused, never read as plain.
    let out = BleDecoder::default().decode(&a, None, Instant::now());
    assert_eq!(error_kind(&out), "no_bindkey");
}

#[test]
fn bthome_wins_over_other_service_data() {
    // bthome-ble test_bthome_multiple_uuids: an ATC thermometer sending an
    // 11-byte 0x181A frame, a Xiaomi MiBeacon (0xFE95) and BTHome together.
    let mut a = adv();
    a.service_data.push((
        ServiceUuid::from_u16(0x181A),
        parse_hex("c4248138c1a456088318bf").unwrap(),
    ));
    a.service_data.push((
        ServiceUuid::from_u16(0xFE95),
        parse_hex("30585b0501c4248138c1a4280100").unwrap(),
    ));
    a.service_data.push((
        ServiceUuid::BTHOME,
        parse_hex("40015d025d0903b718").unwrap(),
    ));
    let d = decoded(BleDecoder::default().decode(&a, None, Instant::now()));
    assert_eq!(d.format, Format::Bthome);
    assert_eq!(
        (
            d.values.get("temperature"),
            d.values.get("humidity"),
            d.values.get("battery")
        ),
        (Some(23.97), Some(63.27), Some(93.0))
    );
}

#[test]
fn each_format_names_the_make_it_comes_from() {
    let mut decoder = BleDecoder::default();
    let now = Instant::now();
    let make = |out: Outcome| decoded(out).format.make();
    assert_eq!(
        make(decoder.decode(&with_company(0x0499, RUUVI), None, now)),
        (Some("Ruuvi Innovations"), "RuuviTag")
    );
    assert_eq!(
        make(decoder.decode(&with_service(0x181A, PVVX), None, now)),
        (Some("Xiaomi"), "LYWSD03MMC (PVVX firmware)")
    );
    assert_eq!(
        make(decoder.decode(&with_service(0xFCD2, "4002ca0903bf13"), None, now)),
        (None, "BTHome v2 sensor")
    );
    assert_eq!(Format::BthomeEncrypted.make(), Format::Bthome.make());
    assert_eq!(Format::Atc1441.make().0, Some("Xiaomi"));
}
