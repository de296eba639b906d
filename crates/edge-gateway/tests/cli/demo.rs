//! `edge-gateway demo` as a new user runs it: the real binary, its stdout,
//! and Ctrl-C.
#![cfg(feature = "demo")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::{timeout_at, Instant};

/// One-second windows: the first aggregate is due within 1 s + 2 s grace.
const FIRST_AGGREGATE: Duration = Duration::from_secs(30);
const EXIT: Duration = Duration::from_secs(20);

fn spawn_demo() -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .args(["demo", "--window", "1s"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn edge-gateway demo");
    let stdout = child.stdout.take().expect("piped stdout");
    (child, BufReader::new(stdout).lines())
}

/// Reads lines until one satisfies `hit`, failing with everything seen.
async fn wait_for_line(
    lines: &mut Lines<BufReader<ChildStdout>>,
    seen: &mut Vec<String>,
    deadline: Instant,
    what: &str,
    hit: impl Fn(&str) -> bool,
) {
    loop {
        match timeout_at(deadline, lines.next_line()).await {
            Ok(Ok(Some(line))) => {
                let found = hit(&line);
                seen.push(line);
                if found {
                    return;
                }
            }
            Ok(Ok(None)) => panic!(
                "demo closed stdout before {what}; output:\n{}",
                seen.join("\n")
            ),
            Ok(Err(e)) => panic!("reading the demo's stdout: {e}"),
            Err(_) => panic!(
                "no {what} within the time limit; output:\n{}",
                seen.join("\n")
            ),
        }
    }
}

/// One GET of the demo's dashboard: the whole response.
async fn get(port: u16, path: &str) -> String {
    let r = test_support::web::get_with(port, path, &[]).await;
    r.expect("the demo's dashboard answers").raw
}

fn interrupt(child: &Child) {
    let pid = child.id().expect("demo is running");
    let ok = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -INT {pid} failed");
}

#[tokio::test]
async fn the_demo_shows_aggregates_and_stops_cleanly_on_ctrl_c() {
    let (mut child, mut lines) = spawn_demo();
    let mut seen = Vec::new();
    let deadline = Instant::now() + FIRST_AGGREGATE;

    wait_for_line(
        &mut lines,
        &mut seen,
        deadline,
        "banner with the broker port",
        |l| l.contains("mosquitto_sub -h 127.0.0.1 -p "),
    )
    .await;
    // The dashboard's URL is among the first lines, and it answers with
    // the building's devices once the gateway is up.
    let url_line = seen
        .iter()
        .find(|l| l.trim_start().starts_with("dashboard  http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no dashboard URL in the banner:\n{}", seen.join("\n")))
        .clone();
    let port: u16 = url_line
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    wait_for_line(&mut lines, &mut seen, deadline, "device status", |l| {
        l.ends_with("Fridge 2 is online")
    })
    .await;
    let page = get(port, "/").await;
    assert!(
        page.starts_with("HTTP/1.1 200") && page.contains("Fridge 2"),
        "{page}"
    );
    // A full aggregate line: the device's registered name, a metric, and
    // its statistics with a unit.
    wait_for_line(
        &mut lines,
        &mut seen,
        deadline,
        "Living Room temperature aggregate",
        |l| {
            l.contains("Living Room")
                && l.contains("temperature")
                && l.contains("°C")
                && l.contains("n=")
        },
    )
    .await;

    // The failing fridge warms 1 °C per 20 s: its rate rule fires once
    // the gateway has 20 s of its readings.
    wait_for_line(
        &mut lines,
        &mut seen,
        Instant::now() + FIRST_AGGREGATE,
        "the fridge's rate alert",
        |l| {
            l.contains("!!! ALERT  Fridge 2")
                && l.contains("kind=rate")
                && l.contains("state=raised")
        },
    )
    .await;

    interrupt(&child);
    // What the gateway forwards while stopping is shown before the end.
    let stop_deadline = Instant::now() + EXIT;
    wait_for_line(
        &mut lines,
        &mut seen,
        stop_deadline,
        "the gateway going offline",
        |l| l.ends_with("gateway demo-gw offline"),
    )
    .await;
    let status = timeout_at(stop_deadline, child.wait())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "demo did not exit after SIGINT; output:\n{}",
                seen.join("\n")
            )
        })
        .expect("wait for the demo");
    while let Ok(Some(line)) = lines.next_line().await {
        seen.push(line);
    }
    assert!(
        status.success(),
        "exit status {status}; output:\n{}",
        seen.join("\n")
    );
    assert_eq!(
        seen.last().map(String::as_str),
        Some("Demo stopped."),
        "{}",
        seen.join("\n")
    );
}

#[tokio::test]
async fn an_invalid_window_is_refused_with_its_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .args(["demo", "--window", "0s"])
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run edge-gateway demo");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("aggregation.window"), "{err}");
}
