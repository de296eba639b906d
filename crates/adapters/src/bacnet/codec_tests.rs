//! The codec against the published encodings of ASHRAE 135 Annex F
//! (`vectors.json`, each also decoded by bacpypes3 before it was copied
//! in), and properties over generated input: every value survives
//! encoding and decoding, every truncation or corruption of a real
//! datagram is an error and never a panic, and any segmentation of an
//! answer reassembles to the answer.

use serde_json::Value as Json;

use super::apdu::{self, Apdu};
use super::frame::{self, Frame};
use super::segment::{Reassembly, SegmentError};
use super::services::{self, PropertyRef};
use super::tags::{self, property, ObjectId, Reader, Value};

const VECTORS: &str = include_str!("vectors.json");

fn vector(name: &str) -> (Vec<u8>, Json) {
    let all: Json = serde_json::from_str(VECTORS).expect("vectors.json parses");
    let v = all["vectors"]
        .as_array()
        .and_then(|l| l.iter().find(|v| v["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("vector {name}"));
    let hex = v["hex"].as_str().expect("hex");
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digits"))
        .collect();
    (bytes, v)
}

fn object(v: &Json) -> ObjectId {
    v["object"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("object")
}

#[test]
fn who_is_encodes_as_published() {
    let (bytes, _) = vector("who_is");
    assert_eq!(
        apdu::unconfirmed_request(apdu::unconfirmed::WHO_IS, &services::who_is(None)),
        bytes
    );
    // A range adds two context tags.
    assert_eq!(
        services::who_is(Some((3, 300))),
        [0x09, 0x03, 0x1A, 0x01, 0x2C]
    );
}

#[test]
fn i_am_decodes_and_encodes_as_published() {
    let (bytes, v) = vector("i_am");
    let Ok(Apdu::Unconfirmed { service, body }) = apdu::decode(&bytes) else {
        panic!("an unconfirmed request");
    };
    assert_eq!(service, apdu::unconfirmed::I_AM);
    let i_am = services::decode_i_am(body).expect("I-Am");
    assert_eq!(
        u64::from(i_am.device),
        v["device"].as_u64().unwrap_or_default()
    );
    assert_eq!(
        i_am.max_apdu as u64,
        v["max_apdu"].as_u64().unwrap_or_default()
    );
    assert_eq!(
        u64::from(i_am.segmentation),
        v["segmentation"].as_u64().unwrap_or_default()
    );
    assert_eq!(
        u64::from(i_am.vendor),
        v["vendor"].as_u64().unwrap_or_default()
    );
    assert!(!i_am.segments_answers());
    assert_eq!(
        apdu::unconfirmed_request(apdu::unconfirmed::I_AM, &services::i_am(&i_am)),
        bytes
    );
}

/// What a BBMD sends a foreign device (Annex J.2): the published I-Am
/// forwarded with the address of the device that sent it, which is the one
/// to answer; and BVLC-Result, the answer to Register-Foreign-Device.
#[test]
fn a_bbmds_forwarded_npdu_and_result_decode_with_the_origin() {
    let (i_am, _) = vector("i_am");
    let mut d = vec![
        0x81, 0x04, // BVLC: BACnet/IP, Forwarded-NPDU
        0x00, 0x00, // length, set below
        192, 168, 1, 40, 0xBA, 0xC0, // origin 192.168.1.40:47808
        0x01, 0x00, // NPDU: version 1, no routing, no reply expected
    ];
    d.extend_from_slice(&i_am);
    let len = u16::try_from(d.len()).unwrap().to_be_bytes();
    d[2..4].copy_from_slice(&len);
    let Ok(Frame::Apdu {
        origin: Some(origin),
        source: None,
        apdu: Apdu::Unconfirmed { service, body },
    }) = frame::decode(&d)
    else {
        panic!("a forwarded APDU: {:?}", frame::decode(&d));
    };
    assert_eq!(origin.to_string(), "192.168.1.40:47808");
    assert_eq!(service, apdu::unconfirmed::I_AM);
    assert_eq!(services::decode_i_am(body).map(|i| i.device), Ok(3));
    // BVLC-Result: 0x0000 successful, 0x0030 Register-Foreign-Device NAK.
    assert_eq!(
        frame::decode(&[0x81, 0x00, 0x00, 0x06, 0x00, 0x00]),
        Ok(Frame::BvlcResult(0))
    );
    assert_eq!(
        frame::decode(&[0x81, 0x00, 0x00, 0x06, 0x00, 0x30]),
        Ok(Frame::BvlcResult(0x30))
    );
    // The registration the gateway sends: TTL 600 s.
    assert_eq!(
        super::bvlc::register_foreign_device(600),
        [0x81, 0x05, 0x00, 0x06, 0x02, 0x58]
    );
}

#[test]
fn read_property_request_body_and_ack_as_published() {
    let (req, v) = vector("read_property_request");
    let p = PropertyRef::whole(property::PRESENT_VALUE);
    // The published request asks max APDU 1476 and no segments; ours
    // accepts segments, so only the service body must match byte for byte.
    assert_eq!(&req[4..], services::read_property(object(&v), p).as_slice());
    let (ack, v) = vector("read_property_ack");
    let Ok(Apdu::ComplexAck {
        invoke_id,
        segment: None,
        service,
        body,
    }) = apdu::decode(&ack)
    else {
        panic!("a complex ack");
    };
    assert_eq!((invoke_id, service), (1, apdu::confirmed::READ_PROPERTY));
    let (obj, prop, values) = services::decode_read_property_ack(body).expect("RP ack");
    assert_eq!(obj, object(&v));
    assert_eq!(prop, p);
    assert_eq!(values, [Value::Real(72.3)]);
    assert_eq!(values[0].as_f64().map(|f| f as f32), Some(72.3));
}

#[test]
fn read_property_multiple_request_and_ack_as_published() {
    let (req, v) = vector("read_property_multiple_request");
    let props = v["properties"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|p| p.as_u64())
                .map(|p| PropertyRef::whole(p as u32))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        &req[4..],
        services::read_property_multiple(&[(object(&v), props)]).as_slice()
    );
    let (ack, v) = vector("read_property_multiple_ack");
    let Ok(Apdu::ComplexAck { body, .. }) = apdu::decode(&ack) else {
        panic!("a complex ack");
    };
    let results = services::decode_rpm_ack(body).expect("RPM ack");
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].0, object(&v));
    assert_eq!(results[0].1[0].value, Ok(vec![Value::Real(72.3)]));
    assert_eq!(results[0].1[1].property.property, 103);
    assert_eq!(results[0].1[1].value, Ok(vec![Value::Enumerated(0)]));
}

#[test]
fn rpm_ack_with_an_error_for_one_object_keeps_the_others() {
    // The shape bacpypes3 answers for an unknown object inside an RPM.
    let mut body = Vec::new();
    tags::put_context_object(&mut body, 0, ObjectId::new(0, 1));
    tags::put_open(&mut body, 1);
    tags::put_context_unsigned(&mut body, 2, 85);
    tags::put_open(&mut body, 4);
    tags::put_value(&mut body, &Value::Real(21.5));
    tags::put_close(&mut body, 4);
    tags::put_close(&mut body, 1);
    tags::put_context_object(&mut body, 0, ObjectId::new(0, 99));
    tags::put_open(&mut body, 1);
    tags::put_context_unsigned(&mut body, 2, 85);
    tags::put_open(&mut body, 5);
    tags::put_value(&mut body, &Value::Enumerated(1));
    tags::put_value(&mut body, &Value::Enumerated(31));
    tags::put_close(&mut body, 5);
    tags::put_close(&mut body, 1);
    let r = services::decode_rpm_ack(&body).expect("decodes");
    assert_eq!(r[0].1[0].value, Ok(vec![Value::Real(21.5)]));
    let err = r[1].1[0].value.clone().expect_err("an error");
    assert_eq!(err.describe(), "object/unknown-object");
}

/// Issue 68 (5): a COV refusal was logged as "error device/25"; every
/// standard code is named, a proprietary one stays a number.
#[test]
fn error_codes_are_named_as_the_standard_names_them() {
    let named = |class, code| services::ErrorCode { class, code }.describe();
    assert_eq!(named(0, 25), "device/operational-problem");
    assert_eq!(named(5, 79), "services/unknown-subscription");
    assert_eq!(named(2, 47), "property/datatype-not-supported");
    assert_eq!(named(64, 300), "64/300");
    // The Error PDU the gateway answers a foreign notification with.
    let pdu = apdu::error(3, 1, 5, 79);
    assert_eq!(pdu, [0x50, 3, 1, 0x91, 5, 0x91, 79]);
}

#[test]
fn unconfirmed_cov_notification_as_published() {
    let (bytes, v) = vector("unconfirmed_cov_notification");
    let datagram = frame::unicast(&bytes, false, None);
    let Ok(Frame::Apdu {
        apdu: Apdu::Unconfirmed { service, body },
        ..
    }) = frame::decode(&datagram)
    else {
        panic!("an unconfirmed request in a datagram");
    };
    assert_eq!(service, apdu::unconfirmed::UNCONFIRMED_COV_NOTIFICATION);
    let n = services::decode_cov_notification(body).expect("notification");
    assert_eq!(
        u64::from(n.process_id),
        v["process_id"].as_u64().unwrap_or_default()
    );
    assert_eq!(n.device, ObjectId::device(4));
    assert_eq!(n.object, object(&v));
    assert_eq!(
        n.values[0],
        (
            PropertyRef::whole(property::PRESENT_VALUE),
            vec![Value::Real(65.0)]
        )
    );
    let flags = &n.values[1].1[0];
    assert_eq!(n.values[1].0.property, property::STATUS_FLAGS);
    assert_eq!(
        (0..4).map(|b| flags.bit(b)).collect::<Vec<_>>(),
        [Some(false); 4]
    );
}

#[test]
fn write_property_with_priority_and_relinquish() {
    let av = ObjectId::new(2, 3);
    let p = PropertyRef::whole(property::PRESENT_VALUE);
    let w = services::write_property(av, p, &Value::Real(21.0), Some(8));
    assert_eq!(
        w,
        [
            0x0C, 0x00, 0x80, 0x00, 0x03, 0x19, 0x55, 0x3E, 0x44, 0x41, 0xA8, 0x00, 0x00, 0x3F,
            0x49, 0x08
        ]
    );
    let r = services::write_property(av, p, &Value::Null, Some(8));
    assert_eq!(&r[7..], [0x3E, 0x00, 0x3F, 0x49, 0x08]);
}

/// A small deterministic generator (xorshift): the properties below run
/// the same cases on every machine.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn value(&mut self) -> Value {
        match self.below(11) {
            0 => Value::Null,
            1 => Value::Boolean(self.below(2) == 1),
            2 => Value::Unsigned(self.next() >> self.below(64)),
            3 => Value::Signed((self.next() as i64) >> self.below(64)),
            4 => Value::Real(f32::from_bits(self.next() as u32 & 0x7F7F_FFFF)),
            5 => Value::Double(f64::from_bits(self.next() & 0x7FEF_FFFF_FFFF_FFFF)),
            6 => Value::OctetString((0..self.below(300)).map(|_| self.next() as u8).collect()),
            7 => Value::CharacterString(
                (0..self.below(80))
                    .map(|i| char::from(b'a' + (i % 26) as u8))
                    .collect(),
            ),
            8 => {
                let n = self.below(4) as usize + 1;
                Value::BitString(
                    self.below(8) as u8,
                    (0..n).map(|_| self.next() as u8).collect(),
                )
            }
            9 => Value::Enumerated(self.next() as u32),
            _ => Value::ObjectId(ObjectId::new(
                self.below(1024) as u16,
                self.below(u64::from(tags::MAX_INSTANCE)) as u32,
            )),
        }
    }
}

