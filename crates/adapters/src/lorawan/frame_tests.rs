//! Tests against tests/data/vectors/lorawan_uplinks.json.

use super::*;
use crate::lorawan::test_hex as hex;

fn key(s: &str) -> Key {
    s.parse().unwrap()
}

const LP_NWK: &str = "44024241ed4ce9a68c6a8bc055233fd3";
const LP_APP: &str = "ec925802ae430ca77fd3dd73cb2cc588";
const RS_NWK: &str = "02020202020202020202020202020202";
const RS_APP: &str = "01010101010101010101010101010101";

/// (id, phy, nwk, app, dev_addr, fcnt16, fport, plaintext).
type ValidRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    u32,
    u16,
    Option<u8>,
    Vec<u8>,
);

/// `vectors` with `mic_valid: true`.
#[test]
fn valid_uplinks_verify_and_decrypt() {
    let lorem = "Lorem ipsum dolor sit amet, consetetur sadipscing elitr, sed diam nonumy eirmod tempor invidunt ut labore et dolore magna aliquyam erat, sed diam voluptua. At vero eos et accusam et justo duo dolores et ea rebum. Stet clita kasd gubergren, not";
    let rows: [ValidRow; 6] = [
        ("lora-packet-readme-test", "40F17DBE4900020001954378762B11FF0D", LP_NWK, LP_APP, 0x49BE7DF1, 2, Some(1), b"test".to_vec()),
        ("lora-packet-large-payload", "40f17dbe490004000155332de41a11adc072553544429ce7787707d1c316e027e7e5e334263376affb8aa17ad30075293f28dea8a20af3c5e7", LP_NWK, LP_APP, 0x49BE7DF1, 4, Some(1), b"The quick brown fox jumps over the lazy dog.".to_vec()),
        ("lora-packet-empty-frmpayload", "40F17DBE49000300012A3518AF", LP_NWK, LP_APP, 0x49BE7DF1, 3, Some(1), vec![]),
        ("lora-rs-hello-adr", "400403020180010001a694642615d6c3b582", RS_NWK, RS_APP, 0x01020304, 1, Some(1), b"hello".to_vec()),
        ("lora-rs-long-lorem", "400403020100000001275ae9942a58322148bad6ca7d746e774af8667a7b72364be4e19d2f5c23984fe25e8e2ddbd515b54ebe80cec21cd65a88130fbe6d04aab2bc39abbed9e873efc785e5655d6272f8796b1e839f2b1bdeaba2016c7ef9169d51f4ea261bc6089c83b33c6f30a73ce13c52557c46d791e7e01b39e0b89c1d2e3508841b67e3ec886f96eb0e111640d3c194f12149ab584bd931dc15fc119497dccbf2b5b916b85242963341a58bb5877bd5af9ee42d8b6f484585a6f9cbaff72ee10942e1238c98d7bfe7ca0b2db2248db91cd23a71c6db9b768cf7ef17f051cf423e73477abc9b0ff062de1e85202992ddca583744190c4ff7e1b42ea3cc", RS_NWK, RS_APP, 0x01020304, 0, Some(1), lorem.as_bytes().to_vec()),
        ("lora-rs-fport0-maccommands", "40040302010000000069369eee6aa508", "01010101010101010101010101010101", "00000000000000000000000000000000", 0x01020304, 0, Some(0), vec![0x02, 0x03, 0x05]),
    ];
    for (id, phy, nwk, app, dev_addr, fcnt16, fport, plain) in rows {
        let phy = hex(phy);
        let head = peek(&phy).unwrap();
        assert_eq!(
            (head.mtype, head.dev_addr, head.fcnt16),
            (MType::UnconfirmedDataUp, dev_addr, fcnt16),
            "{id}"
        );
        let frame = open(&phy, &key(nwk), &key(app), u32::from(fcnt16))
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!((frame.fport, &frame.payload[..]), (fport, &plain[..]), "{id}");
        assert_eq!(frame.mic.as_slice(), &phy[phy.len() - 4..], "{id}");
    }
}

