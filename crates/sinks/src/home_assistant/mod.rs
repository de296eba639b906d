//! `[home_assistant]`: Home Assistant's MQTT discovery.
//!
//! - `discovery`: topics and the config of each entity (pure);
//! - `ids`: how ids are written in topics and unique ids, so that no two
//!   devices share one (pure);
//! - `announced`: what was announced, on disk, so a restart sends no
//!   unchanged config again and can clear a removed device's;
//! - `lifecycle`: how often everything is sent again, which devices are
//!   forgotten, how many entities are admitted (pure);
//! - `controls`: the `number` and `switch` entities of writable points,
//!   and what a message on their command topics becomes (pure);
//! - `availability`: each device's availability, at most one a second
//!   per device, its last state always sent (pure);
//! - `announcer`: the task's state and what each event does to it;
//!   `publish`: what it hands the broker; `commands`: the writable points
//!   and the messages on their command topics;
//! - this file: starting the task and driving its connection.
//!
//! Home Assistant is told, never waited for: nothing here can hold up the
//! pipeline. Configs that do not fit the client's queue stay due and go
//! on the next tick; so do states that do not fit (each entity's latest
//! value, counted as deferred: a newer reading replaces an older one, and
//! none is dropped). Configs are retained QoS 1;
//! sensor states are QoS 0 and not retained (a restarted Home Assistant
//! announces itself, and gets configs and last states again); alert
//! states and availability are retained. Whatever anyone publishes on
//! Home Assistant's broker, the gateway's answer is bounded: one full
//! announcement per `announce_interval`, `max_entities` for devices not
//! in `[[device]]`, and those not heard for `forget_after` are cleared.
//!
//! With `commands = true` it also listens: a message on a control's
//! command topic becomes a [`CommandRequest`] for the command runner
//! (the `commands` crate), which checks, journals and writes it like a
//! command from the cloud. Without it nothing is subscribed there.

mod announced;
mod announcer;
mod availability;
mod commands;
pub mod controls;
pub mod discovery;
pub mod ids;
pub mod kind;
mod lifecycle;
mod publish;

use std::path::PathBuf;
use std::time::Duration;

use gateway_core::backoff::Backoff;
use gateway_core::command::{CommandRequest, WritablePoint};
use gateway_core::component::Sources;
use gateway_core::config::HomeAssistantConfig;
use gateway_core::event::SinkEvent;
use gateway_core::telemetry::{Counter, Gauge, LogThrottle};
use gateway_core::units::Units;
use gateway_core::{DeviceRegistry, Telemetry};
use mqtt_connect::{ConnectionSettings, SetupError};
use rumqttc::{AsyncClient, ConnectionError, Event, LastWill, Packet, QoS};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use announcer::Announcer;
use discovery::Topics;

/// `[home_assistant]` of the `configfile` template: this folder's
/// `template.toml` with the defaults filled in.
pub fn template() -> String {
    let h = HomeAssistantConfig::default();
    let d = |t: Duration| humantime::format_duration(t).to_string();
    gateway_core::config::template::fill(
        include_str!("template.toml"),
        &[
            ("enabled", h.enabled.to_string()),
            ("broker", h.broker.url.to_string()),
            ("discovery_prefix", h.discovery_prefix.clone()),
            ("state_prefix", h.state_prefix.clone()),
            ("expire_after", d(h.expire_after)),
            ("state", h.state.as_str().to_string()),
            ("announce_interval", d(h.announce_interval)),
            ("forget_after", d(h.forget_after)),
            ("max_entities", h.max_entities.to_string()),
            ("commands", h.commands.to_string()),
        ],
    )
}

