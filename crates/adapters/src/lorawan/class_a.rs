//! Class A data downlinks: what goes into the RX1 window after an uplink of
//! a joined device. The answers to its MAC commands (in FOpts), the ACK of
//! a confirmed uplink, and the next application payload of its queue.
//!
//! LinkCheckAns (spec §5.2): the demodulation margin (the uplink's SNR
//! above what its data rate needs) and how many gateways heard it.
//! DeviceTimeAns (spec 1.0.3 §5.9): GPS time of the end of the uplink,
//! seconds and 1/256 s, which is when the first forwarder heard it.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use gateway_core::Timestamp;
use tokio::time::Instant;

use super::crypto::{data_mic, frm_cipher, Direction};
use super::dedup::Uplink;
use super::frame::{DataFrame, Key, MType};
use super::region::Region;
use super::semtech::GatewayEui;

/// LinkCheckReq / LinkCheckAns CID.
const LINK_CHECK: u8 = 0x02;
/// DeviceTimeReq / DeviceTimeAns CID.
const DEVICE_TIME: u8 = 0x0D;
/// DevStatusReq / DevStatusAns CID.
const DEV_STATUS: u8 = 0x06;
/// A DevStatusReq rides on the downlink after every this many uplinks
/// (FCnt 1, 65, 129, …): battery and margin a few times a day for a
/// sensor sending every few minutes, one forced downlink each.
const DEV_STATUS_EVERY: u32 = 64;
/// GPS epoch (1980-01-06T00:00:00Z) in Unix seconds.
const GPS_EPOCH_UNIX_S: i64 = 315_964_800;
/// GPS − UTC since 2017-01-01 (IERS Bulletin C: no leap second announced
/// since). A new one means updating this constant.
const GPS_LEAP_SECONDS: i64 = 18;
/// Largest FRMPayload sent (EU868 DR0–DR2 allow 51 bytes with FOpts
/// empty; the smallest of the regions' limits keeps any window valid.
/// Not covered: an AS923 device applying the 400 ms downlink dwell time
/// takes only 11 bytes at DR2).
pub const MAX_PAYLOAD: usize = 51;

/// An application payload waiting for the device's next uplink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub port: u8,
    pub data: Vec<u8>,
    pub confirmed: bool,
    /// The cloud command this payload carries, whose result waits for it
    /// to leave ([`super::command`]); `None` from the downlink topic.
    pub ticket: Option<u64>,
}

/// Times a confirmed payload is sent before it is given up. A Class A
/// device only listens right after it transmits, so each attempt is one of
/// its uplinks: 8 is minutes to hours of a sensor's traffic, enough to ride
/// out a few lost downlinks, while a device that still has not ACKed is
/// not hearing us (out of the gateway's downlink range, or listening at
/// other settings) and its head would otherwise block every payload queued
/// behind it.
pub const MAX_CONFIRMED_ATTEMPTS: u32 = 8;

/// Per-device queues. A confirmed payload stays at the head until the
/// device ACKs it, and is sent again after each uplink until then, at most
/// [`MAX_CONFIRMED_ATTEMPTS`] times.
#[derive(Debug, Default)]
pub struct Queues {
    by_device: HashMap<String, VecDeque<Queued>>,
    /// Devices whose confirmed head was sent and awaits their ACK: how many
    /// times it was.
    sent: HashMap<String, u32>,
}

/// What became of a device's confirmed downlink at one of its uplinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// The uplink acknowledged it.
    Acked,
    /// It went out [`MAX_CONFIRMED_ATTEMPTS`] times unacknowledged and was
    /// dropped.
    GaveUp,
}

impl Confirmation {
    /// The reading of the device that reports it upstream (value 1).
    pub fn reading(self) -> &'static str {
        match self {
            Self::Acked => "downlink_acked",
            Self::GaveUp => "downlink_failed",
        }
    }
}

/// A payload the queue refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("FPort {0} is not an application port (1–223)")]
    Port(u8),
    #[error("payload of {0} bytes, at most {MAX_PAYLOAD} fit every data rate")]
    TooLong(usize),
    #[error("the device already has {0} downlinks waiting")]
    Full(usize),
}

