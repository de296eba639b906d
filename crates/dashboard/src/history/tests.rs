#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use super::*;

const MIN: i64 = 60_000;
const T0: i64 = 20_000 * HOUR_MS;

fn w(device: &str, metric: &str, start: i64, avg: f64) -> WindowRow {
    WindowRow {
        device: device.into(),
        metric: metric.into(),
        agg: Aggregate {
            start,
            end: start + MIN,
            count: 2,
            avg,
            min: avg - 1.0,
            max: avg + 1.0,
            std: 0.5,
        },
    }
}

fn windows(rows: Vec<WindowRow>) -> Batch {
    Batch {
        windows: rows,
        alerts: vec![],
        commands: vec![],
    }
}

fn alert(device: &str, at: i64, state: &str) -> AlertRow {
    AlertRow {
        device: device.into(),
        rule: "hot".into(),
        metric: "t".into(),
        kind: "threshold".into(),
        state: state.into(),
        value: 3.0,
        limit: 2.0,
        at,
        reason: None,
        expected: None,
    }
}

/// `hours` hours of one window a minute for `devices` devices.
fn fill(h: &History, devices: usize, hours: i64) {
    for minute in 0..hours * 60 {
        let rows = (0..devices)
            .map(|d| w(&format!("d{d}"), "t", T0 + minute * MIN, minute as f64))
            .collect();
        h.write(&windows(rows), 0).unwrap();
    }
}

fn avgs(h: &History, device: &str, from: i64, to: i64) -> Vec<f64> {
    h.series(device, "t", from, to, 0)
        .unwrap()
        .iter()
        .map(|a| a.avg)
        .collect()
}

fn files(dir: &Path, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(suffix))
        .collect();
    v.sort();
    v
}

#[test]
fn series_span_hours_merge_steps_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path()).unwrap();
    let t0 = T0 - 2 * MIN;
    let batch = windows(
        (0..4)
            .map(|i| w("d1", "temperature", t0 + i * MIN, i as f64))
            .chain([w("d2", "temperature", t0, 100.0), w("d1", "rh", t0, 50.0)])
            .collect(),
    );
    h.write(&batch, 0).unwrap();
    let all = h.series("d1", "temperature", t0, t0 + HOUR_MS, 0).unwrap();
    assert_eq!(
        all.iter().map(|a| a.avg).collect::<Vec<_>>(),
        [0.0, 1.0, 2.0, 3.0]
    );
    let merged = h
        .series("d1", "temperature", t0, t0 + 4 * MIN, 2 * MIN)
        .unwrap();
    assert_eq!(merged.len(), 2);
    assert_eq!(merged[0].avg, 0.5);
    assert_eq!((merged[1].min, merged[1].max), (1.0, 4.0));
    assert!(h
        .series("d9", "temperature", 0, i64::MAX, 0)
        .unwrap()
        .is_empty());
    drop(h);
    for h in [
        History::open_read_only(dir.path()).unwrap(),
        History::open(dir.path()).unwrap(),
    ] {
        assert_eq!(
            h.series("d1", "temperature", t0, t0 + HOUR_MS, 0)
                .unwrap()
                .len(),
            4
        );
        let devices = h.devices().unwrap();
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[0].id, "d1");
        assert_eq!(devices[0].metrics, ["rh", "temperature"]);
        assert_eq!(devices[0].last_end, t0 + 4 * MIN);
    }
}

#[test]
fn a_second_writer_is_busy_and_a_reader_sees_what_the_writer_committed() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path()).unwrap();
    assert!(matches!(
        History::open(dir.path()),
        Err(HistoryError::Busy(_))
    ));
    h.write(&windows(vec![w("d", "t", T0, 1.0)]), 0).unwrap();
    // `history export` beside the running gateway.
    let reader = History::open_read_only(dir.path()).unwrap();
    assert_eq!(avgs(&reader, "d", T0, T0 + HOUR_MS), [1.0]);
    assert_eq!(
        reader
            .write(&windows(vec![w("d", "t", T0 + MIN, 2.0)]), 0)
            .unwrap(),
        0
    );
    drop(h);
    assert!(
        History::open(dir.path()).is_ok(),
        "the lock goes with the writer"
    );
}