/// Events waiting for the task.
pub const QUEUE: usize = 1024;
/// Requests waiting in the MQTT client: a fleet's configs at start come in
/// bursts of thousands, sent over the next ticks.
const CLIENT_QUEUE: usize = 2048;
/// Due configs go out, and states of just-announced entities follow, on
/// this tick: Home Assistant subscribes to an entity's state topic only
/// after it has read its config.
const TICK: Duration = Duration::from_secs(1);
/// Most configs, clears and availabilities handed to the client per
/// flush (once a tick, and on each word from the connection): a fleet's
/// (or a flood's) announcement must leave room in its queue for the
/// states that arrive meanwhile, which are dropped when it is full.
const CONFIGS_PER_TICK: usize = CLIENT_QUEUE / 4;
/// Longest wait before what was announced is written down.
const SAVE_EVERY: Duration = Duration::from_secs(10);
/// How long a stop waits for `offline` to reach the broker.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Messages handed to the broker, by `kind` (`config`, `clear`, `state`,
/// `availability`).
pub const HA_PUBLISHED: &str = "edge_gateway_home_assistant_published_total";
/// States dropped. Kept for dashboards that read it: since states that do
/// not fit the client's queue are held for the next tick instead
/// ([`HA_DEFERRED`]), nothing counts here any more.
pub const HA_DROPPED: &str = "edge_gateway_home_assistant_dropped_total";
/// States the client's queue had no room for, sent again (their entity's
/// latest value) on the next tick.
pub const HA_DEFERRED: &str = "edge_gateway_home_assistant_deferred_total";
/// `1` while connected to Home Assistant's broker.
pub const HA_CONNECTED: &str = "edge_gateway_home_assistant_connected";
/// Home Assistant's `online` messages received (its starts, or anyone
/// publishing on its status topic).
pub const HA_BIRTHS: &str = "edge_gateway_home_assistant_births_total";
/// Entities not announced because `max_entities` was reached.
pub const HA_REFUSED: &str = "edge_gateway_home_assistant_refused_total";
/// Messages on the command topics, by `outcome`: `queued` (handed to the
/// command runner, which counts its results in
/// `edge_gateway_commands_total`), `dropped` (too many waiting),
/// `unknown` (no control has that topic), `retained` (ignored: a
/// retained command would run again at every reconnect).
pub const HA_COMMANDS: &str = "edge_gateway_home_assistant_commands_total";

/// What `commands = true` needs from the gateway.
pub struct HaCommands {
    /// The adapters' writable points: `None` until the adapters are
    /// started, then again after each reload.
    pub writable: watch::Receiver<Option<Vec<WritablePoint>>>,
    /// Where a command Home Assistant sent goes to be run.
    pub requests: mpsc::Sender<CommandRequest>,
}

/// What the task needs to know.
pub struct HaSetup {
    pub config: HomeAssistantConfig,
    pub gateway_id: String,
    pub state_dir: PathBuf,
    pub registry: DeviceRegistry,
    pub units: Units,
    /// Which adapter kind heard a reading: a device's model.
    pub sources: Sources,
    pub telemetry: Telemetry,
    /// The gateway's version, in each config's `origin`.
    pub sw_version: String,
    /// Wall-clock time, for when devices were last heard.
    pub clock: std::sync::Arc<dyn gateway_core::Clock>,
    /// `Some` with `commands = true`: controls are announced and their
    /// command topics subscribed.
    pub commands: Option<HaCommands>,
}

/// Starts the task; it ends once the link's messages close, after telling
/// the broker the gateway is offline.
///
/// # Errors
/// A password variable that is not set, unreadable TLS files.
pub fn start(
    setup: HaSetup,
    link: crate::OutputLink<SinkEvent>,
) -> Result<JoinHandle<()>, SetupError> {
    let topics = Topics {
        discovery: setup.config.discovery_prefix.clone(),
        state: setup.config.state_prefix_for(&setup.gateway_id),
        gateway: discovery::slug(&setup.gateway_id),
        ids: ids::Ids::new(setup.registry.ids().map(str::to_string)),
    };
    let settings = ConnectionSettings::new(
        &setup.config.broker,
        format!("edge-gateway-{}-home-assistant", setup.gateway_id),
    );
    let will = LastWill::new(topics.status(), "offline", QoS::AtLeastOnce, true);
    let options = settings.mqtt_options(Some(will))?;
    let (client, eventloop) = AsyncClient::new(options, CLIENT_QUEUE);
    let (net_tx, net_rx) = mpsc::channel(16);
    let listen = Listen {
        ha_status: topics.ha_status(),
        commands: setup.commands.is_some().then(|| {
            let dropped = setup
                .telemetry
                .counter(HA_COMMANDS, &[("outcome", "dropped")]);
            (format!("{}/", topics.state), dropped)
        }),
    };
    let poller = tokio::spawn(poll(
        eventloop,
        listen,
        setup.config.broker.max_backoff,
        net_tx,
        setup.telemetry.gauge(HA_CONNECTED, &[]),
    ));
    let rx = link.messages;
    let mut announcer = Announcer::new(setup, topics, client);
    announcer.load();
    let mut poller = poller;
    let task = tokio::spawn(async move {
        announcer.run(rx, net_rx).await;
        if tokio::time::timeout(STOP_GRACE, &mut poller).await.is_err() {
            poller.abort();
            warn!("Home Assistant: the broker did not take the disconnect in time.");
        }
    });
    Ok(task)
}

