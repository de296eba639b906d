//! The Observe client (RFC 7641): registers on each configured resource,
//! turns every notification into readings, and registers again when the
//! resource has been silent for `silence` (the device restarted and forgot
//! us, or the registration was lost). The registration is a CON GET,
//! retransmitted as RFC 7252 §4.2 says; one that nothing answers is sent
//! again after 5 s, then 10 s, … up to 5 minutes, until the device answers.
//! A notification sent in blocks is completed by `observe_blocks`.
//!
//! One task and one connected UDP socket per resource, so a datagram on a
//! socket can only come from that resource's device.

use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use gateway_core::component::{AdapterFuture, AdapterStats};
use gateway_core::telemetry::LogThrottle;
use gateway_core::{Adapter, AdapterContext, AdapterError, Ingress, Reading, Timestamp};
use tokio::net::UdpSocket;
use tokio::time::Instant;
use tracing::{debug, info};

use super::config::{CoapObserveConfig, ObservedResource};
use super::handler::format_for;
use super::message::{self, CON, NON};
use super::observe_blocks::{Block, BlockFetch, Step};
use super::observe_exchange::{Answered, Retransmit, MAX_RETRANSMIT};
use super::server::random_u16;
use crate::payload::{self, Context};

/// Observe sequence numbers are 24 bits; a newer one is at most 2^23 ahead
/// (RFC 7641 §3.4).
const SEQ_HALF: u32 = 1 << 23;
/// After this long any notification counts as newer (§3.4). 128 s.
const SEQ_WINDOW: Duration = Duration::from_secs(128);
/// Receive buffer: the largest UDP payload and one byte, so a notification
/// is never cut short; one that fills it anyway (an IPv6 jumbogram) was
/// truncated by the kernel and is refused, not decoded.
const BUFFER: usize = 65_536;
/// A registration nobody answered is sent again after this, doubling up to
/// [`RETRY_MAX`], until the device answers.
const RETRY_FIRST: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// A runnable Observe client.
pub struct CoapObserver {
    config: CoapObserveConfig,
}

impl CoapObserver {
    /// The client for `config`; it registers when run.
    pub fn new(config: CoapObserveConfig) -> Self {
        Self { config }
    }
}

impl Adapter for CoapObserver {
    fn run(self: Box<Self>, ctx: AdapterContext) -> AdapterFuture {
        Box::pin(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for resource in self.config.resources {
                tasks.spawn(observe(resource, self.config.silence, ctx.clone()));
            }
            while let Some(done) = tasks.join_next().await {
                match done {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(e) => return Err(AdapterError::Setup(format!("observer task: {e}"))),
                }
            }
            info!(adapter = %ctx.name, "Stopped.");
            Ok(())
        })
    }
}

/// The state of one registration.
struct Registration {
    token: Vec<u8>,
    /// Last Observe sequence number and when it arrived.
    seq: Option<(u32, Instant)>,
    /// Registrations sent on this resource, this one included.
    number: u64,
}

