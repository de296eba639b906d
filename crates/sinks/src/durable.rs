//! The framework around every output with a durable outbox: the output
//! says where its outbox goes ([`OutboxPlace`]) and implements its
//! [`Deliver`] side (what it renders from what it is handed, what it sends
//! when, how a delivery settles); this module opens the spool there and
//! runs the one outbox loop around it (batches, the urgent lane, the flush
//! handshake, housekeeping, the drain at stop). No output opens a `Spool`
//! of its own, so every durable output stores, holds on a full disk,
//! expires, reports and survives a crash alike.
//!
//! A `[[sink]]` kind starts through [`spawn_sink`]: its outbox is
//! `state_dir/sink-<name>/outbox/`, its `edge_gateway_outbox_*` series are
//! labelled `output = "<name>"`. The upstream keeps `state_dir/outbox/`
//! and the unlabelled series it always had.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway_core::Telemetry;
use tokio::task::JoinHandle;

use crate::outbox::{FullPolicy, OutboxError, OutboxSettings};
use crate::outbox_loop::{self, Deliver, End, LoopSettings};
use crate::registry::{SinkContext, StartError};
use crate::spool::{Spool, SpoolSettings};
use crate::OutputLink;

/// Where and how a durable output keeps its outbox.
#[derive(Debug, Clone)]
pub struct OutboxPlace {
    /// Its directory; `None` keeps it in memory (lost at a restart).
    pub dir: Option<PathBuf>,
    pub settings: SpoolSettings,
    /// Labels of its `edge_gateway_outbox_*` series.
    pub labels: Vec<(&'static str, String)>,
}

impl OutboxPlace {
    /// A `[[sink]]`'s: `state_dir/sink-<name>/outbox/`, labelled
    /// `output = "<name>"`.
    pub fn sink(state_dir: &Path, name: &str, settings: SpoolSettings) -> Self {
        Self {
            dir: Some(sink_dir(state_dir, name).join("outbox")),
            settings,
            labels: vec![("output", name.to_string())],
        }
    }

    /// Opens the spool here.
    ///
    /// # Errors
    /// Only an outbox locked by another process (an unusable directory
    /// degrades to memory, logged and counted).
    pub fn open(&self, telemetry: &Telemetry) -> Result<Spool, OutboxError> {
        let labels: Vec<(&str, &str)> = self.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Spool::open(
            self.dir.as_deref(),
            self.settings.clone(),
            telemetry,
            &labels,
        )
    }
}

/// A `[[sink]]`'s own directory under `state_dir` (its outbox, and what
/// else it keeps: InfluxDB's dead letters).
pub fn sink_dir(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join(format!(
        "{}{name}",
        gateway_core::state_file::inventory::SINK_DIR_PREFIX
    ))
}

/// Runs the outbox loop around `d` until its link has closed and it has
/// delivered what it can, then lets it finish ([`Deliver::finish`]).
pub async fn run<D: Deliver>(mut d: D, link: OutputLink<D::Item>, settings: &LoopSettings) -> End {
    let end = outbox_loop::run(&mut d, link, settings).await;
    d.finish(end).await;
    end
}

/// What a `[[sink]]` with a durable outbox says of it in its table; the
/// rest (batches, queue, drain, fault hook) is the framework's, alike for
/// every such sink.
#[derive(Debug, Clone, Copy)]
pub struct SinkOutbox {
    pub max_bytes: u64,
    pub policy: FullPolicy,
}

/// Fault hook for the crash tests: milliseconds to hold each batch of
/// events before it is stored, so a kill can land after the readings were
/// journaled and acknowledged but before the sink kept them. Unset (the
/// default), nothing waits.
const HOLD_STORE_ENV: &str = "EDGE_GATEWAY_FAULT_HOLD_SINK_MS";
/// Most events taken from the pipeline into one append (one fsync). Each
/// fsync costs milliseconds here: with 256 the InfluxDB bench was bound by
/// them (34 % of InfluxDB's own ingest); a full channel is taken in one.
const STORE_BATCH: usize = 4096;
/// Events waiting in memory for the outbox before the pipeline waits.
const MAX_QUEUED: usize = 100_000;
/// How long a sink keeps delivering once the pipeline has stopped; what
/// is left stays in its outbox for the next start.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts a `[[sink]]` with a durable outbox: opens its spool in its own
/// directory, builds its delivery side over it, and spawns the loop.
///
/// # Errors
/// An outbox locked by another process, or what `build` refuses (a secret
/// that is not set, TLS files that do not read).
pub fn spawn_sink<D, F>(
    name: &str,
    outbox: SinkOutbox,
    ctx: &SinkContext,
    link: OutputLink<D::Item>,
    build: F,
) -> Result<JoinHandle<()>, StartError>
where
    D: Deliver + Send + 'static,
    D::Item: 'static,
    F: FnOnce(Spool) -> Result<D, StartError>,
{
    let settings = SpoolSettings {
        outbox: OutboxSettings {
            max_bytes: outbox.max_bytes,
            policy: outbox.policy,
            max_age: None,
        },
        max_queued: MAX_QUEUED,
    };
    let loop_settings = LoopSettings {
        batch: STORE_BATCH,
        hold_env: HOLD_STORE_ENV,
        drain_timeout: DRAIN_TIMEOUT,
    };
    let spool = OutboxPlace::sink(&ctx.state_dir, name, settings)
        .open(&ctx.telemetry)
        .map_err(|source| StartError::Outbox {
            sink: name.to_string(),
            source,
        })?;
    let d = build(spool)?;
    Ok(tokio::spawn(async move {
        run(d, link, &loop_settings).await;
    }))
}
