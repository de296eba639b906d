//! coaps: the CoAP server over DTLS 1.2 with pre-shared keys (RFC 7252 §9.1).
//!
//! OpenSSL does the DTLS (see docs/coaps.md for the choice); this module
//! only moves datagrams. Each peer address has one OpenSSL session over an
//! in-memory datagram pipe ([`Pipe`]): a datagram from the socket goes into
//! its inbox, the handshake or `ssl_read` runs, and whatever OpenSSL wrote
//! goes back out. A decrypted request goes to the same [`Handler`] as plain
//! CoAP, told which device the peer's identity may write.
//!
//! Against abuse: HelloVerifyRequest cookies (an HMAC of the peer address
//! under a per-process secret), so a spoofed address never completes a
//! handshake nor gets the server's large flight; a per-address handshake
//! rate; at most `max_peers` sessions and [`MAX_HANDSHAKES`] handshakes in
//! progress; handshakes that stall for [`HANDSHAKE_TIMEOUT`] and sessions
//! idle for `session_timeout` are dropped.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use gateway_core::component::{AdapterFuture, AdapterStats};
use gateway_core::rate_limit::RateLimiter;
use gateway_core::telemetry::LogThrottle;
use gateway_core::{Adapter, AdapterContext, AdapterError, DeviceId, Ingress};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use openssl::ssl::{
    ErrorCode, HandshakeError, MidHandshakeSslStream, Ssl, SslContext, SslContextBuilder,
    SslMethod, SslOptions, SslStream, SslVersion,
};
use tokio::net::UdpSocket;
use tokio::time::Instant;
use tracing::{debug, info};

use super::config::CoapServerConfig;
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
/// RFC 7252 §9.1.3.1's mandatory suite first, then the AES-128-GCM PSK
/// suites where the OpenSSL build offers them.
const CIPHERS: &str = "PSK-AES128-CCM8:PSK-AES128-GCM-SHA256:PSK-AES128-CCM";
/// Sessions established, by adapter (failures are in `errors_total`).
pub const DTLS_SESSIONS: &str = "edge_gateway_coap_dtls_sessions_total";

