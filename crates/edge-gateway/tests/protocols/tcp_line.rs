//! `type = "tcp_line"` against the real binary and a real Mosquitto: seed
//! 000's CSV lines over a plain socket, acknowledged once durable, and a
//! node that resends what was not acknowledged across `kill -9`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{conflicting_ids, http_get, http_until, rel_close, totals, GatewayProcess, WAIT};
use test_support::{free_port, Message, Mosquitto, Subscriber};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The gateway with one `tcp_line` adapter on `line_port`.
fn config(id: &str, upstream: u16, line_port: u16, metrics: u16, adapter: &str) -> String {
    format!(
        r#"
[gateway]
id = "{id}"
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

[metrics]
bind = "127.0.0.1:{metrics}"

[[adapter]]
type = "tcp_line"
name = "bme680-tcp"
bind = "127.0.0.1:{line_port}"
ack = true
{adapter}
"#
    )
}

/// An ESP32 + BME680 node's line: temperature, pressure, humidity, gas.
fn seed_line(i: usize) -> (String, [f64; 4]) {
    let x = i as f64;
    let v = [
        20.0 + (x * 0.37).sin() * 3.0,
        1000.0 + (x * 0.11).cos() * 12.0,
        40.0 + (x * 0.23).sin() * 9.0,
        (12_000 + i * 37) as f64,
    ];
    let line = format!("{:.2},{:.2},{:.2},{}", v[0], v[1], v[2], v[3]);
    let parsed = line
        .split(',')
        .map(|f| f.parse().unwrap())
        .collect::<Vec<_>>();
    (line, [parsed[0], parsed[1], parsed[2], parsed[3]])
}

/// The answers of one connection.
#[derive(Debug, Default)]
struct Answers {
    /// The highest `ok N`.
    ok: u64,
    /// `err N reason`, in order.
    errs: Vec<(u64, String)>,
}

/// Reads answers until `ok upto`, or until the connection ends (a killed
/// gateway); never longer than [`WAIT`].
async fn read_answers(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    upto: u64,
    got: &mut Answers,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut line = String::new();
    while got.ok < upto {
        line.clear();
        match tokio::time::timeout_at(deadline, reader.read_line(&mut line)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
            Err(_) => panic!("no ok {upto} in time: {got:?}"),
        }
        let mut words = line.split_whitespace();
        match (words.next(), words.next().and_then(|n| n.parse().ok())) {
            (Some("ok"), Some(n)) => {
                assert!(n > got.ok, "ok numbers only grow: {n} after {}", got.ok);
                got.ok = n;
            }
            (Some("err"), Some(n)) => got.errs.push((n, words.collect::<Vec<_>>().join(" "))),
            _ => panic!("unexpected answer {line:?}"),
        }
    }
}

async fn connect(port: u16) -> TcpStream {
    tokio::time::timeout(WAIT, TcpStream::connect(("127.0.0.1", port)))
        .await
        .expect("connect in time")
        .expect("the line port answers")
}

fn metric(body: &str, name_and_labels: &str) -> f64 {
    test_support::metrics::sample(body, name_and_labels).unwrap_or(0.0)
}

async fn aggregates(sub: &mut Subscriber, device: &str, readings: u64) -> Vec<Message> {
    let mut got = sub
        .collect_until(Duration::from_secs(60), |m| {
            totals(m).get(device).is_some_and(|t| t.0 >= readings)
        })
        .await;
    // Whatever else is in flight: a late duplicate must not exceed the count.
    while let Some(m) = sub.next(Duration::from_millis(1500)).await {
        got.push(m);
    }
    got
}

