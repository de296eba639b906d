//! One de-duplicated uplink in, a device's readings (or a reason) out.
//!
//! The order is ChirpStack's (FAULTS §1.3, §3.4): find the devices with the
//! frame's DevAddr; for each, rebuild the 32-bit FCnt relative to the next
//! expected one and verify the MIC; a MIC that only verifies with the raw
//! 16-bit counter is a replay or a device restart (the `fcnt_reset`
//! policy decides); the previous counter again is a retransmission. The new
//! counter is stored before any reading is produced, then the FRMPayload is
//! decrypted and decoded.

use std::collections::HashMap;

use gateway_core::hash::SeededState;
use gateway_core::{DeviceId, Reading, TimeSource, Timestamp};

use super::codecs::js::ScriptCodec;
use super::codecs::CodecError;
use super::config::{FcntReset, LorawanDevice};
use super::crypto::SessionKeys;
use super::dedup::Uplink;
use super::fcnt::{FcntStore, StoreError};
use super::frame::{self, DataFrame, FrameError};

#[path = "uplink_names.rs"]
mod names;
pub use names::MetricNames;

/// The configured devices, by DevAddr: hashed by the seeded hasher of the
/// gateway's hot maps, where SipHash was about 110 instructions an uplink.
/// Its keys are the configuration's and the joins'; a frame's DevAddr is
/// only looked up.
#[derive(Debug, Default)]
pub struct Devices {
    by_addr: HashMap<u32, Vec<Session>, SeededState>,
}

/// A device with its session keys expanded. Both are made together, from
/// the device, only in [`Devices::new`] and [`Devices::install`], and
/// neither can be changed in place: a join replaces the whole entry, so
/// the keys that verify a frame are always the current session's.
#[derive(Debug)]
struct Session {
    device: LorawanDevice,
    keys: SessionKeys,
}

impl Session {
    fn new(mut device: LorawanDevice) -> Self {
        let keys = SessionKeys::new(&device.nwk_s_key, &device.app_s_key);
        // Every reading of the device carries a clone of its id: interned,
        // a clone is a copy, where a counted one took an atomic increment
        // here and a decrement on the pipeline's core (the count's cache
        // line moving between them) six times an uplink. The configured
        // and joined devices are few, and the table is bounded.
        device.id = device.id.interned();
        Self { device, keys }
    }
}

impl Devices {
    pub fn new(devices: Vec<LorawanDevice>) -> Self {
        let mut by_addr: HashMap<u32, Vec<Session>, SeededState> = HashMap::default();
        for d in devices {
            by_addr.entry(d.dev_addr).or_default().push(Session::new(d));
        }
        Self { by_addr }
    }

    /// Makes `device` the one with its id: an OTAA device's new session
    /// replaces the old one, whose DevAddr and keys stop verifying.
    pub fn install(&mut self, device: LorawanDevice) {
        for list in self.by_addr.values_mut() {
            list.retain(|s| s.device.id != device.id);
        }
        self.by_addr.retain(|_, list| !list.is_empty());
        self.by_addr
            .entry(device.dev_addr)
            .or_default()
            .push(Session::new(device));
    }

    /// The device `id` whose uplink came from `dev_addr`.
    pub fn get(&self, dev_addr: u32, id: &str) -> Option<&LorawanDevice> {
        self.by_addr
            .get(&dev_addr)?
            .iter()
            .map(|s| &s.device)
            .find(|d| d.id.as_str() == id)
    }

    /// Whether a device has the id `id` (a scan: for downlink commands,
    /// not for uplinks).
    pub fn has_id(&self, id: &str) -> bool {
        self.by_addr
            .values()
            .flatten()
            .any(|s| s.device.id.as_str() == id)
    }
}

