//! Local actions of alert rules, started like every other output: the
//! alerts whose actions are to run (`alerts` holds back a clear another
//! alert still holds on) arrive on its link, and each becomes a command
//! for the command runner, which checks, rate-limits, journals and writes
//! it like a command from the cloud, to a point declared writable on an
//! adapter's device (the older forms' actuators are devices of their own:
//! `gateway_core::config::action`). It holds no connection: the writing
//! is the adapters'.
//!
//! Each action runs at most once per its `cooldown` per rule, device and
//! state; the outcome is logged and counted
//! (`edge_gateway_actions_total{outcome}`, beside the command's own
//! `edge_gateway_commands_total{status,reason}`). One runs at a time, in
//! the alerts' order, so a raise and its clear reach the actuator in turn.
//!
//! A command's id is made from the alert it acts on (rule, device, state
//! and the alert's time), so the same alert decided again after a crash
//! (its readings replayed from the ingress journal) is recognised by the
//! command journal and not written twice.

use std::collections::HashMap;

use gateway_core::command::{stable_digest, Command, CommandRequest, ORIGIN_RULE};
use gateway_core::config::action::ActionPoints;
use gateway_core::config::RuleConfig;
use gateway_core::event::{AlertEvent, OutputLink, SinkEvent};
use gateway_core::output::{Lanes, OutputContext, OutputError, StartOutput, StartedOutput};
use gateway_core::telemetry::{Counter, LogThrottle};
use gateway_core::{DeviceId, Telemetry, Timestamp};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{info, warn};

/// Alerts waiting for their actions; beyond this they are dropped and
/// counted (`edge_gateway_actions_dropped_total`).
pub const ACTION_QUEUE: usize = 256;

/// Actions by `outcome` (`ok`, `failed`).
pub const ACTIONS: &str = "edge_gateway_actions_total";

/// The actions output: the rules, the point each one's action sets, and
/// the command runner's queue.
pub struct ActionsOutput {
    pub rules: Vec<RuleConfig>,
    pub points: ActionPoints,
    pub requests: mpsc::Sender<CommandRequest>,
}

impl StartOutput for ActionsOutput {
    fn lanes(&self) -> Lanes {
        Lanes {
            urgent: false,
            flush: false,
            // Only the alerts the rules hand it: no fan-out, no readings.
            readings: false,
        }
    }

    fn queue(&self) -> Option<usize> {
        Some(ACTION_QUEUE)
    }

    fn start(
        self,
        link: OutputLink<SinkEvent>,
        ctx: &OutputContext,
    ) -> Result<StartedOutput, OutputError> {
        let runner = Runner::new(self, &ctx.telemetry);
        let task = tokio::spawn(runner.run(link.messages));
        Ok(StartedOutput {
            task: Box::pin(async move { Ok(task.await?) }),
        })
    }
}

/// The states an action acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Edge {
    Raised,
    Cleared,
}

struct Runner {
    setup: ActionsOutput,
    last_run: HashMap<(usize, DeviceId, Edge), Instant>,
    ok: Counter,
    failed: Counter,
    log: LogThrottle,
}

impl Runner {
    fn new(setup: ActionsOutput, telemetry: &Telemetry) -> Self {
        Self {
            setup,
            last_run: HashMap::new(),
            ok: telemetry.counter(ACTIONS, &[("outcome", "ok")]),
            failed: telemetry.counter(ACTIONS, &[("outcome", "failed")]),
            log: LogThrottle::default(),
        }
    }

    /// Runs the actions of the alerts on `alerts` until it closes.
    async fn run(mut self, mut alerts: mpsc::Receiver<SinkEvent>) {
        while let Some(event) = alerts.recv().await {
            if let SinkEvent::Alert(alert) = event {
                self.act(&alert).await;
            }
        }
    }

    async fn act(&mut self, alert: &AlertEvent) {
        let Some(command) = self.command(alert) else {
            return;
        };
        let target = self.setup.rules.iter().find(|r| r.name == alert.rule);
        let target = target
            .and_then(|r| r.action.as_ref())
            .map(gateway_core::config::ActionConfig::target)
            .unwrap_or_default();
        let (reply, result) = oneshot::channel();
        let request = CommandRequest {
            command,
            at: Instant::now(),
            origin: ORIGIN_RULE,
            reply: Some(reply),
        };
        let result = match self.setup.requests.send(request).await {
            Ok(()) => result.await.ok(),
            Err(_) => None,
        };
        match result {
            Some(r) if r.status == "done" => {
                self.ok.inc();
                info!(rule = %alert.rule, device = %alert.device, state = %alert.state, target = %target, id = %r.id, "Action done.");
            }
            Some(r) => {
                self.failed.inc();
                if let Some(suppressed) = self.log.allow(&format!("{}:{}", r.status, r.reason)) {
                    warn!(rule = %alert.rule, device = %alert.device, state = %alert.state, target = %target, id = %r.id, status = %r.status, reason = %r.reason, detail = %r.detail, suppressed, "Action failed.");
                }
            }
            None => {
                self.failed.inc();
                if let Some(suppressed) = self.log.allow("stopped") {
                    warn!(rule = %alert.rule, device = %alert.device, state = %alert.state, target = %target, suppressed, "Action not run: the command runner has stopped (the gateway is stopping).");
                }
            }
        }
    }

