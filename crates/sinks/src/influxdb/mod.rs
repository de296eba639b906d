//! `[[sink]] type = "influxdb"`: events as line protocol into InfluxDB 1.x
//! (`/write`) or 2.x (`/api/v2/write`), through a durable outbox of its
//! own, so a database that is down or refusing loses nothing.
//!
//! - `config`: the keys, their checks and their template;
//! - `line`: events to line protocol (pure);
//! - `batch`: when to send and how much (pure, paused-clock tests);
//! - `outcome`: what an answer means for the batch (pure);
//! - `http`: the HTTP client; `request`: the write path and credentials;
//! - this module: the I/O loop. Events are encoded as they arrive and
//!   stored (one outbox record per batch taken from the channel, one
//!   fsync); batches are read back from the outbox and acknowledged there
//!   only once InfluxDB answered 2xx. A refused batch (400/413) is
//!   bisected down to the points InfluxDB refuses alone, which go to the
//!   dead-letter file. Points carry their event times, so a batch sent
//!   twice is stored once.

mod batch;
pub mod config;
mod http;
pub mod line;
pub mod outcome;
mod request;

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use gateway_core::backoff::Backoff;
use gateway_core::telemetry::{Counter, Gauge, LogThrottle};
use gateway_core::{OutboundMessage, Telemetry, Timestamp};
use hyper::body::Bytes;
use hyper::Method;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::event::SinkEvent;
use crate::outbox::OutboxSettings;
use crate::registry::{SinkContext, SinkKind, StartError};
use crate::spool::{Spool, SpoolSettings};
use crate::OutputLink;
use batch::Batcher;
pub use config::InfluxConfig;
use http::Client;
use line::Encoder;
use outcome::{classify, Outcome};

/// Points InfluxDB accepted, per output.
pub const SINK_POINTS_WRITTEN: &str = "edge_gateway_sink_points_written_total";
/// Writes that failed, per output and `reason`.
pub const SINK_BATCHES_FAILED: &str = "edge_gateway_sink_batches_failed_total";
/// Points InfluxDB refused (400/413) and set aside in `dead-letter.lp`.
pub const SINK_DEAD_LETTER: &str = "edge_gateway_sink_dead_letter_points_total";
/// `1` while the last write to the output succeeded.
pub const SINK_UP: &str = "edge_gateway_sink_up";

/// Housekeeping ticks (seconds) between health points.
/// Fault hook for the crash tests: milliseconds to hold each batch of
/// events before it is stored, so a kill can land after the readings were
/// journaled and acknowledged but before this sink kept them. Unset (the
/// default), nothing waits.
const HOLD_STORE_ENV: &str = "EDGE_GATEWAY_FAULT_HOLD_SINK_MS";

const HEALTH_EVERY: u64 = 10;
/// What the gateway counts as readings taken (the pipeline's counter).
const READINGS_TOTAL: &str = "edge_gateway_aggregator_readings_total";

/// Most events taken from the pipeline into one append (one fsync). Each
/// fsync costs milliseconds here: with 256 the bench was bound by them
/// (34 % of InfluxDB's own ingest); a full channel is taken in one.
const STORE_BATCH: usize = 4096;
/// How long the sink keeps writing once the pipeline has stopped; what is
/// left stays in its outbox for the next start.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

impl SinkKind for InfluxConfig {
    const KIND: &'static str = "influxdb";

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
        let writer = Writer::new(self, ctx)?;
        Ok(tokio::spawn(writer.run(link)))
    }

    fn template() -> String {
        config::template()
    }
}

