//! How a journal record holds its readings.
//!
//! Each reading once spelled out its device and metric, 41 bytes for a
//! BME680 value of which 8 were the value: the journal's write and
//! fdatasync, which grow with the bytes, were a tenth of the CPU of an
//! acknowledged CSV line, and its encoding another twentieth. A record's
//! readings share a few names (one node's line: one device, four
//! metrics) and, without a time of their own, one arrival time. So a
//! record now names each once, in a table of slots given in order of
//! first use, and a reading refers to them by slot:
//!
//! ```text
//! reading = flags:u8 device metric [time_ms:i64] value:f64
//! device  = text            (flags & NEW_DEVICE: takes the next free slot)
//!         | slot:u8         (a name written before in this record)
//! metric  = the same, with NEW_METRIC
//! flags   = EVENT_TIME 1 | NEW_DEVICE 2 | NEW_METRIC 4 | SAME_TIME 8
//! ```
//!
//! `SAME_TIME`: the time of the reading before, in this record. A name
//! written when all [`SLOTS`] are taken takes none, and is written out
//! again at its next use: the decoder follows the same rule, so the two
//! agree on every slot. Records in the earlier layout (every name and
//! time spelled out, [`decode_spelled_out`]) are still read.

use gateway_core::state_file::fields::{put_text, Reader};
use gateway_core::{DeviceId, MetricName, Reading, TimeSource, Timestamp};

const EVENT_TIME: u8 = 1;
const NEW_DEVICE: u8 = 2;
const NEW_METRIC: u8 = 4;
const SAME_TIME: u8 = 8;

/// Names one record can refer to by slot. A line holds a handful; beyond
/// this a name is spelled out, which only costs bytes.
const SLOTS: usize = 64;

/// The names a record has given slots. Most uses are of the same
/// allocation (a connection's device id, a configured column's metric),
/// found by address; equal text elsewhere is found by comparing.
#[derive(Default)]
struct Slots<'r> {
    given: Vec<&'r str>,
}

impl<'r> Slots<'r> {
    /// The slot of `text`, trying `guess` first: the device of the reading
    /// before, the metric after the one before (a line's columns).
    #[inline]
    fn find(&self, text: &str, guess: usize) -> Option<usize> {
        let same = |k: &&str| std::ptr::eq(*k, text);
        if self.given.get(guess).is_some_and(same) {
            return Some(guess);
        }
        (self.given.iter().position(same)).or_else(|| self.given.iter().position(|k| *k == text))
    }

    /// Writes `text` as its slot, or spelled out as a new name (`true`);
    /// gives the slot it has, if any. Always inlined (two call sites):
    /// called twice a reading, the call itself was most of its cost, and
    /// `#[inline]` alone left it out of line.
    #[inline(always)]
    fn put(&mut self, out: &mut Vec<u8>, text: &'r str, guess: usize) -> (bool, Option<usize>) {
        if let Some(slot) = self.find(text, guess) {
            // There are fewer than 256 slots.
            out.push(slot as u8);
            return (false, Some(slot));
        }
        put_text(out, text);
        if self.given.len() < SLOTS {
            self.given.push(text);
            return (true, Some(self.given.len() - 1));
        }
        (true, None)
    }
}

/// Appends `readings` to `out` in the layout above.
pub(super) fn encode(readings: &[Reading], out: &mut Vec<u8>) {
    let mut slots = Slots::default();
    let mut last_time = None;
    let (mut device_guess, mut metric_guess) = (0, 0);
    for r in readings {
        let flags_at = out.len();
        out.push(0);
        let mut flags = 0;
        if r.time_source() == TimeSource::Event {
            flags |= EVENT_TIME;
        }
        let (new, slot) = slots.put(out, r.device().as_str(), device_guess);
        if new {
            flags |= NEW_DEVICE;
        }
        device_guess = slot.unwrap_or(SLOTS);
        let (new, slot) = slots.put(out, r.metric().as_str(), metric_guess);
        if new {
            flags |= NEW_METRIC;
        }
        metric_guess = slot.map_or(SLOTS, |s| s + 1);
        let time = r.time().as_millis();
        if last_time == Some(time) {
            flags |= SAME_TIME;
        } else {
            out.extend_from_slice(&time.to_le_bytes());
            last_time = Some(time);
        }
        out.extend_from_slice(&r.value().to_bits().to_le_bytes());
        out[flags_at] = flags;
    }
}

/// A slot's name, made into an id once for each use it is put to.
struct Name<'a> {
    text: &'a str,
    device: Option<DeviceId>,
    metric: Option<MetricName>,
}

/// `n` readings in the layout above; `None` if they do not parse.
pub(super) fn decode(r: &mut Reader, n: u32) -> Option<Vec<Reading>> {
    let mut names: Vec<Name> = Vec::new();
    let mut last_time = None;
    let mut readings = Vec::with_capacity(n.min(4096) as usize);
    for _ in 0..n {
        let flags = r.u8()?;
        let device = name(r, &mut names, flags & NEW_DEVICE != 0)?;
        let device = match &device.device {
            Some(d) => d.clone(),
            None => device
                .device
                .insert(DeviceId::new(device.text).ok()?)
                .clone(),
        };
        let metric = name(r, &mut names, flags & NEW_METRIC != 0)?;
        let metric = match &metric.metric {
            Some(m) => m.clone(),
            None => metric
                .metric
                .insert(MetricName::new(metric.text).ok()?)
                .clone(),
        };
        let time = if flags & SAME_TIME != 0 {
            last_time?
        } else {
            Timestamp::from_millis(r.i64()?).ok()?
        };
        last_time = Some(time);
        let value = r.f64()?;
        let source = if flags & EVENT_TIME != 0 {
            TimeSource::Event
        } else {
            TimeSource::Arrival
        };
        readings.push(Reading::new(device, metric, value, time, source).ok()?);
    }
    Some(readings)
}

