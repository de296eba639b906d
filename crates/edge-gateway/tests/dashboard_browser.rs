//! The dashboard in a real headless Chromium, driven over the DevTools
//! protocol: names on the overview, a live reading and a live alert on the
//! open page without a reload, the device chart's point count. With
//! `UPDATE_SCREENSHOTS=1` it saves `docs/screenshots/*.png`.
//!
//! Chromium is Debian's `chromium` (scripts/test.sh installs it), driven by
//! `test_support::chromium`. Without it the test is skipped locally and
//! fails under `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{config, GatewayProcess, WAIT};
use serde_json::{json, Value};
use test_support::chromium::{Browser, Page};
use test_support::{free_port, publish, Mosquitto};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIVING: &str = "a2:b2:c2:d2:e2:f2";
const FRIDGE: &str = "fridge-7";

/// Navigates and waits until the page's live stream is open (the script
/// marks it), as a user sees it.
async fn goto(page: &mut Page, url: &str) {
    page.navigate(url).await;
    page.wait_until(
        "document.getElementById('conn').classList.contains('up')",
        10_000,
    )
    .await;
}

/// Opens a tab on `url`, ready as [`goto`] leaves it.
async fn open(browser: &Browser, url: &str) -> Page {
    let mut page = Page::new(browser).await;
    goto(&mut page, url).await;
    page
}

/// Saves the page as `docs/screenshots/{name}.png` with
/// `UPDATE_SCREENSHOTS=1`.
async fn screenshot(page: &mut Page, name: &str) {
    if std::env::var("UPDATE_SCREENSHOTS").as_deref() != Ok("1") {
        return;
    }
    let png = page.screenshot_png().await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn api(port: u16, path: &str) -> Value {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    serde_json::from_str(raw.split_once("\r\n\r\n").unwrap().1).unwrap()
}

/// Publishes `value` and waits until its window is in history, so each
/// call adds one point to the series.
async fn one_window(port: u16, mqtt: u16, device: &str, value: &str) -> usize {
    let path = format!("/api/series?device={device}&metric=temperature&from=-1h");
    let before = api(port, &path).await["points"].as_array().unwrap().len();
    publish(
        mqtt,
        &format!("sensors/data/{device}/temperature"),
        value,
        1,
        false,
    )
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        // Windows close on the gateway's schedule; the API is how we see it.
        let n = api(port, &path).await["points"].as_array().unwrap().len();
        if n > before {
            return n;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new window for {device}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_overview_and_device_page_in_headless_chromium() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let port = free_port();
    let cfg = format!(
        r#"{}
[dashboard]
enabled = true
bind = "127.0.0.1:{port}"
write_interval = "200ms"

[[device]]
id = "{FRIDGE}"
name = "Fridge 7"
tags = ["fridge"]

[[rule]]
name = "fridge-max"
kind = "threshold"
metric = "temperature"
tag = "fridge"
max = 8.0
"#,
        config("gw-browser", local.port(), upstream.port(), "1s", "0s")
    );
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Dashboard listening").await;
    gw.wait_for_log("Subscribed").await;
    let mut points = 0;
    for v in ["20.5", "21.0", "21.5"] {
        points = one_window(port, local.port(), LIVING, v).await;
    }
    one_window(port, local.port(), FRIDGE, "4.0").await;

    let base = format!("http://127.0.0.1:{port}");
    let mut page = open(&browser, &format!("{base}/")).await;
    let text = page
        .eval("document.getElementById('devices').innerText")
        .await;
    let text = text.as_str().unwrap();
    assert!(
        text.contains("Living Room") && text.contains("Fridge 7"),
        "{text}"
    );

    // Live: a new value on the open page within 2 s, and no reload (the
    // marker set on this document survives).
    page.eval("window.__same_document = 1").await;
    publish(
        local.port(),
        &format!("sensors/data/{LIVING}/temperature"),
        "23.4",
        1,
        false,
    )
    .await;
    let cell = format!(
        "document.querySelector('tr[data-d=\"{LIVING}\"] .v[data-m=\"temperature\"] b').textContent === '23.4'"
    );
    page.wait_until(&cell, 2000).await;
    publish(
        local.port(),
        &format!("sensors/data/{FRIDGE}/temperature"),
        "9.5",
        1,
        false,
    )
    .await;
    page.wait_until(
        &format!("document.querySelector('tr[data-d=\"{FRIDGE}\"].alert .badge[data-rule=\"fridge-max\"]')"),
        2000,
    )
    .await;
    assert_eq!(
        page.eval("window.__same_document").await,
        json!(1),
        "the page reloaded"
    );
    screenshot(&mut page, "overview").await;

    // A gateway restart: the open page's stream drops, reconnects by
    // itself, and the next reading appears without a reload.
    page.eval(
        "window.__drops = 0; new MutationObserver(() => { if (!document.getElementById('conn').classList.contains('up')) window.__drops++; }).observe(document.getElementById('conn'), {attributes: true}); 1",
    )
    .await;
    let _gw = gw.kill_and_restart(&cfg, &[]).await;
    page.wait_until(
        "window.__drops > 0 && document.getElementById('conn').classList.contains('up')",
        15_000,
    )
    .await;
    publish(
        local.port(),
        &format!("sensors/data/{LIVING}/temperature"),
        "24.6",
        1,
        false,
    )
    .await;
    page.wait_until(&cell.replace("23.4", "24.6"), 2000).await;
    assert_eq!(
        page.eval("window.__same_document").await,
        json!(1),
        "the page reloaded"
    );

    // The device page: one vertex per window in history.
    let series = api(
        port,
        &format!("/api/series?device={LIVING}&metric=temperature&from=-24h"),
    )
    .await;
    let expected = series["points"].as_array().unwrap().len();
    assert!(expected >= points, "{series}");
    goto(&mut page, &format!("{base}/device?id={LIVING}")).await;
    let drawn = page
        .eval("[document.querySelector('svg.chart').dataset.points, document.querySelector('svg.chart polyline.avg').points.numberOfItems]")
        .await;
    assert_eq!(drawn, json!([expected.to_string(), expected]), "{series}");
    screenshot(&mut page, "device").await;
    goto(&mut page, &format!("{base}/alerts")).await;
    let active = page
        .eval("document.getElementById('active').innerText")
        .await;
    assert!(active.as_str().unwrap().contains("fridge-max"), "{active}");
    screenshot(&mut page, "alerts").await;
    goto(&mut page, &format!("{base}/gateway")).await;
    let gw_text = page.eval("document.body.innerText").await;
    assert!(
        gw_text.as_str().unwrap().contains("local-sensors"),
        "{gw_text}"
    );
    screenshot(&mut page, "gateway").await;
    drop(browser);
}
