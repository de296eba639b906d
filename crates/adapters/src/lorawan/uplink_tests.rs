use super::*;
use std::borrow::Cow;
use crate::lorawan::codecs::{Codec, FieldSpec, FieldType, StructLayout};
use crate::lorawan::config::DeviceCodec;
use crate::lorawan::frame::{seal, Key};
use crate::lorawan::semtech::GatewayEui;
use crate::lorawan::test_hex as hex;

const LP_NWK: &str = "44024241ed4ce9a68c6a8bc055233fd3";
const LP_APP: &str = "ec925802ae430ca77fd3dd73cb2cc588";
/// lora-packet README: DevAddr 49BE7DF1, FCnt 2, FPort 1, "test".
const README: &str = "40F17DBE4900020001954378762B11FF0D";
/// lora-packet-bad-mic: FCnt 3, MIC byte changed.
const BAD_MIC: &str = "40F17DBE49000300012A3518AA";

fn key(s: &str) -> Key {
    s.parse().unwrap()
}

fn device(id: &str, dev_addr: u32, nwk: &str, codec: DeviceCodec) -> LorawanDevice {
    LorawanDevice {
        dev_addr,
        nwk_s_key: key(nwk),
        app_s_key: key(LP_APP),
        codec,
        name: None,
        id: DeviceId::new(id).unwrap(),
        fcnt_reset: FcntReset::Reject,
        rx1_delay: std::time::Duration::from_secs(1),
    }
}

fn u32_layout() -> DeviceCodec {
    DeviceCodec::Struct(
        StructLayout::new(vec![FieldSpec {
            name: "word".into(),
            ty: FieldType::U32,
            endian: Default::default(),
            scale: 1.0,
            at_byte: None,
        }])
        .unwrap(),
    )
}

fn uplink(phy: Vec<u8>) -> Uplink {
    Uplink {
        phy,
        rssi: Some(-57),
        snr: Some(7.5),
        received: Timestamp::from_millis(1_763_719_200_000).unwrap(),
        heard: [1, 2]
            .map(|g| crate::lorawan::dedup::Reception {
                gateway: GatewayEui([g; 8]),
                rssi: Some(-57),
                snr: Some(7.5),
                tmst: Some(1),
                freq: Some(868.1),
                datr: None,
                rfch: Some(0),
            })
            .into_iter()
            .collect(),
        first_heard: tokio::time::Instant::now(),
    }
}

fn values(a: &Accepted) -> Vec<(String, f64)> {
    a.readings
        .iter()
        .map(|r| (r.metric().to_string(), r.value()))
        .collect()
}

#[test]
fn a_published_frame_becomes_readings_with_signal() {
    let devices = Devices::new(vec![device("lp", 0x49BE_7DF1, LP_NWK, u32_layout())]);
    let mut store = FcntStore::in_memory();
    let a = process(&uplink(hex(README)), &devices, &mut store).unwrap();
    assert_eq!((a.device.as_str(), a.fcnt, a.reset), ("lp", 2, false));
    assert_eq!(
        values(&a),
        [
            ("word".to_string(), f64::from(u32::from_be_bytes(*b"test"))),
            ("rssi".to_string(), -57.0),
            ("snr".to_string(), 7.5),
            ("gateways".to_string(), 2.0),
        ]
    );
    assert_eq!(store.last("lp"), Some(2));
}

#[test]
fn an_uplinks_readings_carry_interned_ids() {
    // A counted id took an atomic increment per reading on the adapter's
    // core and a decrement on the pipeline's; an interned one is copied.
    let devices = Devices::new(vec![device("lp", 0x49BE_7DF1, LP_NWK, u32_layout())]);
    let mut store = FcntStore::in_memory();
    let a = process(&uplink(hex(README)), &devices, &mut store).unwrap();
    assert_eq!(a.readings.len(), 4);
    for r in &a.readings {
        assert!(r.device().is_interned(), "{}", r.device());
        assert!(r.metric().is_interned(), "{}", r.metric());
    }
    assert!(a.device.is_interned());
}

