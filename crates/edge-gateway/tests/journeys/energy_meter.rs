//! A simulated energy meter publishing
//! `{"consumption_kwh": 8.1, "sensor_id": "meter-01"}` over MQTT (with its
//! own time), crossing 12 kWh four times a minute and a half apart: every
//! excursion is recorded, and both the readings' history and the alert
//! history are exported as CSV, from the command line and the dashboard.

use std::time::Duration;

use gateway_core::Timestamp;
use test_support::{free_port, publish_lines, Mosquitto};

use super::support::{
    get_until, metric_sum, metric_sum_with, past_window, run_cli, Checks, DEADLINE,
};
use crate::common::GatewayProcess;

const METER: &str = "meter-01";
const RULE: &str = "meter-over-12kwh";
const ALERT_HEADER: &str = "time,rule,device,metric,state,value,limit,reason";

fn config(local: u16, upstream: u16, metrics: u16, dashboard: u16, grace_s: i64) -> String {
    format!(
        r#"
[gateway]
id = "gw-energy"
site = "plant"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{upstream}"
max_backoff = "1s"

[aggregation]
window = "1h"
grace = "{grace_s}s"

[metrics]
bind = "127.0.0.1:{metrics}"

[dashboard]
enabled = true
bind = "127.0.0.1:{dashboard}"
write_interval = "200ms"

[[adapter]]
type = "mqtt"
name = "meter"
url = "mqtt://127.0.0.1:{local}"
topics = ["energy/{{device}}"]
max_backoff = "1s"

# The default cooldown (5 minutes): excursions closer than that still
# have to be on record.
[[rule]]
name = "{RULE}"
kind = "threshold"
metric = "consumption_kwh"
device = "{METER}"
max = 12.0
"#
    )
}

/// Rows of an alert CSV (header checked separately), as fields.
fn csv_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// A CSV time: RFC 3339 or milliseconds since the epoch.
fn csv_time(field: &str) -> Option<i64> {
    field
        .parse()
        .ok()
        .or_else(|| Timestamp::parse_rfc3339(field).ok().map(|t| t.as_millis()))
}

/// The excursions in an alert CSV: every row but the clears, as (time,
/// value), in time order.
fn excursions(rows: &[Vec<String>]) -> Vec<(Option<i64>, Option<f64>)> {
    let mut out: Vec<_> = rows
        .iter()
        .filter(|r| r.len() >= 6 && r[1] == RULE && r[4] != "cleared")
        .map(|r| (csv_time(&r[0]), r[5].parse().ok()))
        .collect();
    out.sort_by_key(|e| e.0);
    out
}

