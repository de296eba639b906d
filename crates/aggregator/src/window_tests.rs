#![allow(clippy::unwrap_used)]

use gateway_core::TimeSource;

use super::*;

fn spec(window_ms: i64, grace_ms: i64, max_future_ms: i64) -> WindowSpec {
    WindowSpec {
        window_ms,
        grace_ms,
        max_future_ms,
    }
}

fn agg(window_ms: i64, grace_ms: i64, max_future_ms: i64) -> Aggregator {
    Aggregator::new(spec(window_ms, grace_ms, max_future_ms)).unwrap()
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms).unwrap()
}

fn reading(device: &str, metric: &str, value: f64, t: i64) -> Reading {
    Reading::new(
        DeviceId::new(device).unwrap(),
        MetricName::new(metric).unwrap(),
        value,
        ts(t),
        TimeSource::Event,
    )
    .unwrap()
}

/// (window start ms, device, [(metric, count, avg)]): what a test compares.
type Summary = Vec<(i64, String, Vec<(String, u64, f64)>)>;

fn summary(windows: &[DeviceWindow]) -> Summary {
    windows
        .iter()
        .map(|w| {
            let metrics = w
                .metrics
                .iter()
                .map(|(m, s)| (m.to_string(), s.count(), s.avg()))
                .collect();
            (w.start.as_millis(), w.device.to_string(), metrics)
        })
        .collect()
}

fn row(
    start: i64,
    device: &str,
    metrics: &[(&str, u64, f64)],
) -> (i64, String, Vec<(String, u64, f64)>) {
    let metrics = metrics
        .iter()
        .map(|(m, c, a)| (m.to_string(), *c, *a))
        .collect();
    (start, device.to_string(), metrics)
}

#[test]
fn invalid_specs_are_refused_with_the_offending_value() {
    let cases = [
        (
            spec(0, 0, 0),
            Some(SpecError::WindowTooShort { window_ms: 0 }),
        ),
        (
            spec(-5, 0, 0),
            Some(SpecError::WindowTooShort { window_ms: -5 }),
        ),
        (
            spec(1, -1, 0),
            Some(SpecError::NegativeGrace { grace_ms: -1 }),
        ),
        (
            spec(1, 0, -2),
            Some(SpecError::NegativeMaxFuture { max_future_ms: -2 }),
        ),
        (spec(1, 0, 0), None),
        (spec(1000, 0, 0), None),
    ];
    for (s, want) in cases {
        assert_eq!(Aggregator::new(s).err(), want, "{s:?}");
    }
    assert_eq!(
        SpecError::WindowTooShort { window_ms: 0 }.to_string(),
        "window_ms must be at least 1 ms, got 0"
    );
}

#[test]
fn windows_align_to_multiples_of_window_ms_since_epoch() {
    // (window_ms, t, expected start); end is always start + window_ms.
    let cases = [
        (1000, 0, 0),
        (1000, 999, 0),
        (1000, 1000, 1000), // exactly on a boundary: the window starting there
        (1000, 1001, 1000),
        (1000, 1_763_719_200_500, 1_763_719_200_000),
        (60_000, 1_763_719_259_999, 1_763_719_200_000),
        (60_000, 1_763_719_260_000, 1_763_719_260_000),
        (7, 13, 7),
        (7, 14, 14),
        (1, 12_345, 12_345),
    ];
    for (w, t, start) in cases {
        let s = spec(w, 0, 0);
        assert_eq!(
            s.window_of(ts(t)),
            (ts(start), ts(start + w)),
            "w={w} t={t}"
        );
        // The aggregator files the reading under the same window.
        let mut a = Aggregator::new(s).unwrap();
        a.ingest(&reading("d", "m", 1.0, t), ts(t)).unwrap();
        let out = a.close_all();
        assert_eq!(
            (out[0].start, out[0].end),
            (ts(start), ts(start + w)),
            "w={w} t={t}"
        );
    }
}

#[test]
fn windows_close_exactly_at_end_plus_grace() {
    // (window_ms, grace_ms, reading time, window end)
    let cases = [
        (1000, 0, 1234, 2000),
        (1000, 500, 1234, 2000),
        (1000, 500, 1000, 2000),
        (1000, 500, 1999, 2000),
        (60_000, 5_000, 61_000, 120_000),
        (1, 0, 42, 43),
    ];
    for (w, g, t, end) in cases {
        let mut a = agg(w, g, 0);
        a.ingest(&reading("d", "m", 1.0, t), ts(t)).unwrap();
        assert_eq!(a.next_deadline(), Some(ts(end + g)));
        assert!(
            a.close_due(ts(end + g - 1)).is_empty(),
            "w={w} g={g}: closed 1 ms early"
        );
        assert_eq!(a.open_series(), 1);
        let out = a.close_due(ts(end + g));
        assert_eq!(
            summary(&out),
            [row(end - w, "d", &[("m", 1, 1.0)])],
            "w={w} g={g}"
        );
        assert_eq!(a.open_series(), 0);
        assert_eq!(a.next_deadline(), None);
    }
}

