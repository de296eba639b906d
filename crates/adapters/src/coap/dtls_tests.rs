//! The coaps server against OpenSSL's DTLS client over real UDP sockets
//! (blocking, on the blocking pool), as a device would reach it.

use super::*;
use crate::coap::config::DtlsSettings;
use crate::coap::handler::Limits;
use crate::coap::psk::{PskEntry, PskKey};
use gateway_core::{SystemClock, Telemetry};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::net::UdpSocket as StdUdp;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const IDENTITY: &str = "node-7";
const KEY: &[u8] = b"secretkey123";

struct Harness {
    addr: SocketAddr,
    rx: mpsc::Receiver<Ingress>,
    telemetry: Telemetry,
    shutdown: CancellationToken,
}

async fn server(handshake_rate: u32, handshake_burst: u32) -> Harness {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (tx, rx) = mpsc::channel(64);
    let telemetry = Telemetry::default();
    let shutdown = CancellationToken::new();
    let ctx = AdapterContext {
        name: "coaps".into(),
        ingress: tx.into(),
        shutdown: shutdown.clone(),
        telemetry: telemetry.clone(),
        clock: Arc::new(SystemClock),
    };
    let config = CoapServerConfig {
        name: "coaps".into(),
        bind: addr,
        dtls: Some(DtlsSettings {
            session_timeout: Duration::from_secs(600),
            handshake_rate,
            handshake_burst,
        }),
        rate_limit: 0,
        rate_burst: 1,
        max_peers: 4096,
        limits: Limits {
            max_payload_bytes: 1024,
            max_body_bytes: 65_536,
            dedup_capacity: 1024,
            max_devices: 64,
            max_readings_per_message: crate::payload::DEFAULT_MAX_READINGS_PER_MESSAGE,
        },
        #[cfg(feature = "lorawan")]
        codec: None,
    };
    let keys = CoapSection {
        psk: vec![PskEntry {
            identity: IDENTITY.into(),
            key: PskKey(KEY.to_vec()),
            device: DeviceId::new(IDENTITY).unwrap(),
        }],
    };
    tokio::spawn(serve(socket, config, keys, ctx));
    Harness {
        addr,
        rx,
        telemetry,
        shutdown,
    }
}

/// A connected UDP socket as the stream OpenSSL's DTLS client reads.
#[derive(Debug)]
struct Udp(StdUdp);

impl Read for Udp {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.recv(buf)
    }
}

