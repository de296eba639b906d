//! KNXnet/IP tunnelling (KNX 3.8.4), over UDP or TCP: one tunnel
//! connection to the interface, kept up for the adapter's life.
//!
//! - CONNECT_REQUEST for a link-layer tunnel; the interface answers with
//!   a channel and the individual address the gateway has on the bus. A
//!   refusal is named by its status: E_NO_MORE_CONNECTIONS (every tunnel
//!   slot taken, counted as `no_more_connections`) apart from the rest
//!   (`connect_refused`); silence is `no_answer`.
//! - CONNECTIONSTATE_REQUEST every `heartbeat` (60 s), three tries of
//!   `timeout` each; no answer or an error status to all three
//!   (`heartbeat_lost`) ends the tunnel, E_CONNECTION_ID (the interface
//!   knows the channel no more) at once.
//! - Telegrams each way carry a sequence counter. Over UDP each is
//!   acknowledged (TUNNELLING_ACK): ours are sent again once after 1 s
//!   without one, then the tunnel is given up (`ack_missing`), and once
//!   at an acknowledgement with an error status, a second ending the
//!   tunnel (`ack_error`); theirs
//!   are acknowledged, a repeat of the last one acknowledged again and
//!   not passed on twice, and one out of order dropped (`sequence`);
//!   three out of order in a row end the tunnel (`sequence_lost`).
//!   TCP carries no acknowledgements (the stream is reliable).
//! - A telegram sent is `done` on the interface's L_Data.con, failed on a
//!   negative one or none within 3 s.
//! - A tunnel that hears no telegram for `refresh_after_silence` (10 min)
//!   is connected again (`silent`), though its heartbeat is answered: an
//!   interface restarted while two clients tunnel through it may give the
//!   gateway's old channel to the other, and knxd answers a
//!   CONNECTIONSTATE_REQUEST by channel id alone, so the heartbeat cannot
//!   tell that every telegram now goes to the other client. The new tunnel
//!   is made before the old is dropped, and the old one is not sent a
//!   DISCONNECT_REQUEST (knxd goes by channel id there too, and would close
//!   the other client's tunnel); it expires at the interface, unless every
//!   slot is taken, when it is disconnected for the new one.
//! - A lost tunnel (or a DISCONNECT_REQUEST from the interface) is
//!   reconnected with backoff up to `max_backoff`, which starts over only
//!   after a tunnel that lasted 10 s; the source re-reads
//!   its `read_on_start` addresses once connected again. At stop, the
//!   tunnel is disconnected, so its slot is free at once for the next.
//! - NAT (`nat = true`): the endpoints sent are 0.0.0.0:0, and the
//!   interface answers wherever the requests come from; the data endpoint
//!   it names is taken for its port only, at the address it was reached
//!   at (its own is a private one behind the router).
//! - An interface that names no data endpoint (0.0.0.0:0, "route back";
//!   knxd does when the gateway's were so) is sent data where its
//!   CONNECT_RESPONSE came from, and heard from there and from the port
//!   of its address its first telegram or ack of the channel came from
//!   (knxd `--multi-port` sends them from its routing port), unless its
//!   first telegram came from the control endpoint.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use gateway_core::backoff::Backoff;
use gateway_core::config::values::duration;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::address::{GroupAddress, IndividualAddress};
use super::cemi::{self, Cemi};
use super::frame::{self, Frame, E_CONNECTION_ID, E_NO_ERROR};
use super::link::{
    ArrivalClock, Faults, GroupTelegram, LinkEvent, Outbox, Outgoing, Pacer, SendFailure,
};
use super::tunnel_connect::{connect, disconnect, ConnectError, Connected, RouteBack};

