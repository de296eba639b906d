//! The `ble` adapter's run loop: advertisements from a source (the radio
//! under its watchdog, or a recorded capture) through [`BleDecoder`] into
//! the pipeline.
//!
//! Both sources feed the same channel and the same loop, so a replayed
//! capture tests the path the radio takes. Readings are stamped with the
//! time the advertisement is processed. An encrypted frame that moved a
//! counter has its readings sent only after `ble-counters.json` is written
//! (FAULTS §3.4); if that write fails, they are dropped and counted
//! (`counter_store`), since a frame whose counter is not remembered could be
//! replayed after a restart.
//!
//! Metrics (besides the adapter's received/readings/errors):
//! `edge_gateway_ble_advertisements_total{adapter,format}` decoded,
//! `edge_gateway_ble_duplicates_total{adapter,format}`,
//! `edge_gateway_ble_refused_total{adapter,format,reason}`,
//! `edge_gateway_ble_unrecognised_total{adapter,id}` (company id or service
//! UUID of what no decoder understands),
//! `edge_gateway_ble_unregistered_total{adapter}` (`accept = "registered"`),
//! and the watchdog's actions.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use gateway_core::component::{AdapterFuture, AdapterStats, ADAPTER_CONNECTED, ADAPTER_LINK};
use gateway_core::telemetry::LogThrottle;
use gateway_core::{Adapter, AdapterContext, AdapterError, Ingress};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::advert::{Advertisement, Mac};
use super::config::{Accept, BleConfig, BleDevice, BleSection, BleSource};
use super::counter_file::CounterFile;
use super::dispatch::{BleDecoder, Outcome, Unrecognised};
use super::radio::BluezRadio;
use super::{replay_source, watchdog};

pub const ADVERTISEMENTS: &str = "edge_gateway_ble_advertisements_total";
pub const DUPLICATES: &str = "edge_gateway_ble_duplicates_total";
pub const REFUSED: &str = "edge_gateway_ble_refused_total";
pub const UNRECOGNISED: &str = "edge_gateway_ble_unrecognised_total";
pub const UNREGISTERED: &str = "edge_gateway_ble_unregistered_total";

/// Exit status when the watchdog gives up: EX_TEMPFAIL, so `Restart=on-failure`
/// restarts the service with a fresh D-Bus connection.
pub const EXIT_RADIO_WEDGED: i32 = 75;

/// Distinct `id` labels of unrecognised advertisements: phones rotate
/// random service UUIDs, and each label is a series in /metrics forever.
const MAX_UNRECOGNISED_LABELS: usize = 64;
/// Advertisements between the source and the decoder.
const QUEUE: usize = 1024;

/// A runnable `ble` adapter.
pub struct BleAdapter {
    config: BleConfig,
    devices: BleSection,
    /// MACs named by `[[device]]` (an ESP-NOW setup maps its sensors there), which
    /// `accept = "registered"` admits like those of `[[ble.device]]`.
    registered: HashSet<Mac>,
    state_dir: PathBuf,
}

impl BleAdapter {
    pub fn new(config: BleConfig, devices: Vec<BleDevice>, state_dir: &Path) -> Self {
        Self {
            config,
            devices: BleSection {
                devices,
                notes: Vec::new(),
            },
            registered: HashSet::new(),
            state_dir: state_dir.to_path_buf(),
        }
    }

    /// Admits the `[[device]]` ids that are MAC addresses (others are not
    /// BLE devices and are skipped). The registry has already written
    /// every id that is plainly a MAC in its colon form (`aa:bb:…`), so
    /// an id of twelve bare digits it left as it was is a serial number.
    pub fn also_registered(&mut self, ids: &[String]) {
        self.registered.extend(
            ids.iter()
                .filter(|id| id.contains([':', '-']))
                .filter_map(|id| id.parse::<Mac>().ok()),
        );
    }
}

impl Adapter for BleAdapter {
    /// The radio, through bluetoothd: an advertisement before the scan
    /// runs is lost. A capture being replayed has no link.
    fn holds_a_link(&self) -> bool {
        matches!(self.config.source, BleSource::Radio { .. })
    }

