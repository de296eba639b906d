//! Tests of the GWMP codec against tests/data/vectors/semtech_udp.json.

use super::*;
use crate::lorawan::test_hex as hex;
use super::base64_text::plain_base64;

const HELIUM_PUSH_RXPK: &str = "025e5200aa555a00000000007b227278706b223a5b7b22746d7374223a313437323234323235322c226368616e223a382c2272666368223a302c2266726571223a3931322e3630303030302c2273746174223a312c226d6f6475223a224c4f5241222c2264617472223a225346384257353030222c22636f6472223a22342f35222c226c736e72223a31302e382c2272737369223a2d35382c2273697a65223a32332c2264617461223a22414c514141414142414141415347567361585674494341304c4459434e72413d227d5d7d";
const HELIUM_PUSH_STAT: &str = "0286be00aa555a00000000007b2273746174223a7b2274696d65223a22323032302d30332d30342030373a30313a303220474d54222c2272786e62223a332c2272786f6b223a332c2272786677223a332c2261636b72223a302e302c2264776e62223a302c2274786e62223a307d7d";

/// A PUSH_DATA datagram around `json`: version 2, token 0x1234, EUI 01..08.
fn push(json: &str) -> Vec<u8> {
    let mut d = vec![0x02, 0x12, 0x34, 0x00, 1, 2, 3, 4, 5, 6, 7, 8];
    d.extend_from_slice(json.as_bytes());
    d
}

fn push_data(datagram: &[u8]) -> (Header, GatewayEui, PushData) {
    match parse(datagram) {
        Ok(Datagram::PushData {
            header,
            gateway,
            data,
        }) => (header, gateway, data),
        other => panic!("expected PUSH_DATA, got {other:?}"),
    }
}

fn only_rxpk(data: &PushData) -> &Rxpk {
    assert_eq!(data.rxpk.len(), 1, "{data:?}");
    data.rxpk[0].as_ref().unwrap()
}

#[test]
fn helium_push_data_rxpk() {
    let (header, gateway, data) = push_data(&hex(HELIUM_PUSH_RXPK));
    assert_eq!(
        header,
        Header {
            version: 2,
            token: [0x5e, 0x52],
            identifier: 0
        }
    );
    assert_eq!(gateway.to_string(), "aa555a0000000000");
    assert_eq!(data.stat, None);
    let want = Rxpk {
        time: None,
        tmst: Some(1_472_242_252),
        chan: Some(8),
        rfch: Some(0),
        freq: Some(912.6),
        stat: 1,
        modu: Some("LORA".into()),
        datr: Some(DataRate::Lora("SF8BW500".into())),
        codr: Some("4/5".into()),
        rssi: Some(-58),
        lsnr: Some(10.8),
        rsig: vec![],
        data: hex("00b40000000100000048656c69756d2020342c360236b0"),
    };
    assert_eq!(only_rxpk(&data), &want);
    assert!(want.crc_ok());
    assert_eq!(push_ack(header), [0x02, 0x5e, 0x52, 0x01]);
}

#[test]
fn helium_push_data_stat_only() {
    let (header, _, data) = push_data(&hex(HELIUM_PUSH_STAT));
    assert!(data.rxpk.is_empty());
    let want = Stat {
        time: Some("2020-03-04 07:01:02 GMT".into()),
        rxnb: Some(3),
        rxok: Some(3),
        rxfw: Some(3),
        ackr: Some(0.0),
        dwnb: Some(0),
        txnb: Some(0),
        ..Stat::default()
    };
    assert_eq!(data.stat, Some(Ok(want)));
    assert_eq!(push_ack(header), hex("0286be01").as_slice());
}

