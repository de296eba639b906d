//! The UDP socket a datagram adapter (CoAP, coaps, Semtech UDP) listens
//! on, bound the one way, so a port that cannot be had is reported alike;
//! and, for Semtech UDP, datagrams read and answered many per system call
//! by a thread of their own, which waits on the socket and on a stop.

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
pub(crate) use batch::{stopper, Read, RecvBatch, Replies, Stopper, Waiter, Woke};

/// `recvmmsg`/`sendmmsg` on Linux: a forwarder's burst costs one system
/// call per batch each way instead of one per datagram (`recvfrom` and the
/// PUSH_ACK `sendto` were a third of the adapter's CPU). The kernel's work
/// per datagram stays: an ACK's trip through the UDP/IP stack is most of
/// what a send costs. Elsewhere the same interface reads and sends one
/// datagram per call.
///
/// These are blocking-thread calls on a non-blocking socket: a thread
/// reads until the kernel has nothing, then sleeps in `poll` on the socket
/// and on a [`Waiter`] until either has something.
#[cfg(feature = "lorawan")]
mod batch {
    use std::io;
    use std::net::{SocketAddr, UdpSocket};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    use nix::errno::Errno;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

    /// The end of a [`stopper`] pair kept by whoever stops the thread:
    /// dropping it wakes the thread's [`Waiter::wait`] for good.
    #[derive(Debug)]
    pub(crate) struct Stopper {
        _end: UnixStream,
    }

    /// The thread's end of a [`stopper`] pair.
    #[derive(Debug)]
    pub(crate) struct Waiter(UnixStream);

