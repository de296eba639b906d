//! `[commands]` attacked from the cloud broker, against the real binary
//! with a real Mosquitto as the cloud and pymodbus as the device (each
//! write counted by the device itself):
//!
//! - a flood of commands refused for a device that does not exist neither
//!   pushes a real command's id out of memory (its word-for-word replay
//!   writes nothing) nor holds up the windows going upstream, and every
//!   command of it gets exactly one result (the figures are printed, and
//!   stated in docs/commands.md); once it has filled the journal, a real
//!   command refused for its device's rate still never runs when sent
//!   again after the allowance is back;
//! - late commands never run: a command without `ts` is refused, a `ts`
//!   ahead of the gateway's clock (30 min, year 9999, a gateway clock an
//!   hour slow) is refused `clock`, and a command waiting behind a slow
//!   write expires on the monotonic clock, even when the wall clock steps
//!   back an hour meanwhile;
//! - one damaged byte in the journal costs one line: no command of it
//!   runs again, nor a retained one across two restarts;
//! - a command over 64 KiB is refused `too_large` and the channel lives;
//!   a NaN is refused with its id; the same id on another device is that
//!   device's command, answered on its topic; bounds are said in words.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::commands::{command, config, metric, read_back, start_peer};
use crate::common;

use common::{http_get, http_until, now_ms, with_ts, GatewayProcess, WAIT};
use serde_json::{json, Value};
use test_support::{free_port, publish, publish_lines, Mosquitto, PythonPeer, Subscriber};
use tokio::io::AsyncWriteExt as _;

/// How many refused commands the flood sends: more than the 10 000 ids
/// the journal used to keep. `COMMAND_FLOOD=20000` for the figures in
/// docs/commands.md.
fn flood_size() -> usize {
    std::env::var("COMMAND_FLOOD")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_010)
}

