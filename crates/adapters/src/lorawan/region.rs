//! Regional parameters a Class A network server needs to answer a device
//! (LoRaWAN Regional Parameters RP002-1.0.x): where and how fast RX1 and
//! RX2 transmit, the transmit power, and the data rate table for ADR.
//!
//! EU868, US915, AS923 (AS923-1), AU915, IN865 and KR920. Each is one
//! `Plan` of constants; the plans come in two shapes only, so adding one
//! is adding a table, not code:
//! - a few default channels, RX1 on the uplink's channel at its data rate
//!   (EU868, AS923, IN865, KR920);
//! - 64 + 8 uplink channels in eight sub-bands, RX1 on one of eight 500 kHz
//!   downlink channels at a mapped data rate (US915, AU915).

use std::fmt;
use std::str::FromStr;

/// A frequency plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Region {
    #[default]
    Eu868,
    Us915,
    /// AS923-1 (923.2/923.4 MHz default channels, RX2 923.2 MHz).
    As923,
    Au915,
    In865,
    Kr920,
}

/// Where and how a downlink goes out.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// MHz, as the forwarder's `freq`.
    pub freq: f64,
    /// `SF12BW125` etc., as the forwarder's `datr`.
    pub datr: String,
}

/// A region name that is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown region {0:?}, expected EU868, US915, AS923 (AS923-1), AU915, IN865 or KR920")]
pub struct UnknownRegion(pub String);

/// How LinkADRReq names the channels a device is to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelMask {
    /// ChMaskCntl 0 with this mask: the plan's default channels, the only
    /// ones a device joined here has (no CFList is sent).
    Default(u16),
    /// The sub-band of eight 125 kHz channels (and its 500 kHz one) the
    /// uplink came in on: US915-style plans.
    SubBand,
}

/// How RX1 follows an uplink.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rx1 {
    /// The uplink's channel and data rate (RX1DROffset 0), for uplinks
    /// heard between `low` and `high` MHz.
    SameChannel { low: f64, high: f64 },
    /// Uplink channels 0–63 at `narrow_base` + 0.2n MHz (125 kHz), 64–71 at
    /// `wide_base` + 1.6n (500 kHz); downlink channel n mod 8 at
    /// 923.3 + 0.6 MHz steps, data rate `dr_map[uplink DR]` (offset 0).
    Hopping {
        narrow_base: f64,
        wide_base: f64,
        dr_map: &'static [u8],
    },
}

/// One region's regional parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Plan {
    name: &'static str,
    /// Other names accepted in the configuration.
    aliases: &'static [&'static str],
    /// Uplink data rates, index = DR (LoRa ones only).
    uplink_dr: &'static [&'static str],
    /// Downlink data rates from DR8 on, index 0 = DR8 (hopping plans).
    downlink_dr_from_8: &'static [&'static str],
    /// The highest data rate ADR may assign on 125 kHz channels.
    max_adr_dr: u8,
    /// The highest TXPower index of LinkADRReq.
    max_tx_power_index: u8,
    /// Transmit power for downlinks, dBm.
    downlink_power: u8,
    rx1: Rx1,
    /// RX2's default frequency (MHz) and data rate index.
    rx2_freq: f64,
    rx2_dr: u8,
    channel_mask: ChannelMask,
}

/// DR0–DR5 (LoRa, 125 kHz) of the EU868-like plans; DR6 (SF7BW250) and
/// DR7 (FSK) are not used for ADR here.
const SF12_TO_SF7_BW125: [&str; 6] = [
    "SF12BW125",
    "SF11BW125",
    "SF10BW125",
    "SF9BW125",
    "SF8BW125",
    "SF7BW125",
];
/// US915 uplink data rates DR0–DR4.
const US915_UP_DR: [&str; 5] = ["SF10BW125", "SF9BW125", "SF8BW125", "SF7BW125", "SF8BW500"];
/// AU915 uplink data rates DR0–DR6 (DR7, LR-FHSS, is not LoRa).
const AU915_UP_DR: [&str; 7] = [
    "SF12BW125",
    "SF11BW125",
    "SF10BW125",
    "SF9BW125",
    "SF8BW125",
    "SF7BW125",
    "SF8BW500",
];
/// US915 and AU915 downlink data rates DR8–DR13 (index 0 = DR8).
const US915_DOWN_DR: [&str; 6] = [
    "SF12BW500",
    "SF11BW500",
    "SF10BW500",
    "SF9BW500",
    "SF8BW500",
    "SF7BW500",
];

