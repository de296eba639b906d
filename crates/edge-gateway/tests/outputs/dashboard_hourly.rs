//! The dashboard and `history export` as their users meet them with long
//! windows, played on the real binary through a real Mosquitto and a real
//! headless Chromium:
//!
//! - a food bank's fridge sends its temperature every 10 s into hourly
//!   windows; a volunteer opens the pages during the first hour (the chart
//!   must show the readings), after it (a one-point series must be seen),
//!   reads the overview's 24 h column (the readings' range, 12.1 °C
//!   included), the rate alert (with its span), the times (with their
//!   zone) and an empty Active table (saying so);
//! - a house meter's 150 readings in 5-minute windows exported in hourly
//!   buckets by the meter's name: the pooled spread of the 150 readings,
//!   the bucket on the hour, numbers without float noise, and a name that
//!   is no device's refused.
//!
//! Devices send their own time (`"ts"`), and the gateway runs on the
//! fault-hook clock (`EDGE_GATEWAY_FAULT_CLOCK_STEP_FILE`) set in the
//! past, so an hour of readings is sent in a second and a window closes
//! when the test steps the clock past it, as NTP would. With
//! `DASHBOARD_SCREENSHOTS_DIR` set the browser's pages are saved there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::Path;

use common::{http_until, GatewayProcess};
use serde_json::Value;
use test_support::chromium::{Browser, Page};
use test_support::{free_port, publish_lines, Mosquitto};

const HOUR: i64 = 3_600_000;
const MIN: i64 = 60_000;
const CLOCK_ENV: &str = "EDGE_GATEWAY_FAULT_CLOCK_STEP_FILE";

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// Puts the gateway's clock at `at` (ms since the epoch) from now on.
fn set_clock(file: &Path, at: i64) {
    std::fs::write(file, (at - now_ms()).to_string()).unwrap();
}

async fn json(port: u16, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let (_, body) = http_until(port, path, |code, body| {
        code == 200 && serde_json::from_str::<Value>(body).is_ok_and(|v| done(&v))
    })
    .await;
    serde_json::from_str(&body).unwrap()
}

/// Waits until the device's latest reading is the one stamped `at`:
/// everything published before it on the same topic is in.
async fn readings_in(port: u16, device: &str, metric: &str, at: i64) {
    json(port, "/api/devices", |v| {
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == device && d["latest"][metric]["at"].as_i64() == Some(at))
    })
    .await;
}

async fn goto(page: &mut Page, url: &str) {
    page.navigate(url).await;
    page.wait_until(
        "document.getElementById('conn').classList.contains('up')",
        // Generous: Chromium and the gateway share a loaded machine.
        20_000,
    )
    .await;
}

async fn text(page: &mut Page, selector: &str) -> String {
    page.eval(&format!(
        "(document.querySelector('{selector}') || {{innerText: ''}}).innerText"
    ))
    .await
    .as_str()
    .unwrap_or_default()
    .to_string()
}

async fn screenshot(page: &mut Page, name: &str) {
    let Ok(dir) = std::env::var("DASHBOARD_SCREENSHOTS_DIR") else {
        return;
    };
    std::fs::create_dir_all(&dir).unwrap();
    let png = page.screenshot_png().await;
    std::fs::write(Path::new(&dir).join(format!("{name}.png")), png).unwrap();
}

/// A fridge at about 4 °C whose door stays open: 8 minutes of rise to
/// 12.1 °C, then back. One reading every 10 s.
fn fridge_temperature(i: i64) -> f64 {
    let base = 4.0 + 0.3 * ((i % 7) as f64 - 3.0) / 3.0;
    let v = match i {
        150..=198 => base + (12.1 - base) * (i - 150) as f64 / 48.0,
        199 => 12.1,
        200..=230 => 12.1 - (12.1 - 4.5) * (i - 199) as f64 / 31.0,
        _ => base,
    };
    (v * 10.0).round() / 10.0
}

