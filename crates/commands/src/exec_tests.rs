#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gateway_core::command::{Refusal, WriteFuture};
use gateway_core::TokioClock;

use super::*;
use crate::COMMANDS_REFUSALS_UNREMEMBERED;

const T0: i64 = 1_795_000_000_000;

/// Writes to `ahu-1` and `lamp-1`, counting them; each takes `takes`.
struct Device {
    writes: Arc<AtomicUsize>,
    takes: Duration,
}

impl CommandTarget for Device {
    fn serves(&self, device: &DeviceId) -> bool {
        ["ahu-1", "lamp-1"].contains(&device.as_str())
    }
    fn check(&self, command: &Command) -> Result<(), Refusal> {
        if command.metric == "setpoint" {
            Ok(())
        } else {
            Err(Refusal::new("not_writable", "not declared"))
        }
    }
    fn write(&self, _: Command) -> WriteFuture {
        self.writes.fetch_add(1, Ordering::Relaxed);
        let takes = self.takes;
        Box::pin(async move {
            tokio::time::sleep(takes).await;
            WriteOutcome::Done { value: None }
        })
    }
}

struct Bench {
    exec: Executor,
    results: mpsc::Receiver<SinkEvent>,
    writes: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

fn bench(max_age: Duration, takes: Duration) -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let config = CommandsConfig {
        enabled: true,
        max_age,
        ..CommandsConfig::default()
    };
    let clock: Arc<dyn Clock> =
        Arc::new(TokioClock::starting_at(Timestamp::from_millis(T0).unwrap()));
    let keep = config.max_age + config.clock_tolerance;
    let journal = Journal::open(dir.path(), keep, clock.now()).unwrap();
    let targets = CommandTargets::default();
    let writes = Arc::new(AtomicUsize::new(0));
    targets.register(
        "plant",
        Arc::new(Device {
            writes: writes.clone(),
            takes,
        }),
    );
    let (tx, results) = mpsc::channel(100_000);
    let exec = Executor::new(
        config,
        Some(journal),
        targets,
        clock,
        Telemetry::default(),
        vec![tx],
    );
    Bench {
        exec,
        results,
        writes,
        _dir: dir,
    }
}

impl Bench {
    fn arrived(&self, device: &str, body: &serde_json::Value) -> Arrived {
        Arrived {
            device: DeviceId::new(device).ok(),
            topic_level: Some(device.to_string()),
            payload: parse::Payload::of(body.to_string().as_bytes()),
            at: Instant::now(),
            wall: self.exec.clock.now(),
            retained: false,
        }
    }

    async fn run(&mut self, device: &str, body: serde_json::Value) -> CommandEvent {
        let arrived = self.arrived(device, &body);
        self.exec.handle(arrived).await;
        match self.results.try_recv() {
            Ok(SinkEvent::Command(c)) => c,
            other => panic!("one result for {body}, got {other:?}"),
        }
    }
}

fn stamped(id: &str, metric: &str) -> serde_json::Value {
    let ts = Timestamp::from_millis(T0).unwrap().to_rfc3339();
    serde_json::json!({"id": id, "metric": metric, "value": 21.0, "ts": ts})
}

/// The attack: 10 010 commands refused for a device that does not exist
/// pushed a real command's id out of the journal, and its replay wrote
/// again. Now no number of refusals pushes an id out: they are journaled
/// up to `REFUSALS_REMEMBERED` ids, the rest sent without a line (counted),
/// and the real id stays whatever their number.
#[tokio::test(start_paused = true)]
async fn a_flood_for_a_device_nobody_writes_to_evicts_nothing() {
    let mut b = bench(Duration::from_secs(600), Duration::ZERO);
    let r = b.run("ahu-1", stamped("real-1", "setpoint")).await;
    assert_eq!(r.status, "done");
    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..20_010 {
        let r = b.run("ghost", stamped(&format!("f-{i}"), "setpoint")).await;
        assert_eq!(r.status, "refused");
        *reasons.entry(r.reason).or_default() += 1;
    }
    let burst = CommandsConfig::default().burst as usize;
    assert_eq!(reasons.get("not_writable"), Some(&burst), "{reasons:?}");
    assert_eq!(reasons.get("rate"), Some(&(20_010 - burst)));
    let journal = b.exec.journal.as_ref().unwrap();
    assert_eq!(journal.len(), REFUSALS_REMEMBERED, "bounded");
    // The last refusal says it is not final.
    let r = b.run("ghost", stamped("f-last", "setpoint")).await;
    assert!(r.detail.contains("not journaled"), "{}", r.detail);
    assert_eq!(
        b.exec
            .telemetry
            .counter_value(COMMANDS_REFUSALS_UNREMEMBERED, &[]),
        Some((20_012 - REFUSALS_REMEMBERED) as u64)
    );
    // The replay, word for word: its first result, nothing written.
    let r = b.run("ahu-1", stamped("real-1", "setpoint")).await;
    assert_eq!(
        (r.status.as_str(), r.value.clone()),
        ("done", serde_json::json!(21))
    );
    assert_eq!(b.writes.load(Ordering::Relaxed), 1);
}

