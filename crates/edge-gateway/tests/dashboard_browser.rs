//! The dashboard in a real headless Chromium, driven over the DevTools
//! protocol: names on the overview, a live reading and a live alert on the
//! open page without a reload, the device chart's point count. With
//! `UPDATE_SCREENSHOTS=1` it saves `docs/screenshots/*.png`.
//!
//! Chromium is Debian's `chromium` (scripts/test.sh installs it). Without
//! it the test is skipped locally and fails under `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use common::{config, GatewayProcess, WAIT};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use test_support::{free_port, publish, Mosquitto};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const LIVING: &str = "a2:b2:c2:d2:e2:f2";
const FRIDGE: &str = "fridge-7";

/// A headless Chromium with its own profile, killed on drop.
struct Browser {
    _child: tokio::process::Child,
    _profile: tempfile::TempDir,
    ws_url: String,
}

impl Browser {
    async fn start() -> Option<Self> {
        let bin = ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find(|b| test_support::have(b));
        let Some(bin) = bin else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "chromium is not installed: scripts/test.sh installs Debian's chromium"
            );
            eprintln!("skipping: no chromium");
            return None;
        };
        let profile = tempfile::tempdir().unwrap();
        let child = tokio::process::Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--window-size=1100,800",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromium");
        // Chromium writes the port it chose to this file; nothing announces
        // it, so poll until it is complete (two lines).
        let file = profile.path().join("DevToolsActivePort");
        let deadline = tokio::time::Instant::now() + WAIT;
        let ws_url = loop {
            if let Ok(text) = std::fs::read_to_string(&file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break format!("ws://127.0.0.1:{port}{path}");
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromium did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Some(Self {
            _child: child,
            _profile: profile,
            ws_url,
        })
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A DevTools session on one page.
struct Page {
    ws: Ws,
    next: u64,
    session: String,
    /// Events read while waiting for a reply.
    events: Vec<Value>,
}

impl Page {
    async fn open(browser: &Browser, url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(&browser.ws_url)
            .await
            .unwrap();
        let mut p = Self {
            ws,
            next: 0,
            session: String::new(),
            events: Vec::new(),
        };
        let target = p
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = p
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        p.session = attached["sessionId"].as_str().unwrap().to_string();
        p.call("Page.enable", json!({})).await;
        p.goto(url).await;
        p
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .await
            .unwrap();
        let reply = async {
            loop {
                let Some(Ok(Message::Text(text))) = self.ws.next().await else {
                    continue;
                };
                let v: Value = serde_json::from_str(&text).unwrap();
                if v["id"] == json!(id) {
                    return v;
                }
                if v.get("method").is_some() {
                    self.events.push(v);
                }
            }
        };
        let v = tokio::time::timeout(WAIT, reply)
            .await
            .expect("DevTools reply");
        assert!(v.get("error").is_none(), "{method}: {v}");
        v["result"].clone()
    }

    /// Evaluates `expr` (a promise is awaited) and returns its value.
    async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Resolves once `cond` (a JS expression) is true, re-checked on every
    /// DOM change; fails after `ms` milliseconds of page time.
    async fn wait_until(&mut self, cond: &str, ms: u64) {
        let expr = format!(
            r#"new Promise((ok, no) => {{
                const c = () => {{ try {{ return !!({cond}); }} catch (e) {{ return false; }} }};
                if (c()) return ok(true);
                const o = new MutationObserver(() => {{ if (c()) {{ o.disconnect(); ok(true); }} }});
                o.observe(document.documentElement, {{subtree: true, childList: true, characterData: true, attributes: true}});
                setTimeout(() => {{ o.disconnect(); c() ? ok(true) : no(new Error("not within {ms} ms: " + {cond_q})); }}, {ms});
            }})"#,
            cond_q = serde_json::to_string(cond).unwrap(),
        );
        self.eval(&expr).await;
    }

    /// The next `method` event of this page.
    async fn event(&mut self, method: &str) -> Value {
        if let Some(i) = self.events.iter().position(|e| e["method"] == method) {
            return self.events.remove(i);
        }
        let read = async {
            loop {
                let Some(Ok(Message::Text(text))) = self.ws.next().await else {
                    continue;
                };
                let v: Value = serde_json::from_str(&text).unwrap();
                if v["method"] == method {
                    return v;
                }
            }
        };
        tokio::time::timeout(WAIT, read).await.expect(method)
    }

    async fn goto(&mut self, url: &str) {
        self.events.clear();
        self.call("Page.navigate", json!({"url": url})).await;
        self.event("Page.loadEventFired").await;
        // The live stream is open (the script marks it).
        self.wait_until(
            "document.getElementById('conn').classList.contains('up')",
            10_000,
        )
        .await;
    }

    async fn screenshot(&mut self, name: &str) {
        if std::env::var("UPDATE_SCREENSHOTS").as_deref() != Ok("1") {
            return;
        }
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
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
    let mut page = Page::open(&browser, &format!("{base}/")).await;
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
    page.screenshot("overview").await;

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
    page.goto(&format!("{base}/device?id={LIVING}")).await;
    let drawn = page
        .eval("[document.querySelector('svg.chart').dataset.points, document.querySelector('svg.chart polyline.avg').points.numberOfItems]")
        .await;
    assert_eq!(drawn, json!([expected.to_string(), expected]), "{series}");
    page.screenshot("device").await;
    page.goto(&format!("{base}/alerts")).await;
    let active = page
        .eval("document.getElementById('active').innerText")
        .await;
    assert!(active.as_str().unwrap().contains("fridge-max"), "{active}");
    page.screenshot("alerts").await;
    page.goto(&format!("{base}/gateway")).await;
    let gw_text = page.eval("document.body.innerText").await;
    assert!(
        gw_text.as_str().unwrap().contains("local-sensors"),
        "{gw_text}"
    );
    page.screenshot("gateway").await;
    drop(browser);
}