#[test]
fn fport0_is_mac_commands_not_application_data() {
    let frame = open(
        &hex("40040302010000000069369eee6aa508"),
        &key(RS_APP),
        &key("00000000000000000000000000000000"),
        0,
    )
    .unwrap();
    assert_eq!(frame.application_payload(), None);
    let names: Vec<_> = frame.mac_commands.iter().map(|c| c.name).collect();
    assert_eq!(names, ["LinkCheckReq", "LinkADRAns"]);
}

#[test]
fn fopts_mac_commands_without_fport() {
    let frame = open(
        &hex("4004030201030000020305d7fa0c6c"),
        &key(RS_APP),
        &key("00000000000000000000000000000000"),
        0,
    )
    .unwrap();
    assert_eq!(frame.fctrl, 0x03);
    assert_eq!((frame.fport, frame.payload.as_slice()), (None, &[][..]));
    assert_eq!(frame.application_payload(), None);
    let cmds: Vec<_> = frame
        .mac_commands
        .iter()
        .map(|c| (c.cid, c.payload.clone()))
        .collect();
    assert_eq!(cmds, [(0x02, vec![]), (0x03, vec![0x05])]);
    assert!(frame.mac_unparsed.is_empty());
}

#[test]
fn bad_mic_and_wrong_key_are_refused() {
    let rows: [(&str, &str, &str, &str); 4] = [
        (
            "lora-packet-bad-mic",
            "40F17DBE49000300012A3518AA",
            LP_NWK,
            LP_APP,
        ),
        (
            "lora-rs-hello-corrupted-fport",
            "4004030201800100eea694642615d6c3b582",
            RS_NWK,
            RS_APP,
        ),
        (
            "readme frame, NwkSKey and AppSKey swapped",
            "40F17DBE4900020001954378762B11FF0D",
            LP_APP,
            LP_NWK,
        ),
        (
            "hello frame, other device's key",
            "400403020180010001a694642615d6c3b582",
            LP_NWK,
            RS_APP,
        ),
    ];
    for (id, phy, nwk, app) in rows {
        let phy = hex(phy);
        assert!(peek(&phy).is_ok(), "{id}");
        assert_eq!(
            open(
                &phy,
                &key(nwk),
                &key(app),
                1.max(u32::from(peek(&phy).unwrap().fcnt16))
            ),
            Err(FrameError::InvalidMic),
            "{id}"
        );
    }
}

#[test]
fn wrong_appskey_passes_the_mic_and_yields_garbage() {
    // FAULTS §3.4: undetectable at this layer; the codec must survive it.
    let frame = open(
        &hex("40F17DBE4900020001954378762B11FF0D"),
        &key(LP_NWK),
        &key(RS_APP),
        2,
    )
    .unwrap();
    assert_ne!(frame.payload[..], b"test"[..]);
    assert_eq!(frame.payload.len(), 4);
}

#[test]
fn fcnt32_needs_the_full_counter() {
    // A downlink: the only published frame with FCnt above 16 bits.
    let phy = hex("a00403020180ff2a2a0af1a36a05d0125f885d881d49e1");
    let head = peek(&phy).unwrap();
    assert_eq!((head.mtype, head.fcnt16), (MType::ConfirmedDataDown, 11007));
    let (nwk, app) = (key(RS_NWK), key(RS_APP));
    assert_eq!(open(&phy, &nwk, &app, 11007), Err(FrameError::InvalidMic));
    // The counter was at 76 000: the reconstruction lands on 76 543.
    let full = full_fcnt(76_000, head.fcnt16);
    assert_eq!(full, 76_543);
    let frame = open(&phy, &nwk, &app, full).unwrap();
    assert_eq!(
        (frame.fport, frame.payload.as_slice()),
        (Some(42), &b"hello lora"[..])
    );
    assert_eq!(frame.fcnt, 76_543);
}