async fn observe(
    resource: ObservedResource,
    silence: Duration,
    ctx: AdapterContext,
) -> Result<(), AdapterError> {
    let stats = ctx.stats();
    let throttle = LogThrottle::default();
    let mut mid = random_u16();
    let mut answered = Answered::new(ctx.telemetry.counter(
        super::ADAPTER_DUPLICATES,
        &[("adapter", ctx.name.as_str())],
    ));
    let mut buf = vec![0u8; BUFFER];
    let target = format!("coap://{}/{}", resource.addr, resource.path.join("/"));
    // The same socket (and local port) across registrations, so a
    // notification for a stale registration reaches us and is reset.
    let socket = loop {
        match connect(&resource.addr).await {
            Ok(s) => break s,
            Err(e) => {
                report(
                    &stats,
                    &throttle,
                    &ctx.name,
                    &target,
                    "resolve",
                    &e.to_string(),
                );
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(silence) => {}
                }
            }
        }
    };
    let mut number = 0;
    let mut retry = RETRY_FIRST;
    loop {
        number += 1;
        let mut reg = Registration {
            token: random_u16()
                .to_be_bytes()
                .into_iter()
                .chain(mid.to_be_bytes())
                .collect(),
            seq: None,
            number,
        };
        mid = mid.wrapping_add(1);
        let reg_mid = mid;
        let request = register(&resource, mid, &reg.token);
        if let Err(e) = socket.send(&request).await {
            report(
                &stats,
                &throttle,
                &ctx.name,
                &target,
                "send",
                &e.to_string(),
            );
        } else {
            info!(adapter = %ctx.name, resource = %target, "Registering an observation.");
        }
        // A device unreachable right now (rebooting, a lost datagram) would
        // otherwise go unobserved for a whole `silence`.
        let mut unanswered = Some(Retransmit::new(Instant::now()));
        let mut deadline = gateway_core::deadline::from_now(silence);
        let mut established = false;
        // The rest of a notification too large for one datagram.
        let mut fetching: Option<BlockFetch> = None;
        let end = loop {
            let resend_at = unanswered.as_ref().map_or(deadline, |r| r.next);
            let block_resend = fetching.as_ref().and_then(BlockFetch::resend_at);
            let datagram = tokio::select! {
                _ = ctx.shutdown.cancelled() => {
                    // Deregister by forgetting: the next notification would
                    // get a Reset (§3.6); the socket closes with us.
                    return Ok(());
                }
                _ = tokio::time::sleep_until(deadline), if unanswered.is_none() => break End::Silent,
                _ = tokio::time::sleep_until(resend_at), if unanswered.is_some() => {
                    let Some(r) = unanswered.as_mut() else { continue };
                    if !r.again(Instant::now()) {
                        break End::Unanswered;
                    }
                    debug!(adapter = %ctx.name, resource = %target, "Registration unanswered; sending it again.");
                    if let Err(e) = socket.send(&request).await {
                        report(&stats, &throttle, &ctx.name, &target, "send", &e.to_string());
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(block_resend.unwrap_or(deadline)), if block_resend.is_some() => {
                    let Some(f) = fetching.as_mut() else { continue };
                    match f.resend(Instant::now()) {
                        Some(get) => {
                            if let Err(e) = socket.send(get).await {
                                report(&stats, &throttle, &ctx.name, &target, "send", &e.to_string());
                            }
                        }
                        None => {
                            let detail = if f.acknowledged() {
                                "the device acknowledged the GET of a notification's next block but never sent the block"
                            } else {
                                "the device answered no GET of a notification's next block"
                            };
                            report(&stats, &throttle, &ctx.name, &target, "observe_block2", detail);
                            fetching = None;
                        }
                    }
                    continue;
                }
                r = socket.recv(&mut buf) => match r {
                    Ok(n) if n == buf.len() => {
                        stats.received.inc();
                        report(&stats, &throttle, &ctx.name, &target, "datagram_too_large", "notification truncated by the receive buffer");
                        continue;
                    }
                    Ok(n) => &buf[..n],
                    Err(e) => {
                        report(&stats, &throttle, &ctx.name, &target, "recv", &e.to_string());
                        continue;
                    }
                },
            };
            stats.received.inc();
            let packet = match message::parse(datagram) {
                Ok(p) => p,
                Err(e) => {
                    report(
                        &stats,
                        &throttle,
                        &ctx.name,
                        &target,
                        e.kind(),
                        &e.to_string(),
                    );
                    continue;
                }
            };
            if let Some(ack) = answered.again(&packet, datagram, Instant::now()) {
                if !ack.is_empty() {
                    let _ = socket.send(&ack).await;
                }
                continue;
            }
            if let Some(f) = fetching.as_mut() {
                let wants_ack = f.wants_ack(&packet);
                let step = f.take(&packet, Instant::now(), || {
                    mid = mid.wrapping_add(1);
                    mid
                });
                if step != Step::NotOurs {
                    if wants_ack {
                        let [hi, lo] = packet.header.message_id.to_be_bytes();
                        let ack = [0x60, 0x00, hi, lo];
                        answered.answered(&packet, datagram, &ack, Instant::now());
                        let _ = socket.send(&ack).await;
                    }
                    let readings = match step {
                        Step::Continue(Some(get)) => {
                            if let Err(e) = socket.send(&get).await {
                                report(&stats, &throttle, &ctx.name, &target, "send", &e.to_string());
                            }
                            Vec::new()
                        }
                        Step::Done {
                            body,
                            content_format,
                            arrival,
                        } => {
                            fetching = None;
                            let body = Body {
                                content_format,
                                bytes: &body,
                                arrival,
                            };
                            decode_body(&body, &resource, &ctx, &stats, &throttle, &target)
                        }
                        Step::Failed(kind, detail) => {
                            report(&stats, &throttle, &ctx.name, &target, kind, &detail);
                            fetching = None;
                            Vec::new()
                        }
                        Step::Continue(None) | Step::NotOurs => Vec::new(),
                    };
                    forward(&ctx, &stats, readings).await?;
                    continue;
                }
            }
            let own_exchange = packet.header.message_id == reg_mid
                && matches!(
                    packet.header.get_type(),
                    MessageType::Acknowledgement | MessageType::Reset
                );
            if unanswered.is_some() && (own_exchange || packet.get_token() == reg.token) {
                unanswered = None;
                retry = RETRY_FIRST;
                deadline = gateway_core::deadline::from_now(silence);
                if own_exchange && packet.header.get_type() == MessageType::Reset {
                    break End::Reset;
                }
            }
            if packet.get_token() == reg.token.as_slice() {
                deadline = gateway_core::deadline::from_now(silence);
            }
            let (reply, readings, first_block) = notification(
                &packet, &mut reg, &resource, &ctx, &stats, &throttle, &target,
            );
            if !readings.is_empty() {
                // A newer whole notification: the state being fetched is old.
                fetching = None;
            }
            if let Some(block) = first_block {
                mid = mid.wrapping_add(1);
                let token = [random_u16().to_be_bytes(), random_u16().to_be_bytes()].concat();
                match BlockFetch::start(&packet, block, &resource.path, token, mid, ctx.clock.now(), Instant::now()) {
                    Ok((f, get)) => {
                        if let Err(e) = socket.send(&get).await {
                            report(&stats, &throttle, &ctx.name, &target, "send", &e.to_string());
                        }
                        fetching = Some(f);
                    }
                    Err((kind, detail)) => {
                        report(&stats, &throttle, &ctx.name, &target, kind, &detail);
                        fetching = None;
                    }
                }
            }
            if !established && reg.seq.is_some() {
                // The first response with an Observe option: the device
                // keeps us as an observer from now on (RFC 7641 §3.1).
                established = true;
                info!(adapter = %ctx.name, resource = %target, registration = reg.number, "Observation established.");
            }
            if let Some(reply) = reply {
                answered.answered(&packet, datagram, &reply, Instant::now());
                let _ = socket.send(&reply).await;
            } else if packet.header.get_type() == MessageType::NonConfirmable {
                answered.answered(&packet, datagram, &[], Instant::now());
            }
            forward(&ctx, &stats, readings).await?;
        };
        if fetching.is_some() {
            report(
                &stats,
                &throttle,
                &ctx.name,
                &target,
                "observe_block2",
                "the registration was renewed while a notification's blocks were fetched; the next notification brings the state again",
            );
        }
        let detail = match end {
            End::Silent => {
                info!(adapter = %ctx.name, resource = %target, ?silence, "No notification; registering again.");
                continue;
            }
            End::Unanswered => format!(
                "no answer to the registration after {} transmissions; again in {retry:?}",
                MAX_RETRANSMIT + 1
            ),
            End::Reset => format!("the device reset the registration; again in {retry:?}"),
        };
        report(
            &stats,
            &throttle,
            &ctx.name,
            &target,
            "observe_unanswered",
            &detail,
        );
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(RETRY_MAX);
    }
}

/// Why a registration ended.
enum End {
    /// Answered, then no notification for `silence`.
    Silent,
    /// No answer to any transmission of the registration.
    Unanswered,
    /// The device answered the registration with a Reset.
    Reset,
}

async fn connect(addr: &str) -> std::io::Result<UdpSocket> {
    let target = tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let local: std::net::SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(target).await?;
    Ok(socket)
}

/// A CON GET with Observe = 0 (register).
fn register(resource: &ObservedResource, mid: u16, token: &[u8]) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_version(1);
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Get);
    p.header.message_id = mid;
    p.set_token(token.to_vec());
    p.add_option(CoapOption::Observe, Vec::new());
    for segment in &resource.path {
        p.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
    }
    message::encode(&p)
}

