//! A `tcp_line` node resending a line the gateway holds: received, not yet
//! journaled, so not yet answered `ok` (the state directory is full, as an
//! SD card gets). The node gives up waiting, as the reference firmware
//! does: it drops the connection and sends the line again on a new one, or
//! sends it again on a second connection while the first is still open.
//! A line with the sensor's own time is the same reading each time, and
//! must reach upstream once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use crate::tmpfs::Tmpfs;

use std::time::Duration;

use common::{
    conflicting_ids, http_get, http_until, now_ms, rel_close, totals, GatewayProcess, WAIT,
};
use test_support::{free_port, Mosquitto, Subscriber};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

const DEVICE: &str = "held-resent";
const HOLDING: &str = "edge_gateway_journal_holding_readings";
const DUPLICATES: &str = "edge_gateway_ingress_duplicates_total";

fn config(upstream: u16, port: u16, metrics: u16) -> String {
    format!(
        r#"
[gateway]
id = "gw-held-resent-{port}"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{upstream}"
qos = 1
topic_prefix = "building/{{site}}"
max_backoff = "1s"

[aggregation]
window = "1s"
grace = "5s"
checkpoint_interval = "1s"

[metrics]
bind = "127.0.0.1:{metrics}"

[[adapter]]
type = "tcp_line"
name = "held-in"
bind = "127.0.0.1:{port}"
ack = true
format = "csv"
columns = ["ts", "t"]
device = "{DEVICE}"
"#
    )
}

async fn connect(port: u16) -> (BufReader<OwnedReadHalf>, OwnedWriteHalf) {
    let stream = tokio::time::timeout(WAIT, TcpStream::connect(("127.0.0.1", port)))
        .await
        .expect("connect in time")
        .expect("the line port answers");
    let (rd, wr) = stream.into_split();
    (BufReader::new(rd), wr)
}

/// Reads a connection's answers until `ok {n}`; no `err` may come.
async fn until_ok(rd: &mut BufReader<OwnedReadHalf>, n: u64) {
    let want = format!("ok {n}");
    let mut line = String::new();
    while line.trim_end() != want {
        line.clear();
        let read = tokio::time::timeout(WAIT, rd.read_line(&mut line))
            .await
            .unwrap_or_else(|_| panic!("no {want} in time"))
            .expect("answers readable");
        assert!(read > 0, "closed before {want}");
        assert!(line.starts_with("ok "), "unexpected answer {line:?}");
    }
}

fn metric(body: &str, name: &str) -> f64 {
    test_support::metrics::sample(body, name).unwrap_or(0.0)
}

#[tokio::test]
async fn a_held_line_resent_on_a_new_connection_or_a_second_one_reaches_upstream_once() {
    let upstream = Mosquitto::start();
    let mut sub =
        Subscriber::start(upstream.port(), &format!("building/hq/{DEVICE}/aggregated")).await;
    let (port, metrics) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&dir.path().join("state"), "4m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root); the held line was not resent");
        return;
    };
    disk.fill();
    let mut gw = GatewayProcess::start_in(dir, &config(upstream.port(), port, metrics));
    gw.wait_for_log("Listening for lines").await;

    let t0 = now_ms();
    let (first, second) = (format!("{t0},21.5\n"), format!("{},22.5\n", t0 + 1));
    // Two connections, a line each, both held: nothing can be journaled.
    let (_, mut dropped) = connect(port).await;
    dropped.write_all(first.as_bytes()).await.unwrap();
    http_until(metrics, "/metrics", |_, b| metric(b, HOLDING) == 1.0).await;
    let (mut open_rd, mut open_wr) = connect(port).await;
    open_wr.write_all(second.as_bytes()).await.unwrap();
    http_until(metrics, "/metrics", |_, b| metric(b, HOLDING) == 2.0).await;

    // No `ok` came: the node closes the first connection and sends its
    // line again on a new one, and the second line too while the
    // connection that carries it is still open.
    drop(dropped);
    let (mut again_rd, mut again_wr) = connect(port).await;
    again_wr
        .write_all(format!("{first}{second}").as_bytes())
        .await
        .unwrap();
    // Each resend is either recognised (a duplicate) or held as a reading
    // of its own: wait until both are one or the other.
    http_until(metrics, "/metrics", |_, b| {
        metric(b, DUPLICATES) + metric(b, HOLDING) >= 4.0
    })
    .await;
    let (_, body) = http_get(metrics, "/metrics").await;
    assert_eq!(
        (metric(&body, DUPLICATES), metric(&body, HOLDING)),
        (2.0, 2.0),
        "both resends recognised while their lines are held"
    );

    // Space again: every line is journaled, and each connection that
    // carries one is answered.
    disk.free();
    until_ok(&mut again_rd, 2).await;
    until_ok(&mut open_rd, 1).await;

    let mut got = sub
        .collect_until(Duration::from_secs(30), |m| {
            totals(m).get(DEVICE).is_some_and(|t| t.0 >= 2)
        })
        .await;
    // Whatever else is in flight: a copy must not add to the count.
    while let Some(m) = sub.next(Duration::from_millis(1500)).await {
        got.push(m);
    }
    let (count, sum, _) = totals(&got).get(DEVICE).copied().unwrap_or_default();
    assert_eq!(count, 2, "each reading once: {got:?}");
    assert!(rel_close(sum, 21.5 + 22.5), "sum {sum}");
    assert_eq!(conflicting_ids(&got), Vec::<String>::new());
    gw.signal("TERM");
    gw.wait_exit().await;
    drop(gw);
    drop(disk);
}