#[test]
fn late_readings_are_rejected_and_touch_nothing() {
    // Window 1000, grace 500: window [1000, 2000) is due at 2500.
    // (reading time, now of the late ingest, steps): every case first feeds
    // an on-time reading into [1000, 2000) and [2000, 3000), optionally closes
    // due windows at `close_at`, then offers the late reading.
    struct Case {
        name: &'static str,
        close_at: Option<i64>,
        late_t: i64,
        late_now: i64,
        window_end: i64,
    }
    let cases = [
        Case {
            name: "past grace, not yet closed",
            close_at: None,
            late_t: 1999,
            late_now: 2500,
            window_end: 2000,
        },
        Case {
            name: "past grace, already closed",
            close_at: Some(2600),
            late_t: 1000,
            late_now: 2700,
            window_end: 2000,
        },
        Case {
            name: "window never opened, past grace",
            close_at: None,
            late_t: 500,
            late_now: 2000,
            window_end: 1000,
        },
        Case {
            name: "clock stepped back after closing",
            close_at: Some(2500),
            late_t: 1800,
            late_now: 1900,
            window_end: 2000,
        },
        Case {
            name: "clock stepped back far, unopened older window",
            close_at: Some(2500),
            late_t: 100,
            late_now: 200,
            window_end: 1000,
        },
    ];
    for c in cases {
        let n = c.name;
        let mut a = agg(1000, 500, 0);
        a.ingest(&reading("d", "m", 1.0, 1500), ts(1500)).unwrap();
        a.ingest(&reading("d", "m", 2.0, 2100), ts(2100)).unwrap();
        let emitted_before = c.close_at.map(|t| summary(&a.close_due(ts(t))));
        let state = (a.open_series(), a.interned_series(), a.next_deadline());

        let err = a.ingest(&reading("d", "m", 99.0, c.late_t), ts(c.late_now));
        assert_eq!(
            err,
            Err(Rejected::Late {
                window_end: ts(c.window_end)
            }),
            "{n}"
        );
        // A reading from a new device must not be interned either.
        let err = a.ingest(&reading("ghost", "m", 99.0, c.late_t), ts(c.late_now));
        assert!(matches!(err, Err(Rejected::Late { .. })), "{n}");

        assert_eq!(
            (a.open_series(), a.interned_series(), a.next_deadline()),
            state,
            "{n}"
        );
        let mut emitted = emitted_before.unwrap_or_default();
        emitted.extend(summary(&a.close_all()));
        assert_eq!(
            emitted,
            [
                row(1000, "d", &[("m", 1, 1.0)]),
                row(2000, "d", &[("m", 1, 2.0)])
            ],
            "{n}: each window emitted once, without the late value"
        );
    }
}

#[test]
fn a_clock_stepping_back_never_reemits_a_window() {
    let mut a = agg(1000, 0, 1000);
    a.ingest(&reading("d", "m", 1.0, 500), ts(500)).unwrap();
    assert_eq!(a.close_due(ts(1000)).len(), 1);
    // NTP steps the clock back: [0, 1000) looks open again by `now` alone.
    assert!(a.ingest(&reading("d", "m", 2.0, 600), ts(700)).is_err());
    assert!(a.close_due(ts(1000)).is_empty());
    // Newer windows are unaffected.
    a.ingest(&reading("d", "m", 3.0, 1100), ts(700)).unwrap();
    assert_eq!(
        summary(&a.close_due(ts(2000))),
        [row(1000, "d", &[("m", 1, 3.0)])]
    );
}

#[test]
fn readings_too_far_in_the_future_are_rejected() {
    // (max_future_ms, now, reading time, accepted)
    let cases = [
        (1000, 10_000, 11_000, true),
        (1000, 10_000, 11_001, false),
        (0, 10_000, 10_000, true),
        (0, 10_000, 10_001, false),
        (0, 10_000, 253_402_300_799_999, false), // a clock in year 9999
    ];
    for (f, now, t, ok) in cases {
        let mut a = agg(1000, 0, f);
        let res = a.ingest(&reading("d", "m", 1.0, t), ts(now));
        if ok {
            assert_eq!(res, Ok(()), "f={f} t={t}");
            assert_eq!(a.open_series(), 1);
        } else {
            assert_eq!(res, Err(Rejected::Future { time: ts(t) }), "f={f} t={t}");
            assert_eq!(
                (a.open_series(), a.interned_series(), a.next_deadline()),
                (0, 0, None)
            );
        }
    }
}

