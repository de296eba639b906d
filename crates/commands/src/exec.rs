//! What happens to one command, in this order: read it, look its id up in
//! the journal (a repeated id of the same device gets its first result
//! again), judge its age (`age`), take one of its device's allowance (a
//! device no adapter writes to shares one allowance with all the others
//! nobody writes to), find the adapter that writes to its device and let
//! it check the point and the value, journal the id, write before the
//! deadline, journal the result, hand the result to the upstream.
//!
//! A command refused before it took an allowance (expired, ahead of the
//! clock, over the rate) is journaled too, so that its result is final:
//! the same id sent again later (a cloud's retry, a QoS 1 re-delivery, a
//! retained message at the next start, a clock that caught up) gets the
//! same refusal and never runs. Its line is not synced on its own (the next
//! synced line or the kernel's write-back carries it), so a flood of them
//! costs no fsync; and past [`REFUSALS_REMEMBERED`] ids remembered, a
//! refusal is sent without a line of its own (counted), so a flood of them
//! cannot grow the journal or the memory without bound: the device's flood
//! mark is raised instead (`flood_marks`), and its commands made no later
//! are refused, so such a refusal stays final too. A refusal of a command
//! made further ahead of the clock than any id is kept has a bound of its
//! own (`journal::FAR_AHEAD_REMEMBERED`, the nearest), as its id would be
//! kept until its far-off `ts`. An unreadable or too large payload, or an
//! id the gateway makes for its own commands (`ha-`, `rule-`), is refused
//! the same way each time it comes: no line.

use std::sync::Arc;

use gateway_core::command::{
    Command, CommandRequest, CommandTarget, CommandTargets, Refusal, WriteOutcome, ORIGIN_RULE,
};
use gateway_core::config::CommandsConfig;
use gateway_core::event::{CommandEvent, SinkEvent};
use gateway_core::rate_limit::RateLimiter;
use gateway_core::telemetry::LogThrottle;
use gateway_core::{Clock, DeviceId, Telemetry, Timestamp};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::age::{self, Made};
use crate::journal::{Journal, Known, Recorded, Sync};
use crate::parse::{self, value_json};
use crate::{COMMANDS, COMMANDS_REPEATED};

/// Ids the journal may hold before a refusal made before the allowance is
/// sent without a journal line: the ids of about three minutes of a
/// device writing at `[commands] rate`'s highest, far more than the cloud
/// sends a building, and about 2 MB of memory.
pub const REFUSALS_REMEMBERED: usize = 10_000;

/// A command as the listener hands it over.
#[derive(Debug)]
pub struct Arrived {
    /// The device level of its topic (`None`: not a device id).
    pub device: Option<DeviceId>,
    /// That level as the sender spelt it: the result goes on its topic.
    pub topic_level: Option<String>,
    pub payload: parse::Payload,
    /// When it arrived: its wait in the gateway counts against `max_age`.
    pub at: Instant,
    /// The wall clock when it arrived: its age by its `ts` is judged on it.
    pub wall: Timestamp,
    /// The broker kept it (a retained message).
    pub retained: bool,
}

/// Runs commands one at a time.
pub struct Executor {
    pub config: CommandsConfig,
    /// `None` when the state directory cannot hold it: then every command
    /// is refused, since a repeat could not be told apart.
    pub journal: Option<Journal>,
    pub targets: CommandTargets,
    pub clock: Arc<dyn Clock>,
    pub telemetry: Telemetry,
    /// Where results go (the upstream's results lane, the dashboard).
    pub results: Vec<mpsc::Sender<SinkEvent>>,
    /// The actuators only rule actions write to (the older forms'
    /// `publish` and `coap_put`): looked up before the adapters' targets
    /// for [`ORIGIN_RULE`], never for anyone else.
    pub actuators: CommandTargets,
    /// The running request's maker, waiting for its result.
    reply: std::sync::Mutex<Option<oneshot::Sender<CommandEvent>>>,
    /// The running command's topic level when the sender spelt its
    /// device otherwise than its id: its result goes on that topic.
    answer_on: Option<String>,
    /// Commands per device: one device's flood is refused without
    /// touching another's commands. Devices no adapter writes to share
    /// one key (`None`): a sender can make up any number of them, and each
    /// refusal still costs a journal line and a result. So the table holds
    /// only devices a target serves: bounded by the config.
    rate: RateLimiter<Option<DeviceId>>,
    log: LogThrottle,
    /// Fault hook ([`HOLD_RESULT_ENV`]): a wait between a write and its
    /// result, so a crash test can kill the gateway there.
    hold_result: Option<std::time::Duration>,
}

/// Milliseconds to wait between a command's write and its result (crash
/// tests only); unset, nothing waits.
pub const HOLD_RESULT_ENV: &str = "EDGE_GATEWAY_FAULT_HOLD_COMMAND_RESULT_MS";

