//! What the pipeline hands a `[[sink]]`: typed events, so an output that is
//! not MQTT never parses the upstream's JSON, and the upstream's topics and
//! payloads stay its own contract.

use gateway_core::{DeviceId, Reading, Timestamp};

/// One thing that happened, in pipeline order.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkEvent {
    /// Readings as accepted, including those too late for their window
    /// (restamped ones carry their new time).
    Readings(Vec<Reading>),
    /// A closed window of one device.
    Window(WindowEvent),
    /// An alert raised or cleared.
    Alert(AlertEvent),
    /// A device announced itself online or offline (MQTT birth and Last
    /// Will): the dashboard's device state; outputs may ignore it.
    Status(StatusEvent),
    /// The readings that follow were journaled in this epoch of the ingress
    /// journal (a checkpoint starts the next one; a restart replays from the
    /// restored checkpoint's epoch, saying so first). Outputs that number
    /// readings (InfluxDB's tie-break of equal times) number them per epoch,
    /// so a replay numbers them as the first run did. Others ignore it.
    JournalEpoch(u64),
}

/// A device's announced connectivity.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusEvent {
    pub device: DeviceId,
    pub online: bool,
    pub at: Timestamp,
}

/// One device's statistics over one window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowEvent {
    pub device: DeviceId,
    pub start: Timestamp,
    pub end: Timestamp,
    /// Closed early at shutdown: the rest may follow after a restart.
    pub partial: bool,
    /// By metric name, sorted.
    pub metrics: Vec<(String, MetricStats)>,
}

/// The statistics of one metric in a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricStats {
    pub count: u64,
    pub avg: f64,
    pub min: f64,
    pub max: f64,
    pub std: f64,
}

/// One alert transition, as the upstream's `alerts` payload describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEvent {
    pub device: DeviceId,
    pub rule: String,
    /// Empty for a silence rule that watches any metric.
    pub metric: String,
    /// `threshold`, `rate`, `silence`, `anomaly`.
    pub kind: String,
    /// `raised` or `cleared`.
    pub state: String,
    pub value: f64,
    pub limit: f64,
    pub at: Timestamp,
    /// anomaly (raised): why the detector fired (`above_expected`, …).
    pub reason: Option<String>,
    /// anomaly (raised): the range (low, high) the detector expected the
    /// value in, in the metric's unit; `limit` is then the score.
    pub expected: Option<(f64, f64)>,
}
