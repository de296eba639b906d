//! Seeded synthetic series for tests and the `synthetic` example: clean
//! noise, and noise with one injected anomaly of each common shape; long
//! clean series of the kinds a building has, for the false-alarm rate.

/// A small deterministic generator (xorshift64*), so the series are the
/// same on every machine without a dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a non-zero seed (0 is replaced).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// The anomaly injected into a synthetic series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// No anomaly: the false-positive check.
    Clean,
    /// The level moves by this many noise deviations and stays.
    LevelShift(f64),
    /// One reading off by this many noise deviations.
    Spike(f64),
    /// The level ramps by this many noise deviations over 500 readings.
    Drift(f64),
    /// The noise deviation is multiplied by this.
    NoiseChange(f64),
}

/// `n` readings of AR(1) noise (φ = 0.5, unit innovation) around 20 with a
/// daily-like sine, the anomaly starting at `at`.
pub fn series(seed: u64, n: usize, at: usize, shape: Shape) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    let mut ar = 0.0;
    (0..n)
        .map(|i| {
            let scale = match shape {
                Shape::NoiseChange(k) if i >= at => k,
                _ => 1.0,
            };
            ar = 0.5 * ar + rng.normal() * scale;
            let season = 2.0 * (i as f64 * std::f64::consts::TAU / 288.0).sin();
            let extra = match shape {
                Shape::LevelShift(d) if i >= at => d,
                Shape::Spike(d) if i == at => d,
                Shape::Drift(d) if i >= at => d * ((i - at) as f64 / 500.0).min(1.0),
                _ => 0.0,
            };
            20.0 + season + ar + extra
        })
        .collect()
}

/// A seeded building fault played over one device's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Building {
    /// A fridge (`temperature` °C, `door` 0/1, one reading of each a
    /// minute). The door opens a few times a day for 1–3 minutes and the
    /// cabinet warms while it is open, then cools back (10-minute time
    /// constant). Fault: the compressor stops; the cabinet warms at
    /// 0.02 °C a minute with the door shut.
    FridgeWarmsDoorShut,
    /// A meeting room (`co2` ppm, `motion` counts a minute, `temperature`
    /// °C). Meetings at random hours of the day raise motion, CO₂ (toward
    /// 1 000 ppm) and temperature; the room airs out afterwards. Fault: CO₂
    /// climbs 6 ppm a minute with nothing moving and the temperature flat
    /// (a leak, or ventilation stuck off at night).
    RoomCo2NobodyIn,
}

/// Readings of one device: `(minute, metric, value)` for `minutes`
/// minutes, the fault starting at minute `fault_at` (never when `None`).
pub fn building(
    seed: u64,
    minutes: usize,
    fault_at: Option<usize>,
    kind: Building,
) -> Vec<(usize, &'static str, f64)> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(minutes * 3);
    let (mut temp, mut open_left, mut co2, mut meeting_left) = (4.0, 0usize, 420.0, 0usize);
    let mut room_temp = 21.0;
    for m in 0..minutes {
        let faulty = fault_at.is_some_and(|f| m >= f);
        let hour = (m / 60) % 24;
        match kind {
            Building::FridgeWarmsDoorShut => {
                // About 8 openings a day, all between 07:00 and 22:00.
                if open_left == 0 && (7..22).contains(&hour) && rng.uniform() < 8.0 / 900.0 {
                    open_left = 1 + (rng.uniform() * 3.0) as usize;
                }
                let open = open_left > 0 && !faulty;
                open_left = open_left.saturating_sub(1);
                if open {
                    temp += 0.8;
                } else if faulty {
                    temp += 0.02;
                } else {
                    temp += (4.0 - temp) / 10.0;
                }
                out.push((m, "temperature", temp + 0.05 * rng.normal()));
                out.push((m, "door", if open { 1.0 } else { 0.0 }));
            }
            Building::RoomCo2NobodyIn => {
                if meeting_left == 0 && (8..20).contains(&hour) && rng.uniform() < 3.0 / 720.0 {
                    meeting_left = 30 + (rng.uniform() * 90.0) as usize;
                }
                let busy = meeting_left > 0 && !faulty;
                meeting_left = meeting_left.saturating_sub(1);
                let motion = if busy {
                    (2.0 + 3.0 * rng.uniform()).round()
                } else {
                    0.0
                };
                if faulty {
                    co2 += 6.0;
                } else if busy {
                    co2 += (1000.0 - co2) / 40.0;
                } else {
                    co2 += (420.0 - co2) / 25.0;
                }
                room_temp += ((if busy { 23.0 } else { 21.0 }) - room_temp) / 30.0;
                out.push((m, "co2", co2 + 5.0 * rng.normal()));
                out.push((m, "motion", motion));
                out.push((m, "temperature", room_temp + 0.05 * rng.normal()));
            }
        }
    }
    out
}