#[test]
fn every_value_survives_encoding_and_decoding() {
    let mut g = Gen(0x9E37_79B9_7F4A_7C15);
    for _ in 0..5000 {
        let v = g.value();
        let mut b = Vec::new();
        tags::put_value(&mut b, &v);
        let mut r = Reader::new(&b);
        assert_eq!(r.value().as_ref(), Ok(&v), "{b:02x?}");
        assert!(r.is_empty(), "{v:?} left bytes");
    }
}

fn real_datagrams() -> Vec<Vec<u8>> {
    [
        "i_am",
        "read_property_ack",
        "read_property_multiple_ack",
        "unconfirmed_cov_notification",
    ]
    .iter()
    .map(|n| frame::unicast(&vector(n).0, false, None))
    .collect()
}

#[test]
fn truncated_or_corrupted_datagrams_are_errors_not_panics() {
    let mut g = Gen(42);
    for d in real_datagrams() {
        for cut in 0..d.len() {
            let _ = decode_all(&d[..cut]);
        }
        for _ in 0..2000 {
            let mut m = d.clone();
            for _ in 0..=g.below(4) {
                let at = g.below(m.len() as u64) as usize;
                m[at] = g.next() as u8;
            }
            let _ = decode_all(&m);
        }
    }
    // Random bytes behind a valid header.
    for _ in 0..5000 {
        let n = g.below(64) as usize;
        let body: Vec<u8> = (0..n).map(|_| g.next() as u8).collect();
        let _ = decode_all(&frame::unicast(&body, false, None));
    }
}