#[test]
fn replays_retransmissions_and_forgeries_are_refused_and_store_nothing() {
    let nwk = key(LP_NWK);
    let app = key(LP_APP);
    let compact = DeviceCodec::Named(Codec::CompactI16);
    let devices = Devices::new(vec![device("d", 0x0102_0304, LP_NWK, compact)]);
    let mut store = FcntStore::in_memory();
    let frame = |fcnt| seal(0x0102_0304, fcnt, 2, &hex("00d72d0172"), &nwk, &app).unwrap();
    let ok = process(&uplink(frame(10)), &devices, &mut store).unwrap();
    assert_eq!(
        values(&ok)[..3],
        [
            ("temperature".to_string(), 21.5),
            ("humidity".to_string(), 45.0),
            ("battery".to_string(), 3.7),
        ]
    );
    let kind = |phy: Vec<u8>, store: &mut FcntStore| {
        process(&uplink(phy), &devices, store).unwrap_err().kind()
    };
    assert_eq!(kind(frame(10), &mut store), "fcnt_retransmission");
    assert_eq!(kind(frame(9), &mut store), "fcnt_replay");
    assert_eq!(kind(frame(0), &mut store), "fcnt_replay");
    let mut forged = frame(11);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(kind(forged, &mut store), "invalid_mic");
    assert_eq!(store.last("d"), Some(10));
    // Past a 16-bit rollover the full counter is rebuilt.
    store.commit("d", 65_535).unwrap();
    let a = process(&uplink(frame(65_537)), &devices, &mut store).unwrap();
    assert_eq!(a.fcnt, 65_537);
}

#[test]
fn fcnt_reset_accept_takes_a_restarted_device() {
    let nwk = key(LP_NWK);
    let app = key(LP_APP);
    let mut d = device("d", 7, LP_NWK, DeviceCodec::Named(Codec::CompactI16));
    d.fcnt_reset = FcntReset::Accept;
    let devices = Devices::new(vec![d]);
    let mut store = FcntStore::in_memory();
    store.commit("d", 500).unwrap();
    let phy = seal(7, 1, 2, &hex("00d72d0172"), &nwk, &app).unwrap();
    let a = process(&uplink(phy.clone()), &devices, &mut store).unwrap();
    assert_eq!((a.fcnt, a.reset), (1, true));
    assert_eq!(store.last("d"), Some(1));
    let again = process(&uplink(phy), &devices, &mut store).unwrap_err();
    assert_eq!(again.kind(), "fcnt_retransmission");
}

#[test]
fn shared_devaddr_is_told_apart_by_the_mic() {
    let other = "000102030405060708090a0b0c0d0e0f";
    let devices = Devices::new(vec![
        device("other", 0x49BE_7DF1, other, u32_layout()),
        device("lp", 0x49BE_7DF1, LP_NWK, u32_layout()),
    ]);
    let mut store = FcntStore::in_memory();
    let a = process(&uplink(hex(README)), &devices, &mut store).unwrap();
    assert_eq!(a.device.as_str(), "lp");
    assert_eq!(store.last("other"), None);
}

#[test]
fn every_other_refusal_has_its_reason() {
    let devices = Devices::new(vec![device("lp", 0x49BE_7DF1, LP_NWK, u32_layout())]);
    let mut store = FcntStore::in_memory();
    let cases = [
        (BAD_MIC, "invalid_mic"),
        // lora-rs hello frame: DevAddr 01020304, not configured.
        ("400403020180010001a694642615d6c3b582", "unknown_dev_addr"),
        // A join request (MHDR 0x00, 23 bytes).
        (
            "00dc0000d07ed5b3701e6fedf57ceeaf00c886030af2c9",
            "join_request",
        ),
        // The README frame with MType UnconfirmedDataDown.
        ("60F17DBE4900020001954378762B11FF0D", "downlink"),
        ("4004030201850100d6c3b582", "fopts_overflow"),
        ("4004030201", "too_short"),
        ("810403020100ff0102030405", "unsupported_major"),
    ];
    for (phy, want) in cases {
        let e = process(&uplink(hex(phy)), &devices, &mut store).unwrap_err();
        assert_eq!(e.kind(), want, "{phy}: {e}");
        assert!(!e.to_string().contains(LP_NWK));
    }
    assert_eq!(store.last("lp"), None);
}

