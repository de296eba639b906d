//! Each device's latest values and when it was last seen, kept across
//! restarts in `{state_dir}/dashboard-latest.json`.
//!
//! History keeps closed windows, not raw readings, so a restart (a Pi's
//! power cut, an upgrade) left every row of the overview "unknown" and
//! empty until its device spoke again: an hour for a battery node that
//! reports hourly. With this file the rows come back with their values and
//! their age ("silent" once it is old), and a reading that arrives since
//! replaces them as before.
//!
//! It is display state: saved at most once a minute while readings come
//! (and at a clean stop), so a crash costs at most that minute of "latest"
//! values, never a reading. A damaged file is set aside and the pages
//! start empty, as they did before this file existed.

use std::collections::BTreeMap;
use std::path::Path;

use gateway_core::state_file::inventory;
use gateway_core::state_file::json::{JsonStateError, JsonStateFile, StateDocument};
use serde::{Deserialize, Serialize};
use tracing::warn;

/// Devices kept at most, the most recently seen: the file is rewritten
/// whole, and this bounds it to about a megabyte.
pub const MAX_KEPT_DEVICES: usize = 10_000;
/// Metrics kept per device at most, the most recent.
pub const MAX_KEPT_METRICS: usize = 64;

/// One device's present, as the file keeps it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Kept {
    /// Its latest reading's time (ms).
    pub last_seen: Option<i64>,
    /// `Some(false)` after its Last Will said offline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub infrastructure: bool,
    /// metric → [value, at ms].
    #[serde(default)]
    pub latest: BTreeMap<String, (f64, i64)>,
}

impl Kept {
    /// Bounded to [`MAX_KEPT_METRICS`] (the newest) and to values JSON can
    /// hold (a non-finite one would make the whole file unreadable).
    pub fn bounded(mut self) -> Self {
        self.latest.retain(|_, (v, _)| v.is_finite());
        if self.latest.len() > MAX_KEPT_METRICS {
            let mut times: Vec<i64> = self.latest.values().map(|(_, at)| *at).collect();
            times.sort_unstable_by(|a, b| b.cmp(a));
            let oldest_kept = times[MAX_KEPT_METRICS - 1];
            self.latest.retain(|_, (_, at)| *at >= oldest_kept);
            // Ties at the boundary may leave a few more: drop by name.
            while self.latest.len() > MAX_KEPT_METRICS {
                let Some(name) = self
                    .latest
                    .iter()
                    .find(|(_, (_, at))| *at == oldest_kept)
                    .map(|(n, _)| n.clone())
                else {
                    break;
                };
                self.latest.remove(&name);
            }
        }
        self
    }
}

/// The devices heard within `retention` of the newest reading kept: the
/// others are gone from the pages, as their windows are gone from history.
/// Measured from that reading, not from the clock: a Pi without a
/// real-time clock can start years ahead until NTP answers, and would
/// drop every device for good.
pub fn within_retention(
    mut kept: BTreeMap<String, Kept>,
    retention: std::time::Duration,
) -> BTreeMap<String, Kept> {
    let newest = kept.values().filter_map(|k| k.last_seen).max();
    let retention = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    kept.retain(|_, k| {
        k.last_seen
            .zip(newest)
            .is_some_and(|(t, n)| t >= n.saturating_sub(retention))
    });
    kept
}

#[derive(Serialize, Deserialize)]
struct LatestValues {
    devices: BTreeMap<String, Kept>,
}

impl StateDocument for LatestValues {
    const FILE_NAME: &'static str = inventory::DASHBOARD_LATEST;
    /// Saved every minute while readings come: one line, not pretty.
    const COMPACT: bool = true;
}

/// `{state_dir}/dashboard-latest.json`.
#[derive(Debug, Clone)]
pub struct LatestFile {
    file: JsonStateFile<LatestValues>,
}

impl LatestFile {
    pub fn in_dir(state_dir: &Path) -> Self {
        Self {
            file: JsonStateFile::in_state_dir(state_dir),
        }
    }

    /// What was kept; nothing when there is no file, and nothing (with a
    /// warning, the file set aside) when it does not read.
    pub fn load(&self) -> BTreeMap<String, Kept> {
        match self.file.load() {
            Ok(Some(saved)) => saved.devices,
            Ok(None) => BTreeMap::new(),
            Err(e) => {
                warn!(error = %e, "Cannot read the devices' latest values; the overview shows each device's values again when it next reports.");
                BTreeMap::new()
            }
        }
    }

