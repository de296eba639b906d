//! `type = "bacnet"` attacked from outside (issue 68, G and H), every
//! forged message built by bacpypes3 (`tests/data/bacnet_peer.py`), the
//! stranger its own bacpypes3 application on a port of its own.
//!
//! Proven: a COV notification is taken only from the subscribed device's
//! address, for its instance and for the object subscribed under that
//! process id (one per subscription); a stranger's notifications,
//! confirmed (answered with an Error, not a SimpleACK) or unconfirmed, a
//! thousand copies of one, another object's value under one object's
//! process id and a notification claiming another device become no
//! reading and are counted by reason; the device's own changes still come
//! through.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::bacnet::{gateway_config, metrics_of, ok, PEER};
use crate::common;

use common::{http_until, GatewayProcess, WAIT};
use serde_json::json;
use test_support::metrics::sample;
use test_support::{free_port, Mosquitto, PythonPeer, Subscriber};

#[tokio::test]
async fn cov_notifications_from_a_stranger_or_for_another_device_or_object_are_refused_and_counted()
{
    let upstream = Mosquitto::start();
    let metrics = free_port();
    let (port, stranger, local) = (free_port(), free_port(), free_port());
    let layout = json!({ "devices": [
        { "instance": 7001, "port": port, "objects": [
            { "type": "analogValue", "instance": 1, "name": "Level", "value": 5.0, "cov_increment": 0.5 },
            { "type": "analogValue", "instance": 2, "name": "Other", "value": 7.0, "cov_increment": 0.5 },
        ]},
    ]});
    let mut peer = PythonPeer::start_with_args(PEER, &[&layout.to_string()]);
    let body = format!(
        r#"
[[adapter]]
type = "bacnet"
name = "bms"
bind = "127.0.0.1:{local}"
poll = "1h"
timeout = "400ms"
retries = 0
cov_lifetime = "1h"

[[bacnet.device]]
instance = 7001
address = "127.0.0.1:{port}"
id = "tank"
objects = ["analog-value:1", "analog-value:2"]
cov = true
"#
    );
    let mut sub = Subscriber::start(upstream.port(), "building/hq/+/aggregated").await;
    let mut gw = GatewayProcess::start(&gateway_config(upstream.port(), metrics, &body));
    gw.wait_for_log("Metrics endpoint listening").await;
    http_until(metrics, "/metrics", |_, b| {
        sample(
            b,
            "edge_gateway_bacnet_cov_subscriptions{adapter=\"bms\",device=\"tank\"}",
        ) == Some(2.0)
    })
    .await;

    let forge = |peer: &mut PythonPeer, args: &str| {
        peer.send_line(&format!("forge {args}"));
    };
    // A stranger that knows the process id: unconfirmed, then confirmed,
    // which it must not see acknowledged as if taken.
    forge(
        &mut peer,
        &format!("7001 {stranger} analogValue:1 analogValue:1 7001 999 unconfirmed 1"),
    );
    assert_eq!(peer.next_line(WAIT).as_deref(), Some("ok"));
    forge(
        &mut peer,
        &format!("7001 {stranger} analogValue:1 analogValue:1 7001 998 confirmed 1"),
    );
    let answer = peer.next_line(WAIT).expect("the stranger's answer");
    assert!(
        answer.starts_with("answer error") && answer.contains("unknown-subscription"),
        "{answer}"
    );
    assert_eq!(peer.next_line(WAIT).as_deref(), Some("ok"));
    // From the device's own address: another object's value under the
    // process id of analog-value:1, and a notification claiming to come
    // from another device.
    ok(
        &mut peer,
        "forge 7001 self analogValue:1 analogValue:2 7001 777 unconfirmed 1",
    );
    ok(
        &mut peer,
        "forge 7001 self analogValue:1 analogValue:1 7002 555 unconfirmed 1",
    );
    // A thousand copies from the stranger.
    ok(
        &mut peer,
        &format!("forge 7001 {stranger} analogValue:1 analogValue:1 7001 997 unconfirmed 1000"),
    );
    let foreign = |reason: &str| {
        format!("edge_gateway_bacnet_cov_foreign_total{{adapter=\"bms\",reason=\"{reason}\"}}")
    };
    let overflow = "edge_gateway_adapter_errors_total{adapter=\"bms\",error_type=\"overflow\"}";
    let (_, text) = http_until(metrics, "/metrics", |_, b| {
        sample(b, &foreign("address")).unwrap_or(0.0) + sample(b, overflow).unwrap_or(0.0) == 1002.0
            && sample(b, &foreign("object")) == Some(1.0)
            && sample(b, &foreign("device")) == Some(1.0)
    })
    .await;
    assert_eq!(
        sample(
            &text,
            "edge_gateway_adapter_errors_total{adapter=\"bms\",error_type=\"cov_foreign\"}"
        )
        .unwrap_or(0.0)
            + sample(&text, overflow).unwrap_or(0.0),
        1004.0,
        "{text}"
    );

    // The device's own change comes through; no forged value ever did.
    ok(&mut peer, "set 7001 analogValue:1 6.5");
    let mut forged = Vec::new();
    let got = sub
        .wait_for(WAIT, |m| {
            if m.json()["device"] != "tank" {
                return false;
            }
            let w = metrics_of(m);
            for (metric, stats) in &w {
                for k in ["min", "max"] {
                    if let Some(v) = stats[k].as_f64() {
                        if [999.0, 998.0, 997.0, 777.0, 555.0].contains(&v) {
                            forged.push(format!("{metric} {k} {v}"));
                        }
                    }
                }
            }
            w.get("level").and_then(|s| s["max"].as_f64()) == Some(6.5)
        })
        .await;
    assert!(got.is_some(), "the device's own change");
    assert!(forged.is_empty(), "forged values upstream: {forged:?}");
    let (_, text) = http_until(metrics, "/metrics", |_, _| true).await;
    assert_eq!(
        sample(
            &text,
            "edge_gateway_adapter_errors_total{adapter=\"bms\",error_type=\"cov_unknown\"}"
        )
        .unwrap_or(0.0),
        0.0,
        "every forged one was told apart as foreign: {text}"
    );
}

