//! The interface every protocol adapter implements.
//!
//! An adapter is built from its `[[adapter]]` table, then run with an
//! [`AdapterContext`]: a bounded sender into the pipeline and a shutdown
//! token. It returns when the token is cancelled (clean stop) or with an
//! error it cannot recover from; transient faults (a broker that vanished, a
//! malformed datagram) are handled inside, logged and counted.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::clock::Clock;
use crate::model::{Reading, SourceId, StatusChange};
use crate::telemetry::{Counter, Telemetry};

/// What an adapter hands to the pipeline.
#[derive(Debug)]
pub enum Ingress {
    /// Readings decoded from one message; kept together so one payload
    /// costs one channel operation.
    Readings(Vec<Reading>),
    /// A device announced it came online or went offline.
    Status(StatusChange),
    /// Readings from a source that redelivers what it was not told is safe
    /// (an MQTT QoS 1 session): the pipeline completes the receipt once the
    /// readings are on disk, and only then may the adapter acknowledge.
    Durable {
        readings: Vec<Reading>,
        receipt: Receipt,
    },
    /// The source's session started afresh (MQTT CONNACK without session
    /// present): the broker resends nothing from before, and reuses its
    /// packet ids from the start, so what was remembered as taken from
    /// `source` no longer says what a resent copy is.
    NewSession { source: Arc<str> },
}

/// Where a redeliverable message sat in its source's session, so a copy
/// sent again after a crash is recognised and not counted twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryKey {
    /// The adapter (one session per adapter).
    pub source: Arc<str>,
    /// The session's slot for the message (MQTT packet id); a slot is
    /// reused only after the message in it was acknowledged. 0 (never an
    /// MQTT packet id) marks a key that is its digest alone (a TCP line).
    pub slot: u16,
    /// A digest of the message (topic and payload).
    pub digest: u64,
    /// The source marked it as a resend (MQTT DUP flag). Only resends are
    /// checked: a new message with the same slot and content is genuine.
    pub resent: bool,
}

/// The pipeline's promise to tell the adapter when readings are durable.
#[derive(Debug)]
pub struct Receipt {
    pub key: Option<DeliveryKey>,
    done: tokio::sync::oneshot::Sender<()>,
}

/// The adapter's side of a [`Receipt`]: resolves once the readings are
/// safe, or with an error if the pipeline stopped before that.
pub type ReceiptWaiter = tokio::sync::oneshot::Receiver<()>;

impl Receipt {
    pub fn new(key: Option<DeliveryKey>) -> (Self, ReceiptWaiter) {
        let (done, waiter) = tokio::sync::oneshot::channel();
        (Self { key, done }, waiter)
    }

    /// Whether the adapter still waits for this receipt: when it does not
    /// (a source that cannot resend, or a connection gone), nobody will
    /// resend the message if it is not taken.
    pub fn is_awaited(&self) -> bool {
        !self.done.is_closed()
    }

    /// The readings are durable: the adapter may acknowledge.
    pub fn complete(self) {
        // The adapter may have lost its connection and dropped the waiter;
        // the source then resends and the key catches the copy.
        let _ = self.done.send(());
    }
}

/// The pipeline's inbox as one adapter sees it. Bounded: a slow pipeline
/// slows the adapters down instead of growing memory. It stamps every
/// reading with the adapter's [`SourceId`], so provenance is set in one
/// place for every protocol, never guessed downstream from an id's shape.
#[derive(Debug, Clone)]
pub struct IngressSender {
    tx: mpsc::Sender<Ingress>,
    source: SourceId,
    /// Where [`IngressSender::describe`] writes; none in tests and benches.
    models: Option<Sources>,
}

impl IngressSender {
    pub fn new(tx: mpsc::Sender<Ingress>, source: SourceId) -> Self {
        Self {
            tx,
            source,
            models: None,
        }
    }

    /// Lets the adapter tell what make its devices are.
    #[must_use]
    pub fn with_models(mut self, sources: Sources) -> Self {
        self.models = Some(sources);
        self
    }

    /// Records what the adapter knows of `device`'s make (a BLE
    /// advertisement's format, a LoRaWAN codec), for Home Assistant's
    /// device block. Cheap to repeat: unchanged, it only reads.
    pub fn describe(&self, device: &str, manufacturer: Option<&str>, model: &str) {
        if let Some(sources) = &self.models {
            sources.describe(device, manufacturer, model);
        }
    }