#[test]
fn empty_windows_emit_nothing() {
    let mut a = agg(1000, 0, 10_000);
    a.ingest(&reading("d", "m", 1.0, 500), ts(500)).unwrap();
    a.ingest(&reading("d", "m", 2.0, 5500), ts(500)).unwrap();
    assert!(a.close_due(ts(999)).is_empty());
    let out = a.close_due(ts(10_000));
    assert_eq!(
        summary(&out),
        [
            row(0, "d", &[("m", 1, 1.0)]),
            row(5000, "d", &[("m", 1, 2.0)])
        ]
    );
    assert!(a.close_due(ts(100_000)).is_empty());
}

#[test]
fn metrics_of_a_device_are_grouped_and_sorted() {
    let mut a = agg(60_000, 0, 0);
    let feed = [
        ("temp", 21.0),
        ("co2", 400.0),
        ("humidity", 40.0),
        ("temp", 23.0),
        ("co2", 600.0),
        ("battery", 3.0),
    ];
    for (i, (m, v)) in feed.iter().enumerate() {
        a.ingest(&reading("room-1", m, *v, 1000 + i as i64), ts(2000))
            .unwrap();
    }
    assert_eq!(a.open_series(), 4);
    let out = a.close_due(ts(60_000));
    assert_eq!(
        summary(&out),
        [row(
            0,
            "room-1",
            &[
                ("battery", 1, 3.0),
                ("co2", 2, 500.0),
                ("humidity", 1, 40.0),
                ("temp", 2, 22.0)
            ]
        )]
    );
    let (_, co2) = &out[0].metrics[1];
    assert_eq!((co2.min(), co2.max(), co2.std()), (400.0, 600.0, 100.0));
}

#[test]
fn output_is_ordered_by_window_start_then_device() {
    let mut a = agg(1000, 0, 5000);
    // Fed deliberately out of order: later windows and later devices first.
    let feed = [
        ("zeta", "m", 2500),
        ("alpha", "m", 2100),
        ("mid", "m", 700),
        ("alpha", "x", 300),
        ("zeta", "m", 100),
        ("Alpha", "m", 2900), // byte order: uppercase sorts first
        ("alpha", "m", 600),
    ];
    for (d, m, t) in feed {
        a.ingest(&reading(d, m, 1.0, t), ts(0)).unwrap();
    }
    let out = a.close_due(ts(3000));
    let order: Vec<(i64, String, Vec<String>)> = summary(&out)
        .into_iter()
        .map(|(s, d, ms)| (s, d, ms.into_iter().map(|m| m.0).collect()))
        .collect();
    let want = [
        (0, "alpha", vec!["m", "x"]),
        (0, "mid", vec!["m"]),
        (0, "zeta", vec!["m"]),
        (2000, "Alpha", vec!["m"]),
        (2000, "alpha", vec!["m"]),
        (2000, "zeta", vec!["m"]),
    ];
    let want: Vec<(i64, String, Vec<String>)> = want
        .into_iter()
        .map(|(s, d, ms)| (s, d.to_string(), ms.into_iter().map(String::from).collect()))
        .collect();
    assert_eq!(order, want);
}

#[test]
fn next_deadline_tracks_the_earliest_open_window() {
    let mut a = agg(1000, 200, 10_000);
    assert_eq!(a.next_deadline(), None);
    // (reading time, expected next deadline after ingesting it)
    let steps = [(5500, 6200), (7100, 6200), (2300, 3200), (2999, 3200)];
    for (t, want) in steps {
        a.ingest(&reading("d", "m", 1.0, t), ts(2000)).unwrap();
        assert_eq!(a.next_deadline(), Some(ts(want)), "after t={t}");
    }
    // Closing exactly at each deadline advances it to the next window's.
    for (now, next) in [(3200, Some(6200)), (6200, Some(8200)), (8200, None)] {
        assert_eq!(a.close_due(ts(now)).len(), 1, "now={now}");
        assert_eq!(a.next_deadline(), next.map(ts), "now={now}");
    }
}