fn stamped_at(id: &str, ms: i64) -> serde_json::Value {
    let ts = Timestamp::from_millis(ms).unwrap().to_rfc3339();
    serde_json::json!({"id": id, "metric": "setpoint", "value": 21.0, "ts": ts})
}

/// The attack: a flood for made-up devices fills the journal; a real
/// command then refused for its device's rate got no journal line, and
/// sent again once the allowance was back (a replay, or the cloud's retry
/// of an id it was told was refused), it ran: late, and twice once the
/// cloud had sent it anew. Now the device's flood mark refuses it, also
/// after a restart, and a command made after the flood still runs.
#[tokio::test(start_paused = true)]
async fn a_refusal_during_a_flood_that_filled_the_journal_stays_final() {
    let mut b = bench(Duration::from_secs(600), Duration::ZERO);
    for i in 0..REFUSALS_REMEMBERED {
        b.run("ghost", stamped(&format!("f-{i}"), "setpoint")).await;
    }
    assert_eq!(b.exec.journal.as_ref().unwrap().len(), REFUSALS_REMEMBERED);
    let burst = CommandsConfig::default().burst as usize;
    let mut refused = None;
    for i in 0..=burst {
        let r = b
            .run("ahu-1", stamped_at(&format!("real-{i}"), T0 + 10))
            .await;
        if r.status == "refused" {
            assert_eq!(r.reason, "rate");
            assert!(!r.detail.contains("judged again"), "{}", r.detail);
            refused = Some(r.id);
        }
    }
    let refused = refused.expect("the device's burst is spent");
    let written = b.writes.load(Ordering::Relaxed);
    assert_eq!(written, burst);
    tokio::time::advance(Duration::from_secs(30)).await;

    let replay = b.run("ahu-1", stamped_at(&refused, T0 + 10)).await;
    assert_eq!(
        (replay.status.as_str(), replay.reason.as_str()),
        ("expired", "max_age")
    );
    assert!(replay.detail.contains("flood"), "{}", replay.detail);
    // Another id made no later cannot be told from a replay either.
    let r = b.run("ahu-1", stamped_at("other", T0 + 10)).await;
    assert_eq!(r.status, "expired");
    assert_eq!(
        b.writes.load(Ordering::Relaxed),
        written,
        "nothing more written"
    );
    // Another device's commands are not touched by ahu-1's mark.
    let r = b.run("lamp-1", stamped_at("lamp", T0 + 10)).await;
    assert_eq!(r.status, "done");

    // After a restart, the mark is read back from the journal.
    let now = b.exec.clock.now();
    let keep = b.exec.config.max_age + b.exec.config.clock_tolerance;
    b.exec.journal = None;
    b.exec.journal = Some(Journal::open(b._dir.path(), keep, now).unwrap());
    let replay = b.run("ahu-1", stamped_at(&refused, T0 + 10)).await;
    assert_eq!(replay.status, "expired", "{}", replay.detail);
    assert_eq!(b.writes.load(Ordering::Relaxed), written + 1);
    // A command made after the flood runs.
    let r = b.run("ahu-1", stamped_at("after", now.as_millis())).await;
    assert_eq!(r.status, "done", "{}", r.detail);
}

