//! The client against a scripted device on a UDP socket of its own: what
//! it takes as the answer to a confirmed request, and what it must not.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::bacnet::services::PropertyRef;
use crate::bacnet::tags::{self, object_type, property, Value};
use crate::bacnet::{bvlc, npdu};

/// A client on a loopback port of its own (`timeout`, no retry), and the
/// receiver of its unasked messages.
async fn client(timeout: Duration) -> (Client, mpsc::Receiver<Event>) {
    let (events, rx) = mpsc::channel(64);
    let c = Client::start(
        "127.0.0.1:0".parse().unwrap(),
        timeout,
        0,
        events,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    (c, rx)
}

async fn socket() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

/// The next confirmed request `device` receives: its invoke id, service
/// and who sent it.
async fn next_request(device: &UdpSocket) -> (u8, u8, SocketAddr) {
    let mut buf = [0u8; 1500];
    loop {
        let (n, from) = device.recv_from(&mut buf).await.unwrap();
        if let Ok(Frame::Apdu {
            apdu:
                Apdu::ConfirmedRequest {
                    invoke_id, service, ..
                },
            ..
        }) = frame::decode(&buf[..n])
        {
            return (invoke_id, service, from);
        }
    }
}

/// A ReadProperty-ACK of `object`'s present value `value`.
fn present_value_ack(invoke_id: u8, object: ObjectId, value: f32) -> Vec<u8> {
    let mut body = Vec::new();
    tags::put_context_object(&mut body, 0, object);
    tags::put_context_unsigned(&mut body, 1, u64::from(property::PRESENT_VALUE));
    tags::put_open(&mut body, 3);
    tags::put_value(&mut body, &Value::Real(value));
    tags::put_close(&mut body, 3);
    let mut apdu = vec![0x30, invoke_id, confirmed::READ_PROPERTY];
    apdu.extend(body);
    apdu
}

/// `apdu` in a Forwarded-NPDU claiming to come from `origin`.
fn forwarded(origin: SocketAddr, apdu: &[u8]) -> Vec<u8> {
    let SocketAddr::V4(o) = origin else {
        panic!("an IPv4 origin")
    };
    let mut body = o.ip().octets().to_vec();
    body.extend(o.port().to_be_bytes());
    body.extend(npdu::encode(false, None, apdu));
    bvlc::encode(bvlc::function::FORWARDED_NPDU, &body)
}

/// A stranger that saw (or guessed: they count up from 0) the invoke id
/// wraps a ReadProperty-ACK in a Forwarded-NPDU whose origin is the
/// device's address. No BBMD is configured, so nobody's origin is to be
/// believed: the forgery is a stray, and the device's own answer, right
/// behind it, is the value read.
#[tokio::test(start_paused = true)]
async fn an_answer_forwarded_with_the_devices_address_as_origin_is_not_the_devices() {
    let (c, mut events) = client(Duration::from_secs(3)).await;
    let (device, device_addr) = socket().await;
    let (stranger, _) = socket().await;
    let object = ObjectId::new(object_type::ANALOG_VALUE, 1);
    let read = tokio::spawn({
        let c = c.clone();
        async move {
            c.read_property(
                device_addr,
                object,
                PropertyRef::whole(property::PRESENT_VALUE),
            )
            .await
        }
    });
    let (id, _, gateway) = next_request(&device).await;
    let forged = forwarded(device_addr, &present_value_ack(id, object, 999.0));
    stranger.send_to(&forged, gateway).await.unwrap();
    let own = frame::unicast(&present_value_ack(id, object, 21.5), false, None);
    device.send_to(&own, gateway).await.unwrap();
    assert_eq!(read.await.unwrap(), Ok(vec![Value::Real(21.5)]));
    assert_eq!(events.recv().await, Some(Event::Stray));
}

/// An acknowledgement for the right invoke id but another service (a late
/// SubscribeCOV's, its id reused since) is no answer to a WriteProperty:
/// taking it reported a write done that the device refused.
#[tokio::test(start_paused = true)]
async fn an_acknowledgement_of_another_service_is_not_the_answer() {
    let (c, mut events) = client(Duration::from_secs(3)).await;
    let (device, device_addr) = socket().await;
    let object = ObjectId::new(object_type::ANALOG_VALUE, 3);
    let write = tokio::spawn({
        let c = c.clone();
        async move {
            c.write_property(device_addr, object, &Value::Real(21.0), None)
                .await
        }
    });
    let (id, service, gateway) = next_request(&device).await;
    assert_eq!(service, confirmed::WRITE_PROPERTY);
    let stale = frame::unicast(&apdu::simple_ack(id, confirmed::SUBSCRIBE_COV), false, None);
    device.send_to(&stale, gateway).await.unwrap();
    // write-access-denied (property, 40).
    let refused = frame::unicast(&apdu::error(id, service, 2, 40), false, None);
    device.send_to(&refused, gateway).await.unwrap();
    assert_eq!(
        write.await.unwrap(),
        Err(ClientError::Error(ErrorCode { class: 2, code: 40 }))
    );
    assert_eq!(events.recv().await, Some(Event::Stray));
}

/// A device that cannot send its object list whole says how long it is
/// (element 0): a count past what any device holds (a corrupt answer, a
/// hostile one: up to 4 294 967 295) is refused before anything is
/// allocated or asked for it, where it had the gateway reserve memory for
/// that many objects and ask for each.
#[tokio::test(start_paused = true)]
async fn an_object_list_length_past_any_device_is_refused_before_it_is_read() {
    let (c, _events) = client(Duration::from_secs(3)).await;
    let (device, device_addr) = socket().await;
    let list = tokio::spawn(async move {
        let mut caps = super::super::reader::Capabilities::new(apdu::MAX_APDU_IP);
        super::super::reader::object_list(&c, device_addr, 9, &mut caps).await
    });
    // The whole list: too big to send.
    let (id, _, gateway) = next_request(&device).await;
    let abort = frame::unicast(&[0x71, id, apdu::abort::BUFFER_OVERFLOW], false, None);
    device.send_to(&abort, gateway).await.unwrap();
    // Its length: a million (small enough that the test itself allocates
    // what the gateway used to).
    let (id, _, gateway) = next_request(&device).await;
    let mut body = Vec::new();
    tags::put_context_object(&mut body, 0, ObjectId::device(9));
    tags::put_context_unsigned(&mut body, 1, u64::from(property::OBJECT_LIST));
    tags::put_context_unsigned(&mut body, 2, 0);
    tags::put_open(&mut body, 3);
    tags::put_value(&mut body, &Value::Unsigned(1_000_000));
    tags::put_close(&mut body, 3);
    let mut ack = vec![0x30, id, confirmed::READ_PROPERTY];
    ack.extend(body);
    device
        .send_to(&frame::unicast(&ack, false, None), gateway)
        .await
        .unwrap();
    assert_eq!(
        list.await.unwrap(),
        Err(ClientError::TooManyObjects(1_000_000))
    );
}

/// The objects a ReadPropertyMultiple request asks for, each with its
/// properties.
fn objects_asked(body: &[u8]) -> Vec<(ObjectId, Vec<u32>)> {
    let mut r = tags::Reader::new(body);
    let mut out = Vec::new();
    while !r.is_empty() {
        let id = r.context_object(0).unwrap();
        r.open(1).unwrap();
        let mut props = Vec::new();
        while r.peek().unwrap() != tags::Tag::Close(1) {
            props.push(u32::try_from(r.context_unsigned(0).unwrap()).unwrap());
            r.optional_unsigned(1).unwrap();
        }
        r.close(1).unwrap();
        out.push((id, props));
    }
    out
}

/// A device that answers a ReadPropertyMultiple with an Error when it
/// asks for `missing` (object, unknown-object) or for the units of
/// `unitless` (property, unknown-property), as many do, instead of an
/// error result for that object alone; any other with each object's name
/// and present value (its instance × 10). A ReadProperty is answered the
/// same way, one property. Every ReadPropertyMultiple's objects are told
/// on the receiver.
async fn refusing_rpm_device(
    missing: ObjectId,
    unitless: ObjectId,
) -> (SocketAddr, mpsc::UnboundedReceiver<Vec<ObjectId>>) {
    let (device, addr) = socket().await;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let (n, from) = device.recv_from(&mut buf).await.unwrap();
            let Ok(Frame::Apdu {
                apdu:
                    Apdu::ConfirmedRequest {
                        invoke_id,
                        service,
                        body,
                        ..
                    },
                ..
            }) = frame::decode(&buf[..n])
            else {
                continue;
            };
            let asked = if service == confirmed::READ_PROPERTY {
                let mut r = tags::Reader::new(body);
                let id = r.context_object(0).unwrap();
                let p = u32::try_from(r.context_unsigned(1).unwrap()).unwrap();
                vec![(id, vec![p])]
            } else {
                let asked = objects_asked(body);
                let _ = tx.send(asked.iter().map(|(id, _)| *id).collect());
                asked
            };
            let refused = asked.iter().find_map(|(id, props)| {
                if *id == missing {
                    Some((1, 31))
                } else if *id == unitless && props.contains(&property::UNITS) {
                    Some((2, 32))
                } else {
                    None
                }
            });
            let answer = if let Some((class, code)) = refused {
                apdu::error(invoke_id, service, class, code)
            } else {
                let mut out = vec![0x30, invoke_id, service];
                for (id, props) in asked {
                    let value = |p| match p {
                        property::OBJECT_NAME => {
                            Some(Value::CharacterString(format!("AV {}", id.instance)))
                        }
                        property::PRESENT_VALUE => Some(Value::Real(id.instance as f32 * 10.0)),
                        _ => None,
                    };
                    if service == confirmed::READ_PROPERTY {
                        tags::put_context_object(&mut out, 0, id);
                        tags::put_context_unsigned(&mut out, 1, u64::from(props[0]));
                        tags::put_open(&mut out, 3);
                        tags::put_value(&mut out, &value(props[0]).unwrap_or(Value::Null));
                        tags::put_close(&mut out, 3);
                        continue;
                    }
                    tags::put_context_object(&mut out, 0, id);
                    tags::put_open(&mut out, 1);
                    for p in props {
                        let Some(v) = value(p) else { continue };
                        tags::put_context_unsigned(&mut out, 2, u64::from(p));
                        tags::put_open(&mut out, 4);
                        tags::put_value(&mut out, &v);
                        tags::put_close(&mut out, 4);
                    }
                    tags::put_close(&mut out, 1);
                }
                out
            };
            device
                .send_to(&frame::unicast(&answer, false, None), from)
                .await
                .unwrap();
        }
    });
    (addr, rx)
}