// Downlink powers are conservative on purpose: the forwarder's `powe` is
// conducted power, the antenna's gain comes on top and is not known here,
// and a board refuses a power its table lacks (TX_ACK `tx_power`). A weak
// downlink costs some range; one above the limit is unlawful.

const EU868: Plan = Plan {
    name: "EU868",
    aliases: &[],
    uplink_dr: &SF12_TO_SF7_BW125,
    downlink_dr_from_8: &[],
    max_adr_dr: 5,
    // 0 (max EIRP) … 7 (−14 dB).
    max_tx_power_index: 7,
    // Within the 16 dBm EIRP limit of the 869.4–869.65 MHz sub-band too.
    downlink_power: 14,
    rx1: Rx1::SameChannel {
        low: 863.0,
        high: 870.0,
    },
    rx2_freq: 869.525,
    rx2_dr: 0,
    // Channels 0–2, 868.1/868.3/868.5 MHz.
    channel_mask: ChannelMask::Default(0x0007),
};

const US915: Plan = Plan {
    name: "US915",
    aliases: &[],
    uplink_dr: &US915_UP_DR,
    downlink_dr_from_8: &US915_DOWN_DR,
    max_adr_dr: 3,
    // 0 (30 dBm) … 10 (10 dBm), the range every 1.0.x regional parameters
    // revision shares.
    max_tx_power_index: 10,
    // Far below the 30 dBm allowed, and in every common board's table.
    downlink_power: 20,
    rx1: Rx1::Hopping {
        narrow_base: 902.3,
        wide_base: 903.0,
        // DR0–DR4 → DR10, DR11, DR12, DR13, DR13.
        dr_map: &[10, 11, 12, 13, 13],
    },
    rx2_freq: 923.3,
    rx2_dr: 8,
    channel_mask: ChannelMask::SubBand,
};

/// AS923-1. The other AS923 groups share its data rates but not its RX2
/// frequency, so they are not this plan. RX1 keeps the uplink's data rate:
/// RX1DROffset 0 with DownlinkDwellTime 0. A device applying the 400 ms
/// dwell time would listen at DR2 at least, but it also never sends below
/// DR2 (its uplink dwell time), where the two would differ.
const AS923: Plan = Plan {
    name: "AS923-1",
    aliases: &["AS923"],
    uplink_dr: &SF12_TO_SF7_BW125,
    downlink_dr_from_8: &[],
    max_adr_dr: 5,
    // 0 (max EIRP) … 7 (−14 dB).
    max_tx_power_index: 7,
    // The plan's default max EIRP is 16 dBm, and some of its countries
    // allow no more: 14 dBm leaves room for a small antenna's gain.
    downlink_power: 14,
    rx1: Rx1::SameChannel {
        low: 915.0,
        high: 928.0,
    },
    rx2_freq: 923.2,
    rx2_dr: 2,
    // Two default channels, 923.2/923.4 MHz.
    channel_mask: ChannelMask::Default(0x0003),
};

const AU915: Plan = Plan {
    name: "AU915",
    aliases: &[],
    uplink_dr: &AU915_UP_DR,
    downlink_dr_from_8: &US915_DOWN_DR,
    max_adr_dr: 5,
    // As US915: the index range all 1.0.x revisions share.
    max_tx_power_index: 10,
    // As US915: far below the 30 dBm EIRP allowed.
    downlink_power: 20,
    rx1: Rx1::Hopping {
        narrow_base: 915.2,
        wide_base: 915.9,
        // DR0–DR6 → DR8 … DR13, DR13.
        dr_map: &[8, 9, 10, 11, 12, 13, 13],
    },
    rx2_freq: 923.3,
    rx2_dr: 8,
    channel_mask: ChannelMask::SubBand,
};

