//! Seeded series of a building's equipment, each with one labelled fault:
//! a third check on the detector beside NAB and SKAB, built from what
//! equipment does rather than from any corpus' files.
//!
//! Each [`Background`] is a kind of signal a gateway carries (a room's
//! daily rhythm read every 5 minutes or every 15 as a battery node reports
//! it, an office's week read every 5 minutes or every minute, a
//! controlled supply temperature, a fridge's compressor cycle, a meter's
//! load with occasional appliance spikes); each [`Fault`] is a generic way
//! such a signal goes wrong (the pattern stops, the level steps or
//! drifts, the noise grows or collapses, a cycle runs short, spikes come
//! often, the rhythm shifts in time). The fault starts after three weeks
//! (a series of days and weeks) or a week (a minute-scale one), or after
//! ten or three days for a [`History::Young`] series, and lasts a day or
//! six hours, then the signal returns to normal; its
//! label window is the fault's span, as SKAB labels faults.
//! Nothing here was fitted to a score: sizes are stated in the
//! background's own noise, once.

use crate::synthetic::{Rng, MONDAY_MS};

/// The normal behaviour of one series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Background {
    /// A room warming by day (±4 around 20), AR(1) noise, every 5 min.
    Room,
    /// An office occupied 08:00–18:00 on weekdays (+5), every 5 min.
    Office,
    /// The same office read every minute, as most MQTT sensors report: a
    /// memory counted in readings spans a fifth of the time.
    OfficeEveryMinute,
    /// The room read every 15 minutes, as a duty-cycled battery node
    /// (LoRaWAN, BLE) reports it: a memory counted in readings spans three
    /// times as long.
    RoomEvery15Minutes,
    /// A supply temperature held at 18 with AR(1) noise of 0.3, every minute.
    Supply,
    /// A fridge between 3 and 5 °C, the compressor cycling every ~40
    /// minutes, sensor noise 0.05, every minute.
    Fridge,
    /// A meter's power: a base load that follows the day, noise, and an
    /// appliance spike (+8 to +12) about four times a day, every minute.
    Meter,
}

impl Background {
    pub const ALL: [Self; 7] = [
        Self::Room,
        Self::Office,
        Self::OfficeEveryMinute,
        Self::RoomEvery15Minutes,
        Self::Supply,
        Self::Fridge,
        Self::Meter,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Room => "room",
            Self::Office => "office",
            Self::OfficeEveryMinute => "office-minute",
            Self::RoomEvery15Minutes => "room-15-minutes",
            Self::Supply => "supply",
            Self::Fridge => "fridge",
            Self::Meter => "meter",
        }
    }

    /// Milliseconds between readings.
    pub fn interval_ms(self) -> i64 {
        match self {
            Self::Room | Self::Office => 300_000,
            Self::RoomEvery15Minutes => 900_000,
            _ => 60_000,
        }
    }

    fn per_day(self) -> usize {
        (86_400_000 / self.interval_ms()) as usize
    }

    /// (readings, fault onset, fault length) of a series.
    fn layout(self, history: History) -> (usize, usize, usize) {
        let day = self.per_day();
        // A pattern of days and weeks needs weeks of history, whatever the
        // rate it is read at.
        let slow = matches!(
            self,
            Self::Room | Self::Office | Self::OfficeEveryMinute | Self::RoomEvery15Minutes
        );
        let (days, onset_day) = match (history, slow) {
            (History::Settled, true) => (30, 21),
            (History::Settled, false) => (10, 7),
            (History::Young, true) => (14, 10),
            (History::Young, false) => (4, 3),
        };
        let len = if slow { day } else { day / 4 };
        (days * day, onset_day * day + day / 3, len)
    }
}

/// How much of the series' normal life comes before its fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum History {
    /// Three weeks (day-scale series) or a week (minute series).
    Settled,
    /// Ten days or three days: a newly installed sensor, or a short
    /// recording such as most public benchmark files.
    Young,
}

impl History {
    pub const ALL: [Self; 2] = [Self::Settled, Self::Young];

