//! The UDP socket a datagram adapter (CoAP, coaps, Semtech UDP) listens
//! on, bound the one way, so a port that cannot be had is reported alike;
//! and, for Semtech UDP, datagrams read and answered many per system call.

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

#[cfg(feature = "lorawan")]
pub(crate) use batch::{Read, RecvBatch, Replies};

/// `recvmmsg`/`sendmmsg` on Linux: a forwarder's burst costs one system
/// call per batch each way instead of one per datagram (`recvfrom` and the
/// PUSH_ACK `sendto` were a third of the adapter's CPU). The kernel's work
/// per datagram stays: an ACK's trip through the UDP/IP stack is most of
/// what a send costs. Elsewhere the same interface reads and sends one
/// datagram per call.
#[cfg(feature = "lorawan")]
mod batch {
    use std::io;
    use std::net::SocketAddr;

    use tokio::io::Interest;
    use tokio::net::UdpSocket;

    /// One datagram of a [`RecvBatch`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) struct Received {
        /// Bytes in its slot: all of it unless `truncated`.
        pub len: usize,
        /// `None` for an address family other than IPv4/IPv6.
        pub peer: Option<SocketAddr>,
        /// It was longer than a slot; the rest is lost.
        pub truncated: bool,
    }

    /// What one read brought: a datagram, or the error the kernel had
    /// for the socket instead (an ICMP error for an earlier send, say).
    pub(crate) enum Read<'a> {
        Datagram(&'a [u8], Received),
        Error(io::Error),
    }

    /// Slots for up to `slots` datagrams of `slot` bytes, read at once.
    pub(crate) struct RecvBatch {
        slab: Vec<u8>,
        slot: usize,
        got: Vec<Received>,
    }

    impl RecvBatch {
        /// The slab is zeroed lazily by the allocator (one large `calloc`),
        /// so only the pages datagrams are written to become resident.
        pub(crate) fn new(slots: usize, slot: usize) -> Self {
            let (slots, slot) = (slots.max(1), slot.max(1));
            Self {
                slab: vec![0; slots * slot],
                slot,
                got: Vec::with_capacity(slots),
            }
        }

        /// Reads what is queued, up to about `max` reads (whole batches),
        /// without waiting, and passes each to `each` in arrival order.
        /// Returns how many reads there were; `WouldBlock` (readiness
        /// cleared) when nothing was queued.
        pub(crate) fn try_recv_many(
            &mut self,
            socket: &UdpSocket,
            max: usize,
            each: impl FnMut(Read<'_>),
        ) -> io::Result<usize> {
            socket.try_io(Interest::READABLE, || self.recv_now(socket, max, each))
        }

        #[cfg(target_os = "linux")]
        fn recv_now(
            &mut self,
            socket: &UdpSocket,
            max: usize,
            mut each: impl FnMut(Read<'_>),
        ) -> io::Result<usize> {
            use std::io::IoSliceMut;
            use std::os::fd::AsRawFd;

            use nix::errno::Errno;
            use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrStorage};

            let slots = self.got.capacity();
            // Built per wake-up, not kept: the headers hold raw pointers (not
            // `Send`), and the receive loop is a task that may move between
            // threads.
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(slots, None);
            let mut reads = 0;
            while reads < max {
                self.got.clear();
                let mut iovs: Vec<[IoSliceMut<'_>; 1]> = self
                    .slab
                    .chunks_mut(self.slot)
                    .map(|c| [IoSliceMut::new(c)])
                    .collect();
                let flags = MsgFlags::MSG_DONTWAIT;
                match recvmmsg(
                    socket.as_raw_fd(),
                    &mut headers,
                    iovs.iter_mut(),
                    flags,
                    None,
                ) {
                    Ok(results) => {
                        for msg in results {
                            self.got.push(Received {
                                len: msg.bytes,
                                peer: msg.address.and_then(|a| std_addr(&a)),
                                truncated: msg.flags.contains(MsgFlags::MSG_TRUNC),
                            });
                        }
                    }
                    Err(Errno::EAGAIN) if reads == 0 => {
                        return Err(io::ErrorKind::WouldBlock.into())
                    }
                    Err(Errno::EAGAIN) => break,
                    Err(e) => {
                        each(Read::Error(e.into()));
                        reads += 1;
                        continue;
                    }
                }
                for (i, got) in self.got.iter().enumerate() {
                    let start = i * self.slot;
                    let bytes = self.slab.get(start..start + got.len.min(self.slot));
                    each(Read::Datagram(bytes.unwrap_or_default(), *got));
                }
                reads += self.got.len();
                if self.got.len() < slots {
                    // The queue is drained; the next read would only say so.
                    break;
                }
            }
            Ok(reads)
        }

        #[cfg(not(target_os = "linux"))]
        fn recv_now(
            &mut self,
            socket: &UdpSocket,
            max: usize,
            mut each: impl FnMut(Read<'_>),
        ) -> io::Result<usize> {
            let mut reads = 0;
            while reads < max {
                let buf = &mut self.slab[..self.slot];
                match socket.try_recv_from(buf) {
                    Ok((len, peer)) => {
                        let got = Received {
                            len,
                            peer: Some(peer),
                            truncated: false,
                        };
                        each(Read::Datagram(&buf[..len], got));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock && reads == 0 => return Err(e),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => each(Read::Error(e)),
                }
                reads += 1;
            }
            Ok(reads)
        }
    }

    #[cfg(target_os = "linux")]
    fn std_addr(a: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
        if let Some(v4) = a.as_sockaddr_in() {
            return Some(SocketAddr::V4((*v4).into()));
        }
        a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
    }

    /// Small replies (4-byte ACKs) waiting to be sent, in order.
    #[derive(Debug, Default)]
    pub(crate) struct Replies {
        queue: Vec<([u8; 4], SocketAddr)>,
    }

    impl Replies {
        pub(crate) fn push(&mut self, reply: [u8; 4], to: SocketAddr) {
            self.queue.push((reply, to));
        }

        pub(crate) fn is_empty(&self) -> bool {
            self.queue.is_empty()
        }

        /// Sends every reply, waiting for the socket when its buffer is
        /// full. A reply the kernel refuses is passed to `failed` and
        /// dropped; the others still go.
        pub(crate) async fn send(
            &mut self,
            socket: &UdpSocket,
            mut failed: impl FnMut(SocketAddr, io::Error),
        ) {
            let mut from = 0;
            while from < self.queue.len() {
                let rest = &self.queue[from..];
                match socket.try_io(Interest::WRITABLE, || send_now(socket, rest)) {
                    Ok(0) => {
                        let e = io::Error::new(io::ErrorKind::WriteZero, "not sent");
                        failed(rest[0].1, e);
                        from += 1;
                    }
                    Ok(sent) => from += sent,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if let Err(e) = socket.writable().await {
                            rest.iter().for_each(|(_, to)| {
                                failed(*to, io::Error::new(e.kind(), e.to_string()));
                            });
                            break;
                        }
                    }
                    // Only the first message of a call can fail: later ones
                    // end the call short and come first in the next one.
                    Err(e) => {
                        failed(rest[0].1, e);
                        from += 1;
                    }
                }
            }
            self.queue.clear();
        }
    }

    #[cfg(target_os = "linux")]
    fn send_now(socket: &UdpSocket, replies: &[([u8; 4], SocketAddr)]) -> io::Result<usize> {
        use std::io::IoSlice;
        use std::os::fd::AsRawFd;

        use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};

        /// Linux's UIO_MAXIOV: sendmmsg takes no more per call.
        const MAX_PER_CALL: usize = 1024;
        let replies = &replies[..replies.len().min(MAX_PER_CALL)];
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(replies.len(), None);
        let slices: Vec<[IoSlice<'_>; 1]> =
            replies.iter().map(|(r, _)| [IoSlice::new(r)]).collect();
        let addrs: Vec<Option<SockaddrStorage>> = replies
            .iter()
            .map(|(_, to)| Some(SockaddrStorage::from(*to)))
            .collect();
        let none: [ControlMessage<'_>; 0] = [];
        let sent = sendmmsg(
            socket.as_raw_fd(),
            &mut headers,
            &slices,
            &addrs,
            none,
            MsgFlags::MSG_DONTWAIT,
        )
        .map_err(io::Error::from)?;
        Ok(sent.count())
    }

    #[cfg(not(target_os = "linux"))]
    fn send_now(socket: &UdpSocket, replies: &[([u8; 4], SocketAddr)]) -> io::Result<usize> {
        let Some((reply, to)) = replies.first() else {
            return Ok(0);
        };
        socket.try_send_to(reply, *to).map(|_| 1)
    }
}