#[test]
fn close_all_flushes_everything_and_seals_those_windows() {
    let mut a = agg(1000, 500, 60_000);
    a.ingest(&reading("b", "m", 1.0, 1500), ts(1500)).unwrap();
    a.ingest(&reading("a", "m", 2.0, 1600), ts(1500)).unwrap();
    a.ingest(&reading("a", "m", 4.0, 30_000), ts(1500)).unwrap();
    let out = a.close_all();
    assert_eq!(
        summary(&out),
        [
            row(1000, "a", &[("m", 1, 2.0)]),
            row(1000, "b", &[("m", 1, 1.0)]),
            row(30_000, "a", &[("m", 1, 4.0)]),
        ]
    );
    assert_eq!(
        (a.open_series(), a.interned_series(), a.next_deadline()),
        (0, 0, None)
    );
    assert!(a.close_all().is_empty());
    // The flushed windows cannot be filled and emitted a second time.
    for t in [1700, 30_500] {
        let res = a.ingest(&reading("a", "m", 1.0, t), ts(1500));
        assert!(matches!(res, Err(Rejected::Late { .. })), "t={t}");
    }
}

#[test]
fn one_second_windows_over_a_realistic_stream() {
    let mut a = agg(1000, 250, 1000);
    // A sensor every 250 ms from t = 10 s, two metrics, values rising by 1;
    // close_due runs after every reading, as a pipeline would.
    let mut emitted = Vec::new();
    for i in 0..12_i64 {
        let t = 10_000 + i * 250;
        for (m, offset) in [("temp", 0.0), ("rh", 100.0)] {
            a.ingest(&reading("s1", m, offset + i as f64, t), ts(t))
                .unwrap();
        }
        emitted.extend(a.close_due(ts(t)));
    }
    // t = 12_750 is the last `now`: [10 s, 11 s) closed at 11.25 s, [11 s, 12 s) at 12.25 s.
    assert_eq!(
        summary(&emitted),
        [
            row(10_000, "s1", &[("rh", 4, 101.5), ("temp", 4, 1.5)]),
            row(11_000, "s1", &[("rh", 4, 105.5), ("temp", 4, 5.5)]),
        ]
    );
    let temp = emitted[0].metrics[1].1;
    assert!((temp.std() - 1.25_f64.sqrt()).abs() < 1e-12);
    assert_eq!(a.open_series(), 2);
    assert_eq!(
        summary(&a.close_due(ts(13_250))),
        [row(12_000, "s1", &[("rh", 4, 109.5), ("temp", 4, 9.5)])]
    );
}

#[test]
fn one_sample_window_has_zero_spread() {
    let mut a = agg(1000, 0, 0);
    a.ingest(&reading("d", "m", -7.25, 10), ts(10)).unwrap();
    let out = a.close_all();
    let s = out[0].metrics[0].1;
    assert_eq!(
        (s.count(), s.avg(), s.min(), s.max(), s.std()),
        (1, -7.25, -7.25, -7.25, 0.0)
    );
}

#[test]
fn accumulators_and_interned_series_are_counted_and_released() {
    let mut a = agg(1000, 0, 5000);
    // Two devices × two metrics in window [0, 1000); only "a/m" also in [1000, 2000).
    for (d, m, t) in [
        ("a", "m", 10),
        ("a", "n", 20),
        ("b", "m", 30),
        ("b", "n", 40),
        ("a", "m", 1500),
    ] {
        a.ingest(&reading(d, m, 1.0, t), ts(0)).unwrap();
    }
    assert_eq!((a.open_series(), a.interned_series()), (5, 4));
    assert_eq!(a.close_due(ts(1000)).len(), 2);
    // Only the series still holding an open window stays interned.
    assert_eq!((a.open_series(), a.interned_series()), (1, 1));
    assert_eq!(a.close_due(ts(2000)).len(), 1);
    assert_eq!((a.open_series(), a.interned_series()), (0, 0));
}

#[test]
fn devices_that_come_and_go_do_not_grow_the_tables() {
    let mut a = agg(1000, 0, 0);
    for round in 0..50_i64 {
        let t = round * 1000;
        for dev in 0..100 {
            // A fresh set of device ids every window.
            a.ingest(&reading(&format!("r{round}-d{dev}"), "m", 1.0, t), ts(t))
                .unwrap();
        }
        assert_eq!(a.interned_series(), 100);
        assert_eq!(a.close_due(ts(t + 1000)).len(), 100);
        assert_eq!(a.interned_series(), 0);
        assert_eq!(a.series.slots(), 0, "round {round}");
    }
}

#[test]
fn rejections_explain_themselves() {
    let late = Rejected::Late {
        window_end: ts(2000),
    };
    assert_eq!(
        late.to_string(),
        "reading is late: its window ended at 1970-01-01T00:00:02Z and is closed or past its grace period"
    );
    let future = Rejected::Future { time: ts(1500) };
    assert_eq!(
        future.to_string(),
        "reading at 1970-01-01T00:00:01.500Z is further ahead of the gateway clock than max_future_ms allows"
    );
}

