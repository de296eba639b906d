//! The real binary between two real Mosquitto brokers, driven by
//! mosquitto_pub and observed with mosquitto_sub.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::BTreeMap;

use common::{close, config, stats, GatewayProcess, WAIT};
use test_support::{publish, publish_lines, Message, Mosquitto, Subscriber};

const LIVING: &str = "a2:b2:c2:d2:e2:f2";

use common::now_ms;

/// Starts both brokers, a subscriber on the upstream side, and the gateway,
/// and waits until the gateway is subscribed locally and online upstream.
async fn setup(
    gateway_id: &str,
    window: &str,
    grace: &str,
) -> (Mosquitto, Mosquitto, Subscriber, GatewayProcess) {
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/#").await;
    let mut gw = GatewayProcess::start(&config(
        gateway_id,
        local.port(),
        upstream.port(),
        window,
        grace,
    ));
    gw.wait_for_log("Subscribed").await;
    let status_topic = format!("building/hq/gateway/{gateway_id}/status");
    sub.wait_for(WAIT, |m| m.topic == status_topic && m.payload == "online")
        .await
        .expect("retained online status");
    (local, upstream, sub, gw)
}

fn aggregates(messages: &[Message], device: &str) -> Vec<serde_json::Value> {
    let topic = format!("building/hq/{device}/aggregated");
    messages
        .iter()
        .filter(|m| m.topic == topic)
        .map(Message::json)
        .collect()
}

