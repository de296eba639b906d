//! A damaged apply journal (a torn write at a power cut, a bad sector on
//! the SD card) must not forget the replay mark: the journal is moved
//! aside, but whoever recorded the old signed pushes off the broker still
//! cannot replay them (a rollback to an old, perhaps vulnerable
//! configuration). The mark comes back from `remote-config/mark.json`; a
//! newer push is applied as ever. With no readable record of the mark at
//! all, every push is refused and the report says how to recover.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use crate::common;
use common::remote::{
    adapters, base_config, healthy, healthy_on, lab_layer, public_key, push, restarts, signed,
    States, FLEET_KEY,
};
use common::GatewayProcess;
use test_support::{free_port, Mosquitto};

/// `health_timeout` in the config, plus the restarts on each side.
const VERDICT: Duration = Duration::from_secs(15);

/// How the journal file is damaged while the gateway is stopped.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// Cut halfway, as a torn write leaves it.
    Truncated,
    /// Overwritten with bytes that are no JSON, as a bad sector reads.
    Garbage,
}

/// The first reported state that `pred` accepts.
async fn state_where(
    states: &mut States,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    states
        .0
        .wait_for(VERDICT, |m| pred(&m.json()))
        .await
        .expect("no such reported state")
        .json()
}

fn damage(path: &Path, how: Damage) {
    match how {
        Damage::Truncated => {
            let bytes = std::fs::read(path).unwrap();
            std::fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
        }
        Damage::Garbage => std::fs::write(path, [0xff, 0x00, 0x13, 0x37, b'{', 0xfe]).unwrap(),
    }
}

/// What [`replayed_after`] leaves running.
struct Replayed {
    gw: GatewayProcess,
    cloud: Mosquitto,
    /// Kept running: the `building` adapter's broker.
    _building: Mosquitto,
    metrics: u16,
    config: String,
    /// The reported states since the first start.
    states: States,
    /// The same, a second subscriber: each can wait for its own state.
    told: States,
}

/// v2 and v3 applied, the gateway stopped, `how` done to its state
/// directory, and, while it is down, the recorded v2 published again
/// (retained, it replaces v3: what the gateway finds when it starts).
async fn replayed_after(how: impl FnOnce(&Path)) -> Replayed {
    let cloud = Mosquitto::start();
    let building = Mosquitto::start();
    let metrics = free_port();
    let config = base_config(
        cloud.port(),
        building.port(),
        metrics,
        &[public_key(FLEET_KEY)],
        "",
    );
    let mut states = States::start(cloud.port()).await;
    let told = States::start(cloud.port()).await;
    let mut gw = GatewayProcess::start(&config);
    healthy(metrics).await;
    // What an attacker records off the broker: v2, validly signed.
    let v2 = signed(FLEET_KEY, 2, "v2", &lab_layer(free_port()));
    push(cloud.port(), &v2).await;
    states.wait(2, "applied", VERDICT).await;
    push(
        cloud.port(),
        &signed(FLEET_KEY, 3, "v3", "[aggregation]\nwindow = \"2s\"\n"),
    )
    .await;
    let s = states.wait(3, "applied", VERDICT).await;
    assert_eq!(s["highest_serial"], 3);
    healthy_on(metrics, Some("v3"), "applied").await;
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));

    how(&gw.dir.path().join("state/remote-config"));
    push(cloud.port(), &v2).await;
    let gw = GatewayProcess::start_in(gw.dir, &config);
    Replayed {
        gw,
        cloud,
        _building: building,
        metrics,
        config,
        states,
        told,
    }
}

