//! The soak cases of issue 51 (`scripts/soak.sh`): readings that carry
//! their own time, 30 a second for 40 s, over a `tcp_line` input with
//! `ack = true` and over MQTT QoS 1, while the gateway's wall clock is
//! wrong (the fault-hook clock, `EDGE_GATEWAY_FAULT_CLOCK_STEP_FILE`):
//! a day ahead for 20 s, stepped back 10 minutes for 20 s, stepped back
//! 10 minutes for good (the readings' windows must close on their own
//! time, not 10 minutes later), 10 minutes
//! ahead from the start until NTP corrects it, and unset (2001) at the
//! start until NTP sets it. Every acknowledged reading must be upstream
//! exactly once, in windows, reruns or late amendments (counted by
//! distinct id). The restart with the clock 40 days ahead is
//! `clock_ahead_restart.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::{conflicting_ids, now_ms, totals, GatewayProcess, WAIT};
use test_support::{free_port, publish_lines, Mosquitto, Subscriber};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const CLOCK_ENV: &str = "EDGE_GATEWAY_FAULT_CLOCK_STEP_FILE";
const DEVICE: &str = "own-time";
const SECONDS: u64 = 40;
const PER_SECOND: u64 = 30;
const DAY_MS: i64 = 86_400_000;
const TEN_MIN_MS: i64 = 600_000;

#[derive(Debug, Clone, Copy)]
enum Fault {
    ADayAheadFor20s,
    BackTenMinutesFor20s,
    BackTenMinutesForGood,
    AheadUntilNtpCorrectsIt,
    UnsetUntilNtpSetsIt,
}

impl Fault {
    const ALL: [Fault; 5] = [
        Fault::ADayAheadFor20s,
        Fault::BackTenMinutesFor20s,
        Fault::BackTenMinutesForGood,
        Fault::AheadUntilNtpCorrectsIt,
        Fault::UnsetUntilNtpSetsIt,
    ];

    /// What the gateway's clock is off by from the start (ms).
    fn at_start(self) -> i64 {
        match self {
            Fault::ADayAheadFor20s | Fault::BackTenMinutesFor20s | Fault::BackTenMinutesForGood => {
                0
            }
            Fault::AheadUntilNtpCorrectsIt => TEN_MIN_MS,
            // 2001-09-09: before this release, as a Pi without NTP boots.
            Fault::UnsetUntilNtpSetsIt => 1_000_000_000_000 - now_ms(),
        }
    }

    /// What it is off by once the readings are sent, while the test
    /// waits for them upstream: corrected, or still wrong for good.
    fn after_sending(self) -> i64 {
        match self {
            Fault::BackTenMinutesForGood => -TEN_MIN_MS,
            _ => 0,
        }
    }

