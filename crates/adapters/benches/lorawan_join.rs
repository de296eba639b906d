//! OTAA cost: join-requests handled per second with their accepts built
//! (MIC check, DevNonce check, JoinNonce/DevAddr, key derivation, the
//! encrypted accept and its `txpk`), against the PUSH_DATA parse rate of
//! the same datagrams measured in the same run; the same with the session
//! fsync'd to disk as the adapter does; then uplinks/s of the joined fleet
//! beside an ABP fleet of the same size.
//!
//! `cargo bench -p adapters --bench lorawan_join` (release profile).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use adapters::lorawan::config::{DeviceCodec, FcntReset, LorawanDevice, Network, OtaaDevice};
use adapters::lorawan::dedup::Uplink;
use adapters::lorawan::downlink::{Heard, Links};
use adapters::lorawan::fcnt::FcntStore;
use adapters::lorawan::frame::{self, Key};
use adapters::lorawan::join::{Eui, JoinRequest};
use adapters::lorawan::otaa::{self, Joins};
use adapters::lorawan::semtech::{self, GatewayEui};
use adapters::lorawan::uplink::{self, Devices};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use gateway_core::{DeviceId, Timestamp};

const DEVICES: u32 = 1_000;
/// Joins through the on-disk store: each costs an fsync.
const DISK_JOINS: u32 = 100;
const UPLINKS_PER_DEVICE: u32 = 20;
const GW: GatewayEui = GatewayEui([0xAA, 0x55, 0x5A, 0, 0, 0, 0, 1]);

fn otaa_device(n: u32) -> OtaaDevice {
    let mut eui = [0x00, 0x4A, 0x77, 0x00, 0, 0, 0, 0];
    eui[4..].copy_from_slice(&n.to_be_bytes());
    let mut key = [0x3C; 16];
    key[..4].copy_from_slice(&n.to_be_bytes());
    OtaaDevice {
        dev_eui: Eui(eui),
        join_eui: Eui([0x70, 0xB3, 0xD5, 0x7E, 0xD0, 0, 0, 1]),
        app_key: Key(key),
        codec: DeviceCodec::Named("compact_i16".parse().unwrap()),
        name: None,
        id: DeviceId::new(format!("otaa-{n}")).unwrap(),
        fcnt_reset: FcntReset::Reject,
    }
}

fn push_data(phy: &[u8]) -> Vec<u8> {
    let mut d = vec![2, 0x12, 0x34, 0x00];
    d.extend_from_slice(&GW.0);
    d.extend_from_slice(
        format!(
            r#"{{"rxpk":[{{"tmst":3512348611,"chan":2,"rfch":0,"freq":868.5,"stat":1,"modu":"LORA","datr":"SF7BW125","codr":"4/5","rssi":-70,"lsnr":7.5,"size":{},"data":"{}"}}]}}"#,
            phy.len(),
            BASE64.encode(phy)
        )
        .as_bytes(),
    );
    d
}

fn uplink_of(phy: Vec<u8>) -> Uplink {
    Uplink {
        phy,
        rssi: Some(-70),
        snr: Some(7.5),
        received: Timestamp::from_millis(1_763_719_200_000).unwrap(),
        heard: vec![Heard {
            gateway: GW,
            rssi: Some(-70),
            snr: Some(7.5),
            tmst: Some(3_512_348_611),
            freq: Some(868.5),
            datr: Some("SF7BW125".into()),
            rfch: Some(0),
        }]
        .into(),
        first_heard: tokio::time::Instant::now(),
    }
}

fn rate(label: &str, n: u32, t: Instant) -> f64 {
    let secs = t.elapsed().as_secs_f64();
    let per_s = f64::from(n) / secs;
    println!(
        "{label:<58} {:>9.2} µs  {per_s:>12.0} /s",
        secs * 1e6 / f64::from(n)
    );
    per_s
}

fn main() {
    let devices: Vec<OtaaDevice> = (0..DEVICES).map(otaa_device).collect();
    let requests: Vec<Vec<u8>> = devices
        .iter()
        .map(|d| {
            JoinRequest {
                join_eui: d.join_eui,
                dev_eui: d.dev_eui,
                dev_nonce: 1,
            }
            .seal(&d.app_key)
        })
        .collect();
    let datagrams: Vec<Vec<u8>> = requests.iter().map(|r| push_data(r)).collect();
    println!("{DEVICES} OTAA devices, one join-request each");

    let t = Instant::now();
    for d in &datagrams {
        black_box(semtech::parse(black_box(d)).unwrap());
    }
    let parse_rate = rate("PUSH_DATA parse (the receive path's limit)", DEVICES, t);

    let network = Network::default();
    let joins = Joins::new(devices.clone(), network);
    let mut links = Links::default();
    let now = tokio::time::Instant::now();
    links.pulled(GW, "127.0.0.1:1700".parse().unwrap(), 2, now);
    let ups: Vec<Uplink> = requests.iter().map(|r| uplink_of(r.clone())).collect();

    let mut store = FcntStore::in_memory();
    let t = Instant::now();
    let mut joined = Vec::new();
    for up in &ups {
        joined.push(otaa::handle(black_box(up), &joins, &mut store, &links, now).unwrap());
    }
    let join_rate = rate("join handled, accept built (session in memory)", DEVICES, t);
    println!(
        "  joins/s are {:.1}% of the PUSH_DATA parse rate measured above",
        100.0 * join_rate / parse_rate
    );

    let dir = tempfile::tempdir().unwrap();
    let (mut disk, _) = FcntStore::open(dir.path());
    let t = Instant::now();
    for up in ups.iter().take(DISK_JOINS as usize) {
        black_box(otaa::handle(up, &joins, &mut disk, &links, now).unwrap());
    }
    rate(
        "join handled, session fsync'd before the accept",
        DISK_JOINS,
        t,
    );

    // Uplinks of the joined fleet, and of an ABP fleet of the same size.
    let otaa_fleet: Vec<LorawanDevice> = joined.into_iter().map(|j| j.device).collect();
    let abp_fleet: Vec<LorawanDevice> = otaa_fleet
        .iter()
        .enumerate()
        .map(|(i, d)| LorawanDevice {
            dev_addr: 0x2600_0000 + i as u32,
            id: DeviceId::new(format!("abp-{i}")).unwrap(),
            ..d.clone()
        })
        .collect();
    for (label, fleet) in [("OTAA", otaa_fleet), ("ABP", abp_fleet)] {
        let mut frames = Vec::new();
        for fcnt in 1..=UPLINKS_PER_DEVICE {
            for d in &fleet {
                let payload = [0x00, 0xD7, 0x2D, 0x01, 0x72];
                let phy =
                    frame::seal(d.dev_addr, fcnt, 2, &payload, &d.nwk_s_key, &d.app_s_key).unwrap();
                frames.push(uplink_of(phy));
            }
        }
        let table = Devices::new(fleet);
        let mut store = FcntStore::in_memory();
        let t = Instant::now();
        for up in &frames {
            black_box(uplink::process(up, &table, &mut store).unwrap());
        }
        rate(
            &format!("{label} uplink::process, {DEVICES} devices, counters in memory"),
            DEVICES * UPLINKS_PER_DEVICE,
            t,
        );
    }
}
