//! Nothing forwarded is lost when the cloud is away: the outbox across
//! outages, restarts, a damaged file and a full disk budget, with the real
//! binary and real brokers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{config, distinct_ids, rel_close, totals, GatewayProcess, WAIT};
use test_support::{publish, Mosquitto, Subscriber};

// One test at a time: each fills a small disk or waits out an outage
// against its own brokers, and run side by side on 2 cores their timings
// (how much fits before the disk fills, which window a reading lands in)
// drift from what each asserts.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An upstream port with nothing listening yet, and the broker to start there later.
fn absent_upstream() -> Mosquitto {
    let mut up = Mosquitto::start_persistent();
    up.stop();
    up
}

#[tokio::test]
async fn an_upstream_outage_of_several_windows_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let local = Mosquitto::start();
    let mut upstream = Mosquitto::start_persistent();
    let mut sub =
        Subscriber::start_persistent(upstream.port(), "building/hq/#", "outage-sub").await;
    let mut gw = GatewayProcess::start(&config(
        "gw-outage",
        local.port(),
        upstream.port(),
        "1s",
        "0s",
    ));
    gw.wait_for_log("Subscribed").await;
    let mut sent: Vec<f64> = Vec::new();
    let mut send = |v: f64| {
        sent.push(v);
        let p = local.port();
        async move {
            publish(
                p,
                "sensors/data/outage-dev/temperature",
                &v.to_string(),
                1,
                false,
            )
            .await
        }
    };
    // One reading, so it cannot straddle two windows.
    send(20.5).await;
    sub.wait_for(WAIT, |m| m.topic.ends_with("outage-dev/aggregated"))
        .await
        .expect("link is up");

    upstream.stop();
    sub.stop().await;
    gw.wait_for_log("Lost the upstream broker").await;
    // Three windows close while the cloud is away, each stored in the outbox.
    for (i, v) in [22.0, 23.5, -4.125].into_iter().enumerate() {
        send(v).await;
        gw.wait_for_log_count("Stored in the outbox", 2 + i).await;
    }
    upstream.restart();
    let mut sub =
        Subscriber::start_persistent(upstream.port(), "building/hq/#", "outage-sub").await;
    send(30.0).await;
    let n = sent.len() as u64;
    let got = sub
        .collect_until(WAIT, |m| {
            totals(m).get("outage-dev").is_some_and(|t| t.0 >= n - 1)
        })
        .await;
    // The first reading was delivered before the outage, to the first subscriber.
    let t = totals(&got)["outage-dev"];
    let rest = &sent[1..];
    assert_eq!(t.0, rest.len() as u64, "{t:?}");
    assert!(rel_close(t.1, rest.iter().sum()));
    assert!(rel_close(t.2, rest.iter().map(|v| v * v).sum()));
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// Publishes one SenML pack giving `devices` devices one reading each.
async fn one_reading_per_device(port: u16, devices: usize) {
    let records: Vec<String> = (0..devices)
        .map(|i| {
            format!(
                r#"{{"bn":"dev{i:03}:","n":"temperature","v":{}}}"#,
                20 + i % 5
            )
        })
        .collect();
    publish(
        port,
        "senml/pack",
        &format!("[{}]", records.join(",")),
        1,
        false,
    )
    .await;
}

#[tokio::test]
async fn what_waited_in_the_outbox_is_delivered_after_a_restart() {
    let _serial = SERIAL.lock().await;
    let local = Mosquitto::start();
    let mut upstream = absent_upstream();
    let cfg = config("gw-restart", local.port(), upstream.port(), "1s", "0s");
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Subscribed").await;
    one_reading_per_device(local.port(), 12).await;
    gw.wait_for_log("Stored in the outbox").await;
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));

    upstream.restart();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/#").await;
    let mut gw = GatewayProcess::start_in(gw.dir, &cfg);
    let got = sub
        .collect_until(WAIT, |m| totals(m).values().map(|t| t.0).sum::<u64>() >= 12)
        .await;
    let t = totals(&got);
    assert_eq!(t.len(), 12, "{t:#?}");
    assert!(t.values().all(|v| v.0 == 1));
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

#[tokio::test]
async fn a_damaged_outbox_tail_is_reported_and_the_intact_messages_delivered() {
    let _serial = SERIAL.lock().await;
    let local = Mosquitto::start();
    let mut upstream = absent_upstream();
    let cfg = config("gw-damage", local.port(), upstream.port(), "1s", "0s");
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Subscribed").await;
    one_reading_per_device(local.port(), 10).await;
    gw.wait_for_log("Stored in the outbox").await;
    gw.signal("TERM");
    gw.wait_exit().await;
    gw.drain_log().await;
    let stored = gw.last_logged("last_seq").expect("stored count") as usize;

    // A power cut in the middle of the last write.
    let outbox = gw.dir.path().join("state/outbox");
    let mut segs: Vec<_> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segs.sort();
    let last = segs
        .iter()
        .rev()
        .find(|p| std::fs::metadata(p).unwrap().len() > 0)
        .unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - 20)
        .unwrap();

    upstream.restart();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/#").await;
    let mut gw = GatewayProcess::start_in(gw.dir, &cfg);
    gw.wait_for_log("skipped damaged bytes").await;
    let got = sub
        .collect_until(WAIT, |m| distinct_ids(m) >= stored - 1)
        .await;
    assert_eq!(
        distinct_ids(&got),
        stored - 1,
        "every intact message is delivered"
    );
    gw.signal("TERM");
    assert_eq!(
        gw.wait_exit().await,
        Some(0),
        "a damaged store never stops the gateway"
    );
}

