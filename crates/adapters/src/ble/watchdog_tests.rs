#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;

use gateway_core::Timestamp;
use tokio::time::Instant;

use super::*;
use crate::ble::Mac;

/// A radio whose calls are reported to the test, and whose `start` results
/// are scripted; `Ok` hands the test the event sender.
struct FakeRadio {
    calls: mpsc::UnboundedSender<&'static str>,
    starts: VecDeque<Result<(), RadioError>>,
    senders: mpsc::UnboundedSender<mpsc::Sender<RadioEvent>>,
}

impl Radio for FakeRadio {
    async fn start(&mut self) -> Result<mpsc::Receiver<RadioEvent>, RadioError> {
        let _ = self.calls.send("start");
        self.starts.pop_front().unwrap_or(Ok(()))?;
        let (tx, rx) = mpsc::channel(8);
        let _ = self.senders.send(tx);
        Ok(rx)
    }
    async fn stop(&mut self) {
        let _ = self.calls.send("stop");
    }
    async fn power_cycle(&mut self) -> Result<(), RadioError> {
        let _ = self.calls.send("power_cycle");
        Ok(())
    }
}

struct Harness {
    calls: mpsc::UnboundedReceiver<&'static str>,
    senders: mpsc::UnboundedReceiver<mpsc::Sender<RadioEvent>>,
    adverts: mpsc::Receiver<Advertisement>,
    connected: Gauge,
    telemetry: Telemetry,
    task: tokio::task::JoinHandle<Result<(), Wedged>>,
    stop: CancellationToken,
}

const SILENCE: Duration = Duration::from_secs(90);

fn start(starts: Vec<Result<(), RadioError>>) -> Harness {
    let (calls_tx, calls) = mpsc::unbounded_channel();
    let (senders_tx, senders) = mpsc::unbounded_channel();
    let (out, adverts) = mpsc::channel(8);
    let telemetry = Telemetry::default();
    let connected = telemetry.gauge("edge_gateway_adapter_connected", &[("adapter", "ble")]);
    let stop = CancellationToken::new();
    let mut radio = FakeRadio {
        calls: calls_tx,
        starts: starts.into(),
        senders: senders_tx,
    };
    let (t, c, s) = (telemetry.clone(), connected.clone(), stop.clone());
    let task =
        tokio::spawn(async move { supervise(&mut radio, SILENCE, &out, &c, &t, "ble", &s).await });
    Harness {
        calls,
        senders,
        adverts,
        connected,
        telemetry,
        task,
        stop,
    }
}

fn actions(t: &Telemetry, action: &str) -> u64 {
    t.counter_value(WATCHDOG_ACTIONS, &[("adapter", "ble"), ("action", action)])
        .unwrap_or(0)
}

fn advert() -> RadioEvent {
    RadioEvent::Advert(Advertisement::new(
        Mac([0xA4, 0xC1, 0x38, 0x8D, 0x18, 0xB2]),
        Some(-60),
        Timestamp::from_millis(0).unwrap(),
    ))
}

#[tokio::test(start_paused = true)]
async fn silence_restarts_the_scan_then_power_cycles_then_gives_up() {
    let mut h = start(vec![]);
    let t0 = Instant::now();
    assert_eq!(h.calls.recv().await, Some("start"));
    let events = h.senders.recv().await.unwrap();
    events.send(advert()).await.unwrap();
    assert!(h.adverts.recv().await.is_some());
    assert_eq!(h.connected.get(), 1.0);
    let t1 = Instant::now();

    // Step 1, one silence after the last advertisement.
    assert_eq!(h.calls.recv().await, Some("stop"));
    assert_eq!(t1.elapsed(), SILENCE);
    assert_eq!(h.connected.get(), 0.0);
    assert_eq!(actions(&h.telemetry, "restart_scan"), 1);
    assert_eq!(h.calls.recv().await, Some("start"));
    let _events = h.senders.recv().await.unwrap();

    // Step 2.
    assert_eq!(h.calls.recv().await, Some("stop"));
    assert_eq!(h.calls.recv().await, Some("power_cycle"));
    assert_eq!(t1.elapsed(), 2 * SILENCE);
    assert_eq!(h.calls.recv().await, Some("start"));
    let _events = h.senders.recv().await.unwrap();

    // Step 3: the caller exits.
    assert_eq!(h.calls.recv().await, Some("stop"));
    assert_eq!(h.task.await.unwrap(), Err(Wedged { silence: SILENCE }));
    assert_eq!(t1.elapsed(), 3 * SILENCE);
    assert_eq!(
        [
            actions(&h.telemetry, "restart_scan"),
            actions(&h.telemetry, "power_cycle"),
            actions(&h.telemetry, "exit")
        ],
        [1, 1, 1]
    );
    assert!(t0 <= t1);
}

#[tokio::test(start_paused = true)]
async fn an_advertisement_resets_the_ladder() {
    let mut h = start(vec![]);
    assert_eq!(h.calls.recv().await, Some("start"));
    let _first = h.senders.recv().await.unwrap();
    assert_eq!(h.calls.recv().await, Some("stop"));
    assert_eq!(h.calls.recv().await, Some("start"));
    let events = h.senders.recv().await.unwrap();
    // The restarted scan delivers: back to step 0.
    events.send(RadioEvent::Activity).await.unwrap();
    tokio::task::yield_now().await;
    tokio::time::advance(SILENCE / 2).await;
    events.send(advert()).await.unwrap();
    assert!(h.adverts.recv().await.is_some());
    assert_eq!(h.connected.get(), 1.0);
    // The next silence restarts the scan again, no power cycle.
    assert_eq!(h.calls.recv().await, Some("stop"));
    assert_eq!(h.calls.recv().await, Some("start"));
    assert_eq!(actions(&h.telemetry, "restart_scan"), 2);
    assert_eq!(actions(&h.telemetry, "power_cycle"), 0);
    h.stop.cancel();
    assert_eq!(h.task.await.unwrap(), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_radio_is_retried_with_backoff_and_shown_connecting() {
    let denied = || {
        Err(RadioError {
            kind: "dbus_denied",
            message: "D-Bus denied access to org.bluez".into(),
        })
    };
    let mut h = start(vec![denied(), denied(), denied()]);
    let t0 = Instant::now();
    for _ in 0..3 {
        assert_eq!(h.calls.recv().await, Some("start"));
        assert_eq!(h.connected.get(), 0.0);
    }
    assert_eq!(h.calls.recv().await, Some("start"));
    // Three backoff waits, each at least the 1 s start and growing.
    assert!(t0.elapsed() >= Duration::from_secs(3), "{:?}", t0.elapsed());
    let events = h.senders.recv().await.unwrap();
    events.send(advert()).await.unwrap();
    assert!(h.adverts.recv().await.is_some());
    assert_eq!(h.connected.get(), 1.0);

    // The adapter disappears: the stream ends, reconnect.
    drop(events);
    assert_eq!(h.calls.recv().await, Some("start"));
    assert_eq!(actions(&h.telemetry, "reconnect"), 1);
    h.stop.cancel();
    assert_eq!(h.task.await.unwrap(), Ok(()));
}