/// One object of a device that answers the whole ReadPropertyMultiple
/// with an Error for it (an object configured in `objects` that the
/// device does not have, one deleted since its object list was read):
/// that object is given the error, its neighbours are named and read; an
/// object refused for its units alone is named without them.
/// The Error failed the whole request, so the device was never described
/// (looked for again with backoff, for ever) or failed every poll.
#[tokio::test(start_paused = true)]
async fn an_rpm_refused_for_one_unknown_object_costs_only_that_object() {
    use super::super::reader::{describe, poll, Capabilities};
    let av = |i| ObjectId::new(object_type::ANALOG_VALUE, i);
    let objects: Vec<ObjectId> = [1, 2, 99, 3, 4, 5].into_iter().map(av).collect();
    // av:4 is refused for its units only: it is still named.
    let (device, mut asked) = refusing_rpm_device(av(99), av(4)).await;
    let (c, _events) = client(Duration::from_secs(3)).await;
    let mut caps = Capabilities::new(apdu::MAX_APDU_IP);
    let unknown = ErrorCode { class: 1, code: 31 };

    let infos = describe(&c, device, &objects, &mut caps).await.unwrap();
    for info in &infos {
        if info.id == av(99) {
            assert_eq!((info.error, info.name.as_deref()), (Some(unknown), None));
        } else {
            let name = format!("AV {}", info.id.instance);
            assert_eq!((info.error, info.name.as_deref()), (None, Some(name.as_str())));
        }
    }

    let polled = poll(&c, device, &objects, &mut caps).await.unwrap();
    let mut samples: Vec<(u32, Result<f64, ErrorCode>)> = polled
        .samples
        .iter()
        .map(|(id, s)| (id.instance, s.as_ref().map(|s| s.value).map_err(|e| *e)))
        .collect();
    samples.sort_by_key(|(i, _)| *i);
    assert_eq!(
        samples,
        vec![
            (1, Ok(10.0)),
            (2, Ok(20.0)),
            (3, Ok(30.0)),
            (4, Ok(40.0)),
            (5, Ok(50.0)),
            (99, Err(unknown)),
        ]
    );
    assert!(polled.discrepancies.is_empty(), "{:?}", polled.discrepancies);
    // The objects after the refused one are read together again, not one
    // by one.
    let mut last = Vec::new();
    while let Ok(a) = asked.try_recv() {
        last = a;
    }
    assert_eq!(last, vec![av(3), av(4), av(5)]);

    // Polled again, the refused object is asked alone and the rest in one
    // request: it is not searched for in its batch at every poll.
    let polled = poll(&c, device, &objects, &mut caps).await.unwrap();
    assert_eq!(polled.samples.len(), objects.len());
    let mut requests = Vec::new();
    while let Ok(a) = asked.try_recv() {
        requests.push(a);
    }
    assert_eq!(
        requests,
        vec![vec![av(1), av(2), av(3), av(4), av(5)], vec![av(99)]]
    );
}

