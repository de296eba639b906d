//! The last wrong-clock case of issue 51 (`scripts/soak.sh`): a node
//! sends lines with their own time (`ts`, as a node with NTP does) to a
//! `tcp_line` input with `ack = true`, while the state directory is full
//! from the start, the gateway's clock steps back 10 minutes (and NTP
//! corrects it later) and the gateway is killed with `kill -9` three
//! times. The node behaves like the reference firmware: a line not
//! answered `ok` is kept and sent again, numbered afresh, on its next
//! connection. Every line answered `ok` must be upstream exactly once (by
//! distinct id, counts and sums); reported from outside: 3 000 `ok`, 0
//! upstream, in 3 runs of 3.
//!
//! The space comes back after the second kill: while the disk is full the
//! gateway cannot journal a line, so it answers none `ok` (the node keeps
//! them all), and a run with the disk full to its end would prove nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use crate::tmpfs::Tmpfs;

use std::collections::{BTreeSet, VecDeque};
use std::path::Path;
use std::time::Duration;

use common::{conflicting_ids, mark_in_log, now_ms, rel_close, totals, GatewayProcess, WAIT};
use test_support::{free_port, Mosquitto, Subscriber};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

const CLOCK_ENV: &str = "EDGE_GATEWAY_FAULT_CLOCK_STEP_FILE";
const DEVICE: &str = "own-time-full";
const SECONDS: u64 = 30;
const PER_TICK: u64 = 10;
const TICK: Duration = Duration::from_millis(100);
const TEN_MIN_MS: i64 = 600_000;

fn config(upstream: u16, port: u16, metrics: u16) -> String {
    format!(
        r#"
[gateway]
id = "gw-own-time-full-{port}"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{upstream}"
qos = 1
topic_prefix = "building/{{site}}"
max_backoff = "1s"

[aggregation]
window = "1s"
grace = "1s"
checkpoint_interval = "1s"

[metrics]
bind = "127.0.0.1:{metrics}"

[[adapter]]
type = "tcp_line"
name = "own-time-in"
bind = "127.0.0.1:{port}"
ack = true
format = "csv"
columns = ["ts", "t"]
peers = {{ "127.0.0.1" = "{DEVICE}" }}
"#
    )
}

/// One reading's value: distinct for every reading, so none is taken for
/// a resend of another.
fn value(k: u64) -> f64 {
    20.0 + k as f64 / 1000.0
}

/// What the node ends with.
#[derive(Debug, Default)]
struct Sent {
    acked: u64,
    acked_sum: f64,
    refused: Vec<String>,
    unanswered: usize,
}

/// The node: its unanswered lines (value, line) in order, and the
/// numbering of the current connection.
struct Node {
    port: u16,
    pending: VecDeque<(f64, String)>,
    /// Lines sent on this connection, and the highest `ok` it answered.
    sent: u64,
    answered: u64,
    refused_here: BTreeSet<u64>,
    out: Sent,
}

