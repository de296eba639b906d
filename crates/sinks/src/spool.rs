//! An output's storage policy around its outbox: store, hold in memory
//! while the disk refuses, make room when it is full, expire, and report.
//!
//! Every output with a durable outbox keeps one; the MQTT upstream's keeps
//! the unlabelled `edge_gateway_outbox_*` series it always had, others
//! label theirs with `output`.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use gateway_core::clock::retention::{prune_now, RETENTION_DEFERRED};
use gateway_core::clock::RetentionClock;
use gateway_core::config::FullPolicy;
use gateway_core::telemetry::{Counter, Gauge, LogThrottle};
use gateway_core::{Clock, OutboundMessage, SystemClock, Telemetry};
use tracing::{debug, error, info, warn};

use crate::outbox::{record, AppendFailed, Appended, Outbox, OutboxError, OutboxSettings};

/// Outbox messages dropped, by `reason`.
pub const OUTBOX_DROPPED: &str = "edge_gateway_outbox_dropped_messages_total";
pub use gateway_core::event::metrics::{OUTBOX_BYTES, OUTBOX_MESSAGES};
/// Age of the oldest waiting message.
pub const OUTBOX_OLDEST_AGE: &str = "edge_gateway_outbox_oldest_age_seconds";
/// Outbox reads and writes that failed.
pub const OUTBOX_STORAGE_ERRORS: &str = "edge_gateway_outbox_storage_errors_total";
/// Messages an output holds in memory because its outbox cannot write
/// them, labelled with the `error` (and the spool's own labels); the
/// series exists only while something is held. `/health` reads it.
pub const OUTBOX_HELD: &str = "edge_gateway_outbox_held_messages";

struct Metrics {
    evicted: Counter,
    rejected: Counter,
    overflow: Counter,
    expired: Counter,
    unstored: Counter,
    storage_errors: Counter,
    waiting: Gauge,
    bytes: Gauge,
    oldest_age: Gauge,
    retention_deferred: Counter,
}

impl Metrics {
    fn new(t: &Telemetry, labels: &[(&str, &str)]) -> Self {
        let dropped = |reason| {
            let mut l = labels.to_vec();
            l.push(("reason", reason));
            t.counter(OUTBOX_DROPPED, &l)
        };
        Self {
            evicted: dropped("full_drop_oldest"),
            rejected: dropped("full_reject_new"),
            overflow: dropped("memory_overflow"),
            expired: dropped("expired"),
            unstored: dropped("unstored_at_exit"),
            storage_errors: t.counter(OUTBOX_STORAGE_ERRORS, labels),
            waiting: t.gauge(OUTBOX_MESSAGES, labels),
            bytes: t.gauge(OUTBOX_BYTES, labels),
            oldest_age: t.gauge(OUTBOX_OLDEST_AGE, labels),
            retention_deferred: {
                let mut l = labels.to_vec();
                l.push(("store", "outbox"));
                t.counter(RETENTION_DEFERRED, &l)
            },
        }
    }
}

/// Most bytes of lines in one outbox record. A record must fit the
/// outbox's limits (`record::MAX_BODY`, `max_bytes`), and a smaller one
/// fits a nearly full disk: the sinks stored everything taken from their
/// link in one record, and a backlog or a journal replay over 4 MiB was
/// refused whole as "outbox full" with the outbox nearly empty. At this
/// size a record still holds hundreds of points, so reads and
/// acknowledgements stay few.
pub const LINES_PER_RECORD_BYTES: usize = 64 * 1024;

/// How a spool stores.
#[derive(Debug, Clone)]
pub struct SpoolSettings {
    pub outbox: OutboxSettings,
    /// Messages held in memory while the outbox cannot take them.
    pub max_queued: usize,
}

/// The [`OUTBOX_HELD`] series of one spool: present while it holds.
struct Unwritable {
    telemetry: Telemetry,
    labels: Vec<(String, String)>,
    /// The error in the series' label now; `None`: no series.
    error: Option<String>,
}

impl Unwritable {
    fn series<'a>(&'a self, error: &'a str) -> Vec<(&'a str, &'a str)> {
        let mut l: Vec<(&str, &str)> = self
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        l.push(("error", error));
        l
    }

    fn holding(&mut self, held: usize, error: &str) {
        // The new series first: a reader never finds the output without one.
        self.telemetry
            .gauge(OUTBOX_HELD, &self.series(error))
            .set(held as f64);
        if self.error.as_deref() != Some(error) {
            self.clear();
            self.error = Some(error.to_string());
        }
    }

    fn clear(&mut self) {
        if let Some(old) = self.error.take() {
            self.telemetry.remove_gauge(OUTBOX_HELD, &self.series(&old));
        }
    }
}

