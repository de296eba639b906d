//! The running statistics the detector is built from: each a few `f64`s
//! updated in O(1), no allocation.

use serde::{Deserialize, Serialize};

/// Running mean and variance with an exponential memory of `memory`
/// readings, exact (Welford) until it has seen that many.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Norm {
    n: f64,
    mean: f64,
    var: f64,
}

impl Norm {
    pub fn sd(&self) -> f64 {
        self.var.sqrt()
    }

    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// Readings learned (capped by [`Self::forget`]).
    pub fn seen(&self) -> f64 {
        self.n
    }

    /// The three numbers that are the whole state, for packing.
    pub fn parts(&self) -> [f64; 3] {
        [self.n, self.mean, self.var]
    }

    pub fn from_parts([n, mean, var]: [f64; 3]) -> Self {
        Self { n, mean, var }
    }

    /// Standardised deviation of `x` against what was learned so far.
    pub fn z(&self, x: f64) -> f64 {
        self.z_against(x, self.sd())
    }

    /// [`Self::z`] against another spread than the one learned.
    pub fn z_against(&self, x: f64, sd: f64) -> f64 {
        if self.n < 2.0 {
            return 0.0;
        }
        // A series that never moved (a contact at 0, a stuck counter) has
        // no spread; the floor makes its first move count as huge rather
        // than as nothing, and keeps z finite.
        let sd = sd.max(1e-9 * (1.0 + self.mean.abs()));
        ((x - self.mean) / sd).clamp(-1e6, 1e6)
    }

    /// Keeps only `readings` readings' worth of what was learned: the
    /// next readings weigh as if the history were that short, so a new
    /// regime becomes the norm within a few hundred readings instead of
    /// the whole memory.
    pub fn forget(&mut self, readings: f64) {
        self.n = self.n.min(readings);
    }

    /// Learns `x`. Nothing is clipped: a move that recurs (a daily spike
    /// in a CPU series) must become normal, or it alerts every day.
    pub fn learn(&mut self, x: f64, memory: f64) {
        self.n += 1.0;
        let a = 1.0 / self.n.min(memory);
        let d = x - self.mean;
        self.mean += a * d;
        self.var = (1.0 - a) * (self.var + a * d * d);
    }
}

/// `[Norm; N]` as one base64 string of their 3N numbers (the detector's
/// features: 610 bytes as JSON objects, 292 packed); reads the JSON
/// objects of a state saved before too. Use with `#[serde(with =
/// "stats::packed_norms")]`.
pub mod packed_norms {
    use serde::{de, Deserialize, Deserializer, Serializer};

    use super::Norm;
    use crate::compact::{f64s_to_string, PackedOr};

    pub fn serialize<S: Serializer, const N: usize>(
        norms: &[Norm; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let flat: Vec<f64> = norms.iter().flat_map(Norm::parts).collect();
        s.serialize_str(&f64s_to_string(&flat))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[Norm; N], D::Error> {
        let norms: Vec<Norm> = match PackedOr::<Vec<Norm>>::deserialize(d)? {
            PackedOr::Plain(v) => v,
            PackedOr::Packed(text) => crate::compact::f64s_from_vec(&text)
                .map_err(de::Error::custom)?
                .chunks_exact(3)
                .map(|c| Norm::from_parts([c[0], c[1], c[2]]))
                .collect(),
        };
        let len = norms.len();
        norms
            .try_into()
            .map_err(|_| de::Error::custom(format!("expected {N} distributions, got {len}")))
    }
}

/// Buckets of the range ring.
const RING: usize = 16;

/// The range a series has covered over its recent past: the highest and
/// lowest values of each of the last [`RING`] blocks of readings, so an old
/// extreme stops masking later ones once its block leaves the ring. A value
/// beyond it, by a margin relative to its width, is something the series
/// has not done in a long time (the "new territory" test of contextOSE and
/// ARTime, which scale every input by the range seen).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub hi: f64,
    pub lo: f64,
    #[serde(with = "crate::compact::pairs")]
    blocks: Vec<(f32, f32)>,
    count: u32,
}

impl Envelope {
    /// How far `x` lies beyond the range, in widths of the range (0 inside).
    /// Positive above, negative below.
    pub fn excess(&self, x: f64) -> f64 {
        let width = self.width();
        if x > self.hi {
            (x - self.hi) / width
        } else if x < self.lo {
            (x - self.lo) / width
        } else {
            0.0
        }
    }

    /// Width of the range, floored so that a series that never moved has
    /// a tiny width rather than none.
    pub fn width(&self) -> f64 {
        (self.hi - self.lo).max(1e-9 * (1.0 + self.hi.abs()))
    }

    #[cfg(test)]
    pub fn blocks_for_test(&self) -> &[(f32, f32)] {
        &self.blocks
    }

    /// Widens the range to `x`; every `block` readings the oldest block
    /// leaves the ring.
    pub fn learn(&mut self, x: f64, block: u32) {
        self.hi = self.hi.max(x);
        self.lo = self.lo.min(x);
        let v = x as f32;
        if self.blocks.is_empty() || self.count >= block.max(1) {
            if self.blocks.len() >= RING {
                self.blocks.remove(0);
            }
            self.blocks.push((v, v));
            self.count = 0;
            let (mut hi, mut lo) = (f32::MIN, f32::MAX);
            for b in &self.blocks {
                hi = hi.max(b.0);
                lo = lo.min(b.1);
            }
            self.hi = f64::from(hi).max(x);
            self.lo = f64::from(lo).min(x);
        }
        self.count += 1;
        if let Some(b) = self.blocks.last_mut() {
            b.0 = b.0.max(v);
            b.1 = b.1.min(v);
        }
    }
}
