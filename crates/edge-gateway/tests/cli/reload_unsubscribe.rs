//! A topic removed from the MQTT adapter's `topics` stops arriving, though
//! the broker keeps the adapter's persistent session (and its
//! subscriptions) across the reload or restart that removed it: before,
//! every message on it was still delivered and counted as an
//! `unmatched_topic` error for as long as the session lived.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{http_until, GatewayProcess};
use test_support::{free_port, metrics, publish, Mosquitto};

const KEPT: &str = "\"sensors/data/{device}/{metric}\"";
const REMOVED: &str = "\"legacy/{device}/{metric}\"";

fn cfg(local: u16, metrics: u16, topics: &[&str]) -> String {
    format!(
        r#"
[gateway]
id = "gw-unsub"
site = "hq"
state_dir = "@STATE_DIR@"

# The one broker serves both sides: the test needs an output, not its data.
[upstream]
url = "mqtt://127.0.0.1:{local}"
topic_prefix = "building/{{site}}"
max_backoff = "1s"

[aggregation]
window = "1h"
grace = "1s"

[metrics]
bind = "127.0.0.1:{metrics}"

[[adapter]]
type = "mqtt"
name = "local-sensors"
url = "mqtt://127.0.0.1:{local}"
qos = 1
topics = [{}]
max_backoff = "1s"
"#,
        topics.join(", ")
    )
}

struct Counts {
    received: f64,
    readings: f64,
    unmatched: f64,
}

fn counts(body: &str) -> Counts {
    counts_of(body, "local-sensors")
}

fn counts_of(body: &str, adapter: &str) -> Counts {
    let of = |name: &str| {
        metrics::sample(body, &format!("{name}{{adapter=\"{adapter}\"}}")).unwrap_or(0.0)
    };
    Counts {
        received: of("edge_gateway_adapter_received_messages_total"),
        readings: of("edge_gateway_adapter_readings_total"),
        unmatched: metrics::sum_with(
            body,
            "edge_gateway_adapter_errors_total",
            "error_type=\"unmatched_topic\"",
        )
        .unwrap_or(0.0),
    }
}

/// Publishes on the removed topic, then on the kept one, and waits for the
/// kept one's reading: the broker delivers one session's messages in the
/// order it took them, so a message still routed on the removed topic has
/// arrived by then.
async fn removed_topic_is_not_delivered(gw: &GatewayProcess, local: u16, metrics_port: u16) {
    removed_topic_is_not_delivered_to(gw, local, metrics_port, "local-sensors").await;
}

async fn removed_topic_is_not_delivered_to(
    gw: &GatewayProcess,
    local: u16,
    metrics_port: u16,
    adapter: &str,
) {
    let counts = |body: &str| counts_of(body, adapter);
    let (_, body) = http_until(metrics_port, "/metrics", |c, _| c == 200).await;
    let before = counts(&body);
    publish(local, "legacy/old-dev/temperature", "1", 1, false).await;
    publish(local, "sensors/data/kept-dev/temperature", "2", 1, false).await;
    let (_, body) = http_until(metrics_port, "/metrics", |_, body| {
        counts(body).readings > before.readings
    })
    .await;
    let after = counts(&body);
    assert_eq!(
        after.unmatched - before.unmatched,
        0.0,
        "a message on the removed topic was still delivered\n{}",
        gw.seen.join("\n")
    );
    assert_eq!(
        after.received - before.received,
        1.0,
        "only the kept topic's message is received"
    );
}

fn edit(gw: &GatewayProcess, from: &str, to: &str) {
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    assert!(text.contains(from), "{from:?} not in the config");
    std::fs::write(&gw.config_path, text.replacen(from, to, 1)).unwrap();
}