pub struct Spool {
    outbox: Outbox,
    /// What the disk refused, oldest first, retried every housekeeping tick.
    held: VecDeque<OutboundMessage>,
    settings: SpoolSettings,
    m: Metrics,
    unwritable: Unwritable,
    log: LogThrottle,
    /// Stamps stored messages and says when they are older than `max_age`.
    clock: Arc<dyn Clock>,
    retention: RetentionClock,
}

impl Spool {
    /// Opens the outbox in `dir` (`None`: memory only), degrading to memory
    /// when the directory is unusable, so the output still runs.
    ///
    /// # Errors
    /// Only an outbox locked by another process: two gateways on one state
    /// directory would send each other's messages.
    pub fn open(
        dir: Option<&Path>,
        settings: SpoolSettings,
        telemetry: &Telemetry,
        labels: &[(&str, &str)],
    ) -> Result<Self, OutboxError> {
        let m = Metrics::new(telemetry, labels);
        let outbox = match dir {
            None => Outbox::in_memory(settings.outbox.clone()),
            Some(dir) => match Outbox::open(dir, settings.outbox.clone()) {
                Ok((outbox, recovery)) => {
                    for d in &recovery.damage {
                        m.storage_errors.inc();
                        warn!(segment = %d.segment.display(), offset = d.offset, bytes = d.bytes, "Outbox: skipped damaged bytes (torn write or corruption); the intact messages around them are kept.");
                    }
                    info!(dir = %dir.display(), messages = recovery.messages, bytes = outbox.bytes(), "Outbox opened.");
                    outbox
                }
                Err(e @ OutboxError::Locked(_)) => return Err(e),
                Err(e) => {
                    m.storage_errors.inc();
                    error!(error = %e, "Outbox directory unusable: keeping messages in memory only; a restart will lose them.");
                    Outbox::in_memory(settings.outbox.clone())
                }
            },
        };
        let unwritable = Unwritable {
            telemetry: telemetry.clone(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            error: None,
        };
        Ok(Self {
            outbox,
            held: VecDeque::new(),
            settings,
            m,
            unwritable,
            log: LogThrottle::default(),
            clock: Arc::new(SystemClock),
            retention: RetentionClock::default(),
        })
    }

    /// The wall clock to stamp and expire by (tests: tokio's paused one).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Messages waiting: stored and held.
    pub fn waiting(&self) -> usize {
        self.outbox.len() + self.held.len()
    }

    /// Everything handed over so far is on disk.
    pub fn is_durable(&self) -> bool {
        self.held.is_empty() && self.outbox.is_durable()
    }

    /// Reads one stored message to send it (see [`Outbox::take`]: one just
    /// stored comes from memory); a failure is counted.
    ///
    /// # Errors
    /// The outbox could not read it.
    pub fn read(&mut self, seq: u64) -> Result<Option<OutboundMessage>, OutboxError> {
        self.outbox
            .take(seq)
            .inspect_err(|_| self.m.storage_errors.inc())
    }

    /// Records a delivery; a failure only means it may be sent again.
    pub fn ack(&mut self, seq: u64) {
        if let Err(e) = self.outbox.ack(seq) {
            self.m.storage_errors.inc();
            // Throttled: a full disk refuses every acknowledgement.
            if let Some(suppressed) = self.log.allow("ack") {
                warn!(error = %e, suppressed, "Outbox: cannot record a delivery on disk; a restart may send the message again.");
            }
        }
    }

    /// Puts a batch (after anything held) into the outbox. When the disk
    /// refuses, the messages are held in memory and retried every second;
    /// beyond `max_queued` held, a full disk makes room by the policy
    /// (`drop_oldest`: the oldest stored segment) and any other refusal
    /// drops from memory by it.
    ///
    /// Returns the sequence numbers of `batch` itself when it went in whole
    /// and in one append (the common case), for urgent messages to be sent
    /// first; otherwise none, and they go in order with the rest.
    pub fn store(&mut self, batch: Vec<OutboundMessage>) -> Vec<u64> {
        let n = batch.len();
        let was_held = self.held.len();
        self.held.extend(batch);
        let pending: Vec<OutboundMessage> = self.held.drain(..).collect();
        let mut seqs = Vec::new();
        let failed = match self.outbox.append(pending, self.clock.now().as_millis()) {
            Ok(a) => {
                self.appended(&a);
                if a.seqs.len() == was_held + n {
                    seqs = a.seqs[was_held..].to_vec();
                }
                None
            }
            Err(f) => {
                // Part of the batch may be stored: only the rest is retried.
                self.appended(&f.done);
                if f.error.is_disk_full() {
                    self.store_what_fits(f)
                } else {
                    Some(f)
                }
            }
        };
        if let Some(f) = failed {
            // A full disk deletes stored messages only once memory
            // cannot hold what waits: something else may have filled
            // it, and the oldest stored messages are windows of
            // acknowledged readings, most of them delivered a moment
            // later. Deleting them at the first refusal lost a whole
            // outage's backlog in the soak.
            if f.error.is_disk_full() && f.rest.len() > self.settings.max_queued {
                self.store_on_full_disk(f.rest);
            } else {
                self.hold(f.rest, &f.error);
            }
        }
        if self.held.is_empty() {
            self.unwritable.clear();
        }
        seqs
    }

    /// The disk refused a run: frees what the outbox itself keeps of
    /// settled messages, then stores the rest one by one as far as they
    /// fit (a run that does not fit whole may in part). Returns what
    /// still failed.
    fn store_what_fits(&mut self, f: AppendFailed) -> Option<AppendFailed> {
        let now_ms = self.clock.now().as_millis();
        let mut pending = f.rest;
        match self.outbox.reclaim() {
            Ok(freed) if freed > 0 => {
                debug!(
                    freed,
                    "Outbox: freed the space of delivered messages on a full disk."
                );
                match self.outbox.append(pending, now_ms) {
                    Ok(a) => {
                        self.appended(&a);
                        return None;
                    }
                    Err(g) => {
                        self.appended(&g.done);
                        if !g.error.is_disk_full() {
                            return Some(g);
                        }
                        pending = g.rest;
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                self.m.storage_errors.inc();
                warn!(error = %e, "Outbox: cannot free the space of delivered messages.");
            }
        }
        let mut rest = pending.into_iter();
        while let Some(msg) = rest.next() {
            match self.outbox.append(vec![msg], now_ms) {
                Ok(a) => self.appended(&a),
                Err(g) => {
                    self.appended(&g.done);
                    let mut left = g.rest;
                    left.extend(rest);
                    return Some(AppendFailed {
                        error: g.error,
                        done: Appended::default(),
                        rest: left,
                    });
                }
            }
        }
        None
    }

    /// Stores newline-terminated `text` (line protocol, JSON lines) as
    /// records of `topic`, cut between lines so that each fits
    /// ([`LINES_PER_RECORD_BYTES`], and a segment of this outbox); a line
    /// longer than that is a record of its own. Empty `text` retries what
    /// is held.
    pub fn store_lines(&mut self, topic: &str, text: String) {
        let limit = LINES_PER_RECORD_BYTES
            .min(usize::try_from(self.settings.outbox.segment_bytes()).unwrap_or(usize::MAX))
            .saturating_sub(record::message_overhead(topic.len()))
            .max(1);
        self.store(line_records(topic, text, limit));
    }

    /// Once a second: retries what is held, expires old messages every
    /// tenth tick, and updates the gauges.
    pub fn housekeeping(&mut self, tick: u64) {
        if !self.held.is_empty() {
            self.store(Vec::new());
        }
        let wall = self.clock.now();
        let now_ms = wall.as_millis();
        // Every tick, so that a step between two expiries is seen.
        let stable = self.retention.observe(wall, tokio::time::Instant::now());
        if let Some(max_age) = self
            .settings
            .outbox
            .max_age
            .filter(|_| tick.is_multiple_of(10))
        {
            // Expiring trusts only a clock that has been stable, and never
            // more than `max_age` past the newest message.
            match prune_now(stable, self.outbox.newest_created_ms(), max_age) {
                Some(now) => match self.outbox.expire(now) {
                    Ok(n) => self.m.expired.add(n),
                    Err(e) => {
                        self.m.storage_errors.inc();
                        warn!(error = %e, "Outbox: cannot expire old messages.");
                    }
                },
                None => {
                    self.m.retention_deferred.inc();
                    if let Some(suppressed) = self.log.allow("retention") {
                        info!(suppressed, "Outbox: the wall clock has not been stable for an hour in this run; expiring nothing by max_age yet.");
                    }
                }
            }
        }
        self.m.bytes.set(self.outbox.bytes() as f64);
        self.m.oldest_age.set(
            self.outbox
                .oldest_created_ms()
                .map_or(0.0, |c| (now_ms - c).max(0) as f64 / 1000.0),
        );
        self.update_waiting();
    }

    /// Lets go of what the outbox keeps in memory only to spare a read
    /// (`gateway_core::cache_release`).
    pub fn let_go_of_caches(&mut self) {
        self.outbox.let_go_of_fresh();
        if self.held.is_empty() {
            self.held = VecDeque::new();
        }
    }

    pub fn update_waiting(&self) {
        self.m.waiting.set(self.waiting() as f64);
    }

    /// At exit: a last try to store what is held; what the disk still
    /// refuses is lost, counted and logged.
    pub fn close(&mut self) {
        if !self.held.is_empty() {
            self.store(Vec::new());
        }
        let unstored = self.held.len()
            + if self.outbox.is_durable() {
                0
            } else {
                self.outbox.len()
            };
        if unstored > 0 {
            self.m.unstored.add(unstored as u64);
            error!(lost = unstored, "Stopping with messages the disk would not take: they are lost (counted as dropped, reason unstored_at_exit).");
        }
        info!(
            left = self.outbox.len(),
            durable = self.outbox.is_durable(),
            "Stopping; undelivered messages stay in the outbox for the next start."
        );
    }

    /// The disk filled before `max_bytes` did and memory holds `max_queued`
    /// already: store message by message, and with `drop_oldest` free room
    /// the way a full budget would.
    fn store_on_full_disk(&mut self, pending: Vec<OutboundMessage>) {
        let now_ms = self.clock.now().as_millis();
        let mut freed = 0u64;
        let mut left = pending.into_iter();
        let mut failed = None;
        'messages: for msg in left.by_ref() {
            let mut msg = vec![msg];
            loop {
                match self.outbox.append(msg, now_ms) {
                    Ok(a) => {
                        self.appended(&a);
                        continue 'messages;
                    }
                    Err(f) => {
                        self.appended(&f.done);
                        msg = f.rest;
                        if msg.is_empty() {
                            continue 'messages;
                        }
                        if !(f.error.is_disk_full()
                            && self.settings.outbox.policy == FullPolicy::DropOldest)
                        {
                            failed = Some((f.error, msg));
                            break 'messages;
                        }
                        match self.outbox.make_room() {
                            Ok(n) if n > 0 => {
                                freed += n;
                                self.m.evicted.add(n);
                            }
                            _ => {
                                failed = Some((f.error, msg));
                                break 'messages;
                            }
                        }
                    }
                }
            }
        }
        if freed > 0 {
            if let Some(suppressed) = self.log.allow("disk_full_evict") {
                warn!(
                    evicted_oldest = freed,
                    suppressed, "Disk full: dropped the oldest outbox messages to make room."
                );
            }
        }
        if let Some((e, mut rest)) = failed {
            rest.extend(left);
            self.hold(rest, &e);
        }
    }

    fn appended(&self, a: &Appended) {
        debug!(
            stored = a.seqs.len(),
            last_seq = self.outbox.last_seq(),
            evicted = a.evicted,
            rejected = a.rejected,
            "Stored in the outbox."
        );
        self.m.evicted.add(a.evicted);
        self.m.rejected.add(a.rejected);
        if a.evicted + a.rejected > 0 {
            if let Some(suppressed) = self.log.allow("full") {
                warn!(
                    evicted_oldest = a.evicted,
                    rejected_new = a.rejected,
                    max_bytes = self.settings.outbox.max_bytes,
                    suppressed,
                    "Outbox full: dropped messages by policy."
                );
            }
        }
    }

    /// Keeps what the disk refused in memory, bounded by `max_queued`; the
    /// policy says which end gives.
    fn hold(&mut self, pending: Vec<OutboundMessage>, e: &OutboxError) {
        self.m.storage_errors.inc();
        if let Some(suppressed) = self.log.allow("storage") {
            error!(error = %e, disk_full = e.is_disk_full(), waiting = pending.len(), suppressed, "Outbox: cannot write; holding messages in memory and retrying.");
        }
        self.held.extend(pending);
        while self.held.len() > self.settings.max_queued {
            match self.settings.outbox.policy {
                FullPolicy::DropOldest => self.held.pop_front(),
                FullPolicy::RejectNew => self.held.pop_back(),
            };
            self.m.overflow.inc();
        }
        self.unwritable.holding(self.held.len(), &e.to_string());
    }
}

/// `text` as records of `topic` of at most `limit` bytes of payload each,
/// cut only after a newline (a line longer than `limit` alone).
pub fn line_records(topic: &str, text: String, limit: usize) -> Vec<OutboundMessage> {
    let record = |payload: Vec<u8>| OutboundMessage {
        topic: topic.to_string(),
        payload,
        retain: false,
    };
    if text.is_empty() {
        return Vec::new();
    }
    if text.len() <= limit {
        return vec![record(text.into_bytes())];
    }
    let bytes = text.as_bytes();
    let mut records = Vec::with_capacity(text.len() / limit + 1);
    let mut start = 0;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if at > start && at + line.len() - start > limit {
            records.push(record(bytes[start..at].to_vec()));
            start = at;
        }
        at += line.len();
    }
    if at > start {
        records.push(record(bytes[start..at].to_vec()));
    }
    records
}

#[cfg(test)]
#[path = "spool_tests.rs"]
mod tests;
