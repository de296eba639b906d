//! Vendor payload codecs end to end: ABP devices configured with
//! `codec = "milesight"`, `"elsys"` and `"dragino_lht65"` send the vendors'
//! published example frames, sealed as real LoRaWAN uplinks, in Semtech
//! UDP datagrams over a real socket; the decoded values are checked in the
//! aggregates at a real upstream Mosquitto. A frame the codec refuses is
//! counted and logged, and the device's next frame still arrives.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use adapters::lorawan::frame::{seal, Key};
use common::{with_ts, GatewayProcess, WAIT};
use test_support::{free_udp_port, Message, Mosquitto, Subscriber};
use tokio::net::UdpSocket;

const NWK: &str = "2b7e151628aed2a6abf7158809cf4f3c";
const APP: &str = "000102030405060708090a0b0c0d0e0f";
const AM319_ADDR: u32 = 0x2601_0319;
const ERS_ADDR: u32 = 0x2601_0E25;
const LHT65_ADDR: u32 = 0x2601_0065;
const GATEWAY: [u8; 8] = [0xAA, 0x55, 0x5A, 0, 0, 0, 0, 7];

/// Milesight-IoT/SensorDecoders `AM_Series/AM300/README.md`, "Example":
/// temperature 23.8, humidity 62, pir trigger, light_level 2, co2 936,
/// tvoc 37, pressure 1008.6, hcho 0.04, pm2_5 32, pm10 48.
const AM319_EXAMPLE: &str =
    "0367EE0004687C05000106CB02077DA803087D2500097366270A7D04000B7D20000C7D3000";
/// The Elsys payload document's example: temperature 22.6, humidity 41,
/// light 39, motion 6, co2 776, vdd 3426 mV.
const ERS_EXAMPLE: &str = "0100E202290400270506060308070D62";
/// The Dragino LHT65 manual's example (also TTN lorawan-devices
/// `vendor/dragino/lht65-codec.yaml`): BatV 3.062, TempC_SHT 28.29,
/// Hum_SHT 88.6, TempC_DS 27.81.
const LHT65_EXAMPLE: &str = "CBF60B0D0376010ADD7FFF";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The device's uplink: `payload` encrypted and MIC'd under the session
/// keys, on the vendor's FPort.
fn uplink(dev_addr: u32, fcnt: u32, fport: u8, payload: &[u8]) -> Vec<u8> {
    let key = |s: &str| s.parse::<Key>().unwrap();
    seal(dev_addr, fcnt, fport, payload, &key(NWK), &key(APP)).unwrap()
}

/// A PUSH_DATA datagram (protocol v2) carrying `phy` as one rxpk.
fn push_data(token: [u8; 2], phy: &[u8]) -> Vec<u8> {
    let mut d = vec![2, token[0], token[1], 0x00];
    d.extend_from_slice(&GATEWAY);
    let body = format!(
        r#"{{"rxpk":[{{"tmst":3512348611,"chan":2,"rfch":0,"freq":868.5,"stat":1,"modu":"LORA","datr":"SF9BW125","codr":"4/5","rssi":-71,"lsnr":6.5,"size":{},"data":"{}"}}]}}"#,
        phy.len(),
        base64(phy)
    );
    d.extend_from_slice(body.as_bytes());
    d
}

/// Sends each datagram from a fresh socket and waits for its PUSH_ACK, as
/// a forwarder restarting between uplinks would.
async fn push(port: u16, token: u16, phy: &[u8]) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(("127.0.0.1", port)).await.unwrap();
    let token = token.to_be_bytes();
    socket.send(&push_data(token, phy)).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(WAIT, socket.recv(&mut buf))
        .await
        .expect("no PUSH_ACK")
        .unwrap();
    assert_eq!(buf[..n], [2, token[0], token[1], 0x01]);
}

fn config(upstream: u16, port: u16) -> String {
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

[aggregation]
window = "1s"
grace = "1s"

[[adapter]]
type = "semtech_udp"
name = "lora"
bind = "127.0.0.1:{port}"

[[lorawan.device]]
dev_addr = "{AM319_ADDR:08X}"
nwk_s_key = "{NWK}"
app_s_key = "{APP}"
codec = "milesight"
id = "am319-meeting"

[[lorawan.device]]
dev_addr = "{ERS_ADDR:08X}"
nwk_s_key = "{NWK}"
app_s_key = "{APP}"
codec = "elsys"
id = "ers-co2-office"

[[lorawan.device]]
dev_addr = "{LHT65_ADDR:08X}"
nwk_s_key = "{NWK}"
app_s_key = "{APP}"
codec = "dragino_lht65"
id = "lht65-fridge"
"#
    )
}

