//! `type = "knx"` against peers that do what the common case does not:
//! knxd with `--multi-port` (its tunnels' telegrams sent from its routing
//! port, not the control endpoint the gateway reached, after a
//! CONNECT_RESPONSE naming no data endpoint), and a sender on the routing
//! multicast whose ROUTING_INDICATIONs carry an L_Data.req or L_Data.con
//! (xknx encodes them; no KNX IP router routes them). The forger on
//! another host of the LAN is scripted in the adapter's unit tests
//! (`tunnel_tests.rs`): knxd cannot be made to forge.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::UdpSocket;
use std::time::Duration;

use serde_json::json;
use test_support::metrics::sample;
use test_support::{free_port, Mosquitto, PythonPeer, Subscriber};

use crate::common::{http_until, GatewayProcess, WAIT};
use crate::knx::{command, config, ok, Knxd, PEER};

/// The tunnelling endpoint knxd announces to a unicast SEARCH_REQUEST on
/// `port` (as `knx discover` finds it): its control port.
fn announced_control_port(port: u16) -> u16 {
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let me = probe.local_addr().unwrap().port();
    let mut req = vec![0x06, 0x10, 0x02, 0x01, 0x00, 0x0E, 0x08, 0x01, 127, 0, 0, 1];
    req.extend_from_slice(&me.to_be_bytes());
    probe.send_to(&req, ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = probe.recv_from(&mut buf).expect("knxd's SEARCH_RESPONSE");
    assert!(n >= 14 && buf[2..4] == [0x02, 0x02], "{:02x?}", &buf[..n]);
    u16::from_be_bytes([buf[12], buf[13]])
}

/// The attack (an interoperability one): knxd with `--multi-port`, reached
/// at the endpoint it announces, answers a NAT CONNECT_REQUEST with the
/// data endpoint 0.0.0.0:0 ("where this came from") and then sends its
/// TUNNELLING_REQUESTs from its routing port. The gateway heard only the
/// endpoint it reached: connected, `/health` ok, and deaf to every
/// telegram and confirmation.
#[tokio::test]
async fn knx_tunnel_hears_knxd_multi_port_which_names_no_data_endpoint_and_sends_from_another_port()
{
    let port = free_port();
    let _knxd = Knxd::start_with(port, 8, &["--multi-port"]);
    let control = announced_control_port(port);
    assert_ne!(
        control, port,
        "knxd --multi-port tunnels on a port of its own"
    );
    let mut peer = PythonPeer::start_with_args(PEER, &[&port.to_string(), "routing"]);
    let cloud = Mosquitto::start();
    let metrics = free_port();
    let body = format!(
        r#"
[commands]
enabled = true
max_age = "60s"

[[adapter]]
type = "knx"
name = "rooms"
url = "udp://127.0.0.1:{control}"
timeout = "1s"
nat = true

[[knx.group]]
address = "6/0/1"
dpt = "9.001"
device = "hall"
metric = "temperature"

[[knx.group]]
address = "6/0/2"
dpt = "1.001"
device = "hall"
metric = "light"
writable = true
"#
    );
    let mut sub = Subscriber::start(cloud.port(), "building/hq/+/aggregated").await;
    let mut results = Subscriber::start(cloud.port(), "building/hq/+/command/result").await;
    let mut gw = GatewayProcess::start(&config(cloud.port(), metrics, &body));
    gw.wait_for_log("KNX tunnel connected.").await;
    gw.wait_for_log("Subscribed to commands on the upstream broker.")
        .await;
    ok(&mut peer, "write 6/0/1 9.001 21.5");
    let w = sub
        .wait_for(WAIT, |m| {
            m.json()["device"] == "hall" && m.json()["metrics"]["temperature"]["avg"] == 21.5
        })
        .await;
    assert!(
        w.is_some(),
        "xknx's telegram, sent on by knxd from its routing port, is a reading"
    );
    // knxd's L_Data.con comes from that port too.
    let r = command(
        cloud.port(),
        &mut results,
        "hall",
        json!({"id": "light-1", "metric": "light", "value": true}),
    )
    .await;
    assert_eq!(r["status"], "done", "{r}");
    peer.wait_for_line(
        |l| l.contains("\"dst\": \"6/0/2\"") && l.contains("\"write\""),
        WAIT,
    )
    .expect("xknx receives the gateway's write");
    let (_, text) = http_until(metrics, "/metrics", |_, b| {
        sample(b, "edge_gateway_adapter_connected{adapter=\"rooms\"}") == Some(1.0)
    })
    .await;
    assert_eq!(
        sample(
            &text,
            "edge_gateway_adapter_errors_total{adapter=\"rooms\",error_type=\"connection_lost\"}"
        ),
        None,
        "{text}"
    );
}

/// The attack: a sender on the routing multicast (a misconfigured tool, a
/// hostile host on the LAN) sends ROUTING_INDICATIONs carrying an
/// L_Data.req and an L_Data.con. In routing only L_Data.ind carries bus
/// telegrams (KNX 3.8.5; knxd drops the others, xknx refuses a .req):
/// they were read as telegrams, a false temperature stored.
#[tokio::test]
async fn knx_routing_drops_and_counts_routed_requests_and_confirmations() {
    let port = free_port();
    let mut peer = PythonPeer::start_with_args(PEER, &[&port.to_string(), "routing"]);
    let cloud = Mosquitto::start();
    let metrics = free_port();
    let body = format!(
        r#"
[[adapter]]
type = "knx"
name = "router"
url = "multicast://224.0.23.12:{port}"
interface = "127.0.0.1"
individual_address = "1.1.250"

[[knx.group]]
address = "5/0/1"
dpt = "9.001"
device = "hall"
metric = "temperature"
"#
    );
    let mut sub = Subscriber::start(cloud.port(), "building/hq/+/aggregated").await;
    let mut gw = GatewayProcess::start(&config(cloud.port(), metrics, &body));
    gw.wait_for_log("KNX routing joined.").await;
    ok(&mut peer, "routed req 5/0/1 9.001 99.5");
    ok(&mut peer, "routed con 5/0/1 9.001 77.5");
    // Sent after the two: the one the gateway must read.
    ok(&mut peer, "write 5/0/1 9.001 18.75");
    let windows = sub
        .collect_until(WAIT, |got| {
            got.iter()
                .any(|m| m.json()["metrics"]["temperature"]["max"] == 18.75)
        })
        .await;
    let hall: Vec<_> = windows
        .iter()
        .map(|m| m.json())
        .filter(|j| j["device"] == "hall")
        .collect();
    for j in &hall {
        let t = &j["metrics"]["temperature"];
        assert_eq!(t["count"], 1, "only the L_Data.ind is a reading: {j}");
        assert_eq!(t["max"], 18.75, "only the L_Data.ind is a reading: {j}");
    }
    assert!(!hall.is_empty(), "the L_Data.ind is read");
    http_until(metrics, "/metrics", |_, b| {
        sample(
            b,
            "edge_gateway_adapter_errors_total{adapter=\"router\",error_type=\"routed_not_indication\"}",
        ) == Some(2.0)
    })
    .await;
    gw.wait_for_log("L_Data.req").await;
}