/// The reply to a received message and the readings it carries.
fn notification(
    p: &Packet,
    reg: &mut Registration,
    resource: &ObservedResource,
    ctx: &AdapterContext,
    stats: &AdapterStats,
    throttle: &LogThrottle,
    target: &str,
) -> (Option<Vec<u8>>, Vec<Reading>, Option<Block>) {
    let kind = match p.header.get_type() {
        MessageType::Confirmable => CON,
        MessageType::NonConfirmable => NON,
        // An ACK carries the first response piggybacked; an empty ACK or a
        // RST carries nothing to read.
        _ if p.header.code == MessageClass::Empty => return (None, Vec::new(), None),
        _ => NON,
    };
    let ack = |code_ok: bool| {
        (kind == CON).then(|| {
            if code_ok {
                let [hi, lo] = p.header.message_id.to_be_bytes();
                vec![0x60, 0x00, hi, lo]
            } else {
                message::reset(p.header.message_id)
            }
        })
    };
    if p.get_token() != reg.token.as_slice() {
        // Not ours (an old registration): a Reset cancels it (§3.6).
        report(
            stats,
            throttle,
            &ctx.name,
            target,
            "unknown_token",
            "notification for an old registration",
        );
        return (Some(message::reset(p.header.message_id)), Vec::new(), None);
    }
    match p.header.code {
        MessageClass::Response(ResponseType::Content) => {}
        MessageClass::Response(code) => {
            report(
                stats,
                throttle,
                &ctx.name,
                target,
                "observe_refused",
                &format!("{code:?}"),
            );
            return (ack(true), Vec::new(), None);
        }
        _ => return (ack(false), Vec::new(), None),
    }
    let now = Instant::now();
    if let Some(Ok(v)) = p.get_observe_value() {
        if let Some((last, at)) = reg.seq {
            let newer = (last < v && v - last < SEQ_HALF)
                || (last > v && last - v > SEQ_HALF)
                || now.duration_since(at) > SEQ_WINDOW;
            if !newer {
                stats.error("stale_notification");
                return (ack(true), Vec::new(), None);
            }
        }
        reg.seq = Some((v, now));
    }
    match Block::read(p) {
        // More blocks follow (RFC 7959 §2.2's M bit): the payload is only
        // the first part of the body; the caller fetches the rest.
        Some(Ok(block)) if block.more => return (ack(true), Vec::new(), Some(block)),
        Some(Ok(block)) if block.num == 0 => {}
        Some(Ok(block)) => {
            let detail = format!("a notification carrying block {} alone", block.num);
            report(stats, throttle, &ctx.name, target, "observe_block2", &detail);
            return (ack(true), Vec::new(), None);
        }
        Some(Err(e)) => {
            report(stats, throttle, &ctx.name, target, "observe_block2", e);
            return (ack(true), Vec::new(), None);
        }
        None => {}
    }
    let body = Body {
        content_format: p
            .get_first_option(CoapOption::ContentFormat)
            .map(|v| message::read_uint(v).unwrap_or(u32::MAX)),
        bytes: &p.payload,
        arrival: ctx.clock.now(),
    };
    let readings = decode_body(&body, resource, ctx, stats, throttle, target);
    (ack(true), readings, None)
}

