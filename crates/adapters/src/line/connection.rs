//! One TCP client: read lines, hand their readings on, answer `ok`/`err`.
//!
//! Each connection is its own task, so a client that is slow to send or
//! never reads its answers holds up only itself: when its unwritten
//! answers or its lines waiting for the journal pass a bound, this task
//! stops reading from it (TCP flow control then slows the sender), and the
//! others go on.
//!
//! A line is ended by its newline, or by the client's clean close (FIN):
//! a node that sends and closes often leaves the newline out. A reset
//! (RST: `SO_LINGER 0`, a Wi-Fi drop) ends nothing: the bytes after the
//! last newline are dropped and counted `incomplete_line`.
//!
//! With `ack`, every line with readings goes to the pipeline as
//! `Ingress::Durable` with a receipt, completed once the journal holding
//! it is synced; `ok N` follows for every line up to N. Without `ack`, the
//! readings of one read go together as `Ingress::Readings` (one channel
//! operation per read rather than per line).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::FutureExt;
use gateway_core::telemetry::{Counter, LogThrottle};
use gateway_core::{
    AdapterContext, AdapterError, AdapterStats, DeliveryKey, DeviceId, Ingress, Receipt,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::acks::{write_err, write_ok, AckState};
use super::decode::{DeviceCache, LineDecoder, Outcome, Tally};
use super::framer::{Frame, Framer};
use super::unanswered::{shareable, Done, Unanswered};

/// Bytes read at once.
const READ_BUFFER: usize = 16 * 1024;
/// Lines waiting for the journal before reading pauses: about two journal
/// batches, so group commit stays full while one client cannot pin an
/// unbounded number of receipts.
const MAX_WAITING: usize = 2048;
/// Unwritten answers before reading pauses (a client that does not read).
const MAX_UNWRITTEN: usize = 64 * 1024;
/// How long a node must have waited for a line's `ok` before its leaving
/// says it gave up on it and will send it again: a node that sends and
/// closes at once never waited (and never resends), and taking its next
/// equal reading for a resend would lose it. The reference node waits 5 s.
pub(crate) const GAVE_UP_AFTER: Duration = Duration::from_secs(1);

/// What every connection of one adapter shares.
pub(crate) struct Shared {
    pub ctx: AdapterContext,
    pub stats: AdapterStats,
    pub throttle: LogThrottle,
    pub decoder: LineDecoder,
    pub source: Arc<str>,
    pub max_line_bytes: usize,
    pub idle_timeout: Duration,
    pub ack: bool,
    /// Lines whose node stopped waiting for their `ok` (with `ack`).
    pub unanswered: Mutex<Unanswered>,
    /// `edge_gateway_ingress_duplicates_total`: resends taken here.
    pub duplicates: Counter,
}

impl Shared {
    fn unanswered(&self) -> MutexGuard<'_, Unanswered> {
        self.unanswered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A message of this connection waiting for the journal.
struct Waiting {
    /// The number of its first line: no `ok` for it, or after it, before.
    first: u64,
    done: Done,
    /// Digests of its lines without their own time, remembered as
    /// unanswered if the node gives up on them.
    lines: Vec<u64>,
    at: Instant,
    remembered: bool,
}

/// Remembers the lines the node waited for at least [`GAVE_UP_AFTER`] by
/// `now` without their `ok`: it sends them again on its next connection.
fn remember_unanswered(
    shared: &Shared,
    peer: SocketAddr,
    waiting: &mut VecDeque<Waiting>,
    now: Instant,
) {
    let mut unanswered = None;
    for w in waiting.iter_mut() {
        if w.remembered || w.lines.is_empty() || now.duration_since(w.at) < GAVE_UP_AFTER {
            continue;
        }
        w.remembered = true;
        let u = unanswered.get_or_insert_with(|| shared.unanswered());
        for &digest in &w.lines {
            u.remember(peer.ip(), digest, w.done.clone());
        }
    }
}

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Closed {
    /// The client closed it (after its last answer was written).
    ByPeer,
    Idle,
    /// A read or write failed.
    Broken,
    Shutdown,
    /// Its slot went to a new connection while it was silent.
    Evicted,
}

/// Serves one client until it leaves, goes idle, or the adapter stops.
///
/// # Errors
/// [`AdapterError::PipelineClosed`] when the pipeline is gone.
pub(crate) async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    fallback: Option<DeviceId>,
    shared: Arc<Shared>,
    seat: Option<&super::seats::Seat>,
) -> Result<Closed, AdapterError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut framer = Framer::new(shared.max_line_bytes);
    let mut devices = DeviceCache::default();
    let mut acks = AckState::default();
    // Lines not yet durable, oldest first, with their numbers.
    let mut waiting: VecDeque<Waiting> = VecDeque::new();
    let mark = shared.ack.then(|| shared.unanswered().mark());
    // Whether the node left only once every line was answered.
    let mut settled = false;
    let mut out: Vec<u8> = Vec::new();
    let mut written = 0usize;
    let mut buf = vec![0u8; READ_BUFFER];
    let mut reading = true;
    let idle = tokio::time::sleep(shared.idle_timeout);
    tokio::pin!(idle);
    let idle_on = !shared.idle_timeout.is_zero();

    let closed = loop {
        if shared.ack {
            if let Some(n) = acks.advance(waiting.front().map(|w| w.first)) {
                write_ok(&mut out, n);
            }
        }
        if !reading && waiting.is_empty() && written == out.len() {
            break Closed::ByPeer;
        }
        let room = waiting.len() < MAX_WAITING && out.len() - written < MAX_UNWRITTEN;
        tokio::select! {
            biased;
            _ = shared.ctx.shutdown.cancelled() => break Closed::Shutdown,
            () = async {
                match seat {
                    Some(s) => s.evict.cancelled().await,
                    None => std::future::pending().await,
                }
            } => break Closed::Evicted,
            done = async {
                match waiting.front_mut() {
                    Some(w) => (&mut w.done).await,
                    None => std::future::pending().await,
                }
            }, if !waiting.is_empty() => {
                if done.is_err() {
                    // The pipeline stopped before the line was safe: no
                    // ok for it; the client resends it to the next run.
                    return Err(AdapterError::PipelineClosed);
                }
                waiting.pop_front();
                while let Some(next) = waiting.front() {
                    if !matches!(next.done.clone().now_or_never(), Some(Ok(()))) {
                        break;
                    }
                    waiting.pop_front();
                }
            }
            w = wr.write(&out[written..]), if written < out.len() => match w {
                Ok(0) | Err(_) => break Closed::Broken,
                Ok(n) => {
                    written += n;
                    if written == out.len() {
                        out.clear();
                        written = 0;
                    }
                }
            },
            r = rd.read(&mut buf), if reading && room => match r {
                // The client may have only shut down its sending side
                // (`socat` at the end of its input): answers still go out.
                Ok(0) => {
                    reading = false;
                    if shared.ack {
                        // The node stopped sending: it has seen every answer,
                        // or gave up on the lines still waiting.
                        settled = waiting.is_empty() && written == out.len();
                        remember_unanswered(&shared, peer, &mut waiting, Instant::now());
                    }
                    // The last line of a node that sends and closes often
                    // has no newline: it is a line, answered like the others.
                    let mut conn = Conn { framer: &mut framer, devices: &mut devices, acks: &mut acks, waiting: &mut waiting, out: &mut out };
                    take_lines(&[], true, &mut conn, fallback.as_ref(), peer, &shared).await?;
                    if !shared.ack {
                        break Closed::ByPeer;
                    }
                }
                Ok(n) => {
                    if let Some(s) = seat {
                        s.touch();
                    }
                    if idle_on {
                        idle.as_mut().reset(gateway_core::deadline::from_now(shared.idle_timeout));
                    }
                    let mut conn = Conn { framer: &mut framer, devices: &mut devices, acks: &mut acks, waiting: &mut waiting, out: &mut out };
                    take_lines(&buf[..n], false, &mut conn, fallback.as_ref(), peer, &shared).await?;
                }
                Err(e) => {
                    // A reset (SO_LINGER 0, a Wi-Fi drop, a node that died)
                    // cuts a line anywhere: `21.5,1013.2,45.1,12` may be
                    // the first digits of 12048. Only a clean close (FIN)
                    // says the bytes before it are a whole line.
                    if framer.has_partial() {
                        framer.reset();
                        incomplete(&shared, peer, &e.to_string());
                    }
                    break Closed::Broken;
                }
            },
            _ = &mut idle, if idle_on => break Closed::Idle,
        }
    };
    if matches!(closed, Closed::Idle | Closed::Shutdown | Closed::Evicted) && framer.has_partial() {
        // The client is still there and may finish the line: it is not its
        // last one, and is not taken, but never dropped silently.
        incomplete(
            &shared,
            peer,
            &format!("closed by the gateway ({closed:?})"),
        );
    }
    if shared.ack {
        if reading {
            // Cut without the node's close: by a reset, or by the gateway
            // while the node may still wait.
            remember_unanswered(&shared, peer, &mut waiting, Instant::now());
        }
        if let (true, Some(mark)) = (settled, mark) {
            shared.unanswered().settle(peer.ip(), mark);
        }
    }
    if closed != Closed::Broken && written < out.len() {
        // The answers already earned, without waiting on a stuck client.
        let _ =
            tokio::time::timeout(Duration::from_millis(200), wr.write_all(&out[written..])).await;
    }
    Ok(closed)
}

