//! The MQTT ingress adapter reaching its local broker over TLS with a
//! private CA, a client certificate and a password from the environment,
//! against a real Mosquitto: the adapter's connection is its own (not
//! rumqttc's), so its TLS and its login are checked here, not only the
//! upstream's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{GatewayProcess, WAIT};
use test_support::{Mosquitto, Options, Pki, Subscriber};

fn config(local: u16, upstream: u16, pki: &Pki, ca: &str, password_env: &str) -> String {
    format!(
        r#"
[gateway]
id = "gw-local-tls"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{upstream}"

[aggregation]
window = "1s"
grace = "0s"

[[adapter]]
type = "mqtt"
name = "local"
url = "mqtts://127.0.0.1:{local}"
username = "gateway"
password_env = "{password_env}"
ca_file = "{ca}"
client_cert = "{cert}"
client_key = "{key}"
max_backoff = "1s"
qos = 1
"#,
        cert = pki.path("client.pem").display(),
        key = pki.path("client.key").display(),
    )
}

fn tls_broker(pki: &Pki) -> Mosquitto {
    Mosquitto::start_with(Options {
        tls: Some((
            pki.path("ca.pem"),
            pki.path("server.pem"),
            pki.path("server.key"),
        )),
        require_client_certificate: true,
        user: Some(("gateway".into(), "s3cret pass".into())),
        ..Options::default()
    })
}

/// `mosquitto_pub` over the same TLS, as a device on the local network.
async fn publish_tls(port: u16, pki: &Pki, topic: &str, payload: &str) {
    let status = tokio::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
        .args(["-t", topic, "-m", payload])
        .args(["-u", "gateway", "-P", "s3cret pass"])
        .arg("--cafile")
        .arg(pki.path("ca.pem"))
        .arg("--cert")
        .arg(pki.path("client.pem"))
        .arg("--key")
        .arg(pki.path("client.key"))
        .status();
    let status = tokio::time::timeout(WAIT, status).await.unwrap().unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn readings_arrive_from_a_local_broker_over_mutual_tls() {
    let pki = Pki::generate();
    let local = tls_broker(&pki);
    let upstream = Mosquitto::start();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/#").await;
    // The variable is inherited by the gateway process only.
    std::env::set_var("EDGE_GW_LOCAL_TLS_PASSWORD", "s3cret pass");
    let ca = pki.path("ca.pem").display().to_string();
    let mut gw = GatewayProcess::start(&config(
        local.port(),
        upstream.port(),
        &pki,
        &ca,
        "EDGE_GW_LOCAL_TLS_PASSWORD",
    ));
    gw.wait_for_log("Subscribed").await;
    for v in ["20.0", "22.0"] {
        publish_tls(local.port(), &pki, "sensors/data/tls-room/temperature", v).await;
    }
    let got = sub
        .collect_until(WAIT, |m| {
            m.iter()
                .filter(|m| m.topic == "building/hq/tls-room/aggregated")
                .map(|m| {
                    m.json()["metrics"]["temperature"]["count"]
                        .as_u64()
                        .unwrap()
                })
                .sum::<u64>()
                >= 2
        })
        .await;
    let sum: f64 = got
        .iter()
        .filter(|m| m.topic == "building/hq/tls-room/aggregated")
        .map(|m| {
            let t = &m.json()["metrics"]["temperature"];
            t["avg"].as_f64().unwrap() * t["count"].as_f64().unwrap()
        })
        .sum();
    assert_eq!(sum, 42.0, "{}", gw.seen.join("\n"));
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    assert!(
        !gw.seen.iter().any(|l| l.contains("s3cret")),
        "the password must never be logged"
    );
}

#[tokio::test]
async fn a_wrong_password_for_the_local_broker_is_logged_not_fatal() {
    let pki = Pki::generate();
    let local = tls_broker(&pki);
    let upstream = Mosquitto::start();
    std::env::set_var("EDGE_GW_LOCAL_TLS_WRONG", "not it");
    let ca = pki.path("ca.pem").display().to_string();
    let mut gw = GatewayProcess::start(&config(
        local.port(),
        upstream.port(),
        &pki,
        &ca,
        "EDGE_GW_LOCAL_TLS_WRONG",
    ));
    // Mosquitto answers a wrong password "not authorized".
    gw.wait_for_log("the broker refused the connection: not authorized")
        .await;
    // Not fatal: the gateway goes on (and retries with its backoff).
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    assert!(!gw.seen.iter().any(|l| l.contains("Subscribed")));
}

#[tokio::test]
async fn a_local_broker_certificate_from_another_ca_is_refused() {
    let pki = Pki::generate();
    let stranger = Pki::generate();
    let local = tls_broker(&pki);
    let upstream = Mosquitto::start();
    std::env::set_var("EDGE_GW_LOCAL_TLS_PASSWORD", "s3cret pass");
    let ca = stranger.path("ca.pem").display().to_string();
    let mut gw = GatewayProcess::start(&config(
        local.port(),
        upstream.port(),
        &pki,
        &ca,
        "EDGE_GW_LOCAL_TLS_PASSWORD",
    ));
    gw.wait_for_log("invalid peer certificate").await;
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    assert!(!gw.seen.iter().any(|l| l.contains("Subscribed")));
}
