//! The `semtech_udp` adapter's downlink side: join-accepts, Class A
//! replies (MAC answers, ACKs, queued payloads) and the MQTT feed's and
//! the cloud commands' payloads into the queues (a command's result is
//! settled here once its payload left, or by the TX_ACK, see
//! [`super::super::command`]). Methods of the socket loop's [`Server`],
//! kept apart from its uplink path.

use std::net::SocketAddr;

use gateway_core::command::{Refusal, WriteOutcome};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::super::adr;
use super::super::class_a::{self, Confirmation, Downlink};
use super::super::dedup::Uplink;
use super::super::downlink;
use super::super::downlink_feed::FeedItem;
use super::super::join::Eui;
use super::super::otaa;
use super::super::frame::DataFrame;
use super::super::uplink::Accepted;
use super::{gateway_list, Server};
use gateway_core::DeviceId;

/// Acknowledgements of one confirmed uplink sent again: LoRaWAN 1.0.x
/// devices retry a confirmed uplink up to 8 times.
const MAX_ACKS_AGAIN: u8 = 8;

impl Server {
    pub(super) async fn join(&mut self, up: &Uplink) {
        let result = {
            let links = self
                .links
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            otaa::handle(up, &self.joins, &mut self.store, &links, Instant::now())
        };
        let joined = match result {
            Ok(j) => j,
            Err(otaa::JoinRefused::DevNonceReplay { dev_eui, dev_nonce })
                if self.is_late_copy_of_join(dev_eui, dev_nonce, up) =>
            {
                self.duplicates.inc();
                debug!(adapter = %self.ctx.name, %dev_eui, gateway = %gateway_list(up), "A late copy of the join-request just accepted: a duplicate, not answered again.");
                return;
            }
            Err(e) => return self.report(e.kind(), &gateway_list(up), &e.to_string()),
        };
        self.recent_joins.insert(
            joined.dev_eui,
            (joined.dev_nonce, up.first_heard, joined.device.id.clone()),
        );
        let adapter = self.ctx.name.as_str();
        // Keys stay out of the log: DevEUI, DevAddr and the path only.
        info!(adapter, device = %joined.device.id, dev_eui = %joined.dev_eui, dev_addr = %format!("{:08X}", joined.device.dev_addr), gateway = %joined.link.addr, window = ?joined.slot, "Device joined (OTAA); sending its join-accept.");
        self.ctx
            .telemetry
            .counter("edge_gateway_lorawan_joins_total", &[("adapter", adapter)])
            .inc();
        self.devices.install(joined.device);
        self.token = self.token.wrapping_add(1);
        let token = self.token.to_be_bytes();
        let datagram = downlink::pull_resp(joined.link.version, token, &joined.txpk);
        if let Some(rx2) = &joined.rx2 {
            let fallback = downlink::pull_resp(joined.link.version, token, rx2);
            self.fallback(joined.gateway, token, fallback, joined.link.addr);
        }
        self.send_down(&datagram, joined.link.addr).await;
    }

    /// Whether a join-request refused for its used DevNonce is a copy of
    /// the one last accepted from that device, heard by another forwarder
    /// on a slower backhaul: the same DevNonce, first heard within the
    /// join-accept's windows (RX2 closes 6 s after the request), before
    /// any uplink of the new session. A device never sends one DevNonce
    /// twice, so past those windows, once the device has moved on to its
    /// session, or for any other used DevNonce, it is a replay.
    fn is_late_copy_of_join(&self, dev_eui: Eui, dev_nonce: u16, up: &Uplink) -> bool {
        self.recent_joins
            .get(&dev_eui)
            .is_some_and(|(nonce, heard, device)| {
                *nonce == dev_nonce
                    && up.first_heard.saturating_duration_since(*heard)
                        < downlink::JOIN_ACCEPT_DELAY1 + downlink::RX2_AFTER_RX1
                    && self.store.last(device.as_str()).is_none()
            })
    }

