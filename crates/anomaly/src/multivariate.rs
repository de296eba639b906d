//! The per-device multivariate model: what a device's metrics look like
//! *together*, so that a combination no single metric shows is caught (a
//! fridge warming with its door closed, CO₂ rising in a room where nothing
//! moves).
//!
//! Each reading of the device makes a row: the latest value of each of its
//! metrics (at most [`MAX_METRICS`]) and the time of day as a point on a
//! circle. Rows go into a bounded ring of [`BUFFER`] rows. Every [`REFIT`]
//! rows the model is refitted on the ring with linfa's KMeans ([`fit`], a
//! pure function the caller may run on another thread: [`DeviceModel::observe`]
//! never fits, it only reports that a fit is due). Between fits each row is
//! scored at once: its squared distance, in the standardised space of the
//! last fit, to the nearest of the [`CLUSTERS`] centroids, against the
//! distances the training rows themselves had. A row beyond
//! `LIMIT_FACTOR`× the training rows' 99.5th percentile, for
//! `PERSIST` rows in a row, is an anomaly.
//!
//! Persisted with the rest of the engine state: the ring (f32, base64) and
//! the fitted model; see the `detector` bench for the sizes.

use linfa::traits::Fit;
use linfa::DatasetBase;
use linfa_clustering::KMeans;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::detector::When;

/// Metrics per device model; further metrics are left to the univariate
/// detectors.
pub const MAX_METRICS: usize = 6;
/// Rows kept for fitting...
pub const BUFFER: usize = 512;
/// ...at most one every this many milliseconds (5 minutes), so the ring
/// spans about two days however often the device reports, not its last
/// hours.
pub const SAMPLE_MS: i64 = 300_000;
/// Kept rows between fits, and rows needed before the first.
pub const REFIT: u32 = 256;
/// KMeans clusters: the device's usual operating states.
pub const CLUSTERS: usize = 6;
/// KMeans iterations per run, and runs per fit: bounds the fit's time
/// (6–11 ms for 512 rows of 5 columns on the build machine).
const MAX_ITERATIONS: u64 = 60;
const RUNS: usize = 3;
/// A row is unusual beyond this multiple of the training rows' 99.5th
/// percentile distance...
const LIMIT_FACTOR: f64 = 2.0;
/// ...for this many rows in a row (one odd sample, a door held open a
/// little longer, is not a fault).
const PERSIST: u32 = 10;
/// Rows a detection stays quiet for.
const QUIET: u32 = 200;
/// Extra columns: time of day as (cos, sin).
const TIME_COLUMNS: usize = 2;
const DAY_MS: f64 = 86_400_000.0;

/// Why a fit could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error("expected at least {need} rows to fit, got {got}")]
    TooFewRows { need: usize, got: usize },
    #[error("KMeans fit failed: {0}")]
    KMeans(#[from] linfa_clustering::KMeansError),
    #[error("rows do not form a matrix: {0}")]
    Shape(#[from] ndarray::ShapeError),
}

/// A fitted model: column scaling, centroids and the distance limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fitted {
    mean: Vec<f64>,
    sd: Vec<f64>,
    /// `CLUSTERS` × columns, row-major, standardised.
    centroids: Vec<f64>,
    limit: f64,
}

impl Fitted {
    fn columns(&self) -> usize {
        self.mean.len()
    }

    /// Squared standardised distance to the nearest centroid, and that
    /// centroid's index.
    fn nearest(&self, row: &[f64]) -> (f64, usize) {
        let d = self.columns();
        let mut best = (f64::INFINITY, 0);
        for (k, c) in self.centroids.chunks_exact(d).enumerate() {
            let dist: f64 = row
                .iter()
                .zip(c)
                .zip(self.mean.iter().zip(&self.sd))
                .map(|((x, c), (m, s))| ((x - m) / s - c).powi(2))
                .sum();
            if dist < best.0 {
                best = (dist, k);
            }
        }
        best
    }
}

