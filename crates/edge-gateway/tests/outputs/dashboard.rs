//! `[dashboard]` of the real binary: the API and pages over the history,
//! live events, the history across a restart and a `kill -9`, Basic auth,
//! the refusal of an open dashboard off loopback, `history export`, and
//! HTTPS with `cert_file`/`key_file`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

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
pub(crate) async fn get(port: u16, path: &str, auth: Option<&str>) -> (u16, String, String) {
    let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
    let r = test_support::web::get_with(port, path, &headers)
        .await
        .expect("response in time");
    (r.code, r.head, r.body)
}

/// Polls until `done(body)`: windows close and are written on the
/// gateway's own schedule, and the API is the only way to see them.
pub(crate) async fn until(port: u16, path: &str, done: impl Fn(&str) -> bool) -> String {
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
        s.write_all(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
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
    let written = test_support::metrics::sample(&text, "edge_gateway_history_bytes_written_total")
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no history bytes in:\n{text}"));
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
    let hash = common::password_hash("correct horse").await;

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
        // Wrong, then held back for a growing delay (429) after a failure.
        let (code, head, _) = get(port, path, Some(&basic("ops:wrong"))).await;
        assert!(code == 401 || code == 429, "{path}: {code}");
        if code == 429 {
            assert!(head.to_lowercase().contains("retry-after: "), "{head}");
        }
    }
    // The right password passes once the address's delay is over.
    let body = loop {
        let (code, head, body) = get(port, "/api/devices", Some(&basic("ops:correct horse"))).await;
        if code == 429 {
            let wait: u64 = head
                .lines()
                .find_map(|l| {
                    l.to_lowercase()
                        .strip_prefix("retry-after: ")?
                        .trim()
                        .parse()
                        .ok()
                })
                .unwrap();
            assert!(wait <= 30, "{wait}");
            tokio::time::sleep(Duration::from_secs(wait)).await;
            continue;
        }
        assert_eq!(code, 200);
        break body;
    };
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
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let answer = tokio::time::timeout(WAIT, test_support::web::exchange(tls, path, &[])).await;
    let r = answer.ok().flatten().unwrap_or_default();
    Ok((r.code, r.body))
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
    s.write_all(b"GET /api/devices HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut raw)).await;
    assert!(
        !String::from_utf8_lossy(&raw).contains("Living Room"),
        "served in clear"
    );
}

#[tokio::test]
async fn every_excursion_is_in_the_alert_history_and_its_csv_even_within_the_cooldown() {
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let (port, metrics) = (free_port(), free_port());
    // The default 5 m cooldown, as a user leaves it.
    let cfg = with_dashboard(
        config("gw-meter", local.port(), upstream.port(), "1s", "0s"),
        port,
        &format!(
            "[metrics]\nbind = \"127.0.0.1:{metrics}\"\n\n[[rule]]\nname = \"meter-high\"\nkind = \"threshold\"\nmetric = \"consumption_kwh\"\nmax = 12.0\n"
        ),
    );
    let mut cloud = Subscriber::start(upstream.port(), "building/hq/meter-01/alerts").await;
    let mut gw = GatewayProcess::start_in(tempfile::tempdir().unwrap(), &cfg);
    gw.wait_for_log("Dashboard listening").await;
    gw.wait_for_log("Subscribed").await;

    // An energy meter above 12 kWh four times, a few readings apart, naming
    // itself in a text field beside the value.
    let readings: Vec<String> = [8.1, 12.5, 9.0, 12.8, 9.2, 13.1, 9.4, 12.6]
        .iter()
        .map(|v| format!(r#"{{"consumption_kwh": {v}, "sensor_id": "meter-01"}}"#))
        .collect();
    test_support::publish_lines(local.port(), "sensors/meter-01", &readings, 1).await;
    let suppressed = until(port, "/api/alerts?state=suppressed", |b| {
        b.matches("meter-high").count() == 3
    })
    .await;
    assert!(suppressed.contains("\"value\":13.1"), "{suppressed}");

    let (_, _, text) = get(metrics, "/metrics", None).await;
    assert!(
        text.lines()
            .any(|l| l == "edge_gateway_alerts_suppressed_total{rule=\"meter-high\"} 3"),
        "{text}"
    );
    // The text field is no error, and is counted once.
    assert!(
        !text.contains("edge_gateway_adapter_errors_total{adapter=\"local-sensors\""),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l == "edge_gateway_adapter_ignored_fields_total{adapter=\"local-sensors\"} 1"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l == "edge_gateway_adapter_readings_total{adapter=\"local-sensors\"} 8"),
        "{text}"
    );
    // Nobody is alerted again within the cooldown: one raise, one clear.
    let mut upstream_states: Vec<String> = Vec::new();
    while !upstream_states.iter().any(|s| s == "cleared") {
        let m = cloud.next(WAIT).await.expect("the clear upstream");
        upstream_states.push(m.json()["state"].as_str().unwrap_or_default().into());
    }
    while let Some(m) = cloud.next(Duration::from_millis(1500)).await {
        upstream_states.push(m.json()["state"].as_str().unwrap_or_default().into());
    }
    assert_eq!(upstream_states, ["raised", "cleared"]);

    let want = [
        "time,rule,device,metric,state,value,limit,reason",
        "meter-high,meter-01,consumption_kwh,raised,12.5,12,",
        "meter-high,meter-01,consumption_kwh,cleared,9,12,",
        "meter-high,meter-01,consumption_kwh,suppressed,12.8,12,",
        "meter-high,meter-01,consumption_kwh,suppressed,13.1,12,",
        "meter-high,meter-01,consumption_kwh,suppressed,12.6,12,",
    ];
    let check = |csv: &str| {
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), want.len(), "{csv}");
        assert_eq!(lines[0], want[0]);
        for (line, want) in lines[1..].iter().zip(&want[1..]) {
            let (time, rest) = line.split_once(',').unwrap();
            assert!(time.ends_with('Z'), "RFC 3339 time: {line}");
            assert_eq!(rest, *want);
        }
    };
    let (code, head, api) = get(port, "/api/alerts?format=csv", None).await;
    assert_eq!(code, 200);
    assert!(head.to_ascii_lowercase().contains("text/csv"), "{head}");
    check(&api);

    let export = std::process::Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .args(["history", "export", "--alerts", "-c"])
        .arg(&gw.config_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&export.stderr);
    assert!(export.status.success(), "{stderr}");
    let exported = String::from_utf8(export.stdout).unwrap();
    assert_eq!(exported, api, "the export and the API agree");
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    gw.take_log();
    assert!(
        !gw.seen.iter().any(|l| l.contains("Dropping")),
        "no warning for good messages:\n{}",
        gw.seen.join("\n")
    );
}

