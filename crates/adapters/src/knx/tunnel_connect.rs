//! The tunnel's connection itself: CONNECT_REQUEST and its answer over
//! UDP or TCP, the socket each runs on, and DISCONNECT_REQUEST. The
//! protocol run over it (heartbeat, sequence, acknowledgements,
//! reconnects) is `tunnel.rs`'s.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout, Instant};

use super::address::IndividualAddress;
use super::frame::{self, Frame, Hpai, E_NO_ERROR, E_NO_MORE_CONNECTIONS};
use super::tunnel::TunnelSettings;

/// Why a connect failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectError {
    #[error("the interface has no more connections: every tunnel slot is taken (E_NO_MORE_CONNECTIONS); free one, or give the interface more")]
    NoMoreConnections,
    #[error("the interface refused the tunnel: {text} (status 0x{status:02x})", text = frame::status_text(*.0), status = .0)]
    Refused(u8),
    #[error("the interface did not answer the CONNECT_REQUEST within {0:?}")]
    NoAnswer(Duration),
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl ConnectError {
    pub(super) fn reason(&self) -> &'static str {
        match self {
            Self::NoMoreConnections => "no_more_connections",
            Self::Refused(_) => "connect_refused",
            Self::NoAnswer(_) => "no_answer",
            Self::Io(_) => "connect_failed",
        }
    }
}

/// The socket a tunnel runs on.
pub(super) enum Wire {
    Udp {
        socket: UdpSocket,
        control: SocketAddr,
        data: SocketAddr,
        route_back: RouteBack,
    },
    Tcp {
        stream: TcpStream,
        buf: Vec<u8>,
    },
}

/// Where the data of an interface that named no data endpoint in its
/// CONNECT_RESPONSE (0.0.0.0:0, "route back") comes from. xknx then sends
/// to the address the response came from, as the gateway does; but such an
/// interface may send from another port (knxd `--multi-port` sends from
/// its routing port), and hearing the control endpoint only left the
/// tunnel deaf. Every port of the interface's address for good would let
/// any process of its host onto the tunnel: the first TUNNELLING_REQUEST
/// or TUNNELLING_ACK of the tunnel's channel from another port of that
/// address names the port, which alone is heard from then on; a
/// TUNNELLING_REQUEST from the control endpoint first says the interface
/// sends its data there, and no other port is heard. (Not its ACK: knxd
/// `--multi-port` acknowledges from the control endpoint and sends its
/// telegrams and confirmations from its routing port.) Another host is
/// never heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RouteBack {
    /// The interface named its data endpoint (or not yet connected).
    No,
    Learning { channel: u8 },
    Learnt(SocketAddr),
}

/// The service of `f` if it is a TUNNELLING_REQUEST or TUNNELLING_ACK on
/// `channel`: read from the header only, as the datagram is not yet known
/// to be the interface's.
fn on_channel(f: &[u8], channel: u8) -> Option<u16> {
    match f {
        [0x06, 0x10, 0x04, s @ (0x20 | 0x21), _, _, 0x04, ch, ..] if *ch == channel => {
            Some(u16::from_be_bytes([0x04, *s]))
        }
        _ => None,
    }
}

impl Wire {
    pub(super) fn reliable(&self) -> bool {
        matches!(self, Self::Tcp { .. })
    }

    /// The route back state, for the log: `None` over TCP.
    pub(super) fn route_back(&self) -> Option<RouteBack> {
        match self {
            Self::Udp { route_back, .. } => Some(*route_back),
            Self::Tcp { .. } => None,
        }
    }

    pub(super) async fn send_control(&mut self, frame: &[u8]) -> io::Result<()> {
        match self {
            Self::Udp {
                socket, control, ..
            } => socket.send_to(frame, *control).await.map(|_| ()),
            Self::Tcp { stream, .. } => stream.write_all(frame).await,
        }
    }