#[tokio::test]
async fn a_food_bank_volunteer_reads_an_hourly_fridge() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let mqtt = Mosquitto::start();
    let port = free_port();
    // Hours aligned to 6 h, so the 30-day view (6 h buckets) puts the
    // whole journey in one bucket: a series of one point.
    let h0 = (now_ms() / (6 * HOUR) - 1) * 6 * HOUR;
    let dir = tempfile::tempdir().unwrap();
    let clock = dir.path().join("clock-step");
    set_clock(&clock, h0 + 66 * MIN);
    let cfg = format!(
        r#"
[gateway]
id = "gw-foodbank"
site = "foodbank"
state_dir = "@STATE_DIR@"

[aggregation]
window = "1h"
grace = "30m"

[[adapter]]
type = "mqtt"
name = "fridges"
url = "mqtt://127.0.0.1:{mqtt}"
topics = ["sensors/{{device}}"]

[dashboard]
enabled = true
bind = "127.0.0.1:{port}"
write_interval = "200ms"

[[device]]
id = "fridge-1"
name = "Food bank fridge"
tags = ["fridge"]

[[rule]]
name = "too-warm"
kind = "threshold"
metric = "temperature"
tag = "fridge"
max = 8.0

[[rule]]
name = "rising-fast"
kind = "rate"
metric = "temperature"
tag = "fridge"
rate = "+3.0 per 10m"
"#,
        mqtt = mqtt.port()
    );
    let clock_env = clock.display().to_string();
    let mut gw = GatewayProcess::start_in_with(dir, &cfg, &[(CLOCK_ENV, &clock_env)]);
    gw.wait_for_log("Dashboard listening").await;
    gw.wait_for_log("Subscribed").await;
    let base = format!("http://127.0.0.1:{port}");

    // No alert yet: the Active table says so.
    let mut alerts_page = Page::new(&browser).await;
    goto(&mut alerts_page, &format!("{base}/alerts")).await;
    let active = text(&mut alerts_page, "#active").await;
    assert!(active.contains("No active alerts"), "{active}");
    screenshot(&mut alerts_page, "alerts-empty").await;

    // 65 minutes of readings, each with its own time.
    let n = 391;
    let lines: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"temperature":{:.1},"ts":{}}}"#,
                fridge_temperature(i),
                h0 + i * 10_000
            )
        })
        .collect();
    publish_lines(mqtt.port(), "sensors/fridge-1", &lines, 1).await;
    let last_at = h0 + (n - 1) * 10_000;
    readings_in(port, "fridge-1", "temperature", last_at).await;
    let values: Vec<f64> = (0..n).map(fridge_temperature).collect();
    let lowest = values.iter().cloned().fold(f64::INFINITY, f64::min);

    // The alert page the volunteer kept open: raised and cleared live,
    // and empty again says so.
    alerts_page
        .wait_until(
            "document.querySelector('#active tr.empty') !== null && !document.querySelector('#active tr.alert')",
            20_000,
        )
        .await;
    goto(&mut alerts_page, &format!("{base}/alerts")).await;
    let history = text(&mut alerts_page, "#history").await;
    assert!(history.contains("Time (UTC)"), "{history}");
    assert!(
        history.contains("rising-fast") && history.contains("in 10 min"),
        "a rate alert says its span: {history}"
    );
    assert!(!history.contains("per span"), "{history}");
    screenshot(&mut alerts_page, "alerts-history").await;

    // First hour, no window closed: the chart shows the readings.
    let mut page = Page::new(&browser).await;
    goto(&mut page, &format!("{base}/device?id=fridge-1")).await;
    let chart = page
        .eval("document.querySelector('section.metric[data-metric=\"temperature\"] svg.chart').outerHTML")
        .await;
    let chart = chart.as_str().unwrap();
    assert!(!chart.contains("no data in this range"), "{chart}");
    let points: usize = chart
        .split("data-points=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(points >= 12, "5-minute slots of the open hour: {points}");
    let windows = text(&mut page, "#windows").await;
    assert!(windows.contains("(open)"), "{windows}");
    assert!(
        windows.contains("\t360\t"),
        "the open hour's readings, not the next one's: {windows}"
    );
    assert!(windows.contains("12.1"), "{windows}");
    screenshot(&mut page, "device-first-hour").await;

    // The overview's 24 h column spans the readings: 12.1 °C included.
    goto(&mut page, &format!("{base}/")).await;
    let row = text(&mut page, "#devices tbody tr").await;
    let want = format!("{lowest:.1}–12.1 °C");
    assert!(row.contains(&want), "24 h column {want:?}: {row}");

    // The clock passes the first hour's grace: its window closes.
    set_clock(&clock, h0 + 96 * MIN);
    let series = format!(
        "/api/series?device=fridge-1&metric=temperature&from={h0}&to={}",
        h0 + 3 * HOUR
    );
    let closed = json(port, &series, |v| {
        v["points"].as_array().is_some_and(|p| !p.is_empty())
    })
    .await;
    let first = &closed["points"][0];
    assert_eq!(first["start"].as_i64(), Some(h0));
    assert_eq!(first["count"].as_u64(), Some(360));
    assert_eq!(first["max"].as_f64(), Some(12.1));

    goto(&mut page, &format!("{base}/")).await;
    let row = text(&mut page, "#devices tbody tr").await;
    assert!(row.contains(&want), "after the hour: {want:?}: {row}");
    screenshot(&mut page, "overview").await;

    goto(&mut page, &format!("{base}/device?id=fridge-1")).await;
    let dots = page
        .eval("document.querySelectorAll('section.metric[data-metric=\"temperature\"] svg.chart circle.dot').length")
        .await;
    assert!(dots.as_u64().unwrap() >= 2, "{dots}");
    let windows = text(&mut page, "#windows").await;
    assert!(windows.contains("360"), "the closed hour: {windows}");
    screenshot(&mut page, "device-after-hour").await;

    // 30 days in 6 h buckets: one point, and it is drawn.
    goto(&mut page, &format!("{base}/device?id=fridge-1&range=30d")).await;
    let seen = page
        .eval(
            "(() => { const c = document.querySelector('section.metric[data-metric=\"temperature\"] svg.chart'); \
             const d = c.querySelector('circle.dot'); const b = d && d.getBoundingClientRect(); \
             return [c.getAttribute('data-points'), b ? b.width : 0, !!c.querySelector('line.whisker')]; })()",
        )
        .await;
    assert_eq!(seen[0], "1", "{seen}");
    assert!(seen[1].as_f64().unwrap() > 2.0, "a visible dot: {seen}");
    assert_eq!(seen[2], true, "its min–max bar: {seen}");
    screenshot(&mut page, "device-30d-one-point").await;
}

