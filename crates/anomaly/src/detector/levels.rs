//! Which levels a series takes: a coarse count of its readings over its
//! recent range, for the test of a reading at a level the series has not
//! taken lately, between levels it does take.
//!
//! A signal with two or more usual levels (a CPU idling at 10 % and
//! peaking at 100 %, a valve open or shut, equipment on or off) can go
//! wrong in its empty middle: a CPU at 60 %, a valve stuck half open. The
//! new-territory test sees only the range's edges, and the level features
//! only averages, whose usual value is that very middle; HTM and
//! contextOSE see such a reading as a value of a bucket never met. The
//! test here is that: a reading inside the range with no reading of the
//! last one to two generations within a sixteenth of the range of it, and
//! at least [`SIDE`] readings of them below and above it (a level between
//! the usual ones, not in the thin tail of a single one).
//!
//! The counts live in [`CELLS`] cells over the range the new-territory
//! test keeps; when that range moves by more than half a cell, the counts
//! are moved to the cells their levels fall in now (rounded, the edges
//! taking what falls outside). Persisted as one base64 string of 148
//! bytes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Cells the range is divided into.
pub const CELLS: usize = 64;
/// Readings per generation of counts: a level is remembered for one to
/// two generations after it was last taken.
const GENERATION: u32 = 4096;
/// A level is untaken when no reading fell within this fraction of the
/// range of it.
const NEAR: f64 = 1.0 / 16.0;
/// Readings that must lie beyond that band on each side.
pub const SIDE: u32 = 10;
/// Bytes of the persisted form: the range, the generation's age, the
/// two generations' counts.
const PACKED: usize = 8 + 8 + 4 + 2 * CELLS;

/// Counts of the readings at each level of the recent range, in two
/// generations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Levels {
    lo: f64,
    hi: f64,
    age: u32,
    current: [u8; CELLS],
    previous: [u8; CELLS],
}

impl Default for Levels {
    fn default() -> Self {
        Self {
            lo: 0.0,
            hi: 0.0,
            age: 0,
            current: [0; CELLS],
            previous: [0; CELLS],
        }
    }
}

impl Levels {
    /// Whether `x` lies at a level untaken lately between taken ones,
    /// within `range` (the recent range before `x`); judged only when
    /// `judged`. Then learns `x`.
    pub fn observe(&mut self, x: f64, range: (f64, f64), judged: bool) -> bool {
        self.follow(range);
        let width = self.hi - self.lo;
        let untaken = judged && width > 0.0 && x > self.lo && x < self.hi && {
            let band = |v: f64| self.cell(v);
            let (first, last) = (band(x - NEAR * width), band(x + NEAR * width));
            let taken = |i: usize| u32::from(self.current[i]) + u32::from(self.previous[i]);
            let sum = |cells: std::ops::Range<usize>| cells.map(taken).sum::<u32>();
            sum(first..last + 1) == 0 && sum(0..first) >= SIDE && sum(last + 1..CELLS) >= SIDE
        };
        if width > 0.0 {
            let i = self.cell(x);
            self.current[i] = self.current[i].saturating_add(1);
        }
        self.age += 1;
        if self.age >= GENERATION {
            self.previous = self.current;
            self.current = [0; CELLS];
            self.age = 0;
        }
        untaken
    }

    /// The cell of level `v`, the edges taking what lies beyond.
    fn cell(&self, v: f64) -> usize {
        let at = (v - self.lo) / (self.hi - self.lo) * CELLS as f64;
        if at.is_finite() {
            at.floor().clamp(0.0, (CELLS - 1) as f64) as usize
        } else {
            0
        }
    }

    /// Moves the counts onto `range` when it has moved by more than half a
    /// cell at either end.
    fn follow(&mut self, (lo, hi): (f64, f64)) {
        let cell = (self.hi - self.lo) / CELLS as f64;
        if (lo - self.lo).abs() <= 0.5 * cell && (hi - self.hi).abs() <= 0.5 * cell {
            return;
        }
        let old = self.clone();
        self.lo = lo;
        self.hi = hi;
        self.current = [0; CELLS];
        self.previous = [0; CELLS];
        // A range of no width (a flat series, or none yet) has no levels
        // to move.
        if old.hi <= old.lo || hi <= lo || (old.hi - old.lo).is_nan() || (hi - lo).is_nan() {
            return;
        }
        for i in 0..CELLS {
            let level = old.lo + (i as f64 + 0.5) * cell;
            let j = self.cell(level);
            self.current[j] = self.current[j].saturating_add(old.current[i]);
            self.previous[j] = self.previous[j].saturating_add(old.previous[i]);
        }
    }
}

