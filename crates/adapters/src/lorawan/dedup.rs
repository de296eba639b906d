//! De-duplication of one uplink heard by several forwarders.
//!
//! A device's transmission reaches every gateway in range; each forwards
//! the same PHYPayload bytes. The first copy opens a collection window
//! (ChirpStack's 200 ms by default); copies within it only add their
//! gateway and signal; when it closes the uplink is processed once, with
//! the best RSSI and SNR. A copy arriving after the window is a new
//! candidate, which the frame counter then refuses as a retransmission.
//!
//! Keyed by the PHYPayload bytes alone: frequency and data rate are the
//! same for real copies, and a forged copy differing only there would add
//! nothing but a gateway to the list. Bounded: a flood of distinct frames
//! costs at most `capacity` pending entries; beyond that new frames are
//! refused (and counted by the caller) rather than older ones lost.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use gateway_core::Timestamp;
/// Re-exported so callers building an [`Uplink`] need no tokio of their own.
pub use tokio::time::Instant;

use super::downlink::Heard;
use super::semtech::GatewayEui;

/// One forwarder's reception of a frame: its signal, and what a reply
/// through it needs (`tmst`, channel, data rate).
pub type Reception = Heard;

/// A frame with every reception of it in the window.
#[derive(Debug, Clone, PartialEq)]
pub struct Uplink {
    pub phy: Vec<u8>,
    /// Forwarders that heard it, in arrival order, each once.
    pub gateways: Vec<GatewayEui>,
    /// Best RSSI over the receptions, dBm.
    pub rssi: Option<i16>,
    /// Best SNR over the receptions, dB.
    pub snr: Option<f64>,
    /// Wall time of the first reception: the readings' time.
    pub received: Timestamp,
    /// Each forwarder's best reception, for choosing the downlink path.
    pub heard: Vec<Heard>,
    /// When the first copy arrived here: how much of the receive delay
    /// is left for a reply.
    pub first_heard: Instant,
}

impl Uplink {
    fn add(&mut self, rx: Reception) {
        self.rssi = self.rssi.max(rx.rssi);
        self.snr = match (self.snr, rx.snr) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if self.gateways.contains(&rx.gateway) {
            // The same forwarder twice (its retransmission): keep one.
            if let Some(h) = self.heard.iter_mut().find(|h| h.gateway == rx.gateway) {
                if rx.snr > h.snr {
                    *h = rx;
                }
            }
        } else {
            self.gateways.push(rx.gateway);
            self.heard.push(rx);
        }
    }
}

/// What [`Dedup::offer`] did with a reception.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// The first copy: a window opened.
    New,
    /// A copy of a frame already waiting.
    Duplicate,
    /// Too many frames waiting; this one was dropped.
    Full,
}

/// Frames waiting for their window to close.
#[derive(Debug)]
pub struct Dedup {
    window: Duration,
    capacity: usize,
    pending: HashMap<Vec<u8>, Uplink>,
    /// Window ends in arrival order, hence in deadline order.
    deadlines: VecDeque<(Instant, Vec<u8>)>,
}

