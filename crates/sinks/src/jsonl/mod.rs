//! `[[sink]] type = "jsonl"`: the gateway's events as JSON lines in a
//! file, rotated by size, for operators to ship with their own tools
//! (Vector, Fluent Bit, Filebeat, `jq`, a cron job). Added as the
//! architecture page's "Adding an output" says, and as small as a durable
//! output gets: the framework (`crate::durable`) opens its spool and runs
//! the outbox loop; this folder renders and delivers.
//!
//! - `kind.rs`: its declaration; `config.rs`: its keys;
//! - `line`: events to lines (pure: the upstream's payloads, typed);
//! - `file`: appending whole lines with one sync each, rotation;
//! - this module: its `Deliver` side. What the pipeline hands over is
//!   rendered and stored in the outbox (one fsync per batch, in records
//!   of at most 64 KiB of lines: `Spool::store_lines`);
//!   records are appended to the file in order and acknowledged only once
//!   the file is synced. A file that cannot be written (full disk,
//!   permissions, a missing mount) keeps them in the outbox, retried with
//!   backoff, and across restarts. A crash between the file's sync and the
//!   acknowledgement writes those lines again: consumers de-duplicate on
//!   `id` (readings on device, metric and `ts`).

mod config;
mod file;
pub mod kind;
mod line;

use std::time::Duration;

use gateway_core::backoff::Backoff;
use gateway_core::deadline;
use gateway_core::event::SinkEvent;
use gateway_core::telemetry::{Counter, Gauge, LogThrottle};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::durable;
use crate::mqtt_upstream::{Feed, Renderer};
use crate::outbox_loop::{blocking, Deliver, End};
use crate::registry::{SinkContext, SinkKind, StartError, SINK_BATCHES_FAILED, SINK_UP};
use crate::spool::Spool;
use crate::OutputLink;
pub use config::{JsonlConfig, Series};
use file::RotatingFile;
use line::Lines;

/// Lines appended to the file and synced, per output.
pub const SINK_LINES_WRITTEN: &str = "edge_gateway_sink_lines_written_total";

/// Outbox records appended to the file per turn of the loop, so the
/// pipeline's events are taken between the turns of a long backlog.
const RECORDS_PER_SEND: usize = 64;
/// The outbox records' topic (a record holds lines, not an MQTT message).
const RECORD: &str = "jsonl";

impl SinkKind for JsonlConfig {
    const DECLARATION: gateway_core::output::OutputDeclaration = kind::JSONL;

    fn from_table(
        table: toml::Value,
        path: &str,
        problems: &mut gateway_core::config::Problems,
    ) -> Option<Self> {
        Self::parse(table, path, problems)
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn start(
        &self,
        ctx: &SinkContext,
        link: OutputLink<SinkEvent>,
    ) -> Result<JoinHandle<()>, StartError> {
        let outbox = durable::SinkOutbox {
            max_bytes: self.max_bytes,
            policy: self.policy,
        };
        durable::spawn_sink(&self.name, outbox, ctx, link, |spool| {
            Ok(FileSink::new(self, ctx, spool))
        })
    }

    fn template() -> String {
        let d = JsonlConfig::default();
        gateway_core::config::template::fill(
            include_str!("template.toml"),
            &[
                (
                    "rotate_bytes",
                    gateway_core::config::values::byte_size::render(d.rotate_bytes),
                ),
                ("keep", d.keep.to_string()),
                (
                    "max_bytes",
                    gateway_core::config::values::byte_size::render(d.max_bytes),
                ),
            ],
        )
    }
}

struct Metrics {
    written: Counter,
    up: Gauge,
    telemetry: gateway_core::Telemetry,
    name: String,
}

impl Metrics {
    fn failed(&self, reason: &str) {
        self.up.set(0.0);
        self.telemetry
            .counter(
                SINK_BATCHES_FAILED,
                &[("output", &self.name), ("reason", reason)],
            )
            .inc();
    }
}

/// One JSON-lines output.
struct FileSink {
    name: String,
    lines: Lines,
    spool: Spool,
    file: RotatingFile,
    /// After a failed append: not before then.
    retry_at: Option<Instant>,
    backoff: Backoff,
    m: Metrics,
    log: LogThrottle,
}

impl FileSink {
    fn new(config: &JsonlConfig, ctx: &SinkContext, spool: Spool) -> Self {
        let t = &ctx.telemetry;
        let labels = [("output", config.name.as_str())];
        let feed = Feed::new(
            Renderer {
                gateway_id: ctx.gateway_id.clone(),
                prefix: String::new(),
                registry: ctx.registry.clone(),
            },
            ctx.units.clone(),
        );
        info!(output = %config.name, path = %config.path.display(), backlog = spool.waiting(), "JSON-lines output started.");
        Self {
            name: config.name.clone(),
            lines: Lines::new(feed, config),
            spool,
            file: RotatingFile::new(config.path.clone(), config.rotate_bytes, config.keep),
            retry_at: None,
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(30)),
            m: Metrics {
                written: t.counter(SINK_LINES_WRITTEN, &labels),
                up: t.gauge(SINK_UP, &labels),
                telemetry: t.clone(),
                name: config.name.clone(),
            },
            log: LogThrottle::default(),
        }
    }

