//! OTAA against the real binary, the way a packet forwarder and a device
//! play it: PULL_DATA opens the downlink path, a join-request built here
//! (keys chosen here) arrives in PUSH_DATA, the join-accept comes back in a
//! PULL_RESP on the forwarder's socket. The accept is decrypted, its MIC
//! checked and the session keys derived by this file's own LoRaWAN 1.0.x
//! crypto (the `aes` and `cmac` crates directly, nothing of the gateway's),
//! then an uplink under those keys must reach the upstream Mosquitto as
//! readings. Faults: a wrong MIC, a replayed DevNonce (also after a
//! kill -9), an unknown DevEUI, a TX_ACK error: each counted by reason on
//! `/metrics`, while another device's uplinks keep flowing. ABP devices
//! get queued downlinks, MAC answers and ACKs too, and the downlink broker
//! may be reached over TLS with a password. Commands from the cloud broker
//! reach the same queue; their result waits for the forwarder's TX_ACK.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128;
use cmac::{Cmac, Mac};
use common::{http_until, GatewayProcess, WAIT};
use test_support::{free_port, free_udp_port, publish, Message, Mosquitto, Subscriber};
use tokio::net::UdpSocket;

const APP_KEY: [u8; 16] = [
    0x8A, 0x1F, 0x3C, 0x55, 0x90, 0x12, 0xAB, 0xCD, 0xEF, 0x01, 0x23, 0x45, 0x67, 0x89, 0x9E, 0x0D,
];
const DEV_EUI: [u8; 8] = [0x24, 0xE1, 0x24, 0x13, 0x6B, 0x32, 0x40, 0x01];
const JOIN_EUI: [u8; 8] = [0x24, 0xE1, 0x24, 0xC0, 0x00, 0x02, 0xA0, 0x01];
const UNKNOWN_EUI: [u8; 8] = [0x24, 0xE1, 0x24, 0x13, 0x6B, 0x32, 0x40, 0xFF];
/// An ABP neighbour whose uplinks must not suffer from the joins.
const ABP_ADDR: u32 = 0x260B_1234;
const ABP_NWK: &str = "2b7e151628aed2a6abf7158809cf4f3c";
const ABP_APP: &str = "000102030405060708090a0b0c0d0e0f";

const GW_NEAR: [u8; 8] = [0xAA, 0x55, 0x5A, 0, 0, 0, 0, 1];
const GW_FAR: [u8; 8] = [0xAA, 0x55, 0x5A, 0, 0, 0, 0, 2];
const TMST: u32 = 4_000_000_000;

// ---- The test's own LoRaWAN 1.0.x crypto (spec §6.2.4, §6.2.5, §4.4) ----

pub(crate) fn cmac4(key: &[u8; 16], msg: &[u8]) -> [u8; 4] {
    let mut mac = <Cmac<Aes128> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(msg);
    let t = mac.finalize().into_bytes();
    [t[0], t[1], t[2], t[3]]
}

pub(crate) fn aes_encrypt(key: &[u8; 16], block: &[u8]) -> [u8; 16] {
    let cipher = Aes128::new_from_slice(key).unwrap();
    let mut b = aes::Block::clone_from_slice(block);
    cipher.encrypt_block(&mut b);
    b.into()
}

fn le(eui: [u8; 8]) -> Vec<u8> {
    eui.iter().rev().copied().collect()
}

fn join_request(dev_eui: [u8; 8], dev_nonce: u16, key: &[u8; 16]) -> Vec<u8> {
    let mut phy = vec![0x00];
    phy.extend(le(JOIN_EUI));
    phy.extend(le(dev_eui));
    phy.extend(dev_nonce.to_le_bytes());
    let mic = cmac4(key, &phy);
    phy.extend(mic);
    phy
}

struct Accept {
    join_nonce: [u8; 3],
    net_id: [u8; 3],
    dev_addr: u32,
    dl_settings: u8,
    rx_delay: u8,
}

/// The device's side: AES-encrypt undoes the network's decrypt, then the
/// MIC over MHDR | plaintext must match.
fn open_accept(phy: &[u8]) -> Accept {
    assert_eq!(phy[0], 0x20, "MHDR of a join-accept");
    assert_eq!(phy.len(), 17, "no CFList");
    let mut plain = vec![phy[0]];
    plain.extend(aes_encrypt(&APP_KEY, &phy[1..17]));
    let (body, mic) = plain.split_at(13);
    assert_eq!(cmac4(&APP_KEY, body), mic, "join-accept MIC");
    Accept {
        join_nonce: [body[1], body[2], body[3]],
        net_id: [body[4], body[5], body[6]],
        dev_addr: u32::from_le_bytes([body[7], body[8], body[9], body[10]]),
        dl_settings: body[11],
        rx_delay: body[12],
    }
}

/// A data downlink's FOpts, after checking its MIC (direction 1) with the
/// NwkSKey and the expected FCntDown.
pub(crate) fn open_downlink(phy: &[u8], dev_addr: u32, fcnt_down: u32, nwk: &[u8; 16]) -> Vec<u8> {
    assert_eq!(
        u32::from_le_bytes([phy[1], phy[2], phy[3], phy[4]]),
        dev_addr
    );
    assert_eq!(u16::from_le_bytes([phy[6], phy[7]]), fcnt_down as u16);
    let (msg, mic) = phy.split_at(phy.len() - 4);
    let mut b0 = [0u8; 16];
    b0[0] = 0x49;
    b0[5] = 1;
    b0[6..10].copy_from_slice(&dev_addr.to_le_bytes());
    b0[10..14].copy_from_slice(&fcnt_down.to_le_bytes());
    b0[15] = msg.len() as u8;
    let mut all = b0.to_vec();
    all.extend(msg);
    assert_eq!(cmac4(nwk, &all), mic, "downlink MIC");
    let fopts_len = usize::from(phy[5] & 0x0F);
    phy[8..8 + fopts_len].to_vec()
}

/// FRMPayload of a downlink, decrypted (spec §4.3.3, direction 1).
pub(crate) fn decrypt_down(data: &[u8], dev_addr: u32, fcnt_down: u32, app: &[u8; 16]) -> Vec<u8> {
    let mut a = [0u8; 16];
    a[0] = 0x01;
    a[5] = 1;
    a[6..10].copy_from_slice(&dev_addr.to_le_bytes());
    a[10..14].copy_from_slice(&fcnt_down.to_le_bytes());
    a[15] = 1;
    let s = aes_encrypt(app, &a);
    data.iter().zip(s).map(|(d, k)| d ^ k).collect()
}

fn mosquitto_pub(port: u16, topic: &str, message: &str) {
    let ok = std::process::Command::new("mosquitto_pub")
        .args([
            "-p",
            &port.to_string(),
            "-q",
            "1",
            "-t",
            topic,
            "-m",
            message,
        ])
        .status()
        .unwrap()
        .success();
    assert!(ok, "mosquitto_pub failed");
}

fn derive(prefix: u8, a: &Accept, dev_nonce: u16) -> [u8; 16] {
    let mut block = [0u8; 16];
    block[0] = prefix;
    block[1..4].copy_from_slice(&a.join_nonce);
    block[4..7].copy_from_slice(&a.net_id);
    block[7..9].copy_from_slice(&dev_nonce.to_le_bytes());
    aes_encrypt(&APP_KEY, &block)
}

/// An unconfirmed uplink (spec §4.3.3 encryption, §4.4 MIC).
pub(crate) fn uplink(
    dev_addr: u32,
    fcnt: u16,
    fport: u8,
    payload: &[u8],
    nwk: &[u8; 16],
    app: &[u8; 16],
) -> Vec<u8> {
    uplink_with(dev_addr, fcnt, &[], fport, payload, nwk, app)
}