    pub fn name(self) -> &'static str {
        match self {
            Self::Settled => "settled",
            Self::Young => "young",
        }
    }
}

/// A way the signal goes wrong, for the fault's span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The value freezes at the last reading (a dead sensor).
    Stuck,
    /// The pattern stops: the value sits at its usual mean with its usual
    /// noise (a schedule, a cycle, a controller gone idle).
    PatternStops,
    /// The level steps up by 3 of the background's whole spreads.
    StepUp,
    /// The level steps down by 3 spreads.
    StepDown,
    /// The level drifts away, to 3 spreads by the fault's end.
    Drift,
    /// The reading-to-reading noise grows fourfold.
    NoiseUp,
    /// The noise collapses to a fifth (a sensor reading its own default,
    /// a quantiser stuck near one step).
    NoiseDown,
    /// The rhythm runs early: the day's pattern or the load comes 6 hours
    /// ahead (a schedule on the wrong clock).
    Shifted,
    /// The cycle runs twice as fast (a short-cycling compressor); on
    /// signals without a cycle, the spikes come ten times as often.
    FasterCycles,
    /// The pattern's swing halves around its usual mean (a heating that no
    /// longer reaches its day set-point, a compressor that cannot pull the
    /// cabinet down).
    Weaker,
}

impl Fault {
    pub const ALL: [Self; 10] = [
        Self::Stuck,
        Self::PatternStops,
        Self::StepUp,
        Self::StepDown,
        Self::Drift,
        Self::NoiseUp,
        Self::NoiseDown,
        Self::Shifted,
        Self::FasterCycles,
        Self::Weaker,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Stuck => "stuck",
            Self::PatternStops => "pattern stops",
            Self::StepUp => "step up",
            Self::StepDown => "step down",
            Self::Drift => "drift",
            Self::NoiseUp => "noise up",
            Self::NoiseDown => "noise down",
            Self::Shifted => "rhythm shifted",
            Self::FasterCycles => "faster cycles / spikes",
            Self::Weaker => "weaker swing",
        }
    }

    /// Whether the fault means anything on this background (a signal with
    /// no pattern cannot lose it; a constant cannot cycle faster).
    pub fn applies_to(self, background: Background) -> bool {
        match self {
            Self::PatternStops | Self::Weaker => background != Background::Supply,
            // A cycle half a period late looks the same as one on time.
            Self::Shifted => !matches!(background, Background::Supply | Background::Fridge),
            Self::FasterCycles => matches!(background, Background::Fridge | Background::Meter),
            _ => true,
        }
    }
}

/// One labelled series: its readings as `(epoch ms, value)` and the
/// fault's window (row indices, inclusive).
pub struct Labelled {
    pub readings: Vec<(i64, f64)>,
    pub window: (usize, usize),
}

/// The seeded series of `background` with `fault` after `history`.
pub fn labelled(seed: u64, background: Background, fault: Fault, history: History) -> Labelled {
    let (n, onset, len) = background.layout(history);
    let end = onset + len;
    let faulty = signal(seed, background, n, Some((fault, onset, end)));
    // Before its onset the faulty signal is the clean one (the test below
    // holds it to that), so the spread is taken there.
    let spread = spread(&faulty[..onset]);
    let readings = faulty
        .iter()
        .enumerate()
        .map(|(i, &(x, mean))| {
            let inside = (onset..end).contains(&i);
            let ramp = (i.saturating_sub(onset)) as f64 / len as f64;
            let x = match fault {
                Fault::Stuck if inside => faulty[onset - 1].0,
                Fault::PatternStops if inside => mean,
                Fault::StepUp if inside => x + 3.0 * spread,
                Fault::StepDown if inside => x - 3.0 * spread,
                Fault::Drift if inside => x + 3.0 * spread * ramp,
                _ => x,
            };
            (MONDAY_MS + i as i64 * background.interval_ms(), x)
        })
        .collect();
    Labelled {
        readings,
        window: (onset, end - 1),
    }
}