async fn a_damaged_journal_still_refuses_an_old_push(how: Damage) {
    let Replayed {
        mut gw,
        cloud,
        metrics,
        mut states,
        mut told,
        // Bound, not `..`: a field left out is dropped here, and with it
        // the building's broker.
        _building: _kept,
        ..
    } = replayed_after(|dir| damage(&dir.join("journal.json"), how)).await;
    let s = states.wait(2, "rejected", VERDICT).await;
    assert_eq!(s["reason"], "stale", "{s}");
    assert_eq!(s["highest_serial"], 3, "{s}");
    let h = healthy_on(metrics, None, "rejected").await;
    assert_eq!(adapters(&h), ["building"], "v2's adapter never came back");
    assert_eq!(restarts(&mut gw), 0, "nothing was applied");
    // The start said what happened: the pushed layer is gone with the
    // journal (the local files run), the mark is not.
    let s = state_where(&mut told, |s| s["status"] == "rolled_back").await;
    assert_eq!(s["highest_serial"], 3, "{s}");
    assert_eq!(s["applied"], serde_json::Value::Null, "{s}");
    assert!(s["detail"].as_str().unwrap().contains("mark.json"), "{s}");

    // The fleet's next push is applied as ever.
    push(
        cloud.port(),
        &signed(FLEET_KEY, 4, "v4", "[aggregation]\nwindow = \"3s\"\n"),
    )
    .await;
    let s = states.wait(4, "applied", VERDICT).await;
    assert_eq!(s["highest_serial"], 4, "{s}");
    healthy_on(metrics, Some("v4"), "applied").await;
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

#[tokio::test]
async fn a_truncated_journal_refuses_a_replayed_old_push_and_applies_a_new_one() {
    a_damaged_journal_still_refuses_an_old_push(Damage::Truncated).await;
}

#[tokio::test]
async fn a_garbage_journal_refuses_a_replayed_old_push_and_applies_a_new_one() {
    a_damaged_journal_still_refuses_an_old_push(Damage::Garbage).await;
}

/// Both records of the mark damaged: nothing proves a push newer than
/// the recorded ones, so every push is refused, the report says how to
/// recover, and the refusal outlives a restart.
#[tokio::test]
async fn with_no_readable_mark_every_push_is_refused_until_the_directory_is_reset() {
    let Replayed {
        mut gw,
        cloud,
        metrics,
        config,
        mut states,
        mut told,
        _building: _kept,
    } = replayed_after(|dir| {
        damage(&dir.join("journal.json"), Damage::Garbage);
        damage(&dir.join("mark.json"), Damage::Truncated);
    })
    .await;
    let s = states.wait(2, "rejected", VERDICT).await;
    assert_eq!(s["reason"], "mark_lost", "{s}");
    let s = state_where(&mut told, |s| s["status"] == "rolled_back").await;
    assert_eq!(s["reason"], "mark_lost", "{s}");
    assert!(
        s["detail"]
            .as_str()
            .unwrap()
            .contains("delete state_dir/remote-config/"),
        "{s}"
    );
    push(
        cloud.port(),
        &signed(FLEET_KEY, 5, "v5", "[aggregation]\nwindow = \"3s\"\n"),
    )
    .await;
    let s = states.wait(5, "rejected", VERDICT).await;
    assert_eq!(s["reason"], "mark_lost", "{s}");
    let body = test_support::web::http_get(metrics, "/metrics").await.1;
    assert_eq!(
        test_support::metrics::sample(
            &body,
            r#"edge_gateway_remote_config_mark_errors_total{error_type="lost"}"#
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(restarts(&mut gw), 0);
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));

    // Still refused after a restart: the damaged files set aside are not
    // taken for a first start.
    let mut gw = GatewayProcess::start_in(gw.dir, &config);
    push(
        cloud.port(),
        &signed(FLEET_KEY, 6, "v6", "[aggregation]\nwindow = \"3s\"\n"),
    )
    .await;
    let s = states.wait(6, "rejected", VERDICT).await;
    assert_eq!(s["reason"], "mark_lost", "{s}");

    // The documented reset: the operator deletes the directory.
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    std::fs::remove_dir_all(gw.dir.path().join("state/remote-config")).unwrap();
    let mut gw = GatewayProcess::start_in(gw.dir, &config);
    let s = states.wait(6, "applied", VERDICT).await;
    assert_eq!(s["highest_serial"], 6, "{s}");
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}
