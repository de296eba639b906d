//! The radio watchdog: keeps a scan alive for months.
//!
//! BlueZ discovery can stall silently after hours (btleplug #332, bookworm's
//! BlueZ 5.66, the Pi's Broadcom chip); Home Assistant resets adapters for
//! the same reason. So after `silence` with no radio event at all, the
//! watchdog escalates, one step per silent period, each logged and counted
//! (`edge_gateway_ble_watchdog_actions_total{action}`):
//! 1. `restart_scan`: stop and start the scan;
//! 2. `power_cycle`: power the adapter off and on through BlueZ, then scan;
//! 3. `exit`: give up, so the caller can exit and systemd restart the
//!    service (a fresh D-Bus connection and a fresh bluetoothd session).
//!
//! Any event resets the ladder. A radio that cannot be reached (no
//! bluetoothd, no adapter, D-Bus access denied) or whose event stream ends
//! (adapter unplugged, bluetoothd restarted) is retried with backoff; the
//! adapter then reports `connected 0` (`/health`: `connecting`) and logs the
//! fault once, not once per retry.
//!
//! [`Radio`] is the outbound edge, so the ladder is tested with a fake
//! radio on tokio's paused clock.

use std::future::Future;
use std::time::Duration;

use gateway_core::backoff::Backoff;
use gateway_core::telemetry::{Gauge, Telemetry};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::advert::Advertisement;

/// Watchdog steps, by label.
pub const WATCHDOG_ACTIONS: &str = "edge_gateway_ble_watchdog_actions_total";

/// What a scanning radio reports.
#[derive(Debug)]
pub enum RadioEvent {
    Advert(Advertisement),
    /// Proof of life without data to decode (an RSSI update, a device
    /// seen): the radio works even if no sensor spoke.
    Activity,
}

/// Why the radio cannot scan. `hint` says what the operator can do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RadioError {
    /// A stable label, for logging a fault once until it changes.
    pub kind: &'static str,
    pub message: String,
}

/// A BLE radio, as the watchdog drives it.
pub trait Radio: Send {
    /// Connects and starts scanning; events arrive on the receiver until
    /// the scan or the connection ends (then it closes).
    fn start(
        &mut self,
    ) -> impl Future<Output = Result<mpsc::Receiver<RadioEvent>, RadioError>> + Send;
    /// Stops scanning (best effort).
    fn stop(&mut self) -> impl Future<Output = ()> + Send;
    /// Powers the adapter off and on.
    fn power_cycle(&mut self) -> impl Future<Output = Result<(), RadioError>> + Send;
}

/// The radio stayed silent through every step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no BLE advertisement for {silence:?} even after restarting the scan and power-cycling the adapter")]
pub struct Wedged {
    pub silence: Duration,
}

/// Backoff between attempts to reach an absent radio: a dongle plugged in
/// or bluetoothd started is picked up within a minute.
const RETRY_INITIAL: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// Runs `radio` until `stop`, forwarding advertisements to `out`.
///
/// # Errors
/// [`Wedged`] after the last step of the ladder.
pub async fn supervise<R: Radio>(
    radio: &mut R,
    silence: Duration,
    out: &mpsc::Sender<Advertisement>,
    connected: &Gauge,
    telemetry: &Telemetry,
    adapter: &str,
    stop: &CancellationToken,
) -> Result<(), Wedged> {
    let count = |action: &str| {
        telemetry
            .counter(
                WATCHDOG_ACTIONS,
                &[("adapter", adapter), ("action", action)],
            )
            .inc();
    };
    let mut backoff = Backoff::new(RETRY_INITIAL, RETRY_MAX);
    let mut logged: Option<&'static str> = None;
    // Silent periods in a row: 0 fine, 1 scan restarted, 2 power-cycled.
    let mut step = 0u8;
    loop {
        connected.set(0.0);
        let mut events = match radio.start().await {
            Ok(rx) => rx,
            Err(e) => {
                if logged != Some(e.kind) {
                    error!(adapter, error_type = e.kind, error = %e, "Cannot scan for BLE advertisements; retrying with backoff.");
                    logged = Some(e.kind);
                }
                let wait = backoff.next_delay();
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    () = tokio::time::sleep(wait) => continue,
                }
            }
        };
        if logged.take().is_some() {
            info!(adapter, "BLE radio reachable again; scanning.");
        }
        backoff.reset();
        // Connected once something proves the scan delivers.
        let mut deadline = gateway_core::deadline::from_now(silence);
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    radio.stop().await;
                    return Ok(());
                }
                event = events.recv() => match event {
                    Some(event) => {
                        deadline = gateway_core::deadline::from_now(silence);
                        if step > 0 {
                            info!(adapter, "BLE advertisements arrive again.");
                            step = 0;
                        }
                        connected.set(1.0);
                        if let RadioEvent::Advert(adv) = event {
                            if out.send(adv).await.is_err() {
                                radio.stop().await;
                                return Ok(());
                            }
                        }
                    }
                    None => {
                        // Adapter unplugged, bluetoothd restarted, D-Bus gone.
                        warn!(adapter, "The BLE scan ended (adapter removed or bluetoothd restarted); reconnecting.");
                        count("reconnect");
                        connected.set(0.0);
                        break;
                    }
                },
                () = tokio::time::sleep_until(deadline) => {
                    connected.set(0.0);
                    step += 1;
                    radio.stop().await;
                    match step {
                        1 => {
                            warn!(adapter, silence = ?silence, "No BLE advertisement for the silence period; restarting the scan.");
                            count("restart_scan");
                        }
                        2 => {
                            warn!(adapter, silence = ?silence, "Still no BLE advertisement; power-cycling the Bluetooth adapter.");
                            count("power_cycle");
                            if let Err(e) = radio.power_cycle().await {
                                warn!(adapter, error = %e, "Power-cycling the Bluetooth adapter failed.");
                            }
                        }
                        _ => {
                            error!(adapter, silence = ?silence, "The BLE radio stays silent after a scan restart and a power cycle; giving up so the service is restarted.");
                            count("exit");
                            return Err(Wedged { silence });
                        }
                    }
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "watchdog_tests.rs"]
mod tests;
