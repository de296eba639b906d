//! The `serial_line` adapter: a serial port, opened again whenever it
//! vanishes.
//!
//! A USB serial board disappears when it is unplugged, reset or
//! re-enumerated. The adapter then logs once, sets
//! `edge_gateway_adapter_connected{adapter}` to 0 (`/health` shows
//! `connecting`, as for an MQTT adapter without its broker), retries with
//! backoff without logging each attempt, and sets it back to 1 once the
//! port is open. A partial line when the port goes is cut where the plug
//! came out (`…,22.5,4` may have been `…,22.5,41.0`): a serial port has no
//! clean close that would finish it, so it is dropped, counted
//! `incomplete_line` and logged, and never glued to the first line of the
//! new stream. So is a partial line the board stops writing for longer
//! than a line could take ([`line_stall`]): the board behind a USB bridge
//! reset or hung while the port stayed.
//!
//! A board that resets mid-line and boots within that time prints its
//! first line onto the cut one (`21.5,4` + `22.0,45.1`). The framer marks
//! where the port went quiet for a reset's boot ([`line_gap`]) inside a
//! line; a line the decoder refuses is read again from that mark, and the
//! start dropped as a cut line if the rest decodes. A line that decodes
//! whole is taken whole: some sketches pause inside every line.
//!
//! The port has no acknowledgement to hold back, but what is behind it may
//! resend: an ESP-NOW relay prints a client's frame again when the client
//! missed the link-layer acknowledgement and sent it twice. A line with its
//! own time goes on as `Ingress::Durable` with its content digest, so the
//! pipeline takes the copy once (and journals it); other lines go on as
//! `Ingress::Readings`, where a crash costs at most one
//! `checkpoint_interval`, as for CoAP.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use gateway_core::backoff::Backoff;
use gateway_core::component::{AdapterFuture, ADAPTER_CONNECTED, ADAPTER_LINK, LINK_SERIAL_PORT};
use gateway_core::telemetry::LogThrottle;
use gateway_core::{
    Adapter, AdapterContext, AdapterError, DeliveryKey, DeviceId, Ingress, Receipt,
};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_serial::{DataBits, SerialPortBuilderExt, SerialStream, StopBits};
use tracing::{info, warn};

use super::decode::{DeviceCache, Outcome, Tally};
use super::framer::{Frame, Framer};
use super::serial_config::{Parity, SerialLineConfig};

/// First wait before reopening; doubles up to `max_backoff`.
const FIRST_RETRY: Duration = Duration::from_millis(200);
const READ_BUFFER: usize = 4096;
/// A pause within a line longer than any sketch takes between two prints
/// of one line (a DS18B20 conversion is 750 ms).
const LINE_PAUSE: Duration = Duration::from_secs(1);
/// The shortest silence inside a line that may be a board's reset. A
/// board that resets mid-line (brown-out, watchdog, the reset button)
/// goes quiet while it boots (an ESP32 for 100-300 ms, an Arduino's
/// bootloader for 0.5-1.5 s) and then prints from the start of a line.
/// A sketch prints one line at once, or in parts a few milliseconds
/// apart, and a USB bridge hands bytes on every few milliseconds (an
/// FTDI's latency timer is 16 ms): a shorter silence is no reset.
const RESET_GAP: Duration = Duration::from_millis(100);
/// Bytes' time on the wire the gap is at least, so that at a low baud
/// rate (33 ms a byte at 300 baud) a line still coming is not suspected.
const GAP_BYTES: u64 = 50;

/// How long a partial line may wait for its next byte: [`LINE_PAUSE`] and
/// twice the time the longest line takes on the wire (10 bits a byte).
/// Longer, the board stopped writing it: it reset or hung (a watchdog
/// reset), and behind a USB bridge (CP2102, CH340) the port does not
/// vanish when the ESP32 does, so nothing else would end the line.
/// Shorter would cut the lines of a sketch that pauses inside each one.
fn line_stall(config: &SerialLineConfig) -> Duration {
    let bits = u64::try_from(config.max_line_bytes)
        .unwrap_or(u64::MAX)
        .saturating_mul(20);
    let wire_ms = bits.saturating_mul(1000) / u64::from(config.baud.max(1));
    LINE_PAUSE.saturating_add(Duration::from_millis(wire_ms))
}