#[test]
fn fcnt_reconstruction_table() {
    // fcnt_reconstruction_table: (next_expected, received16, full).
    let rows: [(u32, u16, u32, &str); 9] = [
        (1, 1, 1, "as expected"),
        (65536, 0, 65536, "as expected"),
        (65537, 1, 65537, "as expected"),
        (0, 1, 1, "one frame lost"),
        (65537, 2, 65538, "one frame lost"),
        (2, 1, 1, "re-transmission of previous frame"),
        (65537, 0, 65536, "re-transmission of previous frame"),
        (65536, 65535, 65535, "re-transmission of previous frame"),
        (4_294_967_295, 0, 0, "32-bit wrap"),
    ];
    for (next, received, want, case) in rows {
        assert_eq!(
            full_fcnt(next, received),
            want,
            "{case}: ({next}, {received})"
        );
    }
}

#[test]
fn malformed_frames_are_errors_not_panics() {
    let rows: [(&str, &str, FrameError); 7] = [
        (
            "lora-rs-fopts-len-exceeds-frame (rust-lorawan #94)",
            "4004030201850100d6c3b582",
            FrameError::FOptsOverflow {
                fopts_len: 5,
                needed: 17,
                len: 12,
            },
        ),
        (
            "lora-rs-too-short-5-bytes",
            "4004030201",
            FrameError::TooShort { len: 5 },
        ),
        (
            "lora-rs-too-few-bytes-11",
            "800403020100ff01020304",
            FrameError::TooShort { len: 11 },
        ),
        (
            "lora-rs-unsupported-major",
            "810403020100ff0102030405",
            FrameError::UnsupportedMajor(1),
        ),
        (
            "lora-rs-fopts-len-1-too-short (a join request)",
            "000403020101ff0401020304",
            FrameError::JoinRequest,
        ),
        (
            "PROTOCOL.TXT third rxpk: MHDR 0xca, major 2 caught before MType RFU",
            "cac811978e76c4d2dea7d4b5353220da5a26283c54827dc327b0c4f9bd3402cb",
            FrameError::UnsupportedMajor(2),
        ),
        ("empty", "", FrameError::TooShort { len: 0 }),
    ];
    for (id, phy, want) in rows {
        assert_eq!(peek(&hex(phy)), Err(want), "{id}");
        assert_eq!(
            open(&hex(phy), &key(RS_NWK), &key(RS_APP), 0),
            Err(want),
            "{id}"
        );
    }
    assert_eq!(peek(&[0xC0; 12]), Err(FrameError::NotDataFrame(0b110)));
    assert_eq!(peek(&[0xE0; 12]), Err(FrameError::NotDataFrame(0b111)));
    assert_eq!(peek(&[0x20; 17]), Err(FrameError::JoinAccept));
    // helium-push-data-rxpk's PHYPayload is a join request.
    assert_eq!(
        peek(&hex("00b40000000100000048656c69756d2020342c360236b0")),
        Err(FrameError::JoinRequest)
    );
}

#[test]
fn issue18_frame_parses_past_a_class_b_command() {
    let phy = hex("4084412505A3010009110308B33750F504D4B86A");
    let head = peek(&phy).unwrap();
    assert_eq!((head.dev_addr, head.fcnt16), (0x05254184, 1));
    // No published keys: the MIC fails, but nothing panics on the way.
    assert_eq!(
        open(&phy, &key(RS_NWK), &key(RS_APP), 1),
        Err(FrameError::InvalidMic)
    );
}

#[test]
fn every_truncation_and_random_frame_is_handled() {
    let phy = hex("400403020180010001a694642615d6c3b582");
    for cut in 0..phy.len() {
        assert!(
            open(&phy[..cut], &key(RS_NWK), &key(RS_APP), 1).is_err(),
            "cut at {cut}"
        );
    }
    let mut state = 0xF00D_u64;
    for _ in 0..5_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (state % 40) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|i| (state >> (i % 8 * 8)) as u8 ^ i as u8)
            .collect();
        let _ = open(&bytes, &key(RS_NWK), &key(RS_APP), state as u32);
    }
}

