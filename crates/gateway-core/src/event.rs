//! What the pipeline hands every output: typed events, one stream for all.
//! Each output renders or stores them its own way (the upstream's topics
//! and payloads, `sinks::mqtt_upstream::render`, stay its own contract), and none
//! parses another's format. [`OutputLink`] is how an output is fed, and
//! [`metrics`] the names its health is watched by: the contract every
//! output (the upstream, `[[sink]]`s, the dashboard, Home Assistant) keeps,
//! here so that none depends on another's crate to keep it.

use tokio::sync::{mpsc, oneshot};

use crate::{DeviceId, OutboundMessage, Reading, SourceId, Timestamp};

/// Metrics every output's health is read from (the pages show them): the
/// names are the outputs' contract with whoever watches them.
pub mod metrics {
    /// Messages waiting in an outbox (and in memory while the disk refuses).
    pub const OUTBOX_MESSAGES: &str = "edge_gateway_outbox_messages";
    /// Bytes an outbox holds.
    pub const OUTBOX_BYTES: &str = "edge_gateway_outbox_bytes";
    /// `1` while the upstream's forwarder holds a connection.
    pub const UPSTREAM_CONNECTED: &str = "edge_gateway_upstream_connected";
}

/// What an output receives: [`SinkEvent`]s from the pipeline (the
/// upstream's feed hands its forwarder rendered MQTT messages the same way).
#[derive(Debug)]
pub struct OutputLink<M = OutboundMessage> {
    /// Messages in order; closed at shutdown, after which the output
    /// delivers what it can within its drain time and stops.
    pub messages: mpsc::Receiver<M>,
    /// Alerts, to overtake `messages` (none for an output without them).
    pub urgent: Option<mpsc::Receiver<M>>,
    /// Before a checkpoint: answer `true` once everything sent on
    /// `messages` and `urgent` before the request is stored durably.
    pub flush: Option<mpsc::Receiver<oneshot::Sender<bool>>>,
}

/// One thing that happened, in pipeline order.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkEvent {
    /// Readings as accepted, including those too late for their window
    /// (restamped ones carry their new time).
    Readings(Vec<Reading>),
    /// A closed window of one device.
    Window(WindowEvent),
    /// An alert raised or cleared, or a raise held back by the rule's
    /// cooldown (`suppressed`: recorded, never alerted).
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
    /// A command from the cloud and its result (`commands` crate): the
    /// upstream publishes it on `{prefix}/{device}/command/result`.
    Command(CommandEvent),
    /// The state of the configuration pushed from the cloud
    /// (`[remote_config]`): the upstream publishes it, retained, on
    /// `{prefix}/gateway/{gateway}/config/state`; other outputs ignore it.
    ConfigState(ConfigStateEvent),
}

/// A reported configuration state: the JSON object the upstream publishes
/// (built by the `remote_config` crate's `Report`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigStateEvent {
    pub payload: serde_json::Value,
}

/// One command's result, as the upstream's `command/result` payload says it.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandEvent {
    pub id: String,
    pub device: DeviceId,
    pub metric: String,
    /// The value asked for, as JSON (`null` relinquishes).
    pub value: serde_json::Value,
    /// `done`, `refused`, `failed` or `expired`.
    pub status: String,
    /// Empty when `done`.
    pub reason: String,
    /// For people: what the reason means here (the bound crossed, the
    /// device's exception or BACnet error class and code); may be empty.
    pub detail: String,
    /// What the device holds now, when `done` and read back (a Modbus
    /// register: `value` rounded to what the register holds).
    pub applied: Option<f64>,
    /// The device level of the command's topic when the sender spelt the
    /// device otherwise than its id (`70B3D57ED0001234`): the result goes
    /// on that topic, where the sender listens.
    pub topic_device: Option<String>,
    /// When the result was decided.
    pub at: Timestamp,
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
    /// Where stores that keep one window per start put it: `window_start`,
    /// a millisecond per backward clock step later for a rerun, and later
    /// again for a late amendment, so neither replaces the window sent
    /// over the same span before.
    pub start: Timestamp,
    pub end: Timestamp,
    /// Closed early at shutdown: the rest may follow after a restart.
    pub partial: bool,
    /// The window's own start, as the aggregator closed it.
    pub window_start: Timestamp,
    /// 0, or the number of backward clock steps when this window's span
    /// had been closed once already: a second window over that span, with
    /// other readings (`aggregator::DeviceWindow::rerun`).
    pub rerun: u32,
    /// 0, or the number of a late amendment: readings placed by their own
    /// time in a span whose window was sent already. Its statistics add to
    /// what was sent for the span; it replaces nothing
    /// (`aggregator::DeviceWindow::amendment`).
    pub amendment: u32,
    /// When a `partial` window was cut short (the upstream's id holds it).
    pub partial_at: Option<Timestamp>,
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

/// One alert transition, with what the upstream's `alerts` payload says
/// of it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEvent {
    pub device: DeviceId,
    pub rule: String,
    /// Empty for a silence rule that watches any metric.
    pub metric: String,
    /// `threshold`, `rate`, `silence`, `anomaly`.
    pub kind: String,
    /// `raised`, `cleared` or `suppressed` (a raise within the rule's
    /// cooldown: recorded, never sent upstream).
    pub state: String,
    pub value: f64,
    pub limit: f64,
    pub at: Timestamp,
    /// anomaly (raised): why the detector fired (`above_expected`, …).
    pub reason: Option<String>,
    /// anomaly (raised): the range (low, high) the detector expected the
    /// value in, in the metric's unit; `limit` is then the score.
    pub expected: Option<(f64, f64)>,
    /// anomaly (raised): the reading the detector judged.
    pub observed: Option<f64>,
    /// The adapter of the reading that decided it (its `units` may say
    /// what the metric is measured in); `SourceId::UNKNOWN` when the clock
    /// or a status change did.
    pub source: SourceId,
}

impl AlertEvent {
    /// What an alert's one-line text is made of.
    pub fn facts(&self) -> crate::units::AlertFacts<'_> {
        crate::units::AlertFacts {
            rule: &self.rule,
            state: &self.state,
            kind: &self.kind,
            metric: &self.metric,
            value: self.value,
            limit: self.limit,
            expected: self.expected,
        }
    }
}
