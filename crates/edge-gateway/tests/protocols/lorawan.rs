//! The real binary's `semtech_udp` adapter, driven with Semtech UDP
//! datagrams over a real socket, aggregates checked at a real upstream
//! Mosquitto: ACK bytes, decoded values, replays and forgeries refused
//! (counted, nothing forwarded), de-duplication across gateways, and
//! frame counters that survive a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use adapters::lorawan::frame::{seal, Key};
use common::{GatewayProcess, WAIT};
use test_support::{free_udp_port, Message, Mosquitto, Subscriber};
use tokio::net::UdpSocket;

const LP_NWK: &str = "44024241ed4ce9a68c6a8bc055233fd3";
const LP_APP: &str = "ec925802ae430ca77fd3dd73cb2cc588";
/// lora-packet README frame: DevAddr 49BE7DF1, FCnt 2, FPort 1, "test".
const README: &str = "40F17DBE4900020001954378762B11FF0D";
/// lora-packet-bad-mic: the FCnt 3 frame with its last MIC byte changed.
const BAD_MIC: &str = "40F17DBE49000300012A3518AA";
/// Our seed device's session keys (not published anywhere).
const SEED_NWK: &str = "2b7e151628aed2a6abf7158809cf4f3c";
const SEED_APP: &str = "000102030405060708090a0b0c0d0e0f";
const SEED_ADDR: u32 = 0x260B_1234;

const GW_A: [u8; 8] = [0xAA, 0x55, 0x5A, 0, 0, 0, 0, 1];
const GW_B: [u8; 8] = [0xAA, 0x55, 0x5A, 0, 0, 0, 0, 2];

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

/// A PUSH_DATA datagram (protocol v2) carrying `phy` as one rxpk.
fn push_data(token: [u8; 2], gateway: [u8; 8], phy: &[u8], rssi: i16, extra: &str) -> Vec<u8> {
    let mut d = vec![2, token[0], token[1], 0x00];
    d.extend_from_slice(&gateway);
    let body = format!(
        r#"{{"rxpk":[{{"tmst":3512348611,"chan":2,"rfch":0,"freq":868.5,"stat":1,"modu":"LORA","datr":"SF7BW125","codr":"4/5","rssi":{rssi},"lsnr":7.5,"size":{},"data":"{}"}}]{extra}}}"#,
        phy.len(),
        base64(phy)
    );
    d.extend_from_slice(body.as_bytes());
    d
}

/// compact_i16: temperature ×10 (i16), humidity (u8), battery ×100 (u16).
fn seed_frame(fcnt: u32, temperature: f64, humidity: u8) -> Vec<u8> {
    let mut p = ((temperature * 10.0).round() as i16).to_be_bytes().to_vec();
    p.push(humidity);
    p.extend_from_slice(&330u16.to_be_bytes());
    let key = |s: &str| s.parse::<Key>().unwrap();
    seal(SEED_ADDR, fcnt, 2, &p, &key(SEED_NWK), &key(SEED_APP)).unwrap()
}

fn config(upstream: u16, port: u16) -> String {
    format!(
        r#"
[gateway]
id = "gw-lora"
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
dev_addr = "49BE7DF1"
nwk_s_key = "{LP_NWK}"
app_s_key = "{LP_APP}"
codec = "struct"
fields = [{{ name = "word", type = "u32" }}]
name = "lora-packet example"

[[lorawan.device]]
dev_addr = "{SEED_ADDR:08X}"
nwk_s_key = "{SEED_NWK}"
app_s_key = "{SEED_APP}"
codec = "compact_i16"
id = "seed-node"
"#
    )
}

struct Forwarder {
    socket: UdpSocket,
    token: u16,
}

