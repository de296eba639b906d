//! The window clock under a wall clock that steps, with tokio's paused
//! clock and a wall clock the test moves: NTP correcting a clock that ran
//! ahead (10 minutes back with 5-minute windows, 1 hour back with 5-second
//! windows), and readings held while the clock was not set yet.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aggregator::{Aggregator, WindowSpec};
use gateway_core::{
    Clock, DeviceId, DeviceRegistry, Ingress, MetricName, OutboundMessage, Reading, Telemetry,
    TimeSource, Timestamp, TokioClock,
};
use pipeline::clock_guard::CLOCK_STEPS;
use pipeline::durability::Durability;
use pipeline::{Pipeline, FUTURE_READINGS, LATE_READINGS};
use tokio::sync::mpsc;

mod in_process;

/// Tokio's paused time plus a step the test sets, as NTP would.
struct SteppedClock {
    inner: TokioClock,
    step_ms: AtomicI64,
}

impl Clock for SteppedClock {
    fn now(&self) -> Timestamp {
        self.inner
            .now()
            .saturating_add_millis(self.step_ms.load(Ordering::Relaxed))
    }
}

struct Harness {
    tx: mpsc::Sender<Ingress>,
    out: mpsc::Receiver<OutboundMessage>,
    telemetry: Telemetry,
    clock: Arc<SteppedClock>,
    sent: Vec<serde_json::Value>,
}

fn ts(rfc3339: &str) -> Timestamp {
    Timestamp::parse_rfc3339(rfc3339).unwrap()
}

fn start(at: &str, window_s: i64, grace_s: i64) -> Harness {
    let telemetry = Telemetry::default();
    let clock = Arc::new(SteppedClock {
        inner: TokioClock::starting_at(ts(at)),
        step_ms: AtomicI64::new(0),
    });
    let (out_tx, out) = mpsc::channel(4096);
    let outputs = in_process::upstream_into(DeviceRegistry::default(), out_tx);
    let pipeline = Pipeline {
        aggregator: Aggregator::new(WindowSpec {
            window_ms: window_s * 1000,
            grace_ms: grace_s * 1000,
            max_future_ms: 60_000,
        })
        .unwrap(),
        clock: clock.clone(),
        telemetry: telemetry.clone(),
        durability: Durability::in_memory(&telemetry),
        outbox_flush: None,
        alerts: None,
        outputs,
    };
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(pipeline.run(rx));
    Harness {
        tx,
        out,
        telemetry,
        clock,
        sent: Vec::new(),
    }
}

impl Harness {
    /// Readings of 1.0 the way an adapter makes them: stamped with the
    /// wall clock on arrival.
    async fn arrive(&self, device: &str, n: usize) {
        let now = self.clock.now();
        let readings = (0..n)
            .map(|_| reading(device, now, TimeSource::Arrival))
            .collect();
        self.tx.send(Ingress::Readings(readings)).await.unwrap();
    }

    async fn advance(&mut self, by: Duration) {
        // A second at a time: the pipeline looks at the clock at least
        // once a second, as it does on a real one.
        let mut left = by;
        while !left.is_zero() {
            let step = left.min(Duration::from_millis(500));
            tokio::time::advance(step).await;
            settle().await;
            left -= step;
        }
        while let Ok(m) = self.out.try_recv() {
            self.sent.push(serde_json::from_slice(&m.payload).unwrap());
        }
    }

    fn step(&self, by_ms: i64) {
        self.clock.step_ms.fetch_add(by_ms, Ordering::Relaxed);
    }

    /// (window start → (count, rerun)) of `device`, asserting that no id
    /// came twice; late amendments are left out ([`Self::amendments`]).
    fn windows(&self, device: &str) -> BTreeMap<(String, u64), u64> {
        let mut ids = std::collections::HashSet::new();
        let mut out = BTreeMap::new();
        for j in self.sent.iter().filter(|j| j["device"] == device) {
            assert!(ids.insert(j["id"].to_string()), "id sent twice: {j}");
            if j.get("amendment").is_some() {
                continue;
            }
            let count = j["metrics"]["t"]["count"].as_u64().unwrap();
            let key = (
                j["window_start"].as_str().unwrap().to_string(),
                j["rerun"].as_u64().unwrap_or(0),
            );
            assert!(out.insert(key, count).is_none(), "window twice: {j}");
        }
        out
    }