/// A meter's reading for window `w` (0..5), reading `j` (0..30): levels and
/// spreads differ between windows, two decimals as the meter prints.
fn meter_reading(w: i64, j: i64) -> f64 {
    let amp = [0.6, 1.4, 3.1, 2.2, 0.9][w as usize];
    let tri = ((j * 7) % 30) as f64 / 29.0 * 2.0 - 1.0;
    ((10.2 + 0.8 * w as f64 + amp * tri) * 100.0).round() / 100.0
}

/// Significant digits of a decimal number's text.
fn significant_digits(cell: &str) -> usize {
    cell.trim_start_matches('-')
        .replace('.', "")
        .trim_start_matches('0')
        .len()
}

#[tokio::test]
async fn an_energy_meter_exported_by_name_in_hourly_buckets() {
    let mqtt = Mosquitto::start();
    let port = free_port();
    let h0 = (now_ms() / HOUR - 3) * HOUR;
    let dir = tempfile::tempdir().unwrap();
    let clock = dir.path().join("clock-step");
    set_clock(&clock, h0 + 36 * MIN);
    let cfg = format!(
        r#"
[gateway]
id = "gw-house"
site = "house"
state_dir = "@STATE_DIR@"

[aggregation]
window = "5m"
grace = "40m"

[[adapter]]
type = "mqtt"
name = "meters"
url = "mqtt://127.0.0.1:{mqtt}"
topics = ["meters/{{device}}"]

[dashboard]
enabled = true
bind = "127.0.0.1:{port}"
write_interval = "200ms"

[[device]]
id = "house-meter"
name = "House meter"
"#,
        mqtt = mqtt.port()
    );
    let clock_env = clock.display().to_string();
    let mut gw = GatewayProcess::start_in_with(dir, &cfg, &[(CLOCK_ENV, &clock_env)]);
    gw.wait_for_log("Dashboard listening").await;
    gw.wait_for_log("Subscribed").await;

    // 150 readings, 10 s apart, from 10 minutes past the hour.
    let start = h0 + 10 * MIN;
    let mut values = Vec::new();
    let mut lines = Vec::new();
    for w in 0..5 {
        for j in 0..30 {
            let v = meter_reading(w, j);
            let at = start + (w * 30 + j) * 10_000;
            values.push(v);
            lines.push(format!(r#"{{"energy":{v:.2},"ts":{at}}}"#));
        }
    }
    publish_lines(mqtt.port(), "meters/house-meter", &lines, 1).await;
    readings_in(port, "house-meter", "energy", start + 149 * 10_000).await;
    set_clock(&clock, h0 + 2 * HOUR);
    let stored = format!(
        "/api/series?device=house-meter&metric=energy&from={h0}&to={}",
        h0 + HOUR
    );
    let windows = json(port, &stored, |v| {
        v["points"].as_array().is_some_and(|p| p.len() == 5)
    })
    .await;
    let widest = windows["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["std"].as_f64().unwrap())
        .fold(0.0, f64::max);

    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let pooled = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    let lo = values.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    assert!(
        (pooled - widest).abs() > 0.01,
        "the case tells pooled ({pooled}) from widest ({widest}) apart"
    );

    // By name, from 7 minutes past the hour: one bucket, on the hour.
    let export = |device: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
            .args(["history", "export", "-c"])
            .arg(&gw.config_path)
            .args(["--device", device, "--metric", "energy", "--step", "1h"])
            .args(["--from", &(h0 + 7 * MIN).to_string()])
            .args(["--to", &(h0 + 2 * HOUR).to_string()])
            .output()
            .unwrap()
    };
    for name in ["House meter", "house meter", "house-meter"] {
        let out = export(name);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stderr}");
        let csv = String::from_utf8(out.stdout).unwrap();
        let rows: Vec<&str> = csv.lines().skip(1).collect();
        assert_eq!(rows.len(), 1, "{name}: {csv}");
        let cells: Vec<&str> = rows[0].split(',').collect();
        let hour = gateway_core::Timestamp::from_millis(h0)
            .unwrap()
            .to_rfc3339();
        assert_eq!(cells[2], hour, "on the hour, not at --from: {}", rows[0]);
        assert_eq!(cells[4], "150");
        let (avg, std): (f64, f64) = (cells[5].parse().unwrap(), cells[8].parse().unwrap());
        assert!((avg - mean).abs() < 1e-9, "avg {avg} vs {mean}");
        assert!(
            (std - pooled).abs() < 1e-9,
            "std {std}: the 150 readings' {pooled}, not the widest window's {widest}"
        );
        assert_eq!(cells[6], format!("{lo}"), "min as the meter sent it");
        assert_eq!(cells[7], format!("{hi}"), "max as the meter sent it");
        for cell in &cells[5..] {
            assert!(significant_digits(cell) <= 15, "float noise: {cell}");
        }
    }

    // The API's buckets say the same.
    let api = json(
        port,
        &format!(
            "/api/series?device=house-meter&metric=energy&from={}&to={}&step=1h",
            h0 + 7 * MIN,
            h0 + 2 * HOUR
        ),
        |v| v["points"].as_array().is_some_and(|p| p.len() == 1),
    )
    .await;
    let b = &api["points"][0];
    assert_eq!(b["start"].as_i64(), Some(h0));
    assert!((b["std"].as_f64().unwrap() - pooled).abs() < 1e-9, "{b}");

    // A name that is no device's: said, with a failing exit.
    let out = export("Garage meter");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no such device") && stderr.contains("house-meter (House meter)"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "no CSV that reads as no data");
    drop(gw);
}
