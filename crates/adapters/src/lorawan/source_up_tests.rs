//! The receive loop: one datagram's fate, and a burst read in batches.

use std::cell::RefCell;
use std::time::Duration;

use gateway_core::component::{ADAPTER_ERRORS, ADAPTER_RECEIVED};
use gateway_core::telemetry::Telemetry;

use super::*;

const EUI: [u8; 8] = [0xAA, 0x55, 0x5A, 0, 0, 0, 0, 1];

fn with_header(identifier: u8, body: &[u8]) -> Vec<u8> {
    let mut d = vec![2, 0x12, 0x34, identifier];
    d.extend_from_slice(&EUI);
    d.extend_from_slice(body);
    d
}

type Handled<'a> = (Option<[u8; 4]>, Option<(GatewayEui, &'a [u8])>, Vec<String>);

/// Runs `datagram` and returns its result and the error kinds reported.
fn handle<'a>(bytes: &'a [u8], allowed: &[GatewayEui]) -> Handled<'a> {
    let reported = RefCell::new(Vec::new());
    let report = |kind: &str, _: &str, _: &str| reported.borrow_mut().push(kind.to_string());
    let peer: SocketAddr = "127.0.0.1:1700".parse().unwrap();
    let (ack, pushed, _) = datagram(bytes, peer, allowed, &report);
    (ack, pushed, reported.into_inner())
}

#[test]
fn push_data_is_acknowledged_on_receipt_and_its_json_read_later() {
    // Not JSON at all: still acknowledged (PROTOCOL.TXT §3), and the
    // body is passed on, where the processor counts it as `invalid_json`.
    let bytes = with_header(0x00, b"{not json");
    let (ack, pushed, reported) = handle(&bytes, &[]);
    assert_eq!(ack, Some([2, 0x12, 0x34, 0x01]));
    let (gateway, body) = pushed.unwrap();
    assert_eq!((gateway, body), (GatewayEui(EUI), &b"{not json"[..]));
    assert!(reported.is_empty());
    let e = semtech::push_data(body).unwrap_err();
    assert_eq!(e.kind(), "invalid_json");
}

#[test]
fn pull_data_gets_its_ack_and_nothing_is_passed_on() {
    let bytes = with_header(0x02, b"");
    let (ack, pushed, _) = handle(&bytes, &[GatewayEui(EUI)]);
    assert_eq!(ack, Some([2, 0x12, 0x34, 0x04]));
    assert!(pushed.is_none());
}

#[test]
fn pull_data_and_tx_ack_become_downlink_events() {
    let peer: SocketAddr = "127.0.0.1:1700".parse().unwrap();
    let report = |_: &str, _: &str, _: &str| {};
    let (_, _, event) = datagram(&with_header(0x02, b""), peer, &[], &report);
    let pulled = DownlinkEvent::Pulled {
        gateway: GatewayEui(EUI),
        version: 2,
    };
    assert_eq!(event, Some(pulled));
    let body = br#"{"txpk_ack":{"error":"TOO_LATE"}}"#;
    let (ack, _, event) = datagram(&with_header(0x05, body), peer, &[], &report);
    assert!(ack.is_none(), "TX_ACK is not acknowledged");
    let error = Some("TOO_LATE".to_string());
    let tx_ack = DownlinkEvent::TxAck {
        gateway: GatewayEui(EUI),
        token: [0x12, 0x34],
        error,
    };
    assert_eq!(event, Some(tx_ack));
    let body = br#"{"txpk_ack":{"error":"NONE"}}"#;
    let (_, _, event) = datagram(&with_header(0x05, body), peer, &[], &report);
    let ok = DownlinkEvent::TxAck {
        gateway: GatewayEui(EUI),
        token: [0x12, 0x34],
        error: None,
    };
    assert_eq!(event, Some(ok));
}

#[test]
fn unknown_forwarders_and_broken_headers_get_no_ack() {
    let other = GatewayEui([1; 8]);
    let bytes = with_header(0x00, b"{}");
    let (ack, pushed, reported) = handle(&bytes, &[other]);
    assert!(ack.is_none() && pushed.is_none());
    assert_eq!(reported, ["unknown_gateway"]);
    let (ack, pushed, reported) = handle(&[2, 0, 0, 0, 1, 2], &[]);
    assert!(ack.is_none() && pushed.is_none());
    assert_eq!(reported.len(), 1, "{reported:?}");
    let bytes = with_header(0x01, b"");
    let (ack, _, reported) = handle(&bytes, &[]);
    assert!(
        ack.is_none(),
        "a PUSH_ACK sent to us is the wrong direction"
    );
    assert_eq!(reported.len(), 1);
}

fn batch_of(n: usize) -> PushBatch {
    let mut b = PushBatch::default();
    let peer: SocketAddr = "127.0.0.1:1700".parse().unwrap();
    for i in 0..n {
        b.add(GatewayEui(EUI), peer, format!("{{\"n\":{i}}}").as_bytes());
    }
    b
}