/// Another process on the dashboard's port (InfluxDB 1.x on 8088, say):
/// the gateway runs on without pages, and `/health` is a 503 that names
/// the dashboard's bind and why, not a silent "ok".
#[tokio::test]
async fn a_taken_dashboard_port_makes_health_say_so() {
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    let metrics = free_port();
    let cfg = with_dashboard(
        config("gw-taken", local.port(), upstream.port(), "1s", "0s"),
        port,
        &format!("[metrics]\nbind = \"127.0.0.1:{metrics}\"\n"),
    );
    let mut gw = GatewayProcess::start(&cfg);
    // The log says what holds it and which setting to change.
    gw.wait_for_log("Set [dashboard] bind to a free port").await;
    gw.wait_for_log("Subscribed").await;
    // Upstream and adapter are fine: only the dashboard keeps it from 200.
    let (code, body) = common::http_until(metrics, "/health", |_, b| {
        b.contains("\"upstream_connected\":true") && b.contains("\"running\"")
    })
    .await;
    assert_eq!(code, 503, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    let reasons = health["reasons"].to_string();
    assert!(
        reasons.contains(&format!("dashboard cannot listen on 127.0.0.1:{port}"))
            && reasons.contains("in use"),
        "{body}"
    );
    assert_eq!(health["dashboard"]["listening"], false, "{body}");
    drop(squatter);
}

/// A MAC sent upper case by an ESP-NOW relay and registered lower case is
/// one device: one row, named, with its values and its protocol.
#[tokio::test]
async fn a_mac_in_another_case_than_the_registry_is_one_device() {
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let port = free_port();
    let cfg = with_dashboard(
        config("gw-case", local.port(), upstream.port(), "1s", "0s"),
        port,
        "[[device]]\nid = \"aa:bb:cc:dd:ee:ff\"\nname = \"Kitchen\"\n",
    );
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Dashboard listening").await;
    gw.wait_for_log("Subscribed").await;
    publish(
        local.port(),
        "sensors/data/AA:BB:CC:DD:EE:FF/temperature",
        "21.5",
        1,
        false,
    )
    .await;
    let body = until(port, "/api/devices", |b| b.contains("21.5")).await;
    let devices: serde_json::Value = serde_json::from_str(&body).unwrap();
    let kitchens: Vec<&serde_json::Value> = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| {
            d["name"] == "Kitchen"
                || d["id"]
                    .as_str()
                    .unwrap()
                    .eq_ignore_ascii_case("aa:bb:cc:dd:ee:ff")
        })
        .collect();
    assert_eq!(kitchens.len(), 1, "{body}");
    assert_eq!(kitchens[0]["id"], "aa:bb:cc:dd:ee:ff");
    assert_eq!(kitchens[0]["latest"]["temperature"]["value"], 21.5);
    assert_eq!(kitchens[0]["adapter"]["protocol"], "MQTT", "{body}");
    assert_eq!(kitchens[0]["adapter"]["name"], "local-sensors");
    let (_, _, page) = get(port, "/", None).await;
    assert_eq!(page.matches(">Kitchen</a>").count(), 1, "{page}");
    // The device page answers the id in any case.
    let (code, _, page) = get(port, "/device?id=AA%3ABB%3ACC%3ADD%3AEE%3AFF", None).await;
    assert_eq!(code, 200);
    assert!(page.contains("21.5 °C"), "{page}");
}

