//! The overview's first render in headless Chromium, with 500 devices x 3
//! metrics, a day of one-minute windows in history and a live value for
//! every series: first-contentful-paint, DOMContentLoaded and load as the
//! browser's Performance API reports them, and the bytes transferred.
//!
//! The page is served by the dashboard's own server (`server::serve`, the
//! code the gateway runs: gzip, `/style.css`, `/events`), so it comes with
//! its sparklines, stylesheet and live script exactly as users get it. Each
//! run is a new tab with the HTTP cache disabled: a first visit.
//!
//! `cargo bench -p edge-gateway --bench dashboard_render`
//!
//! `DASHBOARD_RENDER_RUNS` sets the measured runs (10; one warm-up comes
//! first). Without Chromium it says it skipped, and fails only under
//! `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use dashboard::history::History;
use dashboard::server;
use gateway_core::Timestamp;
use serde_json::json;
use test_support::chromium::{Browser, Page};

#[path = "support/dashboard_fleet.rs"]
mod fleet;

use fleet::{DEVICES, METRICS};

const WARM_UP: usize = 1;
/// The limit on the median first-contentful-paint on this machine, where
/// the dashboard's server and the browser share its cores. Web Vitals
/// calls an FCP under 1.8 s good. On a Pi-class gateway only the server's
/// part (the time to the first byte, measured here at a third to a half of
/// the FCP) runs on the Pi, assumed 3-4x slower than this machine's core
/// (not measured); the browser's part runs on the user's laptop or phone.
/// So a Pi's FCP is about (FCP - first byte) + 4 x first byte, at most
/// 2.5 x the FCP here, and 1.8 s there means at least 700 ms here.
const FCP_MEDIAN_LIMIT_MS: f64 = 700.0;

/// Resolves, once the page has painted content and finished its load
/// event, to what the Performance API recorded. Waits on the paint
/// observer and the load event, since either may come last.
const MEASURE: &str = r#"new Promise((ok, no) => {
    const done = () => {
        const nav = performance.getEntriesByType('navigation')[0];
        const fcp = performance.getEntriesByName('first-contentful-paint')[0];
        if (!nav || !fcp || nav.loadEventEnd === 0) return;
        const sub = performance.getEntriesByType('resource');
        ok({
            fcp: fcp.startTime,
            dcl: nav.domContentLoadedEventEnd,
            load: nav.loadEventEnd,
            first_byte: nav.responseStart,
            document: nav.transferSize,
            decoded: nav.decodedBodySize,
            total: nav.transferSize + sub.reduce((s, r) => s + r.transferSize, 0),
            rows: document.querySelectorAll('#devices tr[data-d]').length,
            sparklines: document.querySelectorAll('#devices svg.s').length,
        });
    };
    new PerformanceObserver(done).observe({type: 'paint', buffered: true});
    addEventListener('load', () => setTimeout(done, 0));
    done();
    setTimeout(() => no(new Error('no first-contentful-paint and load within 30 s')), 30000);
})"#;

/// One first visit, times in milliseconds from navigation start.
struct Render {
    fcp: f64,
    dcl: f64,
    load: f64,
    first_byte: f64,
    document_bytes: f64,
    decoded_bytes: f64,
    total_bytes: f64,
    /// Main-thread time spent by the tab, from DevTools' Performance
    /// domain: where the time between the first byte and the paint goes.
    layout: f64,
    style: f64,
    script: f64,
    tasks: f64,
}

async fn first_visit(browser: &Browser, url: &str) -> Render {
    let mut page = Page::new(browser).await;
    // A background tab's paints may be throttled; the user looks at this one.
    page.call("Page.bringToFront", json!({})).await;
    page.call("Network.enable", json!({})).await;
    page.call("Network.setCacheDisabled", json!({"cacheDisabled": true}))
        .await;
    page.call("Performance.enable", json!({})).await;
    page.navigate(url).await;
    let m = page.eval(MEASURE).await;
    let work = page.call("Performance.getMetrics", json!({})).await;
    let work_ms = |name: &str| {
        work["metrics"]
            .as_array()
            .and_then(|all| all.iter().find(|x| x["name"] == name))
            .and_then(|x| x["value"].as_f64())
            .map_or(f64::NAN, |s| s * 1e3)
    };
    assert_eq!(
        (m["rows"].as_u64(), m["sparklines"].as_u64()),
        (Some(DEVICES as u64), Some(DEVICES as u64)),
        "not the whole overview: {m}"
    );
    // The live script ran and its stream is open, as on a user's screen.
    page.wait_until(
        "document.getElementById('conn').classList.contains('up')",
        10_000,
    )
    .await;
    page.close().await;
    let ms = |k: &str| m[k].as_f64().unwrap_or(f64::NAN);
    Render {
        fcp: ms("fcp"),
        dcl: ms("dcl"),
        load: ms("load"),
        first_byte: ms("first_byte"),
        document_bytes: ms("document"),
        decoded_bytes: ms("decoded"),
        total_bytes: ms("total"),
        layout: work_ms("LayoutDuration"),
        style: work_ms("RecalcStyleDuration"),
        script: work_ms("ScriptDuration"),
        tasks: work_ms("TaskDuration"),
    }
}