impl Dedup {
    pub fn new(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity: capacity.max(1),
            pending: HashMap::new(),
            deadlines: VecDeque::new(),
        }
    }

    /// Adds one reception of `phy`, heard at `now` (wall time `arrival`).
    /// `phy` is taken as is (a `Vec` costs no copy) and kept as the key;
    /// the [`Uplink`]'s own `phy` is filled from it when the window closes.
    pub fn offer(
        &mut self,
        phy: impl Into<Vec<u8>> + AsRef<[u8]>,
        rx: Reception,
        arrival: Timestamp,
        now: Instant,
    ) -> Offer {
        // One hash of the frame for the lookup and the insert.
        let full = self.pending.len() >= self.capacity;
        let slot = match self.pending.entry(phy.into()) {
            Entry::Occupied(mut waiting) => {
                waiting.get_mut().add(rx);
                return Offer::Duplicate;
            }
            Entry::Vacant(_) if full => return Offer::Full,
            Entry::Vacant(slot) => slot,
        };
        let mut up = Uplink {
            phy: Vec::new(),
            gateways: Vec::with_capacity(1),
            rssi: None,
            snr: None,
            received: arrival,
            heard: Vec::with_capacity(1),
            first_heard: now,
        };
        up.add(rx);
        let deadline = gateway_core::deadline::after(now, self.window);
        self.deadlines.push_back((deadline, slot.key().clone()));
        slot.insert(up);
        Offer::New
    }

    /// The pending uplink of `phy`, out of the table, with its frame.
    fn take(&mut self, phy: &[u8]) -> Option<Uplink> {
        let (phy, mut up) = self.pending.remove_entry(phy)?;
        up.phy = phy;
        Some(up)
    }

    /// When the oldest window closes.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.front().map(|(at, _)| *at)
    }

    /// The oldest frame whose window has closed by `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Uplink> {
        let (at, _) = self.deadlines.front()?;
        if *at > now {
            return None;
        }
        let (_, phy) = self.deadlines.pop_front()?;
        self.take(&phy)
    }

    /// Every waiting frame, oldest first, windows closed or not (shutdown).
    pub fn drain(&mut self) -> Vec<Uplink> {
        let mut out = Vec::new();
        while let Some((_, phy)) = self.deadlines.pop_front() {
            out.extend(self.take(&phy));
        }
        out
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::time::advance;

    fn rx(gw: u8, rssi: i16, snr: f64) -> Reception {
        Reception {
            gateway: GatewayEui([gw; 8]),
            rssi: Some(rssi),
            snr: Some(snr),
            tmst: Some(1),
            freq: Some(868.1),
            datr: Some("SF7BW125".into()),
            rfch: Some(0),
        }
    }

    fn t() -> Timestamp {
        Timestamp::default()
    }

    #[tokio::test(start_paused = true)]
    async fn copies_within_the_window_are_one_uplink_with_the_best_signal() {
        let mut d = Dedup::new(Duration::from_millis(200), 16);
        assert_eq!(
            d.offer(b"frame", rx(1, -110, -3.5), t(), Instant::now()),
            Offer::New
        );
        advance(Duration::from_millis(150)).await;
        assert_eq!(
            d.offer(b"frame", rx(2, -90, -7.0), t(), Instant::now()),
            Offer::Duplicate
        );
        assert_eq!(
            d.offer(b"frame", rx(1, -80, 9.0), t(), Instant::now()),
            Offer::Duplicate
        );
        assert_eq!(
            d.offer(b"other", rx(2, -100, 1.0), t(), Instant::now()),
            Offer::New
        );
        advance(Duration::from_millis(49)).await;
        assert_eq!(d.pop_due(Instant::now()), None, "the window is still open");
        advance(Duration::from_millis(1)).await;
        let up = d.pop_due(Instant::now()).unwrap();
        assert_eq!(up.phy, b"frame");
        assert_eq!(up.gateways, [GatewayEui([1; 8]), GatewayEui([2; 8])]);
        assert_eq!((up.rssi, up.snr), (Some(-80), Some(9.0)));
        assert_eq!(up.heard.len(), 2, "one entry per forwarder");
        assert_eq!(up.heard[0].snr, Some(9.0), "its best copy");
        assert_eq!(
            d.pop_due(Instant::now()),
            None,
            "the second frame came later"
        );
        assert_eq!(
            d.next_deadline(),
            Some(Instant::now() + Duration::from_millis(150))
        );
        // A copy after the window closed is a new candidate.
        assert_eq!(
            d.offer(b"frame", rx(3, -70, 0.0), t(), Instant::now()),
            Offer::New
        );
        advance(Duration::from_millis(200)).await;
        assert_eq!(d.pop_due(Instant::now()).unwrap().phy, b"other");
        assert_eq!(
            d.pop_due(Instant::now()).unwrap().gateways,
            [GatewayEui([3; 8])]
        );
        assert!(d.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn bounded_and_drained_at_shutdown() {
        let mut d = Dedup::new(Duration::from_millis(200), 2);
        let now = Instant::now();
        assert_eq!(d.offer(b"a", rx(1, -1, 0.0), t(), now), Offer::New);
        assert_eq!(d.offer(b"b", rx(1, -1, 0.0), t(), now), Offer::New);
        assert_eq!(d.offer(b"c", rx(1, -1, 0.0), t(), now), Offer::Full);
        assert_eq!(d.offer(b"a", rx(2, -1, 0.0), t(), now), Offer::Duplicate);
        let all: Vec<Vec<u8>> = d.drain().into_iter().map(|u| u.phy).collect();
        assert_eq!(all, [b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(d.len(), 0);
    }
}