const IN865: Plan = Plan {
    name: "IN865",
    aliases: &[],
    uplink_dr: &SF12_TO_SF7_BW125,
    downlink_dr_from_8: &[],
    max_adr_dr: 5,
    // 0 (max EIRP) … 10 (−20 dB).
    max_tx_power_index: 10,
    // Far below the 30 dBm EIRP allowed, as US915.
    downlink_power: 20,
    rx1: Rx1::SameChannel {
        low: 865.0,
        high: 867.0,
    },
    rx2_freq: 866.55,
    rx2_dr: 2,
    // Three default channels, 865.0625/865.4025/865.985 MHz.
    channel_mask: ChannelMask::Default(0x0007),
};

const KR920: Plan = Plan {
    name: "KR920",
    aliases: &[],
    uplink_dr: &SF12_TO_SF7_BW125,
    downlink_dr_from_8: &[],
    max_adr_dr: 5,
    // 0 (max EIRP) … 7 (−14 dB).
    max_tx_power_index: 7,
    // The plan's default max EIRP (its devices'); a gateway may be
    // licensed for more, but that is the installation's to know.
    downlink_power: 14,
    rx1: Rx1::SameChannel {
        low: 920.9,
        high: 923.3,
    },
    rx2_freq: 921.9,
    rx2_dr: 0,
    // Three default channels, 922.1/922.3/922.5 MHz.
    channel_mask: ChannelMask::Default(0x0007),
};

impl Region {
    /// Every region, for parsing and tests.
    pub const ALL: [Region; 6] = [
        Self::Eu868,
        Self::Us915,
        Self::As923,
        Self::Au915,
        Self::In865,
        Self::Kr920,
    ];

    fn plan(self) -> &'static Plan {
        match self {
            Self::Eu868 => &EU868,
            Self::Us915 => &US915,
            Self::As923 => &AS923,
            Self::Au915 => &AU915,
            Self::In865 => &IN865,
            Self::Kr920 => &KR920,
        }
    }
}

impl FromStr for Region {
    type Err = UnknownRegion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| {
                let plan = r.plan();
                plan.name.eq_ignore_ascii_case(s)
                    || plan.aliases.iter().any(|a| a.eq_ignore_ascii_case(s))
            })
            .ok_or_else(|| UnknownRegion(s.to_string()))
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.plan().name)
    }
}

impl Region {
    /// Transmit power for downlinks, dBm.
    pub fn downlink_power(self) -> u8 {
        self.plan().downlink_power
    }

    /// The uplink data rate index of `datr`, if it is one of the region's.
    pub fn uplink_dr(self, datr: &str) -> Option<u8> {
        self.plan()
            .uplink_dr
            .iter()
            .position(|d| d.eq_ignore_ascii_case(datr))
            .and_then(|i| u8::try_from(i).ok())
    }

    /// The highest data rate ADR may assign on 125 kHz channels.
    pub fn max_adr_dr(self) -> u8 {
        self.plan().max_adr_dr
    }

    /// The highest TXPower index of LinkADRReq (0 is the highest power).
    pub fn max_tx_power_index(self) -> u8 {
        self.plan().max_tx_power_index
    }

    /// Which channels LinkADRReq keeps enabled.
    pub fn channel_mask(self) -> ChannelMask {
        self.plan().channel_mask
    }

    /// RX2's default data rate index, as DLSettings carries it.
    pub fn rx2_dr(self) -> u8 {
        self.plan().rx2_dr
    }

    /// Required demodulation SNR (dB) of uplink data rate `dr`, from the
    /// SX127x datasheet as ChirpStack's ADR uses it: SF7 −7.5 … SF12 −20.
    /// `None` above the ADR range: ADR and LinkCheck margins only reason
    /// about the 125 kHz rates.
    pub fn required_snr(self, dr: u8) -> Option<f64> {
        if dr > self.max_adr_dr() {
            return None;
        }
        let datr = self.plan().uplink_dr.get(usize::from(dr))?;
        let sf: u8 = datr.strip_prefix("SF")?.split_once("BW")?.0.parse().ok()?;
        Some(match sf {
            7 => -7.5,
            8 => -10.0,
            9 => -12.5,
            10 => -15.0,
            11 => -17.5,
            _ => -20.0,
        })
    }