/// A silence inside a line after which the line may be a cut line's
/// start glued to the first line after the board's boot: [`RESET_GAP`],
/// or [`GAP_BYTES`] bytes' time at the port's baud rate and framing where
/// that is longer. Only marked ([`Framer::mark_pause`]): the line is read
/// again from there if, and only if, it is refused whole.
fn line_gap(config: &SerialLineConfig) -> Duration {
    let parity = u64::from(config.parity != Parity::None);
    let bits_per_byte =
        1 + u64::from(config.data_bits) + parity + u64::from(config.stop_bits);
    let wire_us = GAP_BYTES
        .saturating_mul(bits_per_byte)
        .saturating_mul(1_000_000)
        / u64::from(config.baud.max(1));
    RESET_GAP.max(Duration::from_micros(wire_us))
}

/// A runnable `serial_line` adapter.
pub struct SerialLineSource {
    config: SerialLineConfig,
}

impl SerialLineSource {
    pub fn new(config: SerialLineConfig) -> Self {
        Self { config }
    }
}

impl Adapter for SerialLineSource {
    fn holds_a_link(&self) -> bool {
        true
    }

    fn run(self: Box<Self>, ctx: AdapterContext) -> AdapterFuture {
        Box::pin(run(self.config, ctx))
    }
}

fn open(c: &SerialLineConfig) -> Result<SerialStream, tokio_serial::Error> {
    let data_bits = match c.data_bits {
        5 => DataBits::Five,
        6 => DataBits::Six,
        7 => DataBits::Seven,
        _ => DataBits::Eight,
    };
    let parity = match c.parity {
        Parity::None => tokio_serial::Parity::None,
        Parity::Odd => tokio_serial::Parity::Odd,
        Parity::Even => tokio_serial::Parity::Even,
    };
    let stop_bits = if c.stop_bits == 2 {
        StopBits::Two
    } else {
        StopBits::One
    };
    tokio_serial::new(c.path.to_string_lossy(), c.baud)
        .data_bits(data_bits)
        .parity(parity)
        .stop_bits(stop_bits)
        .open_native_async()
}

/// Why reading a port stopped.
enum Stopped {
    Shutdown,
    Lost(io::Error),
}