/// Fits a model on `rows` (each `columns` long): a pure function, so the
/// caller decides where it runs. Deterministic (KMeans++ with a fixed
/// seed).
pub fn fit(rows: &[f64], columns: usize) -> Result<Fitted, FitError> {
    let n = rows.len().checked_div(columns).unwrap_or(0);
    let need = CLUSTERS * 8;
    if n < need {
        return Err(FitError::TooFewRows { need, got: n });
    }
    let mut mean = vec![0.0; columns];
    let mut sd = vec![0.0; columns];
    for row in rows.chunks_exact(columns) {
        for (m, x) in mean.iter_mut().zip(row) {
            *m += x / n as f64;
        }
    }
    for row in rows.chunks_exact(columns) {
        for ((s, x), m) in sd.iter_mut().zip(row).zip(&mean) {
            *s += (x - m).powi(2) / n as f64;
        }
    }
    // A column that never moved (a door always shut in the buffer) gets a
    // unit floor relative to its level: its first move then counts.
    for (s, m) in sd.iter_mut().zip(&mean) {
        *s = s.sqrt().max(1e-3 * (1.0 + m.abs()));
    }
    let scaled: Vec<f64> = rows
        .chunks_exact(columns)
        .flat_map(|row| {
            row.iter()
                .zip(mean.iter().zip(&sd))
                .map(|(x, (m, s))| (x - m) / s)
                .collect::<Vec<_>>()
        })
        .collect();
    let records = Array2::from_shape_vec((n, columns), scaled)?;
    let model = KMeans::params(CLUSTERS)
        .n_runs(RUNS)
        .max_n_iterations(MAX_ITERATIONS)
        .fit(&DatasetBase::from(records))?;
    let mut fitted = Fitted {
        mean,
        sd,
        centroids: model.centroids().iter().copied().collect(),
        limit: 0.0,
    };
    let mut dists: Vec<f64> = rows
        .chunks_exact(columns)
        .map(|r| fitted.nearest(r).0)
        .collect();
    dists.sort_by(f64::total_cmp);
    let q = dists[((n as f64 * 0.995) as usize).min(n - 1)];
    // The floor keeps a buffer of identical rows from making every change
    // an anomaly: one standard deviation on one column is never unusual.
    fitted.limit = LIMIT_FACTOR * q.max(1.0);
    Ok(fitted)
}

/// What the model says about one row.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiVerdict {
    /// Squared distance over the limit (0 before the first fit).
    pub score: f64,
    pub anomaly: bool,
    /// The metric furthest from the nearest usual state, with that state's
    /// value for it and the reading.
    pub metric: String,
    /// The usual state's value ± one standard deviation.
    pub expected: (f64, f64),
    pub observed: f64,
}

/// One device's model and its alert state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceModel {
    metrics: Vec<String>,
    latest: Vec<Option<f64>>,
    /// Ring of rows, f32 to halve the persisted size; `head` is the next
    /// slot to write.
    #[serde(with = "crate::compact")]
    ring: Vec<f32>,
    head: usize,
    since_fit: u32,
    last_kept_ms: Option<i64>,
    fitted: Option<Fitted>,
    streak: u32,
    quiet: u32,
}

impl DeviceModel {
    /// Forgets the rows and the fit, whose hour-of-day columns were read on
    /// another wall clock (the gateway's time zone changed); the metrics
    /// stay.
    pub fn forget_wall_clock(&mut self) {
        self.ring.clear();
        self.head = 0;
        self.since_fit = 0;
        self.fitted = None;
        self.streak = 0;
    }

    fn columns(&self) -> usize {
        self.metrics.len() + TIME_COLUMNS
    }

    /// True when enough new rows arrived for a refit.
    pub fn fit_due(&self) -> bool {
        self.since_fit >= REFIT && self.ring.len() >= BUFFER.min(REFIT as usize) * self.columns()
    }

    /// The rows to fit on, oldest first, and their width.
    pub fn training_rows(&self) -> (Vec<f64>, usize) {
        let d = self.columns();
        let n = self.ring.len() / d;
        let start = if n == BUFFER { self.head } else { 0 };
        let rows = (0..n)
            .flat_map(|i| {
                let r = (start + i) % n;
                self.ring[r * d..(r + 1) * d].iter().map(|v| f64::from(*v))
            })
            .collect();
        (rows, d)
    }

