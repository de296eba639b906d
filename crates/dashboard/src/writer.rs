//! The dashboard's output task: pipeline events in, live state and
//! `/events` updated at once, history written in batches.
//!
//! It is one of the outputs the pipeline's checkpoint asks (see
//! `fanout::flush_all`): it answers a flush after committing what it was
//! handed, so every window the checkpoint no longer holds is in history,
//! and a `kill -9` before that leaves the window in the checkpoint to be
//! closed and written again (an overwrite) after the restart. When history
//! cannot be written (its disk full) it answers anyway and keeps the rows
//! for the next try: one store's full disk must not stop the checkpoints.

use std::sync::Arc;
use std::time::Duration;

use gateway_core::clock::retention::RETENTION_DEFERRED;
use gateway_core::clock::RetentionClock;
use gateway_core::event::OutputLink;
use gateway_core::event::SinkEvent;
use gateway_core::telemetry::{Counter, LogThrottle};
use gateway_core::{Clock, Telemetry};
use tracing::{info, warn};

use super::history::{AlertRow, Batch, History};
use super::live::Live;

/// Bytes written to the history's files: batches appended, hours sealed.
pub const HISTORY_BYTES_WRITTEN: &str = "edge_gateway_history_bytes_written_total";
/// Durable commits of a batch to history (an fsync per file it touched).
pub const HISTORY_COMMITS: &str = "edge_gateway_history_commits_total";
/// Windows (per metric) written to history.
pub const HISTORY_WINDOWS: &str = "edge_gateway_history_windows_written_total";
/// Command results written to history.
pub const HISTORY_COMMANDS: &str = "edge_gateway_history_commands_written_total";
/// Windows deleted by `retention` or `max_bytes`.
pub const HISTORY_PRUNED: &str = "edge_gateway_history_pruned_windows_total";
/// History writes that failed, labelled `error_type`.
pub const HISTORY_ERRORS: &str = "edge_gateway_history_errors_total";
/// Rows waiting in memory while the disk refuses; beyond this the oldest
/// are dropped (and counted) rather than growing without bound.
const MAX_PENDING_ROWS: usize = 200_000;
/// How often retention and `max_bytes` are enforced (the first time at
/// start, by space only: see `gateway_core::clock::retention`).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// The latest values are saved at most this often while readings come
/// (whatever `write_interval`): the file is rewritten whole, and it is
/// display state, not readings.
const LATEST_EVERY: Duration = Duration::from_secs(60);

/// The writer's settings.
pub struct WriterSettings {
    pub write_interval: Duration,
    /// Where each device's adapter is kept across restarts, and the table
    /// its ids index.
    pub provenance: Option<(super::provenance::ProvenanceFile, gateway_core::Sources)>,
    /// Where each device's latest values are kept across restarts.
    pub latest: Option<super::latest_file::LatestFile>,
    /// What states an alert's numbers in its metric's unit (and a rate's
    /// over its rule's span) for the pages open on `/events`.
    pub describe: Option<(
        super::view::View,
        gateway_core::DeviceRegistry,
        Vec<gateway_core::config::RuleConfig>,
    )>,
    pub retention: Duration,
    pub max_bytes: u64,
}

struct Counters {
    bytes: Counter,
    commits: Counter,
    windows: Counter,
    commands: Counter,
    pruned: Counter,
    write_errors: Counter,
    dropped: Counter,
    unsaved_at_checkpoint: Counter,
    retention_deferred: Counter,
}