async fn run(config: SerialLineConfig, ctx: AdapterContext) -> Result<(), AdapterError> {
    let connected = ctx
        .telemetry
        .gauge(ADAPTER_CONNECTED, &[("adapter", &ctx.name)]);
    connected.set(0.0);
    ctx.telemetry
        .gauge(
            ADAPTER_LINK,
            &[("adapter", &ctx.name), ("link", LINK_SERIAL_PORT)],
        )
        .set(1.0);
    let reopens = ctx.telemetry.counter(
        "edge_gateway_adapter_reconnects_total",
        &[("adapter", &ctx.name)],
    );
    let mut backoff = Backoff::new(FIRST_RETRY, config.max_backoff);
    let mut framer = Framer::new(config.max_line_bytes);
    // Said once per outage, not at every retry.
    let mut down_logged = false;
    loop {
        let port = match open(&config) {
            Ok(port) => port,
            Err(e) => {
                if !down_logged {
                    warn!(adapter = %ctx.name, path = %config.path.display(), error = %e, "Cannot open the serial port; retrying with backoff.");
                    down_logged = true;
                }
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff.next_delay()) => continue,
                }
            }
        };
        info!(adapter = %ctx.name, path = %config.path.display(), baud = config.baud, "Serial port open.");
        connected.set(1.0);
        framer.reset();
        let stopped = read_port(port, &config, &ctx, &mut framer, &mut backoff).await?;
        connected.set(0.0);
        match stopped {
            Stopped::Shutdown => break,
            Stopped::Lost(e) => {
                reopens.inc();
                warn!(adapter = %ctx.name, path = %config.path.display(), error = %e, "Serial port lost; reopening it with backoff.");
                // The failed reopens that follow are this same outage.
                down_logged = true;
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
    connected.set(0.0);
    info!(adapter = %ctx.name, "Stopped.");
    Ok(())
}

async fn read_port<P: AsyncRead + Unpin>(
    mut port: P,
    config: &SerialLineConfig,
    ctx: &AdapterContext,
    framer: &mut Framer,
    backoff: &mut Backoff,
) -> Result<Stopped, AdapterError> {
    let stats = ctx.stats();
    let throttle = LogThrottle::default();
    let origin = config.path.display();
    let source: Arc<str> = Arc::from(ctx.name.as_str());
    let mut buf = vec![0u8; READ_BUFFER];
    let mut devices = DeviceCache::default();
    // Interned: every reading of the port may carry it.
    let device = config.device.as_ref().map(DeviceId::interned);
    let stall = line_stall(config);
    let gap = line_gap(config);
    loop {
        // The wait for bytes, not the time since the last read: bytes
        // that came while the gateway was busy were no silence.
        let waiting = tokio::time::Instant::now();
        let (n, lost) = tokio::select! {
            // Bytes already waiting come before the stall: a gateway busy
            // for a while (a full pipeline, a loaded machine) finds the
            // rest of the line there, and the board never stopped.
            biased;
            _ = ctx.shutdown.cancelled() => return Ok(Stopped::Shutdown),
            r = port.read(&mut buf) => match r {
                // A pseudo-terminal whose other side closed reads as end
                // of file; a real port that vanished fails with EIO.
                Ok(0) => (0, Some(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => (n, None),
                Err(e) => (0, Some(e)),
            },
            // A line the board stopped writing halfway: it reset or hung
            // without the port going away (a USB bridge stays), and what
            // it prints next would be glued to `…,21.5,4` (the next good
            // line refused with it, or a newline first making `4` a
            // humidity). Dropped and counted as a cut line is.
            () = tokio::time::sleep(stall), if framer.has_partial() => {
                framer.reset();
                stats.received.inc();
                gateway_core::refuse!(stats, throttle, "incomplete_line";
                    adapter = %ctx.name, origin = %origin, stalled = ?stall, "Dropping a line the board stopped writing halfway (it reset or hung).");
                continue;
            }
        };
        if lost.is_none() {
            // Only a port that delivers resets the backoff: one that opens
            // and fails at once must not be reopened in a tight loop.
            backoff.reset();
        }
        if n > 0 && waiting.elapsed() >= gap {
            // The board may have reset inside the partial line held.
            framer.mark_pause();
        }
        let now = ctx.clock.now();
        let mut data = &buf[..n];
        let mut batch = Vec::new();
        let mut tally = Tally::default();
        while let Some((frame, pause)) = framer.next_marked(&mut data) {
            let outcome = match frame {
                Frame::TooLong => {
                    stats.received.inc();
                    gateway_core::refuse!(stats, throttle, "payload_too_large";
                        adapter = %ctx.name, origin = %origin, max_line_bytes = config.max_line_bytes, "Dropping a line longer than max_line_bytes.");
                    continue;
                }
                Frame::Line(line) => config.decoder.judge_after_pause(
                    line,
                    pause,
                    device.as_ref(),
                    &mut devices,
                    now,
                    &stats,
                    &throttle,
                    &ctx.name,
                    &origin,
                    &mut batch,
                    &mut tally,
                ),
            };
            match outcome {
                Outcome::Readings {
                    count,
                    digest: Some(digest),
                } => {
                    let readings = batch.split_off(batch.len() - count);
                    // A line with its own time may be a copy: an ESP-NOW
                    // client whose acknowledgement was lost on the air sends
                    // it again, and the relay prints it again. Its content
                    // key lets the pipeline take it once. In line order:
                    // what came before goes first.
                    send(ctx, Ingress::Readings(std::mem::take(&mut batch))).await?;
                    let key = DeliveryKey {
                        source: source.clone(),
                        // Slot 0, never an MQTT packet id: matched by digest
                        // alone, as a TCP line is.
                        slot: 0,
                        digest,
                        resent: true,
                    };
                    // Nobody waits for the receipt: a serial line has no
                    // acknowledgement to hold back.
                    let (receipt, _) = Receipt::new(Some(key));
                    send(ctx, Ingress::Durable { readings, receipt }).await?;
                }
                // On the batch already.
                Outcome::Readings { digest: None, .. } | Outcome::Refused(_) | Outcome::Blank => {}
            }
        }
        tally.flush(&stats);
        send(ctx, Ingress::Readings(batch)).await?;
        if let Some(e) = lost {
            if framer.has_partial() {
                framer.reset();
                stats.received.inc();
                gateway_core::refuse!(stats, throttle, "incomplete_line";
                    adapter = %ctx.name, origin = %origin, error = %e, "Dropping a line cut by the port going away.");
            }
            return Ok(Stopped::Lost(e));
        }
    }
}

async fn send(ctx: &AdapterContext, ingress: Ingress) -> Result<(), AdapterError> {
    if matches!(&ingress, Ingress::Readings(r) if r.is_empty()) {
        return Ok(());
    }
    ctx.ingress
        .send(ingress)
        .await
        .map_err(|_| AdapterError::PipelineClosed)
}

#[cfg(test)]
#[path = "serial_tests.rs"]
mod tests;