/// The detail of an `interrupted` result, which has no error of its own
/// to tell.
const INTERRUPTED: &str = "the gateway stopped between this command's write and its result: whether the device took the value is unknown; it is not written again";

/// A result before it is recorded and sent.
struct Outcome {
    status: &'static str,
    reason: String,
    detail: String,
    /// What the device holds now, when it was read back.
    applied: Option<f64>,
}

impl Outcome {
    fn new(status: &'static str, reason: &str, detail: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.to_string(),
            detail: detail.into(),
            applied: None,
        }
    }
}

impl Executor {
    pub fn new(
        config: CommandsConfig,
        journal: Option<Journal>,
        targets: CommandTargets,
        clock: Arc<dyn Clock>,
        telemetry: Telemetry,
        results: Vec<mpsc::Sender<SinkEvent>>,
    ) -> Self {
        let rate = RateLimiter::new(config.rate, config.burst);
        Self {
            config,
            journal,
            targets,
            clock,
            telemetry,
            results,
            actuators: CommandTargets::default(),
            reply: std::sync::Mutex::new(None),
            answer_on: None,
            rate,
            log: LogThrottle::default(),
            hold_result: std::env::var(HOLD_RESULT_ENV)
                .ok()
                .and_then(|ms| ms.parse().ok())
                .map(std::time::Duration::from_millis),
        }
    }

    /// With the actuators of rule actions.
    #[must_use]
    pub fn with_actuators(mut self, actuators: CommandTargets) -> Self {
        self.actuators = actuators;
        self
    }

    /// Gives every command the gateway stopped during (kill -9, power
    /// loss between write and result) its result: `failed`, since whether
    /// the device took the value is unknown; it is never written again.
    pub async fn settle_interrupted(&mut self) {
        let Some(journal) = &self.journal else { return };
        for (id, command) in journal.interrupted() {
            warn!(id = %id, device = %command.device, metric = %command.metric, "A command was being written when the gateway stopped: not written again, reported as failed.");
            // Answered where the command came from, as it would have been.
            self.answer_on = command.topic_device.clone();
            let recorded = Recorded {
                status: "failed".into(),
                reason: "interrupted".into(),
                detail: INTERRUPTED.into(),
                ts: self.clock.now().to_rfc3339(),
                ..command
            };
            self.count("failed", "interrupted");
            self.finish(&id, None, recorded, Sync::Now).await;
            self.answer_on = None;
        }
    }

    /// Runs one command to its result.
    pub async fn handle(&mut self, arrived: Arrived) {
        self.answer_on = match (&arrived.device, &arrived.topic_level) {
            (Some(id), Some(level)) if id.as_str() != level => Some(level.clone()),
            _ => None,
        };
        let Some(device) = arrived.device else {
            // No device to answer on: counted and logged only.
            self.count("refused", "malformed");
            if let Some(suppressed) = self.log.allow("topic") {
                warn!(
                    suppressed,
                    "Refusing a command whose topic names no valid device id."
                );
            }
            return;
        };
        let parsed = match arrived.payload.parse() {
            Ok(p) => p,
            Err(m) => {
                if let Some(suppressed) = self.log.allow(m.reason) {
                    warn!(device = %device.as_str(), id = m.id.as_deref().unwrap_or(""), bytes = arrived.payload.len(), reason = m.reason, detail = %m.detail, suppressed, "Refusing a command that cannot be read.");
                }
                let id = m.id.clone().unwrap_or_default();
                let mut recorded =
                    self.recorded(&device, "", serde_json::Value::Null, "refused", m.reason);
                recorded.detail = m.detail;
                self.count("refused", m.reason);
                // Not journaled: an unreadable command cannot be repeated
                // as the same command.
                self.send(&id, &recorded).await;
                return;
            }
        };
        let made = match parsed.ts {
            Some(ts) => Made::At {
                ts,
                arrived: arrived.wall,
            },
            None => Made::Unstamped {
                retained: arrived.retained,
            },
        };
        self.execute(device, parsed, made, arrived.at, "cloud")
            .await;
    }

    /// Runs a command another component made (Home Assistant's command
    /// topics, a rule's action): the same journal, age, check, rate and
    /// result as a command from the cloud; its age counts from its
    /// arrival. Its result also goes to its `reply`.
    pub async fn handle_request(&mut self, request: CommandRequest) {
        self.answer_on = None;
        let CommandRequest {
            command,
            at,
            origin,
            reply,
        } = request;
        self.set_reply(reply);
        let parsed = parse::Parsed {
            id: command.id,
            metric: command.metric,
            value: command.value,
            ts: None,
        };
        self.execute(command.device, parsed, Made::OnArrival, at, origin)
            .await;
        // Every way through `execute` sends one result; none is left.
        self.set_reply(None);
    }

