//! KNXnet/IP frames (KNX 3.8.2 Core, 3.8.4 Tunnelling, 3.8.5 Routing):
//! the 6-byte header, host address blocks (HPAI), the connection
//! services a tunnel needs, tunnelling and routing telegrams, and the
//! search a `knx discover` sends. Pure, and the fuzzed boundary: every
//! datagram from the network goes through [`decode`] first.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::address::IndividualAddress;

pub const SEARCH_REQUEST: u16 = 0x0201;
pub const SEARCH_RESPONSE: u16 = 0x0202;
pub const CONNECT_REQUEST: u16 = 0x0205;
pub const CONNECT_RESPONSE: u16 = 0x0206;
pub const CONNECTIONSTATE_REQUEST: u16 = 0x0207;
pub const CONNECTIONSTATE_RESPONSE: u16 = 0x0208;
pub const DISCONNECT_REQUEST: u16 = 0x0209;
pub const DISCONNECT_RESPONSE: u16 = 0x020A;
pub const TUNNELLING_REQUEST: u16 = 0x0420;
pub const TUNNELLING_ACK: u16 = 0x0421;
pub const ROUTING_INDICATION: u16 = 0x0530;
pub const ROUTING_LOST_MESSAGE: u16 = 0x0531;
pub const ROUTING_BUSY: u16 = 0x0532;
/// KNX IP Secure (KNX AN159): a frame encrypted whole, and a secured
/// router's clock. Told apart only to say they cannot be read.
pub const SECURE_WRAPPER: u16 = 0x0950;
pub const TIMER_NOTIFY: u16 = 0x0955;

/// KNXnet/IP's port and routing multicast group (KNX 3.8.2 §2.8).
pub const DEFAULT_PORT: u16 = 3671;
pub const ROUTING_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 23, 12);

/// Status codes a server answers with (KNX 3.8.2 §7.8.4).
pub const E_NO_ERROR: u8 = 0x00;
pub const E_CONNECTION_ID: u8 = 0x21;
pub const E_NO_MORE_CONNECTIONS: u8 = 0x24;

const HEADER_LEN: usize = 6;
const PROTOCOL_VERSION: u8 = 0x10;
const HPAI_UDP: u8 = 0x01;
const HPAI_TCP: u8 = 0x02;

/// Why a frame did not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("truncated {0}")]
    Truncated(&'static str),
    #[error("not a KNXnet/IP 1.0 header")]
    Header,
    #[error("the header's length {declared} does not match the {actual} bytes received")]
    Length { declared: usize, actual: usize },
}

/// A host address block: where the other side sends to. `0.0.0.0:0`
/// asks it to answer wherever the request came from (NAT, KNX 3.8.2
/// §8.6.3), and is what TCP always uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hpai {
    pub tcp: bool,
    pub addr: SocketAddrV4,
}

impl Hpai {
    pub const NAT: Self = Self {
        tcp: false,
        addr: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
    };
    pub const TCP: Self = Self {
        tcp: true,
        addr: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
    };

    pub fn udp(addr: SocketAddrV4) -> Self {
        Self { tcp: false, addr }
    }

    fn read(b: &[u8]) -> Result<Self, CodecError> {
        let h = b.get(..8).ok_or(CodecError::Truncated("HPAI"))?;
        if h[0] != 8 {
            return Err(CodecError::Truncated("HPAI"));
        }
        Ok(Self {
            tcp: h[1] == HPAI_TCP,
            addr: SocketAddrV4::new(
                Ipv4Addr::new(h[2], h[3], h[4], h[5]),
                u16::from_be_bytes([h[6], h[7]]),
            ),
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[8, if self.tcp { HPAI_TCP } else { HPAI_UDP }]);
        out.extend_from_slice(&self.addr.ip().octets());
        out.extend_from_slice(&self.addr.port().to_be_bytes());
    }

    pub fn is_unspecified(&self) -> bool {
        self.addr.ip().is_unspecified() || self.addr.port() == 0
    }
}

/// What a KNXnet/IP server says of itself in a SEARCH_RESPONSE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub control: Hpai,
    pub address: IndividualAddress,
    pub name: String,
    pub serial: [u8; 6],
    pub mac: [u8; 6],
    pub multicast: Ipv4Addr,
    /// Service families (2 core, 3 device management, 4 tunnelling,
    /// 5 routing, …) with their versions.
    pub services: Vec<(u8, u8)>,
}

impl DeviceInfo {
    /// The service families by name, as `knx discover` prints them.
    pub fn service_names(&self) -> Vec<String> {
        self.services
            .iter()
            .map(|(family, version)| {
                let name = match family {
                    2 => "core",
                    3 => "device_management",
                    4 => "tunnelling",
                    5 => "routing",
                    6 => "remote_logging",
                    7 => "remote_configuration",
                    8 => "object_server",
                    9 => "security",
                    _ => return format!("family_{family}_v{version}"),
                };
                format!("{name}_v{version}")
            })
            .collect()
    }
}

