//! Adaptive data rate, network side: so a battery sensor that the
//! gateway hears well stops transmitting at SF12 forever.
//!
//! ChirpStack's default algorithm (chirpstack/src/adr/default.rs, the
//! Semtech recommendation): over the last [`HISTORY`] uplinks of a device
//! that set the ADR bit, margin = best SNR − the data rate's demodulation
//! floor − an installation margin of 10 dB; every 3 dB of margin raises the
//! data rate one step (up to the region's ADR maximum), then lowers the
//! transmit power one step (2 dB); a negative margin raises the power
//! again. The request goes in FOpts as LinkADRReq (spec §5.3); the history
//! restarts after each request so the next decision uses uplinks at the
//! new settings.
//!
//! EU868, AS923, IN865, KR920: their default channels make the channel
//! mask fixed (ChMaskCntl 0; ChMask 0x0007 for three, AS923's two 0x0003).
//! US915 and AU915: a device may hop over 72 channels while a forwarder
//! listens to one sub-band of eight (and its 500 kHz channel), so the
//! request is a block of two LinkADRReq (RP002 §2.5.5, as ChirpStack sends
//! it): ChMaskCntl 7 turns every 125 kHz channel off and enables the
//! sub-band's 500 kHz channel, then the 16-channel block holding the
//! sub-band enables its eight. The sub-band is the one the uplink came in
//! on: the channels the gateway is known to hear. A device applies the
//! data rate and power of the block's last command and answers each.

use std::collections::{HashMap, VecDeque};

use super::region::{ChannelMask, Region};

/// Uplinks a decision is based on.
pub const HISTORY: usize = 20;
/// Headroom kept for fading, dB (ChirpStack's `installation_margin`).
const INSTALLATION_MARGIN: f64 = 10.0;
/// LinkADRReq / LinkADRAns CID.
pub const LINK_ADR: u8 = 0x03;

#[derive(Debug, Default)]
struct DeviceAdr {
    snrs: VecDeque<f64>,
    /// The TXPower index last requested (0 until a request is acknowledged
    /// otherwise: the device's default).
    tx_power: u8,
}

/// ADR state of every device, in memory: after a restart it is rebuilt
/// from the next [`HISTORY`] uplinks.
#[derive(Debug, Default)]
pub struct Adr {
    by_device: HashMap<String, DeviceAdr>,
}

impl Adr {
    /// Records an uplink at data rate `dr` heard on `freq` (MHz) with
    /// `snr`, and returns the LinkADRReq command(s) (CIDs included) to
    /// send, if the settings should change.
    pub fn observe(
        &mut self,
        region: Region,
        device: &str,
        dr: u8,
        freq: Option<f64>,
        snr: f64,
    ) -> Option<Vec<u8>> {
        let masks = channel_masks(region, freq)?;
        let state = self.by_device.entry(device.to_string()).or_default();
        state.snrs.push_back(snr);
        if state.snrs.len() > HISTORY {
            state.snrs.pop_front();
        }
        if state.snrs.len() < HISTORY {
            return None;
        }
        let best = state.snrs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (new_dr, new_power) = decide(region, dr, state.tx_power, best)?;
        state.snrs.clear();
        state.tx_power = new_power;
        Some(
            masks
                .iter()
                .flat_map(|&(cntl, mask)| link_adr_req(new_dr, new_power, cntl, mask))
                .collect(),
        )
    }

    /// A LinkADRAns: when the device refused any part (status bits not all
    /// set), its power is assumed back at the default.
    pub fn answered(&mut self, device: &str, status: u8) -> bool {
        let accepted = status & 0x07 == 0x07;
        if !accepted {
            if let Some(state) = self.by_device.get_mut(device) {
                state.tx_power = 0;
            }
        }
        accepted
    }
}

/// The new (data rate, TXPower index), or `None` to leave them.
fn decide(region: Region, dr: u8, tx_power: u8, best_snr: f64) -> Option<(u8, u8)> {
    let required = region.required_snr(dr)?;
    let margin = best_snr - required - INSTALLATION_MARGIN;
    let mut steps = (margin / 3.0).trunc() as i32;
    let (mut new_dr, mut power) = (dr, tx_power);
    while steps > 0 && new_dr < region.max_adr_dr() {
        new_dr += 1;
        steps -= 1;
    }
    while steps > 0 && power < region.max_tx_power_index() {
        power += 1;
        steps -= 1;
    }
    while steps < 0 && power > 0 {
        power -= 1;
        steps += 1;
    }
    ((new_dr, power) != (dr, tx_power)).then_some((new_dr, power))
}

/// The (ChMaskCntl, ChMask) of each LinkADRReq of a request, or `None`
/// when the uplink's channel does not say which to enable.
fn channel_masks(region: Region, freq: Option<f64>) -> Option<Vec<(u8, u16)>> {
    match region.channel_mask() {
        ChannelMask::Default(mask) => Some(vec![(0, mask)]),
        ChannelMask::SubBand => {
            let band = region.sub_band(freq?)?;
            Some(vec![(7, 1 << band), (band / 2, 0x00FF << (8 * (band % 2)))])
        }
    }
}