struct Metrics {
    written: Counter,
    dead_letter: Counter,
    up: Gauge,
    telemetry: Telemetry,
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

/// One InfluxDB output.
struct Writer {
    config: InfluxConfig,
    encoder: Encoder,
    spool: Spool,
    client: Client,
    /// `/write?…` or `/api/v2/write?…`.
    write_path: String,
    /// `Authorization` header value, if any.
    auth: Option<String>,
    dead_letter: PathBuf,
    gateway_id: String,
    telemetry: Telemetry,
    /// v1 with `create_database`: not yet known to exist.
    create_pending: bool,
    m: Metrics,
    log: LogThrottle,
}

impl Writer {
    fn new(config: &InfluxConfig, ctx: &SinkContext) -> Result<Self, StartError> {
        let name = config.name.clone();
        // `validate` checked the url; a config built in code gets the default.
        let endpoint = config.endpoint().unwrap_or(config::Endpoint {
            authority: "127.0.0.1:8086".into(),
            base_path: String::new(),
        });
        let (write_path, auth) = request::write_target(config, &endpoint)?;

        let dir = ctx.state_dir.join(format!("sink-{name}"));
        let labels = [("output", name.as_str())];
        let spool = Spool::open(
            Some(&dir.join("outbox")),
            SpoolSettings {
                outbox: OutboxSettings {
                    max_bytes: config.max_bytes,
                    policy: config.policy,
                    max_age: None,
                },
                max_queued: 100_000,
            },
            &ctx.telemetry,
            &labels,
        )
        .map_err(|source| StartError::Outbox {
            sink: name.clone(),
            source,
        })?;
        let t = &ctx.telemetry;
        Ok(Self {
            encoder: Encoder::new(config, ctx.registry.clone()),
            spool,
            client: Client::new(endpoint.authority, config.timeout),
            write_path,
            auth,
            dead_letter: dir.join("dead-letter.lp"),
            gateway_id: ctx.gateway_id.clone(),
            telemetry: t.clone(),
            create_pending: config.version == 1 && config.create_database,
            m: Metrics {
                written: t.counter(SINK_POINTS_WRITTEN, &labels),
                dead_letter: t.counter(SINK_DEAD_LETTER, &labels),
                up: t.gauge(SINK_UP, &labels),
                telemetry: t.clone(),
                name,
            },
            log: LogThrottle::default(),
            config: config.clone(),
        })
    }

    async fn run(mut self, link: OutputLink<SinkEvent>) {
        let OutputLink {
            messages: mut rx,
            mut flush,
            ..
        } = link;
        let mut plan = Batcher::new(self.config.batch_size, self.config.flush_interval);
        let mut backoff = Backoff::new(Duration::from_millis(200), self.config.max_backoff);
        if self.spool.waiting() > 0 {
            plan.stored(Instant::now());
        }
        let mut waiting_points = self.waiting_points();
        let hold_store = std::env::var(HOLD_STORE_ENV)
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map(Duration::from_millis);
        let mut rx_open = true;
        let mut drain_deadline = Instant::now();
        let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks = 0u64;
        info!(output = %self.config.name, url = %self.config.url, version = self.config.version, backlog = self.spool.waiting(), "InfluxDB output started.");
        loop {
            if !rx_open && self.spool.waiting() == 0 {
                break;
            }
            let next = plan.next_send(waiting_points, !rx_open);
            tokio::select! {
                biased;
                request = async { flush.as_mut()?.recv().await }, if flush.is_some() => match request {
                    Some(reply) => {
                        let mut events = Vec::new();
                        while let Ok(e) = rx.try_recv() {
                            events.push(e);
                        }
                        waiting_points += self.store(&events, &mut plan);
                        let _ = reply.send(self.spool.is_durable());
                    }
                    None => flush = None,
                },
                event = rx.recv(), if rx_open => match event {
                    Some(e) => {
                        let mut events = vec![e];
                        while events.len() < STORE_BATCH {
                            match rx.try_recv() {
                                Ok(more) => events.push(more),
                                Err(_) => break,
                            }
                        }
                        if let Some(hold) = hold_store {
                            tokio::time::sleep(hold).await;
                        }
                        waiting_points += self.store(&events, &mut plan);
                    }
                    None => {
                        rx_open = false;
                        drain_deadline = Instant::now() + DRAIN_TIMEOUT;
                    }
                },
                _ = sleep_until(next) => {
                    let settled = self.send(&mut plan, &mut backoff).await;
                    waiting_points = waiting_points.saturating_sub(settled);
                    if self.spool.waiting() == 0 {
                        waiting_points = 0;
                        plan.written(0, Instant::now());
                    }
                }
                _ = housekeeping.tick() => {
                    ticks += 1;
                    self.spool.housekeeping(ticks);
                    // Records the outbox evicted or lost are not counted
                    // down by sends: recount now and then.
                    if ticks.is_multiple_of(HEALTH_EVERY) {
                        waiting_points = self.waiting_points();
                    }
                    if ticks % HEALTH_EVERY == 1 {
                        waiting_points += self.store_health(&mut plan);
                    }
                }
                _ = tokio::time::sleep_until(drain_deadline), if !rx_open => break,
            }
        }
        self.spool.close();
        info!(output = %self.config.name, left = self.spool.waiting(), "InfluxDB output stopped.");
    }

