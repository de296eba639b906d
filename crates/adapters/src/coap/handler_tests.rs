use super::answer::MAX_DIAGNOSTIC;
use super::latest::MAX_METRICS_PER_DEVICE;
use super::*;
use std::time::Duration;

fn peer() -> SocketAddr {
    "[2001:db8::1]:40000".parse().unwrap()
}

fn arrival() -> Timestamp {
    Timestamp::from_millis(1_763_719_200_000).unwrap()
}

fn limits() -> Limits {
    Limits {
        max_payload_bytes: 1024,
        max_body_bytes: 4096,
        dedup_capacity: 64,
        max_devices: 16,
        max_readings_per_message: crate::payload::DEFAULT_MAX_READINGS_PER_MESSAGE,
    }
}

/// A request: CON or NON, method code, Message ID, token 0xAB, Uri-Path
/// segments, optional Content-Format and Block1, payload.
fn request(
    con: bool,
    code: u8,
    mid: u16,
    path: &str,
    cf: Option<u32>,
    block1: Option<u32>,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_version(1);
    p.header.set_type(if con {
        coap_lite::MessageType::Confirmable
    } else {
        coap_lite::MessageType::NonConfirmable
    });
    p.header.code = MessageClass::from(code);
    p.header.message_id = mid;
    p.set_token(vec![0xAB]);
    let (path, query) = path.split_once('?').map_or((path, None), |(p, q)| (p, Some(q)));
    for s in path.split('/').filter(|s| !s.is_empty()) {
        p.add_option(CoapOption::UriPath, s.as_bytes().to_vec());
    }
    if let Some(q) = query {
        p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
    }
    if let Some(cf) = cf {
        p.add_option(CoapOption::ContentFormat, message::uint(cf));
    }
    if let Some(b) = block1 {
        p.add_option(CoapOption::Block1, message::uint(b));
    }
    p.payload = payload.to_vec();
    p.to_bytes_unlimited().unwrap()
}

const POST: u8 = 0x02;
const PUT: u8 = 0x03;
const GET: u8 = 0x01;
const DELETE: u8 = 0x04;

fn reply(o: &Outcome) -> Packet {
    Packet::from_bytes(o.reply.as_ref().expect("a reply")).unwrap()
}

fn code(o: &Outcome) -> MessageClass {
    reply(o).header.code
}

fn values(o: &Outcome) -> Vec<(String, String, f64)> {
    o.readings
        .iter()
        .map(|r| (r.device().to_string(), r.metric().to_string(), r.value()))
        .collect()
}

fn kinds(o: &Outcome) -> Vec<&str> {
    o.errors.iter().map(|(k, _)| k.as_str()).collect()
}