/// LinkADRReq: DataRate_TXPower, ChMask, Redundancy (ChMaskCntl, NbTrans 1).
fn link_adr_req(dr: u8, tx_power: u8, cntl: u8, mask: u16) -> [u8; 5] {
    let [m0, m1] = mask.to_le_bytes();
    [
        LINK_ADR,
        (dr << 4) | (tx_power & 0x0F),
        m0,
        m1,
        (cntl << 4) | 0x01,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_heard_sf12_device_is_moved_to_a_faster_rate() {
        let mut adr = Adr::default();
        // SF12 (DR0) needs −20 dB; best SNR 5 dB: margin 15 dB = 5 steps:
        // DR0 → DR5 (SF7), no step left for the power.
        for _ in 0..HISTORY - 1 {
            assert_eq!(adr.observe(Region::Eu868, "d", 0, Some(868.1), 2.0), None);
        }
        let req = adr.observe(Region::Eu868, "d", 0, Some(868.1), 5.0);
        assert_eq!(req, Some(vec![LINK_ADR, 0x50, 0x07, 0x00, 0x01]));
        // The history restarts: nothing until 20 more uplinks.
        assert_eq!(adr.observe(Region::Eu868, "d", 5, Some(868.1), 5.0), None);
    }

    #[test]
    fn margin_left_at_the_fastest_rate_lowers_the_power_and_a_deficit_raises_it() {
        // SF7 (DR5) needs −7.5 dB; 11.5 dB best: 9 dB margin, 3 power steps.
        assert_eq!(decide(Region::Eu868, 5, 0, 11.5), Some((5, 3)));
        // At power index 3, a best SNR of −3.5 dB is 6 dB short: back to 1.
        assert_eq!(decide(Region::Eu868, 5, 3, -3.5), Some((5, 1)));
        // Exactly enough: nothing to change.
        assert_eq!(decide(Region::Eu868, 5, 0, 2.5), None);
    }

    #[test]
    fn us915_asks_for_the_sub_band_the_uplink_came_in_on() {
        let mut adr = Adr::default();
        // SF10 (DR0) needs −15 dB; best SNR 4 dB: margin 9 dB = 3 steps:
        // DR0 → DR3 (SF7), the fastest 125 kHz rate, nothing left.
        // 903.9 MHz is channel 8: sub-band index 1 (channels 8–15, 65).
        for _ in 0..HISTORY - 1 {
            assert_eq!(adr.observe(Region::Us915, "d", 0, Some(903.9), 1.0), None);
        }
        let req = adr.observe(Region::Us915, "d", 0, Some(903.9), 4.0);
        assert_eq!(
            req,
            Some(vec![
                // ChMaskCntl 7: 125 kHz channels off, 500 kHz channel 65 on.
                LINK_ADR, 0x30, 0x02, 0x00, 0x71,
                // ChMaskCntl 0: channels 8–15 of the block 0–15 on.
                LINK_ADR, 0x30, 0x00, 0xFF, 0x01,
            ])
        );
        // Channel 20 (906.3 MHz): sub-band 2, the low half of block 1.
        assert_eq!(
            channel_masks(Region::Us915, Some(906.3)),
            Some(vec![(7, 0x04), (1, 0x00FF)])
        );
        // A channel that is not US915's, or none: no request.
        for _ in 0..HISTORY * 2 {
            assert_eq!(adr.observe(Region::Us915, "e", 0, Some(868.1), 10.0), None);
            assert_eq!(adr.observe(Region::Us915, "e", 0, None, 10.0), None);
        }
        // US915 powers go down to index 10 (10 dBm), EU868's to 7.
        assert_eq!(decide(Region::Us915, 3, 0, 40.0), Some((3, 10)));
        assert_eq!(decide(Region::Eu868, 5, 0, 40.0), Some((5, 7)));
    }

    #[test]
    fn a_refusal_resets_the_power() {
        let mut adr = Adr::default();
        for _ in 0..HISTORY {
            adr.observe(Region::Eu868, "e", 5, Some(868.1), 20.0);
        }
        assert!(adr.answered("e", 0x07));
        assert!(!adr.answered("e", 0x06));
        assert_eq!(adr.by_device["e"].tx_power, 0);
    }

    #[test]
    fn each_region_keeps_its_default_channels_or_the_heard_sub_band() {
        for (region, mask) in [
            (Region::As923, 0x0003),
            (Region::In865, 0x0007),
            (Region::Kr920, 0x0007),
        ] {
            assert_eq!(channel_masks(region, Some(900.0)), Some(vec![(0, mask)]));
            assert_eq!(channel_masks(region, None), Some(vec![(0, mask)]));
        }
        // AU915 channel 9 (917.0 MHz): sub-band 1, the high half of block 0.
        assert_eq!(
            channel_masks(Region::Au915, Some(917.0)),
            Some(vec![(7, 0x02), (0, 0xFF00)])
        );
        // Channel 20 (919.2 MHz): sub-band 2, the low half of block 1.
        assert_eq!(
            channel_masks(Region::Au915, Some(919.2)),
            Some(vec![(7, 0x04), (1, 0x00FF)])
        );
        // A US915 channel is not AU915's.
        assert_eq!(channel_masks(Region::Au915, Some(903.9)), None);
        assert_eq!(channel_masks(Region::Au915, None), None);
    }

    #[test]
    fn adr_steps_stop_at_each_regions_limits() {
        // SF12 (DR0) with 40 dB of best SNR: every step there is.
        assert_eq!(decide(Region::Au915, 0, 0, 40.0), Some((5, 10)));
        assert_eq!(decide(Region::In865, 0, 0, 40.0), Some((5, 10)));
        assert_eq!(decide(Region::As923, 0, 0, 40.0), Some((5, 7)));
        assert_eq!(decide(Region::Kr920, 0, 0, 40.0), Some((5, 7)));
        // AU915's 500 kHz DR6 is outside ADR: left alone.
        assert_eq!(decide(Region::Au915, 6, 0, 40.0), None);
    }
}
