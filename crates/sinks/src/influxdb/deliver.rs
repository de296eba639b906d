//! One batch's trip to InfluxDB and what the answer means for it: the
//! requests (at most the writer's current size each; headers, gzip), the
//! retry decision, the bisection of a refused batch down to the points
//! InfluxDB refuses alone (dead-lettered, counted), and `CREATE DATABASE`
//! for v1.
//!
//! A delivery runs in a task of its own per batch in flight, on its own
//! connection, so it holds only what every request shares ([`Target`]:
//! read-only settings and counters). The writer's loop owns the outbox and
//! settles the batch's records by the [`Delivered`] it gets back.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use gateway_core::config::secret::Secret;
use gateway_core::telemetry::{Counter, Gauge, LogThrottle};
use gateway_core::{Telemetry, Timestamp};
use hyper::body::Bytes;
use hyper::Method;
use tracing::{error, info, warn};

use super::http::{self, Client, HttpError};
use super::outcome::{self, classify, Outcome};
use super::SINK_BATCHES_FAILED;

pub struct Metrics {
    pub written: Counter,
    pub dead_letter: Counter,
    pub up: Gauge,
    /// `Retry-After` answers longer than `max_backoff`, cut to it.
    pub retry_after_capped: Counter,
    pub telemetry: Telemetry,
    pub name: String,
}

impl Metrics {
    pub fn failed(&self, reason: &str) {
        self.up.set(0.0);
        self.telemetry
            .counter(
                SINK_BATCHES_FAILED,
                &[("output", &self.name), ("reason", reason)],
            )
            .inc();
    }
}

/// What every request of one output shares.
pub struct Target {
    pub name: String,
    /// The url as logs show it: user info cut out.
    pub url: String,
    pub version: u8,
    pub database: String,
    pub create_database: bool,
    /// `/write?…` or `/api/v2/write?…`.
    pub write_path: String,
    /// The server's path prefix (for `/query`).
    pub base_path: String,
    /// `Authorization` header value, if any.
    pub auth: Option<Secret>,
    pub gzip: bool,
    pub dead_letter: PathBuf,
    /// Size past which `dead_letter` is moved to `<file>.1` (the one
    /// before it goes) and started afresh.
    pub dead_letter_max: u64,
    pub m: Metrics,
    pub log: LogThrottle,
    /// The sink's `max_backoff`: the longest a server's `Retry-After` is
    /// obeyed. A proxy answering `86400` must not hold the points a day.
    pub max_wait: Duration,
}

impl Target {
    /// The server's wait, capped at `max_wait`; each cut is counted.
    fn server_wait(&self, asked: Option<Duration>) -> Option<Duration> {
        let asked = asked?;
        if asked > self.max_wait {
            self.m.retry_after_capped.inc();
            if let Some(suppressed) = self.log.allow("retry_after_capped") {
                warn!(output = %self.name, asked_seconds = asked.as_secs(), max_backoff = ?self.max_wait, suppressed, "InfluxDB asks to wait longer than max_backoff; waiting max_backoff.");
            }
            return Some(self.max_wait);
        }
        Some(asked)
    }
}

/// How a delivery ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Settled {
    /// Every point was written or set aside: the records can go.
    Done,
    /// Nothing is settled: send the batch again after `wait` (the server's
    /// `Retry-After`) or else the backoff.
    Retry {
        wait: Option<Duration>,
        /// v1 answered 404 while `create_database` is on: create it first.
        missing_database: bool,
    },
}

impl Settled {
    fn retry(wait: Option<Duration>) -> Self {
        Self::Retry {
            wait,
            missing_database: false,
        }
    }
}

/// How a delivery went: the fate of its records, and what the writer's
/// [`Pace`](super::pace::Pace) learns from it.
#[derive(Debug)]
pub struct Delivered {
    pub settled: Settled,
    /// The body's first points that are settled (written or set aside,
    /// and counted): all of them when `Done`. Those of a delivery cut
    /// short are not sent again, nor counted twice.
    pub settled_points: usize,
    /// The points of the request that got no answer within the timeout.
    pub timed_out: Option<usize>,
    /// The longest a settled request took.
    pub slowest: Duration,
}

/// Why a request left its points unsettled.
struct Stop {
    settled: Settled,
    timed_out: bool,
}

impl Stop {
    fn retry(wait: Option<Duration>) -> Self {
        Self {
            settled: Settled::retry(wait),
            timed_out: false,
        }
    }

    /// A request that got no answer: counted and logged.
    fn unanswered(t: &Target, e: &HttpError) -> Self {
        unreachable_server(t, e);
        Self {
            settled: Settled::retry(None),
            timed_out: matches!(e, HttpError::Timeout(_)),
        }
    }
}