    /// What it is off by from `second` on, when that changes then.
    fn at(self, second: u64) -> Option<i64> {
        match (self, second) {
            (Fault::ADayAheadFor20s, 10) => Some(DAY_MS),
            (Fault::BackTenMinutesFor20s | Fault::BackTenMinutesForGood, 10) => Some(-TEN_MIN_MS),
            (Fault::BackTenMinutesForGood, _) => None,
            (Fault::UnsetUntilNtpSetsIt, 10) => Some(0),
            (_, 30) => Some(0),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Input {
    TcpLineAck,
    Mqtt,
}

fn set_clock(file: &Path, step_ms: i64) {
    std::fs::write(file, step_ms.to_string()).unwrap();
}

fn config(upstream: u16, metrics: u16, input: Input, port: u16) -> String {
    let adapter = match input {
        Input::TcpLineAck => format!(
            r#"type = "tcp_line"
name = "own-time-in"
bind = "127.0.0.1:{port}"
ack = true
format = "csv"
columns = ["ts", "t"]
peers = {{ "127.0.0.1" = "{DEVICE}" }}"#
        ),
        Input::Mqtt => format!(
            r#"type = "mqtt"
name = "own-time-in"
url = "mqtt://127.0.0.1:{port}"
topics = ["sensors/{{device}}"]
max_backoff = "1s""#
        ),
    };
    format!(
        r#"
[gateway]
id = "gw-own-time-{port}"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{upstream}"
qos = 1
topic_prefix = "building/{{site}}"
max_backoff = "1s"

[aggregation]
window = "5s"
grace = "1s"

[metrics]
bind = "127.0.0.1:{metrics}"

[[adapter]]
{adapter}
"#
    )
}

/// One reading's value: distinct for every reading, so none is taken for
/// a resend of another.
fn value(k: u64) -> f64 {
    20.0 + k as f64 / 1000.0
}

/// Sends the readings over one connection and reads the answers; returns
/// the highest `ok` and the `err` lines.
async fn over_tcp(port: u16, clock: &Path, fault: Fault) -> (u64, Vec<String>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let stream = loop {
        match TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => break s,
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "no line port: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let (rd, mut wr) = stream.into_split();
    let total = SECONDS * PER_SECOND;
    let answers = tokio::spawn(async move {
        let mut reader = BufReader::new(rd);
        let (mut ok, mut errs) = (0u64, Vec::new());
        let mut line = String::new();
        // The clock may be unset for a while: acknowledgements wait for it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(SECONDS) + WAIT;
        while ok < total {
            line.clear();
            match tokio::time::timeout_at(deadline, reader.read_line(&mut line)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => break,
            }
            let mut words = line.split_whitespace();
            match (words.next(), words.next().and_then(|n| n.parse().ok())) {
                (Some("ok"), Some(n)) => ok = n,
                _ => errs.push(line.trim().to_string()),
            }
        }
        (ok, errs)
    });
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    for second in 0..SECONDS {
        tick.tick().await;
        if let Some(step) = fault.at(second) {
            set_clock(clock, step);
        }
        let now = now_ms();
        let mut wire = String::new();
        for i in 0..PER_SECOND {
            let k = second * PER_SECOND + i;
            wire.push_str(&format!("{now},{}\n", value(k)));
        }
        wr.write_all(wire.as_bytes()).await.unwrap();
    }
    set_clock(clock, fault.after_sending());
    let got = answers.await.unwrap();
    drop(wr);
    got
}

/// Publishes the readings at QoS 1 to the local broker; all are taken.
async fn over_mqtt(port: u16, clock: &Path, fault: Fault) -> (u64, Vec<String>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    for second in 0..SECONDS {
        tick.tick().await;
        if let Some(step) = fault.at(second) {
            set_clock(clock, step);
        }
        let now = now_ms();
        let lines: Vec<String> = (0..PER_SECOND)
            .map(|i| {
                let k = second * PER_SECOND + i;
                format!(r#"{{"t":{},"ts":{now}}}"#, value(k))
            })
            .collect();
        publish_lines(port, &format!("sensors/{DEVICE}"), &lines, 1).await;
    }
    set_clock(clock, fault.after_sending());
    (SECONDS * PER_SECOND, Vec::new())
}

/// What one run saw: readings acknowledged, readings upstream (by
/// distinct id), and what went wrong.
#[derive(Debug)]
struct Run {
    acked: u64,
    upstream: u64,
    problems: Vec<String>,
}

async fn run(fault: Fault, input: Input) -> Run {
    let upstream = Mosquitto::start();
    let local = matches!(input, Input::Mqtt).then(Mosquitto::start);
    let mut sub =
        Subscriber::start(upstream.port(), &format!("building/hq/{DEVICE}/aggregated")).await;
    let metrics = free_port();
    let port = local.as_ref().map_or_else(free_port, Mosquitto::port);
    let dir = tempfile::tempdir().unwrap();
    let clock = dir.path().join("clock-step");
    set_clock(&clock, fault.at_start());
    let clock_env = clock.display().to_string();
    let mut gw = GatewayProcess::start_in_with(
        dir,
        &config(upstream.port(), metrics, input, port),
        &[(CLOCK_ENV, clock_env.as_str())],
    );
    match input {
        Input::Mqtt => gw.wait_for_log("Subscribed").await,
        Input::TcpLineAck => gw.wait_for_log("Metrics endpoint listening").await,
    }
    let (acked, errs) = match input {
        Input::TcpLineAck => over_tcp(port, &clock, fault).await,
        Input::Mqtt => over_mqtt(port, &clock, fault).await,
    };
    let mut got = sub
        .collect_until(Duration::from_secs(90), |m| {
            totals(m).get(DEVICE).is_some_and(|t| t.0 >= acked)
        })
        .await;
    // Whatever else is in flight: a duplicate must not exceed the count.
    while let Some(m) = sub.next(Duration::from_millis(1500)).await {
        got.push(m);
    }
    gw.signal("TERM");
    gw.wait_exit().await;
    let mut problems = errs;
    if acked < SECONDS * PER_SECOND {
        problems.push(format!("only {acked} acknowledged"));
    }
    problems.extend(
        conflicting_ids(&got)
            .into_iter()
            .map(|id| format!("id {id} sent with different contents")),
    );
    Run {
        acked,
        upstream: totals(&got).get(DEVICE).map_or(0, |t| t.0),
        problems,
    }
}

/// Every case, over both inputs, `EDGE_SOAK_RUNS / 25` rounds (at least
/// one; each round is ten runs of about a minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: run by scripts/soak.sh"]
async fn soak_own_time_readings_under_a_wrong_clock_all_arrive_once() {
    let rounds = std::env::var("EDGE_SOAK_RUNS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .map_or(1, |n| (n / 25).max(1));
    let mut failed = Vec::new();
    for round in 0..rounds {
        for fault in Fault::ALL {
            for input in [Input::TcpLineAck, Input::Mqtt] {
                let r = run(fault, input).await;
                let exact = r.upstream == r.acked && r.problems.is_empty();
                println!(
                    "soak own time: round {round} {fault:?} over {input:?}: acknowledged {}, upstream {}{}",
                    r.acked,
                    r.upstream,
                    if exact { "" } else { "  <-- NOT EXACT" }
                );
                if !exact {
                    failed.push(format!("{fault:?} over {input:?}: {r:?}"));
                }
            }
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}
