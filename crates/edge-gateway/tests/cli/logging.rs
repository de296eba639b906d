//! Log formats of the real binary: plain text with a syslog priority and no
//! timestamp under journald, JSON lines with `[log] format = "json"`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::process::Stdio;

use common::{config, WAIT};
use test_support::Mosquitto;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Runs the gateway through `sh` (so `JOURNAL_STREAM` can name the pipe the
/// shell hands on as stdout, as systemd does) until `needle` is logged.
async fn first_lines_until(cfg: &str, journal: bool, needle: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg.replace(
        "@STATE_DIR@",
        &dir.path().join("state").display().to_string(),
    );
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, cfg).unwrap();
    let exports = if journal {
        "JOURNAL_STREAM=$(stat -L -c %d:%i /proc/$$/fd/1); export JOURNAL_STREAM; "
    } else {
        "unset JOURNAL_STREAM; "
    };
    let script = format!("{exports}exec \"$0\" run -c \"$1\"");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_edge-gateway"))
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let hit = line.contains(needle);
            seen.push(line);
            if hit {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} in {seen:#?}"));
    seen
}

#[tokio::test]
async fn under_journald_lines_carry_a_priority_and_no_timestamp() {
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let cfg = config("gw-log-1", local.port(), upstream.port(), "1h", "1s")
        + "\n[metrics]\nenabled = false\n";
    let lines = first_lines_until(&cfg, true, "Connected upstream.").await;
    let start = lines
        .iter()
        .find(|l| l.contains("Starting edge-gateway"))
        .unwrap();
    assert!(start.starts_with("<6> INFO "), "{start:?}");
    assert!(lines.iter().all(|l| l.starts_with('<')), "{lines:#?}");

    // Redirected elsewhere, a person reads it: timestamps, no prefix.
    let lines = first_lines_until(&cfg, false, "Connected upstream.").await;
    let start = lines
        .iter()
        .find(|l| l.contains("Starting edge-gateway"))
        .unwrap();
    assert!(start.starts_with("20"), "{start:?}");
}

#[tokio::test]
async fn json_format_gives_one_object_per_line() {
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let cfg = config("gw-log-2", local.port(), upstream.port(), "1h", "1s")
        + "\n[metrics]\nenabled = false\n\n[log]\nformat = \"json\"\n";
    // `[log]` after `[[device]]` is a new table, not part of the device.
    let lines = first_lines_until(&cfg, true, "Connected upstream.").await;
    for l in &lines {
        let j: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(j["timestamp"].is_string() && j["level"].is_string(), "{l}");
    }
    let start: serde_json::Value = serde_json::from_str(
        lines
            .iter()
            .find(|l| l.contains("Starting edge-gateway"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(start["fields"]["gateway"], "gw-log-2");
}
