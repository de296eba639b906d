//! CoAP ingest throughput on loopback, in one run:
//!
//! - the raw UDP receive rate of a tokio socket set up like the server's;
//! - NON POSTs ingested per second (the full server: parse, route, decode,
//!   readings into a pipeline channel);
//! - CON POSTs with their piggybacked ACK per second, with many clients each
//!   keeping one request outstanding (NSTART = 1, RFC 7252 §4.7).
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
        rate_limit: 0,
        rate_burst: 1,
        max_peers: 16,
        limits: Limits {
            max_payload_bytes: 1024,
            max_body_bytes: 65_536,
            dedup_capacity: 1 << 20,
            max_devices: 1024,
        },
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
        ingress: tx,
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
    });
}
