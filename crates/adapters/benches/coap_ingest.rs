//! CoAP ingest throughput on loopback, in one run:
//!
//! - the raw UDP receive rate of a tokio socket set up like the server's;
//! - NON POSTs ingested per second (the full server: parse, route, decode,
//!   readings into a pipeline channel);
//! - CON POSTs with their piggybacked ACK per second, with many clients each
//!   keeping one request outstanding (NSTART = 1, RFC 7252 §4.7).
//!
//! - coaps (DTLS-PSK, OpenSSL on both sides): full handshakes per second
//!   (cookie exchange included, one client after another, the handshake
//!   rate limit lifted), and CON POSTs + ACK per second over established
//!   sessions, as many clients as the CON run.
//!
//! `cargo bench -p adapters --bench coap_ingest` (release profile). The
//! per-peer rate limit is off here: every sender shares one address.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use adapters::coap::config::CoapServerConfig;
use adapters::coap::handler::Limits;
use adapters::coap::server::serve;
use gateway_core::{AdapterContext, Ingress, SystemClock, Telemetry};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Datagrams per NON/raw sender; below 65536 so Message IDs never repeat
/// within one sender (the server would drop repeats as duplicates).
const PER_SENDER: u32 = 60_000;
const SENDERS: u32 = 4;
const CON_CLIENTS: u16 = 32;
const CON_SECONDS: u64 = 3;

/// A POST /s/bench-{n}/t with "21.5" as text/plain, 21 bytes.
fn post(con: bool, mid: u16, device: u8) -> Vec<u8> {
    let [hi, lo] = mid.to_be_bytes();
    let mut d = vec![if con { 0x41 } else { 0x51 }, 0x02, hi, lo, 0x42];
    d.extend_from_slice(&[0xb1, b's', 0x01, b'a' + device % 26, 0x01, b't', 0x10]);
    d.extend_from_slice(b"\xff21.5");
    d
}

fn config(bind: SocketAddr) -> CoapServerConfig {
    CoapServerConfig {
        name: "bench".into(),
        bind,
        dtls: None,
        rate_limit: 0,
        rate_burst: 1,
        max_peers: 16,
        limits: Limits {
            max_payload_bytes: 1024,
            max_body_bytes: 65_536,
            dedup_capacity: 1 << 20,
            max_devices: 1024,
            max_readings_per_message: adapters::payload::DEFAULT_MAX_READINGS_PER_MESSAGE,
        },
        #[cfg(feature = "lorawan")]
        codec: None,
    }
}

/// Sends `PER_SENDER` datagrams from each of `SENDERS` sockets, round
/// robin from one thread: the machine has few cores, and a receiver starved
/// by several busy senders would measure the scheduler, not the server.
fn blast(target: SocketAddr, con: bool) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let socks: Vec<_> = (0..SENDERS)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for i in 0..PER_SENDER {
            for (s, sock) in socks.iter().enumerate() {
                let d = post(con, i as u16, s as u8);
                // A full socket buffer: yield and retry.
                while sock.send_to(&d, target).is_err() {
                    std::thread::yield_now();
                }
            }
        }
    })
}

/// Counts until `done` reaches `total` or nothing arrives for 300 ms.
async fn measure(counter: Arc<AtomicU64>, total: u64) -> (u64, Duration) {
    let start = Instant::now();
    let mut last = (0, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let n = counter.load(Ordering::Relaxed);
        if n >= total {
            return (n, start.elapsed());
        }
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > Duration::from_millis(300) {
            return (n, last.1 - start);
        }
    }
}

async fn raw_udp() -> (u64, Duration) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = socket.local_addr().unwrap();
    let counter = Arc::new(AtomicU64::new(0));
    let c = counter.clone();
    let rx = tokio::spawn(async move {
        let mut buf = vec![0u8; 1024 + 512 + 1];
        while socket.recv_from(&mut buf).await.is_ok() {
            c.fetch_add(1, Ordering::Relaxed);
        }
    });
    let tx = blast(target, false);
    let r = measure(counter, u64::from(PER_SENDER * SENDERS)).await;
    tx.join().unwrap();
    rx.abort();
    r
}

