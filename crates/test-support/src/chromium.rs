//! A headless Chromium driven over the DevTools protocol: just enough of a
//! client for the dashboard's browser test and its render bench (open a
//! tab, call a method, evaluate JavaScript, wait for an event).
//!
//! Chromium is Debian's `chromium` (scripts/test.sh installs it). Without
//! it [`Browser::start`] returns `None` locally and fails under `CI=true`,
//! so a missing browser never passes CI unnoticed.

use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// How long a DevTools reply or an awaited event may take.
const WAIT: Duration = Duration::from_secs(20);
/// How long the browser may take to start. Longer than [`WAIT`]: with CI's
/// `.deb` cross builds compiling beside the tests, a start once took over
/// 20 s, where alone it takes under one.
const START_WAIT: Duration = Duration::from_secs(60);

/// A headless Chromium with its own profile, killed on drop.
pub struct Browser {
    _child: tokio::process::Child,
    _profile: tempfile::TempDir,
    ws_url: String,
}

impl Browser {
    /// Starts Chromium; `None` (with a note on stderr) when none is
    /// installed, outside CI.
    pub async fn start() -> Option<Self> {
        let bin = ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find(|b| crate::have(b));
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
        let deadline = tokio::time::Instant::now() + START_WAIT;
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

/// A DevTools session on one tab of its own.
pub struct Page {
    ws: Ws,
    next: u64,
    target: Value,
    session: String,
    /// Events read while waiting for a reply.
    events: Vec<Value>,
}

impl Page {
    /// A new tab on `about:blank`, with the Page domain's events enabled.
    pub async fn new(browser: &Browser) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(&browser.ws_url)
            .await
            .unwrap();
        let mut p = Self {
            ws,
            next: 0,
            target: Value::Null,
            session: String::new(),
            events: Vec::new(),
        };
        let target = p
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        p.target = target["targetId"].clone();
        let attached = p
            .call(
                "Target.attachToTarget",
                json!({"targetId": p.target, "flatten": true}),
            )
            .await;
        p.session = attached["sessionId"].as_str().unwrap().to_string();
        p.call("Page.enable", json!({})).await;
        p
    }

    /// Closes the tab, and with it its connections (an open `/events`
    /// stream holds one of the six Chromium allows per host).
    pub async fn close(mut self) {
        self.session.clear();
        let target = self.target.clone();
        self.call("Target.closeTarget", json!({"targetId": target}))
            .await;
    }

    /// Calls `method` on this tab and returns its result; fails on an error
    /// reply.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let v = self.call_reply(method, params).await;
        assert!(v.get("error").is_none(), "{method}: {v}");
        v["result"].clone()
    }

    /// The whole reply, protocol error included.
    async fn call_reply(&mut self, method: &str, params: Value) -> Value {
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
        tokio::time::timeout(WAIT, reply)
            .await
            .expect("DevTools reply")
    }

    /// Evaluates `expr` (a promise is awaited) and returns its value.
    pub async fn eval(&mut self, expr: &str) -> Value {
        match self.evaluate(expr).await {
            Ok(v) => v,
            Err(e) => panic!("{expr}: {e}"),
        }
    }

    /// The value, or the exception or protocol error as text.
    async fn evaluate(&mut self, expr: &str) -> Result<Value, String> {
        let v = self
            .call_reply(
                "Runtime.evaluate",
                json!({"expression": expr, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        if let Some(e) = v
            .get("error")
            .or_else(|| v["result"].get("exceptionDetails"))
        {
            return Err(e.to_string());
        }
        Ok(v["result"]["result"]["value"].clone())
    }

    /// Resolves once `cond` (a JS expression) is true, re-checked on every
    /// DOM change; fails after `ms` milliseconds of page time. The observer
    /// watches the document itself: caught just after a navigation, the
    /// new document has no root element yet to watch.
    /// A page that reloads itself (the dashboard does, after missing live
    /// events) destroys the promise being awaited: the wait goes on in the
    /// new page, within the same deadline.
    pub async fn wait_until(&mut self, cond: &str, ms: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(ms);
        loop {
            let left = deadline
                .saturating_duration_since(std::time::Instant::now())
                .as_millis() as u64;
            let Err(text) = self.evaluate(&Self::condition(cond, left)).await else {
                return;
            };
            let navigated = text.contains("context was destroyed")
                || text.contains("navigated")
                || text.contains("Cannot find context");
            assert!(navigated && left > 0, "{cond}: {text}");
            // The new document may not have loaded yet.
            let _ = self.evaluate("new Promise(ok => document.readyState === 'complete' ? ok(true) : addEventListener('load', () => ok(true)))").await;
        }
    }

    fn condition(cond: &str, ms: u64) -> String {
        format!(
            r#"new Promise((ok, no) => {{
                const c = () => {{ try {{ return !!({cond}); }} catch (e) {{ return false; }} }};
                if (c()) return ok(true);
                const o = new MutationObserver(() => {{ if (c()) {{ o.disconnect(); ok(true); }} }});
                o.observe(document, {{subtree: true, childList: true, characterData: true, attributes: true}});
                setTimeout(() => {{ o.disconnect(); c() ? ok(true) : no(new Error("not within {ms} ms: " + {cond_q})); }}, {ms});
            }})"#,
            cond_q = serde_json::to_string(cond).unwrap(),
        )
    }

    /// The next `method` event of this tab.
    pub async fn event(&mut self, method: &str) -> Value {
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

    /// Navigates to `url` and returns once its load event has fired.
    pub async fn navigate(&mut self, url: &str) {
        self.events.clear();
        self.call("Page.navigate", json!({"url": url})).await;
        self.event("Page.loadEventFired").await;
    }

    /// The whole page (beyond the viewport) as PNG.
    pub async fn screenshot_png(&mut self) -> Vec<u8> {
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap()
    }
}