impl Write for Udp {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.send(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Keeps what the client sends, answers nothing.
#[derive(Debug, Default)]
struct Capture(Vec<Vec<u8>>);

impl Read for Capture {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.push(buf.to_vec());
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn connector() -> openssl::ssl::ConnectConfiguration {
    let mut b = SslConnector::builder(SslMethod::dtls()).unwrap();
    b.set_cipher_list("PSK-AES128-CCM8").unwrap();
    b.set_verify(SslVerifyMode::NONE);
    b.set_psk_client_callback(|_, _, id, key| {
        id[..IDENTITY.len()].copy_from_slice(IDENTITY.as_bytes());
        id[IDENTITY.len()] = 0;
        key[..KEY.len()].copy_from_slice(KEY);
        Ok(KEY.len())
    });
    let mut conf = b.build().configure().unwrap();
    conf.set_verify_hostname(false);
    conf.set_use_server_name_indication(false);
    conf
}

/// A DTLS session from `sock` to `server`; the read timeout lets OpenSSL's
/// retransmission timer run between tries.
fn connect(sock: StdUdp, server: SocketAddr) -> SslStream<Udp> {
    sock.connect(server).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut r = connector().connect("coaps", Udp(sock));
    for _ in 0..40 {
        match r {
            Ok(s) => return s,
            Err(HandshakeError::WouldBlock(mid)) => r = mid.handshake(),
            Err(e) => panic!("handshake failed: {e}"),
        }
    }
    panic!("no handshake in 8 s");
}

/// The first flight of a client: a ClientHello without a cookie.
fn client_hello() -> Vec<u8> {
    match connector().connect("coaps", Capture::default()) {
        Err(HandshakeError::WouldBlock(mid)) => mid.get_ref().0[0].clone(),
        _ => panic!("expected the client to wait for the server"),
    }
}

/// CON POST /s/node-7/t "value" (text/plain), Message ID `mid`.
fn post(mid: u16, value: &str) -> Vec<u8> {
    let [hi, lo] = mid.to_be_bytes();
    let mut d = vec![0x41, 0x02, hi, lo, 0x42, 0xb1, b's', 0x06];
    d.extend_from_slice(IDENTITY.as_bytes());
    d.extend_from_slice(&[0x01, b't', 0x10, 0xff]);
    d.extend_from_slice(value.as_bytes());
    d
}

/// Posts `value` and waits for its 2.04 ACK.
fn post_acked(s: &mut SslStream<Udp>, mid: u16, value: &str) {
    s.ssl_write(&post(mid, value)).unwrap();
    let mut buf = [0u8; 256];
    for _ in 0..25 {
        match s.ssl_read(&mut buf) {
            Ok(n) if n >= 4 && buf[1] == 0x44 && buf[2..4] == mid.to_be_bytes() => return,
            Ok(_) => {}
            Err(e) if e.code() == ErrorCode::WANT_READ => {}
            Err(e) => panic!("session broken: {e}"),
        }
    }
    panic!("no ACK for {value}");
}

async fn value(rx: &mut mpsc::Receiver<Ingress>) -> f64 {
    match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
        Ok(Some(Ingress::Readings(r))) => r[0].value(),
        other => panic!("expected a reading, got {other:?}"),
    }
}

fn errors(t: &Telemetry, kind: &str) -> u64 {
    t.counter_value(
        "edge_gateway_adapter_errors_total",
        &[("adapter", "coaps"), ("error_type", kind)],
    )
    .unwrap_or(0)
}

#[tokio::test]
async fn a_device_restarting_on_the_same_port_gets_a_new_session() {
    let mut h = server(10, 10).await;
    let addr = h.addr;
    tokio::task::spawn_blocking(move || {
        let sock = StdUdp::bind("127.0.0.1:0").unwrap();
        let local = sock.local_addr().unwrap();
        let mut s = connect(sock, addr);
        post_acked(&mut s, 1, "21.5");
        // The device restarts: no close_notify, same source port.
        drop(s);
        let mut s = connect(StdUdp::bind(local).unwrap(), addr);
        // Its Message IDs start again from where its firmware starts
        // them: in a new session that is a new exchange (RFC 7252 §9.1.2),
        // not a retransmission of the old session's.
        post_acked(&mut s, 1, "22.5");
    })
    .await
    .unwrap();
    assert_eq!(value(&mut h.rx).await, 21.5);
    assert_eq!(value(&mut h.rx).await, 22.5);
    let labels = [("adapter", "coaps")];
    assert_eq!(
        h.telemetry.counter_value(DTLS_SESSIONS_REPLACED, &labels),
        Some(1)
    );
    assert_eq!(h.telemetry.counter_value(DTLS_SESSIONS, &labels), Some(2));
    h.shutdown.cancel();
}

#[tokio::test]
async fn a_bare_client_hello_from_the_address_leaves_its_session_alone() {
    let mut h = server(10, 10).await;
    let addr = h.addr;
    let hello = client_hello();
    tokio::task::spawn_blocking(move || {
        let mut s = connect(StdUdp::bind("127.0.0.1:0").unwrap(), addr);
        post_acked(&mut s, 1, "21.5");
        // A forger's ClientHello from the device's address and port: it is
        // asked for a cookie and never returns it.
        let sock = &s.get_ref().0;
        sock.send(&hello).unwrap();
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).unwrap();
        assert!(n > 25 && buf[0] == 22 && buf[13] == 3, "a HelloVerifyRequest");
        post_acked(&mut s, 2, "23.5");
    })
    .await
    .unwrap();
    assert_eq!(value(&mut h.rx).await, 21.5);
    assert_eq!(value(&mut h.rx).await, 23.5);
    assert_eq!(
        h.telemetry
            .counter_value(DTLS_SESSIONS_REPLACED, &[("adapter", "coaps")])
            .unwrap_or(0),
        0
    );
    h.shutdown.cancel();
}

#[tokio::test]
async fn cookieless_client_hellos_take_no_handshake_slot_nor_rate() {
    // One handshake per second per address: ClientHellos charged before
    // their cookie would lock 127.0.0.1 out.
    let mut h = server(1, 1).await;
    let addr = h.addr;
    let hello = client_hello();
    tokio::task::spawn_blocking(move || {
        // More senders than handshake slots, each from its own address as
        // a spoofer's would come, and a few from the device's address;
        // none ever continued.
        let mut sent = 0;
        let flood = (0..300u16).map(|i| [1 + (i / 250) as u8, 1 + (i % 250) as u8]);
        for [c, d] in flood.chain(std::iter::repeat_n([0, 1], 5)) {
            let s = StdUdp::bind((std::net::Ipv4Addr::new(127, 0, c, d), 0)).unwrap();
            s.send_to(&hello, addr).unwrap();
            sent += 1;
        }
        assert!(sent > MAX_HANDSHAKES);
        // Queued after the flood, so served after it.
        let mut s = connect(StdUdp::bind("127.0.0.1:0").unwrap(), addr);
        post_acked(&mut s, 1, "24.5");
    })
    .await
    .unwrap();
    assert_eq!(value(&mut h.rx).await, 24.5);
    assert_eq!(errors(&h.telemetry, "dtls_too_many_sessions"), 0);
    assert_eq!(errors(&h.telemetry, "dtls_handshake_rate_limited"), 0);
    h.shutdown.cancel();
}

#[test]
fn a_hello_verify_request_echoes_the_record_number_and_carries_the_cookie() {
    let hello = client_hello();
    let ch = dtls_cookie::client_hello(&hello).unwrap();
    assert!(ch.cookie.is_empty());
    let hvr = dtls_cookie::hello_verify_request(&ch, &[7; 32]);
    assert_eq!(&hvr[..3], &[22, 0xfe, 0xff]);
    assert_eq!(&hvr[3..11], &hello[3..11], "epoch and sequence number");
    assert_eq!(hvr.len(), 13 + 12 + 3 + 32);
    assert_eq!(hvr[13], 3);
    assert_eq!(&hvr[25..28], &[0xfe, 0xff, 32]);
    // Cut short anywhere, a ClientHello is no ClientHello.
    for n in 0..hello.len() {
        assert!(dtls_cookie::client_hello(&hello[..n]).is_none(), "{n}");
    }
}