/// Datagrams between the socket and one OpenSSL session.
#[derive(Default)]
pub struct Pipe {
    inbox: VecDeque<Vec<u8>>,
    outbox: Vec<Vec<u8>>,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(d) = self.inbox.pop_front() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        // A datagram larger than OpenSSL's buffer is cut, as a socket
        // would; the record then fails its MAC and is dropped.
        let n = d.len().min(buf.len());
        buf[..n].copy_from_slice(&d[..n]);
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // OpenSSL writes one datagram per call on a DTLS BIO.
        self.outbox.push(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum Conn {
    Handshaking(MidHandshakeSslStream<Pipe>),
    Open {
        stream: SslStream<Pipe>,
        device: DeviceId,
    },
}

struct Session {
    conn: Conn,
    last: Instant,
}

impl Session {
    fn pipe(&mut self) -> &mut Pipe {
        match &mut self.conn {
            Conn::Handshaking(m) => m.get_mut(),
            Conn::Open { stream, .. } => stream.get_mut(),
        }
    }
}

/// What the PSK callback found, kept on the session for the failure's reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lookup {
    Known,
    Unknown,
}

/// The OpenSSL side: the context and the per-session data indexes.
struct Tls {
    ctx: SslContext,
    peer: openssl::ex_data::Index<Ssl, SocketAddr>,
    lookup: openssl::ex_data::Index<Ssl, Lookup>,
    devices: Arc<HashMap<Vec<u8>, DeviceId>>,
}

fn tls(section: &CoapSection) -> Result<Tls, ErrorStack> {
    let keys: Arc<HashMap<Vec<u8>, Vec<u8>>> = Arc::new(
        section
            .psk
            .iter()
            .map(|e| (e.identity.as_bytes().to_vec(), e.key.0.clone()))
            .collect(),
    );
    let devices = Arc::new(
        section
            .psk
            .iter()
            .map(|e| (e.identity.as_bytes().to_vec(), e.device.clone()))
            .collect(),
    );
    let peer = Ssl::new_ex_index::<SocketAddr>()?;
    let lookup = Ssl::new_ex_index::<Lookup>()?;
    let mut b = SslContextBuilder::new(SslMethod::dtls())?;
    b.set_min_proto_version(Some(SslVersion::DTLS1_2))?;
    b.set_cipher_list(CIPHERS)?;
    // The pipe is no socket to ask for its MTU: the session is told.
    b.set_options(SslOptions::COOKIE_EXCHANGE | SslOptions::NO_TICKET | SslOptions::NO_QUERY_MTU);
    b.set_psk_server_callback(move |ssl, identity, out| {
        let key = identity.and_then(|id| keys.get(id));
        ssl.set_ex_data(
            lookup,
            if key.is_some() {
                Lookup::Known
            } else {
                Lookup::Unknown
            },
        );
        match key {
            // Zero bytes fails the handshake (unknown_psk_identity).
            Some(k) if k.len() <= out.len() => {
                out[..k.len()].copy_from_slice(k);
                Ok(k.len())
            }
            _ => Ok(0),
        }
    });
    let secret: [u8; 32] = {
        let mut s = [0u8; 32];
        openssl::rand::rand_bytes(&mut s)?;
        s
    };
    let secret = Arc::new(secret);
    let cookie = move |ssl: &openssl::ssl::SslRef, out: &mut [u8]| -> Result<usize, ErrorStack> {
        let addr = ssl.ex_data(peer).map(|a| a.to_string()).unwrap_or_default();
        let pkey = PKey::hmac(secret.as_slice())?;
        let mut signer = Signer::new(MessageDigest::sha256(), &pkey)?;
        signer.update(addr.as_bytes())?;
        let mac = signer.sign_to_vec()?;
        let n = mac.len().min(out.len());
        out[..n].copy_from_slice(&mac[..n]);
        Ok(n)
    };
    let generate = cookie.clone();
    b.set_cookie_generate_cb(move |ssl, out| generate(ssl, out));
    b.set_cookie_verify_cb(move |ssl, got| {
        let mut want = [0u8; 32];
        match cookie(ssl, &mut want) {
            Ok(n) => n == got.len() && openssl::memcmp::eq(&want[..n], got),
            Err(_) => false,
        }
    });
    Ok(Tls {
        ctx: b.build(),
        peer,
        lookup,
        devices,
    })
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
    let tls = tls(&keys).map_err(|e| AdapterError::Setup(format!("DTLS setup: {e}")))?;
    let Some(dtls) = config.dtls.clone() else {
        return Err(AdapterError::Setup("not a DTLS server".into()));
    };
    if let Ok(addr) = socket.local_addr() {
        info!(adapter = %ctx.name, %addr, identities = keys.psk.len(), "CoAP server listening (DTLS-PSK).");
    }
    let stats = ctx.stats();
    let established = ctx
        .telemetry
        .counter(DTLS_SESSIONS, &[("adapter", ctx.name.as_str())]);
    let throttle = LogThrottle::default();
    let mut requests = peer_limiter(config.rate_limit, config.rate_burst, config.max_peers);
    let mut handshakes = peer_limiter(dtls.handshake_rate, dtls.handshake_burst, config.max_peers);
    let mut handler = Handler::for_server(&config, super::server::random_u16());
    let mut sessions: HashMap<SocketAddr, Session> = HashMap::new();
    let mut buf = vec![0u8; config.limits.max_payload_bytes + 512 + 256];
    let mut plain = vec![0u8; config.limits.max_payload_bytes + 512 + 1];
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    loop {
        let (n, peer) = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            _ = sweep.tick() => {
                let now = Instant::now();
                sessions.retain(|&peer, s| match &s.conn {
                    Conn::Handshaking(mid) => {
                        let alive = now - s.last < HANDSHAKE_TIMEOUT;
                        if !alive {
                            // A Finished that does not verify is dropped
                            // silently (RFC 6347 §4.1.2.7): a known identity
                            // whose handshake then stalls had the wrong key.
                            let kind = match mid.ssl().ex_data(tls.lookup) {
                                Some(Lookup::Known) => "dtls_bad_key",
                                _ => "dtls_handshake_timeout",
                            };
                            report(&stats, &throttle, &ctx.name, peer, kind, "handshake did not finish");
                        }
                        alive
                    }
                    Conn::Open { .. } => now - s.last < dtls.session_timeout,
                });
                continue;
            }
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    super::server::recv_failed(&stats, &throttle, &ctx.name, &e);
                    continue;
                }
            },
        };
        stats.received.inc();
        let now = Instant::now();
        let datagram = buf[..n].to_vec();
        let mut session = match sessions.remove(&peer) {
            Some(s) => s,
            None => {
                let handshaking = sessions
                    .values()
                    .filter(|s| matches!(s.conn, Conn::Handshaking(_)))
                    .count();
                let refuse = if !handshakes.allow(peer.ip(), now.into_std()) {
                    Some("dtls_handshake_rate_limited")
                } else if handshaking >= MAX_HANDSHAKES || sessions.len() >= config.max_peers {
                    Some("dtls_too_many_sessions")
                } else {
                    None
                };
                if let Some(kind) = refuse {
                    report(
                        &stats,
                        &throttle,
                        &ctx.name,
                        peer,
                        kind,
                        "handshake refused",
                    );
                    continue;
                }
                match start(&tls, peer) {
                    Ok(conn) => Session { conn, last: now },
                    Err(e) => {
                        report(
                            &stats,
                            &throttle,
                            &ctx.name,
                            peer,
                            "dtls_setup",
                            &e.to_string(),
                        );
                        continue;
                    }
                }
            }
        };
        session.pipe().inbox.push_back(datagram);
        let next = match session.conn {
            Conn::Handshaking(mid) => match mid.handshake() {
                Ok(mut stream) => {
                    flush(&socket, peer, &mut stream.get_mut().outbox).await;
                    let identity = stream.ssl().psk_identity().unwrap_or_default();
                    tls.devices.get(identity).map(|device| {
                        established.inc();
                        debug!(adapter = %ctx.name, %peer, %device, "DTLS session established.");
                        Conn::Open {
                            stream,
                            device: device.clone(),
                        }
                    })
                }
                Err(HandshakeError::WouldBlock(mut mid)) => {
                    flush(&socket, peer, &mut mid.get_mut().outbox).await;
                    Some(Conn::Handshaking(mid))
                }
                Err(HandshakeError::Failure(mut mid)) => {
                    let kind = failure_kind(&tls, mid.ssl(), mid.error());
                    // The reason only: never key material, and not the
                    // identity either (it may be an attacker's garbage).
                    report(&stats, &throttle, &ctx.name, peer, kind, "handshake failed");
                    // The alert OpenSSL queued tells the client why.
                    flush(&socket, peer, &mut mid.get_mut().outbox).await;
                    None
                }
                Err(HandshakeError::SetupFailure(e)) => {
                    report(
                        &stats,
                        &throttle,
                        &ctx.name,
                        peer,
                        "dtls_setup",
                        &e.to_string(),
                    );
                    None
                }
            },
            Conn::Open { mut stream, device } => {
                let open = serve_records(
                    &mut stream,
                    &device,
                    peer,
                    &mut plain,
                    &mut handler,
                    &mut requests,
                    &ctx,
                    &stats,
                    &throttle,
                )
                .await?;
                flush(&socket, peer, &mut stream.get_mut().outbox).await;
                open.then_some(Conn::Open { stream, device })
            }
        };
        if let Some(conn) = next {
            sessions.insert(peer, Session { conn, last: now });
        }
    }
    info!(adapter = %ctx.name, "Stopped.");
    Ok(())
}

