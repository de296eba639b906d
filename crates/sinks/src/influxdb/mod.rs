//! `[[sink]] type = "influxdb"`: events as line protocol into InfluxDB 1.x
//! (`/write`) or 2.x (`/api/v2/write`), through a durable outbox of its
//! own, so a database that is down or refusing loses nothing.
//!
//! - `config`: the keys, their checks and their template;
//! - `line`: events to line protocol (pure);
//! - `batch`: when to send and how much (pure, paused-clock tests);
//! - `outcome`: what an answer means for the batch (pure);
//! - `http`: the HTTP(S) client; `request`: the write path and credentials;
//! - `deliver`: one batch's request, the retry decision and the bisection
//!   of a refused batch (dead-letter file);
//! - `flight`: which outbox records are in a request, and what a finished
//!   request does to them;
//! - `pace`: how many points a request carries: fewer after a write timed
//!   out, back up to `batch_size` once writes are quick;
//! - this module: InfluxDB's side of the crate's `outbox_loop`. Events
//!   are encoded as they arrive and
//!   stored (one fsync per batch taken from the channel, in outbox
//!   records of at most 64 KiB of lines); batches are read back from the outbox, sent by up to
//!   `max_in_flight` deliveries at once (each its own task and
//!   connection, so storing the next batch overlaps sending this one),
//!   and acknowledged in the outbox only once InfluxDB answered 2xx. A
//!   refused batch (400/413/422) is bisected down to the points InfluxDB
//!   refuses alone, which go to the dead-letter file. A write that times
//!   out is sent again in smaller requests (`pace`), its written part not
//!   again. Points carry their event times, so a batch sent twice is
//!   stored once.

mod batch;
pub mod config;
mod deliver;
mod flight;
mod http;
pub mod kind;
pub mod line;
pub mod outcome;
mod pace;
mod request;
mod sample_clock;
mod tags;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use gateway_core::backoff::Backoff;
use gateway_core::config::secret::{redact_url, Secret};
use gateway_core::deadline;
use gateway_core::telemetry::LogThrottle;
use gateway_core::{Telemetry, Timestamp};
use tokio::task::{self, JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::durable;
use crate::outbox_loop::{self, blocking, Deliver};
use crate::registry::{SinkContext, SinkKind, StartError};
use crate::spool::Spool;
use crate::OutputLink;
use batch::Batcher;
pub use config::InfluxConfig;
use deliver::{Delivered, Metrics, Settled, Target};
use flight::Flight;
use gateway_core::event::SinkEvent;
use http::{Client, Tls};
use line::Encoder;
use pace::Pace;

/// Points InfluxDB accepted, per output.
pub const SINK_POINTS_WRITTEN: &str = "edge_gateway_sink_points_written_total";
pub use crate::registry::{SINK_BATCHES_FAILED, SINK_UP};
/// Points InfluxDB refused (400/413/422) and set aside in `dead-letter.lp`.
pub const SINK_DEAD_LETTER: &str = "edge_gateway_sink_dead_letter_points_total";
/// `Retry-After` answers longer than the sink's `max_backoff`, obeyed only
/// up to it.
pub const SINK_RETRY_AFTER_CAPPED: &str = "edge_gateway_sink_retry_after_capped_total";

/// Each of the two dead-letter files (`dead-letter.lp` and the one before,
/// `dead-letter.lp.1`): a field refused for good refuses every reading of
/// it, and the file must not fill the disk the outbox and journal need.
const DEAD_LETTER_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// Housekeeping ticks (seconds) between health points.
const HEALTH_EVERY: u64 = 10;
/// What the gateway counts as readings taken (the pipeline's counter).
const READINGS_TOTAL: &str = "edge_gateway_aggregator_readings_total";

impl SinkKind for InfluxConfig {
    const DECLARATION: gateway_core::output::OutputDeclaration = kind::INFLUXDB;

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
            Writer::new(self, ctx, spool)
        })
    }

    fn template() -> String {
        config::template()
    }
}

/// One InfluxDB output.
struct Writer {
    config: InfluxConfig,
    encoder: Encoder,
    spool: Spool,
    target: Arc<Target>,
    authority: String,
    tls: Option<Tls>,
    /// Connections not in use by a delivery, kept alive for the next.
    idle: Vec<Client>,
    gateway_id: String,
    telemetry: Telemetry,
    /// v1 with `create_database`: not yet known to exist.
    create_pending: bool,
    /// Points stored and not in a delivery (capped by the recount at
    /// `batch_size`: enough to know a batch is full).
    unsent: usize,
    /// Records in a delivery now, not to be read into another.
    flying: HashSet<u64>,
    /// Records up to this one were taken by a delivery; reset to 0 when
    /// one fails, so its records are taken again.
    cursor: u64,
    /// When the next request goes.
    plan: Batcher,
    /// How many points it carries.
    pace: Pace,
    /// Lines at the head of a record that a delivery cut short wrote, by
    /// record: left out when the record is sent again.
    partly_written: HashMap<u64, usize>,
    backoff: Backoff,
    /// The requests in flight, each its own task and connection.
    deliveries: JoinSet<(Client, Delivered)>,
    /// Which records each delivery carries, by task id.
    flights: HashMap<task::Id, Flight>,
}