#[test]
fn acks_echo_version_and_token_verbatim() {
    let rows: [(&str, &str, &str); 4] = [
        // (id, datagram, expected reply)
        ("helium-pull-data", "029f9202aa555a0102030405", "029f9204"),
        (
            "chirpstack-gwbridge-pull-data",
            "027b00020102030405060708",
            "027b0004",
        ),
        (
            "chirpstack-gwbridge-push-data-token123",
            "027b000001020304050607087b7d",
            "027b0001",
        ),
        (
            "chirpstack-gwbridge-push-data-empty-json",
            "0200000000000000000000007b7d",
            "02000001",
        ),
    ];
    for (id, datagram, reply) in rows {
        let got = match parse(&hex(datagram)) {
            Ok(Datagram::PullData { header, gateway }) => {
                assert_eq!(gateway.0.as_slice(), &hex(datagram)[4..12], "{id}");
                pull_ack(header)
            }
            Ok(Datagram::PushData { header, data, .. }) => {
                assert_eq!(data, PushData::default(), "{id}");
                push_ack(header)
            }
            other => panic!("{id}: {other:?}"),
        };
        assert_eq!(got.as_slice(), hex(reply).as_slice(), "{id}");
    }
    // A version-1 forwarder gets a version-1 ACK.
    let Ok(Datagram::PullData { header, .. }) = parse(&hex("01abcd020102030405060708")) else {
        panic!("version 1 PULL_DATA refused");
    };
    assert_eq!(pull_ack(header), [0x01, 0xab, 0xcd, 0x04]);
}