/// bacpypes3 devices whose answers do not match the request: one lists
/// the first object asked twice in its ReadPropertyMultiple answer (the
/// second time with 777), one files the last object's results under an
/// object not asked, and one without ReadPropertyMultiple answers a
/// ReadProperty of one present value under another object.
/// Each poll gives one value per object asked, never the doubled one, and
/// every discrepancy is counted.
#[tokio::test]
async fn read_property_multiple_answers_with_an_object_twice_or_under_ids_not_asked_are_counted() {
    let upstream = Mosquitto::start();
    let metrics = free_port();
    let (twice, renamed) = (free_port(), free_port());
    let objects = json!([
        { "type": "analogValue", "instance": 1, "name": "Flow", "value": 21.5 },
        { "type": "analogValue", "instance": 2, "name": "Head", "value": 3.0 },
    ]);
    let rp = free_port();
    let layout = json!({ "devices": [
        { "instance": 7101, "port": twice, "rpm_answer": "twice", "objects": objects },
        { "instance": 7102, "port": renamed, "rpm_answer": "renamed", "objects": objects },
        // Without ReadPropertyMultiple: the ReadProperty answer is renamed.
        { "instance": 7103, "port": rp, "rpm": false, "rp_answer": "renamed", "objects": objects },
    ]});
    let _peer = PythonPeer::start_with_args(PEER, &[&layout.to_string()]);
    let body = format!(
        r#"
[[adapter]]
type = "bacnet"
name = "bms"
bind = "127.0.0.1:0"
poll = "200ms"
timeout = "400ms"
retries = 0

[[bacnet.device]]
instance = 7101
address = "127.0.0.1:{twice}"
id = "pump-1"

[[bacnet.device]]
instance = 7102
address = "127.0.0.1:{renamed}"
id = "pump-2"

[[bacnet.device]]
instance = 7103
address = "127.0.0.1:{rp}"
id = "pump-3"
"#
    );
    let mut sub = Subscriber::start(upstream.port(), "building/hq/+/aggregated").await;
    let mut gw = GatewayProcess::start(&gateway_config(upstream.port(), metrics, &body));
    gw.wait_for_log("Metrics endpoint listening").await;
    // A whole window of polls of each (the first may start mid-poll).
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    let mut windows = Vec::new();
    sub.wait_for(WAIT, |m| {
        let device = m.json()["device"].as_str().unwrap_or_default().to_string();
        let n = seen.entry(device.clone()).or_default();
        *n += 1;
        if *n >= 2 {
            windows.push((device, metrics_of(m)));
        }
        ["pump-1", "pump-2", "pump-3"]
            .iter()
            .all(|d| windows.iter().any(|(w, _)| w == d))
    })
    .await
    .expect("windows of every device");
    for (device, w) in &windows {
        let flow = &w["flow"];
        assert_eq!(flow["max"].as_f64(), Some(21.5), "{device}: {w:?}");
        assert_eq!(flow["min"].as_f64(), Some(21.5), "{device}: {w:?}");
        if device == "pump-1" {
            assert_eq!(
                flow["count"], w["head"]["count"],
                "one value per object per poll: {w:?}"
            );
        } else {
            assert!(!w.contains_key("head"), "{w:?}");
        }
    }
    let error = |t: &str| {
        format!("edge_gateway_adapter_errors_total{{adapter=\"bms\",error_type=\"answer_{t}\"}}")
    };
    let (_, text) = http_until(metrics, "/metrics", |_, b| {
        ["duplicate", "unasked", "missing"]
            .iter()
            .all(|t| sample(b, &error(t)).unwrap_or(0.0) >= 2.0)
    })
    .await;
    // A device answering one object wrongly is still read, not offline.
    assert_eq!(
        sample(
            &text,
            "edge_gateway_bacnet_device_up{adapter=\"bms\",device=\"pump-3\"}"
        ),
        Some(1.0),
        "{text}"
    );
}
