//! Commands from the cloud broker to the building's devices, safely.
//!
//! ```text
//!  upstream broker {prefix}/+/command      Home Assistant's command topics
//!  (QoS 1, own connection)                 ([home_assistant] commands = true),
//!        │                                 rules' local actions
//!        │ listener                              │ CommandRequest
//!        ▼◀──────────────────────────────────────┘
//!  exec: parse → journal (repeat?) → age → target.check → rate
//!        → journal start → target.write → journal result
//!        │                      │ (adapters: gateway_core::command::CommandTarget)
//!        ▼
//!  SinkEvent::Command → upstream outbox → {prefix}/{device}/command/result
//! ```
//!
//! - `parse`: the payload and topics (pure, fuzzed);
//! - `journal`: ids before their write, results after (durable), each
//!   remembered while a replay of it could run;
//! - `flood_marks`: what keeps a refusal final once a flood has filled
//!   the journal;
//! - `age`: whether a command is fresh, and its deadline (pure);
//! - the rate of commands per device: `gateway_core::rate_limit`;
//! - `exec`: one command to its one result;
//! - `listener`: the broker connection (I/O), and the one loop that runs
//!   the cloud's commands and other components' requests in turn.
//!
//! What is writable is declared in the config and known only to the
//! adapters' targets; a device no target serves is `refused`
//! (`not_writable`). Commands come from the cloud broker, from Home
//! Assistant's only where `[home_assistant] commands = true` (its sink
//! makes a [`CommandRequest`] of a message on an entity's command topic),
//! and from the rules' local actions (`rules::actions` makes one of an
//! alert): nothing else subscribes to a command topic or calls a target.

pub mod age;
pub mod exec;
mod flood_marks;
pub mod journal;
pub mod listener;
pub mod parse;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gateway_core::command::{CommandRequest, CommandTargets};
use gateway_core::config::CommandsConfig;
use gateway_core::event::SinkEvent;
use gateway_core::{Clock, Telemetry};
use mqtt_connect::{ConnectionSettings, SetupError};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::error;

/// Commands by `status` (`done`, `refused`, `failed`, `expired`) and
/// `reason` (`none` when done).
pub const COMMANDS: &str = "edge_gateway_commands_total";
/// Commands whose id had been seen: their first result was sent again.
pub const COMMANDS_REPEATED: &str = "edge_gateway_commands_repeated_total";
/// Refusals made before a command took its allowance (age, clock, rate)
/// sent without a journal line of their own, because the journal already
/// held `REFUSALS_REMEMBERED` ids: their device's flood mark keeps them
/// final (`flood_marks`); one without `ts`, or for a device no target
/// serves, sent again is judged again. Also refusals of commands made
/// further ahead of the clock than the `journal::FAR_AHEAD_REMEMBERED`
/// nearest such refusals kept: judged again too.
pub const COMMANDS_REFUSALS_UNREMEMBERED: &str =
    "edge_gateway_commands_refusals_unremembered_total";
/// `1` while subscribed to the command topics on the upstream broker;
/// absent when commands do not come from it (`/health` reads it).
pub const COMMANDS_SUBSCRIBED: &str = "edge_gateway_commands_subscribed";
/// Lines of the command journal that could not be read at start (torn by
/// a power cut, damaged): each skipped, the journal rewritten clean.
pub const COMMANDS_JOURNAL_DAMAGED: &str = "edge_gateway_commands_journal_damaged_lines_total";

/// Requests from other components waiting to run: a person's clicks, not
/// a flood; beyond this the sender drops them (and counts).
pub const REQUEST_QUEUE: usize = 16;

/// What the command listener needs.
pub struct CommandsSetup {
    pub config: CommandsConfig,
    /// The upstream's connection (its client id gets `-commands`); `None`
    /// takes no command from the cloud (`[commands] enabled = false`).
    pub upstream: Option<ConnectionSettings>,
    /// Commands other components make (Home Assistant's).
    pub requests: Option<mpsc::Receiver<CommandRequest>>,
    pub max_backoff: Duration,
    pub topic_prefix: String,
    pub state_dir: std::path::PathBuf,
    pub targets: CommandTargets,
    pub clock: Arc<dyn Clock>,
    pub telemetry: Telemetry,
    pub results: Vec<mpsc::Sender<SinkEvent>>,
    /// Asks the upstream's outbox to store what it was handed; `None`
    /// without one (then a command is acknowledged once its result is
    /// handed over).
    pub results_stored: Option<ResultsStored>,
    /// The actuators only rule actions write to (`exec::Executor::actuators`).
    pub actuators: CommandTargets,
}

/// The upstream outbox's flush handshake: a request answered once
/// everything handed to the outbox before it is stored (`true` when on
/// disk). A cloud command is acknowledged to its broker only after its
/// result is: acknowledged while the result still waited in the outbox's
/// queue, a kill -9 lost the result for good, as the broker, its command
/// acknowledged, never delivers it again.
pub type ResultsStored = mpsc::Sender<oneshot::Sender<bool>>;

/// Starts the listener; it stops with `stop`.
///
/// # Errors
/// The connection cannot be configured (password variable, TLS files).
pub fn start(setup: CommandsSetup, stop: CancellationToken) -> Result<JoinHandle<()>, SetupError> {
    let opts = setup.upstream.as_ref().map(listener::options).transpose()?;
    let journal = open_journal(&setup.state_dir, &setup.config, &*setup.clock);
    if let Some(j) = &journal {
        let damaged = u64::try_from(j.damaged()).unwrap_or(u64::MAX);
        setup
            .telemetry
            .counter(COMMANDS_JOURNAL_DAMAGED, &[])
            .add(damaged);
    }
    let exec = exec::Executor::new(
        setup.config,
        journal,
        setup.targets,
        setup.clock,
        setup.telemetry,
        setup.results,
    )
    .with_actuators(setup.actuators);
    Ok(tokio::spawn(listener::run(
        opts,
        setup.topic_prefix,
        exec,
        setup.requests,
        setup.results_stored,
        setup.max_backoff,
        stop,
    )))
}

/// The journal, remembering each id while a replay of it could still run:
/// `max_age` after it was made, and the clocks' tolerance.
fn open_journal(
    state_dir: &Path,
    config: &CommandsConfig,
    clock: &dyn Clock,
) -> Option<journal::Journal> {
    let keep = config.max_age.saturating_add(config.clock_tolerance);
    let dir = state_dir.join(gateway_core::state_file::inventory::COMMANDS);
    match journal::Journal::open(&dir, keep, clock.now()) {
        Ok(j) => Some(j),
        Err(e) => {
            error!(error = %e, "Cannot open the command journal: every command will be refused.");
            None
        }
    }
}