    fn run(self: Box<Self>, ctx: AdapterContext) -> AdapterFuture {
        Box::pin(async move {
            if let Err(e) = std::fs::create_dir_all(&self.state_dir) {
                error!(adapter = %ctx.name, state_dir = %self.state_dir.display(), error = %e, "Cannot use the state directory: encrypted BTHome frames will be refused, as their counters cannot be stored.");
            }
            let file = CounterFile::in_state_dir(&self.state_dir);
            let (table, problem) = file.load();
            if let Some(e) = problem {
                ctx.stats().error("counter_store");
                error!(adapter = %ctx.name, error = %e, "BTHome encryption counters of the last run are lost: frames sent before the restart could be accepted again until each device sends a new one.");
            }
            let (tx, rx) = mpsc::channel(QUEUE);
            let producer = spawn_source(&self.config, tx, &ctx);
            let mut decoding = Decoding {
                decoder: BleDecoder::new(table),
                file,
                devices: self.devices,
                registered: self.registered,
                accept: self.config.accept,
                stats: ctx.stats(),
                labels: HashSet::new(),
                throttle: LogThrottle::default(),
                ctx: ctx.clone(),
            };
            let result = decoding.run(rx).await;
            producer.abort();
            result?;
            info!(adapter = %ctx.name, "Stopped.");
            Ok(())
        })
    }
}

fn spawn_source(
    config: &BleConfig,
    tx: mpsc::Sender<Advertisement>,
    ctx: &AdapterContext,
) -> tokio::task::JoinHandle<()> {
    let ctx = ctx.clone();
    let silence = config.silence;
    match config.source.clone() {
        BleSource::Replay { file, speed } => tokio::spawn(async move {
            let stats = ctx.stats();
            let name = ctx.name.clone();
            let played = replay_source::play(&file, speed, &tx, &ctx.shutdown, |line, e| {
                stats.error(e.kind());
                warn!(adapter = %name, line, error = %e, "Skipping a line of the BLE capture.");
            })
            .await;
            match played {
                Ok(p) => {
                    info!(adapter = %ctx.name, advertisements = p.advertisements, bad_lines = p.bad_lines, "BLE capture played; idle.")
                }
                Err(e) => {
                    stats.error("replay_file");
                    error!(adapter = %ctx.name, error = %e, "Cannot play the BLE capture.");
                }
            }
        }),
        BleSource::Radio { adapter } => tokio::spawn(async move {
            let connected = ctx
                .telemetry
                .gauge(ADAPTER_CONNECTED, &[("adapter", &ctx.name)]);
            ctx.telemetry
                .gauge(
                    ADAPTER_LINK,
                    &[("adapter", &ctx.name), ("link", super::kind::RADIO.name)],
                )
                .set(1.0);
            let mut radio = BluezRadio::new(adapter, ctx.clock.clone());
            let outcome = watchdog::supervise(
                &mut radio,
                silence,
                &tx,
                &connected,
                &ctx.telemetry,
                &ctx.name,
                &ctx.shutdown,
            )
            .await;
            if let Err(e) = outcome {
                // The last step of the ladder (issue #14): only a new
                // process gets a new D-Bus connection and bluetoothd
                // session. What was acknowledged is in the outbox (fsynced),
                // so this costs the open windows, as a crash does.
                error!(adapter = %ctx.name, error = %e, code = EXIT_RADIO_WEDGED, "Exiting so systemd restarts the service.");
                std::process::exit(EXIT_RADIO_WEDGED);
            }
        }),
    }
}

struct Decoding {
    decoder: BleDecoder,
    file: CounterFile,
    devices: BleSection,
    registered: HashSet<Mac>,
    accept: Accept,
    stats: AdapterStats,
    labels: HashSet<String>,
    throttle: LogThrottle,
    ctx: AdapterContext,
}

impl Decoding {
    async fn run(&mut self, mut rx: mpsc::Receiver<Advertisement>) -> Result<(), AdapterError> {
        loop {
            let adv = tokio::select! {
                _ = self.ctx.shutdown.cancelled() => return Ok(()),
                adv = rx.recv() => adv,
            };
            let Some(adv) = adv else {
                // The source ended (replay done, or gave up): stay idle, as
                // a finished capture must not look like a stopped adapter.
                self.ctx.shutdown.cancelled().await;
                return Ok(());
            };
            self.one(adv).await?;
        }
    }

