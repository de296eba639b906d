//! The fault-classes corpus (`anomaly::plant`) scored the NAB way, shared
//! by the `fault_classes` example and its regression test.

#![allow(dead_code)]

use anomaly::detector::Params;
use anomaly::plant::{labelled, Background, Fault, History};

/// One fault class on one background over its seeds: the raw NAB score,
/// the number of series (one window each), the faults caught and the
/// alerts outside their windows.
#[derive(Debug, Default, Clone, Copy)]
pub struct Row {
    pub raw: f64,
    pub windows: f64,
    pub caught: usize,
    pub false_alarms: usize,
}

impl Row {
    pub fn add(&mut self, other: &Row) {
        self.raw += other.raw;
        self.windows += other.windows;
        self.caught += other.caught;
        self.false_alarms += other.false_alarms;
    }

    /// NAB's normalised score: 0 for no detection at all, 100 for each
    /// fault caught at its start and nothing else.
    pub fn normalised(&self) -> f64 {
        100.0 * (self.raw + self.windows) / (2.0 * self.windows)
    }
}

/// Every fault class on every background it applies to, after each
/// history, over `seeds`, scored with these parameters (a row per
/// background and fault, both histories together); `each` sees every
/// series' alerts.
pub fn score(
    seeds: std::ops::RangeInclusive<u64>,
    p: &Params,
    mut each: impl FnMut(Background, Fault, History, u64, (usize, usize), &[usize]),
) -> Vec<(Background, Fault, Row)> {
    let mut rows = Vec::new();
    for background in Background::ALL {
        for fault in Fault::ALL.into_iter().filter(|f| f.applies_to(background)) {
            let mut row = Row::default();
            for (history, seed) in History::ALL
                .into_iter()
                .flat_map(|h| seeds.clone().map(move |seed| (h, seed)))
            {
                let s = labelled(seed, background, fault, history);
                let hits = super::alarms::raises(s.readings.iter().copied(), p);
                each(background, fault, history, seed, s.window, &hits);
                let r = super::nab::score_rows(s.readings.len(), &[s.window], &hits);
                row.add(&Row {
                    raw: r.total,
                    windows: 1.0,
                    caught: r.caught,
                    false_alarms: r.false_alarms,
                });
            }
            rows.push((background, fault, row));
        }
    }
    rows
}