/// Function `fc` requests the device has seen (6: one register written).
fn writes(peer: &mut PythonPeer, fc: u8) -> u64 {
    peer.send_line("count");
    let mut n = 0;
    while let Some(line) = peer.next_line(WAIT) {
        if line == "end" {
            break;
        }
        if let Some(count) = line.strip_prefix(&format!("count 1 {fc} ")) {
            n = count.parse().unwrap();
        }
    }
    n
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn ms_of(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp_millis()
}

/// A sensor on the building broker sending a reading every 100 ms (its
/// own cadence, not a wait of the test) until dropped.
struct Sensor {
    task: tokio::task::JoinHandle<()>,
}

impl Sensor {
    fn start(port: u16, topic: &str) -> Self {
        let mut child = tokio::process::Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
            .args(["-t", topic, "-l"])
            .stdin(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn mosquitto_pub");
        let mut stdin = child.stdin.take().unwrap();
        let task = tokio::spawn(async move {
            let _child = child;
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            for i in 0u64.. {
                tick.tick().await;
                let line = format!("{{\"temperature\": {}}}\n", 20 + i % 5);
                if stdin.write_all(line.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
        Self { task }
    }
}

impl Drop for Sensor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_flood_of_refused_commands_evicts_no_id_and_holds_up_no_window() {
    let cloud = Mosquitto::start();
    let building = Mosquitto::start();
    let metrics = free_port();
    let modbus = free_port();
    let mut peer = start_peer(modbus);
    let mut results = Subscriber::start(cloud.port(), "building/hq/+/command/result").await;
    let mut windows = Subscriber::start(cloud.port(), "building/hq/room-1/aggregated").await;
    // A max_age long enough that the replay after the flood is fresh: only
    // the id's memory can stop it.
    // ahu-1's allowance small enough that three quick commands spend it.
    let cfg = config(cloud.port(), building.port(), metrics, modbus)
        .replace(r#"max_age = "60s""#, r#"max_age = "10m""#)
        .replace("rate = 50.0\nburst = 50", "rate = 2.0\nburst = 2")
        .replace(
            "[metrics]",
            "[aggregation]\nwindow = \"1s\"\ngrace = \"0s\"\n\n[metrics]",
        );
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Subscribed to commands on the upstream broker.")
        .await;
    gw.wait_for_log("Modbus bus open.").await;

    let original = with_ts(json!({"id": "real-1", "metric": "setpoint", "value": 23.5}));
    let r = command(cloud.port(), &mut results, "ahu-1", original.clone()).await;
    assert_eq!(r["status"], "done", "{r}");
    assert_eq!(writes(&mut peer, 6), 1);

    // Without a flood first: how late a window goes upstream anyway.
    let _sensor = Sensor::start(building.port(), "zigbee2mqtt/room-1");
    let mut idle_delay = 0;
    for _ in 0..3 {
        let w = windows
            .next(WAIT)
            .await
            .expect("the sensor's windows go upstream");
        idle_delay = idle_delay.max(now_ms() - ms_of(w.json()["window_end"].as_str().unwrap()));
    }

    let n = flood_size();
    let ts = rfc3339(now_ms());
    let lines: Vec<String> = (0..n)
        .map(|i| {
            json!({"id": format!("f-{i}"), "metric": "setpoint", "value": 20, "ts": ts}).to_string()
        })
        .collect();
    let started = Instant::now();
    let flood_start_ms = now_ms();
    publish_lines(cloud.port(), "building/hq/ghost/command", &lines, 1).await;
    let published = started.elapsed();

    // Every command of the flood gets exactly one result; meanwhile the
    // windows keep going upstream.
    let mut seen = vec![0u32; n];
    let mut got = 0;
    let mut arrived: Vec<(i64, i64)> = Vec::new(); // (window end, arrival), ms
    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while got < n {
        tokio::select! {
            m = results.next(Duration::from_secs(300)) => {
                let m = m.unwrap_or_else(|| panic!("{got} of {n} results"));
                let r = m.json();
                let Some(i) = r["id"].as_str().and_then(|id| id.strip_prefix("f-")) else { continue };
                let i: usize = i.parse().unwrap();
                seen[i] += 1;
                if seen[i] == 1 {
                    got += 1;
                }
                assert_eq!(m.topic, "building/hq/ghost/command/result");
                assert_eq!(r["status"], "refused", "{r}");
                *reasons.entry(r["reason"].as_str().unwrap().to_string()).or_default() += 1;
            }
            w = windows.next(Duration::from_secs(300)) => {
                if let Some(w) = w {
                    arrived.push((ms_of(w.json()["window_end"].as_str().unwrap()), now_ms()));
                }
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{got} of {n} results in 300 s"
        );
    }
    let drained = started.elapsed();
    let last_result_ms = now_ms();

    // Windows during the flood: none that closed well before its end
    // waited for it to end.
    let during: Vec<&(i64, i64)> = arrived
        .iter()
        .filter(|(end, _)| *end >= flood_start_ms)
        .collect();
    let late: Vec<&&(i64, i64)> = during
        .iter()
        .filter(|(end, at)| *end < last_result_ms - 5_000 && *at >= last_result_ms)
        .collect();
    let max_delay = during.iter().map(|(end, at)| at - end).max().unwrap_or(0);
    println!(
        "FLOOD {n} refused commands: published in {:.1} s, every result upstream {:.1} s after the first was published ({:.0} results/s); reasons {reasons:?}; {} windows closed during the flood, the slowest upstream {:.1} s after its end (without a flood: {:.1} s)",
        published.as_secs_f64(),
        drained.as_secs_f64(),
        n as f64 / drained.as_secs_f64(),
        during.len(),
        max_delay as f64 / 1000.0,
        idle_delay as f64 / 1000.0,
    );
    // The real command's word-for-word replay: its first result again,
    // nothing written.
    let r = command(cloud.port(), &mut results, "ahu-1", original).await;
    assert_eq!(writes(&mut peer, 6), 1, "written once");
    assert_eq!(r["status"], "done", "{r}");
    assert_eq!(r["value"], 23.5);
    assert_eq!(read_back(modbus, 1, "holding", 0, 1), vec![235]);
    assert!(seen.iter().all(|&k| k == 1), "one result each");
    // The journal takes only what the rate allows; the rest is refused
    // at once and costs nothing.
    assert!(
        reasons.get("rate").copied().unwrap_or(0) > n / 2,
        "{reasons:?}"
    );

    assert!(late.is_empty(), "windows held up by the flood: {late:?}");
    if drained > Duration::from_secs(4) {
        assert!(!during.is_empty(), "windows went upstream during the flood");
    }
    if n >= 10_000 {
        a_refusal_in_a_full_journal_stays_final(cloud.port(), modbus, &mut results, &mut peer)
            .await;
    }
}

/// The journal full of the flood's ids: ahu-1's commands until one is
/// refused for its rate (without a journal line of its own), then, once
/// a new command runs again, that refused one word for word: a replay, or
/// a cloud retrying the id it was told was refused. It must not run.
async fn a_refusal_in_a_full_journal_stays_final(
    cloud: u16,
    modbus: u16,
    results: &mut Subscriber,
    peer: &mut PythonPeer,
) {
    let mut refused = None;
    for i in 0..20 {
        let body =
            with_ts(json!({"id": format!("quick-{i}"), "metric": "setpoint", "value": 22.0}));
        let r = command(cloud, results, "ahu-1", body.clone()).await;
        if r["status"] == "refused" {
            assert_eq!(r["reason"], "rate", "{r}");
            assert!(
                !r["detail"].as_str().unwrap().contains("judged again"),
                "{r}"
            );
            refused = Some(body);
            break;
        }
        assert_eq!(r["status"], "done", "{r}");
    }
    let refused = refused.expect("ahu-1's allowance of 2 is spent by quick commands");
    for i in 0.. {
        let r = command(
            cloud,
            results,
            "ahu-1",
            json!({"id": format!("probe-{i}"), "metric": "setpoint", "value": 22.5}),
        )
        .await;
        if r["status"] == "done" {
            break;
        }
        assert!(i < 10_000, "the allowance never came back: {r}");
    }
    let written = writes(peer, 6);
    let r = command(cloud, results, "ahu-1", refused).await;
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("expired"), Some("max_age")),
        "{r}"
    );
    assert!(r["detail"].as_str().unwrap().contains("flood"), "{r}");
    assert_eq!(
        writes(peer, 6),
        written,
        "the refused command was not written"
    );
    assert_eq!(
        read_back(modbus, 1, "holding", 0, 1),
        vec![225],
        "the probe's value holds"
    );
}

#[tokio::test]
async fn late_future_and_unstamped_commands_never_run() {
    let cloud = Mosquitto::start();
    let building = Mosquitto::start();
    let metrics = free_port();
    let modbus = free_port();
    let mut peer = start_peer(modbus);
    let mut results = Subscriber::start(cloud.port(), "building/hq/+/command/result").await;
    let dir = tempfile::tempdir().unwrap();
    let step_file = dir.path().join("clock-step");
    std::fs::write(&step_file, "0").unwrap();
    let cfg = config(cloud.port(), building.port(), metrics, modbus)
        .replace(r#"max_age = "60s""#, r#"max_age = "3s""#);
    let step_path = step_file.display().to_string();
    let mut gw = GatewayProcess::start_in_with(
        dir,
        &cfg,
        &[
            ("EDGE_GATEWAY_FAULT_CLOCK_STEP_FILE", &step_path),
            ("EDGE_GATEWAY_FAULT_HOLD_COMMAND_RESULT_MS", "4000"),
        ],
    );
    gw.wait_for_log("Subscribed to commands on the upstream broker.")
        .await;
    gw.wait_for_log("Modbus bus open.").await;

    // Without ts: refused (a replay of it could run at any time).
    let unstamped = json!({"id": "u-1", "metric": "setpoint", "value": 16.0});
    publish(
        cloud.port(),
        "building/hq/ahu-1/command",
        &unstamped.to_string(),
        1,
        false,
    )
    .await;
    let r = results
        .wait_for(WAIT, |m| m.json()["id"] == "u-1")
        .await
        .expect("a result for the command without ts")
        .json();
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("refused"), Some("malformed")),
        "{r}"
    );
    assert!(
        r["detail"].as_str().unwrap().starts_with("ts: missing"),
        "{r}"
    );

    // Ahead of the gateway's clock: 30 min, and year 9999.
    for (id, ts) in [
        ("a-1", rfc3339(now_ms() + 30 * 60_000)),
        ("a-2", "9999-12-31T23:59:59Z".to_string()),
    ] {
        let r = command(
            cloud.port(),
            &mut results,
            "ahu-1",
            json!({"id": id, "metric": "setpoint", "value": 16.0, "ts": ts}),
        )
        .await;
        assert_eq!(
            (r["status"].as_str(), r["reason"].as_str()),
            (Some("refused"), Some("clock")),
            "{r}"
        );
    }

    // A command waits behind another one's slow write (the fault hook
    // holds each result 4 s, past max_age) and the wall clock steps back
    // an hour meanwhile: it expires all the same. Sent together, so the
    // second has arrived by the time the first is written.
    let pair: Vec<String> = [("w-1", 21.0), ("w-2", 22.0)]
        .into_iter()
        .map(|(id, value)| {
            with_ts(json!({"id": id, "metric": "setpoint", "value": value})).to_string()
        })
        .collect();
    publish_lines(cloud.port(), "building/hq/ahu-1/command", &pair, 1).await;
    gw.wait_for_log("Fault hook: holding a written command's result.")
        .await;
    std::fs::write(&step_file, "-3600000").unwrap();
    let r = results
        .wait_for(WAIT, |m| m.json()["id"] == "w-2")
        .await
        .expect("a result for the command that waited")
        .json();
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("expired"), Some("max_age")),
        "{r}"
    );
    assert_eq!(read_back(modbus, 1, "holding", 0, 1), vec![210], "w-1 only");

    // The gateway's clock an hour slow now: a command made 5 minutes ago
    // is 55 minutes ahead of it, and refused.
    let r = command(
        cloud.port(),
        &mut results,
        "ahu-1",
        json!({"id": "s-1", "metric": "setpoint", "value": 17.0, "ts": rfc3339(now_ms() - 5 * 60_000)}),
    )
    .await;
    assert!(
        ms_of(r["ts"].as_str().unwrap()) < now_ms() - 50 * 60_000,
        "the gateway's clock is slow: {r}"
    );
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("refused"), Some("clock")),
        "{r}"
    );
    assert_eq!(writes(&mut peer, 6), 1, "w-1 only");
    assert_eq!(read_back(modbus, 1, "holding", 0, 1), vec![210]);
}

#[tokio::test]
async fn a_damaged_journal_line_costs_that_line_and_nothing_runs_twice() {
    let cloud = Mosquitto::start();
    let building = Mosquitto::start();
    let metrics = free_port();
    let modbus = free_port();
    let mut peer = start_peer(modbus);
    let mut results = Subscriber::start(cloud.port(), "building/hq/+/command/result").await;
    let cfg = config(cloud.port(), building.port(), metrics, modbus)
        .replace(r#"max_age = "60s""#, r#"max_age = "10m""#);
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Subscribed to commands on the upstream broker.")
        .await;
    let sent: Vec<Value> = (1..=6)
        .map(|i| {
            with_ts(
                json!({"id": format!("d-{i}"), "metric": "setpoint", "value": 20.0 + f64::from(i)}),
            )
        })
        .collect();
    for c in &sent {
        let r = command(cloud.port(), &mut results, "ahu-1", c.clone()).await;
        assert_eq!(r["status"], "done", "{r}");
    }
    // A retained command: delivered again at every subscription.
    publish(
        cloud.port(),
        "building/hq/ahu-1/command",
        &with_ts(json!({"id": "ret-1", "metric": "setpoint", "value": 19.0})).to_string(),
        1,
        true,
    )
    .await;
    results
        .wait_for(WAIT, |m| m.json()["id"] == "ret-1")
        .await
        .expect("the retained command's result");
    assert_eq!(writes(&mut peer, 6), 7);
    gw.signal("TERM");
    gw.wait_exit().await;

    // One byte of the third line's command id (d-2's start or result, by
    // the order written) becomes 0xFF.
    let journal = gw.dir.path().join("state/commands/journal");
    let mut bytes = std::fs::read(&journal).unwrap();
    let third = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(1)
        .map(|(i, _)| i + 1)
        .unwrap();
    bytes[third + 3] = 0xFF;
    std::fs::write(&journal, &bytes).unwrap();

    let mut logs = Vec::new();
    let mut damaged = Vec::new();
    for _ in 0..2 {
        gw = GatewayProcess::start_in_with(gw.dir, &cfg, &[]);
        gw.wait_for_log("Subscribed to commands on the upstream broker.")
            .await;
        // The retained command comes again with the subscription.
        results
            .wait_for(WAIT, |m| m.json()["id"] == "ret-1")
            .await
            .expect("the retained command's result again");
        for c in &sent {
            let r = command(cloud.port(), &mut results, "ahu-1", c.clone()).await;
            assert_ne!(r["status"], "refused", "{r}");
        }
        let (_, body) = http_get(metrics, "/metrics").await;
        damaged.push(metric(
            &body,
            "edge_gateway_commands_journal_damaged_lines_total",
        ));
        gw.signal("TERM");
        gw.wait_exit().await;
        gw.drain_log().await;
        logs.push(gw.seen.join("\n"));
    }
    assert_eq!(writes(&mut peer, 6), 7, "nothing written twice");
    // Counted and logged once; the journal was rewritten clean.
    assert_eq!(damaged, vec![1.0, 0.0]);
    assert!(logs[0].contains("Skipping a damaged line of the command journal"));
    assert!(!logs[1].contains("Skipping"));
}

#[tokio::test]
async fn an_oversized_command_a_nan_and_an_id_on_two_devices() {
    let cloud = Mosquitto::start();
    let building = Mosquitto::start();
    let metrics = free_port();
    let modbus = free_port();
    let _peer = start_peer(modbus);
    let mut results = Subscriber::start(cloud.port(), "building/hq/+/command/result").await;
    let mut sets = Subscriber::start(building.port(), "zigbee2mqtt/+/set").await;
    let mut gw = GatewayProcess::start(&config(cloud.port(), building.port(), metrics, modbus));
    gw.wait_for_log("Subscribed to commands on the upstream broker.")
        .await;
    gw.wait_for_log("Modbus bus open.").await;

    // 70 KiB: refused and acknowledged, not a broken connection that the
    // broker delivers it to again and again.
    let big = with_ts(json!({"id": "big-1", "metric": "setpoint", "value": "x".repeat(70 * 1024)}));
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(big.to_string().as_bytes()).unwrap();
    let status = tokio::process::Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &cloud.port().to_string(),
            "-q",
            "1",
        ])
        .args(["-t", "building/hq/ahu-1/command", "-f"])
        .arg(file.path())
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let r = results
        .wait_for(WAIT, |m| m.json()["id"] == "big-1")
        .await
        .expect("a result for the oversized command")
        .json();
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("refused"), Some("too_large")),
        "{r}"
    );
    // The channel lives, and says so.
    let r = command(
        cloud.port(),
        &mut results,
        "ahu-1",
        json!({"id": "after-big", "metric": "setpoint", "value": 22.0}),
    )
    .await;
    assert_eq!(r["status"], "done", "{r}");
    let (code, body) = http_until(metrics, "/health", |code, _| code == 200).await;
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["commands_subscribed"],
        true,
        "{body}"
    );

    // NaN is no JSON number, but the id is readable: the refusal names it.
    let nan = format!(
        r#"{{"id": "nan-1", "metric": "setpoint", "value": NaN, "ts": "{}"}}"#,
        rfc3339(now_ms())
    );
    publish(cloud.port(), "building/hq/ahu-1/command", &nan, 1, false).await;
    let r = results
        .wait_for(WAIT, |m| m.json()["id"] == "nan-1")
        .await
        .expect("the NaN command's result, with its id")
        .json();
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("refused"), Some("malformed")),
        "{r}"
    );

    // Bounds in words.
    let r = command(
        cloud.port(),
        &mut results,
        "ahu-1",
        json!({"id": "range-1", "metric": "setpoint", "value": 35.0}),
    )
    .await;
    assert_eq!(r["reason"], "out_of_range", "{r}");
    assert!(r["detail"].as_str().unwrap().contains("15 to 30"), "{r}");

    // The same id on two devices: two commands, each answered on its own
    // device's topic (the helper checks the topic).
    let r = command(
        cloud.port(),
        &mut results,
        "ahu-1",
        json!({"id": "same-1", "metric": "setpoint", "value": 21.5}),
    )
    .await;
    assert_eq!(
        (r["status"].as_str(), r["device"].as_str()),
        (Some("done"), Some("ahu-1")),
        "{r}"
    );
    let r = command(
        cloud.port(),
        &mut results,
        "lamp-1",
        json!({"id": "same-1", "metric": "brightness", "value": 80}),
    )
    .await;
    assert_eq!(
        (r["status"].as_str(), r["device"].as_str()),
        (Some("done"), Some("lamp-1")),
        "{r}"
    );
    let set = sets
        .wait_for(WAIT, |m| m.topic == "zigbee2mqtt/lamp-1/set")
        .await
        .expect("the lamp's /set");
    assert_eq!(set.json(), json!({"brightness": 80}));
}