    async fn one(&mut self, mut adv: Advertisement) -> Result<(), AdapterError> {
        self.stats.received.inc();
        let adapter = self.ctx.name.clone();
        let registered = self.registered.contains(&adv.mac)
            || self.devices.devices.iter().any(|d| d.mac == adv.mac);
        if self.accept == Accept::Registered && !registered {
            self.ctx
                .telemetry
                .counter(UNREGISTERED, &[("adapter", &adapter)])
                .inc();
            return Ok(());
        }
        adv.time = self.ctx.clock.now();
        let now = tokio::time::Instant::now().into_std();
        let outcome = self
            .decoder
            .decode(&adv, self.devices.bindkey(adv.mac), now);
        match outcome {
            Outcome::Decoded(decoded) => {
                if self.decoder.counters.take_changed() {
                    let file = self.file.clone();
                    let table = self.decoder.counters.clone();
                    let saved = tokio::task::spawn_blocking(move || file.save(&table)).await;
                    let failure = match saved {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(e.to_string()),
                        Err(e) => Some(e.to_string()),
                    };
                    if let Some(e) = failure {
                        gateway_core::refuse!(error: self.stats, self.throttle, "counter_store";
                            adapter, error = %e, "Cannot store the BTHome counters; dropping the frame's readings.");
                        return Ok(());
                    }
                }
                let format = decoded.format.name();
                self.ctx
                    .telemetry
                    .counter(ADVERTISEMENTS, &[("adapter", &adapter), ("format", format)])
                    .inc();
                let readings = decoded.readings(adv.time);
                if readings.is_empty() {
                    return Ok(());
                }
                self.stats.readings.add(readings.len() as u64);
                let (manufacturer, model) = decoded.format.make();
                self.ctx
                    .ingress
                    .describe(decoded.mac.device_id().as_str(), manufacturer, model);
                self.ctx
                    .ingress
                    .send(Ingress::Readings(readings))
                    .await
                    .map_err(|_| AdapterError::PipelineClosed)?;
            }
            Outcome::Duplicate { format, .. } => {
                self.ctx
                    .telemetry
                    .counter(
                        DUPLICATES,
                        &[("adapter", &adapter), ("format", format.name())],
                    )
                    .inc();
            }
            Outcome::Refused { mac, format, error } => {
                let reason = error.kind();
                self.ctx
                    .telemetry
                    .counter(
                        REFUSED,
                        &[
                            ("adapter", &adapter),
                            ("format", format.name()),
                            ("reason", reason),
                        ],
                    )
                    .inc();
                gateway_core::refuse!(self.stats, self.throttle, reason;
                    adapter, mac = %mac.device_id().as_str(), format = format.name(), error = %error, "Refusing a BLE advertisement.");
            }
            Outcome::NotUnderstood(ids) => self.unrecognised(&adapter, &ids),
        }
        Ok(())
    }

    fn unrecognised(&mut self, adapter: &str, ids: &Unrecognised) {
        let labels = ids
            .company_ids
            .iter()
            .map(|c| format!("company_{c:04x}"))
            .chain(ids.service_uuids.iter().map(|u| match u.as_u16() {
                Some(short) => format!("uuid_{short:04x}"),
                None => "uuid_128".to_string(),
            }));
        let mut any = false;
        for label in labels {
            any = true;
            let label =
                if self.labels.contains(&label) || self.labels.len() < MAX_UNRECOGNISED_LABELS {
                    self.labels.insert(label.clone());
                    label
                } else {
                    "other".to_string()
                };
            self.ctx
                .telemetry
                .counter(UNRECOGNISED, &[("adapter", adapter), ("id", &label)])
                .inc();
        }
        if !any {
            // Only a name or flags: nothing any sensor format uses.
            self.ctx
                .telemetry
                .counter(UNRECOGNISED, &[("adapter", adapter), ("id", "no_data")])
                .inc();
        }
        debug!(
            adapter,
            "Dropping a BLE advertisement no decoder understands."
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn device_registry_ids_that_are_macs_count_as_registered() {
        let config = BleConfig {
            name: "ble".into(),
            source: BleSource::Radio { adapter: None },
            accept: Accept::Registered,
            silence: Duration::from_secs(90),
        };
        let mut adapter = BleAdapter::new(config, Vec::new(), Path::new("/nonexistent"));
        adapter.also_registered(&[
            "a4:c1:38:8d:18:b2".into(),
            "A4:C1:38:00:00:01".into(),
            "fridge-7".into(),
            "123456789012".into(),
        ]);
        let want: HashSet<Mac> = ["a4:c1:38:8d:18:b2", "a4:c1:38:00:00:01"]
            .iter()
            .filter_map(|m| m.parse().ok())
            .collect();
        assert_eq!(want.len(), 2);
        assert_eq!(
            adapter.registered, want,
            "ids that are not MACs are skipped"
        );
    }
}