/// What the client does with a datagram: the frame, then the service.
fn decode_all(d: &[u8]) -> Option<()> {
    let Ok(Frame::Apdu { apdu, .. }) = frame::decode(d) else {
        return None;
    };
    match apdu {
        Apdu::Unconfirmed { body, .. }
        | Apdu::ComplexAck { body, .. }
        | Apdu::ConfirmedRequest { body, .. } => {
            let _ = services::decode_i_am(body);
            let _ = services::decode_rpm_ack(body);
            let _ = services::decode_read_property_ack(body);
            let _ = services::decode_cov_notification(body);
        }
        Apdu::Error { body, .. } => {
            let _ = services::decode_error(body);
        }
        _ => {}
    }
    Some(())
}

/// `body` cut into segments of `size` as a device sends them.
fn segments(body: &[u8], size: usize) -> Vec<(u8, bool, Vec<u8>)> {
    let chunks: Vec<&[u8]> = body.chunks(size.max(1)).collect();
    let n = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| (i as u8, i + 1 < n, c.to_vec()))
        .collect()
}

#[test]
fn any_segmentation_reassembles_and_acks_each_window() {
    let mut g = Gen(7);
    for _ in 0..200 {
        let size = g.below(1400) as usize + 50;
        // Within the 64 segments the gateway accepts.
        let len = g.below((size * 64) as u64) + 1;
        let body: Vec<u8> = (0..len).map(|_| g.next() as u8).collect();
        let window = g.below(16) as u8 + 1;
        let segs = segments(&body, size);
        let mut r = Reassembly::new(14);
        let mut acks = 0;
        let mut done = None;
        for (seq, more, chunk) in &segs {
            let p = r.push(*seq, window, *more, 14, chunk).expect("in bounds");
            if let Some((nak, s, _)) = p.ack {
                assert!(!nak);
                assert_eq!(s, *seq);
                acks += 1;
            }
            done = p.done.or(done);
        }
        assert_eq!(done.as_deref(), Some(body.as_slice()));
        // The first segment, each full window after it, and the last.
        assert!(acks >= 1 && acks <= segs.len());
    }
}

