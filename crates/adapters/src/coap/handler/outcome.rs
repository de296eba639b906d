//! What one datagram produced: the reply, the readings and what was
//! refused, for the server to send, forward and count.

use std::collections::BTreeMap;

use gateway_core::{DeviceId, Reading};

/// What one datagram produced.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    /// Bytes to send back to the peer.
    pub reply: Option<Vec<u8>>,
    /// Readings for the pipeline.
    pub readings: Vec<Reading>,
    /// Errors by `error_type`, with a detail for the log.
    pub errors: Vec<(String, String)>,
    /// A retransmission answered from the duplicate cache.
    pub duplicate: bool,
    /// Text fields beside the numbers (`"sensor_id": "meter-01"`), by device
    /// and key: not errors, counted once each at debug level.
    pub ignored: Vec<(DeviceId, String)>,
    /// A `js:` codec's `warnings` about this body: logged and counted, the
    /// readings still flow.
    pub codec_warnings: Option<(DeviceId, Vec<String>)>,
    /// Units a codec's `normalizeUplink` gave, by metric.
    pub units: Option<(DeviceId, BTreeMap<String, String>)>,
}

impl Outcome {
    /// Empties it for the next datagram, keeping its buffers. Nearly
    /// every outcome is empty but for its reply: each field is dropped
    /// only when it holds something.
    pub fn clear(&mut self) {
        if self.reply.is_some() {
            self.reply = None;
        }
        if !self.readings.is_empty() {
            self.readings.clear();
        }
        if !self.errors.is_empty() {
            self.errors.clear();
        }
        self.duplicate = false;
        if !self.ignored.is_empty() {
            self.ignored.clear();
        }
        if self.codec_warnings.is_some() {
            self.codec_warnings = None;
        }
        if self.units.is_some() {
            self.units = None;
        }
    }

    pub(super) fn error(&mut self, kind: impl Into<String>, detail: impl Into<String>) {
        self.errors.push((kind.into(), detail.into()));
    }
}
