//! A Semtech forwarder's ACKs, sent many per system call (`sendmmsg`, and
//! UDP GSO for a run to one peer) where the kernel allows it.

use std::io;
use std::net::SocketAddr;

use tokio::io::Interest;
use tokio::net::UdpSocket;

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
    /// socket when its buffer is full. A reply the kernel refuses is
    /// passed to `failed` and dropped; the others still go.
    pub(crate) async fn send(
        &mut self,
        socket: &UdpSocket,
        mut failed: impl FnMut(SocketAddr, io::Error),
    ) {
        let mut from = 0;
        while from < self.queue.len() {
            let rest = &self.queue[from..];
            let gso = self.gso;
            match socket.try_io(Interest::WRITABLE, || send_now(socket, rest, gso)) {
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
        use nix::errno::Errno;
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
fn send_now(socket: &UdpSocket, replies: &[([u8; 4], SocketAddr)], gso: bool) -> io::Result<usize> {
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
    socket.try_send_to(reply, *to).map(|_| 1)
}