/// Sends one batch, in requests of at most `limit` points, in order, and
/// settles it.
///
/// A batch is whole outbox records, and one record can hold more points
/// than a server slow enough to need a small `limit` takes in time: such
/// a record is split here. The requests go one after the other, so what
/// is settled when one fails is the body's head ([`Delivered::settled_points`]).
pub async fn deliver(t: &Target, client: &mut Client, body: Bytes, limit: usize) -> Delivered {
    let mut ends: Vec<usize> = body
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    if body.last().is_some_and(|b| *b != b'\n') {
        // Every line the encoder writes ends in one; a record that does
        // not still has its last line sent, not cut off.
        ends.push(body.len());
    }
    let limit = limit.max(1);
    let mut done = 0;
    let mut slowest = Duration::ZERO;
    while done < ends.len() {
        let upto = (done + limit).min(ends.len());
        let from = done.checked_sub(1).map_or(0, |i| ends[i]);
        let part = body.slice(from..ends[upto - 1]);
        let started = tokio::time::Instant::now();
        match write(t, client, part, upto - done).await {
            Ok(()) => {
                slowest = slowest.max(started.elapsed());
                done = upto;
            }
            Err(stop) => {
                return Delivered {
                    settled: stop.settled,
                    settled_points: done,
                    timed_out: stop.timed_out.then_some(upto - done),
                    slowest,
                }
            }
        }
    }
    Delivered {
        settled: Settled::Done,
        settled_points: done,
        timed_out: None,
        slowest,
    }
}

/// Sends one request of `points` lines; `Ok` once each is written or set
/// aside (and counted).
async fn write(t: &Target, client: &mut Client, body: Bytes, points: usize) -> Result<(), Stop> {
    let outcome = match post(t, client, &t.write_path, body.clone()).await {
        Ok(r) => classify(r.status, &r.headers, &r.body),
        Err(e) => return Err(Stop::unanswered(t, &e)),
    };
    match outcome {
        Outcome::Written => {
            t.m.written.add(points as u64);
            t.m.up.set(1.0);
            Ok(())
        }
        Outcome::Later {
            retry_after,
            reason,
        } => {
            t.m.failed(reason);
            if let Some(suppressed) = t.log.allow(reason) {
                warn!(output = %t.name, reason, retry_after = ?retry_after, suppressed, "InfluxDB asks to wait; the points stay in the outbox.");
            }
            Err(Stop::retry(t.server_wait(retry_after)))
        }
        Outcome::Refused { reason, message } => {
            t.m.failed(reason);
            if let Some(suppressed) = t.log.allow("bisect") {
                warn!(output = %t.name, reason, points, %message, suppressed, "InfluxDB refused a batch; resending it in halves to find the points it refuses.");
            }
            match bisect(t, client, &body, reason, &message).await {
                Ok(()) => {
                    t.m.up.set(1.0);
                    Ok(())
                }
                // Halves already written are written again with the
                // batch: the same points, stored once.
                Err(mut stop) => {
                    if let Settled::Retry { wait, .. } = &mut stop.settled {
                        *wait = t.server_wait(*wait);
                    }
                    Err(stop)
                }
            }
        }
        Outcome::Misconfigured { reason, message } => {
            t.m.failed(reason);
            let key = key_to_fix(t.version, reason);
            if let Some(suppressed) = t.log.allow(reason) {
                error!(output = %t.name, reason, %message, fix = key, suppressed, "InfluxDB refuses the writes: check this sink's {key}. The points wait in the outbox.");
            }
            Err(Stop {
                settled: Settled::Retry {
                    wait: None,
                    // A missing retention policy is not cured by creating the
                    // database (it exists).
                    missing_database: reason == "not_found"
                        && t.version == 1
                        && t.create_database
                        && !message.starts_with("retention policy"),
                },
                timed_out: false,
            })
        }
        Outcome::Failed { reason, message } => {
            t.m.failed(reason);
            if let Some(suppressed) = t.log.allow(reason) {
                warn!(output = %t.name, %message, suppressed, "InfluxDB write failed; retrying.");
            }
            Err(Stop::retry(None))
        }
    }
}

/// Counts and logs a request that got no answer. A TLS failure is a
/// setting to fix, not an outage: it names the key.
fn unreachable_server(t: &Target, e: &HttpError) {
    if let HttpError::Tls { .. } = e {
        t.m.failed("tls");
        if let Some(suppressed) = t.log.allow("tls") {
            error!(output = %t.name, url = %t.url, error = %format!("{:#}", ErrorChain(e)), fix = "ca_file", suppressed, "TLS with InfluxDB failed: check this sink's ca_file (or the system's trusted roots), the server certificate's name and dates, and the clock. The points wait in the outbox.");
        }
        return;
    }
    t.m.failed("network");
    if let Some(suppressed) = t.log.allow("network") {
        warn!(output = %t.name, url = %t.url, error = %format!("{:#}", ErrorChain(e)), suppressed, "Cannot reach InfluxDB; keeping the points in the outbox.");
    }
}

