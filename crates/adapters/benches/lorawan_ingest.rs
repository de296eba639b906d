//! LoRaWAN ingest cost, per stage and for the whole path:
//!
//! datagram parse (JSON, base64) → peek → MIC (AES-CMAC) → decrypt (AES-CTR)
//! → codec → readings, then `uplink::process` end to end with the frame
//! counters in memory and on disk (one fsync'd atomic rename per uplink,
//! or per batch of uplinks due together, as the adapter does).
//!
//! `cargo bench -p adapters --bench lorawan_ingest` (release profile).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use adapters::lorawan::codecs::Codec;
use adapters::lorawan::config::{DeviceCodec, FcntReset, LorawanDevice};
use adapters::lorawan::dedup::{Reception, Uplink};
use adapters::lorawan::fcnt::FcntStore;
use adapters::lorawan::frame::{self, Key};
use adapters::lorawan::semtech::{self, Datagram, GatewayEui};
use adapters::lorawan::uplink::{self, Devices};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use gateway_core::{DeviceId, Timestamp};

const DEVICES: u32 = 100;
const FRAMES_PER_DEVICE: u32 = 200;
/// Uplinks through the on-disk store: each costs an fsync.
const DISK_UPLINKS: usize = 300;
/// Uplinks per batch when windows close together.
const BATCH: usize = 50;

fn key(n: u32, salt: u8) -> Key {
    let mut k = [salt; 16];
    k[..4].copy_from_slice(&n.to_be_bytes());
    Key(k)
}

fn devices() -> Vec<LorawanDevice> {
    (0..DEVICES)
        .map(|n| LorawanDevice {
            dev_addr: 0x2600_0000 + n,
            nwk_s_key: key(n, 0xA5),
            app_s_key: key(n, 0x5A),
            codec: DeviceCodec::Named(Codec::CompactI16),
            name: None,
            id: DeviceId::new(format!("dev-{n}")).unwrap(),
            fcnt_reset: FcntReset::Reject,
            rx1_delay: std::time::Duration::from_secs(1),
        })
        .collect()
}

/// A PUSH_DATA as lora_pkt_fwd writes it, one rxpk (about 290 bytes).
fn datagram(phy: &[u8]) -> Vec<u8> {
    let mut d = vec![2, 0x12, 0x34, 0x00, 0xAA, 0x55, 0x5A, 0, 0, 0, 0, 1];
    d.extend_from_slice(format!(
        r#"{{"rxpk":[{{"time":"2026-11-21T10:00:00.000000Z","tmst":3512348611,"chan":2,"rfch":0,"freq":868.500000,"stat":1,"modu":"LORA","datr":"SF7BW125","codr":"4/5","rssi":-57,"lsnr":7.5,"size":{},"data":"{}"}}]}}"#,
        phy.len(),
        BASE64.encode(phy)
    )
    .as_bytes());
    d
}

fn report(stage: &str, n: usize, start: Instant) {
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{stage:<44} {:>10.0} /s  {:>8.2} µs each",
        n as f64 / secs,
        secs * 1e6 / n as f64
    );
}

