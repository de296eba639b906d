//! SIGHUP with the real binary, against what adapters leave behind: what
//! an adapter reported of its link does not outlive it when a reload
//! replaces it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{config, http_get, http_until, GatewayProcess};
use test_support::{free_port, Mosquitto};

/// One open window for the whole test, forwarded (partial) at SIGTERM.
fn cfg(gateway: &str, local: u16, upstream: u16, metrics: u16) -> String {
    config(gateway, local, upstream, "1h", "1s").replace(
        "grace = \"1s\"",
        "grace = \"1s\"\ncheckpoint_interval = \"0s\"",
    ) + &format!("\n[metrics]\nbind = \"127.0.0.1:{metrics}\"\n")
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
