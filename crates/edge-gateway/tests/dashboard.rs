//! `[dashboard]` of the real binary: the API and pages over the history,
//! live events, the history across a restart and a `kill -9`, Basic auth,
//! the refusal of an open dashboard off loopback, `history export`, and
//! HTTPS with `cert_file`/`key_file`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{config, GatewayProcess, WAIT};
use test_support::{free_port, publish, Mosquitto, Subscriber};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const DEVICE: &str = "a2:b2:c2:d2:e2:f2";

fn with_dashboard(cfg: String, port: u16, extra: &str) -> String {
    format!(
        r#"{cfg}
[dashboard]
enabled = true
bind = "127.0.0.1:{port}"
write_interval = "200ms"
{extra}
[[rule]]
name = "too-hot"
kind = "threshold"
metric = "temperature"
max = 30.0
"#
    )
}

/// One GET with an optional `Authorization` header: (status, head, body).
async fn get(port: u16, path: &str, auth: Option<&str>) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let code = text.split(' ').nth(1).unwrap().parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (code, head.to_string(), body.to_string())
}

/// Polls until `done(body)`: windows close and are written on the
/// gateway's own schedule, and the API is the only way to see them.
async fn until(port: u16, path: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (code, _, body) = get(port, path, None).await;
        if code == 200 && done(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path}: {code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn points(body: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["points"].as_array().unwrap().clone()
}

/// An open `/events` stream; `next_event` reads until an event whose data
/// contains `needle`.
struct Events(BufReader<TcpStream>);

impl Events {
    async fn open(port: u16) -> Self {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        // Up to the first comment the server sends: the stream is live.
        while !line.contains(": hello") {
            line.clear();
            r.read_line(&mut line).await.unwrap();
        }
        Self(r)
    }

    async fn next_event(&mut self, kind: &str, needle: &str) -> String {
        let mut event = String::new();
        let read = async {
            loop {
                let mut line = String::new();
                self.0.read_line(&mut line).await.unwrap();
                if line.starts_with("event: ") {
                    event = line.trim()["event: ".len()..].to_string();
                } else if line.starts_with("data: ") && event == kind && line.contains(needle) {
                    return line;
                }
            }
        };
        tokio::time::timeout(WAIT, read)
            .await
            .unwrap_or_else(|_| panic!("no {kind} event with {needle}"))
    }
}

#[tokio::test]
async fn api_pages_and_live_events_over_a_history_that_survives_restart_and_kill_9() {
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let port = free_port();
    let metrics = free_port();
    let cfg = with_dashboard(
        config("gw-dash", local.port(), upstream.port(), "1s", "0s"),
        port,
        &format!("[metrics]\nbind = \"127.0.0.1:{metrics}\"\n"),
    );
    let mut cloud = Subscriber::start(upstream.port(), "building/#").await;
    let mut gw = GatewayProcess::start_in(tempfile::tempdir().unwrap(), &cfg);
    gw.wait_for_log("Dashboard listening").await;
    gw.wait_for_log("Subscribed").await;
    let mut events = Events::open(port).await;

    publish(
        local.port(),
        &format!("sensors/data/{DEVICE}/temperature"),
        "21.5",
        1,
        false,
    )
    .await;
    let data = events.next_event("reading", DEVICE).await;
    assert!(data.contains("21.5"), "{data}");
    let devices = until(port, "/api/devices", |b| b.contains("21.5")).await;
    let v: serde_json::Value = serde_json::from_str(&devices).unwrap();
    let d = &v["devices"][0];
    assert_eq!(d["name"], "Living Room");
    assert_eq!(d["tags"]["room"], "living");
    assert_eq!(d["state"], "receiving");
    assert_eq!(d["latest"]["temperature"]["unit"], "°C");
    events.next_event("window", DEVICE).await;

    let series = format!("/api/series?device={DEVICE}&metric=temperature&from=-1h");
    let first = points(&until(port, &series, |b| !points(b).is_empty()).await);
    assert_eq!(first[0]["avg"], 21.5);
    let csv = until(port, &format!("{series}&format=csv"), |b| {
        b.lines().count() > 1
    })
    .await;
    assert!(
        csv.starts_with("device,metric,start,end,count,avg,min,max,std\n"),
        "{csv}"
    );
    assert!(csv.contains(&format!("{DEVICE},temperature,")), "{csv}");

    // An alert: live on /events, then in the history.
    publish(
        local.port(),
        &format!("sensors/data/{DEVICE}/temperature"),
        "35",
        1,
        false,
    )
    .await;
    let raised = events.next_event("alert", "too-hot").await;
    assert!(raised.contains("\"state\":\"raised\""), "{raised}");
    until(port, "/api/alerts?state=active", |b| b.contains("too-hot")).await;
    until(port, "/api/alerts?state=raised", |b| b.contains("too-hot")).await;

    let (code, _, page) = get(port, "/", None).await;
    assert_eq!(code, 200);
    assert!(
        page.contains("Living Room") && page.contains("class=\"alert\""),
        "{page}"
    );
    let (_, _, page) = get(port, &format!("/device?id={DEVICE}"), None).await;
    assert!(page.contains("data-points=\""), "{page}");
    assert!(page.contains("too-hot"), "the device's rule is listed");
    for p in ["/alerts", "/gateway", "/style.css"] {
        assert_eq!(get(port, p, None).await.0, 200, "{p}");
    }
    assert_eq!(get(port, "/api/series?device=x", None).await.0, 400);
    let (_, _, text) = get(metrics, "/metrics", None).await;
    let written: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("edge_gateway_history_bytes_written_total "))
        .unwrap_or_else(|| panic!("no history bytes in:\n{text}"))
        .parse()
        .unwrap();
    assert!(written > 0);

    // Stopped and started: the committed history is read back.
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    let mut gw = GatewayProcess::start_in(gw.dir, &cfg);
    gw.wait_for_log("Dashboard listening").await;
    gw.wait_for_log("Subscribed").await;
    let after = points(&until(port, &series, |b| points(b).len() >= 2).await);
    assert_eq!(after[0], first[0]);
    until(port, "/api/alerts?state=active", |b| b.contains("too-hot")).await;

    // kill -9 right after a window went upstream: what was emitted is in
    // history, written before the crash or again after it.
    publish(
        local.port(),
        &format!("sensors/data/{DEVICE}/humidity"),
        "55",
        1,
        false,
    )
    .await;
    cloud
        .wait_for(WAIT, |m| {
            m.topic.ends_with("/aggregated") && m.payload.contains("humidity")
        })
        .await
        .expect("a humidity window upstream");
    let gw = gw.kill_and_restart(&cfg, &[]).await;
    let humidity = format!("/api/series?device={DEVICE}&metric=humidity&from=-1h");
    let h = points(&until(port, &humidity, |b| !points(b).is_empty()).await);
    assert_eq!(h[0]["avg"], 55.0);

    // `history export` reads the store's files beside the running gateway...
    let export = |cfg_path: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
            .args(["history", "export", "-c"])
            .arg(cfg_path)
            .args(["--device", DEVICE, "--metric", "humidity", "--from", "-1h"])
            .output()
            .unwrap()
    };
    let running = export(&gw.config_path);
    assert!(
        running.status.success(),
        "{}",
        String::from_utf8_lossy(&running.stderr)
    );
    let running = String::from_utf8(running.stdout).unwrap();
    assert!(running.contains(",55,"), "{running}");
    // ...and the same once it is stopped.
    let mut gw = gw;
    gw.signal("TERM");
    gw.wait_exit().await;
    let stopped = export(&gw.config_path);
    assert!(
        stopped.status.success(),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    assert_eq!(String::from_utf8(stopped.stdout).unwrap(), running);
}

#[tokio::test]
async fn users_need_their_password() {
    let mut passwd = tokio::process::Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .arg("passwd")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    passwd
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse\n")
        .await
        .unwrap();
    let out = passwd.wait_with_output().await.unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");

    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let port = free_port();
    let users = format!("[[dashboard.user]]\nname = \"ops\"\npassword_hash = \"{hash}\"\n");
    let cfg = with_dashboard(
        config("gw-dash-auth", local.port(), upstream.port(), "1h", "1s"),
        port,
        &users,
    );
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Dashboard listening").await;
    use base64::Engine as _;
    let basic = |s: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    };
    for path in ["/", "/api/devices", "/events", "/device?id=x", "/style.css"] {
        let (code, head, _) = get(port, path, None).await;
        assert_eq!(code, 401, "{path}");
        assert!(
            head.contains("WWW-Authenticate: Basic") || head.contains("www-authenticate: Basic"),
            "{head}"
        );
        assert_eq!(
            get(port, path, Some(&basic("ops:wrong"))).await.0,
            401,
            "{path}"
        );
    }
    let (code, _, body) = get(port, "/api/devices", Some(&basic("ops:correct horse"))).await;
    assert_eq!(code, 200);
    assert!(body.contains("Living Room"));
    assert!(!body.contains("argon2"), "no secret in an answer");
}