/// The last aggregate value (`avg`) of `metric` for `device`, if any.
fn latest(messages: &[Message], device: &str, metric: &str) -> Option<f64> {
    messages
        .iter()
        .filter(|m| m.topic == format!("building/hq/{device}/aggregated"))
        .filter_map(|m| m.json()["metrics"].get(metric)?["avg"].as_f64())
        .next_back()
}

#[tokio::test]
async fn vendor_example_frames_arrive_upstream_as_readings() {
    let upstream = Mosquitto::start();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/#").await;
    let port = free_udp_port();
    let mut gw =
        GatewayProcess::start_in(tempfile::tempdir().unwrap(), &config(upstream.port(), port));
    gw.wait_for_log("Semtech UDP server listening").await;

    // First a Milesight frame with a history record (0x20 0xCE), which
    // the codec refuses: counted, logged with its reason, nothing sent.
    let refused = hex("0367EE0020CE0102030405");
    push(port, 1, &uplink(AM319_ADDR, 1, 85, &refused)).await;
    gw.wait_for_log("codec_unknown_type").await;
    gw.wait_for_log("unknown Milesight channel 0x20 type 0xce")
        .await;

    // Then the vendors' examples, on the vendors' ports.
    push(port, 2, &uplink(AM319_ADDR, 2, 85, &hex(AM319_EXAMPLE))).await;
    push(port, 3, &uplink(ERS_ADDR, 1, 5, &hex(ERS_EXAMPLE))).await;
    push(port, 4, &uplink(LHT65_ADDR, 1, 2, &hex(LHT65_EXAMPLE))).await;

    let messages = sub
        .collect_until(WAIT, |got| {
            latest(got, "am319-meeting", "pm10").is_some()
                && latest(got, "ers-co2-office", "battery_v").is_some()
                && latest(got, "lht65-fridge", "ext_temperature").is_some()
        })
        .await;
    let check = |device: &str, expected: &[(&str, f64)]| {
        for (metric, value) in expected {
            let got = latest(&messages, device, metric)
                .unwrap_or_else(|| panic!("{device} {metric} missing: {messages:#?}"));
            assert!(
                (got - value).abs() < 1e-9,
                "{device} {metric}: {got} != {value}"
            );
        }
    };
    check(
        "am319-meeting",
        &[
            ("temperature", 23.8),
            ("humidity", 62.0),
            ("pir", 1.0),
            ("light_level", 2.0),
            ("co2", 936.0),
            ("tvoc", 37.0),
            ("pressure", 1008.6),
            ("hcho", 0.04),
            ("pm2_5", 32.0),
            ("pm10", 48.0),
            ("rssi", -71.0),
        ],
    );
    check(
        "ers-co2-office",
        &[
            ("temperature", 22.6),
            ("humidity", 41.0),
            ("illuminance", 39.0),
            ("motion", 6.0),
            ("co2", 776.0),
            ("battery_v", 3.426),
        ],
    );
    check(
        "lht65-fridge",
        &[
            ("battery_v", 3.062),
            ("temperature", 28.29),
            ("humidity", 88.6),
            ("ext_temperature", 27.81),
        ],
    );
    // The refused frame gave nothing: one temperature for the AM319.
    let temperatures: u64 = messages
        .iter()
        .filter(|m| m.topic == "building/hq/am319-meeting/aggregated")
        .filter_map(|m| m.json()["metrics"].get("temperature")?["count"].as_u64())
        .sum();
    assert_eq!(temperatures, 1);
}