impl From<Levels> for String {
    fn from(l: Levels) -> Self {
        let mut bytes = Vec::with_capacity(PACKED);
        bytes.extend_from_slice(&l.lo.to_le_bytes());
        bytes.extend_from_slice(&l.hi.to_le_bytes());
        bytes.extend_from_slice(&l.age.to_le_bytes());
        bytes.extend_from_slice(&l.current);
        bytes.extend_from_slice(&l.previous);
        STANDARD.encode(bytes)
    }
}

impl TryFrom<String> for Levels {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let bytes = STANDARD.decode(text).map_err(|e| e.to_string())?;
        if bytes.len() != PACKED {
            return Err(format!(
                "the levels are {} bytes, not {PACKED}",
                bytes.len()
            ));
        }
        let f64_at = |i: usize| {
            bytes
                .get(i..i + 8)
                .and_then(|b| b.try_into().ok())
                .map(f64::from_le_bytes)
        };
        let bad = || "the levels are malformed".to_string();
        let mut l = Self {
            lo: f64_at(0).ok_or_else(bad)?,
            hi: f64_at(8).ok_or_else(bad)?,
            age: bytes
                .get(16..20)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes)
                .ok_or_else(bad)?,
            ..Self::default()
        };
        l.current.copy_from_slice(&bytes[20..20 + CELLS]);
        l.previous.copy_from_slice(&bytes[20 + CELLS..]);
        Ok(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signal idling near 10 and peaking near 100, `n` readings.
    fn two_levels(levels: &mut Levels, n: usize) {
        for i in 0..n {
            let x = if i % 50 < 5 { 100.0 } else { 10.0 } + (i % 7) as f64 * 0.3;
            assert!(!levels.observe(x, (9.0, 102.0), true), "reading {i}");
        }
    }

    #[test]
    fn a_level_between_the_usual_ones_is_untaken_and_one_near_them_is_not() {
        let mut levels = Levels::default();
        two_levels(&mut levels, 2_000);
        assert!(levels.observe(60.0, (9.0, 102.0), true));
        // Once taken, it is known.
        assert!(!levels.observe(60.5, (9.0, 102.0), true));
        // Near a usual level, within a sixteenth of the range: not news.
        assert!(!levels.observe(14.0, (9.0, 102.0), true));
        // Not judged (the warm-up): learned, never reported.
        assert!(!levels.observe(40.0, (9.0, 102.0), false));
        assert!(!levels.observe(40.0, (9.0, 102.0), true));
    }

    #[test]
    fn a_thin_tail_is_not_a_gap() {
        // One reading once at 100: the level above 60 has too few readings
        // to make 60 a level between two.
        let mut levels = Levels::default();
        for i in 0..2_000 {
            let x = if i == 500 {
                100.0
            } else {
                10.0 + (i % 7) as f64 * 0.3
            };
            levels.observe(x, (9.0, 102.0), true);
        }
        assert!(!levels.observe(60.0, (9.0, 102.0), true));
    }

    #[test]
    fn levels_are_forgotten_after_two_generations_and_follow_the_range() {
        let mut levels = Levels::default();
        two_levels(&mut levels, 2_000);
        levels.observe(60.0, (9.0, 102.0), true);
        two_levels(&mut levels, 2 * GENERATION as usize);
        assert!(levels.observe(60.0, (9.0, 102.0), true), "still remembered");
        // The range widening moves the counts with their levels: 100, 60
        // (just learned) and 10 are taken, 35 is not.
        let mut moved = levels.clone();
        assert!(!moved.observe(10.5, (0.0, 200.0), true));
        assert!(!moved.observe(100.5, (0.0, 200.0), true));
        assert!(!moved.observe(60.0, (0.0, 200.0), true));
        assert!(moved.observe(35.0, (0.0, 200.0), true));
    }

    #[test]
    fn the_persisted_form_is_exact_and_damage_is_refused() {
        let mut levels = Levels::default();
        two_levels(&mut levels, 3_000);
        let text = String::from(levels.clone());
        assert_eq!(Levels::try_from(text.clone()), Ok(levels));
        assert!(Levels::try_from(text[..40].to_string()).is_err());
        assert!(Levels::try_from("not base64!".to_string()).is_err());
    }
}
