//! SIGHUP with the real binary, under traffic and against what adapters
//! leave behind: a QoS 1 burst across a storm of reloads that restart the
//! adapter reading it is counted once, every reading of it; and what an
//! adapter reported of its link does not outlive it when a reload
//! replaces it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::common;

use common::{config, http_get, http_until, http_until_within, GatewayProcess, WAIT};
use test_support::{free_port, metrics, publish_lines, Mosquitto, Subscriber};

const BURST: usize = 20_000;

/// One open window for the whole test, forwarded (partial) at SIGTERM.
fn cfg(gateway: &str, local: u16, upstream: u16, metrics: u16) -> String {
    config(gateway, local, upstream, "1h", "1s").replace(
        "grace = \"1s\"",
        "grace = \"1s\"\ncheckpoint_interval = \"0s\"",
    ) + &format!("\n[metrics]\nbind = \"127.0.0.1:{metrics}\"\n")
}

/// The readings the windows hold once they hold at least `n` (a QoS 1
/// burst through a debug build takes longer than [`WAIT`]).
async fn aggregated_at_least(metrics_port: u16, n: f64) -> f64 {
    let readings = |body: &str| metrics::sum(body, "edge_gateway_aggregator_readings_total");
    let (_, body) = http_until_within(
        metrics_port,
        "/metrics",
        Duration::from_secs(180),
        |_, body| readings(body) >= n,
    )
    .await;
    readings(&body)
}

/// Publishes `1..=BURST` at QoS 1 on one topic and runs `during` once the
/// gateway has taken a part of it; then stops the gateway and checks the
/// one window's count and sum, and that the windows took each reading once.
async fn burst_across(
    device: &str,
    client_id: Option<&str>,
    during: impl AsyncFnOnce(&mut GatewayProcess),
) {
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/#").await;
    let metrics_port = free_port();
    let mut text = cfg(
        &format!("gw-{device}"),
        local.port(),
        upstream.port(),
        metrics_port,
    );
    if let Some(id) = client_id {
        let named = "name = \"local-sensors\"";
        assert!(text.contains(named));
        text = text.replacen(named, &format!("{named}\nclient_id = \"{id}\""), 1);
    }
    let mut gw = GatewayProcess::start(&text);
    gw.wait_for_log("Subscribed").await;
    gw.wait_for_log("Connected upstream.").await;
    let lines: Vec<String> = (1..=BURST).map(|i| i.to_string()).collect();
    let topic = format!("sensors/data/{device}/temperature");
    let port = local.port();
    let publisher = tokio::spawn(async move { publish_lines(port, &topic, &lines, 1).await });
    aggregated_at_least(metrics_port, 1_000.0).await;
    during(&mut gw).await;
    publisher.await.unwrap();
    let taken = aggregated_at_least(metrics_port, BURST as f64).await;
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    let agg = sub
        .wait_for(WAIT, |m| {
            m.topic == format!("building/hq/{device}/aggregated")
        })
        .await
        .unwrap_or_else(|| panic!("no aggregate for {device}"))
        .json();
    let t = &agg["metrics"]["temperature"];
    assert_eq!(t["count"], BURST, "{agg}");
    let n = BURST as f64;
    assert_eq!(t["avg"], (n + 1.0) / 2.0, "{agg}");
    assert_eq!(taken, n, "readings counted into the windows");
}

fn edit(gw: &GatewayProcess, from: &str, to: &str) {
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    assert!(text.contains(from), "{from:?} not in the config");
    std::fs::write(&gw.config_path, text.replacen(from, to, 1)).unwrap();
}

/// A reload storm (a config tool rewriting the file, a drop-in toggled)
/// restarting the adapter ten times during a 20 000-message QoS 1 burst:
/// each restart leaves messages read and not yet acknowledged, which the
/// broker resends to the next connection. Before, the windows took 25 000
/// to 65 000 readings in six runs of eight: the last acknowledgements of
/// each connection were lost at its close, and the messages read ahead of
/// their receipts grew past what the pipeline remembers to tell a copy by.
#[tokio::test]
async fn a_qos1_burst_across_ten_restarts_of_its_adapter_is_counted_once() {
    burst_across("burst-restarts", None, async |gw: &mut GatewayProcess| {
        for i in 0..10 {
            let (from, to) = if i % 2 == 0 {
                ("1s", "2s")
            } else {
                ("2s", "1s")
            };
            edit(
                gw,
                &format!("max_backoff = \"{from}\"\n\n[[device]]"),
                &format!("max_backoff = \"{to}\"\n\n[[device]]"),
            );
            gw.signal("HUP");
            gw.wait_for_log_count("Reloaded.", i + 1).await;
        }
        let restarts = gw
            .seen
            .iter()
            .filter(|l| l.contains("restarted=[\"local-sensors\"]"));
        assert_eq!(restarts.count(), 10, "each reload restarted the adapter");
    })
    .await;
}

/// Renamed back and forth, an adapter with its own `client_id` keeps its
/// broker session: what one name read and did not acknowledge, the broker
/// resends to the other, and it is a copy.
#[tokio::test]
async fn a_qos1_burst_across_renames_keeping_the_client_id_is_counted_once() {
    burst_across(
        "burst-rename-id",
        Some("sensors-session"),
        async |gw: &mut GatewayProcess| {
            for i in 0..10 {
                let (from, to) = if i % 2 == 0 {
                    ("local-sensors", "renamed")
                } else {
                    ("renamed", "local-sensors")
                };
                edit(
                    gw,
                    &format!("name = \"{from}\""),
                    &format!("name = \"{to}\""),
                );
                gw.signal("HUP");
                gw.wait_for_log_count("Reloaded.", i + 1).await;
            }
        },
    )
    .await;
}

/// An adapter replaced under its name by one of another type (an MQTT
/// relay by a TCP listener): what the old one said of its broker link must
/// not keep `/health` failing for the new one.
#[tokio::test]
async fn an_adapter_of_another_type_under_the_same_name_drops_the_old_link_state() {
    let upstream = Mosquitto::start();
    let metrics_port = free_port();
    // Nothing listens there: the MQTT adapter never connects.
    let dead = free_port();
    let mut gw = GatewayProcess::start(&cfg("gw-retype", dead, upstream.port(), metrics_port));
    gw.wait_for_log("Connected upstream.").await;
    http_until(metrics_port, "/health", |_, body| {
        body.contains("\"local-sensors\":\"connecting\"")
    })
    .await;

    let line_port = free_port();
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    let start = text.find("[[adapter]]").unwrap();
    let end = text.find("[[device]]").unwrap();
    let text = format!(
        "{}[[adapter]]\ntype = \"tcp_line\"\nname = \"local-sensors\"\nbind = \"127.0.0.1:{line_port}\"\nformat = \"kv\"\n\n{}",
        &text[..start],
        &text[end..]
    );
    std::fs::write(&gw.config_path, text).unwrap();
    gw.signal("HUP");
    gw.wait_for_log("Reloaded.").await;
    let (code, body) = http_until(metrics_port, "/health", |_, body| {
        !body.contains("\"local-sensors\":\"starting\"")
    })
    .await;
    assert!(
        body.contains("\"local-sensors\":\"running\""),
        "{code} {body}"
    );
    assert_eq!(code, 200, "{body}");
    let (_, m) = http_get(metrics_port, "/metrics").await;
    assert!(
        !m.contains("edge_gateway_adapter_connected{adapter=\"local-sensors\"}"),
        "the MQTT adapter's broker state is gone:\n{m}"
    );
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}
