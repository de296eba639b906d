//! The `semtech_udp` adapter's receive loop: datagrams in, ACKs out at
//! once, PUSH_DATA bodies on to the [`Server`](super::Server) that checks
//! their frames.
//!
//! Datagrams are read and acknowledged a batch per system call
//! (`recvmmsg`/`sendmmsg`, [`crate::udp`]), and a batch's PUSH_DATA bodies
//! travel to the processor together, copied into one buffer: per datagram
//! this loop now costs a header check and a copy, not two system calls, an
//! allocation and a channel message.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use gateway_core::component::{AdapterStats, ADAPTER_ERRORS};
use gateway_core::telemetry::LogThrottle;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::super::downlink::{self, Links};
use super::super::semtech::{self, Datagram, GatewayEui};
use crate::udp::{Read, RecvBatch, Replies};

/// Datagrams acknowledged and waiting for their frames to be checked:
/// about a second of a busy site, a few MB at most.
pub(super) const QUEUE: usize = 16_384;

/// Datagrams read per `recvmmsg`. 32 slots of [`MAX_DATAGRAM`] are 2 MiB
/// of address space, of which only the pages datagrams reach are resident
/// (one per slot for PUSH_DATA of a few hundred bytes).
const BATCH: usize = 32;

/// Datagrams read per wake-up before yielding, so one busy socket cannot
/// starve the other tasks on this worker.
const READS_PER_WAKE: usize = 256;

/// Largest datagram read: lora_pkt_fwd's buffer is 4096 bytes; one more
/// tells a truncated datagram apart.
pub(super) const MAX_DATAGRAM: usize = 65_536;

pub(super) struct ReceiverContext {
    pub name: String,
    pub stats: AdapterStats,
    pub telemetry: gateway_core::telemetry::Telemetry,
    /// Written on PULL_DATA, read by the processor to send downlinks.
    pub links: Arc<Mutex<Links>>,
    /// Commands whose downlink a TX_ACK settles.
    pub waiting: Arc<super::super::command::Waiting>,
    pub stop: CancellationToken,
}

/// A PUSH_DATA acknowledged and waiting for its JSON to be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pushed {
    pub gateway: GatewayEui,
    pub peer: SocketAddr,
    body: Range<usize>,
}

/// The PUSH_DATA of one read: their bodies share one buffer.
#[derive(Debug, Default)]
pub(super) struct PushBatch {
    bodies: Vec<u8>,
    pushed: Vec<Pushed>,
}

impl PushBatch {
    /// Room for `n` PUSH_DATA of a typical size (one `rxpk`, ~300 bytes),
    /// so a burst's batch does not grow by copying.
    fn with_capacity(n: usize) -> Self {
        Self {
            bodies: Vec::with_capacity(n * 512),
            pushed: Vec::with_capacity(n),
        }
    }

    fn add(&mut self, gateway: GatewayEui, peer: SocketAddr, body: &[u8]) {
        let start = self.bodies.len();
        self.bodies.extend_from_slice(body);
        self.pushed.push(Pushed {
            gateway,
            peer,
            body: start..self.bodies.len(),
        });
    }

    pub(super) fn len(&self) -> usize {
        self.pushed.len()
    }

    /// Each PUSH_DATA with its JSON body, in arrival order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&Pushed, &[u8])> {
        self.pushed
            .iter()
            .map(|p| (p, self.bodies.get(p.body.clone()).unwrap_or_default()))
    }
}

/// Emptied batches the processor hands back for the receiver to fill
/// again. A batch of a wake-up was a fresh 16 KiB buffer, freed by the
/// other task: about 800 instructions a wake-up in `malloc` and `free`
/// (callgrind, issue 69), several datagrams' worth under a steady flow.
#[derive(Debug, Default)]
struct Spare(Mutex<Vec<PushBatch>>);

impl Spare {
    /// Batches kept at most: the queue rarely holds more than a few.
    const MAX: usize = 8;
    /// A batch whose buffers outgrew this (a burst's long read) is freed,
    /// not kept: the pool never holds more than `MAX` of a usual size.
    const MAX_BODY_BYTES: usize = 64 * 1024;

    fn take(&self) -> PushBatch {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
            .unwrap_or_else(|| PushBatch::with_capacity(BATCH))
    }

    fn give(&self, mut batch: PushBatch) {
        if batch.bodies.capacity() > Self::MAX_BODY_BYTES {
            return;
        }
        batch.bodies.clear();
        batch.pushed.clear();
        let mut spare = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if spare.len() < Self::MAX {
            spare.push(batch);
        }
    }
}