/// An accepted uplink.
#[derive(Debug)]
pub struct Accepted {
    pub device: DeviceId,
    /// The full counter, now stored.
    pub fcnt: u32,
    /// The counter went back and the `accept` policy took it as a restart.
    pub reset: bool,
    pub frame: DataFrame,
    /// Codec values, then `rssi`, `snr` and `gateways`.
    pub readings: Vec<Reading>,
    /// Why the application payload gave no values, when it did not.
    pub codec_error: Option<CodecError>,
    /// The application payload, for a `js:` codec to decode on its
    /// workers: its values follow the others.
    pub script: Option<ScriptJob>,
}

/// An application payload waiting for a device's `js:` codec.
#[derive(Debug)]
pub struct ScriptJob {
    pub codec: ScriptCodec,
    pub payload: Vec<u8>,
    pub fport: u8,
}

/// Why an uplink was refused. Count it by [`Rejected::kind`].
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    #[error("{0}")]
    Frame(FrameError),
    #[error("a downlink frame, not from a device")]
    Downlink,
    #[error("no device with DevAddr {0:08X}")]
    UnknownDevAddr(u32),
    #[error("MIC does not verify with the key of any device with DevAddr {0:08X}")]
    InvalidMic(u32),
    #[error("device {device}: FCnt {fcnt} again (a retransmission), already processed")]
    Retransmission {
        device: DeviceId,
        fcnt: u32,
        /// The frame, when it is the device's latest and confirmed: the
        /// device sends it again because our ACK did not reach it, and
        /// the ACK (not its readings) is owed again.
        confirmed: Option<Box<DataFrame>>,
    },
    #[error("device {device}: FCnt {fcnt} is not above the last accepted {last} (replay, or a device restart with fcnt_reset = \"reject\")")]
    Replay {
        device: DeviceId,
        fcnt: u32,
        last: u32,
    },
    #[error(
        "device {device}: the frame counter cannot be stored, so the uplink is refused: {reason}"
    )]
    Store { device: DeviceId, reason: String },
}

impl Rejected {
    /// A stable snake_case label, for the `error_type` of a counter.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Frame(e) => e.kind(),
            Self::Downlink => "downlink",
            Self::UnknownDevAddr(_) => "unknown_dev_addr",
            Self::InvalidMic(_) => "invalid_mic",
            Self::Retransmission { .. } => "fcnt_retransmission",
            Self::Replay { .. } => "fcnt_replay",
            Self::Store { .. } => "fcnt_store",
        }
    }
}

/// How a device's MIC check came out.
enum Verdict {
    Accept { frame: DataFrame, reset: bool },
    Reject(Rejected),
}

fn verify(
    session: &Session,
    phy: &[u8],
    fcnt16: u16,
    last: Option<u32>,
    may_search: &mut dyn FnMut() -> bool,
) -> Option<Verdict> {
    let device = &session.device;
    // Without a stored counter there is no previous frame for the counter
    // on air to be a retransmission of: `full_fcnt(0, 0xFFFF)` reads 65 535
    // as the counter before 0 (2^32 − 1), and a device first heard at
    // 65 535 (new here, or its counter lost) was refused as a forgery.
    // Later rollovers are found by [`past_rollovers`].
    let full = match last {
        Some(l) => frame::full_fcnt(l.wrapping_add(1), fcnt16),
        None => u32::from(fcnt16),
    };
    let open = |fcnt| frame::open_with(phy, &session.keys, fcnt);
    match (open(full), last) {
        (Ok(frame), Some(last)) if full <= last => {
            let confirmed = (full == last && frame.mtype == frame::MType::ConfirmedDataUp)
                .then(|| Box::new(frame));
            return Some(Verdict::Reject(Rejected::Retransmission {
                device: device.id.clone(),
                fcnt: full,
                confirmed,
            }));
        }
        (Ok(frame), _) => {
            return Some(Verdict::Accept {
                frame,
                reset: false,
            })
        }
        (Err(_), _) => {}
    }
    let Some(last) = last else {
        if !may_search() {
            return None;
        }
        return past_rollovers(fcnt16, &open).map(|frame| Verdict::Accept {
            frame,
            reset: false,
        });
    };
    // A frame from before the last accepted one: of the same run of 65 536
    // (a replay), or the raw counter (a replay, or a device restarted).
    let raw = u32::from(fcnt16);
    let earlier = (last & !0xFFFF) | raw;
    let earlier = if earlier > last {
        earlier.checked_sub(0x1_0000)
    } else {
        Some(earlier)
    };
    if let Some(earlier) = earlier.filter(|e| *e != raw && *e != full) {
        if open(earlier).is_ok() {
            return Some(Verdict::Reject(Rejected::Replay {
                device: device.id.clone(),
                fcnt: earlier,
                last,
            }));
        }
    }
    if raw == full {
        return None;
    }
    let frame = open(raw).ok()?;
    Some(match device.fcnt_reset {
        FcntReset::Accept => Verdict::Accept { frame, reset: true },
        FcntReset::Reject => Verdict::Reject(Rejected::Replay {
            device: device.id.clone(),
            fcnt: raw,
            last,
        }),
    })
}