    pub(super) async fn send_data(&mut self, frame: &[u8]) -> io::Result<()> {
        match self {
            Self::Udp { socket, data, .. } => socket.send_to(frame, *data).await.map(|_| ()),
            Self::Tcp { stream, .. } => stream.write_all(frame).await,
        }
    }

    /// The next frame into `out` (cancel-safe: a part of a TCP frame
    /// stays in the buffer). Over UDP only the interface's control and
    /// data endpoints are heard: a datagram from another port of its
    /// address is another process of that host (knxd is often on the
    /// gateway's own), which could otherwise close the tunnel or put
    /// telegrams on it knowing the channel id alone. An interface that
    /// named no data endpoint is heard from the port its first data came
    /// from too ([`RouteBack`]). `Some(sender)`: a datagram from elsewhere,
    /// dropped (`out` left empty), for the caller to count.
    pub(super) async fn recv(&mut self, out: &mut Vec<u8>) -> io::Result<Option<SocketAddr>> {
        match self {
            Self::Udp {
                socket,
                control,
                data,
                route_back,
            } => {
                out.resize(1024, 0);
                let (n, from) = socket.recv_from(out).await?;
                // The data port at the address reached, too: a
                // multi-homed interface may name another of its addresses.
                let data_port = from.ip() == control.ip() && from.port() == data.port();
                let heard = match *route_back {
                    RouteBack::Learning { channel } if from.ip() == control.ip() => {
                        match on_channel(&out[..n], channel) {
                            Some(frame::TUNNELLING_REQUEST) if from == *control => {
                                *route_back = RouteBack::Learnt(from);
                                true
                            }
                            Some(_) if from != *control => {
                                *route_back = RouteBack::Learnt(from);
                                true
                            }
                            _ => from == *control,
                        }
                    }
                    _ if from == *control || from == *data || data_port => true,
                    RouteBack::Learnt(at) => from == at,
                    RouteBack::Learning { .. } | RouteBack::No => false,
                };
                if heard {
                    out.truncate(n);
                    Ok(None)
                } else {
                    out.clear();
                    Ok(Some(from))
                }
            }
            Self::Tcp { stream, buf } => loop {
                if buf.len() >= 6 {
                    let total = frame::total_length(buf)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    if buf.len() >= total {
                        out.clear();
                        out.extend(buf.drain(..total));
                        return Ok(None);
                    }
                }
                if stream.read_buf(buf).await? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            },
        }
    }
}

/// A tunnel that connected: its channel and the control endpoint sent.
pub(super) struct Connected {
    pub(super) wire: Wire,
    pub(super) channel: u8,
    pub(super) control: Hpai,
    pub(super) address: IndividualAddress,
}

/// How long the socket of a CONNECT_REQUEST given up on still listens for
/// its answer.
const LATE_ANSWER_WINDOW: Duration = Duration::from_secs(30);

/// A busy or paused interface may grant a tunnel after the gateway gave up
/// waiting (and tried again from another socket): unused, it would hold
/// one of the interface's few slots until CONNECTION_ALIVE_TIME (120 s),
/// and other clients would be refused meanwhile. Its grant is disconnected
/// at once; over UDP only, as a TCP tunnel ends with its connection.
async fn release_late_tunnel(mut wire: Wire, control: Hpai) {
    let mut buf = Vec::with_capacity(1024);
    let _ = timeout(LATE_ANSWER_WINDOW, async {
        while wire.recv(&mut buf).await.is_ok() {
            if let Ok(Frame::ConnectResponse {
                channel,
                status: E_NO_ERROR,
                ..
            }) = frame::decode(&buf)
            {
                let mut out = Vec::with_capacity(16);
                frame::disconnect_request(channel, control, &mut out);
                let _ = wire.send_control(&out).await;
                return;
            }
        }
    })
    .await;
}

