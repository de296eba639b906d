//! Uplinks of devices with a `js:` codec: the payload goes to the codec
//! workers once the uplink is accepted (its counter on disk, its rssi,
//! snr and gateways readings on their way); the decoded object comes back
//! to the socket loop as readings. A codec that loops, throws or runs out
//! of memory costs that uplink its values and a counted error, nothing
//! else: the loop never waits for a script.

use gateway_core::telemetry::{Counter, LogThrottle};
use gateway_core::{AdapterContext, AdapterError, DeviceId, Reading, TimeSource, Timestamp};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::super::codecs::js::readings::{normalized_units, Fate, Leaf};
use super::super::codecs::js::{clipped_key, clipped_list, Decoded, ScriptError};
use super::super::dedup::Uplink;
use super::super::uplink::ScriptJob;
use super::{gateway_list, Server};

/// A script's outcome for one uplink.
pub(super) struct Done {
    device: DeviceId,
    received: Timestamp,
    /// The forwarders that heard it, for the log.
    gateways: String,
    fport: u8,
    /// The payload, handed back by the codec's worker (empty when the
    /// call was refused before it ran): a failure's log line shows it.
    payload: Vec<u8>,
    result: Result<Decoded, ScriptError>,
}

pub(super) struct Scripts {
    tx: mpsc::UnboundedSender<Done>,
    pub rx: mpsc::UnboundedReceiver<Done>,
    /// Started and not yet come back.
    pub in_flight: usize,
    warnings: Counter,
    throttle: LogThrottle,
    /// The units each device's `normalizeUplink` gave so far: reported
    /// again only when they grow.
    units: HashMap<DeviceId, BTreeMap<String, String>>,
}

impl Scripts {
    pub fn new(ctx: &AdapterContext) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            tx,
            rx,
            in_flight: 0,
            warnings: ctx.telemetry.counter(
                "edge_gateway_lorawan_codec_warnings_total",
                &[("adapter", ctx.name.as_str())],
            ),
            throttle: LogThrottle::default(),
            units: HashMap::new(),
        }
    }

    /// Hands an accepted uplink's payload to its codec.
    pub fn start(&mut self, job: ScriptJob, device: &DeviceId, up: &Uplink) {
        let tx = self.tx.clone();
        let device = device.clone();
        let received = up.received;
        let gateways = gateway_list(up);
        let recv_ms = received.as_millis();
        let fport = job.fport;
        let queued = job.codec.decode_returning(job.payload, fport, recv_ms, {
            let (device, gateways) = (device.clone(), gateways.clone());
            move |result, payload| {
                // Gone only when the adapter stopped without draining.
                let _ = tx.send(Done {
                    device,
                    received,
                    gateways,
                    fport,
                    payload,
                    result,
                });
            }
        });
        match queued {
            Ok(()) => self.in_flight += 1,
            Err(e) => {
                // Refused at once (the codec's queue is full): counted and
                // logged as any failed decode.
                let _ = self.tx.send(Done {
                    device,
                    received,
                    gateways,
                    fport,
                    payload: Vec::new(),
                    result: Err(e),
                });
                self.in_flight += 1;
            }
        }
    }
}

impl Server {
    /// Sends a decoded uplink's readings; counts and logs a failure.
    /// Those that came back meanwhile leave with it, as one message (at
    /// most [`MAX_READINGS_PER_MESSAGE`](super::MAX_READINGS_PER_MESSAGE)).
    pub(super) async fn script_done(&mut self, done: Done) -> Result<(), AdapterError> {
        let mut readings = Vec::new();
        self.decoded(done, &mut readings);
        while readings.len() < super::MAX_READINGS_PER_MESSAGE {
            match self.scripts.rx.try_recv() {
                Ok(more) => self.decoded(more, &mut readings),
                Err(_) => break,
            }
        }
        self.send(readings).await
    }

