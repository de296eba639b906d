//! The CoAP server's socket loop: receive a datagram, rate-limit its sender,
//! hand it to the [`Handler`], forward the readings, send the reply.
//!
//! The reply of an update is sent after the pipeline accepted its readings,
//! so a full pipeline delays the ACK (and the sender's next request) instead
//! of losing readings that were already acknowledged.

use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};

use gateway_core::component::{AdapterFuture, AdapterStats};
use gateway_core::rate_limit::RateLimiter;
use gateway_core::telemetry::LogThrottle;
use gateway_core::{Adapter, AdapterContext, AdapterError, Ingress};
use tokio::net::UdpSocket;
use tracing::{info, warn};

use super::config::CoapServerConfig;
use super::handler::{Handler, Outcome};
use crate::udp::{Read, RecvBatch};

/// Room for the header, token and options around the largest payload.
const HEADROOM: usize = 512;

/// A runnable CoAP server adapter.
pub struct CoapSource {
    config: CoapServerConfig,
}

impl CoapSource {
    /// The server for `config`; it binds when run.
    pub fn new(config: CoapServerConfig) -> Self {
        Self { config }
    }
}

impl Adapter for CoapSource {
    fn run(self: Box<Self>, ctx: AdapterContext) -> AdapterFuture {
        Box::pin(async move {
            let socket = crate::udp::bind(self.config.bind).await?;
            ctx.listening();
            serve(socket, self.config, ctx).await
        })
    }

    fn serves_a_port(&self) -> bool {
        true
    }
}

/// A Message ID start that differs between runs (§4.4: not predictable).
pub(crate) fn random_u16() -> u16 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x636f_6170);
    h.finish() as u16
}

/// Serves on a bound socket until `ctx.shutdown`.
///
/// # Errors
/// [`AdapterError::PipelineClosed`] when the pipeline stops first.
pub async fn serve(
    socket: UdpSocket,
    config: CoapServerConfig,
    ctx: AdapterContext,
) -> Result<(), AdapterError> {
    if let Ok(addr) = socket.local_addr() {
        info!(adapter = %ctx.name, %addr, "CoAP server listening.");
    }
    let stats = ctx.stats();
    let throttle = LogThrottle::default();
    let mut limiter = peer_limiter(config.rate_limit, config.rate_burst, config.max_peers);
    let mut handler = Handler::for_server(&config, random_u16());
    // One byte more than the largest message we accept: a datagram that
    // fills its slot was truncated by the kernel (§4.6).
    let slot = config.limits.max_payload_bytes + HEADROOM + 1;
    let mut batch = RecvBatch::new(BATCH, slot);
    let mut readings = Vec::new();
    let mut replies: Vec<(Vec<u8>, SocketAddr)> = Vec::new();
    let mut outcome = Outcome::default();
    let duplicates = ctx
        .telemetry
        .counter(super::ADAPTER_DUPLICATES, &[("adapter", ctx.name.as_str())]);
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            r = socket.readable() => if let Err(e) = r {
                recv_failed(&stats, &throttle, &ctx.name, &e);
                continue;
            },
        }
        // One arrival time for what one wake-up reads: its datagrams were
        // queued within moments of each other.
        let now = tokio::time::Instant::now().into_std();
        let arrival = ctx.clock.now();
        let read = batch.try_recv_many(&socket, BATCH, |read| {
            let (bytes, peer) = match read {
                Read::Datagram(bytes, got) => match got.peer {
                    Some(peer) => (bytes, peer),
                    None => return,
                },
                Read::Error(e) => return recv_failed(&stats, &throttle, &ctx.name, &e),
            };
            stats.received.inc();
            if !limiter.allow(peer.ip(), now) {
                report(
                    &stats,
                    &throttle,
                    &ctx.name,
                    peer,
                    "rate_limited",
                    "over the per-peer rate",
                );
                return;
            }
            if bytes.len() >= slot {
                outcome = handler.oversize(bytes);
            } else {
                handler.handle_onto(peer, bytes, now, arrival, None, &mut readings, &mut outcome);
            }
            if outcome.duplicate {
                duplicates.inc();
            }
            settle(&mut outcome, peer, &mut replies, &ctx, &stats, &throttle);
        });
        match read {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => recv_failed(&stats, &throttle, &ctx.name, &e),
        }
        count_dedup_given_up(&mut handler, &stats, &throttle, &ctx.name);
        deliver(
            &socket,
            &mut readings,
            &mut replies,
            &ctx,
            &stats,
            &throttle,
        )
        .await?;
    }
    info!(adapter = %ctx.name, "Stopped.");
    Ok(())
}

/// Datagrams read per wake-up (one `recvmmsg`), whose readings go to the
/// pipeline as one message: one message and one pipeline turn per
/// datagram cost more than the datagram itself under a flood.
const BATCH: usize = 32;

/// Readings a new batch has room for at most: a wake-up's datagrams
/// bring a few dozen, and little is held while the server idles.
const BATCH_ROOM: usize = 256;