    /// The command an alert's action makes, if it makes one now.
    fn command(&mut self, alert: &AlertEvent) -> Option<Command> {
        let index = self.setup.rules.iter().position(|r| r.name == alert.rule)?;
        let action = self.setup.rules.get(index)?.action.as_ref()?;
        let (device, point) = self.setup.points.by_rule.get(index)?.clone()?;
        let (edge, value) = match alert.state.as_str() {
            "raised" => (Edge::Raised, &action.payload),
            "cleared" => (Edge::Cleared, action.clear_payload.as_ref()?),
            // A raise the rule's cooldown held back: nothing to act on.
            _ => return None,
        };
        let key = (index, alert.device.clone(), edge);
        let now = Instant::now();
        if let Some(at) = self.last_run.get(&key) {
            if now.duration_since(*at) < action.cooldown {
                info!(rule = %alert.rule, device = %alert.device, state = %alert.state, "Action skipped: within its cooldown.");
                return None;
            }
        }
        self.last_run.insert(key, now);
        Some(Command {
            id: command_id(&alert.rule, &alert.device, &alert.state, alert.at),
            device,
            metric: point,
            value: value.to_command(),
            // Set by the command runner from its max_age.
            deadline: None,
        })
    }
}

/// `rule-` and a digest of the alert acted on: the same alert gets the
/// same id in every run of the gateway.
fn command_id(rule: &str, device: &DeviceId, state: &str, at: Timestamp) -> String {
    let keyed = format!("{rule}\0{device}\0{state}\0{}", at.as_millis());
    format!(
        "{}{:016x}",
        gateway_core::command::GATEWAY_ID_PREFIXES[1],
        stable_digest(keyed.as_bytes())
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use gateway_core::command::CommandValue;
    use gateway_core::config::action::action_points;
    use gateway_core::event::CommandEvent;
    use gateway_core::SourceId;

    /// A command's result as the runner answers it.
    fn result_of(status: &str) -> CommandEvent {
        CommandEvent {
            id: "x".into(),
            device: DeviceId::new("d").unwrap_or_else(|_| unreachable!()),
            metric: String::new(),
            value: serde_json::Value::Null,
            status: status.into(),
            reason: String::new(),
            detail: String::new(),
            applied: None,
            topic_device: None,
            at: Timestamp::from_millis(0).unwrap_or_else(|_| unreachable!()),
        }
    }

    fn rules() -> Vec<RuleConfig> {
        #[derive(serde::Deserialize)]
        struct File {
            rule: Vec<RuleConfig>,
        }
        let text = r#"
[[rule]]
name = "co2-high"
kind = "threshold"
metric = "co2"
max = 1000.0
action = { device = "vent-1", point = "speed", payload = 3, clear_payload = 1, cooldown = "1m" }
"#;
        toml::from_str::<File>(text).unwrap().rule
    }

    fn alert(state: &str, at: i64) -> SinkEvent {
        SinkEvent::Alert(AlertEvent {
            device: DeviceId::new("room-1").unwrap(),
            rule: "co2-high".into(),
            metric: "co2".into(),
            kind: "threshold".into(),
            state: state.into(),
            value: 1200.0,
            limit: 1000.0,
            at: Timestamp::from_millis(at).unwrap(),
            reason: None,
            expected: None,
            observed: None,
            source: SourceId::UNKNOWN,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn an_alert_becomes_a_command_for_the_declared_point_once_per_cooldown() {
        let rules = rules();
        let points = action_points(&rules, &[]);
        let (requests, mut runner) = mpsc::channel(4);
        let telemetry = Telemetry::default();
        let output = ActionsOutput {
            rules,
            points,
            requests,
        };
        let (alerts, link) = mpsc::channel(8);
        let task = tokio::spawn(Runner::new(output, &telemetry).run(link));
        let answer = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some(r) = runner.recv().await {
                let status = if seen.is_empty() { "done" } else { "refused" };
                seen.push((r.origin, r.command.clone()));
                if let Some(reply) = r.reply {
                    let _ = reply.send(result_of(status));
                }
            }
            seen
        });
        alerts.send(alert("raised", 1_000)).await.unwrap();
        // Within the action's cooldown: skipped.
        alerts.send(alert("raised", 2_000)).await.unwrap();
        alerts.send(alert("suppressed", 2_500)).await.unwrap();
        alerts.send(alert("cleared", 3_000)).await.unwrap();
        drop(alerts);
        task.await.unwrap();
        let seen = answer.await.unwrap();
        let got: Vec<(&str, &str, &str, CommandValue)> = seen
            .iter()
            .map(|(o, c)| (*o, c.device.as_str(), c.metric.as_str(), c.value.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("rule", "vent-1", "speed", CommandValue::Number(3.0)),
                ("rule", "vent-1", "speed", CommandValue::Number(1.0)),
            ]
        );
        assert_ne!(seen[0].1.id, seen[1].1.id);
        assert_eq!(
            seen[0].1.id,
            command_id(
                "co2-high",
                &DeviceId::new("room-1").unwrap(),
                "raised",
                Timestamp::from_millis(1_000).unwrap()
            ),
            "the same alert makes the same id"
        );
        assert_eq!(
            telemetry.counter_value(ACTIONS, &[("outcome", "ok")]),
            Some(1)
        );
        assert_eq!(
            telemetry.counter_value(ACTIONS, &[("outcome", "failed")]),
            Some(1)
        );
    }
}
