//! coaps: the CoAP server over DTLS 1.2 with pre-shared keys (RFC 7252 §9.1).
//!
//! OpenSSL does the DTLS (see docs/coaps.md for the choice); this module
//! only moves datagrams. Each peer address has an OpenSSL session, and
//! while it handshakes again a second one, over an in-memory datagram pipe
//! ([`Pipe`]): a datagram from the socket goes into its inbox, the
//! handshake or `ssl_read` runs, and whatever OpenSSL wrote goes back out.
//! A decrypted request goes to the same [`Handler`] as plain CoAP, told
//! which device the peer's identity may write.
//!
//! Against abuse: stateless HelloVerifyRequest cookies
//! (`dtls_cookie.rs`), so a spoofed address holds nothing, never completes
//! a handshake nor gets the server's large flight; a per-address handshake
//! rate once the cookie came back; at most `max_peers` sessions and
//! [`MAX_HANDSHAKES`] handshakes in progress; handshakes that stall for
//! [`HANDSHAKE_TIMEOUT`] and sessions idle for `session_timeout` are
//! dropped. A new handshake from an address with a session (a device that
//! restarted, RFC 6347 §4.2.8) replaces that session once it completes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use gateway_core::component::{AdapterFuture, AdapterStats};
use gateway_core::rate_limit::RateLimiter;
use gateway_core::telemetry::LogThrottle;
use gateway_core::{Adapter, AdapterContext, AdapterError, DeviceId, Ingress};
use openssl::error::ErrorStack;
use openssl::ssl::{
    ErrorCode, HandshakeError, MidHandshakeSslStream, Ssl, SslStream,
};
use tokio::net::UdpSocket;
use tokio::time::Instant;
use gateway_core::telemetry::Counter;
use tracing::{debug, info, warn};

use super::config::CoapServerConfig;
use super::dtls_cookie::{self, ClientHello, CookieKeys};
use super::dtls_openssl::{failure_kind, tls, Lookup, Tls};
pub use super::dtls_openssl::Pipe;
use super::handler::Handler;
use super::psk::CoapSection;
use super::server::peer_limiter;

/// Handshakes in progress at once, over all peers.
pub const MAX_HANDSHAKES: usize = 256;
/// A handshake that has not finished in this long is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Record size OpenSSL may use: under the IPv6 minimum MTU (1280) with
/// room for the UDP and IP headers.
const DTLS_MTU: u32 = 1152;
/// Sessions established, by adapter (failures are in `errors_total`).
pub const DTLS_SESSIONS: &str = "edge_gateway_coap_dtls_sessions_total";
/// Sessions replaced by a new handshake from the same address: a device
/// that restarted (RFC 6347 §4.2.8).
pub const DTLS_SESSIONS_REPLACED: &str = "edge_gateway_coap_dtls_sessions_replaced_total";

/// A handshake under way: its sender returned a valid cookie.
struct Pending {
    mid: MidHandshakeSslStream<Pipe>,
    /// The ClientHello's random: the same one again is a retransmission,
    /// another one a new start by the client.
    random: [u8; 32],
    /// The last datagram: a handshake silent for [`HANDSHAKE_TIMEOUT`]
    /// is dropped.
    last: Instant,
}

/// An established session.
struct Open {
    stream: SslStream<Pipe>,
    device: DeviceId,
    last: Instant,
}

/// The coaps server adapter.
pub struct CoapsSource {
    config: CoapServerConfig,
    keys: CoapSection,
}

impl CoapsSource {
    pub fn new(config: CoapServerConfig, keys: CoapSection) -> Self {
        Self { config, keys }
    }
}