fn vectors() -> serde_json::Value {
    let path = format!(
        "{}/../../tests/data/vectors/vendor_codecs.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn decode(codec: &str, payload: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .args(["decode", "--codec", codec, payload])
        .output()
        .unwrap()
}

/// `decode --codec <name> <hex>` prints every vendor vector's values, one
/// `metric = value` line each, and refuses the bad inputs with EX_DATAERR
/// and the reason.
#[test]
fn decode_subcommand_gives_every_vendor_vector() {
    let doc = vectors();
    for v in doc["vectors"].as_array().unwrap() {
        let (id, codec) = (v["id"].as_str().unwrap(), v["codec"].as_str().unwrap());
        let out = decode(codec, v["payload_hex"].as_str().unwrap());
        assert_eq!(out.status.code(), Some(0), "{id}: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let got: Vec<(String, f64)> = text
            .lines()
            .map(|line| {
                let (metric, value) = line.split_once(" = ").unwrap();
                (metric.to_string(), value.parse().unwrap())
            })
            .collect();
        let expected = v["expected"].as_object().unwrap();
        assert_eq!(got.len(), expected.len(), "{id}: {text}");
        for (metric, value) in &got {
            let want = expected
                .get(metric)
                .and_then(|w| w.as_f64())
                .unwrap_or_else(|| panic!("{id}: unexpected {metric} in {text}"));
            assert!(
                (value - want).abs() < 1e-9,
                "{id} {metric}: {value} != {want}"
            );
        }
    }
    for bad in doc["bad_inputs"].as_array().unwrap() {
        let codec = bad["codec"].as_str().unwrap();
        let out = decode(codec, bad["payload_hex"].as_str().unwrap());
        assert_eq!(out.status.code(), Some(65), "{bad}: {out:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            stderr.contains(bad["error"].as_str().unwrap()),
            "{bad}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{bad}");
    }
}

// ---- JavaScript codecs (`codec = "js:FILE"`) ----

use super::lorawan_otaa::{
    decrypt_down, hex_key, metric_at_least, open_downlink, totals, unbase64, uplink as sealed,
    Forwarder,
};
use test_support::{free_port, publish};

/// The vendors' codecs and vectors copied from ChirpStack's device-profile
/// repository (MIT, tests/data/lorawan-codecs/LICENSE).
fn vendor_file(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/lorawan-codecs/vendors")
        .join(path)
}

const JS_GW: [u8; 8] = [0xAA, 0x55, 0x5A, 0, 0, 0, 0, 0x15];
const TBHH_ADDR: u32 = 0x2601_1001;
const LOOP_ADDR: u32 = 0x2601_1002;
const THROW_ADDR: u32 = 0x2601_1003;
const BOMB_ADDR: u32 = 0x2601_1004;
const ZN2_ADDR: u32 = 0x2601_1005;

/// Codecs that go wrong in each way a published one can.
const LOOPING: &str = "function decodeUplink(input) { while (true) {} }\n";
const THROWING: &str =
    "function decodeUplink(input) { throw new Error('unsupported frame ' + input.bytes[0]); }\n";
/// Grows without end: the memory limit ends it, not the clock.
const BOMB: &str = "function decodeUplink(input) {\n  var keep = [];\n  for (;;) { keep.push(new Array(100000).fill(input.bytes[0])); }\n}\n";

fn js_config(upstream: u16, port: u16, metrics: u16) -> String {
    let keys = format!("nwk_s_key = \"{NWK}\"\napp_s_key = \"{APP}\"");
    format!(
        r#"
[gateway]
id = "gw-js"
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
type = "semtech_udp"
name = "lora"
bind = "127.0.0.1:{port}"
dedup_window = "50ms"
command_wait = "10s"

[lorawan]
js_time_limit = "50ms"
js_memory_limit = "2MiB"

[[lorawan.device]]
dev_addr = "{TBHH_ADDR:08X}"
{keys}
codec = "js:codecs/tabs-tbhh100.js"
id = "tbhh-office"

[[lorawan.device]]
dev_addr = "{LOOP_ADDR:08X}"
{keys}
codec = "js:codecs/looping.js"
id = "looping"

[[lorawan.device]]
dev_addr = "{THROW_ADDR:08X}"
{keys}
codec = "js:codecs/throwing.js"
id = "throwing"

[[lorawan.device]]
dev_addr = "{BOMB_ADDR:08X}"
{keys}
codec = "js:codecs/bomb.js"
id = "bomb"

[[lorawan.device]]
dev_addr = "{ZN2_ADDR:08X}"
{keys}
codec = "js:codecs/dl-zn2.js"
codec_variables = {{ unused = "1" }}
id = "zn2-soil"

[commands]
enabled = true
"#
    )
}

/// A config directory with its `codecs/` beside the file, as a user lays
/// it out (the `js:` paths are relative to the config's directory).
fn js_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let codecs = dir.path().join("codecs");
    std::fs::create_dir(&codecs).unwrap();
    for (name, text) in [
        ("looping.js", LOOPING.to_string()),
        ("throwing.js", THROWING.to_string()),
        ("bomb.js", BOMB.to_string()),
        (
            "tabs-tbhh100.js",
            std::fs::read_to_string(vendor_file("browan/codecs/tabs-tbhh100.js")).unwrap(),
        ),
        (
            "dl-zn2.js",
            std::fs::read_to_string(vendor_file("decentlab/codecs/dl-zn2.js")).unwrap(),
        ),
    ] {
        std::fs::write(codecs.join(name), text).unwrap();
    }
    dir
}

/// The Tabs TBHH100 vectors' frames (test_decode_tabs-tbhh100.json):
/// temperature 3 °C, humidity 47 %; then −19 °C, 58 %; on FPort 103.
const TBHH_1: [u8; 8] = [0x08, 0x0b, 0x23, 0x2f, 0xff, 0xff, 0xff, 0xff];
const TBHH_2: [u8; 8] = [0x08, 0x0a, 0x0d, 0x3a, 0xff, 0xff, 0xff, 0xff];

/// Uplinks through a vendor's codec reach the upstream as exact window
/// statistics while three other devices' codecs loop, throw and exhaust
/// their memory on every uplink: each of those is counted by reason and
/// only costs its own values (their rssi still flows), its log line
/// showing the payload that failed. A script changed
/// on disk is taken at SIGHUP; one with a syntax error is refused with
/// its file and line, and the running one goes on.
#[tokio::test]
async fn js_codecs_decode_uplinks_while_broken_codecs_cost_only_their_own() {
    let upstream = Mosquitto::start();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/+/aggregated").await;
    let (port, metrics) = (free_udp_port(), free_port());
    let dir = js_dir();
    let codecs = dir.path().join("codecs");
    let mut gw = GatewayProcess::start_in(dir, &js_config(upstream.port(), port, metrics));
    gw.wait_for_log("Semtech UDP server listening").await;
    let (nwk, app) = (hex_key(NWK), hex_key(APP));
    let mut fwd = Forwarder::connect(port, JS_GW).await;

    for round in 0..3u16 {
        let fcnt = round + 1;
        let good = if round % 2 == 0 { TBHH_1 } else { TBHH_2 };
        fwd.push(&sealed(LOOP_ADDR, fcnt, 1, &[round as u8], &nwk, &app), 5.0)
            .await;
        fwd.push(&sealed(TBHH_ADDR, fcnt, 103, &good, &nwk, &app), 5.0)
            .await;
        fwd.push(&sealed(BOMB_ADDR, fcnt, 1, &[7], &nwk, &app), 5.0)
            .await;
        fwd.push(&sealed(THROW_ADDR, fcnt, 1, &[9], &nwk, &app), 5.0)
            .await;
    }
    fwd.push(&sealed(TBHH_ADDR, 4, 103, &TBHH_2, &nwk, &app), 5.0)
        .await;

    let errors = |kind: &str| {
        format!(
            "edge_gateway_adapter_errors_total{{adapter=\"lora\",error_type=\"codec_js_{kind}\"}}"
        )
    };
    for kind in ["timeout", "exception", "out_of_memory"] {
        assert_eq!(
            metric_at_least(metrics, &errors(kind), 3.0).await,
            3.0,
            "{kind}"
        );
    }
    let messages = sub
        .collect_until(WAIT, |got| {
            totals(got, "tbhh-office", "temperature").0 >= 4
                && totals(got, "looping", "rssi").0 >= 3
                && totals(got, "bomb", "rssi").0 >= 3
                && totals(got, "throwing", "rssi").0 >= 3
        })
        .await;
    let stats = |metric: &str| {
        let mut all = (0u64, 0.0, f64::INFINITY, f64::NEG_INFINITY);
        for m in messages
            .iter()
            .filter(|m| m.topic == "building/hq/tbhh-office/aggregated")
        {
            if let Some(s) = m.json()["metrics"].get(metric) {
                let n = s["count"].as_u64().unwrap();
                all.0 += n;
                all.1 += s["avg"].as_f64().unwrap() * n as f64;
                all.2 = all.2.min(s["min"].as_f64().unwrap());
                all.3 = all.3.max(s["max"].as_f64().unwrap());
            }
        }
        all
    };
    // 3, −19, 3, −19 °C; 47, 58, 47, 58 %: every one, nothing else.
    assert_eq!(stats("temperature"), (4, -32.0, -19.0, 3.0));
    assert_eq!(stats("humidity"), (4, 210.0, 47.0, 58.0));
    assert_eq!(stats("battery_volt").0, 4);
    for device in ["looping", "bomb", "throwing"] {
        assert_eq!(totals(&messages, device, "rssi").0, 3, "{device}");
    }
    // The payload of a failed decode is in no output: its log line shows
    // it, with its FPort, for `edge-gateway decode` to run it again.
    gw.wait_for_log("(FPort 1, payload 09): Error: unsupported frame 9")
        .await;

    // A syntax error at SIGHUP: refused with its file and line; the
    // running codec goes on.
    let good = std::fs::read_to_string(codecs.join("tabs-tbhh100.js")).unwrap();
    std::fs::write(
        codecs.join("tabs-tbhh100.js"),
        "function decodeUplink(input) {\n  return { data: { t: input.bytes[0] } ;\n}\n",
    )
    .unwrap();
    gw.signal("HUP");
    gw.wait_for_log("Reload rejected").await;
    gw.wait_for_log("tabs-tbhh100.js:2").await;
    fwd.push(&sealed(TBHH_ADDR, 5, 103, &TBHH_1, &nwk, &app), 5.0)
        .await;
    // A changed script at SIGHUP: the next uplink is decoded by it.
    std::fs::write(
        codecs.join("tabs-tbhh100.js"),
        good.replace("function decodeUplink(input) {", "function decodeUplink(input) {\n  if (input.fPort === 104) return { data: { reloaded: input.bytes.length } };"),
    )
    .unwrap();
    gw.signal("HUP");
    gw.wait_for_log("Reloaded.").await;
    fwd.push(&sealed(TBHH_ADDR, 6, 104, &[1, 2, 3], &nwk, &app), 5.0)
        .await;
    let messages = sub
        .collect_until(WAIT, |got| {
            totals(got, "tbhh-office", "reloaded").0 >= 1
                && totals(got, "tbhh-office", "temperature").0 >= 1
        })
        .await;
    assert_eq!(totals(&messages, "tbhh-office", "temperature"), (1, 3.0));
    assert_eq!(totals(&messages, "tbhh-office", "reloaded"), (1, 3.0));
}

/// `{"id", "data": {…}}` for a device whose codec has `encodeDownlink`:
/// the codec's bytes and FPort (those of the vendor's own encode vector)
/// reach the forwarder, and the result is `done` on its TX_ACK. A command
/// the codec refuses is `refused` (`codec`) and nothing is queued.
#[tokio::test]
async fn a_command_is_encoded_by_the_devices_codec_for_the_forwarder() {
    let cloud = Mosquitto::start();
    let (port, metrics) = (free_udp_port(), free_port());
    let mut results = Subscriber::start(cloud.port(), "building/hq/+/command/result").await;
    let mut gw = GatewayProcess::start_in(js_dir(), &js_config(cloud.port(), port, metrics));
    gw.wait_for_log("Semtech UDP server listening").await;
    gw.wait_for_log("Subscribed to commands on the upstream broker.")
        .await;
    let (nwk, app) = (hex_key(NWK), hex_key(APP));
    let mut fwd = Forwarder::connect(port, JS_GW).await;
    fwd.pull().await;
    let send = |body: serde_json::Value| {
        let port = cloud.port();
        async move {
            publish(
                port,
                "building/hq/zn2-soil/command",
                &with_ts(body).to_string(),
                1,
                false,
            )
            .await
        }
    };
    // test_encode_dl-zn2.json, "Set period 3600 seconds and save".
    send(serde_json::json!({"id": "z-1", "data": {"command": "set period + save", "parameter": 3600}}))
        .await;
    gw.wait_for_log("Downlink queued").await;
    fwd.push(&sealed(ZN2_ADDR, 1, 1, &[2, 0, 0], &nwk, &app), 5.0)
        .await;
    let (txpk, token) = fwd.pull_resp().await;
    let phy = unbase64(txpk["data"].as_str().unwrap());
    open_downlink(&phy, ZN2_ADDR, 0, &nwk);
    assert_eq!(phy[8], 1, "the codec's FPort");
    assert_eq!(
        decrypt_down(&phy[9..phy.len() - 4], ZN2_ADDR, 0, &app),
        [0, 2, 14, 16, 72, 164]
    );
    fwd.tx_ack(token, "NONE").await;
    let r = results
        .wait_for(WAIT, |m| m.json()["id"] == "z-1")
        .await
        .expect("the result of z-1")
        .json();
    assert_eq!(r["status"], "done", "{r}");

    // The codec reports an error for a command it does not know: refused.
    send(serde_json::json!({"id": "z-2", "data": {"command": "self destruct"}})).await;
    let r = results
        .wait_for(WAIT, |m| m.json()["id"] == "z-2")
        .await
        .expect("the result of z-2")
        .json();
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("refused"), Some("codec")),
        "{r}"
    );
    // A device whose codec has no encodeDownlink takes only bytes.
    publish(
        cloud.port(),
        "building/hq/looping/command",
        &with_ts(serde_json::json!({"id": "z-3", "data": {"x": 1}})).to_string(),
        1,
        false,
    )
    .await;
    let r = results
        .wait_for(WAIT, |m| m.json()["id"] == "z-3")
        .await
        .expect("the result of z-3")
        .json();
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("refused"), Some("type")),
        "{r}"
    );
}