/// The receiver's end of the queue to the processor. Bounded in datagrams,
/// not batches, so a burst read 32 at a time and a trickle read one at a
/// time are held to the same [`QUEUE`].
pub(super) struct QueueTx {
    tx: mpsc::UnboundedSender<PushBatch>,
    queued: Arc<AtomicUsize>,
    spare: Arc<Spare>,
}

/// The processor's end: [`QueueRx::recv`] frees the batch's room.
pub(super) struct QueueRx {
    rx: mpsc::UnboundedReceiver<PushBatch>,
    queued: Arc<AtomicUsize>,
    spare: Arc<Spare>,
}

pub(super) fn queue() -> (QueueTx, QueueRx) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let spare = Arc::new(Spare::default());
    let rx = QueueRx {
        rx,
        queued: Arc::clone(&queued),
        spare: Arc::clone(&spare),
    };
    (QueueTx { tx, queued, spare }, rx)
}

impl QueueRx {
    /// The next batch; `None` once the receiver has stopped and every
    /// batch was taken.
    pub(super) async fn recv(&mut self) -> Option<PushBatch> {
        let batch = self.rx.recv().await?;
        self.queued.fetch_sub(batch.len(), Ordering::AcqRel);
        Some(batch)
    }

    /// Hands a batch whose bodies were read back to the receiver, to be
    /// filled again rather than allocated.
    pub(super) fn recycle(&self, batch: PushBatch) {
        self.spare.give(batch);
    }
}

impl QueueTx {
    /// An empty batch to fill: one handed back, or a new one.
    fn empty_batch(&self) -> PushBatch {
        self.spare.take()
    }

    /// Queues as much of `batch` as there is room for and returns what
    /// did not fit, for the caller to count; `Err` once the processor is
    /// gone.
    fn send(&self, mut batch: PushBatch) -> Result<Vec<Pushed>, ()> {
        if self.tx.is_closed() {
            return Err(());
        }
        let queued = self.queued.load(Ordering::Acquire);
        let room = QUEUE.saturating_sub(queued);
        let refused = if batch.len() > room {
            batch.pushed.split_off(room)
        } else {
            Vec::new()
        };
        if !batch.pushed.is_empty() {
            // Only this task adds, so the room seen above is still there.
            self.queued.fetch_add(batch.len(), Ordering::AcqRel);
            self.tx.send(batch).map_err(|_| ())?;
        }
        Ok(refused)
    }
}

/// The receive loop: ACKs at once, PUSH_DATA on to the processor. Ends on
/// `stop`; dropping `tx` then tells the processor to finish. `slot` is
/// the largest datagram read whole ([`MAX_DATAGRAM`] but in tests).
pub(super) async fn receive(
    socket: Arc<UdpSocket>,
    allowed: Vec<GatewayEui>,
    ctx: ReceiverContext,
    tx: QueueTx,
    slot: usize,
) {
    let throttle = LogThrottle::default();
    let report = |kind: &str, gateway: &str, detail: &str| {
        gateway_core::refuse!(ctx.stats, throttle, kind;
            adapter = %ctx.name, gateway, detail, "Dropping LoRaWAN input.");
    };
    let mut batch = RecvBatch::new(BATCH, slot);
    let mut replies = Replies::default();
    loop {
        tokio::select! {
            biased;
            _ = ctx.stop.cancelled() => break,
            r = socket.readable() => if let Err(e) = r {
                report("recv", "", &e.to_string());
                continue;
            },
        }
        // Everything already queued, up to a budget, without going back to
        // the reactor: one wake-up, one `sendmmsg` of ACKs and one message
        // to the processor per burst, not per datagram.
        // Taken from the spares at the first PUSH_DATA: a wake-up that
        // finds nothing (the read that drains the socket) takes none.
        let mut pushes: Option<PushBatch> = None;
        let mut received = 0;
        let each = |read: Read<'_>| {
            let (bytes, got) = match read {
                Read::Datagram(bytes, got) => (bytes, got),
                Read::Error(e) => return report("recv", "", &e.to_string()),
            };
            received += 1;
            let Some(peer) = got.peer else {
                return report("recv", "", "a datagram from neither IPv4 nor IPv6");
            };
            if got.truncated || bytes.len() >= slot {
                return report("truncated", &peer.to_string(), "datagram fills the buffer");
            }
            let (reply, push, event) = datagram(bytes, peer, &allowed, &report);
            let taken =
                event.is_none_or(|event| downlink_event(event, peer, &socket, &ctx, &throttle));
            // A PULL_DATA refused gets no PULL_ACK: the forwarder's own
            // log then says it has no downlink path here.
            if let Some(reply) = reply.filter(|_| taken) {
                replies.push(reply, peer);
            }
            if let Some((gateway, body)) = push {
                pushes
                    .get_or_insert_with(|| tx.empty_batch())
                    .add(gateway, peer, body);
            }
        };
        let reads = match batch.try_recv_many(&socket, READS_PER_WAKE, each) {
            Ok(reads) => reads,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                report("recv", "", &e.to_string());
                continue;
            }
        };
        ctx.stats.received.add(received);
        if !replies.is_empty() {
            let failed = |to: SocketAddr, e: std::io::Error| {
                report("send", &to.to_string(), &e.to_string());
            };
            replies.send(&socket, failed).await;
        }
        if let Some(pushes) = pushes.filter(|p| p.len() > 0) {
            match tx.send(pushes) {
                Ok(refused) => overloaded(&refused, &ctx, &throttle),
                Err(()) => return,
            }
        }
        if reads >= READS_PER_WAKE {
            tokio::task::yield_now().await;
        }
    }
}