impl Adapter for CoapsSource {
    fn run(self: Box<Self>, ctx: AdapterContext) -> AdapterFuture {
        Box::pin(async move {
            if self.keys.psk.is_empty() {
                return Err(AdapterError::Setup(format!(
                    "adapter {}: dtls = \"psk\" needs at least one [[coap.psk]] identity",
                    ctx.name
                )));
            }
            let socket = crate::udp::bind(self.config.bind).await?;
            ctx.listening();
            serve(socket, self.config, self.keys, ctx).await
        })
    }

    fn serves_a_port(&self) -> bool {
        true
    }
}

/// Serves coaps on a bound socket until `ctx.shutdown`.
///
/// # Errors
/// [`AdapterError::Setup`] when OpenSSL refuses the setup;
/// [`AdapterError::PipelineClosed`] when the pipeline stops first.
pub async fn serve(
    socket: UdpSocket,
    config: CoapServerConfig,
    keys: CoapSection,
    ctx: AdapterContext,
) -> Result<(), AdapterError> {
    let setup = |e: ErrorStack| AdapterError::Setup(format!("DTLS setup: {e}"));
    let tls = tls(&keys).map_err(setup)?;
    let Some(dtls) = config.dtls.clone() else {
        return Err(AdapterError::Setup("not a DTLS server".into()));
    };
    if let Ok(addr) = socket.local_addr() {
        info!(adapter = %ctx.name, %addr, identities = keys.psk.len(), "CoAP server listening (DTLS-PSK).");
    }
    let adapter = [("adapter", ctx.name.as_str())];
    let mut server = Server {
        tls,
        cookies: CookieKeys::new(Instant::now()).map_err(setup)?,
        pending: HashMap::new(),
        open: HashMap::new(),
        max_peers: config.max_peers,
        session_timeout: dtls.session_timeout,
        requests: peer_limiter(config.rate_limit, config.rate_burst, config.max_peers),
        handshakes: peer_limiter(dtls.handshake_rate, dtls.handshake_burst, config.max_peers),
        handler: Handler::for_server(&config, super::server::random_u16()),
        plain: vec![0u8; config.limits.max_payload_bytes + 512 + 1],
        stats: ctx.stats(),
        throttle: LogThrottle::default(),
        established: ctx.telemetry.counter(DTLS_SESSIONS, &adapter),
        replaced: ctx.telemetry.counter(DTLS_SESSIONS_REPLACED, &adapter),
    };
    let mut buf = vec![0u8; config.limits.max_payload_bytes + 512 + 256];
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    loop {
        let (n, peer) = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            _ = sweep.tick() => {
                server.sweep(&ctx, Instant::now());
                continue;
            }
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    super::server::recv_failed(&server.stats, &server.throttle, &ctx.name, &e);
                    continue;
                }
            },
        };
        server.stats.received.inc();
        server
            .datagram(&socket, &ctx, peer, &buf[..n], Instant::now())
            .await?;
    }
    info!(adapter = %ctx.name, "Stopped.");
    Ok(())
}

/// The server's state between datagrams.
struct Server {
    tls: Tls,
    cookies: CookieKeys,
    /// Handshakes under way, apart from the sessions: a peer that restarts
    /// handshakes again from the same address while its old session is
    /// still here, and the old one must keep working until the new one
    /// completes (a ClientHello is no proof that the old peer is gone).
    pending: HashMap<SocketAddr, Pending>,
    open: HashMap<SocketAddr, Open>,
    max_peers: usize,
    session_timeout: Duration,
    requests: RateLimiter<IpAddr>,
    handshakes: RateLimiter<IpAddr>,
    handler: Handler,
    plain: Vec<u8>,
    stats: AdapterStats,
    throttle: LogThrottle,
    established: Counter,
    replaced: Counter,
}

impl Server {
    fn report(&self, ctx: &AdapterContext, peer: SocketAddr, kind: &str, detail: &str) {
        report(&self.stats, &self.throttle, &ctx.name, peer, kind, detail);
    }