/// The next name: its text, given the next free slot, or a slot given
/// before. A spelled-out name beyond the slots is kept in a scratch entry
/// past them.
fn name<'n, 'a>(
    r: &mut Reader<'a>,
    names: &'n mut Vec<Name<'a>>,
    new: bool,
) -> Option<&'n mut Name<'a>> {
    if !new {
        let slot = usize::from(r.u8()?);
        return names.get_mut(slot).filter(|_| slot < SLOTS);
    }
    let fresh = Name {
        text: r.text()?,
        device: None,
        metric: None,
    };
    if names.len() > SLOTS {
        names.truncate(SLOTS);
    }
    names.push(fresh);
    names.last_mut()
}

/// `n` readings of the earlier layout, every name and time spelled out:
/// `device:text metric:text time_ms:i64 value:f64 event_time:u8`.
pub(super) fn decode_spelled_out(r: &mut Reader, n: u32) -> Option<Vec<Reading>> {
    let mut readings = Vec::with_capacity(n.min(4096) as usize);
    for _ in 0..n {
        let device = DeviceId::new(r.text()?).ok()?;
        let metric = MetricName::new(r.text()?).ok()?;
        let time = Timestamp::from_millis(r.i64()?).ok()?;
        let value = r.f64()?;
        let source = match r.u8()? {
            0 => TimeSource::Arrival,
            _ => TimeSource::Event,
        };
        readings.push(Reading::new(device, metric, value, time, source).ok()?);
    }
    Some(readings)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn reading(
        device: &DeviceId,
        metric: &str,
        value: f64,
        ms: i64,
        source: TimeSource,
    ) -> Reading {
        let metric = MetricName::new(metric).unwrap();
        let at = Timestamp::from_millis(ms).unwrap();
        Reading::new(device.clone(), metric, value, at, source).unwrap()
    }

    fn round_trip(readings: &[Reading]) -> (Vec<u8>, Vec<Reading>) {
        let mut bytes = Vec::new();
        encode(readings, &mut bytes);
        let n = u32::try_from(readings.len()).unwrap();
        let mut r = Reader::new(&bytes);
        let back = decode(&mut r, n).unwrap();
        assert!(r.is_empty(), "every byte read");
        (bytes, back)
    }

    /// A read's worth of BME680 lines from one node: a reading is its
    /// flags, two slots and the value, a line's first reading its names
    /// and time too.
    #[test]
    fn a_node_s_lines_take_their_names_and_time_once() {
        let node = DeviceId::new("sim-00001").unwrap();
        let metrics = ["temperature", "pressure", "humidity", "gas"];
        let at = 1_795_255_500_000;
        let readings: Vec<Reading> = (0..400)
            .flat_map(|line| {
                let node = &node;
                metrics.iter().enumerate().map(move |(i, m)| {
                    reading(
                        node,
                        m,
                        f64::from(line) + i as f64 / 10.0,
                        at,
                        TimeSource::Arrival,
                    )
                })
            })
            .collect();
        let (bytes, back) = round_trip(&readings);
        assert_eq!(back, readings);
        // Flags, two slots and the value; the five names spelled out
        // (length and text) in place of their first slot; one time.
        let names: usize = 9 + metrics.iter().map(|m| m.len()).sum::<usize>() + 2 * 5;
        assert_eq!(bytes.len(), readings.len() * 11 + names - 5 + 8);
    }

    /// Every kind of step: devices and metrics coming back, times changing
    /// and repeating, the sensor's time and the gateway's, equal names in
    /// two allocations, and more names than slots (spelled out each time).
    #[test]
    fn every_reading_comes_back_as_it_went_in() {
        let devices: Vec<DeviceId> = (0..100)
            .map(|i| DeviceId::new(format!("node-{i}")).unwrap())
            .collect();
        let again = DeviceId::new("node-3").unwrap();
        let mut readings = Vec::new();
        for round in 0..3i64 {
            for (i, d) in devices.iter().enumerate() {
                let source = if i % 3 == 0 {
                    TimeSource::Event
                } else {
                    TimeSource::Arrival
                };
                let ms = 1_795_255_500_000 + round * 1000 + (i as i64 / 7);
                readings.push(reading(d, "t", i as f64, ms, source));
                readings.push(reading(d, &format!("m{}", i % 5), -0.5, ms, source));
                readings.push(reading(&again, "t", f64::MAX, ms + 1, TimeSource::Event));
            }
        }
        let (_, back) = round_trip(&readings);
        assert_eq!(back, readings);
        assert_eq!(round_trip(&[]).1, []);
    }

    /// A slot never given, or bytes cut short: no readings, not a panic.
    #[test]
    fn a_record_that_does_not_parse_gives_none() {
        let d = DeviceId::new("d").unwrap();
        let mut bytes = Vec::new();
        encode(
            &vec![reading(&d, "t", 1.0, 5, TimeSource::Arrival); 2],
            &mut bytes,
        );
        for cut in 0..bytes.len() {
            assert_eq!(
                decode(&mut Reader::new(&bytes[..cut]), 2),
                None,
                "cut at {cut}"
            );
        }
        // The second reading's device: slot 0 → slot 9, never given.
        let second = bytes.len() - 1 - 2 - 8;
        bytes[second + 1] = 9;
        assert_eq!(decode(&mut Reader::new(&bytes), 2), None);
        // A first reading with no time of its own has none to repeat.
        assert_eq!(
            decode(
                &mut Reader::new(&[SAME_TIME | NEW_DEVICE | NEW_METRIC, 1, 0, b'd', 1, 0, b't']),
                1
            ),
            None
        );
    }
}