    /// Records the unit `device` itself states for each of its metrics
    /// (a BACnet object's `units`), read before its first reading is sent.
    /// Every output shows it unless `[[device]] units` says otherwise: the
    /// name table only guesses from a metric's name, and `supply_air` or
    /// `flow` says nothing. Replaces what was recorded for `device`.
    pub fn report_units(&self, device: &str, units: BTreeMap<String, String>) {
        if let Some(sources) = &self.models {
            sources.report_units(device, units);
        }
    }

    pub fn source(&self) -> SourceId {
        self.source
    }

    /// Sends as [`mpsc::Sender::send`] does, after stamping the readings.
    ///
    /// # Errors
    /// The pipeline has stopped; the message comes back.
    pub async fn send(&self, mut msg: Ingress) -> Result<(), mpsc::error::SendError<Ingress>> {
        if let Ingress::Readings(readings) | Ingress::Durable { readings, .. } = &mut msg {
            for r in readings {
                r.set_source(self.source);
            }
        }
        self.tx.send(msg).await
    }
}

/// Unstamped ([`SourceId::UNKNOWN`]): for tests and benches.
impl From<mpsc::Sender<Ingress>> for IngressSender {
    fn from(tx: mpsc::Sender<Ingress>) -> Self {
        Self::new(tx, SourceId::UNKNOWN)
    }
}

/// One configured adapter, as the pages name a reading's origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    /// `[[adapter]] name`.
    pub name: String,
    /// `[[adapter]] type` (`mqtt`, `serial_line`, `lorawan`, …).
    pub kind: String,
}

/// How people and neighbouring systems name one adapter kind. Declared
/// once, in the adapter's folder; the pages and Home Assistant read it here
/// so that neither keeps a table of adapters of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInfo {
    /// `[[adapter]] type`.
    pub kind: &'static str,
    /// The protocol as people know it (`LoRaWAN`): the dashboard's label.
    pub label: &'static str,
    /// The model Home Assistant shows for a device heard through it.
    pub model: &'static str,
}

/// The table a [`SourceId`] indexes. Ids are handed out once per adapter
/// name and kind and never reused, so a reading stamped before a reload
/// still names its adapter after it.
#[derive(Debug, Clone, Default)]
pub struct Sources(
    Arc<std::sync::RwLock<Vec<SourceInfo>>>,
    Arc<std::sync::RwLock<HashMap<String, DeviceModel>>>,
    &'static [KindInfo],
    /// Device → metric → unit, as the devices state them.
    Arc<std::sync::RwLock<HashMap<String, BTreeMap<String, String>>>>,
);

/// A device's make, as the adapter that hears it knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceModel {
    pub manufacturer: Option<String>,
    pub model: String,
}

/// Devices whose make is remembered: a crowded street of BLE devices must
/// not grow the table without end.
const MODELS_KEPT: usize = 10_000;

impl Sources {
    /// An empty table that names kinds by `kinds` (the adapters built in).
    pub fn with_kinds(kinds: &'static [KindInfo]) -> Self {
        Self(Arc::default(), Arc::default(), kinds, Arc::default())
    }

