//! `type = "bacnet"` against bacpypes3 where a site differs from the plain
//! case (`tests/data/bacnet_peer.py`, one application per device): a
//! controller without ReadPropertyMultiple, a gateway on another subnet
//! registered as a foreign device with a BBMD, a COV notification for an
//! object the gateway did not subscribe to, and a flood of I-Am from
//! instances no device is configured for.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::bacnet::{avg, gateway_config, ok, window, PEER};
use crate::common;

use common::{http_until, GatewayProcess, WAIT};
use serde_json::json;
use test_support::metrics::sample;
use test_support::{free_port, Mosquitto, PythonPeer, Subscriber};

/// bacpypes3 answers ReadPropertyMultiple with Reject unrecognized-service
/// when it has no handler for it: names, units, present values and status
/// flags then come by ReadProperty, one property at a time, and every
/// value is exact.
#[tokio::test]
async fn a_device_without_read_property_multiple_is_read_exactly_by_read_property() {
    let upstream = Mosquitto::start();
    let metrics = free_port();
    let port = free_port();
    let layout = json!({ "devices": [
        { "instance": 4001, "port": port, "rpm": false, "count": 50, "objects": [
            { "type": "analogInput", "instance": 1, "name": "Return Air", "value": 19.375, "units": "degreesCelsius" },
            { "type": "analogValue", "instance": 2, "name": "Valve", "value": 37.5, "units": "percent" },
            { "type": "binaryInput", "instance": 3, "name": "Filter Alarm", "value": 1 },
            { "type": "multiStateValue", "instance": 4, "name": "Stage", "value": 3 },
        ]},
    ]});
    let _peer = PythonPeer::start_with_args(PEER, &[&layout.to_string()]);
    let body = format!(
        r#"
[[adapter]]
type = "bacnet"
name = "bms"
bind = "127.0.0.1:0"
poll = "500ms"
timeout = "1s"
retries = 1
max_backoff = "500ms"

[[bacnet.device]]
instance = 4001
address = "127.0.0.1:{port}"
id = "ahu-old"
"#
    );
    let mut sub = Subscriber::start(upstream.port(), "building/hq/+/aggregated").await;
    let mut gw = GatewayProcess::start(&gateway_config(upstream.port(), metrics, &body));
    gw.wait_for_log("rpm=false").await;
    let w = window(&mut sub, "ahu-old", |w| w.len() >= 54).await;
    assert_eq!(w.len(), 54, "{w:?}");
    assert_eq!(avg(&w, "return_air"), Some(19.375));
    assert_eq!(avg(&w, "valve"), Some(37.5));
    assert_eq!(avg(&w, "filter_alarm"), Some(1.0));
    assert_eq!(avg(&w, "stage"), Some(3.0));
    for i in 0..50 {
        assert_eq!(
            avg(&w, &format!("av_{}", 100 + i)),
            Some(f64::from(i)),
            "av-{}",
            100 + i
        );
    }
    let (_, text) = http_until(metrics, "/metrics", |_, b| {
        sample(
            b,
            "edge_gateway_bacnet_objects{adapter=\"bms\",device=\"ahu-old\"}",
        ) == Some(54.0)
    })
    .await;
    // The refusal is how RPM was found missing, not a fault of the device.
    assert_eq!(
        sample(
            &text,
            "edge_gateway_bacnet_device_up{adapter=\"bms\",device=\"ahu-old\"}"
        ),
        Some(1.0)
    );
}