    /// RX1 for an uplink heard at `freq` with `datr` (RX1DROffset 0).
    /// `None` when the uplink's channel or data rate is not the region's.
    pub fn rx1(self, freq: f64, datr: &str) -> Option<Window> {
        let dr = self.uplink_dr(datr)?;
        match self.plan().rx1 {
            Rx1::SameChannel { low, high } => (low..=high).contains(&freq).then(|| Window {
                freq,
                datr: datr.to_ascii_uppercase(),
            }),
            Rx1::Hopping { dr_map, .. } => {
                let channel = self.uplink_channel(freq)?;
                let down = *dr_map.get(usize::from(dr))?;
                Some(Window {
                    freq: round_khz(923.3 + 0.6 * f64::from(channel % 8)),
                    datr: self.downlink_datr(down)?.to_string(),
                })
            }
        }
    }

    /// RX2, the fixed fallback window (its default parameters).
    pub fn rx2(self) -> Window {
        let plan = self.plan();
        Window {
            freq: plan.rx2_freq,
            // The tables are constants checked by the tests; SF12BW125
            // would only be a last resort against an inconsistent edit.
            datr: self
                .downlink_datr(plan.rx2_dr)
                .unwrap_or("SF12BW125")
                .to_string(),
        }
    }

    /// The sub-band (0–7, eight 125 kHz channels and one 500 kHz channel
    /// each) of an uplink heard at `freq`, in a US915-style plan.
    pub fn sub_band(self, freq: f64) -> Option<u8> {
        let channel = self.uplink_channel(freq)?;
        Some(if channel < 64 {
            channel / 8
        } else {
            channel - 64
        })
    }

    /// The `datr` of downlink data rate `dr`: the uplink table below DR8
    /// (the EU868-like plans share it), the 500 kHz one from DR8.
    fn downlink_datr(self, dr: u8) -> Option<&'static str> {
        let plan = self.plan();
        match dr.checked_sub(8) {
            Some(i) => plan.downlink_dr_from_8.get(usize::from(i)).copied(),
            None => plan.uplink_dr.get(usize::from(dr)).copied(),
        }
    }

    /// The uplink channel of `freq` in a US915-style plan: 0–63 at
    /// `narrow_base` + 0.2n (125 kHz), 64–71 at `wide_base` + 1.6n (500 kHz).
    fn uplink_channel(self, freq: f64) -> Option<u8> {
        let Rx1::Hopping {
            narrow_base,
            wide_base,
            ..
        } = self.plan().rx1
        else {
            return None;
        };
        let near = |x: f64| (x - x.round()).abs() < 1e-3;
        let narrow = (freq - narrow_base) / 0.2;
        if (0.0..=63.0).contains(&narrow.round()) && near(narrow) {
            return u8::try_from(narrow.round() as i64).ok();
        }
        let wide = (freq - wide_base) / 1.6;
        if (0.0..=7.0).contains(&wide.round()) && near(wide) {
            return u8::try_from(64 + wide.round() as i64).ok();
        }
        None
    }
}

/// The US915 sub-band of an uplink heard at `freq`; see [`Region::sub_band`].
pub fn us915_sub_band(freq: f64) -> Option<u8> {
    Region::Us915.sub_band(freq)
}

