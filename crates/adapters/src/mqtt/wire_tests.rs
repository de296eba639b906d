//! The packets checked against rumqttc's own encoder and decoder, an
//! independent implementation of the same MQTT 3.1.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use bytes::BytesMut;
use rumqttc::mqttbytes::v4 as peer;
use rumqttc::mqttbytes::QoS;

/// A small deterministic generator: the cases are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn peer_publish(topic: &str, payload: Vec<u8>, qos: u8, retain: bool, dup: bool, pkid: u16) -> Vec<u8> {
    let qos = match qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    };
    let mut p = peer::Publish::new(topic, qos, payload);
    p.retain = retain;
    p.dup = dup;
    if qos != QoS::AtMostOnce {
        p.pkid = pkid;
    }
    let mut out = BytesMut::new();
    peer::Packet::Publish(p).write(&mut out, usize::MAX).unwrap();
    out.to_vec()
}

#[test]
fn publish_packets_of_the_peer_read_the_same_and_every_prefix_asks_for_more() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..2_000 {
        let topic_len = rng.below(40) as usize;
        let topic: String = (0..topic_len)
            .map(|_| char::from(b'a' + rng.below(26) as u8))
            .collect();
        // Lengths across the one-, two- and three-byte remaining lengths.
        let payload_len = match rng.below(3) {
            0 => rng.below(100),
            1 => 100 + rng.below(20_000),
            _ => 16_300 + rng.below(200),
        } as usize;
        let payload: Vec<u8> = (0..payload_len).map(|_| rng.next() as u8).collect();
        let (qos, retain, dup) = (rng.below(3) as u8, rng.below(2) == 1, rng.below(2) == 1);
        let pkid = 1 + rng.below(65_535) as u16;
        let bytes = peer_publish(&topic, payload.clone(), qos, retain, dup, pkid);
        let parsed = parse(&bytes, usize::MAX).unwrap();
        let Parsed::Frame {
            frame: Frame::Publish(p),
            len,
        } = parsed
        else {
            panic!("{parsed:?}");
        };
        assert_eq!(len, bytes.len());
        assert_eq!(p.topic, topic.as_bytes());
        assert_eq!(p.payload, &payload[..]);
        assert_eq!((p.qos, p.retain), (qos, retain));
        assert_eq!(p.dup, dup);
        assert_eq!(p.pkid, if qos == 0 { 0 } else { pkid });
        assert_eq!(p.packet_bytes() + 1 + header_bytes(&bytes), bytes.len());
        let cut = rng.below(bytes.len() as u64) as usize;
        match parse(&bytes[..cut], usize::MAX).unwrap() {
            Parsed::Incomplete { need } => assert!(need > cut && need <= bytes.len()),
            other => panic!("a prefix of {cut} bytes read as {other:?}"),
        }
        // Two packets back to back: the first's length is where the second starts.
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes);
        let Ok(Parsed::Frame { len, .. }) = parse(&two, usize::MAX) else {
            panic!()
        };
        assert_eq!(parse(&two[len..], usize::MAX).unwrap(), parse(&bytes, usize::MAX).unwrap());
    }
}

fn header_bytes(packet: &[u8]) -> usize {
    packet[1..].iter().position(|b| b & 0x80 == 0).unwrap() + 1
}

#[test]
fn an_oversized_publish_is_known_with_its_packet_id_from_its_first_bytes() {
    for qos in 0..3u8 {
        let bytes = peer_publish("sensors/big", vec![7; 70_000], qos, false, false, 4242);
        let head = if qos == 0 { 4 } else { 4 + 2 + 11 + 2 };
        for cut in [head, 1_000, bytes.len()] {
            let parsed = parse(&bytes[..cut], 65_536 + 1_024).unwrap();
            assert_eq!(
                parsed,
                Parsed::Oversized {
                    qos,
                    pkid: if qos == 0 { 0 } else { 4242 },
                    remaining: bytes.len() - 4,
                    total: bytes.len(),
                },
                "QoS {qos}, {cut} bytes"
            );
        }
        if qos > 0 {
            assert!(matches!(
                parse(&bytes[..head - 1], 1_000),
                Ok(Parsed::Incomplete { .. })
            ));
        }
        // Under the limit the same packet is an ordinary message.
        assert!(matches!(
            parse(&bytes, 80_000),
            Ok(Parsed::Frame {
                frame: Frame::Publish(_),
                ..
            })
        ));
    }
}