/// Runs until the link's messages close, then commits what is left.
pub async fn run(
    store: Option<Arc<History>>,
    live: Live,
    mut link: OutputLink<SinkEvent>,
    settings: WriterSettings,
    clock: Arc<dyn Clock>,
    telemetry: Telemetry,
) {
    let c = Counters {
        bytes: telemetry.counter(HISTORY_BYTES_WRITTEN, &[]),
        commits: telemetry.counter(HISTORY_COMMITS, &[]),
        windows: telemetry.counter(HISTORY_WINDOWS, &[]),
        commands: telemetry.counter(HISTORY_COMMANDS, &[]),
        pruned: telemetry.counter(HISTORY_PRUNED, &[]),
        write_errors: telemetry.counter(HISTORY_ERRORS, &[("error_type", "write")]),
        dropped: telemetry.counter(HISTORY_ERRORS, &[("error_type", "dropped_full")]),
        unsaved_at_checkpoint: telemetry
            .counter(HISTORY_ERRORS, &[("error_type", "unsaved_at_checkpoint")]),
        retention_deferred: telemetry.counter(RETENTION_DEFERRED, &[("store", "history")]),
    };
    let throttle = LogThrottle::default();
    let mut seq = match &store {
        Some(s) => s.next_alert_seq().unwrap_or(0),
        None => 0,
    };
    let mut batch = Batch::default();
    let mut tick = tokio::time::interval(settings.write_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    let mut latest_saved: Option<tokio::time::Instant> = None;
    let mut retention = RetentionClock::default();
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut flush = link.flush.take();
    let alert_out = AlertOut {
        // A replay decides transitions of readings from before the start;
        // readings ahead of the clock are held back by the pipeline's
        // clock guard, so a margin covers what it lets through.
        fresh_from: clock.now().as_millis().saturating_add(REPLAY_MARGIN_MS),
        store: &store,
        c: &c,
        throttle: &throttle,
        settings: &settings,
        live: &live,
    };
    loop {
        tokio::select! {
            event = link.messages.recv() => match event {
                // An alert is on disk before a page shows it: a crash
                // right after cannot take back a transition a person saw.
                // Alerts are rare; one fsync each is cheap.
                Some(SinkEvent::Alert(a)) => {
                    alert_out.keep_and_show(&a, &mut batch, &mut seq).await;
                }
                // A command's result, on disk at once like an alert: rare,
                // and `history export --commands` may be run right after.
                // Shown on the device page too (the live state's list).
                Some(event @ SinkEvent::Command(_)) => {
                    if let SinkEvent::Command(command) = &event {
                        batch.commands.push(command.into());
                    }
                    commit(&store, &mut batch, &mut seq, &c, &throttle).await;
                    live.apply(&event, &mut batch.windows, &mut batch.alerts);
                }
                Some(event) => {
                    live.apply(&event, &mut batch.windows, &mut batch.alerts);
                    bound(&mut batch, &c.dropped, &throttle);
                }
                None => break,
            },
            request = async { flush.as_mut()?.recv().await }, if flush.is_some() => match request {
                Some(reply) => {
                    // Everything handed before the request is in `batch`:
                    // the pipeline queued it on this channel first.
                    // An alert among them is kept and shown as it is out
                    // of a flush: on disk first, in its metric's unit.
                    while let Ok(event) = link.messages.try_recv() {
                        match &event {
                            SinkEvent::Alert(a) => {
                                alert_out.keep_and_show(a, &mut batch, &mut seq).await;
                                continue;
                            }
                            SinkEvent::Command(command) => batch.commands.push(command.into()),
                            _ => {}
                        }
                        live.apply(&event, &mut batch.windows, &mut batch.alerts);
                    }
                    // A history that cannot be written does not hold the
                    // checkpoint back: the journals behind it would pile up
                    // on a disk that may be the full one, and every window
                    // since would be sent upstream again after a kill. The
                    // batch stays for the next try; a restart before then
                    // costs history (only) those windows, counted here.
                    if !commit(&store, &mut batch, &mut seq, &c, &throttle).await {
                        c.unsaved_at_checkpoint.add(batch.windows.len() as u64);
                        if let Some(suppressed) = throttle.allow("checkpoint") {
                            warn!(windows = batch.windows.len(), suppressed, "History cannot be written: the checkpoint goes on without it; its windows wait in memory for the next try.");
                        }
                    }
                    let _ = reply.send(true);
                }
                None => flush = None,
            },
            _ = tick.tick() => {
                commit(&store, &mut batch, &mut seq, &c, &throttle).await;
                save_provenance(&settings, &live, &throttle).await;
                if latest_saved.is_none_or(|at| at.elapsed() >= LATEST_EVERY) {
                    save_latest(&settings, &live, &throttle).await;
                    latest_saved = Some(tokio::time::Instant::now());
                }
            }
            _ = prune.tick() => {
                if let Some(s) = store.clone() {
                    // Deleting by age trusts only a clock that has been
                    // stable; space is not time, so `max_bytes` applies
                    // regardless.
                    let cutoff = retention.cutoff(
                        clock.now(),
                        tokio::time::Instant::now(),
                        s.newest_hour_ms(),
                        settings.retention,
                    );
                    let max = settings.max_bytes;
                    let by_age = cutoff.unwrap_or(i64::MIN);
                    match tokio::task::spawn_blocking(move || s.prune(by_age, max)).await {
                        Ok(Ok(p)) => {
                            c.pruned.add(p.windows);
                            c.bytes.add(p.bytes_written);
                        }
                        Ok(Err(e)) => warn!(error = %e, "Cannot prune the dashboard history."),
                        Err(e) => warn!(error = %e, "History prune task failed."),
                    }
                    if cutoff.is_none() {
                        c.retention_deferred.inc();
                        if let Some(suppressed) = throttle.allow("retention") {
                            info!(suppressed, "History: the wall clock has not been stable for an hour in this run; pruned by space only, not by age.");
                        }
                    }
                }
            }
        }
    }
    commit(&store, &mut batch, &mut seq, &c, &throttle).await;
    save_provenance(&settings, &live, &throttle).await;
    save_latest(&settings, &live, &throttle).await;
}

/// What an alert transition goes through, wherever the writer meets it.
struct AlertOut<'a> {
    /// Transitions made at or after this (wall ms) cannot be a crash's
    /// replay of one history holds: they are not looked up there.
    fresh_from: i64,
    store: &'a Option<Arc<History>>,
    c: &'a Counters,
    throttle: &'a LogThrottle,
    settings: &'a WriterSettings,
    live: &'a Live,
}