/// A device whose object list names an object twice (a firmware that
/// lists a point once per view it is in): the object is read once. Read
/// twice, the clash of its own name with itself renamed its metric
/// (`flow` became `flow_av1`), and every poll counted the second ask as
/// a duplicate and a missing answer.
#[tokio::test(start_paused = true)]
async fn an_object_listed_twice_is_one_object() {
    let (c, _events) = client(Duration::from_secs(3)).await;
    let (device, device_addr) = socket().await;
    let av = |i| ObjectId::new(object_type::ANALOG_VALUE, i);
    let list = tokio::spawn(async move {
        let mut caps = super::super::reader::Capabilities::new(apdu::MAX_APDU_IP);
        super::super::reader::object_list(&c, device_addr, 9, &mut caps).await
    });
    let (id, _, gateway) = next_request(&device).await;
    let mut ack = vec![0x30, id, confirmed::READ_PROPERTY];
    tags::put_context_object(&mut ack, 0, ObjectId::device(9));
    tags::put_context_unsigned(&mut ack, 1, u64::from(property::OBJECT_LIST));
    tags::put_open(&mut ack, 3);
    for o in [ObjectId::device(9), av(1), av(2), av(1)] {
        tags::put_value(&mut ack, &Value::ObjectId(o));
    }
    tags::put_close(&mut ack, 3);
    device
        .send_to(&frame::unicast(&ack, false, None), gateway)
        .await
        .unwrap();
    assert_eq!(
        list.await.unwrap(),
        Ok(vec![ObjectId::device(9), av(1), av(2)])
    );
}