#[test]
fn the_packets_we_write_read_as_intended_by_the_peer() {
    let mut out = Vec::new();
    write_connect(
        &Connect {
            client_id: "edge-gateway-gw-1-local",
            keep_alive_secs: 30,
            clean_session: false,
            credentials: Some(("user", "pässword")),
        },
        &mut out,
    );
    let mut stream = BytesMut::from(&out[..]);
    let peer::Packet::Connect(c) = peer::Packet::read(&mut stream, usize::MAX).unwrap() else {
        panic!()
    };
    assert_eq!(c.client_id, "edge-gateway-gw-1-local");
    assert_eq!((c.keep_alive, c.clean_session), (30, false));
    let login = c.login.unwrap();
    assert_eq!((login.username.as_str(), login.password.as_str()), ("user", "pässword"));

    out.clear();
    write_connect(
        &Connect {
            client_id: "x",
            keep_alive_secs: 0,
            clean_session: true,
            credentials: None,
        },
        &mut out,
    );
    let mut stream = BytesMut::from(&out[..]);
    let peer::Packet::Connect(c) = peer::Packet::read(&mut stream, usize::MAX).unwrap() else {
        panic!()
    };
    assert!(c.clean_session && c.login.is_none());

    out.clear();
    let filters = vec![("sensors/+/status".to_string(), 0), ("sensors/#".to_string(), 1)];
    write_subscribe(7, &filters, &mut out);
    let mut stream = BytesMut::from(&out[..]);
    let peer::Packet::Subscribe(s) = peer::Packet::read(&mut stream, usize::MAX).unwrap() else {
        panic!()
    };
    assert_eq!(s.pkid, 7);
    let got: Vec<_> = s.filters.iter().map(|f| (f.path.clone(), f.qos as u8)).collect();
    assert_eq!(got, filters);

    for (ack, want) in [
        (Ack::PubAck(513), peer::Packet::PubAck(peer::PubAck::new(513))),
        (Ack::PubRec(2), peer::Packet::PubRec(peer::PubRec::new(2))),
        (Ack::PubComp(65_535), peer::Packet::PubComp(peer::PubComp::new(65_535))),
    ] {
        out.clear();
        write_ack(ack, &mut out);
        let mut stream = BytesMut::from(&out[..]);
        assert_eq!(peer::Packet::read(&mut stream, usize::MAX).unwrap(), want);
    }
    let mut stream = BytesMut::from(&PINGREQ[..]);
    assert_eq!(peer::Packet::read(&mut stream, 10).unwrap(), peer::Packet::PingReq);
    let mut stream = BytesMut::from(&DISCONNECT[..]);
    assert_eq!(peer::Packet::read(&mut stream, 10).unwrap(), peer::Packet::Disconnect);
}

#[test]
fn what_a_broker_answers_a_subscriber() {
    let mut rng = Rng(42);
    for packet in [
        peer::Packet::ConnAck(peer::ConnAck::new(peer::ConnectReturnCode::Success, true)),
        peer::Packet::ConnAck(peer::ConnAck::new(
            peer::ConnectReturnCode::NotAuthorized,
            false,
        )),
        peer::Packet::SubAck(peer::SubAck::new(
            9,
            vec![
                peer::SubscribeReasonCode::Success(QoS::AtLeastOnce),
                peer::SubscribeReasonCode::Failure,
            ],
        )),
        peer::Packet::PubRel(peer::PubRel::new(300)),
        peer::Packet::PingResp,
        peer::Packet::PubAck(peer::PubAck::new(1)),
        peer::Packet::UnsubAck(peer::UnsubAck::new(2)),
        peer::Packet::UnsubAck(peer::UnsubAck::new(65_535)),
    ] {
        let mut out = BytesMut::new();
        packet.write(&mut out, usize::MAX).unwrap();
        let Parsed::Frame { frame, len } = parse(&out, 0).unwrap() else {
            panic!("{packet:?}")
        };
        assert_eq!(len, out.len());
        let want = match &packet {
            peer::Packet::ConnAck(a) => Frame::ConnAck {
                session_present: a.session_present,
                code: a.code as u8,
            },
            peer::Packet::SubAck(_) => Frame::SubAck {
                codes: &[1, 0x80],
            },
            peer::Packet::PubRel(r) => Frame::PubRel { pkid: r.pkid },
            peer::Packet::UnsubAck(u) => Frame::UnsubAck { pkid: u.pkid },
            peer::Packet::PingResp => Frame::PingResp,
            _ => Frame::Ignored,
        };
        assert_eq!(frame, want);
        let cut = rng.below(out.len() as u64) as usize;
        assert!(matches!(parse(&out[..cut], 0), Ok(Parsed::Incomplete { .. })));
    }
}