    /// Installs a model fitted on [`DeviceModel::training_rows`]. A model
    /// fitted for another set of metrics is refused.
    pub fn install(&mut self, fitted: Fitted) {
        if fitted.columns() == self.columns() {
            self.fitted = Some(fitted);
            self.since_fit = 0;
        }
    }

    /// Fits now, in this thread (replay, tests, and a gateway whose
    /// pipeline has no spare thread).
    pub fn refit(&mut self) -> Result<(), FitError> {
        let (rows, d) = self.training_rows();
        let fitted = fit(&rows, d)?;
        self.install(fitted);
        Ok(())
    }

    /// True when the parts agree in shape (state from a file may not).
    fn consistent(&self) -> bool {
        let d = self.columns();
        self.latest.len() == self.metrics.len()
            && self.fitted.as_ref().is_none_or(|f| {
                f.mean.len() == d
                    && f.sd.len() == d
                    && !f.centroids.is_empty()
                    && f.centroids.len().is_multiple_of(d)
            })
    }

    /// Scores the device's state after this reading, then keeps it.
    pub fn observe(&mut self, at: impl Into<When>, metric: &str, value: f64) -> MultiVerdict {
        let at = at.into();
        let at_ms = at.utc_ms;
        if !self.consistent() {
            *self = Self::default();
        }
        let mut verdict = MultiVerdict {
            score: 0.0,
            anomaly: false,
            metric: metric.to_string(),
            expected: (value, value),
            observed: value,
        };
        let i = match self.metrics.iter().position(|m| m == metric) {
            Some(i) => i,
            None if self.metrics.len() < MAX_METRICS => {
                // A new metric changes the row's shape: start over.
                self.metrics.push(metric.to_string());
                self.latest.push(None);
                self.ring.clear();
                self.head = 0;
                self.fitted = None;
                self.since_fit = 0;
                self.metrics.len() - 1
            }
            None => return verdict,
        };
        self.latest[i] = Some(value);
        if self.latest.iter().any(Option::is_none) || self.metrics.len() < 2 {
            return verdict;
        }
        // The hour of the day on the building's clocks, as the daily profiles.
        let angle = (at.local_ms.rem_euclid(DAY_MS as i64) as f64 / DAY_MS) * std::f64::consts::TAU;
        let mut row: Vec<f64> = self.latest.iter().map(|v| v.unwrap_or(0.0)).collect();
        row.push(angle.cos());
        row.push(angle.sin());
        if let Some(f) = &self.fitted {
            let (dist, k) = f.nearest(&row);
            verdict.score = dist / f.limit;
            self.streak = if verdict.score > 1.0 {
                self.streak + 1
            } else {
                0
            };
            self.quiet = self.quiet.saturating_sub(1);
            if self.streak >= PERSIST && self.quiet == 0 {
                verdict.anomaly = true;
                self.quiet = QUIET;
                let d = f.columns();
                let c = &f.centroids[k * d..(k + 1) * d];
                // The metric that contributes most to the distance.
                let (worst, _) = (0..self.metrics.len())
                    .map(|j| (j, ((row[j] - f.mean[j]) / f.sd[j] - c[j]).powi(2)))
                    .fold((0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
                verdict.metric = self.metrics[worst].clone();
                let centre = f.mean[worst] + c[worst] * f.sd[worst];
                verdict.expected = (centre - f.sd[worst], centre + f.sd[worst]);
                verdict.observed = row[worst];
            }
        }
        if self
            .last_kept_ms
            .is_some_and(|t| at_ms.saturating_sub(t) < SAMPLE_MS)
        {
            return verdict;
        }
        self.last_kept_ms = Some(at_ms);
        let d = row.len();
        // Restored state that does not fit this row shape starts over.
        if self.head >= BUFFER || !self.ring.len().is_multiple_of(d) || self.ring.len() > BUFFER * d
        {
            self.ring.clear();
            self.head = 0;
        }
        let slot = self.head * d;
        if self.ring.len() < BUFFER * d {
            self.ring.extend(row.iter().map(|v| *v as f32));
        } else {
            for (dst, v) in self.ring[slot..slot + d].iter_mut().zip(&row) {
                *dst = *v as f32;
            }
        }
        self.head = (self.head + 1) % BUFFER;
        self.since_fit = self.since_fit.saturating_add(1);
        verdict
    }
}
