//! The sockets the gateway's parts listen on, so that `validate` (and a
//! reload or a pushed configuration) refuses two parts that would take the
//! same one: at run time the second would fail to bind, and the gateway
//! would run with that part down.

use std::net::SocketAddr;

use super::load::Problems;

/// Which kind of socket a listener is: a TCP and a UDP socket may share a
/// port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
        }
    }
}

/// One socket a part binds: the key path that sets it, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub key: String,
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// Whether binding both would fail on Linux: one port of one transport,
/// and the same address or a wildcard on either side (a wildcard of either
/// family takes the port on every address, IPv6 sockets being dual-stack by
/// default). Port 0 asks the kernel for a free port: never a clash.
fn clash(a: &Listener, b: &Listener) -> bool {
    a.transport == b.transport
        && a.addr.port() != 0
        && a.addr.port() == b.addr.port()
        && (a.addr.ip() == b.addr.ip()
            || a.addr.ip().is_unspecified()
            || b.addr.ip().is_unspecified())
}

/// Records a problem for each listener that would take a socket an
/// earlier one holds.
pub(crate) fn check(listeners: &[Listener], problems: &mut Problems) {
    for (i, later) in listeners.iter().enumerate() {
        if let Some(first) = listeners[..i].iter().find(|first| clash(first, later)) {
            problems.push(
                format!("{}.bind", later.key),
                format!(
                    "{} {} is already taken by {}.bind ({}): each part needs its own port",
                    later.transport.name(),
                    later.addr,
                    first.key,
                    first.addr
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(key: &str, transport: Transport, addr: &str) -> Listener {
        Listener {
            key: key.into(),
            transport,
            addr: addr.parse().unwrap(),
        }
    }

    fn problems_of(listeners: &[Listener]) -> Vec<String> {
        let mut problems = Problems::default();
        check(listeners, &mut problems);
        problems.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn one_port_of_one_transport_is_refused_to_the_second_part() {
        let got = problems_of(&[
            listener("adapter[0]", Transport::Tcp, "0.0.0.0:5000"),
            listener("adapter[1]", Transport::Tcp, "127.0.0.1:5000"),
            listener("metrics", Transport::Tcp, "127.0.0.1:5000"),
        ]);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].contains("adapter[1].bind"), "{got:?}");
        assert!(
            got[0].contains("already taken by adapter[0].bind"),
            "{got:?}"
        );
        assert!(got[1].contains("metrics.bind"), "{got:?}");
    }

    #[test]
    fn other_transports_addresses_and_port_zero_go_together() {
        assert!(problems_of(&[
            listener("adapter[0]", Transport::Tcp, "0.0.0.0:5683"),
            listener("adapter[1]", Transport::Udp, "0.0.0.0:5683"),
            listener("adapter[2]", Transport::Udp, "127.0.0.1:1700"),
            listener("adapter[3]", Transport::Udp, "127.0.0.2:1700"),
            listener("adapter[4]", Transport::Udp, "127.0.0.1:0"),
            listener("adapter[5]", Transport::Udp, "127.0.0.1:0"),
        ])
        .is_empty());
        assert_eq!(
            problems_of(&[
                listener("adapter[0]", Transport::Udp, "[::]:1700"),
                listener("adapter[1]", Transport::Udp, "127.0.0.1:1700"),
            ])
            .len(),
            1
        );
    }
}