#[test]
fn new_series_beyond_max_series_are_refused_and_open_ones_keep_flowing() {
    let mut a = agg(1000, 0, 5000).with_max_series(3);
    for (d, m) in [("a", "t"), ("a", "h"), ("b", "t")] {
        a.ingest(&reading(d, m, 1.0, 10), ts(10)).unwrap();
    }
    // A fourth series, by device or by metric, is refused and leaves no trace.
    for (d, m) in [("c", "t"), ("a", "co2")] {
        assert_eq!(
            a.ingest(&reading(d, m, 1.0, 20), ts(20)),
            Err(Rejected::MaxSeries { max_series: 3 }),
            "{d}/{m}"
        );
    }
    assert_eq!((a.open_series(), a.interned_series()), (3, 3));
    // The admitted ones go on, in this window and the next.
    a.ingest(&reading("a", "t", 3.0, 30), ts(30)).unwrap();
    a.ingest(&reading("b", "t", 5.0, 1100), ts(30)).unwrap();
    let closed = summary(&a.close_due(ts(1000)));
    assert_eq!(
        closed,
        vec![
            row(0, "a", &[("h", 1, 1.0), ("t", 2, 2.0)]),
            row(0, "b", &[("t", 1, 1.0)])
        ]
    );
    // Closing freed two places: new series are admitted again.
    a.ingest(&reading("c", "t", 7.0, 1200), ts(1200)).unwrap();
    a.ingest(&reading("d", "t", 7.0, 1200), ts(1200)).unwrap();
    assert!(matches!(
        a.ingest(&reading("e", "t", 7.0, 1200), ts(1200)),
        Err(Rejected::MaxSeries { .. })
    ));
    assert_eq!(summary(&a.close_due(ts(2000))).len(), 3);
}

#[test]
fn a_flood_of_distinct_ids_stays_within_the_cap_and_the_tables_shrink_back() {
    let mut a = agg(1000, 0, 0).with_max_series(1000);
    let mut refused = 0;
    for dev in 0..200_000 {
        match a.ingest(&reading(&format!("flood-{dev}"), "m", 1.0, 10), ts(10)) {
            Ok(()) => {}
            Err(Rejected::MaxSeries { .. }) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((refused, a.interned_series()), (199_000, 1000));
    assert!(a.series.slots() <= 1000);
    assert_eq!(a.close_due(ts(1000)).len(), 1000);
    assert_eq!((a.interned_series(), a.series.slots()), (0, 0));
}

/// A wall clock stepping back behind the emitted windows: new readings are
/// taken in the corrected clock's windows, a window over a span emitted
/// before is a rerun, and a snapshot keeps that across a restart.
#[test]
fn the_window_clock_follows_a_backward_step_and_marks_reruns() {
    let spec = WindowSpec {
        window_ms: 10,
        grace_ms: 2,
        max_future_ms: 0,
    };
    let mut agg = Aggregator::new(spec).unwrap();
    let at = |ms| Timestamp::from_millis(ms).unwrap();
    let r = |ms| {
        Reading::new(
            DeviceId::new("d").unwrap(),
            MetricName::new("t").unwrap(),
            1.0,
            at(ms),
            TimeSource::Arrival,
        )
        .unwrap()
    };
    agg.ingest(&r(105), at(105)).unwrap();
    let first = agg.close_due(at(113));
    assert_eq!((first.len(), first[0].rerun), (1, 0));
    // Back to 104: the window [100, 110) was emitted already.
    assert!(agg.is_behind(at(104)));
    assert!(matches!(
        agg.ingest(&r(104), at(104)),
        Err(Rejected::Late { .. })
    ));
    assert_eq!(agg.step_back(at(104)), Some(Vec::new()));
    assert_eq!(agg.step_back(at(104)), None, "one step, followed once");
    agg.ingest(&r(104), at(104)).unwrap();
    let snapshot = agg.snapshot();
    let mut restored = Aggregator::new(spec).unwrap();
    restored.restore(&snapshot);
    for a in [&mut agg, &mut restored] {
        let again = a.close_due(at(112));
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].start, again[0].rerun), (at(100), 1));
        assert_eq!(again[0].metrics[0].1.count(), 1);
    }
    // Past the span emitted before the step, windows are plain again.
    agg.ingest(&r(125), at(125)).unwrap();
    assert_eq!(agg.close_due(at(140))[0].rerun, 0);
}