    fn sweep(&mut self, ctx: &AdapterContext, now: Instant) {
        if let Err(e) = self.cookies.rotate(now) {
            warn!(adapter = %ctx.name, error = %e, "Cookie secret not renewed; the old one stays.");
        }
        let lookup = self.tls.lookup;
        let mut stalled = Vec::new();
        self.pending.retain(|&peer, p| {
            let alive = now - p.last < HANDSHAKE_TIMEOUT;
            if !alive {
                // A Finished that does not verify is dropped silently (RFC
                // 6347 §4.1.2.7): a known identity whose handshake then
                // stalls had the wrong key.
                stalled.push(match p.mid.ssl().ex_data(lookup) {
                    Some(Lookup::Known) => (peer, "dtls_bad_key"),
                    _ => (peer, "dtls_handshake_timeout"),
                });
            }
            alive
        });
        for (peer, kind) in stalled {
            self.report(ctx, peer, kind, "handshake did not finish");
        }
        let timeout = self.session_timeout;
        self.open.retain(|_, s| now - s.last < timeout);
    }

    async fn datagram(
        &mut self,
        socket: &UdpSocket,
        ctx: &AdapterContext,
        peer: SocketAddr,
        d: &[u8],
        now: Instant,
    ) -> Result<(), AdapterError> {
        if let Some(ch) = dtls_cookie::client_hello(d) {
            self.client_hello(socket, ctx, peer, d, &ch, now).await;
            return Ok(());
        }
        let to_handshake = self.pending.contains_key(&peer)
            && (!self.open.contains_key(&peer) || dtls_cookie::is_handshake_record(d));
        if to_handshake {
            if let Some(mut p) = self.pending.remove(&peer) {
                p.mid.get_mut().inbox.push_back(d.to_vec());
                self.advance(socket, ctx, peer, p.mid, p.random, now).await;
            }
            return Ok(());
        }
        let Some(mut s) = self.open.remove(&peer) else {
            self.report(ctx, peer, "dtls_no_session", "no session, and not a ClientHello");
            return Ok(());
        };
        s.stream.get_mut().inbox.push_back(d.to_vec());
        let open = serve_records(
            &mut s.stream,
            &s.device,
            peer,
            &mut self.plain,
            &mut self.handler,
            &mut self.requests,
            ctx,
            &self.stats,
            &self.throttle,
        )
        .await?;
        flush(socket, peer, &mut s.stream.get_mut().outbox).await;
        if open {
            s.last = now;
            self.open.insert(peer, s);
        }
        Ok(())
    }

    /// A ClientHello: asked for a cookie statelessly, or, cookie returned,
    /// the start of a session (RFC 6347 §4.2.1, and §4.2.8 when the address
    /// already has one: a client that restarted keeps its port).
    async fn client_hello(
        &mut self,
        socket: &UdpSocket,
        ctx: &AdapterContext,
        peer: SocketAddr,
        d: &[u8],
        ch: &ClientHello,
        now: Instant,
    ) {
        if !self.cookies.verify(peer, ch) {
            match self.cookies.cookie(peer, ch) {
                Ok(cookie) => {
                    let hvr = dtls_cookie::hello_verify_request(ch, &cookie);
                    // Lost, it is the client's to ask again.
                    let _ = socket.send_to(&hvr, peer).await;
                }
                Err(e) => self.report(ctx, peer, "dtls_setup", &e.to_string()),
            }
            return;
        }
        if let Some(mut p) = self.pending.remove(&peer) {
            if p.random == ch.random {
                // Its own ClientHello again: OpenSSL resends its flight.
                p.mid.get_mut().inbox.push_back(d.to_vec());
                self.advance(socket, ctx, peer, p.mid, p.random, now).await;
                return;
            }
            debug!(adapter = %ctx.name, %peer, "DTLS handshake restarted by the client.");
        }
        if ch.msg_seq > 1 {
            self.report(ctx, peer, "dtls_handshake", "ClientHello out of sequence");
            return;
        }
        let refuse = if !self.handshakes.allow(peer.ip(), now.into_std()) {
            Some("dtls_handshake_rate_limited")
        } else if self.pending.len() >= MAX_HANDSHAKES
            || (!self.open.contains_key(&peer)
                && self.open.len() + self.pending.len() >= self.max_peers)
        {
            Some("dtls_too_many_sessions")
        } else {
            None
        };
        if let Some(kind) = refuse {
            self.report(ctx, peer, kind, "handshake refused");
            return;
        }
        if self.open.contains_key(&peer) {
            // The old session stays until this handshake completes: a
            // ClientHello alone proves nothing about the old peer.
            debug!(adapter = %ctx.name, %peer, "New DTLS handshake from an address with a session (the peer restarted?).");
        }
        match start(&self.tls, ch, d) {
            Ok(mid) => self.advance(socket, ctx, peer, mid, ch.random, now).await,
            Err(e) => self.report(ctx, peer, "dtls_setup", &e.to_string()),
        }
    }

