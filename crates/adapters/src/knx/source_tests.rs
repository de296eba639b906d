#![allow(clippy::unwrap_used, clippy::expect_used)]

use gateway_core::telemetry::Telemetry;
use gateway_core::{DeviceId, MetricName, SystemClock};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::knx::address::IndividualAddress;
use crate::knx::cemi::Data;
use crate::knx::dpt::Dpt;
use crate::knx::link::DataBuf;

fn group(address: &str, state: Option<&str>, metric: &str) -> KnxGroup {
    KnxGroup {
        adapter: Some("rooms".into()),
        address: address.parse().unwrap(),
        state_address: state.map(|s| s.parse().unwrap()),
        dpt: Dpt {
            main: 1,
            sub: Some(1),
        },
        device: DeviceId::new("room-101").unwrap(),
        metric: MetricName::new(metric).unwrap(),
        unit: None,
        read_on_start: false,
        poll: None,
        writable: false,
        min: None,
        max: None,
    }
}

fn context() -> AdapterContext {
    let (tx, _rx) = mpsc::channel(16);
    AdapterContext {
        name: "rooms".into(),
        ingress: tx.into(),
        shutdown: CancellationToken::new(),
        telemetry: Telemetry::default(),
        clock: Arc::new(SystemClock),
    }
}

fn write(to: &str, value: u8, at: i64) -> GroupTelegram {
    GroupTelegram {
        source: IndividualAddress(0x1105),
        destination: to.parse().unwrap(),
        service: GroupService::Write,
        data: DataBuf::new(Data::Small(value)),
        at: Timestamp::from_millis(at).unwrap(),
    }
}

/// Feeds `telegrams` through the source as one batch, as the loop does
/// with everything waiting in its queue.
fn batch(groups: &Groups, telegrams: &[GroupTelegram]) -> Vec<(String, Timestamp)> {
    let ctx = context();
    let faults = Faults::new(&ctx.name, ctx.stats());
    let services = Services::new(&ctx);
    let mut seen = Seen {
        texts: HashMap::new(),
        stamps: Stamps::new(groups.list.len()),
    };
    let mut out = Vec::new();
    for t in telegrams {
        telegram(t, groups, &services, &ctx, &faults, &mut seen, &mut out);
    }
    out.iter()
        .map(|r| (r.metric().as_str().to_string(), r.time()))
        .collect()
}

#[test]
fn each_telegram_of_a_batch_keeps_its_own_arrival_time() {
    let groups = Groups::new(vec![group("2/0/5", None, "sw")]);
    let t0 = 1_700_000_000_000;
    let telegrams: Vec<_> = (0..3).map(|i| write("2/0/5", 1, t0 + 7 * i)).collect();
    let times: Vec<i64> = batch(&groups, &telegrams)
        .iter()
        .map(|(_, t)| t.as_millis())
        .collect();
    assert_eq!(times, [t0, t0 + 7, t0 + 14]);
}

#[test]
fn a_burst_to_one_group_within_one_millisecond_gets_distinct_increasing_times() {
    // The tester's case: ten routed telegrams to 2/0/5 in one burst; and
    // the group's state address is the same series.
    let groups = Groups::new(vec![
        group("2/0/5", Some("2/0/6"), "sw"),
        group("2/0/7", None, "other"),
    ]);
    let t0 = 1_700_000_000_000;
    let mut telegrams: Vec<_> = (0..10)
        .map(|i| write(if i % 2 == 0 { "2/0/5" } else { "2/0/6" }, i % 2, t0))
        .collect();
    telegrams.push(write("2/0/7", 1, t0));
    // Later than the burst's stamps: taken as it is.
    telegrams.push(write("2/0/5", 1, t0 + 50));
    let readings = batch(&groups, &telegrams);
    let sw: Vec<i64> = readings
        .iter()
        .filter(|(m, _)| m == "sw")
        .map(|(_, t)| t.as_millis())
        .collect();
    assert_eq!(sw, (0..10).map(|i| t0 + i).chain([t0 + 50]).collect::<Vec<_>>());
    let other: Vec<i64> = readings
        .iter()
        .filter(|(m, _)| m == "other")
        .map(|(_, t)| t.as_millis())
        .collect();
    assert_eq!(other, [t0], "another series is not pushed by this one");
}

#[test]
fn a_clock_stepped_back_is_followed_not_run_ahead_of() {
    let mut s = Stamps::new(1);
    let t0 = Timestamp::from_millis(1_700_000_000_000).unwrap();
    assert_eq!(s.stamp(0, t0), t0);
    let back = t0.saturating_add_millis(-3_600_000);
    assert_eq!(s.stamp(0, back), back);
    assert_eq!(s.stamp(0, back), back.saturating_add_millis(1));
}

#[test]
fn a_switch_value_above_one_is_counted_undecodable_not_read_as_bit_0() {
    let groups = Groups::new(vec![group("2/0/5", None, "sw")]);
    let ctx = context();
    let faults = Faults::new(&ctx.name, ctx.stats());
    let services = Services::new(&ctx);
    let mut seen = Seen {
        texts: HashMap::new(),
        stamps: Stamps::new(groups.list.len()),
    };
    let mut out = Vec::new();
    let t0 = 1_700_000_000_000;
    for (value, at) in [(2, t0), (1, t0 + 1)] {
        telegram(
            &write("2/0/5", value, at),
            &groups,
            &services,
            &ctx,
            &faults,
            &mut seen,
            &mut out,
        );
    }
    let values: Vec<f64> = out.iter().map(Reading::value).collect();
    assert_eq!(values, [1.0]);
    assert_eq!(
        ctx.telemetry.counter_value(
            KNX_UNDECODABLE,
            &[("adapter", "rooms"), ("dpt", "1.001")]
        ),
        Some(1)
    );
}

/// The interface's 120 s against the heartbeat's last try: the default
/// leaves room for two unanswered tries; a heartbeat the validation
/// accepts can leave none, and is noted (by `validate`, and in `run`'s log).
#[test]
fn a_heartbeat_whose_last_try_passes_120_s_is_noted() {
    use super::super::config::heartbeat_outlives_tunnel;
    let s = Duration::from_secs;
    assert_eq!(heartbeat_outlives_tunnel(s(60), s(10)), None, "the defaults");
    assert_eq!(heartbeat_outlives_tunnel(s(90), s(14)), None);
    assert_eq!(heartbeat_outlives_tunnel(s(100), s(10)), Some(s(120)));
    assert_eq!(heartbeat_outlives_tunnel(s(120), s(1)), Some(s(122)));
}
