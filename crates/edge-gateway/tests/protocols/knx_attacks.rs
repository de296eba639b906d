//! `type = "knx"` against peers that do what the common case does not:
//! a sender on the routing multicast whose ROUTING_INDICATIONs carry an
//! L_Data.req or L_Data.con (xknx encodes them; no KNX IP router routes
//! them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_support::metrics::sample;
use test_support::{free_port, Mosquitto, PythonPeer, Subscriber};

use crate::common::{http_until, GatewayProcess, WAIT};
use crate::knx::{config, ok, PEER};

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