    /// Replaces the file with `devices`, bounded to [`MAX_KEPT_DEVICES`]
    /// (those seen last).
    ///
    /// # Errors
    /// A write, fsync or rename that failed; the previous file stays.
    pub fn save(&self, mut devices: BTreeMap<String, Kept>) -> Result<(), JsonStateError> {
        if devices.len() > MAX_KEPT_DEVICES {
            let mut seen: Vec<(Option<i64>, String)> = devices
                .iter()
                .map(|(id, k)| (k.last_seen, id.clone()))
                .collect();
            seen.sort_unstable_by(|a, b| b.cmp(a));
            for (_, id) in seen.into_iter().skip(MAX_KEPT_DEVICES) {
                devices.remove(&id);
            }
        }
        let devices = devices
            .into_iter()
            .map(|(id, k)| (id, k.bounded()))
            .collect();
        self.file.save(&LatestValues { devices })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn kept(last_seen: i64, latest: &[(&str, f64, i64)]) -> Kept {
        Kept {
            last_seen: Some(last_seen),
            latest: latest
                .iter()
                .map(|(m, v, at)| (m.to_string(), (*v, *at)))
                .collect(),
            ..Kept::default()
        }
    }

    #[test]
    fn values_come_back_as_saved_and_a_non_finite_one_does_not_spoil_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = LatestFile::in_dir(dir.path());
        assert!(file.load().is_empty());
        let mut devices = BTreeMap::new();
        devices.insert(
            "kitchen".to_string(),
            kept(
                1_000,
                &[("temperature", 21.5, 1_000), ("humidity", 40.0, 900)],
            ),
        );
        devices.insert(
            "lab".to_string(),
            Kept {
                online: Some(false),
                infrastructure: true,
                ..kept(5, &[("odd", f64::NAN, 5), ("ok", -1.25, 5)])
            },
        );
        file.save(devices).unwrap();
        let back = file.load();
        assert_eq!(back["kitchen"].latest["temperature"], (21.5, 1_000));
        assert_eq!(back["kitchen"].latest["humidity"], (40.0, 900));
        assert_eq!(back["kitchen"].last_seen, Some(1_000));
        assert_eq!(back["lab"].online, Some(false));
        assert!(back["lab"].infrastructure);
        assert_eq!(back["lab"].latest.len(), 1, "{:?}", back["lab"]);
        assert_eq!(back["lab"].latest["ok"], (-1.25, 5));
    }

    #[test]
    fn the_file_keeps_the_devices_seen_last_and_each_ones_newest_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let file = LatestFile::in_dir(dir.path());
        let mut devices = BTreeMap::new();
        for i in 0..(MAX_KEPT_DEVICES + 10) {
            devices.insert(format!("d{i:05}"), kept(i as i64, &[("t", 1.0, i as i64)]));
        }
        let many: Vec<(String, f64, i64)> = (0..(MAX_KEPT_METRICS + 5))
            .map(|m| (format!("m{m:03}"), m as f64, m as i64))
            .collect();
        let refs: Vec<(&str, f64, i64)> = many
            .iter()
            .map(|(m, v, at)| (m.as_str(), *v, *at))
            .collect();
        devices.insert("wide".to_string(), kept(i64::MAX, &refs));
        file.save(devices).unwrap();
        let back = file.load();
        assert_eq!(back.len(), MAX_KEPT_DEVICES);
        // The ten seen first (and least recently) are the ones left out.
        assert!(!back.contains_key("d00000") && !back.contains_key("d00010"));
        assert!(back.contains_key(&format!("d{:05}", MAX_KEPT_DEVICES + 9)));
        let wide = &back["wide"].latest;
        assert_eq!(wide.len(), MAX_KEPT_METRICS);
        assert!(!wide.contains_key("m000") && wide.contains_key("m068"));
    }

    #[test]
    fn devices_older_than_retention_before_the_newest_are_left_out() {
        let day = 86_400_000;
        let kept = BTreeMap::from([
            (
                "fresh".to_string(),
                kept(100 * day, &[("t", 1.0, 100 * day)]),
            ),
            ("month".to_string(), kept(71 * day, &[("t", 1.0, 71 * day)])),
            ("gone".to_string(), kept(69 * day, &[("t", 1.0, 69 * day)])),
            (
                "status-only".to_string(),
                Kept {
                    online: Some(false),
                    ..Kept::default()
                },
            ),
        ]);
        let back = within_retention(kept, std::time::Duration::from_secs(30 * 86_400));
        assert_eq!(back.keys().collect::<Vec<_>>(), ["fresh", "month"]);
    }

    #[test]
    fn a_damaged_file_is_set_aside_and_the_pages_start_empty() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(inventory::DASHBOARD_LATEST),
            b"{\"devices\": [",
        )
        .unwrap();
        let file = LatestFile::in_dir(dir.path());
        assert!(file.load().is_empty());
        assert!(!dir.path().join(inventory::DASHBOARD_LATEST).exists());
        file.save(BTreeMap::from([(
            "a".to_string(),
            kept(1, &[("t", 2.0, 1)]),
        )]))
        .unwrap();
        assert_eq!(file.load()["a"].latest["t"], (2.0, 1));
    }
}
