//! Vendor payload codecs end to end: ABP devices configured with
//! `codec = "milesight"`, `"elsys"` and `"dragino_lht65"` send the vendors'
//! published example frames, sealed as real LoRaWAN uplinks, in Semtech
//! UDP datagrams over a real socket; the decoded values are checked in the
//! aggregates at a real upstream Mosquitto. A frame the codec refuses is
//! counted and logged, and the device's next frame still arrives.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use adapters::lorawan::frame::{seal, Key};
use common::{GatewayProcess, WAIT};
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