/// The attack: a command waited 8 s behind a Modbus write with no answer
/// and then ran; its wait now counts against max_age.
#[tokio::test(start_paused = true)]
async fn a_command_waiting_behind_a_slow_write_expires() {
    let mut b = bench(Duration::from_secs(5), Duration::from_secs(8));
    let first = b.arrived("ahu-1", &stamped("w-1", "setpoint"));
    let second = b.arrived("ahu-1", &stamped("w-2", "setpoint"));
    b.exec.handle(first).await;
    b.exec.handle(second).await;
    let mut got = Vec::new();
    while let Ok(SinkEvent::Command(c)) = b.results.try_recv() {
        got.push((c.id, c.status, c.reason));
    }
    assert_eq!(
        got,
        vec![
            ("w-1".into(), "done".into(), String::new()),
            ("w-2".into(), "expired".into(), "max_age".into()),
        ]
    );
    assert_eq!(b.writes.load(Ordering::Relaxed), 1);
}

/// The same id on two devices is two commands, each answered as its own.
#[tokio::test(start_paused = true)]
async fn an_id_is_its_devices() {
    let mut b = bench(Duration::from_secs(60), Duration::ZERO);
    let r = b.run("ahu-1", stamped("same", "setpoint")).await;
    assert_eq!((r.device.as_str(), r.status.as_str()), ("ahu-1", "done"));
    let r = b.run("lamp-1", stamped("same", "setpoint")).await;
    assert_eq!((r.device.as_str(), r.status.as_str()), ("lamp-1", "done"));
    assert_eq!(b.writes.load(Ordering::Relaxed), 2);
    // A repeat on either is answered from the journal, without a write.
    let r = b.run("lamp-1", stamped("same", "setpoint")).await;
    assert_eq!((r.device.as_str(), r.status.as_str()), ("lamp-1", "done"));
    assert_eq!(b.writes.load(Ordering::Relaxed), 2);
}

/// A rule action's actuator is written only for a rule, through the same
/// journal and rate, and its maker gets the result too; the cloud cannot
/// reach it.
#[tokio::test(start_paused = true)]
async fn an_actuator_only_rules_reach_answers_its_rule() {
    struct Vent(Arc<AtomicUsize>);
    impl CommandTarget for Vent {
        fn serves(&self, device: &DeviceId) -> bool {
            device.as_str() == "vent"
        }
        fn check(&self, _: &Command) -> Result<(), Refusal> {
            Ok(())
        }
        fn write(&self, _: Command) -> WriteFuture {
            self.0.fetch_add(1, Ordering::Relaxed);
            Box::pin(async { WriteOutcome::Done { value: None } })
        }
    }
    let b = bench(Duration::from_secs(60), Duration::ZERO);
    let vent_writes = Arc::new(AtomicUsize::new(0));
    let actuators = CommandTargets::default();
    actuators.register("vent", Arc::new(Vent(vent_writes.clone())));
    let mut b = Bench {
        exec: b.exec.with_actuators(actuators),
        ..b
    };
    let request = |id: &str, origin| {
        let (reply, answer) = oneshot::channel();
        let command = Command {
            id: id.into(),
            device: DeviceId::new("vent").unwrap(),
            metric: "put".into(),
            value: gateway_core::command::CommandValue::Text("on".into()),
            deadline: None,
        };
        let request = CommandRequest {
            command,
            at: Instant::now(),
            origin,
            reply: Some(reply),
        };
        (request, answer)
    };
    let (r, answer) = request("rule-1", ORIGIN_RULE);
    b.exec.handle_request(r).await;
    let answer = answer.await.unwrap();
    assert_eq!(
        (answer.id.as_str(), answer.status.as_str()),
        ("rule-1", "done")
    );
    assert!(matches!(b.results.try_recv(), Ok(SinkEvent::Command(c)) if c.id == "rule-1"));
    assert!(b
        .exec
        .journal
        .as_ref()
        .unwrap()
        .get("vent", "rule-1")
        .is_some());
    // The same alert's command again: answered from the journal.
    let (r, answer) = request("rule-1", ORIGIN_RULE);
    b.exec.handle_request(r).await;
    assert_eq!(answer.await.unwrap().status, "done");
    assert_eq!(vent_writes.load(Ordering::Relaxed), 1);
    // Home Assistant (or the cloud) finds no target for it.
    let (r, answer) = request("ha-1", "home_assistant");
    b.exec.handle_request(r).await;
    let answer = answer.await.unwrap();
    assert_eq!(
        (answer.status.as_str(), answer.reason.as_str()),
        ("refused", "not_writable")
    );
    assert_eq!(vent_writes.load(Ordering::Relaxed), 1);
}