#[test]
fn keys_parse_and_never_print() {
    let k = key("44024241ed4ce9a68c6a8bc055233fd3");
    assert_eq!(k.0[0], 0x44);
    assert_eq!(format!("{k:?}"), "Key(<redacted>)");
    for bad in [
        "",
        "4402",
        "44024241ed4ce9a68c6a8bc055233fdz",
        "44024241ed4ce9a68c6a8bc055233fd3ff",
        "é4024241ed4ce9a68c6a8bc055233fd",
    ] {
        let err = bad.parse::<Key>().unwrap_err();
        assert!(!err.to_string().contains(bad) || bad.is_empty(), "{err}");
    }
}

/// The `open` this crate had before it computed the MIC and the key
/// stream itself: the `lorawan` crate's `validate_mic` and `decrypt`.
fn open_by_crate(phy: &[u8], nwk: &Key, app: &Key, fcnt: u32) -> Result<DataFrame, FrameError> {
    use lorawan::keys::AES128;
    use lorawan::parser::{DataHeader, DataPayload, PhyPayload};
    let head = peek(phy)?;
    let (nwk, app) = (AES128(nwk.0), AES128(app.0));
    let mut copy = phy.to_vec();
    let Ok(PhyPayload::Data(DataPayload::Encrypted(encrypted))) = parser::parse(&mut copy[..])
    else {
        return Err(FrameError::Malformed);
    };
    if !encrypted.validate_mic(&nwk, fcnt) {
        return Err(FrameError::InvalidMic);
    }
    let fctrl = encrypted.fhdr().fctrl().raw_value();
    let fopts = encrypted.fhdr().data().to_vec();
    let fport_at = MHDR_LEN + FHDR_MIN_LEN + fopts.len();
    let fport = (phy.len() > fport_at + MIC_LEN).then(|| phy[fport_at]);
    let bytes = encrypted.decrypt(Some(&nwk), Some(&app), fcnt).unwrap().to_inner();
    let payload: super::FramePayload = match fport {
        Some(_) => bytes[fport_at + 1..bytes.len() - MIC_LEN].into(),
        None => Default::default(),
    };
    let mac_area = if fport == Some(0) { &payload[..] } else { &fopts[..] };
    let (mac_commands, rest) = mac::parse(mac_area, head.mtype.is_uplink());
    Ok(DataFrame {
        mtype: head.mtype,
        dev_addr: head.dev_addr,
        fctrl,
        fcnt16: head.fcnt16,
        fcnt,
        mac_unparsed: rest.to_vec(),
        mac_commands,
        fport,
        payload,
        mic: phy[phy.len() - MIC_LEN..].try_into().unwrap(),
    })
}

