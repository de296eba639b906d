//! BLE decode cost, per decoder and through the dispatcher, on one core:
//!
//! recorded line parse (JSON, hex) → BTHome plain / encrypted (AES-CCM) /
//! Ruuvi RAWv2 / PVVX / ATC1441 → `BleDecoder::decode` end to end with its
//! state (counters, packet ids, sequences) → readings.
//!
//! `cargo bench -p adapters --bench ble_decode` (release profile). Each
//! line is single-threaded, so decodes/s is per core.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use adapters::ble::advert::parse_hex;
use adapters::ble::bthome_crypto::seal;
use adapters::ble::{
    bthome, ruuvi, xiaomi, Advertisement, BindKey, BleDecoder, Mac, Outcome, ServiceUuid,
};
use gateway_core::Timestamp;

const DEVICES: u8 = 100;
const FRAMES_PER_DEVICE: u32 = 500;
/// Each stage runs for about this long.
const STAGE: Duration = Duration::from_millis(700);

fn report(stage: &str, n: u64, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    println!(
        "{stage:<46} {:>12.0} decodes/s/core  {:>8.3} µs each",
        n as f64 / secs,
        secs * 1e6 / n as f64
    );
}

/// Runs `f` over `inputs` round-robin for about [`STAGE`].
fn stage<T>(name: &str, inputs: &[T], mut f: impl FnMut(&T)) {
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < STAGE {
        for x in inputs {
            f(x);
        }
        n += inputs.len() as u64;
    }
    report(name, n, start.elapsed());
}

fn mac(n: u8) -> Mac {
    Mac([0xA4, 0xC1, 0x38, 0x00, 0x00, n])
}

fn key(n: u8) -> BindKey {
    BindKey([n; 16])
}

fn adv(mac: Mac) -> Advertisement {
    Advertisement::new(
        mac,
        Some(-67),
        Timestamp::from_millis(1_763_719_200_000).unwrap(),
    )
}

fn main() {
    // temperature | humidity | battery | voltage: a typical room sensor.
    let objects = parse_hex("02ca0903bf1301550c020c").unwrap();
    let plain = [&[0x40u8][..], &objects].concat();
    let sealed = seal(&key(1), mac(1), 0x41, 1, &objects);
    let ruuvi_frame = parse_hex("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F").unwrap();
    let pvvx_frame = parse_hex("b2188d38c1a4240918158b0b572a05").unwrap();
    let atc_frame = parse_hex("a4c1388d18b200ea36570b8b2a").unwrap();
    println!(
        "BTHome {} bytes plain, {} encrypted; Ruuvi {}; PVVX {}; ATC {}",
        plain.len(),
        sealed.len(),
        ruuvi_frame.len(),
        pvvx_frame.len(),
        atc_frame.len()
    );

    let mut line_adv = adv(mac(1));
    line_adv
        .service_data
        .push((ServiceUuid::BTHOME, sealed.clone()));
    let line = line_adv.to_line();
    stage("recorded line parse (JSON, hex)", &[line], |l| {
        black_box(Advertisement::parse_line(black_box(l)).unwrap());
    });
    stage(
        "BTHome plain: header + objects",
        std::slice::from_ref(&plain),
        |d| {
            black_box(bthome::decode(black_box(d), mac(1), None).unwrap());
        },
    );
    let k = key(1);
    stage(
        "BTHome encrypted: AES-CCM + objects",
        std::slice::from_ref(&sealed),
        |d| {
            black_box(bthome::decode(black_box(d), mac(1), Some(&k)).unwrap());
        },
    );
    stage("Ruuvi RAWv2", std::slice::from_ref(&ruuvi_frame), |d| {
        black_box(ruuvi::decode(black_box(d)).unwrap().values());
    });
    stage("PVVX custom", &[pvvx_frame], |d| {
        black_box(xiaomi::decode(black_box(d)).unwrap().values());
    });
    stage("ATC1441", &[atc_frame], |d| {
        black_box(xiaomi::decode(black_box(d)).unwrap().values());
    });

    // The dispatcher with its state: frames in transmission order from
    // many devices, each accepted once (fresh counters and sequences).
    let keys: Vec<BindKey> = (0..DEVICES).map(key).collect();
    let mut encrypted = Vec::new();
    let mut ruuvis = Vec::new();
    for counter in 1..=FRAMES_PER_DEVICE {
        for d in 0..DEVICES {
            let mut a = adv(mac(d));
            let data = seal(&keys[usize::from(d)], mac(d), 0x41, counter, &objects);
            a.service_data.push((ServiceUuid::BTHOME, data));
            encrypted.push((a, d));
            let mut r = adv(mac(d));
            let mut frame = ruuvi_frame.clone();
            frame[16..18].copy_from_slice(&(counter as u16).to_be_bytes());
            r.manufacturer_data.push((ruuvi::COMPANY_ID, frame));
            ruuvis.push(r);
        }
    }
    let time = Timestamp::from_millis(1_763_719_200_000).unwrap();
    let start = Instant::now();
    let mut dec = BleDecoder::default();
    let mut readings = 0;
    for (a, d) in &encrypted {
        let Outcome::Decoded(v) = dec.decode(a, Some(&keys[usize::from(*d)]), start) else {
            panic!("refused");
        };
        readings += v.readings(time).len();
    }
    report(
        "dispatch: encrypted BTHome → readings",
        encrypted.len() as u64,
        start.elapsed(),
    );
    assert_eq!(readings, encrypted.len() * 5);

    let start = Instant::now();
    let mut dec = BleDecoder::default();
    for a in &ruuvis {
        let Outcome::Decoded(v) = dec.decode(a, None, start) else {
            panic!("refused");
        };
        black_box(v.readings(time));
    }
    report(
        "dispatch: Ruuvi → readings",
        ruuvis.len() as u64,
        start.elapsed(),
    );

    // A crowd of phones and beacons: counted, never decoded.
    let mut phone = adv(mac(200));
    phone
        .manufacturer_data
        .push((0x004C, vec![0x10, 0x05, 0x01, 0x18]));
    let mut dec = BleDecoder::default();
    stage("dispatch: unrelated advertisement", &[phone], |a| {
        black_box(dec.decode(black_box(a), None, Instant::now()));
    });
}