/// The same with the ACK bit: the device received a confirmed downlink.
fn uplink_acking(
    dev_addr: u32,
    fcnt: u16,
    payload: &[u8],
    nwk: &[u8; 16],
    app: &[u8; 16],
) -> Vec<u8> {
    let mut phy = uplink(dev_addr, fcnt, 2, payload, nwk, app);
    phy[5] |= 0x20;
    // FCtrl is under the MIC: compute it again.
    let msg_len = phy.len() - 4;
    let mut b0 = [0u8; 16];
    b0[0] = 0x49;
    b0[6..10].copy_from_slice(&dev_addr.to_le_bytes());
    b0[10..12].copy_from_slice(&fcnt.to_le_bytes());
    b0[15] = msg_len as u8;
    let mut all = b0.to_vec();
    all.extend(&phy[..msg_len]);
    let mic = cmac4(nwk, &all);
    phy[msg_len..].copy_from_slice(&mic);
    phy
}

/// The same with MAC commands in FOpts.
pub(crate) fn uplink_with(
    dev_addr: u32,
    fcnt: u16,
    fopts: &[u8],
    fport: u8,
    payload: &[u8],
    nwk: &[u8; 16],
    app: &[u8; 16],
) -> Vec<u8> {
    let mut enc = Vec::new();
    for (i, chunk) in payload.chunks(16).enumerate() {
        let mut a = [0u8; 16];
        a[0] = 0x01;
        a[6..10].copy_from_slice(&dev_addr.to_le_bytes());
        a[10..12].copy_from_slice(&fcnt.to_le_bytes());
        a[15] = (i + 1) as u8;
        let s = aes_encrypt(app, &a);
        enc.extend(chunk.iter().zip(s).map(|(d, k)| d ^ k));
    }
    let mut msg = vec![0x40];
    msg.extend(dev_addr.to_le_bytes());
    // ADR bit set, as devices that let the network choose their rate do.
    msg.push(0x80 | fopts.len() as u8);
    msg.extend(fcnt.to_le_bytes());
    msg.extend(fopts);
    msg.push(fport);
    msg.extend(enc);
    let mut b0 = [0u8; 16];
    b0[0] = 0x49;
    b0[6..10].copy_from_slice(&dev_addr.to_le_bytes());
    b0[10..12].copy_from_slice(&fcnt.to_le_bytes());
    b0[15] = msg.len() as u8;
    let mut all = b0.to_vec();
    all.extend(&msg);
    let mic = cmac4(nwk, &all);
    msg.extend(mic);
    msg
}

/// compact_i16: temperature ×10 (i16 BE), humidity (u8), battery ×100 (u16 BE).
fn compact(temperature: f64, humidity: u8) -> Vec<u8> {
    let mut p = ((temperature * 10.0).round() as i16).to_be_bytes().to_vec();
    p.push(humidity);
    p.extend_from_slice(&330u16.to_be_bytes());
    p
}