/// KNX 3.8.4 §2.6: TUNNELLING_REQUEST_TIMEOUT.
const ACK_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an L_Data.con may take (xknx waits as long).
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(3);
/// KNX 3.8.2 §5.4: how long an interface keeps a tunnel it hears nothing
/// from.
pub(super) const CONNECTION_ALIVE_TIME: Duration = Duration::from_secs(120);
/// Tries of a CONNECTIONSTATE_REQUEST before the tunnel is given up.
const HEARTBEAT_TRIES: u8 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// How long a tunnel must last for the backoff to start over.
const STABLE_TUNNEL: Duration = Duration::from_secs(10);
/// The interface's telegrams out of sequence in a row that end the tunnel:
/// one that follows KNX 3.8.4 sends an unacknowledged telegram twice and
/// then closes the tunnel itself, so a third says it went on past a
/// telegram the gateway never got, and will not be heard again.
const OUT_OF_SEQUENCE_LIMIT: u8 = 3;

/// How to reach the interface.
#[derive(Debug, Clone)]
pub struct TunnelSettings {
    pub remote: SocketAddrV4,
    pub tcp: bool,
    pub local_ip: Option<Ipv4Addr>,
    pub nat: bool,
    pub heartbeat: Duration,
    pub timeout: Duration,
    pub max_backoff: Duration,
    /// How long a tunnel may hear nothing before it is connected again;
    /// zero: never.
    pub refresh_after_silence: Duration,
    pub pace: f64,
    pub clock: ArrivalClock,
}

/// How a tunnel ended.
enum End {
    Stop,
    /// Lost: the fault's reason label and what to log. The interface may
    /// still hold the tunnel.
    Lost(&'static str, String),
    /// Lost, and the interface holds the tunnel no more: it closed it, or
    /// said it does not know it.
    Gone(&'static str, String),
    /// No telegram for `refresh_after_silence`, the heartbeat answered.
    Silent,
}

/// A telegram sent and not yet acknowledged.
struct Unacked {
    frame: Vec<u8>,
    outgoing: Outgoing,
    deadline: Instant,
    resent: bool,
}

/// Runs the tunnel until `stop`: connects, reconnects, and serves
/// `outgoing` while connected (failing it at once while not).
pub async fn run(
    s: TunnelSettings,
    mut outgoing: Outbox,
    events: mpsc::Sender<LinkEvent>,
    faults: Faults,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(FIRST_BACKOFF, s.max_backoff);
    let mut pacer = Pacer::new(s.pace);
    let transport = if s.tcp { "TCP" } else { "UDP" };
    // The tunnel a refresh or a loss replaces, kept until its successor
    // connects.
    let mut stale: Option<Connected> = None;
    // A refreshed tunnel is left to expire at the interface, which keeps
    // it for CONNECTION_ALIVE_TIME: refreshes no closer than that hold at
    // most one slot more, whatever `refresh_after_silence` says.
    let mut refresh_not_before = Instant::now();
    loop {
        let attempt = tokio::select! {
            _ = stop.cancelled() => return,
            c = connect(&s) => c,
        };
        match &attempt {
            Err(ConnectError::NoMoreConnections) => {
                if let Some(mut old) = stale.take() {
                    // The old tunnel may hold the last slot: freed for the
                    // new one, which is asked for again at once.
                    disconnect(&mut old).await;
                    continue;
                }
            }
            // Left to expire at the interface.
            Ok(_) => stale = None,
            // Kept for the next try: an interface that did not answer now
            // (paused, or the network cut) may answer next that every slot
            // is taken, ours among them.
            Err(_) => {}
        }
        match attempt {
            Ok(mut c) => {
                let connected_at = Instant::now();
                info!(adapter = %faults.adapter, interface = %s.remote, transport, channel = c.channel, address = %c.address, route_back = matches!(c.wire.route_back(), Some(RouteBack::Learning { .. })), "KNX tunnel connected.");
                if events.send(LinkEvent::Connected(c.address)).await.is_err() {
                    return;
                }
                let end = session(
                    &s,
                    &mut c,
                    &mut outgoing,
                    &events,
                    &faults,
                    &mut pacer,
                    &stop,
                    refresh_not_before,
                )
                .await;
                // Only a tunnel that lasted starts the backoff over: one
                // closed as soon as granted (the interface refusing the
                // gateway after all, a server restarting in a loop) would
                // otherwise be asked for twice a second for good, each
                // grant sending the read_on_start reads to the bus.
                if connected_at.elapsed() >= STABLE_TUNNEL {
                    backoff.reset();
                }
                let held = matches!(end, End::Lost(..));
                match end {
                    End::Stop => {
                        let _ = events.send(LinkEvent::Down("is stopping".into())).await;
                        disconnect(&mut c).await;
                        return;
                    }
                    End::Lost(reason, message) | End::Gone(reason, message) => {
                        let problem = format!("lost its tunnel to the KNXnet/IP interface {} ({transport}): {message}; reconnecting", s.remote);
                        let _ = events.send(LinkEvent::Down(problem)).await;
                        faults.count(reason, format!("KNX tunnel lost: {message}; reconnecting."));
                        // Not disconnected now: a heartbeat unanswered or a
                        // telegram unacknowledged is what a restarted knxd
                        // looks like once it gave this channel to another
                        // client, and knxd would close that client's tunnel
                        // by the channel id alone. Its slot is freed only if
                        // the reconnect finds every slot taken.
                        if held {
                            stale = Some(c);
                        }
                    }
                    End::Silent => {
                        faults.stats.error("silent");
                        let quiet = duration::render(s.refresh_after_silence);
                        info!(adapter = %faults.adapter, interface = %s.remote, transport, channel = c.channel, reason = "silent", "KNX tunnel heard no telegram for {quiet} while its heartbeat was answered; connecting it again, in case a restarted interface gave its channel to another client.");
                        stale = Some(c);
                        refresh_not_before = Instant::now() + CONNECTION_ALIVE_TIME;
                        continue;
                    }
                }
            }
            Err(e) => {
                let problem = format!(
                    "has no tunnel to its KNXnet/IP interface {} ({transport}): {e}",
                    s.remote
                );
                if events.send(LinkEvent::Down(problem)).await.is_err() {
                    return;
                }
                faults.count(
                    e.reason(),
                    format!("KNX tunnel to {} not connected: {e}", s.remote),
                );
            }
        }
        let wait = backoff.next_delay();
        let until = Instant::now() + wait;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = sleep_until(until) => break,
                o = outgoing.recv() => match o {
                    Some(o) => o.fail(SendFailure::NotConnected),
                    None => return,
                },
            }
        }
    }
}

