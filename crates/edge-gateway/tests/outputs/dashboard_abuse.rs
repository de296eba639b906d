//! The dashboard of the real binary under abuse from one part of the
//! loopback network while a person uses it from another: connection churn
//! and silent sockets from 127.0.0.2, and a wrong-password flood from 64
//! addresses (127.0.0.2 to 127.0.0.65). The person's page, `/metrics` and
//! ingest must go on; the gateway must stay small.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{config, GatewayProcess, WAIT};
use test_support::{free_port, publish, web, Mosquitto};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

// One test at a time: the password flood's argon2 checks take the CPU the
// other test's 1 s page deadline measures.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Longer than any answer on a loaded machine, far shorter than the 40 s
/// the churn once locked people out for.
const LOCKED_OUT: Duration = Duration::from_secs(10);

fn gateway_config(
    name: &str,
    local: u16,
    upstream: u16,
    dash: u16,
    metrics: u16,
    extra: &str,
) -> String {
    format!(
        "{}\n[metrics]\nenabled = true\nbind = \"127.0.0.1:{metrics}\"\n\n[dashboard]\nenabled = true\nbind = \"127.0.0.1:{dash}\"\nwrite_interval = \"200ms\"\n{extra}\n",
        config(name, local, upstream, "1s", "1s")
    )
}