async fn full_outbox(policy: &str) -> (Vec<String>, u64) {
    let local = Mosquitto::start();
    let mut upstream = absent_upstream();
    let cfg = format!(
        "{}\n[outbox]\nmax_bytes = \"64KiB\"\npolicy = \"{policy}\"\n",
        config(
            &format!("gw-full-{policy}"),
            local.port(),
            upstream.port(),
            "1s",
            "0s"
        )
    );
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Subscribed").await;
    one_reading_per_device(local.port(), 400).await;
    gw.wait_for_log("Outbox full").await;
    gw.signal("TERM");
    assert_eq!(
        gw.wait_exit().await,
        Some(0),
        "a full outbox never stops the gateway"
    );
    gw.drain_log().await;
    let dropped = gw
        .last_logged("outbox_dropped")
        .expect("drop counter in the status line") as u64;

    upstream.restart();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/#").await;
    let mut gw = GatewayProcess::start_in(gw.dir, &cfg);
    let got = sub
        .collect_until(WAIT, |m| totals(m).len() as u64 + dropped >= 400)
        .await;
    gw.signal("TERM");
    gw.wait_exit().await;
    (totals(&got).into_keys().collect(), dropped)
}

#[tokio::test]
async fn a_full_outbox_drops_the_oldest_and_counts_them() {
    let _serial = SERIAL.lock().await;
    let (delivered, dropped) = full_outbox("drop_oldest").await;
    assert!(dropped > 0);
    assert_eq!(
        delivered.len() as u64 + dropped,
        400,
        "the counter equals what is missing"
    );
    let newest: Vec<String> = (400 - delivered.len()..400)
        .map(|i| format!("dev{i:03}"))
        .collect();
    assert_eq!(delivered, newest, "the newest are kept");
}

#[tokio::test]
async fn a_full_outbox_rejects_the_newest_when_told_to() {
    let _serial = SERIAL.lock().await;
    let (delivered, dropped) = full_outbox("reject_new").await;
    assert!(dropped > 0);
    assert_eq!(
        delivered.len() as u64 + dropped,
        400,
        "the counter equals what is missing"
    );
    let oldest: Vec<String> = (0..delivered.len()).map(|i| format!("dev{i:03}")).collect();
    assert_eq!(delivered, oldest, "the oldest are kept");
}

/// A small tmpfs mounted over a directory, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// `None` where mounting is not permitted (not root, no CAP_SYS_ADMIN).
    fn mount(at: &std::path::Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(at.to_path_buf()))
    }

    fn grow(&self, size: &str) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_full_disk_applies_the_policy_and_recovers_when_space_returns() {
    let _serial = SERIAL.lock().await;
    let local = Mosquitto::start();
    let mut upstream = absent_upstream();
    // The budget is far larger than the disk: the disk fills first. Memory
    // holds 64 messages before the policy makes room on the disk.
    let cfg = format!(
        "{}\n[outbox]\nmax_bytes = \"256KiB\"\n",
        config("gw-diskfull", local.port(), upstream.port(), "1s", "0s").replace(
            "max_backoff = \"1s\"\n\n[aggregation]",
            "max_backoff = \"1s\"\nmax_queued = 64\n\n[aggregation]"
        )
    );
    assert!(cfg.contains("max_queued = 64"));
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&dir.path().join("state"), "96k") else {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs here (needs root); the disk-full test did not run"
        );
        return;
    };
    let mut gw = GatewayProcess::start_in(dir, &cfg);
    gw.wait_for_log("Subscribed").await;
    one_reading_per_device(local.port(), 400).await;
    gw.wait_for_log("Disk full: dropped the oldest").await;
    assert!(gw.child.try_wait().unwrap().is_none(), "still running");

    disk.grow("16m");
    gw.signal("TERM");
    assert_eq!(
        gw.wait_exit().await,
        Some(0),
        "a full disk never stops the gateway"
    );
    gw.drain_log().await;
    let dropped = gw
        .last_logged("outbox_dropped")
        .expect("drop counter in the status line") as u64;
    assert!(dropped > 0);

    upstream.restart();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/#").await;
    let mut gw = GatewayProcess::start_in(gw.dir, &cfg);
    let got = sub
        .collect_until(WAIT, |m| totals(m).len() as u64 + dropped >= 400)
        .await;
    let delivered: Vec<String> = totals(&got).into_keys().collect();
    assert_eq!(
        delivered.len() as u64 + dropped,
        400,
        "the counter equals what is missing"
    );
    let newest: Vec<String> = (400 - delivered.len()..400)
        .map(|i| format!("dev{i:03}"))
        .collect();
    assert_eq!(delivered, newest, "the oldest gave way");

    // With room again, new readings flow as usual.
    publish(
        local.port(),
        "sensors/data/after-dev/temperature",
        "5",
        1,
        false,
    )
    .await;
    sub.wait_for(WAIT, |m| m.topic == "building/hq/after-dev/aggregated")
        .await
        .expect("delivered once space returned");
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    drop(disk);
}
