//! The `/health` verdict, read from the same telemetry as `/metrics`: the
//! gateway is healthy when its upstream broker (if it has one) is connected and every
//! adapter task is running, and those that hold a connection (MQTT) are
//! connected and subscribed: a running task that cannot reach its broker
//! takes in nothing. One that serves a port counts once the port is bound:
//! until then a device that connects is refused. Anything else is a 503 with the reasons, so a load
//! balancer or `curl -f` in a watchdog sees the difference.

use gateway_core::component::{
    LinkKind, ADAPTER_CONNECTED, ADAPTER_LINK, ADAPTER_LISTENING, BROKER_LINK, LINKS,
};
use gateway_core::Telemetry;
use serde_json::json;
use sinks::mqtt_upstream::{UPSTREAM_CONNECTED, UPSTREAM_NODE};
use sinks::spool::OUTBOX_HELD;

use crate::runtime::{ADAPTER_UP, UPSTREAM_CONFIGURED};
use pipeline::durability::JOURNAL_HOLDING;

/// Whether the gateway forwards to a cloud broker: without `[upstream]`
/// there is no broker to wait for. A telemetry that never said (a
/// component test) has one.
pub fn upstream_configured(t: &Telemetry) -> bool {
    t.gauges(UPSTREAM_CONFIGURED)
        .into_iter()
        .find(|(labels, _)| labels.is_empty())
        .is_none_or(|(_, v)| v > 0.5)
}

/// The verdict as the dashboard's gateway page shows it.
pub fn for_dashboard() -> dashboard::HealthCheck {
    std::sync::Arc::new(|t: &Telemetry| dashboard::HealthView {
        body: check(t).body,
        upstream_configured: upstream_configured(t),
    })
}

/// A health verdict: healthy or not, and the JSON body that explains it.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub healthy: bool,
    pub body: serde_json::Value,
}

/// What [`ADAPTER_LINK`] says of one adapter: the kind of link, and the
/// problem the adapter stated in its own words, if it did.
struct LinkInfo {
    adapter: String,
    link: String,
    problem: Option<String>,
}

/// Why a running adapter `name` takes nothing in: what the adapter said
/// ([`gateway_core::link_status::LinkStatus`]), else said of what it is
/// linked to ([`ADAPTER_LINK`]): an unplugged serial port is no broker.
fn not_linked(name: &str, links: &[LinkInfo]) -> String {
    let info = links.iter().find(|l| l.adapter == name);
    if let Some(problem) = info.and_then(|l| l.problem.as_deref()) {
        return format!("adapter \"{name}\" {problem}");
    }
    let down = info
        .and_then(|l| link_kind(&l.link))
        .map_or(BROKER_LINK.down, |k| k.down);
    format!("adapter \"{name}\" {down}")
}

/// The kind of link of this name: one several protocols hold, or one an
/// adapter built in declares as its own.
fn link_kind(name: &str) -> Option<&'static LinkKind> {
    LINKS
        .iter()
        .chain(adapters::DECLARATIONS.iter().flat_map(|d| d.links))
        .find(|k| k.name == name)
}