#[test]
fn posts_in_every_content_format() {
    let mut h = Handler::new(limits(), 1);
    let t = Instant::now();
    let cases: [(&str, Option<u32>, &[u8], Vec<(&str, &str, f64)>); 6] = [
        (
            "s/d1/temperature",
            Some(0),
            b"21.5",
            vec![("d1", "temperature", 21.5)],
        ),
        (
            "s/d1",
            Some(50),
            br#"{"humidity":40}"#,
            vec![("d1", "humidity", 40.0)],
        ),
        (
            "s/d1",
            Some(110),
            br#"[{"bn":"x:","n":"co2","v":400},{"n":"voc","v":3}]"#,
            vec![("d1", "co2", 400.0), ("d1", "voc", 3.0)],
        ),
        // [{0: "t", 2: 20}] in CBOR.
        (
            "s/d1",
            Some(112),
            b"\x81\xa2\x00\x61t\x02\x14",
            vec![("d1", "t", 20.0)],
        ),
        ("s/d2/value", None, b"7", vec![("d2", "value", 7.0)]),
        ("s/d2", None, br#"{"a":1}"#, vec![("d2", "a", 1.0)]),
    ];
    for (i, (path, cf, payload, want)) in cases.into_iter().enumerate() {
        let o = h.handle(
            peer(),
            &request(true, POST, i as u16, path, cf, None, payload),
            t,
            arrival(),
        );
        assert_eq!(
            code(&o),
            MessageClass::Response(ResponseType::Changed),
            "{path} {cf:?}"
        );
        let r = reply(&o);
        assert_eq!(r.header.get_type(), coap_lite::MessageType::Acknowledgement);
        assert_eq!(
            (r.header.message_id, r.get_token()),
            (i as u16, &[0xAB][..])
        );
        let want: Vec<_> = want
            .into_iter()
            .map(|(d, m, v)| (d.into(), m.into(), v))
            .collect();
        assert_eq!(values(&o), want);
        assert!(o.errors.is_empty(), "{:?}", o.errors);
    }
    // PUT is an update too.
    let o = h.handle(
        peer(),
        &request(true, PUT, 99, "s/d3/x", Some(0), None, b"1"),
        t,
        arrival(),
    );
    assert_eq!(values(&o), [("d3".into(), "x".into(), 1.0)]);
}

#[test]
fn non_updates_get_no_reply_but_errors_do() {
    let mut h = Handler::new(limits(), 500);
    let t = Instant::now();
    let o = h.handle(
        peer(),
        &request(false, POST, 1, "s/d1/t", Some(0), None, b"1"),
        t,
        arrival(),
    );
    assert_eq!((o.reply.is_none(), o.readings.len()), (true, 1));
    let o = h.handle(
        peer(),
        &request(false, POST, 2, "s/d1/t", Some(0), None, b"hot"),
        t,
        arrival(),
    );
    let r = reply(&o);
    assert_eq!(r.header.get_type(), coap_lite::MessageType::NonConfirmable);
    assert_eq!(
        r.header.code,
        MessageClass::Response(ResponseType::BadRequest)
    );
    assert_eq!(
        r.header.message_id, 500,
        "a NON reply has its own message id"
    );
    assert!(!r.payload.is_empty(), "with a diagnostic");
    // A NON upload in blocks (libcoap's `-N -b`): each block but the last
    // is answered 2.31 Continue, the device's cue for the next; the last,
    // a success, is not answered.
    let first = 1 << 3; // block 0, more, SZX 0 (16 bytes)
    let o = h.handle(peer(), &request(false, POST, 3, "s/d2/t", Some(0), Some(first), b"00000000000021.2"), t, arrival());
    let r = reply(&o);
    assert_eq!(r.header.get_type(), coap_lite::MessageType::NonConfirmable);
    assert_eq!(r.header.code, MessageClass::Response(ResponseType::Continue));
    let last = 1 << 4; // block 1, last
    let o = h.handle(peer(), &request(false, POST, 4, "s/d2/t", Some(0), Some(last), b"5"), t, arrival());
    assert!(o.reply.is_none());
    assert_eq!(values(&o), [("d2".into(), "t".into(), 21.25)]);
}

#[test]
fn every_error_answer() {
    let mut h = Handler::new(limits(), 1);
    let t = Instant::now();
    let big = vec![b'1'; 1025];
    let cases: [(u8, &str, Option<u32>, &[u8], ResponseType, &str); 8] = [
        (
            POST,
            "s/d1/t",
            Some(0),
            b"warm",
            ResponseType::BadRequest,
            "not_a_number",
        ),
        (
            POST,
            "s/d1",
            Some(50),
            b"{",
            ResponseType::BadRequest,
            "invalid_json",
        ),
        (
            POST,
            "x/d1",
            Some(0),
            b"1",
            ResponseType::NotFound,
            "not_found",
        ),
        (
            DELETE,
            "s/d1",
            None,
            b"",
            ResponseType::MethodNotAllowed,
            "method_not_allowed",
        ),
        (
            POST,
            ".well-known/core",
            None,
            b"",
            ResponseType::MethodNotAllowed,
            "method_not_allowed",
        ),
        (
            POST,
            "s/d1",
            Some(42),
            b"x",
            ResponseType::UnsupportedContentFormat,
            "unsupported_content_format",
        ),
        (
            POST,
            "s/d1/t",
            Some(0),
            &big,
            ResponseType::RequestEntityTooLarge,
            "payload_too_large",
        ),
        (
            POST,
            "s/bad+id/t",
            Some(0),
            b"1",
            ResponseType::BadRequest,
            "invalid_device_id",
        ),
    ];
    for (i, (method, path, cf, payload, want, kind)) in cases.into_iter().enumerate() {
        let o = h.handle(
            peer(),
            &request(true, method, i as u16, path, cf, None, payload),
            t,
            arrival(),
        );
        assert_eq!(code(&o), MessageClass::Response(want), "{path}");
        assert_eq!(kinds(&o), [kind], "{path}");
        assert!(o.readings.is_empty());
        assert!(o.reply.as_ref().unwrap().len() <= 4 + 1 + 8 + MAX_DIAGNOSTIC + 1);
    }
}

#[test]
fn a_retransmitted_con_is_answered_alike_and_processed_once() {
    let mut h = Handler::new(limits(), 1);
    let t = Instant::now();
    let req = request(true, POST, 0x7d34, "s/d1/t", Some(0), None, b"21");
    let first = h.handle(peer(), &req, t, arrival());
    let again = h.handle(peer(), &req, t + Duration::from_secs(2), arrival());
    assert_eq!(first.readings.len(), 1);
    assert!(again.readings.is_empty() && again.duplicate);
    assert_eq!(first.reply, again.reply);
    // Another peer with the same id is a different exchange.
    let other: SocketAddr = "192.0.2.1:5683".parse().unwrap();
    assert_eq!(h.handle(other, &req, t, arrival()).readings.len(), 1);
    // After EXCHANGE_LIFETIME the id may be reused.
    let later = t + super::super::dedup::EXCHANGE_LIFETIME;
    assert_eq!(h.handle(peer(), &req, later, arrival()).readings.len(), 1);
}

/// A CON (kept 247 s) and after it, from the same address, its share of
/// NONs (kept 145 s). At 150 s the NONs have expired; one more NON must
/// not push out the CON, whose late copy is still a duplicate. With one
/// cache for both, the expired NONs behind the CON still counted as held
/// and the CON was given up: its copy was counted again.
#[test]
fn a_con_outlives_the_nons_sent_after_it() {
    let mut h = Handler::new(limits(), 1);
    let t = Instant::now();
    let con = request(true, POST, 100, "s/d1/t", Some(0), None, b"1");
    assert_eq!(h.handle(peer(), &con, t, arrival()).readings.len(), 1);
    for mid in 0..63u16 {
        let non = request(false, POST, 200 + mid, "s/d1/t", Some(0), None, b"2");
        assert_eq!(h.handle(peer(), &non, t, arrival()).readings.len(), 1);
    }
    let later = t + Duration::from_secs(150);
    let non = request(false, POST, 999, "s/d1/t", Some(0), None, b"3");
    h.handle(peer(), &non, later, arrival());
    assert_eq!(h.take_dedup_given_up(), None, "nothing live was given up");
    let again = h.handle(peer(), &con, later, arrival());
    assert!(again.duplicate && again.readings.is_empty());
}

/// RFC 7252 §5.4.5 and §5.4.3: a critical option defined once that comes
/// twice, or with a longer value than its format, is not understood: 4.02
/// and nothing taken. An elective one repeated is read once.
#[test]
fn a_critical_option_repeated_or_too_long_is_a_bad_option() {
    let mut h = Handler::new(limits(), 1);
    let t = Instant::now();
    let with = |mid: u16, options: &[(CoapOption, &[u8])]| {
        let mut p = Packet::from_bytes(&request(true, POST, mid, "s/d1/t", Some(0), None, b"21"))
            .unwrap();
        for (option, value) in options {
            p.add_option(*option, value.to_vec());
        }
        p.to_bytes_unlimited().unwrap()
    };
    let bad: [&[(CoapOption, &[u8])]; 4] = [
        &[(CoapOption::Block1, &[0x0E]), (CoapOption::Block1, &[0x0E])],
        &[(CoapOption::Block1, &[0, 0, 0, 0x0E])],
        &[(CoapOption::UriHost, b"a"), (CoapOption::UriHost, b"b")],
        &[(CoapOption::UriPort, &[0x16, 0x33, 0])],
    ];
    for (i, options) in bad.into_iter().enumerate() {
        let o = h.handle(peer(), &with(i as u16, options), t, arrival());
        assert_eq!(code(&o), MessageClass::Response(ResponseType::BadOption), "{i}");
        assert!(o.readings.is_empty(), "{i}");
    }
    let o = h.handle(
        peer(),
        &with(9, &[(CoapOption::UriHost, b"gw"), (CoapOption::ContentFormat, &[50])]),
        t,
        arrival(),
    );
    assert_eq!(values(&o), [("d1".into(), "t".into(), 21.0)]);
}

#[test]
fn malformed_datagrams_are_reset_or_ignored() {
    let mut h = Handler::new(limits(), 1);
    let t = Instant::now();
    let cases: [(&[u8], Option<&[u8]>, &str); 7] = [
        (
            b"\x49\x01\x7d\x34\0\0\0\0\0\0\0\0\0",
            Some(b"\x70\x00\x7d\x34"),
            "invalid_token_length",
        ),
        (
            b"\x40\x01\x7d\x34\xff",
            Some(b"\x70\x00\x7d\x34"),
            "empty_payload_after_marker",
        ),
        (b"\x50\x01\x7d\x34\xbf", None, "reserved_option_nibble"),
        (b"\x60\x00\x7d\x38\x00", None, "empty_message_with_bytes"),
        (b"\x80\x01\x7d\x34", None, "unknown_version"),
        (b"\x40\x01\x7d", None, "short_header"),
        (
            b"\x40\x20\x7d\x34",
            Some(b"\x70\x00\x7d\x34"),
            "reserved_code_class",
        ),
    ];
    for (bytes, want, kind) in cases {
        let o = h.handle(peer(), bytes, t, arrival());
        assert_eq!(o.reply.as_deref(), want, "{kind}");
        assert_eq!(kinds(&o), [kind]);
    }
    // A ping (CON Empty) gets a Reset; an ACK gets nothing.
    let o = h.handle(peer(), b"\x40\x00\x12\x34", t, arrival());
    assert_eq!(o.reply.as_deref(), Some(&b"\x70\x00\x12\x34"[..]));
    assert_eq!(
        h.handle(peer(), b"\x60\x00\x7d\x38", t, arrival()),
        Outcome::default()
    );
    // An unknown critical option is 4.02.
    let mut req = request(true, POST, 9, "s/d1/t", Some(0), None, b"1");
    req.truncate(req.len() - 2);
    let mut p = Packet::from_bytes(&req).unwrap();
    p.add_option(CoapOption::Unknown(2049), vec![1]);
    p.payload = b"1".to_vec();
    let o = h.handle(peer(), &p.to_bytes_unlimited().unwrap(), t, arrival());
    assert_eq!(code(&o), MessageClass::Response(ResponseType::BadOption));
}

#[test]
fn a_truncated_datagram_gets_4_13() {
    let mut h = Handler::new(limits(), 1);
    let req = request(true, POST, 7, "s/d1", Some(110), None, &[b' '; 1200]);
    let o = h.oversize(&req[..1000]);
    assert_eq!(
        code(&o),
        MessageClass::Response(ResponseType::RequestEntityTooLarge)
    );
    assert_eq!(reply(&o).header.message_id, 7);
    assert_eq!(kinds(&o), ["datagram_too_large"]);
}

/// 64 first blocks sent from one socket and left held the Block1 table
/// full for a minute: every device's uploads got 5.03. A host now holds
/// a few transfers at most, and a full table gives up the one idle longest.
#[test]
fn first_blocks_left_by_one_host_do_not_hold_off_another_devices_upload() {
    let mut h = Handler::new(limits(), 1);
    let t = Instant::now();
    let squatter: SocketAddr = "192.0.2.66:5683".parse().unwrap();
    let first = 1 << 3; // block 0, more, SZX 0: 16 bytes
    for i in 0..64u16 {
        let d = request(false, POST, i, &format!("s/squat{i}"), Some(0), Some(first), &[b'1'; 16]);
        h.handle(squatter, &d, t, arrival());
    }
    assert!(h.transfers.len() <= super::block1::MAX_TRANSFERS_PER_HOST, "{}", h.transfers.len());
    // Many hosts leaving first blocks fill the table; an upload in
    // progress still completes, as the idle ones give way.
    for i in 0..80u16 {
        let host: SocketAddr = format!("198.51.100.{}:5683", i % 200).parse().unwrap();
        let d = request(false, POST, i, &format!("s/left{i}"), Some(0), Some(first), &[b'1'; 16]);
        h.handle(host, &d, t, arrival());
    }
    let later = t + std::time::Duration::from_secs(1);
    let o = h.handle(peer(), &request(true, POST, 900, "s/legit", Some(0), Some(first), b"0000000000000021"), later, arrival());
    assert_eq!(reply(&o).header.code, MessageClass::Response(ResponseType::Continue));
    let last = 1 << 4; // block 1, last, SZX 0
    let o = h.handle(peer(), &request(true, POST, 901, "s/legit", Some(0), Some(last), b".5"), later, arrival());
    assert_eq!(reply(&o).header.code, MessageClass::Response(ResponseType::Changed));
    assert_eq!(o.readings.len(), 1);
    assert_eq!(o.readings[0].value(), 21.5);
}

/// A block sent again (its 2.31 lost, resent under a new Message ID) is
/// answered 2.31 again and taken once; the transfer goes on.
#[test]
fn a_resent_block1_block_is_answered_again_not_aborted() {
    let mut h = Handler::new(limits(), 1);
    let t = Instant::now();
    let body = br#"[{"n":"a","v":1},{"n":"b","v":2},{"n":"c","v":3}]"#;
    let chunks: Vec<&[u8]> = body.chunks(16).collect();
    let mut mid = 500;
    let mut send = |h: &mut Handler, num: usize| {
        mid += 1;
        let more = num + 1 < chunks.len();
        let v = (num as u32) << 4 | u32::from(more) << 3; // SZX 0: 16 bytes
        h.handle(
            peer(),
            &request(true, POST, mid, "s/blk", Some(110), Some(v), chunks[num]),
            t,
            arrival(),
        )
    };
    assert_eq!(chunks.len(), 4);
    for num in [0, 0, 1, 1, 2, 2] {
        let o = send(&mut h, num);
        assert_eq!(
            code(&o),
            MessageClass::Response(ResponseType::Continue),
            "block {num}: {:?}",
            kinds(&o)
        );
        assert!(o.errors.is_empty(), "{:?}", kinds(&o));
    }
    let o = send(&mut h, 3);
    assert_eq!(code(&o), MessageClass::Response(ResponseType::Changed));
    assert_eq!(values(&o).len(), 3, "the body once: {:?}", kinds(&o));
}

/// The last block sent again under a new Message ID (its 2.04 lost, the
/// client's application retrying after the CON gave up): the same 2.04 and
/// Block1, the body not read twice. Another last block is still 4.08, and
/// a new transfer of the same path is read as any.
#[test]
fn a_resent_last_block1_block_gets_the_same_answer_once() {
    let mut h = Handler::new(limits(), 1);
    let t = Instant::now();
    let body = br#"[{"n":"a","v":1},{"n":"b","v":2},{"n":"c","v":3}]"#;
    let chunks: Vec<&[u8]> = body.chunks(16).collect();
    let mut mid = 700;
    let mut send = |h: &mut Handler, num: usize, chunk: &[u8], at: Instant| {
        mid += 1;
        let more = num + 1 < chunks.len();
        let v = (num as u32) << 4 | u32::from(more) << 3; // SZX 0: 16 bytes
        h.handle(
            peer(),
            &request(true, POST, mid, "s/blk", Some(110), Some(v), chunk),
            at,
            arrival(),
        )
    };
    for (num, chunk) in chunks.iter().enumerate().take(3) {
        let o = send(&mut h, num, chunk, t);
        assert_eq!(code(&o), MessageClass::Response(ResponseType::Continue));
    }
    let first = send(&mut h, 3, chunks[3], t);
    assert_eq!(code(&first), MessageClass::Response(ResponseType::Changed));
    assert_eq!(values(&first).len(), 3);
    let later = t + Duration::from_secs(100);
    let again = send(&mut h, 3, chunks[3], later);
    assert_eq!(
        code(&again),
        MessageClass::Response(ResponseType::Changed),
        "{:?}",
        kinds(&again)
    );
    assert!(again.readings.is_empty(), "read twice");
    assert!(again.errors.is_empty(), "{:?}", kinds(&again));
    assert_eq!(
        reply(&again).get_first_option(CoapOption::Block1),
        reply(&first).get_first_option(CoapOption::Block1)
    );
    // Another last block is no retry.
    let other = send(&mut h, 3, b"x", later);
    assert_eq!(
        code(&other),
        MessageClass::Response(ResponseType::RequestEntityIncomplete)
    );
    // Past its time it is forgotten.
    let late = t + super::block1::FINISHED_KEPT;
    let o = send(&mut h, 3, chunks[3], late);
    assert_eq!(
        code(&o),
        MessageClass::Response(ResponseType::RequestEntityIncomplete)
    );
    // The same body again, as a new transfer: read again.
    for (num, chunk) in chunks.iter().enumerate() {
        let o = send(&mut h, num, chunk, late);
        assert!(o.errors.is_empty(), "{:?}", kinds(&o));
        if num == 3 {
            assert_eq!(values(&o).len(), 3);
        }
    }
}

#[test]
fn block1_reassembles_a_senml_batch() {
    let mut h = Handler::new(limits(), 1);
    let t = Instant::now();
    let body: String = format!(
        "[{}]",
        (0..40)
            .map(|i| format!(r#"{{"n":"m{}","v":{i}}}"#, i % 4))
            .collect::<Vec<_>>()
            .join(",")
    );
    let chunks: Vec<&[u8]> = body.as_bytes().chunks(64).collect();
    let mut readings = Vec::new();
    for (num, chunk) in chunks.iter().enumerate() {
        let more = num + 1 < chunks.len();
        let v = (num as u32) << 4 | u32::from(more) << 3 | 2; // SZX 2: 64 bytes
        let o = h.handle(
            peer(),
            &request(
                true,
                POST,
                100 + num as u16,
                "s/big",
                Some(110),
                Some(v),
                chunk,
            ),
            t,
            arrival(),
        );
        let r = reply(&o);
        let want = if more {
            ResponseType::Continue
        } else {
            ResponseType::Changed
        };
        assert_eq!(r.header.code, MessageClass::Response(want), "block {num}");
        assert_eq!(
            r.get_first_option(CoapOption::Block1).unwrap(),
            &message::uint(v)
        );
        readings.extend(o.readings);
    }
    assert_eq!(readings.len(), 40);
    assert_eq!(
        readings.iter().map(|r| r.value()).sum::<f64>(),
        (0..40).sum::<i32>() as f64
    );
    // A block out of order is 4.08; oversize bodies are 4.13.
    let o = h.handle(
        peer(),
        &request(
            true,
            POST,
            300,
            "s/big",
            Some(110),
            Some(3 << 4 | 8 | 2),
            &[b' '; 64],
        ),
        t,
        arrival(),
    );
    assert_eq!(
        code(&o),
        MessageClass::Response(ResponseType::RequestEntityIncomplete)
    );
    let mut last = None;
    for num in 0..80u32 {
        let o = h.handle(
            peer(),
            &request(
                true,
                POST,
                400 + num as u16,
                "s/big",
                Some(110),
                Some(num << 4 | 8 | 2),
                &[b' '; 64],
            ),
            t,
            arrival(),
        );
        last = Some(code(&o));
        if last != Some(MessageClass::Response(ResponseType::Continue)) {
            break;
        }
    }
    assert_eq!(
        last,
        Some(MessageClass::Response(ResponseType::RequestEntityTooLarge))
    );
}

#[test]
fn get_latest_and_discovery() {
    let mut h = Handler::new(limits(), 1);
    let t = Instant::now();
    let o = h.handle(
        peer(),
        &request(true, GET, 1, "s/d1", None, None, b""),
        t,
        arrival(),
    );
    assert_eq!(code(&o), MessageClass::Response(ResponseType::NotFound));
    h.handle(
        peer(),
        &request(
            true,
            POST,
            2,
            "s/d1",
            Some(50),
            None,
            br#"{"t":21.5,"h":40}"#,
        ),
        t,
        arrival(),
    );
    h.handle(
        peer(),
        &request(true, POST, 3, "s/d1/t", Some(0), None, b"22"),
        t,
        arrival(),
    );
    let o = h.handle(
        peer(),
        &request(true, GET, 4, "s/d1", None, None, b""),
        t,
        arrival(),
    );
    let r = reply(&o);
    assert_eq!(r.header.code, MessageClass::Response(ResponseType::Content));
    assert_eq!(
        r.get_first_option(CoapOption::ContentFormat).unwrap(),
        &message::uint(CF_JSON)
    );
    let doc: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
    assert_eq!(doc["device"], "d1");
    assert_eq!(doc["metrics"]["t"]["v"], 22.0);
    assert_eq!(doc["metrics"]["h"]["v"], 40.0);
    assert_eq!(doc["metrics"]["h"]["t"], arrival().to_rfc3339());
    let o = h.handle(
        peer(),
        &request(false, GET, 5, ".well-known/core", None, None, b""),
        t,
        arrival(),
    );
    let r = reply(&o);
    assert_eq!(r.header.get_type(), coap_lite::MessageType::NonConfirmable);
    let links = String::from_utf8(r.payload).unwrap();
    assert!(
        links.starts_with("</s>;rt=\"edge-gateway.ingest\""),
        "{links}"
    );
    assert!(
        links.ends_with(",</s/d1>;rt=\"edge-gateway.latest\";ct=50"),
        "{links}"
    );
}

#[test]
fn an_authenticated_identity_reaches_only_its_own_device() {
    let mut h = Handler::new(limits(), 1);
    let own = DeviceId::new("node-7").unwrap();
    let now = Instant::now();
    // (path, method, expected response code, readings)
    let cases = [
        ("s/node-7", POST, ResponseType::Changed, 1),
        ("s/node-7/temperature", PUT, ResponseType::Changed, 1),
        ("s/node-8", POST, ResponseType::Forbidden, 0),
        ("s/node-8/temperature", PUT, ResponseType::Forbidden, 0),
        ("s/node-8", GET, ResponseType::Forbidden, 0),
        (".well-known/core", GET, ResponseType::Content, 0),
    ];
    for (i, (path, code, want, readings)) in cases.into_iter().enumerate() {
        let d = request(true, code, 100 + i as u16, path, Some(0), None, b"21.5");
        let o = h.handle_as(peer(), &d, now, arrival(), Some(&own));
        assert_eq!(
            reply(&o).header.code,
            MessageClass::Response(want),
            "{path}"
        );
        assert_eq!(o.readings.len(), readings, "{path}");
        let forbidden = o.errors.iter().any(|(k, _)| k == "forbidden");
        assert_eq!(forbidden, want == ResponseType::Forbidden, "{path}");
    }
    // Without an identity (plain CoAP) any device may be written.
    let d = request(true, POST, 200, "s/node-8", Some(0), None, b"1");
    let o = h.handle(peer(), &d, now, arrival());
    assert_eq!(o.readings.len(), 1);

    // An identity bound to a MAC reaches its device however the path
    // spells it, as the config did (`24-6F-28-AA-BB-09`); another MAC not.
    let mac = DeviceId::new("24-6F-28-AA-BB-09").unwrap();
    for (i, (path, want)) in [
        ("s/24-6F-28-AA-BB-09", ResponseType::Changed),
        ("s/246F28AABB09", ResponseType::Changed),
        ("s/24:6f:28:aa:bb:09", ResponseType::Changed),
        ("s/24-6F-28-AA-BB-0A", ResponseType::Forbidden),
    ]
    .into_iter()
    .enumerate()
    {
        let d = request(true, POST, 300 + i as u16, path, Some(0), None, b"21.5");
        let o = h.handle_as(peer(), &d, now, arrival(), Some(&mac));
        assert_eq!(reply(&o).header.code, MessageClass::Response(want), "{path}");
    }
}

#[test]
fn a_text_field_beside_the_numbers_is_noted_not_an_error() {
    let mut h = Handler::new(limits(), 1);
    let o = h.handle(
        peer(),
        &request(
            true,
            POST,
            7,
            "s/meter",
            Some(50),
            None,
            br#"{"consumption_kwh": 8.1, "sensor_id": "meter-01"}"#,
        ),
        Instant::now(),
        arrival(),
    );
    assert_eq!(
        values(&o),
        vec![("meter".to_string(), "consumption_kwh".to_string(), 8.1)]
    );
    assert!(o.errors.is_empty(), "{:?}", o.errors);
    assert_eq!(
        code(&o),
        MessageClass::Response(ResponseType::Changed),
        "the device is told its reading was taken"
    );
    let ignored: Vec<_> = o
        .ignored
        .iter()
        .map(|(d, k)| (d.as_str(), k.as_str()))
        .collect();
    assert_eq!(ignored, vec![("meter", "sensor_id")]);
}

/// A device's later datagrams reuse its id (one interned text: what the
/// windows' cache of recent series recognises), a MAC in another notation
/// still names the same device, and a flood of names never grows the
/// table past `max_devices`.
#[test]
fn a_device_named_again_is_the_same_id_whatever_its_notation() {
    let mut h = Handler::new(limits(), 1);
    let now = Instant::now();
    let post = |h: &mut Handler, mid: u16, path: &str| {
        let o = h.handle(
            peer(),
            &request(false, POST, mid, path, Some(CF_JSON), None, b"{\"t\": 1}"),
            now,
            arrival(),
        );
        assert!(o.errors.is_empty(), "{:?}", o.errors);
        o.readings[0].device().clone()
    };
    let first = post(&mut h, 1, "/s/fridge-1");
    let again = post(&mut h, 2, "/s/fridge-1");
    assert!(again.same_text(&first), "the kept id, not a new one");
    assert!(again.is_interned());
    let mac = post(&mut h, 3, "/s/AA-BB-CC-DD-EE-FF");
    assert_eq!(post(&mut h, 4, "/s/aa:bb:cc:dd:ee:ff"), mac);
    assert_eq!(post(&mut h, 5, "/s/AA-BB-CC-DD-EE-FF"), mac);
    for i in 0..100 {
        post(&mut h, 100 + i, &format!("/s/flood-{i}"));
    }
    assert!(h.ids.len() <= limits().max_devices);
    assert_eq!(post(&mut h, 300, "/s/fridge-1"), first);
    let bad = h.handle(
        peer(),
        &request(
            false,
            POST,
            301,
            "/s/a+b",
            Some(CF_JSON),
            None,
            b"{\"t\": 1}",
        ),
        now,
        arrival(),
    );
    assert_eq!(kinds(&bad), ["invalid_device_id"]);
}

/// A request with Uri-Path segments of any bytes (not only text).
fn raw_request(con: bool, code: u8, mid: u16, path: &[&[u8]], cf: Option<u32>, body: &[u8]) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_version(1);
    p.header.set_type(if con {
        coap_lite::MessageType::Confirmable
    } else {
        coap_lite::MessageType::NonConfirmable
    });
    p.header.code = MessageClass::from(code);
    p.header.message_id = mid;
    p.set_token(vec![0xAB, 0xCD]);
    for s in path {
        p.add_option(CoapOption::UriPath, s.to_vec());
    }
    if let Some(cf) = cf {
        p.add_option(CoapOption::ContentFormat, message::uint(cf));
    }
    p.payload = body.to_vec();
    p.to_bytes_unlimited().unwrap()
}

/// The fast paths (a device heard lately found by its segment's bytes,
/// the plain JSON body read from its bytes) answer every datagram as the
/// general path does: the same reply bytes, readings, errors and text
/// fields, datagram after datagram, for paths and bodies that are and
/// are not text, names that are and are not valid, with and without an
/// authenticated identity. And they do answer: the metric names they
/// found are kept.
#[test]
fn the_fast_paths_answer_as_the_general_path() {
    let devices: [&[u8]; 10] = [
        b"dev-1",
        b"dev-2",
        b"AA-BB-CC-DD-EE-FF",
        b"aa:bb:cc:dd:ee:ff",
        b"bad+id",
        b"",
        b"\xff",
        b"\xc0\xaf",
        "é".as_bytes(),
        b"dev-1\x00",
    ];
    let paths: Vec<Vec<&[u8]>> = devices
        .iter()
        .flat_map(|d| {
            [
                vec![&b"s"[..], d],
                vec![b"s", d, b"temp"],
                vec![b"s", d, b"\xfe"],
                vec![b"s", d, b"a+b"],
                vec![b"s", d, b"x", b"y"],
                vec![b"s", d, b"x", b"y", b"\xff"],
                vec![b"S", d],
            ]
        })
        .chain([vec![], vec![&b".well-known"[..], b"core"], vec![b"s"]])
        .collect();
    let bodies: [&[u8]; 12] = [
        br#"{"value":21.53}"#,
        br#"{"t":-4,"h":40.25}"#,
        br#"{"t":1,"h":2,"p":3,"q":4}"#,
        br#"{"ts":1795255200,"t":1}"#,
        br#"{"a/b":1}"#,
        br#"{"t":"21.5","id":"x"}"#,
        br#"{"t":1e3}"#,
        "{\"é\":1}".as_bytes(),
        b"{\"\xff\":1}",
        b"21.5",
        b"",
        br#"[{"n":"t","v":1}]"#,
    ];
    let own = DeviceId::new("dev-1").unwrap();
    let now = Instant::now();
    for max in [crate::payload::DEFAULT_MAX_READINGS_PER_MESSAGE, 3] {
    let mut limits = limits();
    limits.max_devices = 6;
    limits.max_readings_per_message = max;
    let mut fast = Handler::new(limits.clone(), 77);
    let mut general = Handler::new(limits, 77);
    general.fast = false;
    let mut mid = 0u16;
    // Twice over, so the second round finds what the first kept.
    for round in 0..2 {
        for path in &paths {
            for (i, body) in bodies.iter().enumerate() {
                for code in [POST, PUT, GET, DELETE] {
                    mid = mid.wrapping_add(1);
                    let con = (mid + round).is_multiple_of(3);
                    let cf = [None, Some(CF_JSON), Some(CF_TEXT), Some(60)][(i + usize::from(code)) % 4];
                    let d = raw_request(con, code, mid, path, cf, body);
                    let only = mid.is_multiple_of(5).then_some(&own);
                    let f = fast.handle_as(peer(), &d, now, arrival(), only);
                    let g = general.handle_as(peer(), &d, now, arrival(), only);
                    assert_eq!(f, g, "{path:?} {cf:?} {:?}", String::from_utf8_lossy(body));
                    // A retransmission: the cached reply, again alike.
                    if mid.is_multiple_of(7) {
                        let f = fast.handle_as(peer(), &d, now, arrival(), only);
                        let g = general.handle_as(peer(), &d, now, arrival(), only);
                        assert_eq!(f, g);
                    }
                }
            }
        }
    }
    if max > 3 {
        assert!(fast.metrics.len() >= 3, "the fast JSON path read bodies");
    }
    }
}

/// `GET /s/{device}` keeps the first metrics heard (at most
/// `MAX_METRICS_PER_DEVICE`), each with its latest value, listed by name.
#[test]
fn the_latest_values_are_the_first_metrics_heard_by_name() {
    let mut h = Handler::new(limits(), 1);
    let t = Instant::now();
    let mut mid = 0;
    let mut post = |h: &mut Handler, path: &str, body: String| {
        mid += 1;
        let d = request(false, POST, mid, path, Some(CF_JSON), None, body.as_bytes());
        assert!(h.handle(peer(), &d, t, arrival()).errors.is_empty());
    };
    for i in (0..30).rev() {
        post(&mut h, "s/d1", format!("{{\"m{i}\": {i}}}"));
        post(&mut h, "s/d2", format!("{{\"m{}\": {i}}}", i % 5));
    }
    post(&mut h, "s/d1", r#"{"m29": 99, "m5": 5}"#.to_string());
    post(&mut h, "s/d2", r#"{"m3": -1.5}"#.to_string());
    let d1 = DeviceId::new("d1").unwrap();
    let kept: Vec<(&str, f64)> = h
        .latest
        .get(&d1)
        .unwrap()
        .iter()
        .map(|(m, v, _)| (m.as_str(), *v))
        .collect();
    let mut want: Vec<(String, f64)> = (30 - MAX_METRICS_PER_DEVICE..30)
        .rev()
        .map(|i| (format!("m{i}"), i as f64))
        .collect();
    want[0].1 = 99.0;
    let want: Vec<(&str, f64)> = want.iter().map(|(m, v)| (m.as_str(), *v)).collect();
    assert_eq!(kept, want);
    let o = h.handle(
        peer(),
        &request(true, GET, 1000, "s/d2", None, None, b""),
        t,
        arrival(),
    );
    let body = String::from_utf8(reply(&o).payload).unwrap();
    let time = arrival().to_rfc3339();
    let metrics: Vec<String> = [("m0", "0.0"), ("m1", "1.0"), ("m2", "2.0"), ("m3", "-1.5"), ("m4", "4.0")]
        .iter()
        .map(|(n, v)| format!("\"{n}\":{{\"t\":\"{time}\",\"v\":{v}}}"))
        .collect();
    assert_eq!(
        body,
        format!("{{\"device\":\"d2\",\"metrics\":{{{}}}}}", metrics.join(","))
    );
}

/// A host sending more than its share of the duplicate cache holds for a
/// lifetime (devices behind one NAT) loses retransmission protection for
/// its oldest exchanges: said and counted, not silent.
#[test]
fn a_host_past_its_share_of_the_duplicate_cache_is_counted() {
    let limits = Limits {
        dedup_capacity: 128,
        ..limits()
    };
    let share = super::super::dedup::Dedup::share(128);
    let mut h = Handler::new(limits, 500);
    let t = Instant::now();
    for mid in 0..share as u16 {
        let o = h.handle(peer(), &request(true, POST, mid, "s/nat/t", Some(0), None, b"1"), t, arrival());
        assert!(kinds(&o).is_empty(), "{:?}", kinds(&o));
    }
    assert_eq!(h.take_dedup_given_up(), None);
    let o = h.handle(peer(), &request(true, POST, 999, "s/nat/t", Some(0), None, b"1"), t, arrival());
    assert!(kinds(&o).is_empty(), "not this request's error");
    assert_eq!(o.readings.len(), 1, "the request itself is taken");
    assert_eq!(h.take_dedup_given_up(), Some((1, peer().ip())), "counted by the batch");
    assert_eq!(h.take_dedup_given_up(), None);
}

/// A GET followed in Block2 blocks, as a client does: the blocks joined,
/// and how many there were. Each block request is a new CON.
fn get_in_blocks(h: &mut Handler, path: &str, szx: Option<u32>, mid: u16) -> (Vec<u8>, u32) {
    let t = Instant::now();
    let mut joined = Vec::new();
    let mut etag = None;
    for num in 0..200u32 {
        let mut d = Packet::from_bytes(&request(true, GET, mid + num as u16, path, None, None, b"")).unwrap();
        // Without a size of its own, the client asks for the later blocks
        // at the size the first came in.
        match (szx, num) {
            (Some(szx), _) => d.add_option(CoapOption::Block2, message::uint(num << 4 | szx)),
            (None, 0) => {}
            (None, _) => d.add_option(CoapOption::Block2, message::uint(num << 4 | 6)),
        }
        let o = h.handle(peer(), &d.to_bytes_unlimited().unwrap(), t, arrival());
        let r = reply(&o);
        assert_eq!(r.header.code, MessageClass::Response(ResponseType::Content), "block {num}");
        let tag = r.get_first_option(CoapOption::ETag).cloned();
        assert!(etag.is_none() || etag == tag, "the same listing's blocks");
        etag = tag;
        joined.extend(&r.payload);
        let Some(b) = r.get_first_option(CoapOption::Block2) else {
            return (joined, num + 1);
        };
        let b = message::read_uint(b).unwrap();
        assert_eq!(b >> 4, num);
        if b & 0x8 == 0 {
            return (joined, num + 1);
        }
    }
    panic!("more than 200 blocks");
}

/// A device with more metrics than one datagram holds: its latest values
/// come in Block2 blocks, every metric remembered, at the size asked.
#[test]
fn the_latest_of_a_device_with_many_metrics_comes_in_blocks() {
    let mut h = Handler::new(limits(), 1);
    let t = Instant::now();
    let fields: Vec<String> = (0..60).map(|i| format!("\"m{i:02}\":{i}")).collect();
    let body = format!("{{{}}}", fields.join(","));
    assert!(body.len() < limits().max_payload_bytes, "{}", body.len());
    h.handle(peer(), &request(true, POST, 1, "s/big", Some(50), None, body.as_bytes()), t, arrival());
    let (whole, blocks) = get_in_blocks(&mut h, "s/big", None, 100);
    assert!(blocks > 1, "{} bytes in one block", whole.len());
    let doc: serde_json::Value = serde_json::from_slice(&whole).unwrap();
    assert_eq!(doc.get("truncated"), None);
    let metrics = doc["metrics"].as_object().unwrap();
    assert_eq!(metrics.len(), MAX_METRICS_PER_DEVICE, "every metric remembered");
    assert_eq!(metrics["m00"]["v"], 0.0);
    let (small, small_blocks) = get_in_blocks(&mut h, "s/big", Some(0), 300);
    assert_eq!(small, whole, "16-byte blocks join into the same document");
    assert_eq!(small_blocks as usize, whole.len().div_ceil(16));
}

/// More devices than one datagram lists: `/.well-known/core` in blocks,
/// every device in it; a block past the end is refused, not empty.
#[test]
fn the_discovery_of_many_devices_comes_in_blocks() {
    let mut h = Handler::new(Limits { max_devices: 200, ..limits() }, 1);
    let t = Instant::now();
    for i in 0..100u16 {
        let path = format!("s/device-{i:03}/t");
        h.handle(peer(), &request(true, POST, i, &path, Some(0), None, b"1"), t, arrival());
    }
    let (whole, blocks) = get_in_blocks(&mut h, ".well-known/core", None, 1000);
    assert!(blocks >= 4, "{blocks}");
    let text = String::from_utf8(whole).unwrap();
    for i in 0..100 {
        assert!(text.contains(&format!("</s/device-{i:03}>;")), "device-{i:03}");
    }
    let mut past = Packet::from_bytes(&request(true, GET, 2000, ".well-known/core", None, None, b"")).unwrap();
    past.add_option(CoapOption::Block2, message::uint(100 << 4 | 6));
    let o = h.handle(peer(), &past.to_bytes_unlimited().unwrap(), t, arrival());
    assert_eq!(code(&o), MessageClass::Response(ResponseType::BadOption));
}

/// A building with more devices than one listing holds: the listing is
/// cut at its cap and says so (counted, with how to read the rest), and
/// RFC 6690 queries read the rest a prefix at a time, or by type.
#[test]
fn a_discovery_too_large_for_one_listing_is_reported_and_read_by_prefix() {
    let mut h = Handler::new(Limits { max_devices: 4000, ..limits() }, 1);
    let t = Instant::now();
    // Long ids (110 bytes), so that 600 of them pass the cap: each id
    // heard is interned, and the process interns at most 4 096 texts for
    // every test of this binary.
    let padding = "x".repeat(96);
    let names: Vec<String> = (0..600u16)
        .map(|i| format!("{}-{i:04}-{padding}", ["ahu", "boiler", "room"][usize::from(i % 3)]))
        .collect();
    for (i, name) in names.iter().enumerate() {
        let path = format!("s/{name}/t");
        h.handle(peer(), &request(false, POST, i as u16, &path, Some(0), None, b"1"), t, arrival());
    }
    let first = h.handle(peer(), &request(true, GET, 9_000, ".well-known/core", None, None, b""), t, arrival());
    assert_eq!(kinds(&first), ["listing_truncated"], "the cut is reported");
    let (whole, _) = get_in_blocks(&mut h, ".well-known/core", None, 10_000);
    let text = String::from_utf8(whole).unwrap();
    let listed = names.iter().filter(|n| text.contains(&format!("</s/{n}>;"))).count();
    assert!(listed < names.len(), "{listed} listed: the cap did not apply");
    let said = &first.errors[0].1;
    assert!(said.starts_with(&format!("{} devices left out", names.len() - listed)), "{said}");
    let mut seen = 0;
    // Each request under a Message ID of its own: the same one again is a
    // retransmission, answered from the duplicate cache.
    for (k, prefix) in (0u16..).zip(["ahu", "boiler", "room"]) {
        let query = format!(".well-known/core?href=/s/{prefix}-*");
        let o = h.handle(peer(), &request(true, GET, 20_000 + k, &query, None, None, b""), t, arrival());
        assert!(kinds(&o).is_empty(), "{prefix}: {:?}", kinds(&o));
        let (part, _) = get_in_blocks(&mut h, &query, None, 21_000 + 1000 * k);
        let part = String::from_utf8(part).unwrap();
        assert!(!part.contains("</s>"), "the collection's href is not /s/{prefix}-");
        for n in &names {
            assert_eq!(part.contains(&format!("</s/{n}>;")), n.starts_with(prefix), "{n} under {prefix}");
        }
        seen += part.matches("</s/").count();
    }
    assert_eq!(seen, names.len(), "every device, read by prefix");
    let (exact, _) = get_in_blocks(&mut h, &format!(".well-known/core?href=/s/boiler-0001-{padding}"), None, 30_000);
    let exact = String::from_utf8(exact).unwrap();
    assert_eq!(exact, format!("</s/boiler-0001-{padding}>;rt=\"edge-gateway.latest\";ct=50"));
    let (ingest, _) = get_in_blocks(&mut h, ".well-known/core?rt=edge-gateway.ingest", None, 31_000);
    let ingest = String::from_utf8(ingest).unwrap();
    assert!(ingest.starts_with("</s>;rt=\"edge-gateway.ingest\""), "{ingest}");
    assert!(!ingest.contains("</s/"), "{ingest}");
    // A query that still matches more than the cap holds is cut and said so.
    let every_device = ".well-known/core?rt=edge-gateway.latest";
    let o = h.handle(peer(), &request(true, GET, 31_500, every_device, None, None, b""), t, arrival());
    let (most, _) = get_in_blocks(&mut h, every_device, None, 31_600);
    let shown = String::from_utf8(most).unwrap().matches("</s/").count();
    assert!(shown < names.len(), "{shown}");
    assert_eq!(kinds(&o), ["listing_truncated"]);
    assert!(o.errors[0].1.starts_with(&format!("{} devices left out", names.len() - shown)), "{:?}", o.errors);
    let (by_format, _) = get_in_blocks(&mut h, ".well-known/core?ct=112", None, 32_000);
    assert!(String::from_utf8(by_format).unwrap().starts_with("</s>;"), "SenML CBOR is one of /s's formats");
    let (none, _) = get_in_blocks(&mut h, ".well-known/core?if=sensor", None, 33_000);
    assert!(none.is_empty(), "no link has an if attribute");
    let bad = h.handle(peer(), &request(true, GET, 34_000, ".well-known/core?boiler", None, None, b""), t, arrival());
    assert_eq!(code(&bad), MessageClass::Response(ResponseType::BadRequest));
    assert_eq!(kinds(&bad), ["invalid_query"]);
}

/// A flood from forged addresses, one CON each, fills the duplicate cache
/// after a device's CON; the device's retransmission (its ACK lost) is
/// still answered from the cache and its reading not taken twice. The
/// flood's exchanges the full cache could not keep are counted.
#[test]
fn a_forged_address_flood_does_not_get_a_retransmission_taken_twice() {
    let mut h = Handler::new(limits(), 1);
    let t = Instant::now();
    let post = request(true, POST, 77, "s/door", Some(CF_JSON), None, b"{\"open\": 1}");
    let first = h.handle(peer(), &post, t, arrival());
    assert_eq!(values(&first).len(), 1);
    let mut full = 0;
    for i in 0..200u16 {
        let [a, b] = i.to_be_bytes();
        let forged = SocketAddr::from(([198, 51, a, b], 5683));
        let o = h.handle(forged, &post, t + Duration::from_secs(1), arrival());
        assert_eq!(code(&o), MessageClass::Response(ResponseType::Changed));
        full += kinds(&o).iter().filter(|k| **k == "dedup_full").count();
    }
    let again = h.handle(peer(), &post, t + Duration::from_secs(30), arrival());
    assert!(again.duplicate, "answered from the cache");
    assert!(again.readings.is_empty(), "taken twice");
    assert_eq!(again.reply, first.reply);
    assert_eq!(full, 200 - 63, "the flood past the cache's 64");
}