/// Counts and logs (throttled) a line without its newline that is
/// dropped: the connection ended in a way that does not finish it.
fn incomplete(shared: &Shared, peer: SocketAddr, how: &str) {
    shared.stats.received.inc();
    gateway_core::refuse!(shared.stats, shared.throttle, "incomplete_line";
        adapter = %shared.ctx.name, %peer, how, "Dropping a line without its newline: the connection ended before it did.");
}

/// One connection's state that its lines change.
struct Conn<'a> {
    framer: &'a mut Framer,
    devices: &'a mut DeviceCache,
    acks: &'a mut AckState,
    waiting: &'a mut VecDeque<Waiting>,
    out: &'a mut Vec<u8>,
}

/// Frames, decodes and hands on every complete line of one read, and at
/// the `end` of the input the partial line left (`Framer::finish`).
async fn take_lines(
    mut data: &[u8],
    end: bool,
    conn: &mut Conn<'_>,
    fallback: Option<&DeviceId>,
    peer: SocketAddr,
    shared: &Shared,
) -> Result<(), AdapterError> {
    let Conn {
        framer,
        devices,
        acks,
        waiting,
        out,
    } = conn;
    let now = shared.ctx.clock.now();
    // Readings of this read's lines, in order. With `ack`, lines without a
    // delivery key go to the journal together (one message, one receipt,
    // numbered by the first of them): per-line messages cost a channel
    // operation, a journal record and a receipt each, which capped acked
    // ingest at a third of the rate without ack.
    // Sized for this read once (about 40 bytes a line, a reading per
    // value): growing it line by line was a tenth of ingest's CPU.
    let mut batch = Vec::with_capacity(data.len() / 8);
    let mut batch_first = None;
    // Digests of the batch's lines (without their own time).
    let mut batch_lines = Vec::new();
    let mut tally = Tally::default();
    loop {
        let mut line_digest = 0;
        let outcome = match framer.next_or_last(&mut data, end) {
            None => break,
            Some(Frame::TooLong) => {
                shared.stats.received.inc();
                gateway_core::refuse!(shared.stats, shared.throttle, "payload_too_large";
                    adapter = %shared.ctx.name, %peer, max_line_bytes = shared.max_line_bytes, "Dropping a line longer than max_line_bytes.");
                Outcome::Refused("payload_too_large".into())
            }
            Some(Frame::Line(line)) => {
                if shared.ack {
                    line_digest = super::decode::digest(fallback, line);
                }
                shared.decoder.judge(
                    line,
                    fallback,
                    devices,
                    now,
                    &shared.stats,
                    &shared.throttle,
                    &shared.ctx.name,
                    &peer,
                    &mut batch,
                    &mut tally,
                )
            }
        };
        // The line's readings are on the batch already.
        if !shared.ack {
            continue;
        }
        let n = acks.next_line();
        match outcome {
            Outcome::Blank => {}
            Outcome::Refused(kind) => write_err(out, n, &kind),
            Outcome::Readings {
                count,
                digest: None,
            } => {
                let claimed = shared.unanswered().claim(peer.ip(), line_digest);
                let Some(done) = claimed else {
                    batch_first.get_or_insert(n);
                    batch_lines.push(line_digest);
                    continue;
                };
                // The node sends again a line it was never answered for:
                // answered with it, not counted again (`unanswered`).
                batch.truncate(batch.len() - count);
                if let Some(first) = batch_first.take() {
                    let before = std::mem::take(&mut batch);
                    let lines = std::mem::take(&mut batch_lines);
                    durable(shared, before, None, first, lines, waiting).await?;
                }
                shared.duplicates.inc();
                waiting.push_back(Waiting {
                    first: n,
                    done,
                    lines: vec![line_digest],
                    at: Instant::now(),
                    remembered: false,
                });
            }
            Outcome::Readings {
                count,
                digest: Some(digest),
            } => {
                let readings = batch.split_off(batch.len() - count);
                // In line order: what came before goes first.
                if let Some(first) = batch_first.take() {
                    let before = std::mem::take(&mut batch);
                    let lines = std::mem::take(&mut batch_lines);
                    durable(shared, before, None, first, lines, waiting).await?;
                }
                let key = DeliveryKey {
                    source: shared.source.clone(),
                    // A line has no slot of its own: slot 0, never an MQTT
                    // packet id, makes the pipeline match it by digest
                    // alone (`durability::deliveries::CONTENT_SLOT`).
                    slot: 0,
                    digest,
                    // Any line may be a resend of one journaled before a
                    // crash; lines with their own time are safe to compare.
                    resent: true,
                };
                durable(shared, readings, Some(key), n, Vec::new(), waiting).await?;
            }
        }
    }
    tally.flush(&shared.stats);
    match batch_first {
        Some(first) => durable(shared, batch, None, first, batch_lines, waiting).await?,
        None if !batch.is_empty() => send(shared, Ingress::Readings(batch)).await?,
        None => {}
    }
    Ok(())
}

/// Hands readings on with a receipt; `first` is the number of the first
/// line they came from, which stays unacknowledged until it completes;
/// `lines` the digests of those without their own time.
async fn durable(
    shared: &Shared,
    readings: Vec<gateway_core::Reading>,
    key: Option<DeliveryKey>,
    first: u64,
    lines: Vec<u64>,
    waiting: &mut VecDeque<Waiting>,
) -> Result<(), AdapterError> {
    let (receipt, waiter) = Receipt::new(key);
    send(shared, Ingress::Durable { readings, receipt }).await?;
    waiting.push_back(Waiting {
        first,
        done: shareable(waiter),
        lines,
        at: Instant::now(),
        remembered: false,
    });
    Ok(())
}

async fn send(shared: &Shared, ingress: Ingress) -> Result<(), AdapterError> {
    shared
        .ctx
        .ingress
        .send(ingress)
        .await
        .map_err(|_| AdapterError::PipelineClosed)
}
