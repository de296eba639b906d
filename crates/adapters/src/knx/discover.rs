//! `edge-gateway knx discover`: a SEARCH_REQUEST to the routing multicast
//! (or one interface's address), and every SEARCH_RESPONSE collected: the
//! KNXnet/IP interfaces and routers on the network, with their individual
//! addresses, names and service families (tunnelling, routing, …).

use std::fmt::Write as _;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::{timeout_at, Instant};

use super::frame::{self, DeviceInfo, Frame, Hpai};

/// What to search.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The routing multicast (every KNX IP device answers it) or one
    /// device's address.
    pub to: SocketAddrV4,
    /// The local address to search from; unspecified: the one the
    /// system routes through.
    pub local_ip: Ipv4Addr,
    pub wait: Duration,
}

/// Sends the search and collects the answers for `wait` (each device
/// once, by its control endpoint).
///
/// # Errors
/// The socket cannot be bound or the search sent.
pub async fn discover(d: &Discovery) -> io::Result<Vec<DeviceInfo>> {
    let socket = UdpSocket::bind((d.local_ip, 0)).await?;
    let local_ip = if d.local_ip.is_unspecified() {
        route_to(d.to)?
    } else {
        d.local_ip
    };
    if d.to.ip().is_multicast() {
        let s = socket2::SockRef::from(&socket);
        if !d.local_ip.is_unspecified() {
            s.set_multicast_if_v4(&d.local_ip)?;
        }
        s.set_multicast_loop_v4(true)?;
    }
    let port = socket.local_addr()?.port();
    let mut out = Vec::with_capacity(16);
    frame::search_request(Hpai::udp(SocketAddrV4::new(local_ip, port)), &mut out);
    socket.send_to(&out, SocketAddr::V4(d.to)).await?;
    let deadline = Instant::now() + d.wait;
    let mut found: Vec<DeviceInfo> = Vec::new();
    let mut buf = vec![0u8; 1024];
    while let Ok(r) = timeout_at(deadline, socket.recv_from(&mut buf)).await {
        let (n, from) = r?;
        if let Ok(Frame::SearchResponse(mut info)) = frame::decode(&buf[..n]) {
            // A server behind NAT names no endpoint: it is where it answered from.
            if info.control.is_unspecified() {
                if let SocketAddr::V4(f) = from {
                    info.control = Hpai::udp(f);
                }
            }
            if !found.iter().any(|f| f.control == info.control) {
                found.push(*info);
            }
        }
    }
    Ok(found)
}

fn route_to(to: SocketAddrV4) -> io::Result<Ipv4Addr> {
    let probe = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    probe.connect(to)?;
    match probe.local_addr()? {
        SocketAddr::V4(a) => Ok(*a.ip()),
        SocketAddr::V6(_) => Ok(Ipv4Addr::UNSPECIFIED),
    }
}

/// `text` as a TOML basic string, control characters left out: a
/// device names itself, and a name with a quote and a line break would
/// otherwise print a `url = …` line of its choosing among the ones the
/// user copies into gateway.toml (or a terminal escape into the
/// terminal).
pub fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars().filter(|c| !c.is_control()) {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The answers for people, one block each.
pub fn render(found: &[DeviceInfo]) -> String {
    let mut out = String::new();
    if found.is_empty() {
        out.push_str("No KNXnet/IP interface or router answered.\n");
        return out;
    }
    for d in found {
        let hex = |b: &[u8], sep: &str| {
            b.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(sep)
        };
        let services = d.service_names();
        let tunnelling = services.iter().any(|s| s.starts_with("tunnelling"));
        let routing = services.iter().any(|s| s.starts_with("routing"));
        let _ = writeln!(out, "{} {}", d.control.addr, toml_string(&d.name));
        let _ = writeln!(out, "  individual address: {}", d.address);
        let _ = writeln!(out, "  services: {}", services.join(", "));
        let _ = writeln!(
            out,
            "  mac: {}  serial: {}  multicast: {}",
            hex(&d.mac, ":"),
            hex(&d.serial, ""),
            d.multicast
        );
        if tunnelling {
            let _ = writeln!(out, "  url = \"udp://{}\"", d.control.addr);
        }
        if routing {
            let _ = writeln!(
                out,
                "  url = \"multicast://{}:{}\"",
                d.multicast,
                d.control.addr.port()
            );
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::knx::address::IndividualAddress;

    #[test]
    fn a_devices_name_cannot_add_lines_to_the_suggested_config() {
        // The tester's fake server: a quote, a line break, a url line of
        // its own and a terminal escape in its 30-byte name.
        let info = DeviceInfo {
            control: Hpai::udp("127.0.0.1:3671".parse().unwrap()),
            address: IndividualAddress(0x1101),
            name: "x\"\n  url = \"udp://6.6.6.6:3671\"\u{1b}[8m\\".into(),
            serial: [0; 6],
            mac: [0; 6],
            multicast: Ipv4Addr::new(224, 0, 23, 12),
            services: vec![(4, 2)],
        };
        let text = render(&[info]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            r#"127.0.0.1:3671 "x\"  url = \"udp://6.6.6.6:3671\"[8m\\""#
        );
        let urls: Vec<&&str> = lines.iter().filter(|l| l.trim_start().starts_with("url")).collect();
        assert_eq!(urls, [&r#"  url = "udp://127.0.0.1:3671""#], "{text}");
        assert!(!text.contains('\u{1b}'));
        // It reads back as TOML, as the name it is without its controls.
        let back: toml::Table = toml::from_str(&format!("name = {}", toml_string("a\"b\\c\u{7}"))).unwrap();
        assert_eq!(back["name"].as_str(), Some("a\"b\\c"));
    }
}
