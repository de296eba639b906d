#![allow(clippy::unwrap_used)]

use super::*;

fn parse(body: &str) -> (Option<KnxConfig>, Problems) {
    let mut p = Problems::default();
    let table: toml::Value = toml::from_str(body).unwrap();
    let c = KnxConfig::from_table(table, "adapter[0]", &mut p);
    (c, p)
}

#[test]
fn urls_choose_the_transport_with_knxs_port_by_default() {
    let (c, p) = parse("name = \"rooms\"\nurl = \"udp://127.0.0.1\"");
    assert!(p.is_empty(), "{p}");
    let c = c.unwrap();
    assert_eq!(
        c.transport,
        Transport::Udp("127.0.0.1:3671".parse().unwrap())
    );
    assert_eq!(c.pace, DEFAULT_PACE);
    assert_eq!(c.heartbeat, Duration::from_secs(60));
    assert_eq!(c.individual_address.to_string(), "15.15.250");
    assert_eq!(
        Transport::parse("tcp://127.0.0.1:3700").unwrap(),
        Transport::Tcp("127.0.0.1:3700".parse().unwrap())
    );
    assert_eq!(
        Transport::parse("multicast://224.0.23.12").unwrap(),
        Transport::Routing("224.0.23.12:3671".parse().unwrap())
    );
    for bad in [
        "127.0.0.1:3671",
        "http://127.0.0.1",
        "multicast://127.0.0.1",
        "udp://",
    ] {
        assert!(Transport::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn every_mistake_is_named_by_its_key() {
    let (c, p) = parse(
        r#"
name = "rooms"
url = "udp://127.0.0.1:3671"
pace = 0
heartbeat = "5m"
local_ip = "here"
interface = "eth0"
individual_address = "1/2/3"
colour = "red"
"#,
    );
    assert!(c.is_none());
    let text = p.to_string();
    assert!(text.contains("colour"), "{text}");
    let (_, p) = parse(
        r#"
name = "rooms"
url = "udp://127.0.0.1:3671"
pace = 0
heartbeat = "5m"
local_ip = "here"
interface = "eth0"
individual_address = "1/2/3"
"#,
    );
    let text = p.to_string();
    for key in [
        "adapter[0].pace",
        "adapter[0].heartbeat",
        "adapter[0].local_ip",
        "adapter[0].interface",
        "adapter[0].individual_address",
    ] {
        assert!(text.contains(key), "{key} in {text}");
    }
}

#[test]
fn refresh_after_silence_is_ten_minutes_zero_is_off_and_routing_has_none() {
    let (c, p) = parse("name = \"rooms\"\nurl = \"udp://127.0.0.1\"");
    assert!(p.is_empty(), "{p}");
    assert_eq!(
        c.unwrap().refresh_after_silence,
        Duration::from_secs(600)
    );
    let (c, p) = parse(
        "name = \"rooms\"\nurl = \"tcp://127.0.0.1\"\nrefresh_after_silence = \"0s\"",
    );
    assert!(p.is_empty(), "{p}");
    assert_eq!(c.unwrap().refresh_after_silence, Duration::ZERO);
    let (c, p) = parse(
        "name = \"rooms\"\nurl = \"multicast://224.0.23.12\"\nrefresh_after_silence = \"5m\"",
    );
    assert!(c.is_none());
    let text = p.to_string();
    assert!(
        text.contains("adapter[0].refresh_after_silence") && text.contains("routing"),
        "{text}"
    );
    let (_, p) = parse("name = \"rooms\"\nurl = \"udp://127.0.0.1\"\nrefresh_after_silence = \"soon\"");
    assert!(p.to_string().contains("refresh_after_silence"), "{p}");
}