/// Downlinks queued per device at most: a device that never uplinks must
/// not grow memory without bound.
pub const MAX_QUEUED: usize = 16;

impl Queues {
    /// Queues `item` for `device`.
    ///
    /// # Errors
    /// A [`QueueError`]; nothing is queued then.
    pub fn push(&mut self, device: &str, item: Queued) -> Result<(), QueueError> {
        if !(1..=223).contains(&item.port) {
            return Err(QueueError::Port(item.port));
        }
        if item.data.len() > MAX_PAYLOAD {
            return Err(QueueError::TooLong(item.data.len()));
        }
        let queue = self.by_device.entry(device.to_string()).or_default();
        if queue.len() >= MAX_QUEUED {
            return Err(QueueError::Full(queue.len()));
        }
        queue.push_back(item);
        Ok(())
    }

    /// The device acknowledged a downlink: a confirmed head leaves the
    /// queue. Returns whether there was one.
    pub fn ack(&mut self, device: &str) -> bool {
        let Some(queue) = self.by_device.get_mut(device) else {
            return false;
        };
        let sent = self.sent.remove(device).is_some();
        if sent && queue.front().is_some_and(|q| q.confirmed) {
            queue.pop_front();
            return true;
        }
        false
    }

    /// An uplink of `device` without the ACK bit: a confirmed head already
    /// sent [`MAX_CONFIRMED_ATTEMPTS`] times leaves the queue and is
    /// returned. Only an uplink can tell, as the last attempt's ACK would
    /// come in it.
    pub fn unacked(&mut self, device: &str) -> Option<Queued> {
        let attempts = self.sent.get(device).copied()?;
        if attempts < MAX_CONFIRMED_ATTEMPTS {
            return None;
        }
        self.sent.remove(device);
        let queue = self.by_device.get_mut(device)?;
        queue
            .front()
            .is_some_and(|q| q.confirmed)
            .then(|| queue.pop_front())
            .flatten()
    }

    /// The payload to send now: a confirmed head stays until acknowledged
    /// (so it is sent again after the next uplink), an unconfirmed one
    /// leaves the queue.
    pub fn next(&mut self, device: &str) -> Option<Queued> {
        let queue = self.by_device.get_mut(device)?;
        match queue.front() {
            Some(q) if q.confirmed => {
                let attempts = self.sent.entry(device.to_string()).or_insert(0);
                *attempts = attempts.saturating_add(1);
                Some(q.clone())
            }
            Some(_) => queue.pop_front(),
            None => None,
        }
    }

    pub fn len(&self, device: &str) -> usize {
        self.by_device.get(device).map_or(0, VecDeque::len)
    }

    /// Keeps only the payloads of `device` for which `keep` holds (a
    /// command's payload leaves once its command gave up waiting).
    pub fn retain(&mut self, device: &str, keep: impl FnMut(&Queued) -> bool) {
        if let Some(queue) = self.by_device.get_mut(device) {
            queue.retain(keep);
        }
    }
}

/// FOpts answers to the MAC commands of `frame`, and, when `ask_status`,
/// the periodic DevStatusReq.
pub fn mac_answers(
    frame: &DataFrame,
    ask_status: bool,
    region: Region,
    datr: Option<&str>,
    snr: Option<f64>,
    gateways: usize,
    received: Timestamp,
) -> Vec<u8> {
    let mut out = Vec::new();
    // A request repeated in one uplink is answered once: the answers would
    // be the same, and FOpts has room for few.
    let mut answered = Vec::new();
    for cmd in &frame.mac_commands {
        if answered.contains(&cmd.cid) {
            continue;
        }
        answered.push(cmd.cid);
        match cmd.cid {
            LINK_CHECK => {
                let required = datr
                    .and_then(|d| region.uplink_dr(d))
                    .and_then(|dr| region.required_snr(dr));
                let margin = match (snr, required) {
                    (Some(s), Some(r)) => (s - r).clamp(0.0, 254.0) as u8,
                    _ => 0,
                };
                let count = u8::try_from(gateways).unwrap_or(u8::MAX);
                push_whole(&mut out, &[LINK_CHECK, margin, count]);
            }
            DEVICE_TIME => {
                let (seconds, fraction) = gps_time(received);
                let [a, b, c, d] = seconds.to_le_bytes();
                push_whole(&mut out, &[DEVICE_TIME, a, b, c, d, fraction]);
            }
            _ => {}
        }
    }
    if ask_status && frame.fcnt % DEV_STATUS_EVERY == 1 {
        push_whole(&mut out, &[DEV_STATUS]);
    }
    out
}

