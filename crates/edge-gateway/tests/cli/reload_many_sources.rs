//! Several QoS 1 adapters bursting at once across a storm of reloads that
//! restart all of them: what each left read and unacknowledged, its broker
//! resends to the next connection, and the pipeline must still know it as
//! taken while the other adapters take their own bursts meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::common;

use common::{http_until_within, GatewayProcess, WAIT};
use test_support::{free_port, metrics, publish_lines, Mosquitto, Options, Subscriber};

const ADAPTERS: usize = 8;
const BURST: usize = 8_000;
const RELOADS: usize = 16;

/// The toggled setting, marked so a reload touches the adapters only.
const TOGGLE: &str = "# restarts the adapter";

/// The gateway's sections of a reload test, before its adapters: QoS 1
/// upstream, windows of an hour (none closes during a test), a checkpoint
/// at every change.
pub(crate) fn gateway_sections(id: &str, upstream: u16, metrics: u16) -> String {
    format!(
        r#"
[gateway]
id = "{id}"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{upstream}"
qos = 1
topic_prefix = "building/{{site}}"
max_backoff = "1s"

[aggregation]
window = "1h"
grace = "1s"
checkpoint_interval = "0s"

[metrics]
bind = "127.0.0.1:{metrics}"
"#
    )
}

fn cfg(local: u16, upstream: u16, metrics: u16) -> String {
    let mut text = gateway_sections("gw-many", upstream, metrics);
    for i in 0..ADAPTERS {
        text += &format!(
            r#"
[[adapter]]
type = "mqtt"
name = "burst-{i}"
client_id = "burst-client-{i}"
url = "mqtt://127.0.0.1:{local}"
topics = ["b{i}/{{device}}/{{metric}}"]
max_backoff = "1s" {TOGGLE}
"#
        );
    }
    text
}

pub(crate) async fn readings_at_least(metrics_port: u16, n: f64) -> f64 {
    let readings = |body: &str| metrics::sum(body, "edge_gateway_aggregator_readings_total");
    let (_, body) = http_until_within(
        metrics_port,
        "/metrics",
        Duration::from_secs(300),
        |_, body| readings(body) >= n,
    )
    .await;
    readings(&body)
}

fn toggle(gw: &GatewayProcess, from: &str, to: &str) {
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    let from = format!("max_backoff = \"{from}\" {TOGGLE}");
    assert_eq!(text.matches(&from).count(), ADAPTERS, "{from:?}");
    let to = format!("max_backoff = \"{to}\" {TOGGLE}");
    std::fs::write(&gw.config_path, text.replace(&from, &to)).unwrap();
}

/// Eight adapters, each its own client id on one broker that lets every
/// message be in flight (as `max_inflight_messages 0` does), each taking an
/// 8 000-message QoS 1 burst at the same time, all restarted by sixteen
/// reloads spread over the bursts. One adapter leaves up to 2 048 messages
/// read and unacknowledged at a restart, for its broker to resend; eight
/// together left more than the 8 192 keys the pipeline then remembered of
/// every source at once, and the oldest copies were taken as new: 47 to
/// 424 readings too many in 5 runs of 5 (13 of 17 with variants of six or
/// eight adapters and eight or sixteen reloads).
#[tokio::test]
async fn qos1_bursts_of_eight_adapters_across_reloads_restarting_all_are_counted_once() {
    let local = Mosquitto::start_with(Options {
        max_inflight: Some(0),
        ..Options::default()
    });
    let upstream = Mosquitto::start();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/#").await;
    let metrics_port = free_port();
    let mut gw = GatewayProcess::start(&cfg(local.port(), upstream.port(), metrics_port));
    gw.wait_for_log_count("Subscribed", ADAPTERS).await;
    gw.wait_for_log("Connected upstream.").await;

    let lines: Vec<String> = (1..=BURST).map(|i| i.to_string()).collect();
    let publishers: Vec<_> = (0..ADAPTERS)
        .map(|i| {
            let (port, lines) = (local.port(), lines.clone());
            tokio::spawn(async move {
                publish_lines(port, &format!("b{i}/dev-{i}/temperature"), &lines, 1).await
            })
        })
        .collect();
    let total = (ADAPTERS * BURST) as f64;
    for i in 0..RELOADS {
        // Spread over the bursts: each reload once a further share is in.
        readings_at_least(metrics_port, total * (i + 1) as f64 / (RELOADS + 2) as f64).await;
        let (from, to) = if i % 2 == 0 {
            ("1s", "2s")
        } else {
            ("2s", "1s")
        };
        toggle(&gw, from, to);
        gw.signal("HUP");
        gw.wait_for_log_count("Reloaded.", i + 1).await;
    }
    let restarted_all = gw
        .seen
        .iter()
        .filter(|l| {
            l.contains("restarted=[")
                && (0..ADAPTERS).all(|i| l.contains(&format!("\"burst-{i}\"")))
        })
        .count();
    assert_eq!(
        restarted_all, RELOADS,
        "each reload restarted every adapter"
    );
    for p in publishers {
        p.await.unwrap();
    }
    let taken = readings_at_least(metrics_port, total).await;
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    assert_eq!(taken, total, "readings counted into the windows");
    let n = BURST as f64;
    let aggregate = |msgs: &[test_support::Message], i: usize| {
        let topic = format!("building/hq/dev-{i}/aggregated");
        msgs.iter().find(|m| m.topic == topic).map(|m| m.json())
    };
    // The devices' windows go out in any order.
    let got = sub
        .collect_until(WAIT, |msgs| {
            (0..ADAPTERS).all(|i| aggregate(msgs, i).is_some())
        })
        .await;
    for i in 0..ADAPTERS {
        let agg = aggregate(&got, i).unwrap_or_else(|| panic!("no aggregate for dev-{i}"));
        let t = &agg["metrics"]["temperature"];
        assert_eq!(t["count"], BURST, "dev-{i}: {agg}");
        assert_eq!(t["avg"], (n + 1.0) / 2.0, "dev-{i}: {agg}");
    }
}
