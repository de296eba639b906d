//! The upstream side over TLS with a private CA, a client certificate and a
//! password read from the environment, against a real Mosquitto.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{GatewayProcess, WAIT};
use test_support::{publish, Mosquitto, Options, Pki, Subscriber};

fn tls_config(local: u16, upstream: u16, pki: &Pki, password_env: &str) -> String {
    format!(
        r#"
[gateway]
id = "gw-tls"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtts://127.0.0.1:{upstream}"
username = "gateway"
password_env = "{password_env}"
ca_file = "{ca}"
client_cert = "{cert}"
client_key = "{key}"
max_backoff = "1s"

[aggregation]
window = "1s"
grace = "0s"

[[adapter]]
type = "mqtt"
name = "local"
url = "mqtt://127.0.0.1:{local}"
"#,
        ca = pki.path("ca.pem").display(),
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

async fn tls_subscriber(upstream: &Mosquitto, pki: &Pki) -> Subscriber {
    Subscriber::start_tls(
        upstream.port(),
        "building/hq/#",
        &pki.path("ca.pem"),
        &pki.path("client.pem"),
        &pki.path("client.key"),
        ("gateway", "s3cret pass"),
    )
    .await
}

#[tokio::test]
async fn forwards_over_mutual_tls_with_a_password_from_the_environment() {
    let pki = Pki::generate();
    let local = Mosquitto::start();
    let upstream = tls_broker(&pki);
    let mut sub = tls_subscriber(&upstream, &pki).await;
    // The variable is inherited by the gateway process only.
    std::env::set_var("EDGE_GW_TEST_PASSWORD", "s3cret pass");
    let mut gw = GatewayProcess::start(&tls_config(
        local.port(),
        upstream.port(),
        &pki,
        "EDGE_GW_TEST_PASSWORD",
    ));
    gw.wait_for_log("Connected upstream").await;
    gw.wait_for_log("Subscribed").await;
    publish(
        local.port(),
        "sensors/data/tls-node/temperature",
        "21.5",
        1,
        false,
    )
    .await;
    let agg = sub
        .wait_for(WAIT, |m| m.topic == "building/hq/tls-node/aggregated")
        .await
        .expect("aggregate over TLS");
    assert_eq!(agg.json()["metrics"]["temperature"]["avg"], 21.5);
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    sub.wait_for(WAIT, |m| {
        m.topic == "building/hq/gateway/gw-tls/status" && m.payload == "offline"
    })
    .await
    .expect("offline over TLS");
    assert!(
        !gw.seen.iter().any(|l| l.contains("s3cret")),
        "the password must never be logged"
    );
}

#[tokio::test]
async fn a_wrong_password_is_retried_not_fatal() {
    let pki = Pki::generate();
    let local = Mosquitto::start();
    let upstream = tls_broker(&pki);
    std::env::set_var("EDGE_GW_TEST_WRONG_PASSWORD", "not it");
    let mut gw = GatewayProcess::start(&tls_config(
        local.port(),
        upstream.port(),
        &pki,
        "EDGE_GW_TEST_WRONG_PASSWORD",
    ));
    gw.wait_for_log("refused the connection: check username")
        .await;
    // Still alive and serving the local side.
    gw.wait_for_log("Subscribed").await;
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

#[tokio::test]
async fn a_missing_password_variable_fails_at_start_with_its_name() {
    let pki = Pki::generate();
    let mut gw = GatewayProcess::start(&tls_config(1, 2, &pki, "EDGE_GW_TEST_UNSET_VARIABLE"));
    assert_ne!(gw.wait_exit().await, Some(0));
    gw.wait_for_log("EDGE_GW_TEST_UNSET_VARIABLE").await;
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused() {
    let pki = Pki::generate();
    let stranger = Pki::generate();
    let local = Mosquitto::start();
    let upstream = tls_broker(&pki);
    std::env::set_var("EDGE_GW_TEST_PASSWORD_2", "s3cret pass");
    let config = tls_config(
        local.port(),
        upstream.port(),
        &pki,
        "EDGE_GW_TEST_PASSWORD_2",
    )
    .replace(
        &pki.path("ca.pem").display().to_string(),
        &stranger.path("ca.pem").display().to_string(),
    );
    let mut gw = GatewayProcess::start(&config);
    gw.wait_for_log("TLS with the upstream broker failed").await;
    assert!(!gw.seen.iter().any(|l| l.contains("Connected upstream")));
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}