#[tokio::test]
async fn bme680_lines_with_bad_ones_get_every_ok_and_exact_aggregates_upstream() {
    let upstream = Mosquitto::start();
    let (line_port, metrics) = (free_port(), free_port());
    let device = "bme680-lab";
    let mut sub =
        Subscriber::start(upstream.port(), &format!("building/hq/{device}/aggregated")).await;
    let cfg = config(
        "gw-tcp-seed",
        upstream.port(),
        line_port,
        metrics,
        &format!(
            "format = \"csv\"\ncolumns = [\"temperature\", \"pressure\", \"humidity\", \"gas\"]\npeers = {{ \"127.0.0.1\" = \"{device}\" }}\nmax_line_bytes = 64"
        ),
    );
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Listening for lines.").await;

    // Good lines with bad ones among them, each with the number it gets.
    let mut wire = Vec::new();
    let mut expected_errs = Vec::new();
    let mut values = Vec::new();
    let mut n = 0u64;
    for i in 0..300 {
        let (line, v) = seed_line(i);
        n += 1;
        // CRLF and LF both end a line.
        let end = if i % 2 == 0 { "\r\n" } else { "\n" };
        wire.extend_from_slice(format!("{line}{end}").as_bytes());
        values.extend_from_slice(&v);
        let bad: Option<(&[u8], &str)> = match i % 50 {
            7 => Some((b"21.3,1013.2,45.1\n", "csv_column_count")),
            19 => Some((b"21.3,1013.2,\xff\xfe,12000\n", "not_utf8")),
            // Every channel failed alike (distinct words would be a
            // header, refused once as `csv_header`).
            23 => Some((b"err,err,err,err\n", "field_not_numeric")),
            31 => Some((b"\n", "")),
            41 => Some((&[b'9'; 100], "payload_too_large")),
            _ => None,
        };
        if let Some((bytes, kind)) = bad {
            n += 1;
            wire.extend_from_slice(bytes);
            if bytes.len() == 100 {
                wire.push(b'\n');
            }
            if !kind.is_empty() {
                expected_errs.push((n, kind.to_string()));
            }
        }
    }
    let (rd, mut wr) = connect(line_port).await.into_split();
    let mut reader = BufReader::new(rd);
    // Written in uneven pieces, so lines are split across reads.
    let writer = tokio::spawn(async move {
        for piece in wire.chunks(777) {
            wr.write_all(piece).await.unwrap();
        }
        wr
    });
    let mut got = Answers::default();
    read_answers(&mut reader, n, &mut got).await;
    let _wr = writer.await.unwrap();
    assert_eq!(got.ok, n, "every line acknowledged");
    assert_eq!(got.errs, expected_errs, "exactly the bad lines refused");

    let (_, body) = http_get(metrics, "/metrics").await;
    let errors = |kind: &str| {
        metric(
            &body,
            &format!(
                "edge_gateway_adapter_errors_total{{adapter=\"bme680-tcp\",error_type=\"{kind}\"}}"
            ),
        )
    };
    assert_eq!(errors("csv_column_count"), 6.0);
    assert_eq!(errors("not_utf8"), 6.0);
    assert_eq!(errors("field_not_numeric"), 24.0, "four fields a line");
    assert_eq!(errors("payload_too_large"), 6.0);
    assert_eq!(
        metric(
            &body,
            "edge_gateway_adapter_readings_total{adapter=\"bme680-tcp\"}"
        ),
        values.len() as f64
    );

    let got = aggregates(&mut sub, device, values.len() as u64).await;
    let (count, sum, squares) = totals(&got).get(device).copied().unwrap_or_default();
    assert_eq!(count, values.len() as u64);
    assert!(rel_close(sum, values.iter().sum()), "sum {sum}");
    assert!(rel_close(squares, values.iter().map(|v| v * v).sum()));
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// A node as the firmware is: lines stay queued until an `ok` covers
/// them, and go again, numbered afresh, on the next connection.
struct Node {
    port: u16,
    /// (line, temperature) not yet acknowledged, oldest first.
    queue: Vec<(String, f64)>,
}

impl Node {
    /// Sends the whole queue; after `kill` answers (if set), kills the
    /// gateway with SIGKILL. Drops from the queue what was acknowledged,
    /// unless `forget_acks` (the `ok`s lost with the connection: everything
    /// is resent, and what was journaled must be recognised). Returns
    /// whether every line was acknowledged.
    ///
    /// When a kill is due, the node keeps at most [`Node::IN_FLIGHT`] lines
    /// unanswered, as a firmware with a bounded send buffer does: the kill
    /// then always lands with lines still unsent, however fast the gateway
    /// answers the ones before it.
    async fn flush(&mut self, kill: Option<(u64, &mut GatewayProcess)>, forget_acks: bool) -> bool {
        let (rd, mut wr) = connect(self.port).await.into_split();
        let mut reader = BufReader::new(rd);
        let lines: Vec<String> = self.queue.iter().map(|(l, _)| format!("{l}\n")).collect();
        let n = self.queue.len() as u64;
        let window = if kill.is_some() {
            Self::IN_FLIGHT
        } else {
            u64::MAX
        };
        // The acknowledged count, as the reader sees it; dropped at the kill.
        let (acked_tx, mut acked_rx) = tokio::sync::watch::channel(0u64);
        let writer = tokio::spawn(async move {
            let mut sent = 0u64;
            for chunk in lines.chunks(50) {
                while sent.saturating_sub(*acked_rx.borrow_and_update()) >= window {
                    if acked_rx.changed().await.is_err() {
                        return wr;
                    }
                }
                // A killed gateway resets the connection mid-write.
                if wr.write_all(chunk.concat().as_bytes()).await.is_err() {
                    break;
                }
                sent += chunk.len() as u64;
            }
            wr
        });
        let mut got = Answers::default();
        match kill {
            Some((after, gw)) => {
                while got.ok < after {
                    let before = got.ok;
                    read_answers(&mut reader, got.ok + 1, &mut got).await;
                    assert!(got.ok > before, "the gateway closed before ok {after}");
                    let _ = acked_tx.send(got.ok);
                }
                drop(acked_tx);
                assert!(got.ok < n, "the kill must land while lines are in flight");
                gw.signal("KILL");
                gw.wait_exit().await;
                read_answers(&mut reader, n, &mut got).await;
            }
            None => read_answers(&mut reader, n, &mut got).await,
        }
        let _ = writer.await;
        assert!(got.errs.is_empty(), "{:?}", got.errs);
        if !forget_acks {
            self.queue.drain(..got.ok as usize);
        }
        got.ok == n
    }

    const IN_FLIGHT: u64 = 400;
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

#[tokio::test]
async fn a_node_resending_unacknowledged_lines_across_kill_9_loses_none_and_counts_none_twice() {
    let upstream = Mosquitto::start();
    let (line_port, metrics) = (free_port(), free_port());
    let device = "bme680-crash";
    let mut sub =
        Subscriber::start(upstream.port(), &format!("building/hq/{device}/aggregated")).await;
    // With `ts` first, as the firmware sends: a resent line keeps its time.
    let cfg = config(
        "gw-tcp-crash",
        upstream.port(),
        line_port,
        metrics,
        &format!("format = \"csv\"\ncolumns = [\"ts\", \"temperature\"]\ndevice = \"{device}\""),
    );
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Listening for lines.").await;
    let mut node = Node {
        port: line_port,
        queue: Vec::new(),
    };
    let mut sent = Vec::new();
    let t0 = now_ms();
    let mut next = 0usize;
    let mut more = |node: &mut Node, k: usize| {
        for _ in 0..k {
            let v = 20.0 + ((next as f64) * 0.731).sin() * 12.5;
            let v: f64 = format!("{v:.4}").parse().unwrap();
            // Distinct times: each line is one sample.
            node.queue
                .push((format!("{},{v:.4}", t0 + next as u128), v));
            sent.push(v);
            next += 1;
        }
    };
    // Round 1: the node keeps what it saw acknowledged. Round 2: its oks
    // are lost with the connection and it resends everything, so lines
    // journaled before the kill come again.
    for forget_acks in [false, true] {
        // Every copy must still be remembered when it comes again: fewer
        // lines in all than the 8192 deliveries the pipeline keeps.
        more(&mut node, 2000);
        let complete = node.flush(Some((200, &mut gw)), forget_acks).await;
        assert!(!complete);
        gw = GatewayProcess::start_in(gw.dir, &cfg);
        gw.wait_for_log("Listening for lines.").await;
    }
    more(&mut node, 500);
    assert!(node.flush(None, false).await, "the last flush is complete");
    assert!(node.queue.is_empty());

    let got = aggregates(&mut sub, device, sent.len() as u64).await;
    gw.take_log();
    let (count, sum, squares) = totals(&got).get(device).copied().unwrap_or_default();
    assert_eq!(
        count,
        sent.len() as u64,
        "readings counted; log:\n{}",
        gw.seen.join("\n")
    );
    assert!(rel_close(sum, sent.iter().sum()), "sum {sum}");
    assert!(rel_close(squares, sent.iter().map(|v| v * v).sum()));
    assert_eq!(conflicting_ids(&got), Vec::<String>::new());
    let (_, body) = http_get(metrics, "/metrics").await;
    assert!(
        metric(&body, "edge_gateway_ingress_duplicates_total") > 0.0,
        "the resent journaled lines were recognised"
    );
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// Every answer of a connection until the gateway closes it.
async fn answers_to_the_end(reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> String {
    let mut all = String::new();
    tokio::time::timeout(
        WAIT,
        tokio::io::AsyncReadExt::read_to_string(reader, &mut all),
    )
    .await
    .expect("the gateway closes the connection once it has answered")
    .expect("answers readable");
    all
}

/// The highest `ok N` in `answers`, and their `err` lines.
fn last_ok_and_errs(answers: &str) -> (u64, Vec<&str>) {
    let ok = answers
        .lines()
        .filter_map(|l| l.strip_prefix("ok ")?.parse().ok())
        .max()
        .unwrap_or(0);
    (
        ok,
        answers.lines().filter(|l| l.starts_with("err")).collect(),
    )
}

#[tokio::test]
async fn a_last_line_without_newline_at_the_close_is_taken_once_and_acknowledged() {
    let upstream = Mosquitto::start();
    let (acked_port, plain_port, metrics) = (free_port(), free_port(), free_port());
    let mut sub = Subscriber::start(upstream.port(), "building/hq/+/aggregated").await;
    let cfg = config(
        "gw-tcp-close",
        upstream.port(),
        acked_port,
        metrics,
        &format!(
            r#"format = "csv"
columns = ["temperature", "pressure", "humidity", "gas"]
peers = {{ "127.0.0.1" = "esp32-acked" }}
max_line_bytes = 64

[[adapter]]
type = "tcp_line"
name = "bme680-plain"
bind = "127.0.0.1:{plain_port}"
format = "csv"
columns = ["temperature", "pressure", "humidity", "gas"]
peers = {{ "127.0.0.1" = "esp32-plain" }}
"#
        ),
    );
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log_count("Listening for lines.", 2).await;
    gw.wait_for_log("Metrics endpoint listening").await;
    let mut next = 0usize;
    let mut take = |k: usize, values: &mut Vec<f64>| -> Vec<String> {
        (0..k)
            .map(|_| {
                let (line, v) = seed_line(next);
                next += 1;
                values.extend_from_slice(&v);
                line
            })
            .collect()
    };

    let (mut acked, mut plain) = (Vec::new(), Vec::new());
    for (port, values) in [(acked_port, &mut acked), (plain_port, &mut plain)] {
        // MicroPython's `s.send(line); s.close()`, ten times, never reading.
        for line in take(10, values) {
            let mut s = connect(port).await;
            s.write_all(line.as_bytes()).await.unwrap();
            drop(s);
        }
        // Several lines on one connection, the last without its newline.
        let mut s = connect(port).await;
        s.write_all(take(5, values).join("\n").as_bytes())
            .await
            .unwrap();
        drop(s);
    }

    // A node that half-closes and waits for its answers.
    let (rd, mut wr) = connect(acked_port).await.into_split();
    let mut reader = BufReader::new(rd);
    wr.write_all(take(3, &mut acked).join("\r\n").as_bytes())
        .await
        .unwrap();
    wr.shutdown().await.unwrap();
    let answers = answers_to_the_end(&mut reader).await;
    assert_eq!(last_ok_and_errs(&answers), (3, vec![]), "{answers:?}");

    // `printf '21.4,1013,45,12000' | socat - TCP:…` (with a longer wait for
    // the answer than socat's default half second, for a loaded machine).
    let mut socat = tokio::process::Command::new("socat")
        .args(["-t", "10", "-", &format!("TCP:127.0.0.1:{acked_port}")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("socat is installed");
    let line = take(1, &mut acked).remove(0);
    let mut stdin = socat.stdin.take().unwrap();
    stdin.write_all(line.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(WAIT, socat.wait_with_output())
        .await
        .expect("socat ends once answered")
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok 1\n");

    // Last lines dropped for a reason are answered and counted.
    for (bytes, reason) in [
        (&[b'9'; 100][..], "payload_too_large"),
        (&b"21.3,1013.2,\xff\xfe,12000"[..], "not_utf8"),
    ] {
        let (rd, mut wr) = connect(acked_port).await.into_split();
        let mut reader = BufReader::new(rd);
        wr.write_all(bytes).await.unwrap();
        wr.shutdown().await.unwrap();
        let answers = answers_to_the_end(&mut reader).await;
        assert_eq!(answers, format!("err 1 {reason}\nok 1\n"));
    }

    let readings =
        |adapter: &str| format!("edge_gateway_adapter_readings_total{{adapter=\"{adapter}\"}}");
    let (want_acked, want_plain) = (acked.len() as f64, plain.len() as f64);
    http_until(metrics, "/metrics", |_, b| {
        metric(b, &readings("bme680-tcp")) >= want_acked
            && metric(b, &readings("bme680-plain")) >= want_plain
    })
    .await;
    let mut got = sub
        .collect_until(Duration::from_secs(60), |m| {
            let t = totals(m);
            t.get("esp32-acked")
                .is_some_and(|t| t.0 >= acked.len() as u64)
                && t.get("esp32-plain")
                    .is_some_and(|t| t.0 >= plain.len() as u64)
        })
        .await;
    while let Some(m) = sub.next(Duration::from_millis(1500)).await {
        got.push(m);
    }
    for (device, values) in [("esp32-acked", &acked), ("esp32-plain", &plain)] {
        let (count, sum, _) = totals(&got).get(device).copied().unwrap_or_default();
        assert_eq!(count, values.len() as u64, "{device}: every reading once");
        assert!(rel_close(sum, values.iter().sum()), "{device}: sum {sum}");
    }
    let (_, body) = http_get(metrics, "/metrics").await;
    assert_eq!(metric(&body, &readings("bme680-tcp")), want_acked);
    assert_eq!(metric(&body, &readings("bme680-plain")), want_plain);
    for reason in ["payload_too_large", "not_utf8"] {
        assert_eq!(
            metric(
                &body,
                &format!(
                    "edge_gateway_adapter_errors_total{{adapter=\"bme680-tcp\",error_type=\"{reason}\"}}"
                )
            ),
            1.0,
            "{reason}"
        );
    }
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// An orchestrator that sends as soon as `/health` says ok is never refused:
/// the adapter's task starts before its port is bound, and `/health` calls
/// it "starting" until then. On one thread nothing has run between
/// `Gateway::start` and the first check, so the window is always seen.
#[tokio::test(flavor = "current_thread")]
async fn health_is_ok_only_once_a_line_port_is_bound() {
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = gateway_settings::parse(&format!(
        r#"
[gateway]
id = "gw-ready"
state_dir = "{}"

[[adapter]]
type = "tcp_line"
name = "lines"
bind = "127.0.0.1:{port}"
format = "csv"
columns = ["device", "temperature"]
"#,
        state.path().display()
    ))
    .unwrap();
    let gw =
        edge_gateway::runtime::Gateway::start(&cfg, std::sync::Arc::new(gateway_core::SystemClock))
            .unwrap();
    let first = edge_gateway::health::check(&gw.telemetry);
    assert!(!first.healthy, "{}", first.body);
    assert_eq!(
        first.body["adapters"]["lines"], "starting",
        "{}",
        first.body
    );
    assert!(
        first.body["reasons"]
            .to_string()
            .contains("has not opened its port yet"),
        "{}",
        first.body
    );
    tokio::time::timeout(WAIT, async {
        while !edge_gateway::health::check(&gw.telemetry).healthy {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the line port is bound and /health says ok");
    // At once, as an orchestrator would: the port takes the line.
    let mut node = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("a healthy gateway does not refuse its line port");
    node.write_all(b"esp32-1,21.5\n").await.unwrap();
    drop(node);
    let readings = "edge_gateway_adapter_readings_total";
    tokio::time::timeout(WAIT, async {
        while gw
            .telemetry
            .counter(readings, &[("adapter", "lines")])
            .get()
            < 1
        {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the line was read");
    gw.stop().await.unwrap();
}

/// InfluxDB line protocol with `ack`: a field named twice is one reading,
/// its last value, as InfluxDB keeps it (it was two readings of one
/// metric at one time), and a timestamp that is no number is `err`,
/// counted, as InfluxDB refuses the line (it was `ok`, taken at arrival).
#[tokio::test]
async fn influx_lines_keep_the_last_of_a_field_named_twice_and_refuse_a_bad_timestamp() {
    let upstream = Mosquitto::start();
    let (line_port, metrics) = (free_port(), free_port());
    let mut sub = Subscriber::start(upstream.port(), "building/hq/node-a/aggregated").await;
    let cfg = config(
        "gw-tcp-influx",
        upstream.port(),
        line_port,
        metrics,
        "format = \"influx\"",
    );
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Listening for lines.").await;

    let (rd, mut wr) = connect(line_port).await.into_split();
    let mut reader = BufReader::new(rd);
    wr.write_all(b"m,device=node-a t=1,t=2\nm,device=node-a t=7 notanumber\nm,device=node-a u=3\n")
        .await
        .unwrap();
    wr.shutdown().await.unwrap();
    let answers = answers_to_the_end(&mut reader).await;
    assert_eq!(
        last_ok_and_errs(&answers),
        (3, vec!["err 2 invalid_line_protocol"]),
        "{answers:?}"
    );
    gw.wait_for_log("Dropping a bad line.").await;

    let (_, body) = http_until(metrics, "/metrics", |_, b| {
        metric(
            b,
            "edge_gateway_adapter_errors_total{adapter=\"bme680-tcp\",error_type=\"invalid_line_protocol\"}",
        ) == 1.0
    })
    .await;
    let series = |name: &str| format!("{name}{{adapter=\"bme680-tcp\"}}");
    assert_eq!(
        metric(&body, &series("edge_gateway_adapter_readings_total")),
        2.0,
        "t once and u: {body}"
    );
    assert_eq!(
        metric(
            &body,
            "edge_gateway_adapter_errors_total{adapter=\"bme680-tcp\",error_type=\"field_duplicate\"}"
        ),
        1.0,
        "{body}"
    );
    // Upstream: t once, its last value; the refused line's 7 nowhere.
    let got = sub
        .collect_until(WAIT, |m| totals(m).get("node-a").is_some_and(|t| t.0 >= 2))
        .await;
    // By window id: a window sent again (amended) counts once.
    let t: std::collections::BTreeMap<String, (u64, f64)> = got
        .iter()
        .filter_map(|m| {
            let j = m.json();
            let s = j["metrics"].get("t")?;
            Some((
                j["id"].to_string(),
                (s["count"].as_u64()?, s["max"].as_f64()?),
            ))
        })
        .collect();
    assert_eq!(
        t.into_values().collect::<Vec<_>>(),
        vec![(1, 2.0)],
        "{got:?}"
    );
}

/// Every slot held by connections that send nothing (sockets a node
/// leaked after Wi-Fi drops, or anyone on the network): a node that comes
/// with a line gets the slot of the one silent longest, and its line is
/// taken, instead of being refused for up to `idle_timeout`.
#[tokio::test]
async fn silent_connections_holding_every_slot_give_one_up_to_a_sending_node() {
    let upstream = Mosquitto::start();
    let (line_port, metrics) = (free_port(), free_port());
    let cfg = config(
        "gw-tcp-seats",
        upstream.port(),
        line_port,
        metrics,
        "format = \"csv\"\ncolumns = [\"temperature\", \"pressure\", \"humidity\", \"gas\"]\ndevice = \"bme680-lab\"\nmax_connections = 4",
    );
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Listening for lines.").await;
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(connect(line_port).await);
    }
    // Retried until the gateway takes it: a slot is given up once a
    // silent connection has been silent for two seconds.
    let deadline = tokio::time::Instant::now() + WAIT;
    let answer = loop {
        let (rd, mut wr) = connect(line_port).await.into_split();
        let mut reader = BufReader::new(rd);
        let _ = wr.write_all(b"21.5,1013.2,45.1,12048\n").await;
        let _ = wr.shutdown().await;
        // A refused connection is closed under the line (a reset).
        let mut answers = String::new();
        let _ = tokio::time::timeout(WAIT, reader.read_to_string(&mut answers)).await;
        if answers.contains("ok 1") {
            break answers;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never taken: {answers:?}"
        );
        // Paced, not synchronised: each try is a connection refused.
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(answer.starts_with("ok 1"), "{answer:?}");
    let (_, body) = http_until(metrics, "/metrics", |_, b| {
        metric(
            b,
            "edge_gateway_line_connections_evicted_total{adapter=\"bme680-tcp\"}",
        ) >= 1.0
    })
    .await;
    assert_eq!(
        metric(
            &body,
            "edge_gateway_adapter_readings_total{adapter=\"bme680-tcp\"}"
        ),
        4.0,
        "{body}"
    );
    // One silent connection was closed for it.
    let mut closed = 0;
    for s in &mut silent {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(200), s.read(&mut byte)).await
        {
            closed += 1;
        }
    }
    assert!(closed >= 1, "no silent connection was closed");
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}