/// Counts PUSH_DATA the processor had no room for, in one step: under
/// overload a counter lookup per refused datagram would cost more than
/// reading it.
fn overloaded(refused: &[Pushed], ctx: &ReceiverContext, throttle: &LogThrottle) {
    let Some(first) = refused.first() else {
        return;
    };
    let labels = [("adapter", ctx.name.as_str()), ("error_type", "overloaded")];
    let n = refused.len() as u64;
    ctx.telemetry.counter(ADAPTER_ERRORS, &labels).add(n);
    if let Some(suppressed) = throttle.allow("overloaded") {
        let detail = "frames arrive faster than they can be checked and their counters stored";
        warn!(adapter = %ctx.name, gateway = %first.gateway, error_type = "overloaded", detail, refused = n, suppressed, "Dropping LoRaWAN input.");
    }
}

/// What [`datagram`] makes of one: the reply, the PUSH_DATA's gateway and
/// body, and what it says about the downlink path.
pub(super) type Outcome<'a> = (
    Option<[u8; 4]>,
    Option<(GatewayEui, &'a [u8])>,
    Option<DownlinkEvent>,
);

/// One datagram: the ACK to send, if any, and a PUSH_DATA's gateway and
/// body to pass on. PUSH_DATA is acknowledged on receipt, before its JSON
/// is parsed, as PROTOCOL.TXT §3 asks ("acknowledge immediately all the
/// PUSH_DATA packets received"): the ACK feeds the forwarder's `ackr`
/// statistic and is never a promise about the frames inside. The parse
/// happens in the processor, so this loop stays a receive and a send.
pub(super) fn datagram<'a>(
    bytes: &'a [u8],
    peer: SocketAddr,
    allowed: &[GatewayEui],
    report: &impl Fn(&str, &str, &str),
) -> Outcome<'a> {
    let envelope = match semtech::envelope(bytes) {
        Ok(e) => e,
        Err(e) => {
            report(e.kind(), &peer.to_string(), &e.to_string());
            return (None, None, None);
        }
    };
    let gateway = envelope.gateway;
    if !allowed.is_empty() && !allowed.contains(&gateway) {
        report(
            "unknown_gateway",
            &gateway.to_string(),
            &format!("not in `gateways` (from {peer})"),
        );
        return (None, None, None);
    }
    if envelope.is_push_data() {
        let ack = semtech::push_ack(envelope.header);
        return (Some(ack), Some((gateway, envelope.body)), None);
    }
    match semtech::parse(bytes) {
        Ok(Datagram::PullData { header, .. }) => (
            Some(semtech::pull_ack(header)),
            None,
            Some(DownlinkEvent::Pulled {
                gateway,
                version: header.version,
            }),
        ),
        Ok(Datagram::TxAck { header, error, .. }) => (
            None,
            None,
            Some(DownlinkEvent::TxAck {
                gateway,
                token: header.token,
                error: error.filter(|e| e != "NONE" && !e.is_empty()),
            }),
        ),
        Ok(Datagram::PushData { .. }) => (None, None, None),
        Err(e) => {
            report(e.kind(), &peer.to_string(), &e.to_string());
            (None, None, None)
        }
    }
}

