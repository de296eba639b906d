//! Seeded synthetic series for tests and the `synthetic` example: clean
//! noise, and noise with one injected anomaly of each common shape.

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