    /// Encodes and stores events; returns the points stored.
    fn store(&mut self, events: &[SinkEvent], plan: &mut Batcher) -> usize {
        // One record for the lot: per-event records cost a read and an
        // acknowledgement each, which held the sink to 27 % of InfluxDB's
        // own ingest in the bench.
        let mut lines = String::new();
        for e in events {
            self.encoder.encode(e, &mut lines);
        }
        if lines.is_empty() {
            return 0;
        }
        let points = lines.matches('\n').count();
        self.spool.store(vec![OutboundMessage {
            topic: String::new(),
            payload: lines.into_bytes(),
            retain: false,
        }]);
        plan.stored(Instant::now());
        points
    }

    /// Stores one health point; returns the points stored (0 or 1).
    fn store_health(&mut self, plan: &mut Batcher) -> usize {
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
        self.spool.store(vec![OutboundMessage {
            topic: String::new(),
            payload: lines.into_bytes(),
            retain: false,
        }]);
        plan.stored(Instant::now());
        1
    }

    /// Points waiting, counted from the outbox (at start and after sends).
    fn waiting_points(&self) -> usize {
        let outbox = self.spool.outbox();
        let mut n = 0;
        for seq in outbox.seqs_after(0, usize::MAX) {
            if let Ok(Some(m)) = outbox.read(seq) {
                n += m.payload.iter().filter(|b| **b == b'\n').count();
            }
            if n >= self.config.batch_size {
                break;
            }
        }
        n
    }

