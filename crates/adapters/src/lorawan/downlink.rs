//! The downlink half of the Semtech UDP protocol (PROTOCOL.TXT §5–§6):
//! which forwarder can transmit (PULL_DATA keep-alives), the `txpk` of a
//! Class A reply timed on the uplink's concentrator counter, the PULL_RESP
//! datagram, and TX_ACK errors by reason.
//!
//! A forwarder opens its downlink path by sending PULL_DATA every
//! `keepalive_interval` (10 s by default); the server may only send
//! PULL_RESP to the address the last PULL_DATA came from (NAT). One that
//! has been silent for [`STALE_AFTER`] is not used.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::Serialize;
use tokio::time::Instant;

use super::region::{Region, Window};
use super::semtech::GatewayEui;

/// PULL_RESP identifier.
const PULL_RESP: u8 = 0x03;
/// Three missed keep-alives of lora_pkt_fwd's default 10 s.
pub const STALE_AFTER: Duration = Duration::from_secs(30);
/// JoinAcceptDelay1 (RX1 of a join-accept), spec §6 defaults.
pub const JOIN_ACCEPT_DELAY1: Duration = Duration::from_secs(5);
/// RX1 delay of data downlinks, given to devices in their join-accept
/// (RxDelay), seconds. The spec's default is 1 s; 2 s leaves room for the
/// de-duplication window and two fsyncs of a Pi's SD card before the
/// forwarder needs the packet, at the cost of one more second awake.
pub const RX1_DELAY_S: u8 = 2;
/// [`RX1_DELAY_S`] as a duration.
pub const RX1_DELAY: Duration = Duration::from_secs(RX1_DELAY_S as u64);
/// RX2 opens one second after RX1.
pub(crate) const RX2_AFTER_RX1: Duration = Duration::from_secs(1);
/// Time the forwarder needs before the emission: lora_pkt_fwd's JIT queue
/// refuses packets due sooner than ~30 ms; network latency comes on top.
const LEAD_TIME: Duration = Duration::from_millis(300);

/// A forwarder's downlink path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// Where its last PULL_DATA came from.
    pub addr: SocketAddr,
    /// Protocol version of that PULL_DATA, echoed in PULL_RESP.
    pub version: u8,
    pub last_pull: Instant,
}

/// Downlink paths by gateway EUI, and the RX2 fallbacks of RX1 downlinks
/// waiting for their TX_ACK.
#[derive(Debug, Default)]
pub struct Links {
    by_gateway: HashMap<GatewayEui, Link>,
    rx2: HashMap<(GatewayEui, [u8; 2]), Fallback>,
    /// While every tracked path is live, the moment the oldest of them may
    /// go stale (a lower bound: paths only get younger): until then a
    /// newcomer is refused without looking at them all.
    full_until: Option<Instant>,
}

/// Forwarders whose downlink path is tracked at most. A site has a
/// handful; PULL_DATA is unauthenticated, and 12 bytes from each of a
/// million made-up EUIs kept 130 MB that were never given back. At this
/// bound the paths take about 100 KB.
pub const MAX_FORWARDERS: usize = 1024;

/// What became of a PULL_DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pulled {
    /// The forwarder's downlinks go to the address it came from.
    Taken,
    /// Refused: [`MAX_FORWARDERS`] are tracked and none is stale.
    Full,
    /// Refused: the EUI's live path is at another IP address.
    OtherAddress { path: SocketAddr },
}

/// The RX2 PULL_RESP of a downlink sent for RX1.
#[derive(Debug, Clone, PartialEq)]
pub struct Fallback {
    pub datagram: Vec<u8>,
    pub addr: SocketAddr,
    registered: Instant,
}

/// Fallbacks kept at most: TX_ACKs come within milliseconds, or never
/// (protocol v1 forwarders send none).
const MAX_FALLBACKS: usize = 1024;
/// Past RX2 of a join-accept: a fallback older than this is useless.
const FALLBACK_TTL: Duration = Duration::from_secs(7);

/// TX_ACK errors after which RX2 may still work: the RX1 moment was
/// missed or taken, not the radio unable to send at all.
pub fn retry_in_rx2(reason: &str) -> bool {
    matches!(
        reason,
        "too_late" | "too_early" | "collision_packet" | "collision_beacon"
    )
}