    /// What is declared of `kind`, if it is built in.
    pub fn kind_info(&self, kind: &str) -> Option<&'static KindInfo> {
        self.2.iter().find(|k| k.kind == kind)
    }

    /// The protocol's name as people know it; an unknown kind (from a
    /// state file of another build) shows as itself.
    pub fn label<'a>(&self, kind: &'a str) -> &'a str {
        self.kind_info(kind).map_or(kind, |k| k.label)
    }

    /// The id of `name` of `kind`, registering it on first sight.
    pub fn register(&self, name: &str, kind: &str) -> SourceId {
        let mut table = self.0.write().unwrap_or_else(|p| p.into_inner());
        let index = match table.iter().position(|s| s.name == name && s.kind == kind) {
            Some(i) => i,
            None => {
                table.push(SourceInfo {
                    name: name.to_string(),
                    kind: kind.to_string(),
                });
                table.len() - 1
            }
        };
        // 0 is UNKNOWN; 65 535 adapters is far beyond any config.
        SourceId(u16::try_from(index + 1).unwrap_or(u16::MAX))
    }

    /// Every adapter seen, in the order of their ids.
    pub fn all(&self) -> Vec<SourceInfo> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// See [`IngressSender::describe`].
    pub fn describe(&self, device: &str, manufacturer: Option<&str>, model: &str) {
        let same = |m: &DeviceModel| m.model == model && m.manufacturer.as_deref() == manufacturer;
        if self
            .1
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(device)
            .is_some_and(same)
        {
            return;
        }
        let mut table = self.1.write().unwrap_or_else(|p| p.into_inner());
        if table.len() < MODELS_KEPT || table.contains_key(device) {
            table.insert(
                device.to_string(),
                DeviceModel {
                    manufacturer: manufacturer.map(str::to_string),
                    model: model.to_string(),
                },
            );
        }
    }

    /// See [`IngressSender::report_units`]. Kept for as many devices as
    /// their makes are.
    pub fn report_units(&self, device: &str, units: BTreeMap<String, String>) {
        if self
            .3
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(device)
            .is_some_and(|u| *u == units)
        {
            return;
        }
        let mut table = self.3.write().unwrap_or_else(|p| p.into_inner());
        if table.len() < MODELS_KEPT || table.contains_key(device) {
            table.insert(device.to_string(), units);
        }
    }

    /// The unit `device` itself states for `metric`, if its adapter read one.
    pub fn reported_unit(&self, device: &str, metric: &str) -> Option<String> {
        self.3
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(device)?
            .get(metric)
            .cloned()
    }

    /// What an adapter told of `device`'s make, if anything.
    pub fn model_of(&self, device: &str) -> Option<DeviceModel> {
        self.1
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(device)
            .cloned()
    }

    pub fn get(&self, id: SourceId) -> Option<SourceInfo> {
        let i = usize::from(id.0).checked_sub(1)?;
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(i)
            .cloned()
    }
}

/// Everything an adapter gets to run.
#[derive(Clone)]
pub struct AdapterContext {
    /// The adapter's name from its config, for logs and metric labels.
    pub name: String,
    pub ingress: IngressSender,
    pub shutdown: CancellationToken,
    pub telemetry: Telemetry,
    /// Stamps readings that carry no time of their own.
    pub clock: Arc<dyn Clock>,
}

impl AdapterContext {
    /// The standard counters of this adapter.
    pub fn stats(&self) -> AdapterStats {
        AdapterStats::new(&self.telemetry, &self.name)
    }

    /// Says the adapter's port is bound: from now on what devices send is
    /// queued by the kernel, not refused. Called by adapters whose
    /// [`Adapter::serves_a_port`] is true.
    pub fn listening(&self) {
        self.telemetry
            .gauge(ADAPTER_LISTENING, &[("adapter", &self.name)])
            .set(1.0);
    }
}

/// A failure that stops an adapter.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
    #[error("the pipeline has stopped")]
    PipelineClosed,
}

pub type AdapterFuture = Pin<Box<dyn Future<Output = Result<(), AdapterError>> + Send>>;

/// A protocol adapter, ready to run.
pub trait Adapter: Send + 'static {
    /// Runs until `ctx.shutdown` is cancelled.
    fn run(self: Box<Self>, ctx: AdapterContext) -> AdapterFuture;

    /// True for an adapter that devices connect or send to (a TCP line
    /// port, a CoAP server, a packet forwarder's UDP port). Its task starts
    /// before its port is bound, and in between a device is refused:
    /// such an adapter calls [`AdapterContext::listening`] once bound, and
    /// `/health` calls it "starting" until then.
    fn serves_a_port(&self) -> bool {
        false
    }

    /// True for an adapter that holds a link before it takes anything in
    /// (an MQTT adapter's broker and subscriptions, a serial port, a
    /// Modbus bus, a KNX tunnel, a BLE radio's scan). Its task starts before the link is up, and in between a
    /// reading sent to it is lost: `/health` calls it "connecting" from
    /// before its task starts until the task sets [`ADAPTER_CONNECTED`].
    fn holds_a_link(&self) -> bool {
        false
    }

    /// Its write side, for an adapter that can carry commands to its
    /// devices: asked once, before [`Self::run`] (the target usually
    /// queues writes for the task `run` starts).
    fn command_target(&mut self) -> Option<std::sync::Arc<dyn crate::command::CommandTarget>> {
        None
    }
}