    /// Appends the oldest records to the file; acknowledges them once it
    /// is synced.
    fn write_some(&mut self) {
        let seqs = self.spool.outbox().seqs_after(0, RECORDS_PER_SEND);
        let mut body = Vec::new();
        let mut taken = Vec::with_capacity(seqs.len());
        for seq in seqs {
            match self.spool.read(seq) {
                Ok(Some(m)) => {
                    body.extend_from_slice(&m.payload);
                    taken.push(seq);
                }
                Ok(None) => {}
                Err(e) => {
                    error!(output = %self.name, seq, error = %e, "Outbox: cannot read a record; dropping it.");
                    self.spool.ack(seq);
                }
            }
        }
        if body.is_empty() {
            return;
        }
        let file = &mut self.file;
        match blocking(|| file.append(&body)) {
            Ok(()) => {
                for seq in taken {
                    self.spool.ack(seq);
                }
                let lines = body.iter().filter(|b| **b == b'\n').count();
                self.m.written.add(lines as u64);
                self.m.up.set(1.0);
                self.backoff.reset();
                self.retry_at = None;
            }
            Err(e) => {
                let reason = if gateway_core::state_file::is_disk_full(&e) {
                    "disk_full"
                } else {
                    "io"
                };
                self.m.failed(reason);
                if let Some(suppressed) = self.log.allow(reason) {
                    warn!(output = %self.name, error = %e, suppressed, "Cannot write the JSON-lines file; the lines wait in the outbox.");
                }
                self.retry_at = Some(deadline::from_now(self.backoff.next_delay()));
            }
        }
    }
}

impl Deliver for FileSink {
    type Item = SinkEvent;
    type Event = ();

    fn spool(&mut self) -> &mut Spool {
        &mut self.spool
    }

    fn store(&mut self, events: Vec<SinkEvent>, _urgent: bool) {
        let mut text = String::new();
        for e in events {
            self.lines.encode(e, &mut text);
        }
        // An empty batch (a flush) still tries again what the disk refused.
        if text.is_empty() && self.spool.is_durable() {
            return;
        }
        let spool = &mut self.spool;
        blocking(|| spool.store_lines(RECORD, text));
    }

    async fn send(&mut self, _draining: bool) {
        if self.wakeup(false).is_some_and(|at| at <= Instant::now()) {
            self.write_some();
        }
        self.spool.update_waiting();
    }

    fn wakeup(&self, _draining: bool) -> Option<Instant> {
        if self.spool.outbox().is_empty() {
            return None;
        }
        Some(self.retry_at.unwrap_or_else(Instant::now))
    }

    async fn event(&mut self) -> Option<()> {
        // Appends are done in `send`: nothing reports later.
        std::future::pending().await
    }

    async fn settle(&mut self, _event: ()) {}

    async fn finish(&mut self, end: End) {
        if end == End::Deadline {
            self.spool.close();
        }
        info!(output = %self.name, left = self.spool.waiting(), "JSON-lines output stopped.");
    }
}
