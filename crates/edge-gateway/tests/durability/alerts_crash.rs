//! A fridge's "too warm" alert across a kill -9: the rules' state is saved
//! at checkpoint ticks, and the readings journaled after it are played
//! through the rules again at the next start. A clear decided just before
//! the crash used to be forgotten (the rule restarted raised, and the next
//! excursion was never raised), or a raise repeated under a new id.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::{config, GatewayProcess, WAIT};
use test_support::{publish, Message, Mosquitto, Subscriber};

const RULE: &str = r#"
[[rule]]
name = "fridge-max"
kind = "threshold"
metric = "temperature"
device = "fridge-9"
max = 8.0
hysteresis = 0.5
cooldown = "0s"
"#;

/// The rules' saved state says the alert is raised (`alerts.json` holds
/// the trigger's `"raised": true`).
async fn saved_raised(state: &Path) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(state.join("alerts.json")).unwrap_or_default();
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        if compact.contains("\"raised\":true") {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never saved: {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn next_state(alerts: &mut Subscriber, state: &str) -> Message {
    alerts
        .wait_for(WAIT, |m| m.json()["state"] == state)
        .await
        .unwrap_or_else(|| panic!("no {state} upstream"))
}

#[tokio::test]
async fn a_clear_decided_just_before_a_kill_9_is_not_forgotten() {
    let local = Mosquitto::start_persistent();
    let upstream = Mosquitto::start();
    let mut alerts = Subscriber::start(upstream.port(), "building/hq/fridge-9/alerts").await;
    // Saves every 3 s: the clear and the kill land between two saves.
    let cfg = config("gw-alert-crash", local.port(), upstream.port(), "1h", "0s").replacen(
        "grace = \"0s\"\n",
        "grace = \"0s\"\ncheckpoint_interval = \"3s\"\n",
        1,
    ) + RULE;
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Subscribed").await;
    let state = gw.dir.path().join("state");
    let topic = "sensors/data/fridge-9/temperature";
    publish(local.port(), topic, "9.5", 1, false).await;
    let raised = next_state(&mut alerts, "raised").await;
    saved_raised(&state).await;
    publish(local.port(), topic, "4.0", 1, false).await;
    let cleared = next_state(&mut alerts, "cleared").await;
    let mut gw = gw.kill_and_restart(&cfg, &[]).await;
    gw.wait_for_log("Subscribed").await;

    // The fridge warms again: a new excursion, raised.
    publish(local.port(), topic, "9.8", 1, false).await;
    let again = next_state(&mut alerts, "raised").await;
    assert_ne!(again.json()["id"], raised.json()["id"], "a new excursion");
    assert_eq!(again.json()["value"], 9.8);
    publish(local.port(), topic, "4.0", 1, false).await;
    let cleared_again = next_state(&mut alerts, "cleared").await;
    assert_eq!(cleared_again.json()["value"], 4.0);
    // A clear sent twice (before the crash, and decided again from the
    // journal) carries one id.
    let mut clears = vec![cleared.json()["id"].clone()];
    while let Some(m) = alerts.next(Duration::from_millis(500)).await {
        assert_ne!(m.json()["state"], "raised", "raised twice: {}", m.payload);
        clears.push(m.json()["id"].clone());
    }
    clears.push(cleared_again.json()["id"].clone());
    clears.dedup();
    assert!(clears.len() <= 2, "{clears:?}");
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}