#[tokio::test]
async fn the_queue_holds_datagrams_not_batches_and_gives_back_what_does_not_fit() {
    let (tx, mut rx) = queue();
    assert!(tx.send(batch_of(QUEUE - 2)).unwrap().is_empty());
    let refused = tx.send(batch_of(5)).unwrap();
    assert_eq!(refused.len(), 3, "two fit, three are refused");
    assert_eq!(rx.recv().await.unwrap().len(), QUEUE - 2);
    let two = rx.recv().await.unwrap();
    let bodies: Vec<&[u8]> = two.iter().map(|(_, b)| b).collect();
    assert_eq!(bodies, [&b"{\"n\":0}"[..], b"{\"n\":1}"]);
    assert!(tx.send(batch_of(QUEUE)).unwrap().is_empty(), "room again");
    drop(rx);
    assert!(tx.send(batch_of(1)).is_err(), "the processor is gone");
}

#[tokio::test]
async fn a_recycled_batch_comes_back_empty_and_holds_only_what_is_added_again() {
    let (tx, mut rx) = queue();
    let peer: SocketAddr = "127.0.0.1:1700".parse().unwrap();
    assert!(tx.send(batch_of(3)).unwrap().is_empty());
    let read = rx.recv().await.unwrap();
    let bodies_at = read.bodies.as_ptr();
    rx.recycle(read);
    let mut again = tx.empty_batch();
    assert_eq!(again.bodies.as_ptr(), bodies_at, "the same buffer, not a new one");
    assert_eq!(again.len(), 0, "nothing of the last read is left");
    again.add(GatewayEui(EUI), peer, b"{\"rxpk\":[]}");
    assert!(tx.send(again).unwrap().is_empty());
    let got = rx.recv().await.unwrap();
    let bodies: Vec<&[u8]> = got.iter().map(|(_, b)| b).collect();
    assert_eq!(bodies, [&b"{\"rxpk\":[]}"[..]]);
    // A batch grown past the bound is freed, not kept.
    let mut big = tx.empty_batch();
    big.add(GatewayEui(EUI), peer, &vec![b' '; 100_000]);
    rx.recycle(big);
    assert!(tx.empty_batch().bodies.capacity() < 100_000);
}

