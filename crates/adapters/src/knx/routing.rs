//! KNXnet/IP routing (KNX 3.8.5): the multicast group a KNX IP router
//! (and every other KNX IP device of the installation) sends each bus
//! telegram to as a ROUTING_INDICATION. The gateway joins it on
//! `interface`, hears every group telegram, and sends its own reads and
//! writes there from `individual_address`.
//!
//! Routing has no connection, acknowledgement or confirmation: a write
//! is `done` once it left on the multicast. When a router's queue fills
//! it sends ROUTING_BUSY with a wait time: the gateway then sends
//! nothing for that long (at most 5 s) plus a random share of 50 ms per BUSY in the
//! last quarter second (§2.3.5), and counts `bus_busy`. ROUTING_LOST_MESSAGE
//! (telegrams a router dropped) is counted as `lost_messages`. The
//! gateway's own telegrams come back through the loop-back of the
//! multicast and are recognised as copies of those sent (their source
//! address alone is another sender's too when it is a default one;
//! another sender from it is read and counted as `address_conflict`).
//! Only L_Data.ind is read: an L_Data.req or .con on the multicast is
//! counted as `routed_not_indication` and dropped.

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::address::IndividualAddress;

/// Longest pause one ROUTING_BUSY buys. Routers ask for tens to hundreds
/// of milliseconds, a congested line a few seconds; the 16-bit field would
/// allow 65 s from any host on the multicast.
const MAX_BUSY_WAIT_MS: u64 = 5_000;
use super::cemi::{self, Cemi};
use super::frame::{self, Frame};
use super::link::{ArrivalClock, Faults, GroupTelegram, LinkEvent, Outbox, Pacer};

/// Bytes the kernel may hold for the socket before it drops datagrams.
pub const RECEIVE_BUFFER: usize = 1 << 20;

/// How to join the multicast.
#[derive(Debug, Clone)]
pub struct RoutingSettings {
    pub group: SocketAddrV4,
    /// A name (`eth0`) or an IPv4 address; none: the system's choice.
    pub interface: Option<String>,
    pub address: IndividualAddress,
    pub pace: f64,
    pub clock: ArrivalClock,
}

/// The IPv4 address of `interface` (a name or an address).
///
/// # Errors
/// No such interface, or it has no IPv4 address.
pub fn interface_address(interface: Option<&str>) -> io::Result<Ipv4Addr> {
    let Some(name) = interface else {
        return Ok(Ipv4Addr::UNSPECIFIED);
    };
    if let Ok(ip) = name.parse::<Ipv4Addr>() {
        return Ok(ip);
    }
    #[cfg(target_os = "linux")]
    {
        let addresses = nix::ifaddrs::getifaddrs().map_err(io::Error::from)?;
        for a in addresses {
            if a.interface_name != name {
                continue;
            }
            if let Some(v4) = a.address.as_ref().and_then(|s| s.as_sockaddr_in()) {
                return Ok(v4.ip());
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no network interface \"{name}\" with an IPv4 address"),
    ))
}

/// The multicast socket: the routing port shared with other KNX software
/// on the host (knxd, a second gateway), the group joined on the interface.
///
/// # Errors
/// The port cannot be bound or the group joined.
pub fn bind(group: SocketAddrV4, interface: Ipv4Addr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    // A router forwards a whole line's burst at once (a central "all
    // off"): room for it while the gateway is busy elsewhere. The kernel
    // caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(RECEIVE_BUFFER);
    // Bound to the group itself where the system allows it (Linux): a
    // socket bound to the wildcard on the shared port would also take
    // the unicast datagrams meant for a KNXnet/IP server on the host
    // (knxd tunnels on that very port).
    if socket.bind(&SocketAddr::V4(group).into()).is_err() {
        socket
            .bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, group.port())).into())?;
    }
    socket.join_multicast_v4(group.ip(), &interface)?;
    if !interface.is_unspecified() {
        socket.set_multicast_if_v4(&interface)?;
    }
    // Other KNX software on this host hears it too; our own copies are
    // told apart by their source address.
    socket.set_multicast_loop_v4(true)?;
    // KNX 3.8.5 §2.2: TTL 16 by default.
    socket.set_multicast_ttl_v4(16)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