pub(super) async fn connect(s: &TunnelSettings) -> Result<Connected, ConnectError> {
    let remote = SocketAddr::V4(s.remote);
    let (mut wire, control) = if s.tcp {
        let stream = timeout(s.timeout, TcpStream::connect(remote))
            .await
            .map_err(|_| ConnectError::NoAnswer(s.timeout))??;
        let _ = stream.set_nodelay(true);
        (
            Wire::Tcp {
                stream,
                buf: Vec::with_capacity(512),
            },
            Hpai::TCP,
        )
    } else {
        let bind = s.local_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let socket = UdpSocket::bind((bind, 0)).await?;
        let _ =
            socket2::SockRef::from(&socket).set_recv_buffer_size(super::routing::RECEIVE_BUFFER);
        let port = socket.local_addr()?.port();
        let control = if s.nat {
            Hpai::NAT
        } else {
            let ip = match s.local_ip {
                Some(ip) => ip,
                None => route_to(s.remote)?,
            };
            Hpai::udp(SocketAddrV4::new(ip, port))
        };
        (
            Wire::Udp {
                socket,
                control: remote,
                data: remote,
                route_back: RouteBack::No,
            },
            control,
        )
    };
    let mut out = Vec::with_capacity(32);
    frame::connect_request(control, control, &mut out);
    wire.send_control(&out).await?;
    let deadline = Instant::now() + s.timeout;
    let mut buf = Vec::with_capacity(1024);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, wire.recv(&mut buf)).await {
            Err(_) => {
                if matches!(wire, Wire::Udp { .. }) {
                    tokio::spawn(release_late_tunnel(wire, control));
                }
                return Err(ConnectError::NoAnswer(s.timeout));
            }
            Ok(Err(e)) => return Err(ConnectError::Io(e)),
            // A foreign datagram leaves `buf` empty: not read below.
            Ok(Ok(_)) => {}
        }
        let Ok(Frame::ConnectResponse {
            channel,
            status,
            data,
            address,
        }) = frame::decode(&buf)
        else {
            continue;
        };
        match (status, address) {
            (E_NO_ERROR, Some(address)) => {
                if let (
                    Wire::Udp {
                        data: to,
                        route_back,
                        ..
                    },
                    Some(d),
                ) = (&mut wire, data)
                {
                    if d.addr.port() != 0 && (s.nat || d.addr.ip().is_unspecified()) {
                        // Behind a router, the address the interface
                        // gives is its own private one: its port, at the
                        // address it was reached at.
                        *to = SocketAddr::V4(SocketAddrV4::new(*s.remote.ip(), d.addr.port()));
                    } else if !d.is_unspecified() {
                        *to = SocketAddr::V4(d.addr);
                    } else {
                        // 0.0.0.0:0: sent to where the answer came from,
                        // heard from where its data comes from.
                        *route_back = RouteBack::Learning { channel };
                    }
                }
                return Ok(Connected {
                    wire,
                    channel,
                    control,
                    address,
                });
            }
            (E_NO_MORE_CONNECTIONS, _) => return Err(ConnectError::NoMoreConnections),
            (status, _) => return Err(ConnectError::Refused(status)),
        }
    }
}

/// The local address the system routes to `remote` through.
fn route_to(remote: SocketAddrV4) -> io::Result<Ipv4Addr> {
    let probe = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    probe.connect(remote)?;
    match probe.local_addr()? {
        SocketAddr::V4(a) => Ok(*a.ip()),
        SocketAddr::V6(_) => Err(io::Error::other("no IPv4 route to the interface")),
    }
}

/// DISCONNECT_REQUEST, and a short wait for its answer.
pub(super) async fn disconnect(c: &mut Connected) {
    let mut out = Vec::with_capacity(16);
    frame::disconnect_request(c.channel, c.control, &mut out);
    if c.wire.send_control(&out).await.is_err() {
        return;
    }
    let mut buf = Vec::with_capacity(64);
    let _ = timeout(Duration::from_secs(1), async {
        while c.wire.recv(&mut buf).await.is_ok() {
            if matches!(frame::decode(&buf), Ok(Frame::DisconnectResponse { .. })) {
                break;
            }
        }
    })
    .await;
}