impl Links {
    /// Records a PULL_DATA. A full table ([`MAX_FORWARDERS`]) makes room by
    /// forgetting the forwarder silent longest, only once its path is
    /// stale: a flood of new EUIs never pushes out a live forwarder's path.
    ///
    /// A live path stays on its host: PULL_DATA is 12 unauthenticated
    /// bytes, and if the last one won, one datagram with a known EUI from
    /// another machine on the LAN would send that forwarder's downlinks
    /// (join-accepts, commands) there until its next keep-alive. A new
    /// port on the same IP moves the path at once: that is the forwarder
    /// restarted (its socket's port is ephemeral) or a NAT's new mapping.
    /// A new IP takes the path once the old one has been silent for
    /// [`STALE_AFTER`]: a forwarder that changed its address loses 30 s of
    /// downlinks, never one to a forger elsewhere.
    pub fn pulled(
        &mut self,
        gateway: GatewayEui,
        addr: SocketAddr,
        version: u8,
        now: Instant,
    ) -> Pulled {
        let link = Link {
            addr,
            version,
            last_pull: now,
        };
        if let Some(known) = self.by_gateway.get_mut(&gateway) {
            if known.addr.ip() != addr.ip()
                && now.saturating_duration_since(known.last_pull) < STALE_AFTER
            {
                return Pulled::OtherAddress { path: known.addr };
            }
            *known = link;
            return Pulled::Taken;
        }
        if self.by_gateway.len() >= MAX_FORWARDERS && !self.evict_stale(now) {
            return Pulled::Full;
        }
        self.by_gateway.insert(gateway, link);
        Pulled::Taken
    }

    /// Forgets the forwarder silent longest if its path is stale.
    fn evict_stale(&mut self, now: Instant) -> bool {
        if self.full_until.is_some_and(|until| now < until) {
            return false;
        }
        let oldest = self
            .by_gateway
            .iter()
            .min_by_key(|(_, l)| l.last_pull)
            .map(|(g, l)| (*g, l.last_pull));
        match oldest {
            Some((g, last)) if now.saturating_duration_since(last) >= STALE_AFTER => {
                self.by_gateway.remove(&g);
                self.full_until = None;
                true
            }
            Some((_, last)) => {
                self.full_until = Some(last + STALE_AFTER);
                false
            }
            None => true,
        }
    }

    /// Forwarders whose paths are tracked.
    pub fn tracked(&self) -> usize {
        self.by_gateway.len()
    }

    /// Keeps `datagram` (the RX2 PULL_RESP) to send if the RX1 PULL_RESP
    /// with `token` to `gateway` is refused.
    pub fn fallback(
        &mut self,
        gateway: GatewayEui,
        token: [u8; 2],
        datagram: Vec<u8>,
        addr: SocketAddr,
        now: Instant,
    ) {
        if self.rx2.len() >= MAX_FALLBACKS {
            self.rx2
                .retain(|_, f| now.saturating_duration_since(f.registered) < FALLBACK_TTL);
            if self.rx2.len() >= MAX_FALLBACKS {
                return;
            }
        }
        let registered = now;
        self.rx2.insert(
            (gateway, token),
            Fallback {
                datagram,
                addr,
                registered,
            },
        );
    }

    /// The RX2 fallback of the downlink `token` to `gateway`, once.
    pub fn take_fallback(
        &mut self,
        gateway: GatewayEui,
        token: [u8; 2],
        now: Instant,
    ) -> Option<Fallback> {
        self.rx2
            .remove(&(gateway, token))
            .filter(|f| now.saturating_duration_since(f.registered) < FALLBACK_TTL)
    }

    /// Whether `peer` is where `gateway`'s downlinks go: a TX_ACK comes
    /// from the socket its PULL_DATA (and so our PULL_RESP) used.
    pub fn is_path_of(&self, gateway: GatewayEui, peer: SocketAddr) -> bool {
        self.by_gateway.get(&gateway).is_some_and(|l| l.addr == peer)
    }

    /// A live path to `gateway`, if it has one.
    pub fn live(&self, gateway: GatewayEui, now: Instant) -> Option<Link> {
        self.by_gateway
            .get(&gateway)
            .filter(|l| now.saturating_duration_since(l.last_pull) < STALE_AFTER)
            .copied()
    }
}

/// How a forwarder heard an uplink: what a reply through it needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Heard {
    pub gateway: GatewayEui,
    pub rssi: Option<i16>,
    pub snr: Option<f64>,
    /// Concentrator counter at the end of the uplink, µs.
    pub tmst: Option<u32>,
    pub freq: Option<f64>,
    pub datr: Option<super::semtech::Text>,
    pub rfch: Option<u8>,
}

impl Heard {
    /// Better reception first: SNR, then RSSI (ChirpStack's order).
    pub(super) fn score(&self) -> (i64, i64) {
        (
            self.snr.map_or(i64::MIN, |s| (s * 10.0) as i64),
            self.rssi.map_or(i64::MIN, i64::from),
        )
    }
}

