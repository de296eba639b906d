//! The UDP socket a datagram adapter (CoAP, coaps, Semtech UDP) listens
//! on, bound the one way, so a port that cannot be had is reported alike;
//! datagrams read many per system call (CoAP, Semtech UDP), and for
//! Semtech UDP answered many per system call.

use std::net::SocketAddr;

use gateway_core::AdapterError;
use tokio::net::UdpSocket;

/// Bytes of datagrams the kernel may hold for a listening socket before it
/// drops them. The default (212 992 bytes) is a couple of hundred
/// datagrams, 1-2 ms of a burst: a pause of the receive task longer than
/// that lost datagrams already acknowledged by nobody and counted nowhere
/// but the kernel's `RcvbufErrors` (issue 69). The kernel caps the request
/// at `net.core.rmem_max` (212 992 on most distributions, so the gain
/// there is the doubling the kernel applies for its bookkeeping).
pub(crate) const RECEIVE_BUFFER: usize = 2 << 20;

/// Binds `addr` with room for a burst ([`RECEIVE_BUFFER`]); failing,
/// [`AdapterError::Bind`] names the address.
pub(crate) async fn bind(addr: SocketAddr) -> Result<UdpSocket, AdapterError> {
    let socket = UdpSocket::bind(addr)
        .await
        .map_err(|source| AdapterError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    // Best effort: a socket refused the room still works as before.
    if let Err(e) = socket2::SockRef::from(&socket).set_recv_buffer_size(RECEIVE_BUFFER) {
        tracing::debug!(%addr, error = %e, "Kept the default UDP receive buffer.");
    }
    Ok(socket)
}

#[cfg(feature = "lorawan")]
#[path = "udp_replies.rs"]
mod replies;
#[cfg(any(feature = "lorawan", feature = "coap"))]
pub(crate) use batch::{Read, RecvBatch};
#[cfg(feature = "lorawan")]
pub(crate) use replies::Replies;

/// `recvmmsg`/`sendmmsg` on Linux: a forwarder's burst costs one system
/// call per batch each way instead of one per datagram (`recvfrom` and the
/// PUSH_ACK `sendto` were a third of the adapter's CPU). The kernel's work
/// per datagram stays: an ACK's trip through the UDP/IP stack is most of
/// what a send costs. Elsewhere the same interface reads and sends one
/// datagram per call.
#[cfg(any(feature = "lorawan", feature = "coap"))]
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
        /// Slots offered to the next `recvmmsg`. A header is prepared for
        /// every slot offered, and a wake-up under a steady flow brings a
        /// few datagrams: offering fewer took 1.5 % off a CoAP datagram's
        /// instructions at about six a wake-up (issue 69). So twice as
        /// many as the last read filled, all of them again as soon as one
        /// read fills its offer.
        offer: usize,
        /// Datagrams read by a call that then found the queue drained
        /// (and answered `WouldBlock` to clear readiness).
        drained_after: usize,
        /// The socket's address family, looked up at its first read.
        #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
        ipv6: Option<bool>,
    }

    #[cfg(target_os = "linux")]
    type Headers<S> = (usize, nix::sys::socket::MultiHeaders<S>);

    #[cfg(target_os = "linux")]
    thread_local! {
        /// Each thread's `recvmmsg` headers, with how many slots they have,
        /// kept between reads: made per wake-up they were about 4 300
        /// instructions (three allocations, each header filled), several
        /// datagrams' worth under a steady flow (issue 69). Not kept in the
        /// [`RecvBatch`]: they hold raw pointers (not `Send`) and a receive
        /// loop is a task that moves between threads. One set per address
        /// family: the kernel writes back each address's length, which the
        /// next read takes as the room for one, and every peer of a socket
        /// of one family has an address of the same length (IPv4 peers of an
        /// IPv6 socket are IPv4-mapped IPv6 addresses). So each holds its
        /// family's address and no more: the 128-byte storage for any
        /// address was copied several times a datagram (issue 69).
        static HEADERS_V4: std::cell::RefCell<Option<Headers<nix::sys::socket::SockaddrIn>>> = const { std::cell::RefCell::new(None) };
        static HEADERS_V6: std::cell::RefCell<Option<Headers<nix::sys::socket::SockaddrIn6>>> = const { std::cell::RefCell::new(None) };
    }

    #[cfg(target_os = "linux")]
    use nix::sys::socket::SockaddrLike;

    /// A peer's address as `recvmmsg` wrote it, for a socket of its family.
    #[cfg(target_os = "linux")]
    trait Peer: SockaddrLike + Copy {
        fn peer(&self) -> Option<SocketAddr>;
    }

    #[cfg(target_os = "linux")]
    impl Peer for nix::sys::socket::SockaddrIn {
        fn peer(&self) -> Option<SocketAddr> {
            let inet = SockaddrLike::family(self) == Some(nix::sys::socket::AddressFamily::Inet);
            inet.then(|| SocketAddr::V4((*self).into()))
        }
    }

    #[cfg(target_os = "linux")]
    impl Peer for nix::sys::socket::SockaddrIn6 {
        fn peer(&self) -> Option<SocketAddr> {
            let inet6 = SockaddrLike::family(self) == Some(nix::sys::socket::AddressFamily::Inet6);
            inet6.then(|| SocketAddr::V6((*self).into()))
        }
    }

    /// Slots offered at least.
    const MIN_OFFER: usize = 4;

    impl RecvBatch {
        /// The slab is zeroed lazily by the allocator (one large `calloc`),
        /// so only the pages datagrams are written to become resident.
        pub(crate) fn new(slots: usize, slot: usize) -> Self {
            let (slots, slot) = (slots.max(1), slot.max(1));
            Self {
                slab: vec![0; slots * slot],
                slot,
                got: Vec::with_capacity(slots),
                offer: slots,
                drained_after: 0,
                ipv6: None,
            }
        }

        /// Reads what is queued, up to about `max` reads (whole batches),
        /// without waiting, and passes each to `each` in arrival order.
        /// Returns how many reads there were; `WouldBlock` (readiness
        /// cleared) when nothing was queued.
        ///
        /// A read that drains the queue clears the socket's readiness as
        /// an empty one would: the next wait then sleeps until a datagram
        /// comes, where it used to return at once for a `recvmmsg` that
        /// only said `EAGAIN`, one wasted system call a wake-up (a third
        /// of the Semtech adapter's `recvmmsg` calls, issue 69). tokio
        /// clears only if no readiness event came since the read began, so
        /// a datagram that arrives after it still wakes the next wait.
        pub(crate) fn try_recv_many(
            &mut self,
            socket: &UdpSocket,
            max: usize,
            each: impl FnMut(Read<'_>),
        ) -> io::Result<usize> {
            self.drained_after = 0;
            match socket.try_io(Interest::READABLE, || self.recv_now(socket, max, each)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && self.drained_after > 0 => {
                    Ok(self.drained_after)
                }
                read => read,
            }
        }

        #[cfg(target_os = "linux")]
        fn recv_now(
            &mut self,
            socket: &UdpSocket,
            max: usize,
            each: impl FnMut(Read<'_>),
        ) -> io::Result<usize> {
            let family = *self
                .ipv6
                .get_or_insert_with(|| socket.local_addr().is_ok_and(|a| a.is_ipv6()));
            if family {
                self.recv_cached(&HEADERS_V6, socket, max, each)
            } else {
                self.recv_cached(&HEADERS_V4, socket, max, each)
            }
        }

        #[cfg(target_os = "linux")]
        fn recv_cached<S: Peer>(
            &mut self,
            cache: &'static std::thread::LocalKey<std::cell::RefCell<Option<Headers<S>>>>,
            socket: &UdpSocket,
            max: usize,
            each: impl FnMut(Read<'_>),
        ) -> io::Result<usize> {
            use nix::sys::socket::MultiHeaders;

            let all = self.got.capacity();
            // Taken out of the cache, not borrowed: `each` runs meanwhile.
            let kept = cache.with(|c| c.try_borrow_mut().ok().and_then(|mut c| c.take()));
            let mut headers = match kept {
                Some((slots, headers)) if slots >= all => (slots, headers),
                _ => (all, MultiHeaders::preallocate(all, None)),
            };
            let result = self.recv_with(&mut headers.1, socket, max, each);
            cache.with(|c| {
                if let Ok(mut c) = c.try_borrow_mut() {
                    *c = Some(headers);
                }
            });
            result
        }

        #[cfg(target_os = "linux")]
        fn recv_with<S: Peer>(
            &mut self,
            headers: &mut nix::sys::socket::MultiHeaders<S>,
            socket: &UdpSocket,
            max: usize,
            mut each: impl FnMut(Read<'_>),
        ) -> io::Result<usize> {
            use std::io::IoSliceMut;
            use std::os::fd::AsRawFd;

            use nix::errno::Errno;
            use nix::sys::socket::{recvmmsg, MsgFlags};

            let all = self.got.capacity();
            let mut reads = 0;
            while reads < max {
                self.got.clear();
                let slots = self.offer.clamp(1, all);
                let mut iovs: Vec<[IoSliceMut<'_>; 1]> = self
                    .slab
                    .chunks_mut(self.slot)
                    .take(slots)
                    .map(|c| [IoSliceMut::new(c)])
                    .collect();
                let flags = MsgFlags::MSG_DONTWAIT;
                match recvmmsg(
                    socket.as_raw_fd(),
                    &mut *headers,
                    iovs.iter_mut(),
                    flags,
                    None,
                ) {
                    Ok(results) => {
                        for msg in results {
                            self.got.push(Received {
                                len: msg.bytes,
                                peer: msg.address.and_then(|a| a.peer()),
                                truncated: msg.flags.contains(MsgFlags::MSG_TRUNC),
                            });
                        }
                    }
                    Err(Errno::EAGAIN) => {
                        self.drained_after = reads;
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
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
                let drained = self.got.len() < slots;
                self.offer = if drained {
                    (self.got.len() * 2).clamp(MIN_OFFER.min(all), all)
                } else {
                    all
                };
                if drained {
                    // The queue is drained; the next read would only say
                    // so. Said here instead, readiness is cleared.
                    self.drained_after = reads;
                    return Err(io::ErrorKind::WouldBlock.into());
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
}

#[cfg(all(test, feature = "lorawan"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::net::UdpSocket;

    use super::{Read, RecvBatch, Replies};

    async fn socket() -> (UdpSocket, SocketAddr) {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = s.local_addr().unwrap();
        (s, addr)
    }

    #[tokio::test]
    async fn a_burst_nobody_reads_yet_is_held_for_the_listener() {
        let listener = super::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let room = socket2::SockRef::from(&listener)
            .recv_buffer_size()
            .unwrap();
        // The kernel doubles what it grants; a smaller `net.core.rmem_max`
        // caps the request, and then only the doubling is asked of it.
        assert!(room > 212_992, "receive buffer {room} bytes, the default's");
        if room < 2 * super::RECEIVE_BUFFER {
            eprintln!("net.core.rmem_max caps the receive buffer at {room} bytes; burst not tried");
            return;
        }
        let to = listener.local_addr().unwrap();
        let (sender, _) = socket().await;
        // 2 000 forwarder-sized datagrams while the listener reads none:
        // the default buffer held 166 of them.
        let datagram = [0x5a_u8; 300];
        for _ in 0..2_000 {
            sender.send_to(&datagram, to).await.unwrap();
        }
        let mut held = 0;
        let mut buf = [0u8; 512];
        while listener.try_recv(&mut buf).is_ok() {
            held += 1;
        }
        assert_eq!(held, 2_000, "datagrams held until read");
    }

    /// The next `n` datagrams on `s`; a deadline only so a failure ends.
    async fn datagrams(s: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        while out.len() < n {
            let recv = tokio::time::timeout(Duration::from_secs(20), s.recv(&mut buf));
            let len = recv.await.expect("a datagram").unwrap();
            out.push(buf[..len].to_vec());
        }
        out
    }

    fn reply(i: u16) -> [u8; 4] {
        let [a, b] = i.to_be_bytes();
        [2, a, b, 1]
    }

    #[tokio::test]
    async fn each_reply_is_its_own_datagram_in_order_whatever_the_grouping() {
        let (server, _) = socket().await;
        let ((a, a_addr), (b, b_addr)) = (socket().await, socket().await);
        let mut replies = Replies::default();
        // More to one peer than one segmented send carries, then another
        // peer, then the first again.
        for i in 0..150 {
            replies.push(reply(i), a_addr);
        }
        for i in 150..153 {
            replies.push(reply(i), b_addr);
        }
        for i in 153..155 {
            replies.push(reply(i), a_addr);
        }
        let mut failures = 0;
        replies.send(&server, |_, _| failures += 1).await;
        assert_eq!(failures, 0);
        assert!(replies.is_empty());
        let want = |r: std::ops::Range<u16>| r.map(|i| reply(i).to_vec()).collect::<Vec<_>>();
        let mut to_a = want(0..150);
        to_a.extend(want(153..155));
        assert_eq!(datagrams(&a, 152).await, to_a);
        assert_eq!(datagrams(&b, 3).await, want(150..153));
    }

    #[tokio::test]
    async fn a_reply_that_cannot_go_is_reported_and_the_others_still_go() {
        let (server, _) = socket().await;
        let (a, a_addr) = socket().await;
        let nowhere: SocketAddr = "[::1]:9".parse().unwrap();
        let mut replies = Replies::default();
        replies.push(reply(1), a_addr);
        replies.push(reply(2), nowhere);
        replies.push(reply(3), a_addr);
        let mut failed = Vec::new();
        replies.send(&server, |to, _| failed.push(to)).await;
        assert_eq!(failed, [nowhere], "an IPv6 peer on an IPv4 socket");
        assert_eq!(datagrams(&a, 2).await, [reply(1), reply(3)]);
    }

    #[tokio::test]
    async fn a_read_takes_what_is_queued_and_marks_what_did_not_fit() {
        let (server, server_addr) = socket().await;
        let (client, _) = socket().await;
        client.connect(server_addr).await.unwrap();
        // Two slots of 8 bytes, up to 5 reads: three batches' worth queued.
        let mut batch = RecvBatch::new(2, 8);
        for d in [&b"one"[..], b"two", b"0123456789", b"four", b"five"] {
            client.send(d).await.unwrap();
        }
        let mut got = Vec::new();
        while got.len() < 5 {
            server.readable().await.unwrap();
            let each = |r: Read<'_>| match r {
                Read::Datagram(bytes, how) => got.push((bytes.to_vec(), how.truncated)),
                Read::Error(e) => panic!("{e}"),
            };
            match batch.try_recv_many(&server, 5, each) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        let want: Vec<(Vec<u8>, bool)> = vec![
            (b"one".to_vec(), false),
            (b"two".to_vec(), false),
            (b"01234567".to_vec(), true),
            (b"four".to_vec(), false),
            (b"five".to_vec(), false),
        ];
        assert_eq!(got, want);
        let nothing = batch.try_recv_many(&server, 5, |_| panic!("nothing is queued"));
        assert_eq!(nothing.unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    }

    #[tokio::test]
    async fn a_burst_after_a_trickle_is_read_whole_and_in_order() {
        let (server, server_addr) = socket().await;
        let (client, _) = socket().await;
        client.connect(server_addr).await.unwrap();
        let mut batch = RecvBatch::new(32, 8);
        let mut got: Vec<u8> = Vec::new();
        // One datagram: the next read offers few slots.
        client.send(&[0]).await.unwrap();
        read_until(&server, &mut batch, 1, &mut got).await;
        // Then more than that offer and than one full read.
        for i in 1..=40u8 {
            client.send(&[i]).await.unwrap();
        }
        read_until(&server, &mut batch, 41, &mut got).await;
        assert_eq!(got, (0..=40u8).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_read_that_drains_the_queue_leaves_the_next_wait_for_a_new_datagram() {
        use std::future::Future;
        use std::task::Poll;
        let (server, server_addr) = socket().await;
        let (client, _) = socket().await;
        client.connect(server_addr).await.unwrap();
        let mut batch = RecvBatch::new(32, 8);
        let mut got: Vec<u8> = Vec::new();
        client.send(&[1]).await.unwrap();
        client.send(&[2]).await.unwrap();
        read_until(&server, &mut batch, 2, &mut got).await;
        // The read found fewer than it offered room for: the queue is
        // empty, so waiting again must not return at once for a read that
        // would only say so.
        let mut wait = std::pin::pin!(server.readable());
        let ready_now =
            std::future::poll_fn(|cx| Poll::Ready(wait.as_mut().poll(cx).is_ready())).await;
        assert!(!ready_now, "readiness is cleared by a draining read");
        // A datagram that comes later wakes the wait.
        client.send(&[3]).await.unwrap();
        tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .expect("the new datagram wakes the wait")
            .unwrap();
        read_until(&server, &mut batch, 3, &mut got).await;
        assert_eq!(got, [1, 2, 3]);
    }

    #[tokio::test]
    async fn ipv4_and_ipv6_sockets_read_on_one_thread_give_whole_peer_addresses() {
        let (v4, v4_addr) = socket().await;
        let Ok(v6) = UdpSocket::bind("[::1]:0").await else {
            return; // no IPv6 loopback here
        };
        let v6_addr = v6.local_addr().unwrap();
        let (c4, c4_addr) = socket().await;
        let c6 = UdpSocket::bind("[::1]:0").await.unwrap();
        let c6_addr = c6.local_addr().unwrap();
        let (mut b4, mut b6) = (RecvBatch::new(4, 8), RecvBatch::new(4, 8));
        // Alternately, so each read follows one of the other family's.
        for round in 0..3u8 {
            c4.send_to(&[round], v4_addr).await.unwrap();
            assert_eq!(peers(&v4, &mut b4).await, [c4_addr]);
            c6.send_to(&[round], v6_addr).await.unwrap();
            assert_eq!(peers(&v6, &mut b6).await, [c6_addr], "round {round}");
        }
    }

    /// The peers of what one wake-up of `server` reads.
    async fn peers(server: &UdpSocket, batch: &mut RecvBatch) -> Vec<SocketAddr> {
        loop {
            server.readable().await.unwrap();
            let mut got = Vec::new();
            let each = |r: Read<'_>| match r {
                Read::Datagram(_, how) => got.push(how.peer.expect("a whole address")),
                Read::Error(e) => panic!("{e}"),
            };
            match batch.try_recv_many(server, 8, each) {
                Ok(_) => return got,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Reads datagrams' first bytes into `got` until it holds `want`.
    async fn read_until(server: &UdpSocket, batch: &mut RecvBatch, want: usize, got: &mut Vec<u8>) {
        while got.len() < want {
            server.readable().await.unwrap();
            let each = |r: Read<'_>| match r {
                Read::Datagram(bytes, _) => got.push(bytes[0]),
                Read::Error(e) => panic!("{e}"),
            };
            match batch.try_recv_many(server, 64, each) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
    }
}
