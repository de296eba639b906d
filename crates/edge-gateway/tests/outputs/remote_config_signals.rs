//! SIGHUP and a configuration pushed from the cloud, with the real binary:
//! a reload around a restart in place, and a reload after which the
//! applied layer no longer combines with the local files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common;
use common::remote::{
    adapters, base_config, healthy_on, lab_layer, public_key, push, restarts, signed, States,
    FLEET_KEY, OTHER_KEY,
};
use common::GatewayProcess;
use test_support::{free_port, Mosquitto};

/// `health_timeout` in these configs, plus the restarts on each side.
const VERDICT: Duration = Duration::from_secs(15);

/// SIGHUPs sent to `pid` one after the other (each `kill` a process of
/// its own, which paces them) until the returned flag is set.
fn hangups(pid: u32) -> (Arc<AtomicBool>, std::thread::JoinHandle<usize>) {
    let done = Arc::new(AtomicBool::new(false));
    let until = done.clone();
    let sender = std::thread::spawn(move || {
        let mut sent = 0;
        while !until.load(Ordering::Relaxed) {
            // Pacing, not synchronisation: a few hundred a second, as a
            // script looping on `systemctl reload` might send.
            std::thread::sleep(Duration::from_millis(3));
            let ok = std::process::Command::new("kill")
                .args(["-HUP", &pid.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                break;
            }
            sent += 1;
        }
        sent
    });
    (done, sender)
}

/// A restart in place (`exec`) resets the reload handler to SIGHUP's
/// default action, terminate: a `systemctl reload` landing while the new
/// start loads its configuration used to kill the gateway.
#[tokio::test]
async fn sighups_around_a_restart_in_place_neither_kill_the_gateway_nor_stop_the_apply() {
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
    let mut gw = GatewayProcess::start(&config);
    common::remote::healthy(metrics).await;
    let pid = gw.child.id().unwrap();
    let (done, sender) = hangups(pid);
    push(
        cloud.port(),
        &signed(FLEET_KEY, 2, "v2", &lab_layer(free_port())),
    )
    .await;
    let applied = states.wait(2, "applied", VERDICT).await;
    done.store(true, Ordering::Relaxed);
    let sent = sender.join().unwrap();
    assert_eq!(applied["applied"], "v2");
    assert!(
        gw.child.try_wait().unwrap().is_none(),
        "the gateway died after {sent} SIGHUPs"
    );
    assert_eq!(gw.child.id(), Some(pid), "restarted in place, same PID");
    let h = healthy_on(metrics, Some("v2"), "applied").await;
    assert_eq!(adapters(&h), ["building", "lab-lines"]);
    assert_eq!(restarts(&mut gw), 1);
    // Reloads work as ever on the new start.
    gw.take_log();
    gw.signal("HUP");
    gw.wait_for_log("Reloaded.").await;
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// The local files gain an adapter of the name the applied push adds: at
/// the SIGHUP the two no longer combine, the local files run alone, and
/// the retained state and `/health` say so, as a start would.
#[tokio::test]
async fn a_reload_the_applied_layer_no_longer_combines_with_is_reported_rolled_back() {
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
    let mut gw = GatewayProcess::start(&config);
    common::remote::healthy(metrics).await;
    push(
        cloud.port(),
        &signed(FLEET_KEY, 2, "v2", &lab_layer(free_port())),
    )
    .await;
    states.wait(2, "applied", VERDICT).await;
    healthy_on(metrics, Some("v2"), "applied").await;
    let mut local = std::fs::read_to_string(&gw.config_path).unwrap();
    local.push_str(&format!(
        "\n[[adapter]]\ntype = \"tcp_line\"\nname = \"lab-lines\"\nbind = \"127.0.0.1:{}\"\nformat = \"kv\"\ndevice = \"local-1\"\n",
        free_port()
    ));
    std::fs::write(&gw.config_path, local).unwrap();
    gw.signal("HUP");
    let s = states.wait(2, "rolled_back", VERDICT).await;
    assert_eq!(s["reason"], "layer", "{s}");
    assert_eq!(s["applied"], serde_json::Value::Null, "{s}");
    assert_eq!(s["highest_serial"], 2, "{s}");
    let detail = s["detail"].as_str().unwrap();
    assert!(detail.contains("no longer validates"), "{detail}");
    let h = healthy_on(metrics, None, "rolled_back").await;
    assert_eq!(adapters(&h), ["building", "lab-lines"]);
    assert_eq!(restarts(&mut gw), 1, "a reload is no restart");
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    // Journaled: started again (on the original files, which the layer
    // would combine with), the gateway still runs the local files alone
    // and says so; the retained push is the one it processed.
    let gw2 = GatewayProcess::start_in(gw.dir, &config);
    healthy_on(metrics, None, "rolled_back").await;
    drop(gw2);
}

/// The facility team revokes a fleet key on the Pi (its `public_keys`
/// edited, `systemctl reload`): the running gateway still checks pushes
/// with the keys it started with, so the reload must say, as for every
/// section a reload does not apply, that the change needs a restart,
/// never leave the team believing the key is revoked.
#[tokio::test]
async fn a_reload_that_changes_remote_config_says_it_needs_a_restart() {
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
    let mut gw = GatewayProcess::start(&config);
    common::remote::healthy(metrics).await;
    let local = std::fs::read_to_string(&gw.config_path).unwrap();
    let revoked = local.replace(&public_key(FLEET_KEY), &public_key(OTHER_KEY));
    assert_ne!(local, revoked);
    std::fs::write(&gw.config_path, revoked).unwrap();
    gw.signal("HUP");
    gw.wait_for_log("Reloaded.").await;
    let needs = gw
        .seen
        .iter()
        .find(|l| l.contains("only take effect at a restart"))
        .cloned()
        .unwrap_or_default();
    assert!(needs.contains("remote_config"), "{}", gw.seen.join("\n"));
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}