    /// The readings `device`'s late amendments carry, and how many there
    /// were, asserting each has an id of its own.
    fn amendments(&self, device: &str) -> (u64, usize) {
        let mut ids = std::collections::HashSet::new();
        let mut n = 0;
        for j in self.sent.iter().filter(|j| j["device"] == device) {
            if j.get("amendment").is_some() {
                assert!(ids.insert(j["id"].to_string()), "id sent twice: {j}");
                n += j["metrics"]["t"]["count"].as_u64().unwrap();
            }
        }
        (n, ids.len())
    }

    /// Every reading of `device` sent upstream: in windows, reruns and
    /// late amendments (which a consumer adds to their span).
    fn counted(&self, device: &str) -> u64 {
        self.windows(device).values().sum::<u64>() + self.amendments(device).0
    }

    /// `n` readings stamped with the sensor's own time, which is the true
    /// time: the wall clock less the step the test gave it.
    async fn own_time(&self, device: &str, n: usize) {
        let step = self.clock.step_ms.load(Ordering::Relaxed);
        let true_now = self.clock.now().saturating_add_millis(-step);
        let readings = (0..n)
            .map(|_| reading(device, true_now, TimeSource::Event))
            .collect();
        self.tx.send(Ingress::Readings(readings)).await.unwrap();
    }

    fn counter(&self, name: &str) -> u64 {
        self.telemetry.counter(name, &[]).get()
    }
}