/// Windows open when the clock steps back were stamped by the clock that
/// ran ahead: they close at the step instead of waiting for the corrected
/// clock to catch up, and a later window over their span is a rerun.
#[test]
fn windows_open_at_a_backward_step_close_at_once() {
    let spec = WindowSpec {
        window_ms: 10,
        grace_ms: 2,
        max_future_ms: 0,
    };
    let mut agg = Aggregator::new(spec).unwrap();
    let at = |ms| Timestamp::from_millis(ms).unwrap();
    let r = |ms| {
        Reading::new(
            DeviceId::new("d").unwrap(),
            MetricName::new("t").unwrap(),
            1.0,
            at(ms),
            TimeSource::Arrival,
        )
        .unwrap()
    };
    agg.ingest(&r(105), at(105)).unwrap();
    agg.ingest(&r(125), at(125)).unwrap();
    assert_eq!(agg.close_due(at(113)).len(), 1);
    let closed = agg.step_back(at(50)).unwrap();
    assert_eq!(closed.len(), 1);
    assert_eq!((closed[0].start, closed[0].rerun), (at(120), 0));
    assert_eq!(agg.next_deadline(), None, "nothing left open");
    agg.ingest(&r(125), at(125)).unwrap();
    assert_eq!(agg.close_due(at(140))[0].rerun, 1);
}

#[test]
fn the_window_remembered_from_the_reading_before_is_the_one_division_gives() {
    for window_ms in [1, 7, 1_000, 3_600_000] {
        let mut a = agg(window_ms, 0, 0);
        let mut t = -3 * window_ms - 1;
        // Forward in uneven steps across window edges, then back, then at
        // the ends of the range where the end saturates.
        let mut times: Vec<i64> = (0..200)
            .map(|i| {
                t += 1 + (i * 37) % (window_ms + 3);
                t
            })
            .collect();
        times.extend(times.clone().into_iter().rev());
        times.extend([-(1 << 50), 1 << 50, i64::MAX - 1, i64::MAX, 0, -1]);
        for t in times {
            assert_eq!(
                a.bounds_near_last(t),
                a.spec.bounds(t),
                "t = {t}, window {window_ms} ms"
            );
        }
    }
}

#[test]
fn the_same_reading_at_the_same_instant_is_judged_again_once_windows_close() {
    let mut a = agg(1000, 500, 60_000);
    let r = reading("a", "m", 1.0, 1500);
    // The remembered judgement: checked, then taken, at one instant.
    a.check(&r, ts(1500)).unwrap();
    a.ingest(&r, ts(1500)).unwrap();
    a.ingest(&r, ts(1500)).unwrap();
    // Its window closes: asked again at that same instant, it is late.
    assert_eq!(a.close_all().len(), 1);
    assert!(matches!(a.check(&r, ts(1500)), Err(Rejected::Late { .. })));
    assert!(matches!(a.ingest(&r, ts(1500)), Err(Rejected::Late { .. })));
    // A clock stepping back behind those windows opens the new ones;
    // its readings are judged against the lowered watermark.
    let back = reading("a", "m", 1.0, 200);
    assert!(a.step_back(ts(200)).is_some());
    a.check(&back, ts(200)).unwrap();
    a.ingest(&back, ts(200)).unwrap();
    // Too far ahead is refused whatever was remembered for another time.
    let ahead = reading("a", "m", 1.0, 200 + 60_001);
    assert!(matches!(
        a.check(&ahead, ts(200)),
        Err(Rejected::Future { .. })
    ));
}

/// By its own time: a reading ahead beyond `max_future` (within the
/// horizon) opens its window, which is not due by the gateway clock; one in a span
/// already emitted goes out as a numbered late amendment at the next
/// close, and the numbering survives a snapshot.
#[test]
fn own_time_readings_wait_for_the_clock_or_amend_a_sent_window() {
    let mut a = agg(1_000, 0, 100);
    a.ingest(&reading("d", "t", 1.0, 500), ts(500)).unwrap();
    let first = a.close_due(ts(1_000));
    assert_eq!((first.len(), first[0].amendment), (1, 0));
    let late = reading("d", "t", 2.0, 700);
    assert!(matches!(
        a.ingest(&late, ts(1_200)),
        Err(Rejected::Late { .. })
    ));
    let ahead = reading("d", "t", 3.0, 5_500);
    assert!(matches!(
        a.ingest(&ahead, ts(1_200)),
        Err(Rejected::Future { .. })
    ));
    a.ingest_own_time(&late, ts(1_200), 10_000).unwrap();
    a.ingest_own_time(&ahead, ts(1_200), 10_000).unwrap();
    assert_eq!(
        a.ingest_own_time(&reading("d", "t", 4.0, 20_000), ts(1_200), 10_000),
        Err(Rejected::Future { time: ts(20_000) }),
        "beyond the horizon"
    );
    let amended = a.close_due(ts(1_300));
    assert_eq!(amended.len(), 1, "the window ahead waits: {amended:?}");
    assert_eq!((amended[0].start, amended[0].amendment), (ts(0), 1));
    assert_eq!(amended[0].metrics[0].1.count(), 1);
    a.ingest_own_time(&late, ts(1_300), 10_000).unwrap();
    let snapshot = a.snapshot();
    let mut restored = agg(1_000, 0, 100);
    restored.restore(&snapshot);
    let again = restored.close_due(ts(1_400));
    assert_eq!((again[0].start, again[0].amendment), (ts(0), 2));
    let waited = restored.close_due(ts(6_000));
    assert_eq!((waited[0].start, waited[0].amendment), (ts(5_000), 0));
}