    /// Sends the oldest batch and settles its fate; returns the points
    /// settled (written or set aside), 0 when they still wait.
    async fn send(&mut self, plan: &mut Batcher, backoff: &mut Backoff) -> usize {
        if self.create_pending && !self.create_database().await {
            plan.retry_at(Instant::now() + backoff.next_delay());
            return 0;
        }
        let cap = plan.cap();
        let mut seqs = Vec::new();
        let mut body = Vec::new();
        let mut points = 0;
        for seq in self.spool.outbox().seqs_after(0, cap) {
            match self.spool.read(seq) {
                Ok(Some(m)) => {
                    let n = m.payload.iter().filter(|b| **b == b'\n').count();
                    if points > 0 && points + n > cap {
                        break;
                    }
                    points += n;
                    body.extend_from_slice(&m.payload);
                    seqs.push(seq);
                }
                // Gone (expired, evicted) or unreadable (counted): skip it,
                // the outbox keeps or drops it by its own rules.
                Ok(None) => {}
                Err(e) => {
                    error!(output = %self.config.name, seq, error = %e, "Outbox: cannot read a record; dropping it.");
                    self.spool.ack(seq);
                }
            }
        }
        if seqs.is_empty() {
            return 0;
        }
        let outcome = match self.post(&self.write_path.clone(), body.clone()).await {
            Ok(r) => classify(r.status, &r.headers, &r.body),
            Err(e) => {
                self.m.failed("network");
                if let Some(suppressed) = self.log.allow("network") {
                    warn!(output = %self.config.name, url = %self.config.url, error = %e, suppressed, "Cannot reach InfluxDB; keeping the points in the outbox.");
                }
                plan.retry_at(Instant::now() + backoff.next_delay());
                return 0;
            }
        };
        let now = Instant::now();
        match outcome {
            Outcome::Written => {
                for seq in &seqs {
                    self.spool.ack(*seq);
                }
                self.m.written.add(points as u64);
                self.m.up.set(1.0);
                backoff.reset();
                plan.written(self.spool.waiting(), now);
                return points;
            }
            Outcome::Later {
                retry_after,
                reason,
            } => {
                self.m.failed(reason);
                let wait = retry_after.unwrap_or_else(|| backoff.next_delay());
                if let Some(suppressed) = self.log.allow(reason) {
                    warn!(output = %self.config.name, reason, retry_in = ?wait, suppressed, "InfluxDB asks to wait; the points stay in the outbox.");
                }
                plan.retry_at(now + wait);
            }
            Outcome::Refused { reason, message } => {
                self.m.failed(reason);
                warn!(output = %self.config.name, reason, points, %message, "InfluxDB refused a batch; resending it in halves to find the points it refuses.");
                match self.bisect(&body, reason, &message).await {
                    Ok(()) => {
                        for seq in &seqs {
                            self.spool.ack(*seq);
                        }
                        self.m.up.set(1.0);
                        plan.written(self.spool.waiting(), Instant::now());
                        return points;
                    }
                    // Halves already written are written again with the
                    // batch: the same points, stored once.
                    Err(wait) => {
                        plan.retry_at(
                            Instant::now() + wait.unwrap_or_else(|| backoff.next_delay()),
                        );
                    }
                }
            }
            Outcome::Misconfigured { reason, message } => {
                self.m.failed(reason);
                let key = self.key_to_fix(reason);
                if reason == "not_found" && self.config.version == 1 && self.config.create_database
                {
                    self.create_pending = true;
                }
                if let Some(suppressed) = self.log.allow(reason) {
                    error!(output = %self.config.name, reason, %message, fix = key, suppressed, "InfluxDB refuses the writes: check this sink's {key}. The points wait in the outbox.");
                }
                plan.retry_at(now + backoff.next_delay());
            }
            Outcome::Failed { reason, message } => {
                self.m.failed(reason);
                if let Some(suppressed) = self.log.allow(reason) {
                    warn!(output = %self.config.name, %message, suppressed, "InfluxDB write failed; retrying.");
                }
                plan.retry_at(now + backoff.next_delay());
            }
        }
        0
    }

    /// Writes a refused batch in ever smaller parts until every point is
    /// either written or refused alone (dead-lettered, counted).
    ///
    /// # Errors
    /// Any answer but written or refused: the batch waits (for the time
    /// returned, if the server said) and is sent again whole.
    async fn bisect(
        &mut self,
        body: &[u8],
        first_reason: &'static str,
        first_message: &str,
    ) -> Result<(), Option<Duration>> {
        let lines: Vec<&[u8]> = body.split_inclusive(|b| *b == b'\n').collect();
        if lines.len() == 1 {
            self.dead(lines[0], first_reason, first_message);
            return Ok(());
        }
        let mid = lines.len() / 2;
        let mut todo = vec![(mid, lines.len()), (0, mid)];
        while let Some((a, b)) = todo.pop() {
            let part: Vec<u8> = lines[a..b].concat();
            let outcome = match self.post(&self.write_path.clone(), part).await {
                Ok(r) => classify(r.status, &r.headers, &r.body),
                Err(_) => {
                    self.m.failed("network");
                    return Err(None);
                }
            };
            match outcome {
                Outcome::Written => self.m.written.add((b - a) as u64),
                Outcome::Refused { reason, message } if b - a == 1 => {
                    self.m.failed(reason);
                    self.dead(lines[a], reason, &message);
                }
                Outcome::Refused { reason, .. } => {
                    self.m.failed(reason);
                    let mid = (a + b) / 2;
                    todo.push((mid, b));
                    todo.push((a, mid));
                }
                Outcome::Later {
                    retry_after,
                    reason,
                } => {
                    self.m.failed(reason);
                    return Err(retry_after);
                }
                Outcome::Misconfigured { reason, .. } | Outcome::Failed { reason, .. } => {
                    self.m.failed(reason);
                    return Err(None);
                }
            }
        }
        Ok(())
    }

