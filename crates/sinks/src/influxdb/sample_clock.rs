//! Which sample of its device in its millisecond a reading is, and so
//! the nanosecond its point is written at (pure): apart from `line` so
//! that the numbering rules, which decide what InfluxDB keeps, read on
//! their own.

use std::collections::HashMap;

use gateway_core::{DeviceId, Reading};

/// Nanoseconds per millisecond: the room for samples of one device within
/// one millisecond.
pub(super) const NS_PER_MS: i64 = 1_000_000;

/// Samples of one device in one millisecond numbered apart within one
/// journal epoch; past this they share the last number (InfluxDB keeps the
/// last of those).
const SAMPLES_PER_EPOCH: i64 = 1_000;

/// Journal epochs whose numbers stay apart: epoch `e` numbers its samples
/// from `(e % EPOCH_SLOTS) * SAMPLES_PER_EPOCH`, so a millisecond whose
/// samples straddle a checkpoint keeps them apart, and a replay that starts
/// at the checkpoint numbers its part as the first run did. Epochs a
/// thousand checkpoints apart share numbers: hours, far beyond the seconds
/// samples of one millisecond (or one whole-second `ts`) arrive within.
const EPOCH_SLOTS: u64 = 1_000;

/// Devices whose recent samples the [`SampleClock`] remembers before it starts
/// afresh: far above any real fleet (`max_series` bounds the open series),
/// and it keeps a flood of made-up device ids from growing it for ever.
pub(super) const MAX_TRACKED_DEVICES: usize = 100_000;

/// Which sample of its device in its millisecond a reading belongs to.
///
/// A sample is the readings of one device at one time with distinct
/// metrics (one CSV line, one JSON object): its readings share a point. A
/// reading whose metric the current sample already has starts the next
/// sample, one nanosecond later. The device's last `RECENT_MS`
/// milliseconds are remembered, so a node that flushes a few buffered
/// samples out of order still gets distinct times; one that goes back
/// further starts at ordinal 0 there.
#[derive(Debug, Default, Clone)]
pub struct SampleClock {
    devices: HashMap<DeviceId, Vec<Sample>>,
    /// The journal epoch of the readings being numbered (0 without a
    /// journal), and the first number it gives.
    epoch: Option<u64>,
    first: i64,
}

/// Milliseconds remembered per device.
const RECENT_MS: usize = 8;

#[derive(Debug, Clone)]
struct Sample {
    ms: i64,
    ordinal: i64,
    /// Hashes of the metrics the sample has: compared per reading, so no
    /// name is copied. A collision only starts the next sample early.
    metrics: Vec<u64>,
}

impl SampleClock {
    /// The readings that follow were journaled in `epoch`: numbering starts
    /// afresh in that epoch's own range, as a replay from its start does.
    /// The same epoch again (a restart that goes on appending to the epoch
    /// it replayed) keeps the numbering the replay rebuilt.
    pub fn start_epoch(&mut self, epoch: u64) {
        if self.epoch == Some(epoch) {
            return;
        }
        self.epoch = Some(epoch);
        self.devices.clear();
        let slot = i64::try_from(epoch % EPOCH_SLOTS).unwrap_or(0);
        self.first = slot * SAMPLES_PER_EPOCH;
    }

    /// The time in nanoseconds of `r`'s point.
    pub fn time_ns(&mut self, r: &Reading) -> i64 {
        let ms = r.time().as_millis();
        let metric = metric_hash(r.metric().as_str());
        let base = ms.saturating_mul(NS_PER_MS).saturating_add(self.first);
        if let Some(recent) = self.devices.get_mut(r.device()) {
            return base.saturating_add(ordinal(recent, ms, metric));
        }
        if self.devices.len() >= MAX_TRACKED_DEVICES {
            self.devices.clear();
        }
        let mut recent = Vec::with_capacity(RECENT_MS);
        let ordinal = ordinal(&mut recent, ms, metric);
        self.devices.insert(r.device().clone(), recent);
        base.saturating_add(ordinal)
    }
}

/// The ordinal of a reading of `metric` at `ms` among a device's samples.
fn ordinal(recent: &mut Vec<Sample>, ms: i64, metric: u64) -> i64 {
    // Newest last: a device in time order hits on the first look.
    if let Some(s) = recent.iter_mut().rev().find(|s| s.ms == ms) {
        if s.metrics.contains(&metric) {
            // Past the epoch's range the numbers would reach the next
            // epoch's: the last ordinal is kept instead (InfluxDB keeps the
            // last of those).
            s.ordinal = (s.ordinal + 1).min(SAMPLES_PER_EPOCH - 1);
            s.metrics.clear();
        }
        s.metrics.push(metric);
        return s.ordinal;
    }
    if recent.len() >= RECENT_MS {
        recent.remove(0);
    }
    recent.push(Sample {
        ms,
        ordinal: 0,
        metrics: vec![metric],
    });
    0
}

/// The same for the same name in every run (SipHash with fixed keys): only
/// equality matters, and a collision is all but impossible in 64 bits.
fn metric_hash(name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}