#[tokio::test]
async fn window_statistics_equal_a_direct_computation() {
    let (local, _up, mut sub, mut gw) = setup("gw-stats", "1s", "3s").await;

    // Event-timed readings spread over two whole windows starting at the next second.
    let w0 = (now_ms() / 1000 + 1) * 1000;
    let mut rng = 0x1234_5678_9abc_def1_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % 10_000) as f64 / 100.0
    };
    let mut sent: BTreeMap<(i64, &str), Vec<f64>> = BTreeMap::new();
    let mut lines = Vec::new();
    for i in 0..40 {
        let ts = w0 + i * 50; // 40 × 50 ms = two 1 s windows
        let (t, h) = (15.0 + next() / 10.0, 30.0 + next() / 3.0);
        let window = ts / 1000 * 1000;
        sent.entry((window, "temperature")).or_default().push(t);
        sent.entry((window, "humidity")).or_default().push(h);
        lines.push(format!(r#"{{"temperature":{t},"humidity":{h},"ts":{ts}}}"#));
    }
    publish_lines(local.port(), &format!("sensors/{LIVING}"), &lines, 1).await;

    let got = sub
        .collect_until(WAIT, |m| aggregates(m, LIVING).len() >= 2)
        .await;
    let aggs = aggregates(&got, LIVING);
    assert_eq!(aggs.len(), 2, "expected two windows, got {aggs:#?}");
    let mut ids = std::collections::HashSet::new();
    for agg in &aggs {
        assert_eq!(agg["gateway"], "gw-stats");
        assert_eq!(agg["device"], LIVING);
        assert_eq!(agg["name"], "Living Room");
        assert_eq!(agg["tags"]["room"], "living");
        assert!(
            ids.insert(agg["id"].as_str().unwrap().to_string()),
            "ids are unique per window"
        );
        let start = chrono_ms(agg["window_start"].as_str().unwrap());
        let end = chrono_ms(agg["window_end"].as_str().unwrap());
        assert_eq!(end - start, 1000);
        for metric in ["temperature", "humidity"] {
            let values = &sent[&(start, metric)];
            let (n, avg, min, max, std) = stats(values);
            let m = &agg["metrics"][metric];
            assert_eq!(
                m["count"].as_u64().unwrap() as usize,
                n,
                "{metric} count in {agg}"
            );
            for (key, want) in [("avg", avg), ("min", min), ("max", max), ("std", std)] {
                let got = m[key].as_f64().unwrap();
                assert!(close(got, want), "{metric}.{key}: got {got}, want {want}");
            }
        }
    }
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// Parses the RFC 3339 UTC timestamps of the contract (`...T10:00:00Z`).
fn chrono_ms(s: &str) -> i64 {
    let (date, time) = s.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms: i64 = format!("{frac:0<3}")[..3].parse().unwrap();
    ((days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) * 1000) + ms
}

#[tokio::test]
async fn every_payload_form_is_read_and_garbage_is_not() {
    let (local, _up, mut sub, mut gw) = setup("gw-forms", "1s", "1s").await;
    let p = local.port();

    // Plain numbers, one metric per topic (the seed course's layout).
    let plain: Vec<String> = (0..10)
        .map(|i| format!("{}", 20.0 + i as f64 / 10.0))
        .collect();
    publish_lines(p, "sensors/data/node-1/temperature", &plain, 1).await;
    // CSV from the seed ESP32 node.
    publish(p, "esp32/esp-7/csv", "21.3,1013.2,45.1,12000", 1, false).await;
    publish(p, "esp32/esp-7/csv", "21.5,1013.0,45.3,12100", 1, false).await;
    // SenML with a base name naming the device.
    publish(p, "senml/x", r#"[{"bn":"senml-dev:","n":"temperature","u":"Cel","v":22.5},{"n":"humidity","u":"%RH","v":41}]"#, 1, false).await;
    // Zigbee2MQTT: numbers and booleans count, the rest is ignored.
    publish(p, "zigbee2mqtt/hall-sensor", r#"{"temperature":19.5,"humidity":55,"linkquality":87,"occupancy":true,"update":{"state":"idle"}}"#, 1, false).await;
    // Garbage on every route: none of it may reach a window.
    for (topic, payload) in [
        ("sensors/data/node-1/temperature", "NaN"),
        ("sensors/data/node-1/temperature", "warm"),
        ("sensors/data/node-1/temperature", "1e400"),
        ("sensors/node-1", "{not json"),
        ("esp32/esp-7/csv", "1,2,3"),
        ("senml/x", "{}"),
    ] {
        publish(p, topic, payload, 1, false).await;
    }
    // A Python sender's NaN: the finite field survives, the NaN does not.
    publish(
        p,
        "sensors/node-2",
        r#"{"temperature": NaN, "humidity": 40}"#,
        1,
        false,
    )
    .await;

    let expected: BTreeMap<(&str, &str), (u64, f64)> = [
        (
            ("node-1", "temperature"),
            (10, plain.iter().map(|v| v.parse::<f64>().unwrap()).sum()),
        ),
        (("esp-7", "temperature"), (2, 42.8)),
        (("esp-7", "gas"), (2, 24100.0)),
        (("senml-dev", "temperature"), (1, 22.5)),
        (("senml-dev", "humidity"), (1, 41.0)),
        (("hall-sensor", "temperature"), (1, 19.5)),
        (("hall-sensor", "occupancy"), (1, 1.0)),
        (("node-2", "humidity"), (1, 40.0)),
    ]
    .into_iter()
    .collect();
    let totals = |msgs: &[Message]| {
        let mut t: BTreeMap<(String, String), (u64, f64)> = BTreeMap::new();
        for m in msgs.iter().filter(|m| m.topic.ends_with("/aggregated")) {
            let j = m.json();
            let device = j["device"].as_str().unwrap().to_string();
            for (metric, s) in j["metrics"].as_object().unwrap() {
                let e = t.entry((device.clone(), metric.clone())).or_default();
                let n = s["count"].as_u64().unwrap();
                e.0 += n;
                e.1 += n as f64 * s["avg"].as_f64().unwrap();
            }
        }
        t
    };
    let got = sub
        .collect_until(WAIT, |m| {
            let t = totals(m);
            expected.iter().all(|((d, k), (n, _))| {
                t.get(&(d.to_string(), k.to_string()))
                    .is_some_and(|v| v.0 >= *n)
            })
        })
        .await;
    let t = totals(&got);
    for ((d, k), (n, sum)) in &expected {
        let (gn, gsum) = t
            .get(&(d.to_string(), k.to_string()))
            .copied()
            .unwrap_or_default();
        assert_eq!(gn, *n, "{d}/{k} count; all: {t:#?}");
        assert!(close(gsum, *sum), "{d}/{k} sum {gsum} != {sum}");
    }
    assert!(
        !t.contains_key(&("node-2".to_string(), "temperature".to_string())),
        "NaN was aggregated"
    );
    gw.signal("TERM");
    assert_eq!(
        gw.wait_exit().await,
        Some(0),
        "gateway survived the garbage and stopped cleanly"
    );
}

/// A Tasmota plug with an energy monitor and a climate sensor, as its
/// firmware publishes them (its `tele/<topic>/SENSOR` telemetry, nested
/// per sensor, and its retained Last Will on `tele/<topic>/LWT`): the
/// topic alone says it is Tasmota, the nested values are read under the
/// names its console shows, and the Last Will is the device's status.
#[tokio::test]
async fn a_tasmota_plugs_telemetry_and_last_will_are_read() {
    let (local, _up, mut sub, mut gw) = setup("gw-tasmota", "1s", "1s").await;
    let p = local.port();
    let device = "tasmota_1A2B3C";
    for (power, temperature) in [(45, 21.6), (47, 21.8)] {
        let sensor = format!(
            r#"{{"Time":"2026-11-30T18:00:00","ENERGY":{{"TotalStartTime":"2026-10-29T20:47:05","Total":12.345,"Power":{power},"Voltage":[230,231,229]}},"AM2301":{{"Temperature":{temperature},"Humidity":58.3}},"TempUnit":"C"}}"#
        );
        publish(p, &format!("tele/{device}/SENSOR"), &sensor, 1, false).await;
    }
    let wanted = [
        "ENERGY_Power",
        "ENERGY_Voltage_2",
        "AM2301_Temperature",
        "ENERGY_Total",
    ];
    let sums = |msgs: &[Message]| {
        let mut t: BTreeMap<String, (u64, f64)> = BTreeMap::new();
        for j in aggregates(msgs, device) {
            for (metric, s) in j["metrics"].as_object().unwrap() {
                let e = t.entry(metric.clone()).or_default();
                let n = s["count"].as_u64().unwrap();
                e.0 += n;
                e.1 += n as f64 * s["avg"].as_f64().unwrap();
            }
        }
        t
    };
    let got = sub
        .collect_until(WAIT, |m| {
            let t = sums(m);
            wanted.iter().all(|k| t.get(*k).is_some_and(|v| v.0 >= 2))
        })
        .await;
    let t = sums(&got);
    for (metric, sum) in [
        ("ENERGY_Power", 92.0),
        ("ENERGY_Voltage_2", 458.0),
        ("AM2301_Temperature", 43.4),
        ("ENERGY_Total", 24.69),
    ] {
        let (n, s) = t.get(metric).copied().unwrap_or_default();
        assert_eq!(n, 2, "{metric}: {t:#?}");
        assert!(close(s, sum), "{metric} sum {s} != {sum}");
    }
    assert!(
        !t.contains_key("TempUnit") && !t.contains_key("ENERGY_TotalStartTime"),
        "text read as a value: {t:#?}"
    );
    publish(p, &format!("tele/{device}/LWT"), "Offline", 1, true).await;
    let status = sub
        .wait_for(WAIT, |m| m.topic == format!("building/hq/{device}/status"))
        .await
        .expect("the Last Will forwarded as the device's status");
    assert_eq!(status.json()["state"].as_str(), Some("offline"));
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

#[tokio::test]
async fn last_will_says_offline_when_the_gateway_is_killed() {
    let (_local, upstream, mut sub, mut gw) = setup("gw-kill", "5m", "30s").await;
    let topic = "building/hq/gateway/gw-kill/status";
    let mut early = Subscriber::start(upstream.port(), topic).await;
    let m = early.next(WAIT).await.expect("retained online status");
    assert_eq!((m.payload.as_str(), m.retained), ("online", true));
    gw.signal("KILL");
    gw.wait_exit().await;
    sub.wait_for(WAIT, |m| m.topic == topic && m.payload == "offline")
        .await
        .expect("Last Will published on SIGKILL");
    let mut late = Subscriber::start(upstream.port(), topic).await;
    let m = late.next(WAIT).await.expect("retained status");
    assert_eq!((m.payload.as_str(), m.retained), ("offline", true));
}

#[tokio::test]
async fn device_status_is_forwarded_and_sigterm_publishes_offline() {
    let (local, upstream, mut sub, mut gw) = setup("gw-term", "5m", "30s").await;
    publish(
        local.port(),
        &format!("sensors/status/{LIVING}"),
        "offline",
        1,
        false,
    )
    .await;
    let status = sub
        .wait_for(WAIT, |m| m.topic == format!("building/hq/{LIVING}/status"))
        .await
        .expect("device status forwarded");
    let j = status.json();
    assert_eq!(
        (j["state"].as_str(), j["name"].as_str()),
        (Some("offline"), Some("Living Room"))
    );

    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    let topic = "building/hq/gateway/gw-term/status";
    sub.wait_for(WAIT, |m| m.topic == topic && m.payload == "offline")
        .await
        .expect("offline on clean shutdown");
    let mut late = Subscriber::start(upstream.port(), topic).await;
    let m = late.next(WAIT).await.expect("retained status");
    assert_eq!((m.payload.as_str(), m.retained), ("offline", true));
}

#[tokio::test]
async fn a_window_open_at_sigterm_is_finished_after_the_restart() {
    let (local, upstream, mut sub, mut gw) = setup("gw-ckpt", "2s", "0s").await;
    // Event-timed readings in a window that cannot close before the restart
    // and the third reading: it ends 16 to 18 s from now, not 6 to 8, which
    // a loaded machine can spend on two publishes, a SIGTERM and a start
    // (the window then closes with two readings, or the third comes late).
    // Well inside the 60 s `max_future`.
    let w = (now_ms() + 14_000) / 2000 * 2000 + 2000;
    let reading = |i: i64, v: f64| format!(r#"{{"v":{v},"ts":{}}}"#, w + i * 100);
    publish(
        local.port(),
        "sensors/ckpt-dev",
        &reading(1, 10.0),
        1,
        false,
    )
    .await;
    publish(
        local.port(),
        "sensors/ckpt-dev",
        &reading(2, 20.0),
        1,
        false,
    )
    .await;
    // In order behind the readings: once this is forwarded, they were taken in.
    publish(local.port(), "sensors/status/ckpt-dev", "online", 1, false).await;
    sub.wait_for(WAIT, |m| m.topic == "building/hq/ckpt-dev/status")
        .await
        .expect("status");
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    gw.wait_for_log("Open windows saved for the next start")
        .await;

    let cfg = config("gw-ckpt", local.port(), upstream.port(), "2s", "0s");
    let mut gw = GatewayProcess::start_in(gw.dir, &cfg);
    gw.wait_for_log("Restored the open windows of the last run")
        .await;
    gw.wait_for_log("Subscribed").await;
    publish(
        local.port(),
        "sensors/ckpt-dev",
        &reading(3, 60.0),
        1,
        false,
    )
    .await;
    let agg = sub
        .wait_for(WAIT + std::time::Duration::from_secs(20), |m| {
            m.topic == "building/hq/ckpt-dev/aggregated"
        })
        .await
        .expect("the window closes after the restart")
        .json();
    let v = &agg["metrics"]["v"];
    assert_eq!(v["count"], 3, "nothing lost, nothing counted twice: {agg}");
    assert_eq!(v["avg"], 30.0);
    assert!(agg.get("partial").is_none());
    assert!(
        sub.wait_for(std::time::Duration::from_millis(2500), |m| m.topic
            == "building/hq/ckpt-dev/aggregated")
            .await
            .is_none(),
        "one message for the window"
    );
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

#[tokio::test]
async fn data_buffered_while_upstream_is_down_arrives_when_it_comes_back() {
    let local = Mosquitto::start();
    let mut upstream = Mosquitto::start_persistent();
    let up_port = upstream.port();
    // A persistent session, so what the gateway sends right after the
    // broker returns is queued for this subscriber even before it is back.
    Subscriber::start_persistent(up_port, "building/hq/#", "e2e-late")
        .await
        .stop()
        .await;
    upstream.stop();
    let mut gw = GatewayProcess::start(&config("gw-late", local.port(), up_port, "1s", "0s"));
    gw.wait_for_log("Subscribed").await;
    for v in ["1", "2", "3"] {
        publish(local.port(), "sensors/data/node-3/temperature", v, 1, false).await;
    }
    // The window closes while the upstream is unreachable.
    gw.wait_for_log("Cannot reach the upstream broker").await;
    upstream.restart();
    let mut sub = Subscriber::start_persistent(up_port, "building/hq/#", "e2e-late").await;
    let got = sub
        .collect_until(WAIT, |m| {
            aggregates(m, "node-3")
                .iter()
                .map(|a| a["metrics"]["temperature"]["count"].as_u64().unwrap())
                .sum::<u64>()
                >= 3
        })
        .await;
    let total: u64 = aggregates(&got, "node-3")
        .iter()
        .map(|a| a["metrics"]["temperature"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 3);
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}
