//! Vendors' JavaScript codecs outside LoRaWAN: a CoAP server whose
//! `codec` decodes binary bodies (libcoap's `coap-client` posting a
//! vendor's frames), and an MQTT route whose `codec_variables` reach the
//! script; the readings are checked at a real upstream Mosquitto.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::{GatewayProcess, WAIT};

use super::lorawan_otaa::{metric_at_least, totals};
use test_support::{
    coap_client_run, free_port, free_udp_port, publish, Message, Mosquitto, Subscriber,
};

/// Throws on every body: costs its own message only.
const THROWING: &str =
    "function decodeUplink(input) { throw new Error('unsupported frame ' + input.bytes[0]); }\n";
/// Echoes a codec variable and the input as readings.
const ECHO: &str = "function decodeUplink(input) {\n  return { data: { floor: Number(input.variables.floor), first: input.bytes[0], port: input.fPort } };\n}\n";

/// The Tabs TBHH100 decode vectors' frames (ChirpStack device-profile
/// repository, browan/codecs/test_decode_tabs-tbhh100.json, FPort 103).
const TBHH_1: [u8; 8] = [0x08, 0x0b, 0x23, 0x2f, 0xff, 0xff, 0xff, 0xff];
const TBHH_2: [u8; 8] = [0x08, 0x0a, 0x0d, 0x3a, 0xff, 0xff, 0xff, 0xff];

fn config(local: u16, upstream: u16, metrics: u16, vendor: u16, broken: u16) -> String {
    format!(
        r#"
[gateway]
id = "gw-codecs"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{upstream}"
qos = 1
max_backoff = "1s"
topic_prefix = "building/hq"

[aggregation]
window = "1s"
grace = "1s"

[metrics]
bind = "127.0.0.1:{metrics}"

[[adapter]]
type = "mqtt"
name = "lns"
url = "mqtt://127.0.0.1:{local}"
topics = [
  {{ pattern = "application/+/device/{{device}}/event/up", format = "chirpstack_v4", codec = "js:codecs/echo.js", codec_variables = {{ floor = "3" }} }},
]

[[adapter]]
type = "coap"
name = "coap-vendor"
bind = "127.0.0.1:{vendor}"
rate_limit = 0
codec = "js:codecs/tabs-tbhh100.js"

[[adapter]]
type = "coap"
name = "coap-broken"
bind = "127.0.0.1:{broken}"
rate_limit = 0
codec = "js:codecs/throwing.js"
codec_fport = 7
"#
    )
}

/// POSTs `body` from a file (binary as is), with Content-Format `cf`
/// unless `None`.
async fn post(port: u16, path: &str, cf: Option<&str>, body: &[u8]) -> test_support::CoapOutput {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body");
    std::fs::write(&file, body).unwrap();
    let file = file.display().to_string();
    let url = format!("coap://127.0.0.1:{port}/{path}");
    let mut args = vec!["-m", "post", "-f", &file];
    if let Some(cf) = cf {
        args.extend(["-t", cf]);
    }
    args.push(&url);
    coap_client_run(&args).await
}

/// (count, sum, min, max) over every window.
type Stats = (u64, f64, f64, f64);

/// Per metric of `device`: its [`Stats`].
fn stats(messages: &[Message], device: &str) -> std::collections::BTreeMap<String, Stats> {
    let mut all = std::collections::BTreeMap::new();
    for m in messages
        .iter()
        .filter(|m| m.topic == format!("building/hq/{device}/aggregated"))
    {
        for (metric, s) in m.json()["metrics"].as_object().unwrap() {
            let e = all
                .entry(metric.clone())
                .or_insert((0, 0.0, f64::INFINITY, f64::NEG_INFINITY));
            let n = s["count"].as_u64().unwrap();
            e.0 += n;
            e.1 += s["avg"].as_f64().unwrap() * n as f64;
            e.2 = e.2.min(s["min"].as_f64().unwrap());
            e.3 = e.3.max(s["max"].as_f64().unwrap());
        }
    }
    all
}