#[test]
fn a_codec_error_keeps_the_signal_readings() {
    let devices = Devices::new(vec![device(
        "lp",
        0x49BE_7DF1,
        LP_NWK,
        DeviceCodec::Named(Codec::CompactI16),
    )]);
    let mut store = FcntStore::in_memory();
    let a = process(&uplink(hex(README)), &devices, &mut store).unwrap();
    assert_eq!(
        a.codec_error.as_ref().map(|e| e.kind()),
        Some("wrong_length")
    );
    assert_eq!(values(&a).len(), 3, "rssi, snr, gateways");
}

#[test]
fn an_unwritable_store_refuses_the_uplink() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let (mut store, _) = FcntStore::open(&state);
    std::fs::remove_dir_all(&state).unwrap();
    let devices = Devices::new(vec![device("lp", 0x49BE_7DF1, LP_NWK, u32_layout())]);
    let e = process(&uplink(hex(README)), &devices, &mut store).unwrap_err();
    assert_eq!(e.kind(), "fcnt_store");
}

#[test]
fn a_batch_is_stored_once_and_judged_in_order() {
    let nwk = key(LP_NWK);
    let app = key(LP_APP);
    let devices = Devices::new(vec![
        device("d", 7, LP_NWK, DeviceCodec::Named(Codec::CompactI16)),
        device("lp", 0x49BE_7DF1, LP_NWK, u32_layout()),
    ]);
    let frame = |fcnt| uplink(seal(7, fcnt, 2, &hex("00d72d0172"), &nwk, &app).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = FcntStore::open(dir.path());
    let batch = [frame(1), uplink(hex(README)), frame(2), frame(1)];
    let kinds: Vec<Result<u32, &str>> =
        process_batch(&batch, &devices, &mut store, &mut MetricNames::default())
            .into_iter()
            .map(|r| r.map(|a| a.fcnt).map_err(|e| e.kind()))
            .collect();
    assert_eq!(kinds, [Ok(1), Ok(2), Ok(2), Err("fcnt_replay")]);
    let (reopened, _) = FcntStore::open(dir.path());
    assert_eq!(
        (reopened.last("d"), reopened.last("lp")),
        (Some(2), Some(2))
    );
}

#[test]
fn a_failed_batch_write_refuses_every_uplink_and_restores_the_counters() {
    let nwk = key(LP_NWK);
    let app = key(LP_APP);
    let devices = Devices::new(vec![device(
        "d",
        7,
        LP_NWK,
        DeviceCodec::Named(Codec::CompactI16),
    )]);
    let frame = |fcnt| uplink(seal(7, fcnt, 2, &hex("00d72d0172"), &nwk, &app).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let (mut store, _) = FcntStore::open(&state);
    store.commit("d", 4).unwrap();
    std::fs::remove_dir_all(&state).unwrap();
    let results = process_batch(
        &[frame(5), frame(6), frame(3)],
        &devices,
        &mut store,
        &mut MetricNames::default(),
    );
    let kinds: Vec<&str> = results
        .iter()
        .map(|r| r.as_ref().unwrap_err().kind())
        .collect();
    assert_eq!(kinds, ["fcnt_store", "fcnt_store", "fcnt_replay"]);
    assert_eq!(store.last("d"), Some(4));
}

#[test]
fn a_metric_name_is_made_once_and_shared() {
    let mut names = MetricNames::default();
    let a = names.get("temperature").unwrap();
    let b = names.get("temperature").unwrap();
    assert_eq!(a, b);
    assert!(std::ptr::eq(a.as_str(), b.as_str()), "one allocation");
    assert!(names.get("a/b").is_none(), "still checked");
    for i in 0..2 * MetricNames::MAX {
        assert_eq!(
            names.get(&format!("m{i}")).unwrap().as_str(),
            format!("m{i}")
        );
    }
    assert_eq!(names.first.len(), MetricNames::FIRST);
    assert_eq!(names.known.len(), MetricNames::MAX, "bounded");
    let again = names.get("m3").unwrap();
    assert!(std::ptr::eq(
        again.as_str(),
        names.get("m3").unwrap().as_str()
    ));
}

#[test]
fn a_static_name_found_by_its_address_is_the_name_of_its_text() {
    let leak = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
    let mut names = MetricNames::default();
    let by_text = names.get("temperature").unwrap();
    let by_address = names.get_static("temperature").unwrap();
    assert!(std::ptr::eq(by_text.as_str(), by_address.as_str()), "one name");
    // The same text elsewhere, and other texts of the same length.
    let copy = names.get_static(leak("temperature")).unwrap();
    assert!(std::ptr::eq(copy.as_str(), by_text.as_str()));
    for text in ["humidity", "pressure", "humidity", "co2_ppm_", "pressure"] {
        assert_eq!(names.get_static(leak(text)).unwrap().as_str(), text);
        assert_eq!(names.get_static(text).unwrap().as_str(), text);
    }
    assert!(names.get_static("a/b").is_none(), "still checked");
    assert!(names.get_cow(Cow::Owned("a/b".into())).is_none());
    assert_eq!(names.get_cow(Cow::Owned("lux".into())).unwrap().as_str(), "lux");
    for i in 0..4 * MetricNames::FIRST {
        let text = leak(&format!("s{i}"));
        assert_eq!(names.get_static(text).unwrap().as_str(), text);
        assert_eq!(names.get_cow(Cow::Borrowed(text)).unwrap().as_str(), text);
    }
    assert!(names.statics.len() <= MetricNames::FIRST, "bounded");
}

#[test]
fn a_prepared_batch_is_judged_on_staged_counters_and_settled_by_its_write() {
    let nwk = key(LP_NWK);
    let app = key(LP_APP);
    let devices = Devices::new(vec![device(
        "d",
        7,
        LP_NWK,
        DeviceCodec::Named(Codec::CompactI16),
    )]);
    let frame = |fcnt| uplink(seal(7, fcnt, 2, &hex("00d72d0172"), &nwk, &app).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = FcntStore::open(dir.path());
    let mut names = MetricNames::default();
    let prepared = prepare_batch(&[frame(1), frame(2)], &devices, &mut store, &mut names);
    assert!(prepared.needs_write());
    assert_eq!(
        store.last("d"),
        Some(2),
        "staged, so later frames are judged by it"
    );
    let on_disk = |dir: &std::path::Path| FcntStore::open(dir).0.last("d");
    assert_eq!(on_disk(dir.path()), None, "not durable before its write");
    store.write().run().unwrap();
    assert_eq!(on_disk(dir.path()), Some(2));
    let fcnts: Vec<u32> = prepared
        .settle(&mut store, Ok(()))
        .into_iter()
        .map(|r| r.unwrap().fcnt)
        .collect();
    assert_eq!(fcnts, [1, 2]);

    // A write that failed: every uplink is refused, the counter put back.
    let prepared = prepare_batch(&[frame(3), frame(4)], &devices, &mut store, &mut names);
    assert_eq!(store.last("d"), Some(4));
    let results = prepared.settle(&mut store, Err(StoreError::WriteAborted));
    let kinds: Vec<&str> = results
        .iter()
        .map(|r| r.as_ref().unwrap_err().kind())
        .collect();
    assert_eq!(kinds, ["fcnt_store", "fcnt_store"]);
    assert_eq!(store.last("d"), Some(2));
    // Nothing staged, nothing to write.
    let prepared = prepare_batch(&[frame(2)], &devices, &mut store, &mut names);
    assert!(!prepared.needs_write());
}

/// A re-join that keeps the DevAddr but changes the keys: the expanded
/// keys follow the session, so a frame under the old keys no longer
/// verifies and the new session's does (a stale key schedule would
/// accept the old session's frames).
#[test]
fn a_new_session_on_the_same_dev_addr_verifies_with_its_own_keys_only() {
    const OTHER_NWK: &str = "000102030405060708090a0b0c0d0e0f";
    let (old_nwk, new_nwk, app) = (key(LP_NWK), key(OTHER_NWK), key(LP_APP));
    let codec = || DeviceCodec::Named(Codec::CompactI16);
    let mut devices = Devices::new(vec![device("d", 7, LP_NWK, codec())]);
    let mut store = FcntStore::in_memory();
    let frame = |fcnt, nwk| uplink(seal(7, fcnt, 2, &hex("00d72d0172"), nwk, &app).unwrap());
    assert_eq!(process(&frame(1, &old_nwk), &devices, &mut store).unwrap().fcnt, 1);

    devices.install(device("d", 7, OTHER_NWK, codec()));
    let stale = process(&frame(2, &old_nwk), &devices, &mut store).unwrap_err();
    assert_eq!(stale.kind(), "invalid_mic", "{stale}");
    assert_eq!(process(&frame(2, &new_nwk), &devices, &mut store).unwrap().fcnt, 2);
    assert_eq!(devices.get(7, "d").map(|d| d.nwk_s_key), Some(new_nwk));
}

/// An uplink of a known device is judged and staged through one lookup
/// of its counter; with the counters shared (a write in flight holds
/// them) through two. Both give the same verdicts, counters, restores and
/// readings over random traffic: next counters, jumps across 16 bits,
/// retransmissions, replays, restarts (either `fcnt_reset` policy),
/// forged MICs, a DevAddr shared by two devices, writes that fail.
#[test]
fn one_counter_lookup_judges_and_stages_as_two_do() {
    const OTHER_NWK: &str = "000102030405060708090a0b0c0d0e0f";
    let (nwk, other, app) = (key(LP_NWK), key(OTHER_NWK), key(LP_APP));
    let codec = || DeviceCodec::Named(Codec::CompactI16);
    let mut accepting = device("a", 7, LP_NWK, codec());
    accepting.fcnt_reset = FcntReset::Accept;
    let devices = Devices::new(vec![
        accepting,
        device("b", 8, LP_NWK, codec()),
        device("c", 9, LP_NWK, codec()),
        device("c2", 9, OTHER_NWK, codec()),
    ]);
    let (mut fast, mut slow) = (FcntStore::in_memory(), FcntStore::in_memory());
    let (mut names_fast, mut names_slow) = (MetricNames::default(), MetricNames::default());
    let mut next = crate::test_rng::xorshift(0x9E37_79B9_7F4A_7C15);
    let mut sent = [0u32; 4];
    let outcome = |r: &Result<Accepted, Rejected>| match r {
        Ok(a) => format!("{} {} {} {:?}", a.device, a.fcnt, a.reset, values(a)),
        Err(e) => format!("{}: {e}", e.kind()),
    };
    let mut accepted = 0;
    for _ in 0..3_000 {
        let r = next();
        let which = (r % 4) as usize;
        let dev_addr = [7, 8, 9, 9][which];
        let fcnt = match (r >> 8) % 8 {
            0 => sent[which],
            1 => sent[which].saturating_sub((r >> 16) as u32 % 40),
            2 => sent[which].wrapping_add((r >> 16) as u32 % 60_000),
            3 => (r >> 16) as u32 % 5,
            _ => sent[which].wrapping_add(1),
        };
        sent[which] = sent[which].max(fcnt);
        let key = if which == 3 || (r >> 40).is_multiple_of(16) { &other } else { &nwk };
        let up = uplink(seal(dev_addr, fcnt, 2, &hex("00d72d0172"), key, &app).unwrap());
        let batch = [up];
        let held = slow.write();
        let one = prepare_batch(&batch, &devices, &mut fast, &mut names_fast);
        let two = prepare_batch(&batch, &devices, &mut slow, &mut names_slow);
        drop(held);
        let written = || {
            if (r >> 48).is_multiple_of(7) {
                Err(StoreError::WriteAborted)
            } else {
                Ok(())
            }
        };
        let one: Vec<String> = one.settle(&mut fast, written()).iter().map(outcome).collect();
        let two: Vec<String> = two.settle(&mut slow, written()).iter().map(outcome).collect();
        assert_eq!(one, two);
        accepted += usize::from(!one[0].contains(':'));
        for id in ["a", "b", "c", "c2"] {
            assert_eq!(fast.last(id), slow.last(id), "{id} after {one:?}");
        }
    }
    assert!(accepted > 300, "{accepted}");
}

/// A counter file lost or damaged: an ABP device past its first 65 536
/// frames was refused for good (the counter rebuilt from 16 bits was
/// always below 65 536, and no MIC verified). Its counter is found by the
/// MIC; an old frame of the same run is then a replay, not a forgery.
#[test]
fn a_device_past_a_rollover_is_taken_back_after_its_counter_was_lost() {
    let nwk = key(LP_NWK);
    let app = key(LP_APP);
    let devices = Devices::new(vec![device(
        "d",
        0x0102_0304,
        LP_NWK,
        DeviceCodec::Named(Codec::CompactI16),
    )]);
    let mut store = FcntStore::in_memory();
    let frame = |fcnt| seal(0x0102_0304, fcnt, 2, &hex("00d72d0172"), &nwk, &app).unwrap();
    let a = process(&uplink(frame(131_337)), &devices, &mut store).unwrap();
    assert_eq!((a.fcnt, a.reset), (131_337, false));
    assert_eq!(store.last("d"), Some(131_337));
    let b = process(&uplink(frame(131_338)), &devices, &mut store).unwrap();
    assert_eq!(b.fcnt, 131_338);
    let kind = |phy: Vec<u8>, store: &mut FcntStore| {
        process(&uplink(phy), &devices, store).unwrap_err().kind()
    };
    assert_eq!(kind(frame(131_300), &mut store), "fcnt_replay");
    assert_eq!(kind(frame(70_000), &mut store), "fcnt_replay");
    let mut forged = frame(131_339);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(kind(forged, &mut store), "invalid_mic");
    assert_eq!(store.last("d"), Some(131_338));
}

/// A confirmed uplink sent again (its ACK was lost) is refused as a
/// retransmission, with the frame kept for the ACK it is owed; an
/// unconfirmed one, or an older confirmed one, owes nothing.
#[test]
fn a_confirmed_uplink_sent_again_keeps_its_frame_for_the_ack() {
    let nwk = key(LP_NWK);
    let app = key(LP_APP);
    let devices = Devices::new(vec![device(
        "d",
        0x0102_0304,
        LP_NWK,
        DeviceCodec::Named(Codec::CompactI16),
    )]);
    let mut store = FcntStore::in_memory();
    let confirmed = |fcnt: u32| {
        let mut phy = seal(0x0102_0304, fcnt, 2, &hex("00d72d0172"), &nwk, &app).unwrap();
        phy[0] = 0x80;
        let at = phy.len() - 4;
        let mic = crate::lorawan::crypto::data_mic(
            &nwk,
            crate::lorawan::crypto::Direction::Up,
            0x0102_0304,
            fcnt,
            &phy[..at],
        );
        phy[at..].copy_from_slice(&mic);
        phy
    };
    process(&uplink(confirmed(5)), &devices, &mut store).unwrap();
    match process(&uplink(confirmed(5)), &devices, &mut store).unwrap_err() {
        Rejected::Retransmission {
            fcnt: 5,
            confirmed: Some(frame),
            ..
        } => assert!(crate::lorawan::class_a::needs_answer(&frame)),
        other => panic!("{other:?}"),
    }
    process(&uplink(confirmed(6)), &devices, &mut store).unwrap();
    assert!(matches!(
        process(&uplink(confirmed(5)), &devices, &mut store).unwrap_err(),
        Rejected::Retransmission {
            confirmed: None,
            ..
        } | Rejected::Replay { .. }
    ));
    let plain = seal(0x0102_0304, 6, 2, &hex("00d72d0172"), &nwk, &app).unwrap();
    assert!(matches!(
        process(&uplink(plain), &devices, &mut store).unwrap_err(),
        Rejected::Retransmission {
            confirmed: None,
            ..
        }
    ));
}

/// A device first heard (no counter stored: new here, or its counter
/// lost) at FCnt 65 535 is taken: the 16 bits on air are the counter
/// itself, not the one before 0 (2^32 − 1), which no frame of it has.
#[test]
fn a_device_first_heard_at_fcnt_65535_is_taken() {
    let nwk = key(LP_NWK);
    let app = key(LP_APP);
    let devices = Devices::new(vec![device(
        "d",
        0x0102_0304,
        LP_NWK,
        DeviceCodec::Named(Codec::CompactI16),
    )]);
    let frame = |fcnt| seal(0x0102_0304, fcnt, 2, &hex("00d72d0172"), &nwk, &app).unwrap();
    let mut store = FcntStore::in_memory();
    let a = process(&uplink(frame(65_535)), &devices, &mut store).unwrap();
    assert_eq!((a.fcnt, a.reset), (65_535, false));
    assert_eq!(store.last("d"), Some(65_535));
    // And on past the rollover.
    let b = process(&uplink(frame(65_536)), &devices, &mut store).unwrap();
    assert_eq!(b.fcnt, 65_536);
    // One rollover later, with its counter lost again: found by the MIC.
    let mut store = FcntStore::in_memory();
    let c = process(&uplink(frame(131_071)), &devices, &mut store).unwrap();
    assert_eq!(c.fcnt, 131_071);
}