/// What a datagram says about the downlink path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DownlinkEvent {
    /// A PULL_DATA: the forwarder can be sent PULL_RESP at its address.
    Pulled { gateway: GatewayEui, version: u8 },
    /// A TX_ACK, with the forwarder's error if the downlink was not sent.
    TxAck {
        gateway: GatewayEui,
        /// The PULL_RESP's token, echoed.
        token: [u8; 2],
        error: Option<String>,
    },
}

/// Acts on what a datagram says about the downlink path; `false` when a
/// PULL_DATA is refused (too many forwarders tracked, all of them live).
fn downlink_event(
    event: DownlinkEvent,
    peer: SocketAddr,
    socket: &UdpSocket,
    ctx: &ReceiverContext,
    throttle: &LogThrottle,
) -> bool {
    let adapter = ctx.name.as_str();
    if let DownlinkEvent::TxAck { gateway, .. } = &event {
        // The protocol has no authentication and the tokens run in
        // sequence: a TX_ACK from anywhere else, with the forwarder's EUI
        // and a guessed token, would settle a command as sent or failed.
        let from_path = ctx
            .links
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_path_of(*gateway, peer);
        if !from_path {
            gateway_core::refuse!(ctx.stats, throttle, "tx_ack_wrong_address";
                adapter, gateway = %gateway, %peer, "Ignoring a TX_ACK that did not come from the address the forwarder pulls from.");
            return true;
        }
    }
    match event {
        DownlinkEvent::Pulled { gateway, version } => {
            let pulled = ctx
                .links
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pulled(gateway, peer, version, Instant::now());
            match pulled {
                downlink::Pulled::Taken => {}
                downlink::Pulled::Full => {
                    gateway_core::refuse!(ctx.stats, throttle, "too_many_forwarders";
                        adapter, gateway = %gateway, %peer, max = downlink::MAX_FORWARDERS, "Refusing a forwarder's PULL_DATA: as many forwarders as tracked at most have pulled lately (set `gateways` to the site's own).");
                }
                downlink::Pulled::OtherAddress { path } => {
                    gateway_core::refuse!(ctx.stats, throttle, "pull_data_other_address";
                        adapter, gateway = %gateway, %peer, %path, "Refusing a PULL_DATA: this forwarder's downlink path is live at another address (a forged datagram, or the forwarder restarted: its path moves once the old address has been silent for 30 s).");
                }
            }
            return pulled == downlink::Pulled::Taken;
        }
        DownlinkEvent::TxAck {
            gateway,
            token,
            error: None,
        } => {
            ctx.waiting.tx_ack(gateway, token, None, false);
            ctx.telemetry
                .counter(
                    "edge_gateway_lorawan_downlinks_acked_total",
                    &[("adapter", adapter)],
                )
                .inc();
        }
        DownlinkEvent::TxAck {
            gateway,
            token,
            error: Some(error),
        } => {
            let reason = downlink::tx_ack_reason(&error);
            // A command's payload is not sent again for a window past its
            // max_age.
            let fallback = (downlink::retry_in_rx2(reason) && ctx.waiting.may_resend(gateway, token))
                .then(|| {
                    ctx.links
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .take_fallback(gateway, token, Instant::now())
                })
                .flatten();
            let mut retried = false;
            if let Some(f) = fallback {
                // Non-blocking: the receive loop never waits on a send.
                match socket.try_send_to(&f.datagram, f.addr) {
                    Ok(_) => {
                        retried = true;
                        ctx.telemetry
                            .counter(
                                "edge_gateway_lorawan_downlink_rx2_retries_total",
                                &[("adapter", adapter)],
                            )
                            .inc();
                    }
                    Err(e) => ctx.stats.error(&format!("downlink_send_{}", e.kind())),
                }
            }
            ctx.waiting
                .tx_ack(gateway, token, Some(error.as_str()), retried);
            ctx.telemetry
                .counter(
                    "edge_gateway_lorawan_tx_ack_errors_total",
                    &[("adapter", adapter), ("reason", reason)],
                )
                .inc();
            gateway_core::refuse!(ctx.stats, throttle, &format!("tx_ack_{reason}"), per reason;
                adapter, gateway = %gateway, error = %error, "The forwarder did not send a downlink.");
        }
    }
    true
}

#[cfg(test)]
#[path = "source_up_tests.rs"]
mod tests;