impl Writer {
    fn new(config: &InfluxConfig, ctx: &SinkContext, spool: Spool) -> Result<Self, StartError> {
        let name = config.name.clone();
        // `validate` checked the url; a config built in code gets the default.
        let endpoint = config.endpoint().unwrap_or_default();
        let (write_path, auth) = request::write_target(config, &endpoint)?;
        let tls = request::tls(config, &endpoint)?;

        let dir = durable::sink_dir(&ctx.state_dir, &name);
        let labels = [("output", name.as_str())];
        let t = &ctx.telemetry;
        let target = Target {
            url: redact_url(&config.url).into_owned(),
            version: config.version,
            database: config.database.clone(),
            create_database: config.create_database,
            write_path,
            base_path: endpoint.base_path.clone(),
            auth: auth.map(Secret::new),
            gzip: config.gzip,
            dead_letter: dir.join("dead-letter.lp"),
            dead_letter_max: DEAD_LETTER_MAX_BYTES,
            m: Metrics {
                written: t.counter(SINK_POINTS_WRITTEN, &labels),
                dead_letter: t.counter(SINK_DEAD_LETTER, &labels),
                up: t.gauge(SINK_UP, &labels),
                retry_after_capped: t.counter(SINK_RETRY_AFTER_CAPPED, &labels),
                telemetry: t.clone(),
                name: name.clone(),
            },
            log: LogThrottle::default(),
            max_wait: config.max_backoff,
            name,
        };
        let mut writer = Self {
            encoder: Encoder::new(config, ctx.registry.clone()).with_units(ctx.units.clone()),
            spool,
            target: Arc::new(target),
            authority: endpoint.authority,
            tls,
            idle: Vec::new(),
            gateway_id: ctx.gateway_id.clone(),
            telemetry: t.clone(),
            create_pending: config.version == 1 && config.create_database,
            unsent: 0,
            flying: HashSet::new(),
            cursor: 0,
            plan: Batcher::new(config.batch_size, config.flush_interval),
            pace: Pace::new(config.batch_size, config.timeout),
            partly_written: HashMap::new(),
            backoff: Backoff::new(Duration::from_millis(200), config.max_backoff),
            deliveries: JoinSet::new(),
            flights: HashMap::new(),
            config: config.clone(),
        };
        if writer.spool.waiting() > 0 {
            writer.plan.stored(Instant::now());
        }
        writer.unsent = writer.unsent_points();
        info!(output = %writer.config.name, url = %writer.target.url, version = writer.config.version, backlog = writer.spool.waiting(), "InfluxDB output started.");
        Ok(writer)
    }

    fn client(&mut self) -> Client {
        self.idle.pop().unwrap_or_else(|| {
            Client::new(
                self.authority.clone(),
                self.config.timeout,
                self.tls.clone(),
            )
        })
    }

    /// Starts one delivery of the oldest stored batch not in one.
    async fn dispatch(&mut self) {
        if self.create_pending {
            let mut client = self.client();
            let created = deliver::create_database(&self.target, &mut client).await;
            self.idle.push(client);
            if created == deliver::Created::Unreachable {
                self.plan
                    .retry_at(deadline::from_now(self.backoff.next_delay()));
                return;
            }
            // Refused too: a user who may write but not create databases
            // never wrote a point while this was retried. A 404 to the
            // write brings it back.
            self.create_pending = false;
        }
        match self.take_batch() {
            Some((flight, body)) => {
                self.unsent = self.unsent.saturating_sub(flight.points);
                if self.unsent == 0 && !self.spool.outbox().seqs_after(self.cursor, 1).is_empty() {
                    // The count was capped (a backlog): more waits.
                    self.unsent = self.unsent_points();
                }
                self.plan.dispatched(self.unsent, Instant::now());
                let target = self.target.clone();
                let mut client = self.client();
                let limit = self.pace.limit();
                let task = self.deliveries.spawn(async move {
                    let delivered = deliver::deliver(&target, &mut client, body, limit).await;
                    (client, delivered)
                });
                self.flights.insert(task.id(), flight);
            }
            // Every stored record is in a delivery already.
            None => {
                self.unsent = 0;
                self.plan.dispatched(0, Instant::now());
            }
        }
    }