/// Appends one MAC command to FOpts if all of it fits in the 15 bytes:
/// cut short, it would make the device misread the rest of the frame.
fn push_whole(fopts: &mut Vec<u8>, command: &[u8]) {
    if fopts.len() + command.len() <= MAX_FOPTS {
        fopts.extend_from_slice(command);
    }
}

/// FOpts' room (FCtrl's FOptsLen is four bits).
const MAX_FOPTS: usize = 15;

/// The readings of a DevStatusAns in the uplink: `battery_level` (%, from
/// 1–254; 0 is external power and 255 "cannot measure", both left out)
/// and `link_margin` (dB, the SNR of our last downlink above the
/// device's demodulation floor, 6-bit signed).
pub fn dev_status_readings(frame: &DataFrame) -> Vec<(&'static str, f64)> {
    let mut out = Vec::new();
    for cmd in frame.mac_commands.iter().filter(|c| c.cid == DEV_STATUS) {
        let [battery, margin] = cmd.payload[..] else {
            continue;
        };
        if (1..=254).contains(&battery) {
            out.push(("battery_level", f64::from(battery - 1) / 253.0 * 100.0));
        }
        // Sign-extend the 6-bit two's complement.
        let margin = i8::try_from(margin & 0x3F).unwrap_or(0);
        let margin = if margin >= 32 { margin - 64 } else { margin };
        out.push(("link_margin", f64::from(margin)));
    }
    out
}

/// GPS time of `t`: whole seconds (wrapping at 2^32) and 1/256 s.
pub fn gps_time(t: Timestamp) -> (u32, u8) {
    let ms = t.as_millis();
    let unix_s = ms.div_euclid(1000);
    let gps = unix_s - GPS_EPOCH_UNIX_S + GPS_LEAP_SECONDS;
    let fraction = (ms.rem_euclid(1000) * 256 / 1000) as u8;
    (gps as u32, fraction)
}

/// What one data downlink carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downlink<'a> {
    pub dev_addr: u32,
    pub fcnt: u32,
    /// Acknowledges a confirmed uplink.
    pub ack: bool,
    /// MAC commands, at most 15 bytes.
    pub fopts: &'a [u8],
    /// FPort and application payload.
    pub payload: Option<(u8, &'a [u8])>,
    pub confirmed: bool,
}

impl Downlink<'_> {
    /// The PHYPayload: FRMPayload encrypted with the AppSKey, MIC with the
    /// NwkSKey, both in the downlink direction.
    pub fn seal(&self, nwk_s_key: &Key, app_s_key: &Key) -> Vec<u8> {
        let mtype = if self.confirmed { 0b101 } else { 0b011 };
        let fopts = &self.fopts[..self.fopts.len().min(15)];
        let mut phy = vec![mtype << 5];
        phy.extend_from_slice(&self.dev_addr.to_le_bytes());
        let fctrl = (u8::from(self.ack) << 5) | fopts.len() as u8;
        phy.push(fctrl);
        phy.extend_from_slice(&(self.fcnt as u16).to_le_bytes());
        phy.extend_from_slice(fopts);
        if let Some((port, data)) = self.payload {
            phy.push(port);
            phy.extend(frm_cipher(
                app_s_key,
                Direction::Down,
                self.dev_addr,
                self.fcnt,
                data,
            ));
        }
        let mic = data_mic(nwk_s_key, Direction::Down, self.dev_addr, self.fcnt, &phy);
        phy.extend_from_slice(&mic);
        phy
    }
}

