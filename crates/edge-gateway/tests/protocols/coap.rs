//! The real binary's CoAP server driven by libcoap's `coap-client` and by
//! raw UDP datagrams, with aggregates checked at a real upstream Mosquitto.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::BTreeMap;

use common::{close, config, GatewayProcess, WAIT};
use test_support::{coap_client_run, free_udp_port, CoapServer, Message, Mosquitto, Subscriber};
use tokio::net::UdpSocket;

/// Brokers, an upstream subscriber, and a gateway whose CoAP server listens
/// on a free loopback port, ready to serve.
async fn setup(gateway_id: &str) -> (Mosquitto, Mosquitto, Subscriber, GatewayProcess, u16) {
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let sub = Subscriber::start(upstream.port(), "building/hq/#").await;
    let port = free_udp_port();
    // Short windows, so aggregates arrive while the gateway runs; readings
    // carry arrival time, or event times under a second old, so none is late.
    let mut text = config(gateway_id, local.port(), upstream.port(), "1s", "1s");
    text.push_str(&format!(
        r#"
[[adapter]]
type = "coap"
name = "coap-sensors"
bind = "127.0.0.1:{port}"
rate_limit = 0
"#
    ));
    let mut gw = GatewayProcess::start(&text);
    gw.wait_for_log("CoAP server listening").await;
    (local, upstream, sub, gw, port)
}

/// Per device and metric: (count, sum, min, max) over all windows.
type Totals = BTreeMap<(String, String), (u64, f64, f64, f64)>;

fn add(totals: &mut Totals, messages: &[Message]) {
    for m in messages.iter().filter(|m| m.topic.ends_with("/aggregated")) {
        let j = m.json();
        let device = j["device"].as_str().unwrap().to_string();
        for (metric, s) in j["metrics"].as_object().unwrap() {
            let e = totals.entry((device.clone(), metric.clone())).or_insert((
                0,
                0.0,
                f64::INFINITY,
                f64::NEG_INFINITY,
            ));
            let count = s["count"].as_u64().unwrap();
            e.0 += count;
            e.1 += count as f64 * s["avg"].as_f64().unwrap();
            e.2 = e.2.min(s["min"].as_f64().unwrap());
            e.3 = e.3.max(s["max"].as_f64().unwrap());
        }
    }
}

/// Sends a `barrier` reading to each device after everything else, and
/// collects aggregates until every device's barrier came back. Windows close
/// in order and a device's window is one message, so by then every earlier
/// reading of those devices has been forwarded. The barriers are left out.
async fn collect_through_barriers(port: u16, sub: &mut Subscriber, devices: &[&str]) -> Totals {
    for d in devices {
        let target = url(port, &format!("s/{d}/barrier"));
        let out = coap_client_run(&["-m", "post", "-t", "0", "-e", "0", &target]).await;
        assert!(out.success && out.stderr.is_empty(), "{out:?}");
    }
    let has_barrier = |m: &Message, d: &str| {
        m.topic == format!("building/hq/{d}/aggregated")
            && m.json()["metrics"].get("barrier").is_some()
    };
    let messages = sub
        .collect_until(WAIT, |got| {
            devices
                .iter()
                .all(|d| got.iter().any(|m| has_barrier(m, d)))
        })
        .await;
    for d in devices {
        assert!(
            messages.iter().any(|m| has_barrier(m, d)),
            "no barrier for {d}"
        );
    }
    let mut totals = Totals::new();
    add(&mut totals, &messages);
    totals.retain(|(_, metric), _| metric != "barrier");
    totals
}

fn expect(sent: &BTreeMap<(String, String), Vec<f64>>, got: &Totals) {
    for (key, values) in sent {
        let (count, sum, min, max) = got
            .get(key)
            .unwrap_or_else(|| panic!("no aggregate for {key:?}; got {got:?}"));
        assert_eq!(*count as usize, values.len(), "{key:?}");
        assert!(close(*sum, values.iter().sum()), "{key:?}: sum {sum}");
        assert!(
            close(*min, values.iter().cloned().fold(f64::INFINITY, f64::min)),
            "{key:?}"
        );
        assert!(
            close(
                *max,
                values.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
            ),
            "{key:?}"
        );
    }
    let extra: Vec<_> = got.keys().filter(|k| !sent.contains_key(*k)).collect();
    assert!(extra.is_empty(), "unexpected aggregates {extra:?}");
}