/// A result is final: an id refused for the rate, or for a `ts` ahead of
/// the clock, is refused again when it comes back once the allowance is
/// there again and the clock has caught up (a cloud's retry, a QoS 1
/// re-delivery, a retained command at the next start), and never written.
#[tokio::test(start_paused = true)]
async fn an_id_refused_before_its_allowance_is_refused_again_later() {
    let mut b = bench(Duration::from_secs(600), Duration::ZERO);
    let burst = CommandsConfig::default().burst as usize;
    for i in 0..burst {
        let r = b
            .run("ahu-1", stamped(&format!("ok-{i}"), "setpoint"))
            .await;
        assert_eq!(r.status, "done");
    }
    let r = b.run("ahu-1", stamped("late-rate", "setpoint")).await;
    assert_eq!((r.status.as_str(), r.reason.as_str()), ("refused", "rate"));
    // 30 s ahead of the gateway's clock (tolerance 5 s).
    let ahead = Timestamp::from_millis(T0 + 30_000).unwrap().to_rfc3339();
    let future =
        serde_json::json!({"id": "early", "metric": "setpoint", "value": 22.0, "ts": ahead});
    let r = b.run("ahu-1", future.clone()).await;
    assert_eq!((r.status.as_str(), r.reason.as_str()), ("refused", "clock"));
    // A minute on: the allowance is back, the clock has passed the early
    // command's ts, and both are within max_age.
    tokio::time::advance(Duration::from_secs(60)).await;
    let writes = b.writes.load(Ordering::Relaxed);
    for again in [stamped("late-rate", "setpoint"), future] {
        let r = b.run("ahu-1", again).await;
        assert_eq!(r.status, "refused", "{r:?}");
    }
    assert_eq!(b.writes.load(Ordering::Relaxed), writes, "nothing written");
    assert_eq!(
        b.exec.telemetry.counter_value(COMMANDS_REPEATED, &[]),
        Some(2)
    );
}

async fn fill_with_refusals_for_nobody(b: &mut Bench, ts_ms: i64) {
    for i in 0..REFUSALS_REMEMBERED {
        b.run("ghost", stamped_at(&format!("f-{i}"), ts_ms)).await;
    }
    assert_eq!(b.exec.journal.as_ref().unwrap().len(), REFUSALS_REMEMBERED);
}

/// Without a flood, a command ahead of the clock is refused for good: its
/// refusal is journaled, so once the clock has caught up its replay still
/// gets it.
#[tokio::test(start_paused = true)]
async fn a_refusal_ahead_of_the_clock_is_final() {
    let mut b = bench(Duration::from_secs(60), Duration::ZERO);
    let x = stamped_at("x", T0 + 70_000);
    let r = b.run("ahu-1", x.clone()).await;
    assert_eq!(r.reason, "clock");
    tokio::time::advance(Duration::from_secs(65)).await;
    let r = b.run("ahu-1", x).await;
    assert_eq!((r.status.as_str(), r.reason.as_str()), ("refused", "clock"));
    assert_eq!(b.writes.load(Ordering::Relaxed), 0);
}

/// With the journal full, a command made further ahead than any mark may
/// reach (`keep`) cannot be covered by a mark: its refusal is kept among
/// the nearest refusals made that far ahead (a bound of their own), and
/// beyond them says it is not final, rather than claim it and run the
/// replay once the clock caught up.
#[tokio::test(start_paused = true)]
async fn a_refusal_too_far_ahead_for_a_mark_is_final_while_among_the_nearest() {
    let mut b = bench(Duration::from_secs(60), Duration::ZERO); // keep 65 s
    fill_with_refusals_for_nobody(&mut b, T0).await;
    let r = b.run("ahu-1", stamped_at("x", T0 + 70_000)).await;
    assert_eq!((r.status.as_str(), r.reason.as_str()), ("refused", "clock"));
    assert!(!r.detail.contains("judged again"), "{}", r.detail);
    for i in 0..crate::journal::FAR_AHEAD_REMEMBERED - 1 {
        let ts = T0 + 80_000 + i64::try_from(i).unwrap();
        let r = b.run("ghost", stamped_at(&format!("a-{i}"), ts)).await;
        assert!(!r.detail.contains("judged again"), "{}", r.detail);
    }
    let r = b.run("ahu-1", stamped_at("z", T0 + 90_000)).await;
    assert_eq!(r.reason, "clock");
    assert!(r.detail.contains("judged again"), "{}", r.detail);
    // Within keep ahead, a mark covers it: final, and so said.
    let r = b.run("ahu-1", stamped_at("y", T0 + 60_000)).await;
    assert_eq!(r.reason, "clock");
    assert!(!r.detail.contains("judged again"), "{}", r.detail);
    tokio::time::advance(Duration::from_secs(60)).await;
    let r = b.run("ahu-1", stamped_at("y", T0 + 60_000)).await;
    assert_eq!(r.status, "expired", "{}", r.detail);
    // The clock has caught up with x: its replay gets its refusal again.
    tokio::time::advance(Duration::from_secs(10)).await;
    let r = b.run("ahu-1", stamped_at("x", T0 + 70_000)).await;
    assert_eq!((r.status.as_str(), r.reason.as_str()), ("refused", "clock"));
    assert_eq!(b.writes.load(Ordering::Relaxed), 0);
}

