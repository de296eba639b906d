//! SIGHUP and a configuration pushed from the cloud, with the real binary:
//! a reload around a restart in place.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common;
use common::remote::{
    adapters, base_config, healthy_on, lab_layer, public_key, push, restarts, signed, States,
    FLEET_KEY,
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
