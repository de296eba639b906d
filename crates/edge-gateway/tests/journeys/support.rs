//! What the journeys share: soft checks that report every broken promise of
//! a journey at once, waits on the events a user would see (an answer from
//! `/health`, InfluxDB or the page), and the arithmetic of windows.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use test_support::chromium::Page;
use test_support::{Influxd, Message};

use crate::common::GatewayProcess;
pub use crate::common::{close, now_ms, try_get, unchunk};

/// How long a journey waits for one thing its user expects to see.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The promises of one journey, each checked and named; [`Checks::finish`]
/// fails the test with all the broken ones, so one run tells which parts of
/// a journey fail (and why) rather than only the first.
pub struct Checks {
    journey: &'static str,
    failed: Vec<String>,
    passed: usize,
}

impl Checks {
    pub fn new(journey: &'static str) -> Self {
        Self {
            journey,
            failed: Vec::new(),
            passed: 0,
        }
    }

    pub fn check(&mut self, what: &str, ok: bool, detail: impl FnOnce() -> String) {
        if ok {
            self.passed += 1;
        } else {
            self.failed.push(format!("{what}: {}", detail()));
        }
    }

    pub fn eq<T: PartialEq + Debug>(&mut self, what: &str, got: T, want: T) {
        let ok = got == want;
        self.check(what, ok, || format!("got {got:?}, want {want:?}"));
    }

    /// Two sums of decimal readings: equal up to float rounding.
    pub fn close(&mut self, what: &str, got: f64, want: f64) {
        self.check(what, close(got, want), || format!("got {got}, want {want}"));
    }

    /// Fails the test with every broken promise, if any.
    pub fn finish(self) {
        eprintln!(
            "journey {}: {} checks passed, {} failed",
            self.journey,
            self.passed,
            self.failed.len()
        );
        assert!(
            self.failed.is_empty(),
            "journey {}: {} of {} checks failed:\n  - {}",
            self.journey,
            self.failed.len(),
            self.failed.len() + self.passed,
            self.failed.join("\n  - ")
        );
    }
}

/// The last whole window before now, and the grace that keeps it open
/// until `margin` from now: readings a device stamped minutes ago (its own
/// clock, `ts`) all land in it, and it closes while the test waits, so a
/// journey that spans minutes of the device's time takes seconds of ours.
pub struct PastWindow {
    pub start: i64,
    /// The `[aggregation] grace` to configure, in whole seconds.
    pub grace_s: i64,
}

pub fn past_window(window_ms: i64, margin: Duration) -> PastWindow {
    let now = now_ms();
    let end = now - now.rem_euclid(window_ms);
    let open_for = now - end + margin.as_millis() as i64;
    PastWindow {
        start: end - window_ms,
        grace_s: (open_for + 999) / 1000,
    }
}