/// Median and worst (largest).
fn median_worst(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (median, v[n - 1])
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    let runs: usize = std::env::var("DASHBOARD_RENDER_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
        .max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(browser) = rt.block_on(Browser::start()) else {
        println!("dashboard_render: skipped, no chromium installed");
        return;
    };

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(History::open(&dir.path().join("history")).unwrap());
    let now = Timestamp::now().as_millis();
    let window = fleet::window_ms();
    fleet::fill_day(&store, now, window, 60);
    let state = fleet::app_state(fleet::live_at(now), store, window);
    println!(
        "overview first render in headless Chromium: {DEVICES} devices x {} metrics, {} windows of {} s in history; {WARM_UP} warm-up + {runs} runs, each a new tab with the cache disabled (load average before: {})",
        METRICS.len(),
        fleet::DAY_MS / window,
        window / 1000,
        loadavg()
    );

    let renders = rt.block_on(async {
        let srv = server::serve("127.0.0.1:0".parse().unwrap(), None, state)
            .expect("dashboard port");
        let url = srv.url();
        let mut renders = Vec::new();
        for i in 0..WARM_UP + runs {
            let r = first_visit(&browser, &url).await;
            let label = if i < WARM_UP {
                "warm-up".to_string()
            } else {
                format!("run {}", i + 1 - WARM_UP)
            };
            println!(
                "{label:>8}: FCP {:>6.1} ms, DOMContentLoaded {:>6.1} ms, load {:>6.1} ms, first byte {:>6.1} ms, {:.1} KB transferred ({:.1} KB document, {:.0} KB unzipped)",
                r.fcp,
                r.dcl,
                r.load,
                r.first_byte,
                r.total_bytes / 1024.0,
                r.document_bytes / 1024.0,
                r.decoded_bytes / 1024.0
            );
            println!(
                "          main thread: layout {:>5.1} ms, style {:>5.1} ms, script {:>5.1} ms, all tasks {:>6.1} ms",
                r.layout, r.style, r.script, r.tasks
            );
            if i >= WARM_UP {
                renders.push(r);
            }
        }
        srv.stop().await;
        renders
    });
    drop(browser);

    let figure = |what: &str, pick: fn(&Render) -> f64| {
        let (median, worst) = median_worst(renders.iter().map(pick).collect());
        (
            format!("{what:<28} median {median:>7.1} ms, worst {worst:>7.1} ms"),
            median,
        )
    };
    let (line, fcp_median) = figure("first-contentful-paint", |r| r.fcp);
    let verdict = if fcp_median < FCP_MEDIAN_LIMIT_MS {
        "PASS"
    } else {
        "FAIL"
    };
    println!("{line} (target median < {FCP_MEDIAN_LIMIT_MS:.0} ms: {verdict})");
    println!("{}", figure("domContentLoadedEventEnd", |r| r.dcl).0);
    println!("{}", figure("loadEventEnd", |r| r.load).0);
    println!(
        "{}",
        figure("first byte (server render)", |r| r.first_byte).0
    );
    println!("{}", figure("main thread: layout", |r| r.layout).0);
    println!("{}", figure("main thread: style", |r| r.style).0);
    println!("{}", figure("main thread: script", |r| r.script).0);
    println!("{}", figure("main thread: all tasks", |r| r.tasks).0);
    let (bytes, _) = median_worst(renders.iter().map(|r| r.total_bytes).collect());
    println!(
        "transferred per first visit: {:.1} KB median (document gzipped, style.css)",
        bytes / 1024.0
    );
    println!("load average after: {}", loadavg());
}