#[allow(clippy::too_many_lines, clippy::too_many_arguments)]
async fn session(
    s: &TunnelSettings,
    c: &mut Connected,
    outgoing: &mut Outbox,
    events: &mpsc::Sender<LinkEvent>,
    faults: &Faults,
    pacer: &mut Pacer,
    stop: &CancellationToken,
    refresh_not_before: Instant,
) -> End {
    let reliable = c.wire.reliable();
    let channel = c.channel;
    let mut tx_seq: u8 = 0;
    let mut rx_seq: u8 = 0;
    // The interface's telegrams out of sequence since its last one in it.
    let mut out_of_sequence: u8 = 0;
    let mut unacked: Option<Unacked> = None;
    let mut unconfirmed: VecDeque<(GroupAddress, Instant, Outgoing)> = VecDeque::new();
    let mut heartbeat_at = Instant::now() + s.heartbeat;
    let silence = (!s.refresh_after_silence.is_zero()).then_some(s.refresh_after_silence);
    // When the interface last sent on this channel: a telegram or an ack.
    let mut heard_at = Instant::now();
    // (answer due by, tries so far) while a CONNECTIONSTATE_REQUEST is out.
    let mut state_due: Option<(Instant, u8)> = None;
    // The error status of the last of those tries the interface answered.
    let mut state_error: Option<u8> = None;
    let mut buf = Vec::with_capacity(1024);
    let mut out = Vec::with_capacity(64);
    let mut cemi_out = Vec::with_capacity(32);
    let end = loop {
        let ack_deadline = unacked.as_ref().map(|u| u.deadline);
        let confirm_deadline = unconfirmed.front().map(|(_, at, _)| *at + CONFIRM_TIMEOUT);
        let state_deadline = state_due.map(|(at, _)| at);
        let paced = pacer.ready_at() > Instant::now();
        let can_send = unacked.is_none() && !paced;
        tokio::select! {
            biased;
            _ = stop.cancelled() => break End::Stop,
            r = c.wire.recv(&mut buf) => {
                let at = s.clock.now();
                match r {
                    Err(e) => break End::Lost("connection_lost", format!("the connection failed: {e}")),
                    Ok(Some(from)) => {
                        faults.count("foreign_datagram", format!("A datagram from {from}, neither the KNXnet/IP interface's control endpoint {} nor its data endpoint, reached the tunnel's socket: dropped unread (another process or host could otherwise close the tunnel or put telegrams on it). If it is the interface sending from another port and the tunnel hears nothing, see docs/knx.md (nat, knxd --multi-port).", s.remote));
                        continue;
                    }
                    Ok(None) => {}
                }
                let f = match frame::decode(&buf) {
                    Ok(f) => f,
                    Err(e) => {
                        faults.count("malformed", format!("A KNXnet/IP frame from the interface did not read: {e}."));
                        continue;
                    }
                };
                match f {
                    Frame::TunnellingRequest { channel: ch, seq, cemi: body } if ch == channel => {
                        heard_at = Instant::now();
                        let fresh = reliable || seq == rx_seq;
                        if !reliable {
                            if fresh || seq == rx_seq.wrapping_sub(1) {
                                out.clear();
                                frame::tunnelling_ack(channel, seq, &mut out);
                                if let Err(e) = c.wire.send_data(&out).await {
                                    break End::Lost("connection_lost", format!("cannot send: {e}"));
                                }
                            } else {
                                faults.count("sequence", format!("A tunnelled telegram came out of order (sequence {seq}, expected {rx_seq}); dropped."));
                                out_of_sequence += 1;
                                // One lost for good, and an interface going
                                // on past it rather than closing the tunnel:
                                // each later one would be dropped too.
                                if out_of_sequence >= OUT_OF_SEQUENCE_LIMIT {
                                    break End::Lost("sequence_lost", format!("the interface's telegrams are out of sequence ({OUT_OF_SEQUENCE_LIMIT} in a row, the last {seq} where {rx_seq} was expected)"));
                                }
                            }
                        }
                        if !fresh {
                            continue;
                        }
                        out_of_sequence = 0;
                        rx_seq = seq.wrapping_add(1);
                        match cemi::decode(body) {
                            Ok(Cemi::LData(f)) if f.code == cemi::L_DATA_CON => {
                                if !confirm(&mut unconfirmed, &f) {
                                    // Some interfaces confirm before they
                                    // acknowledge: the confirmation says
                                    // the request arrived.
                                    if let Some(u) = unacked.take_if(|u| echoes(&f.telegram, &u.outgoing)) {
                                        tx_seq = tx_seq.wrapping_add(1);
                                        unconfirmed.push_back((u.outgoing.destination, Instant::now(), u.outgoing));
                                        confirm(&mut unconfirmed, &f);
                                    }
                                }
                            }
                            Ok(Cemi::LData(f)) if f.code == cemi::L_DATA_IND => {
                                if let Some(t) = GroupTelegram::from_ldata(&f, at) {
                                    if events.send(LinkEvent::Telegram(t)).await.is_err() {
                                        break End::Stop;
                                    }
                                }
                            }
                            Ok(_) => {}
                            Err(e) => faults.count("malformed", format!("A cEMI frame from the interface did not read: {e}.")),
                        }
                    }
                    Frame::TunnellingAck { channel: ch, seq, status } if ch == channel => {
                        heard_at = Instant::now();
                        if seq != tx_seq {
                            continue;
                        }
                        if status != E_NO_ERROR {
                            // Refused, the sequence number not taken: sent
                            // once more with it, and a second refusal ends
                            // the tunnel (KNX 3.8.4 §2.6).
                            let Some(u) = unacked.as_mut() else { continue };
                            let why = format!("{} (status 0x{status:02x})", frame::status_text(status));
                            if u.resent {
                                if let Some(u) = unacked.take() {
                                    u.outgoing.fail(SendFailure::Refused(why.clone()));
                                }
                                break End::Lost("ack_error", format!("the interface refused a telegram twice: {why}"));
                            }
                            faults.count("ack_error", format!("The interface refused the telegram to {}: {why}; sending it once more.", u.outgoing.destination));
                            u.resent = true;
                            u.deadline = Instant::now() + ACK_TIMEOUT;
                            // Past the command's max_age: not sent late; the
                            // next telegram takes the sequence number.
                            if u.outgoing.deadline.is_some_and(|d| Instant::now() >= d) {
                                if let Some(u) = unacked.take() {
                                    u.outgoing.fail(SendFailure::Expired);
                                }
                                continue;
                            }
                            if let Err(e) = c.wire.send_data(&u.frame).await {
                                break End::Lost("connection_lost", format!("cannot send: {e}"));
                            }
                            continue;
                        }
                        let Some(u) = unacked.take() else { continue };
                        tx_seq = tx_seq.wrapping_add(1);
                        unconfirmed.push_back((u.outgoing.destination, Instant::now(), u.outgoing));
                    }
                    Frame::ConnectionStateResponse { channel: ch, status } if ch == channel => {
                        if status == E_CONNECTION_ID {
                            break End::Gone("heartbeat_lost", format!("the interface no longer knows the tunnel: {}", frame::status_text(status)));
                        }
                        if status != E_NO_ERROR {
                            // The tunnel is known and its KNX side or data
                            // connection failing, often for a moment (a bus
                            // power dip): a failed try, repeated when it is
                            // due (KNX 3.8.2 §5.4), not the tunnel's end.
                            state_error = Some(status);
                            continue;
                        }
                        state_due = None;
                        state_error = None;
                        heartbeat_at = Instant::now() + s.heartbeat;
                    }
                    Frame::DisconnectRequest { channel: ch } if ch == channel => {
                        out.clear();
                        frame::disconnect_response(channel, &mut out);
                        let _ = c.wire.send_control(&out).await;
                        break End::Gone("connection_lost", "the interface closed the tunnel (DISCONNECT_REQUEST)".to_string());
                    }
                    _ => {}
                }
            }
            _ = sleep_until(ack_deadline.unwrap_or_else(Instant::now)), if ack_deadline.is_some() => {
                let Some(u) = unacked.as_mut() else { continue };
                if u.resent {
                    if let Some(u) = unacked.take() {
                        u.outgoing.fail(SendFailure::AckMissing);
                    }
                    break End::Lost("ack_missing", "the interface acknowledged no telegram, sent twice (TUNNELLING_ACK missing)".to_string());
                }
                u.resent = true;
                u.deadline = Instant::now() + ACK_TIMEOUT;
                // Past the command's max_age the repeat would be the write
                // itself arriving late: not sent; its ack may still come,
                // and without one the tunnel is given up as after a repeat.
                if u.outgoing.deadline.is_some_and(|d| Instant::now() >= d) {
                    continue;
                }
                if let Err(e) = c.wire.send_data(&u.frame).await {
                    break End::Lost("connection_lost", format!("cannot send: {e}"));
                }
            }
            _ = sleep_until(confirm_deadline.unwrap_or_else(Instant::now)), if confirm_deadline.is_some() => {
                if let Some((ga, _, o)) = unconfirmed.pop_front() {
                    if o.done.is_some() {
                        faults.count("not_confirmed", format!("The interface did not confirm the telegram to {ga} (no L_Data.con)."));
                    }
                    o.fail(SendFailure::NoConfirmation(CONFIRM_TIMEOUT));
                }
            }
            _ = sleep_until(state_deadline.unwrap_or(heartbeat_at)) => {
                let tries = state_due.map_or(0, |(_, t)| t);
                if tries >= HEARTBEAT_TRIES {
                    break End::Lost("heartbeat_lost", match state_error {
                        Some(status) => format!("the interface answered none of {HEARTBEAT_TRIES} CONNECTIONSTATE_REQUESTs with no error (the last answer: {})", frame::status_text(status)),
                        None => format!("the interface answered none of {HEARTBEAT_TRIES} CONNECTIONSTATE_REQUESTs"),
                    });
                }
                out.clear();
                frame::connectionstate_request(channel, c.control, &mut out);
                if let Err(e) = c.wire.send_control(&out).await {
                    break End::Lost("connection_lost", format!("cannot send: {e}"));
                }
                state_due = Some((Instant::now() + s.timeout.min(s.heartbeat), tries + 1));
            }
            // Not while a telegram of ours is under way: its ack or
            // confirmation settles the channel sooner.
            _ = sleep_until((heard_at + silence.unwrap_or_default()).max(refresh_not_before)), if silence.is_some() && unacked.is_none() && unconfirmed.is_empty() => {
                break End::Silent;
            }
            _ = sleep_until(pacer.ready_at()), if paced && unacked.is_none() => {}
            o = outgoing.recv(), if can_send => {
                let Some(o) = o else { break End::Stop };
                pacer.sent();
                cemi_out.clear();
                cemi::encode_group(cemi::L_DATA_REQ, IndividualAddress(0), o.destination, o.service, o.payload.as_ref(), &mut cemi_out);
                let mut f = Vec::with_capacity(cemi_out.len() + 10);
                frame::tunnelling_request(channel, tx_seq, &cemi_out, &mut f);
                if let Err(e) = c.wire.send_data(&f).await {
                    o.fail(SendFailure::ConnectionLost);
                    break End::Lost("connection_lost", format!("cannot send: {e}"));
                }
                if reliable {
                    tx_seq = tx_seq.wrapping_add(1);
                    unconfirmed.push_back((o.destination, Instant::now(), o));
                } else {
                    unacked = Some(Unacked { frame: f, outgoing: o, deadline: Instant::now() + ACK_TIMEOUT, resent: false });
                }
            }
        }
    };
    if let Some(u) = unacked.take() {
        u.outgoing.fail(SendFailure::ConnectionLost);
    }
    for (_, _, o) in unconfirmed.drain(..) {
        o.fail(if matches!(end, End::Stop) {
            SendFailure::Stopping
        } else {
            SendFailure::ConnectionLost
        });
    }
    if let End::Lost(..) | End::Gone(..) = end {
        warn!(adapter = %faults.adapter, "KNX tunnel down.");
    }
    end
}