/// A BVLC-Result is the configured BBMD's answer to the gateway's
/// registration: one from anyone else (a stranger's "accepted" while the
/// BBMD never answered, or its NAK) says nothing of the registration.
#[tokio::test(start_paused = true)]
async fn a_registration_result_is_taken_only_from_the_bbmd() {
    let (c, mut events) = client(Duration::from_secs(3)).await;
    let (bbmd, bbmd_addr) = socket().await;
    let (stranger, _) = socket().await;
    c.cov().trust_forwarder(bbmd_addr);
    let gateway = c.local_addr().unwrap();
    let result = |code: u16| {
        let mut d = vec![0x81, 0x00, 0x00, 0x06];
        d.extend(code.to_be_bytes());
        d
    };
    stranger.send_to(&result(0), gateway).await.unwrap();
    bbmd.send_to(&result(0x30), gateway).await.unwrap();
    assert!(
        matches!(events.recv().await, Some(Event::Malformed(_))),
        "the stranger's"
    );
    assert_eq!(
        events.recv().await,
        Some(Event::Registration(bbmd_addr, 0x30))
    );
}

/// A confirmed request the gateway does not serve is rejected to whoever
/// sent it: a Forwarded-NPDU from a stranger (not the BBMD) naming
/// another address as its origin does not make the gateway send to that
/// address, which let anyone aim the gateway's answers at a third party.
#[tokio::test(start_paused = true)]
async fn a_forged_origin_does_not_aim_the_gateways_answer_at_another_address() {
    let (c, _events) = client(Duration::from_secs(3)).await;
    let (stranger, _) = socket().await;
    let (victim, victim_addr) = socket().await;
    let gateway = c.local_addr().unwrap();
    // A ReadProperty request (invoke id 7): the gateway serves none.
    let request = apdu::confirmed_request(7, confirmed::READ_PROPERTY, &[]);
    stranger
        .send_to(&forwarded(victim_addr, &request), gateway)
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = tokio::time::timeout(Duration::from_secs(3), stranger.recv_from(&mut buf))
        .await
        .expect("the reject, to the stranger")
        .unwrap();
    assert_eq!(from, gateway);
    assert!(
        matches!(
            frame::decode(&buf[..n]),
            Ok(Frame::Apdu {
                apdu: Apdu::Reject { invoke_id: 7, .. },
                ..
            })
        ),
        "{:?}",
        &buf[..n]
    );
    assert!(
        victim.try_recv_from(&mut buf).is_err(),
        "nothing reached the address named as origin"
    );
}

/// A segmented confirmed request (a device's COV notification too large
/// for one APDU) is answered with an Abort, segmentation-not-supported,
/// sent as the server (§5.4.5.2), not with a Reject that would tell the
/// device its service is unknown.
#[tokio::test(start_paused = true)]
async fn a_segmented_request_is_aborted_as_segmentation_not_supported() {
    let (c, _events) = client(Duration::from_secs(3)).await;
    let (device, _) = socket().await;
    let gateway = c.local_addr().unwrap();
    // Segmented, more follows; max-segments/APDU; invoke id 9; sequence
    // 0; proposed window 1; ConfirmedCOVNotification; a first segment.
    let request = [0x0c, 0x05, 9, 0, 1, confirmed::CONFIRMED_COV_NOTIFICATION, 0x09, 0x01];
    device
        .send_to(&frame::unicast(&request, false, None), gateway)
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), device.recv_from(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    assert!(
        matches!(
            frame::decode(&buf[..n]),
            Ok(Frame::Apdu {
                apdu: Apdu::Abort {
                    invoke_id: 9,
                    from_server: true,
                    reason: apdu::abort::SEGMENTATION_NOT_SUPPORTED,
                },
                ..
            })
        ),
        "{:?}",
        &buf[..n]
    );
}
