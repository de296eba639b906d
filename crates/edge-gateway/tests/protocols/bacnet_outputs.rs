//! The units a BACnet object states (its `units` property, read from
//! bacpypes3) travel with its readings to the outputs, as a configured
//! unit does: Home Assistant's discovery (read back from Mosquitto as Home
//! Assistant reads it), the dashboard's API, an alert upstream (its
//! `unit` and text), each metric of the windows upstream (`unit`), and a
//! metric of `[upstream] report` sent at once when it changes (`change`,
//! with its unit; only when it changes). The name table alone would
//! say nothing of `supply_air` or `flow`, and would say °C for a
//! `discharge_temp` the device reports in °F and hPa for a duct pressure in
//! Pa. (InfluxDB's `unit` tag takes the same path: `crates/sinks`
//! `line_tests.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::bacnet::{ok, PEER};
use crate::common;

use std::collections::BTreeMap;

use common::{http_until, GatewayProcess, WAIT};
use serde_json::{json, Value};
use test_support::{free_port, Mosquitto, PythonPeer, Subscriber};

const GW: &str = "gw-bacnet-units";

#[tokio::test]
async fn a_bacnet_objects_units_reach_home_assistant_the_dashboard_alerts_windows_and_changes() {
    let broker = Mosquitto::start();
    let (metrics, dashboard, port) = (free_port(), free_port(), free_port());
    let layout = json!({ "devices": [
        { "instance": 7001, "port": port, "objects": [
            { "type": "analogInput", "instance": 1, "name": "Supply Air", "value": 16.5, "units": "degreesCelsius" },
            { "type": "analogInput", "instance": 2, "name": "Discharge Temp", "value": 95.5, "units": "degreesFahrenheit" },
            { "type": "analogInput", "instance": 3, "name": "Duct Pressure", "value": 250.0, "units": "pascals" },
            { "type": "analogValue", "instance": 4, "name": "Flow", "value": 12.5, "units": "litersPerSecond" },
            { "type": "analogInput", "instance": 5, "name": "Zone CO2", "value": 640.0, "units": "partsPerMillion" },
        ]},
    ]});
    let mut peer = PythonPeer::start_with_args(PEER, &[&layout.to_string()]);
    let cfg = format!(
        r#"
[gateway]
id = "{GW}"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{broker}"
qos = 1
topic_prefix = "building/{{site}}"
max_backoff = "1s"
report = {{ "ahu-*/flow" = "change" }}

[aggregation]
window = "1s"
grace = "0s"

[[rule]]
name = "discharge-hot"
kind = "threshold"
metric = "discharge_temp"
max = 90.0

[metrics]
bind = "127.0.0.1:{metrics}"

[home_assistant]
enabled = true
broker = "mqtt://127.0.0.1:{broker}"

[dashboard]
enabled = true
bind = "127.0.0.1:{dashboard}"
write_interval = "200ms"

[[adapter]]
type = "bacnet"
name = "bms"
bind = "127.0.0.1:0"
poll = "300ms"
timeout = "400ms"
retries = 0

[[bacnet.device]]
instance = 7001
address = "127.0.0.1:{port}"
id = "ahu-7"
"#,
        broker = broker.port(),
    );
    let mut discovery = Subscriber::start(broker.port(), "homeassistant/sensor/+/config").await;
    let mut alerts = Subscriber::start(broker.port(), "building/hq/+/alerts").await;
    let mut windows = Subscriber::start(broker.port(), "building/hq/+/aggregated").await;
    let mut changes = Subscriber::start(broker.port(), "building/hq/+/change").await;
    let _gw = GatewayProcess::start(&cfg);

    let want = [
        ("supply_air", "°C", Some("temperature")),
        ("discharge_temp", "°F", Some("temperature")),
        ("duct_pressure", "Pa", Some("pressure")),
        ("flow", "L/s", None),
        ("zone_co2", "ppm", Some("carbon_dioxide")),
    ];
    let msgs = discovery
        .collect_until(WAIT, |msgs| {
            want.iter().all(|(metric, _, _)| {
                msgs.iter().any(|m| {
                    m.topic.ends_with(&format!("_{metric}/config")) && !m.payload.is_empty()
                })
            })
        })
        .await;
    let configs: BTreeMap<&str, Value> = want
        .iter()
        .map(|(metric, _, _)| {
            let m = msgs
                .iter()
                .rev()
                .find(|m| m.topic.ends_with(&format!("_{metric}/config")) && !m.payload.is_empty())
                .unwrap_or_else(|| panic!("no discovery config for {metric}"));
            (*metric, m.json())
        })
        .collect();
    for (metric, unit, class) in want {
        let c = &configs[metric];
        assert_eq!(c["unit_of_measurement"], unit, "{metric}: {c}");
        assert_eq!(
            c.get("device_class").and_then(Value::as_str),
            class,
            "{metric}: {c}"
        );
    }

    let (_, body) = http_until(dashboard, "/api/devices", |code, b| {
        code == 200 && b.contains("ahu-7") && b.contains("zone_co2")
    })
    .await;
    let devices: Value = serde_json::from_str(&body).unwrap();
    let ahu = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "ahu-7")
        .unwrap_or_else(|| panic!("{body}"));
    for (metric, unit, _) in want {
        assert_eq!(ahu["latest"][metric]["unit"], unit, "{metric}: {ahu}");
    }
    assert_eq!(ahu["latest"]["discharge_temp"]["value"], 95.5);

    // 95.5 is above 90 in the device's °F, and said so.
    let raised = alerts
        .wait_for(WAIT, |m| {
            m.json()["rule"] == "discharge-hot" && m.json()["state"] == "raised"
        })
        .await
        .expect("the alert upstream");
    let a = raised.json();
    assert_eq!(a["unit"], "°F", "{a}");
    assert!(a["text"].as_str().unwrap().contains("°F"), "{a}");

    // Each metric of a window upstream with the unit the device states.
    let w = windows
        .wait_for(WAIT, |m| {
            m.json()["metrics"]
                .as_object()
                .is_some_and(|o| want.iter().all(|(metric, _, _)| o.contains_key(*metric)))
        })
        .await
        .expect("a window of every object")
        .json();
    for (metric, unit, _) in want {
        assert_eq!(w["metrics"][metric]["unit"], unit, "{metric}: {w}");
    }

    // Flow is reported on change: its first value, then only a new one,
    // however many polls read the same value in between.
    let first = changes.next(WAIT).await.expect("the first value").json();
    assert_eq!(first["metric"], "flow", "{first}");
    assert_eq!(first["value"], 12.5, "{first}");
    assert_eq!(first["unit"], "L/s", "{first}");
    assert!(first.get("previous").is_none(), "{first}");
    ok(&mut peer, "set 7001 analogValue:4 13.25");
    let next = changes.next(WAIT).await.expect("the change").json();
    assert_eq!(next["value"], 13.25, "{next}");
    assert_eq!(next["previous"], 12.5, "{next}");
    assert_eq!(next["device"], "ahu-7", "{next}");
    assert!(
        next["ts"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{next}"
    );
    http_until(metrics, "/metrics", |_, b| {
        test_support::metrics::sample(b, "edge_gateway_upstream_changes_total") == Some(2.0)
    })
    .await;
}