/// The filters a session no longer wants, as the peer reads them: in
/// order, each whole, wildcards and `$share` prefixes untouched, one
/// packet however many (past one remaining-length byte).
#[test]
fn an_unsubscribe_reads_as_intended_by_the_peer() {
    for filters in [
        vec!["legacy/+/+".to_string()],
        vec![
            "sensors/#".to_string(),
            "$share/g/zigbee2mqtt/+".to_string(),
            "homie/+/$state".to_string(),
            "ü/+".to_string(),
        ],
        (0..40).map(|i| format!("building/{i}/+/state")).collect(),
    ] {
        let mut out = Vec::new();
        write_unsubscribe(2, &filters, &mut out);
        assert_eq!(out[0], 0xa2, "UNSUBSCRIBE, with the flags MQTT requires");
        let mut stream = BytesMut::from(&out[..]);
        let peer::Packet::Unsubscribe(u) = peer::Packet::read(&mut stream, usize::MAX).unwrap()
        else {
            panic!()
        };
        assert_eq!(u.pkid, 2);
        assert_eq!(u.topics, filters);
        assert!(stream.is_empty(), "one packet, read whole");
    }
}

/// An UNSUBACK is its packet id and nothing else (MQTT 3.1.1 §3.11): one
/// shorter or longer is a broken broker, not an answer to act on.
#[test]
fn an_unsuback_of_another_length_is_malformed() {
    assert_eq!(
        parse(&[0xb0, 2, 0, 2], 0),
        Ok(Parsed::Frame {
            frame: Frame::UnsubAck { pkid: 2 },
            len: 4
        })
    );
    for bad in [&[0xb0, 0][..], &[0xb0, 1, 0], &[0xb0, 3, 0, 2, 0]] {
        assert_eq!(parse(bad, 0), Err(WireError::Malformed("UNSUBACK")), "{bad:?}");
    }
    assert!(matches!(parse(&[0xb0, 2, 0], 0), Ok(Parsed::Incomplete { need: 4 })));
}

#[test]
fn damaged_packets_are_errors_never_panics() {
    // A fifth remaining-length byte, a QoS of 3, a topic longer than its
    // packet, a CONNECT sent to a client, a control packet claiming 1 MB.
    assert_eq!(
        parse(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], 100),
        Err(WireError::RemainingLength)
    );
    assert!(parse(&[0x36, 4, 0, 1, b'a', 0], 100).is_err());
    assert!(parse(&[0x30, 3, 0, 9, b'a'], 100).is_err());
    assert!(parse(&[0x32, 4, 0, 2, b'a', b'b'], 100).is_err());
    assert_eq!(parse(&[0x10, 0], 100), Err(WireError::Unexpected(0x10)));
    assert!(parse(&[0x90, 0x80, 0x80, 0x40], 100).is_err());
    assert!(parse(&[0x20, 3, 0, 0, 0], 100).is_err());
    let mut rng = Rng(7);
    for _ in 0..200_000 {
        let len = rng.below(12) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let limit = rng.below(16) as usize;
        if let Ok(Parsed::Frame { len, frame }) = parse(&bytes, limit) {
            assert!(len <= bytes.len());
            if let Frame::Publish(p) = frame {
                assert!(p.packet_bytes() <= limit);
            }
        }
    }
}
