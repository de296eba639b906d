//! A configuration pushed from the cloud (issue 71), from outside: Mosquitto
//! as the cloud and the building broker, pushes signed by Python's
//! `cryptography` and published retained by hand as a fleet tool would (and
//! once through `edge-gateway config push`), the reported state read from
//! the cloud, `/health`, and every reading counted in exactly one window
//! upstream across applies and rollbacks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::common;
use common::remote::{
    adapters, base_config, healthy_on, lab_layer, public_key, push, restarts, send_line, signed,
    signed_for, States, FLEET_KEY, GATEWAY, OTHER_KEY, PREFIX,
};
use common::{totals, GatewayProcess};
use test_support::{free_port, publish_lines, Message, Mosquitto, Subscriber};

/// `health_timeout` in these configs, plus the restarts on each side.
const VERDICT: Duration = Duration::from_secs(15);

struct Site {
    cloud: Mosquitto,
    building: Mosquitto,
    metrics: u16,
    config: String,
}

impl Site {
    fn start(keys: &[String]) -> Self {
        let cloud = Mosquitto::start();
        let building = Mosquitto::start();
        let metrics = free_port();
        let config = base_config(cloud.port(), building.port(), metrics, keys, "");
        Self {
            cloud,
            building,
            metrics,
            config,
        }
    }

    fn signed_by_fleet() -> Self {
        Self::start(&[public_key(FLEET_KEY)])
    }
}

/// Readings of `device` published (QoS 1) on the building broker, by value.
fn readings(device: &str, round: usize, n: usize) -> (String, Vec<String>) {
    let lines = (0..n)
        .map(|i| format!("{:.3}", 20.0 + ((round * n + i) as f64 * 0.37).sin()))
        .collect();
    (format!("sensors/{device}/temperature"), lines)
}

/// Every reading published is in exactly one window upstream.
async fn assert_counted_once(sub: &mut Subscriber, device: &str, published: usize) {
    let got = sub
        .collect_until(Duration::from_secs(30), |m| {
            totals(m)
                .get(device)
                .is_some_and(|t| t.0 >= published as u64)
        })
        .await;
    let mut all: Vec<Message> = got;
    while let Some(m) = sub.next(Duration::from_millis(1500)).await {
        all.push(m);
    }
    let count = totals(&all).get(device).map_or(0, |t| t.0);
    assert_eq!(count, published as u64, "readings counted upstream");
    assert_eq!(common::conflicting_ids(&all), Vec::<String>::new());
}

#[tokio::test]
async fn a_signed_push_starts_a_new_adapter_device_and_rule_without_losing_a_reading() {
    let site = Site::signed_by_fleet();
    let mut states = States::start(site.cloud.port()).await;
    let mut windows =
        Subscriber::start(site.cloud.port(), &format!("{PREFIX}/flow-1/aggregated")).await;
    let mut alerts = Subscriber::start(site.cloud.port(), &format!("{PREFIX}/lab-1/alerts")).await;
    let mut gw = GatewayProcess::start(&site.config);
    let before = common::remote::healthy(site.metrics).await;
    assert_eq!(adapters(&before), ["building"]);
    let mut published = 0;
    let (topic, lines) = readings("flow-1", 0, 150);
    publish_lines(site.building.port(), &topic, &lines, 1).await;
    published += lines.len();

    let lab = free_port();
    let message = signed(FLEET_KEY, 2, "v2", &lab_layer(lab));
    // Readings keep arriving while the gateway restarts on the push.
    let (topic, lines) = readings("flow-1", 1, 300);
    published += lines.len();
    let building = site.building.port();
    let during = tokio::spawn(async move { publish_lines(building, &topic, &lines, 1).await });
    push(site.cloud.port(), &message).await;
    let applying = states.wait(2, "applying", VERDICT).await;
    assert_eq!(applying["applied"], serde_json::Value::Null);
    let applied = states.wait(2, "applied", VERDICT).await;
    assert_eq!(applied["desired"], "v2");
    assert_eq!(applied["applied"], "v2");
    assert_eq!(applied["gateway"], "gw-rc");
    assert_eq!(applied["reason"], "");
    let h = healthy_on(site.metrics, Some("v2"), "applied").await;
    assert_eq!(adapters(&h), ["building", "lab-lines"]);
    assert_eq!(h["config"]["serial"], 2);
    during.await.unwrap();

    // The new adapter, device and rule work: a hot bench raises an alert.
    send_line(lab, "temperature=35.5").await;
    let alert = alerts
        .wait_for(Duration::from_secs(10), |m| m.json()["state"] == "raised")
        .await
        .expect("lab-hot raised upstream");
    assert_eq!(alert.json()["rule"], "lab-hot");
    assert_eq!(alert.json()["name"], "Lab bench");

    let (topic, lines) = readings("flow-1", 2, 150);
    publish_lines(site.building.port(), &topic, &lines, 1).await;
    published += lines.len();
    assert_counted_once(&mut windows, "flow-1", published).await;
    assert_eq!(restarts(&mut gw), 1, "one restart for one push");
    // Nothing else reported.
    assert!(states.any(Duration::from_millis(500)).await.is_none());
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// A vendor's JavaScript codec for a new kind of sensor, pushed to the
/// gateway with the adapter that uses it: `[js_codecs]` carries the
/// vendor's own file (Tabs TBHH100, ChirpStack's device repository) in the
/// signed push, so nothing is copied to the Pi by hand.
#[tokio::test]
async fn a_push_carries_a_vendors_codec_and_a_sensor_using_it_is_decoded() {
    let site = Site::signed_by_fleet();
    let mut states = States::start(site.cloud.port()).await;
    let mut windows =
        Subscriber::start(site.cloud.port(), &format!("{PREFIX}/tbhh-7/aggregated")).await;
    let mut gw = GatewayProcess::start(&site.config);
    common::remote::healthy(site.metrics).await;
    let codec = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/lorawan-codecs/vendors/browan/codecs/tabs-tbhh100.js"
    ))
    .unwrap();
    assert!(
        !codec.contains("'''"),
        "the codec fits a TOML literal string"
    );
    let coap = test_support::free_udp_port();
    let layer = format!(
        "[js_codecs]\ntabs-tbhh100 = '''\n{codec}'''\n\n\
         [[adapter]]\ntype = \"coap\"\nname = \"lab-coap\"\nbind = \"127.0.0.1:{coap}\"\n\
         rate_limit = 0\ncodec = \"js:tabs-tbhh100\"\ncodec_fport = 103\n"
    );
    push(site.cloud.port(), &signed(FLEET_KEY, 2, "v2", &layer)).await;
    let applied = states.wait(2, "applied", VERDICT).await;
    assert_eq!(applied["reason"], "", "{applied}");
    healthy_on(site.metrics, Some("v2"), "applied").await;

    // The vector's first frame: 3.6 V, 3 °C, 47 %RH.
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("frame");
    std::fs::write(&body, [0x08, 0x0b, 0x23, 0x2f, 0xff, 0xff, 0xff, 0xff]).unwrap();
    let (body, url) = (
        body.display().to_string(),
        format!("coap://127.0.0.1:{coap}/s/tbhh-7"),
    );
    let out = test_support::coap_client_run(&["-m", "post", "-f", &body, "-t", "42", &url]).await;
    assert!(out.success && out.stderr.is_empty(), "{out:?}");
    let window = windows
        .wait_for(Duration::from_secs(15), |_| true)
        .await
        .expect("the sensor's window upstream")
        .json();
    let metrics = &window["metrics"];
    assert_eq!(metrics["temperature"]["avg"], 3.0, "{window}");
    assert_eq!(metrics["humidity"]["avg"], 47.0, "{window}");
    assert_eq!(metrics["battery_volt"]["avg"], 3.6, "{window}");
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

