//! The detector's persisted form.
//!
//! Its two dozen scalars (counts, times, levels, peaks) were named JSON
//! numbers, 664 of the 4 096 bytes a series may persist; they are one
//! base64 string of their bytes now (276), exact, which leaves the second
//! family (see `resonance`) room within the budget. A state saved with
//! them as named numbers still loads: when the packed string is absent,
//! each is read from its old field.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::discord::Discord;
use super::levels::Levels;
use super::resonance::Resonance;
use super::rhythm::{Rhythm, SpikeRhythm};
use super::seasonal::Seasonal;
use super::stats::{self, Envelope, Norm};
use super::steps::Steps;
use super::{Detector, K};

/// A scalar as little-endian bytes.
trait Bytes: Sized {
    fn put(&self, out: &mut Vec<u8>);
    fn take(from: &mut &[u8]) -> Option<Self>;
}

macro_rules! le_bytes {
    ($($ty:ty),*) => {$(
        impl Bytes for $ty {
            fn put(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn take(from: &mut &[u8]) -> Option<Self> {
                let (head, rest) = from.split_first_chunk()?;
                *from = rest;
                Some(Self::from_le_bytes(*head))
            }
        }
    )*};
}
le_bytes!(u64, i64, f64, u32, u8);

impl Bytes for bool {
    fn put(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
    fn take(from: &mut &[u8]) -> Option<Self> {
        u8::take(from).map(|b| b != 0)
    }
}

impl Bytes for [f64; 3] {
    fn put(&self, out: &mut Vec<u8>) {
        self.iter().for_each(|v| v.put(out));
    }
    fn take(from: &mut &[u8]) -> Option<Self> {
        Some([f64::take(from)?, f64::take(from)?, f64::take(from)?])
    }
}

/// Declares the saved form: the scalars that are packed (those a state
/// saved before must hold, then those it may lack), and the rest.
macro_rules! saved {
    (required { $($req:ident: $rty:ty),* $(,)? } defaulted { $($opt:ident: $oty:ty),* $(,)? }) => {
        /// The detector as saved (see the module documentation).
        #[derive(Serialize, Deserialize)]
        pub(super) struct Saved {
            /// The scalars below, packed; absent in a state saved before.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            scalars: Option<String>,
            $(
                #[serde(default, skip_serializing_if = "Option::is_none")]
                $req: Option<$rty>,
            )*
            $(
                #[serde(default, skip_serializing_if = "Option::is_none")]
                $opt: Option<$oty>,
            )*
            #[serde(with = "stats::packed_norms")]
            norms: [Norm; K],
            raw_norm: Norm,
            #[serde(with = "crate::compact::f64_array")]
            peaks: [f64; K],
            spread: Norm,
            envelope: Envelope,
            seasonal: Seasonal,
            #[serde(default)]
            steps: Steps,
            #[serde(default)]
            rhythm: Rhythm,
            #[serde(default)]
            spike_rhythm: SpikeRhythm,
            #[serde(default)]
            levels: Levels,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            resonance: Option<Box<Resonance>>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            discord: Option<Box<Discord>>,
        }

        impl From<Detector> for Saved {
            fn from(d: Detector) -> Self {
                let mut bytes = Vec::with_capacity(200);
                $(d.$req.put(&mut bytes);)*
                $(d.$opt.put(&mut bytes);)*
                Self {
                    scalars: Some(STANDARD.encode(bytes)),
                    $($req: None,)*
                    $($opt: None,)*
                    norms: d.norms,
                    raw_norm: d.raw_norm,
                    peaks: d.peaks,
                    spread: d.spread,
                    envelope: d.envelope,
                    seasonal: d.seasonal,
                    steps: d.steps,
                    rhythm: d.rhythm,
                    spike_rhythm: d.spike_rhythm,
                    levels: d.levels,
                    resonance: d.resonance,
                    discord: d.discord,
                }
            }
        }

        impl TryFrom<Saved> for Detector {
            type Error = String;

            fn try_from(s: Saved) -> Result<Self, String> {
                let mut d = Detector::new();
                if let Some(text) = &s.scalars {
                    let bytes = STANDARD.decode(text).map_err(|e| e.to_string())?;
                    let mut from = bytes.as_slice();
                    let short = || format!("the packed scalars are {} bytes, too few", bytes.len());
                    $(d.$req = Bytes::take(&mut from).ok_or_else(short)?;)*
                    $(d.$opt = Bytes::take(&mut from).ok_or_else(short)?;)*
                    if !from.is_empty() {
                        return Err(format!(
                            "the packed scalars are {} bytes, too many",
                            bytes.len()
                        ));
                    }
                } else {
                    $(
                        d.$req = s.$req.ok_or(concat!("missing field `", stringify!($req), "`"))?;
                    )*
                    $(d.$opt = s.$opt.unwrap_or_default();)*
                }
                d.norms = s.norms;
                d.raw_norm = s.raw_norm;
                d.peaks = s.peaks;
                d.spread = s.spread;
                d.envelope = s.envelope;
                d.seasonal = s.seasonal;
                d.steps = s.steps;
                d.rhythm = s.rhythm;
                d.spike_rhythm = s.spike_rhythm;
                d.levels = s.levels;
                d.resonance = s.resonance;
                d.discord = s.discord;
                Ok(d)
            }
        }

        #[cfg(test)]
        impl Saved {
            /// This state in the form saved before the scalars were
            /// packed.
            pub(super) fn unpacked(d: &Detector) -> Self {
                let mut s = Self::from(d.clone());
                s.scalars = None;
                $(s.$req = Some(d.$req);)*
                $(s.$opt = Some(d.$opt);)*
                s
            }
        }
    };
}

saved! {
    required {
        n: u64,
        last: f64,
        last_ms: i64,
        first_ms: i64,
        interval_ms: f64,
        smooth: [f64; 3],
        base: f64,
        vol: f64,
        raw: f64,
        quiet_until: u64,
        disarmed: u8,
        last_record: u64,
        seasonal_smooth: f64,
        run: u32,
        longest_run: f64,
        moving: f64,
    }
    defaulted {
        episodes: f64,
        shifted: bool,
        habit_peak: f64,
        episode_peak: f64,
        last_alert: u64,
        alert_peak: f64,
        quiet_peak: f64,
        quiet_episode: f64,
        last_step: f64,
    }
}