/// Counts, once per wake-up, the exchanges the duplicate cache gave up
/// early, and says so (throttled).
pub(super) fn count_dedup_given_up(
    handler: &mut Handler,
    stats: &AdapterStats,
    throttle: &LogThrottle,
    adapter: &str,
) {
    let Some((n, ip)) = handler.take_dedup_given_up() else {
        return;
    };
    handler.dedup_share_full_counter(stats).add(n);
    if let Some(suppressed) = throttle.allow("dedup_share_full") {
        tracing::warn!(adapter, %ip, share = handler.dedup_share(), suppressed, error_type = "dedup_share_full", "An address holds its whole share of the duplicate cache: its oldest exchanges are let go before their lifetime, so a late retransmission of one would be processed again (many devices behind one NAT? raise dedup_capacity).");
    }
}

/// Counts what one datagram's outcome refused and keeps its reply for
/// [`deliver`] (its readings are in the wake-up's batch already), leaving
/// it empty for the next.
fn settle(
    outcome: &mut Outcome,
    peer: SocketAddr,
    replies: &mut Vec<(Vec<u8>, SocketAddr)>,
    ctx: &AdapterContext,
    stats: &AdapterStats,
    throttle: &LogThrottle,
) {
    for (kind, detail) in &outcome.errors {
        report(stats, throttle, &ctx.name, peer, kind, detail);
    }
    for (device, key) in &outcome.ignored {
        stats.ignored_field(device.as_str(), key);
    }
    codec_notes(outcome, ctx, throttle);
    if let Some(reply) = outcome.reply.take() {
        replies.push((reply, peer));
    }
    outcome.clear();
}

/// Hands a wake-up's readings to the pipeline, then sends the replies: an
/// update is acknowledged only once the pipeline took its readings.
async fn deliver(
    socket: &UdpSocket,
    readings: &mut Vec<gateway_core::Reading>,
    replies: &mut Vec<(Vec<u8>, SocketAddr)>,
    ctx: &AdapterContext,
    stats: &AdapterStats,
    throttle: &LogThrottle,
) -> Result<(), AdapterError> {
    if !readings.is_empty() {
        // The next wake-up's batch sized like this one's, grown once rather
        // than datagram by datagram, and with room for a whole wake-up of
        // one-reading datagrams: sized to a smaller one, a larger wake-up
        // that followed grew it (a realloc and a copy, about 40
        // instructions a datagram under callgrind's wake-ups of a few).
        let room = readings.len().clamp(BATCH, BATCH_ROOM);
        let batch = std::mem::replace(readings, Vec::with_capacity(room));
        stats.readings.add(batch.len() as u64);
        ctx.ingress
            .send(Ingress::Readings(batch))
            .await
            .map_err(|_| AdapterError::PipelineClosed)?;
    }
    for (reply, peer) in replies.drain(..) {
        if let Err(e) = socket.send_to(&reply, peer).await {
            report(stats, throttle, &ctx.name, peer, "send", &e.to_string());
        }
    }
    Ok(())
}

/// Per-peer token buckets (RFC 7252 §4.7: servers "SHOULD implement some
/// rate limiting"), keyed by IP address: a sender changes ports for free.
/// `rate == 0` allows everything.
pub(crate) fn peer_limiter(rate: u32, burst: u32, max_peers: usize) -> RateLimiter<IpAddr> {
    RateLimiter::new(f64::from(rate), burst).with_max_keys(max_peers)
}

/// A codec's warnings (logged, counted as LoRaWAN counts them) and the
/// units its `normalizeUplink` named, for every output.
pub(crate) fn codec_notes(outcome: &Outcome, ctx: &AdapterContext, throttle: &LogThrottle) {
    if let Some((device, warnings)) = &outcome.codec_warnings {
        ctx.telemetry
            .counter(
                "edge_gateway_lorawan_codec_warnings_total",
                &[("adapter", ctx.name.as_str())],
            )
            .add(warnings.len() as u64);
        if let Some(suppressed) = throttle.allow("codec_warning") {
            warn!(adapter = %ctx.name, %device, ?warnings, suppressed, "The payload codec warned about a CoAP body.");
        }
    }
    if let Some((device, units)) = &outcome.units {
        ctx.ingress.report_units(device.as_str(), units.clone());
    }
}

/// A datagram that could not be received is counted and logged; the
/// socket itself is fine: ICMP port unreachable from an earlier reply
/// surfaces here on some systems.
pub(crate) fn recv_failed(
    stats: &AdapterStats,
    throttle: &LogThrottle,
    adapter: &str,
    e: &std::io::Error,
) {
    gateway_core::refuse!(stats, throttle, "recv"; adapter, error = %e, "CoAP receive failed.");
}

fn report(
    stats: &AdapterStats,
    throttle: &LogThrottle,
    adapter: &str,
    peer: SocketAddr,
    kind: &str,
    detail: &str,
) {
    if kind == super::handler::LISTING_TRUNCATED {
        gateway_core::refuse!(stats, throttle, kind; adapter, %peer, detail, "CoAP discovery answered in part.");
    } else {
        gateway_core::refuse!(stats, throttle, kind; adapter, %peer, detail, "Dropping CoAP request.");
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
#[allow(clippy::unwrap_used)]
mod tests;
