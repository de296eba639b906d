//! The upstream contract's additions of issue 68, seen from the cloud
//! broker with an MQTT adapter (the BACnet side: `protocols/bacnet_outputs.rs`):
//! each metric of a window carries its unit as every output shows it
//! (`[[device]] units`, `[[adapter]] units`, `[units]`, the name table;
//! none when not known), and a metric of `[upstream] report` is sent at
//! once when it changes, with its time and the value before, and only
//! then; one that flaps costs at most a message a second and ends on its
//! last state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{http_until, GatewayProcess, WAIT};
use test_support::{free_port, publish, Mosquitto, Subscriber};

#[tokio::test]
async fn windows_carry_units_and_a_reported_state_goes_up_when_it_changes() {
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let metrics = free_port();
    let cfg = format!(
        r#"
[gateway]
id = "gw-report"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{up}"
qos = 1
topic_prefix = "building/{{site}}"
max_backoff = "1s"
report = {{ "fan-*/state" = "change", "fan-2/state" = "window" }}

[aggregation]
window = "1s"
grace = "0s"

[metrics]
bind = "127.0.0.1:{metrics}"

[units]
pressure = "bar"

[[adapter]]
type = "mqtt"
name = "plant"
url = "mqtt://127.0.0.1:{local}"
topics = ["sensors/data/{{device}}/{{metric}}"]
units = {{ flow = "L/s" }}
max_backoff = "1s"

[[device]]
id = "fan-1"
name = "Supply fan"
units = {{ temperature = "°F" }}
"#,
        up = upstream.port(),
        local = local.port(),
    );
    let mut windows = Subscriber::start(upstream.port(), "building/hq/+/aggregated").await;
    let mut changes = Subscriber::start(upstream.port(), "building/hq/+/change").await;
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Subscribed").await;

    let send = |device: &'static str, metric: &'static str, value: &'static str| {
        let port = local.port();
        async move {
            publish(
                port,
                &format!("sensors/data/{device}/{metric}"),
                value,
                1,
                false,
            )
            .await;
        }
    };
    for (metric, value) in [
        ("temperature", "70.5"),
        ("flow", "12.5"),
        ("pressure", "1.25"),
        ("rpm", "900"),
        ("state", "0"),
    ] {
        send("fan-1", metric, value).await;
    }
    let first = changes.next(WAIT).await.expect("the first state").json();
    assert_eq!(
        (&first["device"], &first["metric"], &first["value"]),
        (&"fan-1".into(), &"state".into(), &0.0.into()),
        "{first}"
    );
    assert_eq!(first["name"], "Supply fan", "{first}");
    assert!(first.get("previous").is_none(), "{first}");

    // The same state again, another fan's (exempted), then a new one.
    send("fan-1", "state", "0").await;
    send("fan-2", "state", "1").await;
    send("fan-1", "state", "1").await;
    let next = changes.next(WAIT).await.expect("the change").json();
    assert_eq!(next["device"], "fan-1", "{next}");
    assert_eq!(next["value"], 1.0, "{next}");
    assert_eq!(next["previous"], 0.0, "{next}");
    assert!(
        next["ts"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{next}"
    );

    // Each metric's unit, from whichever of fan-1's windows holds it (the
    // publishes may straddle a window's end).
    let wanted = ["temperature", "flow", "pressure", "rpm", "state"];
    let got = windows
        .collect_until(WAIT, |msgs| {
            wanted.iter().all(|k| {
                msgs.iter()
                    .any(|m| m.json()["device"] == "fan-1" && m.json()["metrics"].get(*k).is_some())
            })
        })
        .await;
    let stats = |k: &str| {
        got.iter()
            .map(|m| m.json())
            .find(|w| w["device"] == "fan-1" && w["metrics"].get(k).is_some())
            .map(|w| w["metrics"][k].clone())
            .unwrap_or_else(|| panic!("no window of fan-1 with {k}"))
    };
    assert_eq!(stats("temperature")["unit"], "°F", "[[device]] units");
    assert_eq!(stats("flow")["unit"], "L/s", "[[adapter]] units");
    assert_eq!(stats("pressure")["unit"], "bar", "[units]");
    assert!(stats("rpm").get("unit").is_none(), "not known");
    assert!(stats("state").get("unit").is_none());
    assert!(
        stats("state")["count"].as_u64().unwrap() >= 1,
        "still windowed"
    );

    // Nothing else changed: no third message.
    assert!(
        changes
            .next(std::time::Duration::from_millis(500))
            .await
            .is_none(),
        "only changes are sent"
    );

    // A state flapping 41 times as fast as it can be published: at most
    // a message a second, and the last state is the one the cloud ends
    // with.
    let flaps: Vec<String> = (0..41).map(|i| (i % 2).to_string()).collect();
    let state_readings = |b: &str| {
        test_support::metrics::sample(b, "edge_gateway_adapter_readings_total{adapter=\"plant\"}")
            .unwrap_or(0.0)
    };
    let (_, body) = common::http_get(metrics, "/metrics").await;
    let readings_before = state_readings(&body);
    let started = std::time::Instant::now();
    test_support::publish_lines(local.port(), "sensors/data/fan-1/state", &flaps, 1).await;
    // Every flap taken in (a barrier: how long the gateway takes to read
    // them is its own, not the publisher's).
    http_until(metrics, "/metrics", |_, b| {
        state_readings(b) >= readings_before + 41.0
    })
    .await;
    // Then the held last state goes within a second of the one before it.
    // Not a fixed window after the burst (a loaded machine sends it
    // later): wait, generously, until the cloud's last message is the last
    // state, and until no message has followed it for longer than the
    // pace; a gateway that never sends it fails here.
    let mut values: Vec<f64> = Vec::new();
    let mut last_at = started.elapsed();
    loop {
        let more = changes
            .collect_until(WAIT, |m| match m.last() {
                Some(m) => m.json()["value"] == 0.0,
                None => values.last() == Some(&0.0),
            })
            .await;
        if !more.is_empty() {
            last_at = started.elapsed();
        }
        values.extend(more.iter().filter_map(|m| m.json()["value"].as_f64()));
        if values.last() != Some(&0.0) {
            break;
        }
        match changes.next(std::time::Duration::from_millis(2500)).await {
            Some(m) => {
                last_at = started.elapsed();
                values.extend(m.json()["value"].as_f64());
            }
            None => break,
        }
    }
    assert_eq!(values.last(), Some(&0.0), "the last state: {values:?}");
    // At most a message a second over the time they took to come.
    let most = last_at.as_secs() as usize + 3;
    assert!(
        values.len() <= most,
        "{} in {last_at:?}: {values:?}",
        values.len()
    );
    http_until(metrics, "/metrics", |_, b| {
        test_support::metrics::sample(b, "edge_gateway_upstream_changes_coalesced_total")
            .is_some_and(|n| n > 0.0)
    })
    .await;
}