#[test]
fn a_window_written_again_replaces_the_first_copy_sealed_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path()).unwrap();
    h.write(
        &windows(vec![w("d", "t", T0, 1.0), w("d", "t", T0 + MIN, 2.0)]),
        0,
    )
    .unwrap();
    // A restart that replays its journal closes the window again.
    h.write(&windows(vec![w("d", "t", T0, 1.5)]), 0).unwrap();
    assert_eq!(avgs(&h, "d", T0, T0 + HOUR_MS), [1.5, 2.0]);
    // Later hours make the first one due for sealing.
    h.write(&windows(vec![w("d", "t", T0 + 3 * HOUR_MS, 9.0)]), 0)
        .unwrap();
    let p = h.prune(i64::MIN, u64::MAX).unwrap();
    assert!(p.bytes_written > 0);
    assert_eq!(p.windows, 0);
    let hour = T0 / HOUR_MS;
    assert_eq!(files(dir.path(), ".dat"), [format!("h-{hour}.dat")]);
    assert!(!dir.path().join(format!("h-{hour}.log")).exists());
    assert_eq!(avgs(&h, "d", T0, T0 + HOUR_MS), [1.5, 2.0]);
    // A late copy for the sealed hour wins, in memory, after a reopen and
    // after sealing again.
    h.write(&windows(vec![w("d", "t", T0 + MIN, 2.5)]), 0)
        .unwrap();
    assert_eq!(avgs(&h, "d", T0, T0 + HOUR_MS), [1.5, 2.5]);
    drop(h);
    let h = History::open(dir.path()).unwrap();
    assert_eq!(avgs(&h, "d", T0, T0 + HOUR_MS), [1.5, 2.5]);
    assert!(
        !dir.path().join(format!("h-{hour}.log")).exists(),
        "sealed at open"
    );
    assert_eq!(avgs(&h, "d", T0, T0 + 4 * HOUR_MS), [1.5, 2.5, 9.0]);
}

#[test]
fn retention_drops_whole_hours_and_their_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path()).unwrap();
    let day = 24 * HOUR_MS;
    let batch = Batch {
        windows: vec![w("d", "t", T0, 1.0), w("d", "t", T0 + 3 * day, 3.0)],
        alerts: vec![
            alert("d", T0 + 5, "raised"),
            alert("d", T0 + 3 * day, "cleared"),
        ],
        commands: vec![],
    };
    h.write(&batch, 7).unwrap();
    assert_eq!(h.next_alert_seq().unwrap(), 9);
    let newest_first: Vec<_> = h.alerts(0, i64::MAX).unwrap();
    assert_eq!(newest_first[0].state, "cleared");
    assert_eq!(newest_first.len(), 2);
    let p = h.prune(T0 + 2 * day, u64::MAX).unwrap();
    assert_eq!(p.windows, 1);
    assert_eq!(avgs(&h, "d", 0, i64::MAX), [3.0]);
    assert_eq!(h.alerts(0, i64::MAX).unwrap().len(), 1);
    drop(h);
    let h = History::open(dir.path()).unwrap();
    assert_eq!(h.next_alert_seq().unwrap(), 9, "read back from the files");
    assert_eq!(avgs(&h, "d", 0, i64::MAX), [3.0]);
}

#[test]
fn over_max_bytes_the_oldest_hours_go_not_everything() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path()).unwrap();
    fill(&h, 10, 48);
    h.prune(i64::MIN, u64::MAX).unwrap();
    let full = h.dir_bytes().unwrap();
    let p = h.prune(i64::MIN, full / 2).unwrap();
    let all = 48 * 10 * 60;
    assert!(
        p.windows > 0 && p.windows < all,
        "deleted {} of {all}",
        p.windows
    );
    assert!(h.dir_bytes().unwrap() <= full / 2 * 9 / 10 + 4096);
    let left = h.series("d0", "t", T0, T0 + 48 * HOUR_MS, 0).unwrap();
    assert_eq!(
        left.len() as u64 * 10,
        all - p.windows,
        "whole hours, every device"
    );
    assert!(left[0].start > T0, "the oldest hours went first");
    assert_eq!(
        left.last().unwrap().start,
        T0 + 48 * HOUR_MS - MIN,
        "the newest stayed"
    );
    assert_eq!(
        h.prune(i64::MIN, full / 2).unwrap().windows,
        0,
        "room left for the next hour"
    );
    // Even a limit smaller than one hour keeps the newest hour.
    h.prune(i64::MIN, 1).unwrap();
    assert_eq!(h.series("d0", "t", T0, i64::MAX, 0).unwrap().len(), 60);
}

