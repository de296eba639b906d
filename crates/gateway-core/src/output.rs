//! How every output is started: the upstream, each `[[sink]]`, the
//! dashboard's writer and Home Assistant all implement [`StartOutput`], so
//! the runtime builds their links the same way, hands each its
//! [`OutputLink`] and the [`OutputContext`], and waits for the
//! [`StartedOutput`] it returns at stop. Which lanes an output takes
//! ([`Lanes`]) is the only thing the runtime asks it beforehand.
//!
//! What the rest of the gateway says about an output (its section, its
//! label, what it delivers, its feature, its folder) is its
//! [`OutputDeclaration`], declared once in the folder's `kind.rs`, as an
//! adapter's is.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use crate::event::{OutputLink, SinkEvent};
use crate::{DeviceRegistry, Telemetry};

/// What an output takes from the pipeline's events and delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivers {
    /// Readings as accepted, late ones too.
    Readings,
    /// Closed windows' statistics.
    Windows,
    /// Devices' online/offline.
    Statuses,
    /// Alert transitions.
    Alerts,
    /// Results of commands to devices.
    CommandResults,
    /// Where a configuration pushed from the cloud stands.
    ConfigStates,
}

impl Delivers {
    /// As the folder READMEs and the architecture page name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Readings => "readings",
            Self::Windows => "windows",
            Self::Statuses => "statuses",
            Self::Alerts => "alerts",
            Self::CommandResults => "command results",
            Self::ConfigStates => "configuration states",
        }
    }
}

/// Everything the rest of the gateway knows of one output, declared once
/// in its folder's `kind.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputDeclaration {
    /// Its name in `gateway.toml`: the section (`upstream`,
    /// `home_assistant`, `dashboard`) or the `[[sink]] type`.
    pub kind: &'static str,
    /// How it is configured, as an operator writes it.
    pub section: &'static str,
    /// What people are told it is.
    pub label: &'static str,
    /// The events it takes and delivers.
    pub delivers: &'static [Delivers],
    /// The Cargo feature of its crate that builds it in; `None` where it is
    /// always built.
    pub feature: Option<&'static str>,
    /// Its folder, from the workspace's `crates/`: its `kind.rs`,
    /// `README.md` and `template.toml` are there.
    pub folder: &'static str,
    /// It keeps a durable outbox and answers the checkpoint's flush.
    pub durable: bool,
}

/// What outputs need to know about the gateway they run in.
#[derive(Clone)]
pub struct OutputContext {
    /// `gateway.id`, the `gateway` tag of health points.
    pub gateway_id: String,
    /// `gateway.state_dir`: each durable output keeps its outbox below it.
    pub state_dir: PathBuf,
    /// Device names and tags, written beside the data.
    pub registry: DeviceRegistry,
    /// Each metric's unit, with the config's overrides.
    pub units: crate::units::Units,
    pub telemetry: Telemetry,
}

/// Why an output could not start, or why its task failed.
pub type OutputError = Box<dyn std::error::Error + Send + Sync>;

/// An output's task: it ends once its link has closed and it has
/// delivered or stored what it was handed.
pub type OutputTask = Pin<Box<dyn Future<Output = Result<(), OutputError>> + Send>>;

/// An output as started.
pub struct StartedOutput {
    pub task: OutputTask,
}

/// The lanes of an output's link besides its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lanes {
    /// Alerts and command results overtake the messages (the upstream).
    pub urgent: bool,
    /// It answers the checkpoint's flush: it keeps what a checkpoint
    /// relies on (not Home Assistant, which only mirrors state).
    pub flush: bool,
    /// It takes the readings (`SinkEvent::Readings`): every `[[sink]]`,
    /// the dashboard and Home Assistant; the upstream only when it needs
    /// them (a metric reported on change, a unit set per adapter), so
    /// that otherwise no reading is copied for it.
    pub readings: bool,
}

/// The one way an output is started.
pub trait StartOutput {
    /// The lanes its link must have.
    fn lanes(&self) -> Lanes;
    /// Its messages' channel capacity, when not the pipeline's default.
    fn queue(&self) -> Option<usize> {
        None
    }
    /// Starts it on `link`.
    ///
    /// # Errors
    /// A setup mistake (unreadable TLS files, a missing password
    /// variable, an outbox locked by another gateway); network faults are
    /// retried by the output, not errors.
    fn start(
        self,
        link: OutputLink<SinkEvent>,
        ctx: &OutputContext,
    ) -> Result<StartedOutput, OutputError>;
}