/// Home Assistant starts like every other output; it mirrors state and
/// keeps nothing a checkpoint relies on, so it takes no flush.
impl gateway_core::output::StartOutput for HaSetup {
    fn lanes(&self) -> gateway_core::output::Lanes {
        gateway_core::output::Lanes {
            urgent: false,
            flush: false,
            readings: true,
        }
    }

    fn queue(&self) -> Option<usize> {
        Some(QUEUE)
    }

    fn start(
        self,
        link: crate::OutputLink<SinkEvent>,
        _ctx: &crate::registry::SinkContext,
    ) -> Result<gateway_core::output::StartedOutput, gateway_core::output::OutputError> {
        let task = start(self, link)?;
        Ok(gateway_core::output::StartedOutput {
            task: Box::pin(async move { Ok(task.await?) }),
        })
    }
}

/// What the connection tells the task.
#[derive(Debug)]
enum Net {
    Connected,
    Disconnected,
    /// Home Assistant's birth (`true`) or last will on its status topic.
    HaOnline(bool),
    /// A message on a command topic.
    Set(rumqttc::Publish),
}

/// What the connection passes on to the task.
struct Listen {
    ha_status: String,
    /// With `commands = true`: `{state_prefix}/` (its `…/set` topics are
    /// commands), and the count of those dropped because the task is behind.
    commands: Option<(String, Counter)>,
}

impl Listen {
    /// The dropped count when `topic` is a command topic.
    fn command(&self, topic: &str) -> Option<&Counter> {
        let (prefix, dropped) = self.commands.as_ref()?;
        (topic.starts_with(prefix.as_str()) && topic.ends_with("/set")).then_some(dropped)
    }
}

/// Drives the MQTT connection (rumqttc sends nothing unless polled).
async fn poll(
    mut eventloop: rumqttc::EventLoop,
    listen: Listen,
    max_backoff: Duration,
    net: mpsc::Sender<Net>,
    connected: Gauge,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), max_backoff);
    let log = LogThrottle::default();
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                connected.set(1.0);
                info!("Home Assistant: connected to the broker.");
                let _ = net.send(Net::Connected).await;
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if p.topic == listen.ha_status {
                    // A retained birth is an old one, not Home Assistant
                    // starting now: answering it would resend every config
                    // at each connect.
                    if !p.retain {
                        let online = p.payload.as_ref() == b"online";
                        let _ = net.send(Net::HaOnline(online)).await;
                    }
                } else if let Some(dropped) = listen.command(&p.topic) {
                    // Never waited for: a flood on Home Assistant's broker
                    // must not stop this loop keeping the connection alive.
                    if net.try_send(Net::Set(p)).is_err() {
                        dropped.inc();
                        if let Some(suppressed) = log.allow("commands") {
                            warn!(
                                suppressed,
                                "Home Assistant: dropping a command, too many are waiting."
                            );
                        }
                    }
                }
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                connected.set(0.0);
                break;
            }
            Ok(_) => {}
            Err(ConnectionError::RequestsDone) => break,
            Err(e) => {
                connected.set(0.0);
                let _ = net.send(Net::Disconnected).await;
                if let Some(suppressed) = log.allow("connect") {
                    warn!(error = %e, suppressed, "Home Assistant: broker connection failed; retrying.");
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}