fn reading(device: &str, at: Timestamp, source: TimeSource) -> Reading {
    Reading::new(
        DeviceId::new(device).unwrap(),
        MetricName::new("t").unwrap(),
        1.0,
        at,
        source,
    )
    .unwrap()
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// 300 arrival-stamped readings after the clock stepped back by `back_s`:
/// none refused as late, the window sent before the step not sent again,
/// the step counted once.
async fn after_a_backward_step(start_at: &str, window_s: i64, grace_s: i64, back_s: i64) {
    let mut h = start(start_at, window_s, grace_s);
    h.arrive("before", 100).await;
    h.advance(Duration::from_secs((window_s + grace_s + 1) as u64))
        .await;
    let before = h.windows("before");
    assert_eq!(h.counted("before"), 100, "sent before the step: {before:?}");
    h.step(-back_s * 1000);
    // 300 readings over three windows of the corrected clock.
    for _ in 0..30 {
        h.arrive("after", 10).await;
        h.advance(Duration::from_millis((window_s * 100) as u64))
            .await;
    }
    h.advance(Duration::from_secs((window_s + grace_s + 2) as u64))
        .await;
    assert_eq!(h.counter(LATE_READINGS), 0, "late readings");
    assert_eq!(
        h.counted("after"),
        300,
        "windows after the step: {:?}",
        h.windows("after")
    );
    assert_eq!(h.windows("before"), before, "the windows sent stay as sent");
    assert_eq!(h.counter(CLOCK_STEPS), 1, "the step counted once");
}

#[tokio::test(start_paused = true)]
async fn ten_minutes_back_with_five_minute_windows_drops_nothing() {
    after_a_backward_step("2026-11-22T20:21:00Z", 300, 30, 600).await;
}

#[tokio::test(start_paused = true)]
async fn an_hour_back_with_five_second_windows_drops_nothing() {
    after_a_backward_step("2026-11-22T20:21:00Z", 5, 1, 3600).await;
}

/// Readings an adapter stamped just before NTP stepped the clock back, and
/// that reach the windows after the step: the corrected clock sees them
/// ten minutes in its future, a gap of the gateway's making, so they count
/// in its current window instead of being refused as "from the future".
#[tokio::test(start_paused = true)]
async fn readings_stamped_just_before_a_backward_step_still_count() {
    let mut h = start("2026-11-22T20:21:00Z", 5, 1);
    let stamped = h.clock.now();
    h.step(-600_000);
    let queued = (0..60)
        .map(|_| reading("queued", stamped, TimeSource::Arrival))
        .collect();
    h.tx.send(Ingress::Readings(queued)).await.unwrap();
    h.advance(Duration::from_secs(8)).await;
    assert_eq!(h.counter(FUTURE_READINGS), 0, "refused as from the future");
    assert_eq!(
        h.windows("queued"),
        BTreeMap::from([(("2026-11-22T20:11:00Z".to_string(), 0), 60)]),
        "in the corrected clock's window"
    );
}

/// A window over a span sent before the step is a rerun with an id of its
/// own: here the readings before and after the step fall in the same
/// 5-minute span of the wall clock.
#[tokio::test(start_paused = true)]
async fn a_window_over_a_span_already_sent_is_a_rerun_with_its_own_id() {
    let mut h = start("2026-11-22T20:20:10Z", 300, 30);
    h.arrive("d", 5).await;
    h.advance(Duration::from_secs(330)).await; // 20:25:40
    h.step(-330 * 1000); // back to 20:20:10
    h.arrive("d", 7).await;
    h.advance(Duration::from_secs(330)).await;
    let w = h.windows("d");
    assert_eq!(
        w,
        BTreeMap::from([
            (("2026-11-22T20:20:00Z".to_string(), 0), 5),
            (("2026-11-22T20:20:00Z".to_string(), 1), 7),
        ])
    );
}

/// Readings held while the clock read before this release: those with
/// their own time are placed by it, not refused as late because the
/// gateway held them; the gateway-stamped ones spread by their age.
#[tokio::test(start_paused = true)]
async fn readings_held_for_an_unset_clock_are_placed_by_their_own_time_or_age() {
    // A Raspberry Pi after boot, before NTP.
    let mut h = start("2020-01-01T00:00:00Z", 5, 1);
    let set = ts("2026-11-22T10:00:20Z");
    for k in 0..10 {
        h.arrive("stamped-by-gateway", 100).await;
        // The sensor's own clock is right: the true time, 10 s before the
        // clock is set, plus k.
        let own = set.saturating_add_millis(-10_000 + k * 1000);
        let readings = (0..20)
            .map(|_| reading("own-time", own, TimeSource::Event))
            .collect();
        h.tx.send(Ingress::Readings(readings)).await.unwrap();
        h.advance(Duration::from_secs(1)).await;
    }
    assert!(h.sent.is_empty(), "nothing is sent on an unset clock");
    let unset_now = h.clock.now().as_millis();
    h.step(set.as_millis() - unset_now);
    h.advance(Duration::from_secs(8)).await;
    assert_eq!(
        h.counter(LATE_READINGS),
        0,
        "late readings; sent {:?} {:?}",
        h.windows("own-time"),
        h.windows("stamped-by-gateway")
    );
    assert_eq!(h.counted("own-time"), 200);
    let by_age = h.windows("stamped-by-gateway");
    assert_eq!(
        by_age,
        BTreeMap::from([
            (("2026-11-22T10:00:10Z".to_string(), 0), 500),
            (("2026-11-22T10:00:15Z".to_string(), 0), 500),
        ]),
        "spread by their age"
    );
}

/// The cases of issue 51 where the gateway's clock is wrong and readings
/// carry their own (right) time: 30 readings a second for 60 s, the clock
/// wrong from second 10 to second 30 by `wrong_ms` (`None`: wrong from
/// the start, then corrected at second 30). Every reading must reach
/// upstream exactly once, in a window, a rerun or a late amendment.
async fn own_time_readings_through(wrong_ms: i64, from_start: bool) -> Harness {
    let mut h = start("2026-11-25T12:00:00Z", 5, 1);
    if from_start {
        h.step(wrong_ms);
    }
    for second in 0..60 {
        if !from_start && second == 10 {
            h.step(wrong_ms);
        }
        if second == 30 {
            h.step(-wrong_ms);
        }
        h.own_time("own", 30).await;
        h.advance(Duration::from_secs(1)).await;
    }
    h.advance(Duration::from_secs(30)).await;
    assert_eq!(h.counted("own"), 1800, "sent: {:?}", h.sent);
    assert_eq!(
        h.telemetry
            .counter_total("edge_gateway_aggregator_dropped_readings_total"),
        0
    );
    h
}

/// The gateway clock a day ahead for 20 s, then back: the readings of
/// those 20 s look a day late; none is dropped (they were 406 of 900).
#[tokio::test(start_paused = true)]
async fn own_time_readings_under_a_clock_a_day_ahead_for_20_s_all_arrive() {
    let h = own_time_readings_through(86_400_000, false).await;
    assert!(h.counter(LATE_READINGS) >= 600, "counted as late");
}

/// The gateway clock stepped back 10 minutes: the readings look 10
/// minutes ahead, beyond `max_future`; placed by their own time, not
/// refused after their acknowledgement.
#[tokio::test(start_paused = true)]
async fn own_time_readings_under_a_clock_stepped_back_10_min_all_arrive() {
    let h = own_time_readings_through(-600_000, false).await;
    assert!(h.counter(FUTURE_READINGS) >= 600, "counted as ahead");
}

/// The gateway clock stepped back 10 minutes and never corrected: the
/// readings' windows close on their own time, each once, within a window
/// and its grace, not when the gateway clock reaches them 10 minutes
/// later.
#[tokio::test(start_paused = true)]
async fn own_time_windows_close_on_time_under_a_clock_stepped_back_for_good() {
    let mut h = start("2026-11-25T12:00:00Z", 5, 1);
    for second in 0..60 {
        if second == 10 {
            h.step(-600_000);
        }
        h.own_time("own", 30).await;
        h.advance(Duration::from_secs(1)).await;
    }
    h.advance(Duration::from_secs(7)).await;
    let windows = h.windows("own");
    assert_eq!(windows.len(), 12, "{windows:?}");
    assert!(windows.values().all(|&n| n == 150), "{windows:?}");
    assert_eq!(h.amendments("own"), (0, 0));
    // Ten minutes on, the gateway clock is in those spans: a straggler
    // of the node's amends one, a device stamped on arrival starts its own.
    h.advance(Duration::from_secs(600)).await;
    let t = ts("2026-11-25T12:00:40.500Z");
    h.tx.send(Ingress::Readings(vec![reading(
        "own",
        t,
        TimeSource::Event,
    )]))
    .await
    .unwrap();
    h.arrive("arrival", 2).await;
    h.advance(Duration::from_secs(7)).await;
    assert_eq!(h.amendments("own"), (1, 1));
    assert_eq!(h.windows("arrival").values().sum::<u64>(), 2);
    assert_eq!(h.counted("own"), 1801);
}

/// The gateway clock 10 minutes ahead from the start, until NTP
/// corrects it.
#[tokio::test(start_paused = true)]
async fn own_time_readings_under_a_clock_ahead_until_ntp_corrects_it_all_arrive() {
    own_time_readings_through(600_000, true).await;
}

/// A reading with its own time whose window was sent already goes out as
/// a late amendment: its own id and `"amendment": n`, the window sent
/// before untouched.
#[tokio::test(start_paused = true)]
async fn a_reading_later_than_its_sent_window_goes_out_as_a_late_amendment() {
    let mut h = start("2026-11-25T12:00:00Z", 5, 1);
    let t0 = h.clock.now();
    h.own_time("d", 3).await;
    h.advance(Duration::from_secs(10)).await;
    assert_eq!(h.windows("d").values().sum::<u64>(), 3);
    for k in 0..2 {
        let late = (0..2 + k)
            .map(|_| reading("d", t0, TimeSource::Event))
            .collect();
        h.tx.send(Ingress::Readings(late)).await.unwrap();
        h.advance(Duration::from_secs(2)).await;
    }
    assert_eq!(h.amendments("d"), (5, 2), "two amendments: {:?}", h.sent);
    let amendment = h
        .sent
        .iter()
        .find(|j| j.get("amendment").is_some())
        .unwrap();
    assert_eq!(amendment["window_start"], "2026-11-25T12:00:00Z");
    assert_eq!(h.counted("d"), 8);
    assert_eq!(h.counter(LATE_READINGS), 5);
}