fn main() {
    let devs = devices();
    // Frames in transmission order: every device's FCnt 1, then 2, ...
    let mut frames = Vec::new();
    for fcnt in 1..=FRAMES_PER_DEVICE {
        for d in &devs {
            let payload = [0x00, 0xD7, 0x2D, 0x01, 0x72];
            frames.push(
                frame::seal(d.dev_addr, fcnt, 2, &payload, &d.nwk_s_key, &d.app_s_key).unwrap(),
            );
        }
    }
    let datagrams: Vec<Vec<u8>> = frames.iter().map(|f| datagram(f)).collect();
    let n = frames.len();
    println!(
        "{n} uplinks of {DEVICES} devices, PHYPayload {} bytes, datagram {} bytes",
        frames[0].len(),
        datagrams[0].len()
    );

    let t = Instant::now();
    for d in &datagrams {
        black_box(semtech::parse(black_box(d)).unwrap());
    }
    report("datagram parse (header, JSON, base64)", n, t);

    let t = Instant::now();
    for f in &frames {
        black_box(frame::peek(black_box(f)).unwrap());
    }
    report("PHYPayload peek (MHDR, DevAddr, FCnt)", n, t);

    let by_addr = |addr: u32| &devs[(addr - 0x2600_0000) as usize];
    let t = Instant::now();
    for (i, f) in frames.iter().enumerate() {
        let d = by_addr(frame::peek(f).unwrap().dev_addr);
        let fcnt = (i as u32) / DEVICES + 1;
        let parsed = lorawan::parser::parse(f.clone()).unwrap();
        let lorawan::parser::PhyPayload::Data(lorawan::parser::DataPayload::Encrypted(p)) = parsed
        else {
            panic!("not a data frame")
        };
        assert!(p.validate_mic(&lorawan::keys::AES128(d.nwk_s_key.0), fcnt));
    }
    report("parse + MIC (AES-CMAC)", n, t);

    let t = Instant::now();
    let mut opened = Vec::with_capacity(n);
    for (i, f) in frames.iter().enumerate() {
        let d = by_addr(frame::peek(f).unwrap().dev_addr);
        let fcnt = (i as u32) / DEVICES + 1;
        opened.push(frame::open(f, &d.nwk_s_key, &d.app_s_key, fcnt).unwrap());
    }
    report("parse + MIC + decrypt (frame::open)", n, t);

    let codec = Codec::CompactI16;
    let t = Instant::now();
    for f in &opened {
        black_box(codec.decode(f.application_payload().unwrap()).unwrap());
    }
    report("codec (compact_i16)", n, t);

    let uplinks: Vec<Uplink> = datagrams
        .iter()
        .map(|d| {
            let Datagram::PushData { data, gateway, .. } = semtech::parse(d).unwrap() else {
                panic!()
            };
            let rx = data.rxpk.into_iter().next().unwrap().unwrap();
            Uplink {
                phy: rx.data,
                rssi: rx.rssi,
                snr: rx.lsnr,
                received: Timestamp::from_millis(1_763_719_200_000).unwrap(),
                heard: vec![heard(gateway)].into(),
                first_heard: tokio::time::Instant::now(),
            }
        })
        .collect();
    let table = Devices::new(devs.clone());

    let mut store = FcntStore::in_memory();
    let t = Instant::now();
    let mut readings = 0;
    for up in &uplinks {
        readings += uplink::process(up, &table, &mut store)
            .unwrap()
            .readings
            .len();
    }
    report("uplink::process, counters in memory", n, t);
    assert_eq!(readings, n * 6);

    // The whole path: datagram bytes to readings, counters in memory.
    let mut store = FcntStore::in_memory();
    let t = Instant::now();
    for d in &datagrams {
        let Datagram::PushData { data, gateway, .. } = semtech::parse(d).unwrap() else {
            panic!()
        };
        for rx in data.rxpk.into_iter().flatten() {
            let up = Uplink {
                phy: rx.data,
                rssi: rx.rssi,
                snr: rx.lsnr,
                received: Timestamp::from_millis(1_763_719_200_000).unwrap(),
                heard: vec![heard(gateway)].into(),
                first_heard: tokio::time::Instant::now(),
            };
            black_box(uplink::process(&up, &table, &mut store).unwrap());
        }
    }
    report("WHOLE PATH datagram → readings (memory)", n, t);

    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = FcntStore::open(dir.path());
    let t = Instant::now();
    for up in uplinks.iter().take(DISK_UPLINKS) {
        black_box(uplink::process(up, &table, &mut store).unwrap());
    }
    report("uplink::process, counters fsync'd to disk", DISK_UPLINKS, t);

    // What the adapter does when several windows close together: one
    // atomic write of the counters per batch.
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = FcntStore::open(dir.path());
    let mut names = uplink::MetricNames::default();
    let t = Instant::now();
    for batch in uplinks.chunks(BATCH) {
        let results = uplink::process_batch(batch, &table, &mut store, &mut names);
        assert!(results.iter().all(Result::is_ok));
    }
    report(
        &format!("uplink::process_batch of {BATCH}, fsync'd to disk"),
        n,
        t,
    );
}

/// The one forwarder that heard an uplink.
fn heard(gateway: GatewayEui) -> Reception {
    Reception {
        gateway,
        rssi: None,
        snr: None,
        tmst: None,
        freq: None,
        datr: None,
        rfch: None,
    }
}