/// Settles the oldest telegram the L_Data.con echoes; false when none
/// waits for it.
fn confirm(
    unconfirmed: &mut VecDeque<(GroupAddress, Instant, Outgoing)>,
    f: &cemi::LData<'_>,
) -> bool {
    let Some(i) = unconfirmed
        .iter()
        .position(|(_, _, o)| echoes(&f.telegram, o))
    else {
        return false;
    };
    if let Some((_, _, o)) = unconfirmed.remove(i) {
        if f.is_negative_confirmation() {
            o.fail(SendFailure::NotConfirmed);
        } else {
            o.succeed();
        }
    }
    true
}

/// Whether an L_Data.con's telegram is the echo of `o`'s L_Data.req: the
/// same destination, service and data. By destination alone, the late
/// confirmation of a write already failed (no L_Data.con within
/// [`CONFIRM_TIMEOUT`]) settled the next write to that address as `done`,
/// whatever that one's fate. The cEMI frame has nothing more to tell two
/// writes of one value apart, and either's confirmation says that value
/// was sent.
fn echoes(t: &cemi::Telegram<'_>, o: &Outgoing) -> bool {
    let cemi::Telegram::Group {
        destination,
        service,
        data,
    } = *t
    else {
        return false;
    };
    // As `encode_group` puts it on the wire, and `decode` reads it back.
    let sent = match &o.payload {
        None => cemi::Data::Small(0),
        Some(cemi::Payload::Small(v)) => cemi::Data::Small(v & 0x3F),
        Some(cemi::Payload::Bytes(b)) if b.is_empty() => cemi::Data::Small(0),
        Some(cemi::Payload::Bytes(b)) => cemi::Data::Bytes(b),
    };
    destination == o.destination && service == o.service && data == sent
}

#[cfg(test)]
#[path = "tunnel_tests.rs"]
mod tests;
