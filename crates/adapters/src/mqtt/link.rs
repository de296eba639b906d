//! One connection of the MQTT ingress adapter to its broker: the socket
//! (plain or TLS), the CONNECT handshake, the receive buffer the packets
//! are read from in place, and the writes a subscriber makes.
//!
//! A PUBLISH over the size limit is skipped as it streams past, only its
//! packet id kept to acknowledge it: rumqttc failed the connection on it
//! and had to reconnect with a raised limit to read it once.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::{pki_types::ServerName, ClientConfig};

use super::wire::{self, Frame, Parsed, WireError};

/// Why a connection failed or ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("the broker refused the connection: {0}")]
    Refused(&'static str),
    #[error("the broker answered the CONNECT with something else")]
    NoConnAck,
    #[error("timed out connecting to the broker")]
    ConnectTimeout,
    #[error("no PINGRESP within the keep-alive")]
    PingTimeout,
    #[error("timed out writing to the broker")]
    WriteTimeout,
    #[error("the broker closed the connection")]
    Closed,
    #[error("{0} is not a TLS server name")]
    ServerName(String),
}

/// The text of a CONNACK's refusal (MQTT 3.1.1 §3.2.2.3).
fn refusal(code: u8) -> &'static str {
    match code {
        1 => "unacceptable protocol version",
        2 => "client identifier rejected",
        3 => "server unavailable",
        4 => "bad user name or password",
        5 => "not authorized",
        _ => "unknown return code",
    }
}

/// Everything needed to open a connection, resolved once.
pub(crate) struct Dial {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) tls: Option<Arc<ClientConfig>>,
    pub(crate) client_id: String,
    pub(crate) credentials: Option<(String, String)>,
    pub(crate) keep_alive: Duration,
    pub(crate) clean_session: bool,
    /// Largest remaining length read into the buffer.
    pub(crate) max_packet_bytes: usize,
    /// Connecting, TLS and the CONNACK together.
    pub(crate) timeout: Duration,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What the receive buffer holds next.
#[derive(Debug)]
pub(crate) enum Next<'a> {
    Frame(Frame<'a>),
    /// A PUBLISH over the limit, being skipped; `bytes` is its remaining
    /// length.
    Oversized { qos: u8, pkid: u16, bytes: usize },
}

/// Bytes asked of the socket per read at least: a burst's worth of small
/// messages in one system call.
const READ_ROOM: usize = 32 * 1024;

/// How long a write may take before the connection counts as lost.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct Link {
    stream: Stream,
    /// Received bytes; those before `start` are read already.
    buf: Vec<u8>,
    start: usize,
    /// What the packet at `start` needs in all, when it is incomplete.
    need: usize,
    /// Bytes of an oversized packet still to be thrown away.
    skip: usize,
    limit: usize,
    out: Vec<u8>,
    /// A PINGREQ is unanswered.
    pinged: bool,
}

impl Link {
    /// Connects, sends CONNECT and waits for the CONNACK; with it, whether
    /// the broker kept our session.
    pub(crate) async fn connect(dial: &Dial) -> Result<(Self, bool), LinkError> {
        match tokio::time::timeout(dial.timeout, Self::handshake(dial)).await {
            Ok(done) => done,
            Err(_) => Err(LinkError::ConnectTimeout),
        }
    }

    async fn handshake(dial: &Dial) -> Result<(Self, bool), LinkError> {
        let tcp = TcpStream::connect((dial.host.as_str(), dial.port)).await?;
        // Acknowledgements are a few bytes each and the broker waits on them.
        tcp.set_nodelay(true)?;
        let stream = match &dial.tls {
            None => Stream::Plain(tcp),
            Some(config) => {
                let name = ServerName::try_from(dial.host.clone())
                    .map_err(|_| LinkError::ServerName(dial.host.clone()))?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await?;
                Stream::Tls(Box::new(tls))
            }
        };
        let mut link = Self {
            stream,
            buf: Vec::new(),
            start: 0,
            need: 0,
            skip: 0,
            limit: dial.max_packet_bytes,
            out: Vec::new(),
            pinged: false,
        };
        let connect = wire::Connect {
            client_id: &dial.client_id,
            keep_alive_secs: u16::try_from(dial.keep_alive.as_secs()).unwrap_or(u16::MAX),
            clean_session: dial.clean_session,
            credentials: dial
                .credentials
                .as_ref()
                .map(|(u, p)| (u.as_str(), p.as_str())),
        };
        wire::write_connect(&connect, &mut link.out);
        link.write_out().await?;
        loop {
            link.fill().await?;
            match link.next()? {
                None => continue,
                Some(Next::Frame(Frame::ConnAck {
                    session_present,
                    code: 0,
                })) => return Ok((link, session_present)),
                Some(Next::Frame(Frame::ConnAck { code, .. })) => {
                    return Err(LinkError::Refused(refusal(code)))
                }
                Some(_) => return Err(LinkError::NoConnAck),
            }
        }
    }

