//! coaps: the real binary's CoAP server over DTLS-PSK, driven by libcoap's
//! OpenSSL (and GnuTLS, when installed) clients with `-u identity -k key`,
//! aggregates checked at a real upstream Mosquitto and refusals in
//! `/metrics`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::process::Stdio;
use std::time::Duration;

use common::{config, http_until, GatewayProcess};
use test_support::{free_udp_port, have, Mosquitto, Subscriber};

struct Setup {
    _local: Mosquitto,
    _upstream: Mosquitto,
    sub: Subscriber,
    gw: GatewayProcess,
    port: u16,
    metrics: u16,
}

async fn setup(gateway_id: &str) -> Setup {
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let sub = Subscriber::start(upstream.port(), "building/hq/#").await;
    let port = free_udp_port();
    let metrics = test_support::free_port();
    let mut text = config(gateway_id, local.port(), upstream.port(), "1s", "1s");
    text.push_str(&format!(
        r#"
[metrics]
bind = "127.0.0.1:{metrics}"

[[adapter]]
type = "coap"
name = "coaps"
bind = "127.0.0.1:{port}"
dtls = "psk"

[[coap.psk]]
identity = "node-7"
key = "env:COAPS_TEST_KEY"

[[coap.psk]]
identity = "id-8"
key_hex = "000102030405060708090a0b0c0d0e0f"
device = "node-8"
"#
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut gw = GatewayProcess::start_in_with(dir, &text, &[("COAPS_TEST_KEY", "secretPSK")]);
    gw.wait_for_log("CoAP server listening (DTLS-PSK)").await;
    Setup {
        _local: local,
        _upstream: upstream,
        sub,
        gw,
        port,
        metrics,
    }
}

/// One request from `client` as `identity` with `key`: whether it exited 0,
/// and what it printed (the response payload, libcoap's log).
async fn coaps(
    client: &str,
    identity: &str,
    key: &str,
    port: u16,
    path: &str,
    body: &str,
) -> (bool, String) {
    let url = format!("coaps://127.0.0.1:{port}/{path}");
    let child = tokio::process::Command::new(client)
        // -B 5: give up after 5 s, so a refused handshake ends the run.
        .args([
            "-m", "post", "-B", "5", "-t", "50", "-e", body, "-u", identity, "-k", key, &url,
        ])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), child)
        .await
        .expect("coap-client did not exit in time")
        .expect("spawn coap-client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn errors(error_type: &str) -> String {
    format!("edge_gateway_adapter_errors_total{{adapter=\"coaps\",error_type=\"{error_type}\"}} ")
}

fn clients() -> Vec<&'static str> {
    ["coap-client-openssl", "coap-client-gnutls"]
        .into_iter()
        .filter(|c| have(c))
        .collect()
}

#[tokio::test]
async fn an_identity_posts_its_own_readings_and_nothing_else() {
    let clients = clients();
    assert!(
        clients.contains(&"coap-client-openssl"),
        "apt install libcoap3-bin"
    );
    let mut s = setup("gw-coaps").await;
    for (i, client) in clients.iter().enumerate() {
        // The right key, its own resource: 2.04, a reading.
        let (ok, text) = coaps(
            client,
            "node-7",
            "secretPSK",
            s.port,
            "s/node-7",
            &format!("{{\"temperature\":{}}}", 20 + i),
        )
        .await;
        assert!(ok, "{client}: {text}");
        // Another device's resource: 4.03, counted, nothing stored.
        let (_, text) = coaps(
            client,
            "node-7",
            "secretPSK",
            s.port,
            "s/node-8",
            "{\"temperature\":99}",
        )
        .await;
        assert!(text.contains("4.03"), "{client}: {text}");
    }
    let n = clients.len();
    http_until(s.metrics, "/metrics", |_, body| {
        body.contains(&format!("{}{n}", errors("forbidden")))
    })
    .await;
    http_until(s.metrics, "/metrics", |_, body| {
        body.contains(&format!(
            "edge_gateway_adapter_readings_total{{adapter=\"coaps\"}} {n}"
        ))
    })
    .await;
    let got = s
        .sub
        .collect_until(common::WAIT, |m| {
            m.iter().any(|m| m.topic == "building/hq/node-7/aggregated")
        })
        .await;
    assert!(
        got.iter().all(|m| !m.topic.contains("node-8")),
        "a forbidden write reached upstream"
    );
    s.gw.signal("TERM");
    s.gw.wait_exit().await;
}

#[tokio::test]
async fn a_wrong_key_or_an_unknown_identity_fails_the_handshake_and_is_counted() {
    let mut s = setup("gw-coaps-bad").await;
    let client = "coap-client-openssl";
    let (ok, text) = coaps(client, "nobody", "secretPSK", s.port, "s/node-7", "1").await;
    assert!(!ok || !text.contains("2.04"), "{text}");
    http_until(s.metrics, "/metrics", |_, body| {
        body.contains(&format!("{}1", errors("dtls_unknown_identity")))
    })
    .await;
    let (ok, text) = coaps(client, "node-7", "wrong-key", s.port, "s/node-7", "1").await;
    assert!(!ok || !text.contains("2.04"), "{text}");
    // A Finished under the wrong key is dropped silently (RFC 6347): the
    // stalled handshake is counted when it times out.
    http_until(s.metrics, "/metrics", |_, body| {
        body.contains(&format!("{}1", errors("dtls_bad_key")))
    })
    .await;
    let (_, body) = common::http_get(s.metrics, "/metrics").await;
    assert!(!body.contains("secretPSK") && !body.contains("wrong-key"));
    let readings = "edge_gateway_adapter_readings_total{adapter=\"coaps\"}";
    assert!(
        test_support::metrics::sample(&body, readings).unwrap_or(0.0) == 0.0,
        "a refused handshake let a reading in: {body}"
    );
    s.gw.drain_log().await;
    let log = s.gw.seen.join("\n");
    assert!(
        !log.contains("secretPSK") && !log.contains("wrong-key"),
        "key material in the log"
    );
    s.gw.signal("TERM");
    s.gw.wait_exit().await;
}