/// An error with its sources, `a: b: c`, as the logs print causes.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// Writes a refused batch in ever smaller parts until every point is
/// either written or refused alone (dead-lettered, counted).
///
/// # Errors
/// Any answer but written or refused: the batch waits (for the server's
/// `Retry-After`, uncapped, if it said) and is sent again whole.
async fn bisect(
    t: &Target,
    client: &mut Client,
    body: &[u8],
    first_reason: &'static str,
    first_message: &str,
) -> Result<(), Stop> {
    let lines: Vec<&[u8]> = body.split_inclusive(|b| *b == b'\n').collect();
    if refused_whole(first_message, lines.len()) {
        let all: Vec<_> = lines
            .iter()
            .map(|l| (*l, first_reason, first_message.to_string()))
            .collect();
        dead_all(t, &all);
        return Ok(());
    }
    let mid = lines.len() / 2;
    let mut todo = vec![(mid, lines.len()), (0, mid)];
    // Settled only once every part is: a split the server cuts short is
    // sent again whole and split again, and points set aside or counted
    // on the first pass were set aside and counted twice.
    let mut written = 0;
    let mut refused = Vec::new();
    while let Some((a, b)) = todo.pop() {
        let part = Bytes::from(lines[a..b].concat());
        let outcome = match post(t, client, &t.write_path, part).await {
            Ok(r) => classify(r.status, &r.headers, &r.body),
            Err(e) => return Err(Stop::unanswered(t, &e)),
        };
        match outcome {
            Outcome::Written => written += b - a,
            Outcome::Refused { reason, message } if refused_whole(&message, b - a) => {
                t.m.failed(reason);
                refused.extend(lines[a..b].iter().map(|l| (*l, reason, message.clone())));
            }
            Outcome::Refused { reason, .. } => {
                t.m.failed(reason);
                let mid = (a + b) / 2;
                todo.push((mid, b));
                todo.push((a, mid));
            }
            Outcome::Later {
                retry_after,
                reason,
            } => {
                t.m.failed(reason);
                return Err(Stop::retry(retry_after));
            }
            Outcome::Misconfigured { reason, .. } | Outcome::Failed { reason, .. } => {
                t.m.failed(reason);
                return Err(Stop::retry(None));
            }
        }
    }
    t.m.written.add(written as u64);
    dead_all(t, &refused);
    Ok(())
}

/// Whether a refusal of `points` points refused each of them: a single
/// point, or InfluxDB's `partial write: … dropped=N` with N all of them
/// (a backlog older than the retention policy). Splitting such a batch
/// took about two requests per point, to learn what InfluxDB had said.
fn refused_whole(message: &str, points: usize) -> bool {
    points == 1
        || message
            .rsplit_once("dropped=")
            .and_then(|(_, n)| {
                // 1.8 goes on: `dropped=1 for database: x for retention policy: y`.
                let digits: String = n.chars().take_while(char::is_ascii_digit).collect();
                digits.parse::<usize>().ok()
            })
            .is_some_and(|n| n >= points)
}