    /// The Class A reply to an accepted uplink, in the device's RX1
    /// window: MAC answers, the ACK of a confirmed uplink, the next queued
    /// payload. Nothing is sent when there is nothing to say. Returns
    /// whether the uplink acknowledged a confirmed downlink, or ended one
    /// that went unacknowledged too many times.
    pub(super) async fn answer(
        &mut self,
        up: &Uplink,
        accepted: &Accepted,
    ) -> Option<Confirmation> {
        let id = accepted.device.as_str();
        let frame = &accepted.frame;
        let adapter = self.ctx.name.as_str();
        let settled = if class_a::acks_downlink(frame) {
            self.queues.ack(id).then_some(Confirmation::Acked)
        } else {
            self.queues.unacked(id).map(|dropped| {
                // Once per dropped payload; its bytes may be a command,
                // so only its port is named.
                warn!(
                    adapter,
                    device = id,
                    port = dropped.port,
                    attempts = class_a::MAX_CONFIRMED_ATTEMPTS,
                    "Confirmed downlink dropped: the device never acknowledged it."
                );
                Confirmation::GaveUp
            })
        };
        let counter = match settled {
            Some(Confirmation::Acked) => {
                info!(
                    adapter,
                    device = id,
                    "Confirmed downlink acknowledged by the device."
                );
                Some("edge_gateway_lorawan_downlinks_confirmed_total")
            }
            Some(Confirmation::GaveUp) => Some("edge_gateway_lorawan_downlinks_unacked_total"),
            None => None,
        };
        if let Some(name) = counter {
            self.ctx
                .telemetry
                .counter(name, &[("adapter", adapter)])
                .inc();
        }
        self.reply(up, accepted).await;
        if class_a::needs_answer(frame) {
            // How it was heard, to tell the device's retry of it from a
            // late copy ([`class_a::Answered::is_retry`]).
            self.acked_again
                .insert(accepted.device.clone(), class_a::Answered::of(frame.fcnt, up));
        }
        settled
    }

    /// A confirmed uplink sent again: the device did not hear our ACK and
    /// retries, and would otherwise retry to the end of its attempts and
    /// report a failure (or rejoin). It is acknowledged again; its readings
    /// were taken the first time. At most [`MAX_ACKS_AGAIN`] times a frame,
    /// so a replay of the frame cannot keep the forwarders transmitting.
    /// A copy of the transmission already answered, heard by one more
    /// forwarder after the de-duplication window, is no retry and gets
    /// nothing (it is counted as a retransmission by the caller).
    pub(super) async fn ack_again(&mut self, up: &Uplink, device: DeviceId, mut frame: DataFrame) {
        let rx1_delay = self
            .devices
            .get(frame.dev_addr, device.as_str())
            .map_or(downlink::RX1_DELAY, |d| d.rx1_delay);
        let rx2_end = downlink::slot_delay(downlink::Slot::Rx2, rx1_delay);
        // No record of this counter (the gateway restarted since): a retry.
        let times = match self.acked_again.get(&device) {
            Some(answered) if answered.fcnt == frame.fcnt => {
                if !answered.is_retry(up, rx2_end) {
                    debug!(adapter = %self.ctx.name, %device, fcnt = frame.fcnt, gateway = %gateway_list(up), "A late copy of a confirmed uplink already answered: not answered again.");
                    return;
                }
                answered.acks_again
            }
            _ => 0,
        };
        if times >= MAX_ACKS_AGAIN {
            return;
        }
        // Late copies of this retry are judged from it on.
        let mut answered = class_a::Answered::of(frame.fcnt, up);
        answered.acks_again = times + 1;
        self.acked_again.insert(device.clone(), answered);
        // Its MAC commands were answered, and its ADR request judged, the
        // first time.
        frame.mac_commands.clear();
        frame.mac_unparsed.clear();
        frame.fctrl &= !0x80;
        debug!(adapter = %self.ctx.name, %device, fcnt = frame.fcnt, "A confirmed uplink sent again: acknowledging it again.");
        self.ctx
            .telemetry
            .counter(
                "edge_gateway_lorawan_acks_again_total",
                &[("adapter", self.ctx.name.as_str())],
            )
            .inc();
        let accepted = Accepted {
            device,
            fcnt: frame.fcnt,
            reset: false,
            frame,
            readings: Vec::new(),
            codec_error: None,
            script: None,
        };
        self.reply(up, &accepted).await;
    }