#[test]
fn tx_ack_with_and_without_body() {
    let rows: [(&str, Option<&str>); 4] = [
        ("", None),
        (r#"{"txpk_ack":{"error":"NONE"}}"#, Some("NONE")),
        (
            "{\"txpk_ack\":{\"error\":\"TOO_LATE\"}}\0",
            Some("TOO_LATE"),
        ),
        ("{}", None),
    ];
    for (body, want) in rows {
        let mut d = hex("02abcd050102030405060708");
        d.extend_from_slice(body.as_bytes());
        match parse(&d) {
            Ok(Datagram::TxAck { error, .. }) => assert_eq!(error.as_deref(), want, "{body}"),
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[test]
fn bad_datagrams() {
    let rows: [(&str, &str, DatagramError); 9] = [
        ("empty", "", DatagramError::TooShort { len: 0, min: 4 }),
        (
            "3 bytes",
            "02abcd",
            DatagramError::TooShort { len: 3, min: 4 },
        ),
        (
            "version 0",
            "00abcd020102030405060708",
            DatagramError::UnsupportedVersion(0),
        ),
        (
            "version 3",
            "03abcd020102030405060708",
            DatagramError::UnsupportedVersion(3),
        ),
        (
            "PUSH_DATA without EUI",
            "02abcd00010203",
            DatagramError::TooShort { len: 7, min: 12 },
        ),
        (
            "PULL_DATA of 11 bytes",
            "02abcd020102030405060708"[..22].as_ref(),
            DatagramError::TooShort { len: 11, min: 12 },
        ),
        (
            "PULL_RESP from a forwarder",
            "02abcd03",
            DatagramError::WrongDirection(3),
        ),
        (
            "PUSH_ACK from a forwarder",
            "02abcd01",
            DatagramError::WrongDirection(1),
        ),
        (
            "identifier 0x06",
            "02abcd060102030405060708",
            DatagramError::UnknownIdentifier(6),
        ),
    ];
    for (label, datagram, want) in rows {
        assert_eq!(parse(&hex(datagram)), Err(want), "{label}");
    }
    for body in ["", "{", "[]", "null", "{\"rxpk\":{}}", "\u{0}"] {
        let got = parse(&push(body));
        assert_eq!(got.map_err(|e| e.kind()), Err("invalid_json"), "{body:?}");
    }
}

#[test]
fn protocol_txt_example_keeps_the_good_packets() {
    // PROTOCOL.TXT §4: entry 0 uses '-' (not standard base64), entry 1 is FSK
    // with a numeric datr, entry 2 is unpadded standard base64.
    let json = "{\"rxpk\":[\n\t{\n\t\t\"time\":\"2013-03-31T16:21:17.528002Z\",\n\t\t\"tmst\":3512348611,\n\t\t\"chan\":2,\n\t\t\"rfch\":0,\n\t\t\"freq\":866.349812,\n\t\t\"stat\":1,\n\t\t\"modu\":\"LORA\",\n\t\t\"datr\":\"SF7BW125\",\n\t\t\"codr\":\"4/6\",\n\t\t\"rssi\":-35,\n\t\t\"lsnr\":5.1,\n\t\t\"size\":32,\n\t\t\"data\":\"-DS4CGaDCdG+48eJNM3Vai-zDpsR71Pn9CPA9uCON84\"\n\t},{\n\t\t\"time\":\"2013-03-31T16:21:17.530974Z\",\n\t\t\"tmst\":3512348514,\n\t\t\"chan\":9,\n\t\t\"rfch\":1,\n\t\t\"freq\":869.1,\n\t\t\"stat\":1,\n\t\t\"modu\":\"FSK\",\n\t\t\"datr\":50000,\n\t\t\"rssi\":-75,\n\t\t\"size\":16,\n\t\t\"data\":\"VEVTVF9QQUNLRVRfMTIzNA==\"\n\t},{\n\t\t\"time\":\"2013-03-31T16:21:17.532038Z\",\n\t\t\"tmst\":3316387610,\n\t\t\"chan\":0,\n\t\t\"rfch\":0,\n\t\t\"freq\":863.00981,\n\t\t\"stat\":1,\n\t\t\"modu\":\"LORA\",\n\t\t\"datr\":\"SF10BW125\",\n\t\t\"codr\":\"4/7\",\n\t\t\"rssi\":-38,\n\t\t\"lsnr\":5.5,\n\t\t\"size\":32,\n\t\t\"data\":\"ysgRl452xNLep9S1NTIg2lomKDxUgn3DJ7DE+b00Ass\"\n\t}\n]}";
    let (_, _, data) = push_data(&push(json));
    assert_eq!(data.rxpk.len(), 3);
    assert_eq!(data.rxpk[0], Err(EntryError::Base64));
    let fsk = data.rxpk[1].as_ref().unwrap();
    assert_eq!(fsk.datr, Some(DataRate::Fsk(50_000)));
    assert_eq!(fsk.data, b"TEST_PACKET_1234");
    assert_eq!((fsk.rssi, fsk.lsnr), (Some(-75), None));
    let third = data.rxpk[2].as_ref().unwrap();
    assert_eq!(
        third.data,
        hex("cac811978e76c4d2dea7d4b5353220da5a26283c54827dc327b0c4f9bd3402cb")
    );
    assert_eq!(third.time.as_deref(), Some("2013-03-31T16:21:17.532038Z"));
}

#[test]
fn protocol_txt_stat_example() {
    let json = "{\"stat\":{\n\t\"time\":\"2014-01-12 08:59:28 GMT\",\n\t\"lati\":46.24000,\n\t\"long\":3.25230,\n\t\"alti\":145,\n\t\"rxnb\":2,\n\t\"rxok\":2,\n\t\"rxfw\":2,\n\t\"ackr\":100.0,\n\t\"dwnb\":2,\n\t\"txnb\":2\n}}";
    let (_, _, data) = push_data(&push(json));
    let stat = data.stat.unwrap().unwrap();
    assert_eq!(
        (stat.lati, stat.long, stat.alti),
        (Some(46.24), Some(3.2523), Some(145))
    );
    assert_eq!(
        (stat.rxnb, stat.ackr, stat.txnb),
        (Some(2), Some(100.0), Some(2))
    );
}

#[test]
fn jver2_rsig_and_unknown_fields() {
    let rows: [(&str, &str, Option<i16>, f64, &str); 3] = [
        (
            "helium-rxpk-jver2-rsig-positive-snr",
            r#"{"rxpk":[{"aesk":0,"brd":263,"codr":"4/5","data":"QC65rwEA4w8CaH7LyGf/3+dxzrXkkfEsRCcXbFM=","datr":"SF12BW125","freq":868.5,"jver":2,"modu":"LORA","rsig":[{"ant":0,"chan":7,"lsnr":7.8,"rssic":-103}],"size":29,"stat":1,"time":"2022-03-31T07:51:15.709338Z","tmst":445296860}]}"#,
            Some(-103),
            7.8,
            "402eb9af01",
        ),
        (
            "helium-rxpk-jver2-rsig-negative-snr",
            r#"{"rxpk":[{"aesk":0,"brd":261,"codr":"4/5","data":"QI8cACQA6iAD3TTei0kPKKyxBA==","datr":"SF11BW125","freq":868.1,"jver":2,"modu":"LORA","rsig":[{"ant":0,"chan":5,"lsnr":-3.5,"rssic":-120}],"size":19,"stat":1,"time":"2022-03-31T07:51:12.631018Z","tmst":442218540}]}"#,
            Some(-120),
            -3.5,
            "408f1c0024",
        ),
        (
            "helium-rxpk-extra-fields",
            r#"{"rxpk":[{"jver":1,"tmst":682631918,"chan":0,"rfch":0,"freq":865.062500,"mid": 0,"stat":1,"modu":"LORA","datr":"SF12BW125","codr":"4/5","rssis":-95,"lsnr":6.8,"foff":-1300,"rssi":-94,"size":20,"data":"QNbPNwABAQANyqD8ngiq26Hk4gs="}]}"#,
            Some(-94),
            6.8,
            "40d6cf3700",
        ),
    ];
    for (id, json, rssi, snr, head) in rows {
        let (_, _, data) = push_data(&push(json));
        let rx = only_rxpk(&data);
        assert_eq!(rx.best_rssi(), rssi, "{id}");
        assert_eq!(rx.best_snr(), Some(snr), "{id}");
        assert_eq!(&rx.data[..5], hex(head).as_slice(), "{id}");
    }
}

#[test]
fn one_bad_rxpk_does_not_drop_its_neighbours() {
    let good = r#"{"stat":-1,"size":4,"data":"3q2+7w=="}"#;
    let rows: [(&str, EntryError); 5] = [
        (
            r#"{"stat":1,"size":5,"data":"3q2+7w=="}"#,
            EntryError::SizeMismatch {
                size: 5,
                decoded: 4,
            },
        ),
        (
            r#"{"stat":1,"size":4,"data":"3q2_7w=="}"#,
            EntryError::Base64,
        ),
        (
            r#"{"stat":1,"size":4,"data":"3q2+7w==="}"#,
            EntryError::Base64,
        ),
        (
            r#"{"stat":1,"size":4,"data":"3q2+7w=x"}"#,
            EntryError::Base64,
        ),
        (
            r#"{"stat":1,"size":4,"data":"3q2+7w==","tmst":"-50"}"#,
            EntryError::Fields(String::new()),
        ),
    ];
    for (bad, want) in rows {
        let (_, _, data) = push_data(&push(&format!(r#"{{"rxpk":[{bad},{good}]}}"#)));
        assert_eq!(
            data.rxpk[0].as_ref().map_err(EntryError::kind),
            Err(want.kind()),
            "{bad}"
        );
        let kept = data.rxpk[1].as_ref().unwrap();
        assert_eq!(kept.data, [0xde, 0xad, 0xbe, 0xef]);
        // stat −1: parsed, but the CRC filter must drop it.
        assert!(!kept.crc_ok());
    }
    for missing in [
        r#"{"size":4,"data":"3q2+7w=="}"#,
        r#"{"stat":1,"data":"3q2+7w=="}"#,
        r#"{"stat":1,"size":4}"#,
    ] {
        let (_, _, data) = push_data(&push(&format!(r#"{{"rxpk":[{missing}]}}"#)));
        assert_eq!(
            data.rxpk[0].as_ref().map_err(EntryError::kind),
            Err("invalid_fields"),
            "{missing}"
        );
    }
}

#[test]
fn base64_edges() {
    let rows: [(&str, Option<&[u8]>); 9] = [
        ("", Some(b"")),
        ("Zg==", Some(b"f")),
        ("Zg", Some(b"f")),
        ("Zm8=", Some(b"fo")),
        ("Zm9v", Some(b"foo")),
        ("Z", None),
        ("Zg=", None),
        ("Zm9v\n", None),
        ("Zm-v", None),
    ];
    for (text, want) in rows {
        assert_eq!(base64_decode(text).as_deref(), want, "{text:?}");
    }
    // What the downlink path writes (padded, every length) reads back.
    use base64::Engine as _;
    for n in 0..20u8 {
        let bytes: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
        let text = base64::engine::general_purpose::STANDARD.encode(&bytes);
        assert_eq!(base64_decode(&text), Some(bytes));
    }
    assert_eq!(base64_decode("dGVzdA=="), Some(b"test".to_vec()));
}

#[test]
fn truncations_of_real_datagrams_never_panic() {
    for datagram in [HELIUM_PUSH_RXPK, HELIUM_PUSH_STAT] {
        let full = hex(datagram);
        for cut in 0..full.len() {
            assert!(parse(&full[..cut]).is_err(), "cut at {cut}");
        }
        assert!(parse(&full).is_ok());
    }
}

#[test]
fn random_datagrams_never_panic() {
    // xorshift64 with a fixed seed: random bodies behind valid headers, so
    // the JSON and base64 paths are reached, not only the header checks.
    let mut state = 0x05E1_7EC4_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet = br#"{}[]":,0123456789-.eE rxpkstatdasizeQUJD=+/ntrue"#;
    let mut parsed = 0;
    for _ in 0..20_000 {
        let kind = [PUSH_DATA, PULL_DATA, TX_ACK][(next() % 3) as usize];
        let mut d = vec![2, 0xAB, 0xCD, kind, 1, 2, 3, 4, 5, 6, 7, 8];
        let len = (next() % 48) as usize;
        d.extend((0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]));
        let cut = (next() as usize) % (d.len() + 1);
        parsed += usize::from(parse(&d[..cut]).is_ok());
    }
    assert!(parsed > 0);
}

#[test]
fn the_one_pass_read_agrees_with_the_entry_by_entry_one() {
    let bodies = [
        r#"{"rxpk":[{"tmst":1,"chan":2,"rfch":0,"freq":868.5,"stat":1,"modu":"LORA","datr":"SF7BW125","codr":"4/5","rssi":-57,"lsnr":7.5,"size":4,"data":"3q2+7w=="}]}"#,
        r#"{"rxpk":[{"stat":1,"size":4,"data":"3q2+7w==","datr":50000,"time":"2013-03-31T16:21:17.528002Z"},{"stat":-1,"size":4,"data":"3q2+7w"}],"stat":{"rxnb":2,"ackr":null}}"#,
        r#"{"rxpk":[{"stat":1,"size":5,"data":"3q2+7w=="},{"stat":1,"size":4,"data":"3q2_7w=="}]}"#,
        r#"{"rxpk":[{"stat":1,"size":29,"data":"QC65rwEA4w8CaH7LyGf/3+dxzrXkkfEsRCcXbFM=","rsig":[{"ant":0,"chan":7,"lsnr":7.8,"rssic":-103}]}]}"#,
        r#"{"rxpk":null,"stat":{"time":"2014-01-12 08:59:28 GMT","rxok":1}}"#,
        r#"{}"#,
    ];
    for body in bodies {
        assert!(
            serde_json::from_slice::<TypedBody<'_>>(body.as_bytes()).is_ok(),
            "{body}: the typed read should take this one"
        );
        assert_eq!(
            super::push_data(body.as_bytes()),
            push_data_by_entry(body.as_bytes()),
            "{body}"
        );
    }
}

#[test]
fn what_the_one_pass_read_refuses_is_read_entry_by_entry() {
    // An escaped string cannot be borrowed; a wrong type in one entry, or
    // a bad `stat`, must not cost the others.
    let escaped = r#"{"rxpk":[{"stat":1,"modu":"LO\u0052A","size":4,"data":"3q2+7w=="}]}"#;
    let data = super::push_data(escaped.as_bytes()).unwrap();
    assert_eq!(only_rxpk(&data).modu.as_deref(), Some("LORA"));
    let mixed = r#"{"rxpk":[{"stat":1,"size":4,"data":"3q2+7w==","tmst":"-50"},{"stat":1,"size":4,"data":"3q2+7w=="}],"stat":{"rxnb":"x"}}"#;
    assert!(serde_json::from_slice::<TypedBody<'_>>(mixed.as_bytes()).is_err());
    let data = super::push_data(mixed.as_bytes()).unwrap();
    assert_eq!(
        data.rxpk[0].as_ref().map_err(EntryError::kind),
        Err("invalid_fields")
    );
    assert_eq!(
        data.rxpk[1].as_ref().unwrap().data,
        [0xde, 0xad, 0xbe, 0xef]
    );
    assert!(matches!(data.stat, Some(Err(EntryError::Fields(_)))));
}

#[test]
fn datr_is_a_lora_string_or_an_fsk_rate_that_fits_a_u32() {
    let read = |v: &str| serde_json::from_str::<DataRate>(v).map_err(|_| ());
    assert_eq!(read(r#""SF7BW125""#), Ok(DataRate::Lora("SF7BW125".into())));
    assert_eq!(
        read(r#""SF\u0037BW125""#),
        Ok(DataRate::Lora("SF7BW125".into()))
    );
    assert_eq!(read("50000"), Ok(DataRate::Fsk(50_000)));
    assert_eq!(read("4294967295"), Ok(DataRate::Fsk(u32::MAX)));
    for bad in ["4294967296", "-1", "50000.0", "true", "[]", "{}"] {
        assert_eq!(read(bad), Err(()), "{bad}");
    }
}

/// Bodies of the plain shape: the simulator's, the lorawan_ingest
/// bench's, Helium's vector, PROTOCOL.TXT's layout, some edges.
const PLAIN: [&str; 8] = [
    r#"{"rxpk":[{"tmst":1000,"chan":2,"rfch":0,"freq":868.5,"stat":1,"modu":"LORA","datr":"SF7BW125","codr":"4/5","rssi":-61,"lsnr":7.5,"size":18,"data":"QAAAACaAAQAC4n6PcFjOBzvo"}]}"#,
    r#"{"rxpk":[{"time":"2026-11-21T10:00:00.000000Z","tmst":3512348611,"chan":2,"rfch":0,"freq":868.500000,"stat":1,"modu":"LORA","datr":"SF7BW125","codr":"4/5","rssi":-57,"lsnr":-0.5,"size":4,"data":"3q2+7w=="}]}"#,
    r#"{"rxpk":[{"tmst":1472242252,"chan":8,"rfch":0,"freq":912.600000,"stat":1,"modu":"LORA","datr":"SF8BW500","codr":"4/5","lsnr":10.8,"rssi":-58,"size":23,"data":"ALQAAAABAAAASGVsaXVtICA0LDYCNrA="}]}"#,
    "{\"rxpk\":[\n\t{\n\t\t\"time\":\"2013-03-31T16:21:17.530974Z\",\n\t\t\"tmst\":3512348514,\n\t\t\"chan\":9,\n\t\t\"rfch\":1,\n\t\t\"freq\":869.1,\n\t\t\"stat\":1,\n\t\t\"modu\":\"FSK\",\n\t\t\"datr\":50000,\n\t\t\"rssi\":-75,\n\t\t\"size\":16,\n\t\t\"data\":\"VEVTVF9QQUNLRVRfMTIzNA==\"\n\t},{\"stat\":-1,\"size\":4,\"data\":\"3q2+7w\"}\n]}\n",
    r#"{"rxpk":[{"stat":1,"size":5,"data":"3q2+7w=="},{"stat":1,"size":4,"data":"3q2_7w==","freq":null,"datr":null,"lsnr":-0}]}"#,
    r#"{"rxpk":[]}"#,
    r#" { "rxpk" : [ { "stat" : 0 , "size" : 0 , "data" : "" } ] } "#,
    // Text that is not ASCII, which the reader checks as UTF-8.
    r#"{"rxpk":[{"time":"2026-11-21T10:00:00Z é","stat":1,"modu":"LÖRA","codr":"4/5","datr":"SF7BW125€","size":4,"data":"3q2+7w=="}]}"#,
];

#[test]
fn the_plain_shape_reads_without_serde_and_as_serde_reads_it() {
    for body in PLAIN {
        let fast = fast::push_data(body.as_bytes());
        assert!(fast.is_some(), "declined: {body}");
        assert_eq!(
            fast.map(Ok),
            Some(push_data_serde(body.as_bytes())),
            "{body}"
        );
    }
}

#[test]
fn anything_else_is_left_to_serde() {
    let declined = [
        r#"{"rxpk":[{"stat":1,"size":4,"data":"3q2+7w=="}],"stat":{"rxnb":1}}"#,
        r#"{"stat":{"rxnb":1}}"#,
        r#"{}"#,
        r#"{"rxpk":[{"stat":1,"size":29,"data":"QC65","rsig":[{"ant":0}]}]}"#,
        r#"{"rxpk":[{"stat":1,"size":4,"data":"3q2+7w==","jver":1}]}"#,
        r#"{"rxpk":[{"stat":1,"modu":"LO\u0052A","size":4,"data":"3q2+7w=="}]}"#,
        r#"{"rxpk":[{"stat":1,"size":4,"data":"3q2+7w==","freq":8.685e2}]}"#,
        r#"{"rxpk":[{"stat":1,"stat":1,"size":4,"data":"3q2+7w=="}]}"#,
        r#"{"rxpk":[{"stat":-0,"size":4,"data":"3q2+7w=="}]}"#,
        r#"{"rxpk":[{"stat":01,"size":4,"data":"3q2+7w=="}]}"#,
        r#"{"rxpk":[{"stat":1.0,"size":4,"data":"3q2+7w=="}]}"#,
        r#"{"rxpk":[{"stat":1,"size":4,"data":"3q2+7w==","tmst":"-50"}]}"#,
        r#"{"rxpk":[{"stat":1,"size":4,"data":"3q2+7w==","datr":-5}]}"#,
        r#"{"rxpk":[{"stat":1,"size":4,"data":"3q2+7w==","chan":256}]}"#,
        r#"{"rxpk":[{"size":4,"data":"3q2+7w=="}]}"#,
        r#"{"rxpk":[{"stat":1,"size":4,"data":"3q2+7w=="}]} x"#,
        r#"{"rxpk":[{"stat":1,"size":4,"data":"3q2+7w=="}],}"#,
        r#"{"rxpk":[{"stat":1,"size":4,"data":"3q2+7w==",}]}"#,
        "{\"rxpk\":[{\"stat\":1,\"size\":4,\"data\":\"3q2+\t7w==\"}]}",
    ];
    for body in declined {
        assert!(fast::push_data(body.as_bytes()).is_none(), "{body}");
    }
    assert!(fast::push_data(b"{\"rxpk\":[{\"stat\":1,\"size\":4,\"data\":\"\xff\"}]}").is_none());
}

#[test]
fn mutated_bodies_read_here_read_as_serde_reads_them() {
    // Byte changes, deletions and duplications of plain bodies: whatever
    // the plain reader still takes must be what serde makes of it.
    let mut state = 0x5EED_F00D_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    // With bytes of UTF-8 sequences and bytes that begin none.
    let alphabet = [&br#"{}[]":,0123456789-.eE nul"\tx"#[..], &[0xC3, 0xA9, 0x80, 0xFF]].concat();
    let mut taken = 0;
    for round in 0..30_000 {
        let mut body = PLAIN[round % PLAIN.len()].as_bytes().to_vec();
        for _ in 0..1 + next() % 3 {
            if body.is_empty() {
                break;
            }
            let at = (next() as usize) % body.len();
            match next() % 3 {
                0 => body[at] = alphabet[(next() as usize) % alphabet.len()],
                1 => {
                    body.remove(at);
                }
                _ => body.insert(at, body[at]),
            }
        }
        if let Some(fast) = fast::push_data(&body) {
            taken += 1;
            let serde = push_data_serde(&body);
            assert_eq!(Ok(fast), serde, "{}", String::from_utf8_lossy(&body));
        }
    }
    assert!(taken > 1_000, "only {taken} mutations were plain");
}

#[test]
fn the_table_decoder_reads_base64_as_the_crate_does() {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine as _;
    let crate_reading = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    // Every short text over a few characters that matter (the alphabet's
    // ends, padding, a URL-safe and a foreign byte), and texts made from
    // random bytes with a character changed: the table's answer, when it
    // gives one, is the crate's.
    let chars = b"AZaz09+/=-_ QBgw";
    let mut checked = 0;
    for len in 0..=5u32 {
        for mut i in 0..chars.len().pow(len) {
            let text: Vec<u8> = (0..len)
                .map(|_| {
                    let c = chars[i % chars.len()];
                    i /= chars.len();
                    c
                })
                .collect();
            if let Some(fast) = plain_base64(&text) {
                let lossy = String::from_utf8_lossy(&text);
                assert_eq!(Some(fast), crate_reading.decode(&text).ok(), "{lossy:?}");
                checked += 1;
            }
        }
    }
    let mut seed = 0x2545_f491_u32;
    for n in 0..400usize {
        let bytes: Vec<u8> = (0..n % 40)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed as u8
            })
            .collect();
        let mut text = base64::engine::general_purpose::STANDARD.encode(&bytes).into_bytes();
        if n % 3 == 0 {
            while text.last() == Some(&b'=') {
                text.pop();
            }
        }
        if n % 5 == 0 && !text.is_empty() {
            let at = (seed as usize) % text.len();
            text[at] = chars[(seed as usize >> 8) % chars.len()];
        }
        let fast = plain_base64(&text);
        if n % 5 != 0 {
            assert_eq!(fast.as_deref(), Some(bytes.as_slice()));
        }
        if let Some(fast) = fast {
            assert_eq!(Some(fast), crate_reading.decode(&text).ok());
            checked += 1;
        }
    }
    assert!(checked > 20_000, "{checked}");
}

#[test]
fn known_rxpk_texts_are_static_and_others_kept_as_sent() {
    use std::borrow::Cow;
    for known in KNOWN_TEXTS {
        assert!(matches!(text(*known), Cow::Borrowed(b) if b == *known), "{known}");
        assert!(matches!(text(known.to_string()), Cow::Borrowed(b) if b == *known));
    }
    for other in ["sf7bw125", "LoRa", "4/5 ", "", "SF7BW12", "SF7BW1250", "é"] {
        let t = text(other);
        assert!(matches!(t, Cow::Owned(_)), "{other}");
        assert_eq!(t, other);
    }
    // Both readers keep an unknown spelling as sent.
    let body = br#"{"rxpk":[{"tmst":1,"stat":1,"modu":"LoRa","datr":"sf7bw125","codr":"4/5","size":1,"data":"AA=="}]}"#;
    let read = super::push_data(body).unwrap();
    let rx = only_rxpk(&read).clone();
    assert_eq!(rx.modu.as_deref(), Some("LoRa"));
    assert_eq!(rx.codr.as_deref(), Some("4/5"));
    assert_eq!(rx.datr, Some(DataRate::Lora("sf7bw125".into())));
    assert_eq!(push_data_serde(body).unwrap(), read);
}

/// PROTOCOL.TXT says integers for the RSSI, but some forwarders write
/// `-80.0`, or the SNR as a string: the uplink, MIC-valid, is kept, with
/// what can be read of its signal; a signal figure of another shape is
/// left out, never the uplink with it.
#[test]
fn a_signal_written_as_a_float_or_a_string_keeps_its_uplink() {
    let entry = |rssi: &str, lsnr: &str| {
        format!(r#"{{"rxpk":[{{"tmst":1,"stat":1,"rssi":{rssi},"lsnr":{lsnr},"size":4,"data":"dGVzdA=="}}]}}"#)
    };
    let read = |rssi: &str, lsnr: &str| {
        let (_, _, data) = push_data(&push(&entry(rssi, lsnr)));
        let rx = only_rxpk(&data).clone();
        (rx.rssi, rx.lsnr, rx.data)
    };
    assert_eq!(read("-80.0", "\"7\""), (Some(-80), Some(7.0), b"test".to_vec()));
    assert_eq!(read("-80.6", "7.25"), (Some(-81), Some(7.25), b"test".to_vec()));
    assert_eq!(read("\"loud\"", "[1]"), (None, None, b"test".to_vec()));
    assert_eq!(read("-99999", "null"), (None, None, b"test".to_vec()));
    let (_, _, data) = push_data(&push(
        r#"{"rxpk":[{"tmst":1,"stat":1,"rsig":[{"ant":0,"rssic":-70.0,"lsnr":"5.5"}],"size":4,"data":"dGVzdA=="}]}"#,
    ));
    let rx = only_rxpk(&data);
    assert_eq!((rx.best_rssi(), rx.best_snr()), (Some(-70), Some(5.5)));
}

#[test]
fn a_gateway_eui_is_hex_digits_and_nothing_else() {
    let eui: GatewayEui = "AA555A00 00000101".parse().unwrap();
    assert_eq!(eui, GatewayEui([0xAA, 0x55, 0x5A, 0, 0, 0, 1, 1]));
    for typo in ["+A555A0000000101", "AA555A00000001+1", "AA555A000000010 "] {
        assert!(typo.parse::<GatewayEui>().is_err(), "{typo:?} taken");
    }
}
