//! Frames as knxd 0.14 (Debian 12) sends them, captured on loopback, and
//! ours read back.

#![allow(clippy::unwrap_used)]

use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn knxds_answers_read_as_sent() {
    let connect = hex("061002060014010008017f000001356804040003");
    assert_eq!(
        decode(&connect).unwrap(),
        Frame::ConnectResponse {
            channel: 1,
            status: 0,
            data: Some(Hpai::udp("127.0.0.1:13672".parse().unwrap())),
            address: Some("0.0.3".parse().unwrap()),
        }
    );
    // A second client on a one-slot knxd.
    assert_eq!(
        decode(&hex("0610020600080024")).unwrap(),
        Frame::ConnectResponse {
            channel: 0,
            status: E_NO_MORE_CONNECTIONS,
            data: None,
            address: None
        }
    );
    // NAT: the server answers where the request came from.
    let Frame::ConnectResponse { data: Some(d), .. } =
        decode(&hex("0610020600140200080100000000000004040004")).unwrap()
    else {
        panic!()
    };
    assert!(d.is_unspecified());
    assert_eq!(
        decode(&hex("0610020800080621")).unwrap(),
        Frame::ConnectionStateResponse {
            channel: 6,
            status: E_CONNECTION_ID
        }
    );
    assert_eq!(
        decode(&hex("0610020a00080100")).unwrap(),
        Frame::DisconnectResponse {
            channel: 1,
            status: 0
        }
    );
    let search = hex(
        "06100202004c08017f00000135683601020000010000010203040506e000170c02fc00000001\
         7465737431000000000000000000000000000000000000000000000000000802020104010501",
    );
    let Frame::SearchResponse(info) = decode(&search).unwrap() else {
        panic!()
    };
    assert_eq!(info.name, "test1");
    assert_eq!(info.address.to_string(), "0.0.1");
    assert_eq!(info.control.addr, "127.0.0.1:13672".parse().unwrap());
    assert_eq!(info.multicast, ROUTING_GROUP);
    assert_eq!(
        info.service_names(),
        ["core_v1", "tunnelling_v1", "routing_v1"]
    );
}

#[test]
fn requests_we_send_have_the_standard_layout() {
    let control = Hpai::udp("192.168.1.5:50000".parse().unwrap());
    let mut out = Vec::new();
    connect_request(control, control, &mut out);
    assert_eq!(
        out,
        hex("06100205001a0801c0a80105c3500801c0a80105c35004040200")
    );
    out.clear();
    connect_request(Hpai::TCP, Hpai::TCP, &mut out);
    assert_eq!(
        out,
        hex("06100205001a08020000000000000802000000000000" /* CRI */)
            .into_iter()
            .chain([4, 4, 2, 0])
            .collect::<Vec<_>>()
    );
    out.clear();
    tunnelling_request(7, 200, &[0x11, 0x00], &mut out);
    assert_eq!(
        decode(&out).unwrap(),
        Frame::TunnellingRequest {
            channel: 7,
            seq: 200,
            cemi: &[0x11, 0x00]
        }
    );
    out.clear();
    tunnelling_ack(7, 200, &mut out);
    assert_eq!(
        decode(&out).unwrap(),
        Frame::TunnellingAck {
            channel: 7,
            seq: 200,
            status: 0
        }
    );
    out.clear();
    connectionstate_request(3, Hpai::NAT, &mut out);
    assert_eq!(out, hex("06100207001003000801000000000000"));
    out.clear();
    routing_indication(&[0x29, 0x00], &mut out);
    assert_eq!(
        decode(&out).unwrap(),
        Frame::RoutingIndication {
            cemi: &[0x29, 0x00]
        }
    );
    assert_eq!(
        decode(&hex("06100532000c060000640000")).unwrap(),
        Frame::RoutingBusy {
            wait_ms: 100,
            control: 0
        }
    );
    assert_eq!(
        decode(&hex("06100531000a04000005")).unwrap(),
        Frame::RoutingLostMessage { lost: 5 }
    );
}

#[test]
fn damaged_frames_are_refused_never_misread() {
    let connect = hex("061002060014010008017f000001356804040003");
    for cut in 0..connect.len() {
        assert!(decode(&connect[..cut]).is_err(), "{cut}");
    }
    let mut long = connect.clone();
    long.push(0);
    assert!(matches!(decode(&long), Err(CodecError::Length { .. })));
    let mut version = connect.clone();
    version[1] = 0x20;
    assert_eq!(decode(&version), Err(CodecError::Header));
    // A DIB longer than what is left.
    let mut search = hex("06100202001208017f0000013568ff01");
    search[5] = search.len() as u8;
    assert!(decode(&search).is_err());
    assert_eq!(total_length(&hex("061004200015")).unwrap(), 0x15);
    assert!(total_length(&hex("061004200003")).is_err());
}

/// What the fuzz target does, on a fixed-seed stream of damaged copies of
/// real frames (every byte flipped, cut, grown): never a panic.
#[test]
fn damaged_copies_of_real_frames_never_panic() {
    use crate::knx::cemi::{self, Cemi};
    use crate::knx::dpt::Dpt;
    use crate::knx::link::GroupTelegram;
    let seeds = [
        hex("061002060014010008017f000001356804040003"),
        hex("0610042000170401000029 00bce000030a0303008 00c33".replace(' ', "").as_str()),
        hex("06100530001c2900bce0fffa0a030f008068656c6c6f000000000000000000"),
        hex("06100202004c08017f00000135683601020000010000010203040506e000170c02fc000000017465737431000000000000000000000000000000000000000000000000000802020104010501"),
        hex("06100532000c060000640000"),
    ];
    let dpts = [
        (1, 1),
        (5, 1),
        (7, 3),
        (8, 10),
        (9, 1),
        (13, 13),
        (14, 56),
        (16, 0),
        (18, 1),
        (20, 102),
    ];
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for round in 0..20_000 {
        let mut f = seeds[round % seeds.len()].clone();
        match next() % 4 {
            0 => {
                let i = (next() as usize) % f.len();
                f[i] ^= 1 << (next() % 8);
            }
            1 => f.truncate((next() as usize) % f.len()),
            2 => f.extend((0..next() % 40).map(|_| next() as u8)),
            _ => {
                let i = (next() as usize) % f.len();
                f[i] = next() as u8;
                // Keep the header's length right, so the body is read.
                let n = f.len() as u16;
                if f.len() >= 6 {
                    f[4..6].copy_from_slice(&n.to_be_bytes());
                }
            }
        }
        let body = match decode(&f) {
            Ok(Frame::TunnellingRequest { cemi, .. }) | Ok(Frame::RoutingIndication { cemi }) => {
                cemi
            }
            _ => &f[..],
        };
        if let Ok(Cemi::LData(l)) = cemi::decode(body) {
            if let Some(t) = GroupTelegram::from_ldata(&l, gateway_core::Timestamp::default()) {
                for (main, sub) in dpts {
                    let _ = Dpt::new(main, sub).decode(t.data.as_data());
                }
            }
        }
    }
}