/// One KNXnet/IP frame, as far as the gateway reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    SearchRequest {
        endpoint: Hpai,
    },
    SearchResponse(Box<DeviceInfo>),
    ConnectResponse {
        channel: u8,
        status: u8,
        data: Option<Hpai>,
        address: Option<IndividualAddress>,
    },
    ConnectionStateRequest {
        channel: u8,
    },
    ConnectionStateResponse {
        channel: u8,
        status: u8,
    },
    DisconnectRequest {
        channel: u8,
    },
    DisconnectResponse {
        channel: u8,
        status: u8,
    },
    TunnellingRequest {
        channel: u8,
        seq: u8,
        cemi: &'a [u8],
    },
    TunnellingAck {
        channel: u8,
        seq: u8,
        status: u8,
    },
    RoutingIndication {
        cemi: &'a [u8],
    },
    RoutingBusy {
        wait_ms: u16,
        control: u16,
    },
    RoutingLostMessage {
        lost: u16,
    },
    /// A service the gateway does not use (a CONNECT_REQUEST from
    /// another client on a shared multicast, a description, …).
    Other {
        service: u16,
    },
}

/// The total length a header announces, once its first 6 bytes are in:
/// how TCP frames are delimited.
///
/// # Errors
/// [`CodecError::Header`] when the bytes are not a KNXnet/IP header.
pub fn total_length(header: &[u8]) -> Result<usize, CodecError> {
    let h = header
        .get(..HEADER_LEN)
        .ok_or(CodecError::Truncated("header"))?;
    if h[0] != HEADER_LEN as u8 || h[1] != PROTOCOL_VERSION {
        return Err(CodecError::Header);
    }
    let total = usize::from(u16::from_be_bytes([h[4], h[5]]));
    if total < HEADER_LEN {
        return Err(CodecError::Header);
    }
    Ok(total)
}

/// Reads one frame (a whole datagram, or one TCP frame).
///
/// # Errors
/// [`CodecError`] for a frame that is not KNXnet/IP or shorter than its
/// fields say.
pub fn decode(b: &[u8]) -> Result<Frame<'_>, CodecError> {
    let total = total_length(b)?;
    if total != b.len() {
        return Err(CodecError::Length {
            declared: total,
            actual: b.len(),
        });
    }
    let service = u16::from_be_bytes([b[2], b[3]]);
    let body = &b[HEADER_LEN..];
    let byte =
        |i: usize, what: &'static str| body.get(i).copied().ok_or(CodecError::Truncated(what));
    Ok(match service {
        SEARCH_REQUEST => Frame::SearchRequest {
            endpoint: Hpai::read(body)?,
        },
        SEARCH_RESPONSE => Frame::SearchResponse(Box::new(search_response(body)?)),
        CONNECT_RESPONSE => {
            let channel = byte(0, "connect response")?;
            let status = byte(1, "connect response")?;
            let (data, address) = if status == E_NO_ERROR {
                let data = Hpai::read(&body[2..])?;
                let crd = body.get(10..14).ok_or(CodecError::Truncated("CRD"))?;
                (
                    Some(data),
                    Some(IndividualAddress(u16::from_be_bytes([crd[2], crd[3]]))),
                )
            } else {
                (None, None)
            };
            Frame::ConnectResponse {
                channel,
                status,
                data,
                address,
            }
        }
        CONNECTIONSTATE_REQUEST => Frame::ConnectionStateRequest {
            channel: byte(0, "connection state request")?,
        },
        CONNECTIONSTATE_RESPONSE => Frame::ConnectionStateResponse {
            channel: byte(0, "connection state response")?,
            status: byte(1, "connection state response")?,
        },
        DISCONNECT_REQUEST => Frame::DisconnectRequest {
            channel: byte(0, "disconnect request")?,
        },
        DISCONNECT_RESPONSE => Frame::DisconnectResponse {
            channel: byte(0, "disconnect response")?,
            status: byte(1, "disconnect response")?,
        },
        TUNNELLING_REQUEST => {
            let header_len = usize::from(byte(0, "connection header")?);
            if header_len < 4 {
                return Err(CodecError::Truncated("connection header"));
            }
            Frame::TunnellingRequest {
                channel: byte(1, "connection header")?,
                seq: byte(2, "connection header")?,
                cemi: body
                    .get(header_len..)
                    .ok_or(CodecError::Truncated("connection header"))?,
            }
        }
        TUNNELLING_ACK => Frame::TunnellingAck {
            channel: byte(1, "tunnelling ack")?,
            seq: byte(2, "tunnelling ack")?,
            status: byte(3, "tunnelling ack")?,
        },
        ROUTING_INDICATION => Frame::RoutingIndication { cemi: body },
        ROUTING_BUSY => {
            let b = body.get(..6).ok_or(CodecError::Truncated("routing busy"))?;
            Frame::RoutingBusy {
                wait_ms: u16::from_be_bytes([b[2], b[3]]),
                control: u16::from_be_bytes([b[4], b[5]]),
            }
        }
        ROUTING_LOST_MESSAGE => {
            let b = body
                .get(..4)
                .ok_or(CodecError::Truncated("routing lost message"))?;
            Frame::RoutingLostMessage {
                lost: u16::from_be_bytes([b[2], b[3]]),
            }
        }
        other => Frame::Other { service: other },
    })
}