/// A connection to the dashboard from `from` (bound before connecting, so
/// the gateway sees that address).
async fn connect_from(from: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
    socket
        .connect(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
        .await
}

/// One GET from 127.0.0.1 on a fresh connection: (status, body).
async fn get(port: u16, path: &str, auth: Option<&str>) -> (u16, String) {
    let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
    let r = web::get_with(port, path, &headers)
        .await
        .unwrap_or_default();
    (r.code, r.body)
}

/// One GET from 127.0.0.1 with credentials: (status, head).
async fn get_head(port: u16, path: &str, auth: &str) -> (u16, String) {
    let r = web::get_with(port, path, &[("Authorization", auth)])
        .await
        .unwrap_or_default();
    (r.code, r.head)
}

/// The value of one sample line of `/metrics` (0 when absent).
async fn metric(port: u16, sample: &str) -> f64 {
    let (_, body) = get(port, "/metrics", None).await;
    test_support::metrics::sample(&body, sample).unwrap_or(0.0)
}

async fn until_metric(port: u16, sample: &str, at_least: f64) -> f64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = metric(port, sample).await;
        if v >= at_least {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sample} stayed at {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_answers_while_another_address_churns_and_holds_silent_connections() {
    let _serial = SERIAL.lock().await;
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let (dash, metrics) = (free_port(), free_port());
    let mut gw = GatewayProcess::start(&gateway_config(
        "gw-shed",
        local.port(),
        upstream.port(),
        dash,
        metrics,
        "",
    ));
    // /metrics is read below: its listener is not the dashboard's.
    gw.wait_for_log("Metrics endpoint listening").await;
    gw.wait_for_log("Dashboard listening").await;
    assert_eq!(
        get(dash, "/", None).await.0,
        200,
        "the page before the attack"
    );

    let stop = Arc::new(AtomicBool::new(false));
    // 64 silent connections, each reopened when the gateway closes it.
    // 500 churning ones: connect, send nothing, reconnect when closed.
    let connects = Arc::new(AtomicU64::new(0));
    let mut attackers = Vec::new();
    for _ in 0..564 {
        let (stop, connects) = (stop.clone(), connects.clone());
        attackers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut s) = connect_from(ATTACKER, dash).await else {
                    tokio::task::yield_now().await;
                    continue;
                };
                connects.fetch_add(1, Ordering::Relaxed);
                let mut buf = [0u8; 64];
                let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
            }
        }));
    }
    // The attack is on once the gateway has refused its excess.
    let refused = "edge_gateway_dashboard_connections_refused_total{reason=\"per_address\"}";
    until_metric(metrics, refused, 500.0).await;

    // The 1 s target is a figure printed below, not asserted: a test on a
    // loaded CI machine must not fail on speed. The bound asserted is a
    // lockout: before per-address limits, churn like this kept every
    // legitimate request out for 40 s.
    let asked = Instant::now();
    let page = tokio::time::timeout(LOCKED_OUT, get(dash, "/", None)).await;
    let took = asked.elapsed();
    let during = connects.load(Ordering::Relaxed);
    let refused_now = metric(metrics, refused).await;
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.abort();
    }
    println!(
        "page from 127.0.0.1 during the attack: {took:?} (limit 1 s); attacker connects so far {during}, refused per address {refused_now}"
    );
    let (code, body) = page.expect("a page from another address while the attack runs");
    assert_eq!(code, 200);
    assert!(
        body.contains("<html") || body.contains("<!DOCTYPE"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_flood_keeps_the_gateway_small_and_metrics_and_ingest_going() {
    let _serial = SERIAL.lock().await;
    let hash = common::password_hash("correct horse").await;
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let (dash, metrics) = (free_port(), free_port());
    let users = format!("[[dashboard.user]]\nname = \"ops\"\npassword_hash = \"{hash}\"\n");
    let mut gw = GatewayProcess::start(&gateway_config(
        "gw-flood",
        local.port(),
        upstream.port(),
        dash,
        metrics,
        &users,
    ));
    // /metrics is read below: its listener is not the dashboard's.
    gw.wait_for_log("Metrics endpoint listening").await;
    gw.wait_for_log("Dashboard listening").await;
    gw.wait_for_log("Metrics endpoint listening").await;
    common::http_until(metrics, "/health", |code, _| code == 200).await;
    let pid = gw.child.id().unwrap();
    let rss = |field: &str| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix(field)?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap()
    };
    let before = rss("VmRSS:");

    use base64::Engine as _;
    let wrong = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("ops:wrong password")
    );
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let mut flood = Vec::new();
    for i in 0..64u8 {
        let (stop, answered, wrong) = (stop.clone(), answered.clone(), wrong.clone());
        flood.push(tokio::spawn(async move {
            let from = Ipv4Addr::new(127, 0, 0, 2 + i);
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut s) = connect_from(from, dash).await else {
                    tokio::task::yield_now().await;
                    continue;
                };
                let req = format!(
                    "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {wrong}\r\nConnection: close\r\n\r\n"
                );
                if s.write_all(req.as_bytes()).await.is_err() {
                    continue;
                }
                let mut raw = Vec::new();
                let _ = s.read_to_end(&mut raw).await;
                if raw.starts_with(b"HTTP/1.1 ") {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // The flood is on once argon2 has refused some of it.
    until_metric(metrics, "edge_gateway_dashboard_auth_failures_total", 16.0).await;

    // While it runs: `/metrics` answers, and readings sent now are counted.
    let answered_before = answered.load(Ordering::Relaxed);
    let asked = Instant::now();
    let (code, _) = get(metrics, "/metrics", None).await;
    let metrics_took = asked.elapsed();
    assert_eq!(code, 200);
    let readings = "edge_gateway_aggregator_readings_total";
    let start_readings = metric(metrics, readings).await;
    for i in 0..50 {
        publish(
            local.port(),
            &format!("sensors/data/flood-probe-{i}/temperature"),
            "21.5",
            1,
            false,
        )
        .await;
    }
    until_metric(metrics, readings, start_readings + 50.0).await;
    let answered_after = answered.load(Ordering::Relaxed);
    let peak = rss("VmHWM:");
    let now = rss("VmRSS:");
    let failures = metric(metrics, "edge_gateway_dashboard_auth_failures_total").await;
    let throttled = metric(
        metrics,
        "edge_gateway_dashboard_auth_refused_total{reason=\"throttled\"}",
    )
    .await;
    let busy = metric(
        metrics,
        "edge_gateway_dashboard_auth_refused_total{reason=\"busy\"}",
    )
    .await;
    // A person's right password still gets in while the flood runs (after
    // the busy answer, if the queue is full right then, as a browser would).
    let right = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("ops:correct horse")
    );
    // As a browser: on 429/503, wait the Retry-After the gateway sent.
    let login = Instant::now();
    let mut person = 0;
    let mut tries = 0;
    while login.elapsed() < WAIT {
        tries += 1;
        let (code, head) = get_head(dash, "/api/devices", &right).await;
        person = code;
        if code != 503 && code != 429 && code != 0 {
            break;
        }
        let wait: u64 = head
            .lines()
            .find_map(|l| {
                l.to_lowercase()
                    .strip_prefix("retry-after: ")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(1);
        tokio::time::sleep(Duration::from_secs(wait)).await;
    }
    let login_took = login.elapsed();
    stop.store(true, Ordering::Relaxed);
    for f in flood {
        f.abort();
    }
    println!(
        "64 wrong-password clients: RSS before {before} kB, peak {peak} kB, at the end {now} kB (limit 40960 kB); \
         /metrics answered in {metrics_took:?} (limit 100 ms); flood answers {answered_before} before and {answered_after} after the probes; \
         argon2 failures {failures}, throttled {throttled}, busy {busy}; \
         the right password from a new address: {person} after {tries} tries in {login_took:?}"
    );
    assert!(
        answered_after > answered_before,
        "the flood was still running while /metrics and ingest were checked"
    );
    // The limit is for the release binary (about 12 MB at rest): what a
    // flood may add is one argon2 work area (19 MiB) and change, whatever
    // the build's own size.
    assert!(
        peak.saturating_sub(before) < 26 * 1024,
        "RSS {before} kB -> peak {peak} kB"
    );
    assert!(throttled > 0.0, "failed addresses are held back");
    assert_eq!(person, 200, "the right password passes during the flood");
    // Once the flood is over and the last check has finished, its work
    // area is handed back: the memory returns after the burst. Polled with
    // a deadline: nothing announces the last check's end.
    let settled = Instant::now();
    let mut after = rss("VmRSS:");
    while after.saturating_sub(before) >= 8 * 1024 && settled.elapsed() < WAIT {
        let _ = get_head(dash, "/health", "").await;
        after = rss("VmRSS:");
    }
    println!("RSS after the flood: {after} kB (before {before} kB)");
    assert!(
        after.saturating_sub(before) < 8 * 1024,
        "memory returned after the burst: RSS {before} kB before, {after} kB after"
    );
}

/// A client that sends half a request head and then nothing (slowloris)
/// holds a connection slot only until the head deadline: the gateway
/// closes it, counts it as `head_timeout`, and people are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_request_head_is_closed_at_the_head_deadline_and_counted() {
    let _serial = SERIAL.lock().await;
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let (dash, metrics) = (free_port(), free_port());
    let mut gw = GatewayProcess::start(&gateway_config(
        "gw-slow",
        local.port(),
        upstream.port(),
        dash,
        metrics,
        "",
    ));
    // /metrics is read below: its listener is not the dashboard's.
    gw.wait_for_log("Metrics endpoint listening").await;
    gw.wait_for_log("Dashboard listening").await;
    let timed_out = "edge_gateway_dashboard_connections_refused_total{reason=\"head_timeout\"}";
    assert_eq!(metric(metrics, timed_out).await, 0.0);

    let mut slow = Vec::new();
    for _ in 0..8 {
        let mut s = connect_from(ATTACKER, dash).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    assert_eq!(
        get(dash, "/", None).await.0,
        200,
        "a page while the heads hang"
    );
    // Each half-open head must end from the gateway's side: a read that
    // returns end of stream (or a reset), within the deadline and a margin
    // for a loaded machine; never an answer to the half request.
    for mut s in slow {
        let mut buf = [0u8; 256];
        let read = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .expect("the gateway closes a connection whose head never completes");
        if let Ok(n) = read {
            let text = String::from_utf8_lossy(&buf[..n]);
            assert!(
                n == 0 || text.starts_with("HTTP/1.1 408"),
                "closed, or told 408, not served: {text}"
            );
        }
    }
    until_metric(metrics, timed_out, 8.0).await;
}

/// A page framed by another site (clickjacking) or kept in a shared
/// kiosk's or a proxy's cache shows the building to the wrong people:
/// every answer forbids framing, and the authenticated pages and API
/// answers are never stored; only the stylesheet, the same for everyone,
/// may be cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_api_answers_forbid_framing_and_caching() {
    let _serial = SERIAL.lock().await;
    let hash = common::password_hash("correct horse").await;
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let (dash, metrics) = (free_port(), free_port());
    let users = format!("[[dashboard.user]]\nname = \"ops\"\npassword_hash = \"{hash}\"\n");
    let mut gw = GatewayProcess::start(&gateway_config(
        "gw-headers",
        local.port(),
        upstream.port(),
        dash,
        metrics,
        &users,
    ));
    gw.wait_for_log("Dashboard listening").await;
    // "ops:correct horse", as a browser sends it after the login prompt.
    let auth = "Basic b3BzOmNvcnJlY3QgaG9yc2U=";
    let header = |head: &str, name: &str| -> Option<String> {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    for path in ["/", "/alerts", "/gateway", "/api/devices", "/api/alerts"] {
        let (code, head) = get_head(dash, path, auth).await;
        assert_eq!(code, 200, "{path}: {head}");
        assert_eq!(
            header(&head, "x-frame-options").as_deref(),
            Some("DENY"),
            "{path}"
        );
        // Not framed, and scripts only from the dashboard's own /live.js.
        assert!(
            header(&head, "content-security-policy").is_some_and(|v| {
                v.contains("frame-ancestors 'none'")
                    && v.contains("script-src 'self'")
                    && !v.contains("unsafe")
            }),
            "{path}: {head}"
        );
        assert_eq!(
            header(&head, "cache-control").as_deref(),
            Some("no-store"),
            "{path}"
        );
    }
    // The login prompt itself is not framed either.
    let (code, head) = get_head(dash, "/", "Basic b3BzOndyb25n").await;
    assert_eq!(code, 401);
    assert_eq!(header(&head, "x-frame-options").as_deref(), Some("DENY"));
    for (path, kind) in [("/style.css", "text/css"), ("/live.js", "text/javascript")] {
        let (code, head) = get_head(dash, path, auth).await;
        assert_eq!(code, 200, "{path}: {head}");
        assert_eq!(
            header(&head, "cache-control").as_deref(),
            Some("max-age=3600"),
            "{path}"
        );
        assert!(
            header(&head, "content-type").is_some_and(|v| v.starts_with(kind)),
            "{path}: {head}"
        );
    }
    // DNS rebinding: a page whose name was pointed at 127.0.0.1 reaches
    // the dashboard over loopback under its own name, and is not answered.
    for (host, want) in [("attacker.example", "421"), ("localhost", "200")] {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", dash))
            .await
            .unwrap();
        let request = format!(
            "GET /api/devices HTTP/1.1\r\nHost: {host}:{dash}\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
        );
        tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
            .await
            .unwrap();
        let mut answer = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut answer)
            .await
            .unwrap();
        assert_eq!(answer.split(' ').nth(1), Some(want), "{host}: {answer}");
    }
}