/// Rollovers of the 16-bit counter tried for a device whose stored
/// counter is gone (a damaged counter file, a new SD card): 255 × 65 536
/// frames, 32 years of a frame a minute.
const MAX_UNKNOWN_ROLLOVERS: u32 = 255;

/// The frame of a device with no stored counter whose counter is past
/// 65 535: only the 16 low bits travel, the MIC covers all 32, so the
/// counter is found by the MIC. Without this an ABP device past its
/// first 65 536 frames was refused for good once its counter was lost.
/// Each try is a CMAC; it is paid only until the device's first frame
/// is accepted and its counter stored again.
/// Searches allowed a second, over all devices: a flood of forged frames
/// for a device with no counter costs 255 CMACs each otherwise (about
/// 0.3 ms). 256 a second bound that to a quarter of a core, and leave a
/// real device room beside a flood of a few hundred forged frames a
/// second (32 did not: it was refused while the flood lasted).
const ROLLOVER_SEARCHES_PER_SECOND: u32 = 256;

/// Whether one more rollover search fits this second's allowance.
fn may_search_rollovers() -> bool {
    static USED: std::sync::Mutex<Option<(std::time::Instant, u32)>> = std::sync::Mutex::new(None);
    let mut used = USED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let now = std::time::Instant::now();
    match used.as_mut() {
        Some((since, n)) if now.duration_since(*since) < std::time::Duration::from_secs(1) => {
            *n += 1;
            *n <= ROLLOVER_SEARCHES_PER_SECOND
        }
        _ => {
            *used = Some((now, 1));
            true
        }
    }
}

fn past_rollovers(
    fcnt16: u16,
    open: &dyn Fn(u32) -> Result<DataFrame, FrameError>,
) -> Option<DataFrame> {
    (1..=MAX_UNKNOWN_ROLLOVERS).find_map(|k| open((k << 16) | u32::from(fcnt16)).ok())
}

/// Verifies, checks the counter of, stores, decrypts and decodes one uplink.
///
/// # Errors
/// Why it was refused; nothing was stored then.
pub fn process(
    uplink: &Uplink,
    devices: &Devices,
    store: &mut FcntStore,
) -> Result<Accepted, Rejected> {
    let staged = stage(uplink, devices, store)?;
    if let Err(e) = store.flush() {
        store.restore(staged.device.id.as_str(), staged.previous);
        return Err(Rejected::Store {
            device: staged.device.id.clone(),
            reason: e.to_string(),
        });
    }
    Ok(finish(staged, uplink, &mut MetricNames::default()))
}

/// [`process`] for uplinks whose windows closed together: their counters
/// are stored in one atomic write, before any of their readings leave. If
/// that write fails every one of them is refused.
pub fn process_batch(
    uplinks: &[Uplink],
    devices: &Devices,
    store: &mut FcntStore,
    names: &mut MetricNames,
) -> Vec<Result<Accepted, Rejected>> {
    let prepared = prepare_batch(uplinks, devices, store, names);
    let written = if prepared.needs_write() {
        store.flush()
    } else {
        Ok(())
    };
    prepared.settle(store, written)
}