/// Points InfluxDB refused, each on its own, with why: to the
/// dead-letter file in one write.
fn dead_all(t: &Target, refused: &[(&[u8], &'static str, String)]) {
    let Some((_, reason, message)) = refused.first() else {
        return;
    };
    // Throttled: a line per point was 3 000 ERROR lines for 3 000 points
    // of one type conflict. The counter and the file have every one.
    if let Some(suppressed) = t.log.allow("dead_letter") {
        // A database an earlier bridge filled with integers refuses the
        // gateway's floats for the whole point: say how to match it.
        let hint = conflict_hint(message);
        error!(output = %t.name, reason, %message, points = refused.len(), file = %t.dead_letter.display(), suppressed, "InfluxDB refuses a point; set aside in the dead-letter file.{hint}");
    }
    // One append and one fsync for them all, a header where the reason
    // changes: a split of 1 000 old points was 1 000 fsyncs on the
    // runtime's thread.
    let now = Timestamp::now().to_rfc3339();
    let mut text = Vec::new();
    let mut last: Option<(&str, &str)> = None;
    for (line, reason, message) in refused {
        if last != Some((reason, message)) {
            let head = format!("# {now} {reason}: {}\n", message.replace('\n', " "));
            text.extend_from_slice(head.as_bytes());
            last = Some((reason, message));
        }
        text.extend_from_slice(line);
    }
    set_aside(t, &text);
    t.m.dead_letter.add(refused.len() as u64);
}

/// For InfluxDB's `field type conflict: input field "gas" … already exists
/// as type integer`: the setting that writes the field as it is.
fn conflict_hint(message: &str) -> String {
    // The text as InfluxDB's JSON holds it, or with its quotes escaped.
    let Some(rest) = message.split("input field ").nth(1) else {
        return String::new();
    };
    let rest = rest.trim_start_matches(['\\', '"']);
    let Some((field, after)) = rest.split_once(['\\', '"']) else {
        return String::new();
    };
    if after.contains("already exists as type integer") {
        format!(" The database holds \"{field}\" as integers: add integer_fields = [\"{field}\"] to this [[sink]] to write it so.")
    } else {
        String::new()
    }
}

/// Appends refused points, headed by why, to the dead-letter file.
fn set_aside(t: &Target, text: &[u8]) {
    let adding = text.len() as u64;
    let full = std::fs::metadata(&t.dead_letter)
        .is_ok_and(|m| m.len() > 0 && m.len().saturating_add(adding) > t.dead_letter_max);
    if full {
        rotate_dead_letter(t);
    }
    let result = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&t.dead_letter)
        .and_then(|mut f| {
            f.write_all(text)?;
            f.sync_data()
        });
    if let Err(e) = result {
        error!(output = %t.name, file = %t.dead_letter.display(), error = %e, "Cannot write the dead-letter file: the refused points are only in this log line's count.");
    }
}

/// Moves the full dead-letter file to `<file>.1`, replacing the one
/// there: the newest refused points are the ones worth reading, and two
/// files bound what a field refused for good can take of the disk.
fn rotate_dead_letter(t: &Target) {
    let mut older = t.dead_letter.clone().into_os_string();
    older.push(".1");
    if let Err(e) = std::fs::rename(&t.dead_letter, &older) {
        error!(output = %t.name, file = %t.dead_letter.display(), error = %e, "Cannot move the full dead-letter file aside; appending to it.");
        return;
    }
    if let Some(suppressed) = t.log.allow("dead_letter_rotated") {
        warn!(output = %t.name, file = %t.dead_letter.display(), max_bytes = t.dead_letter_max, suppressed, "The dead-letter file is full: moved to .1, replacing the older points there.");
    }
}

/// The config key an authentication or not-found answer points at.
fn key_to_fix(version: u8, reason: &str) -> &'static str {
    match (version, reason) {
        (_, "redirected") => "url",
        (2, "unauthorized") => "token",
        (2, _) => "org and bucket",
        (_, "unauthorized") => "username and password_env",
        _ => "database (and retention_policy)",
    }
}

async fn post(
    t: &Target,
    client: &mut Client,
    path: &str,
    body: Bytes,
) -> Result<http::Response, HttpError> {
    let mut headers = vec![("content-type", "text/plain; charset=utf-8".to_string())];
    if let Some(a) = &t.auth {
        headers.push(("authorization", a.expose().to_string()));
    }
    let body = match t.gzip.then(|| gzip(&body)).flatten() {
        Some(z) => {
            headers.push(("content-encoding", "gzip".to_string()));
            Bytes::from(z)
        }
        None => body,
    };
    client.send(Method::POST, path, &headers, body).await
}

/// What `CREATE DATABASE` came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Created {
    /// It exists now.
    Ready,
    /// InfluxDB answered no (a user with WRITE but not admin rights gets
    /// 403): the writes will say whether the database is there.
    Refused,
    /// No answer: try again later, as a write would fail too.
    Unreachable,
}

/// v1: `CREATE DATABASE` (idempotent).
pub async fn create_database(t: &Target, client: &mut Client) -> Created {
    let q = format!(
        "CREATE DATABASE \"{}\"",
        t.database.replace('\\', "\\\\").replace('"', "\\\"")
    );
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("q", &q)
        .finish();
    let mut headers = vec![(
        "content-type",
        "application/x-www-form-urlencoded".to_string(),
    )];
    if let Some(a) = &t.auth {
        headers.push(("authorization", a.expose().to_string()));
    }
    let path = format!("{}/query", t.base_path);
    match client
        .send(Method::POST, &path, &headers, Bytes::from(query))
        .await
    {
        Ok(r) if r.status.is_success() => {
            info!(output = %t.name, database = %t.database, "InfluxDB database ready.");
            Created::Ready
        }
        Ok(r) => {
            t.m.failed("create_database");
            if let Some(suppressed) = t.log.allow("create") {
                error!(output = %t.name, status = %r.status, message = %outcome::server_message(&r.body), suppressed, "Cannot create the database; writing to it in case it exists. If the writes are refused, create it yourself, or give this sink's username the right to (create_database = false stops trying).");
            }
            Created::Refused
        }
        Err(e) => {
            unreachable_server(t, &e);
            Created::Unreachable
        }
    }
}

/// `None` only if compressing into memory failed: the body goes plain.
fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(body).and_then(|()| enc.finish()).ok()
}

#[cfg(test)]
#[path = "deliver_tests.rs"]
mod tests;