    pub(super) async fn reply(&mut self, up: &Uplink, accepted: &Accepted) {
        let id = accepted.device.as_str();
        let frame = &accepted.frame;
        // Nothing below would be sent, nor anything changed.
        if class_a::stays_silent(frame, self.queues.len(id)) {
            return;
        }
        // The keys the uplink verified with: an ABP device's fixed ones, or
        // a joined device's current session.
        let Some(device) = self.devices.get(frame.dev_addr, id) else {
            return;
        };
        let (dev_addr, nwk_s_key, app_s_key, rx1_delay) = (
            device.dev_addr,
            device.nwk_s_key,
            device.app_s_key,
            device.rx1_delay,
        );
        let now = Instant::now();
        let path = {
            let links = self
                .links
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            downlink::best(&up.heard, &links, now).map(|(h, l)| (h.clone(), l))
        };
        let region = self.joins.network.region;
        let datr = path.as_ref().and_then(|(h, _)| h.datr.as_deref());
        let otaa = self.joins.by_id(id).map(|d| d.dev_eui);
        // Downlinks nobody asked for (DevStatusReq) only go to joined
        // devices: an ABP fleet may sit behind forwarders that were never
        // meant to transmit, and gets replies only to what it sends.
        let mut fopts = class_a::mac_answers(
            frame,
            otaa.is_some(),
            region,
            datr,
            up.snr,
            up.gateways().len(),
            up.received,
        );
        for cmd in frame.mac_commands.iter().filter(|c| c.cid == adr::LINK_ADR) {
            if let Some(&status) = cmd.payload.first() {
                if !self.adr.answered(id, status) {
                    self.report(
                        "adr_refused",
                        id,
                        &format!("LinkADRAns status {status:#04x}"),
                    );
                }
            }
        }
        // The device asks for ADR with FCtrl bit 7.
        if frame.fctrl & 0x80 != 0 {
            let dr = datr.and_then(|d| region.uplink_dr(d));
            let freq = path.as_ref().and_then(|(h, _)| h.freq);
            if let (Some(dr), Some(snr)) = (dr, up.snr) {
                if let Some(req) = self.adr.observe(region, id, dr, freq, snr) {
                    if fopts.len() + req.len() <= 15 {
                        fopts.extend_from_slice(&req);
                    }
                }
            }
        }
        // Payloads of commands that gave up waiting are not sent.
        let waiting = std::sync::Arc::clone(&self.waiting);
        self.queues
            .retain(id, |q| q.ticket.is_none_or(|t| waiting.is_open(t)));
        let wants_reply =
            !fopts.is_empty() || class_a::needs_answer(frame) || self.queues.len(id) > 0;
        if !wants_reply {
            return;
        }
        let Some((heard, link)) = path else {
            let e = downlink::ScheduleError::NoPath;
            return self.report(e.kind(), &gateway_list(up), &format!("device {id}: {e}"));
        };
        let queued = self
            .queues
            .next(id)
            // On air in RX1 at the soonest.
            .filter(|q| {
                q.ticket
                    .is_none_or(|t| self.waiting.claim(t, up.first_heard + rx1_delay))
            });
        let ticket = queued.as_ref().and_then(|q| q.ticket);
        // Only the queued command wanted a reply, and it is too late for
        // any window: nothing to send (an empty frame would spend a
        // downlink counter and airtime for nothing).
        if queued.is_none() && fopts.is_empty() && !class_a::needs_answer(frame) {
            return;
        }
        let taken = match otaa {
            Some(dev_eui) => self.store.take_fcnt_down(dev_eui),
            None => self.store.take_abp_fcnt_down(id),
        };
        let fcnt = match taken {
            Ok(f) => f,
            Err(e) => {
                self.fail_command(ticket, "fcnt_store", &e.to_string());
                return self.report("downlink_fcnt_store", id, &e.to_string());
            }
        };
        let phy = Downlink {
            dev_addr,
            fcnt,
            ack: class_a::needs_answer(frame),
            fopts: &fopts,
            payload: queued.as_ref().map(|q| (q.port, q.data.as_slice())),
            confirmed: queued.as_ref().is_some_and(|q| q.confirmed),
        }
        .seal(&nwk_s_key, &app_s_key);
        let elapsed = now.saturating_duration_since(up.first_heard);
        match downlink::schedule(region, &heard, rx1_delay, elapsed, &phy) {
            // The frame carries the command's payload: none of it leaves
            // past the command's max_age (its MAC answers wait for the
            // next uplink).
            Ok((_, slot))
                if ticket.is_some_and(|t| {
                    let on_air = up.first_heard + downlink::slot_delay(slot, rx1_delay);
                    self.waiting.expired_since_claim(t, on_air)
                }) =>
            {
                self.report(
                    "downlink_expired",
                    id,
                    "the command's max_age passed before its downlink left: not sent",
                );
            }
            Ok((txpk, slot)) => {
                debug!(adapter = %self.ctx.name, device = id, fcnt_down = fcnt, window = ?slot, mac_bytes = fopts.len(), "Class A downlink.");
                self.token = self.token.wrapping_add(1);
                let token = self.token.to_be_bytes();
                let datagram = downlink::pull_resp(link.version, token, &txpk);
                if slot == downlink::Slot::Rx1 {
                    if let Some(rx2) = downlink::rx2_of(region, &heard, rx1_delay, &phy) {
                        let fallback = downlink::pull_resp(link.version, token, &rx2);
                        self.fallback(heard.gateway, token, fallback, link.addr);
                    }
                }
                // The token is the command's before the datagram leaves:
                // the forwarder's TX_ACK comes back on the receive loop, which
                // can take it before this task runs again, and a TX_ACK for
                // an unknown token was dropped (a command sent and
                // acknowledged then failed as "sent no TX_ACK").
                if let Some(t) = ticket.filter(|_| link.version != 1) {
                    let rx2_on_air = (slot == downlink::Slot::Rx1).then(|| {
                        up.first_heard + downlink::slot_delay(downlink::Slot::Rx2, rx1_delay)
                    });
                    self.waiting.sent(t, heard.gateway, token, rx2_on_air);
                }
                let sent = self.send_down(&datagram, link.addr).await;
                if let Some(t) = ticket {
                    match (sent, link.version) {
                        (false, _) => {
                            self.fail_command(ticket, "connection", "cannot send to the forwarder")
                        }
                        // Protocol v1 has no TX_ACK: handed over is all
                        // the forwarder will say.
                        (true, 1) => self.waiting.resolve(t, WriteOutcome::Done { value: None }),
                        (true, _) => {}
                    }
                }
            }
            Err(e) => {
                self.fail_command(ticket, e.kind(), &e.to_string());
                self.report(e.kind(), &gateway_list(up), &format!("device {id}: {e}"));
            }
        }
    }

