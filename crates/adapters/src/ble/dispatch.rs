//! One advertisement in, one [`Outcome`] out: which decoder, and the state
//! across advertisements (encryption counters, packet ids, sequences).
//!
//! The order of the checks is the security argument:
//! 1. the decoder is chosen by service UUID (BTHome 0xFCD2, then PVVX/ATC
//!    0x181A) or company id (Ruuvi 0x0499); nothing else is understood and
//!    the ids are handed back to be counted, never turned into series;
//! 2. a device with a bindkey must send encrypted BTHome, so any plaintext
//!    format from it is a downgrade;
//! 3. an encrypted frame's counter is judged only after its MIC verified,
//!    so a forged frame cannot move the counter;
//! 4. repeats (same counter, packet id, sequence) are dropped last.
//!
//! Time is a monotonic `Instant` passed in (FAULTS §3.7): the packet-id
//! window must not jump with NTP.

use std::time::Instant;

use gateway_core::{MetricName, Reading, TimeSource, Timestamp};

use super::advert::{Advertisement, Mac, ServiceUuid};
use super::bthome::{self, Event, Stop};
use super::bthome_crypto::BindKey;
use super::dedup::{PacketIds, Sequences};
use super::error::DecodeError;
use super::replay::{CounterTable, Verdict};
use super::values::Measurements;
use super::{ruuvi, xiaomi};

/// The metric every decoded device also reports: the advertisement's RSSI (dBm).
pub const RSSI_METRIC: &str = "rssi";
/// HCI's "RSSI is not available" (Core spec Vol 4 Part E §7.7.65.2, LE
/// Advertising Report: "127: RSSI is not available").
const RSSI_NOT_AVAILABLE: i8 = 127;

/// Which format an advertisement was decoded as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Bthome,
    BthomeEncrypted,
    RuuviRawV2,
    Pvvx,
    Atc1441,
}

impl Format {
    /// A stable label, for counters and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bthome => "bthome",
            Self::BthomeEncrypted => "bthome_encrypted",
            Self::RuuviRawV2 => "ruuvi_rawv2",
            Self::Pvvx => "pvvx",
            Self::Atc1441 => "atc1441",
        }
    }

    /// Manufacturer and model, as far as the format tells: BTHome is
    /// spoken by many makers' devices; Ruuvi's formats only by RuuviTags;
    /// the PVVX and ATC formats by Xiaomi thermometers reflashed.
    pub fn make(self) -> (Option<&'static str>, &'static str) {
        match self {
            Self::Bthome | Self::BthomeEncrypted => (None, "BTHome v2 sensor"),
            Self::RuuviRawV2 => (Some("Ruuvi Innovations"), "RuuviTag"),
            Self::Pvvx => (Some("Xiaomi"), "LYWSD03MMC (PVVX firmware)"),
            Self::Atc1441 => (Some("Xiaomi"), "LYWSD03MMC (ATC firmware)"),
        }
    }
}

/// The values of one advertisement from one device.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub mac: Mac,
    pub format: Format,
    pub rssi: Option<i8>,
    pub values: Measurements,
    /// BTHome: why parsing stopped before the end (values before it kept).
    pub stop: Option<Stop>,
    /// BTHome: object ids were not in ascending order (parsed anyway).
    pub out_of_order: bool,
    /// BTHome: button and dimmer events (not readings).
    pub events: Vec<Event>,
}

impl Decoded {
    /// The readings of this advertisement, stamped `time` on arrival: every
    /// value, then `rssi` (when known). The device id is the MAC, lower
    /// case with colons.
    pub fn readings(&self, time: Timestamp) -> Vec<Reading> {
        let device = self.mac.device_id();
        let rssi = self
            .rssi
            .filter(|&r| r != RSSI_NOT_AVAILABLE)
            .map(|r| (RSSI_METRIC.into(), f64::from(r)));
        self.values
            .iter()
            .map(|m| (m.metric(), m.value))
            .chain(rssi)
            .filter_map(|(metric, value)| {
                // Names come from the decoders' tables and are valid metric
                // names; values are scaled integers, so finite.
                let metric = MetricName::new(metric).ok()?;
                Reading::new(device.clone(), metric, value, time, TimeSource::Arrival).ok()
            })
            .collect()
    }
}

/// Advertisement ids no decoder understood, to be counted by id and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unrecognised {
    pub company_ids: Vec<u16>,
    pub service_uuids: Vec<ServiceUuid>,
}

/// What became of one advertisement.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Values to turn into readings.
    Decoded(Decoded),
    /// A repeat of a measurement already accepted (same counter, packet id
    /// or sequence): no values, count it as a duplicate.
    Duplicate { mac: Mac, format: Format },
    /// A recognised format refused: malformed, or a security refusal
    /// (downgrade, replay, MIC failure, no bindkey). Count by `error.kind()`.
    Refused {
        mac: Mac,
        format: Format,
        error: DecodeError,
    },
    /// Nothing here for any decoder (phones, headphones, beacons).
    NotUnderstood(Unrecognised),
}