#[tokio::test]
async fn an_energy_meter_records_every_excursion_and_exports_both_histories() {
    let mut c = Checks::new("energy meter over MQTT, excursions and CSV exports");
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let (metrics, dashboard) = (free_port(), free_port());
    let w = past_window(3_600_000, Duration::from_secs(10));
    let mut gw = GatewayProcess::start(&config(
        local.port(),
        upstream.port(),
        metrics,
        dashboard,
        w.grace_s,
    ));
    gw.wait_for_log("Subscribed").await;

    // A reading every 30 s for 10 minutes; four of them above 12 kWh,
    // 90 s apart, each back to normal at the next reading.
    let peaks = [(4, 12.6), (7, 13.1), (10, 12.4), (13, 14.0)];
    let mut values = Vec::new();
    let mut times = Vec::new();
    let mut lines = Vec::new();
    for i in 0..20usize {
        let v = peaks
            .iter()
            .find(|p| p.0 == i)
            .map_or(8.1 + (i % 4) as f64 * 0.4, |p| p.1);
        let (text, v) = super::support::decimal(v, 1);
        let t = w.start + 60_000 + i as i64 * 30_000;
        lines.push(format!(
            r#"{{"consumption_kwh": {text}, "sensor_id": "{METER}", "ts": {t}}}"#
        ));
        values.push(v);
        times.push(t);
    }
    publish_lines(local.port(), &format!("energy/{METER}"), &lines, 1).await;
    let want_excursions: Vec<_> = peaks
        .iter()
        .map(|(i, _)| (Some(times[*i]), Some(values[*i])))
        .collect();

    // The readings' history: the closed window, exported.
    let cfg = gw.config_path.display().to_string();
    let history_args = [
        "history",
        "export",
        "-c",
        &cfg,
        "--device",
        METER,
        "--metric",
        "consumption_kwh",
        "--from",
        "0",
    ];
    let deadline = tokio::time::Instant::now() + DEADLINE + Duration::from_secs(15);
    let (count, sum, max) = loop {
        let (ok, out, err) = run_cli(&history_args).await;
        let mut t = (0u64, 0.0, f64::NEG_INFINITY);
        if ok {
            for l in out.lines().skip(1) {
                // device,metric,start,end,count,avg,min,max,std
                let f: Vec<&str> = l.split(',').collect();
                let n: u64 = f[4].parse().unwrap_or(0);
                t.0 += n;
                t.1 += n as f64 * f[5].parse::<f64>().unwrap_or(f64::NAN);
                t.2 = t.2.max(f[7].parse().unwrap_or(f64::NAN));
            }
        }
        if t.0 >= values.len() as u64 || tokio::time::Instant::now() >= deadline {
            if !ok {
                c.check("history export runs", false, || err.clone());
            }
            break t;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    c.eq(
        "readings in the exported history",
        count,
        values.len() as u64,
    );
    c.close("their sum", sum, values.iter().sum());
    c.eq("their maximum", max, 14.0);

    // The alert history, from the command line.
    let (ok, out, err) = run_cli(&["history", "export", "-c", &cfg, "--alerts"]).await;
    c.check("history export --alerts runs", ok, || err.clone());
    c.eq(
        "history export --alerts: CSV header",
        out.lines().next().unwrap_or_default(),
        ALERT_HEADER,
    );
    let rows = csv_rows(&out);
    c.eq(
        "history export --alerts: every excursion above 12 kWh (time, value)",
        excursions(&rows),
        want_excursions.clone(),
    );
    c.check(
        "history export --alerts: every row names the meter and the metric",
        rows.iter()
            .all(|r| r.len() == 8 && r[2] == METER && r[3] == "consumption_kwh"),
        || format!("{rows:?}"),
    );

    // The same from the dashboard.
    let api = get_until(&mut gw, dashboard, "/api/alerts?format=csv", |s, _| {
        s == 200
    })
    .await
    .map(|(_, b)| b)
    .unwrap_or_default();
    c.eq(
        "/api/alerts?format=csv: CSV header",
        api.lines().next().unwrap_or_default(),
        ALERT_HEADER,
    );
    let api_rows = csv_rows(&api);
    c.eq(
        "/api/alerts?format=csv: every excursion above 12 kWh (time, value)",
        excursions(&api_rows),
        want_excursions,
    );

    // The counters and the log: suppressed raises counted, and the text
    // field beside the number is no error.
    let body = get_until(&mut gw, metrics, "/metrics", |s, _| s == 200)
        .await
        .map(|(_, b)| b)
        .unwrap_or_default();
    c.eq(
        "edge_gateway_alerts_suppressed_total for the rule",
        metric_sum_with(
            &body,
            "edge_gateway_alerts_suppressed_total",
            &format!("rule=\"{RULE}\""),
        ),
        Some(3.0),
    );
    c.eq(
        "readings counted by the adapter",
        metric_sum(&body, "edge_gateway_adapter_readings_total"),
        values.len() as f64,
    );
    c.eq(
        "adapter errors for good meter messages with a sensor_id",
        metric_sum(&body, "edge_gateway_adapter_errors_total"),
        0.0,
    );
    gw.take_log();
    let warned = gw
        .seen
        .iter()
        .filter(|l| l.contains("WARN") && l.contains("Dropping message"))
        .count();
    c.eq("WARN lines about dropped meter messages", warned, 0);
    gw.signal("TERM");
    c.eq("exit status after SIGTERM", gw.wait_exit().await, Some(0));
    c.finish();
}