/// The gateway clock stepped back 10 minutes and stays there: readings
/// with their own (right) time close their windows on that time, not 10
/// minutes later; a straggler for a span sent that way amends it, and the
/// same span's first window from another device is a first window.
#[test]
fn windows_wholly_ahead_of_the_gateway_clock_close_on_their_own_time() {
    let step = 600_000;
    let mut a = agg(5_000, 1_000, 2_000);
    // True time 1_000_000 + x; the gateway clock reads step less.
    let own = |t: i64, v| reading("node", "t", v, 1_000_000 + t);
    let wall = |t: i64| ts(1_000_000 - step + t);
    for (t, v) in [(100, 1.0), (2_000, 2.0), (4_900, 3.0)] {
        assert!(matches!(
            a.ingest(&own(t, v), wall(t)),
            Err(Rejected::Future { .. })
        ));
        a.ingest_own_time(&own(t, v), wall(t), 86_400_000).unwrap();
    }
    // Due when the node's clock passes 1_005_000 + grace: 6 s after its
    // window opened, as seen on the gateway clock.
    assert_eq!(a.next_deadline(), Some(wall(6_000)));
    assert!(a.close_due(wall(5_999)).is_empty());
    let sent = a.close_due(wall(6_000));
    assert_eq!(
        summary(&sent),
        vec![(1_000_000, "node".into(), vec![("t".into(), 3, 2.0)])]
    );
    assert_eq!((sent[0].amendment, sent[0].rerun), (0, 0));
    assert!(
        a.watermark() < 1_000_000,
        "the watermark waits for the gateway clock"
    );

    // A straggler of that span, even through a snapshot: an amendment.
    let snapshot = a.snapshot();
    let mut a = agg(5_000, 1_000, 2_000);
    a.restore(&snapshot);
    a.ingest_own_time(&own(4_950, 10.0), wall(6_100), 86_400_000)
        .unwrap();
    let amended = a.close_due(wall(12_000));
    assert_eq!(
        summary(&amended),
        vec![(1_000_000, "node".into(), vec![("t".into(), 1, 10.0)])]
    );
    assert_eq!(amended[0].amendment, 1);

    // Ten minutes on, the gateway clock reaches the span: another device's
    // readings stamped on arrival make that device's first window there,
    // while the node's own ones amend.
    let later = |t: i64| ts(1_000_000 + t);
    a.ingest(&reading("other", "t", 5.0, 1_000_000 + 1_000), later(1_000))
        .unwrap();
    a.ingest(&reading("node", "t", 7.0, 1_000_000 + 1_500), later(1_500))
        .unwrap();
    let both = a.close_due(later(6_000));
    let by_device: Vec<_> = both
        .iter()
        .map(|w| (w.device.as_str(), w.amendment))
        .collect();
    assert_eq!(by_device, vec![("node", 2), ("other", 0)]);
    assert!(
        a.ahead_state().sent.is_empty(),
        "forgotten once the watermark covers it"
    );
}

/// A reading only a little ahead (less than a window and its grace) keeps
/// its window on the gateway clock: closing early would cut short the
/// readings the gateway stamps itself in the same window.
#[test]
fn a_window_the_gateway_clock_is_already_in_waits_for_it() {
    let mut a = agg(5_000, 1_000, 2_000);
    a.ingest(&reading("arrival", "t", 1.0, 1_000), ts(1_000))
        .unwrap();
    a.ingest_own_time(&reading("node", "t", 2.0, 4_000), ts(1_000), 86_400_000)
        .unwrap();
    assert_eq!(a.next_deadline(), Some(ts(6_000)));
    assert!(a.close_due(ts(5_999)).is_empty());
    let sent = a.close_due(ts(6_000));
    assert_eq!(
        sent.iter().map(|w| w.amendment).collect::<Vec<_>>(),
        vec![0, 0]
    );
}

