//! The observer against a fake device built on coap-lite: it accepts a
//! registration, sends notifications, then "restarts" (goes silent and
//! forgets the observer) and must see a new registration.

use super::*;
use crate::coap::config::ObservedResource;
use gateway_core::{DeviceId, MetricName, SystemClock, Telemetry};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

struct Device {
    socket: UdpSocket,
    mid: u16,
}

impl Device {
    /// Waits for a registration: a GET with Observe = 0 on /temperature.
    async fn registration(&self) -> (Packet, std::net::SocketAddr) {
        let mut buf = [0u8; 1500];
        loop {
            let (n, peer) = self.socket.recv_from(&mut buf).await.unwrap();
            let p = Packet::from_bytes(&buf[..n]).unwrap();
            if p.header.code == MessageClass::Request(RequestType::Get) {
                assert_eq!(p.get_observe_value(), Some(Ok(0)));
                assert_eq!(
                    p.get_first_option(CoapOption::UriPath).unwrap(),
                    b"temperature"
                );
                return (p, peer);
            }
        }
    }

    /// A response with Observe `seq` and a text/plain value, piggybacked
    /// on the registration's ACK or as a new CON/NON.
    async fn notify(
        &mut self,
        reg: &Packet,
        peer: std::net::SocketAddr,
        ty: MessageType,
        seq: u32,
        value: &str,
    ) {
        let mut p = Packet::new();
        p.header.set_version(1);
        p.header.set_type(ty);
        p.header.code = MessageClass::Response(ResponseType::Content);
        p.header.message_id = if ty == MessageType::Acknowledgement {
            reg.header.message_id
        } else {
            self.mid = self.mid.wrapping_add(1);
            self.mid
        };
        p.set_token(reg.get_token().to_vec());
        p.set_observe_value(seq);
        p.add_option(CoapOption::ContentFormat, Vec::new()); // 0: text/plain
        p.payload = value.as_bytes().to_vec();
        self.socket
            .send_to(&p.to_bytes().unwrap(), peer)
            .await
            .unwrap();
    }

    /// The next request the client sends (a block's GET).
    async fn request(&self) -> Packet {
        let mut buf = [0u8; 1500];
        loop {
            let n = self.socket.recv(&mut buf).await.unwrap();
            let p = Packet::from_bytes(&buf[..n]).unwrap();
            if matches!(p.header.code, MessageClass::Request(_)) {
                return p;
            }
        }
    }

    /// The client's answer to a CON notification.
    async fn answer(&self) -> Vec<u8> {
        let mut buf = [0u8; 64];
        let n = self.socket.recv(&mut buf).await.unwrap();
        buf[..n].to_vec()
    }
}

async fn next_value(rx: &mut mpsc::Receiver<Ingress>) -> (String, String, f64) {
    match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
        Ok(Some(Ingress::Readings(r))) => {
            assert_eq!(r.len(), 1);
            (
                r[0].device().to_string(),
                r[0].metric().to_string(),
                r[0].value(),
            )
        }
        other => panic!("expected a reading, got {other:?}"),
    }
}

