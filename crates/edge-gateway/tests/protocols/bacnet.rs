//! `type = "bacnet"` against the real binary, a real Mosquitto upstream
//! and bacpypes3 as the devices (an implementation independent of ours,
//! `tests/data/bacnet_peer.py`), each device a BACnet/IP application on
//! its own loopback port.
//!
//! Proven: analog, binary and multi-state present values reach upstream
//! exactly, named by object-name (a clash takes type and instance); a
//! device found by Who-Is and devices at a configured address; a 400-object
//! device without segmentation (object list read by index) and one whose
//! object list comes segmented, every value exact; an unknown object and
//! an out-of-service value are counted, not averaged in; a device that
//! vanishes goes offline while the others go on, and comes back; a device
//! on `poll = "1h"` with `cov = true` reports every change, and again after
//! it restarted (its subscriptions lost); forty changes of a fast-moving
//! value are forty readings, none folded or lost; on a fast poll, no value
//! COV delivered is read again as a reading. More sites in
//! `bacnet_faults.rs` (no RPM, a BBMD, a stray notification, an I-Am
//! flood) and the units at the outputs in `bacnet_outputs.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::BTreeMap;

use common::{http_until, GatewayProcess, WAIT};
use serde_json::{json, Value};
use test_support::metrics::{sample, sum_with};
use test_support::{free_port, Message, Mosquitto, PythonPeer, Subscriber};

pub(crate) const PEER: &str = include_str!("../data/bacnet_peer.py");

