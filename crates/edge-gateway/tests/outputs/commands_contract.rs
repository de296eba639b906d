//! The command contract where an attacker on the cloud broker (or the
//! gateway stopping) met its edges, against the real binary with a real
//! Mosquitto as the cloud broker:
//!
//! - a flood of commands stamped decades ahead is refused (`clock`), and
//!   the journal stays the size it keeps for them: it neither holds them
//!   until their far-future time nor turns away the journaling of other
//!   refusals, and a command stamped a day ahead (a gateway clock behind)
//!   sent before the flood is still answered from the journal;
//! - a cloud command whose id is one the gateway made for Home Assistant
//!   (`ha-…`, read off the result topic) is refused, not answered with
//!   Home Assistant's `done`, and writes nothing;
//! - a command interrupted by a kill -9 is reported `interrupted` on the
//!   topic it came on, spelt as its sender spelt it, with a detail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::commands::{command, config, metric, read_back, start_peer};
use crate::common;

use common::{http_until, now_ms, GatewayProcess, WAIT};
use serde_json::json;
use test_support::{free_port, publish, publish_lines, Mosquitto, Subscriber};

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// How many commands stamped ahead the flood sends: more than the 10 000
/// ids after which refusals are no longer journaled one by one.
const FAR_FLOOD: usize = 10_050;

#[tokio::test]
async fn commands_stamped_decades_ahead_cannot_fill_the_journal() {
    let cloud = Mosquitto::start();
    let building = Mosquitto::start();
    let metrics = free_port();
    let modbus = free_port();
    let mut results = Subscriber::start(cloud.port(), "building/hq/+/command/result").await;
    let cfg = config(cloud.port(), building.port(), metrics, modbus);
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Subscribed to commands on the upstream broker.")
        .await;

    // A day ahead: what a cloud sends a gateway whose clock is a day
    // behind. Refused, and answered the same when sent again.
    let soon = json!({"id": "soon-1", "metric": "setpoint", "value": 21.0,
        "ts": rfc3339(now_ms() + 86_400_000)});
    let r = command(cloud.port(), &mut results, "ahu-1", soon.clone()).await;
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("refused"), Some("clock")),
        "{r}"
    );

    // The flood: stamped in 2100, for a device nobody writes to.
    let year_2100 = 4_102_444_800_000_i64;
    let lines: Vec<String> = (0..FAR_FLOOD)
        .map(|i| {
            json!({"id": format!("far-{i}"), "metric": "x", "value": 1,
                "ts": rfc3339(year_2100 + i as i64)})
            .to_string()
        })
        .collect();
    publish_lines(cloud.port(), "building/hq/ghost/command", &lines, 1).await;
    let mut got = 0;
    while got < FAR_FLOOD {
        let m = results
            .next(std::time::Duration::from_secs(120))
            .await
            .unwrap_or_else(|| panic!("{got} of {FAR_FLOOD} results"));
        let r = m.json();
        if r["id"].as_str().is_some_and(|id| id.starts_with("far-")) {
            assert_eq!(r["reason"], "clock", "{r}");
            got += 1;
        }
    }

    // A refusal after the flood, for a device no flood mark can cover
    // (nobody writes to it): journaled, so final, not "judged again".
    let old = json!({"id": "old-1", "metric": "x", "value": 1,
        "ts": rfc3339(now_ms() - 600_000)});
    let r = command(cloud.port(), &mut results, "ghost-2", old).await;
    assert_eq!(r["status"], "expired", "{r}");
    assert!(
        !r["detail"].as_str().unwrap().contains("judged again"),
        "the flood stamped ahead left the journal full: {r}"
    );

    // The command a day ahead is still known: its refusal again.
    let r = command(cloud.port(), &mut results, "ahu-1", soon).await;
    assert_eq!(r["reason"], "clock", "{r}");
    let (_, body) = http_until(metrics, "/metrics", |c, _| c == 200).await;
    assert_eq!(
        metric(&body, "edge_gateway_commands_repeated_total"),
        1.0,
        "{body}"
    );

    // What the journal holds: not the flood, which would stay until 2100.
    let journal = gw.dir.path().join("state/commands/journal");
    let lines = std::fs::read_to_string(&journal).unwrap().lines().count();
    assert!(
        lines < 3_000,
        "{lines} lines in the journal after {FAR_FLOOD} commands stamped in 2100"
    );
}

