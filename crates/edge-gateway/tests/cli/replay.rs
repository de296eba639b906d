//! `edge-gateway replay` through the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use serde_json::Value;

const CONFIG: &str = r#"
[gateway]
id = "gw-01"

[[device]]
id = "fridge-2"
name = "Fridge 2"

[[rule]]
name = "fridge-max"
kind = "threshold"
metric = "temperature"
device = "fridge-2"
max = 8.0
hysteresis = 0.5
"#;

// Both timestamp forms, a header, a blank line and one bad row.
const CSV: &str = "timestamp,value
2026-11-21 10:00:00,7.0
2026-11-21 10:01:00,7.9
2026-11-21T10:02:00Z,9.4
2026-11-21 10:03:00,7.8

2026-11-21 10:04:00,oops
2026-11-21 10:05:00,7.2
";

fn replay(dir: &std::path::Path, device: &str) -> std::process::Output {
    std::fs::write(dir.join("gateway.toml"), CONFIG).unwrap();
    std::fs::write(dir.join("data.csv"), CSV).unwrap();
    Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .current_dir(dir)
        .args(["replay", "-c", "gateway.toml", "--csv", "data.csv"])
        .args(["--device", device, "--metric", "temperature"])
        .output()
        .unwrap()
}

#[test]
fn replay_prints_each_alert_as_the_upstream_payload_and_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let out = replay(dir.path(), "fridge-2");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let raised = &lines[0];
    let keys: Vec<&str> = raised
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = [
        "id", "gateway", "device", "name", "metric", "kind", "state", "value", "limit", "ts",
        "rule", "unit", "text",
    ];
    want.sort_unstable();
    assert_eq!(keys, want, "exactly the documented keys");
    assert_eq!(raised["unit"], "°C");
    assert_eq!(
        raised["text"],
        "fridge-max raised threshold: temperature 9.4 °C (limit 8.0 °C)"
    );
    assert_eq!(raised["gateway"], "gw-01");
    assert_eq!(raised["device"], "fridge-2");
    assert_eq!(raised["name"], "Fridge 2");
    assert_eq!(raised["metric"], "temperature");
    assert_eq!(raised["kind"], "threshold");
    assert_eq!(raised["state"], "raised");
    assert_eq!(raised["value"], 9.4);
    assert_eq!(raised["limit"], 8.0);
    assert_eq!(raised["ts"], "2026-11-21T10:02:00Z");
    assert_eq!(raised["rule"], "fridge-max");
    // 7.8 is not back inside by the 0.5 hysteresis; 7.2 is.
    assert_eq!(lines[1]["state"], "cleared");
    assert_eq!(lines[1]["ts"], "2026-11-21T10:05:00Z");
    assert_eq!(lines[1]["value"], 7.2);
    assert_ne!(lines[0]["id"], lines[1]["id"]);

    assert!(
        stderr.contains("line 7: expected timestamp,value"),
        "{stderr}"
    );
    assert!(stderr.contains("replayed 5 reading(s)"), "{stderr}");
    assert!(stderr.contains("1 bad row(s) skipped"), "{stderr}");
    assert!(stderr.contains("raised 1, cleared 1"), "{stderr}");
}

/// The same readings as a spreadsheet in a European locale saves them
/// (a byte-order mark, a quoted header of other names, `;` between the
/// fields, decimal commas, a further column), and tab-separated, give the
/// same alerts; a file with no readable row exits 65, not 0.
#[test]
fn replay_reads_a_spreadsheets_csv_and_refuses_a_file_without_readings() {
    let dir = tempfile::tempdir().unwrap();
    let plain = replay(dir.path(), "fridge-2");
    assert!(plain.status.success());
    let run = |csv: &str| {
        std::fs::write(dir.path().join("data.csv"), csv).unwrap();
        Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
            .current_dir(dir.path())
            .args(["replay", "-c", "gateway.toml", "--csv", "data.csv"])
            .args(["--device", "fridge-2", "--metric", "temperature"])
            .output()
            .unwrap()
    };
    let european = "\u{feff}\"Zeit\";\"Temperatur\";\"Einheit\"\r\n\
        \"2026-11-21 10:00:00\";\"7,0\";\"°C\"\r\n\
        2026-11-21 10:01:00;7,9;°C\r\n\
        2026-11-21T10:02:00Z;9,4;°C\r\n\
        2026-11-21 10:03:00;7,8;°C\r\n\
        2026-11-21 10:05:00;7,2;°C\r\n";
    let tabs = "time\tvalue\n2026-11-21 10:00:00\t7.0\n2026-11-21 10:01:00\t7.9\n\
        2026-11-21T10:02:00Z\t9.4\n2026-11-21 10:03:00\t7.8\n2026-11-21 10:05:00\t7.2\n";
    for csv in [european, tabs] {
        let out = run(csv);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert_eq!(out.stdout, plain.stdout, "{stderr}");
        assert!(stderr.contains("replayed 5 reading(s)"), "{stderr}");
        assert!(stderr.contains("0 bad row(s) skipped"), "{stderr}");
    }
    // Values the header guess must not take: a second unreadable row is bad.
    let out = run("timestamp,value\nnot,a row\n2026-11-21 10:00:00,oops\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(stderr.contains("2 bad row(s) skipped"), "{stderr}");
    assert!(stderr.contains("no reading in data.csv"), "{stderr}");
}

#[test]
fn replay_is_deterministic_and_respects_the_device_selector() {
    let dir = tempfile::tempdir().unwrap();
    let a = replay(dir.path(), "fridge-2");
    let b = replay(dir.path(), "fridge-2");
    assert_eq!(a.stdout, b.stdout, "same data, same alerts and ids");
    let other = replay(dir.path(), "fridge-9");
    assert!(other.status.success());
    assert!(other.stdout.is_empty(), "the rule names fridge-2 only");
}

#[test]
fn replay_without_rules_or_input_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.toml"), "").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .current_dir(dir.path())
        .args(["replay", "-c", "empty.toml", "--csv", "missing.csv"])
        .args(["--device", "d", "--metric", "m"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("has no [[rule]]"));
}

#[test]
fn validate_reports_a_bad_rule_with_its_index_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        "[[rule]]\nname = \"r\"\nkind = \"rate\"\nmetric = \"t\"\nrate = \"+2 per\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .args(["validate", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains(
            "rule[0].rate: expected a change per span like \"+2.0 per 10m\", got \"+2 per\""
        ),
        "{stdout}"
    );
}