pub(crate) fn metrics_of(m: &Message) -> BTreeMap<String, Value> {
    m.json()["metrics"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

pub(crate) fn ok(peer: &mut PythonPeer, command: &str) {
    peer.send_line(command);
    let answer = peer.next_line(WAIT).expect("the peer answers");
    assert_eq!(answer, "ok", "{command}");
}

pub(crate) fn gateway_config(upstream: u16, metrics: u16, body: &str) -> String {
    format!(
        r#"
[gateway]
id = "gw-bacnet"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{upstream}"
qos = 1
topic_prefix = "building/{{site}}"
max_backoff = "1s"

[aggregation]
window = "1s"
grace = "0s"

[metrics]
bind = "127.0.0.1:{metrics}"
{body}
"#
    )
}

/// A window of `device` in which `check` holds.
pub(crate) async fn window(
    sub: &mut Subscriber,
    device: &str,
    check: impl Fn(&BTreeMap<String, Value>) -> bool,
) -> BTreeMap<String, Value> {
    let m = sub
        .wait_for(WAIT, |m| {
            m.json()["device"] == device && check(&metrics_of(m))
        })
        .await
        .unwrap_or_else(|| panic!("no such window of {device}"));
    metrics_of(&m)
}

pub(crate) fn avg(w: &BTreeMap<String, Value>, metric: &str) -> Option<f64> {
    w.get(metric)?["avg"].as_f64()
}

#[tokio::test]
async fn points_of_several_devices_large_object_lists_faults_and_a_device_that_vanishes() {
    let upstream = Mosquitto::start();
    let metrics = free_port();
    let (pa, pb, pc, pd) = (free_port(), free_port(), free_port(), free_port());
    let layout = json!({ "devices": [
        { "instance": 1001, "port": pa, "objects": [
            { "type": "analogInput", "instance": 1, "name": "Zone Temp", "value": 21.5, "units": "degreesCelsius" },
            { "type": "analogValue", "instance": 4, "name": "zone-temp", "value": 5.25 },
            { "type": "analogInput", "instance": 2, "name": "CO2", "value": 612.0, "units": "partsPerMillion" },
            { "type": "binaryInput", "instance": 2, "name": "Fan Status", "value": 1 },
            { "type": "binaryValue", "instance": 3, "name": "Alarm", "value": 0 },
            { "type": "multiStateValue", "instance": 3, "name": "Mode", "value": 3 },
            { "type": "multiStateInput", "instance": 1, "name": "Season", "value": 2 },
            { "type": "analogValue", "instance": 9, "name": "Setpoint", "value": 22.0 },
            { "type": "analogValue", "instance": 10, "name": "Left out", "value": 1.0 },
        ]},
        // 400 objects, no segmentation: the object list only by index.
        { "instance": 1002, "port": pb, "segmentation": "noSegmentation", "count": 400 },
        // 400 objects, segmented: the object list comes in segments.
        { "instance": 1003, "port": pc, "segmentation": "segmentedBoth", "count": 400 },
        { "instance": 1004, "port": pd, "objects": [
            { "type": "analogInput", "instance": 7, "name": "Supply Air", "value": 16.5 },
        ]},
    ]});
    let mut peer = PythonPeer::start_with_args(PEER, &[&layout.to_string()]);
    ok(&mut peer, "oos 1001 analogValue:9 1");

    let body = format!(
        r#"
[[adapter]]
type = "bacnet"
name = "bms"
bind = "127.0.0.1:0"
poll = "300ms"
timeout = "400ms"
retries = 0
max_backoff = "500ms"
# Loopback has no broadcast a bacpypes3 device bound to 127.0.0.1 hears:
# Who-Is goes to its own address, as to a subnet's broadcast address.
broadcast = ["127.0.0.1:{pa}"]

# Found by Who-Is.
[[bacnet.device]]
instance = 1001
id = "ahu-1"
name = "Air handler 1"
exclude = ["analog-value:10"]

[[bacnet.device]]
instance = 1002
address = "127.0.0.1:{pb}"
poll = "700ms"

[[bacnet.device]]
instance = 1003
address = "127.0.0.1:{pc}"
poll = "700ms"

[[bacnet.device]]
instance = 1004
address = "127.0.0.1:{pd}"
id = "vav-4"
objects = ["analog-input:7", "analog-input:99"]
"#
    );
    let mut sub = Subscriber::start(upstream.port(), "building/hq/+/aggregated").await;
    let mut gw = GatewayProcess::start(&gateway_config(upstream.port(), metrics, &body));
    gw.wait_for_log("BACnet client listening.").await;

    // Exact values, named by object-name; the clash takes type and
    // instance; binary 0/1, multi-state its number; out-of-service left
    // out; the excluded object not read.
    let ahu = window(&mut sub, "ahu-1", |w| w.contains_key("zone_temp_ai1")).await;
    assert_eq!(avg(&ahu, "zone_temp_ai1"), Some(21.5), "{ahu:?}");
    assert_eq!(avg(&ahu, "zone_temp_av4"), Some(5.25));
    assert_eq!(avg(&ahu, "co2"), Some(612.0));
    assert_eq!(avg(&ahu, "fan_status"), Some(1.0));
    assert_eq!(avg(&ahu, "alarm"), Some(0.0));
    assert_eq!(avg(&ahu, "mode"), Some(3.0));
    assert_eq!(avg(&ahu, "season"), Some(2.0));
    assert!(!ahu.contains_key("setpoint"), "out of service: {ahu:?}");
    assert!(!ahu.contains_key("left_out"), "excluded: {ahu:?}");
    assert_eq!(ahu.len(), 7, "{ahu:?}");

    // The two 400-object devices: every value exact.
    for device in ["bacnet-1002", "bacnet-1003"] {
        let w = window(&mut sub, device, |w| w.len() >= 400).await;
        assert_eq!(w.len(), 400, "{device}");
        for i in 0..400 {
            assert_eq!(
                avg(&w, &format!("av_{}", 100 + i)),
                Some(f64::from(i)),
                "{device} av-{}",
                100 + i
            );
        }
    }
    gw.wait_for_log("whole_list=false").await;

    // The unknown object is counted by class and code; the other object
    // of the device is read.
    let vav = window(&mut sub, "vav-4", |w| w.contains_key("supply_air")).await;
    assert_eq!(avg(&vav, "supply_air"), Some(16.5));
    let (_, text) = http_until(metrics, "/metrics", |_, b| {
        sample(b, "edge_gateway_bacnet_errors_total{adapter=\"bms\",device=\"vav-4\",class=\"object\",code=\"unknown-object\"}").is_some()
    })
    .await;
    assert!(sample(&text, "edge_gateway_bacnet_status_flags_total{adapter=\"bms\",device=\"ahu-1\",flag=\"out_of_service\"}").unwrap_or(0.0) >= 1.0, "{text}");
    assert_eq!(
        sample(
            &text,
            "edge_gateway_bacnet_objects{adapter=\"bms\",device=\"bacnet-1002\"}"
        ),
        Some(400.0)
    );

    // vav-4 vanishes: counted, offline, while ahu-1 goes on; it comes back.
    ok(&mut peer, "stop 1004");
    gw.wait_for_log("BACnet device offline").await;
    let (_, text) = http_until(metrics, "/metrics", |_, b| {
        sample(
            b,
            "edge_gateway_bacnet_device_up{adapter=\"bms\",device=\"vav-4\"}",
        ) == Some(0.0)
    })
    .await;
    assert!(
        sum_with(
            &text,
            "edge_gateway_adapter_errors_total",
            "error_type=\"timeout\""
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
    ok(&mut peer, "set 1001 analogInput:1 23.75");
    let ahu = window(&mut sub, "ahu-1", |w| {
        avg(w, "zone_temp_ai1") == Some(23.75)
    })
    .await;
    assert_eq!(avg(&ahu, "co2"), Some(612.0));
    ok(&mut peer, "start 1004");
    ok(&mut peer, "set 1004 analogInput:7 17.25");
    let vav = window(&mut sub, "vav-4", |w| avg(w, "supply_air") == Some(17.25)).await;
    assert!(vav.contains_key("supply_air"));
    http_until(metrics, "/metrics", |_, b| {
        sample(
            b,
            "edge_gateway_bacnet_device_up{adapter=\"bms\",device=\"vav-4\"}",
        ) == Some(1.0)
    })
    .await;

    // A failed sensor's NaN: no reading, counted as `not_finite` and said
    // so, not as an Error the device never sent (it was logged as the
    // device refusing the object, with a made-up class and code).
    ok(&mut peer, "set 1004 analogInput:7 nan");
    gw.wait_for_log("not a finite number").await;
    let (_, text) = http_until(metrics, "/metrics", |_, b| {
        sample(
            b,
            "edge_gateway_adapter_errors_total{adapter=\"bms\",error_type=\"not_finite\"}",
        )
        .is_some_and(|v| v >= 1.0)
    })
    .await;
    assert!(
        sample(&text, "edge_gateway_bacnet_errors_total{adapter=\"bms\",device=\"vav-4\",class=\"property\",code=\"invalid-data-type\"}").is_none(),
        "{text}"
    );
}

/// A binary present value is inactive (0) or active (1) and a multi-state
/// one a state from 1 to its number of states: a faulty device's binary 7
/// or multi-state 0 (or 9 of 4 states), polled or notified, is no reading,
/// counted as `out_of_range` and said (they were readings).
#[tokio::test]
async fn binary_and_multi_state_values_out_of_range_polled_or_notified_are_refused() {
    let upstream = Mosquitto::start();
    let metrics = free_port();
    let (pa, pb) = (free_port(), free_port());
    let layout = json!({ "devices": [
        // Polled.
        { "instance": 3001, "port": pa, "objects": [
            { "type": "multiStateValue", "instance": 3, "name": "Mode", "value": 3 },
            { "type": "binaryValue", "instance": 2, "name": "Pump", "value": 1 },
        ]},
        // Followed by COV; polled once an hour. (bacpypes3 refuses COV
        // on its multi-state objects.)
        { "instance": 3002, "port": pb, "objects": [
            { "type": "binaryValue", "instance": 1, "name": "Burner", "value": 0 },
        ]},
    ]});
    let mut peer = PythonPeer::start_with_args(PEER, &[&layout.to_string()]);
    let body = format!(
        r#"
[[adapter]]
type = "bacnet"
name = "bms"
bind = "127.0.0.1:0"
poll = "300ms"
timeout = "400ms"
retries = 0
max_backoff = "500ms"

[[bacnet.device]]
instance = 3001
address = "127.0.0.1:{pa}"
id = "plant"

[[bacnet.device]]
instance = 3002
address = "127.0.0.1:{pb}"
id = "boiler"
poll = "1h"
cov = true
"#
    );
    let mut sub = Subscriber::start(upstream.port(), "building/hq/+/aggregated").await;
    let mut gw = GatewayProcess::start(&gateway_config(upstream.port(), metrics, &body));
    let plant = window(&mut sub, "plant", |w| w.contains_key("mode")).await;
    assert_eq!(avg(&plant, "mode"), Some(3.0), "{plant:?}");
    assert_eq!(avg(&plant, "pump"), Some(1.0), "{plant:?}");
    http_until(metrics, "/metrics", |_, b| {
        sample(
            b,
            "edge_gateway_bacnet_cov_subscriptions{adapter=\"bms\",device=\"boiler\"}",
        ) == Some(1.0)
    })
    .await;
    let out_of_range =
        "edge_gateway_adapter_errors_total{adapter=\"bms\",error_type=\"out_of_range\"}";

    // Notified: a binary 7.
    ok(&mut peer, "raw 3002 binaryValue:1 7");
    gw.wait_for_log("no state of the object").await;
    http_until(metrics, "/metrics", |_, b| {
        sample(b, out_of_range) == Some(1.0)
    })
    .await;
    // Polled: a multi-state 0, then 9 of the 4 states bacpypes3 gives
    // the object, and a binary 7.
    ok(&mut peer, "raw 3001 multiStateValue:3 0");
    ok(&mut peer, "raw 3001 binaryValue:2 7");
    gw.wait_for_log_count("no state of the object", 3).await;
    let (_, text) = http_until(metrics, "/metrics", |_, b| {
        sample(b, out_of_range).is_some_and(|v| v >= 3.0)
    })
    .await;
    let now = sample(&text, out_of_range).unwrap();
    ok(&mut peer, "raw 3001 multiStateValue:3 9");
    ok(&mut peer, "set 3001 binaryValue:2 1");
    // The 9 alone now: counted at each poll.
    http_until(metrics, "/metrics", |_, b| {
        sample(b, out_of_range).is_some_and(|v| v >= now + 3.0)
    })
    .await;

    // Good values again: read; no window ever held a value out of range.
    ok(&mut peer, "set 3001 multiStateValue:3 2");
    ok(&mut peer, "set 3001 binaryValue:2 0");
    ok(&mut peer, "set 3002 binaryValue:1 1");
    let (mut plant_back, mut boiler_back) = (false, false);
    while !(plant_back && boiler_back) {
        let m = sub.next(WAIT).await.expect("windows of both devices");
        let w = metrics_of(&m);
        for (metric, lo, hi) in [("mode", 1.0, 4.0), ("pump", 0.0, 1.0), ("burner", 0.0, 1.0)] {
            if let Some(s) = w.get(metric) {
                let (min, max) = (s["min"].as_f64().unwrap(), s["max"].as_f64().unwrap());
                assert!(min >= lo && max <= hi, "{metric} {w:?}");
            }
        }
        plant_back |= m.json()["device"] == "plant"
            && avg(&w, "mode") == Some(2.0)
            && avg(&w, "pump") == Some(0.0);
        boiler_back |= m.json()["device"] == "boiler" && avg(&w, "burner") == Some(1.0);
    }
}

#[tokio::test]
async fn cov_on_a_slow_poll_reports_every_change_and_resubscribes_after_a_restart() {
    let upstream = Mosquitto::start();
    let metrics = free_port();
    let port = free_port();
    let layout = json!({ "devices": [
        { "instance": 2001, "port": port, "objects": [
            { "type": "analogValue", "instance": 1, "name": "Flow", "value": 10.0, "units": "litersPerSecond", "cov_increment": 0.5 },
            { "type": "binaryValue", "instance": 2, "name": "Pump", "value": 0 },
        ]},
    ]});
    let mut peer = PythonPeer::start_with_args(PEER, &[&layout.to_string()]);
    let body = format!(
        r#"
[[adapter]]
type = "bacnet"
name = "bms"
bind = "127.0.0.1:0"
poll = "1h"
timeout = "400ms"
retries = 0
max_backoff = "500ms"
cov_lifetime = "10s"

[[bacnet.device]]
instance = 2001
address = "127.0.0.1:{port}"
id = "pump-room"
cov = true
"#
    );
    let mut sub = Subscriber::start(upstream.port(), "building/hq/+/aggregated").await;
    let mut gw = GatewayProcess::start(&gateway_config(upstream.port(), metrics, &body));
    gw.wait_for_log("BACnet device found.").await;
    http_until(metrics, "/metrics", |_, b| {
        sample(
            b,
            "edge_gateway_bacnet_cov_subscriptions{adapter=\"bms\",device=\"pump-room\"}",
        ) == Some(2.0)
    })
    .await;
    // Each change, one a window: with a poll of an hour only COV brings it.
    for (i, v) in [11.0, 12.5, 14.0, 15.5, 17.0].into_iter().enumerate() {
        ok(&mut peer, &format!("set 2001 analogValue:1 {v}"));
        ok(
            &mut peer,
            &format!("set 2001 binaryValue:2 {}", (i + 1) % 2),
        );
        let w = window(&mut sub, "pump-room", |w| {
            w.get("flow").and_then(|s| s["max"].as_f64()) == Some(v)
        })
        .await;
        assert!(w.contains_key("flow"));
    }
    let (_, text) = http_until(metrics, "/metrics", |_, b| {
        sample(
            b,
            "edge_gateway_bacnet_cov_notifications_total{adapter=\"bms\"}",
        )
        .unwrap_or(0.0)
            >= 10.0
    })
    .await;
    assert!(text.contains("edge_gateway_bacnet_cov_notifications_total"));

    // The device restarts: its subscriptions are gone. The renewal (at
    // half the 10 s lifetime) subscribes again, and changes flow again.
    ok(&mut peer, "stop 2001");
    ok(&mut peer, "start 2001");
    let mut seen = false;
    for v in [
        30.0, 31.0, 32.0, 33.0, 34.0, 35.0, 36.0, 37.0, 38.0, 39.0, 40.0, 41.0,
    ] {
        ok(&mut peer, &format!("set 2001 analogValue:1 {v}"));
        let got = sub
            .wait_for(std::time::Duration::from_secs(2), |m| {
                m.json()["device"] == "pump-room"
                    && metrics_of(m).get("flow").and_then(|s| s["max"].as_f64()) == Some(v)
            })
            .await;
        if got.is_some() {
            seen = true;
            break;
        }
    }
    assert!(seen, "no change reported after the device restarted");
}

/// A value that moves faster than any poll (forty changes of a duct
/// pressure in a fraction of a second, the poll an hour): each change is a
/// COV notification and each one a reading, none folded or lost; the
/// windows upstream hold exactly the values the device took.
#[tokio::test]
async fn cov_reports_every_change_of_a_fast_moving_value_on_a_one_hour_poll() {
    let upstream = Mosquitto::start();
    let metrics = free_port();
    let port = free_port();
    let layout = json!({ "devices": [
        { "instance": 2101, "port": port, "objects": [
            { "type": "analogInput", "instance": 1, "name": "Duct Pressure", "value": 10.0, "units": "pascals", "cov_increment": 0.1 },
        ]},
    ]});
    let mut peer = PythonPeer::start_with_args(PEER, &[&layout.to_string()]);
    let body = format!(
        r#"
[[adapter]]
type = "bacnet"
name = "bms"
bind = "127.0.0.1:0"
poll = "1h"
timeout = "400ms"
retries = 0
cov_lifetime = "1h"

[[bacnet.device]]
instance = 2101
address = "127.0.0.1:{port}"
id = "duct"
cov = true
"#
    );
    let mut sub = Subscriber::start(upstream.port(), "building/hq/+/aggregated").await;
    let mut gw = GatewayProcess::start(&gateway_config(upstream.port(), metrics, &body));
    gw.wait_for_log("Metrics endpoint listening").await;
    let readings = "edge_gateway_adapter_readings_total{adapter=\"bms\"}";
    // The notification a subscription starts with (the first poll, made
    // as it is sent, only sees the device answers).
    http_until(metrics, "/metrics", |_, b| {
        sample(
            b,
            "edge_gateway_bacnet_cov_subscriptions{adapter=\"bms\",device=\"duct\"}",
        ) == Some(1.0)
            && sample(b, readings) == Some(1.0)
    })
    .await;

    // 10.5, 10.75, ... 20.25: exact in a BACnet REAL.
    let (start, step, n) = (10.5, 0.25, 40u32);
    ok(
        &mut peer,
        &format!("ramp 2101 analogInput:1 {start} {step} {n}"),
    );
    let want = 1 + u64::from(n);
    http_until(metrics, "/metrics", |_, b| {
        sample(b, readings) == Some(want as f64)
    })
    .await;

    // Every window of the device until all the readings are in one; a
    // window sent again (amended) counts once.
    let mut by_start: BTreeMap<String, (u64, f64, f64)> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while by_start.values().map(|w| w.0).sum::<u64>() < want {
        assert!(tokio::time::Instant::now() < deadline, "{by_start:?}");
        let Some(m) = sub.next(WAIT).await else { break };
        let j = m.json();
        if j["device"] != "duct" {
            continue;
        }
        let Some(s) = j["metrics"].get("duct_pressure") else {
            continue;
        };
        let count = s["count"].as_u64().unwrap();
        let sum = s["avg"].as_f64().unwrap() * count as f64;
        let max = s["max"].as_f64().unwrap();
        by_start.insert(j["window_start"].to_string(), (count, sum, max));
    }
    let count: u64 = by_start.values().map(|w| w.0).sum();
    let sum: f64 = by_start.values().map(|w| w.1).sum();
    let max = by_start.values().map(|w| w.2).fold(f64::MIN, f64::max);
    let ramp: f64 = (0..n).map(|i| start + f64::from(i) * step).sum();
    assert_eq!(count, want, "{by_start:?}");
    assert!(
        (sum - (10.0 + ramp)).abs() < 1e-6,
        "{sum} against {}",
        10.0 + ramp
    );
    assert_eq!(max, start + f64::from(n - 1) * step);
    let (_, text) = http_until(metrics, "/metrics", |_, b| {
        sample(
            b,
            "edge_gateway_bacnet_cov_notifications_total{adapter=\"bms\"}",
        )
        .is_some()
    })
    .await;
    assert_eq!(
        sample(
            &text,
            "edge_gateway_bacnet_cov_notifications_total{adapter=\"bms\"}"
        ),
        Some(f64::from(n) + 1.0),
        "one notification per change, and the first"
    );
}

/// With `cov = true` the poll only checks the device answers: a value
/// COV delivered is not read again as a reading at every poll (each was
/// counted and averaged into the windows once per poll). Objects of a
/// device on a fast poll, several polls: one reading each, the
/// notification a subscription starts with, and one per change.
#[tokio::test]
async fn cov_values_are_not_read_again_by_the_polls() {
    let upstream = Mosquitto::start();
    let metrics = free_port();
    let port = free_port();
    let layout = json!({ "devices": [
        { "instance": 2201, "port": port, "objects": [
            { "type": "analogValue", "instance": 1, "name": "Flow", "value": 10.0, "cov_increment": 0.5 },
            { "type": "binaryValue", "instance": 2, "name": "Pump", "value": 1 },
        ]},
    ]});
    let mut peer = PythonPeer::start_with_args(PEER, &[&layout.to_string()]);
    let body = format!(
        r#"
[[adapter]]
type = "bacnet"
name = "bms"
bind = "127.0.0.1:0"
poll = "100ms"
timeout = "400ms"
retries = 0
cov_lifetime = "1h"

[[bacnet.device]]
instance = 2201
address = "127.0.0.1:{port}"
id = "pumps"
cov = true
"#
    );
    let mut gw = GatewayProcess::start(&gateway_config(upstream.port(), metrics, &body));
    gw.wait_for_log("BACnet device found.").await;
    let readings = "edge_gateway_adapter_readings_total{adapter=\"bms\"}";
    let notifications = "edge_gateway_bacnet_cov_notifications_total{adapter=\"bms\"}";
    // Messages received: polls and notifications. Twenty polls on.
    let received = "edge_gateway_adapter_received_messages_total{adapter=\"bms\"}";
    let (_, text) = http_until(metrics, "/metrics", |_, b| {
        sample(b, notifications) == Some(2.0) && sample(b, received).is_some_and(|v| v >= 22.0)
    })
    .await;
    assert_eq!(sample(&text, readings), Some(2.0), "{text}");

    ok(&mut peer, "set 2201 analogValue:1 12.5");
    let (_, text) = http_until(metrics, "/metrics", |_, b| {
        sample(b, notifications) == Some(3.0)
    })
    .await;
    let polled = sample(&text, received).unwrap();
    let (_, text) = http_until(metrics, "/metrics", |_, b| {
        sample(b, received).is_some_and(|v| v >= polled + 10.0)
    })
    .await;
    assert_eq!(sample(&text, readings), Some(3.0), "{text}");
    assert_eq!(
        sample(
            &text,
            "edge_gateway_adapter_errors_total{adapter=\"bms\",error_type=\"cov_silent\"}"
        ),
        None,
        "{text}"
    );
}

/// The client's commands (for the cloud commands of issue #56): a write at
/// a priority wins over the relinquish default, and relinquishing that
/// priority gives the default back, read from bacpypes3's own priority
/// array; a write to an object the device lacks is its error, not a panic.
#[tokio::test]
async fn write_property_at_a_priority_and_relinquish_against_bacpypes3() {
    use adapters::bacnet::client::{Client, ClientError};
    use adapters::bacnet::services::PropertyRef;
    use adapters::bacnet::tags::{property, ObjectId, Value as BacValue};

    let port = free_port();
    let layout = json!({ "devices": [
        { "instance": 3001, "port": port, "objects": [
            { "type": "analogOutput", "instance": 1, "name": "Damper", "value": 20.0, "units": "percent" },
        ]},
    ]});
    let _peer = PythonPeer::start_with_args(PEER, &[&layout.to_string()]);
    let (tx, _events) = tokio::sync::mpsc::channel(16);
    let stop = tokio_util::sync::CancellationToken::new();
    let client = Client::start(
        "127.0.0.1:0".parse().unwrap(),
        std::time::Duration::from_secs(2),
        1,
        tx,
        stop.clone(),
    )
    .await
    .unwrap();
    let peer: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ao = "analog-output:1".parse::<ObjectId>().unwrap();
    let pv = || client.read_property(peer, ao, PropertyRef::whole(property::PRESENT_VALUE));

    assert_eq!(pv().await.unwrap(), [BacValue::Real(20.0)]);
    client
        .write_property(peer, ao, &BacValue::Real(65.5), Some(8))
        .await
        .unwrap();
    assert_eq!(pv().await.unwrap(), [BacValue::Real(65.5)]);
    client.relinquish(peer, ao, 8).await.unwrap();
    assert_eq!(
        pv().await.unwrap(),
        [BacValue::Real(20.0)],
        "back to the relinquish default"
    );

    let missing = "analog-output:99".parse::<ObjectId>().unwrap();
    let err = client
        .write_property(peer, missing, &BacValue::Real(1.0), Some(8))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Error(_)), "{err:?}");
    stop.cancel();
}