/// A batch verified, decoded and staged in the store's memory, waiting for
/// the write that makes its counters durable: [`process_batch`] in two
/// halves, so the adapter can read on while the disk works. Nothing of it
/// may leave before [`Prepared::settle`]; no other write of the store may
/// start before that either, or the two could interleave on disk.
#[derive(Debug)]
pub struct Prepared {
    results: Vec<Result<Accepted, Rejected>>,
    /// Each staged uplink's device and its counter before, in staging order.
    staged: Vec<(DeviceId, Option<u32>)>,
}

/// [`process_batch`] up to the write: the counters are staged in memory
/// (so later frames are judged against them), the readings made.
pub fn prepare_batch(
    uplinks: &[Uplink],
    devices: &Devices,
    store: &mut FcntStore,
    names: &mut MetricNames,
) -> Prepared {
    let mut staged = Vec::new();
    let results = uplinks
        .iter()
        .map(|up| {
            let s = stage(up, devices, store)?;
            staged.push((s.device.id.clone(), s.previous));
            Ok(finish(s, up, names))
        })
        .collect();
    Prepared { results, staged }
}

impl Prepared {
    /// Whether a counter was staged: without one there is nothing to write.
    pub fn needs_write(&self) -> bool {
        !self.staged.is_empty()
    }

    /// The batch's outcome once the write is over. A failed write refuses
    /// every uplink that needed it and puts their counters back.
    pub fn settle(
        self,
        store: &mut FcntStore,
        written: Result<(), StoreError>,
    ) -> Vec<Result<Accepted, Rejected>> {
        let Err(e) = written else {
            return self.results;
        };
        for (device, previous) in self.staged.iter().rev() {
            store.restore(device.as_str(), *previous);
        }
        let reason = e.to_string();
        self.results
            .into_iter()
            .map(|r| {
                r.and_then(|accepted| {
                    Err(Rejected::Store {
                        device: accepted.device,
                        reason: reason.clone(),
                    })
                })
            })
            .collect()
    }
}

/// An uplink whose counter is staged in the store, not yet durable.
struct Staged<'a> {
    device: &'a LorawanDevice,
    frame: DataFrame,
    reset: bool,
    previous: Option<u32>,
}

fn stage<'a>(
    uplink: &Uplink,
    devices: &'a Devices,
    store: &mut FcntStore,
) -> Result<Staged<'a>, Rejected> {
    let head = frame::peek(&uplink.phy).map_err(Rejected::Frame)?;
    if !head.mtype.is_uplink() {
        return Err(Rejected::Downlink);
    }
    if frame::has_mac_commands_twice(&uplink.phy) {
        return Err(Rejected::Frame(FrameError::MacCommandsTwice));
    }
    // Here and in the usual case below, an error is made only when it is
    // returned: made for `ok_or`, each was built and dropped every uplink.
    let Some(candidates) = devices.by_addr.get(&head.dev_addr) else {
        return Err(Rejected::UnknownDevAddr(head.dev_addr));
    };
    // The usual case, one device with this DevAddr and a counter already:
    // judged and staged through one lookup of the counter, as below.
    if let [session] = &candidates[..] {
        let device = &session.device;
        if let Some(last) = store.last_mut(device.id.as_str()) {
            let Some(verdict) = verify(session, &uplink.phy, head.fcnt16, Some(*last), &mut || false)
            else {
                return Err(Rejected::InvalidMic(head.dev_addr));
            };
            let (frame, reset) = match verdict {
                Verdict::Accept { frame, reset } => (frame, reset),
                Verdict::Reject(r) => return Err(r),
            };
            let previous = Some(std::mem::replace(last, frame.fcnt));
            return Ok(Staged {
                device,
                frame,
                reset,
                previous,
            });
        }
    }
    // One allowance an uplink, whichever device it turns out to be.
    let mut search = None;
    let mut may_search = || *search.get_or_insert_with(may_search_rollovers);
    let (device, frame, reset) = candidates
        .iter()
        .find_map(|s| {
            let last = store.last(s.device.id.as_str());
            verify(s, &uplink.phy, head.fcnt16, last, &mut may_search).map(|v| (&s.device, v))
        })
        .map(|(d, verdict)| match verdict {
            Verdict::Accept { frame, reset } => Ok((d, frame, reset)),
            Verdict::Reject(r) => Err(r),
        })
        .ok_or(Rejected::InvalidMic(head.dev_addr))??;
    let previous = store.stage(device.id.as_str(), frame.fcnt);
    Ok(Staged {
        device,
        frame,
        reset,
        previous,
    })
}