    /// Runs the handshake on what arrived; a finished one becomes the
    /// address's session, replacing any older one.
    async fn advance(
        &mut self,
        socket: &UdpSocket,
        ctx: &AdapterContext,
        peer: SocketAddr,
        mid: MidHandshakeSslStream<Pipe>,
        random: [u8; 32],
        now: Instant,
    ) {
        match mid.handshake() {
            Ok(mut stream) => {
                flush(socket, peer, &mut stream.get_mut().outbox).await;
                let identity = stream.ssl().psk_identity().unwrap_or_default();
                // The PSK callback only accepts identities we hold.
                let Some(device) = self.tls.devices.get(identity).cloned() else {
                    self.report(ctx, peer, "dtls_unknown_identity", "handshake failed");
                    return;
                };
                self.established.inc();
                // Messages match within one session (RFC 7252 §9.1.2): the
                // new one's Message IDs start afresh.
                self.handler.forget_peer(peer);
                let old = self.open.insert(
                    peer,
                    Open {
                        stream,
                        device: device.clone(),
                        last: now,
                    },
                );
                if old.is_some() {
                    self.replaced.inc();
                    info!(adapter = %ctx.name, %peer, %device, "DTLS peer restarted: its new session replaces the old one.");
                } else {
                    debug!(adapter = %ctx.name, %peer, %device, "DTLS session established.");
                }
            }
            Err(HandshakeError::WouldBlock(mut mid)) => {
                flush(socket, peer, &mut mid.get_mut().outbox).await;
                self.pending.insert(
                    peer,
                    Pending {
                        mid,
                        random,
                        last: now,
                    },
                );
            }
            Err(HandshakeError::Failure(mut mid)) => {
                let kind = failure_kind(&self.tls, mid.ssl(), mid.error());
                // The reason only: never key material, and not the
                // identity either (it may be an attacker's garbage).
                self.report(ctx, peer, kind, "handshake failed");
                // The alert OpenSSL queued tells the client why.
                flush(socket, peer, &mut mid.get_mut().outbox).await;
            }
            Err(HandshakeError::SetupFailure(e)) => {
                self.report(ctx, peer, "dtls_setup", &e.to_string());
            }
        }
    }
}

/// A fresh OpenSSL session for a ClientHello whose cookie we accepted,
/// primed (see [`dtls_cookie::primer`]) and holding the ClientHello.
fn start(
    tls: &Tls,
    ch: &ClientHello,
    d: &[u8],
) -> Result<MidHandshakeSslStream<Pipe>, ErrorStack> {
    let mut ssl = Ssl::new(&tls.ctx)?;
    ssl.set_ex_data(tls.cookie, ch.cookie.clone());
    ssl.set_mtu(DTLS_MTU)?;
    let mut pipe = Pipe::default();
    let real = if ch.msg_seq == 0 {
        d.to_vec()
    } else {
        let (primer, real) = dtls_cookie::primer(ch, d);
        pipe.inbox.push_back(primer);
        real
    };
    match ssl.accept(pipe) {
        Err(HandshakeError::WouldBlock(mut mid)) => {
            // The primer's HelloVerifyRequest: the client had ours.
            mid.get_mut().outbox.clear();
            mid.get_mut().inbox.push_back(real);
            Ok(mid)
        }
        Err(HandshakeError::SetupFailure(e)) => Err(e),
        // Without the real ClientHello, accept can only wait: finishing
        // (or failing) on the primer is refused rather than trusted.
        Ok(_) | Err(HandshakeError::Failure(_)) => Err(ErrorStack::get()),
    }
}

