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

use std::sync::Arc;

use crate::clock::Clock;
use crate::model::{Reading, StatusChange};
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

    /// The readings are durable: the adapter may acknowledge.
    pub fn complete(self) {
        // The adapter may have lost its connection and dropped the waiter;
        // the source then resends and the key catches the copy.
        let _ = self.done.send(());
    }
}

/// The pipeline's inbox. Bounded: a slow pipeline slows the adapters down
/// instead of growing memory.
pub type IngressSender = mpsc::Sender<Ingress>;

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
}

/// Gauge `{adapter}` of an adapter that holds a connection (MQTT): `1` once
/// it is connected and every subscription is in place, `0` while it is
/// connecting or after a refusal. Adapters without a connection (CoAP,
/// UDP) do not set it. `/health` reads it.
pub const ADAPTER_CONNECTED: &str = "edge_gateway_adapter_connected";
/// Messages (or datagrams, lines) an adapter received, good or bad.
pub const ADAPTER_RECEIVED: &str = "edge_gateway_adapter_received_messages_total";
/// Readings an adapter decoded and handed to the pipeline.
pub const ADAPTER_READINGS: &str = "edge_gateway_adapter_readings_total";
/// Input an adapter refused, by `error_type`.
pub const ADAPTER_ERRORS: &str = "edge_gateway_adapter_errors_total";

/// The counters every adapter keeps, so each protocol reports alike:
/// messages received, readings produced, and errors by type.
#[derive(Clone)]
pub struct AdapterStats {
    telemetry: Telemetry,
    adapter: String,
    pub received: Counter,
    pub readings: Counter,
}

impl AdapterStats {
    pub fn new(telemetry: &Telemetry, adapter: &str) -> Self {
        let l = [("adapter", adapter)];
        Self {
            telemetry: telemetry.clone(),
            adapter: adapter.to_string(),
            received: telemetry.counter(ADAPTER_RECEIVED, &l),
            readings: telemetry.counter(ADAPTER_READINGS, &l),
        }
    }

    /// Counts one error of `error_type` (a stable snake_case label).
    pub fn error(&self, error_type: &str) {
        self.telemetry
            .counter(
                ADAPTER_ERRORS,
                &[("adapter", &self.adapter), ("error_type", error_type)],
            )
            .inc();
    }
}

/// One message for the upstream broker, already rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}