/// A vendor's codec on a CoAP server turns its frames (FPort from
/// `?fport=`) into exactly the vector's readings of the device the path
/// names, with Content-Format 42 or none; a throwing codec costs only
/// its own message (4.00, counted `codec_js_exception`) and is replaced
/// at SIGHUP; an MQTT route's `codec_variables` reach its script.
#[tokio::test]
async fn coap_and_mqtt_bodies_go_through_vendors_codecs() {
    let (local, upstream) = (Mosquitto::start(), Mosquitto::start());
    let mut sub = Subscriber::start(upstream.port(), "building/hq/+/aggregated").await;
    let (metrics, vendor, broken) = (free_port(), free_udp_port(), free_udp_port());
    let dir = tempfile::tempdir().unwrap();
    let codecs = dir.path().join("codecs");
    std::fs::create_dir(&codecs).unwrap();
    let tabs = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/lorawan-codecs/vendors/browan/codecs/tabs-tbhh100.js");
    std::fs::copy(tabs, codecs.join("tabs-tbhh100.js")).unwrap();
    std::fs::write(codecs.join("throwing.js"), THROWING).unwrap();
    std::fs::write(codecs.join("echo.js"), ECHO).unwrap();
    let text = config(local.port(), upstream.port(), metrics, vendor, broken);
    let mut gw = GatewayProcess::start_in(dir, &text);
    gw.wait_for_log_count("CoAP server listening", 2).await;
    // A QoS 1 publish before the subscription would be lost.
    gw.wait_for_log("Subscribed.").await;

    let out = post(vendor, "s/tbhh-lab?fport=103", Some("42"), &TBHH_1).await;
    assert!(out.success && out.stderr.is_empty(), "{out:?}");
    let out = post(broken, "s/broken-1", Some("42"), &[9]).await;
    assert!(out.stderr.contains("4.00"), "{out:?}");
    let out = post(vendor, "s/tbhh-lab?fport=103", None, &TBHH_2).await;
    assert!(out.success && out.stderr.is_empty(), "{out:?}");
    // JSON keeps its own reader on a server with a codec.
    let out = post(
        vendor,
        "s/tbhh-lab/barrier",
        Some("50"),
        br#"{"barrier":1}"#,
    )
    .await;
    assert!(out.success && out.stderr.is_empty(), "{out:?}");
    publish(
        local.port(),
        "application/1/device/lns-echo/event/up",
        r#"{"deviceInfo":{"devEui":"0101010101010101"},"fPort":2,"data":"BQ==","rxInfo":[]}"#,
        1,
        false,
    )
    .await;

    let errors = "edge_gateway_adapter_errors_total{adapter=\"coap-broken\",error_type=\"codec_js_exception\"}";
    assert_eq!(metric_at_least(metrics, errors, 1.0).await, 1.0);
    let messages = sub
        .collect_until(WAIT, |got| {
            totals(got, "tbhh-lab", "barrier").0 >= 1 && totals(got, "lns-echo", "floor").0 >= 1
        })
        .await;
    let tbhh = stats(&messages, "tbhh-lab");
    // The vector's data, both frames, and nothing else.
    let want = [
        ("CO2", (2, 0.0, 0.0, 0.0)),
        ("VOC", (2, 0.0, 0.0, 0.0)),
        ("barrier", (1, 1.0, 1.0, 1.0)),
        ("battery_volt", (2, 7.1, 3.5, 3.6)),
        ("fPort", (2, 206.0, 103.0, 103.0)),
        ("humidity", (2, 105.0, 47.0, 58.0)),
        ("temperature", (2, -16.0, -19.0, 3.0)),
        ("thh_type", (2, 0.0, 0.0, 0.0)),
    ];
    let got: Vec<(&str, Stats)> = tbhh
        .iter()
        .map(|(k, v)| (k.as_str(), (v.0, (v.1 * 1e6).round() / 1e6, v.2, v.3)))
        .collect();
    assert_eq!(got, want);
    assert!(stats(&messages, "broken-1").is_empty());
    let echo = stats(&messages, "lns-echo");
    assert_eq!(echo["floor"], (1, 3.0, 3.0, 3.0));
    assert_eq!(echo["first"], (1, 5.0, 5.0, 5.0));
    assert_eq!(echo["port"], (1, 2.0, 2.0, 2.0));

    // A changed script at SIGHUP decodes the next body, with the server's
    // codec_fport.
    std::fs::write(
        codecs.join("throwing.js"),
        "function decodeUplink(input) { return { data: { fixed: input.bytes[0] + input.fPort } }; }\n",
    )
    .unwrap();
    gw.signal("HUP");
    gw.wait_for_log("Reloaded.").await;
    let out = post(broken, "s/broken-1", None, &[9]).await;
    assert!(out.success && out.stderr.is_empty(), "{out:?}");
    let messages = sub
        .collect_until(WAIT, |got| totals(got, "broken-1", "fixed").0 >= 1)
        .await;
    assert_eq!(totals(&messages, "broken-1", "fixed"), (1, 16.0));
}