fn edge_gateway(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// `codec test` runs every copied vendor codec's vectors (object
/// literals with comments and hex numbers, Buffer-using codecs among
/// them); a vector that does not match is one line naming it, and exit 1.
/// Digital Matter's G62 dates its `time` from the machine's clock, so its
/// vectors (written in January 2026) match on any other day but for that
/// field: counted apart with a note, and matched whole at a `--now` of
/// the day they were written.
#[test]
fn codec_test_runs_the_vendors_vectors_and_names_a_failing_one() {
    let all = vendor_file("");
    let (code, stdout, stderr) = edge_gateway(&["codec", "test", all.to_str().unwrap()]);
    assert_eq!(
        (code, stdout.as_str()),
        (
            Some(0),
            "decode: 33 of 35 passed (2 more but for fields that follow the machine's clock); encode: 17 of 17 passed\n"
        ),
        "{stderr}"
    );
    let notes: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("not compared"))
        .collect();
    assert_eq!(notes.len(), 2, "{stderr}");
    assert!(
        notes.iter().all(|n| n.contains("digital-matter-g62.js")
            && n.ends_with("`new Date()`): /time; `--now` judges them at a given instant")),
        "{stderr}"
    );
    let g62 = vendor_file("digital-matter/codecs/digital-matter-g62.js");
    let (code, stdout, stderr) = edge_gateway(&[
        "codec",
        "test",
        "--now",
        "2026-01-02T15:00:00Z",
        g62.to_str().unwrap(),
    ]);
    assert_eq!(
        (code, stdout.as_str()),
        (Some(0), "decode: 2 of 2 passed; encode: 0 of 0 passed\n"),
        "{stderr}"
    );
    let (code, stdout, _) = edge_gateway(&[
        "codec",
        "test",
        "--now",
        "2026-03-01T15:00:00Z",
        g62.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL ") && stdout.contains("\"time\""),
        "{stdout}"
    );
    // `decode --now`: a payload captured on the vector's day reads as then.
    let codec = format!("js:{}", g62.display());
    let (code, stdout, stderr) = edge_gateway(&[
        "decode",
        "--codec",
        &codec,
        "--fport",
        "1",
        "--now",
        "2026-01-02T15:00:00Z",
        "A026F5EC16A108450A12CAC9330000171C2318",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("time = \"2026-01-02T11:40:59.000Z\" (text field, not a reading)"),
        "{stdout}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        vendor_file("example-vendor/codecs/example.js"),
        dir.path().join("example.js"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("test_decode_example.json"),
        "[\n  // a wrong expectation\n  { name: 'off by one', input: { bytes: [0x15] }, expected: { data: { temp: 22 } } },\n  { name: 'right', input: { bytes: [0x15], fPort: 2 }, expected: { data: { temp: 21.0 } } },\n]\n",
    )
    .unwrap();
    let (code, stdout, _) = edge_gateway(&["codec", "test", dir.path().to_str().unwrap()]);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(code, Some(1), "{stdout}");
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("FAIL ") && lines[0].contains("\"off by one\""),
        "{stdout}"
    );
    assert!(lines[0].contains("expected 22, got 21"), "{stdout}");
    assert_eq!(lines[1], "decode: 1 of 2 passed; encode: 0 of 0 passed");
}

/// `decode --codec js:FILE --fport N HEX` prints the codec's whole result
/// as JSON, then the readings; `encode` prints the bytes and FPort; both
/// with vendors' codecs and their own vectors.
#[test]
fn decode_and_encode_run_a_vendors_script() {
    let hotdrop = format!("js:{}", vendor_file("vutility/codecs/hotdrop.js").display());
    let (code, stdout, stderr) = edge_gateway(&[
        "decode",
        "--codec",
        &hotdrop,
        "--fport",
        "3",
        "3200000000000000000000",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let end = stdout.find("\n}\n").expect("the result as JSON") + 2;
    let result: serde_json::Value = serde_json::from_str(&stdout[..end]).unwrap();
    assert_eq!(result["data"]["temperatureCelsius"], -40);
    assert_eq!(result["errors"], serde_json::json!([]));
    assert_eq!(
        result["warnings"],
        serde_json::json!(["Low capacitor voltage may reduce transmit interval."])
    );
    let readings: Vec<&str> = stdout[end..].lines().collect();
    assert!(readings.contains(&"temperatureCelsius = -40"), "{stdout}");
    assert!(readings.contains(&"ampHourAccumulation = 0"), "{stdout}");

    // The codec's own errors: the result, then EX_DATAERR.
    let (code, stdout, stderr) =
        edge_gateway(&["decode", "--codec", &hotdrop, "--fport", "3", "32"]);
    assert_eq!(code, Some(65), "{stdout}");
    assert!(stdout.contains("\"errors\""), "{stdout}");
    assert!(stderr.contains("decode failure"), "{stderr}");

    // A codec with The Things Stack's normalizeUplink: its quantities give
    // the metrics of equal value their units.
    let dir = tempfile::tempdir().unwrap();
    let normalizing = dir.path().join("n.js");
    std::fs::write(
        &normalizing,
        "function decodeUplink(i) { return { data: { temp: i.bytes[0] / 2, rh: i.bytes[1] } }; }\n\
         function normalizeUplink(i) { return { data: { air: { temperature: i.data.temp, relativeHumidity: i.data.rh } } }; }",
    )
    .unwrap();
    let codec = format!("js:{}", normalizing.display());
    let (code, stdout, stderr) = edge_gateway(&["decode", "--codec", &codec, "2B28"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("\"normalized\""), "{stdout}");
    assert!(stdout.ends_with("rh = 40 %\ntemp = 21.5 °C\n"), "{stdout}");

    // What the gateway makes of odd results, as it would: a codec's own
    // `rssi` kept apart from the radio's, two values flattening to one
    // name and a name too long to be a metric left out and said so, and a
    // reader that goes away (`| head -1`) ends the tool quietly.
    let odd = dir.path().join("odd.js");
    std::fs::write(
        &odd,
        format!(
            "function decodeUplink(i) {{ var d = {{ rssi: -71, a_b: 12, a: {{ b: 13 }}, {}: 10 }};\n\
             for (var k = 0; k < 600; k++) d['z' + k] = k; return {{ data: d }}; }}",
            "n".repeat(70)
        ),
    )
    .unwrap();
    let codec = format!("js:{}", odd.display());
    let (code, stdout, stderr) = edge_gateway(&["decode", "--codec", &codec, "01"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(
            "\nrssi_decoded = -71 (the codec's `rssi`: the uplink's own is the radio's)\n"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("\na_b = 13\n"), "{stdout}");
    assert!(
        stdout.contains("\na_b = 12 (left out: the same name as an earlier value)\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "\n{} = 10 (left out: not a metric name",
            "n".repeat(70)
        )),
        "{stdout}"
    );
    assert!(stdout.contains("more value(s) not read"), "{stdout}");
    let mut head = std::process::Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .args(["decode", "--codec", &codec, "01"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes before the tool has written a byte.
    drop(head.stdout.take());
    let gone = head.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&gone.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(gone.status.code(), Some(141), "{stderr}");

    // A whole PHYPayload: verified, decrypted, then the script on its FPort.
    let phy = sealed(TBHH_ADDR, 7, 103, &TBHH_2, &hex_key(NWK), &hex_key(APP));
    let phy: String = phy.iter().map(|b| format!("{b:02x}")).collect();
    let tbhh = format!(
        "js:{}",
        vendor_file("browan/codecs/tabs-tbhh100.js").display()
    );
    let (code, stdout, stderr) = edge_gateway(&[
        "decode",
        "--phy",
        &phy,
        "--nwk-s-key",
        NWK,
        "--app-s-key",
        APP,
        "--codec",
        &tbhh,
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("dev_addr = 26011001\n"), "{stdout}");
    assert!(stdout.contains("\nfport = 103\n"), "{stdout}");
    assert!(stdout.contains("\ntemperature = -19\n"), "{stdout}");

    let zn2 = format!("js:{}", vendor_file("decentlab/codecs/dl-zn2.js").display());
    let (code, stdout, stderr) = edge_gateway(&[
        "encode",
        "--codec",
        &zn2,
        "--json",
        r#"{"command": "set period + save", "parameter": 3600}"#,
    ]);
    assert_eq!(
        (code, stdout.as_str()),
        (Some(0), "{\"fPort\":1,\"bytes\":[0,2,14,16,72,164]}\n"),
        "{stderr}"
    );
}

/// A codec copied with its folder from The Things Network's device
/// repository: `codec test` runs the examples of the `*-codec.yaml` that
/// names it (hex bytes, a description for a name), and says which one
/// fails.
#[test]
fn codec_test_runs_a_device_repository_codec_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let vendor = dir.path().join("vendor/acme");
    std::fs::create_dir_all(&vendor).unwrap();
    std::fs::write(
        vendor.join("th1.js"),
        "function decodeUplink(input) {\n\
           return { data: { temperature: ((input.bytes[0] << 8) | input.bytes[1]) / 10, battery: input.bytes[2] } };\n\
         }\n\
         function encodeDownlink(input) { return { fPort: 10, bytes: [0x01, input.data.interval & 0xff] }; }\n",
    )
    .unwrap();
    std::fs::write(
        vendor.join("th1.yaml"),
        "name: TH1\ndescription: Temperature sensor\n",
    )
    .unwrap();
    let yaml = "uplinkDecoder:\n  fileName: th1.js\n  examples:\n\
                \x20   - description: Periodic report\n\
                \x20     input:\n        fPort: 1\n        bytes: [0x00, 0xEB, 0x5A]\n\
                \x20     output:\n        data:\n          temperature: 23.5\n          battery: 90\n\
                downlinkEncoder:\n  fileName: th1.js\n  examples:\n\
                \x20   - description: Set the interval\n\
                \x20     input:\n        data:\n          interval: 60\n\
                \x20     output:\n        fPort: 10\n        bytes: [0x01, 0x3C]\n";
    std::fs::write(vendor.join("th1-codec.yaml"), yaml).unwrap();
    let (code, stdout, stderr) = edge_gateway(&["codec", "test", dir.path().to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("decode: 1 of 1 passed; encode: 1 of 1 passed"),
        "{stdout}{stderr}"
    );
    std::fs::write(
        vendor.join("th1-codec.yaml"),
        yaml.replace("battery: 90", "battery: 91"),
    )
    .unwrap();
    let (code, stdout, _) = edge_gateway(&["codec", "test", dir.path().to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("\"Periodic report\""), "{stdout}");
}

/// `validate` compiles every script: a syntax error is a problem with its
/// file and line, a missing file one with the path it looked for.
#[test]
fn validate_names_a_scripts_syntax_error_by_file_and_line() {
    let dir = js_dir();
    std::fs::write(
        dir.path().join("codecs/throwing.js"),
        "function decodeUplink(input) {\n  var x = ;\n}\n",
    )
    .unwrap();
    std::fs::remove_file(dir.path().join("codecs/bomb.js")).unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        js_config(1883, 1700, 9100).replace("@STATE_DIR@", "/tmp"),
    )
    .unwrap();
    let (code, stdout, stderr) = edge_gateway(&["validate", "-c", config.to_str().unwrap()]);
    let all = format!("{stdout}{stderr}");
    assert_eq!(code, Some(78), "{all}");
    assert!(
        all.contains("lorawan.device[2].codec: codecs/throwing.js:2: SyntaxError"),
        "{all}"
    );
    assert!(
        all.contains("lorawan.device[3].codec: cannot read codecs/bomb.js"),
        "{all}"
    );
}