fn finish(staged: Staged<'_>, uplink: &Uplink, names: &mut MetricNames) -> Accepted {
    let Staged {
        device,
        frame,
        reset,
        ..
    } = staged;
    let (mut readings, codec_error) = decode(device, &frame, uplink.received, names);
    let script = device.codec.script().and_then(|codec| {
        Some(ScriptJob {
            codec: codec.clone(),
            payload: frame.application_payload()?.to_vec(),
            fport: frame.fport?,
        })
    });
    let mut arrival = |i: usize, value: f64| {
        let metric = names.arrival(i)?;
        Reading::new(
            device.id.clone(),
            metric,
            value,
            uplink.received,
            TimeSource::Arrival,
        )
        .ok()
    };
    let rssi = uplink.rssi.and_then(|r| arrival(0, f64::from(r)));
    let snr = uplink.snr.and_then(|s| arrival(1, s));
    let gateways = arrival(2, uplink.gateways().len() as f64);
    for r in [rssi, snr, gateways].into_iter().flatten() {
        readings.push(r);
    }
    Accepted {
        device: device.id.clone(),
        fcnt: frame.fcnt,
        reset,
        frame,
        readings,
        codec_error,
        script,
    }
}

/// The codec's readings; FPort 0 (MAC commands) and frames without an
/// FPort carry no application data.
fn decode(
    device: &LorawanDevice,
    frame: &DataFrame,
    received: Timestamp,
    names: &mut MetricNames,
) -> (Vec<Reading>, Option<CodecError>) {
    let Some(payload) = frame.application_payload() else {
        return (Vec::new(), None);
    };
    // The list the codecs decode into, taken for the loop below (which
    // needs `names` too) and given back.
    let mut values = std::mem::take(&mut names.decoded);
    let decoded = match device.codec.decode_into(payload, &mut values) {
        None => (Vec::with_capacity(3), None),
        Some(Ok(())) => {
            // Room for the rssi, snr and gateways that follow.
            let mut readings = Vec::with_capacity(values.len() + 3);
            // A plain loop: as `extend` of a `filter_map`, each value went
            // through two calls and a move more (callgrind, issue 69).
            // Each name taken out, the list emptied after: a `drain` was
            // two calls more an uplink.
            for v in &mut values {
                let (time, source) = match v.time_ms.map(Timestamp::from_millis) {
                    Some(Ok(t)) => (t, TimeSource::Event),
                    _ => (received, TimeSource::Arrival),
                };
                let Some(metric) = names.get_cow(std::mem::take(&mut v.metric)) else {
                    continue;
                };
                if let Ok(r) = Reading::new(device.id.clone(), metric, v.value, time, source) {
                    readings.push(r);
                }
            }
            (readings, None)
        }
        Some(Err(e)) => (Vec::new(), Some(e)),
    };
    // Kept only as large as a usual payload needs: a `batch` of 255
    // values must not hold its 12 kB for good.
    if values.capacity() <= MetricNames::MAX_DECODED {
        values.clear();
        names.decoded = values;
    }
    decoded
}

#[cfg(test)]
#[path = "uplink_tests.rs"]
mod tests;
