//! The one connection (TCP) or port (RTU) of a bus, with what a Modbus
//! client library leaves to its user (`shared/CRATES.md`):
//!
//! - **Timeouts**: every request is bounded by the adapter's `timeout`.
//! - **Late answers**: over TCP the transaction id tells them (a late or
//!   doubled answer to a request already settled is dropped and counted,
//!   and the current request's answer still waited for: [`super::tcp`]),
//!   and the caller drops the connection after a timeout;
//!   over RTU there is no id, and the line is ours ([`super::rtu`]):
//!   answers framed, checked against their request, the line drained,
//!   units out of step probed.
//! - **Every answer checked**: against its request, both ways
//!   ([`super::frame::check`]): the unit, the function, a read's count, a
//!   write's echo.
//! - **A closed connection** is said to be one, not an errno left behind
//!   (what tokio-modbus 0.17 reported).
//! - **Reconnects**: after a transport error the caller drops the link and
//!   connects again.

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_serial::{DataBits, SerialPortBuilderExt, SerialStream, StopBits};

use super::config::{Parity, SerialSettings, Transport};
use super::frame::Request;
use super::plan::Read;
use super::poller::Answer;
use super::registers::Encoded;
use super::rtu::RtuLine;
use super::tcp::TcpLink;

enum Inner {
    Tcp(TcpLink),
    // Boxed: a line keeps its read buffer and per-unit state inline.
    Rtu(Box<RtuLine>),
}

/// An open link of a bus.
pub struct Link {
    inner: Inner,
}

/// Opens the serial port as `serial_line` does.
pub fn open_serial(s: &SerialSettings) -> Result<SerialStream, tokio_serial::Error> {
    let data_bits = match s.data_bits {
        5 => DataBits::Five,
        6 => DataBits::Six,
        7 => DataBits::Seven,
        _ => DataBits::Eight,
    };
    let parity = match s.parity {
        Parity::None => tokio_serial::Parity::None,
        Parity::Odd => tokio_serial::Parity::Odd,
        Parity::Even => tokio_serial::Parity::Even,
    };
    let stop_bits = if s.stop_bits == 2 {
        StopBits::Two
    } else {
        StopBits::One
    };
    tokio_serial::new(s.path.to_string_lossy(), s.baud)
        .data_bits(data_bits)
        .parity(parity)
        .stop_bits(stop_bits)
        .open_native_async()
}

/// What is wrong with a bus that cannot be opened, in its own terms, as
/// a clause after the adapter's name (`/health`, the log): "cannot reach
/// its Modbus TCP server tcp://…: connection refused".
pub fn open_problem(transport: &Transport, e: &io::Error) -> String {
    match transport {
        Transport::Tcp { .. } => {
            let why = match e.kind() {
                io::ErrorKind::ConnectionRefused => {
                    "connection refused: the server is down or listens on another port".to_string()
                }
                io::ErrorKind::TimedOut => "no answer to connect".to_string(),
                _ => e.to_string(),
            };
            format!(
                "cannot reach its Modbus TCP server {} ({why})",
                transport.describe()
            )
        }
        Transport::Rtu(_) => format!("cannot open its serial port {} ({e})", transport.describe()),
    }
}

/// What is wrong with a bus that was open and failed, in its own terms.
pub fn lost_problem(transport: &Transport, detail: &str) -> String {
    match transport {
        Transport::Tcp { .. } => format!(
            "lost its Modbus TCP server {} ({detail})",
            transport.describe()
        ),
        Transport::Rtu(_) => format!(
            "cannot read its serial port {} ({detail})",
            transport.describe()
        ),
    }
}

impl Link {
    /// Connects (TCP, bounded by `timeout` per attempt) or opens the port.
    ///
    /// # Errors
    /// The connection or the port could not be opened.
    pub async fn open(transport: &Transport, answer_timeout: Duration) -> io::Result<Self> {
        match transport {
            Transport::Tcp { host, port } => {
                // A host that drops SYNs would hold the bus for minutes.
                let stream = timeout(
                    answer_timeout.max(Duration::from_secs(3)),
                    TcpStream::connect((host.as_str(), *port)),
                )
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
                stream.set_nodelay(true)?;
                Ok(Self {
                    inner: Inner::Tcp(TcpLink::new(stream, answer_timeout)),
                })
            }
            Transport::Rtu(settings) => {
                let port = open_serial(settings).map_err(io::Error::from)?;
                Ok(Self::over_serial(
                    port,
                    settings.inter_frame_gap(),
                    answer_timeout,
                    settings.echo,
                ))
            }
        }
    }

    /// An RTU link over a port already open; `echo`: the adapter sends
    /// every request's bytes back ([`SerialSettings::echo`]).
    pub fn over_serial(
        port: SerialStream,
        gap: Duration,
        answer_timeout: Duration,
        echo: bool,
    ) -> Self {
        Self {
            inner: Inner::Rtu(Box::new(RtuLine::new(port, gap, answer_timeout, echo))),
        }
    }

    /// Makes one read of unit `unit`, bounded by the timeout.
    pub async fn read(&mut self, unit: u8, read: &Read) -> Answer {
        let request = Request::Read {
            table: read.table,
            start: read.start,
            count: read.count,
        };
        self.call(unit, &request).await
    }

    /// Writes one coil (function 5) or register(s) (6 for one word, 16
    /// for more) of unit `unit`, bounded by the timeout. The answer is
    /// `Words(vec![])` when the device acknowledged it with its echo.
    pub async fn write(&mut self, unit: u8, address: u16, value: &Encoded) -> Answer {
        let request = match value {
            Encoded::Coil(on) => Request::WriteCoil { address, on: *on },
            Encoded::Registers(words) => match words.as_slice() {
                [one] => Request::WriteRegister {
                    address,
                    value: *one,
                },
                many => Request::WriteRegisters {
                    address,
                    words: many.to_vec(),
                },
            },
        };
        self.call(unit, &request).await
    }

    async fn call(&mut self, unit: u8, request: &Request) -> Answer {
        match &mut self.inner {
            Inner::Rtu(line) => line.call(unit, request).await,
            Inner::Tcp(tcp) => tcp.call(unit, request).await,
        }
    }

    /// Whether this is a serial line (no reconnect on a timeout there).
    pub fn is_serial(&self) -> bool {
        matches!(self.inner, Inner::Rtu(_))
    }

    /// RTU: bytes waiting in the port (for tests that must know a
    /// device's bytes arrived).
    #[cfg(test)]
    pub(crate) fn pending(&self) -> u32 {
        match &self.inner {
            Inner::Rtu(line) => line.pending(),
            Inner::Tcp(_) => 0,
        }
    }

    /// RTU: units whose stray answers (late, or doubled) were dropped
    /// since the last call.
    pub fn take_strays(&mut self) -> Vec<u8> {
        match &mut self.inner {
            Inner::Rtu(line) => line.take_strays(),
            Inner::Tcp(_) => Vec::new(),
        }
    }

    /// TCP: late or doubled answers (to requests already settled) dropped
    /// since the last call.
    pub fn take_late_answers(&mut self) -> u32 {
        match &mut self.inner {
            Inner::Tcp(tcp) => tcp.take_late_answers(),
            Inner::Rtu(_) => 0,
        }
    }
}

#[cfg(test)]
#[path = "link_tests.rs"]
mod tests;
