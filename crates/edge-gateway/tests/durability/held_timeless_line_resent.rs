//! A `tcp_line` node whose lines carry no time of their own (a CSV row of
//! values, the gateway stamps the arrival), behaving as the reference
//! firmware does: it connects, sends every line it was not answered `ok`
//! for, then its new ones, waits a little for `ok`, and closes. While the
//! state directory is full the gateway holds its line unanswered, so the
//! node sends it again on its next connection. That resend is the same
//! reading and must reach upstream once; an equal line that is a new
//! reading (sent after the resend, or after an `ok`) must reach it too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use crate::tmpfs::Tmpfs;

use std::time::Duration;

use common::{conflicting_ids, http_get, http_until, rel_close, totals, GatewayProcess, WAIT};
use test_support::{free_port, Mosquitto, Subscriber};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

const DEVICE: &str = "held-timeless";
const HOLDING: &str = "edge_gateway_journal_holding_readings";
const DUPLICATES: &str = "edge_gateway_ingress_duplicates_total";
const UNANSWERED: &str = r#"edge_gateway_line_unanswered_lines{adapter="timeless-in"}"#;
/// How long the node waits for an `ok` before it gives up on a connection.
const NODE_TIMEOUT: Duration = Duration::from_millis(1500);

fn config(upstream: u16, port: u16, metrics: u16) -> String {
    format!(
        r#"
[gateway]
id = "gw-held-timeless-{port}"
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
name = "timeless-in"
bind = "127.0.0.1:{port}"
ack = true
format = "csv"
columns = ["t"]
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

/// Everything upstream said about the device until `want` readings, and
/// a moment more: a copy must not add to the count.
async fn upstream_totals(sub: &mut Subscriber, want: u64) -> (u64, f64, Vec<String>) {
    let mut got = sub
        .collect_until(Duration::from_secs(30), |m| {
            totals(m).get(DEVICE).is_some_and(|t| t.0 >= want)
        })
        .await;
    while let Some(m) = sub.next(Duration::from_millis(1500)).await {
        got.push(m);
    }
    let (count, sum, _) = totals(&got).get(DEVICE).copied().unwrap_or_default();
    (count, sum, conflicting_ids(&got))
}

#[tokio::test]
async fn a_timeless_line_resent_while_held_reaches_upstream_once_and_a_new_equal_one_too() {
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

    // First wake: one reading, held (nothing can be journaled), no `ok`.
    let (mut rd, mut wr) = connect(port).await;
    wr.write_all(b"21.5\n").await.unwrap();
    http_until(metrics, "/metrics", |_, b| metric(b, HOLDING) == 1.0).await;
    // The node waits for its `ok` as long as it does (the reference node 5 s),
    // gets none, and closes its socket (both directions).
    let mut answer = String::new();
    let waited = tokio::time::timeout(NODE_TIMEOUT, rd.read_line(&mut answer)).await;
    assert!(waited.is_err(), "answered while held: {answer:?}");
    drop((rd, wr));
    http_until(metrics, "/metrics", |_, b| metric(b, UNANSWERED) == 1.0).await;

    // Next wake: its queue, oldest first (the unanswered line), then the
    // new reading, which happens to be equal.
    let (mut again_rd, mut again_wr) = connect(port).await;
    again_wr.write_all(b"21.5\n21.5\n").await.unwrap();
    http_until(metrics, "/metrics", |_, b| {
        metric(b, DUPLICATES) + metric(b, HOLDING) >= 3.0
    })
    .await;
    let (_, body) = http_get(metrics, "/metrics").await;
    let while_held = (metric(&body, DUPLICATES), metric(&body, HOLDING));

    disk.free();
    until_ok(&mut again_rd, 2).await;
    let (count, sum, conflicts) = upstream_totals(&mut sub, 2).await;
    assert_eq!(count, 2, "the resent reading once, the new equal one too");
    assert!(rel_close(sum, 43.0), "sum {sum}");
    assert_eq!(conflicts, Vec::<String>::new());
    assert_eq!(
        while_held,
        (1.0, 2.0),
        "the resend recognised, the new equal reading held as its own"
    );
    gw.signal("TERM");
    gw.wait_exit().await;
    drop(gw);
    drop(disk);
}

/// The same value twice, a wake apart, each answered `ok` before the node
/// closes: two readings, whatever the earlier held lines were.
#[tokio::test]
async fn an_equal_timeless_line_sent_after_its_ok_is_a_new_reading() {
    let upstream = Mosquitto::start();
    let mut sub =
        Subscriber::start(upstream.port(), &format!("building/hq/{DEVICE}/aggregated")).await;
    let (port, metrics) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let mut gw = GatewayProcess::start_in(dir, &config(upstream.port(), port, metrics));
    gw.wait_for_log("Listening for lines").await;
    for _ in 0..2 {
        let (mut rd, mut wr) = connect(port).await;
        wr.write_all(b"21.5\n").await.unwrap();
        until_ok(&mut rd, 1).await;
        drop((rd, wr));
    }
    let (count, sum, conflicts) = upstream_totals(&mut sub, 2).await;
    assert_eq!(count, 2, "a repeat after its ok is a new reading");
    assert!(rel_close(sum, 43.0), "sum {sum}");
    assert_eq!(conflicts, Vec::<String>::new());
    let (_, body) = http_get(metrics, "/metrics").await;
    assert_eq!(metric(&body, DUPLICATES), 0.0);
    gw.signal("TERM");
    gw.wait_exit().await;
}
