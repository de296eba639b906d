//! The one connection (TCP) or port (RTU) of a bus, through tokio-modbus,
//! with what that library leaves to its user (`shared/CRATES.md`):
//!
//! - **Timeouts**: every request is bounded by the adapter's `timeout`.
//! - **Late answers**: the client clears only its own buffer before a
//!   request, so an answer arriving after its timeout is read as the next
//!   request's (TCP: a transaction-id mismatch, tokio-modbus #324; RTU:
//!   *silently*, only unit and function code are checked). Over TCP the
//!   caller drops the link after a timeout; over RTU the link waits a
//!   guard time as long as the timeout, then flushes the port's input
//!   before the next request ([`RtuPort`]).
//! - **Inter-frame silence** (RTU): 3.5 characters between frames
//!   (tokio-modbus #180), kept before every request.
//! - **CRC errors** (RTU): the codec drops bytes until a frame checks, so a
//!   corrupted answer surfaces as a timeout; bytes received during a
//!   request that timed out tell it apart from silence.
//! - **Reconnects**: after a transport error the `Context` is useless
//!   (#219, #309); the caller drops the link and connects again.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tokio_modbus::client::{Context, Reader, Writer};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::Slave;
use tokio_serial::{
    ClearBuffer, DataBits, SerialPort, SerialPortBuilderExt, SerialStream, StopBits,
};

use super::config::{Parity, SerialSettings, Transport};
use super::plan::Read;
use super::poller::Answer;
use super::registers::{Encoded, Table};

/// What an RTU port and the link share: a flush to make before the next
/// request, and the bytes read since the last request was sent.
#[derive(Debug, Default)]
struct PortShared {
    flush_before_write: AtomicBool,
    bytes_since_write: AtomicUsize,
}

/// A serial port that can drop stale input before a request: the
/// `Context` owns the port, so the link asks for it through `shared`.
#[derive(Debug)]
pub struct RtuPort {
    port: SerialStream,
    shared: Arc<PortShared>,
}

impl AsyncRead for RtuPort {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.port).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.shared
            .bytes_since_write
            .fetch_add(n, Ordering::Relaxed);
        polled
    }
}

impl AsyncWrite for RtuPort {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self
            .shared
            .flush_before_write
            .swap(false, Ordering::Relaxed)
        {
            // An answer that came after its timeout is still in the
            // driver's buffer: read now, it would pass for this request's.
            self.port
                .clear(ClearBuffer::Input)
                .map_err(io::Error::from)?;
        }
        self.shared.bytes_since_write.store(0, Ordering::Relaxed);
        Pin::new(&mut self.port).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.port).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.port).poll_shutdown(cx)
    }
}