/// Random data frames of every MType, FOpts length, FPort (0 or not,
/// absent, with an empty FRMPayload), 32-bit counter and key, their MIC
/// made by RustCrypto's CMAC: our reading gives what the `lorawan`
/// crate's gives, byte for byte, and refuses what it refuses.
#[test]
fn open_agrees_with_the_lorawan_crate_on_random_frames_and_keys() {
    use aes::cipher::KeyInit;
    use aes::Aes128;
    use cmac::{Cmac, Mac};
    let mut state = 0xC0FF_EE00_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut accepted, mut fport0) = (0, 0);
    for round in 0..3_000 {
        let mut keys = [[0u8; 16]; 2];
        keys.iter_mut().flatten().for_each(|b| *b = next() as u8);
        let (nwk, app) = (Key(keys[0]), Key(keys[1]));
        let mhdr = [0x40, 0x60, 0x80, 0xA0][round % 4];
        let fopts_len = (next() % 16) as usize;
        let fcnt = next() as u32;
        let dev_addr = next() as u32;
        let mut phy = vec![mhdr];
        phy.extend(dev_addr.to_le_bytes());
        phy.push((next() as u8 & 0xF0) | fopts_len as u8);
        phy.extend((fcnt as u16).to_le_bytes());
        phy.extend((0..fopts_len).map(|_| next() as u8));
        // No FPort, FPort with nothing after it, or FPort and a payload.
        match round % 5 {
            0 => {}
            1 => phy.push(next() as u8),
            _ => {
                phy.push(if round % 7 == 0 { 0 } else { next() as u8 });
                let len = (next() % 60) as usize;
                phy.extend((0..len).map(|_| next() as u8));
            }
        }
        let mut b0 = [0u8; 16];
        b0[0] = 0x49;
        b0[5] = (mhdr >> 5) & 1;
        b0[6..10].copy_from_slice(&dev_addr.to_le_bytes());
        b0[10..14].copy_from_slice(&fcnt.to_le_bytes());
        b0[15] = phy.len() as u8;
        let mut cmac = <Cmac<Aes128> as KeyInit>::new(&nwk.0.into());
        cmac.update(&b0);
        cmac.update(&phy);
        phy.extend_from_slice(&cmac.finalize().into_bytes()[..4]);

        let ours = open(&phy, &nwk, &app, fcnt);
        assert_eq!(ours, open_by_crate(&phy, &nwk, &app, fcnt), "round {round}");
        let frame = ours.unwrap_or_else(|e| panic!("round {round}: {e}"));
        accepted += 1;
        fport0 += usize::from(frame.fport == Some(0) && !frame.payload.is_empty());
        // Expanded once and kept: the same answer.
        let keys = SessionKeys::new(&nwk, &app);
        assert_eq!(open_with(&phy, &keys, fcnt).as_ref(), Ok(&frame));
        // Another counter, another key, one bit flipped: refused by both.
        let wrong = SessionKeys::new(&app, &app);
        assert_eq!(open_with(&phy, &wrong, fcnt), Err(FrameError::InvalidMic));
        let other = fcnt.wrapping_add(1 << 16);
        assert_eq!(open(&phy, &nwk, &app, other), open_by_crate(&phy, &nwk, &app, other));
        let at = (next() as usize) % phy.len();
        phy[at] ^= 1 << (next() % 8);
        assert_eq!(open(&phy, &nwk, &app, fcnt), open_by_crate(&phy, &nwk, &app, fcnt));
        assert!(open(&phy, &nwk, &app, fcnt).is_err(), "round {round}: bit at {at}");
    }
    assert_eq!(accepted, 3_000);
    assert!(fport0 > 50, "FPort 0 frames decrypted with the NwkSKey: {fport0}");
}

/// LoRaWAN 1.0.x §4.3.1.6: MAC commands in FOpts and an FPort 0 payload
/// at once is told before any key is tried; either alone is a frame.
#[test]
fn mac_commands_in_fopts_and_on_port_zero_at_once_are_refused() {
    // MHDR, DevAddr, FCtrl (FOptsLen 1), FCnt, FOpts (LinkCheckReq), FPort, payload, MIC.
    let mut phy = vec![0x40, 4, 3, 2, 1, 0x01, 5, 0, 0x02, 0, 0xAA, 1, 2, 3, 4];
    assert!(peek(&phy).is_ok());
    assert!(has_mac_commands_twice(&phy));
    assert_eq!(FrameError::MacCommandsTwice.kind(), "mac_commands_twice");
    phy[9] = 1;
    assert!(!has_mac_commands_twice(&phy), "FOpts with an application port");
    let port_zero_alone = [0x40, 4, 3, 2, 1, 0x00, 5, 0, 0, 0xAA, 1, 2, 3, 4];
    assert!(!has_mac_commands_twice(&port_zero_alone));
    let fopts_alone = [0x40, 4, 3, 2, 1, 0x01, 5, 0, 0x02, 1, 2, 3, 4];
    assert!(!has_mac_commands_twice(&fopts_alone));
}