/// A notification's whole body: one datagram's payload, or its blocks.
struct Body<'a> {
    content_format: Option<u32>,
    bytes: &'a [u8],
    /// When the notification (its first block) arrived.
    arrival: Timestamp,
}

fn decode_body(
    body: &Body<'_>,
    resource: &ObservedResource,
    ctx: &AdapterContext,
    stats: &AdapterStats,
    throttle: &LogThrottle,
    target: &str,
) -> Vec<Reading> {
    let cf = body.content_format;
    let Some(format) = format_for(cf) else {
        report(
            stats,
            throttle,
            &ctx.name,
            target,
            "unsupported_content_format",
            &format!("{cf:?}"),
        );
        return Vec::new();
    };
    let context = Context {
        device: Some(&resource.device),
        metric: resource.metric.as_ref(),
        now: body.arrival,
    };
    match payload::decode(&format, body.bytes, &context) {
        Ok(decoded) => {
            for problem in &decoded.problems {
                let kind = format!("field_{}", problem.reason.kind());
                report(
                    stats,
                    throttle,
                    &ctx.name,
                    target,
                    &kind,
                    &problem.to_string(),
                );
            }
            for (device, key) in &decoded.ignored {
                stats.ignored_field(device.as_str(), key);
            }
            decoded.readings
        }
        Err(e) => {
            report(stats, throttle, &ctx.name, target, e.kind(), &e.to_string());
            Vec::new()
        }
    }
}

async fn forward(
    ctx: &AdapterContext,
    stats: &AdapterStats,
    readings: Vec<Reading>,
) -> Result<(), AdapterError> {
    if readings.is_empty() {
        return Ok(());
    }
    stats.readings.add(readings.len() as u64);
    ctx.ingress
        .send(Ingress::Readings(readings))
        .await
        .map_err(|_| AdapterError::PipelineClosed)
}

fn report(
    stats: &AdapterStats,
    throttle: &LogThrottle,
    adapter: &str,
    resource: &str,
    kind: &str,
    detail: &str,
) {
    gateway_core::refuse!(stats, throttle, kind; adapter, resource, detail, "CoAP observe problem.");
}

#[cfg(test)]
#[path = "observe_tests.rs"]
#[allow(clippy::unwrap_used)]
mod tests;