    /// Reads what the socket has (waiting for something). Cancel safe:
    /// nothing is taken from the socket unless it is in the buffer.
    pub(crate) async fn fill(&mut self) -> Result<(), LinkError> {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        let room = READ_ROOM.max(self.need.saturating_sub(self.buf.len() - self.start));
        if self.buf.capacity() - self.buf.len() < room {
            // Only the unread tail of a packet is moved.
            self.buf.drain(..self.start);
            self.start = 0;
            self.buf.reserve(room);
        }
        let read = self.stream.read_buf(&mut self.buf).await?;
        if read == 0 {
            return Err(LinkError::Closed);
        }
        Ok(())
    }

    /// The next packet in the buffer, or `None` when the socket must be
    /// read for more. A PINGRESP answers the ping here (and is returned,
    /// for nothing more to be done).
    pub(crate) fn next(&mut self) -> Result<Option<Next<'_>>, LinkError> {
        if self.skip > 0 {
            let dropped = self.skip.min(self.buf.len() - self.start);
            self.start += dropped;
            self.skip -= dropped;
            if self.skip > 0 {
                return Ok(None);
            }
        }
        let unread = self.buf.len() - self.start;
        match wire::parse(&self.buf[self.start..], self.limit)? {
            Parsed::Incomplete { need } => {
                self.need = need;
                Ok(None)
            }
            Parsed::Frame { frame, len } => {
                self.start += len;
                self.need = 0;
                if frame == Frame::PingResp {
                    self.pinged = false;
                }
                Ok(Some(Next::Frame(frame)))
            }
            Parsed::Oversized {
                qos,
                pkid,
                remaining,
                total,
            } => {
                let here = total.min(unread);
                self.start += here;
                self.skip = total - here;
                self.need = 0;
                Ok(Some(Next::Oversized {
                    qos,
                    pkid,
                    bytes: remaining,
                }))
            }
        }
    }

    pub(crate) async fn subscribe(
        &mut self,
        pkid: u16,
        filters: &[(String, u8)],
    ) -> Result<(), LinkError> {
        wire::write_subscribe(pkid, filters, &mut self.out);
        self.write_out().await
    }

    /// `filters` must not be empty (MQTT forbids an UNSUBSCRIBE of none).
    pub(crate) async fn unsubscribe(
        &mut self,
        pkid: u16,
        filters: &[String],
    ) -> Result<(), LinkError> {
        wire::write_unsubscribe(pkid, filters, &mut self.out);
        self.write_out().await
    }

    /// Writes `acks` in order, with one flush.
    pub(crate) async fn acknowledge(&mut self, acks: &mut Vec<wire::Ack>) -> Result<(), LinkError> {
        for ack in acks.drain(..) {
            wire::write_ack(ack, &mut self.out);
        }
        self.write_out().await
    }

    /// The last PINGREQ is not to be judged unanswered: its PINGRESP may
    /// be in the socket, behind messages deliberately left unread.
    pub(crate) fn ping_answer_unread(&mut self) {
        self.pinged = false;
    }

    /// The keep-alive is due: a PINGREQ, unless the last one is still
    /// unanswered, which means the broker or the path to it is gone.
    pub(crate) async fn ping(&mut self) -> Result<(), LinkError> {
        if self.pinged {
            return Err(LinkError::PingTimeout);
        }
        self.pinged = true;
        self.out.extend_from_slice(&wire::PINGREQ);
        self.write_out().await
    }

    /// Leaves cleanly: DISCONNECT, so the broker drops no Last Will and
    /// keeps the session as asked.
    pub(crate) async fn disconnect(&mut self) -> Result<(), LinkError> {
        self.out.extend_from_slice(&wire::DISCONNECT);
        self.write_out().await?;
        self.stream.shutdown().await?;
        // Read on to the broker's close. Closed at once, with messages
        // still arriving unread (a socket closed so is reset), the
        // acknowledgements just written were lost with it: Mosquitto
        // resent to the next connection every message from the first of
        // them on (seen in a reload storm during a QoS 1 burst). What is
        // read here was not acknowledged and comes again too. The caller
        // bounds the wait.
        let mut unread = [0u8; 4096];
        while self.stream.read(&mut unread).await? > 0 {}
        Ok(())
    }

    /// Frees a burst's buffer once it is read (the next read allocates a
    /// small one again); a packet half-read stays.
    pub(crate) fn let_go(&mut self) {
        if self.start == self.buf.len() {
            self.buf = Vec::new();
            self.start = 0;
        }
        if self.out.is_empty() {
            self.out = Vec::new();
        }
    }

    async fn write_out(&mut self) -> Result<(), LinkError> {
        let written = tokio::time::timeout(WRITE_TIMEOUT, async {
            self.stream.write_all(&self.out).await?;
            self.stream.flush().await
        })
        .await;
        self.out.clear();
        match written {
            Ok(done) => Ok(done?),
            Err(_) => Err(LinkError::WriteTimeout),
        }
    }
}