#[test]
fn damage_costs_what_it_hits_and_writing_goes_on_after_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path()).unwrap();
    fill(&h, 3, 3);
    h.write(&windows(vec![w("d0", "t", T0 + 5 * HOUR_MS, 5.0)]), 0)
        .unwrap();
    h.prune(i64::MIN, u64::MAX).unwrap();
    drop(h);
    let hour = T0 / HOUR_MS;
    // Scribble the run of one series in the first sealed hour.
    let dat = dir.path().join(format!("h-{hour}.dat"));
    let mut bytes = std::fs::read(&dat).unwrap();
    let end = bytes.len();
    bytes[end - 100] ^= 0xff;
    std::fs::write(&dat, &bytes).unwrap();
    // Tear the tail of the open hour's log, as a power cut would.
    let log = dir.path().join(format!("h-{}.log", hour + 5));
    let len = std::fs::metadata(&log).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    let h = History::open(dir.path()).unwrap();
    let first_hour = |d: &str| avgs(&h, d, T0, T0 + HOUR_MS).len();
    assert_eq!(
        [first_hour("d0"), first_hour("d1"), first_hour("d2")],
        [60, 60, 0],
        "only the scribbled run is lost"
    );
    assert_eq!(avgs(&h, "d2", T0 + HOUR_MS, T0 + 2 * HOUR_MS).len(), 60);
    assert!(avgs(&h, "d0", T0 + 5 * HOUR_MS, T0 + 6 * HOUR_MS).is_empty());
    // New batches after the torn one are read back.
    h.write(&windows(vec![w("d0", "t", T0 + 5 * HOUR_MS + MIN, 6.0)]), 0)
        .unwrap();
    drop(h);
    let h = History::open_read_only(dir.path()).unwrap();
    assert_eq!(avgs(&h, "d0", T0 + 5 * HOUR_MS, T0 + 6 * HOUR_MS), [6.0]);
    // A scribbled index: the runs are found by scanning.
    let mut bytes = std::fs::read(&dat).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&dat, &bytes).unwrap();
    let h = History::open_read_only(dir.path()).unwrap();
    assert_eq!(avgs(&h, "d0", T0, T0 + HOUR_MS).len(), 60);
}

#[test]
fn the_alert_log_is_every_transition_oldest_first_suppressed_ones_too() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path()).unwrap();
    let day = 24 * HOUR_MS;
    // More than one answer of the dashboard holds, over two days, with
    // transitions of the same millisecond in the order they happened.
    let states = ["raised", "cleared", "suppressed"];
    let rows: Vec<AlertRow> = (0..MAX_ALERTS as i64 + 200)
        .map(|i| alert("meter", T0 + (i / 2) * 60 * MIN, states[i as usize % 3]))
        .collect();
    assert!(rows.last().unwrap().at > T0 + day, "spans two days");
    for (seq, chunk) in rows.chunks(100).enumerate() {
        let batch = Batch {
            windows: vec![],
            alerts: chunk.to_vec(),
            commands: vec![],
        };
        h.write(&batch, seq as u64 * 100).unwrap();
    }
    drop(h);
    let reader = History::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.alert_log(0, i64::MAX).unwrap(), rows);
    assert_eq!(reader.alerts(0, i64::MAX).unwrap().len(), MAX_ALERTS);
    let last_hour = reader.alert_log(rows[5].at, rows[8].at).unwrap();
    assert_eq!(last_hour, rows[4..8], "[from, to)");
}

#[test]
fn downsampling_any_range_and_step_from_a_query_never_overflows() {
    let agg = |start: i64| Aggregate {
        start,
        end: start.saturating_add(MIN),
        count: 1,
        avg: 1.0,
        min: 1.0,
        max: 1.0,
        std: 0.0,
    };
    let edges = [i64::MIN, i64::MIN + 1, -1, 0, 1, T0, i64::MAX - 1, i64::MAX];
    let mut x = 0x9E37_79B9_7F4A_7C15_u64;
    let mut values: Vec<i64> = edges.to_vec();
    for _ in 0..300 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        values.push(x as i64);
    }
    for &from in &values {
        for &step in &edges {
            let to = from.saturating_add(HOUR_MS);
            let out = downsample(vec![agg(T0), agg(T0 + MIN)], from, to, step);
            assert!(out.len() <= 2, "{from} {step}");
            for b in &out {
                assert!(b.end >= b.start, "{from} {step}: {b:?}");
            }
        }
    }
}

/// Windows of one reading each of `value`, one a minute from `from`.
fn readings_of(device: &str, from: i64, n: i64, value: f64) -> Batch {
    windows(
        (0..n)
            .map(|i| {
                let mut row = w(device, "t", from + i * MIN, value);
                row.agg.count = 1;
                (row.agg.min, row.agg.max, row.agg.std) = (value, value, 0.0);
                row
            })
            .collect(),
    )
}

/// Readings and their mean over every window of a series.
fn count_and_mean(h: &History, device: &str) -> (u64, f64) {
    let all = h
        .series(device, "t", i64::MIN / 2, i64::MAX / 2, 0)
        .unwrap();
    let n: u64 = all.iter().map(|a| a.count).sum();
    let sum: f64 = all.iter().map(|a| a.avg * a.count as f64).sum();
    (n, if n == 0 { 0.0 } else { sum / n as f64 })
}

