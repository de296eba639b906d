//! One connection against a stand-in pipeline that completes receipts
//! when the test says: the order of `err` and `ok`, a client that never
//! reads its answers, and the idle timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gateway_core::clock::SystemClock;
use gateway_core::telemetry::LogThrottle;
use gateway_core::{AdapterContext, DeviceId, Ingress, MetricName, Receipt, Telemetry};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::connection::{serve, Closed, Shared};
use super::decode::LineDecoder;
use super::unanswered::Unanswered;
use crate::payload::PayloadFormat;

const WAIT: Duration = Duration::from_secs(10);

fn shared(ingress: mpsc::Sender<Ingress>, idle: Duration) -> Arc<Shared> {
    let ctx = AdapterContext {
        name: "lines".into(),
        ingress: ingress.into(),
        shutdown: CancellationToken::new(),
        telemetry: Telemetry::default(),
        clock: Arc::new(SystemClock),
    };
    Arc::new(Shared {
        stats: ctx.stats(),
        throttle: LogThrottle::default(),
        decoder: LineDecoder::new(PayloadFormat::Csv {
            columns: vec![MetricName::new("a").unwrap(), MetricName::new("b").unwrap()],
        }),
        source: Arc::from("lines"),
        max_line_bytes: 64,
        idle_timeout: idle,
        ack: true,
        unanswered: std::sync::Mutex::new(Unanswered::new(ctx.telemetry.gauge("unanswered", &[]))),
        duplicates: ctx.telemetry.counter("duplicates", &[]),
        ctx,
    })
}

fn peer() -> SocketAddr {
    ([192, 0, 2, 7], 40_000).into()
}

fn start(stream: DuplexStream, shared: Arc<Shared>) -> tokio::task::JoinHandle<Closed> {
    tokio::spawn(async move {
        serve(stream, peer(), DeviceId::new("node").ok(), shared, None)
            .await
            .unwrap()
    })
}

async fn receipt(rx: &mut mpsc::Receiver<Ingress>) -> Receipt {
    match tokio::time::timeout(WAIT, rx.recv()).await.unwrap() {
        Some(Ingress::Durable { receipt, .. }) => receipt,
        other => panic!("expected durable readings, got {other:?}"),
    }
}

/// Reads until `want` has arrived whole.
async fn expect(client: &mut DuplexStream, want: &str) {
    let mut got = vec![0u8; want.len()];
    tokio::time::timeout(WAIT, client.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&got), want);
}

#[tokio::test]
async fn err_comes_at_once_and_ok_only_once_every_line_before_is_durable() {
    let (tx, mut rx) = mpsc::channel(16);
    let (mut client, server) = tokio::io::duplex(4096);
    let task = start(server, shared(tx, Duration::ZERO));
    // Two reads, so two journal messages (lines of one read go together).
    client.write_all(b"1,2\nbad\n\r\n").await.unwrap();
    let first = receipt(&mut rx).await;
    expect(&mut client, "err 2 csv_column_count\n").await;
    client.write_all(b"3,4\n").await.unwrap();
    let fourth = receipt(&mut rx).await;
    fourth.complete();
    // Line 1 is not durable yet: nothing may be acknowledged.
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(100), client.read(&mut byte)).await;
    assert!(early.is_err(), "answered before line 1 was durable");
    first.complete();
    expect(&mut client, "ok 4\n").await;
    client.shutdown().await.unwrap();
    assert_eq!(task.await.unwrap(), Closed::ByPeer);
}

#[tokio::test]
async fn a_client_that_never_reads_its_answers_holds_up_only_itself() {
    let (tx, mut rx) = mpsc::channel(64);
    // The stand-in pipeline: every line durable at once.
    tokio::spawn(async move {
        while let Some(i) = rx.recv().await {
            if let Ingress::Durable { receipt, .. } = i {
                receipt.complete();
            }
        }
    });
    let shared = shared(tx, Duration::ZERO);
    // A tiny pipe: its answers back up after a few bytes.
    let (mut deaf, server) = tokio::io::duplex(64);
    let _deaf_task = start(server, shared.clone());
    // Writes until the server stops reading from it (its answers back up
    // past the bound), and then waits there.
    let writer = tokio::spawn(async move { while deaf.write_all(b"1,2\n").await.is_ok() {} });
    let (mut other, server) = tokio::io::duplex(4096);
    let other_task = start(server, shared);
    for i in 1..=3 {
        other.write_all(b"5,6\n").await.unwrap();
        expect(&mut other, &format!("ok {i}\n")).await;
    }
    assert!(
        !writer.is_finished(),
        "the deaf client's connection is open"
    );
    other.shutdown().await.unwrap();
    assert_eq!(other_task.await.unwrap(), Closed::ByPeer);
    writer.abort();
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_is_closed_after_idle_timeout() {
    let (tx, _rx) = mpsc::channel(4);
    let (_client, server) = tokio::io::duplex(64);
    let task = start(server, shared(tx, Duration::from_secs(30)));
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(task.await.unwrap(), Closed::Idle);
}

#[tokio::test(start_paused = true)]
async fn a_half_line_cut_by_the_idle_timeout_is_counted() {
    let (tx, _rx) = mpsc::channel(4);
    let shared = shared(tx, Duration::from_secs(30));
    let (mut client, server) = tokio::io::duplex(64);
    let task = start(server, shared.clone());
    client.write_all(b"1,").await.unwrap();
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(task.await.unwrap(), Closed::Idle);
    let text = shared.ctx.telemetry.render_prometheus();
    assert!(
        text.contains(
            "edge_gateway_adapter_errors_total{adapter=\"lines\",error_type=\"incomplete_line\"} 1"
        ),
        "{text}"
    );
}

/// The readings of the next journal message and its receipt.
async fn durable(rx: &mut mpsc::Receiver<Ingress>) -> (Vec<f64>, Receipt) {
    match tokio::time::timeout(WAIT, rx.recv()).await.unwrap() {
        Some(Ingress::Durable { readings, receipt }) => {
            (readings.iter().map(|r| r.value()).collect(), receipt)
        }
        other => panic!("expected durable readings, got {other:?}"),
    }
}

#[tokio::test]
async fn a_last_line_without_newline_before_a_half_close_is_taken_and_acknowledged() {
    let (tx, mut rx) = mpsc::channel(16);
    let (mut client, server) = tokio::io::duplex(4096);
    let task = start(server, shared(tx, Duration::ZERO));
    // `printf '1,2\n3,4' | socat - TCP:…`: socat shuts down its sending
    // side at the end of its input and waits for the answers.
    client.write_all(b"1,2\n3,4").await.unwrap();
    client.shutdown().await.unwrap();
    let mut values = Vec::new();
    while values.len() < 4 {
        let (v, receipt) = durable(&mut rx).await;
        values.extend(v);
        receipt.complete();
    }
    assert_eq!(values, [1.0, 2.0, 3.0, 4.0]);
    expect(&mut client, "ok 2\n").await;
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"", "one answer, then the connection closes");
    assert_eq!(task.await.unwrap(), Closed::ByPeer);
}