/// A LoRaWAN-style node behind an MQTT bridge reports its battery in
/// volts: the adapter says so for every device it hears. After a restart
/// the overview names each device's protocol before it speaks again.
#[tokio::test]
async fn an_adapters_units_apply_and_its_protocol_is_shown_at_once_after_a_restart() {
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let port = free_port();
    let cfg = with_dashboard(
        config("gw-provenance", local.port(), upstream.port(), "1s", "0s"),
        port,
        "",
    )
    .replace(
        "name = \"local-sensors\"\n",
        "name = \"local-sensors\"\nunits = { battery = \"V\" }\n",
    );
    let mut gw = GatewayProcess::start_in(tempfile::tempdir().unwrap(), &cfg);
    gw.wait_for_log("Dashboard listening").await;
    gw.wait_for_log("Subscribed").await;
    publish(
        local.port(),
        "sensors/node-7",
        r#"{"battery": 3.71, "temperature": 4.2}"#,
        1,
        false,
    )
    .await;
    let body = until(port, "/api/devices", |b| b.contains("3.71")).await;
    let devices: serde_json::Value = serde_json::from_str(&body).unwrap();
    let node = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "node-7")
        .unwrap_or_else(|| panic!("{body}"))
        .clone();
    assert_eq!(node["latest"]["battery"]["unit"], "V", "{body}");
    assert_eq!(node["latest"]["temperature"]["unit"], "°C", "{body}");
    let (_, _, page) = get(port, "/", None).await;
    assert!(page.contains("<b>3.71</b> V"), "{page}");
    // A window closed: history knows the device across the restart.
    until(
        port,
        "/api/series?device=node-7&metric=battery&from=-1h",
        |b| !points(b).is_empty(),
    )
    .await;
    // The pages keep the adapter within a write interval.
    let kept = gw.dir.path().join("state/device-adapters.json");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !std::fs::read_to_string(&kept).is_ok_and(|t| t.contains("node-7")) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {}",
            kept.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    let mut gw = GatewayProcess::start_in(gw.dir, &cfg);
    gw.wait_for_log("Dashboard listening").await;
    // Nothing was published since: the protocol and the adapter's unit
    // come from what the gateway kept.
    let (_, _, body) = get(port, "/api/devices", None).await;
    let devices: serde_json::Value = serde_json::from_str(&body).unwrap();
    let node = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "node-7")
        .unwrap_or_else(|| panic!("{body}"))
        .clone();
    assert_eq!(node["adapter"]["protocol"], "MQTT", "{body}");
    assert_eq!(node["adapter"]["name"], "local-sensors", "{body}");
    let (_, _, page) = get(port, "/", None).await;
    let row = page
        .split("<tr data-d=node-7")
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap_or_else(|| panic!("{page}"));
    assert!(row.contains("<b>MQTT</b>"), "{row}");
    // The latest window in the adapter's unit, not "4 %".
    let (_, _, page) = get(port, "/device?id=node-7", None).await;
    assert!(page.contains("3.71 V"), "{page}");
    gw.signal("TERM");
    gw.wait_exit().await;
}