#[test]
fn a_missing_segment_is_nakked_and_a_resent_window_completes() {
    let body: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let segs = segments(&body, 480);
    let mut r = Reassembly::new(12);
    assert!(r
        .push(0, 4, true, 12, &segs[0].2)
        .expect("ok")
        .ack
        .is_some());
    // Segment 1 lost: segment 2 is answered with a NAK after segment 0.
    let p = r.push(2, 4, true, 12, &segs[2].2).expect("ok");
    assert_eq!(p.ack, Some((true, 0, 4)));
    let mut done = None;
    for (seq, more, chunk) in &segs[1..] {
        done = r.push(*seq, 4, *more, 12, chunk).expect("ok").done.or(done);
    }
    assert_eq!(done, Some(body));
}

#[test]
fn an_endless_segmented_answer_is_cut() {
    let mut r = Reassembly::new(12);
    let chunk = vec![0u8; 1476];
    let mut seq = 0u8;
    let err = loop {
        match r.push(seq, 16, true, 12, &chunk) {
            Ok(_) => seq = seq.wrapping_add(1),
            Err(e) => break e,
        }
    };
    assert_eq!(err, SegmentError::TooLarge);
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digits"))
        .collect()
}

/// Found by a differential against bacpypes3: an object name in UCS-2
/// (set 4) failed the whole ReadPropertyMultiple-ACK, so the device was
/// never read, and a COV notification carrying one lost its present
/// value. UCS-2 and UCS-4 decode; the double-byte sets read lossily;
/// bytes that are not UTF-8 in set 0 read as ISO 8859-1, as older
/// devices meant them.
#[test]
fn every_character_set_reads_and_none_costs_the_answer() {
    // bacpypes3's own encoding: object 0:1 "Temp ÄÖ" (UCS-2), units 62;
    // object 0:2 "Zone 2" (UTF-8), units 62.
    let ack = unhex("30050e0c000000011e294d4e750f0400540065006d0070002000c400d64f29754e913e4f1f0c000000021e294d4e7507005a6f6e6520324f29754e913e4f1f");
    let results = services::decode_rpm_ack(&ack[3..]).expect("the answer reads");
    let name = |i: usize| results[i].1[0].value.clone().expect("a value");
    assert_eq!(name(0), vec![Value::CharacterString("Temp ÄÖ".into())]);
    assert_eq!(name(1), vec![Value::CharacterString("Zone 2".into())]);
    let string = |bytes: &[u8]| {
        let mut tagged = vec![0x75, u8::try_from(bytes.len()).unwrap()];
        tagged.extend_from_slice(bytes);
        Reader::new(&tagged).value()
    };
    let ucs4 = [3, 0, 0, 0, 0x5A, 0, 1, 0xF6, 0x00];
    assert_eq!(string(&ucs4).unwrap(), Value::CharacterString("Z😀".into()));
    assert_eq!(
        string(&[0, 0xE9, 0xFF]).unwrap(),
        Value::CharacterString("éÿ".into())
    );
    assert!(matches!(string(&[1, 0x41, 0x42]), Ok(Value::CharacterString(_))));
    assert!(string(&[4, 0x00]).is_err(), "half a UCS-2 unit");
    // A COV notification with a UCS-2 string among its values keeps its
    // present value.
    let cov = unhex("100209111c020004d22c000000013a012c4e094d2e750d04005a00e40068006c006500722f09552e4440e000002f4f");
    let n = services::decode_cov_notification(&cov[2..]).expect("the notification reads");
    assert!(n
        .values
        .iter()
        .any(|(p, v)| p.property == property::PRESENT_VALUE && v == &vec![Value::Real(7.0)]));
}

/// A Null has no content (§20.2.2): a Null tag with a length is refused,
/// not read on as if its bytes were more values (a made-up object in an
/// object list).
#[test]
fn a_null_with_content_is_refused() {
    let mut r_ok = Reader::new(&[0x00]);
    assert_eq!(r_ok.value().unwrap(), Value::Null);
    let with_content = [0x05, 0x05, 0xC4, 0x00, 0x00, 0x00, 0x05];
    assert!(Reader::new(&with_content).value().is_err());
}