/// Judges the gateway from its telemetry.
pub fn check(t: &Telemetry) -> Health {
    let mut reasons = Vec::new();
    let configured = upstream_configured(t);
    let upstream = configured && t.gauge(UPSTREAM_CONNECTED, &[]).get() > 0.5;
    if configured && !upstream {
        reasons.push("upstream broker not connected".to_string());
    }
    let connected: Vec<(String, bool)> = t
        .gauges(ADAPTER_CONNECTED)
        .into_iter()
        .filter_map(|(labels, v)| {
            let (_, name) = labels.into_iter().find(|(k, _)| k == "adapter")?;
            Some((name, v > 0.5))
        })
        .collect();
    let links: Vec<LinkInfo> = t
        .gauges(ADAPTER_LINK)
        .into_iter()
        .filter(|(_, v)| *v > 0.5)
        .filter_map(|(labels, _)| {
            let label = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            Some(LinkInfo {
                adapter: label("adapter")?,
                link: label("link")?,
                problem: label("problem").filter(|p| !p.is_empty()),
            })
        })
        .collect();
    let unbound: Vec<String> = t
        .gauges(ADAPTER_LISTENING)
        .into_iter()
        .filter(|(_, v)| *v < 0.5)
        .filter_map(|(labels, _)| labels.into_iter().find(|(k, _)| k == "adapter"))
        .map(|(_, name)| name)
        .collect();
    let mut adapters = serde_json::Map::new();
    for (labels, value) in t.gauges(ADAPTER_UP) {
        let Some((_, name)) = labels.iter().find(|(k, _)| k == "adapter") else {
            continue;
        };
        let running = value > 0.5;
        let linked = connected
            .iter()
            .find(|(n, _)| n == name)
            .is_none_or(|(_, c)| *c);
        let state = match (running, linked) {
            (false, _) => {
                reasons.push(format!("adapter \"{name}\" is not running"));
                "stopped"
            }
            (true, false) => {
                reasons.push(not_linked(name, &links));
                "connecting"
            }
            (true, true) if unbound.contains(name) => {
                reasons.push(format!("adapter \"{name}\" has not opened its port yet"));
                "starting"
            }
            (true, true) => "running",
        };
        adapters.insert(name.clone(), json!(state));
    }
    // Commands taken from the cloud broker need their own subscription
    // (their own connection): without it every command waits unanswered
    // on the broker while the data flows.
    let commands = t
        .gauges(commands::COMMANDS_SUBSCRIBED)
        .into_iter()
        .find(|(labels, _)| labels.is_empty())
        .map(|(_, v)| v > 0.5);
    if commands == Some(false) {
        reasons.push("commands are not subscribed on the upstream broker (connection lost, or the broker's ACL refused the subscription): no command arrives".to_string());
    }
    // A full state directory: readings wait with their brokers, counted
    // nowhere, until the journal takes them.
    let holding = t.gauge(JOURNAL_HOLDING, &[]).get();
    if holding > 0.0 {
        reasons.push(format!(
            "the ingress journal cannot be written (state directory full?): {holding} readings wait unacknowledged and uncounted with their sources"
        ));
    }
    // An output whose outbox cannot write keeps what it is handed in
    // memory: lost at a restart, and the checkpoint waits for it. Its
    // outbox filling the state directory stopped InfluxDB and the file
    // output for good while this said ok.
    let mut outputs = serde_json::Map::new();
    for (labels, held) in t.gauges(OUTBOX_HELD) {
        if held <= 0.0 {
            continue;
        }
        let label = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let name = label("output").unwrap_or_else(|| "upstream".to_string());
        let error = label("error").unwrap_or_default();
        reasons.push(format!(
            "output \"{name}\" cannot write its outbox ({error}): {held} messages held in memory"
        ));
        outputs.insert(
            name,
            json!({"writable": false, "holding_messages": held, "error": error}),
        );
    }
    // The pages are not the data path, but a dashboard that is configured
    // and not served is a half-started gateway: say so.
    let dashboard = t
        .gauges(dashboard::DASHBOARD_LISTENING)
        .into_iter()
        .next()
        .map(|(labels, v)| {
            let label = |k: &str| {
                labels
                    .iter()
                    .find(|(n, _)| n == k)
                    .map_or(String::new(), |(_, v)| v.clone())
            };
            let listening = v > 0.5;
            if !listening {
                reasons.push(format!(
                    "dashboard cannot listen on {} ({}): set [dashboard] bind to a free port or stop the process holding it",
                    label("bind"),
                    label("error")
                ));
            }
            json!({"listening": listening, "bind": label("bind")})
        });
    // Nobody reads this verdict over HTTP then, but the dashboard and a
    // pushed configuration's health gate do.
    for (labels, v) in t.gauges(crate::metrics::METRICS_LISTENING) {
        if v < 0.5 {
            let label = |k: &str| {
                labels
                    .iter()
                    .find(|(n, _)| n == k)
                    .map_or(String::new(), |(_, v)| v.clone())
            };
            reasons.push(format!(
                "the metrics endpoint cannot listen on {} ({}): set [metrics] bind to a free port",
                label("bind"),
                label("error")
            ));
        }
    }
    let healthy = reasons.is_empty();
    let mut body = json!({
        "status": if healthy { "ok" } else { "unavailable" },
        "upstream_connected": upstream,
        "adapters": adapters,
    });
    if !configured {
        body["upstream"] = json!("not configured");
    }
    // Which node of the upstream broker (of a cluster: one of `urls`).
    if let Some((labels, _)) = t.gauges(UPSTREAM_NODE).into_iter().find(|(_, v)| *v > 0.5) {
        if let Some((_, url)) = labels.into_iter().find(|(k, _)| k == "url") {
            body["upstream_node"] = json!(url);
        }
    }
    if let Some(subscribed) = commands {
        body["commands_subscribed"] = json!(subscribed);
    }
    if holding > 0.0 {
        body["journal"] = json!({ "writable": false, "holding_readings": holding });
    }
    if !outputs.is_empty() {
        body["outputs"] = json!(outputs);
    }
    if let Some(d) = dashboard {
        body["dashboard"] = d;
    }
    // Which pushed configuration runs ([remote_config]); not a reason.
    if let Some(config) = crate::remote_config::health_view(t) {
        body["config"] = config;
    }
    if !healthy {
        body["reasons"] = json!(reasons);
    }
    Health { healthy, body }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_core::component::LINK_SERIAL_PORT;
    use gateway_core::link_status::LINK_TCP_SERVER;

    #[test]
    fn healthy_only_with_upstream_and_every_adapter() {
        let t = Telemetry::default();
        let a = t.gauge(ADAPTER_UP, &[("adapter", "a")]);
        let b = t.gauge(ADAPTER_UP, &[("adapter", "b")]);
        a.set(1.0);
        b.set(1.0);
        let h = check(&t);
        assert!(!h.healthy);
        assert_eq!(h.body["reasons"], json!(["upstream broker not connected"]));

        t.gauge(UPSTREAM_CONNECTED, &[]).set(1.0);
        let h = check(&t);
        assert!(h.healthy, "{}", h.body);
        assert_eq!(
            h.body,
            json!({"status": "ok", "upstream_connected": true,
                   "adapters": {"a": "running", "b": "running"}})
        );

        t.gauge(UPSTREAM_NODE, &[("url", "mqtt://a:1883")]).set(0.0);
        t.gauge(UPSTREAM_NODE, &[("url", "mqtt://b:1883")]).set(1.0);
        assert_eq!(check(&t).body["upstream_node"], "mqtt://b:1883");

        b.set(0.0);
        let h = check(&t);
        assert!(!h.healthy);
        assert_eq!(h.body["status"], "unavailable");
        assert_eq!(h.body["reasons"], json!(["adapter \"b\" is not running"]));
        assert_eq!(h.body["adapters"]["b"], "stopped");
    }

    #[test]
    fn without_an_upstream_only_the_adapters_are_judged() {
        let t = Telemetry::default();
        t.gauge(UPSTREAM_CONFIGURED, &[]).set(0.0);
        let a = t.gauge(ADAPTER_UP, &[("adapter", "serial")]);
        a.set(1.0);
        let h = check(&t);
        assert!(h.healthy, "{}", h.body);
        assert_eq!(
            h.body,
            json!({"status": "ok", "upstream_connected": false, "upstream": "not configured",
                   "adapters": {"serial": "running"}})
        );
        a.set(0.0);
        let h = check(&t);
        assert!(!h.healthy);
        assert_eq!(
            h.body["reasons"],
            json!(["adapter \"serial\" is not running"])
        );
        // Configured again (a component that says so): the broker counts.
        t.gauge(UPSTREAM_CONFIGURED, &[]).set(1.0);
        a.set(1.0);
        assert_eq!(
            check(&t).body["reasons"],
            json!(["upstream broker not connected"])
        );
    }

    #[test]
    fn readings_held_for_an_unwritable_journal_are_reported() {
        let t = Telemetry::default();
        t.gauge(UPSTREAM_CONNECTED, &[]).set(1.0);
        let holding = t.gauge(JOURNAL_HOLDING, &[]);
        holding.set(20.0);
        let h = check(&t);
        assert!(!h.healthy);
        assert_eq!(
            h.body["journal"],
            json!({"writable": false, "holding_readings": 20.0})
        );
        assert!(h.body["reasons"][0]
            .as_str()
            .is_some_and(|r| r.contains("ingress journal cannot be written")));
        holding.set(0.0);
        assert!(check(&t).healthy);
    }

    /// The tester's: a state directory the outputs' own outboxes filled
    /// stopped InfluxDB and the file output for good while `/health` said ok.
    #[test]
    fn an_output_whose_outbox_cannot_write_is_unhealthy_and_named() {
        let t = Telemetry::default();
        t.gauge(UPSTREAM_CONNECTED, &[]).set(1.0);
        let error =
            "writing /s/sink-influx/outbox/seg-1.log: No space left on device (os error 28)";
        let held = t.gauge(OUTBOX_HELD, &[("output", "influx"), ("error", error)]);
        held.set(12.0);
        let h = check(&t);
        assert!(!h.healthy);
        assert_eq!(
            h.body["outputs"],
            json!({"influx": {"writable": false, "holding_messages": 12.0, "error": error}})
        );
        assert_eq!(
            h.body["reasons"],
            json!([format!(
                "output \"influx\" cannot write its outbox ({error}): 12 messages held in memory"
            )])
        );
        // The upstream's spool has no `output` label.
        t.gauge(OUTBOX_HELD, &[("error", "io")]).set(1.0);
        assert!(check(&t).body["outputs"]["upstream"].is_object());
        t.remove_gauge(OUTBOX_HELD, &[("error", "io")]);
        held.set(0.0);
        assert!(check(&t).healthy);
    }

    /// The attack: a command over 64 KiB broke the command connection for
    /// good while `/health` said ok.
    #[test]
    fn commands_not_subscribed_are_unhealthy() {
        let t = Telemetry::default();
        t.gauge(UPSTREAM_CONNECTED, &[]).set(1.0);
        assert_eq!(check(&t).body.get("commands_subscribed"), None);
        let subscribed = t.gauge(commands::COMMANDS_SUBSCRIBED, &[]);
        let h = check(&t);
        assert!(!h.healthy);
        assert_eq!(h.body["commands_subscribed"], json!(false));
        assert!(h.body["reasons"][0]
            .as_str()
            .is_some_and(|r| r.contains("commands are not subscribed")));
        subscribed.set(1.0);
        let h = check(&t);
        assert!(h.healthy, "{}", h.body);
        assert_eq!(h.body["commands_subscribed"], json!(true));
    }

    #[test]
    fn an_mqtt_adapter_counts_only_once_subscribed() {
        let t = Telemetry::default();
        t.gauge(UPSTREAM_CONNECTED, &[]).set(1.0);
        t.gauge(ADAPTER_UP, &[("adapter", "mqtt")]).set(1.0);
        t.gauge(ADAPTER_UP, &[("adapter", "coap")]).set(1.0);
        let subscribed = t.gauge(ADAPTER_CONNECTED, &[("adapter", "mqtt")]);
        let h = check(&t);
        assert!(!h.healthy);
        assert_eq!(
            h.body["adapters"],
            json!({"mqtt": "connecting", "coap": "running"})
        );
        assert_eq!(
            h.body["reasons"],
            json!(["adapter \"mqtt\" is not connected and subscribed to its broker"])
        );
        subscribed.set(1.0);
        assert!(check(&t).healthy, "a CoAP adapter needs no connection");
    }

    #[test]
    fn an_adapter_that_serves_a_port_counts_once_bound() {
        let t = Telemetry::default();
        t.gauge(UPSTREAM_CONNECTED, &[]).set(1.0);
        t.gauge(ADAPTER_UP, &[("adapter", "lines")]).set(1.0);
        let bound = t.gauge(ADAPTER_LISTENING, &[("adapter", "lines")]);
        bound.set(0.0);
        let h = check(&t);
        assert!(!h.healthy);
        assert_eq!(h.body["adapters"], json!({"lines": "starting"}));
        assert_eq!(
            h.body["reasons"],
            json!(["adapter \"lines\" has not opened its port yet"])
        );
        bound.set(1.0);
        assert!(check(&t).healthy);
    }

    // The radio and the KNXnet/IP interface are the ble and knx
    // adapters' own links, declared in their folders.
    #[cfg(all(feature = "ble", feature = "knx"))]
    #[test]
    fn an_unplugged_serial_port_is_said_to_be_one() {
        let t = Telemetry::default();
        t.gauge(UPSTREAM_CONNECTED, &[]).set(1.0);
        for (name, link) in [
            ("relay", LINK_SERIAL_PORT),
            ("ble", adapters::ble::kind::RADIO.name),
            ("rooms", adapters::knx::kind::INTERFACE.name),
        ] {
            t.gauge(ADAPTER_UP, &[("adapter", name)]).set(1.0);
            t.gauge(ADAPTER_CONNECTED, &[("adapter", name)]).set(0.0);
            t.gauge(ADAPTER_LINK, &[("adapter", name), ("link", link)])
                .set(1.0);
        }
        let h = check(&t);
        assert_eq!(
            h.body["reasons"],
            json!([
                "adapter \"ble\" has no working Bluetooth radio (not scanning)",
                "adapter \"relay\" cannot read its serial port (unplugged, or it cannot be opened)",
                "adapter \"rooms\" has no tunnel to its KNXnet/IP interface (or has not joined the routing multicast)"
            ])
        );
        assert!(!h.body["reasons"].to_string().contains("broker"));
    }

    #[test]
    fn an_adapter_says_what_is_wrong_with_its_link_in_its_own_words() {
        let t = Telemetry::default();
        t.gauge(UPSTREAM_CONNECTED, &[]).set(1.0);
        for name in ["boiler-gw", "rs485"] {
            t.gauge(ADAPTER_UP, &[("adapter", name)]).set(1.0);
        }
        let mut tcp = gateway_core::link_status::LinkStatus::of(&t, "boiler-gw", LINK_TCP_SERVER);
        let mut rtu = gateway_core::link_status::LinkStatus::of(&t, "rs485", LINK_SERIAL_PORT);
        // Down before it said why: the kind of link speaks.
        assert_eq!(
            check(&t).body["reasons"],
            json!([
                "adapter \"boiler-gw\" cannot reach its TCP server",
                "adapter \"rs485\" cannot read its serial port (unplugged, or it cannot be opened)"
            ])
        );
        tcp.down("cannot reach its Modbus TCP server tcp://10.0.0.5:502 (connection refused)");
        rtu.down("cannot open its serial port /dev/ttyUSB0 (No such file or directory)");
        let h = check(&t);
        assert_eq!(
            h.body["reasons"],
            json!([
                "adapter \"boiler-gw\" cannot reach its Modbus TCP server tcp://10.0.0.5:502 (connection refused)",
                "adapter \"rs485\" cannot open its serial port /dev/ttyUSB0 (No such file or directory)"
            ])
        );
        assert!(!h.body.to_string().contains("broker"));
        tcp.up();
        rtu.up();
        assert!(check(&t).healthy);
    }

    #[test]
    fn a_dashboard_that_cannot_listen_is_unhealthy_and_says_where() {
        let t = Telemetry::default();
        t.gauge(UPSTREAM_CONNECTED, &[]).set(1.0);
        assert_eq!(
            check(&t).body.get("dashboard"),
            None,
            "no dashboard, no key"
        );
        t.gauge(
            dashboard::DASHBOARD_LISTENING,
            &[
                ("bind", "127.0.0.1:8088"),
                ("error", "Address in use (os error 98)"),
            ],
        )
        .set(0.0);
        let h = check(&t);
        assert!(!h.healthy);
        assert_eq!(
            h.body["dashboard"],
            json!({"listening": false, "bind": "127.0.0.1:8088"})
        );
        let reasons = h.body["reasons"].to_string();
        assert!(
            reasons.contains("dashboard cannot listen on 127.0.0.1:8088 (Address in use")
                && reasons.contains("[dashboard] bind"),
            "{reasons}"
        );
    }
}