/// Issue 69: letting go of the caches after a burst (the recent ids, the
/// spare member lists) changes no window: the same readings, let go of
/// between and within windows, close into the same statistics.
#[test]
fn letting_go_of_the_caches_changes_no_window() {
    let run = |let_go: bool| {
        let mut a = agg(1000, 0, 0);
        let mut closed = Vec::new();
        for window in 0..3 {
            let t = 1_000 * window;
            for i in 0..200 {
                let device = format!("dev-{}", i % 40);
                let metric = ["temperature", "humidity"][i % 2];
                a.ingest(&reading(&device, metric, i as f64, t + 10), ts(t + 10))
                    .unwrap();
                if let_go && i == 100 {
                    a.let_go_of_caches();
                }
            }
            closed.extend(a.close_due(ts(t + 1_000)));
            if let_go {
                a.let_go_of_caches();
            }
        }
        summary(&closed)
    };
    let kept = run(false);
    assert_eq!(kept.len(), 3 * 40);
    assert_eq!(run(true), kept);
}

/// Issue 69: series keyed by interned device and metric ids, their extra
/// windows in a shared spill. Against a plain model (every accepted value
/// by window, device and metric), a random stream over devices that share
/// names and long prefixes, come and go (so ids and names are released and
/// reused), report into the grace period of the window before (so series
/// spill), and a restart from a snapshot half-way: every emitted window
/// holds exactly the statistics of the values the model holds for it, fed
/// in the same order (bit for bit), under its own device and metric, and
/// nothing due is left open.
#[test]
fn windows_match_a_plain_model_through_reused_ids_spills_and_a_restart() {
    use std::collections::BTreeMap;
    let mut rng = 0x2545_F491_4F6C_DD1D_u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let devices: Vec<String> = (0..30)
        .map(|i| match i % 3 {
            0 => format!("d{i}"),
            1 => format!("sensor-with-a-long-common-prefix-{i}"),
            _ => format!("70B3D57ED000{i:04X}"),
        })
        .collect();
    let metrics = ["t", "temperature", "humidity", "co2", "a b"];
    let spec = spec(1_000, 700, 10_000);
    let mut a = Aggregator::new(spec).unwrap();
    // (window start, device, metric) -> values in arrival order.
    let mut model: BTreeMap<(i64, String, String), Vec<f64>> = BTreeMap::new();
    let mut emitted = 0;
    for step in 0..600_i64 {
        let now = step * 37;
        // A third of the devices at a time, the set moving on: devices go
        // quiet long enough for every series of theirs to be released.
        let base = (step / 100) as u64 * 10;
        for _ in 0..8 {
            let device = &devices[((base + next(12)) % 30) as usize];
            let metric = metrics[next(5) as usize];
            let t = (now - next(1_200) as i64).max(0);
            let value = next(10_000) as f64 / 7.0 - 500.0;
            let r = reading(device, metric, value, t);
            if a.ingest(&r, ts(now)).is_ok() {
                let start = t - t.rem_euclid(1_000);
                // As the device id keeps it (lowercased).
                let key = (start, r.device().to_string(), metric.to_string());
                model.entry(key).or_default().push(value);
            }
        }
        if step == 300 {
            let snapshot = a.snapshot();
            a = Aggregator::new(spec).unwrap();
            a.restore(&snapshot);
            assert_eq!(a.snapshot(), snapshot);
        }
        for w in a.close_due(ts(now)) {
            let start = w.start.as_millis();
            let mut metrics_seen = Vec::new();
            for (metric, stats) in &w.metrics {
                let key = (start, w.device.to_string(), metric.to_string());
                let values = model.remove(&key).unwrap_or_else(|| {
                    panic!("{key:?} emitted, but the model holds no value for it")
                });
                assert_eq!(*stats, Stats::from_values(&values), "{key:?}");
                metrics_seen.push(metric.to_string());
            }
            let mut sorted = metrics_seen.clone();
            sorted.sort();
            assert_eq!(metrics_seen, sorted, "metrics in name order");
            emitted += 1;
        }
        let due = |start: i64| start + 1_000 + 700 <= now;
        assert!(
            !model.keys().any(|(start, _, _)| due(*start)),
            "a due window left open at {now}"
        );
        let open: std::collections::BTreeSet<_> = model
            .keys()
            .map(|(_, d, m)| (d.clone(), m.clone()))
            .collect();
        assert_eq!(a.interned_series(), open.len(), "series interned at {now}");
    }
    assert!(emitted > 200, "{emitted} device windows");
    let rest = a.close_all();
    let left: usize = rest.iter().map(|w| w.metrics.len()).sum();
    assert_eq!(left, model.len());
    assert_eq!(a.interned_series(), 0);
}