/// Four days of 5-minute readings with a daily swing and a little noise,
/// and one reading far above anything seen at reading 1000.
fn anomaly_csv() -> String {
    let mut csv = String::from("timestamp,value\n");
    let mut seed: u64 = 7;
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").unwrap();
    for i in 0..1152 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let noise = (seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5;
        let day = (i as f64 / 288.0 * std::f64::consts::TAU).sin();
        let v = if i == 1000 {
            60.0
        } else {
            20.0 + 2.0 * day + noise
        };
        let at = start + chrono::Duration::minutes(5 * i);
        csv.push_str(&format!("{},{v}\n", at.format("%Y-%m-%d %H:%M:%S")));
    }
    csv
}

fn replay_anomaly(dir: &std::path::Path, extra: &[&str]) -> std::process::Output {
    replay_anomaly_of(dir, &anomaly_csv(), extra)
}

fn replay_anomaly_of(dir: &std::path::Path, csv: &str, extra: &[&str]) -> std::process::Output {
    std::fs::write(
        dir.join("anomaly.toml"),
        "[[rule]]\nname = \"room-anomaly\"\nkind = \"anomaly\"\nmetric = \"temperature\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("room.csv"), csv).unwrap();
    Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .current_dir(dir)
        .args(["replay", "-c", "anomaly.toml", "--csv", "room.csv"])
        .args(["--device", "room-1", "--metric", "temperature"])
        .args(extra)
        .output()
        .unwrap()
}

/// The raised alerts among the JSON lines `replay` printed.
fn raised_alerts(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|a| a["state"] == "raised")
        .collect()
}

#[test]
fn an_anomaly_alert_says_why_and_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let out = replay_anomaly(dir.path(), &[]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    let raised = raised_alerts(&out.stdout);
    let spike = raised
        .iter()
        .find(|a| a["value"] == 60.0)
        .unwrap_or_else(|| panic!("the spike is not reported: {raised:?}"));
    assert_eq!(spike["kind"], "anomaly");
    assert_eq!(spike["reason"], "spike");
    assert_eq!(spike["observed"], 60.0);
    let (low, high) = (
        spike["expected"]["low"].as_f64().unwrap(),
        spike["expected"]["high"].as_f64().unwrap(),
    );
    // The daily swing is 18..22 plus noise: the expected range covers it
    // and stops well short of the spike.
    assert!(low < 19.0 && (21.0..40.0).contains(&high), "{spike}");
    // The summary counts alerts per rule and per reason.
    assert!(stderr.contains("rule room-anomaly"), "{stderr}");
    assert!(stderr.contains("spike 1"), "{stderr}");
}

/// A unit's power read every 5 minutes: off (0.2 kW) or on (5 kW) as its
/// thermostat asks, one to three hours at a time, for 20 days; then three
/// hours at 2.4 kW (a failed stage), from the row returned.
fn half_power_csv() -> (String, usize) {
    let mut csv = String::from("time,value\n");
    let mut seed: u64 = 11;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as f64 / (1u64 << 31) as f64
    };
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").unwrap();
    let fault = 20 * 288;
    let (mut on, mut left) = (false, 0usize);
    for i in 0..fault + 36 {
        if left == 0 {
            on = !on;
            left = 12 + (next() * 24.0) as usize;
        }
        left -= 1;
        let level: f64 = if i >= fault {
            2.4
        } else if on {
            5.0
        } else {
            0.2
        };
        let v = level + 0.05 * level.max(1.0) * (next() - 0.5);
        let at = start + chrono::Duration::minutes(5 * i as i64);
        csv.push_str(&format!("{},{v}\n", at.format("%Y-%m-%d %H:%M:%S")));
    }
    (csv, fault)
}