/// Gauge `{adapter}` of an adapter that holds a connection (MQTT): `1` once
/// it is connected and every subscription is in place, `0` while it is
/// connecting or after a refusal. Adapters without a connection (CoAP,
/// UDP) do not set it. `/health` reads it.
pub const ADAPTER_CONNECTED: &str = "edge_gateway_adapter_connected";
/// Gauge `{adapter}` of an adapter that [serves a port](Adapter::serves_a_port):
/// `0` from its start until the port is bound, then `1`. `/health` reads it:
/// an orchestrator that sends once `/health` is 200 is never refused.
pub const ADAPTER_LISTENING: &str = "edge_gateway_adapter_listening";
/// Gauge `{adapter, link}`, 1, set beside [`ADAPTER_CONNECTED`]: what the
/// connection is to (a [`LinkKind`]'s name: [`LINK_BROKER`],
/// [`LINK_SERIAL_PORT`], a protocol's own), so `/health` says what is
/// missing in the words of what is there (an unplugged serial port has no
/// broker).
pub const ADAPTER_LINK: &str = "edge_gateway_adapter_link_info";
/// An MQTT broker: connected and subscribed.
pub const LINK_BROKER: &str = "broker";
/// A serial port: open.
pub const LINK_SERIAL_PORT: &str = "serial_port";

/// A kind of link an adapter holds ([`ADAPTER_LINK`]'s `link`), and what
/// `/health` says of an adapter whose link of this kind is down, after
/// `adapter "NAME" `. The links no one protocol owns are [`LINKS`]; a
/// protocol's own (a Bluetooth radio, a KNXnet/IP interface) is declared
/// in its adapter's folder, so `/health` names no protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkKind {
    /// The `link` label's value.
    pub name: &'static str,
    /// What is missing while it is down, in the words of what is there.
    pub down: &'static str,
}

/// An MQTT broker, and what is said of an adapter whose link is of no
/// known kind.
pub const BROKER_LINK: LinkKind = LinkKind {
    name: LINK_BROKER,
    down: "is not connected and subscribed to its broker",
};

/// The links several protocols hold.
pub const LINKS: &[LinkKind] = &[
    LinkKind {
        name: LINK_SERIAL_PORT,
        down: "cannot read its serial port (unplugged, or it cannot be opened)",
    },
    LinkKind {
        name: crate::link_status::LINK_TCP_SERVER,
        down: "cannot reach its TCP server",
    },
    BROKER_LINK,
];
/// Messages (or datagrams, lines) an adapter received, good or bad.
pub const ADAPTER_RECEIVED: &str = "edge_gateway_adapter_received_messages_total";
/// Readings an adapter decoded and handed to the pipeline.
pub const ADAPTER_READINGS: &str = "edge_gateway_adapter_readings_total";
/// Input an adapter refused, by `error_type`.
pub const ADAPTER_ERRORS: &str = "edge_gateway_adapter_errors_total";
/// Text fields (a label such as `"sensor_id": "meter-01"` beside the
/// values) an adapter ignored, counted once per device and key: they are
/// not errors, and a sensor sending one in every message must not look
/// like a broken one.
pub const ADAPTER_IGNORED_FIELDS: &str = "edge_gateway_adapter_ignored_fields_total";

/// Device × key pairs [`AdapterStats::ignored_field`] remembers before it
/// starts over (a hostile sender inventing keys must not grow it).
const IGNORED_FIELDS_KEPT: usize = 4096;

/// The counters every adapter keeps, so each protocol reports alike:
/// messages received, readings produced, and errors by type.
#[derive(Clone)]
pub struct AdapterStats {
    telemetry: Telemetry,
    adapter: String,
    pub received: Counter,
    pub readings: Counter,
    ignored: Counter,
    /// The device × key pairs whose text fields were already counted.
    ignored_seen: Arc<std::sync::Mutex<std::collections::HashSet<(String, String)>>>,
}

impl AdapterStats {
    pub fn new(telemetry: &Telemetry, adapter: &str) -> Self {
        let l = [("adapter", adapter)];
        Self {
            telemetry: telemetry.clone(),
            adapter: adapter.to_string(),
            received: telemetry.counter(ADAPTER_RECEIVED, &l),
            readings: telemetry.counter(ADAPTER_READINGS, &l),
            ignored: telemetry.counter(ADAPTER_IGNORED_FIELDS, &l),
            ignored_seen: Arc::default(),
        }
    }

    /// Notes a text field of `device` that is not a value: counted and
    /// logged at debug level the first time each device sends that key,
    /// then quietly.
    pub fn ignored_field(&self, device: &str, key: &str) {
        let mut seen = self
            .ignored_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let pair = (device.to_string(), key.to_string());
        if seen.contains(&pair) {
            return;
        }
        if seen.len() >= IGNORED_FIELDS_KEPT {
            seen.clear();
        }
        seen.insert(pair);
        self.ignored.inc();
        tracing::debug!(adapter = %self.adapter, device, field = key, "Ignoring a text field: it is not a value.");
    }