impl AlertOut<'_> {
    /// Writes the transition to history (unless a crash's replay decided
    /// it again), then tells the open pages, with its numbers in the
    /// metric's unit: a page shows no transition a crash could take back,
    /// and never an anomaly's bare score where ppm belongs.
    async fn keep_and_show(
        &self,
        alert: &gateway_core::event::AlertEvent,
        batch: &mut Batch,
        seq: &mut u64,
    ) {
        let row = super::live::alert_row(alert);
        // Looking a transition up reads its day's file: done for each of
        // an alert flood, it made the writer (and the pipeline behind it)
        // slower with every alert of the day.
        if row.at < self.fresh_from && already_kept(self.store, &row).await {
            return;
        }
        batch.alerts.push(row.clone());
        commit(self.store, batch, seq, self.c, self.throttle).await;
        let texts = self
            .settings
            .describe
            .as_ref()
            .map(|(view, registry, rules)| {
                let device = gateway_core::DeviceId::new(row.device.as_str()).ok();
                let info = view.info(
                    &row.device,
                    device.as_ref().and_then(|d| registry.get(d)),
                    self.live.source_of(&row.device),
                    &row.metric,
                );
                super::pages::describe_alert(&info, &row, rules)
            });
        self.live.show_alert(&row, texts);
    }
}

/// How far past the writer's start a crash's replayed transition may be
/// dated (see `AlertOut::fresh_from`).
const REPLAY_MARGIN_MS: i64 = 5 * 60_000;

/// Saves each device's latest values when a reading or status came since.
async fn save_latest(settings: &WriterSettings, live: &Live, throttle: &LogThrottle) {
    let Some(file) = settings.latest.clone() else {
        return;
    };
    let Some(devices) = live.changed_latest() else {
        return;
    };
    let Some(error) = failure(tokio::task::spawn_blocking(move || file.save(devices)).await) else {
        return;
    };
    live.latest_unsaved();
    if let Some(suppressed) = throttle.allow("latest") {
        warn!(error = %error, suppressed, "Cannot keep the devices' latest values for the next start; trying again later.");
    }
}

/// Saves each device's adapter when one changed (rarely: a device's first
/// reading, or one that moved to another adapter).
async fn save_provenance(settings: &WriterSettings, live: &Live, throttle: &LogThrottle) {
    let Some((file, sources)) = settings.provenance.clone() else {
        return;
    };
    let Some(devices) = live.changed_sources() else {
        return;
    };
    let Some(error) =
        failure(tokio::task::spawn_blocking(move || file.save(&devices, &sources)).await)
    else {
        return;
    };
    live.sources_unsaved();
    if let Some(suppressed) = throttle.allow("provenance") {
        warn!(error = %error, suppressed, "Cannot keep which adapter each device came through; trying again at the next write.");
    }
}

/// Why a state file's save on the blocking pool failed, if it did.
fn failure(
    saved: Result<
        Result<(), gateway_core::state_file::json::JsonStateError>,
        tokio::task::JoinError,
    >,
) -> Option<String> {
    match saved {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(e) => Some(e.to_string()),
    }
}

/// Keeps the pending rows bounded while the disk refuses them.
fn bound(batch: &mut Batch, dropped: &Counter, throttle: &LogThrottle) {
    let over = batch.windows.len().saturating_sub(MAX_PENDING_ROWS);
    if over > 0 {
        batch.windows.drain(..over);
        dropped.add(over as u64);
        if let Some(suppressed) = throttle.allow("full") {
            warn!(
                dropped = over,
                suppressed, "History cannot be written; dropping its oldest pending windows."
            );
        }
    }
}