/// A confirmed uplink as it was answered: what tells the device's own
/// retry of it apart from a late copy of the transmission already
/// answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Answered {
    /// The uplink's full counter.
    pub fcnt: u32,
    /// When its first copy arrived here.
    pub first_heard: Instant,
    /// Each forwarder that heard it, with its concentrator counter.
    pub tmst: Vec<(GatewayEui, Option<u32>)>,
    /// Acknowledgements sent again for this counter.
    pub acks_again: u8,
}

impl Answered {
    /// The transmission `up` as answered.
    pub fn of(fcnt: u32, up: &Uplink) -> Self {
        Self {
            fcnt,
            first_heard: up.first_heard,
            tmst: up.heard.iter().map(|h| (h.gateway, h.tmst)).collect(),
            acks_again: 0,
        }
    }

    /// Whether `copy`, a frame with this counter again, is a new
    /// transmission of it by the device rather than the one already
    /// answered, heard by one more forwarder after the de-duplication
    /// window (a slow backhaul, a forwarder's own queue). A Class A device
    /// sends a confirmed uplink again only once its RX2 window has closed
    /// (`rx2_end` after the end of the uplink; LoRaWAN 1.0.x §18.1 adds
    /// ACK_TIMEOUT, 1 to 3 s): a copy from before then is the same
    /// transmission. Answered again, it cost a second downlink counter and
    /// a second frame in the same window through another forwarder (the
    /// two collide at the device), carrying the next queued payload with
    /// it, which the device never heard yet counted as sent.
    ///
    /// A forwarder that heard both tells by its own counter (`tmst`, µs,
    /// wrapping at 2^32); otherwise the arrival times here tell.
    pub fn is_retry(&self, copy: &Uplink, rx2_end: Duration) -> bool {
        let gap_us = u32::try_from(rx2_end.as_micros()).unwrap_or(u32::MAX);
        let same_forwarder = copy.heard.iter().find_map(|h| {
            let then = self
                .tmst
                .iter()
                .find(|(gateway, _)| *gateway == h.gateway)
                .and_then(|(_, t)| *t)?;
            Some(h.tmst?.wrapping_sub(then))
        });
        match same_forwarder {
            Some(elapsed_us) => elapsed_us >= gap_us,
            None => copy.first_heard.saturating_duration_since(self.first_heard) >= rx2_end,
        }
    }
}

/// Whether an uplink certainly gets no reply, told from the frame and the
/// device's queue length alone: no MAC command (answers, LinkADRAns), no
/// ADR request (FCtrl bit 7), not confirmed, nothing queued, and no
/// DevStatusReq due by its counter. Most uplinks are such, and the
/// general path looked up the device, locked the forwarders' table and
/// chose a path before finding it had nothing to send: about a tenth of
/// the adapter's instructions an uplink (callgrind, issue 69).
pub fn stays_silent(frame: &DataFrame, queued: usize) -> bool {
    frame.mac_commands.is_empty()
        && frame.fctrl & 0x80 == 0
        && !needs_answer(frame)
        && queued == 0
        && frame.fcnt % DEV_STATUS_EVERY != 1
}

/// Whether the uplink asks for an answer even with nothing queued.
pub fn needs_answer(frame: &DataFrame) -> bool {
    frame.mtype == MType::ConfirmedDataUp
}