fn search_response(body: &[u8]) -> Result<DeviceInfo, CodecError> {
    let control = Hpai::read(body)?;
    let mut info = DeviceInfo {
        control,
        address: IndividualAddress(0),
        name: String::new(),
        serial: [0; 6],
        mac: [0; 6],
        multicast: Ipv4Addr::UNSPECIFIED,
        services: Vec::new(),
    };
    // DIBs one after another, each length-prefixed.
    let mut rest = &body[8..];
    while rest.len() >= 2 {
        let len = usize::from(rest[0]);
        if len < 2 || len > rest.len() {
            return Err(CodecError::Truncated("DIB"));
        }
        let dib = &rest[..len];
        match dib[1] {
            // DEVICE_INFO: medium, status, address, project id, serial,
            // multicast address, MAC, 30-byte name.
            0x01 if len >= 54 => {
                info.address = IndividualAddress(u16::from_be_bytes([dib[4], dib[5]]));
                info.serial.copy_from_slice(&dib[8..14]);
                info.multicast = Ipv4Addr::new(dib[14], dib[15], dib[16], dib[17]);
                info.mac.copy_from_slice(&dib[18..24]);
                let name = &dib[24..54];
                let end = name.iter().position(|&c| c == 0).unwrap_or(name.len());
                // ISO 8859-1 by the standard: each byte is its code point.
                info.name = name[..end].iter().map(|&c| char::from(c)).collect();
            }
            0x01 => return Err(CodecError::Truncated("device information DIB")),
            // SUPP_SVC_FAMILIES: (family, version) pairs.
            0x02 => {
                info.services = dib[2..].chunks_exact(2).map(|p| (p[0], p[1])).collect();
            }
            _ => {}
        }
        rest = &rest[len..];
    }
    Ok(info)
}

fn header(service: u16, body_len: usize, out: &mut Vec<u8>) {
    let total = u16::try_from(HEADER_LEN + body_len).unwrap_or(u16::MAX);
    out.extend_from_slice(&[HEADER_LEN as u8, PROTOCOL_VERSION]);
    out.extend_from_slice(&service.to_be_bytes());
    out.extend_from_slice(&total.to_be_bytes());
}

pub fn search_request(endpoint: Hpai, out: &mut Vec<u8>) {
    header(SEARCH_REQUEST, 8, out);
    endpoint.write(out);
}

/// A tunnel connection on the link layer (CRI 04 04 02 00).
pub fn connect_request(control: Hpai, data: Hpai, out: &mut Vec<u8>) {
    header(CONNECT_REQUEST, 20, out);
    control.write(out);
    data.write(out);
    out.extend_from_slice(&[0x04, 0x04, 0x02, 0x00]);
}

pub fn connectionstate_request(channel: u8, control: Hpai, out: &mut Vec<u8>) {
    header(CONNECTIONSTATE_REQUEST, 10, out);
    out.extend_from_slice(&[channel, 0]);
    control.write(out);
}

pub fn disconnect_request(channel: u8, control: Hpai, out: &mut Vec<u8>) {
    header(DISCONNECT_REQUEST, 10, out);
    out.extend_from_slice(&[channel, 0]);
    control.write(out);
}

pub fn disconnect_response(channel: u8, out: &mut Vec<u8>) {
    header(DISCONNECT_RESPONSE, 2, out);
    out.extend_from_slice(&[channel, E_NO_ERROR]);
}

pub fn tunnelling_request(channel: u8, seq: u8, cemi: &[u8], out: &mut Vec<u8>) {
    header(TUNNELLING_REQUEST, 4 + cemi.len(), out);
    out.extend_from_slice(&[4, channel, seq, 0]);
    out.extend_from_slice(cemi);
}

pub fn tunnelling_ack(channel: u8, seq: u8, out: &mut Vec<u8>) {
    header(TUNNELLING_ACK, 4, out);
    out.extend_from_slice(&[4, channel, seq, E_NO_ERROR]);
}

pub fn routing_indication(cemi: &[u8], out: &mut Vec<u8>) {
    header(ROUTING_INDICATION, cemi.len(), out);
    out.extend_from_slice(cemi);
}

/// What a connect or connection-state status code means, for the log.
pub fn status_text(status: u8) -> &'static str {
    match status {
        0x00 => "no error",
        0x01 => "host protocol type not supported",
        0x02 => "protocol version not supported",
        0x04 => "sequence number out of order",
        0x21 => "no active connection with that channel (E_CONNECTION_ID)",
        0x22 => "connection type not supported",
        0x23 => "connection option not supported",
        0x24 => "no more connections: every tunnel slot of the interface is taken (E_NO_MORE_CONNECTIONS)",
        0x26 => "data connection error",
        0x27 => "KNX subnetwork connection error (E_KNX_CONNECTION)",
        0x29 => "tunnelling layer not supported",
        _ => "unknown status",
    }
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
