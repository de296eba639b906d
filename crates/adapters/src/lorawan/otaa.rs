//! A join-request in, a session stored and a join-accept scheduled out.
//!
//! The order matters for safety: MIC first (nothing is learnt from a
//! forgery, not even whether its DevNonce was used), then the DevNonce
//! replay check. From there the DevNonce is spent, answered or not: a
//! join that is refused (wrong JoinEUI, no downlink path, too late) writes
//! its nonce to disk before the refusal is reported, so a recording of it
//! replayed later, through any forwarder and after any restart, is a
//! replay. A join that can be answered writes its nonce and its new
//! session to disk in one write *before* the accept exists for the caller
//! to send. A refused join never touches the session: the device keeps
//! its old one.

use std::collections::HashMap;

use tokio::time::Instant;

use super::config::{LorawanDevice, Network, OtaaDevice};
use super::dedup::Uplink;
use super::downlink::{self, Links, ScheduleError, Slot, Txpk, JOIN_ACCEPT_DELAY1};
use super::fcnt::{FcntStore, Session};
use super::join::{self, Eui, JoinAccept, JoinError, JoinRequest};
use super::semtech::GatewayEui;

/// The OTAA devices, by DevEUI, and the network's parameters.
#[derive(Debug, Default)]
pub struct Joins {
    by_eui: HashMap<Eui, OtaaDevice>,
    pub network: Network,
}

impl Joins {
    pub fn new(devices: Vec<OtaaDevice>, network: Network) -> Self {
        Self {
            by_eui: devices.into_iter().map(|d| (d.dev_eui, d)).collect(),
            network,
        }
    }

    /// Each device's stored session, as the uplink path sees it: joined
    /// devices keep working across a restart without a new join.
    pub fn sessions(&self, store: &FcntStore) -> Vec<LorawanDevice> {
        self.by_eui
            .values()
            .filter_map(|d| store.session(d.dev_eui).map(|s| d.with_session(s)))
            .collect()
    }

    /// The OTAA device with id `id`, for its downlinks.
    pub fn by_id(&self, id: &str) -> Option<&OtaaDevice> {
        self.by_eui.values().find(|d| d.id.as_str() == id)
    }
}

/// A join accepted: the session is stored, the accept is ready to send.
#[derive(Debug)]
pub struct Joined {
    /// The device under its new session, for the uplink path.
    pub device: LorawanDevice,
    pub dev_eui: Eui,
    /// The DevNonce of the join-request accepted.
    pub dev_nonce: u16,
    pub txpk: Txpk,
    pub slot: Slot,
    pub link: downlink::Link,
    /// The same accept for RX2, if it goes out in RX1.
    pub rx2: Option<Txpk>,
    /// The forwarder it goes through.
    pub gateway: GatewayEui,
}

/// Why a join-request got no accept. Count it by [`JoinRefused::kind`].
#[derive(Debug, thiserror::Error)]
pub enum JoinRefused {
    #[error("{0}")]
    Frame(JoinError),
    #[error("join-request from unknown DevEUI {0}")]
    UnknownDevEui(Eui),
    #[error("device {dev_eui}: MIC does not verify with its AppKey")]
    InvalidMic { dev_eui: Eui },
    #[error("device {dev_eui}: JoinEUI {got}, configured {expected}")]
    JoinEuiMismatch {
        dev_eui: Eui,
        got: Eui,
        expected: Eui,
    },
    #[error(
        "device {dev_eui}: DevNonce {dev_nonce:04X} was used before (a replayed join-request)"
    )]
    DevNonceReplay { dev_eui: Eui, dev_nonce: u16 },
    #[error("device {dev_eui}: {source}")]
    Schedule { dev_eui: Eui, source: ScheduleError },
    #[error("device {dev_eui}: the session cannot be stored, so no accept is sent: {reason}")]
    Store { dev_eui: Eui, reason: String },
}

impl JoinRefused {
    /// A stable snake_case label, for the `error_type` of a counter.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Frame(e) => e.kind(),
            Self::UnknownDevEui(_) => "join_unknown_dev_eui",
            Self::InvalidMic { .. } => "join_invalid_mic",
            Self::JoinEuiMismatch { .. } => "join_eui_mismatch",
            Self::DevNonceReplay { .. } => "join_dev_nonce_replay",
            Self::Schedule { source, .. } => source.kind(),
            Self::Store { .. } => "join_store",
        }
    }
}

/// Whether `phy` is a join-request (MType 000): those go to [`handle`].
pub fn is_join_request(phy: &[u8]) -> bool {
    phy.first().is_some_and(|mhdr| mhdr >> 5 == 0)
}