    /// Fails the command whose payload was taken from the queue and then
    /// could not be sent.
    fn fail_command(&self, ticket: Option<u64>, reason: &'static str, detail: &str) {
        if let Some(t) = ticket {
            self.waiting.resolve(
                t,
                WriteOutcome::Failed(Refusal::new(reason, format!("not transmitted: {detail}"))),
            );
        }
    }

    /// An application downlink from the feed or a command, into its
    /// device's queue.
    pub(super) fn queue_downlink(&mut self, (device, parsed): FeedItem) {
        let item = match parsed {
            Ok(item) => item,
            Err(e) => return self.report("downlink_invalid", &device, &e.to_string()),
        };
        let refuse = |reason: &'static str, detail: String| {
            if let Some(t) = item.ticket {
                self.waiting
                    .resolve(t, WriteOutcome::Refused(Refusal::new(reason, detail)));
            }
        };
        if self.joins.by_id(&device).is_none() && !self.devices.has_id(&device) {
            refuse("not_writable", "not a device of [[lorawan.device]]".into());
            return self.report(
                "downlink_unknown_device",
                &device,
                "downlinks go to devices of [[lorawan.device]], by id",
            );
        }
        // Withdrawn commands' payloads make no room for a silent device.
        let waiting = std::sync::Arc::clone(&self.waiting);
        self.queues
            .retain(&device, |q| q.ticket.is_none_or(|t| waiting.is_open(t)));
        match self.queues.push(&device, item.clone()) {
            Ok(()) => {
                info!(adapter = %self.ctx.name, device, port = item.port, bytes = item.data.len(), confirmed = item.confirmed, command = item.ticket.is_some(), "Downlink queued for the device's next uplink.")
            }
            Err(e) => {
                let reason = match e {
                    class_a::QueueError::Full(_) => "queue_full",
                    class_a::QueueError::Port(_) | class_a::QueueError::TooLong(_) => {
                        "out_of_range"
                    }
                };
                refuse(reason, e.to_string());
                self.report("downlink_refused", &device, &e.to_string());
            }
        }
    }

    fn fallback(
        &self,
        gateway: crate::lorawan::semtech::GatewayEui,
        token: [u8; 2],
        datagram: Vec<u8>,
        addr: SocketAddr,
    ) {
        self.links
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .fallback(gateway, token, datagram, addr, Instant::now());
    }

    /// Whether the datagram left.
    pub(super) async fn send_down(&self, datagram: &[u8], addr: SocketAddr) -> bool {
        match self.socket.send_to(datagram, addr).await {
            Ok(_) => {
                self.ctx
                    .telemetry
                    .counter(
                        "edge_gateway_lorawan_downlinks_total",
                        &[("adapter", self.ctx.name.as_str())],
                    )
                    .inc();
                true
            }
            Err(e) => {
                self.report("downlink_send", &addr.to_string(), &e.to_string());
                false
            }
        }
    }
}