impl Forwarder {
    async fn connect(port: u16) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.connect(("127.0.0.1", port)).await.unwrap();
        Self {
            socket,
            token: 0x1000,
        }
    }

    /// Sends `datagram` and returns the 4-byte answer.
    async fn exchange(&self, datagram: &[u8]) -> Vec<u8> {
        self.socket.send(datagram).await.unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(WAIT, self.socket.recv(&mut buf))
            .await
            .expect("no ACK")
            .unwrap();
        buf[..n].to_vec()
    }

    /// PUSH_DATA of `phy` from `gateway`; asserts the PUSH_ACK.
    async fn push(&mut self, gateway: [u8; 8], phy: &[u8]) {
        self.token = self.token.wrapping_add(1);
        let token = self.token.to_be_bytes();
        let ack = self
            .exchange(&push_data(token, gateway, phy, -60, ""))
            .await;
        assert_eq!(ack, [2, token[0], token[1], 0x01]);
    }

    /// The same with `stat` -1: the concentrator saw a bad CRC.
    async fn push_bad_crc(&mut self, gateway: [u8; 8], phy: &[u8]) {
        self.token = self.token.wrapping_add(1);
        let token = self.token.to_be_bytes();
        let mut datagram = push_data(token, gateway, phy, -60, "");
        let body = String::from_utf8(datagram.split_off(12)).unwrap();
        datagram.extend_from_slice(body.replace(r#""stat":1"#, r#""stat":-1"#).as_bytes());
        let ack = self.exchange(&datagram).await;
        assert_eq!(ack, [2, token[0], token[1], 0x01]);
    }
}

/// Upstream messages about `device` from aggregates.
fn metric_totals(messages: &[Message], device: &str, metric: &str) -> (u64, f64, f64) {
    let mut count = 0;
    let mut max = f64::NEG_INFINITY;
    let mut sum = 0.0;
    for m in messages
        .iter()
        .filter(|m| m.topic == format!("building/hq/{device}/aggregated"))
    {
        if let Some(s) = m.json()["metrics"].get(metric) {
            let n = s["count"].as_u64().unwrap();
            count += n;
            sum += n as f64 * s["avg"].as_f64().unwrap();
            max = max.max(s["max"].as_f64().unwrap());
        }
    }
    (count, sum, max)
}

async fn start(dir: tempfile::TempDir, upstream: u16, port: u16) -> GatewayProcess {
    let mut gw = GatewayProcess::start_in(dir, &config(upstream, port));
    gw.wait_for_log("Semtech UDP server listening").await;
    gw
}

#[tokio::test]
async fn acks_published_frame_and_gateway_stats_arrive_upstream() {
    let upstream = Mosquitto::start();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/#").await;
    let port = free_udp_port();
    let _gw = start(tempfile::tempdir().unwrap(), upstream.port(), port).await;
    let fwd = Forwarder::connect(port).await;

    // PULL_DATA: version 2, token 0xBEEF, 0x02, gateway EUI → PULL_ACK.
    let mut pull = vec![2, 0xBE, 0xEF, 0x02];
    pull.extend_from_slice(&GW_A);
    assert_eq!(fwd.exchange(&pull).await, [2, 0xBE, 0xEF, 0x04]);
    // A version 1 forwarder gets a version 1 ACK with the same token.
    let stat = r#","stat":{"time":"2026-11-21 10:00:00 GMT","rxnb":12,"rxok":10,"rxfw":10,"ackr":100.0,"dwnb":0,"txnb":0}"#;
    let mut push = push_data([0x00, 0x7F], GW_A, &hex(README), -57, stat);
    push[0] = 1;
    assert_eq!(fwd.exchange(&push).await, [1, 0x00, 0x7F, 0x01]);
    // TX_ACK is accepted without an answer; a PULL_DATA after it still is.
    let mut tx_ack = vec![2, 0x00, 0x01, 0x05];
    tx_ack.extend_from_slice(&GW_A);
    tx_ack.extend_from_slice(br#"{"txpk_ack":{"error":"NONE"}}"#);
    fwd.socket.send(&tx_ack).await.unwrap();
    pull[1] = 0x01;
    assert_eq!(fwd.exchange(&pull).await, [2, 0x01, 0xEF, 0x04]);

    let messages = sub
        .collect_until(WAIT, |got| {
            metric_totals(got, "49BE7DF1", "word").0 >= 1
                && metric_totals(got, "aa555a0000000001", "rxnb").0 >= 1
        })
        .await;
    let (count, sum, _) = metric_totals(&messages, "49BE7DF1", "word");
    assert_eq!((count, sum), (1, f64::from(u32::from_be_bytes(*b"test"))));
    assert_eq!(
        metric_totals(&messages, "49BE7DF1", "rssi"),
        (1, -57.0, -57.0)
    );
    assert_eq!(metric_totals(&messages, "49BE7DF1", "snr").1, 7.5);
    let agg = messages
        .iter()
        .find(|m| m.topic == "building/hq/49BE7DF1/aggregated")
        .unwrap()
        .json();
    assert_eq!(agg["name"], "lora-packet example");
    assert_eq!(metric_totals(&messages, "aa555a0000000001", "rxnb").1, 12.0);
    assert_eq!(
        metric_totals(&messages, "aa555a0000000001", "ackr").1,
        100.0
    );
}

#[tokio::test]
async fn replays_and_forgeries_are_refused_duplicates_merged_and_counters_survive_restart() {
    let upstream = Mosquitto::start();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/#").await;
    let port = free_udp_port();
    let mut gw = start(tempfile::tempdir().unwrap(), upstream.port(), port).await;
    let mut fwd = Forwarder::connect(port).await;
    let mut seen: Vec<Message> = Vec::new();
    // Collects upstream messages until the seed node's humidity max reaches `marker`.
    async fn until_marker(sub: &mut Subscriber, seen: &mut Vec<Message>, marker: f64) {
        let more = sub
            .collect_until(WAIT, |got| {
                let all: Vec<Message> = seen.iter().chain(got).cloned().collect();
                metric_totals(&all, "seed-node", "humidity").2 >= marker
            })
            .await;
        seen.extend(more);
        assert!(
            metric_totals(seen, "seed-node", "humidity").2 >= marker,
            "marker {marker} never arrived: {seen:#?}"
        );
    }

    // One transmission heard by two forwarders: one reading set, two gateways.
    let f1 = seed_frame(1, 21.5, 41);
    fwd.push(GW_A, &f1).await;
    fwd.push(GW_B, &f1).await;
    until_marker(&mut sub, &mut seen, 41.0).await;
    assert_eq!(
        metric_totals(&seen, "seed-node", "temperature"),
        (1, 21.5, 21.5)
    );
    assert_eq!(metric_totals(&seen, "seed-node", "gateways").1, 2.0);

    // A frame with a bad CRC is dropped: had it counted, its FCnt 5
    // would make frames 2 and 3 replays.
    fwd.push_bad_crc(GW_A, &seed_frame(5, 99.0, 99)).await;
    gw.wait_for_log("crc_error").await;
    // The same frame again, a forged MIC, then the next frame.
    fwd.push(GW_A, &f1).await;
    gw.wait_for_log("fcnt_retransmission").await;
    fwd.push(GW_A, &hex(BAD_MIC)).await;
    gw.wait_for_log("invalid_mic").await;
    fwd.push(GW_A, &seed_frame(2, 22.0, 42)).await;
    // An older frame after a newer one: a replay.
    fwd.push(GW_B, &f1).await;
    gw.wait_for_log("fcnt_replay").await;
    fwd.push(GW_A, &seed_frame(3, 23.0, 43)).await;
    until_marker(&mut sub, &mut seen, 43.0).await;
    assert_eq!(
        metric_totals(&seen, "seed-node", "temperature"),
        (3, 66.5, 23.0),
        "only frames 1, 2 and 3 are forwarded"
    );

    // Stop: every refusal was counted.
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
    gw.drain_log().await;
    assert_eq!(gw.last_logged("adapter_errors"), Some(4.0));
    let state = gw.dir.path().join("state");
    let saved = std::fs::read_to_string(state.join("lorawan-fcnt.json")).unwrap();
    let saved: serde_json::Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(saved["last_fcnt"]["seed-node"], 3, "{saved}");

    // After a restart the counters still refuse old frames.
    let dir = gw.dir;
    let mut gw = start(dir, upstream.port(), port).await;
    let mut fwd = Forwarder::connect(port).await;
    fwd.push(GW_A, &seed_frame(2, 22.0, 42)).await;
    gw.wait_for_log("fcnt_replay").await;
    fwd.push(GW_A, &seed_frame(4, 24.0, 44)).await;
    until_marker(&mut sub, &mut seen, 44.0).await;
    assert_eq!(
        metric_totals(&seen, "seed-node", "temperature").0,
        4,
        "the replay after the restart is not forwarded"
    );
}

/// Uplinks a network server already handled, published with mosquitto_pub
/// as ChirpStack v4 and The Things Stack v3 do.
#[tokio::test]
async fn chirpstack_and_tts_events_arrive_through_the_mqtt_adapter() {
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/#").await;
    let text = format!(
        r#"
[gateway]
id = "gw-lns"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{up}"
max_backoff = "1s"

[aggregation]
window = "1s"
grace = "1s"

[[adapter]]
type = "mqtt"
name = "network-servers"
url = "mqtt://127.0.0.1:{local}"
topics = [
  {{ pattern = "application/+/device/{{device}}/event/up", format = "chirpstack_v4", codec = "compact_i16" }},
  "v3/+/devices/{{device}}/up",
]
status_topics = []
max_backoff = "1s"
"#,
        up = upstream.port(),
        local = local.port()
    );
    let mut gw = GatewayProcess::start(&text);
    gw.wait_for_log("Subscribed").await;
    // FRMPayload only: the route's codec decodes it (00d72d0172: 21.5 °C, 45 %, 3.7 V).
    let chirpstack = r#"{"deviceInfo":{"devEui":"0101010101010101"},"fCnt":10,"fPort":2,"data":"ANctAXI=","rxInfo":[{"gatewayId":"a","rssi":-70,"snr":3.5},{"gatewayId":"b","rssi":-50,"snr":-1.0}]}"#;
    test_support::publish(
        local.port(),
        "application/7c0e/device/0101010101010101/event/up",
        chirpstack,
        1,
        false,
    )
    .await;
    // A decoded payload is taken as the server decoded it.
    let tts = r#"{"end_device_ids":{"device_id":"co2-7","dev_eui":"70B3D57ED0001234"},"uplink_message":{"f_port":1,"frm_payload":"AZA=","decoded_payload":{"co2":612},"rx_metadata":[{"rssi":-42,"snr":9.25}]}}"#;
    test_support::publish(
        local.port(),
        "v3/building@ttn/devices/co2-7/up",
        tts,
        1,
        false,
    )
    .await;
    let messages = sub
        .collect_until(WAIT, |got| {
            metric_totals(got, "0101010101010101", "temperature").0 >= 1
                && metric_totals(got, "co2-7", "co2").0 >= 1
        })
        .await;
    assert_eq!(
        metric_totals(&messages, "0101010101010101", "temperature"),
        (1, 21.5, 21.5)
    );
    assert_eq!(
        metric_totals(&messages, "0101010101010101", "rssi").1,
        -50.0
    );
    assert_eq!(
        metric_totals(&messages, "0101010101010101", "gateways").1,
        2.0
    );
    assert_eq!(metric_totals(&messages, "co2-7", "co2"), (1, 612.0, 612.0));
    assert_eq!(metric_totals(&messages, "co2-7", "snr").1, 9.25);
}
