//! The server's socket loop over a real UDP socket.

use super::*;
use crate::coap::handler::Limits;
use gateway_core::{SystemClock, Telemetry};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A CON POST /s/dup/level "5" with Message ID 0x1234 and token 0x42.
const CON_POST: &[u8] = &[
    0x41, 0x02, 0x12, 0x34, // ver 1, CON, TKL 1; 0.02 POST; MID 0x1234
    0x42, // token
    0xb1, b's', // Uri-Path (11) "s"
    0x03, b'd', b'u', b'p', // Uri-Path "dup"
    0x05, b'l', b'e', b'v', b'e', b'l', // Uri-Path "level"
    0x10, // Content-Format (12), length 0: text/plain
    0xff, b'5', // payload "5"
];

/// A retransmission answered from the duplicate cache shows on /metrics,
/// as a duplicate and not an error.
#[tokio::test]
async fn a_retransmitted_request_is_counted_a_duplicate() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let telemetry = Telemetry::default();
    let shutdown = CancellationToken::new();
    let ctx = AdapterContext {
        name: "coap".into(),
        ingress: tx.into(),
        shutdown: shutdown.clone(),
        telemetry: telemetry.clone(),
        clock: Arc::new(SystemClock),
    };
    let config = CoapServerConfig {
        name: "coap".into(),
        bind: addr,
        dtls: None,
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
    let task = tokio::spawn(serve(socket, config, ctx));
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(addr).await.unwrap();
    let mut buf = [0u8; 256];
    let mut replies = Vec::new();
    for _ in 0..2 {
        client.send(CON_POST).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(10), client.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        replies.push(buf[..n].to_vec());
    }
    assert_eq!(replies[0], replies[1], "the same answer");
    match rx.try_recv() {
        Ok(Ingress::Readings(r)) => assert_eq!(r.len(), 1),
        other => panic!("expected one reading, got {other:?}"),
    }
    assert!(rx.try_recv().is_err(), "taken in once");
    assert_eq!(
        telemetry.counter_value("edge_gateway_adapter_duplicates_total", &[("adapter", "coap")]),
        Some(1)
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();
}
