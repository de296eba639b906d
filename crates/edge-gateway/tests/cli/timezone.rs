//! `[gateway] timezone` through the real binary: `validate` refuses a zone
//! this machine does not know, `run` finds the machine's, and `replay`
//! learns an office's routine on the zone's clocks across the change to
//! summer time.

use std::process::Command;

use serde_json::Value;

/// An office every 5 minutes from Monday 2026-02-23 to four weeks after
/// Europe's clocks went forward (2026-03-29 01:00 UTC): 23 °C from 08:00
/// to 18:00 on weekdays in Berlin, 18 otherwise, with noise. Timestamps in
/// UTC, as a building's history export writes them.
fn office_csv() -> String {
    let start = chrono::DateTime::parse_from_rfc3339("2026-02-23T00:00:00Z").unwrap();
    let spring = chrono::DateTime::parse_from_rfc3339("2026-03-29T01:00:00Z").unwrap();
    let mut csv = String::from("timestamp,value\n");
    let mut seed: u64 = 11;
    let mut ar = 0.0;
    for i in 0..(33 + 28) * 288 {
        let at = start + chrono::Duration::minutes(5 * i);
        let offset = if at >= spring { 2 } else { 1 };
        let local = at + chrono::Duration::hours(offset) - start;
        let (day, hour) = (local.num_days(), local.num_hours() % 24);
        let busy = day % 7 < 5 && (8..18).contains(&hour);
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let noise = (seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5;
        ar = 0.5 * ar + 2.0 * noise;
        let v = if busy { 23.0 } else { 18.0 } + ar;
        csv.push_str(&format!("{},{v:.2}\n", at.format("%Y-%m-%dT%H:%M:%SZ")));
    }
    csv
}

/// Replays the office under `[gateway]` lines; the seasonal alerts raised
/// after the change of the clocks, and the summary.
fn replay_office(dir: &std::path::Path, gateway: &str) -> (Vec<String>, String) {
    std::fs::write(
        dir.join("gateway.toml"),
        format!(
            "[gateway]\n{gateway}\n\n[[rule]]\nname = \"office-anomaly\"\nkind = \"anomaly\"\nmetric = \"temperature\"\n"
        ),
    )
    .unwrap();
    let csv = dir.join("office.csv");
    if !csv.exists() {
        std::fs::write(&csv, office_csv()).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .current_dir(dir)
        // The machine's own zone must not matter to `replay`.
        .env("TZ", "America/New_York")
        .args(["replay", "-c", "gateway.toml", "--csv", "office.csv"])
        .args(["--device", "office-3", "--metric", "temperature"])
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    let seasonal = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|a| a["state"] == "raised" && a["reason"] == "seasonal")
        .map(|a| a["ts"].as_str().unwrap().to_string())
        .filter(|ts| ts.as_str() >= "2026-03-29")
        .collect();
    (seasonal, stderr)
}

#[test]
fn replay_learns_an_offices_routine_on_its_zones_clocks() {
    let dir = tempfile::tempdir().unwrap();
    let (in_berlin, stderr) = replay_office(dir.path(), "timezone = \"Europe/Berlin\"");
    assert!(in_berlin.is_empty(), "{in_berlin:?}");
    assert!(
        stderr.contains("read on the clocks of Europe/Berlin (gateway.timezone)"),
        "{stderr}"
    );
    // Read on UTC's clocks the routine moves an hour at the change; "local"
    // is UTC to replay, whatever this machine's zone (TZ above).
    for gateway in ["timezone = \"UTC\"", ""] {
        let (in_utc, stderr) = replay_office(dir.path(), gateway);
        assert!(!in_utc.is_empty(), "{gateway}: {stderr}");
        assert!(stderr.contains("the clocks of UTC"), "{stderr}");
    }
}

#[test]
fn validate_refuses_a_zone_this_machine_does_not_know() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        "[gateway]\ntimezone = \"Europe/Berln\"\n\n[dashboard]\nenabled = true\n",
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
        stdout.contains("gateway.timezone: unknown time zone \"Europe/Berln\""),
        "{stdout}"
    );
}

/// `run` with the default `timezone = "local"` reads the machine's zone as
/// the C library does: the `TZ` variable, by name or by its file's path.
#[tokio::test]
async fn run_learns_on_the_machines_zone_by_default() {
    for (tz, zone) in [
        ("Europe/Berlin", "Europe/Berlin"),
        (":/usr/share/zoneinfo/America/New_York", "America/New_York"),
    ] {
        let cfg = format!(
            r#"
[gateway]
state_dir = "@STATE_DIR@"

[metrics]
bind = "127.0.0.1:0"

[dashboard]
enabled = true
bind = "127.0.0.1:{}"

[[rule]]
name = "office-anomaly"
kind = "anomaly"
metric = "temperature"
"#,
            test_support::free_port()
        );
        let dir = tempfile::tempdir().unwrap();
        let mut gw = crate::common::GatewayProcess::start_in_with(dir, &cfg, &[("TZ", tz)]);
        gw.wait_for_log("Alert rules loaded.").await;
        let loaded = gw
            .seen
            .iter()
            .find(|l| l.contains("Alert rules loaded."))
            .unwrap();
        assert!(loaded.contains(&format!("timezone=\"{zone}\"")), "{loaded}");
    }
}