/// The ROUTING_BUSYs of the last quarter second, each adding a random
/// share of 50 ms to the wait (KNX 3.8.5 §2.3.5), so that the senders
/// that all heard the same BUSY do not all start again at once.
struct Busy {
    recent: VecDeque<Instant>,
    rng: u64,
}

/// The BUSYs counted towards the spread at most: a burst of forged ones
/// then adds no more than [`MAX_BUSY_WAIT_MS`] to the wait, and is not
/// kept whole.
const MAX_RECENT_BUSY: usize = (MAX_BUSY_WAIT_MS / 50) as usize;

impl Busy {
    fn new(seed: u64) -> Self {
        Self {
            recent: VecDeque::with_capacity(MAX_RECENT_BUSY),
            rng: seed | 1,
        }
    }

    /// How long sending pauses for a BUSY asking `wait_ms`, heard `now`.
    fn hold(&mut self, now: Instant, wait_ms: u16) -> Duration {
        self.recent
            .retain(|at| now.duration_since(*at) < Duration::from_millis(250));
        if self.recent.len() >= MAX_RECENT_BUSY {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        // xorshift: the random share spreads the senders that all heard
        // the same BUSY.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let spread = self.rng % (self.recent.len() as u64 * 50 + 1);
        // Anyone on the multicast can send a BUSY: its wait (up to 65 s as
        // sent) is capped, so a forged one pauses the gateway briefly, not
        // for a minute.
        let wait = u64::from(wait_ms).min(MAX_BUSY_WAIT_MS);
        Duration::from_millis(wait + spread)
    }
}

/// The gateway's telegrams as sent, until their copies come back through
/// the multicast loop: those are dropped, and only those. Their source
/// address alone cannot tell them: the default one is Home Assistant's
/// too, and a telegram of its from that address is no copy of ours.
#[derive(Default)]
struct Own {
    sent: VecDeque<(Instant, Vec<u8>)>,
}

/// How long a copy may take to come back (the loop is immediate; the
/// socket's queue may hold it behind a router's burst), and how many
/// are awaited at most (50 telegrams a second for that long).
const OWN_COPY_WINDOW: Duration = Duration::from_secs(10);
const OWN_COPIES: usize = 500;

impl Own {
    fn sent(&mut self, cemi: &[u8]) {
        if self.sent.len() >= OWN_COPIES {
            self.sent.pop_front();
        }
        self.sent.push_back((Instant::now(), cemi.to_vec()));
    }

    /// Whether `cemi` is the copy of one sent (then no longer awaited).
    fn take(&mut self, cemi: &[u8]) -> bool {
        let now = Instant::now();
        while self
            .sent
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > OWN_COPY_WINDOW)
        {
            self.sent.pop_front();
        }
        match self.sent.iter().position(|(_, c)| c.as_slice() == cemi) {
            Some(i) => {
                self.sent.remove(i);
                true
            }
            None => false,
        }
    }
}