fn round_khz(mhz: f64) -> f64 {
    (mhz * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eu868_rx1_is_the_uplink_channel_and_rx2_is_869_525_sf12() {
        let w = Region::Eu868
            .rx1(868.1, "SF7BW125")
            .unwrap_or_else(|| panic!());
        assert_eq!((w.freq, w.datr.as_str()), (868.1, "SF7BW125"));
        assert_eq!(Region::Eu868.rx1(868.1, "SF7BW500"), None);
        assert_eq!(Region::Eu868.rx1(915.0, "SF7BW125"), None);
        let rx2 = Region::Eu868.rx2();
        assert_eq!((rx2.freq, rx2.datr.as_str()), (869.525, "SF12BW125"));
    }

    #[test]
    fn us915_rx1_maps_channel_and_data_rate() {
        // Channel 9 (904.1 MHz) → downlink channel 1, 923.9 MHz; DR0 → DR10.
        let w = Region::Us915
            .rx1(904.1, "SF10BW125")
            .unwrap_or_else(|| panic!());
        assert_eq!((w.freq, w.datr.as_str()), (923.9, "SF10BW500"));
        // Channel 65 (904.6 MHz, 500 kHz, DR4) → channel 1, DR13.
        let w = Region::Us915
            .rx1(904.6, "SF8BW500")
            .unwrap_or_else(|| panic!());
        assert_eq!((w.freq, w.datr.as_str()), (923.9, "SF7BW500"));
        assert_eq!(Region::Us915.rx1(868.1, "SF7BW125"), None);
        assert_eq!(Region::Us915.rx2().datr, "SF12BW500");
        // Index 1, the "sub-band 2" (channels 8–15 and 65) most US
        // gateways listen to.
        assert_eq!(us915_sub_band(903.9), Some(1));
        assert_eq!(us915_sub_band(905.3), Some(1));
        assert_eq!(us915_sub_band(905.5), Some(2));
        assert_eq!(us915_sub_band(904.6), Some(1));
        assert_eq!(us915_sub_band(868.1), None);
    }

    #[test]
    fn names_parse_case_insensitively() {
        assert_eq!("eu868".parse::<Region>(), Ok(Region::Eu868));
        assert_eq!("AS923".parse::<Region>(), Ok(Region::As923));
        assert_eq!("as923-1".parse::<Region>(), Ok(Region::As923));
        assert_eq!("au915".parse::<Region>(), Ok(Region::Au915));
        assert_eq!("In865".parse::<Region>(), Ok(Region::In865));
        assert_eq!("KR920".parse::<Region>(), Ok(Region::Kr920));
        // AS923-2…4 have another RX2: not silently taken as AS923-1.
        assert!("AS923-2".parse::<Region>().is_err());
        assert!("CN470".parse::<Region>().is_err());
        for region in Region::ALL {
            assert_eq!(region.to_string().parse::<Region>(), Ok(region));
        }
    }

    /// The tables are edited by hand: every data rate they refer to must
    /// be in them, so RX2 never falls back and RX1 never comes up empty.
    #[test]
    fn every_plan_refers_only_to_its_own_data_rates() {
        for region in Region::ALL {
            let plan = region.plan();
            assert!(region.downlink_datr(plan.rx2_dr).is_some(), "{region}");
            if let Rx1::Hopping { dr_map, .. } = plan.rx1 {
                assert_eq!(dr_map.len(), plan.uplink_dr.len(), "{region}");
                for &dr in dr_map {
                    assert!(region.downlink_datr(dr).is_some(), "{region} DR{dr}");
                }
            }
            for dr in 0..=plan.max_adr_dr {
                assert!(region.required_snr(dr).is_some(), "{region} DR{dr}");
            }
            assert_eq!(region.required_snr(plan.max_adr_dr + 1), None);
        }
    }

    fn window(w: Option<Window>) -> (f64, String) {
        let w = w.unwrap_or_else(|| panic!("no window"));
        (w.freq, w.datr)
    }

    #[test]
    fn as923_answers_on_the_uplink_channel_and_923_2_sf10() {
        let r = Region::As923;
        assert_eq!(window(r.rx1(923.4, "SF9BW125")), (923.4, "SF9BW125".into()));
        assert_eq!(window(Some(r.rx2())), (923.2, "SF10BW125".into()));
        assert_eq!(r.rx2_dr(), 2);
        assert_eq!(r.uplink_dr("SF12BW125"), Some(0));
        assert_eq!(r.uplink_dr("SF7BW125"), Some(5));
        assert_eq!(r.uplink_dr("SF8BW500"), None);
        assert_eq!(r.channel_mask(), ChannelMask::Default(0x0003));
        assert_eq!(r.rx1(868.1, "SF7BW125"), None);
        assert_eq!(r.sub_band(923.2), None);
        assert_eq!((r.max_adr_dr(), r.max_tx_power_index()), (5, 7));
        assert_eq!(r.downlink_power(), 14);
    }

    #[test]
    fn au915_maps_channel_and_data_rate_to_its_500_khz_downlinks() {
        let r = Region::Au915;
        // Channel 9 (917.0 MHz) → downlink channel 1, 923.9 MHz; DR2 → DR10.
        assert_eq!(
            window(r.rx1(917.0, "SF10BW125")),
            (923.9, "SF10BW500".into())
        );
        // Channel 8 (916.8 MHz) at DR0 → channel 0, DR8; DR5 → DR13.
        assert_eq!(
            window(r.rx1(916.8, "SF12BW125")),
            (923.3, "SF12BW500".into())
        );
        assert_eq!(window(r.rx1(916.8, "SF7BW125")), (923.3, "SF7BW500".into()));
        // Channel 71 (927.1 MHz, 500 kHz, DR6) → channel 7, DR13.
        assert_eq!(window(r.rx1(927.1, "SF8BW500")), (927.5, "SF7BW500".into()));
        assert_eq!(window(Some(r.rx2())), (923.3, "SF12BW500".into()));
        assert_eq!(r.rx2_dr(), 8);
        assert_eq!(r.uplink_dr("SF12BW125"), Some(0));
        assert_eq!(r.uplink_dr("SF8BW500"), Some(6));
        assert_eq!(r.uplink_dr("SF7BW500"), None);
        assert_eq!(r.channel_mask(), ChannelMask::SubBand);
        // Sub-band index 1 (channels 8–15 and 65), the one most AU
        // gateways listen to.
        assert_eq!(r.sub_band(916.8), Some(1));
        assert_eq!(r.sub_band(918.2), Some(1));
        assert_eq!(r.sub_band(917.5), Some(1));
        assert_eq!(r.sub_band(915.2), Some(0));
        // A US915 channel is off AU915's grid, and the reverse.
        assert_eq!(r.rx1(904.1, "SF10BW125"), None);
        assert_eq!(r.sub_band(903.9), None);
        assert_eq!(r.rx1(917.05, "SF10BW125"), None);
        assert_eq!((r.max_adr_dr(), r.max_tx_power_index()), (5, 10));
        // ADR reasons about the 125 kHz rates only.
        assert_eq!(r.required_snr(5), Some(-7.5));
        assert_eq!(r.required_snr(6), None);
        assert_eq!(r.downlink_power(), 20);
    }

    #[test]
    fn in865_answers_on_the_uplink_channel_and_866_55_sf10() {
        let r = Region::In865;
        assert_eq!(
            window(r.rx1(865.0625, "SF12BW125")),
            (865.0625, "SF12BW125".into())
        );
        assert_eq!(window(Some(r.rx2())), (866.55, "SF10BW125".into()));
        assert_eq!(r.rx2_dr(), 2);
        assert_eq!(r.uplink_dr("sf8bw125"), Some(4));
        assert_eq!(r.channel_mask(), ChannelMask::Default(0x0007));
        assert_eq!(r.rx1(868.1, "SF7BW125"), None);
        assert_eq!((r.max_adr_dr(), r.max_tx_power_index()), (5, 10));
        assert_eq!(r.downlink_power(), 20);
    }

    #[test]
    fn kr920_answers_on_the_uplink_channel_and_921_9_sf12() {
        let r = Region::Kr920;
        assert_eq!(window(r.rx1(922.1, "SF7BW125")), (922.1, "SF7BW125".into()));
        assert_eq!(window(Some(r.rx2())), (921.9, "SF12BW125".into()));
        assert_eq!(r.rx2_dr(), 0);
        assert_eq!(r.uplink_dr("SF11BW125"), Some(1));
        assert_eq!(r.channel_mask(), ChannelMask::Default(0x0007));
        assert_eq!(r.rx1(923.4, "SF7BW125"), None);
        assert_eq!(r.rx1(920.8, "SF7BW125"), None);
        assert_eq!((r.max_adr_dr(), r.max_tx_power_index()), (5, 7));
        assert_eq!(r.downlink_power(), 14);
    }

    #[test]
    fn eu868_and_us915_keep_their_parameters() {
        assert_eq!(Region::Eu868.to_string(), "EU868");
        assert_eq!(Region::Us915.to_string(), "US915");
        assert_eq!(Region::Eu868.channel_mask(), ChannelMask::Default(0x0007));
        assert_eq!(Region::Us915.channel_mask(), ChannelMask::SubBand);
        assert_eq!((Region::Eu868.rx2_dr(), Region::Us915.rx2_dr()), (0, 8));
        assert_eq!(Region::Eu868.downlink_power(), 14);
        assert_eq!(Region::Us915.downlink_power(), 20);
        assert_eq!(Region::Us915.required_snr(0), Some(-15.0));
        assert_eq!(Region::Us915.required_snr(4), None);
        assert_eq!(Region::Eu868.required_snr(0), Some(-20.0));
        assert_eq!(Region::Eu868.sub_band(868.1), None);
    }
}
