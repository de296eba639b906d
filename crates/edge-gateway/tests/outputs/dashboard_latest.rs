//! The overview after a restart: each room's latest value and when it was
//! seen come back at once, before the room's sensor reports again (a
//! battery node may report hourly), and a newer reading replaces them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use super::dashboard::{get, until};
use common::{config, GatewayProcess};
use test_support::{free_port, publish, Mosquitto};

fn room(body: &str, id: &str) -> serde_json::Value {
    let devices: serde_json::Value = serde_json::from_str(body).unwrap();
    devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {body}"))
        .clone()
}

/// `/api/devices` now.
async fn devices(port: u16) -> String {
    let (code, _, body) = get(port, "/api/devices", None).await;
    assert_eq!(code, 200, "{body}");
    body
}

#[tokio::test]
async fn each_rooms_latest_value_is_shown_right_after_a_restart() {
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let port = free_port();
    // An hour's window: none closes in the test, so history knows nothing
    // of the rooms and only the kept latest values can bring them back.
    // The adapter's own unit for its batteries: known again after the
    // restart from the kept adapter of each device, before it speaks.
    let cfg = format!(
        "{}\n[dashboard]\nenabled = true\nbind = \"127.0.0.1:{port}\"\nwrite_interval = \"200ms\"\n",
        config("gw-latest", local.port(), upstream.port(), "1h", "0s").replacen(
            "name = \"local-sensors\"\n",
            "name = \"local-sensors\"\nunits = { battery = \"V\" }\n",
            1
        )
    );
    let mut gw = GatewayProcess::start_in(tempfile::tempdir().unwrap(), &cfg);
    gw.wait_for_log("Dashboard listening").await;
    gw.wait_for_log("Subscribed").await;
    publish(
        local.port(),
        "sensors/data/kitchen/temperature",
        "22.25",
        1,
        false,
    )
    .await;
    publish(
        local.port(),
        "sensors/data/kitchen/humidity",
        "48.5",
        1,
        false,
    )
    .await;
    publish(
        local.port(),
        "sensors/data/bedroom/temperature",
        "19.75",
        1,
        false,
    )
    .await;
    publish(
        local.port(),
        "sensors/data/kitchen/battery",
        "3.1",
        1,
        false,
    )
    .await;
    let before = until(port, "/api/devices", |b| {
        b.contains("22.25") && b.contains("48.5") && b.contains("19.75") && b.contains("3.1")
    })
    .await;
    assert_eq!(room(&before, "kitchen")["latest"]["battery"]["unit"], "V");
    let kitchen = room(&before, "kitchen");

    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    let mut gw = GatewayProcess::start_in(gw.dir, &cfg);
    gw.wait_for_log("Dashboard listening").await;
    let after = devices(port).await;
    let kitchen_after = room(&after, "kitchen");
    assert_eq!(
        kitchen_after["latest"]["temperature"]["value"], 22.25,
        "{after}"
    );
    assert_eq!(
        kitchen_after["latest"]["humidity"]["value"], 48.5,
        "{after}"
    );
    assert_eq!(
        kitchen_after["latest"]["temperature"]["at"],
        kitchen["latest"]["temperature"]["at"]
    );
    assert_eq!(
        kitchen_after["latest"]["temperature"]["unit"], "°C",
        "{after}"
    );
    assert_eq!(kitchen_after["last_seen"], kitchen["last_seen"], "{after}");
    assert_eq!(kitchen_after["latest"]["battery"]["unit"], "V", "{after}");
    assert_ne!(kitchen_after["state"], "unknown", "{after}");
    assert_eq!(
        room(&after, "bedroom")["latest"]["temperature"]["value"],
        19.75,
        "{after}"
    );
    let (_, _, page) = get(port, "/", None).await;
    assert!(
        page.contains("<b>22.2</b>") && page.contains("<b>48.5</b>"),
        "{page}"
    );

    // The bedroom reports again: its new value replaces the kept one.
    gw.wait_for_log("Subscribed").await;
    publish(
        local.port(),
        "sensors/data/bedroom/temperature",
        "20.5",
        1,
        false,
    )
    .await;
    let newer = until(port, "/api/devices", |b| b.contains("20.5")).await;
    assert_eq!(
        room(&newer, "bedroom")["latest"]["temperature"]["value"],
        20.5,
        "{newer}"
    );
    assert_eq!(
        room(&newer, "kitchen")["latest"]["temperature"]["value"],
        22.25,
        "{newer}"
    );
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}
