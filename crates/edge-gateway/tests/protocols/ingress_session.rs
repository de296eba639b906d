//! The local broker keeps the gateway's QoS 1 readings while either side
//! restarts: the ingress adapter holds a persistent MQTT session.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{config, GatewayProcess, WAIT};
use test_support::{publish, Message, Mosquitto, Subscriber};

fn count(msgs: &[Message], device: &str) -> u64 {
    msgs.iter()
        .filter(|m| m.topic == format!("building/hq/{device}/aggregated"))
        .map(|m| {
            m.json()["metrics"]["temperature"]["count"]
                .as_u64()
                .unwrap()
        })
        .sum()
}

#[tokio::test]
async fn readings_published_while_the_local_broker_restarts_are_not_lost() {
    let mut local = Mosquitto::start_persistent();
    let upstream = Mosquitto::start();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/#").await;
    let mut gw = GatewayProcess::start(&config(
        "gw-lrestart",
        local.port(),
        upstream.port(),
        "1s",
        "0s",
    ));
    gw.wait_for_log("Subscribed").await;
    publish(
        local.port(),
        "sensors/data/lr-dev/temperature",
        "1",
        1,
        false,
    )
    .await;
    // Once it is forwarded, its PUBACK has long reached the broker (a restart
    // under in-flight readings is in crash.rs).
    sub.wait_for(WAIT, |m| m.topic == "building/hq/lr-dev/aggregated")
        .await
        .expect("first reading forwarded");
    local.restart();
    // Published before the gateway is back: the broker holds them for its session.
    for v in ["2", "3", "4"] {
        publish(local.port(), "sensors/data/lr-dev/temperature", v, 1, false).await;
    }
    let got = sub.collect_until(WAIT, |m| count(m, "lr-dev") >= 3).await;
    assert_eq!(count(&got, "lr-dev"), 3, "{}", gw.seen.join("\n"));
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

#[tokio::test]
async fn readings_published_while_the_gateway_restarts_are_not_lost() {
    let local = Mosquitto::start_persistent();
    let upstream = Mosquitto::start();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/#").await;
    let cfg = config("gw-grestart", local.port(), upstream.port(), "1s", "0s");
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Subscribed").await;
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    for v in ["5", "6", "7"] {
        publish(local.port(), "sensors/data/gr-dev/temperature", v, 1, false).await;
    }
    let mut gw = GatewayProcess::start_in(gw.dir, &cfg);
    let got = sub.collect_until(WAIT, |m| count(m, "gr-dev") >= 3).await;
    assert_eq!(count(&got, "gr-dev"), 3);
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// A broker that stops answering without closing its sockets (a wedged
/// process, a path that drops every packet) is noticed by the keep-alive:
/// a PINGREQ unanswered for a keep-alive period ends the connection, and
/// the adapter connects again once the broker answers. Without it the
/// adapter would wait on a dead socket until TCP gave up, many minutes.
#[tokio::test]
async fn a_frozen_local_broker_is_noticed_by_the_keep_alive_and_left() {
    let local = Mosquitto::start_persistent();
    let upstream = Mosquitto::start();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/#").await;
    let cfg = config("gw-frozen", local.port(), upstream.port(), "1s", "0s").replacen(
        "name = \"local-sensors\"",
        "name = \"local-sensors\"\nkeep_alive = \"1s\"\nqos = 1",
        1,
    );
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Subscribed").await;
    local.freeze();
    gw.wait_for_log("no PINGRESP within the keep-alive").await;
    local.thaw();
    gw.wait_for_log_count("Subscribed", 2).await;
    publish(
        local.port(),
        "sensors/data/frozen/temperature",
        "5",
        1,
        false,
    )
    .await;
    let got = sub.collect_until(WAIT, |m| count(m, "frozen") >= 1).await;
    assert_eq!(count(&got, "frozen"), 1, "{}", gw.seen.join("\n"));
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}