fn url(port: u16, path: &str) -> String {
    format!("coap://127.0.0.1:{port}/{path}")
}

/// POSTs `payload` (from a file, so CBOR bytes pass unchanged).
async fn post(
    port: u16,
    path: &str,
    cf: &str,
    payload: &[u8],
    non: bool,
    block: Option<&str>,
) -> test_support::CoapOutput {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("payload");
    std::fs::write(&file, payload).unwrap();
    let file = file.display().to_string();
    let target = url(port, path);
    let mut args = vec!["-m", "post", "-t", cf, "-f", &file];
    if non {
        // No response comes to a successful NON: do not wait for one long.
        args.extend(["-N", "-B", "1"]);
    }
    if let Some(size) = block {
        args.extend(["-b", size]);
    }
    args.push(&target);
    coap_client_run(&args).await
}

#[tokio::test]
async fn every_content_format_con_and_non_reaches_upstream_exactly() {
    let (_local, _up, mut sub, _gw, port) = setup("gw-coap").await;
    let mut sent: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    let mut record =
        |d: &str, m: &str, v: f64| sent.entry((d.into(), m.into())).or_default().push(v);

    // text/plain (0), one value per request, CON then NON.
    for (v, non) in [(21.5, false), (22.25, false), (24.5, true), (23.0, false)] {
        let out = post(
            port,
            "s/coap-text/temperature",
            "0",
            v.to_string().as_bytes(),
            non,
            None,
        )
        .await;
        assert!(out.success && out.stderr.is_empty(), "{out:?}");
        record("coap-text", "temperature", v);
    }
    // JSON object (50).
    for (t, h, non) in [(20.0, 41.5, false), (20.5, 42.5, true)] {
        let body = format!(r#"{{"temperature":{t},"humidity":{h}}}"#);
        let out = post(port, "s/coap-json", "50", body.as_bytes(), non, None).await;
        assert!(out.success && out.stderr.is_empty(), "{out:?}");
        record("coap-json", "temperature", t);
        record("coap-json", "humidity", h);
    }
    // SenML JSON (110) with base name, base value and relative times.
    for (base, non) in [(10.0, false), (11.0, true)] {
        let body = format!(
            r#"[{{"bn":"urn:ignored:","bv":{base},"n":"temperature","v":9.5,"t":-0.5}},{{"n":"humidity","v":40,"t":-0.25}}]"#
        );
        let out = post(port, "s/coap-senml", "110", body.as_bytes(), non, None).await;
        assert!(out.success && out.stderr.is_empty(), "{out:?}");
        record("coap-senml", "temperature", base + 9.5);
        record("coap-senml", "humidity", base + 40.0);
    }
    // SenML CBOR (112): [{0: "temperature", 2: 18.5}, {0: "humidity", 2: 55}]
    let cbor = b"\x82\xa2\x00\x6btemperature\x02\xf9\x4c\xa0\xa2\x00\x68humidity\x02\x18\x37";
    for non in [false, true] {
        let out = post(port, "s/coap-cbor", "112", cbor, non, None).await;
        assert!(out.success && out.stderr.is_empty(), "{out:?}");
        record("coap-cbor", "temperature", 18.5);
        record("coap-cbor", "humidity", 55.0);
    }
    // A SenML batch far over one datagram, sent block-wise (Block1, 64-byte blocks).
    let batch: Vec<String> = (0..300)
        .map(|i| {
            let (m, v) = (
                ["co2", "voc", "pm25"][i % 3],
                400.0 + (i * 7 % 101) as f64 / 4.0,
            );
            record("coap-block", m, v);
            format!(r#"{{"n":"{m}","v":{v}}}"#)
        })
        .collect();
    let batch = format!("[{}]", batch.join(","));
    assert!(
        batch.len() > 4 * 1024,
        "several times the 1024-byte payload limit"
    );
    let out = post(
        port,
        "s/coap-block",
        "110",
        batch.as_bytes(),
        false,
        Some("64"),
    )
    .await;
    assert!(out.success && out.stderr.is_empty(), "{out:?}");

    // Errors come back with their codes and change nothing.
    for (path, cf, payload, code) in [
        ("s/coap-text/temperature", "0", &b"warm"[..], "4.00"),
        ("s/coap-text/temperature", "42", &b"1"[..], "4.15"),
        ("elsewhere", "0", &b"1"[..], "4.04"),
    ] {
        let out = post(port, path, cf, payload, false, None).await;
        assert!(out.stderr.contains(code), "{path} {cf}: {out:?}");
    }
    let out = coap_client_run(&["-m", "delete", &url(port, "s/coap-text")]).await;
    assert!(out.stderr.contains("4.05"), "{out:?}");

    // The latest values of a device, after its NON update (processed in
    // order before the CON requests that followed it).
    let out = coap_client_run(&["-m", "get", &url(port, "s/coap-json")]).await;
    let latest: serde_json::Value =
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert_eq!(latest["device"], "coap-json");
    assert_eq!(latest["metrics"]["temperature"]["v"], 20.5);
    assert_eq!(latest["metrics"]["humidity"]["v"], 42.5);
    let out = coap_client_run(&["-m", "get", &url(port, ".well-known/core")]).await;
    assert!(out.stdout.starts_with("</s>;"), "{out:?}");
    let devices = [
        "coap-text",
        "coap-json",
        "coap-senml",
        "coap-cbor",
        "coap-block",
    ];
    for d in devices {
        assert!(out.stdout.contains(&format!("</s/{d}>")), "{d}: {out:?}");
    }

    let got = collect_through_barriers(port, &mut sub, &devices).await;
    expect(&sent, &got);
}

/// A CON POST /s/dup/level "5" with Message ID 0x1234 and token 0x42.
const CON_POST: &[u8] = &[
    0x41, 0x02, 0x12, 0x34, // ver 1, CON, TKL 1; 0.02 POST; MID 0x1234
    0x42, // token
    0xb1, b's', // Uri-Path (11) "s"
    0x03, b'd', b'u', b'p', // Uri-Path "dup"
    0x05, b'l', b'e', b'v', b'e', b'l', // Uri-Path "level"
    0x10, // Content-Format (12), length 0: text/plain
    0xff, b'5', // payload "5"
];

#[tokio::test]
async fn a_resent_con_gets_the_same_ack_and_counts_once() {
    let (_local, _up, mut sub, _gw, port) = setup("gw-coap-dup").await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(("127.0.0.1", port)).await.unwrap();
    let mut buf = [0u8; 256];
    let mut recv = async || {
        let n = tokio::time::timeout(WAIT, socket.recv(&mut buf))
            .await
            .expect("a reply")
            .unwrap();
        buf[..n].to_vec()
    };
    // Malformed datagrams first: a CON with TKL 9 gets a Reset, an unknown
    // version nothing; the server carries on.
    socket
        .send(&[0x49, 0x01, 0x7d, 0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    assert_eq!(recv().await, [0x70, 0x00, 0x7d, 0x34]);
    socket.send(&[0x80, 0x01, 0x7d, 0x35]).await.unwrap();

    socket.send(CON_POST).await.unwrap();
    let first = recv().await;
    socket.send(CON_POST).await.unwrap();
    let second = recv().await;
    // ACK, 2.04 Changed, same MID and token.
    assert_eq!(first, [0x61, 0x44, 0x12, 0x34, 0x42]);
    assert_eq!(first, second);
    // A datagram larger than the receive buffer (1024-byte payloads plus
    // headroom) is truncated by the kernel: answered 4.13 with Size1 1024.
    let mut big = CON_POST.to_vec();
    big[2..4].copy_from_slice(&[0x12, 0x35]);
    big.truncate(big.len() - 1);
    big.extend(std::iter::repeat_n(b'9', 2000));
    socket.send(&big).await.unwrap();
    // ACK, 4.13, MID 0x1235, token 0x42, Size1 (60 = 13 + 47): 2 bytes 1024.
    assert_eq!(
        recv().await,
        [0x61, 0x8d, 0x12, 0x35, 0x42, 0xd2, 47, 0x04, 0x00]
    );
    // A ping, as a barrier: answered only after everything before it.
    socket.send(&[0x40, 0x00, 0x55, 0x66]).await.unwrap();
    assert_eq!(recv().await, [0x70, 0x00, 0x55, 0x66]);

    let got = collect_through_barriers(port, &mut sub, &["dup"]).await;
    let sent = BTreeMap::from([(("dup".to_string(), "level".to_string()), vec![5.0])]);
    expect(&sent, &got);
}

/// A two-block SenML upload whose last block is sent again under a new
/// Message ID, as a constrained client's application retries when the
/// 2.04 to it was lost: the same 2.04 (with Block1), not 4.08, and the
/// reading forwarded once.
#[tokio::test]
async fn a_last_block1_block_retried_under_a_new_mid_counts_once() {
    let (_local, _up, mut sub, _gw, port) = setup("gw-coap-block1-retry").await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(("127.0.0.1", port)).await.unwrap();
    let mut buf = [0u8; 256];
    let mut recv = async || {
        let n = tokio::time::timeout(WAIT, socket.recv(&mut buf))
            .await
            .expect("a reply")
            .unwrap();
        buf[..n].to_vec()
    };
    let body = br#"[{"n":"level","v":7}]"#;
    let block = |mid: u16, block1: u8, payload: &[u8]| {
        let [hi, lo] = mid.to_be_bytes();
        let mut d = vec![0x41, 0x02, hi, lo, 0x43]; // CON POST, token 0x43
        d.extend([0xb1, b's', 0x03, b'b', b'l', b'k']); // Uri-Path s/blk
        d.extend([0x11, 110]); // Content-Format: SenML JSON
        d.extend([0xd1, 0x02, block1]); // Block1 (27)
        d.push(0xff);
        d.extend_from_slice(payload);
        d
    };
    socket
        .send(&block(0x2000, 0x08, &body[..16]))
        .await
        .unwrap();
    // ACK 2.31 Continue, Block1 echoed.
    assert_eq!(
        recv().await,
        [0x61, 0x5f, 0x20, 0x00, 0x43, 0xd1, 0x0e, 0x08]
    );
    socket
        .send(&block(0x2001, 0x10, &body[16..]))
        .await
        .unwrap();
    let done = [0x61, 0x44, 0x20, 0x01, 0x43, 0xd1, 0x0e, 0x10];
    assert_eq!(recv().await, done);
    socket
        .send(&block(0x2002, 0x10, &body[16..]))
        .await
        .unwrap();
    let mut again = done;
    again[3] = 0x02;
    assert_eq!(recv().await, again, "the same 2.04 under the new MID");

    let got = collect_through_barriers(port, &mut sub, &["blk"]).await;
    let sent = BTreeMap::from([(("blk".to_string(), "level".to_string()), vec![7.0])]);
    expect(&sent, &got);
}

/// A building with more CoAP devices than one datagram lists: libcoap's
/// `coap-client` follows the Block2 blocks of `/.well-known/core` and of a
/// device's latest values, at the block size it asks for, and gets every
/// device (the listing used to stop at about 20 devices, silently).
#[tokio::test]
async fn a_discovery_larger_than_a_datagram_is_served_in_blocks() {
    let (_local, _up, _sub, _gw, port) = setup("gw-coap-block2").await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(("127.0.0.1", port)).await.unwrap();
    let mut buf = [0u8; 256];
    let devices: Vec<String> = (0..80).map(|i| format!("bd-{i:03}")).collect();
    for (i, device) in devices.iter().enumerate() {
        let [hi, lo] = u16::try_from(0x3000 + i).unwrap().to_be_bytes();
        let mut d = vec![0x40, 0x02, hi, lo]; // CON POST, no token
        d.extend([0xb1, b's', 0x06]); // Uri-Path s, then the 6-byte id
        d.extend_from_slice(device.as_bytes());
        d.extend([0x01, b't', 0x10, 0xff, b'1']); // Uri-Path t; text/plain "1"
        socket.send(&d).await.unwrap();
        let n = tokio::time::timeout(WAIT, socket.recv(&mut buf))
            .await
            .expect("an ACK")
            .unwrap();
        assert_eq!(&buf[..n.min(4)], [0x60, 0x44, hi, lo], "{device} 2.04");
    }
    // Metrics enough that one device's latest values pass a small block.
    let many: Vec<String> = (0..20)
        .map(|i| format!(r#"{{"n":"metric_{i:02}","v":{i}}}"#))
        .collect();
    let out = post(
        port,
        "s/bd-000",
        "110",
        format!("[{}]", many.join(",")).as_bytes(),
        false,
        None,
    )
    .await;
    assert!(out.success, "{out:?}");

    for block in [None, Some("64")] {
        let mut args = vec!["-m", "get"];
        if let Some(size) = block {
            args.extend(["-b", size]);
        }
        let target = url(port, ".well-known/core");
        args.push(&target);
        let out = coap_client_run(&args).await;
        assert!(out.success, "{block:?}: {out:?}");
        assert!(out.stdout.starts_with("</s>;"), "{block:?}: {out:?}");
        let missing: Vec<&String> = devices
            .iter()
            .filter(|d| !out.stdout.contains(&format!("</s/{d}>;")))
            .collect();
        assert!(
            missing.is_empty(),
            "{block:?}: {} devices missing: {missing:?}",
            missing.len()
        );

        let target = url(port, "s/bd-000");
        let mut args = vec!["-m", "get"];
        if block.is_some() {
            args.extend(["-b", "16"]);
        }
        args.push(&target);
        let out = coap_client_run(&args).await;
        let latest: serde_json::Value = serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("{block:?}: {e}: {out:?}"));
        assert_eq!(latest["metrics"]["t"]["v"], 1.0, "{out:?}");
        assert_eq!(latest["metrics"]["metric_19"]["v"], 19.0, "{out:?}");
    }

    // RFC 6690 §4.1 filtering, as libcoap sends it (the query in a
    // Uri-Query option): a site too large for one listing is read a
    // prefix at a time.
    let target = url(port, ".well-known/core?href=/s/bd-00*");
    let out = coap_client_run(&["-m", "get", &target]).await;
    assert!(out.success, "{out:?}");
    let listed: Vec<&str> = out.stdout.trim().split(',').collect();
    let expected: Vec<String> = (0..10)
        .map(|i| format!("</s/bd-{i:03}>;rt=\"edge-gateway.latest\";ct=50"))
        .collect();
    assert_eq!(listed, expected, "{out:?}");
}

#[tokio::test]
async fn observe_follows_a_libcoap_server_and_registers_again_after_its_restart() {
    let id = "gw-coap-observe";
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/#").await;
    let port = free_udp_port();
    let device = CoapServer::start(port).await;
    device.put("20").await;
    // Short windows: each closes a second after its end, so the aggregates
    // arrive while the gateway runs and the test waits for their counts.
    // `silence` well beyond that: a quiet resource is registered again
    // after it, and the registration's answer (the current value) is a
    // reading of its own; the test must see that happen only when it
    // restarts the device, also on a loaded machine.
    let mut text = config(id, local.port(), upstream.port(), "1s", "1s");
    text.push_str(&format!(
        r#"
[[adapter]]
type = "coap_observe"
name = "observed"
resources = [{{ addr = "127.0.0.1:{port}", path = "/example_data", device = "obs-node", metric = "temperature" }}]
silence = "5s"
"#
    ));
    let mut gw = GatewayProcess::start(&text);
    gw.wait_for_log("Observation established").await;
    let topic = "building/hq/obs-node/aggregated";
    let counted = |got: &[Message]| {
        got.iter()
            .filter(|m| m.topic == topic)
            .map(|m| {
                m.json()["metrics"]["temperature"]["count"]
                    .as_u64()
                    .unwrap()
            })
            .sum::<u64>()
    };
    // A notification carries the resource's state when it is sent (RFC
    // 7641), so a change made before the last one went out may replace it
    // (on a loaded machine libcoap sent 22.5 twice and 21 never): each
    // change waits until the one before it was forwarded. That also makes
    // every notification of the first life go out before the device dies:
    // a device killed right after a change may never send it.
    let mut messages = sub.collect_until(WAIT, |got| counted(got) >= 1).await;
    for (before, v) in [(1, "21"), (2, "22.5"), (3, "23")] {
        device.put(v).await;
        let forwarded = counted(&messages);
        assert_eq!(forwarded, before, "notifications before {v}");
        messages.extend(
            sub.collect_until(WAIT, |got| forwarded + counted(got) > before)
                .await,
        );
    }
    assert_eq!(counted(&messages), 4, "notifications before the restart");

    // The device restarts and forgets its observer; the gateway hears
    // nothing for `silence` and registers again.
    drop(device);
    let device = CoapServer::start(port).await;
    device.put("30").await;
    gw.seen.clear();
    gw.wait_for_log("Observation established").await;
    device.put("31").await;

    let sent = [20.0, 21.0, 22.5, 23.0, 30.0, 31.0];
    messages.extend(sub.collect_until(WAIT, |got| counted(got) >= 2).await);
    assert_eq!(counted(&messages), sent.len() as u64, "readings forwarded");
    let mut all = Totals::new();
    add(&mut all, &messages);
    let expected = BTreeMap::from([(
        ("obs-node".to_string(), "temperature".to_string()),
        sent.to_vec(),
    )]);
    expect(&expected, &all);
}

/// A notification larger than one datagram's block (libcoap sends 1024
/// bytes and the M bit, RFC 7959 §2.4): the gateway fetches the other
/// blocks and reads the whole document, each time the resource changes.
#[tokio::test]
async fn observe_reads_a_notification_libcoap_sends_in_blocks() {
    let id = "gw-coap-blocks";
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let mut sub = Subscriber::start(upstream.port(), "building/hq/#").await;
    let port = free_udp_port();
    let device = CoapServer::start(port).await;
    // 40 channels of a multi-sensor board: about 1 400 bytes of JSON.
    let document = |base: f64| {
        let fields: Vec<String> = (0..40)
            .map(|i| {
                format!(
                    "\"channel_{i:02}_temperature\": {}",
                    base + f64::from(i) / 4.0
                )
            })
            .collect();
        format!("{{{}}}", fields.join(", "))
    };
    let first = document(20.0);
    assert!(
        first.len() > 1024,
        "{} bytes: more than one block",
        first.len()
    );
    device.put_json(&first).await;
    let mut text = config(id, local.port(), upstream.port(), "1s", "1s");
    text.push_str(&format!(
        r#"
[[adapter]]
type = "coap_observe"
name = "board"
resources = [{{ addr = "127.0.0.1:{port}", path = "/example_data", device = "board-1" }}]
silence = "10m"
"#
    ));
    let mut gw = GatewayProcess::start(&text);
    gw.wait_for_log("Observation established").await;
    let topic = "building/hq/board-1/aggregated";
    let channels = |got: &[Message]| {
        let mut seen = BTreeMap::new();
        for m in got.iter().filter(|m| m.topic == topic) {
            let json = m.json();
            for (metric, stats) in json["metrics"].as_object().unwrap() {
                let values: &mut Vec<f64> = seen.entry(metric.clone()).or_default();
                values.push(stats["avg"].as_f64().unwrap());
            }
        }
        seen
    };
    let messages = sub
        .collect_until(WAIT, |got| channels(got).len() == 40)
        .await;
    let got = channels(&messages);
    assert_eq!(got["channel_00_temperature"], [20.0]);
    assert_eq!(
        got["channel_39_temperature"],
        [29.75],
        "the last block's field"
    );

    device.put_json(&document(30.0)).await;
    let messages = sub
        .collect_until(WAIT, |got| {
            channels(got)
                .get("channel_39_temperature")
                .is_some_and(|v| !v.is_empty())
        })
        .await;
    let got = channels(&messages);
    assert_eq!(got["channel_00_temperature"], [30.0]);
    assert_eq!(got["channel_39_temperature"], [39.75]);
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}