/// The forwarder that heard the uplink best among those with a live
/// downlink path and a counter to time the reply on.
pub fn best<'a>(heard: &'a [Heard], links: &Links, now: Instant) -> Option<(&'a Heard, Link)> {
    heard
        .iter()
        .filter(|h| h.tmst.is_some())
        .filter_map(|h| links.live(h.gateway, now).map(|l| (h, l)))
        .max_by_key(|(h, _)| h.score())
}

/// Which receive window a downlink goes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Rx1,
    Rx2,
}

/// A `txpk` object (PROTOCOL.TXT §6).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Txpk {
    pub imme: bool,
    pub tmst: u32,
    pub freq: f64,
    pub rfch: u8,
    pub powe: u8,
    pub modu: &'static str,
    pub datr: String,
    pub codr: &'static str,
    /// Downlinks use inverted polarity so devices do not hear each other.
    pub ipol: bool,
    pub size: usize,
    pub data: String,
    /// No CRC on downlinks (spec §4: only uplinks carry one).
    pub ncrc: bool,
}

/// Why no downlink could be scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("no forwarder that heard the uplink has a live downlink path (PULL_DATA)")]
    NoPath,
    #[error("both receive windows have passed")]
    TooLate,
}

impl ScheduleError {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoPath => "downlink_no_path",
            Self::TooLate => "downlink_too_late",
        }
    }
}

/// The `txpk` of a Class A reply to an uplink heard by `heard`, `rx1_delay`
/// after it, `elapsed` after the server first saw it: RX1 when it can
/// still be reached and the region maps the uplink's channel, else RX2.
///
/// # Errors
/// [`ScheduleError::TooLate`] when neither window can be reached.
pub fn schedule(
    region: Region,
    heard: &Heard,
    rx1_delay: Duration,
    elapsed: Duration,
    phy: &[u8],
) -> Result<(Txpk, Slot), ScheduleError> {
    let tmst = heard.tmst.ok_or(ScheduleError::NoPath)?;
    let rx1 = match (heard.freq, heard.datr.as_deref()) {
        (Some(f), Some(d)) => region.rx1(f, d),
        _ => None,
    };
    let rx2_delay = rx1_delay + RX2_AFTER_RX1;
    let (window, delay, slot) = match rx1 {
        Some(w) if elapsed + LEAD_TIME < rx1_delay => (w, rx1_delay, Slot::Rx1),
        _ if elapsed + LEAD_TIME < rx2_delay => (region.rx2(), rx2_delay, Slot::Rx2),
        _ => return Err(ScheduleError::TooLate),
    };
    Ok((txpk(region, &window, heard, tmst, delay, phy), slot))
}

/// How long after the uplink `slot` opens.
pub fn slot_delay(slot: Slot, rx1_delay: Duration) -> Duration {
    match slot {
        Slot::Rx1 => rx1_delay,
        Slot::Rx2 => rx1_delay + RX2_AFTER_RX1,
    }
}

/// The RX2 `txpk` of the same reply, for a retry after RX1 was refused.
pub fn rx2_of(region: Region, heard: &Heard, rx1_delay: Duration, phy: &[u8]) -> Option<Txpk> {
    let tmst = heard.tmst?;
    Some(txpk(
        region,
        &region.rx2(),
        heard,
        tmst,
        rx1_delay + RX2_AFTER_RX1,
        phy,
    ))
}

fn txpk(
    region: Region,
    window: &Window,
    heard: &Heard,
    tmst: u32,
    delay: Duration,
    phy: &[u8],
) -> Txpk {
    let delay_us = u32::try_from(delay.as_micros()).unwrap_or(u32::MAX);
    Txpk {
        imme: false,
        // The counter wraps every 2^32 µs; so does the target.
        tmst: tmst.wrapping_add(delay_us),
        freq: window.freq,
        rfch: heard.rfch.unwrap_or(0),
        powe: region.downlink_power(),
        modu: "LORA",
        datr: window.datr.clone(),
        codr: "4/5",
        ipol: true,
        size: phy.len(),
        // Standard base64 with padding (RFC 4648 §4), as PROTOCOL.TXT asks.
        data: BASE64.encode(phy),
        ncrc: true,
    }
}