fn start(tls: &Tls, peer: SocketAddr) -> Result<Conn, ErrorStack> {
    let mut ssl = Ssl::new(&tls.ctx)?;
    ssl.set_ex_data(tls.peer, peer);
    ssl.set_mtu(DTLS_MTU)?;
    match ssl.accept(Pipe::default()) {
        Err(HandshakeError::WouldBlock(mid)) => Ok(Conn::Handshaking(mid)),
        Err(HandshakeError::SetupFailure(e)) => Err(e),
        // With an empty inbox, accept can only wait: finishing (or failing)
        // before a ClientHello is refused rather than trusted.
        Ok(_) | Err(HandshakeError::Failure(_)) => Err(ErrorStack::get()),
    }
}

/// Why a handshake failed, as an `error_type`.
fn failure_kind(
    tls: &Tls,
    ssl: &openssl::ssl::SslRef,
    error: &openssl::ssl::Error,
) -> &'static str {
    if ssl.ex_data(tls.lookup) == Some(&Lookup::Unknown) {
        return "dtls_unknown_identity";
    }
    let text = error.to_string();
    // A wrong key shows as the Finished message failing to decrypt or
    // verify: OpenSSL's "decryption failed or bad record mac" / "digest
    // check failed".
    if text.contains("bad record mac") || text.contains("decrypt") || text.contains("digest check")
    {
        "dtls_bad_key"
    } else {
        "dtls_handshake"
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