    /// One uplink's outcome: its readings onto `readings`, or its failure
    /// counted and logged.
    fn decoded(&mut self, done: Done, readings: &mut Vec<Reading>) {
        self.scripts.in_flight = self.scripts.in_flight.saturating_sub(1);
        let decoded = match done.result {
            Ok(d) => d,
            Err(e) => {
                // The payload is in no other output: shown, it can be
                // decoded again (`edge-gateway decode --fport N HEX`).
                let payload = if done.payload.is_empty() {
                    String::new()
                } else {
                    let hex: String = done.payload.iter().map(|b| format!("{b:02X}")).collect();
                    format!(", payload {hex}")
                };
                self.report(
                    &format!("codec_{}", e.kind()),
                    &done.gateways,
                    &format!("device {} (FPort {}{payload}): {e}", done.device, done.fport),
                );
                return;
            }
        };
        let warnings = decoded.warnings();
        if !warnings.is_empty() {
            self.scripts.warnings.add(warnings.len() as u64);
            if let Some(suppressed) = self.scripts.throttle.allow(done.device.as_str()) {
                let warnings = clipped_list(&warnings);
                warn!(adapter = %self.ctx.name, device = %done.device, warnings = ?warnings, suppressed, "The LoRaWAN codec warned about an uplink.");
            }
        }
        let before = readings.len();
        let taken = decoded.fields();
        for (key, leaf, fate) in &taken.fields {
            match (leaf, fate) {
                (Leaf::Number(value), Fate::Reading(name)) => {
                    // Interned: the names a fleet's codecs give every uplink.
                    let Some(metric) = self.names.get(name.as_str()) else {
                        continue;
                    };
                    readings.extend(
                        Reading::new(
                            done.device.clone(),
                            metric,
                            *value,
                            done.received,
                            TimeSource::Arrival,
                        )
                        .ok(),
                    );
                }
                // Remembered per device and key: a key as long as the
                // codec's heap, new on each uplink, grew memory by
                // megabytes per uplink.
                (Leaf::Text(_), _) => self
                    .stats
                    .ignored_field(done.device.as_str(), &clipped_key(key)),
                _ => {}
            }
        }
        if let Some(left_out) = taken.left_out() {
            self.report(
                "codec_js_fields",
                &done.gateways,
                &format!(
                    "device {}: values of its codec's result left out: {left_out}",
                    done.device
                ),
            );
        }
        if let Some(normalized) = decoded.result.get("normalized") {
            self.normalized_units(&done.device, decoded.data(), normalized);
        }
        debug!(adapter = %self.ctx.name, device = %done.device, readings = readings.len() - before, "Uplink decoded by its JavaScript codec.");
    }

    /// Units from the codec's `normalizeUplink`, for every output, once
    /// they are new for the device.
    fn normalized_units(
        &mut self,
        device: &DeviceId,
        data: &serde_json::Value,
        normalized: &serde_json::Value,
    ) {
        let found = normalized_units(data, normalized);
        if found.is_empty() {
            return;
        }
        let known = self.scripts.units.entry(device.clone()).or_default();
        let before = known.len();
        for (metric, unit) in found {
            known.entry(metric).or_insert(unit);
        }
        if known.len() > before {
            self.ctx
                .ingress
                .report_units(device.as_str(), known.clone());
        }
    }

    /// At the stop: uplinks already accepted whose codec is still running
    /// leave their readings first. A codec stuck behind its own loops
    /// (each call up to its time limit) is not waited for past
    /// [`DRAIN_WAIT`]: what it would give is lost, and said so.
    pub(super) async fn drain_scripts(&mut self) -> Result<(), AdapterError> {
        let deadline = tokio::time::Instant::now() + DRAIN_WAIT;
        while self.scripts.in_flight > 0 {
            match tokio::time::timeout_at(deadline, self.scripts.rx.recv()).await {
                Ok(Some(done)) => self.script_done(done).await?,
                Ok(None) => break,
                Err(_) => {
                    warn!(adapter = %self.ctx.name, uplinks = self.scripts.in_flight, "Stopping without the values of uplinks whose JavaScript codec had not finished.");
                    break;
                }
            }
        }
        Ok(())
    }
}

/// How long a stop waits for codecs still decoding accepted uplinks.
const DRAIN_WAIT: Duration = Duration::from_secs(5);