#[tokio::test]
async fn a_topic_removed_by_a_reload_is_no_longer_delivered_nor_after_a_restart() {
    let local = Mosquitto::start();
    let metrics_port = free_port();
    let mut gw = GatewayProcess::start(&cfg(local.port(), metrics_port, &[KEPT, REMOVED]));
    gw.wait_for_log("Subscribed").await;
    // Both topics flow before the reload.
    publish(local.port(), "legacy/old-dev/temperature", "0", 1, false).await;
    http_until(metrics_port, "/metrics", |_, body| {
        counts(body).unmatched == 0.0 && counts(body).readings >= 1.0
    })
    .await;

    edit(&gw, &format!("{KEPT}, {REMOVED}"), KEPT);
    gw.signal("HUP");
    gw.wait_for_log("Reloaded.").await;
    gw.wait_for_log_count("Subscribed", 2).await;
    gw.wait_for_log("Unsubscribed from filters no longer in topics")
        .await;
    removed_topic_is_not_delivered(&gw, local.port(), metrics_port).await;

    // The broker kept the session across the restart: the removed topic
    // must not come back with it.
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    let mut gw = GatewayProcess::start_in(gw.dir, &cfg(local.port(), metrics_port, &[KEPT]));
    gw.wait_for_log("Subscribed").await;
    // The SUBACK follows any UNSUBACK: the record already said it was gone.
    assert!(
        !gw.seen.iter().any(|l| l.contains("Unsubscribed")),
        "nothing left to unsubscribe\n{}",
        gw.seen.join("\n")
    );
    removed_topic_is_not_delivered(&gw, local.port(), metrics_port).await;
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

#[tokio::test]
async fn a_topic_removed_while_the_gateway_was_stopped_is_no_longer_delivered() {
    let local = Mosquitto::start();
    let metrics_port = free_port();
    let mut gw = GatewayProcess::start(&cfg(local.port(), metrics_port, &[KEPT, REMOVED]));
    gw.wait_for_log("Subscribed").await;
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));

    let mut gw = GatewayProcess::start_in(gw.dir, &cfg(local.port(), metrics_port, &[KEPT]));
    gw.wait_for_log("Subscribed").await;
    removed_topic_is_not_delivered(&gw, local.port(), metrics_port).await;
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// A damaged record is moved aside, logged and counted, and the adapter
/// runs on: it subscribes what its config asks for, writes that down
/// afresh, and a topic removed afterwards is unsubscribed again.
#[tokio::test]
async fn a_damaged_record_is_counted_and_the_next_removal_is_still_unsubscribed() {
    let local = Mosquitto::start();
    let metrics_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let record = state.join("mqtt-subscriptions.json");
    std::fs::write(&record, b"{\"version\":1,\"brokers\":{\"127.0.0.1:").unwrap();
    let both = cfg(local.port(), metrics_port, &[KEPT, REMOVED]);
    let mut gw = GatewayProcess::start_in(dir, &both);
    gw.wait_for_log("Subscribed").await;
    let (_, body) = http_until(metrics_port, "/metrics", |c, _| c == 200).await;
    assert_eq!(
        metrics::sum_with(
            &body,
            "edge_gateway_adapter_errors_total",
            "error_type=\"subscriptions_file\""
        ),
        Some(1.0),
        "{body}"
    );
    assert!(gw
        .seen
        .iter()
        .any(|l| l.contains("mqtt-subscriptions.json.damaged")));
    assert!(state.join("mqtt-subscriptions.json.damaged").exists());
    let written = std::fs::read_to_string(&record).unwrap();
    assert!(written.contains("legacy/+/+"), "{written}");

    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    let mut gw = GatewayProcess::start_in(gw.dir, &cfg(local.port(), metrics_port, &[KEPT]));
    gw.wait_for_log("Subscribed").await;
    removed_topic_is_not_delivered(&gw, local.port(), metrics_port).await;
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// The first start of this version finds a session the broker kept and no
/// record of it (as after an upgrade): it cannot know what to drop, so it
/// drops nothing, says so, and every topic it asks for flows.
#[tokio::test]
async fn a_session_with_no_record_keeps_every_subscription() {
    let local = Mosquitto::start();
    let metrics_port = free_port();
    let both = cfg(local.port(), metrics_port, &[KEPT, REMOVED]);
    let mut gw = GatewayProcess::start(&both);
    gw.wait_for_log("Subscribed").await;
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    std::fs::remove_file(gw.dir.path().join("state/mqtt-subscriptions.json")).unwrap();

    let mut gw = GatewayProcess::start_in(gw.dir, &both);
    gw.wait_for_log("what it was subscribed to before is not known")
        .await;
    gw.wait_for_log("Subscribed").await;
    assert!(!gw.seen.iter().any(|l| l.contains("Unsubscribed")));
    publish(local.port(), "legacy/old-dev/temperature", "1", 1, false).await;
    publish(
        local.port(),
        "sensors/data/kept-dev/temperature",
        "2",
        1,
        false,
    )
    .await;
    http_until(metrics_port, "/metrics", |_, body| {
        counts(body).readings >= 2.0
    })
    .await;
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// A rename that keeps `client_id` keeps the broker's session, and so the
/// record of what it subscribed to: the new name drops what the old one
/// subscribed and the config no longer has.
#[tokio::test]
async fn a_renamed_adapter_keeping_its_client_id_drops_the_old_names_removed_topic() {
    let local = Mosquitto::start();
    let metrics_port = free_port();
    let named = "name = \"local-sensors\"";
    let text = cfg(local.port(), metrics_port, &[KEPT, REMOVED]).replacen(
        named,
        &format!("{named}\nclient_id = \"kept-session\""),
        1,
    );
    let mut gw = GatewayProcess::start(&text);
    gw.wait_for_log("Subscribed").await;

    edit(&gw, named, "name = \"renamed\"");
    edit(&gw, &format!("{KEPT}, {REMOVED}"), KEPT);
    gw.signal("HUP");
    gw.wait_for_log("Reloaded.").await;
    gw.wait_for_log_count("Subscribed", 2).await;
    assert!(
        gw.seen
            .iter()
            .any(|l| l.contains("Unsubscribed") && l.contains("adapter=renamed")),
        "{}",
        gw.seen.join("\n")
    );
    removed_topic_is_not_delivered_to(&gw, local.port(), metrics_port, "renamed").await;
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}
