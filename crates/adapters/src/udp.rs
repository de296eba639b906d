//! The UDP socket a datagram adapter (CoAP, coaps, Semtech UDP) listens
//! on, bound the one way, so a port that cannot be had is reported alike.

use std::net::SocketAddr;

use gateway_core::AdapterError;
use tokio::net::UdpSocket;

/// Binds `addr`; failing, [`AdapterError::Bind`] names the address.
pub(crate) async fn bind(addr: SocketAddr) -> Result<UdpSocket, AdapterError> {
    UdpSocket::bind(addr)
        .await
        .map_err(|source| AdapterError::Bind {
            addr: addr.to_string(),
            source,
        })
}