#[test]
fn an_open_dashboard_off_loopback_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        "[gateway]\nid = \"gw\"\n[dashboard]\nenabled = true\nbind = \"0.0.0.0:8088\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .args(["validate", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("dashboard:"), "{text}");
    assert!(text.contains("[[dashboard.user]]"), "{text}");
}

/// One GET over TLS, trusting only `ca`: the status line's code and the
/// body, or why the handshake failed.
async fn get_tls(port: u16, path: &str, ca: &std::path::Path) -> Result<(u16, String), String> {
    use std::sync::Arc;
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    // A peer may end TLS without close_notify after Connection: close.
    let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw).to_string();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((code, body))
}

#[tokio::test]
async fn https_serves_with_its_certificate_and_nothing_in_clear() {
    let pki = test_support::Pki::generate();
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let port = free_port();
    let tls = format!(
        "cert_file = \"{}\"\nkey_file = \"{}\"\n",
        pki.path("server.pem").display(),
        pki.path("server.key").display()
    );
    let cfg = with_dashboard(
        config("gw-dash-tls", local.port(), upstream.port(), "1h", "1s"),
        port,
        &tls,
    );
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Dashboard listening").await;
    let (code, body) = get_tls(port, "/api/devices", &pki.path("ca.pem"))
        .await
        .expect("TLS handshake with the test CA");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("Living Room"), "{body}");
    // A client that does not trust the certificate is refused.
    let stranger = test_support::Pki::generate();
    assert!(get_tls(port, "/", &stranger.path("ca.pem")).await.is_err());
    // Plain HTTP on the TLS port gets no page.
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"GET /api/devices HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut raw)).await;
    assert!(
        !String::from_utf8_lossy(&raw).contains("Living Room"),
        "served in clear"
    );
}
