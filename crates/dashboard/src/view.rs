//! How the pages describe what they show: which adapter a device talks
//! through, each metric's unit and precision, and which metric stands for
//! a device where only one fits. Facts come from the adapters (a reading's
//! `SourceId`) and the config (`[units]`, `[[device]] units` and
//! `primary`, `[dashboard] metric_order`), never from an id's shape.

use gateway_core::registry::DeviceInfo;
use gateway_core::units::{MetricInfo, Units};
use gateway_core::{SourceId, Sources};

/// What the pages need besides the data.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// The adapters a reading's `SourceId` indexes.
    pub sources: Sources,
    pub units: Units,
    /// `[dashboard] metric_order`: metrics preferred, in this order, where
    /// one stands for a device; the rest by the units table's order.
    pub metric_order: Vec<String>,
}

impl View {
    /// `metric` of the device `id` with this registry entry, heard through
    /// the adapter of `source` (and with the units it states itself).
    pub fn info(
        &self,
        id: &str,
        device: Option<&DeviceInfo>,
        source: SourceId,
        metric: &str,
    ) -> MetricInfo {
        self.units
            .of_device(id, device.map(|d| &d.units), source, metric)
    }

    /// Sort key: `metric_order` first, then the units table's order
    /// (battery and radio last), then by name.
    fn rank(&self, metric: &str) -> (usize, u8) {
        match self.metric_order.iter().position(|m| m == metric) {
            Some(i) => (i, 0),
            None => (
                self.metric_order.len(),
                gateway_core::units::known(metric).rank,
            ),
        }
    }

    /// `metrics` in the order people read them.
    pub fn sort(&self, metrics: &mut [String]) {
        metrics.sort_by(|a, b| self.rank(a).cmp(&self.rank(b)).then_with(|| a.cmp(b)));
    }

    /// The metric that stands for a device: its `primary` when it has
    /// that metric, else the first in [`Self::sort`] order.
    pub fn primary<'a>(
        &self,
        device: Option<&DeviceInfo>,
        metrics: impl Iterator<Item = &'a String>,
    ) -> Option<String> {
        let metrics: Vec<&String> = metrics.collect();
        if let Some(p) = device.and_then(|d| d.primary.as_ref()) {
            if metrics.contains(&p) {
                return Some(p.clone());
            }
        }
        metrics
            .into_iter()
            .min_by(|a, b| self.rank(a).cmp(&self.rank(b)).then_with(|| a.cmp(b)))
            .cloned()
    }

    /// (protocol, adapter name) of a source, when known.
    pub fn adapter(&self, source: SourceId) -> Option<(String, String)> {
        let s = self.sources.get(source)?;
        Some((self.sources.label(&s.kind).to_string(), s.name))
    }
}

/// The smallest value span a chart of `info` shows: noise of a few tenths
/// of a degree in a steady fridge stays a flat line, not a zigzag as tall
/// as a failing one's rise.
pub fn min_span(info: &MetricInfo) -> f64 {
    match info.unit.as_str() {
        "°C" | "°F" | "K" => 2.0,
        "%" => 5.0,
        "ppm" | "ppb" => 100.0,
        "hPa" => 5.0,
        "V" => 0.2,
        "mV" => 200.0,
        "dBm" | "dB" => 10.0,
        "lx" => 50.0,
        "µg/m³" => 10.0,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(primary: Option<&str>) -> DeviceInfo {
        DeviceInfo {
            name: "n".into(),
            tags: Default::default(),
            labels: vec![],
            primary: primary.map(str::to_string),
            units: Default::default(),
        }
    }

    #[test]
    fn battery_and_radio_do_not_stand_for_a_device() {
        let v = View::default();
        let m: Vec<String> = ["battery", "co2", "rssi", "temperature"]
            .map(String::from)
            .into();
        assert_eq!(v.primary(None, m.iter()).as_deref(), Some("co2"));
        assert_eq!(
            v.primary(Some(&info(Some("temperature"))), m.iter())
                .as_deref(),
            Some("temperature")
        );
        // A primary the device does not send: the order decides.
        assert_eq!(
            v.primary(Some(&info(Some("lux"))), m.iter()).as_deref(),
            Some("co2")
        );
        let v = View {
            metric_order: vec!["temperature".into()],
            ..View::default()
        };
        let mut sorted = m.clone();
        v.sort(&mut sorted);
        assert_eq!(sorted, ["temperature", "co2", "battery", "rssi"]);
    }
}