    fn set_reply(&self, reply: Option<oneshot::Sender<CommandEvent>>) {
        if let Ok(mut r) = self.reply.lock() {
            *r = reply;
        }
    }

    /// A well-formed command, from its id's journal entry to its result.
    async fn execute(
        &mut self,
        device: DeviceId,
        parsed: parse::Parsed,
        made: Made,
        arrived: Instant,
        origin: &'static str,
    ) {
        let value = value_json(&parsed.value);
        let Some(journal) = self.journal.as_ref() else {
            let recorded = self.recorded(&device, &parsed.metric, value, "refused", "journal");
            self.count("refused", "journal");
            if let Some(suppressed) = self.log.allow("journal") {
                warn!(suppressed, "Refusing a command: the command journal is not available (see the state directory's error at start).");
            }
            self.send(&parsed.id, &recorded).await;
            return;
        };
        match journal.get(device.as_str(), &parsed.id) {
            Some(Known::Finished(first)) => {
                let first = first.clone();
                info!(id = %parsed.id, device = %device.as_str(), status = %first.status, "A command id seen before: its result is sent again, nothing is written.");
                self.telemetry.counter(COMMANDS_REPEATED, &[]).inc();
                self.send(&parsed.id, &first).await;
                return;
            }
            Some(Known::Started(_)) => {
                let mut recorded =
                    self.recorded(&device, &parsed.metric, value, "failed", "interrupted");
                recorded.detail = INTERRUPTED.into();
                self.telemetry.counter(COMMANDS_REPEATED, &[]).inc();
                self.count("failed", "interrupted");
                self.finish(&parsed.id, made.ts(), recorded, sync_for(origin))
                    .await;
                return;
            }
            None => {}
        }
        let horizon = journal.horizon();
        let flood_mark = journal.refused_upto(device.as_str());
        let command = Command {
            id: parsed.id,
            device,
            metric: parsed.metric,
            value: parsed.value,
            deadline: None,
        };
        if let (Some(ts), Some(mark)) = (made.ts(), flood_mark) {
            if ts <= mark {
                let outcome = Outcome::new(
                    "expired",
                    "max_age",
                    format!("made no later than {}, the newest ts of this device's commands refused during a flood without a journal line each: it may be the replay of one of them; send it again with a new id and ts", mark.to_rfc3339()),
                );
                self.conclude(&command, value, made, outcome, origin, false)
                    .await;
                return;
            }
        }
        let deadline = match age::deadline(made, arrived, horizon, &self.config) {
            Ok(deadline) => deadline,
            Err(stale) => {
                let outcome = Outcome::new(stale.status, stale.reason, stale.detail);
                self.conclude(&command, value, made, outcome, origin, false)
                    .await;
                return;
            }
        };
        let target = match origin {
            ORIGIN_RULE => self.actuators.find(&command.device),
            _ => None,
        }
        .or_else(|| self.targets.find(&command.device));
        let bucket = target.as_ref().map(|_| command.device.clone());
        if !self.rate.allow(bucket, Instant::now().into_std()) {
            let detail = if target.is_some() {
                "more commands for this device than [commands] rate allows"
            } else {
                "more commands for devices nobody writes to than [commands] rate allows"
            };
            let outcome = Outcome::new("refused", "rate", detail);
            self.conclude(&command, value, made, outcome, origin, false)
                .await;
            return;
        }
        let outcome = self
            .run(&command, target, &value, made, deadline, origin)
            .await;
        self.conclude(&command, value, made, outcome, origin, true)
            .await;
    }

    /// Logs, counts and sends a command's result. `journaled`: it took an
    /// allowance, and its result is synced as its origin asks; otherwise
    /// (refused before) it is journaled without its own sync, within the
    /// journal's bounds (`exec_refusals`).
    async fn conclude(
        &mut self,
        command: &Command,
        value: serde_json::Value,
        made: Made,
        outcome: Outcome,
        origin: &'static str,
        journaled: bool,
    ) {
        if outcome.status == "done" {
            info!(id = %command.id, origin, device = %command.device.as_str(), metric = %command.metric, "Command done.");
        } else if let Some(suppressed) = self
            .log
            .allow(&format!("{}:{}", outcome.status, outcome.reason))
        {
            warn!(id = %command.id, origin, device = %command.device.as_str(), metric = %command.metric, status = outcome.status, reason = %outcome.reason, detail = %outcome.detail, suppressed, "Command not done.");
        }
        self.count(outcome.status, &outcome.reason);
        let mut recorded = self.recorded(
            &command.device,
            &command.metric,
            value,
            outcome.status,
            &outcome.reason,
        );
        recorded.detail = outcome.detail;
        recorded.applied = outcome.applied;
        if journaled {
            self.finish(&command.id, made.ts(), recorded, sync_for(origin))
                .await;
        } else {
            self.conclude_refusal(command, made, recorded).await;
        }
    }