/// A damaged series list must not hand a lost series' id to a new device:
/// its windows (sealed ones and ones still in an hour's log) would show as
/// the new device's.
fn a_lost_series_id_is_not_reused(damage: impl Fn(&Path)) {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path()).unwrap();
    h.write(&readings_of("kept", T0, 10, 5.0), 0).unwrap();
    // The victim's windows: an hour sealed at the next open, and the
    // newest hour, left in its log; half a window off the newcomer's, so
    // a reused id would show both instead of the newcomer's replacing them.
    h.write(&readings_of("victim", T0 + HOUR_MS + MIN / 2, 59, 77.0), 0)
        .unwrap();
    h.write(
        &readings_of("victim", T0 + 5 * HOUR_MS + MIN / 2, 59, 77.0),
        0,
    )
    .unwrap();
    drop(h);
    damage(&dir.path().join("series.log"));
    let h = History::open(dir.path()).unwrap();
    assert_eq!(count_and_mean(&h, "victim"), (0, 0.0), "hidden, not shown");
    h.write(&readings_of("newcomer", T0 + HOUR_MS, 60, 1.0), 0)
        .unwrap();
    h.write(&readings_of("newcomer", T0 + 5 * HOUR_MS, 60, 1.0), 0)
        .unwrap();
    assert_eq!(count_and_mean(&h, "newcomer"), (120, 1.0));
    drop(h);
    let h = History::open(dir.path()).unwrap();
    assert_eq!(
        count_and_mean(&h, "newcomer"),
        (120, 1.0),
        "after reopening"
    );
    assert_eq!(count_and_mean(&h, "kept"), (10, 5.0));
}

#[test]
fn a_scribbled_series_list_never_gives_a_lost_series_id_to_a_new_device() {
    a_lost_series_id_is_not_reused(|path| {
        let mut bytes = std::fs::read(path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x5a;
        std::fs::write(path, &bytes).unwrap();
    });
}

#[test]
fn a_torn_series_list_never_gives_a_lost_series_id_to_a_new_device() {
    a_lost_series_id_is_not_reused(|path| {
        let len = std::fs::metadata(path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(len - 4)
            .unwrap();
    });
}

/// 150 readings in five windows of 30, as a 10 s sensor fills 5 min
/// windows: one bucket of them must say what the 150 readings say, not
/// what the widest window says.
#[test]
fn merged_buckets_pool_the_spread_of_every_reading() {
    let mut x = 0x2545_F491_4F6C_DD1D_u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let start = T0 + 10 * MIN;
    let mut all = Vec::new();
    let mut aggs = Vec::new();
    for wi in 0..5 {
        // Windows of different levels and spreads.
        let vals: Vec<f64> = (0..30)
            .map(|_| 4.0 + wi as f64 * 1.3 + next() * (1.0 + wi as f64))
            .collect();
        let n = vals.len() as f64;
        let mean = vals.iter().sum::<f64>() / n;
        let std = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        aggs.push(Aggregate {
            start: start + wi * 5 * MIN,
            end: start + (wi + 1) * 5 * MIN,
            count: 30,
            avg: mean,
            min: vals.iter().cloned().fold(f64::INFINITY, f64::min),
            max: vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
            std,
        });
        all.extend(vals);
    }
    let n = all.len() as f64;
    let mean = all.iter().sum::<f64>() / n;
    let std = (all.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    // Asked from the middle of an hour: the bucket still starts on it.
    let from = T0 + 7 * MIN;
    let out = downsample(aggs.clone(), from, from + 2 * HOUR_MS, HOUR_MS);
    assert_eq!(out.len(), 1, "{out:?}");
    let b = out[0];
    assert_eq!((b.start, b.end), (T0, T0 + HOUR_MS), "on the hour");
    assert_eq!(b.count, 150);
    assert!((b.avg - mean).abs() < 1e-12, "{} vs {mean}", b.avg);
    assert!((b.std - std).abs() < 1e-12, "{} vs {std}", b.std);
    assert_eq!(b.min, all.iter().cloned().fold(f64::INFINITY, f64::min));
    assert_eq!(b.max, all.iter().cloned().fold(f64::NEG_INFINITY, f64::max));
    // A step that would give too many points grows to a multiple of
    // itself: buckets stay on the hour.
    let year = downsample(aggs, T0 - 400 * 24 * HOUR_MS, T0 + HOUR_MS, HOUR_MS);
    assert!(year.len() == 1 && year[0].start % HOUR_MS == 0, "{year:?}");
    assert!((year[0].end - year[0].start) % HOUR_MS == 0);
}