/// Decrypts every record waiting in the session, answers each request.
/// False when the session is over (close_notify or a fatal error).
#[allow(clippy::too_many_arguments)]
async fn serve_records(
    stream: &mut SslStream<Pipe>,
    device: &DeviceId,
    peer: SocketAddr,
    plain: &mut [u8],
    handler: &mut Handler,
    limiter: &mut RateLimiter<IpAddr>,
    ctx: &AdapterContext,
    stats: &AdapterStats,
    throttle: &LogThrottle,
) -> Result<bool, AdapterError> {
    loop {
        let n = match stream.ssl_read(plain) {
            Ok(n) => n,
            Err(e) if e.code() == ErrorCode::WANT_READ => return Ok(true),
            Err(e) if e.code() == ErrorCode::ZERO_RETURN => return Ok(false),
            Err(e) => {
                report(
                    stats,
                    throttle,
                    &ctx.name,
                    peer,
                    "dtls_record",
                    &e.to_string(),
                );
                return Ok(false);
            }
        };
        let now = Instant::now().into_std();
        if !limiter.allow(peer.ip(), now) {
            report(
                stats,
                throttle,
                &ctx.name,
                peer,
                "rate_limited",
                "over the per-peer rate",
            );
            continue;
        }
        let outcome = if n == plain.len() {
            handler.oversize(&plain[..n])
        } else {
            handler.handle_as(peer, &plain[..n], now, ctx.clock.now(), Some(device))
        };
        for (kind, detail) in &outcome.errors {
            report(stats, throttle, &ctx.name, peer, kind, detail);
        }
        if outcome.duplicate {
            ctx.telemetry
                .counter(super::ADAPTER_DUPLICATES, &[("adapter", ctx.name.as_str())])
                .inc();
        }
        super::server::count_dedup_given_up(handler, stats, throttle, &ctx.name);
        super::server::codec_notes(&outcome, ctx, throttle);
        if !outcome.readings.is_empty() {
            stats.readings.add(outcome.readings.len() as u64);
            ctx.ingress
                .send(Ingress::Readings(outcome.readings))
                .await
                .map_err(|_| AdapterError::PipelineClosed)?;
        }
        if let Some(reply) = outcome.reply {
            if let Err(e) = stream.ssl_write(&reply) {
                report(
                    stats,
                    throttle,
                    &ctx.name,
                    peer,
                    "dtls_record",
                    &e.to_string(),
                );
                return Ok(false);
            }
        }
    }
}

async fn flush(socket: &UdpSocket, peer: SocketAddr, outbox: &mut Vec<Vec<u8>>) {
    for d in outbox.drain(..) {
        // A lost datagram is DTLS's to retransmit, like any on UDP.
        let _ = socket.send_to(&d, peer).await;
    }
}

fn report(
    stats: &AdapterStats,
    throttle: &LogThrottle,
    adapter: &str,
    peer: SocketAddr,
    kind: &str,
    detail: &str,
) {
    gateway_core::refuse!(stats, throttle, kind; adapter, %peer, detail, "Dropping coaps datagram.");
}

#[cfg(test)]
#[path = "dtls_tests.rs"]
#[allow(clippy::unwrap_used)]
mod tests;