#[tokio::test]
async fn a_partial_line_dropped_at_the_close_gets_its_err() {
    let (tx, mut rx) = mpsc::channel(16);
    let shared = shared(tx, Duration::ZERO);
    let (mut client, server) = tokio::io::duplex(4096);
    let task = start(server, shared.clone());
    // Over `max_line_bytes` (64), then not UTF-8: each is its own
    // connection's last line.
    client.write_all(&[b'9'; 100]).await.unwrap();
    client.shutdown().await.unwrap();
    expect(&mut client, "err 1 payload_too_large\nok 1\n").await;
    assert_eq!(task.await.unwrap(), Closed::ByPeer);
    let (mut client, server) = tokio::io::duplex(4096);
    let task = start(server, shared);
    client.write_all(b"1,\xff").await.unwrap();
    client.shutdown().await.unwrap();
    expect(&mut client, "err 1 not_utf8\nok 1\n").await;
    assert_eq!(task.await.unwrap(), Closed::ByPeer);
    assert!(rx.try_recv().is_err(), "nothing handed on");
}

/// Readings of the next message, with its receipt.
async fn message(rx: &mut mpsc::Receiver<Ingress>) -> (usize, Receipt) {
    match tokio::time::timeout(WAIT, rx.recv()).await.unwrap() {
        Some(Ingress::Durable { readings, receipt }) => (readings.len(), receipt),
        other => panic!("expected durable readings, got {other:?}"),
    }
}

/// A line held (not yet durable) that its node gave up on, closing after
/// waiting for its `ok`, comes again first on the node's next connection,
/// then a new equal reading: the resend is answered with the held line,
/// the new one goes on as a reading of its own.
#[tokio::test(start_paused = true)]
async fn a_held_line_the_node_gave_up_on_is_answered_with_its_resend() {
    let (tx, mut rx) = mpsc::channel(16);
    let shared = shared(tx, Duration::ZERO);
    let (mut node, server) = tokio::io::duplex(4096);
    let first_task = start(server, shared.clone());
    node.write_all(b"1,2\n").await.unwrap();
    let (count, held) = message(&mut rx).await;
    assert_eq!(count, 2);
    // The node's timeout passes without an `ok`: it closes.
    tokio::time::advance(Duration::from_secs(5)).await;
    drop(node);
    // The first connection stays while its line waits; the gauge says
    // when its line is remembered.
    while shared.ctx.telemetry.gauges("unanswered").first().map(|g| g.1) != Some(1.0) {
        tokio::task::yield_now().await;
    }
    let (mut node, server) = tokio::io::duplex(4096);
    let task = start(server, shared.clone());
    node.write_all(b"1,2\n1,2\n").await.unwrap();
    let (count, new) = message(&mut rx).await;
    assert_eq!(count, 2, "one line handed on: the new equal reading");
    assert_eq!(shared.ctx.telemetry.counter_value("duplicates", &[]), Some(1));
    new.complete();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(100), node.read(&mut byte)).await;
    assert!(early.is_err(), "answered before the held line was durable");
    held.complete();
    expect(&mut node, "ok 2\n").await;
    node.shutdown().await.unwrap();
    assert_eq!(task.await.unwrap(), Closed::ByPeer);
    assert_eq!(first_task.await.unwrap(), Closed::Broken);
}

/// A node that sends and closes at once never waited for its `ok` and
/// never resends: its next equal line is a new reading, held or not.
#[tokio::test(start_paused = true)]
async fn an_equal_line_after_one_not_waited_for_is_a_new_reading() {
    let (tx, mut rx) = mpsc::channel(16);
    let shared = shared(tx, Duration::ZERO);
    let (mut node, server) = tokio::io::duplex(4096);
    let first_task = start(server, shared.clone());
    node.write_all(b"1,2\n").await.unwrap();
    let (_, held) = message(&mut rx).await;
    // Closed at once: the clock does not move until the next line.
    drop(node);
    let (mut node, server) = tokio::io::duplex(4096);
    let _task = start(server, shared.clone());
    node.write_all(b"1,2\n").await.unwrap();
    let (count, new) = message(&mut rx).await;
    assert_eq!(count, 2, "a reading of its own");
    assert_eq!(shared.ctx.telemetry.counter_value("duplicates", &[]), Some(0));
    held.complete();
    new.complete();
    expect(&mut node, "ok 1\n").await;
    assert_eq!(first_task.await.unwrap(), Closed::Broken);
}