/// The ACK bit of an uplink's FCtrl: the device received our last
/// confirmed downlink.
pub fn acks_downlink(frame: &DataFrame) -> bool {
    frame.fctrl & 0x20 != 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::lorawan::frame::{open, MType};
    use crate::lorawan::mac::MacCommand;

    fn keys() -> (Key, Key) {
        (
            "2b7e151628aed2a6abf7158809cf4f3c".parse().unwrap(),
            "000102030405060708090a0b0c0d0e0f".parse().unwrap(),
        )
    }

    #[test]
    fn a_downlink_verifies_and_decrypts_with_the_lorawan_crate() {
        let (nwk, app) = keys();
        let fopts = [LINK_CHECK, 12, 2];
        let down = Downlink {
            dev_addr: 0x2600_0001,
            fcnt: 70_000,
            ack: true,
            fopts: &fopts,
            payload: Some((10, b"open valve")),
            confirmed: true,
        };
        let phy = down.seal(&nwk, &app);
        // The `lorawan` crate, not our code, checks MIC and decrypts.
        let frame = open(&phy, &nwk, &app, 70_000).unwrap();
        assert_eq!(frame.mtype, MType::ConfirmedDataDown);
        assert_eq!(frame.fport, Some(10));
        assert_eq!(frame.payload[..], b"open valve"[..]);
        assert_eq!(frame.fctrl & 0x20, 0x20, "ACK");
        assert_eq!(frame.mac_commands[0].name, "LinkCheckAns");
        assert_eq!(frame.mac_commands[0].payload, [12, 2]);
        assert!(
            open(&phy, &nwk, &app, 70_001).is_err(),
            "the full FCnt is in the MIC"
        );
    }

    fn frame_with(cids: &[u8]) -> DataFrame {
        DataFrame {
            mtype: MType::UnconfirmedDataUp,
            dev_addr: 1,
            fctrl: 0,
            fcnt16: 0,
            fcnt: 0,
            mac_commands: cids
                .iter()
                .map(|&cid| MacCommand {
                    cid,
                    name: "",
                    payload: Vec::new(),
                })
                .collect(),
            mac_unparsed: Vec::new(),
            fport: None,
            payload: Default::default(),
            mic: [0; 4],
        }
    }

    /// Whatever [`stays_silent`] lets go unanswered, the general path
    /// would not answer either: no FOpts (a DevStatusReq asked for), no
    /// ACK, no payload, no ADR request. Random frames of every kind.
    #[test]
    fn an_uplink_let_go_silent_has_nothing_the_general_path_would_send() {
        let t = Timestamp::from_millis(1_767_225_600_500).unwrap();
        let cids = [LINK_CHECK, DEVICE_TIME, DEV_STATUS, adr_cid(), 0x04];
        let mut next = crate::test_rng::xorshift(0x2545_F491_4F6C_DD1D);
        let (mut silent, mut spoken) = (0, 0);
        for _ in 0..20_000 {
            let r = next();
            let n = (r % 3) as usize;
            let chosen: Vec<u8> = (0..n).map(|i| cids[(r >> (8 + 4 * i)) as usize % cids.len()]).collect();
            let mut frame = frame_with(&chosen);
            frame.fctrl = (r >> 24) as u8;
            frame.fcnt = match (r >> 32) % 4 {
                0 => ((r >> 40) as u32) * DEV_STATUS_EVERY + 1,
                _ => (r >> 36) as u32,
            };
            frame.mtype = if (r >> 34) & 1 == 1 {
                MType::ConfirmedDataUp
            } else {
                MType::UnconfirmedDataUp
            };
            let queued = usize::from((r >> 35) & 3 == 0);
            if stays_silent(&frame, queued) {
                silent += 1;
                let fopts = mac_answers(&frame, true, Region::Eu868, Some("SF7BW125"), Some(3.0), 2, t);
                assert!(fopts.is_empty(), "{frame:?} would be answered: {fopts:?}");
                assert!(!needs_answer(&frame) && queued == 0 && frame.fctrl & 0x80 == 0);
                assert!(frame.mac_commands.iter().all(|c| c.cid != adr_cid()));
            } else {
                spoken += 1;
            }
        }
        assert!(silent > 500 && spoken > 500, "{silent} {spoken}");
        let mut plain = frame_with(&[]);
        plain.fcnt = 2;
        assert!(stays_silent(&plain, 0));
        plain.fcnt = 1 + DEV_STATUS_EVERY;
        assert!(!stays_silent(&plain, 0), "a DevStatusReq is due");
    }

    fn adr_cid() -> u8 {
        crate::lorawan::adr::LINK_ADR
    }

    #[test]
    fn link_check_and_device_time_are_answered() {
        // 2026-01-01T00:00:00.500Z: GPS seconds = unix − 315 964 800 + 18.
        let t = Timestamp::from_millis(1_767_225_600_500).unwrap();
        let mut frame = frame_with(&[LINK_CHECK, DEVICE_TIME]);
        frame.fcnt = 1;
        let fopts = mac_answers(
            &frame,
            true,
            Region::Eu868,
            Some("SF9BW125"),
            Some(-2.5),
            3,
            t,
        );
        // SF9 needs −12.5 dB: a margin of 10 dB; three gateways.
        assert_eq!(&fopts[..3], &[LINK_CHECK, 10, 3]);
        let gps = 1_767_225_600u32 - 315_964_800 + 18;
        assert_eq!(fopts[3], DEVICE_TIME);
        assert_eq!(&fopts[4..8], &gps.to_le_bytes());
        assert_eq!(fopts[8], 128, "half a second");
        assert_eq!(fopts[9..], [DEV_STATUS], "FCnt 1: battery asked for");
        let mut later = frame_with(&[0x03]);
        later.fcnt = 2;
        assert!(mac_answers(&later, true, Region::Eu868, None, None, 1, t).is_empty());
        assert_eq!(
            mac_answers(&frame, false, Region::Eu868, None, None, 1, t).len(),
            9,
            "no DevStatusReq: the device's own requests only"
        );
    }

    #[test]
    fn answers_that_do_not_fit_whole_are_left_out_and_repeats_answered_once() {
        let t = Timestamp::from_millis(1_767_225_600_500).unwrap();
        // Three DeviceTimeReq and two LinkCheckReq: one answer each (9
        // bytes), never a command cut at the 15th byte.
        let mut frame = frame_with(&[DEVICE_TIME, DEVICE_TIME, LINK_CHECK, DEVICE_TIME, LINK_CHECK]);
        frame.fcnt = 1;
        let fopts = mac_answers(&frame, true, Region::Eu868, None, None, 1, t);
        assert_eq!(fopts.len(), 6 + 3 + 1, "{fopts:02x?}");
        assert_eq!(fopts[0], DEVICE_TIME);
        assert_eq!(fopts[6], LINK_CHECK);
        assert_eq!(fopts[9], DEV_STATUS);
        let mut full = vec![0u8; 14];
        push_whole(&mut full, &[DEVICE_TIME, 1, 2, 3, 4, 5]);
        assert_eq!(full.len(), 14, "a 6-byte answer does not fit in the last byte");
        push_whole(&mut full, &[DEV_STATUS]);
        assert_eq!(full.len(), 15);
    }

    #[test]
    fn dev_status_answers_become_battery_and_margin() {
        let mut frame = frame_with(&[]);
        frame.mac_commands.push(MacCommand {
            cid: DEV_STATUS,
            name: "DevStatusAns",
            payload: vec![254, 0x3E],
        });
        assert_eq!(
            dev_status_readings(&frame),
            [("battery_level", 100.0), ("link_margin", -2.0)]
        );
        frame.mac_commands[0].payload = vec![0, 20];
        assert_eq!(
            dev_status_readings(&frame),
            [("link_margin", 20.0)],
            "external power"
        );
    }

    #[test]
    fn confirmed_payloads_stay_until_acked() {
        let mut q = Queues::default();
        let item = |port, confirmed| Queued {
            port,
            data: vec![1],
            confirmed,
            ticket: None,
        };
        q.push("d", item(1, true)).unwrap();
        q.push("d", item(2, false)).unwrap();
        assert_eq!(q.push("d", item(0, false)), Err(QueueError::Port(0)));
        let long = Queued {
            data: vec![0; 52],
            ..item(1, false)
        };
        assert_eq!(q.push("d", long), Err(QueueError::TooLong(52)));
        assert!(!q.ack("d"), "an ACK before the confirmed head was sent");
        assert_eq!(q.next("d").unwrap().port, 1);
        assert_eq!(q.next("d").unwrap().port, 1, "retried: no ACK");
        assert!(q.ack("d"));
        assert_eq!(q.next("d").unwrap().port, 2);
        assert_eq!(q.len("d"), 0);
        assert!(!q.ack("d"));
        assert_eq!(q.next("d"), None);
    }

    #[test]
    fn an_unacknowledged_confirmed_payload_is_given_up_after_its_attempts() {
        let mut q = Queues::default();
        let item = |port, confirmed| Queued {
            port,
            data: vec![1],
            confirmed,
            ticket: None,
        };
        q.push("d", item(1, true)).unwrap();
        q.push("d", item(2, false)).unwrap();
        assert_eq!(q.unacked("d"), None, "not sent yet");
        for attempt in 1..MAX_CONFIRMED_ATTEMPTS {
            assert_eq!(q.next("d").unwrap().port, 1);
            assert_eq!(q.unacked("d"), None, "attempt {attempt}: kept");
        }
        // The last attempt; the uplink after it does not ACK either.
        assert_eq!(q.next("d").unwrap().port, 1);
        assert_eq!(q.unacked("d"), Some(item(1, true)));
        assert_eq!(q.unacked("d"), None, "dropped once");
        assert!(!q.ack("d"), "a late ACK finds nothing to acknowledge");
        // What waited behind it goes out now.
        assert_eq!(q.next("d").unwrap().port, 2);
        assert_eq!(q.len("d"), 0);

        // An ACK at the last attempt still counts, and the next confirmed
        // payload starts with a fresh count.
        q.push("d", item(3, true)).unwrap();
        q.push("d", item(4, true)).unwrap();
        for _ in 0..MAX_CONFIRMED_ATTEMPTS {
            assert_eq!(q.next("d").unwrap().port, 3);
        }
        assert!(q.ack("d"));
        for _ in 1..MAX_CONFIRMED_ATTEMPTS {
            assert_eq!(q.next("d").unwrap().port, 4);
            assert_eq!(q.unacked("d"), None);
        }
        assert_eq!(q.next("d").unwrap().port, 4);
        assert_eq!(q.unacked("d").map(|i| i.port), Some(4));
        assert_eq!(q.len("d"), 0);
        assert_eq!(Confirmation::GaveUp.reading(), "downlink_failed");
        assert_eq!(Confirmation::Acked.reading(), "downlink_acked");
    }

    /// The same confirmed uplink heard by a second forwarder after the
    /// de-duplication window is the transmission already answered; the
    /// device's retry comes after its RX2 window, by the concentrator's
    /// counter (wrapping at 2^32) where a forwarder heard both, else by
    /// arrival here.
    #[test]
    fn a_late_copy_of_a_confirmed_uplink_is_not_a_retry() {
        use crate::lorawan::dedup::{HeardList, Reception};
        let at = |gw: u8, tmst: Option<u32>| Reception {
            gateway: GatewayEui([gw; 8]),
            rssi: Some(-90),
            snr: Some(5.0),
            tmst,
            freq: Some(868.1),
            datr: None,
            rfch: Some(0),
        };
        let t0 = Instant::now();
        let up = |heard: Vec<Reception>, after_ms: u64| Uplink {
            phy: vec![0x80],
            rssi: Some(-90),
            snr: Some(5.0),
            received: Timestamp::from_millis(1_763_719_200_000).unwrap(),
            heard: heard.into_iter().collect::<HeardList>(),
            first_heard: t0 + Duration::from_millis(after_ms),
        };
        let rx2_end = Duration::from_secs(2);
        let tmst0 = u32::MAX - 500_000;
        let answered = Answered::of(7, &up(vec![at(1, Some(tmst0))], 0));
        // Another forwarder, 250 ms later (a 200 ms window): the same one.
        assert!(!answered.is_retry(&up(vec![at(2, Some(12))], 250), rx2_end));
        // The first forwarder again with the same counter: its own copy.
        assert!(!answered.is_retry(&up(vec![at(1, Some(tmst0))], 300), rx2_end));
        // Heard again by the first forwarder 3 s later on its clock, which
        // wrapped meanwhile: the device's retry, whenever it arrives here.
        let later = tmst0.wrapping_add(3_000_000);
        assert!(answered.is_retry(&up(vec![at(2, None), at(1, Some(later))], 10), rx2_end));
        // Only by a forwarder that did not hear the first, 3 s later.
        assert!(answered.is_retry(&up(vec![at(3, Some(5))], 3_000), rx2_end));
    }
}