/// Home Assistant's command and a cloud command reusing its id, read off
/// the result topic.
#[tokio::test]
async fn a_cloud_command_reusing_a_home_assistant_id_is_refused() {
    let cloud = Mosquitto::start();
    let building = Mosquitto::start();
    let ha = Mosquitto::start();
    let metrics = free_port();
    let modbus = free_port();
    let _peer = start_peer(modbus);
    let mut results = Subscriber::start(cloud.port(), "building/hq/+/command/result").await;
    let cfg = config(cloud.port(), building.port(), metrics, modbus).replace(
        "[commands]",
        &format!(
            "[home_assistant]\nenabled = true\nbroker = \"mqtt://127.0.0.1:{}\"\ncommands = true\n\n[commands]",
            ha.port()
        ),
    );
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Subscribed to commands on the upstream broker.")
        .await;
    gw.wait_for_log("Taking commands from Home Assistant's broker.")
        .await;
    gw.wait_for_log("Modbus bus open.").await;

    publish(
        ha.port(),
        "edge-gateway/gw-cmd/ahu-1/setpoint/set",
        "22.5",
        1,
        false,
    )
    .await;
    let m = results
        .wait_for(WAIT, |m| {
            m.json()["id"]
                .as_str()
                .is_some_and(|i| i.starts_with("ha-"))
        })
        .await
        .expect("Home Assistant's result on the cloud broker");
    let ha_id = m.json()["id"].as_str().unwrap().to_string();
    assert_eq!(m.json()["status"], "done", "{}", m.payload);
    assert_eq!(read_back(modbus, 1, "holding", 0, 1), vec![225]);

    // Someone who reads the result topic sends another value under that id.
    let r = command(
        cloud.port(),
        &mut results,
        "ahu-1",
        json!({"id": ha_id, "metric": "setpoint", "value": 16.0}),
    )
    .await;
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("refused"), Some("malformed")),
        "answered with Home Assistant's result: {r}"
    );
    assert!(r["detail"].as_str().unwrap().contains("ha-"), "{r}");
    assert_eq!(read_back(modbus, 1, "holding", 0, 1), vec![225]);
    // A rule's id is the gateway's too.
    let r = command(
        cloud.port(),
        &mut results,
        "ahu-1",
        json!({"id": "rule-0123456789abcdef", "metric": "setpoint", "value": 16.0}),
    )
    .await;
    assert_eq!(r["reason"], "malformed", "{r}");
    assert_eq!(read_back(modbus, 1, "holding", 0, 1), vec![225]);
}

#[tokio::test]
async fn an_interrupted_command_is_answered_on_the_topic_it_came_on() {
    let cloud = Mosquitto::start();
    let building = Mosquitto::start();
    let metrics = free_port();
    let modbus = free_port();
    let mut results = Subscriber::start(cloud.port(), "building/hq/+/command/result").await;
    // The lamp named by its MAC: the cloud spells it its own way.
    let cfg = config(cloud.port(), building.port(), metrics, modbus)
        .replace(r#"id = "lamp-1""#, r#"id = "aa:bb:cc:dd:ee:ff""#);
    let dir = tempfile::tempdir().unwrap();
    let mut gw = GatewayProcess::start_in_with(
        dir,
        &cfg,
        &[("EDGE_GATEWAY_FAULT_HOLD_COMMAND_RESULT_MS", "60000")],
    );
    gw.wait_for_log("Subscribed to commands on the upstream broker.")
        .await;
    let spelt = "building/hq/AA-BB-CC-DD-EE-FF/command";
    publish(
        cloud.port(),
        spelt,
        &common::with_ts(json!({"id": "k-mac", "metric": "state", "value": "ON"})).to_string(),
        1,
        false,
    )
    .await;
    gw.wait_for_log("Fault hook: holding a written command's result.")
        .await;
    gw.signal("KILL");
    gw.wait_exit().await;

    let mut gw = GatewayProcess::start_in_with(gw.dir, &cfg, &[]);
    gw.wait_for_log("Subscribed to commands on the upstream broker.")
        .await;
    // The interrupted result, then the broker's re-delivery answered from
    // the journal: both on the topic the command came on.
    let mut answers = Vec::new();
    while answers.len() < 2 {
        let m = results
            .wait_for(WAIT, |m| m.json()["id"] == "k-mac")
            .await
            .unwrap_or_else(|| panic!("{} results for k-mac: {answers:?}", answers.len()));
        answers.push((m.topic.clone(), m.json()));
    }
    for (topic, r) in &answers {
        assert_eq!(topic, &format!("{spelt}/result"), "{r}");
        assert_eq!(
            (r["status"].as_str(), r["reason"].as_str()),
            (Some("failed"), Some("interrupted")),
            "{r}"
        );
        assert_eq!(r["device"], "aa:bb:cc:dd:ee:ff", "{r}");
        assert_eq!(r["value"], "ON", "{r}");
        assert!(!r["detail"].as_str().unwrap_or_default().is_empty(), "{r}");
    }
}