#[tokio::test]
async fn notifications_become_readings_and_silence_reregisters() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let mut device = Device { socket, mid: 100 };
    let config = CoapObserveConfig {
        name: "observed".into(),
        resources: vec![ObservedResource {
            addr: addr.to_string(),
            path: vec!["temperature".into()],
            device: DeviceId::new("node-7").unwrap(),
            metric: Some(MetricName::new("temperature").unwrap()),
        }],
        silence: Duration::from_millis(800),
    };
    let (tx, mut rx) = mpsc::channel(16);
    let telemetry = Telemetry::default();
    let ctx = AdapterContext {
        name: "observed".into(),
        ingress: tx.into(),
        shutdown: CancellationToken::new(),
        telemetry: telemetry.clone(),
        clock: Arc::new(SystemClock),
    };
    let shutdown = ctx.shutdown.clone();
    let task = tokio::spawn(Box::new(CoapObserver::new(config)).run(ctx));

    let (reg, peer) = device.registration().await;
    device
        .notify(&reg, peer, MessageType::Acknowledgement, 1, "20.5")
        .await;
    assert_eq!(
        next_value(&mut rx).await,
        ("node-7".into(), "temperature".into(), 20.5)
    );
    device
        .notify(&reg, peer, MessageType::Confirmable, 2, "21")
        .await;
    assert_eq!(next_value(&mut rx).await.2, 21.0);
    let ack = device.answer().await;
    assert_eq!(
        ack,
        [0x60, 0x00, 0, device.mid as u8],
        "an empty ACK of the CON notification"
    );
    device
        .notify(&reg, peer, MessageType::NonConfirmable, 3, "22")
        .await;
    assert_eq!(next_value(&mut rx).await.2, 22.0);
    // A reordered (older) notification is not a new value.
    device
        .notify(&reg, peer, MessageType::NonConfirmable, 2, "99")
        .await;
    device
        .notify(&reg, peer, MessageType::NonConfirmable, 4, "23")
        .await;
    assert_eq!(next_value(&mut rx).await.2, 23.0);

    // The device restarts: it forgets the observer and says nothing. The
    // client registers again, with a new token.
    let (again, _) = device.registration().await;
    assert_ne!(again.get_token(), reg.get_token());
    device
        .notify(&again, peer, MessageType::Acknowledgement, 1, "19")
        .await;
    assert_eq!(next_value(&mut rx).await.2, 19.0);
    // A notification for the old registration is reset (RFC 7641 §3.6).
    device
        .notify(&reg, peer, MessageType::Confirmable, 5, "50")
        .await;
    assert_eq!(device.answer().await, message::reset(device.mid));
    assert_eq!(
        telemetry.counter_value(
            "edge_gateway_adapter_errors_total",
            &[
                ("adapter", "observed"),
                ("error_type", "stale_notification")
            ]
        ),
        Some(1)
    );

    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert!(rx.try_recv().is_err(), "nothing from the old registration");
}