/// bacpypes3's BBMDApplication on loopback: the gateway registers with it
/// (BVLC Register-Foreign-Device; the BBMD's foreign-device table then
/// holds the gateway's address and time-to-live), sends Who-Is as
/// Distribute-Broadcast-To-Network, and reads the device that answers,
/// which has no configured address.
#[tokio::test]
async fn registered_as_a_foreign_device_the_gateway_finds_and_reads_through_the_bbmd() {
    let upstream = Mosquitto::start();
    let metrics = free_port();
    let (port, local) = (free_port(), free_port());
    let layout = json!({ "devices": [
        { "instance": 5001, "port": port, "bbmd": true, "objects": [
            { "type": "analogInput", "instance": 1, "name": "Outside Air", "value": 4.25, "units": "degreesCelsius" },
        ]},
    ]});
    let mut peer = PythonPeer::start_with_args(PEER, &[&layout.to_string()]);
    let body = format!(
        r#"
[[adapter]]
type = "bacnet"
name = "bms"
bind = "127.0.0.1:{local}"
poll = "300ms"
timeout = "400ms"
retries = 0
max_backoff = "500ms"
bbmd = "127.0.0.1:{port}"
ttl = "60s"

[[bacnet.device]]
instance = 5001
"#
    );
    let mut sub = Subscriber::start(upstream.port(), "building/hq/+/aggregated").await;
    let mut gw = GatewayProcess::start(&gateway_config(upstream.port(), metrics, &body));
    gw.wait_for_log("Metrics endpoint listening").await;
    http_until(metrics, "/metrics", |_, b| {
        sample(b, "edge_gateway_bacnet_fdr_registered{adapter=\"bms\"}") == Some(1.0)
    })
    .await;
    peer.send_line("fdt 5001");
    let fdt = peer.next_line(WAIT).expect("the BBMD's table");
    assert_eq!(fdt, format!("fdt 127.0.0.1:{local} 60"));
    assert_eq!(peer.next_line(WAIT).as_deref(), Some("ok"));

    let w = window(&mut sub, "bacnet-5001", |w| w.contains_key("outside_air")).await;
    assert_eq!(avg(&w, "outside_air"), Some(4.25));
    ok(&mut peer, "set 5001 analogInput:1 5.5");
    window(&mut sub, "bacnet-5001", |w| {
        avg(w, "outside_air") == Some(5.5)
    })
    .await;
}

/// A notification with the gateway's process id for an object it did not
/// subscribe to (bacpypes3 builds it, the device's own subscriber's
/// address and process id) is dropped and counted as foreign; then three thousand
/// I-Am from instances no device is configured for are counted and
/// dropped, and the configured device goes on reporting.
#[tokio::test]
async fn a_notification_not_subscribed_and_a_flood_of_i_am_are_counted_and_dropped() {
    let upstream = Mosquitto::start();
    let metrics = free_port();
    let (port, local) = (free_port(), free_port());
    let layout = json!({ "devices": [
        { "instance": 6001, "port": port, "objects": [
            { "type": "analogValue", "instance": 1, "name": "Level", "value": 5.0, "cov_increment": 0.5 },
            { "type": "analogValue", "instance": 2, "name": "Other", "value": 7.0 },
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
instance = 6001
address = "127.0.0.1:{port}"
id = "tank"
objects = ["analog-value:1"]
cov = true
"#
    );
    let mut sub = Subscriber::start(upstream.port(), "building/hq/+/aggregated").await;
    let mut gw = GatewayProcess::start(&gateway_config(upstream.port(), metrics, &body));
    gw.wait_for_log("Metrics endpoint listening").await;
    let cov_foreign =
        "edge_gateway_adapter_errors_total{adapter=\"bms\",error_type=\"cov_foreign\"}";
    http_until(metrics, "/metrics", |_, b| {
        sample(
            b,
            "edge_gateway_bacnet_cov_subscriptions{adapter=\"bms\",device=\"tank\"}",
        ) == Some(1.0)
    })
    .await;

    ok(&mut peer, "stray 6001 analogValue:2 99.5");
    http_until(metrics, "/metrics", |_, b| {
        sample(b, cov_foreign) == Some(1.0)
    })
    .await;
    ok(&mut peer, "set 6001 analogValue:1 6.5");
    let w = window(&mut sub, "tank", |w| {
        w.get("level").and_then(|s| s["max"].as_f64()) == Some(6.5)
    })
    .await;
    assert!(!w.contains_key("other"), "{w:?}");

    // Each one counted: ignored, or (had the client's queue been full)
    // dropped as an overflow.
    let ignored = "edge_gateway_bacnet_i_am_ignored_total{adapter=\"bms\"}";
    let overflow = "edge_gateway_adapter_errors_total{adapter=\"bms\",error_type=\"overflow\"}";
    ok(&mut peer, &format!("iams {local} 100000 3000"));
    http_until(metrics, "/metrics", |_, b| {
        sample(b, ignored).unwrap_or(0.0) + sample(b, overflow).unwrap_or(0.0) == 3000.0
    })
    .await;
    ok(&mut peer, "set 6001 analogValue:1 8.0");
    let w = window(&mut sub, "tank", |w| {
        w.get("level").and_then(|s| s["max"].as_f64()) == Some(8.0)
    })
    .await;
    assert!(!w.contains_key("other"), "{w:?}");
    let (_, text) = http_until(metrics, "/metrics", |_, _| true).await;
    assert_eq!(sample(&text, cov_foreign), Some(1.0), "{text}");
}