/// The clock an hour ahead and the journal full: a fresh command is
/// refused as expired; NTP steps the clock back and the gateway restarts.
/// Its replay must not run (the refusal was a mark on disk, not a horizon
/// raised in memory only).
#[tokio::test(start_paused = true)]
async fn an_old_refusal_in_a_full_journal_stays_final_across_a_restart() {
    let mut b = bench(Duration::from_secs(60), Duration::ZERO);
    let ahead = 3_600_000;
    b.exec.clock = Arc::new(TokioClock::starting_at(
        Timestamp::from_millis(T0 + ahead).unwrap(),
    ));
    fill_with_refusals_for_nobody(&mut b, T0 + ahead).await;
    let x = stamped_at("x", T0);
    let r = b.run("ahu-1", x.clone()).await;
    assert_eq!(r.status, "expired");
    assert!(!r.detail.contains("judged again"), "{}", r.detail);
    b.exec.clock = Arc::new(TokioClock::starting_at(
        Timestamp::from_millis(T0 + 10_000).unwrap(),
    ));
    let keep = b.exec.config.max_age + b.exec.config.clock_tolerance;
    let now = b.exec.clock.now();
    b.exec.journal = None;
    b.exec.journal = Some(Journal::open(b._dir.path(), keep, now).unwrap());
    let r = b.run("ahu-1", x).await;
    assert_eq!(r.status, "expired", "{}", r.detail);
    assert_eq!(b.writes.load(Ordering::Relaxed), 0);
}

/// The attack: a LoRaWAN command whose `data` object nests as deep as the
/// payload's reader takes (127 levels) was accepted and written, but its
/// journal lines wrap it in two more levels, past what the journal's
/// reader takes: after a restart neither line could be read, the id was
/// forgotten, and the broker's re-delivery wrote it a second time.
#[tokio::test(start_paused = true)]
async fn a_downlink_nested_deeper_than_the_journal_reads_is_never_written_twice() {
    struct Node(Arc<AtomicUsize>);
    impl CommandTarget for Node {
        fn serves(&self, device: &DeviceId) -> bool {
            device.as_str() == "node-1"
        }
        fn check(&self, _: &Command) -> Result<(), Refusal> {
            Ok(())
        }
        fn write(&self, _: Command) -> WriteFuture {
            self.0.fetch_add(1, Ordering::Relaxed);
            Box::pin(async { WriteOutcome::Done { value: None } })
        }
    }
    let mut b = bench(Duration::from_secs(60), Duration::ZERO);
    let node_writes = Arc::new(AtomicUsize::new(0));
    b.exec
        .targets
        .register("node", Arc::new(Node(node_writes.clone())));
    let ts = Timestamp::from_millis(T0).unwrap().to_rfc3339();
    let mut data = serde_json::json!(1);
    for _ in 0..126 {
        data = serde_json::json!({ "a": data });
    }
    let command = serde_json::json!({"id": "deep", "data": data, "ts": ts});
    b.run("node-1", command.clone()).await;
    // A restart: the journal as read back from its file.
    let keep = b.exec.config.max_age + b.exec.config.clock_tolerance;
    let now = b.exec.clock.now();
    b.exec.journal = None;
    b.exec.journal = Some(Journal::open(b._dir.path(), keep, now).unwrap());
    b.exec.settle_interrupted().await;
    while b.results.try_recv().is_ok() {}
    // The broker's re-delivery, 10 s later, well within max_age.
    tokio::time::advance(Duration::from_secs(10)).await;
    b.run("node-1", command).await;
    assert!(
        node_writes.load(Ordering::Relaxed) <= 1,
        "written {} times",
        node_writes.load(Ordering::Relaxed)
    );
}