/// Checks a join-request, stores the new session and builds the accept.
///
/// # Errors
/// Why no accept goes out; nothing was stored then.
pub fn handle(
    up: &Uplink,
    joins: &Joins,
    store: &mut FcntStore,
    links: &Links,
    now: Instant,
) -> Result<Joined, JoinRefused> {
    let request = JoinRequest::parse(&up.phy).map_err(JoinRefused::Frame)?;
    let dev_eui = request.dev_eui;
    let device = joins
        .by_eui
        .get(&dev_eui)
        .ok_or(JoinRefused::UnknownDevEui(dev_eui))?;
    JoinRequest::verify(&up.phy, &device.app_key)
        .map_err(|_| JoinRefused::InvalidMic { dev_eui })?;
    if store.dev_nonce_used(dev_eui, request.dev_nonce) {
        return Err(JoinRefused::DevNonceReplay {
            dev_eui,
            dev_nonce: request.dev_nonce,
        });
    }
    // The MIC verified: from here every refusal spends the nonce first.
    let nonce = request.dev_nonce;
    if request.join_eui != device.join_eui {
        return Err(spent(
            store,
            dev_eui,
            nonce,
            JoinRefused::JoinEuiMismatch {
                dev_eui,
                got: request.join_eui,
                expected: device.join_eui,
            },
        ));
    }
    let schedule_error = |source| JoinRefused::Schedule { dev_eui, source };
    let Some((heard, link)) = downlink::best(&up.heard, links, now) else {
        return Err(spent(
            store,
            dev_eui,
            nonce,
            schedule_error(ScheduleError::NoPath),
        ));
    };
    let network = joins.network;
    let (join_nonce, nwk_addr) = store.next_join_numbers();
    // Never below the minutes since 2025 as the clock reads them now: a
    // store lost and started empty, even by a gateway that started before
    // NTP set its clock, goes on above what the lost one gave.
    let join_nonce = join_nonce.max(super::fcnt::join_nonce_floor());
    let accept = JoinAccept {
        join_nonce,
        net_id: network.net_id,
        dev_addr: join::dev_addr(network.net_id, nwk_addr),
        dl_settings: network.region.rx2_dr(),
        rx_delay: downlink::RX1_DELAY_S,
        cf_list: None,
    };
    let phy = accept.seal(&device.app_key);
    let elapsed = now.saturating_duration_since(up.first_heard);
    let (txpk, slot) =
        match downlink::schedule(network.region, heard, JOIN_ACCEPT_DELAY1, elapsed, &phy) {
            Ok(scheduled) => scheduled,
            Err(e) => return Err(spent(store, dev_eui, nonce, schedule_error(e))),
        };
    let (nwk_s_key, app_s_key) = join::session_keys(
        &device.app_key,
        join_nonce,
        network.net_id,
        request.dev_nonce,
    );
    let session = Session {
        dev_addr: accept.dev_addr,
        nwk_s_key,
        app_s_key,
        join_nonce,
        dev_nonce: request.dev_nonce,
        fcnt_down: 0,
    };
    let joined = device.with_session(&session);
    store
        .commit_join(device.id.as_str(), dev_eui, session)
        .map_err(|e| JoinRefused::Store {
            dev_eui,
            reason: e.to_string(),
        })?;
    let rx2 = (slot == Slot::Rx1)
        .then(|| downlink::rx2_of(network.region, heard, JOIN_ACCEPT_DELAY1, &phy))
        .flatten();
    Ok(Joined {
        device: joined,
        dev_eui,
        dev_nonce: request.dev_nonce,
        txpk,
        slot,
        link,
        rx2,
        gateway: heard.gateway,
    })
}