    /// Counts one error of `error_type` (a stable snake_case label).
    pub fn error(&self, error_type: &str) {
        self.errors(error_type, 1);
    }

    /// The counter of one error type, for a loop that meets that error
    /// often enough that looking its labels up each time shows in its cost.
    pub fn error_counter(&self, error_type: &str) -> Counter {
        self.telemetry.counter(
            ADAPTER_ERRORS,
            &[("adapter", &self.adapter), ("error_type", error_type)],
        )
    }

    /// `n` errors of one type at once: what a batch counted, so that a
    /// fault met on every datagram of a flood costs one counter update.
    pub fn errors(&self, error_type: &str, n: u64) {
        self.telemetry
            .counter(
                ADAPTER_ERRORS,
                &[("adapter", &self.adapter), ("error_type", error_type)],
            )
            .add(n);
    }
}

/// One message for the upstream broker, already rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DeviceId, MetricName, TimeSource, Timestamp};

    #[test]
    fn kinds_are_named_as_declared_and_unknown_ones_as_themselves() {
        const KINDS: &[KindInfo] = &[KindInfo {
            kind: "semtech_udp",
            label: "LoRaWAN",
            model: "LoRaWAN device",
        }];
        let sources = Sources::with_kinds(KINDS);
        let lora = sources.register("lora-gw", "semtech_udp");
        let kind = sources.get(lora).unwrap().kind;
        assert_eq!(sources.label(&kind), "LoRaWAN");
        assert_eq!(
            sources.kind_info(&kind).map(|k| k.model),
            Some("LoRaWAN device")
        );
        // A kind another build wrote into a state file: shown as it is.
        assert_eq!(sources.label("bacnet"), "bacnet");
        assert_eq!(sources.kind_info("bacnet"), None);
        assert_eq!(Sources::default().label("semtech_udp"), "semtech_udp");
    }

    #[tokio::test]
    async fn every_reading_leaves_an_adapter_stamped_with_it() {
        let sources = Sources::default();
        let serial = sources.register("espnow-relay", "serial_line");
        let mqtt = sources.register("local-sensors", "mqtt");
        assert_eq!(sources.register("espnow-relay", "serial_line"), serial);
        assert_ne!(serial, mqtt);
        assert_eq!(sources.get(serial).unwrap().kind, "serial_line");
        assert_eq!(sources.get(SourceId::UNKNOWN), None);

        let (tx, _rx) = mpsc::channel(1);
        let ble = IngressSender::new(tx, serial).with_models(sources.clone());
        ble.describe("cb:b8:33:4c:88:4f", Some("Ruuvi Innovations"), "RuuviTag");
        ble.describe("cb:b8:33:4c:88:4f", Some("Ruuvi Innovations"), "RuuviTag");
        assert_eq!(
            sources.model_of("cb:b8:33:4c:88:4f"),
            Some(DeviceModel {
                manufacturer: Some("Ruuvi Innovations".into()),
                model: "RuuviTag".into()
            })
        );
        assert_eq!(sources.model_of("node-7"), None);

        let (tx, mut rx) = mpsc::channel(4);
        let ingress = IngressSender::new(tx, serial);
        let r = |v| {
            Reading::new(
                DeviceId::new("AA:BB:CC:DD:EE:FF").unwrap(),
                MetricName::new("temperature").unwrap(),
                v,
                Timestamp::from_millis(0).unwrap(),
                TimeSource::Arrival,
            )
            .unwrap()
        };
        ingress
            .send(Ingress::Readings(vec![r(1.0), r(2.0)]))
            .await
            .unwrap();
        let (receipt, _waiter) = Receipt::new(None);
        ingress
            .send(Ingress::Durable {
                readings: vec![r(3.0)],
                receipt,
            })
            .await
            .unwrap();
        for _ in 0..2 {
            let (Some(Ingress::Readings(got)) | Some(Ingress::Durable { readings: got, .. })) =
                rx.recv().await
            else {
                panic!("readings expected");
            };
            assert!(got.iter().all(|r| r.source() == serial), "{got:?}");
            assert!(got
                .iter()
                .all(|r| r.device().as_str() == "aa:bb:cc:dd:ee:ff"));
        }
    }
}
