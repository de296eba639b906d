//! One Modbus TCP connection, as a client: a request at a time, framed by
//! its MBAP header ([`super::frame::tcp_frame`]), its answer taken only
//! when it carries the request's transaction id and checked against the
//! request as an RTU answer is ([`super::frame::check`]).
//!
//! Our own framing rather than tokio-modbus's client: the checks a client
//! library leaves to its user (`shared/CRATES.md`: a read's count, a
//! write's echo, a peer's EOF told apart from an error) were already ours,
//! and its `Framed` codec, typed request and response and their copies
//! cost more CPU per register than the rest of a poll (issue 69).
//!
//! - **A late or doubled answer** (a frame for a transaction this
//!   connection already sent, and settled: answered, or timed out) is
//!   dropped and counted ([`TcpLink::take_late_answers`]), and the current
//!   transaction's answer is waited for until its timeout. Some
//!   gateways and converters send one answer twice: the copy sits in the
//!   socket, and the next request (maybe for another unit) found it
//!   first. Reconnecting there lost that poll and blamed the next device
//!   for the server's fault. The transaction id still tells every answer
//!   from the next request's: a late one is never taken for it.
//! - **A frame that cannot be framed, or for a transaction never sent** on
//!   this connection (a server that does not echo the id), or an answer
//!   with the current id that does not fit its request, is a mismatch:
//!   the caller drops the connection, so nothing left of it is read as
//!   the next request's answer.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::frame::{check, parse_tcp, tcp_frame, Checked, Request, TcpParsed};
use super::poller::Answer;

/// What a connection the server closed is reported as.
pub(super) const CLOSED_BY_SERVER: &str = "the server closed the connection";

/// The most a Modbus TCP frame takes (MBAP header and the largest PDU).
const MAX_FRAME: usize = 260;

pub(super) struct TcpLink {
    stream: TcpStream,
    timeout: Duration,
    transaction: u16,
    /// Requests sent on this connection (at most 65 536 count: every id
    /// has then been sent once).
    sent: u32,
    /// Late or doubled answers dropped since [`Self::take_late_answers`].
    late: u32,
    request: Vec<u8>,
    received: Vec<u8>,
}

impl TcpLink {
    pub(super) fn new(stream: TcpStream, timeout: Duration) -> Self {
        Self {
            stream,
            timeout,
            transaction: 0,
            sent: 0,
            late: 0,
            request: Vec::with_capacity(MAX_FRAME),
            received: Vec::with_capacity(2 * MAX_FRAME),
        }
    }

    /// One request to `unit` and its answer, bounded by the timeout.
    pub(super) async fn call(&mut self, unit: u8, request: &Request) -> Answer {
        self.transaction = self.transaction.wrapping_add(1);
        self.sent = (self.sent + 1).min(1 << 16);
        tcp_frame(self.transaction, unit, request, &mut self.request);
        match timeout(self.timeout, self.exchange(unit, request)).await {
            Ok(answer) => answer,
            Err(_) => Answer::Timeout,
        }
    }

    async fn exchange(&mut self, unit: u8, request: &Request) -> Answer {
        if let Err(e) = self.stream.write_all(&self.request).await {
            return connection(&e);
        }
        loop {
            match parse_tcp(&self.received) {
                TcpParsed::Frame {
                    len,
                    transaction,
                    reply,
                } => {
                    self.received.drain(..len);
                    if transaction != self.transaction {
                        if self.settled(transaction) {
                            // A copy or a late answer: this request's own
                            // answer may still be behind it.
                            self.late += 1;
                            continue;
                        }
                        return Answer::Mismatch;
                    }
                    return match reply.map(|r| check(&r, unit, request)) {
                        Some(Checked::Words(words)) => Answer::Words(words),
                        Some(Checked::Bits(bits)) => Answer::Bits(bits),
                        Some(Checked::Written) => Answer::Words(Vec::new()),
                        Some(Checked::Exception(code)) => Answer::Exception(code),
                        Some(Checked::NotOurs) | None => Answer::Mismatch,
                    };
                }
                TcpParsed::Garbage => {
                    self.received.clear();
                    return Answer::Mismatch;
                }
                TcpParsed::Incomplete => {}
            }
            self.received.reserve(MAX_FRAME);
            match self.stream.read_buf(&mut self.received).await {
                Ok(0) => return Answer::Connection(CLOSED_BY_SERVER.into()),
                Ok(_) => {}
                Err(e) => return connection(&e),
            }
        }
    }
}

impl TcpLink {
    /// Whether `transaction` is one this connection sent before the
    /// current one: its answer, if any, was taken or given up on.
    fn settled(&self, transaction: u16) -> bool {
        let back = u32::from(self.transaction.wrapping_sub(transaction));
        back != 0 && back < self.sent
    }

    /// Late or doubled answers dropped since the last call, for the
    /// caller to count.
    pub(super) fn take_late_answers(&mut self) -> u32 {
        std::mem::take(&mut self.late)
    }
}

fn connection(e: &io::Error) -> Answer {
    Answer::Connection(e.to_string())
}