#[tokio::test]
async fn a_schema_error_is_rejected_with_its_key_path_and_nothing_restarts() {
    let site = Site::signed_by_fleet();
    let mut states = States::start(site.cloud.port()).await;
    let mut windows =
        Subscriber::start(site.cloud.port(), &format!("{PREFIX}/flow-1/aggregated")).await;
    let mut gw = GatewayProcess::start(&site.config);
    common::remote::healthy(site.metrics).await;
    let (topic, lines) = readings("flow-1", 0, 150);
    publish_lines(site.building.port(), &topic, &lines, 1).await;
    let bad = "[aggregation]\nwindow = \"fast\"\n\n[[device]]\nid = \"d1\"\ncolour = \"red\"\n";
    push(site.cloud.port(), &signed(FLEET_KEY, 5, "v5-typo", bad)).await;
    let s = states.wait(5, "rejected", VERDICT).await;
    assert_eq!(s["reason"], "schema");
    let detail = s["detail"].as_str().unwrap();
    assert!(detail.contains("aggregation.window"), "{detail}");
    assert!(detail.contains("device[0].colour"), "{detail}");
    assert!(
        detail.contains("pushed configuration v5-typo (serial 5)"),
        "the problem names the pushed layer: {detail}"
    );
    assert_eq!(s["applied"], serde_json::Value::Null);
    assert_eq!(s["highest_serial"], 5);
    assert_eq!(restarts(&mut gw), 0);
    healthy_on(site.metrics, None, "rejected").await;
    let (topic, lines) = readings("flow-1", 1, 150);
    publish_lines(site.building.port(), &topic, &lines, 1).await;
    assert_counted_once(&mut windows, "flow-1", 300).await;
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// The facility team is half-way through an edit of gateway.toml on the
/// Pi when a push arrives: refused, since the local files do not load,
/// but that is no fault of the push, which must not be spent: once the
/// files load again, the retained push is applied at the next start.
#[tokio::test]
async fn a_push_refused_because_the_local_files_do_not_load_is_applied_once_they_do() {
    let site = Site::signed_by_fleet();
    let mut states = States::start(site.cloud.port()).await;
    let mut gw = GatewayProcess::start(&site.config);
    common::remote::healthy(site.metrics).await;
    let good = std::fs::read_to_string(&gw.config_path).unwrap();
    std::fs::write(&gw.config_path, format!("{good}\n[aggregation\n")).unwrap();
    push(
        site.cloud.port(),
        &signed(FLEET_KEY, 2, "v2", "[aggregation]\nwindow = \"2s\"\n"),
    )
    .await;
    let s = states.wait(2, "rejected", VERDICT).await;
    assert_eq!(s["reason"], "local", "{s}");
    assert_eq!(s["highest_serial"], 0, "the mark stays: {s}");
    std::fs::write(&gw.config_path, &good).unwrap();
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    let mut gw = GatewayProcess::start_in(gw.dir, &site.config);
    let s = states.wait(2, "applied", VERDICT).await;
    assert_eq!(s["applied"], "v2", "{s}");
    healthy_on(site.metrics, Some("v2"), "applied").await;
    assert_eq!(restarts(&mut gw), 1);
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

#[tokio::test]
async fn a_push_that_cannot_bind_its_port_is_rolled_back_and_no_reading_is_lost() {
    let site = Site::signed_by_fleet();
    let mut states = States::start(site.cloud.port()).await;
    let mut windows =
        Subscriber::start(site.cloud.port(), &format!("{PREFIX}/flow-1/aggregated")).await;
    let mut gw = GatewayProcess::start(&site.config);
    common::remote::healthy(site.metrics).await;
    let good = free_port();
    push(
        site.cloud.port(),
        &signed(FLEET_KEY, 1, "v1", &lab_layer(good)),
    )
    .await;
    states.wait(1, "applied", VERDICT).await;
    let mut published = 0;
    let (topic, lines) = readings("flow-1", 0, 200);
    publish_lines(site.building.port(), &topic, &lines, 1).await;
    published += lines.len();

    // Another process holds the port v2 wants.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (topic, lines) = readings("flow-1", 1, 300);
    published += lines.len();
    let building = site.building.port();
    let during = tokio::spawn(async move { publish_lines(building, &topic, &lines, 1).await });
    let pushed_at = tokio::time::Instant::now();
    push(
        site.cloud.port(),
        &signed(FLEET_KEY, 2, "v2", &lab_layer(port)),
    )
    .await;
    let s = states.wait(2, "rolled_back", VERDICT).await;
    // The contract's bound (health_timeout + a few seconds), not a speed
    // target: the port fails the gate at once, two restarts follow.
    assert!(
        pushed_at.elapsed() < Duration::from_secs(3 + 10),
        "rolled back within health_timeout + a few seconds"
    );
    assert_eq!(s["reason"], "health");
    assert_eq!(s["applied"], "v1");
    let detail = s["detail"].as_str().unwrap();
    assert!(
        detail.contains("adapter \"lab-lines\" is not running"),
        "{detail}"
    );
    let h = healthy_on(site.metrics, Some("v1"), "rolled_back").await;
    assert_eq!(adapters(&h), ["building", "lab-lines"]);
    during.await.unwrap();
    // Data flows on the old configuration, its new adapter included.
    send_line(good, "temperature=20.5").await;
    let (topic, lines) = readings("flow-1", 2, 100);
    publish_lines(site.building.port(), &topic, &lines, 1).await;
    published += lines.len();
    assert_counted_once(&mut windows, "flow-1", published).await;
    // apply v1, apply v2, roll back to v1.
    assert_eq!(restarts(&mut gw), 3);
    drop(taken);
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// The metrics endpoint is how a fleet's probes see a gateway: a push that
/// moves it to a port another process holds would leave it applied and
/// blind. It is rolled back, and `/health` answers on the old port again.
#[tokio::test]
async fn a_push_moving_the_metrics_endpoint_to_a_taken_port_is_rolled_back() {
    let site = Site::signed_by_fleet();
    let mut states = States::start(site.cloud.port()).await;
    let mut gw = GatewayProcess::start(&site.config);
    common::remote::healthy(site.metrics).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    push(
        site.cloud.port(),
        &signed(
            FLEET_KEY,
            2,
            "v2",
            &format!("[metrics]\nbind = \"127.0.0.1:{port}\"\n"),
        ),
    )
    .await;
    let s = states.wait(2, "rolled_back", VERDICT).await;
    assert_eq!(s["reason"], "health");
    let detail = s["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!(
            "metrics endpoint cannot listen on 127.0.0.1:{port}"
        )),
        "{detail}"
    );
    healthy_on(site.metrics, None, "rolled_back").await;
    drop(taken);
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

#[tokio::test]
async fn a_dead_upstream_or_a_missing_serial_port_is_rolled_back_within_the_health_timeout() {
    let site = Site::signed_by_fleet();
    let mut states = States::start(site.cloud.port()).await;
    let mut windows =
        Subscriber::start(site.cloud.port(), &format!("{PREFIX}/flow-1/aggregated")).await;
    let mut gw = GatewayProcess::start(&site.config);
    common::remote::healthy(site.metrics).await;
    // A broker that does not answer: nothing listens there.
    let nowhere = free_port();
    let dead = format!("[upstream]\nurl = \"mqtt://127.0.0.1:{nowhere}\"\n");
    push(
        site.cloud.port(),
        &signed(FLEET_KEY, 1, "dead-upstream", &dead),
    )
    .await;
    // Readings taken while the gateway runs towards the dead broker wait in
    // the outbox and reach the cloud after the rollback.
    let (topic, lines) = readings("flow-1", 0, 300);
    let mut published = lines.len();
    publish_lines(site.building.port(), &topic, &lines, 1).await;
    // Reported once back on the old broker, from the outbox.
    let s = states.wait(1, "rolled_back", VERDICT).await;
    assert_eq!(s["reason"], "health");
    assert!(
        s["detail"]
            .as_str()
            .unwrap()
            .contains("upstream broker not connected"),
        "{s}"
    );
    assert_eq!(s["applied"], serde_json::Value::Null);
    healthy_on(site.metrics, None, "rolled_back").await;

    let serial = "[[adapter]]\ntype = \"serial_line\"\nname = \"relay\"\npath = \"/dev/does-not-exist-71\"\nformat = \"kv\"\ndevice = \"relay-1\"\n";
    push(site.cloud.port(), &signed(FLEET_KEY, 2, "no-port", serial)).await;
    let s = states.wait(2, "rolled_back", VERDICT).await;
    assert!(
        s["detail"].as_str().unwrap().contains("adapter \"relay\""),
        "{s}"
    );
    let h = healthy_on(site.metrics, None, "rolled_back").await;
    assert_eq!(adapters(&h), ["building"]);
    let (topic, lines) = readings("flow-1", 1, 100);
    published += lines.len();
    publish_lines(site.building.port(), &topic, &lines, 1).await;
    assert_counted_once(&mut windows, "flow-1", published).await;
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

#[tokio::test]
async fn unsigned_foreign_and_forged_pushes_are_refused_and_move_no_mark() {
    let site = Site::signed_by_fleet();
    let mut states = States::start(site.cloud.port()).await;
    let mut gw = GatewayProcess::start(&site.config);
    common::remote::healthy(site.metrics).await;
    let layer = lab_layer(free_port());
    let mut unsigned: serde_json::Value =
        serde_json::from_str(&signed(FLEET_KEY, 3, "v3", &layer)).unwrap();
    unsigned.as_object_mut().unwrap().remove("signature");
    push(site.cloud.port(), &unsigned.to_string()).await;
    let s = states.wait(3, "rejected", VERDICT).await;
    assert_eq!(s["reason"], "signature");
    push(site.cloud.port(), &signed(OTHER_KEY, 4, "v4", &layer)).await;
    assert_eq!(
        states.wait(4, "rejected", VERDICT).await["reason"],
        "signature"
    );
    // Signed, then the content changed.
    let mut swapped: serde_json::Value =
        serde_json::from_str(&signed(FLEET_KEY, 6, "v6", &layer)).unwrap();
    swapped["config"] = serde_json::json!("[[adapter]]\ntype = \"coap\"\nname = \"evil\"\n");
    push(site.cloud.port(), &swapped.to_string()).await;
    assert_eq!(
        states.wait(6, "rejected", VERDICT).await["reason"],
        "sha256"
    );
    // A forged serial far ahead must not lock the fleet out.
    push(
        site.cloud.port(),
        &signed(OTHER_KEY, 1 << 63, "evil", &layer),
    )
    .await;
    let s = states.wait(1 << 63, "rejected", VERDICT).await;
    assert_eq!(s["highest_serial"], 0);
    push(site.cloud.port(), &signed(FLEET_KEY, 2, "v2", &layer)).await;
    states.wait(2, "applied", VERDICT).await;
    assert_eq!(restarts(&mut gw), 1);
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

#[tokio::test]
async fn a_push_signed_for_another_gateway_is_refused_and_one_for_this_gateway_applies() {
    // Whoever may publish on the broker copies another gateway's signed
    // push (a higher serial, the fleet's key) onto this gateway's topic.
    let site = Site::signed_by_fleet();
    let mut states = States::start(site.cloud.port()).await;
    let mut gw = GatewayProcess::start(&site.config);
    common::remote::healthy(site.metrics).await;
    let layer = lab_layer(free_port());
    push(
        site.cloud.port(),
        &signed_for(FLEET_KEY, 7, "v7 for gw-other", &layer, "gw-other"),
    )
    .await;
    let s = states.wait(7, "rejected", VERDICT).await;
    assert_eq!(s["reason"], "gateway", "{s}");
    assert_eq!(s["highest_serial"], 0, "a refused push moves no mark: {s}");
    // Its gateway renamed to this one's: the signature no longer holds.
    let mut renamed: serde_json::Value =
        serde_json::from_str(&signed_for(FLEET_KEY, 8, "v8", &layer, "gw-other")).unwrap();
    renamed["gateway"] = serde_json::json!(GATEWAY);
    push(site.cloud.port(), &renamed.to_string()).await;
    assert_eq!(
        states.wait(8, "rejected", VERDICT).await["reason"],
        "signature"
    );
    push(
        site.cloud.port(),
        &signed_for(FLEET_KEY, 2, "v2", &layer, GATEWAY),
    )
    .await;
    states.wait(2, "applied", VERDICT).await;
    assert_eq!(restarts(&mut gw), 1);
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

#[tokio::test]
async fn the_same_push_again_changes_nothing_and_an_older_one_replayed_is_stale() {
    let site = Site::signed_by_fleet();
    let mut states = States::start(site.cloud.port()).await;
    let mut windows =
        Subscriber::start(site.cloud.port(), &format!("{PREFIX}/flow-1/aggregated")).await;
    let mut gw = GatewayProcess::start(&site.config);
    common::remote::healthy(site.metrics).await;
    let v2 = signed(FLEET_KEY, 2, "v2", &lab_layer(free_port()));
    push(site.cloud.port(), &v2).await;
    let applied = states.wait(2, "applied", VERDICT).await;
    push(site.cloud.port(), &v2).await;
    assert!(
        states.any(Duration::from_secs(2)).await.is_none(),
        "the same message again is reported on nothing"
    );
    assert_eq!(restarts(&mut gw), 1);

    // v3 changes the window length: the open 1 s windows carry over the
    // restart and every reading is still counted once.
    let (topic, lines) = readings("flow-1", 0, 200);
    publish_lines(site.building.port(), &topic, &lines, 1).await;
    let v3 = signed(FLEET_KEY, 3, "v3", "[aggregation]\nwindow = \"2s\"\n");
    push(site.cloud.port(), &v3).await;
    states.wait(3, "applied", VERDICT).await;
    let (topic, lines) = readings("flow-1", 1, 200);
    publish_lines(site.building.port(), &topic, &lines, 1).await;
    assert_counted_once(&mut windows, "flow-1", 400).await;
    // Whoever can publish replays the validly signed v2.
    push(site.cloud.port(), &v2).await;
    let s = states.wait(2, "rejected", VERDICT).await;
    assert_eq!(s["reason"], "stale");
    assert_eq!(s["applied"], "v3");
    assert_eq!(s["highest_serial"], 3);
    assert_eq!(restarts(&mut gw), 2);
    let h = healthy_on(site.metrics, Some("v3"), "rejected").await;
    assert_eq!(adapters(&h), ["building"], "v2's adapter is gone with v2");
    // The retained state names what runs.
    let mut late = States::start(site.cloud.port()).await;
    let retained = late.any(Duration::from_secs(5)).await.unwrap();
    assert_eq!(retained["applied"], "v3");
    assert_ne!(retained["ts"], applied["ts"]);
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// A cloud broker restarted without persistence forgets every retained
/// state: a fleet view built from them would lose this gateway until it
/// restarted. The state is told again on the new connection.
#[tokio::test]
async fn a_cloud_broker_restarted_empty_is_told_the_state_again() {
    let mut site = Site::signed_by_fleet();
    let mut states = States::start(site.cloud.port()).await;
    let mut gw = GatewayProcess::start(&site.config);
    common::remote::healthy(site.metrics).await;
    push(
        site.cloud.port(),
        &signed(FLEET_KEY, 2, "v2", "[aggregation]\nwindow = \"2s\"\n"),
    )
    .await;
    states.wait(2, "applied", VERDICT).await;

    site.cloud.restart();
    // Retained by the new broker, or told live once the gateway is back.
    let mut after = States::start(site.cloud.port()).await;
    let told = after.wait(2, "applied", Duration::from_secs(20)).await;
    assert_eq!(told["applied"], "v2");
    let mut late = States::start(site.cloud.port()).await;
    let retained = late.any(Duration::from_secs(5)).await;
    assert_eq!(retained.map(|s| s["applied"].clone()), Some("v2".into()));
    assert_eq!(
        restarts(&mut gw),
        1,
        "the broker's restart restarts nothing"
    );
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

#[tokio::test]
async fn a_push_made_while_the_gateway_was_stopped_is_applied_once_at_its_start() {
    let mut site = Site::signed_by_fleet();
    let dashboard = free_port();
    site.config = base_config(
        site.cloud.port(),
        site.building.port(),
        site.metrics,
        &[public_key(FLEET_KEY)],
        &format!("\n[dashboard]\nenabled = true\nbind = \"127.0.0.1:{dashboard}\"\n"),
    );
    let mut states = States::start(site.cloud.port()).await;
    let mut gw = GatewayProcess::start(&site.config);
    common::remote::healthy(site.metrics).await;
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    push(
        site.cloud.port(),
        &signed(FLEET_KEY, 7, "v7", &lab_layer(free_port())),
    )
    .await;
    let mut gw = GatewayProcess::start_in(gw.dir, &site.config);
    states.wait(7, "applied", VERDICT).await;
    let h = healthy_on(site.metrics, Some("v7"), "applied").await;
    assert_eq!(adapters(&h), ["building", "lab-lines"]);
    assert_eq!(restarts(&mut gw), 1);
    // `validate --print` shows what runs, the pushed layer named.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .args(["validate", "--print", "-c"])
        .arg(&gw.config_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let merged = String::from_utf8_lossy(&out.stdout);
    assert!(
        merged.contains("#   pushed configuration v7 (serial 7)"),
        "{merged}"
    );
    assert!(merged.contains("name = \"lab-lines\""), "{merged}");
    // A reload reads the local files and the applied layer again: its
    // adapter stays.
    gw.signal("HUP");
    gw.wait_for_log("Reloaded.").await;
    let reloaded = gw
        .seen
        .iter()
        .rev()
        .find(|l| l.contains("Reloaded."))
        .unwrap();
    assert!(reloaded.contains("stopped=[]"), "{reloaded}");
    assert_eq!(
        adapters(&healthy_on(site.metrics, Some("v7"), "applied").await),
        ["building", "lab-lines"]
    );
    // The dashboard's gateway page names the version that runs.
    let (code, page) = common::http_get(dashboard, "/gateway").await;
    assert_eq!(code, 200);
    assert!(
        page.contains(r#"<td id="config-applied">v7 (serial 7) — last push v7 applied</td>"#),
        "{page}"
    );
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    // Started again: the retained push is the one applied, nothing happens.
    let mut gw = GatewayProcess::start_in(gw.dir, &site.config);
    healthy_on(site.metrics, Some("v7"), "applied").await;
    gw.wait_for_log("Subscribed to the configuration topic")
        .await;
    assert!(states
        .any(Duration::from_secs(2))
        .await
        .is_some_and(|s| s["status"] == "applied"));
    assert_eq!(restarts(&mut gw), 0);
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

#[tokio::test]
async fn a_push_may_not_touch_the_trust_anchor_or_the_upstream_credentials() {
    let site = Site::signed_by_fleet();
    let mut states = States::start(site.cloud.port()).await;
    let mut gw = GatewayProcess::start(&site.config);
    common::remote::healthy(site.metrics).await;
    let other = public_key(OTHER_KEY);
    let anchor = format!("[remote_config]\npublic_keys = [\"{other}\"]\n");
    push(
        site.cloud.port(),
        &signed(FLEET_KEY, 1, "take-over", &anchor),
    )
    .await;
    let s = states.wait(1, "rejected", VERDICT).await;
    assert_eq!(s["reason"], "not_allowed");
    assert!(
        s["detail"].as_str().unwrap().starts_with("remote_config:"),
        "{s}"
    );
    let creds = "[upstream]\nusername = \"intruder\"\npassword_env = \"HOME\"\n";
    push(site.cloud.port(), &signed(FLEET_KEY, 2, "creds", creds)).await;
    let s = states.wait(2, "rejected", VERDICT).await;
    assert_eq!(s["reason"], "not_allowed");
    let detail = s["detail"].as_str().unwrap();
    assert!(
        detail.contains("upstream.username") && detail.contains("upstream.password_env"),
        "{detail}"
    );
    let moved = "[upstream]\ntopic_prefix = \"elsewhere\"\n";
    push(site.cloud.port(), &signed(FLEET_KEY, 3, "moved", moved)).await;
    let s = states.wait(3, "rejected", VERDICT).await;
    assert!(
        s["detail"]
            .as_str()
            .unwrap()
            .contains("upstream.topic_prefix"),
        "{s}"
    );
    assert_eq!(restarts(&mut gw), 0);
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

#[tokio::test]
async fn config_push_numbers_signs_publishes_and_waits_for_the_verdict() {
    let site = Site::signed_by_fleet();
    let mut gw = GatewayProcess::start(&site.config);
    common::remote::healthy(site.metrics).await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("fleet.pem");
    std::fs::write(&key, common::remote::pem(FLEET_KEY)).unwrap();
    let push_file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let run = |file: std::path::PathBuf, version: &'static str, extra: &'static [&'static str]| {
        let url = format!("mqtt://127.0.0.1:{}", site.cloud.port());
        let key = key.clone();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
                .args([
                    "config",
                    "push",
                    "--url",
                    &url,
                    "--gateway",
                    "gw-rc",
                    "--version",
                    version,
                ])
                // v1 names its key, v2 takes it from the environment.
                .args(if version == "v1" {
                    vec!["--key".into(), key.clone().into_os_string()]
                } else {
                    Vec::new()
                })
                .env("EDGE_GATEWAY_SIGNING_KEY", &key)
                .args(extra)
                .args(["--wait", "--timeout", "20s"])
                .arg(&file)
                .output()
                .await
                .unwrap()
        }
    };
    let before = u64::try_from(common::now_ms()).unwrap();
    let out = run(push_file("v1.toml", &lab_layer(free_port())), "v1", &[]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Numbered from the clock (milliseconds since the epoch), not from
    // the unauthenticated report.
    let first = verdict["serial"].as_u64().unwrap();
    assert!(first >= before, "{verdict}");
    assert_eq!(verdict["status"], "applied");
    // The retained push names its gateway, and an independent verifier
    // accepts the signature over it.
    let mut retained = Subscriber::start(site.cloud.port(), &common::remote::config_topic()).await;
    let pushed = retained.next(VERDICT).await.unwrap();
    let message: serde_json::Value = serde_json::from_str(&pushed.payload).unwrap();
    assert_eq!(message["gateway"], "gw-rc", "{message}");
    assert_eq!(
        common::remote::verify(&public_key(FLEET_KEY), &pushed.payload),
        "verified"
    );
    // The next serial comes from the reported one.
    let out = run(
        push_file("v2.toml", "[aggregation]\nwindow = \"nope\"\n"),
        "v2",
        &[],
    )
    .await;
    assert!(!out.status.success(), "a rejected push exits non-zero");
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let second = verdict["serial"].as_u64().unwrap();
    assert!(second > first, "{verdict}");
    assert_eq!(verdict["reason"], "schema");
    healthy_on(site.metrics, Some("v1"), "rejected").await;
    // For gateways that predate `gateway` in the message: unbound.
    let out = run(
        push_file("v3.toml", &lab_layer(free_port())),
        "v3",
        &["--any-gateway"],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut retained = Subscriber::start(site.cloud.port(), &common::remote::config_topic()).await;
    let message: serde_json::Value =
        serde_json::from_str(&retained.next(VERDICT).await.unwrap().payload).unwrap();
    assert!(message["serial"].as_u64().unwrap() > second, "{message}");
    assert_eq!(message.get("gateway"), None);
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// `edge-gateway config push --wait` of `file` as `version` on the site's
/// cloud broker, signed with the fleet key in `key`, with `extra` flags.
async fn config_push(
    cloud: u16,
    key: &std::path::Path,
    file: &std::path::Path,
    version: &str,
    extra: &[&str],
) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .args(["config", "push", "--url"])
        .arg(format!("mqtt://127.0.0.1:{cloud}"))
        .args([
            "--gateway",
            GATEWAY,
            "--prefix",
            PREFIX,
            "--version",
            version,
        ])
        .arg("--key")
        .arg(key)
        .args(extra)
        .arg(file)
        .output()
        .await
        .unwrap()
}

fn state_topic() -> String {
    format!("{}/state", common::remote::config_topic())
}

/// Whoever may publish on the report topic forges the gateway's retained
/// state with a mark near 2^64. Followed, `config push` would sign one push
/// there and the fleet could never push to this gateway again; it refuses
/// and says how to go on, and an explicit --serial still pushes.
#[tokio::test]
async fn config_push_refuses_a_forged_mark_near_the_top_and_an_explicit_serial_still_applies() {
    let site = Site::signed_by_fleet();
    let mut gw = GatewayProcess::start(&site.config);
    common::remote::healthy(site.metrics).await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("fleet.pem");
    std::fs::write(&key, common::remote::pem(FLEET_KEY)).unwrap();
    let file = dir.path().join("site.toml");
    std::fs::write(&file, lab_layer(free_port())).unwrap();
    let forged = r#"{"desired":"v1","serial":1,"applied":"v1","status":"applied","reason":"","detail":"","ts":"2026-11-30T00:00:00Z","sha256":null,"applied_serial":1,"applied_sha256":null,"highest_serial":18446744073709551000}"#;
    test_support::publish(site.cloud.port(), &state_topic(), forged, 1, true).await;

    let wait = ["--wait", "--timeout", "20s"];
    let out = config_push(site.cloud.port(), &key, &file, "v1", &wait).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("18446744073709551000"), "{stderr}");
    assert!(stderr.contains("more than a day ahead"), "{stderr}");
    assert!(stderr.contains("pass --serial explicitly"), "{stderr}");
    let mut retained = Subscriber::start(site.cloud.port(), &common::remote::config_topic()).await;
    assert!(
        retained.next(Duration::from_secs(2)).await.is_none(),
        "nothing was published"
    );
    assert_eq!(restarts(&mut gw), 0);

    // The operator's way on: an explicit serial.
    let serial = common::now_ms().to_string();
    let mut args = vec!["--serial", serial.as_str()];
    args.extend(wait);
    let out = config_push(site.cloud.port(), &key, &file, "v1", &args).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict["serial"].to_string(), serial);
    assert_eq!(verdict["status"], "applied");
    // The gateway's own report replaced the forgery: numbering works again.
    std::fs::write(&file, "[aggregation]\nwindow = \"2s\"\n").unwrap();
    let out = config_push(site.cloud.port(), &key, &file, "v2", &wait).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(verdict["serial"].as_u64().unwrap() > serial.parse::<u64>().unwrap());
    assert_eq!(verdict["status"], "applied");
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

#[tokio::test]
async fn config_push_refuses_a_reported_mark_that_is_not_a_plain_integer() {
    let site = Site::signed_by_fleet();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("fleet.pem");
    std::fs::write(&key, common::remote::pem(FLEET_KEY)).unwrap();
    let file = dir.path().join("site.toml");
    std::fs::write(&file, "[aggregation]\nwindow = \"2s\"\n").unwrap();
    let forged = r#"{"status":"applied","highest_serial":1e300}"#;
    test_support::publish(site.cloud.port(), &state_topic(), forged, 1, true).await;
    let out = config_push(site.cloud.port(), &key, &file, "v1", &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("not a plain unsigned integer"), "{stderr}");
    assert!(stderr.contains("--serial"), "{stderr}");
}

/// No gateway answers; whoever may publish on the report topic sees the
/// push and answers "applied" for its serial. `--wait` must not take that
/// for the verdict: it names the serial but not the pushed content.
#[tokio::test]
async fn config_push_wait_does_not_take_a_forged_verdict_for_its_push() {
    let site = Site::signed_by_fleet();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("fleet.pem");
    std::fs::write(&key, common::remote::pem(FLEET_KEY)).unwrap();
    let file = dir.path().join("site.toml");
    std::fs::write(&file, "[aggregation]\nwindow = \"2s\"\n").unwrap();
    let mut pushes = Subscriber::start(site.cloud.port(), &common::remote::config_topic()).await;
    let cloud = site.cloud.port();
    let forger = tokio::spawn(async move {
        let pushed = pushes.next(Duration::from_secs(20)).await.unwrap();
        let message: serde_json::Value = serde_json::from_str(&pushed.payload).unwrap();
        let forged = serde_json::json!({
            "desired": message["version"], "serial": message["serial"],
            "status": "applied", "reason": "", "highest_serial": message["serial"],
            "sha256": "0".repeat(64),
        });
        test_support::publish(cloud, &state_topic(), &forged.to_string(), 1, true).await;
    });
    let out = config_push(
        cloud,
        &key,
        &file,
        "v1",
        &["--serial", "7", "--wait", "--timeout", "5s"],
    )
    .await;
    forger.await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("no verdict from the gateway"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn config_keygen_and_sign_make_messages_an_independent_verifier_accepts() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("fleet.key");
    let edge = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
            .arg("config")
            .args(args)
            .output()
            .unwrap()
    };
    let out = edge(&["keygen".as_ref(), "--key".as_ref(), key.as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    let public = line
        .trim()
        .strip_prefix("public_keys = [\"")
        .and_then(|l| l.strip_suffix("\"]"))
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the signing key is private");
    let again = edge(&["keygen".as_ref(), "--key".as_ref(), key.as_os_str()]);
    assert!(
        !again.status.success(),
        "an existing key is never overwritten"
    );
    let layer = dir.path().join("site.toml");
    std::fs::write(
        &layer,
        "[aggregation]\nwindow = \"30s\"\n# é, a non-ASCII comment\n",
    )
    .unwrap();
    let out = edge(&[
        "sign".as_ref(),
        "--key".as_ref(),
        key.as_os_str(),
        "--serial".as_ref(),
        "9".as_ref(),
        "--version".as_ref(),
        "v9 floor 3".as_ref(),
        layer.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let message = String::from_utf8(out.stdout).unwrap();
    assert_eq!(common::remote::verify(&public, &message), "verified");
    // For one gateway: its id is signed too, as the other side checks.
    let out = edge(&[
        "sign".as_ref(),
        "--key".as_ref(),
        key.as_os_str(),
        "--serial".as_ref(),
        "9".as_ref(),
        "--version".as_ref(),
        "v9".as_ref(),
        "--gateway".as_ref(),
        "gw-017".as_ref(),
        layer.as_os_str(),
    ]);
    let bound = String::from_utf8(out.stdout).unwrap();
    let json: serde_json::Value = serde_json::from_str(&bound).unwrap();
    assert_eq!(json["gateway"], "gw-017", "{bound}");
    assert_eq!(common::remote::verify(&public, &bound), "verified");
    let not_toml = dir.path().join("broken.toml");
    std::fs::write(&not_toml, "[aggregation\n").unwrap();
    let out = edge(&[
        "sign".as_ref(),
        "--key".as_ref(),
        key.as_os_str(),
        "--serial".as_ref(),
        "10".as_ref(),
        "--version".as_ref(),
        "v10".as_ref(),
        not_toml.as_os_str(),
    ]);
    assert!(
        !out.status.success(),
        "a file that is not TOML is not signed"
    );
}

#[tokio::test]
async fn a_flood_of_forged_pushes_neither_hides_a_real_one_nor_floods_the_reports() {
    let site = Site::signed_by_fleet();
    let mut states = States::start(site.cloud.port()).await;
    let mut gw = GatewayProcess::start(&site.config);
    common::remote::healthy(site.metrics).await;
    let layer = lab_layer(free_port());
    // Forged: other key, serials far ahead; and one of the fleet's own,
    // signed but not above the mark (serial 0: stale).
    let forged: Vec<String> = (0..4)
        .map(|i| signed(OTHER_KEY, 1000 + i, "evil", &layer))
        .chain([signed(FLEET_KEY, 0, "v0", "")])
        .collect();
    let flood: Vec<String> = forged.iter().cycle().take(400).cloned().collect();
    let cloud = site.cloud.port();
    let topic = common::remote::config_topic();
    let started = tokio::time::Instant::now();
    let before = {
        let (flood, topic) = (flood.clone(), topic.clone());
        tokio::spawn(async move { publish_lines(cloud, &topic, &flood, 1).await })
    };
    push(cloud, &signed(FLEET_KEY, 7, "v7", &layer)).await;
    publish_lines(cloud, &topic, &flood, 1).await;
    before.await.unwrap();
    let mut reports = Vec::new();
    let applied = states
        .0
        .wait_for(VERDICT, |m| {
            reports.push(m.json());
            m.json()["serial"] == 7 && m.json()["status"] == "applied"
        })
        .await;
    assert!(applied.is_some(), "the real push was applied: {reports:?}");
    // The flood's refusals may follow: the last push's status is theirs.
    common::remote::healthy_running(site.metrics, Some("v7"), None).await;
    // Refusals are paced: about one a second, not one per message.
    while let Some(s) = states.any(Duration::from_millis(1500)).await {
        reports.push(s);
    }
    let refused = reports.iter().filter(|r| r["status"] == "rejected").count();
    let seconds = started.elapsed().as_secs() as usize;
    assert!(refused <= seconds + 3, "{refused} refusals in {seconds} s");
    assert_eq!(restarts(&mut gw), 1);
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}