/// A family of long clean series, where any alert is a false alarm (but
/// for the first alert at each set-point change of [`Clean::SetPoints`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clean {
    /// Independent Gaussian noise around a constant, one reading a minute.
    WhiteNoise,
    /// A Gaussian random walk (a level with no home), one a minute.
    RandomWalk,
    /// A daily rhythm (a room warming by day) with AR(1) noise, one
    /// reading every 5 minutes.
    Daily,
    /// An office: occupied 08:00–18:00 on weekdays only, AR(1) noise, one
    /// reading every 5 minutes.
    Weekly,
    /// The same office read every minute, as most MQTT sensors report:
    /// five times as many readings a week, so every memory counted in
    /// readings spans a fifth of the time.
    WeeklyEveryMinute,
    /// The same office read every 15 minutes, as a battery node (LoRaWAN,
    /// BLE) reports to save its cells: a third as many readings a week as
    /// every 5 minutes, so every memory counted in readings spans three
    /// times the time, and every average of a few readings is noisier in
    /// time than the thresholds were chosen on.
    WeeklyEveryQuarterHour,
    /// A controlled temperature whose set-point moves by 3–10 noise
    /// deviations every 2–5 days and settles there (10-reading time
    /// constant), one reading a minute.
    SetPoints,
}

impl Clean {
    pub const ALL: [Self; 7] = [
        Self::WhiteNoise,
        Self::RandomWalk,
        Self::Daily,
        Self::Weekly,
        Self::WeeklyEveryMinute,
        Self::WeeklyEveryQuarterHour,
        Self::SetPoints,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::WhiteNoise => "white noise",
            Self::RandomWalk => "random walk",
            Self::Daily => "daily pattern + noise",
            Self::Weekly => "weekly pattern + noise",
            Self::WeeklyEveryMinute => "weekly pattern, every minute",
            Self::WeeklyEveryQuarterHour => "weekly pattern, every 15 min",
            Self::SetPoints => "set-point steps that settle",
        }
    }

    /// Milliseconds between readings.
    pub fn interval_ms(self) -> i64 {
        match self {
            Self::Daily | Self::Weekly => 300_000,
            Self::WeeklyEveryQuarterHour => 900_000,
            _ => 60_000,
        }
    }
}

/// Epoch milliseconds of the first reading of a [`clean`] series: Monday
/// 1970-01-05 00:00 UTC, so the weekly pattern's weekdays are weekdays.
pub const MONDAY_MS: i64 = 4 * 86_400_000;

/// Readings a set-point change may be alerted within: its first alert
/// there is a detection of the change, not a false alarm.
pub const SETTLE: usize = 500;

/// `n` clean readings of `family` (one every [`Clean::interval_ms`],
/// starting on a Monday at midnight), and the indices at which a set-point
/// changed.
pub fn clean(seed: u64, n: usize, family: Clean) -> (Vec<f64>, Vec<usize>) {
    let mut rng = Rng::new(seed.wrapping_mul(0x9E37_79B9).wrapping_add(17));
    let (mut ar, mut walk, mut level, mut target) = (0.0, 0.0, 20.0, 20.0);
    let mut next_change = 0usize;
    let mut changes = Vec::new();
    let per_day = (86_400_000 / family.interval_ms()) as usize;
    let xs = (0..n)
        .map(|i| {
            ar = 0.5 * ar + rng.normal();
            let day_frac = (i % per_day) as f64 / per_day as f64;
            match family {
                Clean::WhiteNoise => 20.0 + rng.normal(),
                Clean::RandomWalk => {
                    walk += rng.normal();
                    walk
                }
                Clean::Daily => 20.0 + 4.0 * (std::f64::consts::TAU * (day_frac - 0.25)).sin() + ar,
                Clean::Weekly | Clean::WeeklyEveryMinute | Clean::WeeklyEveryQuarterHour => {
                    let weekday = (i / per_day) % 7 < 5;
                    let hours = day_frac * 24.0;
                    let busy = weekday && (8.0..18.0).contains(&hours);
                    18.0 + if busy { 5.0 } else { 0.0 } + ar
                }
                Clean::SetPoints => {
                    if i == next_change {
                        if i > 0 {
                            let size = 3.0 + 7.0 * rng.uniform();
                            target += if rng.uniform() < 0.5 { -size } else { size };
                            changes.push(i);
                        }
                        next_change = i + 1440 * 2 + (rng.uniform() * 1440.0 * 3.0) as usize;
                    }
                    level += (target - level) / 10.0;
                    level + ar
                }
            }
        })
        .collect();
    (xs, changes)
}

/// False alarms among the alert indices `hits` of a series from
/// [`clean`]: every alert but the first within [`SETTLE`] readings of each
/// set-point change.
pub fn false_alarms(hits: &[usize], changes: &[usize]) -> usize {
    let mut excused = vec![false; changes.len()];
    hits.iter()
        .filter(|&&i| {
            let change = changes.iter().position(|&c| (c..c + SETTLE).contains(&i));
            match change {
                Some(c) if !excused[c] => {
                    excused[c] = true;
                    false
                }
                _ => true,
            }
        })
        .count()
}