    /// Sizes the next requests by how this delivery went.
    fn adjust_pace(&mut self, d: &Delivered) {
        if let Some(points) = d.timed_out {
            if self.pace.timed_out(points) {
                let limit = self.pace.limit();
                if let Some(suppressed) = self.target.log.allow("slow") {
                    warn!(output = %self.config.name, points, timeout = ?self.config.timeout, now = limit, suppressed, "InfluxDB did not answer a write within timeout; sending smaller batches until it answers quickly.");
                }
                self.plan.resize(limit);
            }
        } else if d.settled_points > 0 && self.pace.written(d.settled_points, d.slowest) {
            let limit = self.pace.limit();
            info!(output = %self.config.name, now = limit, "InfluxDB answers quickly again; sending larger batches.");
            self.plan.resize(limit);
        }
    }

    /// Encodes and stores events; returns the points stored.
    fn store_events(&mut self, events: &[SinkEvent]) -> usize {
        // Records of many events: per-event records cost a read and an
        // acknowledgement each, which held the sink to 27 % of InfluxDB's
        // own ingest in the bench. Not one record for the lot either: a
        // batch over the outbox's record limit was refused whole.
        let mut lines = String::new();
        for e in events {
            self.encoder.encode(e, &mut lines);
        }
        if lines.is_empty() {
            return 0;
        }
        let points = lines.matches('\n').count();
        let spool = &mut self.spool;
        blocking(|| spool.store_lines(line::NS_RECORD, lines));
        self.plan.stored(Instant::now());
        points
    }

    /// Stores one health point; returns the points stored (0 or 1).
    fn store_health(&mut self) -> usize {
        let t = &self.telemetry;
        let unlabelled = |name: &str| {
            t.gauges(name)
                .into_iter()
                .find(|(labels, _)| labels.is_empty())
                .map_or(0.0, |(_, v)| v)
        };
        let values = [
            ("readings_total", t.counter_total(READINGS_TOTAL) as f64),
            (
                "upstream_connected",
                unlabelled(crate::mqtt_upstream::UPSTREAM_CONNECTED),
            ),
            (
                "upstream_outbox_messages",
                unlabelled(crate::spool::OUTBOX_MESSAGES),
            ),
            ("outbox_messages", self.spool.waiting() as f64),
        ];
        let mut lines = String::new();
        self.encoder.health(
            &self.gateway_id,
            &values,
            Timestamp::now().as_millis(),
            &mut lines,
        );
        if lines.is_empty() {
            return 0;
        }
        self.spool.store_lines(line::NS_RECORD, lines);
        self.plan.stored(Instant::now());
        1
    }
}

/// A delivery that finished (or, by design never, panicked).
type Finished = Result<(task::Id, (Client, Delivered)), task::JoinError>;

impl Deliver for Writer {
    type Item = SinkEvent;
    type Event = Finished;

    fn spool(&mut self) -> &mut Spool {
        &mut self.spool
    }

    fn store(&mut self, events: Vec<SinkEvent>, _urgent: bool) {
        self.unsent += self.store_events(&events);
    }

    async fn send(&mut self, draining: bool) {
        while let Some(at) = self.wakeup(draining) {
            if at > Instant::now() {
                break;
            }
            self.dispatch().await;
        }
    }

    fn wakeup(&self, draining: bool) -> Option<Instant> {
        let room = self.deliveries.len() < self.config.max_in_flight;
        room.then(|| self.plan.next_send(self.unsent, draining))
            .flatten()
    }

    async fn event(&mut self) -> Option<Finished> {
        match self.deliveries.join_next_with_id().await {
            Some(done) => Some(done),
            // None in flight: nothing to report until one is started.
            None => std::future::pending().await,
        }
    }

    async fn settle(&mut self, done: Finished) {
        let (id, delivered) = match done {
            Ok((id, (client, delivered))) => {
                self.idle.push(client);
                (id, delivered)
            }
            // Cannot panic by design; if it did, its batch is sent again.
            Err(e) => (
                e.id(),
                Delivered {
                    settled: Settled::Retry {
                        wait: None,
                        missing_database: false,
                    },
                    settled_points: 0,
                    timed_out: None,
                    slowest: Duration::ZERO,
                },
            ),
        };
        self.adjust_pace(&delivered);
        if let Some(flight) = self.flights.remove(&id) {
            self.settle_flight(flight, delivered);
        }
    }

    async fn finish(&mut self, _end: outbox_loop::End) {
        // Deliveries still running are dropped: their records stay in the
        // outbox for the next start.
        self.deliveries.shutdown().await;
        self.spool.close();
        info!(output = %self.config.name, left = self.spool.waiting(), "InfluxDB output stopped.");
    }

    fn housekeeping(&mut self, ticks: u64) {
        // Records the outbox evicted or lost are not counted down by
        // sends: recount now and then.
        if ticks.is_multiple_of(HEALTH_EVERY) {
            self.unsent = self.unsent_points();
        }
        if ticks % HEALTH_EVERY == 1 {
            self.unsent += self.store_health();
        }
    }
}