/// A PULL_RESP datagram carrying `txpk`. Protocol v1 forwarders expect a
/// zero token; v2 ones echo it in TX_ACK, which is how an error is tied to
/// its downlink.
pub fn pull_resp(version: u8, token: [u8; 2], txpk: &Txpk) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a> {
        txpk: &'a Txpk,
    }
    let token = if version == 1 { [0, 0] } else { token };
    let mut out = vec![version, token[0], token[1], PULL_RESP];
    // Serialising plain numbers and strings cannot fail.
    out.extend(serde_json::to_vec(&Body { txpk }).unwrap_or_default());
    out
}

/// The label a TX_ACK error is counted under: the forwarder's reason in
/// lower case (`too_late`, `too_early`, `collision_packet`,
/// `collision_beacon`, `tx_freq`, `tx_power`, `gps_unlocked`), `unknown`
/// for anything else.
pub fn tx_ack_reason(error: &str) -> &'static str {
    match error.trim().to_ascii_uppercase().as_str() {
        "TOO_LATE" => "too_late",
        "TOO_EARLY" => "too_early",
        "COLLISION_PACKET" => "collision_packet",
        "COLLISION_BEACON" => "collision_beacon",
        "TX_FREQ" => "tx_freq",
        "TX_POWER" => "tx_power",
        "GPS_UNLOCKED" => "gps_unlocked",
        _ => "unknown",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn heard(gw: u8, snr: f64, rssi: i16) -> Heard {
        Heard {
            gateway: GatewayEui([gw; 8]),
            rssi: Some(rssi),
            snr: Some(snr),
            tmst: Some(4_294_000_000),
            freq: Some(868.3),
            datr: Some("SF9BW125".into()),
            rfch: Some(0),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_best_forwarder_with_a_live_path_is_chosen() {
        let mut links = Links::default();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let now = Instant::now();
        links.pulled(GatewayEui([1; 8]), addr, 2, now);
        links.pulled(GatewayEui([2; 8]), addr, 2, now - STALE_AFTER);
        let all = [heard(1, -3.0, -100), heard(2, 9.0, -60), heard(3, 8.0, -60)];
        let (h, _) = best(&all, &links, now).unwrap();
        assert_eq!(h.gateway, GatewayEui([1; 8]), "2 is stale, 3 never pulled");
        links.pulled(GatewayEui([3; 8]), addr, 2, now);
        assert_eq!(
            best(&all, &links, now).unwrap().0.gateway,
            GatewayEui([3; 8])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_new_forwarders_is_bounded_and_never_pushes_out_a_live_one() {
        let mut links = Links::default();
        let addr: SocketAddr = "127.0.0.1:1700".parse().unwrap();
        let start = Instant::now();
        let real = GatewayEui([0xAA; 8]);
        assert_eq!(links.pulled(real, addr, 2, start), Pulled::Taken);
        let eui = |i: u64| GatewayEui(i.to_be_bytes());
        let mut refused = 0;
        for i in 0..100_000u64 {
            if links.pulled(eui(i), addr, 2, start) != Pulled::Taken {
                refused += 1;
            }
        }
        assert_eq!(links.tracked(), MAX_FORWARDERS);
        assert_eq!(refused, 100_000 - (MAX_FORWARDERS - 1));
        // The real forwarder keeps pulling; the flood's EUIs go stale.
        tokio::time::advance(STALE_AFTER).await;
        let later = Instant::now();
        assert_eq!(
            links.pulled(real, addr, 2, later),
            Pulled::Taken,
            "a known one is never refused"
        );
        assert_eq!(
            links.pulled(GatewayEui([0xBB; 8]), addr, 2, later),
            Pulled::Taken,
            "room once one is stale"
        );
        assert_eq!(links.tracked(), MAX_FORWARDERS);
        assert!(links.live(real, later).is_some(), "the live path is kept");
        assert!(links.live(GatewayEui([0xBB; 8]), later).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_live_path_is_not_taken_by_a_pull_from_another_host() {
        let mut links = Links::default();
        let forwarder: SocketAddr = "192.168.1.20:40001".parse().unwrap();
        let forger: SocketAddr = "192.168.1.66:40001".parse().unwrap();
        let eui = GatewayEui([0xAA; 8]);
        assert_eq!(links.pulled(eui, forwarder, 2, Instant::now()), Pulled::Taken);
        assert_eq!(
            links.pulled(eui, forger, 2, Instant::now()),
            Pulled::OtherAddress { path: forwarder }
        );
        assert_eq!(links.live(eui, Instant::now()).unwrap().addr, forwarder);
        assert!(!links.is_path_of(eui, forger));
        // The forwarder keeps pulling: the forger never gets in.
        tokio::time::advance(STALE_AFTER - Duration::from_secs(1)).await;
        assert_eq!(links.pulled(eui, forwarder, 2, Instant::now()), Pulled::Taken);
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(
            links.pulled(eui, forger, 2, Instant::now()),
            Pulled::OtherAddress { path: forwarder }
        );
        // Restarted, the forwarder pulls from a new port: its path follows.
        let restarted: SocketAddr = "192.168.1.20:40002".parse().unwrap();
        assert_eq!(links.pulled(eui, restarted, 2, Instant::now()), Pulled::Taken);
        assert_eq!(links.live(eui, Instant::now()).unwrap().addr, restarted);
        // Moved to another IP, it gets its path once the old one is stale.
        let moved: SocketAddr = "192.168.1.21:40002".parse().unwrap();
        tokio::time::advance(STALE_AFTER - Duration::from_secs(1)).await;
        assert_ne!(links.pulled(eui, moved, 2, Instant::now()), Pulled::Taken);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(links.pulled(eui, moved, 2, Instant::now()), Pulled::Taken);
        assert_eq!(links.live(eui, Instant::now()).unwrap().addr, moved);
    }

    #[test]
    fn rx1_in_time_else_rx2_else_too_late() {
        let h = heard(1, 0.0, -80);
        let (tx, slot) =
            schedule(Region::Eu868, &h, JOIN_ACCEPT_DELAY1, Duration::ZERO, b"x").unwrap();
        assert_eq!(slot, Slot::Rx1);
        assert_eq!(tx.tmst, 4_294_000_000u32.wrapping_add(5_000_000), "wraps");
        assert_eq!((tx.freq, tx.datr.as_str()), (868.3, "SF9BW125"));
        let late = Duration::from_millis(4_800);
        let (tx, slot) = schedule(Region::Eu868, &h, JOIN_ACCEPT_DELAY1, late, b"x").unwrap();
        assert_eq!(slot, Slot::Rx2);
        assert_eq!(tx.tmst, 4_294_000_000u32.wrapping_add(6_000_000));
        assert_eq!((tx.freq, tx.datr.as_str()), (869.525, "SF12BW125"));
        let too_late = Duration::from_millis(5_800);
        assert_eq!(
            schedule(Region::Eu868, &h, JOIN_ACCEPT_DELAY1, too_late, b"x"),
            Err(ScheduleError::TooLate)
        );
        // A channel the region does not have: RX2 straight away.
        let mut odd = h.clone();
        odd.freq = Some(915.0);
        let (_, slot) = schedule(Region::Eu868, &odd, RX1_DELAY, Duration::ZERO, b"").unwrap();
        assert_eq!(slot, Slot::Rx2);
    }

    #[test]
    fn pull_resp_carries_the_txpk_json() {
        let h = heard(1, 0.0, -80);
        let (tx, _) = schedule(Region::Eu868, &h, RX1_DELAY, Duration::ZERO, b"ab").unwrap();
        let d = pull_resp(2, [0xAB, 0xCD], &tx);
        assert_eq!(&d[..4], &[2, 0xAB, 0xCD, 0x03]);
        let v: serde_json::Value = serde_json::from_slice(&d[4..]).unwrap();
        assert_eq!(v["txpk"]["data"], "YWI=");
        assert_eq!(v["txpk"]["size"], 2);
        assert_eq!(v["txpk"]["ipol"], true);
        assert_eq!(v["txpk"]["powe"], 14);
        assert_eq!(&pull_resp(1, [1, 2], &tx)[..4], &[1, 0, 0, 0x03]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_rx2_fallback_is_taken_once_and_expires() {
        let mut links = Links::default();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let now = Instant::now();
        let gw = GatewayEui([1; 8]);
        links.fallback(gw, [0, 7], vec![1], addr, now);
        links.fallback(gw, [0, 8], vec![2], addr, now);
        assert_eq!(links.take_fallback(gw, [0, 7], now).unwrap().datagram, [1]);
        assert!(links.take_fallback(gw, [0, 7], now).is_none(), "once");
        assert!(links
            .take_fallback(GatewayEui([2; 8]), [0, 8], now)
            .is_none());
        assert!(links
            .take_fallback(gw, [0, 8], now + FALLBACK_TTL)
            .is_none());
        assert!(retry_in_rx2("collision_packet") && !retry_in_rx2("tx_freq"));
    }

    #[test]
    fn tx_ack_errors_have_stable_labels() {
        assert_eq!(tx_ack_reason("TOO_LATE"), "too_late");
        assert_eq!(tx_ack_reason("COLLISION_PACKET"), "collision_packet");
        assert_eq!(tx_ack_reason("GPS_UNLOCKED"), "gps_unlocked");
        assert_eq!(tx_ack_reason("WHATEVER"), "unknown");
    }
}