fn spread(xs: &[(f64, f64)]) -> f64 {
    let n = xs.len().max(1) as f64;
    let mean = xs.iter().map(|x| x.0).sum::<f64>() / n;
    (xs.iter().map(|x| (x.0 - mean).powi(2)).sum::<f64>() / n).sqrt()
}

/// `n` readings of `background`, each with the usual mean around which
/// its pattern moves (for [`Fault::PatternStops`]); the faults that change
/// how the signal is made (noise, rhythm, cycles) are made here, the rest
/// are laid over it by [`labelled`].
fn signal(
    seed: u64,
    background: Background,
    n: usize,
    fault: Option<(Fault, usize, usize)>,
) -> Vec<(f64, f64)> {
    let mut rng = Rng::new(seed.wrapping_mul(0x2545_F491).wrapping_add(7));
    let per_day = background.per_day();
    let mut ar = 0.0;
    let (mut fridge, mut cooling, mut spike_left) = (4.0, true, 0usize);
    (0..n)
        .map(|i| {
            let active = |f: Fault| fault.is_some_and(|(k, a, b)| k == f && (a..b).contains(&i));
            let noise_scale = if active(Fault::NoiseUp) {
                4.0
            } else if active(Fault::NoiseDown) {
                0.2
            } else {
                1.0
            };
            let shifted = active(Fault::Shifted);
            let swing = if active(Fault::Weaker) { 0.5 } else { 1.0 };
            let faster = active(Fault::FasterCycles);
            // The clock the pattern follows: 6 hours early while shifted.
            let j = if shifted { i + per_day / 4 } else { i };
            let day_frac = (j % per_day) as f64 / per_day as f64;
            let daily = (std::f64::consts::TAU * (day_frac - 0.25)).sin();
            ar = 0.5 * ar + rng.normal() * noise_scale;
            let white = rng.normal() * noise_scale;
            match background {
                Background::Room | Background::RoomEvery15Minutes => {
                    (20.0 + 4.0 * swing * daily + ar, 20.0)
                }
                Background::Office | Background::OfficeEveryMinute => {
                    let weekday = (j / per_day) % 7 < 5;
                    let busy = weekday && (8.0..18.0).contains(&(day_frac * 24.0));
                    (18.0 + if busy { 5.0 * swing } else { 0.0 } + ar, 20.0)
                }
                Background::Supply => (18.0 + 0.3 * ar, 18.0),
                Background::Fridge => {
                    // Cooling at 0.1 °C a minute down to 3, warming at 0.1
                    // up to 5: a 40-minute cycle; twice as fast when short
                    // cycling.
                    let rate = if faster { 0.2 } else { 0.1 };
                    if cooling {
                        fridge -= rate;
                        cooling = fridge > 4.0 - swing;
                    } else {
                        fridge += rate;
                        cooling = fridge >= 4.0 + swing;
                    }
                    (fridge + 0.05 * white, 4.0)
                }
                Background::Meter => {
                    let rate = if faster { 40.0 } else { 4.0 } / per_day as f64;
                    if spike_left == 0 && rng.uniform() < rate {
                        spike_left = 1 + (rng.uniform() * 3.0) as usize;
                    }
                    let spike = if spike_left > 0 {
                        spike_left -= 1;
                        8.0 + 4.0 * rng.uniform()
                    } else {
                        0.0
                    };
                    (3.0 + 1.5 * swing * daily + 0.5 * ar + spike, 3.0)
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fault_changes_only_its_span() {
        for background in Background::ALL {
            for fault in Fault::ALL.into_iter().filter(|f| f.applies_to(background)) {
                let clean = signal(3, background, background.layout(History::Young).0, None);
                let s = labelled(3, background, fault, History::Young);
                let (a, b) = s.window;
                let differs = |i: usize| (s.readings[i].1 - clean[i].0).abs() > 1e-12;
                assert!(
                    (0..a).all(|i| !differs(i)),
                    "{background:?} {fault:?} before"
                );
                assert!((a..=b).any(differs), "{background:?} {fault:?} inside");
            }
        }
    }
}