    /// One point InfluxDB refuses on its own: to the dead-letter file.
    fn dead(&self, line: &[u8], reason: &str, message: &str) {
        error!(output = %self.config.name, reason, %message, file = %self.dead_letter.display(), "InfluxDB refuses a point; set aside in the dead-letter file.");
        self.set_aside(line, reason, message);
        self.m.dead_letter.inc();
    }

    /// The config key an authentication or not-found answer points at.
    fn key_to_fix(&self, reason: &str) -> &'static str {
        match (self.config.version, reason) {
            (2, "unauthorized") => "token",
            (2, _) => "org and bucket",
            (_, "unauthorized") => "username and password_env",
            _ => "database (and retention_policy)",
        }
    }

    async fn post(&mut self, path: &str, body: Vec<u8>) -> Result<http::Response, http::HttpError> {
        let mut headers = vec![("content-type", "text/plain; charset=utf-8".to_string())];
        if let Some(a) = &self.auth {
            headers.push(("authorization", a.clone()));
        }
        let body = match self.config.gzip.then(|| gzip(&body)).flatten() {
            Some(z) => {
                headers.push(("content-encoding", "gzip".to_string()));
                z
            }
            None => body,
        };
        self.client
            .send(Method::POST, path, &headers, Bytes::from(body))
            .await
    }

    /// v1: `CREATE DATABASE` (idempotent); true once it exists.
    async fn create_database(&mut self) -> bool {
        let endpoint_base = self
            .config
            .endpoint()
            .map(|e| e.base_path)
            .unwrap_or_default();
        let q = format!(
            "CREATE DATABASE \"{}\"",
            self.config
                .database
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
        );
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("q", &q)
            .finish();
        let mut headers = vec![(
            "content-type",
            "application/x-www-form-urlencoded".to_string(),
        )];
        if let Some(a) = &self.auth {
            headers.push(("authorization", a.clone()));
        }
        let path = format!("{endpoint_base}/query");
        match self
            .client
            .send(Method::POST, &path, &headers, Bytes::from(query))
            .await
        {
            Ok(r) if r.status.is_success() => {
                info!(output = %self.config.name, database = %self.config.database, "InfluxDB database ready.");
                self.create_pending = false;
                true
            }
            Ok(r) => {
                self.m.failed("create_database");
                if let Some(suppressed) = self.log.allow("create") {
                    error!(output = %self.config.name, status = %r.status, message = %outcome::server_message(&r.body), suppressed, "Cannot create the database: create it yourself, or give this sink's username the right to (create_database = false stops trying).");
                }
                false
            }
            Err(e) => {
                self.m.failed("network");
                if let Some(suppressed) = self.log.allow("network") {
                    warn!(output = %self.config.name, url = %self.config.url, error = %e, suppressed, "Cannot reach InfluxDB; keeping the points in the outbox.");
                }
                false
            }
        }
    }

    /// Appends refused points, headed by why, to the dead-letter file.
    fn set_aside(&self, body: &[u8], reason: &str, message: &str) {
        let result = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.dead_letter)
            .and_then(|mut f| {
                let head = format!(
                    "# {} {reason}: {}\n",
                    Timestamp::now().to_rfc3339(),
                    message.replace('\n', " ")
                );
                f.write_all(head.as_bytes())?;
                f.write_all(body)?;
                f.sync_data()
            });
        if let Err(e) = result {
            error!(output = %self.config.name, file = %self.dead_letter.display(), error = %e, "Cannot write the dead-letter file: the refused points are only in this log line's count.");
        }
    }
}

/// `None` only if compressing into memory failed: the body goes plain.
fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(body).and_then(|()| enc.finish()).ok()
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
