//! SIGHUP reload with the real binary: a changed adapter restarts while the
//! open window carries on; an invalid file is rejected and the old config
//! keeps running; a new `conf.d/` drop-in is read.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{config, http_until, GatewayProcess, WAIT};
use test_support::{free_port, publish, Mosquitto, Subscriber};

/// One open window for the whole test, forwarded (partial) at SIGTERM;
/// the metrics endpoint tells when the adapter has taken a reading.
fn cfg(gateway: &str, local: u16, upstream: u16, metrics: u16) -> String {
    config(gateway, local, upstream, "1h", "1s").replace(
        "grace = \"1s\"",
        "grace = \"1s\"\ncheckpoint_interval = \"0s\"",
    ) + &format!("\n[metrics]\nbind = \"127.0.0.1:{metrics}\"\n")
}

async fn readings_taken(metrics: u16, n: u32) {
    adapter_readings(metrics, "local-sensors", n).await;
}

async fn adapter_readings(metrics: u16, adapter: &str, n: u32) {
    let line = format!("edge_gateway_adapter_readings_total{{adapter=\"{adapter}\"}} {n}\n");
    http_until(metrics, "/metrics", |_, body| body.contains(&line)).await;
}

async fn final_aggregate(sub: &mut Subscriber, device: &str) -> serde_json::Value {
    let topic = format!("building/hq/{device}/aggregated");
    sub.wait_for(WAIT, |m| m.topic == topic)
        .await
        .unwrap_or_else(|| panic!("no aggregate for {device}"))
        .json()
}

#[tokio::test]
async fn a_changed_adapter_restarts_and_the_open_window_is_kept() {
    let first = Mosquitto::start();
    let second = Mosquitto::start();
    let upstream = Mosquitto::start();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/#").await;
    let metrics = free_port();
    let mut gw = GatewayProcess::start(&cfg("gw-reload-1", first.port(), upstream.port(), metrics));
    gw.wait_for_log("Subscribed").await;
    publish(first.port(), "sensors/data/r1/temperature", "10", 1, false).await;
    readings_taken(metrics, 1).await;
    gw.wait_for_log("Connected upstream.").await;

    // The same adapter, now reading the second broker.
    let text = std::fs::read_to_string(&gw.config_path).unwrap().replace(
        &format!("url = \"mqtt://127.0.0.1:{}\"", first.port()),
        &format!("url = \"mqtt://127.0.0.1:{}\"", second.port()),
    );
    std::fs::write(&gw.config_path, text).unwrap();
    gw.signal("HUP");
    gw.wait_for_log("Reloaded.").await;
    let reloaded = gw.seen.iter().find(|l| l.contains("Reloaded.")).unwrap();
    assert!(
        reloaded.contains("restarted=[\"local-sensors\"]"),
        "{reloaded}"
    );
    gw.wait_for_log_count("Subscribed", 2).await;
    publish(second.port(), "sensors/data/r1/temperature", "20", 1, false).await;
    // The old broker is no longer read.
    publish(
        first.port(),
        "sensors/data/r1/temperature",
        "1000",
        1,
        false,
    )
    .await;
    publish(second.port(), "sensors/data/r1/temperature", "30", 1, false).await;
    readings_taken(metrics, 3).await;

    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    let agg = final_aggregate(&mut sub, "r1").await;
    let t = &agg["metrics"]["temperature"];
    // One window across the reload: readings of both adapters' lives.
    assert_eq!(t["count"], 3, "{agg}");
    assert_eq!(t["avg"], 20.0, "{agg}");
    assert_eq!(t["max"], 30.0, "{agg}");
}

#[tokio::test]
async fn an_invalid_file_is_rejected_and_the_old_config_keeps_running() {
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/#").await;
    let metrics = free_port();
    let good = cfg("gw-reload-2", local.port(), upstream.port(), metrics);
    let mut gw = GatewayProcess::start(&good);
    gw.wait_for_log("Subscribed").await;
    publish(local.port(), "sensors/data/r2/temperature", "1", 1, false).await;
    readings_taken(metrics, 1).await;

    let bad = std::fs::read_to_string(&gw.config_path)
        .unwrap()
        .replace("qos = 1\ntopic_prefix", "qos = 7\ntopic_prefix")
        + "\n[bogus]\n";
    std::fs::write(&gw.config_path, bad).unwrap();
    gw.signal("HUP");
    gw.wait_for_log("Reload rejected").await;
    for problem in [
        "upstream.qos: expected 0, 1 or 2, got 7",
        "bogus: unknown section",
    ] {
        assert!(
            gw.seen.iter().any(|l| l.contains(problem)),
            "{problem:?} not logged:\n{}",
            gw.seen.join("\n")
        );
    }
    assert!(!gw.seen.iter().any(|l| l.contains("Reloaded.")));

    // Still running on the old config.
    publish(local.port(), "sensors/data/r2/temperature", "3", 1, false).await;
    readings_taken(metrics, 2).await;
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    let agg = final_aggregate(&mut sub, "r2").await;
    assert_eq!(agg["metrics"]["temperature"]["count"], 2, "{agg}");
    assert_eq!(agg["metrics"]["temperature"]["avg"], 2.0, "{agg}");
}

#[tokio::test]
async fn a_new_drop_in_is_read_at_sighup() {
    let local = Mosquitto::start();
    let extra = Mosquitto::start();
    let upstream = Mosquitto::start();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/#").await;
    let metrics = free_port();
    let mut gw = GatewayProcess::start(&cfg("gw-reload-3", local.port(), upstream.port(), metrics));
    gw.wait_for_log("Subscribed").await;

    let conf_d = gw.config_path.parent().unwrap().join("conf.d");
    std::fs::create_dir(&conf_d).unwrap();
    std::fs::write(
        conf_d.join("60-extra.toml"),
        format!(
            "[[adapter]]\ntype = \"mqtt\"\nname = \"extra\"\nurl = \"mqtt://127.0.0.1:{}\"\ntopics = [\"extra/{{device}}/{{metric}}\"]\n",
            extra.port()
        ),
    )
    .unwrap();
    gw.signal("HUP");
    gw.wait_for_log("Reloaded.").await;
    let reloaded = gw.seen.iter().find(|l| l.contains("Reloaded.")).unwrap();
    assert!(reloaded.contains("started=[\"extra\"]"), "{reloaded}");
    assert!(
        reloaded.contains("restarted=[]") && reloaded.contains("stopped=[]"),
        "the file's adapter is untouched: {reloaded}"
    );
    gw.wait_for_log_count("Subscribed", 2).await;
    publish(extra.port(), "extra/r3/temperature", "7", 1, false).await;
    adapter_readings(metrics, "extra", 1).await;

    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    let agg = final_aggregate(&mut sub, "r3").await;
    assert_eq!(agg["metrics"]["temperature"]["avg"], 7.0, "{agg}");
}