/// An open link of a bus.
pub struct Link {
    ctx: Context,
    /// RTU only.
    port: Option<Arc<PortShared>>,
    /// RTU: the silence kept between frames.
    gap: Duration,
    /// When the last frame ended (RTU: the next may not start before
    /// `gap` after it; after a timeout, not before the guard time).
    quiet_until: Instant,
    timeout: Duration,
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
                    ctx: tokio_modbus::client::tcp::attach_slave(stream, Slave(1)),
                    port: None,
                    gap: Duration::ZERO,
                    quiet_until: Instant::now(),
                    timeout: answer_timeout,
                })
            }
            Transport::Rtu(settings) => {
                let port = open_serial(settings).map_err(io::Error::from)?;
                Ok(Self::over_serial(
                    port,
                    settings.inter_frame_gap(),
                    answer_timeout,
                ))
            }
        }
    }

    /// An RTU link over a port already open.
    pub fn over_serial(port: SerialStream, gap: Duration, answer_timeout: Duration) -> Self {
        let shared = Arc::new(PortShared::default());
        // Whatever a device sent before we opened is not an answer.
        shared.flush_before_write.store(true, Ordering::Relaxed);
        let port = RtuPort {
            port,
            shared: shared.clone(),
        };
        Self {
            ctx: tokio_modbus::client::rtu::attach_slave(port, Slave(1)),
            port: Some(shared),
            gap,
            quiet_until: Instant::now(),
            timeout: answer_timeout,
        }
    }

    /// Makes one read of unit `unit`, bounded by the timeout.
    pub async fn read(&mut self, unit: u8, read: &Read) -> Answer {
        if self.port.is_some() {
            tokio::time::sleep_until(self.quiet_until).await;
        }
        self.ctx.set_slave(Slave(unit));
        let (start, count) = (read.start, read.count);
        let ctx = &mut self.ctx;
        let answer = match read.table {
            Table::Holding => {
                timed(
                    self.timeout,
                    ctx.read_holding_registers(start, count),
                    Answer::Words,
                )
                .await
            }
            Table::Input => {
                timed(
                    self.timeout,
                    ctx.read_input_registers(start, count),
                    Answer::Words,
                )
                .await
            }
            Table::Coil => timed(self.timeout, ctx.read_coils(start, count), Answer::Bits).await,
            Table::Discrete => {
                timed(
                    self.timeout,
                    ctx.read_discrete_inputs(start, count),
                    Answer::Bits,
                )
                .await
            }
        };
        let Some(port) = &self.port else {
            return answer;
        };
        let now = Instant::now();
        let heard = port.bytes_since_write.load(Ordering::Relaxed) > 0;
        let answer = match answer {
            // A garbled frame: the codec kept dropping bytes until the
            // timeout (or gave up after 20 tries).
            Answer::Timeout if heard => Answer::Crc,
            Answer::Connection(e) if e.contains("Too many retries") => Answer::Crc,
            other => other,
        };
        self.quiet_until = match answer {
            // The device may still answer the request that timed out:
            // wait as long again, then drop whatever came.
            Answer::Timeout | Answer::Crc | Answer::Mismatch => {
                port.flush_before_write.store(true, Ordering::Relaxed);
                now + self.timeout
            }
            _ => now + self.gap,
        };
        answer
    }

    /// Writes one coil (function 5) or register(s) (6 for one word, 16
    /// for more) of unit `unit`, bounded by the timeout. The answer is
    /// `Words(vec![])` when the device acknowledged it.
    pub async fn write(&mut self, unit: u8, address: u16, value: &Encoded) -> Answer {
        if self.port.is_some() {
            tokio::time::sleep_until(self.quiet_until).await;
        }
        self.ctx.set_slave(Slave(unit));
        let ctx = &mut self.ctx;
        let ok = |()| Answer::Words(Vec::new());
        let answer = match value {
            Encoded::Coil(bit) => {
                timed(self.timeout, ctx.write_single_coil(address, *bit), ok).await
            }
            Encoded::Registers(words) => match words.as_slice() {
                [one] => timed(self.timeout, ctx.write_single_register(address, *one), ok).await,
                many => {
                    timed(
                        self.timeout,
                        ctx.write_multiple_registers(address, many),
                        ok,
                    )
                    .await
                }
            },
        };
        if let Some(port) = &self.port {
            let now = Instant::now();
            self.quiet_until = match answer {
                Answer::Timeout | Answer::Crc | Answer::Mismatch => {
                    port.flush_before_write.store(true, Ordering::Relaxed);
                    now + self.timeout
                }
                _ => now + self.gap,
            };
        }
        answer
    }

    /// Whether this is a serial line (no reconnect on a timeout there).
    pub fn is_serial(&self) -> bool {
        self.port.is_some()
    }
}

#[cfg(test)]
#[path = "link_tests.rs"]
mod tests;

/// Runs one request with the timeout, flattening tokio-modbus's nested
/// results into an [`Answer`].
async fn timed<T>(
    limit: Duration,
    request: impl std::future::Future<Output = tokio_modbus::Result<T>>,
    ok: impl FnOnce(T) -> Answer,
) -> Answer {
    match timeout(limit, request).await {
        Err(_) => Answer::Timeout,
        Ok(Ok(Ok(value))) => ok(value),
        Ok(Ok(Err(exception))) => Answer::Exception(u8::from(exception)),
        Ok(Err(tokio_modbus::Error::Protocol(_))) => Answer::Mismatch,
        Ok(Err(tokio_modbus::Error::Transport(e))) => Answer::Connection(e.to_string()),
    }
}