/// The server with a drained pipeline channel counting readings.
async fn server() -> (SocketAddr, Arc<AtomicU64>, CancellationToken) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (tx, mut rx) = mpsc::channel::<Ingress>(1024);
    let readings = Arc::new(AtomicU64::new(0));
    let r = readings.clone();
    tokio::spawn(async move {
        while let Some(Ingress::Readings(batch)) = rx.recv().await {
            r.fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
    });
    let shutdown = CancellationToken::new();
    let ctx = AdapterContext {
        name: "bench".into(),
        ingress: tx.into(),
        shutdown: shutdown.clone(),
        telemetry: Telemetry::default(),
        clock: Arc::new(SystemClock),
    };
    tokio::spawn(serve(socket, config(addr), ctx));
    (addr, readings, shutdown)
}

async fn coap_non() -> (u64, Duration) {
    let (addr, readings, shutdown) = server().await;
    let tx = blast(addr, false);
    let r = measure(readings, u64::from(PER_SENDER * SENDERS)).await;
    tx.join().unwrap();
    shutdown.cancel();
    r
}

async fn coap_con() -> (u64, Duration) {
    let (addr, readings, shutdown) = server().await;
    let acks = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(CON_SECONDS);
    let start = Instant::now();
    let mut clients = Vec::new();
    for c in 0..CON_CLIENTS {
        let acks = acks.clone();
        clients.push(tokio::spawn(async move {
            let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            sock.connect(addr).await.unwrap();
            let mut buf = [0u8; 64];
            let mut mid: u16 = 0;
            while Instant::now() < stop {
                mid = mid.wrapping_add(1);
                sock.send(&post(true, mid, c as u8)).await.unwrap();
                // A lost datagram would stall this client; the timeout is
                // its retransmission, with a fresh id.
                let got = tokio::time::timeout(Duration::from_millis(200), sock.recv(&mut buf));
                if let Ok(Ok(n)) = got.await {
                    if n >= 4 && buf[0] == 0x61 && buf[1] == 0x44 {
                        acks.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let elapsed = start.elapsed();
    shutdown.cancel();
    let acked = acks.load(Ordering::Relaxed);
    assert!(
        readings.load(Ordering::Relaxed) >= acked,
        "an ACK without its reading"
    );
    (acked, elapsed)
}

const PSK_IDENTITY: &str = "bench";
const PSK_KEY: &[u8] = b"bench-key-0123456789";
const HANDSHAKES: u32 = 300;

/// The coaps server, with one identity for every client.
async fn dtls_server() -> (SocketAddr, Arc<AtomicU64>, CancellationToken) {
    use adapters::coap::config::DtlsSettings;
    use adapters::coap::psk::{CoapSection, PskEntry, PskKey};
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (tx, mut rx) = mpsc::channel::<Ingress>(1024);
    let readings = Arc::new(AtomicU64::new(0));
    let r = readings.clone();
    tokio::spawn(async move {
        while let Some(Ingress::Readings(batch)) = rx.recv().await {
            r.fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
    });
    let shutdown = CancellationToken::new();
    let ctx = AdapterContext {
        name: "bench".into(),
        ingress: tx.into(),
        shutdown: shutdown.clone(),
        telemetry: Telemetry::default(),
        clock: Arc::new(SystemClock),
    };
    let mut cfg = config(addr);
    cfg.max_peers = 4096;
    cfg.dtls = Some(DtlsSettings {
        session_timeout: Duration::from_secs(60),
        handshake_rate: 1_000_000,
        handshake_burst: 1_000_000,
    });
    let keys = CoapSection {
        psk: vec![PskEntry {
            identity: PSK_IDENTITY.into(),
            key: PskKey(PSK_KEY.to_vec()),
            device: gateway_core::DeviceId::new("a").unwrap(),
        }],
    };
    tokio::spawn(adapters::coap::dtls::serve(socket, cfg, keys, ctx));
    (addr, readings, shutdown)
}

/// A connected UDP socket as the byte stream OpenSSL's DTLS client reads.
#[derive(Debug)]
struct Udp(std::net::UdpSocket);

impl std::io::Read for Udp {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.recv(buf)
    }
}

impl std::io::Write for Udp {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.send(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A DTLS-PSK client session to `addr` (blocking).
fn dtls_connect(addr: SocketAddr) -> openssl::ssl::SslStream<Udp> {
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
    let mut b = SslConnector::builder(SslMethod::dtls()).unwrap();
    b.set_cipher_list("PSK-AES128-CCM8").unwrap();
    b.set_verify(SslVerifyMode::NONE);
    b.set_psk_client_callback(|_, _, id, key| {
        id[..PSK_IDENTITY.len()].copy_from_slice(PSK_IDENTITY.as_bytes());
        id[PSK_IDENTITY.len()] = 0;
        key[..PSK_KEY.len()].copy_from_slice(PSK_KEY);
        Ok(PSK_KEY.len())
    });
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let conf = b.build().configure().unwrap();
    conf.verify_hostname(false)
        .use_server_name_indication(false)
        .connect("bench", Udp(sock))
        .unwrap()
}

/// Full handshakes per second, one client after another.
async fn dtls_handshakes() -> (u64, Duration) {
    let (addr, _, shutdown) = dtls_server().await;
    let r = tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        for _ in 0..HANDSHAKES {
            let mut s = dtls_connect(addr);
            let _ = s.shutdown();
        }
        (u64::from(HANDSHAKES), start.elapsed())
    })
    .await
    .unwrap();
    shutdown.cancel();
    r
}

/// CON POSTs with their ACK per second over established sessions.
async fn dtls_con() -> (u64, Duration) {
    let (addr, readings, shutdown) = dtls_server().await;
    let acks = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    let start = Instant::now();
    let stop = start + Duration::from_secs(CON_SECONDS);
    for _ in 0..CON_CLIENTS {
        let acks = acks.clone();
        threads.push(std::thread::spawn(move || {
            let mut s = dtls_connect(addr);
            let mut buf = [0u8; 256];
            let mut mid: u16 = 0;
            while Instant::now() < stop {
                mid = mid.wrapping_add(1);
                if s.ssl_write(&post(true, mid, 0)).is_err() {
                    break;
                }
                if let Ok(n) = s.ssl_read(&mut buf) {
                    if n >= 4 && buf[0] == 0x61 && buf[1] == 0x44 {
                        acks.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = start.elapsed();
    shutdown.cancel();
    let acked = acks.load(Ordering::Relaxed);
    assert!(readings.load(Ordering::Relaxed) >= acked);
    (acked, elapsed)
}

fn rate((n, d): (u64, Duration)) -> String {
    format!(
        "{:>9.0}/s  ({n} in {:.2} s)",
        n as f64 / d.as_secs_f64(),
        d.as_secs_f64()
    )
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sent = PER_SENDER * SENDERS;
        println!("CoAP ingest on loopback, 21-byte POSTs; NON/raw: one thread, {SENDERS} sockets x {PER_SENDER}");
        println!("raw UDP receive            {}", rate(raw_udp().await));
        println!(
            "CoAP NON POST ingested     {}  of {sent} sent",
            rate(coap_non().await)
        );
        println!(
            "CoAP CON POST + ACK        {}  ({CON_CLIENTS} clients, one outstanding each)",
            rate(coap_con().await)
        );
        println!(
            "coaps DTLS-PSK handshakes  {}  (one client after another, CCM_8)",
            rate(dtls_handshakes().await)
        );
        println!(
            "coaps CON POST + ACK       {}  ({CON_CLIENTS} sessions, one outstanding each)",
            rate(dtls_con().await)
        );
    });
}