struct Running {
    adapter: SocketAddr,
    telemetry: Telemetry,
    rx: QueueRx,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// The receive loop on a loopback socket, reading whole datagrams of up
/// to `slot - 1` bytes.
async fn start(slot: usize) -> Running {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let adapter = socket.local_addr().unwrap();
    let telemetry = Telemetry::default();
    let stop = CancellationToken::new();
    let ctx = ReceiverContext {
        name: "lora".into(),
        stats: AdapterStats::new(&telemetry, "lora"),
        telemetry: telemetry.clone(),
        links: Arc::default(),
        waiting: Arc::default(),
        stop: stop.clone(),
    };
    let (tx, rx) = queue();
    let task = tokio::spawn(receive(Arc::new(socket), Vec::new(), ctx, tx, slot));
    Running {
        adapter,
        telemetry,
        rx,
        stop,
        task,
    }
}

fn errors(telemetry: &Telemetry, kind: &str) -> u64 {
    let labels = [("adapter", "lora"), ("error_type", kind)];
    telemetry
        .counter_value(ADAPTER_ERRORS, &labels)
        .unwrap_or(0)
}

/// Waits for `n` datagrams on `socket`; a deadline only so a failure ends.
async fn replies(socket: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while got.len() < n {
        let read = tokio::time::timeout(Duration::from_secs(20), socket.recv(&mut buf));
        let len = read.await.expect("a reply").unwrap();
        got.push(buf[..len].to_vec());
    }
    got
}

#[tokio::test]
async fn a_burst_is_acknowledged_datagram_by_datagram_and_passed_on_in_order() {
    const SLOT: usize = 512;
    let mut running = start(SLOT).await;
    let forwarder = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    forwarder.connect(running.adapter).await.unwrap();
    let mut sent = 0u16;
    let mut acks = Vec::new();
    // Rounds larger than a batch and together more than a wake-up's
    // reads; each round waits for its ACKs, so the kernel's receive
    // buffer never overflows and nothing is lost outside the loop.
    for round in 0..6 {
        let mut expect = 0;
        for _ in 0..70 {
            sent += 1;
            let [t0, t1] = sent.to_be_bytes();
            let mut d = vec![2, t0, t1, 0x00];
            d.extend_from_slice(&EUI);
            d.extend_from_slice(format!("{{\"n\":{sent}}}").as_bytes());
            forwarder.send(&d).await.unwrap();
            expect += 1;
        }
        if round == 2 {
            // Refused without an ACK, between good ones: too short, a
            // version we do not speak, one that fills the buffer and one
            // longer than it. A PULL_DATA is answered in the same batch.
            let mut full = with_header(0x00, b"");
            full.resize(SLOT, b' ');
            let mut longer = full.clone();
            longer.resize(SLOT + 100, b' ');
            let mut version_9 = with_header(0x00, b"{}");
            version_9[0] = 9;
            let pull = with_header(0x02, b"");
            for d in [&[2, 0, 0][..], &version_9, &full, &longer, &pull] {
                forwarder.send(d).await.unwrap();
            }
            expect += 1;
        }
        acks.extend(replies(&forwarder, expect).await);
    }
    let pull_acks = acks.iter().filter(|a| a[3] == 0x04).count();
    assert_eq!(pull_acks, 1);
    let push_tokens: Vec<u16> = acks
        .iter()
        .filter(|a| a[3] == 0x01)
        .map(|a| u16::from_be_bytes([a[1], a[2]]))
        .collect();
    assert_eq!(
        push_tokens,
        (1..=sent).collect::<Vec<_>>(),
        "every one, in order"
    );
    let mut bodies = Vec::new();
    while bodies.len() < usize::from(sent) {
        let batch = tokio::time::timeout(Duration::from_secs(20), running.rx.recv());
        let batch = batch.await.expect("a batch").unwrap();
        assert!(batch.len() <= READS_PER_WAKE);
        for (pushed, body) in batch.iter() {
            assert_eq!(pushed.gateway, GatewayEui(EUI));
            bodies.push(String::from_utf8(body.to_vec()).unwrap());
        }
    }
    let want: Vec<String> = (1..=sent).map(|n| format!("{{\"n\":{n}}}")).collect();
    assert_eq!(bodies, want);
    let t = &running.telemetry;
    assert_eq!(errors(t, "too_short"), 1);
    assert_eq!(errors(t, "unsupported_version"), 1);
    assert_eq!(errors(t, "truncated"), 2);
    let received = t.counter_value(ADAPTER_RECEIVED, &[("adapter", "lora")]);
    assert_eq!(received, Some(u64::from(sent) + 5));
    running.stop.cancel();
    running.task.await.unwrap();
    assert!(running.rx.recv().await.is_none(), "the queue closes");
}

fn push_data(token: u16, n: usize) -> Vec<u8> {
    let [t0, t1] = token.to_be_bytes();
    let mut d = vec![2, t0, t1, 0x00];
    d.extend_from_slice(&EUI);
    d.extend_from_slice(format!("{{\"n\":{n}}}").as_bytes());
    d
}

/// The bodies of the next `n` PUSH_DATA passed on; a deadline only so a
/// failure ends.
async fn bodies(rx: &mut QueueRx, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < n {
        let batch = tokio::time::timeout(Duration::from_secs(20), rx.recv());
        let batch = batch.await.expect("a batch").expect("the queue is open");
        got.extend(
            batch
                .iter()
                .map(|(_, b)| String::from_utf8(b.to_vec()).unwrap()),
        );
    }
    got
}

#[tokio::test]
async fn forwarders_that_come_and_go_and_bursts_are_all_served_and_stop_frees_the_port() {
    let mut running = start(MAX_DATAGRAM).await;
    // Forwarders that send one PUSH_DATA and close at once: their ACKs
    // go nowhere, and that costs neither their uplinks nor the loop.
    for n in 0..20 {
        let once = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        once.send_to(&push_data(1, n), running.adapter).unwrap();
    }
    let want = |r: std::ops::Range<usize>| r.map(|n| format!("{{\"n\":{n}}}")).collect::<Vec<_>>();
    // In order: on loopback a send is queued before it returns.
    assert_eq!(bodies(&mut running.rx, 20).await, want(0..20));
    // Then bursts from one that stays, each sent without waiting for an
    // ACK (within the default socket buffer), the loop idle in between.
    let forwarder = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    forwarder.connect(running.adapter).await.unwrap();
    for round in 0..2u16 {
        let tokens = round * 100 + 1..round * 100 + 101;
        for t in tokens.clone() {
            forwarder.send(&push_data(t, usize::from(t))).await.unwrap();
        }
        let acked: Vec<u16> = replies(&forwarder, 100)
            .await
            .iter()
            .map(|a| {
                assert_eq!(a[3], 0x01, "a PUSH_ACK");
                u16::from_be_bytes([a[1], a[2]])
            })
            .collect();
        assert_eq!(acked, tokens.clone().collect::<Vec<_>>(), "each, in order");
        let first = usize::from(tokens.start);
        assert_eq!(bodies(&mut running.rx, 100).await, want(first..first + 100));
    }
    let t = &running.telemetry;
    let received = t.counter_value(ADAPTER_RECEIVED, &[("adapter", "lora")]);
    assert_eq!(received, Some(220));
    assert_eq!((errors(t, "send"), errors(t, "recv")), (0, 0));
    // Stopping ends the loop while it waits, idle: the queue closes and
    // the socket is closed with it.
    running.stop.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(20), running.task);
    ended.await.expect("the loop ends").unwrap();
    assert!(running.rx.recv().await.is_none(), "the queue closes");
    std::net::UdpSocket::bind(running.adapter).expect("the port is free again");
}
