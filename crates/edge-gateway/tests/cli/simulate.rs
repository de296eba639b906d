//! `edge-gateway simulate` against the real gateway: every message it says
//! it sent, over MQTT, CoAP and LoRaWAN (Semtech UDP), is taken in by the
//! matching adapter; the simulated BACnet controllers are read by the
//! `bacnet` adapter, each point named and in its unit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{config, http_until, GatewayProcess};
use test_support::{free_port, free_udp_port, Mosquitto};

async fn simulate(args: &[String]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .arg("simulate")
        .args(args)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn a_simulated_fleet_reaches_the_mqtt_and_coap_adapters() {
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let coap = free_udp_port();
    let metrics = free_port();
    let cfg = config("gw-sim", local.port(), upstream.port(), "1h", "1s")
        + &format!(
            "\n[[adapter]]\ntype = \"coap\"\nname = \"coap-sensors\"\nbind = \"127.0.0.1:{coap}\"\nrate_limit = 0\n\n[metrics]\nbind = \"127.0.0.1:{metrics}\"\n"
        );
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Subscribed").await;
    gw.wait_for_log("CoAP server listening").await;

    let out = simulate(&[
        "--protocol".into(),
        "mqtt".into(),
        "--broker".into(),
        local.url(),
        "--devices".into(),
        "4".into(),
        "--rate".into(),
        "0".into(),
        "--count".into(),
        "40".into(),
        "--qos".into(),
        "1".into(),
    ])
    .await;
    assert!(
        out.contains("sent 40 messages (80 readings) from 4 devices"),
        "{out}"
    );
    http_until(metrics, "/metrics", |_, b| {
        b.contains("edge_gateway_adapter_readings_total{adapter=\"local-sensors\"} 80\n")
    })
    .await;

    let out = simulate(&[
        "--protocol".into(),
        "coap".into(),
        "--target".into(),
        format!("127.0.0.1:{coap}"),
        "--devices".into(),
        "5".into(),
        "--rate".into(),
        "500".into(),
        "--count".into(),
        "25".into(),
        "--metrics".into(),
        "temperature,humidity,co2".into(),
    ])
    .await;
    assert!(out.contains("sent 25 messages (75 readings)"), "{out}");
    http_until(metrics, "/metrics", |_, b| {
        b.contains("edge_gateway_adapter_readings_total{adapter=\"coap-sensors\"} 75\n")
    })
    .await;

    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

#[tokio::test]
async fn a_simulated_lorawan_fleet_is_verified_and_counted_by_semtech_udp() {
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let lora = free_udp_port();
    let metrics = free_port();
    let fleet = [
        "--devices".to_string(),
        "6".into(),
        "--seed".into(),
        "42".into(),
    ];
    let mut print = fleet.to_vec();
    print.extend([
        "--protocol".into(),
        "lorawan".into(),
        "--print-lorawan-config".into(),
    ]);
    let tables = simulate(&print).await;
    assert_eq!(tables.matches("[[lorawan.device]]").count(), 6, "{tables}");
    assert_eq!(tables.matches("codec = \"compact_i16\"").count(), 6);
    // Configs written before the codecs were renamed keep working: half the
    // fleet is configured with the old name, and every reading must count.
    let tables = tables.replacen("codec = \"compact_i16\"", "codec = \"seed_compact\"", 3);
    let cfg = config("gw-sim-lora", local.port(), upstream.port(), "1h", "1s")
        + &format!(
            "\n[[adapter]]\ntype = \"semtech_udp\"\nname = \"lora\"\nbind = \"127.0.0.1:{lora}\"\n\n[metrics]\nbind = \"127.0.0.1:{metrics}\"\n\n{tables}"
        );
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Semtech UDP server listening").await;
    gw.wait_for_log("Codec name \"seed_compact\" is deprecated")
        .await;

    let mut send = fleet.to_vec();
    send.extend(
        [
            "--protocol",
            "lorawan",
            "--target",
            &format!("127.0.0.1:{lora}"),
            "--rate",
            "1000",
            "--count",
            "90",
        ]
        .map(String::from),
    );
    let out = simulate(&send).await;
    assert!(out.contains("90 PUSH_ACKs for 90 PUSH_DATA"), "{out}");
    assert!(
        out.contains("sent 90 messages (540 readings) from 6 devices"),
        "{out}"
    );
    // 15 uplinks per device, each MIC-checked, decrypted and decoded into
    // temperature, humidity, battery, plus rssi, snr and gateways.
    http_until(metrics, "/metrics", |_, b| {
        b.contains("edge_gateway_adapter_readings_total{adapter=\"lora\"} 540\n")
    })
    .await;

    // The same fleet again from the same counters is refused: FCnt 0..13
    // as replays, 14 as a retransmission. From above them, it is taken in.
    simulate(&send).await;
    http_until(metrics, "/metrics", |_, b| {
        b.contains(
            "edge_gateway_adapter_errors_total{adapter=\"lora\",error_type=\"fcnt_replay\"} 84\n",
        ) && b.contains("edge_gateway_adapter_readings_total{adapter=\"lora\"} 540\n")
    })
    .await;
    let mut again = send.clone();
    again.extend(["--fcnt-start".into(), "15".into()]);
    let out = simulate(&again).await;
    assert!(out.contains("sent 90 messages"), "{out}");
    http_until(metrics, "/metrics", |_, b| {
        b.contains("edge_gateway_adapter_readings_total{adapter=\"lora\"} 1080\n")
    })
    .await;

    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

#[tokio::test]
async fn simulated_bme680_nodes_are_acknowledged_by_tcp_line() {
    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let (line_port, metrics) = (free_port(), free_port());
    let cfg = config("gw-sim-tcp", local.port(), upstream.port(), "1h", "1s")
        + &format!(
            "\n[[adapter]]\ntype = \"tcp_line\"\nname = \"bme680-tcp\"\nbind = \"127.0.0.1:{line_port}\"\nformat = \"csv\"\ncolumns = [\"device\", \"temperature\", \"pressure\", \"humidity\", \"gas\"]\nack = true\n\n[metrics]\nbind = \"127.0.0.1:{metrics}\"\n"
        );
    let mut gw = GatewayProcess::start(&cfg);
    gw.wait_for_log("Listening for lines.").await;
    let out = simulate(&[
        "--protocol".into(),
        "tcp".into(),
        "--target".into(),
        format!("127.0.0.1:{line_port}"),
        "--devices".into(),
        "3".into(),
        "--rate".into(),
        "0".into(),
        "--count".into(),
        "30".into(),
        "--metrics".into(),
        "temperature,pressure,humidity,gas".into(),
        "--device-column".into(),
        "--ack".into(),
    ])
    .await;
    assert!(
        out.contains("30 lines acknowledged (ok), 0 refused"),
        "{out}"
    );
    assert!(
        out.contains("sent 30 messages (120 readings) from 3 devices"),
        "{out}"
    );
    let (_, body) = http_until(metrics, "/metrics", |_, b| {
        b.contains("edge_gateway_adapter_readings_total{adapter=\"bme680-tcp\"} 120\n")
    })
    .await;
    assert!(
        !body.contains("edge_gateway_adapter_errors_total{adapter=\"bme680-tcp\""),
        "{body}"
    );
    gw.signal("TERM");
    assert_eq!(gw.wait_exit().await, Some(0));
}

/// Two simulated controllers (instances 1001 and 1002 on consecutive
/// ports) read by the `bacnet` adapter: found by Who-Is at their address,
/// their six points named by object-name, values in their drifting ranges.
#[cfg(feature = "bacnet")]
#[tokio::test]
async fn simulated_bacnet_controllers_are_read_by_the_bacnet_adapter() {
    use tokio::io::AsyncBufReadExt;

    let local = Mosquitto::start();
    let upstream = Mosquitto::start();
    let (port, metrics) = (free_udp_port(), free_port());
    let mut sim = tokio::process::Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .args([
            "simulate",
            "--protocol",
            "bacnet",
            "--devices",
            "2",
            "--duration",
            "2m",
        ])
        .arg("--target")
        .arg(format!("127.0.0.1:{port}"))
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(sim.stderr.take().unwrap()).lines();
    for _ in 0..2 {
        let line = tokio::time::timeout(common::WAIT, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(line.contains("BACnet device"), "{line}");
    }
    let next = port + 1;
    let cfg = config("gw-sim-bacnet", local.port(), upstream.port(), "1s", "0s")
        + &format!(
            "\n[[adapter]]\ntype = \"bacnet\"\nname = \"bms\"\nbind = \"127.0.0.1:0\"\npoll = \"300ms\"\ntimeout = \"500ms\"\n\n[[bacnet.device]]\ninstance = 1001\naddress = \"127.0.0.1:{port}\"\n\n[[bacnet.device]]\ninstance = 1002\naddress = \"127.0.0.1:{next}\"\n\n[metrics]\nbind = \"127.0.0.1:{metrics}\"\n"
        );
    let mut sub =
        test_support::Subscriber::start(upstream.port(), "building/hq/+/aggregated").await;
    let _gw = GatewayProcess::start(&cfg);
    for device in ["bacnet-1001", "bacnet-1002"] {
        let m = sub
            .wait_for(common::WAIT, |m| {
                m.json()["device"] == device
                    && m.json()["metrics"]
                        .as_object()
                        .is_some_and(|o| o.len() == 6)
            })
            .await
            .unwrap_or_else(|| panic!("no window of {device}"));
        let j = m.json();
        let avg = |k: &str| j["metrics"][k]["avg"].as_f64().unwrap_or(f64::NAN);
        assert!((19.4..=22.6).contains(&avg("zone_temp")), "{j}");
        assert!((39.9..=50.1).contains(&avg("zone_humidity")), "{j}");
        assert!((499.0..=801.0).contains(&avg("zone_co2")), "{j}");
        assert!((15.1..=16.9).contains(&avg("supply_air")), "{j}");
        assert!((229.0..=271.0).contains(&avg("duct_pressure")), "{j}");
        assert_eq!(avg("fan_status"), 1.0, "{j}");
    }
    http_until(metrics, "/metrics", |_, b| {
        test_support::metrics::sample(
            b,
            "edge_gateway_bacnet_objects{adapter=\"bms\",device=\"bacnet-1002\"}",
        ) == Some(6.0)
    })
    .await;
}

/// A topic with a wildcard is no topic to publish to: refused at once,
/// where it hung for ever (spinning a core with `--rate 0`).
#[tokio::test]
async fn a_topic_with_a_wildcard_is_refused_not_a_hang() {
    let local = Mosquitto::start();
    for topic in ["sensors/{device}/#", "sensors/+/{device}"] {
        let out = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            tokio::process::Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
                .args(["simulate", "--protocol", "mqtt", "--broker", &local.url()])
                .args(["--topic", topic, "--count", "2", "--rate", "0"])
                .output(),
        )
        .await
        .expect("simulate ends")
        .unwrap();
        assert!(!out.status.success(), "{topic}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("not a topic one can publish to"),
            "{stderr}"
        );
    }
}