/// Polls `path` until `done` or the deadline; the last answer, if any. A
/// gateway that exited is reported at once with its log.
pub async fn get_until(
    gw: &mut GatewayProcess,
    port: u16,
    path: &str,
    done: impl Fn(u16, &str) -> bool,
) -> Result<(u16, String), String> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut last = None;
    loop {
        if let Ok(Some(status)) = gw.child.try_wait() {
            gw.drain_log().await;
            return Err(format!(
                "the gateway exited ({status}) before {path} answered; its log:\n{}",
                gw.seen.join("\n")
            ));
        }
        if let Some((code, body)) = try_get(port, path).await {
            if done(code, &body) {
                return Ok((code, body));
            }
            last = Some((code, body));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("{path} never as expected; last answer {last:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub use test_support::metrics::{
    sample as metric_value, sum as metric_sum, sum_with as metric_sum_with,
};

/// Readings in the windows forwarded upstream, per (device, metric):
/// each window counted once by its `id` (QoS 1 may deliver twice).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Totals {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

pub fn window_totals(msgs: &[Message]) -> BTreeMap<(String, String), Totals> {
    let mut by_id = BTreeMap::new();
    for m in msgs.iter().filter(|m| m.topic.ends_with("/aggregated")) {
        let j = m.json();
        by_id.insert(j["id"].as_str().unwrap_or_default().to_string(), j);
    }
    let mut out: BTreeMap<(String, String), Totals> = BTreeMap::new();
    for j in by_id.values() {
        let device = j["device"].as_str().unwrap_or_default().to_string();
        for (metric, s) in j["metrics"].as_object().into_iter().flatten() {
            let n = s["count"].as_u64().unwrap_or(0);
            let t = out
                .entry((device.clone(), metric.clone()))
                .or_insert(Totals {
                    min: f64::INFINITY,
                    max: f64::NEG_INFINITY,
                    ..Totals::default()
                });
            t.count += n;
            t.sum += n as f64 * s["avg"].as_f64().unwrap_or(f64::NAN);
            t.min = t.min.min(s["min"].as_f64().unwrap_or(f64::NAN));
            t.max = t.max.max(s["max"].as_f64().unwrap_or(f64::NAN));
        }
    }
    out
}

/// What a series of sent values should total.
pub fn expected(values: &[f64]) -> Totals {
    Totals {
        count: values.len() as u64,
        sum: values.iter().sum(),
        min: values.iter().copied().fold(f64::INFINITY, f64::min),
        max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    }
}

/// Checks one series' windows against what was sent.
pub fn check_windows(
    c: &mut Checks,
    got: &BTreeMap<(String, String), Totals>,
    device: &str,
    metric: &str,
    sent: &[f64],
) {
    let want = expected(sent);
    let t = got
        .get(&(device.to_string(), metric.to_string()))
        .copied()
        .unwrap_or_default();
    c.eq(
        &format!("{device}/{metric}: readings in the windows upstream"),
        t.count,
        want.count,
    );
    c.close(&format!("{device}/{metric}: their sum"), t.sum, want.sum);
    if t.count > 0 {
        c.eq(
            &format!("{device}/{metric}: min and max"),
            (t.min, t.max),
            (want.min, want.max),
        );
    }
}

/// An InfluxQL answer's first value of the first row, as a number.
pub fn influx_number(db: &Influxd, database: &str, q: &str) -> Option<f64> {
    db.try_rows(database, q).ok()?.first()?.get(1)?.as_f64()
}

/// Polls an InfluxQL number until it equals `want` or the deadline: no one
/// tells when a point becomes queryable, so the answer is the event.
pub async fn influx_until(db: &Influxd, database: &str, q: &str, want: f64) -> Option<f64> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let got = influx_number(db, database, q);
        if got == Some(want) || tokio::time::Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the JS condition `cond` holds on the page within `ms` (checked
/// at every DOM change); unlike `Page::wait_until` a no is an answer.
pub async fn dom_until(page: &mut Page, cond: &str, ms: u64) -> bool {
    let expr = format!(
        r#"new Promise(ok => {{
            const c = () => {{ try {{ return !!({cond}); }} catch (e) {{ return false; }} }};
            if (c()) return ok(true);
            const o = new MutationObserver(() => {{ if (c()) {{ o.disconnect(); ok(true); }} }});
            o.observe(document.documentElement, {{subtree: true, childList: true, characterData: true, attributes: true}});
            setTimeout(() => {{ o.disconnect(); ok(c()); }}, {ms});
        }})"#
    );
    page.eval(&expr).await.as_bool().unwrap_or(false)
}

/// The `edge-gateway` binary the journeys run (EDGE_GATEWAY_BIN: another
/// build, such as the release one).
pub fn gateway_bin() -> String {
    std::env::var("EDGE_GATEWAY_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_edge-gateway").to_string())
}

/// Runs `edge-gateway` with `args`: (exit success, stdout, stderr).
pub async fn run_cli(args: &[&str]) -> (bool, String, String) {
    let out = tokio::time::timeout(
        DEADLINE,
        tokio::process::Command::new(gateway_bin())
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("edge-gateway CLI did not exit in time")
    .expect("spawn edge-gateway");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A reading's value as the device writes it and as the gateway parses it.
pub fn decimal(v: f64, places: usize) -> (String, f64) {
    let text = format!("{v:.places$}");
    let parsed = text.parse().unwrap();
    (text, parsed)
}

#[test]
fn helpers_read_metrics_chunks_and_windows_as_intended() {
    let body = "# HELP x\n\
        edge_gateway_alerts_suppressed_total{device=\"m\",rule=\"r\"} 2\n\
        edge_gateway_alerts_suppressed_total{rule=\"r\"} 1\n\
        edge_gateway_alerts_suppressed_total{rule=\"other\"} 5\n\
        edge_gateway_adapter_errors_total{adapter=\"a\",error_type=\"x\"} 3\n\
        edge_gateway_adapter_errors_total_more 9\n";
    let name = "edge_gateway_alerts_suppressed_total";
    assert_eq!(metric_sum_with(body, name, "rule=\"r\""), Some(3.0));
    assert_eq!(metric_sum_with(body, name, "rule=\"none\""), None);
    assert_eq!(metric_sum(body, "edge_gateway_adapter_errors_total"), 3.0);
    assert_eq!(
        unchunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
        "hello world"
    );
    let w = past_window(300_000, Duration::from_secs(10));
    let now = now_ms();
    assert_eq!(w.start % 300_000, 0);
    assert!(w.start + 300_000 <= now && now < w.start + 600_000);
    // Open until about 10 s from now: past its end by the grace.
    let closes = w.start + 300_000 + w.grace_s * 1000;
    assert!(
        (now + 9_000..=now + 12_000).contains(&closes),
        "{closes} vs {now}"
    );
}