    /// What ended a [`Waiter::wait`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Woke {
        /// The socket is ready (or has an error to report).
        Ready,
        /// The [`Stopper`] is gone.
        Stop,
    }

    /// A wake-up for a thread blocked on a socket. A socket pair rather
    /// than a timeout: an idle gateway's thread sleeps until a datagram
    /// or the stop, and a stop is seen at once, not at the next tick.
    pub(crate) fn stopper() -> io::Result<(Stopper, Waiter)> {
        let (a, b) = UnixStream::pair()?;
        Ok((Stopper { _end: a }, Waiter(b)))
    }

    impl Waiter {
        /// Blocks until `socket` is readable (or writable, with
        /// `writable`) or the [`Stopper`] is dropped.
        pub(crate) fn wait(&self, socket: &impl AsFd, writable: bool) -> io::Result<Woke> {
            let events = if writable {
                PollFlags::POLLOUT
            } else {
                PollFlags::POLLIN
            };
            loop {
                let mut fds = [
                    PollFd::new(socket.as_fd(), events),
                    PollFd::new(self.0.as_fd(), PollFlags::POLLIN),
                ];
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(e.into()),
                }
                // The stop first: a busy socket must not hide it. Its end
                // only ever closes, so any event there is the stop.
                if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                    return Ok(Woke::Stop);
                }
                if fds[0].revents().is_some_and(|r| !r.is_empty()) {
                    return Ok(Woke::Ready);
                }
            }
        }
    }

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
        /// Returns how many reads there were, fewer than `max` only when
        /// the kernel had no more; `WouldBlock` when nothing was queued.
        /// `socket` must be non-blocking.
        #[cfg(target_os = "linux")]
        pub(crate) fn recv_many(
            &mut self,
            socket: &UdpSocket,
            max: usize,
            mut each: impl FnMut(Read<'_>),
        ) -> io::Result<usize> {
            use std::io::IoSliceMut;
            use std::os::fd::AsRawFd;

            use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrStorage};

            let slots = self.got.capacity();
            // Built per call, not kept: the headers hold raw pointers (not
            // `Send`), so a `RecvBatch` holding them could not be made on
            // one thread and used on another.
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
        pub(crate) fn recv_many(
            &mut self,
            socket: &UdpSocket,
            max: usize,
            mut each: impl FnMut(Read<'_>),
        ) -> io::Result<usize> {
            let mut reads = 0;
            while reads < max {
                let buf = &mut self.slab[..self.slot];
                match socket.recv_from(buf) {
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
    #[derive(Debug)]
    pub(crate) struct Replies {
        queue: Vec<([u8; 4], SocketAddr)>,
        /// Whether consecutive replies to one peer go as one UDP GSO send
        /// (`UDP_SEGMENT`); off for good once the kernel or the route
        /// refuses it.
        gso: bool,
    }

    impl Default for Replies {
        fn default() -> Self {
            Self {
                queue: Vec::new(),
                gso: cfg!(target_os = "linux"),
            }
        }
    }

    impl Replies {
        pub(crate) fn push(&mut self, reply: [u8; 4], to: SocketAddr) {
            self.queue.push((reply, to));
        }

        pub(crate) fn is_empty(&self) -> bool {
            self.queue.is_empty()
        }

        /// Sends every reply, each its own datagram, waiting for the
        /// socket when its buffer is full (or for the stop: what is left
        /// then is failed). A reply the kernel refuses is passed to
        /// `failed` and dropped; the others still go.
        pub(crate) fn send(
            &mut self,
            socket: &UdpSocket,
            waiter: &Waiter,
            mut failed: impl FnMut(SocketAddr, io::Error),
        ) {
            let mut from = 0;
            while from < self.queue.len() {
                let rest = &self.queue[from..];
                let gso = self.gso;
                match send_now(socket, rest, gso) {
                    Ok(0) => {
                        let e = io::Error::new(io::ErrorKind::WriteZero, "not sent");
                        failed(rest[0].1, e);
                        from += 1;
                    }
                    Ok(sent) => from += sent,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        let e = match waiter.wait(socket, true) {
                            Ok(Woke::Ready) => continue,
                            Ok(Woke::Stop) => io::Error::other("stopping"),
                            Err(e) => e,
                        };
                        rest.iter().for_each(|(_, to)| {
                            failed(*to, io::Error::new(e.kind(), e.to_string()));
                        });
                        break;
                    }
                    // What a kernel without UDP GSO, or a route whose device
                    // cannot checksum for it, answers: the same again one
                    // datagram per reply. (A reply refused for another reason
                    // costs GSO too, never a reply: it is then refused alone.)
                    Err(e) if gso && gso_refused(&e) => self.gso = false,
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

    fn gso_refused(e: &io::Error) -> bool {
        #[cfg(target_os = "linux")]
        {
            let refusals = [
                Errno::EIO,
                Errno::EINVAL,
                Errno::ENOPROTOOPT,
                Errno::EOPNOTSUPP,
            ];
            e.raw_os_error()
                .is_some_and(|code| refusals.iter().any(|r| *r as i32 == code))
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = e;
            false
        }
    }

    /// Sends replies from the front of `replies` in one `sendmmsg` and
    /// returns how many went. With `gso`, consecutive replies to one peer
    /// are one message cut into 4-byte datagrams by the kernel
    /// (`UDP_SEGMENT`): a burst's ACKs to a forwarder cross the UDP/IP
    /// stack once per 64, not once each, and still arrive one datagram
    /// per ACK, as on the wire.
    #[cfg(target_os = "linux")]
    fn send_now(
        socket: &UdpSocket,
        replies: &[([u8; 4], SocketAddr)],
        gso: bool,
    ) -> io::Result<usize> {
        use std::io::IoSlice;
        use std::os::fd::AsRawFd;

        use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};

        /// Linux's UIO_MAXIOV: sendmmsg takes no more messages per call.
        const MAX_MESSAGES: usize = 1024;
        /// UDP_MAX_SEGMENTS of the kernels that have the fewest (64).
        const MAX_SEGMENTS: usize = 64;
        let per_message = if gso { MAX_SEGMENTS } else { 1 };
        let mut runs: Vec<(usize, usize)> = Vec::new();
        let mut end = 0;
        while end < replies.len() && runs.len() < MAX_MESSAGES {
            let to = replies[end].1;
            let n = replies[end..]
                .iter()
                .take(per_message)
                .take_while(|(_, t)| *t == to)
                .count();
            runs.push((end, n));
            end += n;
        }
        let slices: Vec<IoSlice<'_>> = replies[..end]
            .iter()
            .map(|(r, _)| IoSlice::new(r))
            .collect();
        let messages: Vec<&[IoSlice<'_>]> = runs
            .iter()
            .map(|&(start, n)| &slices[start..start + n])
            .collect();
        let addrs: Vec<Option<SockaddrStorage>> = runs
            .iter()
            .map(|&(start, _)| Some(SockaddrStorage::from(replies[start].1)))
            .collect();
        let segment: u16 = 4;
        let with_gso = [ControlMessage::UdpGsoSegments(&segment)];
        let (cmsgs, space): (&[ControlMessage<'_>], _) = if gso {
            (&with_gso, Some(nix::cmsg_space!(u16)))
        } else {
            (&[], None)
        };
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(runs.len(), space);
        let sent = sendmmsg(
            socket.as_raw_fd(),
            &mut headers,
            &messages,
            &addrs,
            cmsgs,
            MsgFlags::MSG_DONTWAIT,
        )
        .map_err(io::Error::from)?
        .count();
        Ok(runs.iter().take(sent).map(|&(_, n)| n).sum())
    }

    #[cfg(not(target_os = "linux"))]
    fn send_now(
        socket: &UdpSocket,
        replies: &[([u8; 4], SocketAddr)],
        _gso: bool,
    ) -> io::Result<usize> {
        let Some((reply, to)) = replies.first() else {
            return Ok(0);
        };
        socket.send_to(reply, *to).map(|_| 1)
    }
}

#[cfg(all(test, feature = "lorawan"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::{SocketAddr, UdpSocket};
    use std::time::Duration;

    use super::{stopper, Read, RecvBatch, Replies, Woke};

    fn socket() -> (UdpSocket, SocketAddr) {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = s.local_addr().unwrap();
        (s, addr)
    }

    /// The server's end: non-blocking, as the receive thread has it.
    fn server() -> (UdpSocket, SocketAddr) {
        let (s, addr) = socket();
        s.set_nonblocking(true).unwrap();
        (s, addr)
    }

    /// The next `n` datagrams on `s`; a timeout only so a failure ends.
    fn datagrams(s: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        while out.len() < n {
            let len = s.recv(&mut buf).expect("a datagram");
            out.push(buf[..len].to_vec());
        }
        out
    }

    fn reply(i: u16) -> [u8; 4] {
        let [a, b] = i.to_be_bytes();
        [2, a, b, 1]
    }

    #[test]
    fn each_reply_is_its_own_datagram_in_order_whatever_the_grouping() {
        let (server, _) = server();
        let ((a, a_addr), (b, b_addr)) = (socket(), socket());
        let (_stopper, waiter) = stopper().unwrap();
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
        replies.send(&server, &waiter, |_, _| failures += 1);
        assert_eq!(failures, 0);
        assert!(replies.is_empty());
        let want = |r: std::ops::Range<u16>| r.map(|i| reply(i).to_vec()).collect::<Vec<_>>();
        let mut to_a = want(0..150);
        to_a.extend(want(153..155));
        assert_eq!(datagrams(&a, 152), to_a);
        assert_eq!(datagrams(&b, 3), want(150..153));
    }

    #[test]
    fn a_reply_that_cannot_go_is_reported_and_the_others_still_go() {
        let (server, _) = server();
        let (a, a_addr) = socket();
        let (_stopper, waiter) = stopper().unwrap();
        let nowhere: SocketAddr = "[::1]:9".parse().unwrap();
        let mut replies = Replies::default();
        replies.push(reply(1), a_addr);
        replies.push(reply(2), nowhere);
        replies.push(reply(3), a_addr);
        let mut failed = Vec::new();
        replies.send(&server, &waiter, |to, _| failed.push(to));
        assert_eq!(failed, [nowhere], "an IPv6 peer on an IPv4 socket");
        assert_eq!(datagrams(&a, 2), [reply(1), reply(3)]);
    }

    #[test]
    fn a_read_takes_what_is_queued_and_marks_what_did_not_fit() {
        let (server, server_addr) = server();
        let (client, _) = socket();
        client.connect(server_addr).unwrap();
        let (_stopper, waiter) = stopper().unwrap();
        // Two slots of 8 bytes, up to 5 reads: three batches' worth queued.
        let mut batch = RecvBatch::new(2, 8);
        for d in [&b"one"[..], b"two", b"0123456789", b"four", b"five"] {
            client.send(d).unwrap();
        }
        let mut got = Vec::new();
        while got.len() < 5 {
            assert_eq!(waiter.wait(&server, false).unwrap(), Woke::Ready);
            let each = |r: Read<'_>| match r {
                Read::Datagram(bytes, how) => got.push((bytes.to_vec(), how.truncated)),
                Read::Error(e) => panic!("{e}"),
            };
            match batch.recv_many(&server, 5, each) {
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
        let nothing = batch.recv_many(&server, 5, |_| panic!("nothing is queued"));
        assert_eq!(nothing.unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    }

    #[test]
    fn a_wait_ends_when_the_stopper_is_dropped_even_with_datagrams_queued() {
        let (server, server_addr) = server();
        let (client, _) = socket();
        let (stopper, waiter) = stopper().unwrap();
        let thread = std::thread::spawn(move || {
            let idle = waiter.wait(&server, false).unwrap();
            (idle, waiter, server)
        });
        drop(stopper);
        let (idle, waiter, server) = thread.join().unwrap();
        assert_eq!(idle, Woke::Stop, "an idle socket");
        client.send_to(b"x", server_addr).unwrap();
        assert_eq!(waiter.wait(&server, false).unwrap(), Woke::Stop);
    }
}