/// The decoders with their memory. One per adapter; restore the counters
/// from disk at start-up and persist them when
/// [`CounterTable::take_changed`] says so.
///
/// ```
/// use std::time::Instant;
/// use adapters::ble::{Advertisement, BleDecoder, Outcome};
///
/// // bthome.io's format example: temperature 25.06 °C, humidity 50.55 %.
/// let line = r#"{"ts":"2026-11-21T10:00:00Z","mac":"A4:C1:38:8D:18:B2","rssi":-60,"service_data":{"fcd2":"4002ca0903bf13"}}"#;
/// let adv = Advertisement::parse_line(line)?;
/// let mut decoder = BleDecoder::default();
/// let Outcome::Decoded(decoded) = decoder.decode(&adv, None, Instant::now()) else {
///     panic!("not decoded");
/// };
/// let readings: Vec<_> = decoded
///     .readings(adv.time)
///     .iter()
///     .map(|r| (r.device().to_string(), r.metric().to_string(), r.value()))
///     .collect();
/// let dev = "a4:c1:38:8d:18:b2".to_string();
/// assert_eq!(readings, [
///     (dev.clone(), "temperature".into(), 25.06),
///     (dev.clone(), "humidity".into(), 50.55),
///     (dev, "rssi".into(), -60.0),
/// ]);
/// # Ok::<(), adapters::ble::AdvertError>(())
/// ```
#[derive(Debug, Default)]
pub struct BleDecoder {
    pub counters: CounterTable,
    packet_ids: PacketIds,
    sequences: Sequences,
}

impl BleDecoder {
    /// A decoder that remembers the given encryption counters.
    pub fn new(counters: CounterTable) -> Self {
        Self {
            counters,
            ..Self::default()
        }
    }

    /// Decodes `adv`. `bindkey` is the key configured for `adv.mac`, if any.
    pub fn decode(
        &mut self,
        adv: &Advertisement,
        bindkey: Option<&BindKey>,
        now: Instant,
    ) -> Outcome {
        let mac = adv.mac;
        if let Some(data) = adv.service(ServiceUuid::BTHOME) {
            return self.bthome(adv, data, bindkey, now);
        }
        if let Some(data) = adv.service(ServiceUuid::ENVIRONMENTAL_SENSING) {
            let format = match data.len() {
                xiaomi::ATC_LEN => Format::Atc1441,
                _ => Format::Pvvx,
            };
            if bindkey.is_some() {
                return refused(mac, format, DecodeError::Downgrade);
            }
            return match xiaomi::decode(data) {
                Err(error) => refused(mac, format, error),
                Ok(t)
                    if !self
                        .sequences
                        .accept(mac, t.layout.name(), u32::from(t.counter)) =>
                {
                    Outcome::Duplicate { mac, format }
                }
                Ok(t) => decoded(adv, format, t.values()),
            };
        }
        if let Some(data) = adv.manufacturer(ruuvi::COMPANY_ID) {
            let format = Format::RuuviRawV2;
            if bindkey.is_some() {
                return refused(mac, format, DecodeError::Downgrade);
            }
            return match ruuvi::decode(data) {
                Err(error) => refused(mac, format, error),
                Ok(r) => match r.measurement_sequence {
                    Some(seq) if !self.sequences.accept(mac, "ruuvi", u32::from(seq)) => {
                        Outcome::Duplicate { mac, format }
                    }
                    _ => decoded(adv, format, r.values()),
                },
            };
        }
        Outcome::NotUnderstood(Unrecognised {
            company_ids: adv.manufacturer_data.iter().map(|(c, _)| *c).collect(),
            service_uuids: adv.service_data.iter().map(|(u, _)| *u).collect(),
        })
    }

    fn bthome(
        &mut self,
        adv: &Advertisement,
        data: &[u8],
        bindkey: Option<&BindKey>,
        now: Instant,
    ) -> Outcome {
        let mac = adv.mac;
        let format = match data.first() {
            Some(info) if info & bthome::INFO_ENCRYPTED != 0 => Format::BthomeEncrypted,
            _ => Format::Bthome,
        };
        let frame = match bthome::decode(data, mac, bindkey) {
            Ok(f) => f,
            Err(error) => return refused(mac, format, error),
        };
        if let Some(counter) = frame.counter {
            match self.counters.accept(mac, counter) {
                Verdict::Fresh => {}
                Verdict::Repeat => return Outcome::Duplicate { mac, format },
                Verdict::Replay { last } => {
                    return refused(mac, format, DecodeError::Replay { counter, last });
                }
            }
        }
        if let Some(id) = frame.packet_id {
            if !self.packet_ids.accept(mac, id, now) {
                return Outcome::Duplicate { mac, format };
            }
        }
        Outcome::Decoded(Decoded {
            stop: frame.stop,
            out_of_order: frame.out_of_order,
            events: frame.events,
            ..base(adv, format, frame.values)
        })
    }
}

fn refused(mac: Mac, format: Format, error: DecodeError) -> Outcome {
    Outcome::Refused { mac, format, error }
}

fn base(adv: &Advertisement, format: Format, values: Measurements) -> Decoded {
    Decoded {
        mac: adv.mac,
        format,
        rssi: adv.rssi,
        values,
        stop: None,
        out_of_order: false,
        events: Vec::new(),
    }
}

fn decoded(adv: &Advertisement, format: Format, values: Measurements) -> Outcome {
    Outcome::Decoded(base(adv, format, values))
}

#[cfg(test)]
#[path = "dispatch_tests.rs"]
mod tests;