    /// Checks and writes; the id is journaled just before the write.
    async fn run(
        &mut self,
        command: &Command,
        target: Option<Arc<dyn CommandTarget>>,
        value: &serde_json::Value,
        made: Made,
        deadline: Instant,
        origin: &'static str,
    ) -> Outcome {
        let Some(target) = target else {
            return Outcome::new(
                "refused",
                "not_writable",
                "no adapter writes to this device: declare its writable points",
            );
        };
        if let Err(r) = target.check(command) {
            return Outcome::new("refused", r.reason, r.detail);
        }
        // Its wait behind other commands counts too, on the monotonic clock.
        if Instant::now() > deadline {
            return Outcome::new(
                "expired",
                "max_age",
                "waited in the gateway (behind other commands) past its max_age",
            );
        }
        let mut started = self.recorded(
            &command.device,
            &command.metric,
            value.clone(),
            "started",
            "",
        );
        started.topic_device.clone_from(&self.answer_on);
        let now = self.clock.now();
        if let Some(journal) = self.journal.as_mut() {
            if let Err(e) = journal.start(&command.id, made.ts(), started, now, sync_for(origin)) {
                return Outcome::new("refused", "journal", e.to_string());
            }
        }
        let written = target
            .write(Command {
                deadline: Some(deadline),
                ..command.clone()
            })
            .await;
        if let Some(hold) = self.hold_result {
            warn!(id = %command.id, "Fault hook: holding a written command's result.");
            tokio::time::sleep(hold).await;
        }
        match written {
            WriteOutcome::Done { value } => Outcome {
                applied: value,
                ..Outcome::new("done", "", "")
            },
            WriteOutcome::Refused(r) if r.reason == Refusal::EXPIRED => {
                Outcome::new("expired", r.reason, r.detail)
            }
            WriteOutcome::Refused(r) => Outcome::new("refused", r.reason, r.detail),
            WriteOutcome::Failed(r) => Outcome::new("failed", r.reason, r.detail),
        }
    }

    fn recorded(
        &self,
        device: &DeviceId,
        metric: &str,
        value: serde_json::Value,
        status: &str,
        reason: &str,
    ) -> Recorded {
        Recorded {
            device: device.as_str().to_string(),
            metric: metric.to_string(),
            value,
            status: status.to_string(),
            reason: reason.to_string(),
            detail: String::new(),
            applied: None,
            ts: self.clock.now().to_rfc3339(),
            topic_device: None,
        }
    }

    fn count(&self, status: &str, reason: &str) {
        let reason = if reason.is_empty() { "none" } else { reason };
        self.telemetry
            .counter(COMMANDS, &[("status", status), ("reason", reason)])
            .inc();
    }

    /// Journals the result, then sends it: a repeat after a crash between
    /// the two sends the journaled result again.
    async fn finish(&mut self, id: &str, made: Option<Timestamp>, recorded: Recorded, sync: Sync) {
        let now = self.clock.now();
        if let Some(journal) = self.journal.as_mut() {
            if let Err(e) = journal.finish(id, made, recorded.clone(), now, sync) {
                if let Some(suppressed) = self.log.allow("journal-finish") {
                    warn!(error = %e, suppressed, "Cannot journal a command's result; it is sent anyway.");
                }
            }
        }
        self.send(id, &recorded).await;
    }

    async fn send(&self, id: &str, r: &Recorded) {
        let Ok(device) = DeviceId::new(r.device.as_str()) else {
            // An interrupted id journaled before its device was known.
            return;
        };
        let at = Timestamp::parse_rfc3339(&r.ts).unwrap_or_else(|_| self.clock.now());
        let event = CommandEvent {
            id: id.to_string(),
            device,
            metric: r.metric.clone(),
            value: r.value.clone(),
            status: r.status.clone(),
            reason: r.reason.clone(),
            detail: r.detail.clone(),
            applied: r.applied,
            topic_device: self.answer_on.clone(),
            at,
        };
        let reply = self.reply.lock().ok().and_then(|mut r| r.take());
        if let Some(reply) = reply {
            // A maker that stopped waiting needs no answer.
            let _ = reply.send(event.clone());
        }
        for results in &self.results {
            // A stopped output takes nothing more; the result is journaled.
            let _ = results.send(SinkEvent::Command(event.clone())).await;
        }
    }
}

/// How a command's journal lines reach the disk: a rule's action's with
/// the next synced line ([`Sync::WithTheNext`] says why), anyone else's
/// before the step they record.
fn sync_for(origin: &str) -> Sync {
    if origin == ORIGIN_RULE {
        Sync::WithTheNext
    } else {
        Sync::Now
    }
}

#[path = "exec_refusals.rs"]
mod refusals;

#[cfg(test)]
#[path = "exec_tests.rs"]
mod tests;