/// Whether history holds this transition already (device, rule, metric,
/// state, time and values): after a crash the
/// rules decide again, from the journal, the transitions after their last
/// save (the upstream tells the copy by its id); written again, each crash
/// added a row of the same raise or clear to the alert list.
async fn already_kept(store: &Option<Arc<History>>, row: &AlertRow) -> bool {
    let Some(store) = store.clone() else {
        return false;
    };
    let row = row.clone();
    tokio::task::spawn_blocking(move || {
        store
            .alerts(row.at, row.at.saturating_add(1))
            .is_ok_and(|kept| {
                kept.iter().any(|k| {
                    // Two transitions of one rule within a millisecond (a
                    // burst of readings) are told apart by their values.
                    (
                        &k.device,
                        &k.rule,
                        &k.metric,
                        &k.state,
                        k.value.to_bits(),
                        k.limit.to_bits(),
                    ) == (
                        &row.device,
                        &row.rule,
                        &row.metric,
                        &row.state,
                        row.value.to_bits(),
                        row.limit.to_bits(),
                    )
                })
            })
    })
    .await
    .unwrap_or(false)
}

/// Commits the batch; `true` when it is durable (or there is no store to
/// make durable: a missing history must not hold back the checkpoint).
async fn commit(
    store: &Option<Arc<History>>,
    batch: &mut Batch,
    seq: &mut u64,
    c: &Counters,
    throttle: &LogThrottle,
) -> bool {
    let Some(store) = store.clone() else {
        *batch = Batch::default();
        return true;
    };
    if batch.is_empty() {
        return true;
    }
    let taken = std::mem::take(batch);
    let first = *seq;
    let result = tokio::task::spawn_blocking(move || {
        let r = store.write(&taken, first);
        (r, taken)
    })
    .await;
    match result {
        Ok((Ok(written), taken)) => {
            *seq += taken.alerts.len() as u64;
            c.commits.inc();
            c.bytes.add(written);
            c.windows.add(taken.windows.len() as u64);
            c.commands.add(taken.commands.len() as u64);
            true
        }
        Ok((Err(e), taken)) => {
            c.write_errors.inc();
            if let Some(suppressed) = throttle.allow("write") {
                warn!(error = %e, suppressed, "Cannot write the dashboard history; keeping the batch for the next try.");
            }
            // Put them back in front of whatever arrived meanwhile.
            let mut back = taken;
            back.windows.append(&mut batch.windows);
            back.alerts.append(&mut batch.alerts);
            back.commands.append(&mut batch.commands);
            *batch = back;
            false
        }
        Err(e) => {
            c.write_errors.inc();
            warn!(error = %e, "History write task failed.");
            false
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::history::{Aggregate, WindowRow, HOUR_MS};
    use crate::view::View;
    use gateway_core::clock::EARLIEST_PLAUSIBLE_MS;
    use gateway_core::{Timestamp, TokioClock};
    use tokio::sync::mpsc;

    const MIN: i64 = 60_000;
    const DAY: i64 = 24 * HOUR_MS;

    fn window(start: i64) -> WindowRow {
        WindowRow {
            device: "fridge".into(),
            metric: "t".into(),
            agg: Aggregate {
                start,
                end: start + 10 * MIN,
                count: 1,
                avg: 4.0,
                min: 4.0,
                max: 4.0,
                std: 0.0,
            },
        }
    }

    fn starts(h: &History) -> Vec<i64> {
        h.series("fridge", "t", 0, i64::MAX, 0)
            .unwrap()
            .iter()
            .map(|a| a.start)
            .collect()
    }

    /// Steps virtual time until `done` (the writer's blocking prune runs
    /// meanwhile; tokio does not advance a paused clock past it).
    async fn until(t: &Telemetry, done: impl Fn(&Telemetry) -> bool) {
        for _ in 0..3 * 3600 {
            if done(t) {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        panic!("not within three hours");
    }

    /// A fridge's threshold raise at `at`, as the writer keeps it.
    fn fridge_raised(at: i64) -> AlertRow {
        AlertRow {
            device: "fridge-9".into(),
            rule: "fridge-max".into(),
            metric: "temperature".into(),
            kind: "threshold".into(),
            state: "raised".into(),
            value: 9.5,
            limit: 8.0,
            at,
            reason: None,
            expected: None,
        }
    }

    /// A transition decided again after a crash (from the journal) is
    /// one the history holds: not a second row of it.
    #[tokio::test]
    async fn a_transition_history_holds_is_known_and_another_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = Some(Arc::new(History::open(dir.path()).unwrap()));
        let at = EARLIEST_PLAUSIBLE_MS + DAY;
        let raised = fridge_raised(at);
        assert!(!already_kept(&store, &raised).await);
        if let Some(h) = &store {
            h.write(
                &Batch {
                    windows: vec![],
                    alerts: vec![raised.clone()],
                    commands: vec![],
                },
                0,
            )
            .unwrap();
        }
        assert!(already_kept(&store, &raised).await);
        let cleared = AlertRow {
            state: "cleared".into(),
            ..raised.clone()
        };
        assert!(!already_kept(&store, &cleared).await);
        let later = AlertRow {
            at: at + 1,
            ..raised.clone()
        };
        assert!(!already_kept(&store, &later).await);
        // Another reading's transition in the same millisecond (a burst).
        let other_value = AlertRow {
            value: 12.8,
            ..raised
        };
        assert!(!already_kept(&store, &other_value).await);
    }

    /// A transition dated before the writer's start (a crash's replay)
    /// is looked up in history and not written twice; one dated past the
    /// start's margin cannot be a replay and is written without reading
    /// its day's file: in an alert flood each lookup read the whole day,
    /// slower with every alert, and held up the pipeline behind it.
    #[tokio::test]
    async fn only_a_transition_a_replay_could_decide_is_looked_up() {
        let dir = tempfile::tempdir().unwrap();
        let history = Arc::new(History::open(dir.path()).unwrap());
        let start = EARLIEST_PLAUSIBLE_MS + DAY;
        let row = fridge_raised;
        let (replayed, fresh) = (start - MIN, start + REPLAY_MARGIN_MS + MIN);
        let kept = Batch {
            windows: vec![],
            alerts: vec![row(replayed), row(fresh)],
            commands: vec![],
        };
        history.write(&kept, 0).unwrap();
        let live = Live::new(10 * MIN);
        let (tx, rx) = mpsc::channel(8);
        let (flush_tx, flush_rx) = mpsc::channel(8);
        let writer = tokio::spawn(run(
            Some(history.clone()),
            live,
            OutputLink {
                messages: rx,
                urgent: None,
                flush: Some(flush_rx),
            },
            WriterSettings {
                write_interval: Duration::from_secs(3600),
                provenance: None,
                latest: None,
                describe: None,
                retention: Duration::from_secs(30 * 24 * 3600),
                max_bytes: u64::MAX,
            },
            Arc::new(TokioClock::starting_at(
                Timestamp::from_millis(start).unwrap(),
            )),
            Telemetry::default(),
        ));
        for at in [replayed, fresh] {
            tx.send(SinkEvent::Alert(gateway_core::event::AlertEvent {
                device: gateway_core::DeviceId::new("fridge-9").unwrap(),
                rule: "fridge-max".into(),
                metric: "temperature".into(),
                kind: "threshold".into(),
                state: "raised".into(),
                value: 9.5,
                limit: 8.0,
                at: Timestamp::from_millis(at).unwrap(),
                reason: None,
                expected: None,
                observed: None,
                source: gateway_core::SourceId::UNKNOWN,
            }))
            .await
            .unwrap();
        }
        let (answer, answered) = tokio::sync::oneshot::channel();
        flush_tx.send(answer).await.unwrap();
        assert!(answered.await.unwrap());
        let rows = |at: i64| history.alerts(at, at + 1).unwrap().len();
        assert_eq!(rows(replayed), 1, "the replay is not written again");
        assert_eq!(rows(fresh), 2, "a fresh transition is written unread");
        drop(tx);
        writer.await.unwrap();
    }

    /// An anomaly raised while the checkpoint asks for a flush is drained
    /// by the flush: the open pages must still get it in ppm with its
    /// score apart, as when it comes alone. Both ways are taken: each
    /// round hands the alert and the flush together, and which the writer
    /// reads first is tokio's random pick, so twenty rounds take the
    /// flush's way but for a chance of one in a million.
    #[tokio::test]
    async fn an_alert_drained_by_a_checkpoint_flush_reaches_the_pages_in_its_unit() {
        let live = Live::new(10 * MIN);
        let mut pages = live.subscribe();
        let (tx, rx) = mpsc::channel(8);
        let (flush_tx, flush_rx) = mpsc::channel(8);
        let writer = tokio::spawn(run(
            None,
            live.clone(),
            OutputLink {
                messages: rx,
                urgent: None,
                flush: Some(flush_rx),
            },
            WriterSettings {
                write_interval: Duration::from_secs(3600),
                provenance: None,
                latest: None,
                describe: Some((View::default(), Default::default(), vec![])),
                retention: Duration::from_secs(30 * 24 * 3600),
                max_bytes: u64::MAX,
            },
            Arc::new(TokioClock::starting_at(
                Timestamp::from_millis(EARLIEST_PLAUSIBLE_MS).unwrap(),
            )),
            Telemetry::default(),
        ));
        for round in 0..20_i64 {
            let raise = gateway_core::event::AlertEvent {
                device: gateway_core::DeviceId::new("co2-lab").unwrap(),
                rule: "co2-anomaly".into(),
                metric: "co2".into(),
                kind: "anomaly".into(),
                state: "raised".into(),
                value: 780.0 + round as f64,
                limit: 3.0,
                at: Timestamp::from_millis(EARLIEST_PLAUSIBLE_MS + round).unwrap(),
                reason: Some("spike".into()),
                expected: Some((590.0, 610.0)),
                observed: Some(780.0),
                source: gateway_core::SourceId::UNKNOWN,
            };
            let (answer, answered) = tokio::sync::oneshot::channel();
            tx.send(SinkEvent::Alert(raise)).await.unwrap();
            flush_tx.send(answer).await.unwrap();
            assert!(answered.await.unwrap());
            let shown = loop {
                let event = pages.recv().await.unwrap();
                if event.starts_with("event: alert") {
                    break event;
                }
            };
            assert!(
                shown.contains(&format!(r#""value_text":"{} ppm""#, 780 + round))
                    && shown.contains(r#"score 3"#),
                "round {round}: {shown}"
            );
        }
        drop(tx);
        writer.await.unwrap();
    }

    /// A restart with the clock 40 days ahead (retention 30 days) keeps
    /// every window of the last hour; once the clock has stayed there
    /// longer than the settling time, what is truly old goes, and the
    /// newest hour still stays.
    #[tokio::test(start_paused = true)]
    async fn a_restart_forty_days_ahead_prunes_nothing_until_the_clock_has_settled() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(History::open(dir.path()).unwrap());
        let hour = (EARLIEST_PLAUSIBLE_MS / HOUR_MS + 24 * 10) * HOUR_MS;
        let recent: Vec<i64> = (0..6).map(|i| hour + (5 + 10 * i) * MIN).collect();
        let old = hour - 35 * DAY;
        let mut rows: Vec<WindowRow> = recent.iter().map(|&s| window(s)).collect();
        rows.push(window(old));
        store
            .write(
                &Batch {
                    windows: rows,
                    alerts: vec![],
                    commands: vec![],
                },
                0,
            )
            .unwrap();
        let mut all = vec![old];
        all.extend(&recent);
        assert_eq!(starts(&store), all);

        let telemetry = Telemetry::default();
        let clock =
            TokioClock::starting_at(Timestamp::from_millis(hour + HOUR_MS + 40 * DAY).unwrap());
        let (tx, rx) = mpsc::channel(8);
        let writer = tokio::spawn(run(
            Some(store.clone()),
            Live::new(10 * MIN),
            OutputLink {
                messages: rx,
                urgent: None,
                flush: None,
            },
            WriterSettings {
                write_interval: Duration::from_secs(1),
                provenance: None,
                latest: None,
                describe: None,
                retention: Duration::from_secs(30 * 24 * 3600),
                max_bytes: u64::MAX,
            },
            Arc::new(clock),
            telemetry.clone(),
        ));
        let deferred = |t: &Telemetry| {
            t.counter_value(RETENTION_DEFERRED, &[("store", "history")])
                .unwrap_or(0)
        };
        until(&telemetry, |t| deferred(t) == 1).await;
        assert_eq!(starts(&store), all, "the prune at start deleted windows");
        assert_eq!(telemetry.counter_total(HISTORY_PRUNED), 0);

        until(&telemetry, |t| t.counter_total(HISTORY_PRUNED) > 0).await;
        assert_eq!(deferred(&telemetry), 1, "believed after one interval");
        assert_eq!(telemetry.counter_total(HISTORY_PRUNED), 1);
        assert_eq!(starts(&store), recent, "the newest hour stays");
        drop(tx);
        writer.await.unwrap();
    }
}