fn observed(addr: std::net::SocketAddr, silence: Duration) -> CoapObserveConfig {
    CoapObserveConfig {
        name: "observed".into(),
        resources: vec![ObservedResource {
            addr: addr.to_string(),
            path: vec!["temperature".into()],
            device: DeviceId::new("node-7").unwrap(),
            metric: Some(MetricName::new("temperature").unwrap()),
        }],
        silence,
    }
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_registration_is_retransmitted_then_retried() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let mut device = Device { socket, mid: 100 };
    let (tx, mut rx) = mpsc::channel(16);
    let telemetry = Telemetry::default();
    let ctx = AdapterContext {
        name: "observed".into(),
        ingress: tx.into(),
        shutdown: CancellationToken::new(),
        telemetry: telemetry.clone(),
        clock: Arc::new(SystemClock),
    };
    let shutdown = ctx.shutdown.clone();
    let silence = Duration::from_secs(3600);
    let task = tokio::spawn(Box::new(CoapObserver::new(observed(addr, silence))).run(ctx));

    // The device is down: five transmissions of the one registration, 2 to
    // 3 s apart first, each gap twice the one before (RFC 7252 §4.2).
    let (first, _) = device.registration().await;
    let start = Instant::now();
    let mut at = vec![start];
    for _ in 0..4 {
        let (again, _) = device.registration().await;
        assert_eq!(again.header.message_id, first.header.message_id);
        assert_eq!(again.get_token(), first.get_token());
        at.push(Instant::now());
    }
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps[0] >= Duration::from_secs(2) && gaps[0] <= Duration::from_secs(3),
        "{gaps:?}"
    );
    for w in gaps.windows(2) {
        let ratio = w[1].as_secs_f64() / w[0].as_secs_f64();
        assert!((ratio - 2.0).abs() < 0.01, "{gaps:?}");
    }
    // Given up after the last timeout, counted, and tried again soon, not
    // after `silence`.
    let (retry, peer) = device.registration().await;
    let waited = Instant::now() - start;
    assert_ne!(retry.get_token(), first.get_token());
    assert!(waited < Duration::from_secs(120), "{waited:?}");
    assert!(waited >= gaps[0] * 31, "{waited:?} {gaps:?}");
    assert_eq!(
        telemetry.counter_value(
            "edge_gateway_adapter_errors_total",
            &[("adapter", "observed"), ("error_type", "observe_unanswered")]
        ),
        Some(1)
    );
    // The device is back: it answers, and is observed.
    device
        .notify(&retry, peer, MessageType::Acknowledgement, 1, "20.5")
        .await;
    assert_eq!(next_value(&mut rx).await.2, 20.5);

    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_answered_registration_is_not_sent_again() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let mut device = Device { socket, mid: 100 };
    let (tx, mut rx) = mpsc::channel(16);
    let ctx = AdapterContext {
        name: "observed".into(),
        ingress: tx.into(),
        shutdown: CancellationToken::new(),
        telemetry: Telemetry::default(),
        clock: Arc::new(SystemClock),
    };
    let shutdown = ctx.shutdown.clone();
    let silence = Duration::from_secs(600);
    let task = tokio::spawn(Box::new(CoapObserver::new(observed(addr, silence))).run(ctx));
    let (reg, peer) = device.registration().await;
    let start = Instant::now();
    device
        .notify(&reg, peer, MessageType::Acknowledgement, 1, "20.5")
        .await;
    assert_eq!(next_value(&mut rx).await.2, 20.5);
    // The next registration is the one after `silence`, not a retransmission.
    let (again, _) = device.registration().await;
    assert_ne!(again.get_token(), reg.get_token());
    assert!(Instant::now() - start >= silence);
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_large_notification_is_read_whole_in_one_datagram_or_in_blocks() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let mut device = Device { socket, mid: 100 };
    let (tx, mut rx) = mpsc::channel(16);
    let telemetry = Telemetry::default();
    let ctx = AdapterContext {
        name: "observed".into(),
        ingress: tx.into(),
        shutdown: CancellationToken::new(),
        telemetry: telemetry.clone(),
        clock: Arc::new(SystemClock),
    };
    let shutdown = ctx.shutdown.clone();
    let config = observed(addr, Duration::from_secs(600));
    let task = tokio::spawn(Box::new(CoapObserver::new(config)).run(ctx));
    let (reg, peer) = device.registration().await;

    // 3000 bytes of JSON (the value last): cut at 2048 it would not parse.
    // By hand: coap-lite will not encode more than 1280 bytes.
    let [hi, lo] = reg.header.message_id.to_be_bytes();
    let token = reg.get_token();
    let mut d = vec![0x60 | token.len() as u8, 0x45, hi, lo];
    d.extend_from_slice(token);
    // Observe 1, Content-Format 50 (application/json).
    d.extend_from_slice(&[0x61, 0x01, 0x61, 50, 0xff]);
    let pad = "x".repeat(3000);
    d.extend_from_slice(format!("{{\"note\":\"{pad}\",\"temperature\":20.5}}").as_bytes());
    assert!(d.len() > 3000);
    device.socket.send_to(&d, peer).await.unwrap();
    assert_eq!(next_value(&mut rx).await.2, 20.5);

    // A body of two 16-byte blocks (SZX 0), as RFC 7959 §2.4 sends a
    // notification too large for one datagram: the first block comes with
    // the notification, the rest is fetched with a GET without Observe.
    let body = br#"{"temperature":23.25}"#;
    let first = block(&reg, 7, Some(2), 0x08, &body[..16]);
    device.socket.send_to(&first, peer).await.unwrap();
    let get = device.request().await;
    assert_eq!(get.header.code, MessageClass::Request(RequestType::Get));
    assert_eq!(get.header.get_type(), MessageType::Confirmable);
    assert_eq!(get.get_observe_value(), None, "a plain GET, no Observe");
    assert_eq!(get.get_first_option(CoapOption::Block2).unwrap(), &vec![0x10]);
    assert_eq!(get.get_first_option(CoapOption::UriPath).unwrap(), b"temperature");
    let mut rest = block(&get, get.header.message_id, None, 0x10, &body[16..]);
    rest[0] = 0x60 | (rest[0] & 0x0f); // piggybacked on the GET's ACK
    device.socket.send_to(&rest, peer).await.unwrap();
    assert_eq!(next_value(&mut rx).await.2, 23.25, "read from both blocks");

    // A fetch overtaken by a newer whole notification is dropped: the
    // value is the newer one, and the late block reads nothing.
    let first = block(&reg, 8, Some(3), 0x08, br#"{"temperature":9"#);
    device.socket.send_to(&first, peer).await.unwrap();
    let get = device.request().await;
    device
        .notify(&reg, peer, MessageType::NonConfirmable, 4, "22")
        .await;
    assert_eq!(next_value(&mut rx).await.2, 22.0, "not a value from a stale fetch");
    let mut late = block(&get, get.header.message_id, None, 0x10, b"9.5}");
    late[0] = 0x60 | (late[0] & 0x0f);
    device.socket.send_to(&late, peer).await.unwrap();
    device
        .notify(&reg, peer, MessageType::NonConfirmable, 5, "22.5")
        .await;
    assert_eq!(next_value(&mut rx).await.2, 22.5, "the late block gave nothing");
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

/// A NON 2.05 JSON response to `to` (its token), message id `mid`, with
/// Observe `seq` if any, Block2 `block2`, ETag 0x01 and `payload`.
fn block(to: &Packet, mid: u16, seq: Option<u32>, block2: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_version(1);
    p.header.set_type(MessageType::NonConfirmable);
    p.header.code = MessageClass::Response(ResponseType::Content);
    p.header.message_id = mid;
    p.set_token(to.get_token().to_vec());
    if let Some(seq) = seq {
        p.set_observe_value(seq);
    }
    p.add_option(CoapOption::ETag, vec![0x01]);
    p.add_option(CoapOption::ContentFormat, vec![50]);
    p.add_option(CoapOption::Block2, vec![block2]);
    p.payload = payload.to_vec();
    p.to_bytes().unwrap()
}

/// A registration renewed after `silence` while a notification's blocks
/// are still being fetched drops the fetch: said and counted, not silent.
#[tokio::test]
async fn a_fetch_dropped_by_a_renewed_registration_is_counted() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let device = Device { socket, mid: 100 };
    let (tx, _rx) = mpsc::channel(16);
    let telemetry = Telemetry::default();
    let ctx = AdapterContext {
        name: "observed".into(),
        ingress: tx.into(),
        shutdown: CancellationToken::new(),
        telemetry: telemetry.clone(),
        clock: Arc::new(SystemClock),
    };
    let shutdown = ctx.shutdown.clone();
    let config = observed(addr, Duration::from_millis(500));
    let task = tokio::spawn(Box::new(CoapObserver::new(config)).run(ctx));
    let (reg, peer) = device.registration().await;
    let first = block(&reg, 7, Some(2), 0x08, br#"{"temperature":2"#);
    device.socket.send_to(&first, peer).await.unwrap();
    // The block's GET (and its retransmissions) go unanswered; the
    // registration is renewed first.
    let again = loop {
        let p = device.request().await;
        if p.get_observe_value().is_some() {
            break p;
        }
        assert_eq!(p.get_first_option(CoapOption::Block2).unwrap(), &vec![0x10]);
    };
    assert_ne!(again.get_token(), reg.get_token());
    assert_eq!(
        telemetry.counter_value(
            "edge_gateway_adapter_errors_total",
            &[("adapter", "observed"), ("error_type", "observe_block2")]
        ),
        Some(1)
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

/// An observer of a scripted device, registered, its first notification
/// (20.5, in the ACK) read.
struct Observed {
    device: Device,
    rx: mpsc::Receiver<Ingress>,
    telemetry: Telemetry,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), AdapterError>>,
    reg: Packet,
    peer: std::net::SocketAddr,
}

async fn observed_with_first_notification() -> Observed {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let mut device = Device { socket, mid: 100 };
    let (tx, mut rx) = mpsc::channel(16);
    let telemetry = Telemetry::default();
    let ctx = AdapterContext {
        name: "observed".into(),
        ingress: tx.into(),
        shutdown: CancellationToken::new(),
        telemetry: telemetry.clone(),
        clock: Arc::new(SystemClock),
    };
    let shutdown = ctx.shutdown.clone();
    let config = observed(addr, Duration::from_secs(600));
    let task = tokio::spawn(Box::new(CoapObserver::new(config)).run(ctx));
    let (reg, peer) = device.registration().await;
    device
        .notify(&reg, peer, MessageType::Acknowledgement, 1, "20.5")
        .await;
    assert_eq!(next_value(&mut rx).await.2, 20.5);
    Observed {
        device,
        rx,
        telemetry,
        shutdown,
        task,
        reg,
        peer,
    }
}

/// A CON 2.05 text/plain notification `value` on `reg`'s token, Message
/// ID `mid`, with Observe `seq` if any.
fn con_notification(reg: &Packet, mid: u16, seq: Option<u32>, value: &str) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_version(1);
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Response(ResponseType::Content);
    p.header.message_id = mid;
    p.set_token(reg.get_token().to_vec());
    if let Some(seq) = seq {
        p.set_observe_value(seq);
    }
    p.add_option(CoapOption::ContentFormat, Vec::new());
    p.payload = value.as_bytes().to_vec();
    p.to_bytes().unwrap()
}

/// A device whose ACK was lost sends its CON notification again, same
/// Message ID (RFC 7252 §4.2): acknowledged again, read once, counted a
/// duplicate and not an error, with an Observe option or without one.
#[tokio::test]
async fn a_retransmitted_con_notification_is_acknowledged_again_and_read_once() {
    let Observed {
        device,
        mut rx,
        telemetry,
        shutdown,
        task,
        reg,
        peer,
    } = observed_with_first_notification().await;

    let with_observe = con_notification(&reg, 200, Some(2), "21");
    let without = con_notification(&reg, 201, None, "30");
    for (datagram, value, mid) in [(&with_observe, 21.0, 200u8), (&without, 30.0, 201)] {
        device.socket.send_to(datagram, peer).await.unwrap();
        assert_eq!(next_value(&mut rx).await.2, value);
        assert_eq!(device.answer().await, [0x60, 0x00, 0, mid]);
        // Its ACK lost: the same datagram again.
        device.socket.send_to(datagram, peer).await.unwrap();
        assert_eq!(device.answer().await, [0x60, 0x00, 0, mid], "acknowledged again");
    }
    // The next reading is the next notification's: neither came in twice.
    let next = con_notification(&reg, 202, Some(3), "31");
    device.socket.send_to(&next, peer).await.unwrap();
    assert_eq!(next_value(&mut rx).await.2, 31.0);
    assert_eq!(device.answer().await, [0x60, 0x00, 0, 202]);
    let labels = [("adapter", "observed"), ("error_type", "stale_notification")];
    assert_eq!(
        telemetry
            .counter_value("edge_gateway_adapter_errors_total", &labels)
            .unwrap_or(0),
        0,
        "a retransmission is no error"
    );
    assert_eq!(
        telemetry.counter_value(
            "edge_gateway_adapter_duplicates_total",
            &[("adapter", "observed")]
        ),
        Some(2)
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

/// A network that duplicates a datagram (RFC 7252 §4.5: a recipient
/// should drop a NON's duplicates for NON_LIFETIME) delivers a NON
/// notification twice: read once, with an Observe option or without one
/// (a device's last response, or one that does not number its
/// notifications), and counted a duplicate.
#[tokio::test]
async fn a_duplicated_non_notification_is_read_once() {
    let Observed {
        device,
        mut rx,
        telemetry,
        shutdown,
        task,
        reg,
        peer,
    } = observed_with_first_notification().await;

    let non = |mid, seq, value| {
        let mut d = con_notification(&reg, mid, seq, value);
        d[0] |= 0x10; // CON (0) to NON (1)
        d
    };
    for (datagram, value) in [(non(300, Some(2), "21"), 21.0), (non(301, None, "30"), 30.0)] {
        device.socket.send_to(&datagram, peer).await.unwrap();
        device.socket.send_to(&datagram, peer).await.unwrap();
        assert_eq!(next_value(&mut rx).await.2, value);
    }
    // The next reading is the next notification's: neither came in twice.
    device.socket.send_to(&non(302, Some(3), "31"), peer).await.unwrap();
    assert_eq!(next_value(&mut rx).await.2, 31.0);
    assert_eq!(
        telemetry.counter_value(
            "edge_gateway_adapter_duplicates_total",
            &[("adapter", "observed")]
        ),
        Some(2)
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();
}