/// `refused`, once the DevNonce of its join-request is spent on disk; the
/// store's error instead if that write failed (the refusal is then
/// reported as `join_store`, and the nonce stays usable).
fn spent(store: &mut FcntStore, dev_eui: Eui, dev_nonce: u16, refused: JoinRefused) -> JoinRefused {
    match store.spend_dev_nonce(dev_eui, dev_nonce) {
        Ok(()) => refused,
        Err(e) => JoinRefused::Store {
            dev_eui,
            reason: format!("{e} (and then: {refused})"),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use gateway_core::{DeviceId, Timestamp};

    use super::*;
    use crate::lorawan::config::{DeviceCodec, FcntReset};
    use crate::lorawan::downlink::Heard;
    use crate::lorawan::frame::Key;
    use crate::lorawan::region::Region;
    use crate::lorawan::semtech::GatewayEui;

    const GW: GatewayEui = GatewayEui([7; 8]);

    fn setup() -> (Joins, OtaaDevice) {
        let device = OtaaDevice {
            dev_eui: "0102030405060708".parse().unwrap(),
            join_eui: "70B3D57ED0000001".parse().unwrap(),
            app_key: Key([0x42; 16]),
            codec: DeviceCodec::Named("compact_i16".parse().unwrap()),
            name: None,
            id: DeviceId::new("dev").unwrap(),
            fcnt_reset: FcntReset::Reject,
        };
        let network = Network {
            net_id: 0x13,
            region: Region::Eu868,
        };
        (Joins::new(vec![device.clone()], network), device)
    }

    fn request(device: &OtaaDevice, dev_nonce: u16, first_heard: Instant) -> Uplink {
        let phy = JoinRequest {
            join_eui: device.join_eui,
            dev_eui: device.dev_eui,
            dev_nonce,
        }
        .seal(&device.app_key);
        Uplink {
            phy,
            rssi: Some(-80),
            snr: Some(5.0),
            received: Timestamp::from_millis(1_763_719_200_000).unwrap(),
            heard: vec![Heard {
                gateway: GW,
                rssi: Some(-80),
                snr: Some(5.0),
                tmst: Some(1000),
                freq: Some(868.3),
                datr: Some("SF12BW125".into()),
                rfch: Some(0),
            }]
            .into(),
            first_heard,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_join_that_cannot_be_answered_spends_its_nonce_and_no_session() {
        let (joins, device) = setup();
        let mut store = FcntStore::in_memory();
        let mut links = Links::default();
        let now = Instant::now();
        // Heard by a forwarder with no downlink path: refused, its nonce
        // spent, no session.
        let unanswered = request(&device, 9, now);
        let e = handle(&unanswered, &joins, &mut store, &links, now).unwrap_err();
        assert_eq!(e.kind(), "downlink_no_path");
        assert!(store.dev_nonce_used(device.dev_eui, 9));
        assert!(store.session(device.dev_eui).is_none());
        links.pulled(GW, "127.0.0.1:1".parse().unwrap(), 2, now);
        let late = request(&device, 10, now - Duration::from_millis(5_800));
        let e = handle(&late, &joins, &mut store, &links, now).unwrap_err();
        assert_eq!(e.kind(), "downlink_too_late");
        assert!(store.dev_nonce_used(device.dev_eui, 10));
        assert!(store.session(device.dev_eui).is_none());

        // The device tries again with a new nonce, and joins.
        let up = request(&device, 11, now);
        let joined = handle(&up, &joins, &mut store, &links, now).unwrap();
        assert_eq!(joined.slot, Slot::Rx1);
        assert_eq!(joined.txpk.tmst, 5_001_000);
        assert_eq!(joined.device.dev_addr >> 25, 0x13);
        let accept = JoinAccept::open(
            &super::super::semtech::base64_decode(&joined.txpk.data).unwrap(),
            &device.app_key,
        )
        .unwrap();
        let (nwk, app) = join::session_keys(&device.app_key, accept.join_nonce, 0x13, 11);
        assert_eq!(
            (joined.device.nwk_s_key, joined.device.app_s_key),
            (nwk, app)
        );
        // An empty store's first JoinNonce is above any a lost store gave
        // (the minutes since 2025), not 0: LoRaWAN 1.0.4 devices refuse
        // one that goes back.
        assert!(accept.join_nonce >= super::super::fcnt::join_nonce_floor().saturating_sub(1));
        assert!(accept.join_nonce > 400_000, "{}", accept.join_nonce);
        let session = store.session(device.dev_eui).unwrap().clone();
        assert_eq!(session.dev_addr, accept.dev_addr);
        // A recording of any of the three, replayed now that there is a
        // path: a replay, and the session stays.
        for (nonce, replayed) in [(9, &unanswered), (10, &late), (11, &up)] {
            let replayed = Uplink {
                first_heard: now,
                ..(*replayed).clone()
            };
            let e = handle(&replayed, &joins, &mut store, &links, now).unwrap_err();
            assert_eq!(e.kind(), "join_dev_nonce_replay", "nonce {nonce}");
        }
        assert_eq!(store.session(device.dev_eui), Some(&session));
        let mut other = device.clone();
        other.dev_eui = "0102030405060709".parse().unwrap();
        let e = handle(&request(&other, 1, now), &joins, &mut store, &links, now).unwrap_err();
        assert_eq!(e.kind(), "join_unknown_dev_eui");
        // A forgery (another key) spends nothing.
        let mut forged = device.clone();
        forged.app_key = Key([0x24; 16]);
        let e = handle(&request(&forged, 12, now), &joins, &mut store, &links, now).unwrap_err();
        assert_eq!(e.kind(), "join_invalid_mic");
        assert!(!store.dev_nonce_used(device.dev_eui, 12));
    }
}