#[test]
fn a_unit_running_between_off_and_on_is_reported_as_an_unusual_level() {
    // Inside its range and near its average, so neither the range nor
    // the levels see it; a level it never takes.
    let dir = tempfile::tempdir().unwrap();
    let (csv, fault) = half_power_csv();
    let out = replay_anomaly_of(dir.path(), &csv, &[]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    let raised = raised_alerts(&out.stdout);
    let fault_at = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").unwrap()
        + chrono::Duration::minutes(5 * fault as i64);
    let first = raised
        .iter()
        .find(|a| {
            a["ts"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| t >= fault_at)
        })
        .unwrap_or_else(|| panic!("half power is not reported: {raised:?}"));
    assert_eq!(first["reason"], "unusual_level", "{first}");
    let observed = first["observed"].as_f64().unwrap();
    assert!((2.3..2.5).contains(&observed), "{first}");
    assert!(stderr.contains("unusual_level 1"), "{stderr}");
}

/// A sensor that starts reporting the ends of `f64` (finite, so accepted):
/// once, the detector's spreads overflowed and a clip with NaN bounds
/// panicked, which the gateway's `panic = "abort"` made a crash on every
/// start (the journal replays what was accepted).
#[test]
fn readings_at_the_ends_of_f64_are_an_anomaly_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let csv: String = anomaly_csv()
        .lines()
        .enumerate()
        .map(|(row, line)| match line.split_once(',') {
            Some((at, _)) if row > 900 => {
                let v = ["1e308", "-1e308", "1.7976931348623157e308"][row % 3];
                format!("{at},{v}\n")
            }
            _ => format!("{line}\n"),
        })
        .collect();
    let out = replay_anomaly_of(dir.path(), &csv, &[]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("replayed 1152 reading(s)"), "{stderr}");
    let first: Value = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|a| a["state"] == "raised")
        .unwrap_or_else(|| panic!("nothing raised: {stderr}"));
    assert_eq!(first["reason"], "spike", "{first}");
    assert_eq!(
        first["observed"].as_f64().map(f64::abs),
        Some(1e308),
        "{first}"
    );
}

#[test]
fn replay_tries_another_sensitivity_and_rejects_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = replay_anomaly(dir.path(), &["--sensitivity", "0.9"]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("at sensitivity 0.9"), "{stderr}");
    let out = replay_anomaly(dir.path(), &["--sensitivity", "1.5"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("--sensitivity: expected a number in (0, 1], got 1.5"));
}

#[test]
fn replay_raises_a_rapid_rise_in_the_first_span_of_the_data() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rate.toml"),
        "[[rule]]\nname = \"fridge-warming\"\nkind = \"rate\"\nmetric = \"temperature\"\nrate = \"+2.0 per 10m\"\n",
    )
    .unwrap();
    // A fridge warming from 4 to 24 °C in 4 minutes, a reading every 10 s,
    // from the first row of the file on.
    let mut csv = String::from("timestamp,value\n");
    for i in 0..=24 {
        let v = 4.0 + 20.0 * f64::from(i) / 24.0;
        csv.push_str(&format!(
            "2026-11-21 10:{:02}:{:02},{v:.3}\n",
            i / 6,
            i % 6 * 10
        ));
    }
    std::fs::write(dir.path().join("fridge.csv"), csv).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .current_dir(dir.path())
        .args(["replay", "-c", "rate.toml", "--csv", "fridge.csv"])
        .args(["--device", "fridge-1", "--metric", "temperature"])
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    let alerts: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        alerts.len(),
        1,
        "raised once, not cleared within the data: {alerts:?}"
    );
    let raised = &alerts[0];
    assert_eq!(raised["state"], "raised");
    assert_eq!(raised["kind"], "rate");
    // 6.5 at 10:00:30 is the first reading 2.0 above the lowest (4.0).
    assert_eq!(raised["ts"], "2026-11-21T10:00:30Z", "{raised}");
    assert_eq!(raised["value"], 2.5);
    assert_eq!(raised["limit"], 2.0);
}

/// An export newest first (a database's `ORDER BY time DESC`) replays as
/// the same series oldest first: the same alerts, byte for byte, and a
/// note that the rows were put in time order. Fed in file order, every
/// rule judged it backwards and it replayed as "no alerts".
#[test]
fn a_csv_newest_first_replays_as_the_same_series_in_time_order() {
    let dir = tempfile::tempdir().unwrap();
    let csv = anomaly_csv();
    let mut lines: Vec<&str> = csv.lines().collect();
    let header = lines.remove(0);
    lines.reverse();
    let newest_first = format!("{header}\n{}\n", lines.join("\n"));
    let oldest = replay_anomaly_of(dir.path(), &csv, &[]);
    let newest = replay_anomaly_of(dir.path(), &newest_first, &[]);
    assert!(oldest.status.success() && newest.status.success());
    assert!(!oldest.stdout.is_empty(), "the series raises alerts");
    assert_eq!(oldest.stdout, newest.stdout);
    let note = String::from_utf8(newest.stderr).unwrap();
    assert!(note.contains("replayed in time order"), "{note}");
    assert!(!String::from_utf8(oldest.stderr)
        .unwrap()
        .contains("time order"));
}