pub(crate) fn hex_key(s: &str) -> [u8; 16] {
    let mut k = [0u8; 16];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    k
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(crate) fn unbase64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

// ---- The forwarder ----

pub(crate) struct Forwarder {
    socket: UdpSocket,
    eui: [u8; 8],
    token: u16,
}

impl Forwarder {
    pub(crate) async fn connect(port: u16, eui: [u8; 8]) -> Self {
        Self::connect_from("127.0.0.1", port, eui).await
    }

    /// From `ip`: another host, as far as the gateway can tell (all of
    /// 127.0.0.0/8 is this machine's loopback).
    pub(crate) async fn connect_from(ip: &str, port: u16, eui: [u8; 8]) -> Self {
        let socket = UdpSocket::bind((ip, 0)).await.unwrap();
        socket.connect(("127.0.0.1", port)).await.unwrap();
        Self {
            socket,
            eui,
            token: 0x2000,
        }
    }

    async fn recv(&self) -> Vec<u8> {
        let mut buf = [0u8; 2048];
        let n = tokio::time::timeout(WAIT, self.socket.recv(&mut buf))
            .await
            .expect("nothing from the gateway")
            .unwrap();
        buf[..n].to_vec()
    }

    fn next_token(&mut self) -> [u8; 2] {
        self.token = self.token.wrapping_add(1);
        self.token.to_be_bytes()
    }

    /// PULL_DATA, and its PULL_ACK.
    pub(crate) async fn pull(&mut self) {
        let token = self.next_token();
        let mut d = vec![2, token[0], token[1], 0x02];
        d.extend_from_slice(&self.eui);
        self.socket.send(&d).await.unwrap();
        assert_eq!(self.recv().await, [2, token[0], token[1], 0x04], "PULL_ACK");
    }

    /// PULL_DATA that the gateway refuses: it gets no PULL_ACK.
    pub(crate) async fn pull_refused(&mut self) {
        let token = self.next_token();
        let mut d = vec![2, token[0], token[1], 0x02];
        d.extend_from_slice(&self.eui);
        self.socket.send(&d).await.unwrap();
    }

    /// PUSH_DATA of `phy` heard at `snr`, and its PUSH_ACK.
    pub(crate) async fn push(&mut self, phy: &[u8], snr: f64) {
        self.push_at(phy, snr, TMST).await;
    }

    /// [`Self::push`] heard at `tmst` on this forwarder's clock.
    pub(crate) async fn push_at(&mut self, phy: &[u8], snr: f64, tmst: u32) {
        let token = self.next_token();
        let mut d = vec![2, token[0], token[1], 0x00];
        d.extend_from_slice(&self.eui);
        let body = format!(
            r#"{{"rxpk":[{{"tmst":{tmst},"chan":0,"rfch":1,"freq":868.1,"stat":1,"modu":"LORA","datr":"SF9BW125","codr":"4/5","rssi":-97,"lsnr":{snr},"size":{},"data":"{}"}}]}}"#,
            phy.len(),
            base64(phy)
        );
        d.extend_from_slice(body.as_bytes());
        self.socket.send(&d).await.unwrap();
        assert_eq!(self.recv().await, [2, token[0], token[1], 0x01], "PUSH_ACK");
    }

    /// The next PULL_RESP's `txpk`.
    pub(crate) async fn pull_resp(&self) -> (serde_json::Value, [u8; 2]) {
        let d = self.recv().await;
        assert_eq!((d[0], d[3]), (2, 0x03), "a PULL_RESP: {d:?}");
        let json: serde_json::Value = serde_json::from_slice(&d[4..]).unwrap();
        (json["txpk"].clone(), [d[1], d[2]])
    }

    pub(crate) async fn tx_ack(&self, token: [u8; 2], error: &str) {
        let mut d = vec![2, token[0], token[1], 0x05];
        d.extend_from_slice(&self.eui);
        d.extend_from_slice(format!(r#"{{"txpk_ack":{{"error":"{error}"}}}}"#).as_bytes());
        self.socket.send(&d).await.unwrap();
    }
}

fn config(upstream: u16, port: u16, metrics: u16, commands: u16) -> String {
    format!(
        r#"
[gateway]
id = "gw-otaa"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{upstream}"
qos = 1
max_backoff = "1s"

[aggregation]
window = "1s"
grace = "1s"

[metrics]
bind = "127.0.0.1:{metrics}"

[[adapter]]
type = "semtech_udp"
name = "lora"
bind = "127.0.0.1:{port}"
downlink_broker = "mqtt://127.0.0.1:{commands}"
downlink_topic = "building/hq/{{device}}/down"

[lorawan]
net_id = "000013"
region = "EU868"

[[lorawan.device]]
dev_eui = "{dev_eui}"
app_eui = "{join_eui}"
app_key = "env:TEST_OTAA_APP_KEY"
codec = "compact_i16"
id = "office-th"

[[lorawan.device]]
dev_addr = "{ABP_ADDR:08X}"
nwk_s_key = "{ABP_NWK}"
app_s_key = "{ABP_APP}"
codec = "compact_i16"
id = "abp-node"
"#,
        dev_eui = hex(&DEV_EUI),
        join_eui = hex(&JOIN_EUI),
    )
}

fn start(dir: tempfile::TempDir, cfg: &str) -> GatewayProcess {
    GatewayProcess::start_in_with(dir, cfg, &[("TEST_OTAA_APP_KEY", &hex(&APP_KEY))])
}

pub(crate) fn totals(messages: &[Message], device: &str, metric: &str) -> (u64, f64) {
    let (mut count, mut max) = (0, f64::NEG_INFINITY);
    for m in messages
        .iter()
        .filter(|m| m.topic == format!("building/hq/{device}/aggregated"))
    {
        if let Some(s) = m.json()["metrics"].get(metric) {
            count += s["count"].as_u64().unwrap();
            max = max.max(s["max"].as_f64().unwrap());
        }
    }
    (count, max)
}

/// The value of `edge_gateway_…{labels}` on `/metrics`, once it reaches `min`.
pub(crate) async fn metric_at_least(port: u16, series: &str, min: f64) -> f64 {
    let value = |body: &str| test_support::metrics::sample(body, series);
    let (_, body) = http_until(port, "/metrics", |_, b| value(b).is_some_and(|v| v >= min)).await;
    value(&body).unwrap_or_else(|| panic!("{series} never reached {min}:\n{body}"))
}

/// Joins with `dev_nonce` through `near` (heard better than `far`) and
/// returns the session: DevAddr, NwkSKey, AppSKey.
async fn join(
    near: &mut Forwarder,
    far: &mut Forwarder,
    dev_nonce: u16,
) -> (u32, [u8; 16], [u8; 16]) {
    let request = join_request(DEV_EUI, dev_nonce, &APP_KEY);
    far.push(&request, -4.0).await;
    near.push(&request, 6.5).await;
    let (txpk, _) = near.pull_resp().await;
    // RX1 of a join: JoinAcceptDelay1 after the uplink, same channel and
    // data rate in EU868, from the forwarder with the best SNR.
    assert_eq!(
        txpk["tmst"],
        u64::from(TMST.wrapping_add(5_000_000)),
        "{txpk}"
    );
    assert_eq!(txpk["imme"], false);
    assert_eq!(txpk["freq"], 868.1);
    assert_eq!(txpk["datr"], "SF9BW125");
    assert_eq!(txpk["rfch"], 1);
    assert_eq!(txpk["ipol"], true);
    assert_eq!(txpk["modu"], "LORA");
    let phy = unbase64(txpk["data"].as_str().unwrap());
    assert_eq!(txpk["size"], phy.len());
    let accept = open_accept(&phy);
    assert_eq!(accept.net_id, [0x13, 0, 0], "NetID 000013, little-endian");
    assert_eq!(accept.dev_addr >> 25, 0x13, "DevAddr carries the NwkID");
    assert_eq!((accept.dl_settings, accept.rx_delay), (0, 2), "RxDelay 2 s");
    (
        accept.dev_addr,
        derive(0x01, &accept, dev_nonce),
        derive(0x02, &accept, dev_nonce),
    )
}

#[tokio::test]
async fn an_otaa_device_joins_uplinks_and_faults_are_counted() {
    let upstream = Mosquitto::start();
    let commands = Mosquitto::start();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/#").await;
    let (port, metrics) = (free_udp_port(), free_port());
    let cfg = config(upstream.port(), port, metrics, commands.port());
    let mut gw = start(tempfile::tempdir().unwrap(), &cfg);
    gw.wait_for_log("Semtech UDP server listening").await;
    gw.wait_for_log("Subscribed to LoRaWAN downlinks").await;
    let mut near = Forwarder::connect(port, GW_NEAR).await;
    let mut far = Forwarder::connect(port, GW_FAR).await;
    near.pull().await;
    far.pull().await;

    let (addr, nwk, app) = join(&mut near, &mut far, 0x0101).await;
    gw.wait_for_log("Device joined").await;
    assert!(
        !gw.seen
            .iter()
            .any(|l| l.to_uppercase().contains(&hex(&APP_KEY))
                || l.to_uppercase().contains(&hex(&nwk))),
        "keys never reach the log"
    );
    // LinkCheckReq and DeviceTimeReq in FOpts: answered in RX1, the
    // RxDelay of the accept (2 s) after the uplink, FCntDown 0.
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let up1 = uplink_with(addr, 1, &[0x02, 0x0D], 2, &compact(21.5, 40), &nwk, &app);
    near.push(&up1, 6.0).await;
    let (txpk, _) = near.pull_resp().await;
    assert_eq!(
        txpk["tmst"],
        u64::from(TMST.wrapping_add(2_000_000)),
        "{txpk}"
    );
    assert_eq!(
        (txpk["freq"].as_f64(), txpk["datr"].as_str()),
        (Some(868.1), Some("SF9BW125"))
    );
    let fopts = open_downlink(&unbase64(txpk["data"].as_str().unwrap()), addr, 0, &nwk);
    // SF9 demodulates down to −12.5 dB: 6 dB SNR is an 18 dB margin; one
    // gateway heard it.
    assert_eq!(&fopts[..3], &[0x02, 18, 1], "LinkCheckAns");
    assert_eq!(fopts[3], 0x0D, "DeviceTimeAns");
    let gps = u32::from_le_bytes([fopts[4], fopts[5], fopts[6], fopts[7]]);
    let expected = (before - 315_964_800 + 18) as u32;
    assert!(
        (expected..expected + 30).contains(&gps),
        "GPS time {gps}, expected ≈{expected}"
    );

    // An application downlink published on the command broker goes out
    // in RX1 after the device's next uplink, FRMPayload encrypted with the
    // AppSKey (direction 1, FCntDown 1).
    mosquitto_pub(
        commands.port(),
        "building/hq/office-th/down",
        r#"{"port": 10, "data": "0a0b0c", "confirmed": false}"#,
    );
    gw.wait_for_log("Downlink queued").await;
    near.push(&uplink(addr, 2, 2, &compact(21.0, 40), &nwk, &app), 6.0)
        .await;
    let (txpk, _) = near.pull_resp().await;
    assert_eq!(txpk["tmst"], u64::from(TMST.wrapping_add(2_000_000)));
    let phy = unbase64(txpk["data"].as_str().unwrap());
    assert_eq!(phy[0], 0x60, "unconfirmed data down");
    assert!(
        open_downlink(&phy, addr, 1, &nwk).is_empty(),
        "no MAC answers"
    );
    assert_eq!(phy[8], 10, "FPort");
    assert_eq!(
        decrypt_down(&phy[9..phy.len() - 4], addr, 1, &app),
        [10, 11, 12]
    );

    // Faults, each refused and counted; the ABP neighbour keeps flowing.
    let abp = |fcnt, t, h| {
        uplink(
            ABP_ADDR,
            fcnt,
            2,
            &compact(t, h),
            &hex_key(ABP_NWK),
            &hex_key(ABP_APP),
        )
    };
    let mut forged = join_request(DEV_EUI, 0x0202, &APP_KEY);
    forged[22] ^= 0x01;
    near.push(&forged, 5.0).await;
    near.push(&join_request(DEV_EUI, 0x0101, &APP_KEY), 5.0)
        .await;
    near.push(&join_request(UNKNOWN_EUI, 0x0303, &APP_KEY), 5.0)
        .await;
    near.push(&abp(1, 19.0, 55), 3.0).await;
    let adapter_errors = |kind: &str| {
        format!(r#"edge_gateway_adapter_errors_total{{adapter="lora",error_type="{kind}"}}"#)
    };
    assert_eq!(
        metric_at_least(metrics, &adapter_errors("join_invalid_mic"), 1.0).await,
        1.0
    );
    assert_eq!(
        metric_at_least(metrics, &adapter_errors("join_dev_nonce_replay"), 1.0).await,
        1.0
    );
    assert_eq!(
        metric_at_least(metrics, &adapter_errors("join_unknown_dev_eui"), 1.0).await,
        1.0
    );

    // A forwarder that could not transmit says so in TX_ACK.
    far.tx_ack([0, 1], "TOO_LATE").await;
    let too_late = r#"edge_gateway_lorawan_tx_ack_errors_total{adapter="lora",reason="too_late"}"#;
    assert_eq!(metric_at_least(metrics, too_late, 1.0).await, 1.0);

    let messages = sub
        .collect_until(WAIT, |got| {
            totals(got, "office-th", "temperature").0 >= 2
                && totals(got, "abp-node", "humidity").0 >= 1
        })
        .await;
    assert_eq!(
        totals(&messages, "office-th", "temperature"),
        (2, 21.5),
        "both uplinks decoded under the derived keys"
    );
    assert_eq!(totals(&messages, "office-th", "humidity"), (2, 40.0));
    assert_eq!(
        totals(&messages, "abp-node", "humidity"),
        (1, 55.0),
        "the neighbour was not lost"
    );

    // kill -9, then the same gateway: the session and the used DevNonce
    // are remembered.
    gw.signal("KILL");
    gw.wait_exit().await;
    let mut gw = start(gw.dir, &cfg);
    gw.wait_for_log("Semtech UDP server listening").await;
    near.pull().await;
    near.push(&uplink(addr, 3, 2, &compact(22.5, 41), &nwk, &app), 6.0)
        .await;
    near.push(&join_request(DEV_EUI, 0x0101, &APP_KEY), 5.0)
        .await;
    assert_eq!(
        metric_at_least(metrics, &adapter_errors("join_dev_nonce_replay"), 1.0).await,
        1.0
    );
    let messages = sub
        .collect_until(WAIT, |got| totals(got, "office-th", "humidity").1 >= 41.0)
        .await;
    gw.take_log();
    assert_eq!(
        totals(&messages, "office-th", "temperature").1,
        22.5,
        "the session survived: {messages:#?}\n{}",
        gw.seen.join("\n")
    );

    // A rejoin replaces the session: the old keys stop working.
    far.pull().await;
    let (addr2, nwk2, app2) = join(&mut near, &mut far, 0x0404).await;
    assert_ne!((addr2, nwk2), (addr, nwk));
    near.push(&uplink(addr, 4, 2, &compact(30.0, 90), &nwk, &app), 6.0)
        .await;
    near.push(&uplink(addr2, 1, 2, &compact(23.5, 42), &nwk2, &app2), 6.0)
        .await;
    let messages = sub
        .collect_until(WAIT, |got| totals(got, "office-th", "humidity").1 >= 42.0)
        .await;
    assert_eq!(
        totals(&messages, "office-th", "temperature"),
        (1, 23.5),
        "only the new session's uplink"
    );
    let old_session =
        r#"edge_gateway_adapter_errors_total{adapter="lora",error_type="unknown_dev_addr"}"#;
    assert!(metric_at_least(metrics, old_session, 1.0).await >= 1.0);
}

/// `phy` sent as a confirmed uplink: MHDR is under the MIC, so it is
/// computed again.
fn confirmed(mut phy: Vec<u8>, nwk: &[u8; 16]) -> Vec<u8> {
    phy[0] = 0x80;
    let msg_len = phy.len() - 4;
    let mut b0 = [0u8; 16];
    b0[0] = 0x49;
    b0[6..10].copy_from_slice(&phy[1..5]);
    b0[10..12].copy_from_slice(&phy[6..8]);
    b0[15] = msg_len as u8;
    let mut all = b0.to_vec();
    all.extend(&phy[..msg_len]);
    let mic = cmac4(nwk, &all);
    phy[msg_len..].copy_from_slice(&mic);
    phy
}

/// ABP devices get downlinks too: the MQTT queue, MAC answers and ACKs,
/// in their RX1 window (1 s by default, or their `rx1_delay`), with a
/// downlink counter that survives a kill -9.
#[tokio::test]
async fn abp_devices_get_queued_downlinks_answers_and_acks() {
    const SLOW_ADDR: u32 = 0x260B_5678;
    let upstream = Mosquitto::start();
    let commands = Mosquitto::start();
    let (port, metrics) = (free_udp_port(), free_port());
    // A short de-duplication window keeps a loaded machine inside RX1.
    let cfg = config(upstream.port(), port, metrics, commands.port()).replace(
        "name = \"lora\"\n",
        "name = \"lora\"\ndedup_window = \"50ms\"\n",
    ) + &format!(
        r#"
[[lorawan.device]]
dev_addr = "{SLOW_ADDR:08X}"
nwk_s_key = "{ABP_APP}"
app_s_key = "{ABP_NWK}"
codec = "compact_i16"
id = "abp-slow"
rx1_delay = "3s"
"#
    );
    let (nwk, app) = (hex_key(ABP_NWK), hex_key(ABP_APP));
    let mut gw = start(tempfile::tempdir().unwrap(), &cfg);
    gw.wait_for_log("Semtech UDP server listening").await;
    gw.wait_for_log("Subscribed to LoRaWAN downlinks").await;
    let mut near = Forwarder::connect(port, GW_NEAR).await;
    near.pull().await;
    mosquitto_pub(
        commands.port(),
        "building/hq/abp-node/down",
        r#"{"port": 12, "data": "0a0b0c"}"#,
    );
    gw.wait_for_log("Downlink queued").await;
    near.push(&uplink(ABP_ADDR, 1, 2, &compact(20.0, 50), &nwk, &app), 6.0)
        .await;
    let (txpk, _) = near.pull_resp().await;
    assert_eq!(
        txpk["tmst"],
        u64::from(TMST.wrapping_add(1_000_000)),
        "RX1 after 1 s: {txpk}"
    );
    assert_eq!(
        (txpk["freq"].as_f64(), txpk["datr"].as_str()),
        (Some(868.1), Some("SF9BW125"))
    );
    let phy = unbase64(txpk["data"].as_str().unwrap());
    assert_eq!(phy[0], 0x60, "unconfirmed data down");
    let fopts = open_downlink(&phy, ABP_ADDR, 0, &nwk);
    assert!(
        fopts.is_empty(),
        "no DevStatusReq to an ABP device: {fopts:?}"
    );
    assert_eq!(phy[8], 12, "FPort");
    assert_eq!(
        decrypt_down(&phy[9..phy.len() - 4], ABP_ADDR, 0, &app),
        [10, 11, 12]
    );

    // A confirmed uplink asking LinkCheckReq, from the device set to 3 s.
    let (slow_nwk, slow_app) = (hex_key(ABP_APP), hex_key(ABP_NWK));
    let asking = uplink_with(
        SLOW_ADDR,
        1,
        &[0x02],
        2,
        &compact(21.0, 40),
        &slow_nwk,
        &slow_app,
    );
    near.push(&confirmed(asking, &slow_nwk), 6.0).await;
    let (txpk, _) = near.pull_resp().await;
    assert_eq!(
        txpk["tmst"],
        u64::from(TMST.wrapping_add(3_000_000)),
        "rx1_delay = 3s: {txpk}"
    );
    let phy = unbase64(txpk["data"].as_str().unwrap());
    let fopts = open_downlink(&phy, SLOW_ADDR, 0, &slow_nwk);
    assert_eq!(phy[5] & 0x20, 0x20, "the confirmed uplink is ACKed");
    // SF9 needs −12.5 dB: heard at 6 dB, a margin of 18; one gateway.
    assert_eq!(fopts, [0x02, 18, 1], "LinkCheckAns");

    // kill -9: the downlink counter goes on from where it was.
    gw.signal("KILL");
    gw.wait_exit().await;
    let mut gw = start(gw.dir, &cfg);
    gw.wait_for_log("Semtech UDP server listening").await;
    gw.wait_for_log("Subscribed to LoRaWAN downlinks").await;
    near.pull().await;
    mosquitto_pub(
        commands.port(),
        "building/hq/abp-node/down",
        r#"{"port": 13, "data": "AQI=", "confirmed": true}"#,
    );
    gw.wait_for_log("Downlink queued").await;
    near.push(&uplink(ABP_ADDR, 2, 2, &compact(20.5, 50), &nwk, &app), 6.0)
        .await;
    let (txpk, _) = near.pull_resp().await;
    assert_eq!(txpk["tmst"], u64::from(TMST.wrapping_add(1_000_000)));
    let phy = unbase64(txpk["data"].as_str().unwrap());
    assert_eq!(phy[0], 0xA0, "confirmed data down");
    open_downlink(&phy, ABP_ADDR, 1, &nwk);
    assert_eq!(
        decrypt_down(&phy[9..phy.len() - 4], ABP_ADDR, 1, &app),
        [1, 2]
    );
    near.push(
        &uplink_acking(ABP_ADDR, 3, &compact(20.5, 51), &nwk, &app),
        6.0,
    )
    .await;
    let confirmed = r#"edge_gateway_lorawan_downlinks_confirmed_total{adapter="lora"}"#;
    assert_eq!(metric_at_least(metrics, confirmed, 1.0).await, 1.0);
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// A confirmed uplink whose ACK the device did not hear comes again with
/// the same FCnt: it is acknowledged again (the device would otherwise
/// retry to the end and report a failure), and its readings count once.
#[tokio::test]
async fn a_confirmed_uplink_sent_again_is_acknowledged_again() {
    let upstream = Mosquitto::start();
    let commands = Mosquitto::start();
    let (port, metrics) = (free_udp_port(), free_port());
    let cfg = config(upstream.port(), port, metrics, commands.port()).replace(
        "name = \"lora\"\n",
        "name = \"lora\"\ndedup_window = \"50ms\"\n",
    );
    let (nwk, app) = (hex_key(ABP_NWK), hex_key(ABP_APP));
    let mut gw = start(tempfile::tempdir().unwrap(), &cfg);
    gw.wait_for_log("Semtech UDP server listening").await;
    let mut near = Forwarder::connect(port, GW_NEAR).await;
    near.pull().await;
    let phy = confirmed(uplink(ABP_ADDR, 7, 2, &compact(20.0, 50), &nwk, &app), &nwk);
    // The device sends again once its RX2 window closed: 3 s later on the
    // forwarder's clock.
    for (attempt, fcnt_down, tmst) in [(1, 0, TMST), (2, 1, TMST.wrapping_add(3_000_000))] {
        near.push_at(&phy, 6.0, tmst).await;
        let (txpk, _) = near.pull_resp().await;
        let down = unbase64(txpk["data"].as_str().unwrap());
        assert_eq!(down[5] & 0x20, 0x20, "attempt {attempt} is ACKed");
        open_downlink(&down, ABP_ADDR, fcnt_down, &nwk);
    }
    let again = r#"edge_gateway_lorawan_acks_again_total{adapter="lora"}"#;
    assert_eq!(metric_at_least(metrics, again, 1.0).await, 1.0);
    let uplinks = r#"edge_gateway_lorawan_uplinks_total{adapter="lora"}"#;
    assert_eq!(metric_at_least(metrics, uplinks, 1.0).await, 1.0);
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// The same confirmed uplink heard by a second forwarder just after the
/// de-duplication window (a slower backhaul) is the transmission already
/// answered, not the device's retry: it gets no second ACK, which went
/// out through the other forwarder in the same RX1 window (the two frames
/// collide at the device) on a second downlink counter, with the next
/// queued payload in it. The device's real retry, after its RX2 window on
/// the forwarder's clock, is acknowledged again.
#[tokio::test]
async fn a_late_copy_of_a_confirmed_uplink_from_another_forwarder_gets_no_second_ack() {
    let upstream = Mosquitto::start();
    let commands = Mosquitto::start();
    let (port, metrics) = (free_udp_port(), free_port());
    let cfg = config(upstream.port(), port, metrics, commands.port()).replace(
        "name = \"lora\"\n",
        "name = \"lora\"\ndedup_window = \"50ms\"\n",
    );
    let (nwk, app) = (hex_key(ABP_NWK), hex_key(ABP_APP));
    let mut gw = start(tempfile::tempdir().unwrap(), &cfg);
    gw.wait_for_log("Semtech UDP server listening").await;
    let mut near = Forwarder::connect(port, GW_NEAR).await;
    let mut far = Forwarder::connect(port, GW_FAR).await;
    near.pull().await;
    far.pull().await;
    let phy = confirmed(uplink(ABP_ADDR, 7, 2, &compact(20.0, 50), &nwk, &app), &nwk);
    near.push(&phy, 6.0).await;
    let (txpk, _) = near.pull_resp().await;
    let down = unbase64(txpk["data"].as_str().unwrap());
    assert_eq!(down[5] & 0x20, 0x20, "the uplink is ACKed");
    open_downlink(&down, ABP_ADDR, 0, &nwk);

    // The window closed (its ACK left): the far forwarder's copy now, on
    // its own clock.
    far.push_at(&phy, -3.0, 123_456).await;
    let retransmissions =
        r#"edge_gateway_adapter_errors_total{adapter="lora",error_type="fcnt_retransmission"}"#;
    assert_eq!(metric_at_least(metrics, retransmissions, 1.0).await, 1.0);
    // Counted after any answer to it was handed to the socket.
    let mut buf = [0u8; 2048];
    for (name, fwd) in [("near", &near), ("far", &far)] {
        let got = fwd.socket.try_recv(&mut buf);
        assert!(
            got.is_err(),
            "{name} was sent {:?}",
            got.map(|n| buf[..n].to_vec())
        );
    }

    // The device's retry, after its RX2 window: ACKed again, on the next
    // downlink counter (the late copy took none).
    near.push_at(&phy, 6.0, TMST.wrapping_add(3_000_000)).await;
    let (txpk, _) = near.pull_resp().await;
    let down = unbase64(txpk["data"].as_str().unwrap());
    assert_eq!(down[5] & 0x20, 0x20, "the retry is ACKed");
    open_downlink(&down, ABP_ADDR, 1, &nwk);
    let again = r#"edge_gateway_lorawan_acks_again_total{adapter="lora"}"#;
    assert_eq!(metric_at_least(metrics, again, 1.0).await, 1.0);
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// A join-request heard by a second forwarder just after the
/// de-duplication window (a slower backhaul) is a copy of the one just
/// accepted, not a replay: counted as a duplicate, not answered, and no
/// replay alarm. The same request once the device has sent an uplink
/// under its new session is a replay again.
#[tokio::test]
async fn a_late_copy_of_a_join_request_from_another_forwarder_is_a_duplicate_not_a_replay() {
    let upstream = Mosquitto::start();
    let commands = Mosquitto::start();
    let (port, metrics) = (free_udp_port(), free_port());
    let cfg = config(upstream.port(), port, metrics, commands.port()).replace(
        "name = \"lora\"\n",
        "name = \"lora\"\ndedup_window = \"50ms\"\n",
    );
    let mut gw = start(tempfile::tempdir().unwrap(), &cfg);
    gw.wait_for_log("Semtech UDP server listening").await;
    let mut near = Forwarder::connect(port, GW_NEAR).await;
    let mut far = Forwarder::connect(port, GW_FAR).await;
    near.pull().await;
    far.pull().await;
    let request = join_request(DEV_EUI, 0x0B01, &APP_KEY);
    near.push(&request, 6.5).await;
    let (txpk, _) = near.pull_resp().await;
    let accept = open_accept(&unbase64(txpk["data"].as_str().unwrap()));
    gw.wait_for_log("Device joined").await;

    // The window closed (the accept left): the far forwarder's copy now.
    far.push_at(&request, -4.0, 123_456).await;
    let duplicates = r#"edge_gateway_lorawan_duplicates_total{adapter="lora"}"#;
    assert_eq!(metric_at_least(metrics, duplicates, 1.0).await, 1.0);
    let adapter_errors = |kind: &str| {
        format!(r#"edge_gateway_adapter_errors_total{{adapter="lora",error_type="{kind}"}}"#)
    };
    let (_, body) = common::http_get(metrics, "/metrics").await;
    assert!(
        !body.contains(&adapter_errors("join_dev_nonce_replay")),
        "a copy is no replay:\n{body}"
    );
    let mut buf = [0u8; 2048];
    for (name, fwd) in [("near", &near), ("far", &far)] {
        let got = fwd.socket.try_recv(&mut buf);
        assert!(
            got.is_err(),
            "{name} was sent {:?}",
            got.map(|n| buf[..n].to_vec())
        );
    }

    // The device's first uplink under its session, then the request again:
    // the device has moved on, so that is a replay.
    let (nwk, app) = (derive(0x01, &accept, 0x0B01), derive(0x02, &accept, 0x0B01));
    near.push(
        &uplink(accept.dev_addr, 1, 2, &compact(21.0, 40), &nwk, &app),
        6.0,
    )
    .await;
    let uplinks = r#"edge_gateway_lorawan_uplinks_total{adapter="lora"}"#;
    metric_at_least(metrics, uplinks, 1.0).await;
    far.push_at(&request, -4.0, 123_456).await;
    assert_eq!(
        metric_at_least(metrics, &adapter_errors("join_dev_nonce_replay"), 1.0).await,
        1.0
    );
    assert_eq!(metric_at_least(metrics, duplicates, 1.0).await, 1.0);
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// The downlink broker is a broker like the others: a table with TLS
/// (a private CA) and a user whose password comes from the environment.
#[tokio::test]
async fn downlinks_come_from_a_broker_over_tls_with_a_password() {
    let pki = test_support::Pki::generate();
    let upstream = Mosquitto::start();
    let commands = Mosquitto::start_with(test_support::Options {
        tls: Some((
            pki.path("ca.pem"),
            pki.path("server.pem"),
            pki.path("server.key"),
        )),
        user: Some(("lora".into(), "down s3cret".into())),
        ..test_support::Options::default()
    });
    let (port, metrics) = (free_udp_port(), free_port());
    let plain = format!("downlink_broker = \"mqtt://127.0.0.1:{}\"", commands.port());
    let table = format!(
        "downlink_broker = {{ url = \"mqtts://127.0.0.1:{}\", username = \"lora\", password_env = \"TEST_DOWNLINK_PASSWORD\", ca_file = \"{}\" }}",
        commands.port(),
        pki.path("ca.pem").display()
    );
    let cfg = config(upstream.port(), port, metrics, commands.port()).replace(&plain, &table);
    assert!(cfg.contains("mqtts://"), "{cfg}");
    let mut gw = GatewayProcess::start_in_with(
        tempfile::tempdir().unwrap(),
        &cfg,
        &[
            ("TEST_OTAA_APP_KEY", &hex(&APP_KEY)),
            ("TEST_DOWNLINK_PASSWORD", "down s3cret"),
        ],
    );
    // Mosquitto refuses a client without TLS or the password: the SUBACK
    // is the proof of both.
    gw.wait_for_log("Subscribed to LoRaWAN downlinks").await;
    let ok = std::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &commands.port().to_string()])
        .args(["--cafile", pki.path("ca.pem").to_str().unwrap()])
        .args(["-u", "lora", "-P", "down s3cret", "-q", "1"])
        .args(["-t", "building/hq/abp-node/down"])
        .args(["-m", r#"{"port": 7, "data": "c0ffee"}"#])
        .status()
        .unwrap()
        .success();
    assert!(ok, "mosquitto_pub over TLS failed");
    gw.wait_for_log("Downlink queued").await;
    let mut near = Forwarder::connect(port, GW_NEAR).await;
    near.pull().await;
    let (nwk, app) = (hex_key(ABP_NWK), hex_key(ABP_APP));
    near.push(&uplink(ABP_ADDR, 1, 2, &compact(20.0, 50), &nwk, &app), 6.0)
        .await;
    let (txpk, _) = near.pull_resp().await;
    let phy = unbase64(txpk["data"].as_str().unwrap());
    open_downlink(&phy, ABP_ADDR, 0, &nwk);
    assert_eq!(phy[8], 7, "FPort");
    assert_eq!(
        decrypt_down(&phy[9..phy.len() - 4], ABP_ADDR, 0, &app),
        [0xC0, 0xFF, 0xEE]
    );
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

async fn simulate(args: &[&str]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .arg("simulate")
        .args(args)
        .output()
        .await
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "simulate {args:?} failed:\n{text}");
    text
}

/// `simulate --otaa` plays a joining fleet end to end: its tables configure
/// the gateway, every device joins, and every uplink under the derived
/// keys becomes readings (6 per uplink: 3 values, rssi, snr, gateways).
#[tokio::test]
async fn a_simulated_otaa_fleet_joins_and_its_uplinks_are_read() {
    let upstream = Mosquitto::start();
    let (port, metrics) = (free_udp_port(), free_port());
    let fleet = [
        "--protocol",
        "lorawan",
        "--otaa",
        "--devices",
        "4",
        "--seed",
        "9",
    ];
    let mut print = fleet.to_vec();
    print.push("--print-lorawan-config");
    let tables = simulate(&print).await;
    assert_eq!(tables.matches("app_key = ").count(), 4, "{tables}");
    let cfg = format!(
        r#"
[gateway]
id = "gw-otaa-sim"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{}"

[metrics]
bind = "127.0.0.1:{metrics}"

[[adapter]]
type = "semtech_udp"
name = "lora"
bind = "127.0.0.1:{port}"

{tables}"#,
        upstream.port()
    );
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Semtech UDP server listening").await;
    let target = format!("127.0.0.1:{port}");
    let mut send = fleet.to_vec();
    send.extend(["--target", &target, "--rate", "200", "--count", "20"]);
    let out = simulate(&send).await;
    assert!(out.contains("4 devices joined"), "{out}");
    assert!(out.contains("20 PUSH_ACKs for 20 PUSH_DATA"), "{out}");
    let joins = r#"edge_gateway_lorawan_joins_total{adapter="lora"}"#;
    assert_eq!(metric_at_least(metrics, joins, 4.0).await, 4.0);
    let readings = r#"edge_gateway_adapter_readings_total{adapter="lora"}"#;
    assert_eq!(metric_at_least(metrics, readings, 120.0).await, 120.0);
    // Played again on the same state: new DevNonces, new sessions, and
    // counters from 0 again are accepted under them.
    let out = simulate(&send).await;
    assert!(out.contains("4 devices joined"), "{out}");
    assert_eq!(metric_at_least(metrics, readings, 240.0).await, 240.0);
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// ADR: after 20 uplinks at SF9 heard with 6 dB SNR (8.5 dB above SF9's
/// floor and the 10 dB installation margin: two 3 dB steps), the next
/// downlink carries LinkADRReq for DR5 (SF7) on EU868's three channels.
/// Then a confirmed downlink is sent after each uplink until the device's
/// ACK, which is reported upstream as a `downlink_acked` reading.
#[tokio::test]
async fn adr_speeds_a_device_up_and_confirmed_downlinks_wait_for_their_ack() {
    let upstream = Mosquitto::start();
    let commands = Mosquitto::start();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/#").await;
    let (port, metrics) = (free_udp_port(), free_port());
    let cfg = config(upstream.port(), port, metrics, commands.port());
    let mut gw = start(tempfile::tempdir().unwrap(), &cfg);
    gw.wait_for_log("Semtech UDP server listening").await;
    gw.wait_for_log("Subscribed to LoRaWAN downlinks").await;
    let mut near = Forwarder::connect(port, GW_NEAR).await;
    let mut far = Forwarder::connect(port, GW_FAR).await;
    near.pull().await;
    far.pull().await;
    let (addr, nwk, app) = join(&mut near, &mut far, 0x0707).await;
    // FCnt 1: the network asks for the battery (DevStatusReq, FCntDown 0);
    // the answer in the next uplink's FOpts becomes readings.
    near.push(&uplink(addr, 1, 2, &compact(20.0, 50), &nwk, &app), 6.0)
        .await;
    let (txpk, _) = near.pull_resp().await;
    let fopts = open_downlink(&unbase64(txpk["data"].as_str().unwrap()), addr, 0, &nwk);
    assert_eq!(fopts, [0x06], "DevStatusReq");
    let status = uplink_with(
        addr,
        2,
        &[0x06, 128, 0x05],
        2,
        &compact(20.0, 50),
        &nwk,
        &app,
    );
    near.push(&status, 6.0).await;
    for fcnt in 3..=20u16 {
        // Each push waits for its PUSH_ACK: a PULL_RESP before the 20th
        // would arrive in its place and fail the test.
        near.push(&uplink(addr, fcnt, 2, &compact(20.0, 50), &nwk, &app), 6.0)
            .await;
    }
    let (txpk, token) = near.pull_resp().await;
    let fopts = open_downlink(&unbase64(txpk["data"].as_str().unwrap()), addr, 1, &nwk);
    assert_eq!(
        fopts,
        [0x03, 0x50, 0x07, 0x00, 0x01],
        "LinkADRReq DR5, power 0"
    );

    // The forwarder could not take RX1 (another packet at that time): the
    // same frame comes again for RX2, one second later on 869.525 MHz SF12.
    near.tx_ack(token, "COLLISION_PACKET").await;
    let (rx2, rx2_token) = near.pull_resp().await;
    assert_eq!(rx2_token, token, "the same downlink");
    assert_eq!(rx2["tmst"], u64::from(TMST.wrapping_add(3_000_000)));
    assert_eq!(
        (rx2["freq"].as_f64(), rx2["datr"].as_str()),
        (Some(869.525), Some("SF12BW125"))
    );
    assert_eq!(rx2["data"], txpk["data"]);
    let retries = r#"edge_gateway_lorawan_downlink_rx2_retries_total{adapter="lora"}"#;
    assert_eq!(metric_at_least(metrics, retries, 1.0).await, 1.0);

    mosquitto_pub(
        commands.port(),
        "building/hq/office-th/down",
        r#"{"port": 11, "data": "BQY=", "confirmed": true}"#,
    );
    gw.wait_for_log("Downlink queued").await;
    for (fcnt, fcnt_down) in [(21u16, 2u32), (22, 3)] {
        near.push(&uplink(addr, fcnt, 2, &compact(20.0, 50), &nwk, &app), 6.0)
            .await;
        let (txpk, _) = near.pull_resp().await;
        let phy = unbase64(txpk["data"].as_str().unwrap());
        assert_eq!(phy[0], 0xA0, "confirmed data down, again until ACKed");
        open_downlink(&phy, addr, fcnt_down, &nwk);
        assert_eq!(phy[8], 11, "FPort");
        assert_eq!(
            decrypt_down(&phy[9..phy.len() - 4], addr, fcnt_down, &app),
            [5, 6]
        );
    }
    // The ACK: nothing more to send (a PULL_RESP would arrive before the
    // next PUSH_ACK and fail `push`).
    near.push(
        &uplink_acking(addr, 23, &compact(20.0, 51), &nwk, &app),
        6.0,
    )
    .await;
    near.push(&uplink(addr, 24, 2, &compact(20.0, 52), &nwk, &app), 6.0)
        .await;
    let confirmed = r#"edge_gateway_lorawan_downlinks_confirmed_total{adapter="lora"}"#;
    assert_eq!(metric_at_least(metrics, confirmed, 1.0).await, 1.0);
    let messages = sub
        .collect_until(WAIT, |got| {
            totals(got, "office-th", "downlink_acked").0 >= 1
                && totals(got, "office-th", "link_margin").0 >= 1
        })
        .await;
    assert_eq!(totals(&messages, "office-th", "downlink_acked"), (1, 1.0));
    let (_, battery) = totals(&messages, "office-th", "battery_level");
    assert!((battery - 127.0 / 253.0 * 100.0).abs() < 1e-9, "{battery}");
    assert_eq!(totals(&messages, "office-th", "link_margin"), (1, 5.0));
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// `decode` verifies join frames with the AppKey: a join-request built by
/// this file's own crypto, and the published join-accept of avbentem's
/// "Deciphering a LoRaWAN OTAA Join Accept" (runkit.com/avbentem), whose
/// fields are AppNonce E5063A, NetID 000013, DevAddr 26012E43.
#[tokio::test]
async fn decode_verifies_join_frames() {
    let run = |args: Vec<String>| {
        std::process::Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
            .arg("decode")
            .args(args)
            .output()
            .unwrap()
    };
    let request = hex(&join_request(DEV_EUI, 0xBEEF, &APP_KEY));
    let out = run(vec![
        "--phy".into(),
        request.clone(),
        "--app-key".into(),
        hex(&APP_KEY),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("dev_eui = {}", hex(&DEV_EUI))),
        "{text}"
    );
    assert!(
        text.contains("dev_nonce = BEEF") && text.contains("mic = ok"),
        "{text}"
    );
    let mut wrong = APP_KEY;
    wrong[0] ^= 1;
    let out = run(vec![
        "--phy".into(),
        request,
        "--app-key".into(),
        hex(&wrong),
    ]);
    assert_eq!(out.status.code(), Some(65), "a wrong key is a data error");

    let accept = "204DD85AE608B87FC4889970B7D2042C9E72959B0057AED6094B16003DF12DE145";
    let key = "B6B53F4A168A7A88BDF7EA135CE9CFCA";
    let out = run(vec![
        "--phy".into(),
        accept.into(),
        "--app-key".into(),
        key.into(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for line in [
        "join_nonce = E5063A",
        "net_id = 000013",
        "dev_addr = 26012E43",
        "rx_delay = 1",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
}

/// A join-request heard only by a forwarder with no downlink path spends
/// its DevNonce all the same, durably: an attacker who recorded it and
/// replays it later through a forwarder that can answer, even after a
/// kill -9, gets nothing, and the device's real session goes on.
#[tokio::test]
async fn a_join_heard_without_a_downlink_path_cannot_be_replayed_later() {
    const GW_LONE: [u8; 8] = [0xAA, 0x55, 0x5A, 0, 0, 0, 0, 3];
    let upstream = Mosquitto::start();
    let commands = Mosquitto::start();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/#").await;
    let (port, metrics) = (free_udp_port(), free_port());
    let cfg = config(upstream.port(), port, metrics, commands.port());
    let mut gw = start(tempfile::tempdir().unwrap(), &cfg);
    gw.wait_for_log("Semtech UDP server listening").await;
    gw.wait_for_log("Metrics endpoint listening").await;
    let mut near = Forwarder::connect(port, GW_NEAR).await;
    let mut far = Forwarder::connect(port, GW_FAR).await;
    // A forwarder whose PULL_DATA never got through (a NAT, a firewall):
    // it hears and pushes, but nothing can be sent through it.
    let mut lone = Forwarder::connect(port, GW_LONE).await;
    near.pull().await;
    far.pull().await;
    let (addr, nwk, app) = join(&mut near, &mut far, 0x0A01).await;
    near.push(&uplink(addr, 1, 2, &compact(20.5, 30), &nwk, &app), 6.0)
        .await;
    // The first uplink of a session gets a DevStatusReq in RX1.
    near.pull_resp().await;
    let first = sub
        .collect_until(WAIT, |got| totals(got, "office-th", "humidity").1 >= 30.0)
        .await;
    assert_eq!(totals(&first, "office-th", "humidity").1, 30.0);

    // The device's next join is heard by the lone forwarder only.
    let unanswered = join_request(DEV_EUI, 0x0A02, &APP_KEY);
    lone.push(&unanswered, 7.0).await;
    let adapter_errors = |kind: &str| {
        format!(r#"edge_gateway_adapter_errors_total{{adapter="lora",error_type="{kind}"}}"#)
    };
    assert_eq!(
        metric_at_least(metrics, &adapter_errors("downlink_no_path"), 1.0).await,
        1.0
    );

    // kill -9; the device, unanswered, joins again with a new DevNonce.
    gw.signal("KILL");
    gw.wait_exit().await;
    let mut gw = start(gw.dir, &cfg);
    gw.wait_for_log("Semtech UDP server listening").await;
    gw.wait_for_log("Metrics endpoint listening").await;
    near.pull().await;
    far.pull().await;
    let (addr2, nwk2, app2) = join(&mut near, &mut far, 0x0A03).await;
    gw.wait_for_log("Device joined").await;

    // The recording of the unanswered join, replayed through the forwarder
    // with the best path: refused as a replay. Had it been accepted, its
    // join-accept would come before the next PUSH_ACK on this socket.
    near.push(&unanswered, 9.0).await;
    assert_eq!(
        metric_at_least(metrics, &adapter_errors("join_dev_nonce_replay"), 1.0).await,
        1.0
    );
    near.push(&uplink(addr2, 1, 2, &compact(23.0, 44), &nwk2, &app2), 6.0)
        .await;
    let messages = sub
        .collect_until(WAIT, |got| totals(got, "office-th", "humidity").1 >= 44.0)
        .await;
    assert_eq!(
        totals(&messages, "office-th", "temperature").1,
        23.0,
        "the real second session's uplink is read"
    );
    let (_, body) = common::http_get(metrics, "/metrics").await;
    let joins = r#"edge_gateway_lorawan_joins_total{adapter="lora"} 1"#;
    assert!(body.contains(joins), "one join since the restart:\n{body}");
    assert!(
        !body.contains(&adapter_errors("unknown_dev_addr")),
        "the session was never replaced:\n{body}"
    );
}

/// `[commands]`: `{"id", "port", "data"}` on the cloud broker (the
/// upstream) queues the same downlink as the downlink topic does; its
/// result is `done` only once the forwarder's TX_ACK says it was sent,
/// `failed` with the forwarder's error (after the RX2 retry), and a device
/// that sends nothing within `command_wait` gets nothing: `refused`
/// (`no_uplink`), the payload withdrawn.
#[tokio::test]
async fn cloud_commands_queue_downlinks_settled_by_the_forwarders_tx_ack() {
    let cloud = Mosquitto::start();
    let commands = Mosquitto::start();
    let (port, metrics) = (free_udp_port(), free_port());
    let cfg = config(cloud.port(), port, metrics, commands.port())
        .replace(
            "name = \"lora\"\n",
            "name = \"lora\"\ndedup_window = \"50ms\"\ncommand_wait = \"5s\"\n",
        )
        .replace("qos = 1\n", "qos = 1\ntopic_prefix = \"building/hq\"\n")
        + "\n[commands]\nenabled = true\n";
    let (nwk, app) = (hex_key(ABP_NWK), hex_key(ABP_APP));
    let mut results = Subscriber::start(cloud.port(), "building/hq/+/command/result").await;
    let mut gw = start(tempfile::tempdir().unwrap(), &cfg);
    gw.wait_for_log("Semtech UDP server listening").await;
    gw.wait_for_log("Subscribed to commands on the upstream broker.")
        .await;
    let mut near = Forwarder::connect(port, GW_NEAR).await;
    near.pull().await;
    let send = |body: serde_json::Value, device: &'static str| {
        let port = cloud.port();
        async move {
            publish(
                port,
                &format!("building/hq/{device}/command"),
                &crate::common::with_ts(body).to_string(),
                1,
                false,
            )
            .await
        }
    };

    // Hex data, as the downlink topic takes it.
    send(
        serde_json::json!({"id": "l-1", "port": 12, "data": "0a0b0c"}),
        "abp-node",
    )
    .await;
    gw.wait_for_log("Downlink queued").await;
    // Another machine on the LAN pulls with the forwarder's EUI: the live
    // path stays with the forwarder (or the downlink below would go to
    // the forger and `near` would wait in vain).
    let mut forger = Forwarder::connect_from("127.0.0.2", port, GW_NEAR).await;
    forger.pull_refused().await;
    metric_at_least(
        metrics,
        r#"edge_gateway_adapter_errors_total{adapter="lora",error_type="pull_data_other_address"}"#,
        1.0,
    )
    .await;
    near.push(&uplink(ABP_ADDR, 1, 2, &compact(20.0, 50), &nwk, &app), 6.0)
        .await;
    let (txpk, token) = near.pull_resp().await;
    let phy = unbase64(txpk["data"].as_str().unwrap());
    open_downlink(&phy, ABP_ADDR, 0, &nwk);
    assert_eq!(phy[8], 12, "FPort");
    assert_eq!(
        decrypt_down(&phy[9..phy.len() - 4], ABP_ADDR, 0, &app),
        [10, 11, 12]
    );
    assert!(
        results
            .wait_for(std::time::Duration::from_millis(300), |m| m.json()["id"]
                == "l-1")
            .await
            .is_none(),
        "no result before the TX_ACK"
    );
    // The forger again, with the token: its TX_ACK settles nothing, and
    // is counted.
    forger.tx_ack(token, "TX_FREQ").await;
    metric_at_least(
        metrics,
        r#"edge_gateway_adapter_errors_total{adapter="lora",error_type="tx_ack_wrong_address"}"#,
        1.0,
    )
    .await;
    near.tx_ack(token, "NONE").await;
    let r = results
        .wait_for(WAIT, |m| m.json()["id"] == "l-1")
        .await
        .expect("the result of l-1")
        .json();
    assert_eq!(r["status"], "done", "{r}");
    assert_eq!(r["device"], "abp-node");
    assert_eq!(
        r["value"],
        serde_json::json!({"port": 12, "data": "0a0b0c"})
    );

    // Base64; RX1 too late, the RX2 retry refused by the forwarder too.
    send(
        serde_json::json!({"id": "l-2", "port": 13, "data": "AQI="}),
        "abp-node",
    )
    .await;
    gw.wait_for_log_count("Downlink queued", 2).await;
    near.push(&uplink(ABP_ADDR, 2, 2, &compact(20.5, 50), &nwk, &app), 6.0)
        .await;
    let (txpk, token) = near.pull_resp().await;
    let phy = unbase64(txpk["data"].as_str().unwrap());
    open_downlink(&phy, ABP_ADDR, 1, &nwk);
    assert_eq!(
        decrypt_down(&phy[9..phy.len() - 4], ABP_ADDR, 1, &app),
        [1, 2]
    );
    near.tx_ack(token, "TOO_LATE").await;
    let (_, retry) = near.pull_resp().await;
    assert_eq!(retry, token, "the RX2 fallback of the same downlink");
    near.tx_ack(token, "TX_FREQ").await;
    let r = results
        .wait_for(WAIT, |m| m.json()["id"] == "l-2")
        .await
        .expect("the result of l-2")
        .json();
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("failed"), Some("tx_ack")),
        "{r}"
    );
    assert!(r["detail"].as_str().unwrap().contains("TX_FREQ"), "{r}");

    // Refused before anything is queued.
    for (device, body, reason) in [
        (
            "abp-node",
            serde_json::json!({"id": "r-1", "metric": "setpoint", "value": 1}),
            "type",
        ),
        (
            "abp-node",
            serde_json::json!({"id": "r-2", "port": 12, "data": "00".repeat(52)}),
            "out_of_range",
        ),
        (
            "nobody",
            serde_json::json!({"id": "r-3", "port": 12, "data": "00"}),
            "not_writable",
        ),
    ] {
        send(body.clone(), device).await;
        let r = results
            .wait_for(WAIT, |m| m.json()["id"] == body["id"])
            .await
            .unwrap_or_else(|| panic!("no result for {body}"))
            .json();
        assert_eq!(
            (r["status"].as_str(), r["reason"].as_str()),
            (Some("refused"), Some(reason)),
            "{body} -> {r}"
        );
    }

    // No uplink within command_wait: refused, and the payload withdrawn,
    // so the next uplink (which needs no answer) gets no downlink.
    send(
        serde_json::json!({"id": "l-3", "port": 14, "data": "ff"}),
        "abp-node",
    )
    .await;
    let r = results
        .wait_for(WAIT, |m| m.json()["id"] == "l-3")
        .await
        .expect("the result of l-3")
        .json();
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("refused"), Some("no_uplink")),
        "{r}"
    );
    near.push(&uplink(ABP_ADDR, 3, 2, &compact(21.0, 50), &nwk, &app), 6.0)
        .await;
    let mut buf = [0u8; 512];
    assert!(
        tokio::time::timeout(
            std::time::Duration::from_millis(500),
            near.socket.recv(&mut buf)
        )
        .await
        .is_err(),
        "a withdrawn payload is not sent"
    );

    // Half a second of max_age (60 s) left when queued: the uplink comes
    // at once, but RX1 opens a second after it, past the deadline. Nothing
    // is sent, not even an empty frame, and the command is expired.
    let made = std::time::SystemTime::now() - std::time::Duration::from_millis(59_500);
    let ts = chrono::DateTime::<chrono::Utc>::from(made).to_rfc3339();
    publish(
        cloud.port(),
        "building/hq/abp-node/command",
        &serde_json::json!({"id": "l-4", "port": 15, "data": "ee", "ts": ts}).to_string(),
        1,
        false,
    )
    .await;
    gw.wait_for_log_count("Downlink queued", 4).await;
    near.push(&uplink(ABP_ADDR, 4, 2, &compact(21.5, 50), &nwk, &app), 6.0)
        .await;
    let r = results
        .wait_for(WAIT, |m| m.json()["id"] == "l-4")
        .await
        .expect("the result of l-4")
        .json();
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("expired"), Some("max_age")),
        "{r}"
    );
    assert!(
        tokio::time::timeout(
            std::time::Duration::from_millis(500),
            near.socket.recv(&mut buf)
        )
        .await
        .is_err(),
        "no downlink for a window past max_age, not even an empty one"
    );
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}