/// Held behind more keyed lines than the pipeline remembers (8192, shared
/// by every keyed input): nodes that keep sending while the disk is full,
/// as the outside check's 12 800 held lines were. The first node's line,
/// never answered, is sent again: it must still be taken for a copy.
#[tokio::test]
async fn a_held_line_resent_behind_more_lines_than_are_remembered_is_counted_once() {
    const NODES: usize = 5;
    const PER_NODE: usize = 1700;
    let upstream = Mosquitto::start();
    let (port, metrics) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&dir.path().join("state"), "4m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root); the held line was not resent");
        return;
    };
    disk.fill();
    let mut gw = GatewayProcess::start_in(dir, &config(upstream.port(), port, metrics));
    gw.wait_for_log("Listening for lines").await;

    let t0 = now_ms();
    let first = format!("{t0},-1\n");
    let (mut first_rd, mut first_wr) = connect(port).await;
    first_wr.write_all(first.as_bytes()).await.unwrap();
    http_until(metrics, "/metrics", |_, b| metric(b, HOLDING) == 1.0).await;
    // Every line distinct: the same time, another value.
    let mut nodes = Vec::new();
    for n in 0..NODES {
        let (rd, mut wr) = connect(port).await;
        let wire: String = (0..PER_NODE)
            .map(|i| format!("{t0},{}\n", (n * PER_NODE + i) as f64 / 1000.0))
            .collect();
        wr.write_all(wire.as_bytes()).await.unwrap();
        nodes.push((rd, wr));
    }
    let held = (1 + NODES * PER_NODE) as f64;
    http_until(metrics, "/metrics", |_, b| metric(b, HOLDING) == held).await;

    // The first node gives up waiting and sends its line again.
    let (mut again_rd, mut again_wr) = connect(port).await;
    again_wr.write_all(first.as_bytes()).await.unwrap();
    http_until(metrics, "/metrics", |_, b| {
        metric(b, DUPLICATES) + metric(b, HOLDING) > held
    })
    .await;
    let (_, body) = http_get(metrics, "/metrics").await;
    assert_eq!(
        (metric(&body, DUPLICATES), metric(&body, HOLDING)),
        (1.0, held),
        "the resend recognised, not held as a line of its own"
    );

    disk.free();
    until_ok(&mut again_rd, 1).await;
    until_ok(&mut first_rd, 1).await;
    for (rd, _) in &mut nodes {
        until_ok(rd, PER_NODE as u64).await;
    }
    // Counted as the `ok`s went out: in its window, or by its own time
    // in a late amendment (counted in both).
    let taken = |b: &str| metric(b, "edge_gateway_aggregator_readings_total");
    http_until(metrics, "/metrics", |_, b| taken(b) >= held).await;
    let (_, body) = http_get(metrics, "/metrics").await;
    assert_eq!(taken(&body), held, "every line once, the resent one too");
    gw.signal("TERM");
    gw.wait_exit().await;
    drop(gw);
    drop(disk);
}