impl Node {
    async fn connect(&mut self) -> (BufReader<OwnedReadHalf>, OwnedWriteHalf) {
        let deadline = tokio::time::Instant::now() + WAIT;
        let stream = loop {
            match TcpStream::connect(("127.0.0.1", self.port)).await {
                Ok(s) => break s,
                Err(e) => {
                    assert!(tokio::time::Instant::now() < deadline, "no line port: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let (rd, mut wr) = stream.into_split();
        self.sent = 0;
        self.answered = 0;
        self.refused_here.clear();
        let wire: String = self.pending.iter().map(|(_, l)| l.as_str()).collect();
        self.sent = self.pending.len() as u64;
        // A write into a gateway killed a moment ago fails; the read side
        // then sees the end and the node connects again.
        let _ = wr.write_all(wire.as_bytes()).await;
        (BufReader::new(rd), wr)
    }

    fn answer(&mut self, line: &str) {
        let mut words = line.split_whitespace();
        match (
            words.next(),
            words.next().and_then(|n| n.parse::<u64>().ok()),
        ) {
            (Some("ok"), Some(n)) if n > self.answered => {
                for number in self.answered + 1..=n {
                    let Some((v, l)) = self.pending.pop_front() else {
                        break;
                    };
                    if self.refused_here.contains(&number) {
                        self.out.refused.push(l.trim().to_string());
                    } else {
                        self.out.acked += 1;
                        self.out.acked_sum += v;
                    }
                }
                self.answered = n;
            }
            (Some("err"), Some(n)) => {
                self.refused_here.insert(n);
            }
            _ => {}
        }
    }

    /// Sends `SECONDS` of readings, then waits (up to `WAIT` more) for the
    /// answers to every line.
    async fn run(mut self) -> Sent {
        let total = SECONDS * 1000 / TICK.as_millis() as u64 * PER_TICK;
        let mut next = 0u64;
        let mut tick = tokio::time::interval(TICK);
        let mut give_up = None;
        let (mut rd, mut wr) = self.connect().await;
        let mut line = String::new();
        loop {
            if next == total && self.pending.is_empty() {
                break;
            }
            let done_by = give_up.unwrap_or_else(|| tokio::time::Instant::now() + WAIT);
            tokio::select! {
                _ = tick.tick(), if next < total => {
                    let now = now_ms();
                    let mut wire = String::new();
                    for _ in 0..PER_TICK {
                        let v = value(next);
                        let l = format!("{now},{v}\n");
                        wire.push_str(&l);
                        self.pending.push_back((v, l));
                        next += 1;
                    }
                    self.sent += PER_TICK;
                    let _ = wr.write_all(wire.as_bytes()).await;
                    if next == total {
                        give_up = Some(tokio::time::Instant::now() + WAIT * 3);
                    }
                }
                read = rd.read_line(&mut line) => {
                    match read {
                        Ok(n) if n > 0 => {
                            let answer = std::mem::take(&mut line);
                            self.answer(&answer);
                        }
                        _ => {
                            line.clear();
                            (rd, wr) = self.connect().await;
                        }
                    }
                }
                () = tokio::time::sleep_until(done_by), if give_up.is_some() => break,
            }
        }
        self.out.unanswered = self.pending.len();
        self.out
    }
}

fn set_clock(file: &Path, step_ms: i64) {
    std::fs::write(file, step_ms.to_string()).unwrap();
}

/// What one run saw, or `None` when no tmpfs could be mounted.
async fn run() -> Option<(Sent, u64, f64, usize)> {
    let upstream = Mosquitto::start();
    let mut sub =
        Subscriber::start(upstream.port(), &format!("building/hq/{DEVICE}/aggregated")).await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&dir.path().join("state"), "4m") else {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs here (needs root); the full-disk case did not run"
        );
        return None;
    };
    disk.fill();
    let clock = dir.path().join("clock-step");
    set_clock(&clock, 0);
    let clock_path = clock.display().to_string();
    let env = [(CLOCK_ENV, clock_path.as_str())];
    let cfg = config(upstream.port(), port, free_port());
    let mut gw = GatewayProcess::start_in_with(dir, &cfg, &env);
    gw.wait_for_log("Listening for lines").await;
    let node = tokio::spawn(
        Node {
            port,
            pending: VecDeque::new(),
            sent: 0,
            answered: 0,
            refused_here: BTreeSet::new(),
            out: Sent::default(),
        }
        .run(),
    );
    // The fault schedule itself (seconds from the start), not a wait for
    // an event: clock back at 3 s, kills at 6, 12 and 18 s, space back at
    // 14 s, NTP corrects the clock at 24 s.
    let start = tokio::time::Instant::now();
    let at = |s: u64| start + Duration::from_secs(s);
    tokio::time::sleep_until(at(3)).await;
    set_clock(&clock, -TEN_MIN_MS);
    mark_in_log("clock back 10 min");
    for (i, s) in [6, 12, 18].into_iter().enumerate() {
        if s == 18 {
            tokio::time::sleep_until(at(14)).await;
            disk.free();
            mark_in_log("disk freed");
        }
        tokio::time::sleep_until(at(s)).await;
        mark_in_log(&format!("kill {i}"));
        gw.signal("KILL");
        gw.wait_exit().await;
        gw = GatewayProcess::start_in_with(gw.dir, &cfg, &env);
    }
    tokio::time::sleep_until(at(24)).await;
    set_clock(&clock, 0);
    mark_in_log("clock corrected");
    let sent = node.await.unwrap();
    let mut got = sub
        .collect_until(Duration::from_secs(90), |m| {
            totals(m).get(DEVICE).is_some_and(|t| t.0 >= sent.acked)
        })
        .await;
    // Whatever else is in flight: a copy must not add to the count.
    while let Some(m) = sub.next(Duration::from_millis(1500)).await {
        got.push(m);
    }
    gw.signal("TERM");
    gw.wait_exit().await;
    drop(gw);
    drop(disk);
    let (count, sum, _) = totals(&got).get(DEVICE).copied().unwrap_or_default();
    Some((sent, count, sum, conflicting_ids(&got).len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: run by scripts/soak.sh"]
async fn soak_own_time_lines_on_a_full_disk_with_the_clock_back_and_three_kills_all_arrive_once() {
    let rounds = std::env::var("EDGE_SOAK_RUNS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .map_or(1, |n| (n / 25).max(1));
    let mut failed = Vec::new();
    for round in 0..rounds {
        let Some((sent, upstream, sum, conflicts)) = run().await else {
            return;
        };
        let total = SECONDS * 1000 / TICK.as_millis() as u64 * PER_TICK;
        let exact = sent.acked == total
            && upstream == sent.acked
            && rel_close(sum, sent.acked_sum)
            && conflicts == 0
            && sent.refused.is_empty();
        println!(
            "soak own time, full disk, clock back, 3 kills: round {round}: acknowledged {} of {total}, upstream {upstream}, sums match {}, conflicting ids {conflicts}, refused {}, unanswered {}{}",
            sent.acked,
            rel_close(sum, sent.acked_sum),
            sent.refused.len(),
            sent.unanswered,
            if exact { "" } else { "  <-- NOT EXACT" }
        );
        if !exact {
            failed.push(format!("round {round}: {sent:?}, upstream {upstream}"));
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}