/// Runs routing until `stop`.
pub async fn run(
    s: RoutingSettings,
    mut outgoing: Outbox,
    events: mpsc::Sender<LinkEvent>,
    faults: Faults,
    stop: CancellationToken,
    socket: UdpSocket,
) {
    info!(adapter = %faults.adapter, group = %s.group, interface = s.interface.as_deref().unwrap_or("default"), address = %s.address, "KNX routing joined.");
    if events.send(LinkEvent::Connected(s.address)).await.is_err() {
        return;
    }
    let mut pacer = Pacer::new(s.pace);
    let mut busy = Busy::new(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    );
    let mut own = Own::default();
    let mut buf = vec![0u8; 1024];
    let mut out = Vec::with_capacity(64);
    let mut cemi_out = Vec::with_capacity(32);
    loop {
        let now = Instant::now();
        let paced = pacer.ready_at() > now;
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            r = socket.recv_from(&mut buf) => {
                let at = s.clock.now();
                let (n, from) = match r {
                    Ok(r) => r,
                    Err(e) => {
                        faults.count("connection_lost", format!("The routing socket failed: {e}."));
                        continue;
                    }
                };
                match frame::decode(&buf[..n]) {
                    Ok(Frame::RoutingIndication { cemi: body }) => match cemi::decode(body) {
                        // KNX 3.8.5: a router routes L_Data.ind only. A
                        // .req or .con on the multicast is no bus telegram
                        // (a misbehaving or hostile sender); read, it would
                        // be a value nobody sent on the bus. knxd drops it
                        // too.
                        Ok(Cemi::LData(f)) if f.code != cemi::L_DATA_IND => {
                            let kind = if f.code == cemi::L_DATA_REQ { "L_Data.req" } else { "L_Data.con" };
                            faults.count("routed_not_indication", format!("A ROUTING_INDICATION from {from} carries an {kind} (from {}), which no KNX IP router routes: dropped, not read. A tool or device on the multicast is misconfigured, or hostile.", f.source));
                        }
                        Ok(Cemi::LData(f)) => {
                            if f.source == s.address {
                                if own.take(body) {
                                    continue;
                                }
                                faults.count("address_conflict", format!("A telegram from {}, this adapter's individual_address, that the gateway did not send: another device routes from it (Home Assistant and xknx do by default, 15.15.250). Read all the same; set individual_address to a free address of the installation.", s.address));
                            }
                            if let Some(t) = GroupTelegram::from_ldata(&f, at) {
                                if events.send(LinkEvent::Telegram(t)).await.is_err() {
                                    break;
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(e) => faults.count("malformed", format!("A routed cEMI frame did not read: {e}.")),
                    },
                    Ok(Frame::RoutingBusy { wait_ms, .. }) => {
                        let now = Instant::now();
                        pacer.hold_until(now + busy.hold(now, wait_ms));
                        faults.count("bus_busy", format!("A KNX router is busy (ROUTING_BUSY, wait {wait_ms} ms): sending paused."));
                    }
                    Ok(Frame::RoutingLostMessage { lost }) => {
                        // At once: anyone on the multicast may say 65 535
                        // were lost, and one lookup of the counter each
                        // would stall the loop behind a few such datagrams.
                        faults.stats.errors("lost_messages", u64::from(lost.max(1)));
                        faults.count("lost_message_reports", format!("A KNX router lost {lost} telegrams (ROUTING_LOST_MESSAGE)."));
                    }
                    // Routing secured with KNX IP Secure carries nothing
                    // else: said, or the adapter would hear nothing while
                    // all looked well.
                    Ok(Frame::Other { service: frame::SECURE_WRAPPER | frame::TIMER_NOTIFY }) => {
                        faults.count("secure", "The routing multicast carries KNX IP Secure frames (SECURE_WRAPPER, TIMER_NOTIFY), which the gateway cannot read: this installation's routing is secured, and its telegrams are not heard. Tunnel to an interface with plain tunnelling instead.");
                    }
                    Ok(_) => {}
                    Err(e) => faults.count("malformed", format!("A KNXnet/IP datagram on the routing multicast did not read: {e}.")),
                }
            }
            _ = sleep_until(pacer.ready_at()), if paced => {}
            o = outgoing.recv(), if !paced => {
                let Some(o) = o else { break };
                pacer.sent();
                cemi_out.clear();
                cemi::encode_group(cemi::L_DATA_IND, s.address, o.destination, o.service, o.payload.as_ref(), &mut cemi_out);
                out.clear();
                frame::routing_indication(&cemi_out, &mut out);
                match socket.send_to(&out, SocketAddr::V4(s.group)).await {
                    Ok(_) => {
                        own.sent(&cemi_out);
                        o.succeed();
                    }
                    Err(e) => {
                        faults.count("send_failed", format!("Cannot send on the routing multicast: {e}."));
                        o.fail(super::link::SendFailure::NotConnected);
                    }
                }
            }
        }
    }
    let _ = events
        .send(LinkEvent::Down("has left the routing multicast".into()))
        .await;
}

#[cfg(test)]
#[path = "routing_tests.rs"]
mod tests;
